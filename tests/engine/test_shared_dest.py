# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs that share a dest (issue: two runs with one set_name, planted sets, names Windows alters, stale
staging folders). Each test failed on the engine before the staging claim, the set_name rule and the
stronger re-run check."""
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from engine_host import HOST, BUILD_SIM, CLEAN, copy_set, run_host, srum_args, tree


def start_host(entry, args, env=None):
    e = dict(os.environ)
    e["LD_LIBRARY_PATH"] = BUILD_SIM
    e.pop("ESESIM_FAULTS", None)
    e.update(env or {})
    proc = subprocess.Popen(["mono", HOST], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=e)
    proc.stdin.write(json.dumps({"entry": entry, "args": args, "check_mode": False}))
    proc.stdin.close()
    return proc


def collect(proc):
    out = proc.stdout.read()
    proc.wait(timeout=300)
    assert proc.returncode == 0, (out, proc.stderr.read())
    return json.loads(out)


def sha256(path):
    import hashlib
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def assert_set_is_its_own(r, src):
    """The published set holds the files of the run that reports it, byte for byte."""
    m = json.load(open(os.path.join(r["backup_set"], "manifest.json")))
    assert m["source"]["databases"] == [os.path.join(src, "SRUDB.dat")]
    for f in m["files"]:
        assert sha256(os.path.join(r["backup_set"], f["name"])) == f["sha256"]


def test_two_runs_with_one_set_name_never_share_a_staging_folder(tmp_path):
    """Four runs of four databases start at once into one dest with one set_name, five times over: exactly one
    set appears, it holds the files of the run that reports it, every other run fails naming set_name, and
    none deletes the winner's files or leaves a staging folder."""
    dest = str(tmp_path / "share")
    os.mkdir(dest)
    sources = [copy_set(CLEAN, tmp_path / ("src%d" % i)) for i in range(4)]
    for rnd in range(5):
        name = "nightly-%d" % rnd
        procs = [start_host("Run", srum_args(s, dest, set_name=name, type="copy")) for s in sources]
        results = [collect(p) for p in procs]
        winners = [(r, s) for r, s in zip(results, sources) if r["backup_set"]]
        assert len(winners) == 1, [(r["invalid"], r["failed_call"]) for r in results]
        r, src = winners[0]
        assert r["backup_set"] == os.path.join(dest, name) and not r.get("already_exists")
        assert_set_is_its_own(r, src)
        for other in results:
            if other is r:
                continue
            assert other["invalid"] and other["invalid"]["option"] == "set_name", (other["failed_call"], other["warnings"])
            assert name in other["invalid"]["msg"]
        assert sorted(os.listdir(dest)) == sorted("nightly-%d" % k for k in range(rnd + 1))


def test_default_set_names_differ_between_hosts_and_runs(tmp_path):
    dest = str(tmp_path / "share")
    os.mkdir(dest)
    a, b = copy_set(CLEAN, tmp_path / "a"), copy_set(CLEAN, tmp_path / "b")
    procs = [start_host("Run", srum_args(a, dest, type="copy"), env={"COMPUTERNAME": "WEB01"}),
             start_host("Run", srum_args(b, dest, type="copy"), env={"COMPUTERNAME": "WEB02"}),
             start_host("Run", srum_args(a, dest, type="copy", databases=[os.path.join(a, "SRUDB.dat")]),
                        env={"COMPUTERNAME": "WEB01"})]
    results = [collect(p) for p in procs]
    published = [r["backup_set"] for r in results if r["backup_set"]]
    # the third run's database is the first's: one of those two finds it in use, and says so
    assert len(published) >= 2 and len(set(published)) == len(published)
    for path in published:
        assert re.match(r"^copy-\d{8}T\d{6}Z-WEB0[12]-[0-9a-f]{4}$", os.path.basename(path)), path
        m = json.load(open(os.path.join(path, "manifest.json")))
        assert m["source"]["host"] in ("WEB01", "WEB02")
    assert {os.path.basename(p).split("-")[2] for p in published} == {"WEB01", "WEB02"}


@pytest.fixture
def one_set(tmp_path):
    src = copy_set(CLEAN, tmp_path / "src")
    dest = str(tmp_path / "share")
    os.mkdir(dest)
    r = run_host("Run", srum_args(src, dest, set_name="s1", type="copy"))
    assert r["backup_set"], r
    return src, dest


def test_a_rerun_is_ok_only_for_the_same_complete_set(one_set):
    src, dest = one_set
    r = run_host("Run", srum_args(src, dest, set_name="s1", type="copy"))
    assert r["already_exists"] is True and r["invalid"] is None


def test_a_planted_manifest_only_folder_is_not_taken_for_a_finished_backup(one_set):
    src, dest = one_set
    os.mkdir(os.path.join(dest, "s2"))
    shutil.copy(os.path.join(dest, "s1", "manifest.json"), os.path.join(dest, "s2"))
    r = run_host("Run", srum_args(src, dest, set_name="s2", type="copy"))
    assert not r.get("already_exists") and r["backup_set"] is None
    assert r["invalid"]["option"] == "set_name" and "no ending record" in r["invalid"]["msg"], r["invalid"]
    # with the ending record copied too, the files it lists are still missing
    shutil.copy(os.path.join(dest, "s1", "ending.json"), os.path.join(dest, "s2"))
    r = run_host("Run", srum_args(src, dest, set_name="s2", type="copy"))
    assert r["invalid"]["option"] == "set_name" and "is missing" in r["invalid"]["msg"], r["invalid"]
    assert sorted(os.listdir(os.path.join(dest, "s2"))) == ["ending.json", "manifest.json"]


