# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the end-to-end tests (see simulation.py)."""
import os
import shutil

import pytest

from simulation import REPO, Simulation


@pytest.fixture
def sim(tmp_path):
    if not os.path.exists(os.path.join(REPO, "build", "sim", "libesent.so")):
        pytest.fail("build/sim/libesent.so is missing: run 'make sim'")
    for tool in ("mono", "mcs"):  # the simulated host compiles each payload's C# (tests/sim/payload.py)
        if not shutil.which(tool):
            pytest.fail("%s is missing: run 'make setup'" % tool)
    return Simulation(tmp_path)


@pytest.fixture
def bare_sim(tmp_path):
    """Simulated hosts without the engine (for tests of the connection plugin itself)."""
    return Simulation(tmp_path)
