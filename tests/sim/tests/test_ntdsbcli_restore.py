# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore calls of the simulated ntdsbcli.dll (windows-backup-apis.md §2): the DS must be offline
(DSRM or stopped), the expiry token from the backup is checked, the registration is the record a DC reads
at its next start, and a registration that was never completed keeps the DS from starting."""
import json
import os

import pytest

from dssim import (  # noqa: F401 pylint: disable=unused-import
    AUTHORATATIVE, BFT_CHECKPOINT_DIR, BFT_DATABASE, BFT_LOG_DIR, CATCHUP, HR, ONLINE, S_OK, dc, ds, make_token,
    ntds_dir, ntds_set, parse_list, parse_token, services)


def record(ntds_dir):
    with open(os.path.join(ntds_dir, "dc01.restore.json")) as f:
        return json.load(f)


def test_restore_registration_record(ds, services, ntds_set, ntds_dir, tmp_path):
    svc = services(ntds_set)
    hr, hbc, token = ds.prepare("DC01")
    hr, raw, _ = ds.locations(hbc)
    at_backup = parse_list(raw)
    assert ds.end(hbc) == S_OK
    assert ds.restore_prepare("DC01", token=token) == (HR["ServiceRunning"], None)   # online: refused
    svc.stop()
    services(ntds_set, args=["--dsrm"])                                  # restarted in DSRM
    hr, rh = ds.restore_prepare("DC01", token=token)
    assert hr == S_OK and rh
    hr, raw, cb = ds.locations(rh)                                       # from the DC's configuration
    assert hr == S_OK and cb == len(raw) and parse_list(raw) == at_backup
    assert [p for p, _n in at_backup] == [BFT_DATABASE, BFT_LOG_DIR, BFT_CHECKPOINT_DIR]
    folder = os.path.dirname(ntds_set)
    restored = str(tmp_path / "restore" / "ntds.dit")
    assert ds.register(rh, folder, folder, [(ntds_set, restored)], str(tmp_path / "restore"), 3, 4) == S_OK
    _version, days, when = parse_token(token)
    assert record(ntds_dir) == {
        "Server": "dc01", "CheckPointFilePath": folder, "LogPath": folder,
        "BackupLogPath": str(tmp_path / "restore"), "LowLog": 3, "HighLog": 4, "CatchUp": False,
        "BackupTime": when, "TombstoneLifetimeDays": days,
        "RestoreMap": [{"DatabaseName": ntds_set, "NewDatabaseName": restored}],
        "RestoreStatus": HR["RestoreInProgress"], "Completed": False}
    code, err = services(ntds_set, wait=False).run_to_exit()
    assert code == 5 and "not completed" in err                          # the DS does not start
    assert ds.complete(rh, S_OK) == S_OK
    rec = record(ntds_dir)
    assert (rec["RestoreStatus"], rec["Completed"]) == (0, True)
    assert ds.restore_end(rh) == S_OK
    assert ds.restore_end(rh) == HR["InvalidHandle"]


def test_a_failed_restore_keeps_the_ds_stopped_but_dsrm_starts(ds, services, ntds_set):
    hr, rh = ds.restore_prepare("DC01", CATCHUP, token=make_token())
    assert hr == S_OK
    assert ds.register(rh, "/chk", "/logs", [], "/restore", 1, 0xFFFFF) == S_OK
    assert ds.complete(rh, 0x80004005) == S_OK
    assert ds.restore_end(rh) == S_OK
    assert services(ntds_set, wait=False).run_to_exit()[0] == 5
    services(ntds_set, args=["--dsrm"])                                  # DSRM is where the restore is redone


def test_catchup_registration(ds, ntds_dir):
    hr, rh = ds.restore_prepare("\\\\DC01", CATCHUP, token=make_token(days=180, age_days=100))
    assert hr == S_OK
    assert ds.register(rh, "C:\\chk", "C:\\logs", [], "C:\\restore", 5, 9) == S_OK
    rec = record(ntds_dir)
    assert rec["CatchUp"] is True and rec["RestoreMap"] == [] and rec["TombstoneLifetimeDays"] == 180
    assert ds.restore_end(rh) == S_OK


@pytest.mark.usefixtures("ntds_dir")
def test_expiry_token_checks(ds):
    assert ds.restore_prepare("DC01", token=make_token(days=60, age_days=61)) == (HR["ContentsExpired"], None)
    hr, rh = ds.restore_prepare("DC01", token=make_token(days=60, age_days=59))
    assert hr == S_OK and ds.restore_end(rh) == S_OK
    assert ds.restore_prepare("DC01", token=make_token(version=2))[0] == HR["UnknownExpiryTokenFormat"]
    assert ds.restore_prepare("DC01", token=make_token(days=0))[0] == HR["UnknownExpiryTokenFormat"]
    assert ds.restore_prepare("DC01", token=make_token()[:12])[0] == HR["UnknownExpiryTokenFormat"]
    assert ds.restore_prepare("DC01", token=make_token() + b"\0")[0] == HR["UnknownExpiryTokenFormat"]
    assert ds.restore_prepare("DC01", token=None, cb=16)[0] == HR["InvalidParam"]


@pytest.mark.usefixtures("ntds_dir")
def test_without_a_token_the_handle_only_reads_locations(ds):
    hr, rh = ds.restore_prepare("DC01")
    assert hr == S_OK and rh
    assert ds.locations(rh)[0] == HR["PathNotFound"]                     # this DC never ran here
    assert ds.register(rh, "c", "l", [], "b", 1, 2) == HR["MissingExpiryToken"]
    assert ds.restore_end(rh) == S_OK


@pytest.mark.usefixtures("ntds_dir")
def test_restore_errors(ds, monkeypatch):
    for flags in (AUTHORATATIVE, ONLINE, 0x8, CATCHUP | ONLINE):
        assert ds.restore_prepare("DC01", flags, token=make_token())[0] == HR["InvalidParameter"], flags
    assert ds.restore_prepare(None, token=make_token())[0] == HR["InvalidParam"]
    assert ds.restore_prepare("HOST2", token=make_token()) == (HR["RpcInvalidBinding"], None)   # local only
    assert ds.lib.DsRestorePrepareW(None, 0, None, 0, None) == HR["InvalidParam"] - (1 << 32)
    hr, rh = ds.restore_prepare("DC01", token=make_token())
    assert hr == S_OK
    assert ds.complete(rh, 0) == HR["Unexpected"]                        # nothing registered yet
    assert ds.register(rh, None, "l", [], "b", 1, 2) == HR["InvalidParam"]   # paths non-NULL
    assert ds.register(rh, "c", None, [], "b", 1, 2) == HR["InvalidParam"]
    assert ds.register(rh, "c", "l", [], None, 1, 2) == HR["InvalidParam"]
    assert ds.register(rh, "c", "l", [], "b", 3, 2) == HR["InvalidParam"]
    assert ds.register(rh, "c", "l", [], "b", 1, 0x100000) == HR["InvalidParam"]   # generations 0..0xFFFFF
    assert ds.lib.DsRestoreRegisterW(rh, None, None, None, 1, None, 0, 0) == HR["InvalidParam"] - (1 << 32)
    assert ds.end(rh) == HR["InvalidHandle"]                             # a restore context is not a backup one
    assert ds.names(rh)[0] == HR["InvalidHandle"]
    assert ds.restore_end(rh) == S_OK
    monkeypatch.delenv("ESESIM_NTDS_DIR")
    assert ds.restore_prepare("DC01", token=make_token())[0] == HR["PathNotFound"]


def test_backup_context_is_not_a_restore_one(ds, dc):
    hr, hbc, _tok = ds.prepare("DC01")
    assert hr == S_OK
    assert ds.restore_end(hbc) == HR["InvalidHandle"]
    assert ds.complete(hbc) == HR["InvalidHandle"]
    assert ds.end(hbc) == S_OK
