#!/usr/bin/env python3
"""Streaming throughput of the engine against `cp` + `sha256sum` on the same 1 GiB database.

Builds a synthetic 1 GiB, 4 KiB-page database (the real header of the clean SRUM sample, so its signLog
matches that sample's checkpoint and logs, followed by checksummed data pages), then, in one run:
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
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = "/work/shared/testdata/ese/sets/srum-server2022-clean"
HOST = os.path.join(ROOT, "build", "sim", "EseSimHost.exe")
CB = 4096
MASK32 = 0xFFFFFFFF


def _parity(v):
    return bin(v).count("1") & 1


def ecc_xor_small(page):
    """XOR+ECC checksum of a 4 KiB page with pgno 0 (ese-file-format.md 5.2); pgno only XORs the low dword."""
    n = len(page) // 4
    d = list(struct.unpack_from("<%dI" % n, page))
    d[0] = d[1] = 0
    p = c0 = c1 = c2 = c3 = 0
    idx = 0xFF800000
    for k in range(0, n, 4):
        a, b, c, e = d[k:k + 4]
        c0 ^= a; c1 ^= b; c2 ^= c; c3 ^= e
        if _parity(a ^ b ^ c ^ e):
            p ^= idx
        idx = (idx + 0xFF800080) & MASK32
    if _parity(c0 ^ c1):
        p |= 0x00400000
    if _parity(c2 ^ c3):
        p |= 0x00000040
    r0, r1 = c0 ^ c2, c1 ^ c3
    if _parity(r0):
        p |= 0x00200000
    if _parity(r1):
        p |= 0x00000020
    x = r0 ^ r1
    r, j = 0, 0xFFFF0000
    for bit in range(32):
        if x & (1 << bit):
            r ^= j
        j = (j + 0xFFFF0001) & MASK32
    mask = (((len(page) << 19) & MASK32) - 1) & MASK32
    ecc = (p & 0xFFE0FFE0 & mask) | (r & 0x001F001F)
    return ecc, x


def build_database(path, size_mib):
    """Real clean header + shadow + sample pages, then synthetic pages with valid new-format checksums."""
    src = open(os.path.join(SAMPLE, "SRUDB.dat"), "rb").read()
    npages_total = size_mib * 1024 * 1024 // CB
    rng = np.random.default_rng(7)
    templates = []
    for _ in range(64):
        pg = bytearray(rng.integers(0, 256, CB, dtype=np.uint8).tobytes())
        struct.pack_into("<I", pg, 36, 0x2000 | 0x2)  # new checksum format, leaf
        ecc, x = ecc_xor_small(bytes(pg))
        templates.append((pg, ecc, x))
    chunk_pages = 16384
    with open(path, "wb") as f:
        f.write(src)
        pgno = len(src) // CB - 1
        remaining = npages_total - len(src) // CB
        while remaining > 0:
            n = min(chunk_pages, remaining)
            arr = np.empty((n, CB // 8), dtype=np.uint64)
            for t, (pg, ecc, x) in enumerate(templates):
                arr[t::len(templates)] = np.frombuffer(bytes(pg), dtype=np.uint64)
            pgnos = np.arange(pgno, pgno + n, dtype=np.uint64)
            eccs = np.array([templates[i % len(templates)][1] for i in range(n)], dtype=np.uint64)
            xs = np.array([templates[i % len(templates)][2] for i in range(n)], dtype=np.uint64)
            arr[:, 0] = (eccs << np.uint64(32)) | ((xs ^ pgnos) & np.uint64(MASK32))
            f.write(arr.tobytes())
            pgno += n
            remaining -= n


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
        for n in ("SRU.chk", "SRU.log", "SRU00001.log"):
            shutil.copy(os.path.join(SAMPLE, n), src)
        db = os.path.join(src, "SRUDB.dat")
        t0 = time.perf_counter()
        build_database(db, a.size_mib)
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
