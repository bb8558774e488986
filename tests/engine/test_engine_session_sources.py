# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup sessions with a service source (source adcs: the simulated CA; source adds: the simulated DC) at the
engine's entry points: the session host keeps the service's backup context between begin, copy, truncate and
end, so a set can be verified off-host before the CA's logs are truncated."""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from engine_host import HOST, run_host
from test_session_robustness import host_env

# pytest fixtures are arguments named like the fixtures (some only for their effect: a running service)
# pylint: disable=redefined-outer-name,unused-argument

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "sim", "tests"))

import esesim  # noqa: E402 pylint: disable=wrong-import-position
from certsim import ca, ca_set, services, svc_dir  # noqa: E402,F401 pylint: disable=wrong-import-position,unused-import
import dssim  # noqa: E402 pylint: disable=wrong-import-position

pytestmark = pytest.mark.skipif(not (shutil.which("mcs") and shutil.which("mono")), reason="needs mcs and mono")


@pytest.fixture(scope="module")
def lib():
    return esesim.load_lib()


@pytest.fixture
def jet(lib, monkeypatch):
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


class ServiceSessions:
    """Begins sessions as the begin action plugin does (Begin, the host detached, wait), with a service source."""

    def __init__(self, tmp_path):
        self.dir = str(tmp_path / "sessions")
        self.env = {"ESE_BACKUP_SESSION_DIR": self.dir}
        self.procs = []

    def begin(self, name="s", wait=30, **kw):
        args = {"session": name, "source": "adcs", "type": "full", "idle_timeout": 600}
        args.update(kw)
        r = run_host("Session.Begin", args, env=self.env)
        if r["invalid"] is not None or r["failed_call"] is not None:
            return None, r
        launch = r["launch"]
        proc = subprocess.Popen(["mono", "--debug", HOST], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=host_env(self.env), start_new_session=True)
        proc.stdin.write(json.dumps({"entry": "Session.HostTask",
                                     "args": {"mode": "serve", "serve_file": launch["serve_file"]}}).encode())
        proc.stdin.close()
        self.procs.append(proc)
        w = run_host("Session.HostTask", {"mode": "wait", "session": name, "token": launch["token"], "timeout": wait},
                     env=self.env)
        return proc, w

    def call(self, entry, args, check_mode=False):
        return run_host(entry, args, check_mode=check_mode, env=self.env)

    def journal(self, name="s"):
        with open(os.path.join(self.dir, name + ".json"), encoding="utf-8") as f:
            return json.load(f)

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


@pytest.fixture
def sessions(tmp_path):
    s = ServiceSessions(tmp_path)
    yield s
    s.close()


def calls(res):
    return [t["call"] for t in res["trace"]]


def logs_on_disk(folder):
    return sorted(n for n in os.listdir(folder) if n.lower().endswith(".log"))


