# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ese.backup.run with a service source: source adcs (certadm.dll, the simulated CA service) and source adds
(ntdsbcli.dll, the simulated DC), through the engine host (Engine.Run) as the module calls it."""
import base64
import json
import os
import shutil
import sys
import tempfile

import pytest

from engine_host import BUILD_SIM, run_host

# pytest fixtures are arguments named like the fixtures (some only for their effect: a running service)
# pylint: disable=redefined-outer-name,unused-argument

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "sim", "tests"))

import esesim  # noqa: E402 pylint: disable=wrong-import-position
from certsim import ca, ca_set, services, svc_dir  # noqa: E402,F401 pylint: disable=wrong-import-position,unused-import
import dssim  # noqa: E402 pylint: disable=wrong-import-position

PAGE = 8192
pytestmark = pytest.mark.skipif(not (shutil.which("mcs") and shutil.which("mono")), reason="needs mcs and mono")


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


def adcs(dest, **kw):
    a = {"source": "adcs", "dest": dest, "type": "full"}
    a.update(kw)
    return a


def calls(res):
    return [t["call"] for t in res["trace"]]


def staged(dest):
    return sorted(os.listdir(dest))


def manifest_of(res):
    with open(os.path.join(res["backup_set"], "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def no_set_published(dest):
    """Nothing under dest: no set, no staging folder left behind."""
    return staged(dest) == []


# ---------------------------------------------------------------- AD CS: the chain while the CA keeps running

def test_adcs_full_then_two_incrementals_while_the_ca_runs(ca, ca_set, dest):
    folder = os.path.dirname(ca_set)
    full = run_host("Run", adcs(dest, set_name="full1"))
    assert full["failed_call"] is None and full["invalid"] is None, (full["failed_call"], full["invalid"])
    assert full["backup_valid"] is True and full["recorded_as"] == "full" and full["logs_truncated"] is True
    assert ca.alive()
    seq = calls(full)
    assert seq[0] == "CertSrvIsServerOnlineW" and seq[-1] == "CertSrvBackupEnd"
    # truncation after the last file was read and closed, then End
    assert seq[-2] == "CertSrvBackupTruncateLogs" and seq[-3] == "CertSrvBackupClose"
    assert not [c for c in seq if c.startswith("Jet")]                      # the own instance is not set up
    m = manifest_of(full)
    assert m == full["manifest"] or m["files"] == full["manifest"]["files"]
    src = m["source"]
    assert src["kind"] == "adcs" and src["server"] == "CA01" and src["host"] == "CA01" and src["ca_name"] == "Sim CA"
    assert src["databases"] == [ca_set] and src["base_name"] == "edb" and src["page_size"] == PAGE
    assert [loc["type"] for loc in src["database_locations"]] == ["database", "log_dir", "checkpoint_dir"]
    assert src["database_locations"][0]["path"] == ca_set
    assert src["log_path"] == folder + "/" and src["dynamic_files"] == [] and src["expiry_token"] is None
    assert src["read_hint"] == 4194304 and src["read_size"] == 4194304     # the default buffer as the first hint
    assert m["logs"] == {"gen_low": 3, "gen_high": 3, "base_name": "edb"}
    assert [f["name"] for f in m["files"]] == ["databases/Sim CA.edb", "logs/edb00003.log"]
    db, = m["databases"]
    assert db["source"] == ca_set and db["backup_mark"]["gen_low"] == 3 and db["stream_size"] % PAGE == 0
    assert os.path.getsize(os.path.join(full["backup_set"], "databases", "Sim CA.edb")) == db["stream_size"]
    assert full["proof"]["sequence_complete"] and full["proof"]["header_recorded"]
    assert full["proof"]["headers"][0]["gen_low"] == 3 and full["proof"]["headers"][0]["shadow_matches"]
    with open(os.path.join(full["backup_set"], "ending.json"), encoding="utf-8") as f:
        assert json.load(f)["backup_valid"] is True

    inc1 = run_host("Run", adcs(dest, set_name="inc1", type="incremental"))
    assert inc1["backup_valid"] is True and inc1["recorded_as"] == "incremental", inc1["failed_call"]
    assert "CertSrvBackupGetDatabaseNamesW" not in calls(inc1)
    m1 = manifest_of(inc1)
    assert m1["type"] == "incremental" and m1["databases"] == [] and m1["source"]["ca_name"] == "Sim CA"
    assert m1["logs"]["gen_low"] == 3 and m1["logs"]["gen_high"] == 4
    assert [f["role"] for f in m1["files"]] == ["log", "log"] and not os.path.isdir(
        os.path.join(inc1["backup_set"], "databases"))
    assert [h["generation"] for h in inc1["proof"]["headers"]] == [3, 4]

    inc2 = run_host("Run", adcs(dest, set_name="inc2", type="incremental"))
    assert inc2["backup_valid"] is True, inc2["failed_call"]
    m2 = manifest_of(inc2)
    # each incremental rolls the log once more; the range starts at the checkpoint (truncation keeps it)
    assert m2["logs"]["gen_high"] == 5 and m2["logs"]["gen_low"] <= 4
    assert [f["generation"] for f in m2["files"]] == list(range(m2["logs"]["gen_low"], 6))
    assert ca.alive() and staged(dest) == ["full1", "inc1", "inc2"]
    # a re-run of a published set changes nothing
    again = run_host("Run", adcs(dest, set_name="inc2", type="incremental"))
    assert again["already_exists"] is True and "CertSrvBackupPrepareW" not in calls(again)


def test_adcs_copy_does_not_truncate_and_gives_no_base(ca, ca_set, dest):
    copy = run_host("Run", adcs(dest, set_name="copy1", type="copy"))
    assert copy["backup_valid"] is True and copy["recorded_as"] == "copy" and copy["logs_truncated"] is False
    assert "CertSrvBackupTruncateLogs" not in calls(copy)
    assert copy["ending"]["recorded_as"] == "copy"                          # incrementals cannot follow it
    inc = run_host("Run", adcs(dest, set_name="inc", type="incremental"))
    assert inc["failed_call"]["err"] == -560 and staged(dest) == ["copy1"]


def test_adcs_incremental_without_a_full_is_missing_full_backup(ca, dest):
    res = run_host("Run", adcs(dest, type="incremental"))
    f = res["failed_call"]
    assert f["call"] == "CertSrvBackupPrepareW" and f["err"] == -560
    assert "JET_errMissingFullBackup" in f["detail"] and "take a full backup" in f["detail"]
    assert res["backup_started"] is False and res["ended"] is None and no_set_published(dest)


CERTADM_CALLS = ["CertSrvIsServerOnlineW", "CertSrvBackupPrepareW", "CertSrvRestoreGetDatabaseLocationsW",
                 "CertSrvBackupGetDynamicFileListW", "CertSrvBackupGetDatabaseNamesW", "CertSrvBackupOpenFileW",
                 "CertSrvBackupRead", "CertSrvBackupClose", "CertSrvBackupGetBackupLogsW",
                 "CertSrvBackupTruncateLogs", "CertSrvBackupEnd"]
BEFORE_CONTEXT = ("CertSrvIsServerOnlineW", "CertSrvBackupPrepareW")


@pytest.mark.parametrize("err", [-1022, "0x8007001F"])
@pytest.mark.parametrize("api", CERTADM_CALLS)
def test_an_injected_service_error_at_each_call(services, ca_set, dest, api, err):
    services(ca_set, env={"ESESIM_CERTSVC_FAULTS": json.dumps([{"api": api, "call": 1, "err": err}])})
    res = run_host("Run", adcs(dest, set_name="s"))
    f = res["failed_call"]
    want = -1022 if err == -1022 else 0x8007001F - (1 << 32)
    assert f["call"] == api and f["err"] == want, f
    assert ("hr=0xC80003FE (ESE: -1022 JET_errDiskIO)" if err == -1022 else "hr=0x8007001F") in f["detail"]
    assert res["backup_set"] is None and res.get("backup_valid") is not True
    if api == "CertSrvBackupEnd":
        # End itself failed after the truncation: the staging folder is kept, it holds the only copy of the logs
        assert res["logs_truncated"] is True and res["ended"] is None and staged(dest) == [".s.partial"]
        assert os.path.exists(os.path.join(res["kept_staging"], "kept-logs.json"))
        return
    if api == "CertSrvBackupTruncateLogs":
        # a truncation that failed may still have deleted logs: the staging folder with the copies is kept
        assert res["logs_truncated"] is False and res["ended"] == "abort" and staged(dest) == [".s.partial"]
        assert os.path.exists(os.path.join(res["kept_staging"], "kept-logs.json"))
        return
    assert no_set_published(dest)
    if api == "CertSrvBackupEnd":
        pass
    elif api not in BEFORE_CONTEXT:
        assert res["ended"] == "abort" and calls(res)[-1] == "CertSrvBackupEnd"
        assert "CertSrvBackupTruncateLogs" not in calls(res) or api == "CertSrvBackupTruncateLogs"
    else:
        assert res["ended"] is None and "CertSrvBackupEnd" not in calls(res)
    # the policy names the call and the code readably, a raw HRESULT in hex
    from ansible_collections.ese.backup.plugins.plugin_utils._jet_policy import apply  # pylint: disable=import-outside-toplevel
    out = apply("run", res, False)
    assert out["failed"] is True and api in out["msg"]
    assert ("JET_errDiskIO" if err == -1022 else "0x8007001F") in out["msg"]


def test_a_read_failure_mid_database_ends_the_backup_without_truncating(services, ca_set, dest):
    services(ca_set, env={"ESESIM_CERTSVC_FAULTS": json.dumps([{"api": "CertSrvBackupRead", "call": 2, "err": -1018}])})
    res = run_host("Run", adcs(dest, buffer_size=65536))
    assert res["failed_call"]["call"] == "CertSrvBackupRead" and res["failed_call"]["err"] == -1018
    assert "CertSrvBackupTruncateLogs" not in calls(res) and res["logs_truncated"] is False
    assert calls(res)[-2:] == ["CertSrvBackupClose", "CertSrvBackupEnd"] and res["ended"] == "abort"
    assert no_set_published(dest)


def test_service_not_running(svc_dir, dest):
    res = run_host("Run", adcs(dest))
    f = res["failed_call"]
    assert f["call"] == "CertSrvIsServerOnlineW" and f["err"] == 0x800706BA - (1 << 32)
    assert "RPC_S_SERVER_UNAVAILABLE" in f["detail"] and "not running" in f["detail"]
    assert "Start-Service CertSvc" in f["detail"] and no_set_published(dest)
    from ansible_collections.ese.backup.plugins.plugin_utils._jet_policy import apply  # pylint: disable=import-outside-toplevel
    out = apply("run", res, False)
    assert out["failed"] and "0x800706BA" in out["msg"] and "no backup was started" in out["msg"]
    assert "RPC_S_SERVER_UNAVAILABLE (0x800706BA): the service is not running" in out["msg"]   # the advice names it


def test_service_stopped_mid_backup(services, ca_set, dest):
    services(ca_set, env={"ESESIM_CERTSVC_FAULTS": '[{"api": "CertSrvBackupGetBackupLogsW", "call": 1, "stop": true}]'})
    res = run_host("Run", adcs(dest))
    f = res["failed_call"]
    assert f["call"] == "CertSrvBackupGetBackupLogsW" and "not running" in f["detail"]
    assert res["ended"] == "abort" and no_set_published(dest)


def test_remote_backup_disabled(ca, dest):
    res = run_host("Run", adcs(dest, server="CA01"), env={"COMPUTERNAME": "HOST2"})
    f = res["failed_call"]
    assert f["call"] == "CertSrvBackupPrepareW" and "remote backup is disabled" in f["detail"]
    assert "IF_NOREMOTEICERTADMINBACKUP" in f["detail"] and "run the backup on the CA host" in f["detail"]
    assert no_set_published(dest)


def test_server_defaults_to_this_host(ca, dest):
    res = run_host("Run", adcs(dest, set_name="s"), env={"COMPUTERNAME": "HOST2"})
    # HOST2 runs no CA: the default server is the local host name, not the CA's
    assert res["failed_call"]["call"] == "CertSrvIsServerOnlineW" and "server=HOST2" in res["failed_call"]["detail"]


def test_instance_source_on_the_live_ca_database_names_source_adcs(ca, ca_set, dest):
    folder = os.path.dirname(ca_set)
    res = run_host("Run", {"databases": [ca_set], "log_path": folder, "dest": dest})
    inv = res["invalid"]
    assert inv["option"] == "databases" and "-1032" in inv["msg"]
    assert "'source: adcs'" in inv["msg"] and "Stop-Service CertSvc" in inv["msg"]
    assert res["trace"][-1]["call"] == "JetGetDatabaseFileInfoW" and no_set_published(dest)


# ---------------------------------------------------------------- options

@pytest.mark.parametrize("option,value", [
    ("databases", ["/x/y.edb"]), ("log_path", "/x"), ("system_path", "/x"), ("base_name", "edb"),
    ("page_size", 8192), ("circular_logging", False), ("legacy_file_names", 3), ("instance_name", "x")])
def test_instance_options_are_refused_with_a_service_source(dest, option, value):
    for source in ("adcs", "adds"):
        res = run_host("Run", {"source": source, "dest": dest, option: value})
        inv = res["invalid"]
        assert inv["option"] == option and "not used with source " + source in inv["msg"] and "remove " + option in inv["msg"]
        assert res["trace"] == []


@pytest.mark.parametrize("kind,typ,words", [
    ("adds", "incremental", "VSS"), ("adds", "copy", "wbadmin"), ("adds", "differential", "full backups only"),
    ("adcs", "differential", "use full, copy or incremental"), ("adcs", "logs", "not supported")])
def test_unsupported_types(dest, kind, typ, words):
    inv = run_host("Run", {"source": kind, "dest": dest, "type": typ})["invalid"]
    assert inv["option"] == "type" and words in inv["msg"]


@pytest.mark.parametrize("size", [100000, 32768, 8192 * 5])
def test_buffer_size_must_fit_the_service_reads(dest, size):
    inv = run_host("Run", adcs(dest, buffer_size=size))["invalid"]
    assert inv["option"] == "buffer_size" and "multiple of 32768" in inv["msg"]


def test_source_and_server_validation(dest, tmp_path):
    inv = run_host("Run", {"source": "vss", "dest": dest})["invalid"]
    assert inv["option"] == "source" and "instance" in inv["msg"] and "adcs" in inv["msg"]
    inv = run_host("Run", {"source": "instance", "dest": dest, "server": "CA01", "databases": ["/x.edb"],
                           "log_path": str(tmp_path)})["invalid"]
    assert inv["option"] == "server" and "remove server" in inv["msg"]
    inv = run_host("Run", {"dest": dest})["invalid"]                     # source instance: as before
    assert inv["option"] == "databases" and "databases is required" in inv["msg"]
    inv = run_host("Run", adcs(dest, server=" "))["invalid"]
    assert inv["option"] == "server"


def test_check_mode_does_not_contact_the_service(svc_dir, dest):
    res = run_host("Run", adcs(dest, set_name="s"), check_mode=True)
    c = res["check"]
    assert res["invalid"] is None and res["failed_call"] is None and res["trace"] == []
    assert c["source"] == "adcs" and c["server"] == "CA01" and c["would_create"] == os.path.join(dest, "s")
    assert c["would_truncate_logs"] is True and no_set_published(dest)


def test_dest_inside_the_service_folders_is_refused(ca, ca_set):
    inside = os.path.join(os.path.dirname(ca_set), "backups")
    os.mkdir(inside)
    res = run_host("Run", adcs(inside))
    assert res["invalid"]["option"] == "dest" and "where the service keeps" in res["invalid"]["msg"]
    assert res["ended"] == "abort" and calls(res)[-1] == "CertSrvBackupEnd" and os.listdir(inside) == []


# ---------------------------------------------------------------- AD DS (ntdsbcli.dll)

@pytest.fixture
def dc_dir(monkeypatch):
    """The DC service directory (short, for AF_UNIX); this process is DC01."""
    d = tempfile.mkdtemp(prefix="ds", dir="/tmp")
    monkeypatch.setenv("ESESIM_NTDS_DIR", d)
    monkeypatch.setenv("COMPUTERNAME", "DC01")
    monkeypatch.delenv("ESESIM_NTDS_NO_ENDPOINT", raising=False)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def ntds_set(jet, tmp_path):
    db = jet.create_set(str(tmp_path / "NTDS"), base="edb", database="ntds.dit", page_size=8192, records=500,
                        log_kb=128)
    jet.lib.EseSimReset()
    return db


@pytest.fixture
def dc(dc_dir, ntds_set):
    svc = dssim.Service(dc_dir, ntds_set, "DC01").start()
    yield svc
    svc.stop()


def test_adds_full_keeps_the_expiry_token(dc, ntds_set, dest):
    res = run_host("Run", {"source": "adds", "dest": dest, "set_name": "dc"})
    assert res["backup_valid"] is True and res["recorded_as"] == "full", (res["failed_call"], res["invalid"])
    m = manifest_of(res)
    src = m["source"]
    assert src["kind"] == "adds" and src["server"] == "DC01" and src["ca_name"] is None
    assert src["databases"] == [ntds_set] and src["dynamic_files"] == []
    token = base64.b64decode(src["expiry_token"])
    version, days, _when = dssim.parse_token(token)
    assert version == 1 and days > 0
    assert [f["name"] for f in m["files"]][0] == "databases/ntds.dit"
    assert "DsBackupTruncateLogs" in calls(res) and calls(res)[-1] == "DsBackupEnd"
    assert src["read_hint"] == 4194304 and src["read_rule"]["multiple"] == 8192
    assert dc.alive()


def test_adds_where_the_dll_does_not_answer_names_vss(dc_dir, ntds_set, dest):
    svc = dssim.Service(dc_dir, ntds_set, "DC01").start()
    try:
        res = run_host("Run", {"source": "adds", "dest": dest}, env={"ESESIM_NTDS_NO_ENDPOINT": "1"})
    finally:
        svc.stop()
    f = res["failed_call"]
    assert f["call"] == "DsIsNTDSOnlineW" and "VSS" in f["detail"] and "wbadmin start systemstatebackup" in f["detail"]
    assert no_set_published(dest)


def test_instance_source_on_the_live_ntds_names_source_adds(dc, ntds_set, dest):
    res = run_host("Run", {"databases": [ntds_set], "log_path": os.path.dirname(ntds_set), "dest": dest})
    inv = res["invalid"]
    assert inv["option"] == "databases" and "'source: adds'" in inv["msg"] and "Stop-Service NTDS" in inv["msg"]
