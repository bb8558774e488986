"""Throughput of ese.backup.verify's page check on a 1 GiB database, against sha256sum of the same file.

Writes a synthetic 1 GiB database with 4 KiB pages (tests/lib/ese_synth.py, 20 % all-zero pages),
reads it once to warm the page cache, then times, best of --repeat runs each:

- ``sha256sum <file>``                          (the reference)
- ``verify(<file>)``                            (headers + every page checksum, numpy)
- ``check_database(<file>, want_sha256=True)``  (what a backup set costs: checksums + SHA-256, one read)

and prints MB/s for each and the ratio verify / sha256sum (the goal is >= 0.5). Peak RSS shows
that memory stays flat.

    .venv/bin/python bench/verify.py [--size-mib 1024] [--page-size 4096] [--dir /tmp] [--repeat 2]
"""
import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))

import ese_synth  # noqa: E402  (also puts the collection on sys.path)
from ansible_collections.ese.backup.plugins.module_utils.ese_format import database as dbm  # noqa: E402
from ansible_collections.ese.backup.plugins.module_utils.ese_format.verify import verify  # noqa: E402


def best(fn, repeat):
    times = []
    for _run in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--page-size", type=int, default=4096, choices=(4096, 8192, 16384, 32768))
    ap.add_argument("--dir", default=None, help="where to write the database (default: system temp)")
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    if not shutil.which("sha256sum"):
        sys.exit("sha256sum not found")
    tmp = tempfile.mkdtemp(prefix="ese-bench-verify-", dir=a.dir)
    try:
        path = os.path.join(tmp, "bench.edb")
        pages = a.size_mib * (1 << 20) // a.page_size - 2
        t = time.perf_counter()
        ese_synth.make_database(path, a.page_size, pages=pages)
        gen_s = time.perf_counter() - t
        size = os.path.getsize(path)
        with open(path, "rb") as f:                       # warm the page cache for both tools
            while f.read(8 << 20):
                pass
        sha_s = best(lambda: subprocess.run(["sha256sum", path], check=True, stdout=subprocess.DEVNULL), a.repeat)
        res = {}

        def run_verify():
            res["r"] = verify(path)
        ver_s = best(run_verify, a.repeat)
        r = res["r"]
        assert r["valid"], r["problems"][:5]
        both_s = best(lambda: dbm.check_database(path, want_sha256=True), a.repeat)
        mb = size / 1e6
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        d = r["databases"][0]
        print("database          %s: %.0f MiB, %d-byte pages, %d pages (%d zero), written in %.1f s"
              % (path, size / 2.0 ** 20, a.page_size, d["pages_checked"], d["pages_zero"], gen_s))
        print("sha256sum         %6.2f s  %7.0f MB/s" % (sha_s, mb / sha_s))
        print("verify            %6.2f s  %7.0f MB/s" % (ver_s, mb / ver_s))
        print("verify + sha256   %6.2f s  %7.0f MB/s  (a backup set's database: one read)" % (both_s, mb / both_s))
        print("ratio verify / sha256sum          %.2f  (goal >= 0.5)" % (sha_s / ver_s))
        print("ratio verify+sha256 / sha256sum   %.2f" % (sha_s / both_s))
        print("peak RSS of this process          %.0f MiB (includes the generator's buffers)" % rss)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
