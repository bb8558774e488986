// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* backup.c: the external backup state machine (ese-backup-semantics.md §1.1,
 * §2, §6): Begin, GetAttachInfo, OpenFile, CloseFile, End, Stop. */
#include "esesim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MARK_RECORD_BYTES 64u   /* size of the "backup begin" record in the modelled log */

void bk_close_file(sim_backup *bk)
{
    if (bk->fd >= 0 && bk->kind != FILE_NONE) close(bk->fd);
    free(bk->hdr_page);
    bk->hdr_page = NULL;
    bk->kind = FILE_NONE;
    bk->fd = -1;
}

/* backup cancelled: state -> S0, no header update */
void bk_abort(sim_inst *in)
{
    bk_close_file(&in->bk);
    memset(&in->bk, 0, sizeof in->bk);
    in->bk.fd = -1;
}

/* §1.1: progress calls return -520 without a backup, -801 after Stop */
static JET_ERR bk_progress_gate(JET_INSTANCE h, sim_inst **out)
{
    JET_ERR err = inst_gate(h, out);
    if (err) return err;
    if ((*out)->bk.status == BK_NONE) return JET_errNoBackup;
    if ((*out)->bk.stopped) return JET_errBackupAbortByServer;
    return JET_errSuccess;
}

/* Logs a "backup begin" record: the mark is the log tip (§4.3 header snapshot). */
static void take_mark(sim_inst *in)
{
    sim_stream *s = &in->s;
    in->bk.mark = s->tip;
    logtime_now(in->bk.mark_time);
    uint32_t cb_sec = s->cb_sec ? s->cb_sec : 4096;
    uint32_t ib = s->tip.ib + MARK_RECORD_BYTES;
    s->tip.isec = (uint16_t)(s->tip.isec + ib / cb_sec);
    s->tip.ib = (uint16_t)(ib % cb_sec);
}

static JET_ERR incremental_check(sim_inst *in)
{
    static uint8_t hdr[32768];
    for (int i = 0; i < SIM_MAX_DBS; i++) {
        uint32_t cb;
        bkinfo_t full;
        if (!in->db[i].used) continue;
        JET_ERR err = db_read_header_fd(in->db[i].fd, hdr, &cb);
        if (err) return err;
        bkinfo_get(hdr + HDR_BK_FULLPREV, &full);
        if (full.genLow == 0 || rd32(hdr + HDR_BKTYPE_FULLPREV) != 0) return JET_errMissingFullBackup;
    }
    return JET_errSuccess;
}

/* full Begin reads the checkpoint: copyMic = its generation (-542/-533/-532) */
JET_ERR bk_checkpoint_gen(sim_inst *in, int32_t *gen)
{
    char path[SIM_PATH_MAX];
    uint8_t copy[CHK_COPY_BYTES];
    chk_name(in, path, sizeof path);
    JET_ERR err = chk_read(path, copy);
    if (err) return err;
    if (memcmp(copy + CHK_SIGNLOG, in->s.sign_log, 28) != 0) return JET_errBadCheckpointSignature;
    *gen = lgpos_get(copy + CHK_LGPOS).gen;
    return JET_errSuccess;
}

/* §2.1 checks, in order */
static JET_ERR begin_checks(sim_inst *in, JET_GRBIT grbit)
{
    bool incr = grbit & BK_INCREMENTAL;
    if (!in->s.present) return JET_errLoggingDisabled;
    if (grbit & ~(BK_INCREMENTAL | BK_SURROGATE | BK_INTERNALCOPY)) return JET_errInvalidGrbit;
    if ((grbit & (BK_INCREMENTAL | BK_SURROGATE)) && in->p.circular) return JET_errInvalidBackup;
    if ((grbit & BK_INTERNALCOPY) && (grbit & (BK_INCREMENTAL | BK_SURROGATE))) return JET_errInvalidGrbit;
    if (in->bk.surrogate) return JET_errSurrogateBackupInProgress;
    if (in->bk.status != BK_NONE) return JET_errBackupInProgress;
    return incr ? incremental_check(in) : JET_errSuccess;
}

