# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the PowerShell 7 lane (see lane.py). Without pwsh the suite skips, saying how to
install it; where ../shared/tools/pwsh exists it fails instead (tests/lib/pwsh.py).

Each PowerShell task costs seconds of CPU, so the integration targets (the longest run, test_targets.py)
start with the first module of this suite, in the background, and the other modules' playbooks run while
they do; test_targets.py, moved to the end of this suite, waits for them.
"""
import os
import sys

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
for _path in (HERE, os.path.join(HERE, "..", "lib")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from pwsh import require_pwsh  # noqa: E402  (tests/lib)
from lane import REPO, Lane, SimulatedCA, check_simulator  # noqa: E402

TARGETS_LANE = os.path.join(REPO, "tests", "integration", "lane")


@pytest.fixture(scope="session")
def pwsh():
    return require_pwsh()


@pytest.fixture(scope="module")
def lane(pwsh, tmp_path_factory):
    check_simulator()
    return Lane(tmp_path_factory.mktemp("lane"), pwsh)


@pytest.fixture(scope="session")
def targets_started(pwsh, tmp_path_factory):
    """tests/integration/lane/targets.yml over its inventory, started: (Lane, process, hosts). The host of
    the adcs target gets a simulated CA (lane.SimulatedCA), stopped at the end of the session."""
    check_simulator()
    targets_lane = Lane(tmp_path_factory.mktemp("targets"), pwsh)
    inventory = os.path.join(TARGETS_LANE, "inventory.yml")
    with open(inventory) as f:
        hosts = yaml.safe_load(f)["all"]["children"]["ese_lane"]["hosts"]
    ca = SimulatedCA(os.path.join(targets_lane.root, "ca"))
    try:
        ca.start()
        env = {"ESE_LANE_PWSH": targets_lane.pwsh, "ESE_LANE_ROOT": os.path.join(targets_lane.root, "hosts")}
        env.update(ca.env())
        proc, dummy = targets_lane.start(os.path.join(TARGETS_LANE, "targets.yml"), inventory, forks=len(hosts),
                                         env=env, name="targets")
        try:
            yield targets_lane, proc, dict((host, v["ese_lane_target"]) for host, v in hosts.items())
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    finally:
        ca.stop()
    assert not ca.alive(), "the simulated CA outlived the session"


@pytest.fixture(scope="module", autouse=True)
def _targets_first(request):
    """Starts the integration targets with the first module of this suite, when test_targets.py is part
    of the run (module scope: other suites of a larger session do not wait behind them)."""
    if any(os.path.basename(str(item.fspath)) == "test_targets.py" for item in request.session.items):
        request.getfixturevalue("targets_started")


def pytest_collection_modifyitems(session, config, items):
    """test_targets.py last among this suite's tests: it waits for the run that the others overlap."""
    mine = [i for i, item in enumerate(items) if os.path.dirname(str(item.fspath)) == HERE]
    if not mine:
        return
    block = [items[i] for i in mine]
    ordered = [it for it in block if os.path.basename(str(it.fspath)) != "test_targets.py"]
    ordered += [it for it in block if os.path.basename(str(it.fspath)) == "test_targets.py"]
    for i, item in zip(mine, ordered):
        items[i] = item
