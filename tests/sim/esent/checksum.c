// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* checksum.c: ESE page checksums (ese-file-format.md §5).
 *   - legacy XOR (§5.1): headers, checkpoint copies, trailer, old-format pages;
 *   - XOR+ECC "XE" (§5.2): pages with flag 0x2000 (one block for 2/4/8 KiB pages,
 *     four blocks for 16/32 KiB pages) and v8 log segments.
 * Rows of four dwords are processed as two 64-bit words; row parity uses popcnt. */
#include "esesim.h"

#include <string.h>

#define PG_FLAGS 36
#define PG_FLAG_NEWCHECKSUM 0x2000u
#define PG_LARGE_CHECKSUMS 40
#define PG_LARGE_PGNO 64

static inline uint64_t ld64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

bool page_is_zero(const uint8_t *p, size_t n)
{
    uint64_t acc = 0;
    for (size_t i = 0; i < n; i += 32)
        acc |= ld64(p + i) | ld64(p + i + 8) | ld64(p + i + 16) | ld64(p + i + 24);
    return acc == 0;
}

/* §5.1: 0x89ABCDEF xor every dword except dword 0 */
uint32_t xor_old(const uint8_t *buf, size_t len)
{
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i < len; i += 32) {
        a ^= ld64(buf + i); b ^= ld64(buf + i + 8);
        c ^= ld64(buf + i + 16); d ^= ld64(buf + i + 24);
    }
    uint64_t x = a ^ b ^ c ^ d;
    return (uint32_t)x ^ (uint32_t)(x >> 32) ^ rd32(buf) ^ 0x89ABCDEFu;
}

/* The row loop: returns the row-parity word p; c01/c23 get the column XORs. */
#define XE_ROWS_BODY                                                        \
    uint32_t p = 0, idx = 0xFF800000u;                                      \
    uint64_t c01 = 0, c23 = 0;                                              \
    for (size_t i = 0; i < cb; i += 16) {                                   \
        uint64_t q0 = ld64(blk + i), q1 = ld64(blk + i + 8);                \
        if (i == 0 && header_block) q0 = 0;                                 \
        c01 ^= q0; c23 ^= q1;                                               \
        p ^= idx & (0u - (uint32_t)(__builtin_popcountll(q0 ^ q1) & 1));    \
        idx += 0xFF800080u;                                                 \
    }                                                                       \
    *pc01 = c01; *pc23 = c23;                                               \
    return p;

__attribute__((target("popcnt")))
static uint32_t xe_rows_popcnt(const uint8_t *blk, size_t cb, bool header_block,
                               uint64_t *pc01, uint64_t *pc23)
{
    XE_ROWS_BODY
}

static uint32_t xe_rows_generic(const uint8_t *blk, size_t cb, bool header_block,
                                uint64_t *pc01, uint64_t *pc23)
{
    XE_ROWS_BODY
}

static int g_have_popcnt = -1;

static inline uint32_t parity32(uint32_t v) { return (uint32_t)__builtin_parity(v); }

/* §5.2 ecc_xor(): low dword = XOR ^ pgno, high dword = ECC */
uint64_t xe_checksum(const uint8_t *blk, size_t cb, uint32_t pgno, bool header_block)
{
    uint64_t c01, c23;
    if (g_have_popcnt < 0)
        g_have_popcnt = __builtin_cpu_supports("popcnt") ? 1 : 0;
    uint32_t p = g_have_popcnt ? xe_rows_popcnt(blk, cb, header_block, &c01, &c23)
                               : xe_rows_generic(blk, cb, header_block, &c01, &c23);
    uint32_t c0 = (uint32_t)c01, c1 = (uint32_t)(c01 >> 32);
    uint32_t c2 = (uint32_t)c23, c3 = (uint32_t)(c23 >> 32);
    if (parity32(c0 ^ c1)) p |= 0x00400000u;
    if (parity32(c2 ^ c3)) p |= 0x00000040u;
    uint32_t r0 = c0 ^ c2, r1 = c1 ^ c3;
    if (parity32(r0)) p |= 0x00200000u;
    if (parity32(r1)) p |= 0x00000020u;
    uint32_t x = r0 ^ r1, r = 0, j = 0xFFFF0000u;
    for (int bit = 0; bit < 32; bit++, j += 0xFFFF0001u)
        if (x >> bit & 1u) r ^= j;
    uint32_t mask = (uint32_t)((uint32_t)cb << 19) - 1u;
    uint32_t ecc = (p & 0xFFE0FFE0u & mask) | (r & 0x001F001Fu);
    return (uint64_t)ecc << 32 | (x ^ pgno);
}

