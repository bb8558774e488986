# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The integration targets (tests/integration/targets), unchanged, on lane hosts: one host per target,
in parallel, through tests/integration/lane/targets.yml and its inventory (as a user would run them).
The run starts with the suite (conftest.py) and overlaps the other modules of the lane.

Every assert task of a target must have run and passed on its host; the steps that only a Windows host
can check (``when: ese_test_windows | bool``, tasks/windows.yml) must have been skipped.
"""
import os

import pytest
import yaml

from lane import REPO

TARGETS = os.path.join(REPO, "tests", "integration", "targets")


def checked_tasks(target):
    """(name, status wanted) of the tasks of a target's tasks/main.yml that the lane must see: every
    assert passes, every Windows-only step (``when: ese_test_windows``) is skipped."""
    with open(os.path.join(TARGETS, target, "tasks", "main.yml")) as f:
        tasks = yaml.safe_load(f)
    found = []
    for task in tasks:
        when = str(task.get("when", ""))
        if "ese_test_windows" in when and "not " not in when:
            found.append((task["name"], "skipped"))
        elif "ansible.builtin.assert" in task:
            found.append((task["name"], "ok"))
    return found


@pytest.fixture(scope="module")
def targets_run(targets_started):
    """The run that conftest.py started when the session began."""
    targets_lane, proc, hosts = targets_started
    return targets_lane.collect(proc, timeout=1800), hosts


@pytest.mark.parametrize("target", ["run", "info", "restore", "sessions", "adcs"])
def test_target_passes_in_the_lane(targets_run, target):
    res, hosts = targets_run
    host = [h for h, t in hosts.items() if t == target][0]
    recap = res.recap(host)
    assert recap["failed"] == 0 and recap["unreachable"] == 0, "%s failed:\n%s" % (target, res.explain())
    checked = checked_tasks(target)
    assert [n for n, want in checked if want == "ok"], "target %s has no assert tasks" % target
    for name, want in checked:
        rec = res.task(host, "%s : %s" % (target, name))
        assert rec["status"] == want, (target, name, rec)
    # the database came from setup_ese_database (esent.dll's own calls, here the simulator's)
    created = res.task(host, "setup_ese_database : Create a clean ESE database set with esent.dll itself")
    assert created["status"] == "ok" and created["result"]["changed"] is True, created
    assert not os.path.exists(os.path.dirname(created["result"]["database"]["log_path"]))  # removed at the end


def test_the_targets_ran_at_the_same_time(targets_run):
    """One ansible-playbook run, one host per target (forks): the lane's cost is its longest target."""
    res, hosts = targets_run
    assert res.rc == 0, res.explain()
    assert sorted(set(r["host"] for r in res.records)) == sorted(hosts)
