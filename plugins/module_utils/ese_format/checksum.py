# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ESE page checksums, as Microsoft's ESE computes and checks them.

Sources (github.com/microsoft/Extensible-Storage-Engine): ``dev/ese/src/ese/_osu/checksumu.cxx``
(ComputePageChecksum, ChecksumAndPossiblyFixPage, TryFixPage, FTryFixBlock: the format bit, the
old-format fallback, block sizes and the correction rules) and ``dev/ese/src/checksum/checksum.cxx``
(ChecksumOldFormat, ChecksumNewFormat, FECCErrorIsCorrectable, IbitCorrupted).

- Every page (of any size) whose flags dword (offset 36) lacks ``0x2000`` uses the old format: the
  XOR of every dword after the first, seeded with 0x89ABCDEF, and the page number in the second
  dword. On 16/32 KiB pages the three extra checksum slots (offsets 40-63) must then be zero, because
  ESE compares all four slots with the computed ones, which the old format leaves zero.
- Pages with the flag use XOR+ECC: one block for pages up to 8 KiB, four blocks (4 KiB blocks for
  16 KiB pages, 8 KiB for 32 KiB) otherwise, their checksums at offsets 0, 40, 48 and 56.
- A mismatch is correctable when every failing block has a single-bit error that the ECC locates
  inside the block, and that bit is not the format flag itself. A correctable bit in the header
  block that falls on one of the other blocks' checksum slots corrects that slot first.

Two implementations of the same algorithms:

- a scalar reference (``xor_old``, ``ecc_xor``, ``page_status``), pure Python, used as the
  fallback when numpy is missing and by the tests to cross-check the vectorised code;
- ``check_pages`` (numpy), which checks a whole chunk of pages at once.

Page numbering: the data page ``pgno`` (>= 1) sits at file offset ``(pgno + 1) * page_size``.
"""
from __future__ import annotations

import struct

try:  # numpy is optional for the Ansible module; tests and bench always have it
    import numpy as np
    HAS_NUMPY = True
except ImportError:  # pragma: no cover - exercised by the pure-Python fallback test via a flag
    np = None
    HAS_NUMPY = False

XOR_SEED = 0x89ABCDEF
FLAG_NEW_CHECKSUM = 0x2000
MASK32 = 0xFFFFFFFF
PAGE_SIZES = (2048, 4096, 8192, 16384, 32768)

# page verdicts
OK = "ok"
ZERO = "zero"
BAD = "bad"
CORRECTABLE = "correctable"   # bad, but a single-bit error that ESE would fix in memory
BAD_PGNO = "bad_pgno"          # checksum good, page number field wrong


def parity(v):
    return bin(v).count("1") & 1


# --------------------------------------------------------------------------------------------
# scalar reference
# --------------------------------------------------------------------------------------------
def xor_old(buf):
    """Legacy XOR checksum (ChecksumOldFormat): seed 0x89ABCDEF XOR every dword except dword 0."""
    n = len(buf) // 4
    x = XOR_SEED
    for d in struct.unpack_from("<%dI" % n, buf)[1:]:
        x ^= d
    return x


def ecc_mask(block_size):
    return (((block_size << 19) & MASK32) - 1) & MASK32


def ecc_xor(block, pgno, header_block):
    """XOR+ECC 64-bit checksum of one block (ChecksumNewFormat); returns ``(ecc << 32) | (xor ^ pgno)``."""
    n = len(block) // 4
    d = list(struct.unpack_from("<%dI" % n, block))
    if header_block:
        d[0] = d[1] = 0
    p = 0
    c0 = c1 = c2 = c3 = 0
    idx = 0xFF800000
    for k in range(0, n, 4):
        a, b1, c, e = d[k], d[k + 1], d[k + 2], d[k + 3]
        c0 ^= a
        c1 ^= b1
        c2 ^= c
        c3 ^= e
        if parity(a ^ b1 ^ c ^ e):
            p ^= idx
        idx = (idx + 0xFF800080) & MASK32
    if parity(c0 ^ c1):
        p |= 0x00400000
    if parity(c2 ^ c3):
        p |= 0x00000040
    r0 = c0 ^ c2
    r1 = c1 ^ c3
    if parity(r0):
        p |= 0x00200000
    if parity(r1):
        p |= 0x00000020
    x = r0 ^ r1
    r = 0
    j = 0xFFFF0000
    for bit in range(32):
        if x & (1 << bit):
            r ^= j
        j = (j + 0xFFFF0001) & MASK32
    ecc = (p & 0xFFE0FFE0 & ecc_mask(len(block))) | (r & 0x001F001F)
    return (ecc << 32) | ((x ^ pgno) & MASK32)


FLAG_BIT = 9 * 32 + 13          # IbitNewChecksumFormatFlag(): bit 13 of the flags dword
SLOTS_FIRST_BIT = 40 * 8        # PGHDR2.rgChecksum: the checksums of blocks 1-3
SLOTS_END_BIT = 64 * 8


def corrupted_bit(expected, actual, block_size, header_block=False):
    """The bit (offset in the block) that ESE would flip, or None when the error is not correctable.

    FECCErrorIsCorrectable: the ECC difference has the pattern of a single bit, and the XOR
    difference is exactly one bit. FTryFixBlock: the bit lies inside the block and, in the header
    block, is not the format flag.
    """
    diff = ((expected ^ actual) >> 32) & MASK32
    xdiff = (expected ^ actual) & MASK32
    nbits = block_size * 8 - 1
    if (((diff >> 16) ^ diff) & nbits) != nbits or bin(xdiff).count("1") != 1:
        return None
    ibit = diff & 0xFFFF
    if ibit >= block_size * 8 or (header_block and ibit == FLAG_BIT):
        return None
    return ibit


def single_bit_correctable(expected, actual, block_size, header_block=False):
    """True when ESE's ECC corrects the difference (see ``corrupted_bit``)."""
    return corrupted_bit(expected, actual, block_size, header_block) is not None


