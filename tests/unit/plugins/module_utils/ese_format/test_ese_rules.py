# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Edge cases where the verifier follows Microsoft's ESE source, each on pages or logs built for it.

- dev/ese/src/ese/_osu/checksumu.cxx: ComputePageChecksum (the old format on every page size when
  flag 0x2000 is clear), TryFixPage and FTryFixBlock (what ECC may correct);
- dev/ese/src/ese/_log/logread.cxx: ErrVerifyLogSegments (every sector, own index or the one
  before, no position check).
"""
import os
import struct

import numpy as np
import pytest

from ansible_collections.ese.backup.plugins.module_utils.ese_format import checksum as ck
from ansible_collections.ese.backup.plugins.module_utils.ese_format import logs as lgm
from ansible_collections.ese.backup.plugins.module_utils.ese_format.verify import verify


def codes(res):
    return sorted(set(p["code"] for p in res["problems"]))


def _pages(synth, cb, n=6, first=1, old_format_every=0, seed=7):
    q = np.zeros((n, cb // 8), dtype=np.uint64)
    synth.fill_pages(q, first, cb, np.random.default_rng(seed), zero_every=0, old_format_every=old_format_every)
    return q


def _both(page_bytes, pgno, cb):
    """Scalar and vectorised verdicts (they must agree)."""
    s = ck.check_pages_scalar(page_bytes, pgno, cb)
    v = ck.check_pages(np.frombuffer(bytearray(page_bytes), dtype=np.uint8), pgno, cb)
    assert s == v
    return ck.page_status(page_bytes, pgno, cb), v


# ------------------------------------------------------------------ large pages in the old format
@pytest.mark.parametrize("cb", [16384, 32768])
def test_large_pages_without_the_flag_use_the_old_xor(synth, cb):
    q = _pages(synth, cb, old_format_every=1)
    for i in range(q.shape[0]):
        page = q[i].tobytes()
        assert struct.unpack_from("<I", page, 36)[0] & 0x2000 == 0
        verdict, v = _both(page, i + 1, cb)
        assert verdict == ck.OK and v["ok"] == 1, i
    assert ck.check_pages(np.frombuffer(bytearray(q.tobytes()), dtype=np.uint8), 1, cb)["ok"] == q.shape[0]


@pytest.mark.parametrize("cb", [16384, 32768])
def test_large_old_format_page_damage(synth, cb):
    q = _pages(synth, cb, n=1, old_format_every=1)
    page = bytearray(q[0].tobytes())
    bad = bytearray(page)
    bad[cb // 2] ^= 1
    assert _both(bytes(bad), 1, cb)[0] == ck.BAD             # XOR cannot correct
    assert _both(bytes(page), 2, cb)[0] == ck.BAD_PGNO        # the page number is in dword 1
    slot = bytearray(page)
    slot[48] = 1                                               # a non-zero slot fails ESE's memcmp
    struct.pack_into("<I", slot, 0, ck.xor_old(slot))
    assert _both(bytes(slot), 1, cb)[0] == ck.BAD


@pytest.mark.parametrize("cb", [16384, 32768])
def test_mixed_large_database(tmp_path, synth, cb):
    from ansible_collections.ese.backup.plugins.module_utils.ese_format import database as dbm
    p = str(tmp_path / "m.edb")
    synth.make_database(p, cb, pages=12, zero_every=0, old_format_every=3)
    info, probs = dbm.check_database(p)
    assert probs == [] and info["pages_ok"] == 12


# ------------------------------------------------------------------ what ECC may correct
def test_single_bit_error_in_a_plain_database_is_a_warning(tmp_path, synth):
    p = str(tmp_path / "x.edb")
    synth.make_database(p, 4096, pages=20, zero_every=0)
    synth.corrupt(p, (5 + 1) * 4096 + 1000, 3)
    r = verify(p)
    assert r["valid"] is True and codes(r) == ["DB_PAGE_CORRECTABLE"] and r["warning_count"] == 1
    assert r["problems"][0]["page"] == 5 and r["databases"][0]["correctable_pages"] == [5]


def test_flag_bit_is_never_the_corrected_bit(synth):
    """FTryFixBlock refuses to flip the format flag: a page whose ECC points at it is bad."""
    q = _pages(synth, 4096, n=1)
    page = bytearray(q[0].tobytes())
    struct.pack_into("<I", page, 36, struct.unpack_from("<I", page, 36)[0] & ~0x2000)
    struct.pack_into("<Q", page, 0, ck.ecc_xor(bytes(page), 1, True))   # ECC of the page without the flag
    struct.pack_into("<I", page, 36, struct.unpack_from("<I", page, 36)[0] | 0x2000)
    got = ck.ecc_xor(bytes(page), 1, True)
    stored = struct.unpack_from("<Q", page, 0)[0]
    assert ck.corrupted_bit(got, stored, 4096) == ck.FLAG_BIT              # the pattern points at the flag
    assert ck.single_bit_correctable(got, stored, 4096, True) is False
    assert _both(bytes(page), 1, 4096)[0] == ck.BAD


def test_corrected_bit_must_lie_in_the_block():
    """IbitCorrupted: a bit offset past the block is no correction."""
    lo = 0x8000 | 0x1234              # bit 15 set: offset >= 32768 bits, outside a 4 KiB block
    hi = (~lo) & 0x7FFF
    diff = (hi << 16) | lo
    expected = 0x1122334455667788
    actual = expected ^ (diff << 32) ^ 1
    assert ck.single_bit_correctable(expected, actual, 4096) is False
    assert ck.single_bit_correctable(expected, actual, 8192) is True     # 8 KiB blocks have 65536 bits


@pytest.mark.parametrize("cb", [16384, 32768])
def test_header_block_bit_on_another_blocks_checksum_slot(synth, cb):
    """TryFixPage: the header block's correction repairs the stored checksum of block 1 first."""
    q = _pages(synth, cb, n=3)
    page = bytearray(q[1].tobytes())
    page[45] ^= 0x04                  # inside rgChecksum[0], the stored checksum of block 1
    verdict, v = _both(bytes(page), 2, cb)
    assert verdict == ck.CORRECTABLE and v["correctable"] == [2]
    both = bytearray(page)
    both[cb - 100] ^= 0x10            # plus a second error in block 3: still one bit per block
    assert _both(bytes(both), 2, cb)[0] == ck.CORRECTABLE


