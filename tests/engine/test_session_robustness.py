# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Session hosts under stress, at the engine's entry points (Mono host, esent simulator): a busy host is not a
crashed one, journal saves survive sharing violations, session and socket folders that another account controls
are refused, and a host that fails at start says why in its own result."""
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from engine_host import BUILD_SIM, HOST, run_host

NOBODY = 65534
REPLACE_FAILURES = "ESE_BACKUP_TEST_JOURNAL_REPLACE_FAILURES"


def session_args(set_dir, name="s", **kw):
    a = {"session": name, "databases": [os.path.join(set_dir, "SRUDB.dat")], "log_path": set_dir,
         "system_path": set_dir, "base_name": "SRU", "type": "full", "idle_timeout": 600}
    a.update(kw)
    return a


def host_env(env):
    e = dict(os.environ)
    e["LD_LIBRARY_PATH"] = BUILD_SIM
    e.pop("ESESIM_FAULTS", None)
    e.update(env)
    return e


class Sessions:
    """Begins sessions as the begin action plugin does: Begin, then the host (HostTask serve) detached, then wait."""

    def __init__(self, tmp_path):
        self.dir = str(tmp_path / "sessions")
        self.env = {"ESE_BACKUP_SESSION_DIR": self.dir}
        self.procs = []

    def begin(self, set_dir, name="s", host_env_extra=None, wait=30, **kw):
        r = run_host("Session.Begin", session_args(set_dir, name, **kw), env=self.env)
        assert r["invalid"] is None and r["failed_call"] is None, r
        launch = r["launch"]
        proc = subprocess.Popen(["mono", "--debug", HOST], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=host_env(dict(self.env, **(host_env_extra or {}))),
                                start_new_session=True)
        proc.stdin.write(json.dumps({"entry": "Session.HostTask",
                                     "args": {"mode": "serve", "serve_file": launch["serve_file"]}}).encode())
        proc.stdin.close()
        self.procs.append(proc)
        w = run_host("Session.HostTask", {"mode": "wait", "session": name, "token": launch["token"], "timeout": wait},
                     env=self.env)
        return proc, w

    def journal_path(self, name="s"):
        return os.path.join(self.dir, name + ".json")

    def journal(self, name="s"):
        with open(self.journal_path(name)) as f:
            return json.load(f)

    def call(self, entry, args, check_mode=False):
        return run_host(entry, args, check_mode=check_mode, env=self.env)

    def info(self):
        return self.call("Session.Info", {"sessions": True})["sessions"]

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


@pytest.fixture
def sessions(tmp_path):
    s = Sessions(tmp_path)
    yield s
    s.close()


def own_result(proc):
    """The host's own result: what the async wrapper would write into the job's results file."""
    out = proc.stdout.read()
    proc.wait(timeout=60)
    return json.loads(out)


def state_of(listing, name="s"):
    return [d for d in listing if d["name"] == name][0]


# --- a busy host is not a crashed host ---------------------------------------------------------------------

def test_a_host_that_does_not_answer_but_runs_is_busy_and_its_journal_is_left_alone(sessions, clean_set, dest):
    proc, w = sessions.begin(clean_set)
    assert w["started"], w
    before = open(sessions.journal_path(), "rb").read()
    # A client that connects and sends nothing holds the host (one request at a time), as a long copy would.
    stall = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stall.connect(sessions.journal()["endpoint"])
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            listing = pool.submit(sessions.info)
            again = pool.submit(sessions.call, "Session.Begin", session_args(clean_set))
            listing, again = listing.result(), again.result()
        s = state_of(listing)
        assert s["state"] == "busy", s
        assert "did not answer" in s["busy"] and str(proc.pid) in s["busy"]
        # begin of the same session again: it exists (busy), nothing is started, nothing ended
        assert again["exists"] is True and "launch" not in again and again["invalid"] is None, again
        assert again["session"]["state"] == "busy"
        assert any("busy" in w for w in again["warnings"])
        assert open(sessions.journal_path(), "rb").read() == before
        assert proc.poll() is None
    finally:
        stall.close()
    # The host answers again once the stalled client is gone, and the backup ends normally.
    assert state_of(sessions.info())["state"] == "open"
    end = sessions.call("Session.End", {"session": "s", "mode": "Normal"})
    assert end["end_call"]["err"] == 0 and end["ended"] == "normal", end
    assert sessions.journal()["ended"] == "normal"
    assert proc.wait(timeout=30) == 0


def test_a_killed_host_is_a_crash(sessions, clean_set):
    proc, w = sessions.begin(clean_set)
    assert w["started"], w
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    s = state_of(sessions.info())
    assert s["state"] == "host_crash", s
    j = sessions.journal()
    assert j["ended"] == "host_crash" and "no process %d exists" % proc.pid in j["end_reason"], j["end_reason"]


def test_a_reused_pid_is_not_the_host(sessions, clean_set):
    """The journal's pid now belongs to another live process (this test): its start differs, so the host is gone."""
    proc, w = sessions.begin(clean_set)
    assert w["started"], w
    j = sessions.journal()
    assert j["pid"] == proc.pid and j["pid_start"].startswith("proc:"), j
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    j["pid"] = os.getpid()
    with open(sessions.journal_path(), "w") as f:
        json.dump(j, f)
    s = state_of(sessions.info())
    assert s["state"] == "host_crash", s
    assert "is another process now" in sessions.journal()["end_reason"]


