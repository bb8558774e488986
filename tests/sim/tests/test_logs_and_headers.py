# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Log phase (§5): list buffers, names, log verification, truncation rules, incremental
and differential backups, header bkinfo updates at End (§6.2)."""
import os
import struct

import pytest

import esesim
from esesim import E, AlignedBuffer, parse_multisz, read_header
from test_full_backup import full_backup


def test_list_buffer_reporting(jet, dirty_set):
    s = dirty_set
    assert jet.begin(s.inst) == 0
    err, raw, size = jet.attach_info(s.inst)
    full = (len(s.db) + 2) * 2
    assert size == full and raw.endswith(b"\0\0\0\0")
    err, raw, got = jet.attach_info(s.inst, cbmax=10)            # truncated: full size reported
    assert (err, got) == (0, full) and raw == (s.db.encode("utf-16-le"))[:10]
    jet.read_all(s.inst, s.db)
    err, raw, got = jet.log_info(s.inst)
    name = s.log("SRU0005C.log")
    assert got == (len(name) + 2) * 2 and parse_multisz(raw) == [name]
    err, raw, got = jet.log_info(s.inst, cbmax=8)                # truncated: min(cbMax, size)
    assert (err, got) == (0, 8) and raw == name.encode("utf-16-le")[:8]
    err, raw, got = jet.truncate_info(s.inst, cbmax=6)
    assert (err, got) == (0, 6)


def test_empty_truncate_list_is_one_nul(jet, clean_set):
    s = clean_set
    assert jet.begin(s.inst) == 0
    assert jet.log_info(s.inst)[0] == 0                          # DB not read -> deleteMac = FullPrev.genHigh = 0
    err, raw, got = jet.truncate_info(s.inst)
    assert (err, got, raw) == (0, 2, b"\0\0")


def test_clean_set_ranges(jet, clean_set):
    s = clean_set
    assert jet.begin(s.inst) == 0
    dbs, streams, logs, info, trunc = full_backup(jet, s)
    assert logs == [s.log("SRU00002.log")] and (info.ulGenLow, info.ulGenHigh) == (2, 2)
    assert trunc == [s.log("SRU00001.log")] and not os.path.exists(s.log("SRU00001.log"))
    assert esesim.log_header(s.log("SRU.log"))["gen"] == 3


def test_truncate_needs_every_log_read_and_closed(jet, dirty_set):
    s = dirty_set
    assert jet.begin(s.inst) == 0
    jet.read_all(s.inst, s.db)
    assert jet.log_info(s.inst)[0] == 0
    err, h, size = jet.open(s.inst, s.log("SRU0005C.log"))
    assert jet.read(s.inst, AlignedBuffer(8192), 8192) == (0, 8192)
    assert jet.close(s.inst) == 0                                 # partially read
    assert jet.truncate(s.inst) == E["LogFileNotCopied"]
    assert os.path.exists(s.log("SRU00059.log"))
    jet.read_all(s.inst, s.log("SRU0005B.log"))                   # outside the copy range: no credit
    assert jet.truncate(s.inst) == E["LogFileNotCopied"]
    jet.read_all(s.inst, s.log("SRU0005C.log"))
    os.remove(s.log("SRU0005A.log"))                              # missing ones are skipped
    assert jet.truncate(s.inst) == 0
    assert not os.path.exists(s.log("SRU00059.log")) and not os.path.exists(s.log("SRU0005B.log"))
    assert jet.truncate(s.inst) == 0                              # harmless again


def test_log_read_bounds_and_minimum(jet, dirty_set):
    s = dirty_set
    assert jet.begin(s.inst) == 0
    jet.read_all(s.inst, s.db)
    assert jet.log_info(s.inst)[0] == 0
    buf = AlignedBuffer(1 << 20)
    err, h, size = jet.open(s.inst, s.log("SRU0005C.log"))
    assert size == 65536
    assert jet.read(s.inst, buf, 4096)[0] == E["InvalidParameter"]       # first read: 2 pages
    assert jet.read(s.inst, buf, 8192) == (0, 8192)
    assert jet.read(s.inst, buf, 4096) == (0, 4096)                       # later: 1 page
    assert jet.read(s.inst, buf, 4096 + 1)[0] == E["InvalidParameter"]    # page multiple
    assert jet.read(s.inst, buf, 8192, offset=16)[0] == E["InvalidParameter"]   # alignment
    assert jet.read(s.inst, buf, 1 << 20) == (0, 65536 - 12288)
    assert jet.read(s.inst, buf, 1 << 20) == (0, 0)                       # EOF is success


def test_db_first_read_needs_three_pages(jet, clean_set):
    assert jet.begin(clean_set.inst) == 0
    jet.open(clean_set.inst, clean_set.db)
    buf = AlignedBuffer(1 << 16)
    assert jet.read(clean_set.inst, buf, 8192)[0] == E["InvalidParameter"]
    assert jet.read(clean_set.inst, buf, 12288) == (0, 12288)
    assert jet.read(clean_set.inst, buf, 4096) == (0, 4096)


def test_trailer_in_next_read_when_no_room(jet, clean_set):
    s = clean_set
    size = os.path.getsize(s.db)
    assert jet.begin(s.inst) == 0
    jet.open(s.inst, s.db)
    buf = AlignedBuffer(size)
    assert jet.read(s.inst, buf, size) == (0, size)
    assert jet.read(s.inst, buf, 4096) == (0, 4096)
    assert struct.unpack_from("<I", buf.bytes(4096), 0)[0] == esesim.xor_old(buf.bytes(4096))
    assert jet.read(s.inst, buf, 4096) == (0, 0)


@pytest.mark.parametrize("where", ["header", "segment"])
def test_corrupt_log_gives_612_and_aborts(jet, dirty_set, where):
    s = dirty_set
    assert jet.begin(s.inst) == 0
    jet.read_all(s.inst, s.db)
    assert jet.log_info(s.inst)[0] == 0
    with open(s.log("SRU0005C.log"), "r+b") as f:
        f.seek(300 if where == "header" else 3 * 4096 + 500)
        f.write(b"\x42\x43\x44")
    jet.open(s.inst, s.log("SRU0005C.log"))
    assert jet.read(s.inst, AlignedBuffer(1 << 16), 1 << 16)[0] == E["LogReadVerifyFailure"]
    assert jet.log_info(s.inst)[0] == E["NoBackup"]


def test_last_log_sector_not_verified(jet, dirty_set):
    s = dirty_set
    assert jet.begin(s.inst) == 0
    jet.read_all(s.inst, s.db)
    assert jet.log_info(s.inst)[0] == 0
    with open(s.log("SRU0005C.log"), "r+b") as f:
        f.seek(15 * 4096 + 100)
        f.write(b"garbage")
    jet.read_all(s.inst, s.log("SRU0005C.log"))


def test_legacy_names_8_digits_and_jtx(jet, tmp_path):
    d = str(tmp_path)
    db = esesim.copy_single("dissect-basic/basic.edb.gz", os.path.join(d, "basic.edb"))
    err, inst = jet.create("n")
    for pid, v in ((esesim.P_LOG_PATH, d), (esesim.P_SYSTEM_PATH, d)):
        jet.setp(inst, pid, s=v)
    assert jet.setp(inst, esesim.P_LEGACY_NAMES, 0) == 0
    assert jet.setp(inst, esesim.P_LOG_FILE_SIZE, 128) == 0
    assert jet.init(inst) == 0
    assert os.path.exists(os.path.join(d, "edb.jtx")) and os.path.exists(os.path.join(d, "edb.jcp"))
    err, ses = jet.session(inst)
    assert jet.attach(ses, db) == 0
    assert jet.begin(inst) == 0
    jet.read_all(inst, db)
    err, raw, _ = jet.log_info(inst)
    assert parse_multisz(raw) == [os.path.join(d, "edb00000001.jtx")]
    assert os.path.getsize(os.path.join(d, "edb.jtx")) == 128 * 1024


def test_header_full_copy_and_truncate_done(jet, clean_set):
    s = clean_set
    assert jet.begin(s.inst) == 0
    full_backup(jet, s, truncate=False)
    assert jet.end(s.inst) == 0                                       # no truncation -> CopyPrev
    h = read_header(s.db)[0]
    assert (h.bk["CopyPrev"]["low"], h.bk["CopyPrev"]["high"]) == (2, 2) and h.bk["FullPrev"]["low"] == 0
    assert jet.begin(s.inst) == 0
    full_backup(jet, s, truncate=False)
    assert jet.end(s.inst, 0x101) == 0                                # TruncateDone -> FullPrev
    h = read_header(s.db)[0]
    assert (h.bk["FullPrev"]["low"], h.bk["FullPrev"]["high"]) == (2, 3)
    assert h.bk["FullPrev"]["mark"] > h.bk["CopyPrev"]["mark"]


def test_no_db_header_update_bit(jet, clean_set):
    s = clean_set
    before = open(s.db, "rb").read(4096)
    assert jet.begin(s.inst) == 0
    full_backup(jet, s)
    assert jet.end(s.inst, 0x201) == 0
    assert open(s.db, "rb").read(4096)[136:468] == before[136:468]


def test_stop_then_end_succeeds_without_update(jet, clean_set):
    s = clean_set
    assert jet.begin(s.inst) == 0
    full_backup(jet, s)
    assert jet.stop(s.inst) == 0
    assert jet.log_info(s.inst)[0] == E["BackupAbortByServer"]
    assert jet.end(s.inst) == 0
    assert read_header(s.db)[0].bk["FullPrev"]["low"] == 0


def test_incremental_chain_and_differential(jet, dirty_set):
    s = dirty_set
    assert jet.begin(s.inst, 1) == E["MissingFullBackup"]
    assert jet.begin(s.inst) == 0
    full_backup(jet, s)
    assert jet.end(s.inst) == 0
    h = read_header(s.db)[0]
    assert (h.bk["FullPrev"]["low"], h.bk["FullPrev"]["high"]) == (92, 92)
    assert jet.begin(s.inst, 1) == 0                                  # starts in S3
    err, raw, info = jet.log_info2(s.inst)
    assert parse_multisz(raw) == [s.log("SRU0005C.log"), s.log("SRU0005D.log")]
    assert (info.ulGenLow, info.ulGenHigh) == (92, 93)
    for p in parse_multisz(raw):
        jet.read_all(s.inst, p)
    assert jet.end(s.inst) == 0                                       # no truncate -> DiffPrev
    h = read_header(s.db)[0]
    assert (h.bk["DiffPrev"]["low"], h.bk["DiffPrev"]["high"]) == (92, 93) and h.bk["IncPrev"]["low"] == 0
    assert jet.begin(s.inst, 1) == 0
    err, raw, _ = jet.log_info(s.inst)
    for p in parse_multisz(raw):
        jet.read_all(s.inst, p)
    assert jet.truncate(s.inst) == 0
    assert jet.end(s.inst) == 0
    h = read_header(s.db)[0]
    assert (h.bk["IncPrev"]["low"], h.bk["IncPrev"]["high"]) == (92, 94)
    assert jet.begin(s.inst) == 0                                     # a new FullPrev clears Inc/Diff
    full_backup(jet, s)
    assert jet.end(s.inst) == 0
    h = read_header(s.db)[0]
    assert h.bk["IncPrev"]["low"] == 0 and h.bk["DiffPrev"]["low"] == 0 and h.bk["FullPrev"]["high"] == 95
    assert all(x.checksum_ok for x in read_header(s.db))


def test_incremental_missing_log_gives_569(jet, dirty_set):
    s = dirty_set
    assert jet.begin(s.inst) == 0
    full_backup(jet, s, truncate=False)
    assert jet.end(s.inst, 0x101) == 0                                # FullPrev high = 92
    assert jet.begin(s.inst) == 0                                     # another roll (gen 93 -> 94), aborted
    assert jet.log_info(s.inst)[0] == 0
    assert jet.end(s.inst, 2) == 0
    for n in ("SRU00059.log", "SRU0005A.log", "SRU0005B.log", "SRU0005C.log", "SRU0005D.log"):
        os.remove(s.log(n))
    assert jet.begin(s.inst, 1) == 0
    assert jet.log_info(s.inst)[0] == E["MissingFileToBackup"]        # oldest 94 > FullPrev.genHigh 92 + 1
    assert jet.log_info(s.inst)[0] == E["MissingFileToBackup"]        # not aborted


def test_incremental_with_circular_logging(jet, tmp_path):
    d = esesim.copy_set("srum-server2022-clean", str(tmp_path / "c"))
    err, inst = jet.create("c")
    for pid, v in ((esesim.P_LOG_PATH, d), (esesim.P_SYSTEM_PATH, d), (esesim.P_BASE_NAME, "SRU")):
        jet.setp(inst, pid, s=v)
    jet.setp(inst, esesim.P_CIRCULAR, 1)
    assert jet.init(inst) == 0
    assert jet.begin(inst, 1) == E["InvalidBackup"]
    assert jet.begin(inst, 0x4) == E["InvalidGrbit"]
    assert jet.begin(inst, 0x41) == E["InvalidBackup"]


def test_begin_checkpoint_errors(jet, clean_set):
    s = clean_set
    os.rename(s.log("SRU.chk"), s.log("SRU.chk.bak"))
    assert jet.begin(s.inst) == E["CheckpointFileNotFound"]
    data = bytearray(open(s.log("SRU.chk.bak"), "rb").read())
    data[100] ^= 1
    data[4096 + 100] ^= 1
    open(s.log("SRU.chk"), "wb").write(data)
    assert jet.begin(s.inst) == E["CheckpointCorrupt"]
    data = bytearray(open(s.log("SRU.chk.bak"), "rb").read())
    for off in (0, 4096):
        data[off + 20] ^= 0xFF
        struct.pack_into("<I", data, off, esesim.xor_old(bytes(data[off:off + 4096])))
    open(s.log("SRU.chk"), "wb").write(data)
    assert jet.begin(s.inst) == E["BadCheckpointSignature"]
    assert jet.attach_info(s.inst)[0] == E["NoBackup"]
