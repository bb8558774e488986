# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Throughput of ese.backup.verify on a 1 GiB database, against one SHA-256 stream of the same file.

Writes a synthetic database (tests/lib/ese_synth.py, 20 % all-zero pages; 1 GiB, 4 KiB pages by default)
on /dev/shm when it exists (tmpfs: no disk in the figures), else in the system temp folder, reads it once
to warm the page cache, then times, best of --repeat runs each, the runs interleaved (round robin):

- ``openssl dgst -sha256 <file>``               the limit: one SHA-256 stream (SHA extensions when the CPU has them)
- ``sha256sum <file>``                          for comparison only
- ``verify(<file>)``                            headers + every page checksum
- ``check_database(<file>, want_sha256=True)``  what a backup set's database costs: checksums + SHA-256, one read

and prints seconds and MB/s for each and ``ratio`` = limit / verify+sha256 (the goal is >= 0.95).
``--json`` ends the output with one JSON object on the last line. ``--pure-python`` forces the verifier's
fallback without numpy (``checksum.HAS_NUMPY = False``, what a failed ``import numpy`` sets; it is slow,
so give it a smaller ``--size-mib``). ``--rss`` instead prints the peak RSS (VmHWM) of verify and of
verify + SHA-256 per database size, each in a fresh child process: on sparse databases (64 MiB of written
pages, then a hole of all-zero pages, which the verifier counts as never-used pages: never their size on
disk) and, up to --rss-written-max-mib, on fully written ones.

    .venv/bin/python bench/verify.py [--size-mib 1024] [--page-size 4096] [--dir DIR] [--repeat 3] [--json]
    .venv/bin/python bench/verify.py --pure-python --size-mib 64 --json
    .venv/bin/python bench/verify.py --rss [--rss-sizes-mib 1024,8192] [--json]
"""
import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))

import ese_synth  # noqa: E402  (also puts the collection on sys.path)
from ansible_collections.ese.backup.plugins.module_utils.ese_format import checksum as ck  # noqa: E402
from ansible_collections.ese.backup.plugins.module_utils.ese_format import database as dbm  # noqa: E402
from ansible_collections.ese.backup.plugins.module_utils.ese_format.verify import verify  # noqa: E402


def storage_of(path):
    """``tmpfs`` when ``path`` is on a tmpfs mount (by /proc/self/mountinfo), else ``disk``."""
    best, fstype = "", None
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, right = line.split(" - ", 1)
                mnt = left.split()[4]
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, fstype = mnt, right.split()[0]
    except (IOError, OSError, ValueError, IndexError):
        return "disk"
    return "tmpfs" if fstype == "tmpfs" else "disk"


def default_dir():
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def round_robin(fns, repeat):
    """``{name: best seconds}``: run every function once per round, ``repeat`` rounds."""
    best = dict((name, None) for name, _fn in fns)
    for _round in range(repeat):
        for name, fn in fns:
            t = time.perf_counter()
            fn()
            s = time.perf_counter() - t
            best[name] = s if best[name] is None else min(best[name], s)
    return best


def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def speed(a):
    tmp = tempfile.mkdtemp(prefix="ese-bench-verify-", dir=a.dir or default_dir())
    try:
        path = os.path.join(tmp, "bench.edb")
        pages = a.size_mib * (1 << 20) // a.page_size - 2
        t = time.perf_counter()
        ese_synth.make_database(path, a.page_size, pages=pages)
        gen_s = time.perf_counter() - t
        size = os.path.getsize(path)
        with open(path, "rb") as f:                       # warm the page cache for every tool
            while f.read(8 << 20):
                pass
        want = hashlib.sha256()
        with open(path, "rb") as f:
            for blk in iter(lambda: f.read(8 << 20), b""):
                want.update(blk)
        load_before = loadavg()
        res = {}

        def run_verify():
            res["verify"] = verify(path)

        def run_both():
            res["both"] = dbm.check_database(path, want_sha256=True)

        fns = [("openssl", lambda: subprocess.run(["openssl", "dgst", "-sha256", path], check=True,
                                                  stdout=subprocess.DEVNULL)),
               ("verify", run_verify), ("verify_sha256", run_both)]
        if shutil.which("sha256sum"):
            fns.insert(1, ("sha256sum", lambda: subprocess.run(["sha256sum", path], check=True,
                                                               stdout=subprocess.DEVNULL)))
        best = round_robin(fns, a.repeat)
        r = res["verify"]
        if not r["valid"] or r["numpy"] != ck.HAS_NUMPY:
            sys.exit("verify did not pass: %s" % (r["problems"][:5],))
        info = res["both"][0]
        if res["both"][1] or info.get("sha256") != want.hexdigest():
            sys.exit("check_database with SHA-256 did not pass: %s" % (res["both"][1][:5],))
        mb = size / 1e6
        d = r["databases"][0]
        out = {
            "sha256_s": round(best["openssl"], 4), "limit_s": round(best["openssl"], 4),
            "verify_s": round(best["verify"], 4), "verify_sha256_s": round(best["verify_sha256"], 4),
            "ratio": round(best["openssl"] / best["verify_sha256"], 3),
            "page_size": a.page_size, "size_bytes": size, "storage": storage_of(path),
            "runtime": platform.python_implementation().lower(), "numpy": ck.HAS_NUMPY,
            "repeat": a.repeat, "cores": os.cpu_count(), "load_before": load_before, "load_after": loadavg(),
        }
        print("database          %s: %.0f MiB, %d-byte pages, %d pages (%d zero), written in %.1f s, on %s"
              % (path, size / 2.0 ** 20, a.page_size, d["pages_checked"], d["pages_zero"], gen_s, out["storage"]))
        print("runtime           %s %s, numpy %s, %d cores, load %s -> %s"
              % (platform.python_implementation(), platform.python_version(),
                 ck.np.__version__ if ck.HAS_NUMPY else "off (pure-Python fallback)", os.cpu_count(),
                 load_before, out["load_after"]))
        print("openssl sha256    %6.2f s  %7.0f MB/s  (the limit)" % (best["openssl"], mb / best["openssl"]))
        if "sha256sum" in best:
            print("sha256sum         %6.2f s  %7.0f MB/s" % (best["sha256sum"], mb / best["sha256sum"]))
        print("verify            %6.2f s  %7.0f MB/s" % (best["verify"], mb / best["verify"]))
        print("verify + sha256   %6.2f s  %7.0f MB/s  (a backup set's database: one read)"
              % (best["verify_sha256"], mb / best["verify_sha256"]))
        print("ratio limit / verify+sha256       %.3f  (%s)" % (
            out["ratio"], "goal >= 0.95" if ck.HAS_NUMPY else "no goal for the pure-Python fallback"))
        print("best of %d runs each, interleaved" % a.repeat)
        print("peak RSS of this process          %.0f MiB (includes the generator's buffers; see --rss)"
              % (peak_rss_kib() / 1024.0))
        if a.json:
            print(json.dumps(out, sort_keys=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# peak RSS per database size
# --------------------------------------------------------------------------------------------
REAL_HEAD_MIB = 64      # the sparse databases start with this many MiB of written pages, then holes


def make_sparse(path, size_mib, page_size):
    """A valid database of ``size_mib`` MiB: written pages at the start, then a hole (all-zero pages)."""
    real = min(size_mib, REAL_HEAD_MIB) * (1 << 20) // page_size - 2
    ese_synth.make_database(path, page_size, pages=real)
    with open(path, "r+b") as f:
        f.truncate(size_mib * (1 << 20))


def peak_rss_kib():
    """This process's peak RSS in KiB: VmHWM (its own address space's high-water mark; getrusage's ru_maxrss
    would include the parent's RSS at fork and exec), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (IOError, OSError, ValueError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_child(path, mode):
    """Child process: verify ``path`` and print its own peak RSS (KiB) before and after, as JSON."""
    before = peak_rss_kib()
    t = time.perf_counter()
    if mode == "verify":
        r = verify(path)
        ok = r["valid"]
    else:
        info, probs = dbm.check_database(path, want_sha256=True)
        ok = not probs and bool(info.get("sha256"))
    print(json.dumps({"ok": ok, "seconds": round(time.perf_counter() - t, 2), "baseline_kib": before,
                      "peak_kib": peak_rss_kib()}))


