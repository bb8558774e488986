// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* backup_read.c: JetReadFileInstance (ese-backup-semantics.md §4): buffer
 * rules, the streamed database layout with page verification and the trailer,
 * and verified log reads. */
#include "esesim.h"

#include <stdlib.h>
#include <string.h>

/* architecture.md §5: PATCHHDR on a zero page, legacy XOR checksum at 0 */
void bk_make_trailer(sim_inst *in, uint8_t *page)
{
    const sim_backup *bk = &in->bk;
    const uint8_t *h = bk->hdr_page;
    uint32_t cb = in->db[bk->db_index].cb_page;
    memset(page, 0, cb);
    memcpy(page + 8, h + HDR_DBTIME, 8);
    uint32_t committed = rd32(h + HDR_GENMAXCOMMITTED);
    uint32_t gen_high = (uint32_t)in->s.gen > committed ? (uint32_t)in->s.gen : committed;
    bkinfo_t bi = { bk->mark, { 0 }, (uint32_t)bk->copy_mic, gen_high };
    memcpy(bi.logtime, bk->mark_time, 8);
    bkinfo_put(page + TRL_BKINFO, &bi);
    memcpy(page + TRL_SIGNDB, h + HDR_SIGNDB, 28);
    memcpy(page + TRL_SIGNLOG, h + HDR_SIGNLOG, 28);
    memcpy(page + TRL_GENMIN, h + HDR_GENMIN, 4);
    memcpy(page + TRL_GENMAX, h + HDR_GENMAX, 4);
    memcpy(page + TRL_GENCOMMITTED, h + HDR_GENMAXCOMMITTED, 4);
    memcpy(page + TRL_LOGTIME_GENMAXREQ, h + HDR_LOGTIME_GENMAXREQ, 8);
    memcpy(page + TRL_LOGTIME_GENMAXCOMMIT, h + HDR_LOGTIME_GENMAXCREATE, 8);
    wr32(page, xor_old(page, cb));
}

/* pages [first, first+n) read at their file offsets and verified (§4.3) */
static JET_ERR read_data_pages(sim_backup *bk, uint8_t *out, uint32_t cb, uint64_t pos, uint64_t bytes)
{
    size_t got;
    if (!io_pread_full(bk->fd, out, bytes, pos, &got)) return JET_errDiskIO;
    if (got < bytes) memset(out + got, 0, bytes - got);    /* shrunk file: unwritten space */
    uint32_t pgno = (uint32_t)(pos / cb) - 1;
    for (uint64_t o = 0; o < bytes; o += cb, pgno++) {
        JET_ERR err = verify_db_page(out + o, cb, pgno, true);
        if (err) return err;
    }
    return JET_errSuccess;
}

JET_ERR bk_read_db(sim_inst *in, uint8_t *pv, uint32_t cb_buf, uint32_t *got)
{
    sim_backup *bk = &in->bk;
    uint32_t cb = in->db[bk->db_index].cb_page;
    uint64_t pages_end = ((uint64_t)bk->pgno_last + 2) * cb;
    uint64_t end = bk->offset + cb_buf < bk->size ? bk->offset + cb_buf : bk->size;
    uint64_t pos = bk->offset;
    while (pos < end) {
        uint8_t *out = pv + (pos - bk->offset);
        uint64_t n = cb;
        if (pos < 2ull * cb) {
            memcpy(out, bk->hdr_page, cb);               /* header, then its shadow */
        } else if (pos < pages_end) {
            n = (pages_end < end ? pages_end : end) - pos;
            JET_ERR err = read_data_pages(bk, out, cb, pos, n);
            if (err) return err;
        } else {
            bk_make_trailer(in, out);
        }
        pos += n;
    }
    *got = (uint32_t)(end - bk->offset);
    bk->offset = end;
    return JET_errSuccess;
}