def manifest(set_dir):
    with open(os.path.join(set_dir, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def ok(res):
    assert res["invalid"] is None and res["failed_call"] is None, (res["invalid"], res["failed_call"])
    return res


def test_adcs_full_session_truncates_only_when_asked_then_an_incremental(sessions, ca, ca_set, dest, tmp_path):
    folder = os.path.dirname(ca_set)
    proc, w = sessions.begin()
    assert w["started"] is True and w["backup_started"] is True, w
    assert calls(w)[:2] == ["CertSrvIsServerOnlineW", "CertSrvBackupPrepareW"]
    assert not [c for c in calls(w) if c.startswith("Jet")]               # the own instance is not set up
    before = logs_on_disk(folder)

    copy = ok(sessions.call("Session.Copy", {"session": "s", "dest": dest, "set_name": "full1"}))
    assert copy["backup_set"] == os.path.join(dest, "full1")
    assert "CertSrvBackupGetDatabaseNamesW" in calls(copy) and "CertSrvBackupTruncateLogs" not in calls(copy)
    m = manifest(copy["backup_set"])
    src = m["source"]
    assert src["kind"] == "adcs" and src["server"] == "CA01" and src["ca_name"] == "Sim CA"
    assert src["databases"] == [ca_set] and src["page_size"] == 8192
    assert [loc["type"] for loc in src["database_locations"]] == ["database", "log_dir", "checkpoint_dir"]
    assert [f["name"] for f in m["files"]] == ["databases/Sim CA.edb", "logs/edb00003.log"]
    assert m["logs_truncated"] is False and m["databases"][0]["backup_mark"]["gen_low"] == 3
    copied = logs_on_disk(folder)
    assert set(before) <= set(copied)                                     # copied (the log rolled), not truncated
    j = sessions.journal()
    assert j["log_range"]["names"] == ["edb00003.log"] and not j["truncated"]
    assert {f["source"] for f in j["files"]} == {ca_set, "edb00003.log"} or all(f["source"] for f in j["files"])

    # ... here the playbook verifies the set off-host; only then:
    trunc = ok(sessions.call("Session.Truncate", {"session": "s"}))
    assert calls(trunc) == ["CertSrvBackupTruncateLogs"] and trunc["logs_truncated"] is True
    assert set(copied) - set(logs_on_disk(folder))                         # now the CA removed logs before the checkpoint
    end = ok(sessions.call("Session.End", {"session": "s"}))
    assert end["end_call"]["call"] == "CertSrvBackupEnd" and end["end_call"]["err"] == 0
    assert end["backup_valid"] is True and end["recorded_as"] == "full", end["proof"]
    assert end["proof"]["sequence_complete"] and end["proof"]["header_recorded"]
    with open(os.path.join(dest, "full1", "ending.json"), encoding="utf-8") as f:
        ending = json.load(f)
    assert ending["backup_valid"] is True and ending["logs_truncated"] is True and ending["session"] == "s"
    proc.wait(timeout=30)
    assert ca.alive()

    # an incremental session follows the full
    proc2, w2 = sessions.begin(type="incremental")
    assert w2["started"] is True, w2
    inc = ok(sessions.call("Session.Copy", {"session": "s", "dest": dest, "set_name": "inc1"}))
    mi = manifest(inc["backup_set"])
    assert mi["type"] == "incremental" and mi["databases"] == [] and "CertSrvBackupGetDatabaseNamesW" not in calls(inc)
    assert [f["role"] for f in mi["files"]] == ["log", "log"]
    ok(sessions.call("Session.Truncate", {"session": "s"}))
    e2 = ok(sessions.call("Session.End", {"session": "s"}))
    assert e2["backup_valid"] is True and e2["recorded_as"] == "incremental", e2["proof"]
    proc2.wait(timeout=30)


def test_end_without_truncate_leaves_the_logs_and_is_a_copy(sessions, ca, ca_set, dest):
    folder = os.path.dirname(ca_set)
    _proc, w = sessions.begin()
    assert w["started"] is True, w
    before = logs_on_disk(folder)
    ok(sessions.call("Session.Copy", {"session": "s", "dest": dest, "set_name": "c"}))
    end = ok(sessions.call("Session.End", {"session": "s"}))
    assert "CertSrvBackupTruncateLogs" not in calls(end)
    assert end["backup_valid"] is True and end["recorded_as"] == "copy" and end["logs_truncated"] is False
    assert set(before) <= set(logs_on_disk(folder))
    # ESE recorded a copy: an incremental cannot follow it
    res = run_host("Run", {"source": "adcs", "dest": dest, "type": "incremental"})
    assert res["failed_call"]["err"] == -560


def test_truncate_before_the_logs_are_copied_is_refused(sessions, ca, ca_set, dest):
    folder = os.path.dirname(ca_set)
    _proc, w = sessions.begin()
    assert w["started"] is True, w
    before = logs_on_disk(folder)
    ok(sessions.call("Session.Copy", {"session": "s", "dest": dest, "set_name": "d", "logs": False}))
    t = sessions.call("Session.Truncate", {"session": "s"})
    assert t["refused"] and "CertSrvBackupTruncateLogs" not in calls(t)
    assert set(before) <= set(logs_on_disk(folder))
    end = ok(sessions.call("Session.End", {"session": "s"}))
    assert end["backup_valid"] is False and "the logs were not copied" in " ".join(end["proof"]["missing"])


def test_a_failure_mid_copy_ends_the_source(sessions, services, ca_set, dest):
    services(ca_set, env={"ESESIM_CERTSVC_FAULTS": json.dumps([{"api": "CertSrvBackupRead", "call": 2, "err": -1018}])})
    proc, w = sessions.begin()
    assert w["started"] is True, w
    res = sessions.call("Session.Copy", {"session": "s", "dest": dest, "set_name": "x", "buffer_size": 65536})
    assert res["failed_call"]["call"] == "CertSrvBackupRead" and res["failed_call"]["err"] == -1018
    assert calls(res)[-2:] == ["CertSrvBackupClose", "CertSrvBackupEnd"] and res["ended"] == "abort"
    assert res["session"]["state"] == "aborted" and os.listdir(dest) == []
    j = sessions.journal()
    assert j["ended"] == "abort" and j["end_call"]["call"] == "CertSrvBackupEnd" and j["incomplete_files"]
    proc.wait(timeout=30)                                                  # the host exits
    end = sessions.call("Session.End", {"session": "s"})
    assert end["journal"]["ended"] == "abort"


def test_service_session_options(sessions, ca, ca_set, dest):
    _p, r = sessions.begin(databases=[ca_set])
    assert r["invalid"]["option"] == "databases" and "source adcs" in r["invalid"]["msg"]
    _p, r = sessions.begin(type="differential")
    assert r["invalid"]["option"] == "type"
    _p, r = sessions.begin(source="adds", type="incremental")
    assert r["invalid"]["option"] == "type" and "VSS" in r["invalid"]["msg"]
    chk = sessions.call("Session.Begin", {"session": "s", "source": "adcs"}, check_mode=True)
    assert chk["check"]["would_begin"] is True and chk["check"]["source"] == "adcs" and chk["check"]["server"] == "CA01"
    _proc, w = sessions.begin()
    assert w["started"] is True, w
    bad = sessions.call("Session.Copy", {"session": "s", "dest": dest, "buffer_size": 40000})
    assert bad["invalid"]["option"] == "buffer_size" and "32768" in bad["invalid"]["msg"]
    inside = sessions.call("Session.Copy", {"session": "s", "dest": os.path.join(os.path.dirname(ca_set), "bk")})
    assert inside["invalid"]["option"] == "dest" and inside["session"]["state"] == "open"   # nothing streamed: still open
    td = sessions.call("Session.End", {"session": "s", "truncate_done": True})
    assert td["invalid"]["option"] == "truncate_done"
    ab = ok(sessions.call("Session.End", {"session": "s", "mode": "abort"}))
    assert ab["ended"] == "abort" and ab["end_call"]["call"] == "CertSrvBackupEnd" and ab["backup_valid"] is False


# ---------------------------------------------------------------- AD DS

@pytest.fixture
def dc_dir(monkeypatch):
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


def test_adds_full_session_keeps_the_expiry_token(sessions, dc_dir, ntds_set, dest):
    svc = dssim.Service(dc_dir, ntds_set, "DC01").start()
    try:
        proc, w = sessions.begin(source="adds")
        assert w["started"] is True, w
        assert "DsBackupPrepareW" in calls(w)
        copy = ok(sessions.call("Session.Copy", {"session": "s", "dest": dest, "set_name": "dc"}))
        src = manifest(copy["backup_set"])["source"]
        assert src["kind"] == "adds" and src["server"] == "DC01" and src["databases"] == [ntds_set]
        version, days, _when = dssim.parse_token(base64.b64decode(src["expiry_token"]))
        assert version == 1 and days > 0
        assert calls(ok(sessions.call("Session.Truncate", {"session": "s"}))) == ["DsBackupTruncateLogs"]
        end = ok(sessions.call("Session.End", {"session": "s"}))
        assert end["end_call"]["call"] == "DsBackupEnd" and end["backup_valid"] is True and end["recorded_as"] == "full"
        proc.wait(timeout=30)
        assert svc.alive()
    finally:
        svc.stop()


def test_an_idle_service_session_ends_the_source_with_abort(sessions, ca, ca_set, dest):
    proc, w = sessions.begin(idle_timeout=2)
    assert w["started"] is True, w
    proc.wait(timeout=60)                                                  # the host ends itself after 2 s
    j = sessions.journal()
    assert j["ended"] == "idle_timeout" and j["end_call"]["call"] == "CertSrvBackupEnd", j
    assert [c["call"] for c in j["calls"]][-1] == "CertSrvBackupEnd"
    # the CA's context is released: a new backup can begin at once
    res = run_host("Run", {"source": "adcs", "dest": dest, "set_name": "after"})
    assert res["backup_valid"] is True, res["failed_call"]
