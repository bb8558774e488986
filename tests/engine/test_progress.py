# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Progress of a copy in flight: the run keeps <dest>/.<set_name>.partial/progress.json up to date, Info with
progress reports it while the run writes, and the published set does not carry it."""
import json
import os
import subprocess
import time

from engine_host import BUILD_SIM, HOST, run_host, srum_args

WRITE_DELAY = "ESE_BACKUP_TEST_WRITE_DELAY_MS"


def grow_sparse(db, size):
    """The database with zero (unused) pages up to size bytes, as a sparse file."""
    with open(db, "r+b") as f:
        f.truncate(size)


def start(entry, args, env):
    e = dict(os.environ, LD_LIBRARY_PATH=BUILD_SIM, **env)
    e.pop("ESESIM_FAULTS", None)
    proc = subprocess.Popen(["mono", HOST], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=e)
    proc.stdin.write(json.dumps({"entry": entry, "args": args, "check_mode": False}).encode())
    proc.stdin.close()
    return proc


def test_a_run_reports_rising_progress_and_its_set_carries_none(clean_set, dest):
    db = os.path.join(clean_set, "SRUDB.dat")
    grow_sparse(db, 24 << 20)
    # A copy backup never truncates, so no kept-logs step removes progress.json: the publish must.
    proc = start("Run", srum_args(clean_set, dest, set_name="big", type="copy", buffer_size=1048576),
                 {WRITE_DELAY: "250"})
    seen = []
    while proc.poll() is None:
        r = run_host("Session.Info", {"progress": dest})
        assert r["invalid"] is None, r
        seen.extend(p for p in r["progress"] if p["bytes_done"] is not None)
        time.sleep(0.2)
    out = json.loads(proc.stdout.read())
    assert out["failed_call"] is None and out["backup_set"] == os.path.join(dest, "big"), out
    done = [p["bytes_done"] for p in seen]
    assert len(set(done)) >= 3 and done == sorted(done), done
    last = seen[-1]
    assert last["set_name"] == "big" and last["status"] == "in_progress", last
    assert last["staging"] == os.path.join(dest, ".big.partial"), last
    assert last["bytes_total"] >= (24 << 20) and 0 < last["percent"] <= 100, last
    assert last["rate_bytes_per_s"] > 0 and last["eta_s"] is not None and last["pid"] == proc.pid, last
    assert any(p["file"] == "databases/SRUDB.dat" for p in seen), seen
    assert "progress.json" not in os.listdir(out["backup_set"])
    assert run_host("Session.Info", {"progress": dest})["progress"] == []


def test_progress_needs_an_absolute_path(dest):
    r = run_host("Session.Info", {"progress": "relative/dest"})
    assert r["invalid"]["option"] == "progress" and "absolute" in r["invalid"]["msg"], r
    assert run_host("Session.Info", {"progress": os.path.join(dest, "missing")})["progress"] == []


def test_a_session_copy_reports_its_progress_and_its_set_carries_none(tmp_path, clean_set, dest):
    from test_session_robustness import Sessions
    sessions = Sessions(tmp_path)
    try:
        grow_sparse(os.path.join(clean_set, "SRUDB.dat"), 16 << 20)
        proc, w = sessions.begin(clean_set, host_env_extra={WRITE_DELAY: "250"})
        assert w["started"], w
        copy = start("Session.Copy", {"session": "s", "dest": dest, "set_name": "one"}, sessions.env)
        seen = []
        while copy.poll() is None:
            seen.extend(p for p in sessions.call("Session.Info", {"progress": dest})["progress"] if p["bytes_done"])
            time.sleep(0.2)
        out = json.loads(copy.stdout.read())
        assert out["failed_call"] is None and out["backup_set"] == os.path.join(dest, "one"), out
        assert len(set(p["bytes_done"] for p in seen)) >= 2 and all(p["pid"] == proc.pid for p in seen), seen
        assert "progress.json" not in os.listdir(out["backup_set"])
        sessions.call("Session.End", {"session": "s", "mode": "abort"})
    finally:
        sessions.close()