def rss(a):
    tmp = tempfile.mkdtemp(prefix="ese-bench-rss-", dir=a.dir or default_dir())
    rows = []
    try:
        todo = []
        for size_mib in [int(x) for x in a.rss_sizes_mib.split(",")]:
            if size_mib <= a.rss_written_max_mib:
                todo.append((size_mib, "written"))
            todo.append((size_mib, "sparse"))
        for size_mib, how in todo:
            path = os.path.join(tmp, "%s-%d.edb" % (how, size_mib))
            if how == "sparse":
                make_sparse(path, size_mib, a.page_size)
            else:
                ese_synth.make_database(path, a.page_size, pages=size_mib * (1 << 20) // a.page_size - 2)
            on_disk = os.stat(path).st_blocks * 512
            for mode in ("verify", "verify_sha256"):
                args = [sys.executable, os.path.abspath(__file__), "--rss-child", path, mode]
                if a.pure_python:
                    args.append("--pure-python")
                proc = subprocess.run(args, check=True, capture_output=True, text=True)
                got = json.loads(proc.stdout.strip().splitlines()[-1])
                if not got["ok"]:
                    sys.exit("%s of %s did not pass" % (mode, path))
                row = {"size_mib": size_mib, "file": how, "on_disk_mib": round(on_disk / 2.0 ** 20, 1), "mode": mode,
                       "page_size": a.page_size, "peak_rss_mib": round(got["peak_kib"] / 1024.0, 1),
                       "baseline_rss_mib": round(got["baseline_kib"] / 1024.0, 1), "seconds": got["seconds"],
                       "numpy": not a.pure_python}
                rows.append(row)
                print("%-14s %6d MiB database, %-7s (%6.1f MiB on %s): peak RSS %6.1f MiB (%.1f MiB after imports), "
                      "%.1f s" % (mode, size_mib, how, row["on_disk_mib"], storage_of(path), row["peak_rss_mib"],
                                  row["baseline_rss_mib"], row["seconds"]))
            os.remove(path)
        if a.json:
            print(json.dumps({"rss": rows, "storage": storage_of(tmp), "runtime": platform.python_implementation()
                              .lower()}, sort_keys=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--page-size", type=int, default=4096, choices=(4096, 8192, 16384, 32768))
    ap.add_argument("--dir", default=None, help="where to write the database (default: /dev/shm, else system temp)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="end with one JSON object on the last line")
    ap.add_argument("--pure-python", action="store_true", help="force the verifier's fallback without numpy")
    ap.add_argument("--rss", action="store_true", help="peak RSS of verify per database size, each in a child")
    ap.add_argument("--rss-sizes-mib", default="1024,8192")
    ap.add_argument("--rss-written-max-mib", type=int, default=1024,
                    help="--rss: sizes up to this are also measured fully written (the rest only sparse)")
    ap.add_argument("--rss-child", nargs=2, metavar=("PATH", "MODE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.pure_python:
        ck.HAS_NUMPY = False
    if a.rss_child:
        rss_child(*a.rss_child)
    elif a.rss:
        rss(a)
    else:
        if not shutil.which("openssl"):
            sys.exit("openssl not found")
        speed(a)


if __name__ == "__main__":
    main()
