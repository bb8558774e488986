# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checksums: scalar reference vs numpy, on every real page of the samples; correctability."""
import os
import struct

import numpy as np
import pytest

from ansible_collections.ese.backup.plugins.module_utils.ese_format import checksum as ck

SAMPLE_DBS = [("sets/srum-server2022-clean/SRUDB.dat", 4096), ("sets/srum-win11-dirty/SRUDB.dat", 4096)]


def _pages(path, cb):
    with open(path, "rb") as f:
        data = f.read()
    return data[2 * cb:]


def _all_samples(testdata, singles):
    out = [(os.path.join(testdata, p), cb) for p, cb in SAMPLE_DBS]
    out += [(singles["Windows.edb"], 32768), (singles["basic.edb"], 4096), (singles["temp.edb"], 8192)]
    return out


def test_xor_old_on_real_headers(testdata, singles):
    for path, cb in _all_samples(testdata, singles):
        with open(path, "rb") as f:
            hdr = f.read(2 * cb)
        assert struct.unpack_from("<I", hdr, 0)[0] == ck.xor_old(hdr[:cb])
        assert struct.unpack_from("<I", hdr, cb)[0] == ck.xor_old(hdr[cb:])


def test_xor_old_of_zero_buffer_is_seed():
    assert ck.xor_old(bytes(4096)) == 0x89ABCDEF


def test_ecc_masks():
    assert ck.ecc_mask(4096) == 0x7FFFFFFF
    assert ck.ecc_mask(8192) == 0xFFFFFFFF
    assert ck.ecc_mask(2048) == 0x3FFFFFFF


@pytest.mark.parametrize("which,counts", [(0, (30, 0, 16)), (1, (482, 0, 124)), (2, (211, 0, 555)),
                                          (3, (23, 0, 231)), (4, (0, 234, 22))])
def test_scalar_and_vectorised_agree_on_real_pages(testdata, singles, which, counts):
    path, cb = _all_samples(testdata, singles)[which]
    body = _pages(path, cb)
    s = ck.check_pages_scalar(body, 1, cb)
    v = ck.check_pages(np.frombuffer(bytearray(body), dtype=np.uint8), 1, cb)
    assert s == v
    assert (v["ok"], len(v["bad"]), len(v["zero"])) == counts   # the README's ok/bad/zero


