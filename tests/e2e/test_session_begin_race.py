# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Two begins of one session at the same time (two ansible-playbook runs against one host). One starts the
session host; the other reports the session open, or fails at once saying it is already starting. Before
the serve file was claimed, the second replaced the first's, and a begin waited out start_timeout."""
import threading
import time

from simulation import engines_left
from test_sessions import BEGIN, END, hosts_cleanup, play  # noqa: F401  (fixture)


def test_two_begins_of_one_session_at_once(hosts_cleanup):
    sim = hosts_cleanup
    sim.add_host("dc01")
    sim.place_fixtures()
    for rnd in range(3):
        out = {}

        def begin(tag):
            t = time.time()
            res = sim.run(play(BEGIN), extra_args=["-e", "sess=r%d" % rnd], tag=tag)
            out[tag] = (res.task("dc01", "begin"), time.time() - t)

        threads = [threading.Thread(target=begin, args=(tag,)) for tag in ("-a", "-b")]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        rows = sorted(rec["result"]["policy_row"] for rec, dummy in out.values())
        assert rows.count("begin.begun") == 1, out
        for rec, seconds in out.values():
            r = rec["result"]
            assert seconds < 40, (seconds, r)  # never the 60 s start_timeout
            assert r["policy_row"] in ("begin.begun", "begin.exists", "begin.invalid"), r
            if r["policy_row"] == "begin.invalid":
                assert "already starting" in r["msg"] and rec["status"] == "failed", r
        res = sim.run(play(END), extra_args=["-e", "sess=r%d" % rnd, "-e", "end_mode=abort"])
        assert res.task("dc01", "end")["result"]["policy_row"] == "end.ended_abort"
    assert engines_left(sim.root) == []