/* §4.5: header checksum and v8 segment checksums (last sector skipped) -> -612 */
static JET_ERR verify_log_chunk(sim_backup *bk, const uint8_t *buf, uint64_t pos, uint64_t n)
{
    if (pos == 0) {
        if (n < LOG_HDR_BYTES || !loghdr_valid(buf)) return JET_errLogReadVerifyFailure;
        bk->log_cb_sec = rd16(buf + LGH_CBSEC);
        bk->log_csec_header = rd16(buf + LGH_CSECHDR);
        bk->log_csec_file = rd16(buf + LGH_CSECFILE);
        bk->log_v8 = rd32(buf + LGH_MAJOR) >= 8 && bk->log_cb_sec == 4096;
    }
    if (!bk->log_v8) return JET_errSuccess;
    for (uint64_t o = 0; o + 4096 <= n; o += 4096) {
        uint32_t isec = (uint32_t)((pos + o) / 4096);
        if (isec < bk->log_csec_header || isec + 1 >= bk->log_csec_file) continue;
        if (!verify_log_segment(buf + o, isec)) return JET_errLogReadVerifyFailure;
    }
    return JET_errSuccess;
}

JET_ERR bk_read_log(sim_inst *in, uint8_t *pv, uint32_t cb_buf, uint32_t *got)
{
    sim_backup *bk = &in->bk;
    uint64_t n = bk->size - bk->offset < cb_buf ? bk->size - bk->offset : cb_buf;
    size_t r;
    if (!io_pread_full(bk->fd, pv, n, bk->offset, &r)) return JET_errDiskIO;
    if (r < n) return JET_errDiskIO;
    if (bk->verify_log) {
        JET_ERR err = verify_log_chunk(bk, pv, bk->offset, n);
        if (err) return err;
    }
    bk->offset += n;
    *got = (uint32_t)n;
    return JET_errSuccess;
}

/* §4.1 checks in order after the state checks */
static JET_ERR read_buffer_checks(const sim_backup *bk, JET_HANDLE h, const void *pv, ULONG32 cb)
{
    if ((uintptr_t)pv % OS_PAGE) return JET_errInvalidParameter;
    if (cb == 0 || cb % g_cb_page) return JET_errInvalidParameter;
    if (h != 0) return JET_errInvalidParameter;
    if (bk->kind == FILE_NONE) return cb >= 2 * g_cb_page ? JET_errSuccess : JET_errInvalidParameter;
    uint32_t first_min = bk->kind == FILE_DB ? 3 : 2;
    if (bk->offset == 0 && cb < first_min * g_cb_page) return JET_errInvalidParameter;
    return JET_errSuccess;
}

/* a read error closes a DB handle (->S1) but cancels the backup on logs (->S0) */
static JET_ERR read_failed(sim_inst *in, JET_ERR err)
{
    if (in->bk.kind == FILE_DB) bk_close_file(&in->bk);
    else bk_abort(in);
    return err;
}

EXPORT JET_ERR JetReadFileInstance(JET_INSTANCE instance, JET_HANDLE hfFile, void *pv, ULONG32 cb,
                                   ULONG32 *pcbActual)
{
    sim_inst *in = NULL;
    uint32_t got = 0;
    JET_ERR ferr = fault_check("JetReadFileInstance");
    JET_ERR err = inst_gate(instance, &in);
    if (!err && in->bk.status == BK_NONE) err = JET_errNoBackup;
    if (!err && in->bk.stopped) err = JET_errBackupAbortByServer;
    if (!err) err = read_buffer_checks(&in->bk, hfFile, pv, cb);
    if (pcbActual) *pcbActual = 0;
    if (err) return err;
    if (in->bk.kind == FILE_NONE) return JET_errSuccess;       /* note R: empty slot 0 */
    if (ferr) return ferr == JET_errInvalidParameter ? ferr : read_failed(in, ferr);
    if (in->bk.offset < in->bk.size) {
        err = in->bk.kind == FILE_DB ? bk_read_db(in, pv, cb, &got) : bk_read_log(in, pv, cb, &got);
        if (err) return read_failed(in, err);
    }
    if (pcbActual) *pcbActual = got;
    return JET_errSuccess;
}
