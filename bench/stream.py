#!/usr/bin/env python3
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A hashed backup stream against its physical limit: the slower of one copy and one SHA-256 of the same file.

Builds a synthetic clean database (tests/lib/ese_synth.py: checksummed pages, logs, checkpoint) on tmpfs, then
takes, round robin, --repeat times each and keeps the best of each:

  cp_s       cp of the database
  sha256_s   openssl dgst -sha256 of the database (one SHA-256 stream, with the CPU's SHA extensions)
  engine_s   the engine's own time for streaming the database in a full backup (the trace's
             JetReadFileInstance ms=): esent's read with the simulator's page checks, the SHA-256 and the
             write, through the same entry point the run module calls

limit_s = max(cp_s, sha256_s) and ratio = limit_s / engine_s (1.0 is the limit; the goal is >= 0.95).
The engine runs under Mono (build/sim/EseSimHost.exe) or CoreCLR (PowerShell 7, the engine compiled by
ansible-core's Add-CSharpType). Neither is Windows' .NET Framework.

    .venv/bin/python bench/stream.py [--runtime mono|coreclr] [--page-size 4096|32768] [--size-mib 1024]
                                     [--buffer-size BYTES] [--repeat 3] [--json]

With --json the last line is one JSON object with the figures.

    .venv/bin/python bench/stream.py --rss 1024,8192 [--runtime ...] [--json]

measures instead the engine's peak RSS (ru_maxrss of its process) for a full backup of each size: 1024 MiB of
checksummed pages, extended with a sparse tail of zero (unused) pages, so 8 GiB is never on disk at once; the
set is written to a folder under build/ and removed after each run.
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
SIM = os.path.join(ROOT, "build", "sim")
sys.path[:0] = [os.path.join(ROOT, "build", "collections"), os.path.join(ROOT, "tests", "lib")]


def build_source(src, size_mib, page_size):
    """A clean database of size_mib with checksummed pages, its logs (gen 1, current gen 2) and checkpoint."""
    import ese_synth
    sign_log = ese_synth.signature(7)
    db = os.path.join(src, "SRUDB.dat")
    ese_synth.make_database(db, page_size=page_size, pages=size_mib * 1048576 // page_size - 2,
                            sign_log=sign_log, state=3, zero_every=0, seed=7)
    ese_synth.make_log_set(src, "SRU", [1, 2], sign_log, current=True, page_size=page_size)
    ese_synth.make_checkpoint(os.path.join(src, "SRU.chk"), 2, sign_log)
    return db


def build_sparse_source(src, size_mib, page_size):
    """Like build_source, with at most 1024 MiB of real pages and a sparse tail of zero pages up to size_mib."""
    db = build_source(src, min(size_mib, 1024), page_size)
    with open(db, "r+b") as f:
        f.truncate(size_mib * 1048576)
    return db


def timed(cmd):
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def storage_of(path):
    out = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True, check=True)
    return "tmpfs" if out.stdout.strip() == "tmpfs" else "disk"