def test_vectorised_block_checksums_match_scalar_per_page(testdata, singles):
    """Per-page u64 values, not only verdicts: 4 KiB pages and the four blocks of 32 KiB pages."""
    body = _pages(os.path.join(testdata, SAMPLE_DBS[1][0]), 4096)[: 64 * 4096]
    q = np.frombuffer(bytearray(body), dtype=np.uint64).reshape(64, 512).copy()
    q[:, 0] = 0
    got = ck.ecc_xor_blocks(q, np.arange(1, 65, dtype=np.uint64), 4096)
    for i in range(64):
        assert int(got[i]) == ck.ecc_xor(body[i * 4096:(i + 1) * 4096], i + 1, True)
    body = _pages(singles["Windows.edb"], 32768)
    nz = [i for i in range(len(body) // 32768) if any(body[i * 32768:(i + 1) * 32768])][:8]
    for i in nz:
        page = body[i * 32768:(i + 1) * 32768]
        for b in range(4):
            blk = bytearray(page[b * 8192:(b + 1) * 8192])
            want = ck.ecc_xor(bytes(blk), i + 1, b == 0)
            slot = (0, 40, 48, 56)[b]
            assert want == struct.unpack_from("<Q", page, slot)[0]
            arr = np.frombuffer(blk, dtype=np.uint64).reshape(1, 1024).copy()
            if b == 0:
                arr[:, 0] = 0
            assert int(ck.ecc_xor_blocks(arr, np.array([i + 1], dtype=np.uint64), 8192)[0]) == want


@pytest.mark.parametrize("byte,bit", [(8, 0), (100, 3), (2047, 7), (4095, 7), (36, 1)])
def test_single_bit_flip_on_real_4k_page_is_correctable(testdata, byte, bit):
    body = bytearray(_pages(os.path.join(testdata, SAMPLE_DBS[1][0]), 4096)[: 4096 * 4])
    assert any(body[:4096])
    body[byte] ^= 1 << bit
    assert ck.page_status(bytes(body[:4096]), 1) == ck.CORRECTABLE
    v = ck.check_pages(np.frombuffer(bytearray(body), dtype=np.uint8), 1, 4096)
    assert v["correctable"] == [1] and v["bad"] == []


def test_flag_bit_flip_is_not_correctable(testdata):
    body = bytearray(_pages(os.path.join(testdata, SAMPLE_DBS[1][0]), 4096)[:4096])
    body[37] ^= 0x20            # flag 0x2000 cleared: the page is read as old format and fails
    assert ck.page_status(bytes(body), 1) == ck.BAD


def test_two_bit_flip_is_bad(testdata):
    body = bytearray(_pages(os.path.join(testdata, SAMPLE_DBS[1][0]), 4096)[:4096])
    body[100] ^= 1
    body[3000] ^= 4
    assert ck.page_status(bytes(body), 1) == ck.BAD


@pytest.mark.parametrize("block", [0, 1, 3])
def test_single_bit_flip_on_real_32k_page_is_correctable(singles, block):
    body = _pages(singles["Windows.edb"], 32768)
    i = next(i for i in range(len(body) // 32768) if any(body[i * 32768:(i + 1) * 32768]))
    page = bytearray(body[i * 32768:(i + 1) * 32768])
    page[block * 8192 + 500] ^= 0x10
    assert ck.page_status(bytes(page), i + 1) == ck.CORRECTABLE
    v = ck.check_pages(np.frombuffer(bytearray(page), dtype=np.uint8), i + 1, 32768)
    assert v["correctable"] == [i + 1]


def test_wrong_page_number_makes_new_format_page_bad(testdata):
    body = _pages(os.path.join(testdata, SAMPLE_DBS[1][0]), 4096)[:4096]
    assert ck.page_status(body, 1) == ck.OK
    assert ck.page_status(body, 2) != ck.OK


@pytest.mark.parametrize("cb", [2048, 4096, 8192, 16384, 32768])
def test_synthetic_pages_every_size(synth, cb):
    q = np.zeros((12, cb // 8), dtype=np.uint64)
    synth.fill_pages(q, 5, cb, np.random.default_rng(cb), zero_every=4, old_format_every=3 if cb <= 8192 else 0)
    raw = q.tobytes()
    s = ck.check_pages_scalar(raw, 5, cb)
    v = ck.check_pages(np.frombuffer(bytearray(raw), dtype=np.uint8), 5, cb)
    assert s == v
    assert v["bad"] == [] and v["correctable"] == [] and v["zero"] == [8, 12, 16]
    for pg in range(5, 17):
        if pg % 4 and not (cb <= 8192 and pg % 3 == 0):   # old-format pages cannot be corrected
            page = bytearray(raw[(pg - 5) * cb:(pg - 4) * cb])
            page[cb // 2 + 3] ^= 0x40
            assert ck.page_status(bytes(page), pg) == ck.CORRECTABLE


def test_old_format_page_number_mismatch(synth):
    q = np.zeros((3, 512), dtype=np.uint64)
    synth.fill_pages(q, 1, 4096, np.random.default_rng(3), zero_every=0, old_format_every=1)
    page = bytearray(q[1].tobytes())
    assert ck.page_status(bytes(page), 2) == ck.OK
    struct.pack_into("<I", page, 4, 77)
    struct.pack_into("<I", page, 0, ck.xor_old(page))
    assert ck.page_status(bytes(page), 2) == ck.BAD_PGNO
    v = ck.check_pages(np.frombuffer(bytearray(page), dtype=np.uint8), 2, 4096)
    assert v["bad_pgno"] == [2]
