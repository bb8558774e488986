# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The copy pipeline overlaps the read, the SHA-256 and the write (not timed: the engine's trace counts it).

With a slow writer injected, the reader must keep reading until every slot is in flight, and the hasher must
get ahead of the writer by as many slots; a pipeline that hashes and writes on one thread, or reads only when
the last slot is written, fails here."""
import hashlib
import os

from engine_host import run_host, srum_args

DEPTH = 4            # CopyPipeline.DefaultDepth
BUFFER = 3 * 4096    # the smallest buffer_size: the 192 KiB sample database streams in 17 reads


def database_stream(result):
    detail = [t["detail"] for t in result["trace"]
              if t["call"] == "JetReadFileInstance" and "SRUDB.dat" in t["detail"] and "ms=" in t["detail"]]
    assert len(detail) == 1, result["trace"]
    return dict(field.split("=", 1) for field in detail[0].split() if "=" in field)


def backup(clean_set, dest, delay_ms=None):
    env = {"ESE_BACKUP_TEST_WRITE_DELAY_MS": str(delay_ms)} if delay_ms else None
    r = run_host("Run", srum_args(clean_set, dest, buffer_size=BUFFER), env=env)
    assert r["failed_call"] is None and r["invalid"] is None, (r["failed_call"], r["invalid"])
    return r


def test_slow_writer_lets_reader_and_hasher_run_a_full_pipeline_ahead(clean_set, dest):
    r = backup(clean_set, dest, delay_ms=40)
    stats = database_stream(r)
    assert int(stats["depth"]) == DEPTH
    assert int(stats["peak"]) == DEPTH, stats                 # the reader filled every slot before one was written
    assert int(stats["hash_ahead"]) >= DEPTH - 1, stats       # hashed while the writer slept, not after it
    writes = int(stats["calls"]) - 1                           # the last read returns 0 bytes
    assert float(stats["write_ms"]) >= 40 * writes * 0.9, stats
    assert float(stats["read_wait_ms"]) >= 40 * (writes - DEPTH) * 0.5, stats   # it waited on the writer only
    assert float(stats["hash_ms"]) < float(stats["write_ms"]) / 2, stats


def test_pipelined_copy_is_byte_exact_and_hashed_in_order(clean_set, dest):
    r = backup(clean_set, dest, delay_ms=5)
    copied = os.path.join(r["backup_set"], "databases", "SRUDB.dat")
    entry = [f for f in r["manifest"]["files"] if f["name"] == "databases/SRUDB.dat"][0]
    with open(copied, "rb") as f:
        data = f.read()
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert entry["size"] == len(data) == int(database_stream(r)["bytes"])
    with open(os.path.join(clean_set, "SRUDB.dat"), "rb") as f:
        source = f.read()
    page = 4096   # pages 2.. are the source's pages (the streamed header pages come first)
    assert data[2 * page:2 * page + len(source) - 2 * page] == source[2 * page:]
