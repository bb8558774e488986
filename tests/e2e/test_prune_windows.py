# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ese.backup.prune on a simulated Windows host, for sets on its own disk: the engine scans and removes, the
controller plans; check mode with --diff lists what would go, a real run removes it, and the decisions are the
Python module's on a copy of the same sets."""
import os
import shutil
import sys

from simulation import REPO

sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
import ese_synth as syn  # noqa: E402

from ansible_collections.ese.backup.plugins.module_utils.ese_format import backupset as bs  # noqa: E402
from ansible_collections.ese.backup.plugins.modules import prune  # noqa: E402

DEST = "C:\\Backup\\sru"
PLAY = r"""
- hosts: all
  gather_facts: false
  tasks:
    - name: plan
      ese.backup.prune:
        path: 'C:\Backup\sru'
        keep_full: 1
        min_verified: 1
      check_mode: true
      diff: true
    - name: prune
      ese.backup.prune:
        path: 'C:\Backup\sru'
        keep_full: 1
        min_verified: 1
    - name: again
      ese.backup.prune:
        path: 'C:\Backup\sru'
        keep_full: 1
        min_verified: 1
"""


def chains(d):
    syn.make_backup_set(d, "full-0", "full", 4, 6, created="2026-11-01T04:00:00Z")
    syn.make_backup_set(d, "inc-01", "incremental", 7, 8, created="2026-11-02T04:00:00Z")
    syn.make_backup_set(d, "full-a", "full", 10, 12, created="2026-11-20T04:00:00Z")
    syn.make_backup_set(d, "inc-a1", "incremental", 13, 14, created="2026-11-21T04:00:00Z")
    syn.make_backup_set(d, "diff-a1", "differential", 13, 15, created="2026-11-21T05:00:00Z")
    syn.make_backup_set(d, "full-b", "full", 17, 18, created="2026-11-24T04:00:00Z")
    syn.make_backup_set(d, "inc-b1", "incremental", 19, 20, created="2026-11-25T04:00:00Z")
    # a chain the Python module and the engine must both hold: its incremental has no ending record
    syn.make_backup_set(d, "full-h", "full", 1, 2, created="2026-10-01T04:00:00Z", seed=7)
    syn.make_backup_set(d, "inc-h1", "incremental", 3, 3, created="2026-10-02T04:00:00Z", seed=7, ending=False)
    return d


def test_prune_on_a_windows_host_plans_as_the_python_module_and_removes_in_order(sim, tmp_path):
    host = sim.add_host("w1")
    sim.place_fixtures()
    local = sim.local(host, DEST)
    chains(local)
    copy = str(tmp_path / "copy")
    shutil.copytree(local, copy)
    expected = prune.run({"path": copy, "keep_full": 1, "min_verified": 1}, check_mode=True)

    res = sim.run(PLAY)
    assert res.rc == 0, res.stdout[-4000:]
    plan = res.task(host, "plan")
    assert plan["status"] == "ok" and plan["result"]["changed"] is True, plan
    p = plan["result"]
    for key in ("kept", "removed", "held", "chains", "newest_verified_full", "bytes_freed"):
        assert p[key] == expected[key], key
    assert [x["name"] for x in p["removed"]] == ["inc-01", "full-0", "diff-a1", "inc-a1", "full-a"]
    assert [x["name"] for x in p["held"]] == ["full-h", "inc-h1"]
    assert all(x["rules"] == ["no_rule_keeps_it"] for x in p["removed"])
    # --diff: the listing before and after, as the Python module shows it
    assert "-full-a  full 2026-11-20T04:00:00Z  (no_rule_keeps_it)" in res.stdout
    assert "inc-h1  incremental 2026-10-02T04:00:00Z  (ending_not_valid: inc-h1)" in res.stdout
    assert any("full-h kept: ending_not_valid: inc-h1" in str(w) for w in p["warnings"]), p["warnings"]

    run = res.task(host, "prune")
    assert run["status"] == "ok" and run["result"]["changed"] is True, run
    r = run["result"]
    assert [x["name"] for x in r["removed"]] == [x["name"] for x in expected["removed"]]
    assert r["bytes_freed"] == expected["bytes_freed"]
    assert sorted(os.listdir(local)) == ["full-b", "full-h", "inc-b1", "inc-h1"]
    # the Python module, run for real on the copy, leaves the same sets
    prune.run({"path": copy, "keep_full": 1, "min_verified": 1})
    assert sorted(os.listdir(copy)) == sorted(os.listdir(local))
    assert bs.find_sets(local)[0] == ["full-b", "full-h", "inc-b1", "inc-h1"]

    again = res.task(host, "again")
    assert again["status"] == "ok" and again["result"]["changed"] is False and again["result"]["removed"] == []
