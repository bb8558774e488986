"""Fixtures for the end-to-end tests (see simulation.py)."""
import os
import shutil

import pytest

from simulation import REPO, Simulation


@pytest.fixture
def sim(tmp_path):
    if not os.path.exists(os.path.join(REPO, "build", "sim", "EseSimHost.exe")):
        pytest.fail("build/sim/EseSimHost.exe is missing: run 'make build'")
    if not shutil.which("mono"):
        pytest.fail("mono is missing: run 'make setup'")
    return Simulation(tmp_path)


@pytest.fixture
def bare_sim(tmp_path):
    """Simulated hosts without the engine (for tests of the connection plugin itself)."""
    return Simulation(tmp_path)