# ------------------------------------------------------------------ log sectors
def _sector(path, s):
    with open(path, "rb") as f:
        f.seek(s * 4096)
        return f.read(4096)


def _put(path, s, data):
    with open(path, "r+b") as f:
        f.seek(s * 4096)
        f.write(data)


@pytest.fixture
def two_logs(tmp_path, synth):
    sig = synth.signature(4)
    logs = synth.make_log_set(str(tmp_path), "edb", [5, 6], sig, used_sectors=14)
    return [lg["path"] for lg in logs]


def test_recycled_log_with_a_stale_sector_mid_file(two_logs):
    """A sector left by an older generation is checksum-valid at its index: ESE accepts it."""
    old, cur = two_logs
    _put(cur, 7, _sector(old, 7))
    info, probs = lgm.check_log(cur)
    assert probs == [] and info["sectors_checked"] == 15
    assert lgm.check_log(cur, use_numpy=False)[1] == []


def test_shadow_of_the_previous_sector_from_another_generation(two_logs):
    old, cur = two_logs
    _put(cur, 9, _sector(old, 8))     # valid as sector 8: accepted as a shadow, whatever its position says
    assert lgm.check_log(cur)[1] == []


def test_last_sector_is_checked(two_logs):
    _old, cur = two_logs
    _put(cur, 15, os.urandom(4096))
    info, probs = lgm.check_log(cur)
    assert [(p["code"], p["sector"]) for p in probs] == [("LOG_SEGMENT_CHECKSUM", 15)]
    _put(cur, 15, _sector(cur, 14))   # a shadow copy of sector 14 is fine there
    assert lgm.check_log(cur)[1] == []


def test_old_format_log_sector(two_logs):
    _old, cur = two_logs
    sec = bytearray(_sector(cur, 3))
    struct.pack_into("<I", sec, 36, 0)                 # no new-checksum flag: XOR and the sector index
    struct.pack_into("<I", sec, 4, 3)
    struct.pack_into("<I", sec, 0, ck.xor_old(sec))
    _put(cur, 3, bytes(sec))
    assert lgm.check_log(cur)[1] == []
    assert lgm.check_log(cur, use_numpy=False)[1] == []
    sec[2000] ^= 1
    struct.pack_into("<I", sec, 0, ck.xor_old(sec) ^ 1)
    _put(cur, 3, bytes(sec))
    assert [p["code"] for p in lgm.check_log(cur)[1]] == ["LOG_SEGMENT_CHECKSUM"]