def work_folder(given):
    if given:
        return given, False
    if os.geteuid() == 0:
        path = tempfile.mkdtemp(prefix="ese-bench-")
        if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", path], capture_output=True, check=False).returncode == 0:
            return path, True
        os.rmdir(path)
    return tempfile.mkdtemp(prefix="ese-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None), False


class EngineRunner:
    """One full backup through the engine under the chosen runtime; returns (stream seconds, trace detail)."""

    def __init__(self, runtime):
        self.env = dict(os.environ, LD_LIBRARY_PATH=SIM)
        if runtime == "mono":
            self.cmd = ["mono", os.path.join(SIM, "EseSimHost.exe")]
            return
        import ansible
        import pwsh
        found = pwsh.find_pwsh()
        if not found:
            sys.exit("--runtime coreclr needs PowerShell 7: " + pwsh.HOW_TO_INSTALL)
        binary, extra = pwsh.interpreter(found)
        self.env.update(extra)
        add_type = os.path.join(os.path.dirname(ansible.__file__), "module_utils", "powershell",
                                "Ansible.ModuleUtils.AddType.psm1")
        self.cmd = [binary, "-NoProfile", "-NonInteractive", "-File", os.path.join(ROOT, "bench", "engine_coreclr.ps1"),
                    "-AddType", add_type, "-Utils", os.path.join(ROOT, "plugins", "module_utils")]

    @staticmethod
    def request(src, dest, buffer_size):
        """A copy backup of src's database into an empty dest, as the run module asks the engine."""
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(dest)
        return {"entry": "Run", "check_mode": False, "args": {
            "databases": [os.path.join(src, "SRUDB.dat")], "log_path": src, "system_path": src, "base_name": "SRU",
            "dest": dest, "type": "copy", "set_name": "bench", "buffer_size": buffer_size}}

    def peak_rss_kib(self, src, dest, buffer_size):
        """The engine process's ru_maxrss (KiB) for one full backup, taken from wait4."""
        req = self.request(src, dest, buffer_size)
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as inp:
            inp.write(json.dumps(req))
            inp.seek(0)
            child = subprocess.Popen(self.cmd, stdin=inp, stdout=out, stderr=subprocess.DEVNULL, env=self.env)
            _pid, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            result = json.loads(out.read() or "{}")
        shutil.rmtree(dest, ignore_errors=True)
        if child.returncode != 0 or result.get("failed_call") or result.get("invalid"):
            sys.exit("engine run failed: %s" % (result.get("failed_call") or result.get("invalid") or child.returncode))
        return usage.ru_maxrss

    def run(self, src, dest, buffer_size):
        req = self.request(src, dest, buffer_size)
        started = time.perf_counter()
        proc = subprocess.run(self.cmd, input=json.dumps(req), capture_output=True, text=True, env=self.env,
                              check=False)
        whole = time.perf_counter() - started
        if proc.returncode != 0:
            sys.exit("engine failed: %s %s" % (proc.stdout[-2000:], proc.stderr[-2000:]))
        result = json.loads(proc.stdout)
        if result.get("failed_call") or result.get("invalid"):
            sys.exit("engine run failed: %s" % (result.get("failed_call") or result.get("invalid")))
        detail = [e["detail"] for e in result["trace"]
                  if e["call"] == "JetReadFileInstance" and "SRUDB.dat" in e["detail"]][-1]
        fields = dict(f.split("=", 1) for f in detail.split() if "=" in f)
        shutil.rmtree(dest, ignore_errors=True)
        return float(fields["ms"]) / 1000.0, whole, fields


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--page-size", type=int, default=4096, choices=(4096, 8192, 16384, 32768))
    ap.add_argument("--runtime", default="mono", choices=("mono", "coreclr"))
    ap.add_argument("--buffer-size", type=int, default=4 << 20, help="bytes per read (default: the engine's, 4 MiB)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", help="where to build the database (default: a tmpfs)")
    ap.add_argument("--json", action="store_true", help="end with one JSON object on the last line")
    ap.add_argument("--rss", help="comma-separated database sizes in MiB: measure the engine's peak RSS instead")
    a = ap.parse_args()
    if a.rss:
        return peak_rss(a, [int(size) for size in a.rss.split(",")])
    for tool in ("cp", "openssl"):
        if not shutil.which(tool):
            sys.exit(tool + " not found")
    runner = EngineRunner(a.runtime)
    work, mounted = work_folder(a.workdir)
    try:
        src = os.path.join(work, "src")
        os.makedirs(src)
        started = time.perf_counter()
        db = build_source(src, a.size_mib, a.page_size)
        size = os.path.getsize(db)
        storage = storage_of(work)
        print("database: %d bytes, %d-byte pages, built in %.1f s; storage: %s; runtime: %s"
              % (size, a.page_size, time.perf_counter() - started, storage, a.runtime))
        subprocess.run(["cat", db], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
        copy = os.path.join(work, "cp.out")
        best = {"cp": None, "sha256": None, "engine": None, "whole": None}
        fields = None
        for _round in range(a.repeat):
            figures = {"cp": timed(["cp", db, copy]), "sha256": timed(["openssl", "dgst", "-sha256", db])}
            os.remove(copy)
            engine_s, whole, got = runner.run(src, os.path.join(work, "dest"), a.buffer_size)
            figures.update(engine=engine_s, whole=whole)
            if best["engine"] is None or engine_s < best["engine"]:
                fields = got
            for key, value in figures.items():
                best[key] = value if best[key] is None else min(best[key], value)
        sha256sum_s = timed(["sha256sum", db])
        limit = max(best["cp"], best["sha256"])
        mib = size / 1048576.0
        print("cp:                  %6.3f s  (%7.1f MiB/s)" % (best["cp"], mib / best["cp"]))
        print("openssl sha256:      %6.3f s  (%7.1f MiB/s)" % (best["sha256"], mib / best["sha256"]))
        print("sha256sum (no ratio):%6.3f s  (%7.1f MiB/s)" % (sha256sum_s, mib / sha256sum_s))
        print("limit = max(cp, sha256): %.3f s" % limit)
        print("engine stream:       %6.3f s  (%7.1f MiB/s)  buffer %d, hash %s"
              % (best["engine"], mib / best["engine"], a.buffer_size, fields.get("hash")))
        print("  stages of the best run: depth %s, peak %s in flight; reader waited %s ms; hasher busy %s ms, "
              "waited %s ms; writer busy %s ms, waited %s ms"
              % (fields.get("depth"), fields.get("peak"), fields.get("read_wait_ms"), fields.get("hash_ms"),
                 fields.get("hash_wait_ms"), fields.get("write_ms"), fields.get("write_wait_ms")))
        print("engine whole run:    %6.3f s  (runtime start, instance, logs and manifest included)" % best["whole"])
        print("ratio limit / engine stream: %.2f  (goal >= 0.95), best of %d rounds" % (limit / best["engine"], a.repeat))
        if a.json:
            print(json.dumps({
                "bench": "stream", "cp_s": round(best["cp"], 4), "sha256_s": round(best["sha256"], 4),
                "limit_s": round(limit, 4), "engine_s": round(best["engine"], 4),
                "ratio": round(limit / best["engine"], 3), "page_size": a.page_size, "storage": storage,
                "runtime": a.runtime, "size_bytes": size, "buffer_size": a.buffer_size,
                "depth": int(fields.get("depth", 0)), "hash": fields.get("hash"), "rounds": a.repeat}))
        return 0
    finally:
        if mounted:
            subprocess.run(["umount", work], check=False)
            os.rmdir(work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def peak_rss(a, sizes):
    runner = EngineRunner(a.runtime)
    os.makedirs(os.path.join(ROOT, "build"), exist_ok=True)
    figures = {}
    for size_mib in sizes:
        work = tempfile.mkdtemp(prefix="ese-bench-rss-", dir=os.path.join(ROOT, "build"))
        try:
            src = os.path.join(work, "src")
            os.makedirs(src)
            build_sparse_source(src, size_mib, a.page_size)
            figures[str(size_mib)] = runner.peak_rss_kib(src, os.path.join(work, "dest"), a.buffer_size)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print("engine peak RSS, %5d MiB database: %7.1f MiB  (runtime %s, buffer %d)"
              % (size_mib, figures[str(size_mib)] / 1024.0, a.runtime, a.buffer_size))
    if a.json:
        print(json.dumps({"bench": "stream-rss", "runtime": a.runtime, "page_size": a.page_size,
                          "buffer_size": a.buffer_size, "peak_rss_kib": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
