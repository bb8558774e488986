# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs the C# engine through the Mono host (build/sim/EseSimHost.exe) against the esent simulator."""
import json
import os
import shutil
import stat
import struct
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_SIM = os.path.join(ROOT, "build", "sim")
HOST = os.path.join(BUILD_SIM, "EseSimHost.exe")
SAMPLES = os.path.join(os.environ.get("ESE_TESTDATA") or os.path.join(ROOT, "tests", "data", "ese"), "sets")
CLEAN = os.path.join(SAMPLES, "srum-server2022-clean")
DIRTY = os.path.join(SAMPLES, "srum-win11-dirty")


@pytest.fixture(scope="session", autouse=True)
def built():
    """Builds the simulator and the engine host once; a build failure fails every test."""
    proc = subprocess.run(["make", "-s", "sim", "engine"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail("make sim engine failed:\n" + proc.stdout + proc.stderr)
    return HOST


def run_host(entry, args, check_mode=False, faults=None, env=None, profile=None):
    e = dict(os.environ)
    e["LD_LIBRARY_PATH"] = BUILD_SIM + (":" + e["LD_LIBRARY_PATH"] if e.get("LD_LIBRARY_PATH") else "")
    e.pop("ESESIM_FAULTS", None)
    if faults is not None:
        e["ESESIM_FAULTS"] = json.dumps(faults)
    if profile:
        e["ESESIM_PROFILE"] = profile
    if env:
        e.update(env)
    req = {"entry": entry, "args": args, "check_mode": check_mode}
    proc = subprocess.run(["mono", HOST], input=json.dumps(req), capture_output=True, text=True, env=e, timeout=300)
    assert proc.returncode == 0, "host failed: rc=%d\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def copy_set(src, dst):
    shutil.copytree(src, dst)
    for dirpath, dirs, files in os.walk(dst):
        os.chmod(dirpath, 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    return str(dst)


@pytest.fixture
def clean_set(tmp_path):
    return copy_set(CLEAN, tmp_path / "src")


@pytest.fixture
def dirty_set(tmp_path):
    return copy_set(DIRTY, tmp_path / "src")


@pytest.fixture
def dest(tmp_path):
    d = tmp_path / "dest"
    d.mkdir()
    return str(d)


def srum_args(set_dir, dest_dir, **kw):
    a = {"databases": [os.path.join(set_dir, "SRUDB.dat")], "log_path": set_dir, "system_path": set_dir,
         "base_name": "SRU", "dest": dest_dir, "type": "full"}
    a.update(kw)
    return a


from ansible_collections.ese.backup.plugins.module_utils.ese_format.checksum import xor_old  # noqa: E402

# --- minimal format helpers (ese-file-format.md) ---------------------------------------------------

def u32(b, off):
    return struct.unpack_from("<I", b, off)[0]


def header_facts(page):
    return {"checksum_ok": u32(page, 0) == xor_old(page), "magic": u32(page, 4), "state": u32(page, 52),
            "sign_db": page[24:52], "sign_log": page[108:136],
            "page_size": u32(page, 236) or 4096,
            "full_prev": (u32(page, 136 + 16), u32(page, 136 + 20)),
            "inc_prev": (u32(page, 160 + 16), u32(page, 160 + 20)),
            "full_cur": (u32(page, 184 + 16), u32(page, 184 + 20)),
            "copy_prev": (u32(page, 420 + 16), u32(page, 420 + 20)),
            "diff_prev": (u32(page, 444 + 16), u32(page, 444 + 20))}


def live_header(db_path):
    with open(db_path, "rb") as f:
        return header_facts(f.read(4096))


def trace_calls(result):
    return [(t["call"], t["err"], t["detail"]) for t in result["trace"]]


def tree(path):
    out = []
    for dirpath, dirs, files in os.walk(path):
        for n in dirs + files:
            out.append(os.path.relpath(os.path.join(dirpath, n), path))
    return sorted(out)
