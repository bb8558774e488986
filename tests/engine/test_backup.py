# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Full, incremental, copy and differential backups of the shared SRUM sample sets, end to end."""
import hashlib
import json
import os
import stat

import pytest

from engine_host import (CLEAN, DIRTY, header_facts, live_header, run_host, srum_args, trace_calls, tree, u32,
                      xor_old)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def assert_ok(r):
    assert r["invalid"] is None, r["invalid"]
    assert r["failed_call"] is None, r["failed_call"]
    assert r["backup_started"] is True
    assert r["ended"] == "normal"
    assert r["backup_set"]


def assert_manifest_matches(r):
    set_dir = r["backup_set"]
    with open(os.path.join(set_dir, "manifest.json"), encoding="utf-8") as f:
        m = json.load(f)
    assert m == r["manifest"]
    assert m["format"] == "ese.backup/1"
    assert m["tool"]["name"] == "ese.backup"
    on_disk = {p for p in tree(set_dir) if os.path.isfile(os.path.join(set_dir, p))}
    listed = {e["name"] for e in m["files"]}
    assert on_disk == listed | {"manifest.json", "ending.json"}  # no kept-logs.json left in a published set
    with open(os.path.join(set_dir, "ending.json"), encoding="utf-8") as f:
        ending = json.load(f)
    assert ending == r["ending"] and (ending["format"], ending["session"], ending["ended"], ending["backup_valid"]) == (
        "ese.backup/ending/1", None, "normal", True)
    assert ending["recorded_as"] == {("full", True): "full", ("copy", False): "copy", ("incremental", True): "incremental",
                                     ("differential", False): "differential"}[(m["type"], m["logs_truncated"])]
    assert r["proof"]["sequence_complete"] is True and r["proof"]["header_recorded"] is True and not r["proof"]["missing"]
    for e in m["files"]:
        assert not e["name"].startswith("/") and ".." not in e["name"].split("/") and "\\" not in e["name"]
        p = os.path.join(set_dir, *e["name"].split("/"))
        assert os.path.getsize(p) == e["size"]
        assert sha(p) == e["sha256"]
    return m


def check_stream(stream_path, live_db_path):
    """Header twice (bkinfoFullCur set, checksum valid), pages equal to the source, trailer valid (arch 5)."""
    data = open(stream_path, "rb").read()
    live = open(live_db_path, "rb").read()
    cb = header_facts(data[:4096])["page_size"]
    assert len(data) % cb == 0 and len(data) >= 3 * cb
    h0, h1 = data[:cb], data[cb:2 * cb]
    assert h0 == h1
    f = header_facts(h0)
    assert f["checksum_ok"] and f["magic"] == 0x89ABCDEF
    assert f["full_cur"][0] != 0, "bkinfoFullCur.genLow must be set in the streamed header"
    pgno_last = len(data) // cb - 3
    assert data[2 * cb:(pgno_last + 2) * cb] == live[2 * cb:(pgno_last + 2) * cb]
    tr = data[(pgno_last + 2) * cb:]
    assert len(tr) == cb
    assert u32(tr, 0) == xor_old(tr)
    assert tr[64:92] == h0[24:52]      # signDb
    assert tr[92:120] == h0[108:136]   # signLog
    assert u32(tr, 40 + 16) == f["full_cur"][0]  # trailer genLow = checkpoint generation at Begin
    assert u32(tr, 40 + 20) >= u32(tr, 40 + 16)
    assert not any(tr[148:])
    return f, tr


