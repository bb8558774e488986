# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ese.backup.restore of sets taken with source adcs (Restore.Run through the engine host) against the simulated
CA (tests/sim/certadm): the restore certutil -restoreDB registers with the CA stopped (RestorePrepare ->
RegisterThroughFile -> RegisterComplete -> RestoreEnd, recorded by the simulated certadm.dll in
<ESESIM_CERTSVC_DIR>/ca01.restore.json), the refusals, drills of an adcs chain, and the AD DS refusal."""
import hashlib
import json
import os
import shutil
import sys
import tempfile

import pytest

from engine_host import run_host

# pytest fixtures are arguments named like the fixtures (some only for their effect: a running service)
# pylint: disable=redefined-outer-name,unused-argument

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "sim", "tests"))

import esesim  # noqa: E402 pylint: disable=wrong-import-position
from certsim import ca_set, services, svc_dir  # noqa: E402,F401 pylint: disable=wrong-import-position,unused-import
import dssim  # noqa: E402 pylint: disable=wrong-import-position

pytestmark = pytest.mark.skipif(not (shutil.which("mcs") and shutil.which("mono")), reason="needs mcs and mono")

DSRM = ("restoring AD DS needs Directory Services Restore Mode (DSRM); ese.backup does not restore ntds.dit: "
        "use wbadmin / ntdsutil in DSRM")
REGISTER = ["CertSrvIsServerOnlineW", "CertSrvRestorePrepareW", "CertSrvRestoreGetDatabaseLocationsW",
            "CertSrvRestoreRegisterThroughFile", "CertSrvRestoreRegisterComplete", "CertSrvRestoreEnd"]


@pytest.fixture(scope="module")
def lib():
    return esesim.load_lib()


@pytest.fixture
def jet(lib, monkeypatch):
    """The esent simulator reset around a test, for certsim's ca_set."""
    for var in ("ESESIM_FAULTS", "ESESIM_PROFILE", "ESESIM_DISK_FREE"):
        monkeypatch.delenv(var, raising=False)
    lib.EseSimReset()
    yield esesim.Jet(lib)
    lib.EseSimReset()


@pytest.fixture
def dest(tmp_path):
    d = tmp_path / "dest"
    d.mkdir()
    return str(d)


def backup(dest, name, typ):
    res = run_host("Run", {"source": "adcs", "dest": dest, "type": typ, "set_name": name})
    assert res["backup_valid"] is True, (res["failed_call"], res["invalid"])
    return res["backup_set"]


@pytest.fixture
def chain(services, ca_set, dest):
    """A full and two incrementals of the running CA, then the CA stopped: (service, [full, inc1, inc2])."""
    svc = services(ca_set)
    sets = [backup(dest, "full", "full"), backup(dest, "inc1", "incremental"), backup(dest, "inc2", "incremental")]
    return svc, sets


def restore(sets, **kw):
    args = {"backup_set": sets[0], "incrementals": list(sets[1:])}
    args.update(kw)
    return run_host("Restore.Run", args, check_mode=args.pop("check_mode", False))


def calls(res):
    return [t["call"] for t in res["trace"] if t["call"].startswith("CertSrv")]


def record_path(svc_dir):
    return os.path.join(svc_dir, "ca01.restore.json")