EXPORT JET_ERR JetBeginExternalBackupInstance(JET_INSTANCE instance, JET_GRBIT grbit)
{
    sim_inst *in = NULL;
    JET_ERR ferr = fault_check("JetBeginExternalBackupInstance");
    JET_ERR err = inst_gate(instance, &in);
    if (err) return err;
    if (!in->backup_allowed) return JET_errBackupNotAllowedYet;
    if (ferr) return ferr;                      /* injected: stays in S0 */
    if ((err = begin_checks(in, grbit)) != JET_errSuccess) return err;
    int32_t chk_gen = 0;
    if (!(grbit & BK_INCREMENTAL) && (err = bk_checkpoint_gen(in, &chk_gen)) != JET_errSuccess) return err;
    bk_abort(in);                               /* clears a pending Stop flag */
    if (grbit & BK_SURROGATE) { in->bk.surrogate = true; return JET_errSuccess; }
    sim_backup *bk = &in->bk;
    bk->full = !(grbit & BK_INCREMENTAL);
    bk->status = bk->full ? BK_DATABASES : BK_LOGS;
    bk->copy_mic = chk_gen;
    for (int i = 0; i < SIM_MAX_DBS; i++) in->db[i].copy_done = false;
    take_mark(in);
    return JET_errSuccess;
}

/* ---------- W multi-strings (§5.3) ---------- */

/* Builds a double-NUL list of paths; returns its size in bytes. */
size_t wlist_build(char paths[][SIM_PATH_MAX], int n, WCHAR **out)
{
    size_t units = 1;
    for (int i = 0; i < n; i++) units += utf8_to_wstr(paths[i], NULL, 0) + 1;
    WCHAR *w = calloc(units, sizeof(WCHAR));
    size_t o = 0;
    for (int i = 0; w && i < n; i++) {
        size_t k = utf8_to_wstr(paths[i], w + o, units - o);
        o += k + 1;
    }
    *out = w;
    return w ? units * sizeof(WCHAR) : 0;
}

/* Copies min(cbMax, size); *pcbActual = full size or the copied size. */
void wlist_copy(const WCHAR *list, size_t size, WCHAR *szz, ULONG32 cbMax, ULONG32 *pcbActual,
                bool report_full)
{
    size_t n = szz ? (cbMax < size ? cbMax : size) : 0;
    if (szz && n) memcpy(szz, list, n);
    if (pcbActual) *pcbActual = (ULONG32)(szz && !report_full ? n : size);
}

EXPORT JET_ERR JetGetAttachInfoInstanceW(JET_INSTANCE instance, WCHAR *szzDatabases, ULONG32 cbMax,
                                         ULONG32 *pcbActual)
{
    sim_inst *in = NULL;
    JET_ERR ferr = fault_check("JetGetAttachInfoInstanceW");
    JET_ERR err = bk_progress_gate(instance, &in);
    if (err) return err;
    if (!in->bk.full) return JET_errInvalidBackupSequence;
    if (ferr) { bk_abort(in); return ferr; }    /* list-building failures cancel (L2092) */
    static char paths[SIM_MAX_DBS][SIM_PATH_MAX];
    int n = 0;
    for (int i = 0; i < SIM_MAX_DBS; i++)
        if (in->db[i].used) strcpy(paths[n++], in->db[i].path);
    WCHAR *list;
    size_t size = wlist_build(paths, n, &list);
    if (!list) { bk_abort(in); return JET_errOutOfMemory; }
    wlist_copy(list, size, szzDatabases, cbMax, pcbActual, true);
    free(list);
    return JET_errSuccess;
}

/* ---------- OpenFile ---------- */