def test_copy_to_a_busy_host_waits_for_it_and_end_of_a_gone_host_is_no_backup(sessions, clean_set, dest):
    """copy queues behind a stalled client (the host serves it afterwards); nothing is marked crashed."""
    proc, w = sessions.begin(clean_set)
    assert w["started"], w
    stall = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stall.connect(sessions.journal()["endpoint"])
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        copy = pool.submit(sessions.call, "Session.Copy", {"session": "s", "dest": dest, "set_name": "one"})
        time.sleep(2)
        assert not copy.done()
        stall.close()
        copy = copy.result()
    assert copy["failed_call"] is None and copy["backup_set"] == os.path.join(dest, "one"), copy
    end = sessions.call("Session.End", {"session": "s", "mode": "ABORT"})
    assert end["mode"] == "abort" and end["ended"] == "abort", end


# --- journal writes under concurrent readers ---------------------------------------------------------------

def test_journal_replace_is_retried_while_a_reader_holds_the_file(sessions, clean_set, dest):
    """The first three replace attempts fail as a sharing violation would (Windows, a reader without
    FileShare.Delete); the host retries, and every save lands."""
    proc, w = sessions.begin(clean_set, host_env_extra={REPLACE_FAILURES: "3"})
    assert w["started"], w
    with open(sessions.journal_path(), "rb") as reader:  # a reader holds the journal open during the saves
        copy = sessions.call("Session.Copy", {"session": "s", "dest": dest, "set_name": "one"})
        assert copy["failed_call"] is None and copy["warnings"] == [], copy
        reader.read()
    assert len(sessions.journal()["files"]) == len(copy["manifest"]["files"])
    end = sessions.call("Session.End", {"session": "s"})
    assert end["ended"] == "normal" and sessions.journal()["ended"] == "normal"


def test_a_save_that_keeps_failing_never_ends_the_host(sessions, clean_set, dest):
    """Saves 1-2 (starting, open) land, then ten attempts fail: the copy's save gives up, the copy still answers
    (with a warning), the host keeps serving, and the next save writes the whole record."""
    proc, w = sessions.begin(clean_set, host_env_extra={REPLACE_FAILURES: "2:10"})
    assert w["started"], w
    copy = sessions.call("Session.Copy", {"session": "s", "dest": dest, "set_name": "one"})
    assert copy["failed_call"] is None and copy["backup_set"], copy
    assert any("journal could not be saved" in x for x in copy["warnings"]), copy["warnings"]
    assert sessions.journal()["files"] == []  # the save of the copy did not land
    assert proc.poll() is None
    trunc = sessions.call("Session.Truncate", {"session": "s"})
    assert trunc["failed_call"] is None and trunc["logs_truncated"] is True, trunc
    j = sessions.journal()
    assert j["truncated"] is True and len(j["files"]) == len(copy["manifest"]["files"])
    end = sessions.call("Session.End", {"session": "s"})
    assert end["ended"] == "normal", end


