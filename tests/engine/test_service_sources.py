# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's service sources (plugins/module_utils/_EseServices.cs): CertAdmSource against the simulated CA
service (tests/sim/certadm) and NtdsBcliSource against the simulated ntdsbcli.dll when it is built, driven
through a small C# harness compiled with mcs together with the engine's files and run under Mono."""
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

# pytest fixtures are arguments named like the fixtures (some only for their effect: a running service)
# pylint: disable=redefined-outer-name,unused-argument,too-many-locals

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "sim", "tests"))

import esesim  # noqa: E402 pylint: disable=wrong-import-position
from certsim import (  # noqa: E402,F401 pylint: disable=wrong-import-position,unused-import
    FULL, HR, S_OK, ca, ca_set, cadm, services, svc_dir)

try:
    import dssim  # pylint: disable=wrong-import-position
except ImportError:  # the ntdsbcli.dll simulator's helpers are not there
    dssim = None

BUILD_SIM = os.path.join(ROOT, "build", "sim")
NTDSBCLI = os.path.join(BUILD_SIM, "libntdsbcli.so")
PAGE = 8192

pytestmark = pytest.mark.skipif(not (shutil.which("mcs") and shutil.which("mono")), reason="needs mcs and mono")

HARNESS = r"""
using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using ansible_collections.ese.backup.plugins.module_utils._EseNative;
using ansible_collections.ese.backup.plugins.module_utils._EseHost;
using ansible_collections.ese.backup.plugins.module_utils._EseServices;

// args: kind (adcs|adds) server out_dir step... ; a step: full, full-keep (no truncation), inc, probe.
// Prints one JSON list: per step {step, ok, failed_call, databases, logs, files {name: {size, copy}}, facts, trace}.
static class Harness
{
    static IBackupSource Make(string kind, string server, Trace trace)
    {
        if (kind == "adcs") return new CertAdmSource(trace, server, null);
        return new NtdsBcliSource(trace, server);
    }

    // HARNESS_CB: the buffer size handed to Read (default 1 MiB); the OpenFile hint is that size fitted to the rule.
    static void Copy(IBackupSource src, string name, string dir, Dictionary<string, object> files)
    {
        string env = Environment.GetEnvironmentVariable("HARNESS_CB");
        uint cb = string.IsNullOrEmpty(env) ? 1u << 20 : uint.Parse(env);
        uint hint = src.ReadRule.Fit(cb);
        if (hint > 0) src.ReadHint = hint;
        long size = src.OpenFile(name);
        IntPtr buf = Marshal.AllocHGlobal((int)cb);
        string copy = Path.Combine(dir, Path.GetFileName(name.Replace('\\', '/')));
        long total = 0;
        try
        {
            using (FileStream fs = new FileStream(copy, FileMode.Create, FileAccess.Write))
            {
                byte[] managed = new byte[cb];
                while (true)
                {
                    uint got = src.Read(buf, cb);
                    if (got == 0) break;
                    Marshal.Copy(buf, managed, 0, (int)got);
                    fs.Write(managed, 0, (int)got);
                    total += got;
                }
            }
        }
        finally { Marshal.FreeHGlobal(buf); }
        if (total != size) throw new JetFailure("Harness", -1003, name + ": read " + total + " of " + size);
        src.Close();
        Dictionary<string, object> f = new Dictionary<string, object>();
        f["size"] = size; f["copy"] = copy;
        files[name] = f;
    }

    static Dictionary<string, object> Step(string kind, string server, string dir, string step)
    {
        Trace trace = new Trace();
        Dictionary<string, object> r = new Dictionary<string, object>();
        r["step"] = step;
        Directory.CreateDirectory(dir);
        IBackupSource src = Make(kind, server, trace);
        Dictionary<string, object> files = new Dictionary<string, object>();
        try
        {
            if (step == "probe")
            {
                r["probe"] = NtdsBcliSource.Probe(trace, server);
            }
            else
            {
                bool inc = step == "inc";
                src.Begin(inc);
                List<object> dbs = new List<object>();
                if (!inc)
                    foreach (string d in src.DatabaseNames()) { dbs.Add(d); Copy(src, d, dir, files); }
                List<object> logs = new List<object>();
                foreach (string l in src.LogNames()) { logs.Add(l); Copy(src, l, dir, files); }
                if (step != "full-keep") src.Truncate();
                src.End(true);
                r["databases"] = dbs; r["logs"] = logs;
            }
            r["ok"] = true;
        }
        catch (JetFailure f)
        {
            src.End(false);
            r["ok"] = false;
            r["failed_call"] = f.ToDict();
        }
        r["files"] = files;
        r["facts"] = src.Facts();
        r["trace"] = trace.Snapshot();
        return r;
    }

    static int Main(string[] args)
    {
        List<object> all = new List<object>();
        for (int i = 3; i < args.Length; i++)
            all.Add(Step(args[0], args[1], Path.Combine(args[2], i.ToString() + "-" + args[i]), args[i]));
        Console.WriteLine(Json.Write(all, false));
        return 0;
    }
}
"""


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """The harness, compiled once with every plugins/module_utils/*.cs (C# 5, warnings are errors)."""
    subprocess.run(["make", "-s", "sim"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    d = tmp_path_factory.mktemp("harness")
    cs, exe = d / "Harness.cs", d / "Harness.exe"
    cs.write_text(HARNESS)
    sources = sorted(glob.glob(os.path.join(ROOT, "plugins", "module_utils", "*.cs")))
    res = subprocess.run(["mcs", "-langversion:5", "-nologo", "-warnaserror+", "-out:" + str(exe), str(cs)] + sources,
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    return str(exe)


@pytest.fixture(scope="module")
def lib():
    return esesim.load_lib()


@pytest.fixture
def jet(lib, monkeypatch):
    """The esent simulator reset around a test (as tests/sim/tests/conftest.py does), for certsim's ca_set."""
    for var in ("ESESIM_FAULTS", "ESESIM_PROFILE", "ESESIM_DISK_FREE"):
        monkeypatch.delenv(var, raising=False)
    lib.EseSimReset()
    yield esesim.Jet(lib)
    lib.EseSimReset()


def run(harness, tmp_path, kind, server, *steps, env=None):
    e = dict(os.environ, LD_LIBRARY_PATH=BUILD_SIM)
    e.pop("ESESIM_FAULTS", None)
    e.update(env or {})
    res = subprocess.run(["mono", harness, kind, server, str(tmp_path / "out")] + list(steps), env=e,
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)


def calls(step):
    return [t["call"] for t in step["trace"]]


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------- certadm.dll (AD CS)

def test_full_backup_is_read_byte_exact(harness, tmp_path, ca, ca_set):
    folder = os.path.dirname(ca_set)
    with open(ca_set, "rb") as f:
        disk = f.read()
    log = os.path.join(folder, "edb00003.log")
    step, = run(harness, tmp_path, "adcs", "CA01", "full-keep")
    assert step["ok"], step.get("failed_call")
    assert step["databases"] == [ca_set] and step["logs"] == [log]          # CSBFT prefixes stripped
    db = step["files"][ca_set]
    with open(db["copy"], "rb") as f:
        stream = f.read()
    assert db["size"] == len(stream) == len(disk) + PAGE                    # the ESE stream: pages + trailer
    assert stream[2 * PAGE:len(disk)] == disk[2 * PAGE:]                     # every page as on disk
    assert stream[:PAGE] == stream[PAGE:2 * PAGE]                            # the header and its shadow
    assert step["files"][log]["size"] == 128 * 1024 and sha(step["files"][log]["copy"]) == sha(log)
    assert calls(step) == [
        "CertSrvIsServerOnlineW", "CertSrvBackupPrepareW", "CertSrvRestoreGetDatabaseLocationsW",
        "CertSrvBackupGetDynamicFileListW", "CertSrvBackupGetDatabaseNamesW", "CertSrvBackupOpenFileW",
        "CertSrvBackupRead", "CertSrvBackupClose", "CertSrvBackupGetBackupLogsW", "CertSrvBackupOpenFileW",
        "CertSrvBackupRead", "CertSrvBackupClose", "CertSrvBackupEnd"]
    assert all(t["err"] == 0 and "hr=0x00000000" in t["detail"]
               for t in step["trace"] if t["call"] != "CertSrvBackupRead")
    facts = step["facts"]
    assert facts["kind"] == "adcs" and facts["server"] == "CA01" and facts["ca_name"] == "Sim CA"
    assert facts["database_locations"] == [
        {"type": "database", "path": ca_set, "code": 0x44}, {"type": "log_dir", "path": folder + "/", "code": 0x82},
        {"type": "checkpoint_dir", "path": folder + "/", "code": 0x83}]
    assert facts["dynamic_files"] == [] and facts["read_size"] == 1 << 20  # the 1 MiB hint, a power of 2


def test_incremental_after_full(harness, tmp_path, ca, ca_set):
    folder = os.path.dirname(ca_set)
    full, inc = run(harness, tmp_path, "adcs", "CA01", "full", "inc")
    assert full["ok"] and inc["ok"], (full.get("failed_call"), inc.get("failed_call"))
    assert "CertSrvBackupTruncateLogs" in calls(full)
    assert "CertSrvBackupGetDatabaseNamesW" not in calls(inc) and inc["databases"] == []
    assert [os.path.basename(n) for n in inc["logs"]] == ["edb00003.log", "edb00004.log"]
    for name in inc["logs"]:
        assert sha(inc["files"][name]["copy"]) == sha(os.path.join(folder, os.path.basename(name)))
    prepare = [t for t in inc["trace"] if t["call"] == "CertSrvBackupPrepareW"][0]
    assert "CSBACKUP_TYPE_LOGS_ONLY" in prepare["detail"] and inc["facts"]["incremental"] is True


def test_incremental_without_a_full_backup_is_missing_full_backup(harness, tmp_path, ca):
    step, = run(harness, tmp_path, "adcs", "CA01", "inc")
    f = step["failed_call"]
    assert f["call"] == "CertSrvBackupPrepareW" and f["err"] == -560
    assert "0xC8000230 (ESE: -560 JET_errMissingFullBackup)" in f["detail"] and "take a full backup" in f["detail"]
    assert calls(step)[-1] == "CertSrvBackupPrepareW"                       # no End without a context


def test_copy_backup_gives_no_base_for_an_incremental(harness, tmp_path, ca):
    full, inc = run(harness, tmp_path, "adcs", "CA01", "full-keep", "inc")
    assert full["ok"] and inc["failed_call"]["err"] == -560


CALLS = ["CertSrvIsServerOnlineW", "CertSrvBackupPrepareW", "CertSrvRestoreGetDatabaseLocationsW",
         "CertSrvBackupGetDynamicFileListW", "CertSrvBackupGetDatabaseNamesW", "CertSrvBackupOpenFileW",
         "CertSrvBackupRead", "CertSrvBackupClose", "CertSrvBackupGetBackupLogsW", "CertSrvBackupTruncateLogs",
         "CertSrvBackupEnd"]


@pytest.mark.parametrize("api", CALLS)
def test_an_injected_ese_error_names_the_call(harness, tmp_path, services, ca_set, api):
    services(ca_set, env={"ESESIM_CERTSVC_FAULTS": json.dumps([{"api": api, "call": 1, "err": -1022}])})
    step, = run(harness, tmp_path, "adcs", "CA01", "full")
    f = step["failed_call"]
    assert not step["ok"] and f["call"] == api and f["err"] == -1022, f
    assert "hr=0xC80003FE (ESE: -1022 JET_errDiskIO)" in f["detail"]
    failed = [t for t in step["trace"] if t["call"] == api and t["err"] == -1022]
    assert failed, step["trace"]
    if api not in ("CertSrvIsServerOnlineW", "CertSrvBackupPrepareW", "CertSrvBackupEnd"):
        assert calls(step)[-1] == "CertSrvBackupEnd"                         # End(false) after a prepared failure


@pytest.mark.parametrize("api", ["CertSrvBackupPrepareW", "CertSrvBackupRead", "CertSrvBackupGetBackupLogsW"])
def test_an_injected_win32_hresult_is_kept_raw(harness, tmp_path, services, ca_set, api):
    services(ca_set, env={"ESESIM_CERTSVC_FAULTS": json.dumps([{"api": api, "call": 1, "err": "0x8007001F"}])})
    step, = run(harness, tmp_path, "adcs", "CA01", "full")
    f = step["failed_call"]
    assert f["call"] == api and f["err"] == 0x8007001F - (1 << 32) and "hr=0x8007001F" in f["detail"]


def test_service_not_running(harness, tmp_path, svc_dir):
    step, = run(harness, tmp_path, "adcs", "CA01", "full", env={"ESESIM_CERTSVC_DIR": svc_dir, "COMPUTERNAME": "CA01"})
    f = step["failed_call"]
    assert f["call"] == "CertSrvIsServerOnlineW" and f["err"] == HR["RpcUnavailable"] - (1 << 32)
    assert "0x800706BA (RPC_S_SERVER_UNAVAILABLE)" in f["detail"] and "not running" in f["detail"]
    assert "Start-Service CertSvc" in f["detail"]


def test_service_stopped_mid_backup(harness, tmp_path, services, ca_set):
    services(ca_set, env={"ESESIM_CERTSVC_FAULTS": '[{"api": "CertSrvBackupRead", "call": 1, "stop": true}]'})
    step, = run(harness, tmp_path, "adcs", "CA01", "full")
    f = step["failed_call"]
    assert f["call"] == "CertSrvBackupRead" and "RPC_S_SERVER_UNAVAILABLE" in f["detail"]
    assert "not running" in f["detail"]
    assert calls(step)[-2:] == ["CertSrvBackupClose", "CertSrvBackupEnd"]   # best effort after the failure


def test_paused_ca(harness, tmp_path, services, ca_set):
    services(ca_set, args=["--paused"])
    step, = run(harness, tmp_path, "adcs", "CA01", "full")
    f = step["failed_call"]
    assert f["call"] == "CertSrvIsServerOnlineW" and "paused" in f["detail"] and "online=FALSE" in f["detail"]
    assert "CertSrvBackupPrepareW" not in calls(step)


def test_remote_backup_disabled(harness, tmp_path, services, ca_set):
    services(ca_set)                                                        # IF_DEFAULT 0x641
    step, = run(harness, tmp_path, "adcs", "CA01", "full", env={"COMPUTERNAME": "HOST2"})
    f = step["failed_call"]
    assert f["call"] == "CertSrvBackupPrepareW" and "0x80070005 (E_ACCESSDENIED)" in f["detail"]
    assert "remote backup is disabled" in f["detail"] and "IF_NOREMOTEICERTADMINBACKUP" in f["detail"]
    assert "this host is HOST2" in f["detail"]


def test_remote_backup_allowed_by_the_interface_flags(harness, tmp_path, services, ca_set):
    services(ca_set, args=["--interface-flags", "0x601"])
    step, = run(harness, tmp_path, "adcs", "CA01", "full", env={"COMPUTERNAME": "HOST2"})
    assert step["ok"] and step["databases"] == [ca_set]


def test_local_access_denied_is_not_called_remote(harness, tmp_path, services, ca_set):
    services(ca_set, args=["--interface-flags", "0x6c1"])                  # IF_NOLOCALICERTADMINBACKUP
    f = run(harness, tmp_path, "adcs", "CA01", "full")[0]["failed_call"]
    assert "SeBackupPrivilege" in f["detail"] and "IF_NOLOCALICERTADMINBACKUP" in f["detail"]
    assert "remote backup is disabled" not in f["detail"]


def test_dynamic_files_are_reported(harness, tmp_path, services, ca_set):
    crl = str(tmp_path / "Sim CA.crl")
    with open(crl, "wb") as f:
        f.write(b"crl")
    services(ca_set, args=["--dynamic", crl])
    step, = run(harness, tmp_path, "adcs", "CA01", "full")
    assert step["ok"] and step["facts"]["dynamic_files"] == [crl] and crl not in step["files"]


# ---------------------------------------------------------------- ntdsbcli.dll (AD DS)

needs_ntdsbcli = pytest.mark.skipif(dssim is None or not os.path.exists(NTDSBCLI),
                                    reason="the ntdsbcli.dll simulator (build/sim/libntdsbcli.so, "
                                           "tests/sim/tests/dssim.py) is not built")


def test_probe_without_ntdsbcli_names_vss(harness, tmp_path):
    """Holds on any host: an empty library path has no ntdsbcli.dll."""
    empty = tmp_path / "empty"
    empty.mkdir()
    probe, full = run(harness, tmp_path, "adds", "DC01", "probe", "full", env={"LD_LIBRARY_PATH": str(empty)})
    f = probe["failed_call"]
    assert f["call"] == "ntdsbcli.dll" and "cannot be loaded" in f["detail"]
    assert "wbadmin start systemstatebackup" in f["detail"]
    f = full["failed_call"]
    assert f["call"] == "ntdsbcli.dll" and "DsIsNTDSOnlineW" in f["detail"] and "wbadmin" in f["detail"]


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
    """An ntds.dit set made through the esent simulator: 8 KiB pages, 128 KB logs, three generations."""
    db = jet.create_set(str(tmp_path / "NTDS"), base="edb", database="ntds.dit", page_size=8192, records=500,
                        log_kb=128)
    jet.lib.EseSimReset()
    return db


@pytest.fixture
def dcs(dc_dir):
    """start(db, args=(), env=None) -> a running simulated DC (dssim.Service); stopped at the end."""
    started = []

    def start(db, args=(), env=None):
        svc = dssim.Service(dc_dir, db, "DC01", args, env)
        started.append(svc)
        return svc.start()
    yield start
    for svc in started:
        svc.stop()


@needs_ntdsbcli
def test_ntdsbcli_probe_and_full_backup_byte_exact(harness, tmp_path, dcs, ntds_set):
    folder = os.path.dirname(ntds_set)
    with open(ntds_set, "rb") as f:
        disk = f.read()
    dcs(ntds_set)
    probe, full = run(harness, tmp_path, "adds", "DC01", "probe", "full-keep", env={"HARNESS_CB": "100000"})
    assert probe["ok"] and probe["probe"]["online"] is True and probe["probe"]["exports"] is True, probe
    assert full["ok"], full.get("failed_call")
    log = os.path.join(folder, "edb00003.log")
    assert full["databases"] == [ntds_set] and full["logs"] == [log]          # BFT prefixes stripped
    db = full["files"][ntds_set]
    with open(db["copy"], "rb") as f:
        stream = f.read()
    assert db["size"] == len(stream) == len(disk) + PAGE
    assert stream[2 * PAGE:len(disk)] == disk[2 * PAGE:] and stream[:PAGE] == stream[PAGE:2 * PAGE]
    assert sha(full["files"][log]["copy"]) == sha(log)
    version, days, when = dssim.parse_token(bytes.fromhex(full["facts"]["expiry_token"]))
    assert (version, days) == (1, 60) and abs(dssim.filetime_to_unix(when) - time.time()) < 300
    assert full["facts"]["database_locations"] == [
        {"type": "database", "path": ntds_set, "code": 0x44}, {"type": "log_dir", "path": folder + "/", "code": 0x82},
        {"type": "checkpoint_dir", "path": folder + "/", "code": 0x83}]
    assert full["facts"]["kind"] == "adds" and full["facts"]["read_hint"] == 98304
    for t in full["trace"]:
        if t["call"] == "DsBackupOpenFileW":
            assert "hint=98304" in t["detail"]                              # 100000 fitted: 12 x 8192
        if t["call"] == "DsBackupRead":
            assert " eof" in t["detail"]                                    # ended by ERROR_HANDLE_EOF
    assert calls(full)[:4] == ["DsIsNTDSOnlineW", "DsBackupPrepareW", "DsRestoreGetDatabaseLocationsW",
                               "DsBackupGetDatabaseNamesW"]
    assert calls(full)[-1] == "DsBackupEnd"


@needs_ntdsbcli
def test_ntdsbcli_full_backup_with_truncation(harness, tmp_path, dcs, ntds_set):
    dcs(ntds_set)
    step, = run(harness, tmp_path, "adds", "DC01", "full")
    assert step["ok"] and "DsBackupTruncateLogs" in calls(step)
    assert sorted(os.listdir(os.path.dirname(ntds_set))) == ["edb.chk", "edb.log", "edb00003.log", "ntds.dit"]


@needs_ntdsbcli
def test_ntdsbcli_read_below_the_minimum_is_refused(harness, tmp_path, dcs, ntds_set):
    dcs(ntds_set)
    step, = run(harness, tmp_path, "adds", "DC01", "full", env={"HARNESS_CB": "20000"})
    f = step["failed_call"]
    assert f["call"] == "DsBackupRead" and "a multiple of 8192 and at least 24576" in f["detail"]
    assert calls(step)[-2:] == ["DsBackupClose", "DsBackupEnd"]


@needs_ntdsbcli
def test_ntdsbcli_incremental_is_refused(harness, tmp_path, dcs, ntds_set):
    dcs(ntds_set)
    step, = run(harness, tmp_path, "adds", "DC01", "inc")
    f = step["failed_call"]
    assert f["call"] == "DsBackupPrepareW" and "full backups only" in f["detail"] and "wbadmin" in f["detail"]
    assert step["trace"] == []                                              # refused before any call


DS_CALLS = ["DsIsNTDSOnlineW", "DsBackupPrepareW", "DsRestoreGetDatabaseLocationsW", "DsBackupGetDatabaseNamesW",
            "DsBackupOpenFileW", "DsBackupRead", "DsBackupClose", "DsBackupGetBackupLogsW", "DsBackupTruncateLogs",
            "DsBackupEnd"]


@needs_ntdsbcli
@pytest.mark.parametrize("api", DS_CALLS)
def test_ntdsbcli_injected_error_names_the_call(harness, tmp_path, dcs, ntds_set, api):
    dcs(ntds_set, env={"ESESIM_NTDS_FAULTS": json.dumps([{"api": api, "call": 1, "err": -1022}])})
    step, = run(harness, tmp_path, "adds", "DC01", "full")
    f = step["failed_call"]
    assert not step["ok"] and f["call"] == api and f["err"] == -1022, f
    assert "hr=0xC80003FE (ESE: -1022 JET_errDiskIO)" in f["detail"]


@needs_ntdsbcli
def test_ntdsbcli_dc_not_running(harness, tmp_path, dc_dir):
    probe, = run(harness, tmp_path, "adds", "DC01", "probe")
    f = probe["failed_call"]
    assert f["call"] == "DsIsNTDSOnlineW" and "0xC7FF0007 (hrCouldNotConnect)" in f["detail"]
    assert "not running" in f["detail"] and "wbadmin start systemstatebackup" in f["detail"]


@needs_ntdsbcli
def test_ntdsbcli_dsrm_is_offline(harness, tmp_path, dcs, ntds_set):
    dcs(ntds_set, args=["--dsrm"])
    probe, full = run(harness, tmp_path, "adds", "DC01", "probe", "full")
    for step in (probe, full):
        f = step["failed_call"]
        assert f["call"] == "DsIsNTDSOnlineW" and "online=FALSE" in f["detail"] and "Restore Mode" in f["detail"]
    assert "DsBackupPrepareW" not in calls(full)


@needs_ntdsbcli
def test_ntdsbcli_remote_dc_is_refused(harness, tmp_path, dcs, ntds_set):
    dcs(ntds_set)
    probe, = run(harness, tmp_path, "adds", "DC01", "probe", env={"COMPUTERNAME": "HOST2"})
    f = probe["failed_call"]
    assert "0x800706A6 (RPC_S_INVALID_BINDING)" in f["detail"] and "local domain controller only" in f["detail"]


@needs_ntdsbcli
def test_ntdsbcli_no_endpoint_names_vss(harness, tmp_path, dcs, ntds_set):
    dcs(ntds_set)
    probe, = run(harness, tmp_path, "adds", "DC01", "probe", env={"ESESIM_NTDS_NO_ENDPOINT": "1"})
    f = probe["failed_call"]
    assert f["call"] == "DsIsNTDSOnlineW" and "EPT_S_NOT_REGISTERED" in f["detail"]
    assert "wbadmin start systemstatebackup" in f["detail"]


@needs_ntdsbcli
def test_ntdsbcli_without_the_exports(harness, tmp_path):
    probe, = run(harness, tmp_path, "adds", "DC01", "probe", env={"LD_LIBRARY_PATH": dssim.NO_EXPORTS_DIR})
    f = probe["failed_call"]
    assert f["call"] == "ntdsbcli.dll" and "has no export DsIsNTDSOnlineW" in f["detail"] and "wbadmin" in f["detail"]


@needs_ntdsbcli
def test_ntdsbcli_without_the_library(harness, tmp_path):
    probe, = run(harness, tmp_path, "adds", "DC01", "probe", env={"LD_LIBRARY_PATH": dssim.NO_DLL_DIR})
    f = probe["failed_call"]
    assert f["call"] == "ntdsbcli.dll" and "cannot be loaded" in f["detail"] and "wbadmin" in f["detail"]


@needs_ntdsbcli
@pytest.mark.parametrize("eof", ["0x80070026", 38])
def test_ntdsbcli_handle_eof_ends_the_file(harness, tmp_path, dcs, ntds_set, eof):
    """ERROR_HANDLE_EOF (as an HRESULT or as the plain Win32 code) is the end of the file, not a failed read: Read
    returns 0 and the caller's size check names the short file."""
    dcs(ntds_set, env={"ESESIM_NTDS_FAULTS": json.dumps([{"api": "DsBackupRead", "call": 1, "err": eof}])})
    step, = run(harness, tmp_path, "adds", "DC01", "full")
    f = step["failed_call"]
    assert f["call"] == "Harness" and f["detail"] == f"{ntds_set}: read 0 of {os.path.getsize(ntds_set) + PAGE}"
    summary = [t for t in step["trace"] if t["call"] == "DsBackupRead"]
    assert summary == [], summary                                           # End(false) closed the file, no summary


@needs_ntdsbcli
@pytest.mark.parametrize("api", ["DsBackupOpenFileW", "DsBackupRead", "DsBackupTruncateLogs", "DsBackupEnd"])
def test_ntdsbcli_a_plain_win32_or_rpc_code_is_a_failure_named_as_its_hresult(harness, tmp_path, dcs, ntds_set, api):
    """ntdsbcli returns plain Win32 and RPC codes (positive ints) besides HRESULTs: 1722 is RPC_S_SERVER_UNAVAILABLE
    whatever the call, never a success (a 0-byte file, an end of file, a truncation that did not happen)."""
    dcs(ntds_set, env={"ESESIM_NTDS_FAULTS": json.dumps([{"api": api, "call": 1, "err": 1722}])})
    step, = run(harness, tmp_path, "adds", "DC01", "full")
    f = step["failed_call"]
    assert not step["ok"] and f and f["call"] == api, step
    assert f["err"] == 0x800706BA - (1 << 32) and "hr=0x800706BA (RPC_S_SERVER_UNAVAILABLE)" in f["detail"], f
