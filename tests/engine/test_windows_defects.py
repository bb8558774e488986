# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Behaviour that Windows gives for free and the engine must give everywhere: file names of the log set matched
without regard to case, and a native library that cannot be loaded named with the call and what to check."""
import json
import os
import shutil
import subprocess

import pytest

from engine_host import HOST, run_host, srum_args


def rename_case(set_dir, mapping):
    for old, new in mapping.items():
        os.rename(os.path.join(set_dir, old), os.path.join(set_dir, new))


@pytest.mark.parametrize("written", ["sru", "Sru", "SRU"])
def test_base_name_in_any_case_backs_up_the_log_set(clean_set, dest, written):
    r = run_host("Run", srum_args(clean_set, dest, base_name=written, set_name="s"))
    assert r["invalid"] is None and r["failed_call"] is None, r
    m = r["manifest"]
    assert m["source"]["base_name"] == "SRU" and m["logs"]["base_name"] == "SRU"  # as the log set spells it
    logs = sorted(f["name"] for f in m["files"] if f["role"] == "log")
    assert logs and all(n.startswith("logs/SRU") for n in logs), logs
    assert sorted(os.listdir(os.path.join(dest, "s", "logs"))) == sorted(n[5:] for n in logs)


def test_log_set_files_in_other_cases_on_disk(clean_set, dest):
    """The files themselves spelled otherwise (sru.chk, Sru.log, sru00001.LOG): found, backed up, verified."""
    rename_case(clean_set, {"SRU.chk": "sru.chk", "SRU.log": "Sru.log", "SRU00001.log": "sru00001.LOG"})
    check = run_host("Run", srum_args(clean_set, dest, base_name="SRU"), check_mode=True)
    assert check["invalid"] is None and check["failed_call"] is None, check
    assert sorted(check["check"]["logs_on_disk"]) == ["sru00001.LOG"]
    r = run_host("Run", srum_args(clean_set, dest, base_name="SRU", set_name="s"))
    assert r["failed_call"] is None and r["invalid"] is None, r
    assert r["manifest"]["source"]["base_name"] == "sru"  # the checkpoint's spelling
    from ansible_collections.ese.backup.plugins.module_utils.ese_format.verify import verify
    report = verify(os.path.join(dest, "s"))
    assert report["valid"] is True, report


def test_a_base_name_that_matches_nothing_still_fails(clean_set, dest):
    r = run_host("Run", srum_args(clean_set, dest, base_name="edb"), check_mode=True)
    assert r["invalid"]["option"] == "base_name" and "does not match this log set" in r["invalid"]["msg"], r


def test_session_begin_with_the_base_name_in_another_case_is_the_same_session(tmp_path, clean_set):
    from test_session_robustness import Sessions, session_args
    s = Sessions(tmp_path)
    try:
        proc, w = s.begin(clean_set, base_name="sru")
        assert w["started"], w
        again = s.call("Session.Begin", session_args(clean_set, base_name="SRU"))
        assert again["exists"] is True and again["invalid"] is None, again
        end = s.call("Session.End", {"session": "s", "mode": "abort"})
        assert end["ended"] == "abort", end
    finally:
        s.close()


# --- native libraries that cannot be loaded ---------------------------------------------------------------

NO_ESENT = {"LD_LIBRARY_PATH": "/nonexistent"}


@pytest.fixture
def lonely_host(tmp_path):
    """The engine host copied away from build/sim (Mono also probes the program's own folder for esent.dll)."""
    d = tmp_path / "host"
    d.mkdir()
    shutil.copy(HOST, str(d))
    exe = str(d / os.path.basename(HOST))

    def run(entry, args, env=None):
        e = dict(os.environ)
        e.pop("LD_LIBRARY_PATH", None)
        e.update(env or {})
        proc = subprocess.run(["mono", exe], input=json.dumps({"entry": entry, "args": args}), capture_output=True,
                              text=True, env=e, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(proc.stdout)
    return run


def assert_names_esent(failed_call):
    assert failed_call["call"] == "esent.dll", failed_call
    detail = failed_call["detail"]
    assert "cannot load esent.dll for JetGetDatabaseFileInfoW" in detail, detail
    assert "LD_LIBRARY_PATH must hold the folder with esent.dll (build/sim" in detail, detail


def test_run_without_esent_names_the_library_the_call_and_the_fix(lonely_host, clean_set, dest):
    r = lonely_host("Run", srum_args(clean_set, dest), env=NO_ESENT)
    assert r["backup_started"] is False
    assert_names_esent(r["failed_call"])


def test_info_and_begin_without_esent(lonely_host, clean_set, dest, tmp_path):
    info = lonely_host("Info", {"databases": [os.path.join(clean_set, "SRUDB.dat")]}, env=NO_ESENT)
    assert_names_esent(info["failed_call"])
    env = dict(NO_ESENT, ESE_BACKUP_SESSION_DIR=str(tmp_path / "sessions"))
    begin = lonely_host("Session.Begin", {"session": "s", "databases": [os.path.join(clean_set, "SRUDB.dat")],
                                       "log_path": clean_set, "base_name": "SRU"}, env=env)
    assert_names_esent(begin["failed_call"])
    assert "launch" not in begin


def test_the_policy_message_names_the_library(lonely_host, clean_set, dest):
    from ansible_collections.ese.backup.plugins.plugin_utils import _jet_policy as jp
    r = lonely_host("Run", srum_args(clean_set, dest), env=NO_ESENT)
    msg = jp.apply("run", r, False)["msg"]
    assert msg.startswith("esent.dll returned") and "cannot load esent.dll for JetGetDatabaseFileInfoW" in msg, msg
    assert json.dumps(r)  # plain data


# --- a database or log set that a service holds ---------------------------------------------------------------

def test_a_database_held_by_another_process_says_stop_the_service(clean_set, dest):
    """The simulator locks an attached database (flock), as Windows' exclusive open does: ESE, and so the own
    instance, cannot open it, with or without SeBackupPrivilege."""
    import fcntl
    with open(os.path.join(clean_set, "SRUDB.dat"), "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        r = run_host("Run", srum_args(clean_set, dest), check_mode=True)
    msg = r["invalid"]["msg"]
    assert r["invalid"]["option"] == "databases" and "in use by another process, for example its service" in msg, r
    assert "returned -1032" in msg and "stop the service, or use an online source" in msg, msg


@pytest.mark.parametrize("api,err", [("JetInit3W", -1032), ("JetInit3W", -1019), ("JetAttachDatabase2W", -1032)])
def test_in_use_at_init_or_attach_says_stop_the_service(clean_set, dest, api, err):
    r = run_host("Run", srum_args(clean_set, dest), faults=[{"api": api, "call": 1, "err": err}])
    assert r["failed_call"]["call"] == api and r["failed_call"]["err"] == err, r
    msg = r["invalid"]["msg"]
    assert "in use by another process" in msg and "stop the service, or use an online source" in msg, msg
    assert "%s returned %d" % (api, err) in msg
    assert ("esentutl /k" in msg) == (err == -1019), msg
    assert not os.listdir(dest)


# --- the final rename of a set, against an antivirus lock ------------------------------------------------------

def test_publish_is_retried_while_a_file_of_the_set_is_held(clean_set, dest):
    r = run_host("Run", srum_args(clean_set, dest, set_name="s"), env={"ESE_BACKUP_TEST_PUBLISH_FAILURES": "3"})
    assert r["failed_call"] is None and r["backup_set"] == os.path.join(dest, "s"), r
    assert sorted(os.listdir(dest)) == ["s"]


def test_publish_that_keeps_failing_publishes_nothing(clean_set, dest):
    """A copy backup truncates nothing: its staging folder is removed. A full one truncated the logs before the
    rename, so its staging folder is kept as the only copy of those logs, and the result says where."""
    env = {"ESE_BACKUP_TEST_PUBLISH_FAILURES": "100"}
    r = run_host("Run", srum_args(clean_set, dest, set_name="c", type="copy"), env=env)
    assert r["backup_set"] is None and r["failed_call"]["call"] == "WriteFile", r
    assert "cannot rename" in r["failed_call"]["detail"] and "8 attempts" in r["failed_call"]["detail"], r
    assert os.listdir(dest) == []
    r = run_host("Run", srum_args(clean_set, dest, set_name="f"), env=env)
    assert r["backup_set"] is None and r["logs_truncated"] is True, r
    assert r["kept_staging"] == os.path.join(dest, ".f.partial") and os.listdir(dest) == [".f.partial"]