def test_a_host_that_cannot_write_its_journal_says_so_in_its_own_result(sessions, clean_set):
    """Every replace attempt fails: the host cannot report through the journal, so the wait times out, and the
    host's own result (the async job's results file) carries the reason."""
    proc, w = sessions.begin(clean_set, host_env_extra={REPLACE_FAILURES: "100"}, wait=4)
    assert w["started"] is False and w["failed_call"]["call"] == "SessionHost", w
    assert "did not report within 4 s" in w["failed_call"]["detail"]
    own = own_result(proc)
    assert own["started"] is False and own["failed_call"]["call"] == "SessionHost", own
    assert "cannot replace the session journal" in own["failed_call"]["detail"], own
    assert REPLACE_FAILURES in own["failed_call"]["detail"]


def test_a_host_that_fails_at_init_reports_at_once(sessions, clean_set):
    """A JetInit3W fault: the host records the failure in the journal, the wait returns it without waiting out
    its timeout, and the host's own result says the same."""
    t0 = time.monotonic()
    proc, w = sessions.begin(clean_set, host_env_extra={
        "ESESIM_FAULTS": json.dumps([{"api": "JetInit3W", "call": 1, "err": -1032}])}, wait=60)
    assert time.monotonic() - t0 < 40
    assert w["started"] is False and w["failed_call"]["call"] == "JetInit3W" and w["failed_call"]["err"] == -1032, w
    own = own_result(proc)
    assert own["failed_call"]["call"] == "JetInit3W", own


# --- session and socket folders that another account controls ----------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another account needs root")


@needs_root
def test_a_session_folder_owned_by_another_account_is_refused(sessions, clean_set):
    os.mkdir(sessions.dir, 0o700)
    os.chown(sessions.dir, NOBODY, NOBODY)
    r = sessions.call("Session.Begin", session_args(clean_set))
    assert "launch" not in r and r["invalid"]["option"] == "session", r
    msg = r["invalid"]["msg"]
    assert sessions.dir in msg and "owned by uid %d" % NOBODY in msg, msg
    assert "rm -rf" in msg and "chown" in msg and "ESE_BACKUP_SESSION_DIR" in msg, msg
    assert os.listdir(sessions.dir) == []  # nothing written there
    info = sessions.call("Session.Info", {"sessions": True})
    assert info["invalid"]["option"] == "session" and sessions.dir in info["invalid"]["msg"], info
    end = sessions.call("Session.End", {"session": "s"})
    assert end["invalid"] and "owned by uid" in end["invalid"]["msg"], end


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777], ids=["0770", "0707", "0777"])
def test_a_session_folder_writable_by_others_is_refused(sessions, clean_set, mode):
    os.mkdir(sessions.dir)
    os.chmod(sessions.dir, mode)
    r = sessions.call("Session.Begin", session_args(clean_set))
    assert "launch" not in r and r["invalid"] and "writable by its group or by others" in r["invalid"]["msg"], r
    assert oct(mode)[2:] in r["invalid"]["msg"]