/* Single-bit correction (§5.2 "Correctability"): flip the bit the ECC points at
 * and keep it only if the block then verifies. */
static bool xe_try_fix(uint8_t *blk, size_t cb, uint32_t pgno, bool hdr, uint64_t stored)
{
    uint64_t calc = xe_checksum(blk, cb, pgno, hdr);
    uint32_t decc = (uint32_t)(calc >> 32) ^ (uint32_t)(stored >> 32);
    uint32_t dx = (uint32_t)calc ^ (uint32_t)stored;
    uint32_t bits = (uint32_t)cb * 8u - 1u;
    if (__builtin_popcount(dx) != 1 || (((decc >> 16) ^ decc) & bits) != bits)
        return false;
    uint32_t ibit = decc & 0xFFFFu & bits;
    blk[ibit >> 3] ^= (uint8_t)(1u << (ibit & 7));
    if (xe_checksum(blk, cb, pgno, hdr) == stored)
        return true;
    blk[ibit >> 3] ^= (uint8_t)(1u << (ibit & 7));
    return false;
}

/* One XE block: 0 ok, -1118 wrong pgno, -1018 bad (after an optional fix). */
static JET_ERR xe_block(uint8_t *blk, size_t cb, uint32_t pgno, bool hdr, uint64_t stored, bool fix)
{
    uint64_t calc = xe_checksum(blk, cb, pgno, hdr);
    if (calc == stored) return JET_errSuccess;
    if ((calc >> 32) == (stored >> 32)) return JET_errReadPgnoVerifyFailure;
    if (fix && xe_try_fix(blk, cb, pgno, hdr, stored)) return JET_errSuccess;
    return JET_errReadVerifyFailure;
}

static JET_ERR verify_large(uint8_t *page, uint32_t cb, uint32_t pgno, bool fix)
{
    size_t blk = cb / 4;
    JET_ERR err = xe_block(page, blk, pgno, true, ld64(page), fix);
    for (int b = 1; b < 4 && err == JET_errSuccess; b++)
        err = xe_block(page + b * blk, blk, pgno, false, ld64(page + PG_LARGE_CHECKSUMS + 8 * (b - 1)), fix);
    if (err == JET_errSuccess && rd32(page + PG_LARGE_PGNO) != pgno)
        err = JET_errReadPgnoVerifyFailure;
    return err;
}

/* Verify (and, with fix, repair a single bit of) a data page. All-zero pages pass. */
JET_ERR verify_db_page(uint8_t *page, uint32_t cb, uint32_t pgno, bool fix)
{
    JET_ERR err;
    if (cb >= 16384)
        err = verify_large(page, cb, pgno, fix);
    else if (rd32(page + PG_FLAGS) & PG_FLAG_NEWCHECKSUM)
        err = xe_block(page, cb, pgno, true, ld64(page), fix);
    else if (rd32(page) != xor_old(page, cb))
        err = JET_errReadVerifyFailure;
    else
        err = rd32(page + 4) == pgno ? JET_errSuccess : JET_errReadPgnoVerifyFailure;
    if (err != JET_errSuccess && page_is_zero(page, cb))
        err = JET_errSuccess;
    return err;
}

/* v8 log segment (ese-file-format.md §6): XE over 4 KiB with pgno = isec.
 * A shadow sector carries the previous sector's isec. */
bool verify_log_segment(const uint8_t *seg, uint32_t isec)
{
    uint64_t stored = ld64(seg);
    if (xe_checksum(seg, 4096, isec, true) == stored) return true;
    if (isec > 0 && xe_checksum(seg, 4096, isec - 1, true) == stored) return true;
    return page_is_zero(seg, 4096);
}

/* Test-only export: writes valid new-format checksums into a data page
 * (flag 0x2000 for 2/4/8 KiB; four blocks and pgno@64 for 16/32 KiB).
 * Used by the test suite to generate large synthetic databases quickly. */
void page_seal(uint8_t *page, uint32_t cb, uint32_t pgno)
{
    if (cb >= 16384) {
        size_t blk = cb / 4;
        wr32(page + PG_LARGE_PGNO, pgno);
        for (int b = 1; b < 4; b++)
            wr64(page + PG_LARGE_CHECKSUMS + 8 * (b - 1), xe_checksum(page + b * blk, blk, pgno, false));
        wr64(page, xe_checksum(page, blk, pgno, true));
        return;
    }
    wr32(page + PG_FLAGS, rd32(page + PG_FLAGS) | PG_FLAG_NEWCHECKSUM);
    wr64(page, xe_checksum(page, cb, pgno, true));
}

EXPORT void EseSimSealPage(void *pv, uint32_t cb, uint32_t pgno)
{
    page_seal(pv, cb, pgno);
}