@pytest.mark.parametrize("sample", [CLEAN, DIRTY], ids=["clean", "dirty"])
def test_full_backup_of_sample_set(tmp_path, sample, dest):
    from engine_host import copy_set
    src = copy_set(sample, tmp_path / "src")
    r = run_host("Run", srum_args(src, dest, set_name="f1"))
    assert_ok(r)
    assert r["logs_truncated"] is True
    assert r["backup_set"] == os.path.join(dest, "f1")
    assert stat.S_IMODE(os.stat(r["backup_set"]).st_mode) == 0o700  # sets can hold password hashes
    assert tree(dest)[0] == "f1" and not [p for p in os.listdir(dest) if p.startswith(".")]
    m = assert_manifest_matches(r)
    assert m["type"] == "full" and m["logs_truncated"] is True
    assert m["source"]["base_name"] == "SRU" and m["source"]["page_size"] == 4096

    # logs: names from base name + upper-case hex, byte-identical to the sample's files
    lo, hi = m["logs"]["gen_low"], m["logs"]["gen_high"]
    assert 0 < lo <= hi
    logs = [e for e in m["files"] if e["role"] == "log"]
    assert [e["name"] for e in logs] == ["logs/SRU%05X.log" % g for g in range(lo, hi + 1)]
    cur = open(os.path.join(sample, "SRU.log"), "rb").read()
    for e in logs:
        src_log = os.path.join(sample, os.path.basename(e["name"]))
        if os.path.exists(src_log):
            source = open(src_log, "rb").read()
        else:  # the current log of the sample, rolled into this generation by the backup
            assert u32(cur, 4) == e["generation"]
            source = cur
        backed = os.path.join(r["backup_set"], *e["name"].split("/"))
        assert open(backed, "rb").read() == source

    # database stream
    dbs = [e for e in m["files"] if e["role"] == "database"]
    assert [e["name"] for e in dbs] == ["databases/SRUDB.dat"]
    f, tr = check_stream(os.path.join(r["backup_set"], "databases", "SRUDB.dat"), os.path.join(src, "SRUDB.dat"))
    d = m["databases"][0]
    assert d["file"] == "databases/SRUDB.dat" and d["page_size"] == 4096
    assert d["sign_log"] == f["sign_log"].hex() and d["sign_db"] == f["sign_db"].hex()
    assert d["backup_gen_low"] == u32(tr, 56) and d["backup_gen_high"] == u32(tr, 60)

    # the call sequence
    calls = [c for c, e, _ in trace_calls(r)]
    seq = ["JetCreateInstance2W", "JetInit3W", "JetBeginSessionW", "JetAttachDatabase2W",
           "JetBeginExternalBackupInstance", "JetGetAttachInfoInstanceW", "JetOpenFileInstanceW",
           "JetReadFileInstance", "JetCloseFileInstance", "JetGetLogInfoInstance2W", "JetOpenFileInstanceW",
           "JetTruncateLogInstance", "JetEndExternalBackupInstance2", "JetDetachDatabase2W", "JetEndSession",
           "JetTerm2"]
    pos = 0
    for c in calls:
        if pos < len(seq) and c == seq[pos]:
            pos += 1
    assert pos == len(seq), calls
    assert ("JetEndExternalBackupInstance2", 0, "grbit=0x1") in trace_calls(r)
    assert ("JetTerm2", 0, "grbit=0x1") in trace_calls(r)
    page_size_set = [t for t in trace_calls(r) if t[0] == "JetSetSystemParameterW" and "DatabasePageSize" in t[2]]
    assert page_size_set and page_size_set[0][2] == "global JET_paramDatabasePageSize=4096"
    # live header records the full backup
    assert live_header(os.path.join(src, "SRUDB.dat"))["full_prev"][0] != 0


def test_incremental_after_full_copies_only_logs(dirty_set, dest):
    r1 = run_host("Run", srum_args(dirty_set, dest, set_name="full"))
    assert_ok(r1)
    before = live_header(os.path.join(dirty_set, "SRUDB.dat"))
    r2 = run_host("Run", srum_args(dirty_set, dest, set_name="inc", type="incremental"))
    assert_ok(r2)
    m = assert_manifest_matches(r2)
    assert m["type"] == "incremental" and r2["logs_truncated"] is True
    assert {e["role"] for e in m["files"]} == {"log"}
    assert not os.path.exists(os.path.join(dest, "inc", "databases")) or not os.listdir(os.path.join(dest, "inc", "databases"))
    calls = [c for c, _, _ in trace_calls(r2)]
    assert "JetGetAttachInfoInstanceW" not in calls
    assert ("JetBeginExternalBackupInstance", 0, "grbit=0x1") in trace_calls(r2)
    after = live_header(os.path.join(dirty_set, "SRUDB.dat"))
    assert after["inc_prev"][0] != 0 and after["inc_prev"] != before["inc_prev"]
    assert after["inc_prev"] == (m["logs"]["gen_low"], m["logs"]["gen_high"])
    assert after["full_prev"] == before["full_prev"]
    # Info sees both sets and the header facts
    info = run_host("Info", {"databases": [os.path.join(dirty_set, "SRUDB.dat")], "backup_path": dest})
    assert info["invalid"] is None
    db = info["databases"][0]
    assert db["last_incremental"]["gen_low"] == after["inc_prev"][0]
    assert db["last_full"]["gen_low"] == after["full_prev"][0]
    assert db["page_size"] == 4096 and db["db_state"] in (2, 3)
    assert [(s["name"], s["type"], s["status"]) for s in info["backup_sets"]] == [
        ("full", "full", "complete"), ("inc", "incremental", "complete")]


