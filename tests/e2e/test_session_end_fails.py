# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An End that fails every time (JetEndExternalBackupInstance2 -> -1090 on every call): end mode normal fails
and the session host keeps the backup, so that the operator can retry; end mode abort stops the backup at once
with JetTerm2(JET_bitTermStopBackup), as run does, and the session host exits. The finder of engine processes
is shown to find the live session host first, so that its "none left" means something."""

from simulation import engine_pids, engines_left
from test_sessions import BEGIN, COPY, END, hosts_cleanup, journal, play  # noqa: F401  (fixture)

END_FAILS = [{"api": "JetEndExternalBackupInstance2", "call": 1, "err": -1090, "every": True}]


def test_end_abort_stops_a_backup_whose_end_always_fails(hosts_cleanup):
    sim = hosts_cleanup
    sim.add_host("stuck", esesim_faults=END_FAILS)
    res = sim.run(play(BEGIN + COPY + END))
    assert res.rc == 0, res.stdout[-3000:]
    end = res.task("stuck", "end")
    assert end["status"] == "failed" and end["result"]["policy_row"] == "end.other_error", end
    pid = journal(sim, "stuck")["pid"]
    assert pid in engine_pids(sim.root), "the finder does not see the live session host %d" % pid
    assert journal(sim, "stuck")["ended"] is None  # the host still holds the backup: end may be retried

    res = sim.run(play(END), extra_args=["-e", "end_mode=abort"])
    rec = res.task("stuck", "end")
    end = rec["result"]
    assert rec["status"] == "ok" and end["policy_row"] == "end.stopped" and end["changed"] is True, end
    assert end["session_state"] == "aborted" and end["backup_valid"] is False
    assert "JetTerm2" in end["msg"] and "-1090" in end["msg"]
    calls = [t["call"] for t in end["trace"]]
    assert calls[-1] == "JetTerm2" and end["trace"][-1]["detail"] == "grbit=0x4", end["trace"]  # JET_bitTermStopBackup
    j = journal(sim, "stuck")
    assert j["ended"] == "abort" and "JetTerm2" in j["end_reason"]
    assert engines_left(sim.root) == [], "the session host did not exit"
