# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the ese_format tests: the real samples (gunzipped once) and the synthetic generator."""
import gzip
import os
import shutil
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", ".."))
LIB = os.path.join(REPO, "tests", "lib")
if LIB not in sys.path:
    sys.path.insert(0, LIB)

TESTDATA = os.environ.get("ESE_TESTDATA") or os.path.abspath(os.path.join(REPO, "tests", "data", "ese"))


def _need(path):
    if not os.path.exists(path):
        pytest.skip("ESE sample %s not found (set ESE_TESTDATA)" % path)
    return path


@pytest.fixture(scope="session")
def testdata():
    return _need(TESTDATA)


@pytest.fixture(scope="session")
def singles(tmp_path_factory, testdata):
    """The .gz samples decompressed into a session temp dir, each in its own folder."""
    out = tmp_path_factory.mktemp("ese-singles")
    found = {}
    for folder, name in (("windows-search-win10-dirty-32k", "Windows.edb"), ("ntds-2012r2-temp-8k", "temp.edb"),
                         ("dissect-basic", "basic.edb")):
        src = _need(os.path.join(testdata, "single", folder, name + ".gz"))
        d = out / folder
        d.mkdir()
        with gzip.open(src, "rb") as fi, open(str(d / name), "wb") as fo:
            shutil.copyfileobj(fi, fo)
        found[name] = str(d / name)
    found["edb.chk"] = _need(os.path.join(testdata, "single", "ntds-2012r2-checkpoint", "edb.chk"))
    return found


@pytest.fixture
def copy_set(tmp_path, testdata):
    """Copy a sample set into a writable temp dir: copy_set('srum-win11-dirty') -> path."""
    def _copy(name):
        dst = tmp_path / name
        shutil.copytree(os.path.join(testdata, "sets", name), str(dst))
        for f in dst.iterdir():
            os.chmod(str(f), 0o644)
        return str(dst)
    return _copy


@pytest.fixture
def synth():
    import ese_synth
    return ese_synth