def record(svc_dir):
    with open(record_path(svc_dir), encoding="utf-8") as f:
        return json.load(f)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def manifest(set_dir):
    with open(os.path.join(set_dir, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def test_a_chain_is_registered_with_the_stopped_ca(chain, ca_set, svc_dir, services):
    svc, sets = chain
    folder = os.path.dirname(ca_set)
    live = sha(ca_set)
    # While the CA runs: refused before anything is written, after asking the CA.
    res = restore(sets, to_original_paths=True, force=True)
    assert res["refused"]["problem"] == "service_running", res["refused"]
    assert "CertSrvIsServerOnlineW" in res["refused"]["msg"] and "Stop-Service CertSvc" in res["refused"]["msg"]
    assert calls(res) == ["CertSrvIsServerOnlineW"] and res["written"] == []
    assert sha(ca_set) == live and not os.path.exists(record_path(svc_dir))
    assert not os.path.exists(os.path.join(folder, "ese-backup-restore"))
    svc.stop()
    # Stopped: the CA's database is there, so force is needed, as for any restore.
    res = restore(sets, to_original_paths=True)
    assert res["refused"]["problem"] == "target_exists" and ca_set in res["refused"]["msg"]
    assert not os.path.exists(record_path(svc_dir))
    res = restore(sets, to_original_paths=True, force=True)
    assert res["failed_call"] is None and res["refused"] is None and res["invalid"] is None, res["failed_call"]
    assert calls(res) == REGISTER
    m = manifest(sets[0])
    db, = m["databases"]
    assert sha(ca_set) == sha(os.path.join(sets[0], db["file"]))            # the streamed copy, replayed at start
    staging = os.path.join(folder, "ese-backup-restore")
    assert sorted(os.listdir(staging)) == ["edb%05X.log" % g for g in range(3, 6)]
    for s in sets:
        for f in manifest(s)["files"]:
            if f["role"] == "log":
                assert sha(os.path.join(staging, os.path.basename(f["name"]))) == f["sha256"]
    rec = record(svc_dir)
    assert rec == {
        "Server": "ca01", "CheckPointFile": folder + "/", "LogPath": folder + "/", "BackupLogDirectory": staging + "/",
        "LowLogNumber": 3, "HighLogNumber": 5, "RestoreMapCount": 1,
        "RestoreMap": [{"DatabaseName": ca_set, "NewDatabaseName": ca_set}],
        "RegisteredThroughFile": True, "RestoreStatus": 0, "Completed": True}
    reg = res["registration"]
    assert reg["registered"] and reg["completed"] and reg["status"] == "0x00000000"
    assert (reg["gen_low"], reg["gen_high"]) == (3, 5) and reg["backup_log_path"] == staging + "/"
    assert "replays log generations 3-5" in reg["next"] and "take a new full backup" in reg["next"]
    assert [r["path"] for r in res["restored"]] == [ca_set]
    assert sorted(res["written"]) == sorted([ca_set] + [os.path.join(staging, n) for n in os.listdir(staging)])
    assert not os.path.exists(ca_set + ".before-restore")
    # Completed with S_OK, the registration no longer blocks the start (exit 5). A real CA runs the restore at its
    # start; the simulated one does not, so it finds the streamed copy and stops with -544, as esent would.
    code, err = services(ca_set, wait=False).run_to_exit()
    assert code == 3 and "-544" in err, (code, err)


def test_restore_map_and_log_path_are_what_is_registered(chain, tmp_path, svc_dir):
    svc, sets = chain
    svc.stop()
    target, logs = str(tmp_path / "new" / "CA.edb"), str(tmp_path / "newlogs")
    src = manifest(sets[0])["databases"][0]["source"]
    res = restore(sets[:2], restore_map=[{"source": src, "target": target}], log_path=logs)
    assert res["failed_call"] is None and res["refused"] is None, (res["failed_call"], res["refused"])
    rec = record(svc_dir)
    assert rec["RestoreMap"] == [{"DatabaseName": src, "NewDatabaseName": target}]
    assert rec["LogPath"] == logs + "/" and rec["CheckPointFile"] == logs + "/"
    assert rec["BackupLogDirectory"] == logs + "/ese-backup-restore/"
    assert (rec["LowLogNumber"], rec["HighLogNumber"]) == (3, 4) and rec["Completed"] is True
    # The CA's configuration names another database file: said, not refused.
    assert any("CertSrvRestoreGetDatabaseLocationsW" in w and target in w for w in res["warnings"]), res["warnings"]
    assert os.path.isfile(target)


def test_the_folder_of_the_restored_logs_must_not_hold_them_already(chain, tmp_path, svc_dir):
    svc, sets = chain
    svc.stop()
    logs = tmp_path / "logs"
    (logs / "ese-backup-restore").mkdir(parents=True)
    (logs / "ese-backup-restore" / "edb00003.log").write_bytes(b"old")
    src = manifest(sets[0])["databases"][0]["source"]
    res = restore(sets[:1], restore_map=[{"source": src, "target": str(tmp_path / "t.edb")}], log_path=str(logs))
    assert res["refused"]["problem"] == "target_exists" and "edb00003.log" in res["refused"]["msg"]
    assert not os.path.exists(record_path(svc_dir)) and not os.path.exists(tmp_path / "t.edb")


def test_check_mode_registers_nothing(chain, ca_set, svc_dir):
    svc, sets = chain
    svc.stop()
    before = sha(ca_set)
    res = restore(sets, to_original_paths=True, force=True, check_mode=True)
    assert res["failed_call"] is None and res["refused"] is None
    assert calls(res) == ["CertSrvIsServerOnlineW"]
    assert res["check"]["gen_low"] == 3 and res["check"]["gen_high"] == 5
    assert res["check"]["would_replace"] == [ca_set]
    assert res["registration"]["registered"] is False and res["registration"]["gen_high"] == 5
    assert sha(ca_set) == before and not os.path.exists(record_path(svc_dir))


def test_a_failure_after_restore_prepare_ends_the_restore_and_undoes_the_copies(chain, tmp_path, svc_dir, ca_set,
                                                                                 services):
    svc, sets = chain
    svc.stop()
    target = tmp_path / "adir"
    target.mkdir()                          # a folder where the database would go: the copy fails
    src = manifest(sets[0])["databases"][0]["source"]
    res = restore(sets, restore_map=[{"source": src, "target": str(target)}], log_path=str(tmp_path / "logs"))
    assert res["failed_call"] is not None and res["refused"] is None, res
    assert calls(res) == ["CertSrvIsServerOnlineW", "CertSrvRestorePrepareW", "CertSrvRestoreGetDatabaseLocationsW",
                          "CertSrvRestoreEnd"]
    assert not os.path.exists(record_path(svc_dir))                       # nothing was registered
    assert res["registration"]["registered"] is False
    assert any("nothing was registered" in w for w in res["warnings"])
    assert not os.path.exists(tmp_path / "logs")                          # the folders it made are gone
    assert target.is_dir()
    assert services(ca_set).alive()                                       # the CA starts with what it had


def test_restore_prepare_failure_writes_nothing(chain, tmp_path):
    svc, sets = chain
    svc.stop()
    src = manifest(sets[0])["databases"][0]["source"]
    args = {"backup_set": sets[0], "incrementals": sets[1:], "log_path": str(tmp_path / "l"),
            "restore_map": [{"source": src, "target": str(tmp_path / "t.edb")}]}
    res = run_host("Restore.Run", args, env={"ESESIM_CERTSVC_DIR": ""})   # no CA configured on this host
    f = res["failed_call"]
    assert f["call"] == "CertSrvRestorePrepareW" and "0x80070003" in f["detail"], f
    assert calls(res)[-1] == "CertSrvRestorePrepareW"
    assert not os.path.exists(tmp_path / "t.edb") and not os.path.exists(tmp_path / "l")


def test_a_drill_of_the_adcs_chain_passes(chain, tmp_path):
    svc, sets = chain
    res = restore(sets, drill=True, scratch=str(tmp_path))                # the CA may run: scratch only
    report = res["drill_report"]
    assert res["failed_call"] is None and report["passed"] is True, (res["failed_call"], report)
    assert (report["gen_low"], report["gen_high"]) == (3, 5) and report["scratch_removed"]
    assert {c["check"] for c in report["checks"]} == {"attach_read_only", "clean_shutdown", "log_generation",
                                                      "page_checksums"}
    assert not calls(res) and svc.alive()


def test_a_chain_of_mixed_sources_is_refused(chain, tmp_path, dest):
    svc, sets = chain
    svc.stop()
    inc = os.path.join(dest, "inc1")
    m = manifest(inc)
    m["source"]["kind"] = "instance"
    with open(os.path.join(inc, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(m, f)
    res = restore(sets[:2], drill=True, scratch=str(tmp_path))
    r = res["refused"] or {}
    assert r.get("problem") == "chain_broken" and "source instance" in r["msg"], res["refused"]


# ---------------------------------------------------------------- AD DS: out of scope (DSRM)

@pytest.fixture
def dc_dir(monkeypatch):
    d = tempfile.mkdtemp(prefix="ds", dir="/tmp")
    monkeypatch.setenv("ESESIM_NTDS_DIR", d)
    monkeypatch.setenv("COMPUTERNAME", "DC01")
    monkeypatch.delenv("ESESIM_NTDS_NO_ENDPOINT", raising=False)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_an_adds_set_is_refused_naming_dsrm_and_drills(jet, dc_dir, tmp_path, dest):
    ntds = jet.create_set(str(tmp_path / "NTDS"), base="edb", database="ntds.dit", page_size=8192, records=500,
                          log_kb=128)
    jet.lib.EseSimReset()
    svc = dssim.Service(dc_dir, ntds, "DC01").start()
    try:
        res = run_host("Run", {"source": "adds", "dest": dest, "set_name": "dc"})
        assert res["backup_valid"] is True, res["failed_call"]
    finally:
        svc.stop()
    before = sha(ntds)
    full = os.path.join(dest, "dc")
    out = str(tmp_path / "out")
    for kw in ({"to_original_paths": True, "force": True},
               {"restore_map": [{"source": ntds, "target": out + "/ntds.dit"}], "log_path": out}):
        res = restore([full], **kw)
        assert res["refused"]["problem"] == "needs_dsrm", res["refused"]
        assert res["refused"]["msg"].startswith(DSRM)
        assert res["written"] == [] and not [t for t in res["trace"] if t["call"].startswith("Jet")]
    assert sha(ntds) == before and not os.path.exists(out)
    res = restore([full], drill=True, scratch=str(tmp_path))               # a drill only checks it, in scratch
    assert res["drill_report"]["passed"] is True, (res["failed_call"], res["drill_report"])