def test_a_session_folder_that_is_a_link_is_refused(sessions, clean_set, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    os.symlink(str(target), sessions.dir)
    r = sessions.call("Session.Begin", session_args(clean_set))
    assert r["invalid"] and "is a symbolic link" in r["invalid"]["msg"], r


def test_a_new_session_folder_is_private(sessions, clean_set):
    r = sessions.call("Session.Begin", session_args(clean_set))
    assert r["launch"], r
    assert os.stat(sessions.dir).st_mode & 0o777 == 0o700
    assert os.stat(r["launch"]["serve_file"]).st_mode & 0o777 == 0o600


@needs_root
def test_a_socket_folder_owned_by_another_account_is_refused(tmp_path, clean_set):
    """A session folder too long for sun_path puts the socket under $TMPDIR/ese.backup-<uid>: another account's
    folder there is refused by begin (before any host starts), and by a host started anyway, whose own result
    says which folder and how to fix it."""
    s = Sessions(tmp_path)
    s.dir = str(tmp_path / ("long-" + "x" * 90) / "sessions")
    os.makedirs(os.path.dirname(s.dir))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    squat = tmpdir / ("ese.backup-%d" % os.getuid())
    s.env = {"ESE_BACKUP_SESSION_DIR": s.dir, "TMPDIR": str(tmpdir)}
    try:
        r = s.call("Session.Begin", session_args(clean_set))  # still private: begin prepares the host
        assert r["launch"] and os.stat(str(squat)).st_mode & 0o777 == 0o700, r
        os.chown(str(squat), NOBODY, NOBODY)
        refused = s.call("Session.Begin", session_args(clean_set))
        assert "launch" not in refused and refused["invalid"], refused
        msg = refused["invalid"]["msg"]
        assert str(squat) in msg and "socket folder" in msg and "owned by uid %d" % NOBODY in msg, msg
        proc = subprocess.Popen(["mono", "--debug", HOST], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=host_env(s.env), start_new_session=True)
        proc.stdin.write(json.dumps({"entry": "Session.HostTask",
                                     "args": {"mode": "serve", "serve_file": r["launch"]["serve_file"]}}).encode())
        proc.stdin.close()
        s.procs.append(proc)
        own = own_result(proc)
        assert own["invalid"] and str(squat) in own["invalid"]["msg"], own
        assert not os.path.exists(s.journal_path())
    finally:
        s.close()


# --- choices in any case (Ansible.Basic hands them on as written) ---------------------------------------------

@pytest.mark.parametrize("written", ["FULL", "Full", "fULL"])
def test_run_type_in_any_case(clean_set, dest, written):
    r = run_host("Run", {"databases": [os.path.join(clean_set, "SRUDB.dat")], "log_path": clean_set,
                         "system_path": clean_set, "base_name": "SRU", "dest": dest, "type": written},
                 check_mode=True)
    assert r["invalid"] is None and r["check"]["type"] == "full", r


def test_begin_type_in_any_case_is_the_same_session(sessions, clean_set):
    proc, w = sessions.begin(clean_set, type="Copy")
    assert w["started"], w
    assert sessions.journal()["params"]["type"] == "copy"
    again = sessions.call("Session.Begin", session_args(clean_set, type="COPY"))
    assert again["exists"] is True and again["invalid"] is None, again
    end = sessions.call("Session.End", {"session": "s", "mode": "Abort"})
    assert end["mode"] == "abort" and end["ended"] == "abort", end


@pytest.mark.parametrize("written,canonical", [("NORMAL", "normal"), ("Abort", "abort")])
def test_end_mode_in_any_case_without_a_host(sessions, written, canonical):
    r = sessions.call("Session.End", {"session": "nothing", "mode": written})
    assert r["mode"] == canonical and r["invalid"] is None, r


def test_end_mode_that_is_no_choice_is_invalid(sessions):
    r = sessions.call("Session.End", {"session": "nothing", "mode": "later"})
    assert r["invalid"]["option"] == "mode", r


@pytest.mark.parametrize("written", ["WAIT", "Wait"])
def test_session_host_mode_in_any_case(sessions, written):
    r = sessions.call("Session.HostTask", {"mode": written, "session": "nothing", "token": "x", "timeout": 1})
    assert r["invalid"] is None and "did not report within 1 s" in r["failed_call"]["detail"], r


def test_begin_in_check_mode_names_the_session(sessions, clean_set):
    from ansible_collections.ese.backup.plugins.plugin_utils import _jet_policy as jp
    r = sessions.call("Session.Begin", session_args(clean_set, name="nightly"), check_mode=True)
    assert r["check"]["would_begin"] is True and r["session"]["name"] == "nightly", r
    msg = jp.apply("begin", r, True)["msg"]
    assert msg == "check mode: a session host would be started for session nightly", msg
    assert not os.path.exists(sessions.journal_path("nightly"))


def test_one_bad_journal_does_not_hide_the_others(sessions, clean_set):
    proc, w = sessions.begin(clean_set)
    assert w["started"], w
    with open(os.path.join(sessions.dir, "bad.json"), "w") as f:
        json.dump({"session": "bad", "ended": None, "state": "open", "pid": "not a pid", "endpoint": "/nowhere"}, f)
    listing = sessions.info()
    assert state_of(listing, "s")["state"] == "open"
    bad = state_of(listing, "bad")
    assert bad["state"] == "unknown" and "FormatException" in bad["problem"], bad
    sessions.call("Session.End", {"session": "s", "mode": "abort"})
