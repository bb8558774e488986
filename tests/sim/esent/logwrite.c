// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* logwrite.c: log records of the simulated work (database creation, DDL,
 * transactions, inserts) written into the current log as v8 segments
 * (ese-file-format.md §6): every 4 KiB sector from csecHeader on starts with an
 * LGSEGHDR (XE checksum with pgno = isec, lgposSegment, LOGTIME, fFlags 0x2000);
 * the last sector of a file is never written. When the data sectors are full,
 * the log rolls (format.c log_roll) and the records go on in the next
 * generation. The record layout after the segment header is the simulator's
 * own (8-byte header: type, 0, session, payload size; then the payload), not
 * ESE's; nothing replays it. */
#include "esesim.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define SEG_HDR 40u
#define SEG_FLAGS 0x2000u

static JET_ERR write_sector(sim_inst *in)
{
    sim_stream *s = &in->s;
    char cur[SIM_PATH_MAX], real[SIM_PATH_MAX];
    lgpos_t pos = { 0, s->sec_isec, s->sec_gen };
    lgpos_put(s->sec + 8, pos);
    logtime_now(s->sec + 16);
    wr32(s->sec + 36, SEG_FLAGS);
    wr64(s->sec, xe_checksum(s->sec, 4096, s->sec_isec, true));
    log_current_name(in, cur, sizeof cur);
    if (!resolve_ci(cur, real, sizeof real)) return JET_errMissingLogFile;
    int fd = open(real, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return JET_errFileAccessDenied;
    bool ok = io_pwrite_full(fd, s->sec, 4096, (uint64_t)s->sec_isec * 4096u);
    close(fd);
    return ok ? JET_errSuccess : JET_errDiskIO;
}

/* a fresh generation when the current log was not written by this process
 * or its data sectors are used up */
static JET_ERR ensure_room(sim_inst *in)
{
    sim_stream *s = &in->s;
    if (s->writable && s->tip.isec + 1u < s->csec_file) return JET_errSuccess;
    JET_ERR err = log_roll(in);
    if (err) return err;
    dbw_on_roll(in);
    return JET_errSuccess;
}

static JET_ERR append(sim_inst *in, const uint8_t *p, size_t n)
{
    sim_stream *s = &in->s;
    while (n) {
        JET_ERR err = ensure_room(in);
        if (err) return err;
        if (s->sec_gen != s->tip.gen || s->sec_isec != s->tip.isec) {
            memset(s->sec, 0, sizeof s->sec);
            s->sec_gen = s->tip.gen;
            s->sec_isec = s->tip.isec;
        }
        uint32_t ib = s->tip.ib < SEG_HDR ? SEG_HDR : s->tip.ib;
        size_t k = 4096u - ib < n ? 4096u - ib : n;
        memcpy(s->sec + ib, p, k);
        p += k;
        n -= k;
        ib += (uint32_t)k;
        if (ib < 4096u) { s->tip.ib = (uint16_t)ib; continue; }
        if ((err = write_sector(in)) != JET_errSuccess) return err;
        s->tip.isec++;
        s->tip.ib = 0;
    }
    return JET_errSuccess;
}

/* One record; the sector holding its end is written before returning (every
 * record is flushed). Without a log stream (recovery off) nothing is written.
 * Logs whose sectors are not 4 KiB (pre-v8) get no records. */
JET_ERR log_record(sim_inst *in, uint8_t type, uint16_t sess, const void *a, size_t na, const void *b, size_t nb)
{
    sim_stream *s = &in->s;
    uint8_t hdr[8] = { type, 0 };
    if (!s->present || s->cb_sec != 4096 || s->csec_file < s->csec_header + 2u) return JET_errSuccess;
    wr16(hdr + 2, sess);
    wr32(hdr + 4, (uint32_t)(na + nb));
    JET_ERR err = append(in, hdr, sizeof hdr);
    if (!err && na) err = append(in, a, na);
    if (!err && nb) err = append(in, b, nb);
    if (!err && s->tip.ib > SEG_HDR && s->sec_isec == s->tip.isec && s->sec_gen == s->tip.gen)
        err = write_sector(in);
    if (!err) s->records++;
    return err;
}
