# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore calls of the simulated certadm.dll (windows-backup-apis.md §1): the CA must be
offline, the registration is the record a CA reads at its next start, and a registration that was
never completed keeps the CA from starting."""
import json
import os

import pytest

from certsim import (  # noqa: F401 pylint: disable=unused-import
    CSBFT_CHECKPOINT_DIR, CSBFT_DATABASE, CSBFT_LOG_DIR, FULL, HR, S_OK, ca, ca_set, cadm, parse_list, services,
    svc_dir)


def record(svc_dir):
    with open(os.path.join(svc_dir, "ca01.restore.json")) as f:
        return json.load(f)


def test_restore_registration_record(cadm, services, ca_set, svc_dir, tmp_path):
    svc = services(ca_set)
    hr, hbc = cadm.prepare("CA01", FULL)
    hr, raw, _ = cadm.locations(hbc)
    at_backup = parse_list(raw)
    assert cadm.end(hbc) == S_OK
    assert cadm.restore_prepare("CA01") == (HR["ServiceRunning"], None)    # the CA must be offline
    svc.stop()
    hr, rh = cadm.restore_prepare("CA01")
    assert hr == S_OK and rh
    hr, raw, cb = cadm.locations(rh)                                       # from the CA's configuration
    assert hr == S_OK and cb == len(raw) and parse_list(raw) == at_backup
    assert [p for p, _n in at_backup] == [CSBFT_DATABASE, CSBFT_LOG_DIR, CSBFT_CHECKPOINT_DIR]
    folder = os.path.dirname(ca_set)
    restored = str(tmp_path / "restore" / "Sim CA.edb")
    assert cadm.register(rh, folder, folder, [(ca_set, restored)], str(tmp_path / "restore"), 3, 4) == S_OK
    rec = record(svc_dir)
    assert rec == {
        "Server": "ca01", "CheckPointFile": folder, "LogPath": folder,
        "BackupLogDirectory": str(tmp_path / "restore"), "LowLogNumber": 3, "HighLogNumber": 4,
        "RestoreMapCount": 1, "RestoreMap": [{"DatabaseName": ca_set, "NewDatabaseName": restored}],
        "RegisteredThroughFile": False, "RestoreStatus": HR["RestoreInProgress"], "Completed": False}
    code, err = services(ca_set, wait=False).run_to_exit()
    assert code == 5 and "not completed" in err                            # blocks the CA's start
    assert cadm.complete(rh, S_OK) == S_OK
    rec = record(svc_dir)
    assert (rec["RestoreStatus"], rec["Completed"]) == (0, True)
    assert cadm.restore_end(rh) == S_OK
    assert cadm.restore_end(rh) == HR["InvalidHandle"]
    services(ca_set)                                                       # starts again
    assert cadm.online("CA01") == (S_OK, 1)


def test_incremental_registration_through_file(cadm, svc_dir):
    hr, rh = cadm.restore_prepare("\\\\CA01")
    assert hr == S_OK
    assert cadm.register(rh, None, None, [], "C:\\restore", 5, 9, through_file=True) == S_OK
    rec = record(svc_dir)
    assert rec["RegisteredThroughFile"] is True and rec["RestoreMapCount"] == 0 and rec["RestoreMap"] == []
    assert rec["CheckPointFile"] is None and rec["BackupLogDirectory"] == "C:\\restore"
    assert cadm.complete(rh, 0x80004005) == S_OK                           # a failed restore is recorded
    assert record(svc_dir)["RestoreStatus"] == 0x80004005
    assert cadm.restore_end(rh) == S_OK


def test_failed_restore_keeps_the_ca_stopped(cadm, services, ca_set):
    hr, rh = cadm.restore_prepare("CA01")
    assert hr == S_OK
    cadm.register(rh, None, None, [], "/restore", 1, 1)
    cadm.complete(rh, 0x80004005)
    cadm.restore_end(rh)
    assert services(ca_set, wait=False).run_to_exit()[0] == 5


@pytest.mark.usefixtures("svc_dir")
def test_restore_errors(cadm, monkeypatch):
    assert cadm.restore_prepare("CA01", 0)[0] == HR["InvalidParam"]
    assert cadm.restore_prepare("CA01", 0x8 | 1)[0] == HR["InvalidParam"]
    assert cadm.restore_prepare("CA01", 1 | 2)[0] == HR["NotImpl"]         # ONLINE: "not yet supported"
    assert cadm.restore_prepare("CA01", 1 | 4)[0] == HR["NotImpl"]         # CATCHUP
    assert cadm.restore_prepare(None)[0] == HR["InvalidParam"]
    assert cadm.restore_prepare("HOST2") == (HR["AccessDenied"], None)     # local only
    hr, rh = cadm.restore_prepare("CA01")
    assert hr == S_OK
    assert cadm.complete(rh, 0) == HR["Unexpected"]                        # nothing registered yet
    assert cadm.register(rh, "c", "l", [], None, 1, 2) == HR["InvalidParam"]
    assert cadm.register(rh, "c", "l", [], "b", 3, 2) == HR["InvalidParam"]
    assert cadm.lib.CertSrvRestoreRegisterW(rh, None, None, None, 1, None, 0, 0) == HR["InvalidParam"] - (1 << 32)
    assert cadm.locations(rh)[0] == HR["PathNotFound"]                     # this CA never ran here
    assert cadm.end(rh) == HR["InvalidHandle"]                             # a restore context is not a backup one
    assert cadm.restore_end(rh) == S_OK
    monkeypatch.delenv("ESESIM_CERTSVC_DIR")
    assert cadm.restore_prepare("CA01")[0] == HR["PathNotFound"]
