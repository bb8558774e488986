# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Session hosts that fail at start or are busy, end to end (simulated hosts, the begin action plugin, the
async job's results file): begin reports the host's own error within start_timeout, and a host that runs but
does not answer shows as busy, with its journal untouched."""
import json
import os
import signal
import socket
import time

import pytest

from simulation import SRU_DIR, engine_pids

DB = SRU_DIR + "\\SRUDB.dat"
JOURNALS = "C:\\ProgramData\\ese.backup\\sessions"


@pytest.fixture
def hosts(sim):
    yield sim
    for pid in engine_pids(sim.root):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def play(tasks):
    return "- hosts: all\n  gather_facts: false\n  tasks:\n" + tasks


BEGIN = """
    - name: begin
      ese.backup.begin:
        session: s
        databases: ['%s']
        log_path: '%s'
        base_name: SRU
        start_timeout: "{{ start | default(60) }}"
      ignore_errors: true
""" % (DB, SRU_DIR)


def test_a_host_that_dies_at_start_fails_begin_with_its_own_error(hosts):
    """The journal's path is taken by a folder, so the host cannot write its journal and ends at once; the wait
    gives up after start_timeout (5 s), and begin reports the host's own result from the async job."""
    sim = hosts
    sim.add_host("dead", start=5)
    sim.place_fixtures()
    os.makedirs(os.path.join(sim.local("dead", JOURNALS), "s.json"))
    t0 = time.monotonic()
    res = sim.run(play(BEGIN))
    elapsed = time.monotonic() - t0
    assert res.rc == 0, res.proc.stdout + res.proc.stderr
    rec = res.task("dead", "begin")
    r = rec["result"]
    assert rec["status"] == "failed" and r["changed"] is False and r["policy_row"] == "begin.failed", rec
    assert "did not report within 5 s" in r["msg"], r["msg"]
    assert "the session host's own result: SessionHost returned -1003: the session host could not start" in r["msg"]
    assert "cannot replace the session journal" in r["msg"], r["msg"]
    assert r["host_result"]["started"] is False
    assert elapsed < 55, elapsed  # not the default 60 s wait


def test_bad_start_timeout(hosts):
    sim = hosts
    sim.add_host("h", start=0)
    res = sim.run(play(BEGIN))
    rec = res.task("h", "begin")
    assert rec["status"] == "failed" and "invalid value for option 'start_timeout'" in rec["result"]["msg"], rec


INFO = """
    - name: info
      ese.backup.info:
        sessions: true
"""

END = """
    - name: end
      ese.backup.end:
        session: s
        mode: NORMAL
"""


def test_info_during_a_stalled_request_reports_busy_and_leaves_the_journal(hosts):
    sim = hosts
    sim.add_host("busy")
    res = sim.run(play(BEGIN))
    assert res.task("busy", "begin")["result"]["changed"] is True, res.task("busy", "begin")
    path = os.path.join(sim.local("busy", JOURNALS), "s.json")
    with open(path, "rb") as f:
        before = f.read()
    stall = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stall.connect(json.loads(before)["endpoint"])
    try:
        res = sim.run(play(INFO))
        rec = res.task("busy", "info")
        r = rec["result"]
        assert rec["status"] == "ok", rec
        s = [x for x in r["sessions"] if x["name"] == "s"][0]
        assert s["state"] == "busy" and "did not answer" in s["busy"], s
        with open(path, "rb") as f:
            assert f.read() == before
    finally:
        stall.close()
    res = sim.run(play(INFO + END))
    assert [x for x in res.task("busy", "info")["result"]["sessions"] if x["name"] == "s"][0]["state"] == "open"
    # The host served End after being busy; nothing was copied, so ESE's success is no valid backup.
    end = res.task("busy", "end")["result"]
    assert end["session_state"] == "ended" and end["jet_err"]["code"] == 0, end
    assert end["backup_valid"] is False and "no file was copied" in end["msg"], end