def test_copy_does_not_truncate_and_records_copy_prev(dirty_set, dest):
    logs_before = sorted(p for p in os.listdir(dirty_set) if p.endswith(".log"))
    r = run_host("Run", srum_args(dirty_set, dest, set_name="c", type="copy"))
    assert_ok(r)
    assert r["logs_truncated"] is False
    assert "JetTruncateLogInstance" not in [c for c, _, _ in trace_calls(r)]
    m = assert_manifest_matches(r)
    assert m["type"] == "copy" and m["logs_truncated"] is False
    logs_after = set(p for p in os.listdir(dirty_set) if p.endswith(".log"))
    assert set(logs_before) - {"SRU.log", "SRUtmp.log"} <= logs_after
    h = live_header(os.path.join(dirty_set, "SRUDB.dat"))
    assert h["copy_prev"][0] != 0
    assert h["full_prev"] == (0, 0)


def test_differential_after_full_records_diff_prev(dirty_set, dest):
    assert_ok(run_host("Run", srum_args(dirty_set, dest, set_name="full")))
    before = live_header(os.path.join(dirty_set, "SRUDB.dat"))
    r = run_host("Run", srum_args(dirty_set, dest, set_name="diff", type="differential"))
    assert_ok(r)
    assert r["logs_truncated"] is False
    assert "JetTruncateLogInstance" not in [c for c, _, _ in trace_calls(r)]
    m = assert_manifest_matches(r)
    assert {e["role"] for e in m["files"]} == {"log"}
    h = live_header(os.path.join(dirty_set, "SRUDB.dat"))
    assert h["diff_prev"][0] != 0 and h["inc_prev"] == before["inc_prev"]


def test_small_buffer_streams_in_many_reads(dirty_set, dest):
    r = run_host("Run", srum_args(dirty_set, dest, set_name="s", buffer_size=3 * 4096))
    assert_ok(r)
    m = assert_manifest_matches(r)
    reads = [d for c, e, d in trace_calls(r) if c == "JetReadFileInstance" and "SRUDB.dat" in d]
    assert reads and int(reads[0].split("calls=")[1].split()[0]) > 100
    check_stream(os.path.join(r["backup_set"], "databases", "SRUDB.dat"), os.path.join(dirty_set, "SRUDB.dat"))


@pytest.mark.parametrize("kind", ["full", "copy"])
def test_sets_pass_the_offline_verifier(dirty_set, dest, kind):
    """Cross-check with the collection's pure-Python verifier (ese_format), when it is importable."""
    try:
        from ansible_collections.ese.backup.plugins.module_utils.ese_format import backupset
    except ImportError:
        pytest.skip("ese_format not available")
    r = run_host("Run", srum_args(dirty_set, dest, set_name=kind, type=kind))
    assert_ok(r)
    v = backupset.verify_set(r["backup_set"])
    assert v["valid"] is True, v.get("problems")
    assert v["problems"] == []
    assert r["manifest"]["tool"]["version"] == "0.1.0"


def test_a_backup_reports_how_long_it_took_and_a_refused_one_does_not(clean_set, dest):
    r = run_host("Run", srum_args(clean_set, dest))
    assert_ok(r)
    assert isinstance(r["duration_s"], float) and 0 < r["duration_s"] < 120
    again = run_host("Run", srum_args(clean_set, dest, set_name=os.path.basename(r["backup_set"])))
    assert again["already_exists"] and "duration_s" not in again