def block_size_for(page_size):
    """Size of one XE block: the page for <= 8 KiB, else 4 KiB (16 KiB pages) or 8 KiB (32 KiB)."""
    if page_size <= 8192:
        return page_size
    return page_size // 4


def page_status(page, pgno, page_size=None):
    """Verdict for one data page (scalar reference): OK, ZERO, BAD, CORRECTABLE or BAD_PGNO."""
    cb = page_size or len(page)
    if not any(page):
        return ZERO
    flags = struct.unpack_from("<I", page, 36)[0]
    if not flags & FLAG_NEW_CHECKSUM:
        # old format, whatever the page size (ComputePageChecksum: LongChecksumFromShortChecksum)
        stored, spgno = struct.unpack_from("<II", page, 0)
        if stored != xor_old(page):
            return BAD
        if spgno != pgno:
            return BAD_PGNO
        if cb > 8192 and any(page[40:64]):
            return BAD          # the computed slots 1-3 are zero; memcmp of PAGECHECKSUM fails
        return OK
    if cb <= 8192:
        stored = struct.unpack_from("<Q", page, 0)[0]
        got = ecc_xor(page, pgno, True)
        if stored == got:
            return OK
        return CORRECTABLE if single_bit_correctable(got, stored, cb, True) else BAD
    bs = block_size_for(cb)
    stored = list(struct.unpack_from("<Q", page, 0) + struct.unpack_from("<QQQ", page, 40))
    errors = 0
    for i in range(4):
        got = ecc_xor(page[i * bs:(i + 1) * bs], pgno, i == 0)
        if stored[i] == got:
            continue
        ibit = corrupted_bit(got, stored[i], bs, i == 0)
        if ibit is None:
            return BAD
        errors += 1
        if i == 0 and errors == 1 and SLOTS_FIRST_BIT <= ibit < SLOTS_END_BIT:
            k = ibit - SLOTS_FIRST_BIT       # TryFixPage: the bit is in another block's stored checksum
            stored[1 + k // 64] ^= 1 << (k % 64)
    if errors:
        return CORRECTABLE
    if struct.unpack_from("<I", page, 64)[0] != pgno:
        return BAD_PGNO
    return OK


def seal_header(page):
    """Store the legacy XOR of ``page`` (a bytearray) at offset 0; used for headers and trailers."""
    struct.pack_into("<I", page, 0, xor_old(page))
    return page


# --------------------------------------------------------------------------------------------
# numpy, many pages at once
# --------------------------------------------------------------------------------------------
_TABLES = {}
# The ECC's row and column index words have a closed form (checksum.cxx ChecksumNewFormat): row i of a
# block (16 bytes) contributes 0xFF800000 + i * 0xFF800080 = (~i & 0x1FF) << 23 | i << 7 (i < 512, blocks
# up to 8 KiB), and bit b of the XOR word contributes 0xFFFF0000 + b * 0xFFFF0001 = (~b & 0xFFFF) << 16 | b.
# So the XOR of the words of the odd-parity rows is (X ^ 0x1FF * (K & 1)) << 23 | X << 7, with X the XOR of
# those rows' indices and K their number, and the five low bits of the column part are the XOR of the set
# bits' positions (bit k: the parity of the word under _POSITION_MASKS[k]).
_POSITION_MASKS = (0xAAAAAAAA, 0xCCCCCCCC, 0xF0F0F0F0, 0xFF00FF00, 0xFFFF0000)
HAS_BITWISE_COUNT = HAS_NUMPY and hasattr(np, "bitwise_count")


def _tables(block_size):
    """Per-block-size constants: row indices tagged with 0x200 (to count the rows too), and the ECC mask."""
    t = _TABLES.get(block_size)
    if t is None:
        rows = block_size // 16
        t = (np.arange(rows, dtype=np.uint16) | np.uint16(0x200), np.uint64(ecc_mask(block_size) & 0xFFE0FFE0))
        _TABLES[block_size] = t
    return t


def _popcount_parity(a):
    if HAS_BITWISE_COUNT:
        return np.bitwise_count(a) & np.uint8(1)
    a = a ^ (a >> np.uint64(32))
    a = a ^ (a >> np.uint64(16))
    a = a ^ (a >> np.uint64(8))
    a = a ^ (a >> np.uint64(4))
    return (np.uint64(0x6996) >> (a & np.uint64(0xF))) & np.uint64(1)


def _ecc_xor_blocks(blocks, pgnos, block_size):
    """``ecc_xor_blocks``, also returning the per-u64 bit counts (uint8, shaped like ``blocks``) or None."""
    rowtag, pmask = _tables(block_size)
    m = blocks.shape[0]
    if HAS_BITWISE_COUNT:
        counts = np.bitwise_count(blocks)                        # (M, W) uint8
        v = counts.view(np.uint16).reshape(m, block_size // 16)  # per row: count(a|b) | count(c|e) << 8
        par = (v ^ (v >> np.uint16(8))) & np.uint16(1)           # parity(a ^ b ^ c ^ e)
    else:
        counts = None
        rows = blocks.reshape(m, block_size // 16, 2)
        par = _popcount_parity(rows[:, :, 0] ^ rows[:, :, 1]).astype(np.uint16)
    xk = np.bitwise_xor.reduce(par * rowtag, axis=1).astype(np.uint64)     # X | (K & 1) << 9
    xi = xk & np.uint64(0x1FF)
    p = ((xi ^ ((xk >> np.uint64(9)) * np.uint64(0x1FF))) << np.uint64(23)) | (xi << np.uint64(7))
    x0 = np.bitwise_xor.reduce(blocks[:, 0::2], axis=1)    # c0 | c1 << 32
    xx = np.bitwise_xor.reduce(blocks, axis=1)              # (c0^c2) | (c1^c3) << 32
    x1 = x0 ^ xx                                            # c2 | c3 << 32
    r0 = xx & MASK32
    r1 = xx >> np.uint64(32)
    p |= _popcount_parity(x0).astype(np.uint64) * np.uint64(0x00400000)
    p |= _popcount_parity(x1).astype(np.uint64) * np.uint64(0x00000040)
    p |= _popcount_parity(r0).astype(np.uint64) * np.uint64(0x00200000)
    p |= _popcount_parity(r1).astype(np.uint64) * np.uint64(0x00000020)
    x = r0 ^ r1
    pos = np.zeros(m, dtype=np.uint64)
    for k, mask in enumerate(_POSITION_MASKS):
        pos |= _popcount_parity(x & np.uint64(mask)).astype(np.uint64) << np.uint64(k)
    r = pos | ((pos ^ (_popcount_parity(x).astype(np.uint64) * np.uint64(0x1F))) << np.uint64(16))
    ecc = (p & pmask) | r
    return (ecc << np.uint64(32)) | (x ^ pgnos.astype(np.uint64)), counts


def ecc_xor_blocks(blocks, pgnos, block_size):
    """Vectorised ``ecc_xor`` over ``blocks`` (uint64 array shaped (M, block_size/8)).

    The caller zeroes the first u64 of header blocks beforehand. ``pgnos`` is (M,) uint64.
    Returns the (M,) uint64 checksums.
    """
    return _ecc_xor_blocks(blocks, pgnos, block_size)[0]


def _correctable_vec(expected, actual, block_size, header_block=None):
    """Vectorised ``single_bit_correctable``; ``header_block``: bool array (or None: no block is)."""
    d = expected ^ actual
    diff = d >> np.uint64(32)
    xdiff = d & MASK32
    nbits = np.uint64(block_size * 8 - 1)
    ok = (((diff >> np.uint64(16)) ^ diff) & nbits) == nbits
    if hasattr(np, "bitwise_count"):
        one = np.bitwise_count(xdiff) == 1
    else:
        one = (xdiff != 0) & ((xdiff & (xdiff - np.uint64(1))) == 0)
    ibit = diff & np.uint64(0xFFFF)
    ok &= ibit < np.uint64(block_size * 8)
    if header_block is not None:
        ok &= ~(header_block & (ibit == np.uint64(FLAG_BIT)))
    return ok & one


def check_pages(buf, first_pgno, page_size):
    """Check the pages in ``buf`` (a writable uint8 numpy array, a whole number of pages).

    ``buf`` is modified in place (checksum slots are zeroed). Returns a dict of numpy arrays of
    page numbers: ``ok`` (count only), ``zero``, ``bad``, ``correctable``, ``bad_pgno``.
    """
    cb = page_size
    n = buf.size // cb
    q = buf[: n * cb].view(np.uint64).reshape(n, cb // 8)
    d32 = q.view(np.uint32)
    pgnos = np.arange(first_pgno, first_pgno + n, dtype=np.uint64)
    stored0 = q[:, 0].copy()
    flags = d32[:, 9]
    new = (flags & FLAG_NEW_CHECKSUM) != 0
    refine = []
    if cb <= 8192:
        spgno_old = d32[:, 1].astype(np.uint64)
        q[:, 0] = 0
        got, counts = _ecc_xor_blocks(q, pgnos, cb)
        # legacy XOR from the same pass: seed ^ xor(dwords[1:]) = seed ^ x(with d0=d1=0) ^ d1
        xlow = (got ^ pgnos) & MASK32
        old = np.uint64(XOR_SEED) ^ xlow ^ spgno_old
        good_new = new & (got == stored0)
        good_old_sum = ~new & (old == (stored0 & MASK32))
        bad_pgno = good_old_sum & (spgno_old != pgnos)
        ok = good_new | (good_old_sum & ~bad_pgno)
        corr = new & ~good_new & _correctable_vec(got, stored0, cb, np.ones(n, dtype=bool))
    else:
        bs = cb // 4
        stored = np.stack([stored0, q[:, 5], q[:, 6], q[:, 7]], axis=1)
        spgno = d32[:, 16].astype(np.uint64)
        d1 = d32[:, 1].astype(np.uint64)
        q[:, 0] = 0
        blocks = q.reshape(n * 4, bs // 8)
        got, counts = _ecc_xor_blocks(blocks, np.repeat(pgnos, 4), bs)
        got = got.reshape(n, 4)
        match = got == stored
        allm = match.all(axis=1)
        hdr = np.zeros((n, 4), dtype=bool)
        hdr[:, 0] = True
        corr_blk = _correctable_vec(got, stored, bs, hdr)
        corr = new & ~allm & (corr_blk | match).all(axis=1)
        # a correctable bit of the header block on another block's checksum slot: ESE corrects the
        # slot first (TryFixPage); rare, so those pages get the scalar verdict
        refine = np.nonzero(new & ~allm & corr_blk[:, 0] & ~(corr_blk | match)[:, 1:].all(axis=1))[0].tolist()
        # old format on large pages: XOR of the whole page (dwords 1..), page number in dword 1,
        # and slots 1-3 zero (checksumu.cxx ComputePageChecksum)
        xall = np.bitwise_xor.reduce(((got ^ np.repeat(pgnos, 4).reshape(n, 4)) & MASK32), axis=1)
        old = np.uint64(XOR_SEED) ^ xall ^ d1
        good_old_sum = ~new & (old == (stored0 & MASK32))
        slots_zero = ~stored[:, 1:].any(axis=1)
        bad_pgno = (new & allm & (spgno != pgnos)) | (good_old_sum & (d1 != pgnos))
        ok = (new & allm & (spgno == pgnos)) | (good_old_sum & (d1 == pgnos) & slots_zero)
    notok = np.nonzero(~ok)[0]
    if refine:
        q[refine, 0] = stored0[refine]       # restore the checksum slot zeroed above
        for i in refine:
            v = page_status(q[i].tobytes(), first_pgno + i, cb)
            corr[i] = v == CORRECTABLE
    if not notok.size:
        return {"pages": n, "ok": n, "zero": [], "bad": [], "correctable": [], "bad_pgno": []}
    # all-zero pages: no bit set anywhere (the bit counts of the ECC pass) and no stored checksum
    if counts is not None:
        nonzero = counts.reshape(n, cb // 8)[notok].view(np.uint64).any(axis=1)
    else:
        nonzero = q[notok].any(axis=1)
    nonzero |= stored0[notok] != 0
    pg_m = nonzero & bad_pgno[notok]
    corr_m = nonzero & ~pg_m & corr[notok]
    bad_m = nonzero & ~pg_m & ~corr_m
    first = np.uint64(first_pgno)

    def pages(mask):
        return (notok[mask].astype(np.uint64) + first).tolist()
    return {"pages": n, "ok": n - int(notok.size), "zero": pages(~nonzero), "bad": pages(bad_m),
            "correctable": pages(corr_m), "bad_pgno": pages(pg_m)}


def check_pages_scalar(data, first_pgno, page_size):
    """Pure-Python equivalent of ``check_pages`` for ``data`` (bytes-like, whole pages)."""
    n = len(data) // page_size
    res = {"pages": n, "ok": 0, "zero": [], "bad": [], "correctable": [], "bad_pgno": []}
    mv = memoryview(data)
    for i in range(n):
        v = page_status(bytes(mv[i * page_size:(i + 1) * page_size]), first_pgno + i, page_size)
        if v == OK:
            res["ok"] += 1
        else:
            res[v if v != BAD_PGNO else "bad_pgno"].append(first_pgno + i)
    return res
