# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logs, streams and checkpoints: real sets and corruptions made here (each with its own code)."""
import os

import pytest

from ansible_collections.ese.backup.plugins.module_utils.ese_format import checksum as ck
from ansible_collections.ese.backup.plugins.module_utils.ese_format import logs as lgm
from ansible_collections.ese.backup.plugins.module_utils.ese_format.verify import verify


def codes(res):
    return sorted(set(p["code"] for p in res["problems"]))


def by_code(res, code):
    return [p for p in res["problems"] if p["code"] == code]


@pytest.mark.parametrize("name", ["srum-server2022-clean", "srum-win11-dirty"])
def test_real_sets_as_folders_are_valid(testdata, name):
    r = verify(os.path.join(testdata, "sets", name))
    assert r["valid"] and r["problems"] == [] and r["kind"] == "folder"


def test_dirty_folder_facts(testdata):
    r = verify(os.path.join(testdata, "sets", "srum-win11-dirty"))
    (s,) = r["logs"]
    assert (s["base_name"], s["gen_low"], s["gen_high"], s["count"]) == ("SRU", 89, 92, 4)
    assert not any("SRUtmp" in f for f in s["files"])
    assert r["databases"][0]["required_generations"] == [92, 92]
    assert r["checkpoints"][0]["generation"] == 92


def test_real_log_segments_pass(testdata):
    """Every sector after the header, the last one included (gen 90 holds gen-78 data in sector 15)."""
    for fn in ("SRU00059.log", "SRU0005A.log", "SRU0005B.log", "SRU.log"):
        info, probs = lgm.check_log(os.path.join(testdata, "sets/srum-win11-dirty", fn))
        assert probs == [] and info["sectors_checked"] == 15


def test_tmp_log_is_valid_but_ignored(testdata):
    info, probs = lgm.check_log(os.path.join(testdata, "sets/srum-win11-dirty/SRUtmp.log"))
    assert probs == [] and info["generation"] == 80


def test_flipped_bit_in_log_header(copy_set, synth):
    d = copy_set("srum-win11-dirty")
    synth.corrupt(os.path.join(d, "SRU0005A.log"), 200, 3)
    r = verify(d)
    assert "LOG_HEADER_CHECKSUM" in codes(r)
    assert by_code(r, "LOG_HEADER_CHECKSUM")[0]["file"] == "SRU0005A.log"


def test_damaged_log_sector(copy_set, synth):
    d = copy_set("srum-win11-dirty")
    synth.corrupt(os.path.join(d, "SRU0005B.log"), 2 * 4096 + 777, 1)
    synth.corrupt(os.path.join(d, "SRU0005B.log"), 2 * 4096 + 3000, 6)
    r = verify(d)
    assert codes(r) == ["LOG_SEGMENT_CHECKSUM"]
    p = by_code(r, "LOG_SEGMENT_CHECKSUM")[0]
    assert p["file"] == "SRU0005B.log" and p["sector"] == 2


def test_single_bit_in_log_sector_is_correctable(copy_set, synth):
    """ESE corrects it when it reads the log (ChecksumAndPossiblyFixPage with fCorrectError)."""
    d = copy_set("srum-win11-dirty")
    synth.corrupt(os.path.join(d, "SRU0005B.log"), 2 * 4096 + 777, 1)
    r = verify(d)
    assert r["valid"] and codes(r) == ["LOG_SEGMENT_CORRECTABLE"]
    p = r["problems"][0]
    assert p["file"] == "SRU0005B.log" and p["sector"] == 2 and p["severity"] == "warning"


def test_truncated_log(copy_set):
    d = copy_set("srum-win11-dirty")
    p = os.path.join(d, "SRU0005A.log")
    with open(p, "r+b") as f:
        f.truncate(5 * 4096)
    r = verify(d)
    assert codes(r) == ["LOG_TRUNCATED"] and by_code(r, "LOG_TRUNCATED")[0]["file"] == "SRU0005A.log"


def test_log_shorter_than_header(copy_set):
    d = copy_set("srum-win11-dirty")
    with open(os.path.join(d, "SRU0005A.log"), "r+b") as f:
        f.truncate(1000)
    r = verify(d)
    assert "LOG_TRUNCATED" in codes(r) and "LOG_GAP" in codes(r)


def test_renamed_log(copy_set):
    d = copy_set("srum-win11-dirty")
    os.rename(os.path.join(d, "SRU0005A.log"), os.path.join(d, "SRU0005C.log"))
    r = verify(d)
    p = by_code(r, "LOG_GENERATION_MISMATCH")
    assert len(p) == 1 and p[0]["file"] == "SRU0005C.log" and p[0]["generation"] == 90


def test_log_from_another_signature(copy_set, synth):
    d = copy_set("srum-win11-dirty")
    # a valid generation-90 log of another stream, with the right previous-generation time
    with open(os.path.join(d, "SRU00059.log"), "rb") as f:
        prev_created = f.read(24)[16:24]
    synth.make_log(os.path.join(d, "SRU0005A.log"), 90, synth.signature(77), prev_create_time=prev_created)
    r = verify(d)
    p = by_code(r, "LOG_SIGNATURE_MISMATCH")
    assert len(p) == 1 and p[0]["file"] == "SRU0005A.log"