static JET_ERR open_db_stream(sim_inst *in, int idx, uint64_t *size)
{
    sim_backup *bk = &in->bk;
    sim_db *db = &in->db[idx];
    struct stat st;
    uint32_t cb;
    uint8_t *hdr = calloc(1, 32768);
    if (!hdr) return JET_errOutOfMemory;
    JET_ERR err = db_read_header_fd(db->fd, hdr, &cb);
    if (err || fstat(db->fd, &st) != 0) { free(hdr); return err ? err : JET_errDiskIO; }
    int fd = open(db->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { free(hdr); return JET_errFileAccessDenied; }
    /* §4.3 header snapshot: bkinfoFullCur = {mark, time, copyMic, 0}, checksum recomputed */
    bkinfo_t cur = { bk->mark, { 0 }, (uint32_t)bk->copy_mic, 0 };
    memcpy(cur.logtime, bk->mark_time, 8);
    bkinfo_put(hdr + HDR_BK_FULLCUR, &cur);
    wr32(hdr, xor_old(hdr, cb));
    bk->kind = FILE_DB;
    bk->fd = fd;
    bk->db_index = idx;
    bk->hdr_page = hdr;
    bk->pgno_last = (uint32_t)((uint64_t)st.st_size / cb - 2);
    bk->size = ((uint64_t)bk->pgno_last + 3) * cb;
    bk->offset = 0;
    *size = bk->size;
    return JET_errSuccess;
}

static JET_ERR open_log_file(sim_inst *in, const char *path, uint64_t *size)
{
    sim_backup *bk = &in->bk;
    char real[SIM_PATH_MAX];
    struct stat st;
    if (!resolve_ci(path, real, sizeof real)) return JET_errMissingFileToBackup;
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? JET_errMissingFileToBackup : JET_errFileAccessDenied;
    if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) { close(fd); return JET_errFileAccessDenied; }
    bk->kind = log_ext_matches(in, real) ? FILE_LOG : FILE_OTHER;
    bk->fd = fd;
    bk->size = (uint64_t)st.st_size;          /* logical size captured at open (§4.2) */
    bk->offset = 0;
    bk->log_gen = log_parse_gen(in, real);
    bk->verify_log = bk->kind == FILE_LOG && !g_disable_block_verification;
    *size = bk->size;
    return JET_errSuccess;
}

/* §1.1 OpenFile rows, by phase */
static JET_ERR open_by_phase(sim_inst *in, const char *path, uint64_t *size)
{
    int idx = db_find(in, path);
    if (in->bk.status == BK_DATABASES)
        return idx < 0 ? JET_errDatabaseNotFound : open_db_stream(in, idx, size);
    if (idx >= 0) { bk_abort(in); return JET_errInvalidBackupSequence; }
    JET_ERR err = open_log_file(in, path, size);
    if (err == JET_errMissingFileToBackup) bk_abort(in);
    return err;
}

/* injected errors: in the logs phase an open failure cancels the backup */
static JET_ERR open_fault(sim_inst *in, JET_ERR err)
{
    if (in->bk.status == BK_LOGS && err != JET_errInvalidParameter && err != JET_errOutOfMemory)
        bk_abort(in);
    return err;
}

EXPORT JET_ERR JetOpenFileInstanceW(JET_INSTANCE instance, const WCHAR *szFileName, JET_HANDLE *phfFile,
                                    ULONG32 *pulFileSizeLow, ULONG32 *pulFileSizeHigh)
{
    sim_inst *in = NULL;
    char utf8[SIM_PATH_MAX], path[SIM_PATH_MAX];
    JET_ERR ferr = fault_check("JetOpenFileInstanceW");
    JET_ERR err = bk_progress_gate(instance, &in);
    if (err) return err;
    if (!szFileName || !szFileName[0] || !phfFile) return JET_errInvalidParameter;
    if (in->bk.kind != FILE_NONE) return JET_errOutOfMemory;     /* crhfMax = 1 */
    if (ferr) return open_fault(in, ferr);
    if (!wstr_to_utf8(szFileName, utf8, sizeof utf8) || !path_absolute(utf8, path, sizeof path, false))
        return JET_errInvalidParameter;
    uint64_t size = 0;
    if ((err = open_by_phase(in, path, &size)) != JET_errSuccess) return err;
    *phfFile = 0;                               /* single slot: always handle 0 */
    *pulFileSizeLow = (ULONG32)size;
    *pulFileSizeHigh = (ULONG32)(size >> 32);
    return JET_errSuccess;
}

/* ---------- CloseFile ---------- */

/* "copy done" only after the whole reported size was read (§4.3, §5.5) */
static void record_completion(sim_inst *in)
{
    sim_backup *bk = &in->bk;
    if (bk->offset < bk->size) return;
    if (bk->kind == FILE_DB) in->db[bk->db_index].copy_done = true;
    else if (bk->kind == FILE_LOG && bk->range_computed && bk->log_gen >= bk->copy_mic &&
             bk->log_gen < bk->copy_mac)
        bk->gen_copy_done += (uint64_t)bk->log_gen;
}

EXPORT JET_ERR JetCloseFileInstance(JET_INSTANCE instance, JET_HANDLE hfFile)
{
    sim_inst *in = NULL;
    JET_ERR ferr = fault_check("JetCloseFileInstance");
    JET_ERR err = inst_gate(instance, &in);
    if (err) return err;
    if (in->bk.status == BK_NONE) return JET_errNoBackup;
    if (hfFile != 0 || in->bk.kind == FILE_NONE) return JET_errInvalidParameter;
    if (ferr) return ferr;
    record_completion(in);
    bk_close_file(&in->bk);
    return JET_errSuccess;
}