def test_a_set_with_a_changed_file_is_not_taken_for_a_finished_backup(one_set):
    src, dest = one_set
    with open(os.path.join(dest, "s1", "logs", "SRU00002.log"), "r+b") as f:
        f.seek(9000)
        f.write(b"\x55")
    r = run_host("Run", srum_args(src, dest, set_name="s1", type="copy"))
    assert r["invalid"]["option"] == "set_name" and "SHA-256" in r["invalid"]["msg"], r["invalid"]


def test_a_set_of_another_database_or_host_is_not_this_backup(one_set, tmp_path):
    src, dest = one_set
    r = run_host("Run", srum_args(src, dest, set_name="s1", type="copy"), env={"COMPUTERNAME": "OTHER"})
    assert r["invalid"]["option"] == "set_name" and "written by host" in r["invalid"]["msg"], r["invalid"]
    # the same path now holds another database (a restore of something else, say)
    m = json.load(open(os.path.join(dest, "s1", "manifest.json")))
    m["databases"][0]["sign_db"] = "00" * 28
    with open(os.path.join(dest, "s1", "manifest.json"), "w") as f:
        json.dump(m, f)
    r = run_host("Run", srum_args(src, dest, set_name="s1", type="copy"))
    assert r["invalid"]["option"] == "set_name" and "another database" in r["invalid"]["msg"], r["invalid"]


@pytest.mark.parametrize("name", ["", "a\nb", "CON", "nul.txt", "Com1", "nightly.", "nightly ", " nightly", "a:b",
                                  "a?b", ".hidden"])
def test_set_names_windows_would_refuse_or_alter_are_refused(clean_set, dest, name):
    r = run_host("Run", srum_args(clean_set, dest, set_name=name))
    assert r["invalid"] and r["invalid"]["option"] == "set_name", r
    assert "set_name" in r["invalid"]["msg"] and r["backup_started"] is False
    assert os.listdir(dest) == []


@pytest.mark.parametrize("name", ["CON", "aux", "lpt1"])
def test_session_names_that_are_windows_devices_are_refused(name):
    r = run_host("Session.Begin", {"session": name, "databases": ["/nonexistent/x.edb"], "log_path": "/tmp"})
    assert r["invalid"] and r["invalid"]["option"] == "session", r


def proc_start(pid):
    with open("/proc/%d/stat" % pid) as f:
        return "proc:" + f.read().rsplit(")", 1)[1].split()[19]


def write_run_record(staging, host, pid, started="2026-01-01T00:00:00Z", pid_start="proc:1"):
    os.makedirs(os.path.join(staging, "logs"))
    with open(os.path.join(staging, "logs", "SRU00001.log"), "wb") as f:
        f.write(b"\0" * 4096)
    with open(os.path.join(staging, "run.json"), "w") as f:
        json.dump({"format": "ese.backup/run/1", "set_name": "s", "host": host, "pid": pid, "pid_start": pid_start,
                   "started": started}, f)


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_stale_staging_folder_of_this_host_is_removed_and_named(clean_set, dest):
    """The run that wrote it was killed: its pid is gone, or is another process now."""
    staging = os.path.join(dest, ".s.partial")
    write_run_record(staging, "LANE01", dead_pid())
    info = run_host("Session.Info", {"backup_path": dest}, env={"COMPUTERNAME": "LANE01"})
    assert [(s["name"], s["status"]) for s in info["backup_sets"]] == [(".s.partial", "stale")]
    r = run_host("Run", srum_args(clean_set, dest, set_name="s"), env={"COMPUTERNAME": "LANE01"})
    assert r["backup_set"] == os.path.join(dest, "s"), r
    assert any(staging in w and "stale" in w for w in r["warnings"]), r["warnings"]
    assert sorted(os.listdir(dest)) == ["s"]


def test_a_staging_folder_of_a_live_run_or_another_host_is_left_alone(clean_set, dest):
    for host, pid in (("LANE01", os.getpid()), ("OTHER", dead_pid())):
        staging = os.path.join(dest, ".s.partial")
        write_run_record(staging, host, pid, pid_start=proc_start(os.getpid()))
        before = tree(staging)
        r = run_host("Run", srum_args(clean_set, dest, set_name="s"), env={"COMPUTERNAME": "LANE01"})
        assert r["invalid"]["option"] == "set_name" and "another run is writing" in r["invalid"]["msg"], r
        assert host in r["invalid"]["msg"] and tree(staging) == before
        shutil.rmtree(staging)


def test_a_staging_folder_without_a_record_is_stale_after_a_day(clean_set, dest):
    staging = os.path.join(dest, ".s.partial")
    os.makedirs(os.path.join(staging, "logs"))
    r = run_host("Run", srum_args(clean_set, dest, set_name="s"))
    assert r["invalid"]["option"] == "set_name", r
    old = time.time() - 2 * 86400
    for p in (os.path.join(staging, "logs"), staging):
        os.utime(p, (old, old))
    r = run_host("Run", srum_args(clean_set, dest, set_name="s"))
    assert r["backup_set"] == os.path.join(dest, "s") and any("stale" in w for w in r["warnings"]), r


def test_info_never_opens_a_manifest_that_is_not_a_regular_file(dest):
    """A FIFO planted as a set's manifest.json would block a read forever."""
    os.mkdir(os.path.join(dest, "planted"))
    os.mkfifo(os.path.join(dest, "planted", "manifest.json"))
    info = run_host("Session.Info", {"backup_path": dest})
    (s,) = info["backup_sets"]
    assert (s["name"], s["status"]) == ("planted", "unreadable_manifest") and "not a regular file" in s["error"], s