def test_zero_sectors_are_skipped(two_logs):
    _old, cur = two_logs
    _put(cur, 4, bytes(4096))
    assert lgm.check_log(cur)[1] == []


# ------------------------------------------------------------------ damage beyond the owned space
def test_space_tree_of_the_samples(testdata, singles):
    """The real databases' owned space (page 1's SPACE_HEADER, the OE tree at page 2)."""
    from ansible_collections.ese.backup.plugins.module_utils.ese_format import space as sp
    for path, cb, last in ((os.path.join(testdata, "sets/srum-win11-dirty/SRUDB.dat"), 4096, 590),
                           (os.path.join(testdata, "sets/srum-server2022-clean/SRUDB.dat"), 4096, 46),
                           (singles["Windows.edb"], 32768, 510), (singles["basic.edb"], 4096, 254)):
        with open(path, "rb") as f:
            data = f.read()
        assert sp.owned_last_page(lambda pg: data[(pg + 1) * cb:(pg + 2) * cb] or None, cb) == last, path


def _two_bits(synth, p, cb, pg):
    synth.corrupt(p, (pg + 1) * cb + 300, 1)
    synth.corrupt(p, (pg + 1) * cb + 1300, 6)     # the same block: not correctable


@pytest.mark.parametrize("cb,split", [(4096, False), (8192, True), (32768, False), (16384, True)])
def test_damage_beyond_the_owned_space_is_a_warning(tmp_path, synth, cb, split):
    p = str(tmp_path / "o.edb")
    synth.make_database(p, cb, pages=40, zero_every=0, owned_extents=[(16, 16), (24, 8), (32, 8)],
                        split_space_tree=split)
    r = verify(p)
    assert r["valid"] and r["problems"] == []
    _two_bits(synth, p, cb, 36)
    r = verify(p)
    assert r["valid"] is True and codes(r) == ["DB_PAGE_UNOWNED"] and r["problems"][0]["page"] == 36
    d = r["databases"][0]
    assert d["owned_last_page"] == 32 and d["unowned_bad_pages"] == [36] and d["bad_pages"] == [36]
    _two_bits(synth, p, cb, 30)       # inside the last extent: data may be lost
    r = verify(p)
    assert not r["valid"] and codes(r) == ["DB_PAGE_CHECKSUM", "DB_PAGE_UNOWNED"]
    assert [x["page"] for x in r["problems"] if x["code"] == "DB_PAGE_CHECKSUM"] == [30]


def test_unreadable_space_tree_keeps_every_error(tmp_path, synth):
    p = str(tmp_path / "o.edb")
    synth.make_database(p, 4096, pages=40, zero_every=0, owned_extents=[(32, 32)])
    _two_bits(synth, p, 4096, 36)
    _two_bits(synth, p, 4096, 2)      # the OE tree's page itself
    r = verify(p)
    assert not r["valid"] and codes(r) == ["DB_PAGE_CHECKSUM"]
    assert sorted(x["page"] for x in r["problems"]) == [2, 36] and r["databases"][0]["owned_last_page"] is None


def test_damage_past_the_real_srum_space(tmp_path, testdata, synth):
    """The dirty SRUM database's file has 606 data pages; its last owned extent ends at page 590."""
    import shutil
    p = str(tmp_path / "SRUDB.dat")
    shutil.copyfile(os.path.join(testdata, "sets/srum-win11-dirty/SRUDB.dat"), p)
    _two_bits(synth, p, 4096, 600)
    _two_bits(synth, p, 4096, 500)
    from ansible_collections.ese.backup.plugins.module_utils.ese_format import database as dbm
    info, probs = dbm.check_database(p)
    assert sorted((x["code"], x["page"]) for x in probs) == [("DB_PAGE_CHECKSUM", 500), ("DB_PAGE_UNOWNED", 600)]
    assert info["owned_last_page"] == 590