/* ---------- End (§1.1, §2.2, §6.2) ---------- */

static void write_bkinfo_field(uint8_t *hdr, int off, int type_off, const bkinfo_t *bi)
{
    bkinfo_t old;
    bkinfo_get(hdr + off, &old);
    if (lgpos_key(old.mark) > lgpos_key(bi->mark)) return;   /* only a newer mark replaces */
    bkinfo_put(hdr + off, bi);
    wr32(hdr + type_off, 0);                                   /* backupNormal */
    if (off == HDR_BK_FULLPREV) {                              /* new FullPrev resets the chain */
        memset(hdr + HDR_BK_INCPREV, 0, 24);
        memset(hdr + HDR_BK_DIFFPREV, 0, 24);
        memset(hdr + HDR_BK_SNAPCUR, 0, 24);
        wr32(hdr + HDR_BKTYPE_INCPREV, 0);
        wr32(hdr + HDR_BKTYPE_DIFFPREV, 0);
    }
}

static void update_headers(sim_inst *in, bool truncated)
{
    static uint8_t hdr[32768];
    sim_backup *bk = &in->bk;
    bkinfo_t bi = { bk->mark, { 0 }, (uint32_t)bk->copy_mic, (uint32_t)(bk->copy_mac - 1) };
    memcpy(bi.logtime, bk->mark_time, 8);
    int off = bk->full ? (truncated ? HDR_BK_FULLPREV : HDR_BK_COPYPREV)
                       : (truncated ? HDR_BK_INCPREV : HDR_BK_DIFFPREV);
    int type_off = off == HDR_BK_FULLPREV ? HDR_BKTYPE_FULLPREV : off == HDR_BK_COPYPREV ? HDR_BKTYPE_COPYPREV :
                   off == HDR_BK_INCPREV ? HDR_BKTYPE_INCPREV : HDR_BKTYPE_DIFFPREV;
    for (int i = 0; i < SIM_MAX_DBS; i++) {
        sim_db *db = &in->db[i];
        uint32_t cb;
        if (!db->used || (bk->full && !db->copy_done)) continue;
        if (db_read_header_fd(db->fd, hdr, &cb) != JET_errSuccess) continue;   /* warning only */
        write_bkinfo_field(hdr, off, type_off, &bi);
        db_write_header_fd(db->fd, hdr, cb);
    }
}

JET_ERR bk_end(sim_inst *in, JET_GRBIT grbit)
{
    sim_backup *bk = &in->bk;
    bool caller_abort = (grbit & BKEND_ABORT) || bk->status == BK_DATABASES;
    bool stopped = bk->stopped;
    bool update = !caller_abort && !stopped && !(grbit & BKEND_NOHDRUPDATE) && bk->range_computed;
    bk_close_file(bk);
    if (update) update_headers(in, bk->truncated || (grbit & BKEND_TRUNCATEDONE));
    bk_abort(in);
    if (profile_xp() && stopped) return JET_errBackupAbortByServer;
    if (profile_xp() && caller_abort) return JET_errBackupAbortByCaller;
    return JET_errSuccess;
}

EXPORT JET_ERR JetEndExternalBackupInstance2(JET_INSTANCE instance, JET_GRBIT grbit)
{
    sim_inst *in = NULL;
    JET_ERR ferr = fault_check("JetEndExternalBackupInstance2");
    JET_ERR err = inst_gate(instance, &in);
    if (err) return err;
    if (((grbit & BKEND_NORMAL) != 0) == ((grbit & BKEND_ABORT) != 0)) return JET_errInvalidParameter;
    if (in->bk.status == BK_NONE) return JET_errNoBackup;
    if (ferr) return ferr;                      /* injected: the backup is still running */
    return bk_end(in, grbit);
}

EXPORT JET_ERR JetEndExternalBackupInstance(JET_INSTANCE instance)
{
    return JetEndExternalBackupInstance2(instance, BKEND_NORMAL);
}

/* Stop only looks the instance up and sets the flag (J L22618). */
EXPORT JET_ERR JetStopBackupInstance(JET_INSTANCE instance)
{
    JET_ERR err = fault_check("JetStopBackupInstance");
    if (err) return err;
    sim_inst *in = inst_lookup(instance, &err);
    if (!in) return err;
    in->bk.stopped = true;
    return JET_errSuccess;
}
