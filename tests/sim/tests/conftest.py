# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures: the simulator loaded once, reset before every test (EseSimReset), and
fresh copies of the sample sets under tmp_path."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import esesim  # noqa: E402


@pytest.fixture(scope="session")
def lib():
    return esesim.load_lib()


@pytest.fixture
def jet(lib, monkeypatch):
    for var in ("ESESIM_FAULTS", "ESESIM_PROFILE", "ESESIM_DISK_FREE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(os.environ.get("TMPDIR", "/tmp"))
    lib.EseSimReset()
    j = esesim.Jet(lib)
    yield j
    lib.EseSimReset()


@pytest.fixture
def env(jet, monkeypatch):
    """Sets simulator env vars and re-reads them (EseSimReset)."""
    def apply(**kv):
        for k, v in kv.items():
            monkeypatch.setenv(k, v)
        jet.lib.EseSimReset()
    return apply


class Setup:
    """An initialised instance with the set's database attached."""

    def __init__(self, jet, d, base="SRU", db="SRUDB.dat", page=4096, attach=True, name="ese.backup"):
        self.jet, self.dir, self.db = jet, d, os.path.join(d, db)
        if page != 4096:
            assert jet.setp(None, esesim.P_PAGE_SIZE, page) == 0
        err, self.inst = jet.create(name)
        assert err == 0
        for pid, s in ((esesim.P_LOG_PATH, d), (esesim.P_SYSTEM_PATH, d), (esesim.P_BASE_NAME, base)):
            assert jet.setp(self.inst, pid, s=s) == 0
        self.init_err = jet.init(self.inst)
        if self.init_err == 0:
            err, self.ses = jet.session(self.inst)
            assert err == 0
            if attach:
                self.attach_err = jet.attach(self.ses, self.db)

    def log(self, name):
        return os.path.join(self.dir, name)


@pytest.fixture
def clean_set(jet, tmp_path):
    s = Setup(jet, esesim.copy_set("srum-server2022-clean", str(tmp_path / "clean")))
    assert s.init_err == 0 and s.attach_err == 0
    return s


@pytest.fixture
def dirty_set(jet, tmp_path):
    s = Setup(jet, esesim.copy_set("srum-win11-dirty", str(tmp_path / "dirty")))
    assert s.init_err == 0 and s.attach_err == 0
    return s


@pytest.fixture
def with_env(jet, env, tmp_path):
    """Applies simulator env vars (EseSimReset), then builds a fresh set: with_env("dirty", K=V)."""
    def build(which="clean", **kv):
        env(**kv)
        name = {"clean": "srum-server2022-clean", "dirty": "srum-win11-dirty"}[which]
        s = Setup(jet, esesim.copy_set(name, str(tmp_path / which)))
        assert s.init_err == 0 and s.attach_err == 0
        return s
    return build


@pytest.fixture
def make_setup(jet):
    return lambda d, **kw: Setup(jet, d, **kw)
