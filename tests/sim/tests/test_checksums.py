# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Page verification while reading (ese-file-format.md §5, semantics §4.3): all page
sizes, corrupt pages (-1018/-1118, handle auto-closed, backup continues), single-bit
correction, zero pages, and read throughput."""
import ctypes
import os
import struct
import time

import numpy as np
import pytest

import esesim
from esesim import E, AlignedBuffer, page_ok, read_header


def corrupt(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def flip_bit(path, offset, bit):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([b ^ (1 << bit)]))


def first_nonzero_page(path, cb, start=1):
    data = open(path, "rb").read()
    for pgno in range(start, len(data) // cb - 1):
        if any(data[(pgno + 1) * cb:(pgno + 2) * cb]):
            return pgno
    raise AssertionError("no data page")


def test_python_and_c_checksums_agree_on_real_pages(lib):
    data = open(os.path.join(esesim.DATA, "sets/srum-win11-dirty/SRUDB.dat"), "rb").read()
    cb, checked = 4096, 0
    for pgno in range(1, 60):
        page = data[(pgno + 1) * cb:(pgno + 2) * cb]
        if any(page):
            assert page_ok(page, pgno)
            copy = bytearray(page)
            struct.pack_into("<Q", copy, 0, 0)
            buf = ctypes.create_string_buffer(bytes(copy), cb)
            lib.EseSimSealPage(buf, cb, pgno)
            assert buf.raw[:8] == page[:8]
            checked += 1
    assert checked > 20


def test_corrupt_page_fails_read_closes_handle_backup_continues(jet, dirty_set):
    s = dirty_set
    pgno = first_nonzero_page(s.db, 4096, start=40)
    corrupt(s.db, (pgno + 1) * 4096 + 100, bytes(range(1, 40)))
    assert jet.begin(s.inst) == 0
    err, h, size = jet.open(s.inst, s.db)
    buf = AlignedBuffer(1 << 20)
    err, n = jet.read(s.inst, buf, 1 << 20)
    assert (err, n) == (E["ReadVerifyFailure"], 0)
    assert jet.close(s.inst) == E["InvalidParameter"]          # handle auto-closed -> S1
    assert jet.attach_info(s.inst)[0] == 0                     # backup continues
    assert jet.log_info(s.inst)[0] == 0
    err, raw, _ = jet.truncate_info(s.inst)
    assert esesim.parse_multisz(raw) == []                     # DB not "copy done": deleteMac lowered to 0
    assert jet.end(s.inst, 0x101) == 0
    assert read_header(s.db)[0].bk["FullPrev"]["low"] == 0     # no header update


def test_wrong_page_number_gives_1118(jet, dirty_set):
    s = dirty_set
    data = bytearray(open(s.db, "rb").read())
    pg = first_nonzero_page(s.db, 4096, start=10)
    nxt = pg + 1
    data[(nxt + 1) * 4096:(nxt + 2) * 4096] = data[(pg + 1) * 4096:(pg + 2) * 4096]
    open(s.db, "r+b").write(data)
    assert jet.begin(s.inst) == 0
    jet.open(s.inst, s.db)
    assert jet.read(s.inst, AlignedBuffer(1 << 22), 1 << 22)[0] == E["ReadPgnoVerifyFailure"]


def test_single_bit_error_is_corrected_in_delivered_data(jet, dirty_set):
    s = dirty_set
    orig = open(s.db, "rb").read()
    pgno = first_nonzero_page(s.db, 4096, start=30)
    flip_bit(s.db, (pgno + 1) * 4096 + 1234, 5)
    assert jet.begin(s.inst) == 0
    stream, size = jet.read_all(s.inst, s.db, chunk=3 * 4096)
    assert stream[2 * 4096:len(orig)] == orig[2 * 4096:]


def test_old_format_xor_pages_and_zero_pages(jet, tmp_path, make_setup):
    d = str(tmp_path)
    db = esesim.make_synthetic_db(os.path.join(d, "old.edb"), 4096, 12,
                                  os.path.join(esesim.DATA, "sets/srum-server2022-clean/SRUDB.dat"),
                                  zero_pages={3, 4}, old_format={5, 6, 7})
    s = make_setup(d, base="edb", db="old.edb")
    assert s.init_err == 0 and s.attach_err == 0
    assert jet.begin(s.inst) == 0
    stream, _ = jet.read_all(s.inst, db)
    assert stream[2 * 4096:14 * 4096] == open(db, "rb").read()[2 * 4096:]
    jet.end(s.inst, 2)
    corrupt(db, 7 * 4096 + 200, b"\x01")                        # old-format page 5 -> XOR mismatch
    assert jet.begin(s.inst) == 0
    jet.open(s.inst, db)
    assert jet.read(s.inst, AlignedBuffer(1 << 16), 1 << 16)[0] == E["ReadVerifyFailure"]


@pytest.mark.parametrize("cb", [8192, 16384, 32768])
def test_synthetic_large_pages_roundtrip_fix_and_fail(jet, tmp_path, make_setup, cb):
    d = str(tmp_path)
    tpl = os.path.join(esesim.DATA, "sets/srum-server2022-clean/SRUDB.dat")
    db = esesim.make_synthetic_db(os.path.join(d, "big.edb"), cb, 6, tpl, zero_pages={2})
    src = open(db, "rb").read()
    assert all(page_ok(src[(p + 1) * cb:(p + 2) * cb], p) for p in range(1, 7))
    s = make_setup(d, base="edb", db="big.edb", page=cb)
    assert s.init_err == 0 and s.attach_err == 0
    flip_bit(db, (4 + 1) * cb + cb - 7, 3)                       # last block of page 4: corrected
    assert jet.begin(s.inst) == 0
    stream, size = jet.read_all(s.inst, db, chunk=3 * cb)
    assert size == 9 * cb and stream[2 * cb:8 * cb] == src[2 * cb:]
    trailer = stream[-cb:]
    assert struct.unpack_from("<I", trailer, 0)[0] == esesim.xor_old(trailer)
    jet.end(s.inst, 2)
    corrupt(db, (5 + 1) * cb + cb // 2 + 16, b"\xFF\x00\xFF")   # page 5: uncorrectable
    assert jet.begin(s.inst) == 0
    jet.open(s.inst, db)
    assert jet.read(s.inst, AlignedBuffer(16 * cb), 16 * cb)[0] == E["ReadVerifyFailure"]


def test_real_32k_pages_verify(jet, tmp_path, make_setup):
    """Windows.edb (32 KiB, 4-block ECC) made clean at header level so it attaches."""
    d = str(tmp_path)
    db = esesim.copy_single("windows-search-win10-dirty-32k/Windows.edb.gz", os.path.join(d, "Windows.edb"))
    with open(db, "r+b") as f:
        hdr = bytearray(f.read(32768))
        struct.pack_into("<I", hdr, 52, 3)
        struct.pack_into("<II", hdr, 296, 0, 0)
        esesim.seal_header(hdr)
        f.seek(0)
        f.write(hdr)
        f.write(hdr)
    s = make_setup(d, base="edb", db="Windows.edb", page=32768)
    assert s.init_err == 0 and s.attach_err == 0
    assert jet.begin(s.inst) == 0
    stream, _ = jet.read_all(s.inst, db, chunk=1 << 20)
    assert stream[65536:os.path.getsize(db)] == open(db, "rb").read()[65536:]


def test_temp_db_pages_are_not_checksummed(jet, tmp_path, make_setup):
    d = str(tmp_path)
    db = esesim.copy_single("ntds-2012r2-temp-8k/temp.edb.gz", os.path.join(d, "temp.edb"))
    with open(db, "r+b") as f:                                  # JustCreated -> clean, to attach it
        hdr = bytearray(f.read(8192))
        struct.pack_into("<I", hdr, 52, 3)
        esesim.seal_header(hdr)
        f.seek(0)
        f.write(hdr)
        f.write(hdr)
    s = make_setup(d, base="edb", db="temp.edb", page=8192)
    assert s.attach_err == 0
    assert jet.begin(s.inst) == 0
    jet.open(s.inst, db)
    assert jet.read(s.inst, AlignedBuffer(1 << 20), 1 << 20)[0] in (E["ReadVerifyFailure"], E["ReadPgnoVerifyFailure"])


def test_read_throughput_4k(jet, tmp_path, make_setup, lib):
    """64 MiB of checksummed 4 KiB pages, read in 1 MiB chunks."""
    d = str(tmp_path)
    cb, npages = 4096, 16384
    tpl = os.path.join(esesim.DATA, "sets/srum-server2022-clean/SRUDB.dat")
    db = esesim.make_synthetic_db(os.path.join(d, "perf.edb"), cb, 1, tpl)
    pages = np.random.default_rng(1).integers(0, 2**63, (npages, cb // 8), dtype=np.uint64)
    raw = bytearray(pages.tobytes())
    buf = (ctypes.c_char * len(raw)).from_buffer(raw)
    base = ctypes.addressof(buf)
    for i in range(npages):
        struct.pack_into("<I", raw, i * cb + 36, 0x2002)
        lib.EseSimSealPage(ctypes.c_void_p(base + i * cb), cb, i + 1)
    del buf
    with open(db, "r+b") as f:
        f.seek(2 * cb)
        f.write(raw)
    s = make_setup(d, base="edb", db="perf.edb")
    assert s.attach_err == 0
    assert jet.begin(s.inst) == 0
    err, h, size = jet.open(s.inst, db)
    chunk = AlignedBuffer(1 << 20)
    t0, total = time.perf_counter(), 0
    while True:
        err, n = jet.read(s.inst, chunk, 1 << 20)
        assert err == 0
        if n == 0:
            break
        total += n
    rate = total / (time.perf_counter() - t0) / 1e9
    print(f"\nsimulator DB read+verify: {rate:.2f} GB/s (4 KiB pages, {total >> 20} MiB)")
    assert total == size and rate > 0.3
