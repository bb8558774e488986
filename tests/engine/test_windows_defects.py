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
                              text=True, env=e, timeout=300)
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
    from ansible_collections.ese.backup.plugins.module_utils import jet_policy as jp
    r = lonely_host("Run", srum_args(clean_set, dest), env=NO_ESENT)
    msg = jp.apply("run", r, False)["msg"]
    assert msg.startswith("esent.dll returned") and "cannot load esent.dll for JetGetDatabaseFileInfoW" in msg, msg
    assert json.dumps(r)  # plain data
