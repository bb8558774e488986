#!/usr/bin/env python3
"""Streaming throughput of the engine against `cp` + `sha256sum` on the same 1 GiB database.

Builds a synthetic 1 GiB, 4 KiB-page clean database with checksummed pages, its logs and checkpoint
(tests/lib/ese_synth.py), then, in one run:
  baseline: time(cp db dest) + time(sha256sum db)
  engine:   a full backup through build/sim/EseSimHost.exe (the same entry point the module calls);
            the database streaming phase is timed by the engine itself (trace: JetReadFileInstance ms=)
and prints the figures and the ratio baseline_seconds / engine_seconds (>= 1 means faster than baseline).

Usage: python bench/stream.py [--size-mib 1024] [--workdir DIR] [--buffer-size BYTES] [--keep]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = os.path.join(ROOT, "build", "sim", "EseSimHost.exe")
CB = 4096
sys.path[:0] = [os.path.join(ROOT, "build", "collections"), os.path.join(ROOT, "tests", "lib")]


def build_source(src, size_mib):
    """A clean database of size_mib with checksummed pages, its logs (gen 1, current gen 2) and checkpoint."""
    import ese_synth
    sign_log = ese_synth.signature(7)
    db = os.path.join(src, "SRUDB.dat")
    ese_synth.make_database(db, page_size=CB, pages=size_mib * 1048576 // CB - 2, sign_log=sign_log,
                            state=3, zero_every=0, seed=7)
    ese_synth.make_log_set(src, "SRU", [1, 2], sign_log, current=True)
    ese_synth.make_checkpoint(os.path.join(src, "SRU.chk"), 2, sign_log)
    return db


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def mount_tmpfs(path, size):
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", path],
                          capture_output=True).returncode == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--workdir")
    ap.add_argument("--buffer-size", type=int, default=1 << 20)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    work = a.workdir or tempfile.mkdtemp(prefix="ese-bench-")
    mounted = False
    if not a.workdir:
        mounted = mount_tmpfs(work, "%dm" % (a.size_mib * 3 + 256))
    try:
        src = os.path.join(work, "src")
        os.makedirs(src)
        t0 = time.perf_counter()
        db = build_source(src, a.size_mib)
        size = os.path.getsize(db)
        print("database: %s, %d bytes (%d pages), built in %.1f s; storage: %s"
              % (db, size, size // CB, time.perf_counter() - t0, "tmpfs" if mounted else "disk"))
        base = os.path.join(work, "baseline")
        dest = os.path.join(work, "dest")
        os.makedirs(base)
        os.makedirs(dest)
        subprocess.run(["cat", db], stdout=subprocess.DEVNULL, check=True)  # warm the page cache

        t_cp = timed(["cp", db, os.path.join(base, "SRUDB.dat")])
        t_sha = timed(["sha256sum", db])
        t_base = t_cp + t_sha

        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.path.join(ROOT, "build", "sim")
        req = {"entry": "Run", "check_mode": False, "args": {
            "databases": [db], "log_path": src, "system_path": src, "base_name": "SRU", "dest": dest,
            "type": "copy", "set_name": "bench", "buffer_size": a.buffer_size}}
        t = time.perf_counter()
        proc = subprocess.run(["mono", HOST], input=json.dumps(req), capture_output=True, text=True, env=env)
        t_run = time.perf_counter() - t
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr)
            return 1
        r = json.loads(proc.stdout)
        if r["failed_call"] or r["invalid"]:
            print("engine run failed:", r["failed_call"] or r["invalid"])
            return 1
        read = [e["detail"] for e in r["trace"] if e["call"] == "JetReadFileInstance" and "SRUDB.dat" in e["detail"]]
        ms = float(read[-1].split("ms=")[1].split()[0])
        t_eng = ms / 1000.0
        mib = size / 1048576.0
        print("baseline cp:          %6.3f s  (%7.1f MiB/s)" % (t_cp, mib / t_cp))
        print("baseline sha256sum:   %6.3f s  (%7.1f MiB/s)" % (t_sha, mib / t_sha))
        print("baseline cp+sha256:   %6.3f s  (%7.1f MiB/s)" % (t_base, mib / t_base))
        print("engine stream:        %6.3f s  (%7.1f MiB/s)  read+hash+write, buffer %d" % (t_eng, mib / t_eng, a.buffer_size))
        print("engine whole run:     %6.3f s  (mono start, instance init, logs, manifest included)" % t_run)
        print("hash: %s" % [d for d in read][-1].split("hash=")[-1] if "hash=" in read[-1] else "")
        print("ratio (baseline / engine stream): %.2f" % (t_base / t_eng))
        print("ratio (baseline / engine whole run): %.2f" % (t_base / t_run))
        return 0
    finally:
        if not a.keep:
            if mounted:
                subprocess.run(["umount", work])
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
