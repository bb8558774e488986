# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""End to end: sets written by the C# engine over the esent simulator verify as valid.

Runs ``mono build/sim/EseSimHost.exe`` with a JSON request on stdin (docs/architecture.md section 2),
against a writable copy of a real SRUM folder, then verifies the published sets and their chain.
"""
import json
import os
import shutil
import subprocess

import pytest

from ansible_collections.ese.backup.plugins.module_utils.ese_format.verify import verify

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", ".."))
HOST = os.path.join(REPO, "build", "sim", "EseSimHost.exe")

pytestmark = pytest.mark.skipif(not os.path.exists(HOST),
                                reason="build/sim/EseSimHost.exe does not exist yet (run 'make build')")


def run_engine(args, check_mode=False):
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.path.join(REPO, "build", "sim")
    env.pop("ESESIM_FAULTS", None)
    req = {"entry": "Run", "args": args, "check_mode": check_mode}
    proc = subprocess.run(["mono", HOST], check=False, input=json.dumps(req).encode(), env=env, capture_output=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    res = json.loads(proc.stdout.decode())
    assert res.get("failed_call") is None and res.get("invalid") is None, \
        {k: v for k, v in res.items() if k != "trace"}
    return res


@pytest.fixture
def live(tmp_path, testdata):
    def _make(sample):
        d = tmp_path / "live"
        shutil.copytree(os.path.join(testdata, "sets", sample), str(d))
        for f in d.iterdir():
            os.chmod(str(f), 0o644)
        return str(d)
    return _make


def _args(src, dest, kind, name):
    return {"databases": [os.path.join(src, "SRUDB.dat")], "log_path": src, "base_name": "SRU", "type": kind,
            "dest": dest, "set_name": name}


def _codes(r):
    return [(p["code"], p["file"], p["detail"]) for p in r["problems"]]


@pytest.mark.parametrize("sample", ["srum-win11-dirty", "srum-server2022-clean"])
def test_full_set_from_engine_is_valid(tmp_path, live, sample):
    src = live(sample)
    dest = str(tmp_path / "dest")
    os.makedirs(dest)
    res = run_engine(_args(src, dest, "full", "full-1"))
    assert res["backup_set"] and os.path.isdir(res["backup_set"])
    r = verify(res["backup_set"])
    assert r["valid"], _codes(r)
    (db,) = r["databases"]
    assert db["streamed"] and db["bad_pages"] == [] and db["pages_checked"] > 0
    assert db["trailer"]["bkinfo"]["gen_low"] == res["manifest"]["databases"][0]["backup_gen_low"]
    assert r["logs"][0]["gen_low"] <= db["required_generations"][0]
    assert r["logs"][0]["gen_high"] >= db["required_generations"][1]
    # the live folder after the backup is a consistent ESE folder too
    r = verify(src)
    assert r["valid"], _codes(r)


def test_engine_chain_full_then_incrementals(tmp_path, live):
    src = live("srum-win11-dirty")
    dest = str(tmp_path / "dest")
    os.makedirs(dest)
    run_engine(_args(src, dest, "full", "a-full"))
    run_engine(_args(src, dest, "incremental", "b-inc"))
    run_engine(_args(src, dest, "incremental", "c-inc"))
    r = verify(dest)
    assert r["valid"], _codes(r)
    assert [s["name"] for s in r["sets"]] == ["a-full", "b-inc", "c-inc"] and all(s["valid"] for s in r["sets"])
    (chain,) = r["chains"]
    assert chain["continuous"] and chain["sets"] == ["a-full", "b-inc", "c-inc"]


def test_engine_check_mode_writes_no_set(tmp_path, live):
    src = live("srum-win11-dirty")
    dest = str(tmp_path / "dest")
    os.makedirs(dest)
    res = run_engine(_args(src, dest, "full", "x"), check_mode=True)
    assert res["backup_set"] is None and os.listdir(dest) == []


def test_engine_set_with_a_flipped_page_bit(tmp_path, live, synth):
    src = live("srum-win11-dirty")
    dest = str(tmp_path / "dest")
    os.makedirs(dest)
    res = run_engine(_args(src, dest, "full", "full-1"))
    db = os.path.join(res["backup_set"], "databases", "SRUDB.dat")
    synth.corrupt(db, (20 + 1) * 4096 + 333, 6)
    r = verify(res["backup_set"])
    codes = sorted(set(p["code"] for p in r["problems"]))
    assert codes in (["DB_PAGE_CORRECTABLE", "FILE_HASH_MISMATCH"], ["DB_PAGE_CHECKSUM", "FILE_HASH_MISMATCH"])
    assert r["databases"][0]["bad_pages"] == [20]
