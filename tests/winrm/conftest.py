# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the WinRM lane (see winrm_lane.py and tests/sim/README.md, "WinRS stand-in")."""
import os

import pytest

from winrm_lane import REPO, SIM_LIB, Lane


@pytest.fixture(scope="session")
def pwsh():
    """PowerShell 7 for the stand-in's ``PowerShell`` commands (skip/fail policy: tests/lib/pwsh.py)."""
    from pwsh import require_pwsh
    path = require_pwsh()
    if not os.path.exists(os.path.join(SIM_LIB, "libesent.so")):
        pytest.fail("build/sim/libesent.so is missing: run 'make sim'")
    try:
        import winrm  # noqa: F401  (pywinrm: ansible-core's winrm connection plugin needs it)
    except ImportError:
        pytest.fail("pywinrm is not installed: pip install -r %s" % os.path.join(REPO, "requirements-test.txt"))
    return path


@pytest.fixture
def lane(tmp_path, pwsh):
    """A WinRS stand-in of its own for one test; stopped (its processes killed) afterwards."""
    lane = Lane(tmp_path / "lane", pwsh)
    yield lane
    lane.stop()


@pytest.fixture(scope="module")
def module_lane(tmp_path_factory, pwsh):
    """One stand-in shared by the tests of a module (for the playbook run they share)."""
    lane = Lane(tmp_path_factory.mktemp("winrm"), pwsh)
    yield lane
    lane.stop()
