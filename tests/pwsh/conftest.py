# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the PowerShell 7 lane (see lane.py). Without pwsh the suite skips, saying how to
install it; where ../shared/tools/pwsh exists it fails instead (tests/lib/pwsh.py)."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
for _path in (HERE, os.path.join(HERE, "..", "lib")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from pwsh import require_pwsh  # noqa: E402  (tests/lib)
from lane import Lane, check_simulator  # noqa: E402


@pytest.fixture(scope="session")
def pwsh():
    return require_pwsh()


@pytest.fixture(scope="module")
def lane(pwsh, tmp_path_factory):
    check_simulator()
    return Lane(tmp_path_factory.mktemp("lane"), pwsh)