def test_missing_middle_generation(copy_set):
    d = copy_set("srum-win11-dirty")
    os.remove(os.path.join(d, "SRU0005A.log"))
    r = verify(d)
    assert codes(r) == ["LOG_GAP"]
    p = by_code(r, "LOG_GAP")[0]
    assert p["generation"] == 90 and "90" in p["detail"]


def test_broken_previous_generation_time(copy_set):
    d = copy_set("srum-win11-dirty")
    p = os.path.join(d, "SRU0005B.log")
    with open(p, "r+b") as f:
        hdr = bytearray(f.read(4096))
        hdr[24] ^= 1                                    # tmPrevGen seconds
        f.seek(0)
        f.write(ck.seal_header(hdr))
    r = verify(d)
    assert codes(r) == ["LOG_CHAIN_BROKEN"] and by_code(r, "LOG_CHAIN_BROKEN")[0]["generation"] == 91


def test_clock_skew_is_fine(tmp_path, synth):
    """tmCreate need not increase; only tmPrevGen == previous tmCreate matters."""
    sig = synth.signature(5)
    t_late = synth.gen_time(50)
    t_early = synth.gen_time(10)
    synth.make_log(str(tmp_path / "edb00001.log"), 1, sig, created=t_late)
    synth.make_log(str(tmp_path / "edb00002.log"), 2, sig, prev_create_time=t_late, created=t_early)
    r = verify(str(tmp_path))
    assert r["valid"], r["problems"]


def test_missing_required_log_in_dirty_folder(copy_set):
    d = copy_set("srum-win11-dirty")
    os.remove(os.path.join(d, "SRU.log"))
    r = verify(d)
    assert codes(r) == ["CHK_GENERATION_MISSING", "LOG_REQUIRED_MISSING"]
    p = by_code(r, "LOG_REQUIRED_MISSING")[0]
    assert p["file"] == "SRUDB.dat" and p["generation"] == 92


def test_dirty_32k_database_alone_misses_its_logs(singles):
    r = verify(singles["Windows.edb"])
    assert not r["valid"] and codes(r) == ["LOG_REQUIRED_MISSING"]
    assert "9-12" in r["problems"][0]["detail"]
    d = r["databases"][0]
    assert (d["page_size"], d["pages_ok"], d["pages_zero"], d["bad_pages"]) == (32768, 211, 555, [])


def test_checkpoint_corruptions(copy_set, synth):
    d = copy_set("srum-win11-dirty")
    chk = os.path.join(d, "SRU.chk")
    synth.corrupt(chk, 100, 0)
    r = verify(d)
    assert codes(r) == ["CHK_CHECKSUM"]
    synth.corrupt(chk, 4096 + 100, 0)
    r = verify(d)
    assert codes(r) == ["CHK_UNREADABLE"]


def test_checkpoint_from_another_stream(copy_set, synth):
    d = copy_set("srum-win11-dirty")
    synth.make_checkpoint(os.path.join(d, "SRU.chk"), 92, synth.signature(9))
    r = verify(d)
    assert codes(r) == ["CHK_SIGNATURE_MISMATCH"]


def test_single_files(testdata, singles):
    r = verify(os.path.join(testdata, "sets/srum-win11-dirty/SRU0005A.log"))
    assert r["valid"] and r["kind"] == "log" and r["logs"][0]["gen_low"] == 90
    r = verify(singles["edb.chk"])
    assert r["valid"] and r["kind"] == "checkpoint" and r["checkpoints"][0]["generation"] == 3
    r = verify(os.path.join(testdata, "sets/srum-win11-dirty/SRUDB.dat"))
    assert r["valid"] and r["kind"] == "database"   # gen 92 is next to it (SRU.log)


def test_blank_log(tmp_path, synth):
    sig = synth.signature(1)
    synth.make_log_set(str(tmp_path), "edb", [1, 2], sig)
    (tmp_path / "edb00003.log").write_bytes(bytes(65536))
    r = verify(str(tmp_path))
    assert codes(r) == ["LOG_BLANK"]


def test_synthetic_log_set_with_current_log(tmp_path, synth):
    sig = synth.signature(3)
    synth.make_log_set(str(tmp_path), "edb", range(5, 9), sig, current=True)
    synth.make_checkpoint(str(tmp_path / "edb.chk"), 8, sig)
    db = synth.make_database(str(tmp_path / "my.edb"), 4096, pages=10, sign_log=sig, state=2, gen_min=7, gen_max=8)
    assert db["state"] == 2
    r = verify(str(tmp_path))
    assert r["valid"], r["problems"]
    assert (r["logs"][0]["gen_low"], r["logs"][0]["gen_high"]) == (5, 8)


def test_duplicate_generation(tmp_path, synth):
    sig = synth.signature(3)
    synth.make_log_set(str(tmp_path), "edb", range(5, 8), sig)
    synth.make_log(str(tmp_path / "edb.log"), 7, sig, prev_create_time=synth.gen_time(6))
    r = verify(str(tmp_path))
    assert "LOG_DUPLICATE_GENERATION" in codes(r)


def test_stream_helpers():
    assert lgm.compress_ranges([1, 2, 3, 5, 7, 8]) == "1-3, 5, 7-8"
    assert lgm.missing_in_range([1, 2, 4], 1, 5) == [3, 5]


def test_pure_python_segments_agree(testdata):
    p = os.path.join(testdata, "sets/srum-win11-dirty/SRU0005A.log")
    a = lgm.check_log(p, use_numpy=True)
    b = lgm.check_log(p, use_numpy=False)
    assert a == b
