// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* database.c: attach/detach at header level and JetGetDatabaseFileInfoW
 * (jet-constants.md §2, §5.2, §6; ese-backup-semantics.md §1 "Other operations"). */
#include "esesim.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define JET_errTooManyAttachedDatabases (-1805)
#define DETACH_FORCE 0x1u
#define ATTACH_READONLY 0x1u             /* JET_bitDbReadOnly */

static uint8_t g_hdr[32768];

int db_find(const sim_inst *in, const char *path)
{
    for (int i = 0; i < SIM_MAX_DBS; i++)
        if (in->db[i].used && strcmp(in->db[i].path, path) == 0) return i;
    return -1;
}

static bool db_attached_in_process(const char *path)
{
    sim_inst *any = inst_first_running();
    return any && (db_find(any, path) >= 0 || db_attached_elsewhere(any, path));
}

/* Header-level soft recovery (README "Recovery"): a dirty database is
 * recoverable when it belongs to this log stream and every generation from
 * genMinRequired to genMaxRequired is on disk with its signature. */
static bool db_recoverable(const sim_inst *in, const uint8_t *hdr)
{
    int32_t lo = (int32_t)rd32(hdr + HDR_GENMIN), hi = (int32_t)rd32(hdr + HDR_GENMAX);
    if (!in->s.present || memcmp(hdr + HDR_SIGNLOG, in->s.sign_log, 28) != 0) return false;
    if (lo <= 0 || hi < lo || hi > in->s.gen) return false;
    for (int32_t g = lo; g <= hi; g++)
        if (log_gen_exists(in, g, in->s.sign_log) != JET_errSuccess) return false;
    return true;
}

static JET_ERR attach_checks(sim_inst *in, const uint8_t *hdr, uint32_t cb, bool read_only)
{
    bkinfo_t cur;
    if (cb != g_cb_page) return JET_errPageSizeMismatch;
    bkinfo_get(hdr + HDR_BK_FULLCUR, &cur);
    if (cur.genLow != 0) return JET_errSoftRecoveryOnBackupDatabase;
    uint32_t state = rd32(hdr + HDR_DBSTATE);
    if (state != DBSTATE_CLEAN && (read_only || !db_recoverable(in, hdr))) return JET_errDatabaseDirtyShutdown;
    return JET_errSuccess;
}

/* attach writes the header dirty: dbstate 2, genMin/MaxRequired = current gen */
static void mark_attached(sim_inst *in, uint8_t *hdr)
{
    uint8_t now[8];
    logtime_now(now);
    int32_t gen = in->s.present ? in->s.gen : 0;
    wr32(hdr + HDR_DBSTATE, DBSTATE_DIRTY);
    wr32(hdr + HDR_GENMIN, (uint32_t)gen);
    wr32(hdr + HDR_GENMAX, (uint32_t)gen);
    if (rd32(hdr + HDR_GENMAXCOMMITTED) < (uint32_t)gen) wr32(hdr + HDR_GENMAXCOMMITTED, (uint32_t)gen);
    lgpos_put(hdr + HDR_LGPOS_ATTACH, in->s.tip);
    memcpy(hdr + HDR_LOGTIME_ATTACH, now, 8);
    if (in->s.present) memcpy(hdr + HDR_SIGNLOG, in->s.sign_log, 28);
}

/* JET_bitDbReadOnly: the file is opened read-only under a shared lock, a dirty database is not
 * recovered (-550: recovery would have to write), and neither attach nor detach writes the header. */
JET_ERR db_attach(sim_inst *in, const char *path, JET_GRBIT grbit)
{
    bool ro = (grbit & ATTACH_READONLY) != 0;
    uint32_t cb = 0;
    int slot = -1;
    if (db_find(in, path) >= 0) return JET_wrnDatabaseAttached;
    if (db_attached_elsewhere(in, path)) return JET_errDatabaseSharingViolation;
    for (int i = SIM_MAX_DBS - 1; i >= 0; i--) if (!in->db[i].used) slot = i;
    if (slot < 0) return JET_errTooManyAttachedDatabases;
    int fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? JET_errFileNotFound : JET_errFileAccessDenied;
    if (flock(fd, (ro ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) { close(fd); return JET_errFileAccessDenied; }
    JET_ERR err = db_read_header_fd(fd, g_hdr, &cb);
    if (err == JET_errFileInvalidType) err = JET_errDatabaseCorrupted;
    if (!err) err = attach_checks(in, g_hdr, cb, ro);
    if (!err && !ro) { mark_attached(in, g_hdr); err = db_write_header_fd(fd, g_hdr, cb); }
    if (err) { close(fd); return err; }
    sim_db *db = &in->db[slot];
    memset(db, 0, sizeof *db);
    db->used = true;
    db->fd = fd;
    db->read_only = ro;
    db->cb_page = cb;
    strcpy(db->path, path);
    return JET_errSuccess;
}

/* detach/term writes the header clean: dbstate 3, genMin/Max 0, consistent position */
JET_ERR db_detach(sim_inst *in, int idx, bool clean)
{
    sim_db *db = &in->db[idx];
    uint32_t cb;
    JET_ERR err = JET_errSuccess;
    if (clean && db->w && in->s.records) err = log_record(in, LR_DETACHDB, 0, db->path, strlen(db->path), NULL, 0);
    if (clean && db->w && !err) err = dbw_flush(in, idx);
    if (clean && !db->read_only && !err && (err = db_read_header_fd(db->fd, g_hdr, &cb)) == JET_errSuccess) {
        uint8_t now[8];
        logtime_now(now);
        wr32(g_hdr + HDR_DBSTATE, DBSTATE_CLEAN);
        wr32(g_hdr + HDR_GENMIN, 0);
        wr32(g_hdr + HDR_GENMAX, 0);
        lgpos_put(g_hdr + HDR_LGPOS_CONSISTENT, in->s.tip);
        lgpos_put(g_hdr + HDR_LGPOS_DETACH, in->s.tip);
        memcpy(g_hdr + HDR_LOGTIME_CONSISTENT, now, 8);
        memcpy(g_hdr + HDR_LOGTIME_DETACH, now, 8);
        err = db_write_header_fd(db->fd, g_hdr, cb);
    }
    dbw_free(db);
    close(db->fd);
    memset(db, 0, sizeof *db);
    db->fd = -1;
    return err;
}

static bool abs_path_w(const WCHAR *w, char *out)
{
    char tmp[SIM_PATH_MAX];
    return w && w[0] && wstr_to_utf8(w, tmp, sizeof tmp) && path_absolute(tmp, out, SIM_PATH_MAX, false);
}

EXPORT JET_ERR JetAttachDatabase2W(JET_SESID sesid, const WCHAR *szFilename, ULONG32 cpgDatabaseSizeMax,
                                   JET_GRBIT grbit)
{
    (void)cpgDatabaseSizeMax;
    JET_ERR err = fault_check("JetAttachDatabase2W");
    sim_inst *in = NULL;
    char path[SIM_PATH_MAX];
    if (err) return err;
    if ((err = sess_gate(sesid, &in)) != JET_errSuccess) return err;
    if (in->bk.status != BK_NONE || in->bk.surrogate) return JET_errBackupInProgress;
    if (!abs_path_w(szFilename, path)) return JET_errInvalidParameter;
    return db_attach(in, path, grbit);
}

EXPORT JET_ERR JetAttachDatabaseW(JET_SESID sesid, const WCHAR *szFilename, JET_GRBIT grbit)
{
    return JetAttachDatabase2W(sesid, szFilename, 0, grbit);
}

/* db.cxx ErrIsamDetachDatabase: -1108 in a transaction; -1202 while a session
 * holds the database open (JetCreateDatabaseW without JetCloseDatabase) */
EXPORT JET_ERR JetDetachDatabase2W(JET_SESID sesid, const WCHAR *szFilename, JET_GRBIT grbit)
{
    JET_ERR err = fault_check("JetDetachDatabase2W");
    sim_inst *in = NULL;
    sim_sess *s = NULL;
    char path[SIM_PATH_MAX];
    if (err) return err;
    if ((err = sess_lookup(sesid, &s, &in)) != JET_errSuccess) return err;
    if (s->level > 0) return JET_errInTransaction;
    if (grbit & DETACH_FORCE) return JET_errForceDetachNotAllowed;
    if (in->bk.status != BK_NONE || in->bk.surrogate) return JET_errBackupInProgress;
    if (!szFilename || !szFilename[0]) {
        for (int i = 0; i < SIM_MAX_DBS; i++)
            if (in->db[i].used && db_open_count(in, i) > 0) return JET_errDatabaseInUse;
        for (int i = 0; i < SIM_MAX_DBS; i++)
            if (in->db[i].used && (err = db_detach(in, i, true)) != JET_errSuccess) return err;
        return JET_errSuccess;
    }
    if (!abs_path_w(szFilename, path)) return JET_errInvalidParameter;
    int idx = db_find(in, path);
    if (idx >= 0 && db_open_count(in, idx) > 0) return JET_errDatabaseInUse;
    return idx < 0 ? JET_errDatabaseNotFound : db_detach(in, idx, true);
}

EXPORT JET_ERR JetDetachDatabaseW(JET_SESID sesid, const WCHAR *szFilename)
{
    return JetDetachDatabase2W(sesid, szFilename, 0);
}

/* ---------- JetGetDatabaseFileInfoW ---------- */

static JET_ERR check_level(ULONG32 level, ULONG32 cbMax)
{
    switch (level) {
    case 10: case 21: return cbMax == 8 ? JET_errSuccess : JET_errInvalidBufferSize;
    case 15: case 17: case 19: return cbMax == 4 ? JET_errSuccess : JET_errInvalidBufferSize;
    case 14:
        return (cbMax == 216 || cbMax == 296 || cbMax == 300 || cbMax == 348 || cbMax == 380 ||
                cbMax == 400 || cbMax == 416) ? JET_errSuccess : JET_errInvalidBufferSize;
    }
    return JET_errInvalidParameter;
}

/* JET_DBINFOMISC(2..7) from the header (jet-constants.md §5.2); fUpgradeDb is not written */
static void fill_misc(uint8_t *o, const uint8_t *h, ULONG32 cb)
{
    static const struct { uint16_t out, in, len; } map[] = {
        { 0, HDR_VERSION, 4 }, { 4, HDR_UPDATE_MAJOR, 4 }, { 8, HDR_SIGNDB, 28 }, { 36, HDR_DBSTATE, 4 },
        { 40, HDR_LGPOS_CONSISTENT, 8 }, { 48, HDR_LOGTIME_CONSISTENT, 8 }, { 56, HDR_LOGTIME_ATTACH, 8 },
        { 64, HDR_LGPOS_ATTACH, 8 }, { 72, HDR_LOGTIME_DETACH, 8 }, { 80, HDR_LGPOS_DETACH, 8 },
        { 88, HDR_SIGNLOG, 28 }, { 116, HDR_BK_FULLPREV, 24 }, { 140, HDR_BK_INCPREV, 24 },
        { 164, HDR_BK_FULLCUR, 24 }, { 196, HDR_OSVER, 16 },
        { 216, HDR_GENMIN, 4 }, { 220, HDR_GENMAX, 4 }, { 224, HDR_LOGTIME_GENMAXCREATE, 8 },
        { 232, HDR_REPAIRCOUNT, 4 }, { 236, HDR_LOGTIME_REPAIR, 8 }, { 244, HDR_REPAIRCOUNT_OLD, 52 },
        { 296, HDR_GENMAXCOMMITTED, 4 }, { 300, HDR_BK_COPYPREV, 24 }, { 324, HDR_BK_DIFFPREV, 24 },
        { 348, HDR_RESEED, 32 }, { 380, HDR_DBSCAN, 20 }, { 400, HDR_LOGTIME_REATTACH, 8 },
        { 408, HDR_LGPOS_REATTACH, 8 },
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (map[i].out + map[i].len <= cb) memcpy(o + map[i].out, h + map[i].in, map[i].len);
    wr32(o + 188, h[HDR_DBFLAGS] & 1u);
    uint32_t ps = rd32(h + HDR_PAGESIZE);
    wr32(o + 212, ps ? ps : 4096);
}

static JET_ERR file_type_of(const uint8_t *hdr, JET_ERR hdr_err, uint32_t *type)
{
    if (hdr_err == JET_errSuccess) {
        *type = rd32(hdr + HDR_FILETYPE);
        if (*type >= 12) *type = 0;
    } else {
        *type = loghdr_valid(hdr) || (rd32(hdr) == xor_old(hdr, 4096) && !page_is_zero(hdr, 4096))
                    ? rd32(hdr + HDR_FILETYPE) : 0;
        if (*type >= 12) *type = 0;
    }
    return JET_errSuccess;
}

/* another process holds the file (the attach flock): -1032 */
static JET_ERR open_for_info(const char *path, int *pfd)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? JET_errFileNotFound : JET_errFileAccessDenied;
    if (!db_attached_in_process(path)) {
        if (flock(fd, LOCK_SH | LOCK_NB) != 0) { close(fd); return JET_errFileAccessDenied; }
        flock(fd, LOCK_UN);
    }
    *pfd = fd;
    return JET_errSuccess;
}

EXPORT JET_ERR JetGetDatabaseFileInfoW(const WCHAR *szDatabaseName, void *pvResult, ULONG32 cbMax,
                                       ULONG32 InfoLevel)
{
    JET_ERR err = fault_check("JetGetDatabaseFileInfoW");
    char path[SIM_PATH_MAX];
    struct stat st;
    uint32_t cb = 0, type;
    int fd;
    if (err) return err;
    if (!abs_path_w(szDatabaseName, path) || !pvResult) return JET_errInvalidParameter;
    if ((err = check_level(InfoLevel, cbMax)) != JET_errSuccess) return err;
    if ((err = open_for_info(path, &fd)) != JET_errSuccess) return err;
    JET_ERR herr = db_read_header_fd(fd, g_hdr, &cb);
    fstat(fd, &st);
    close(fd);
    uint8_t *out = pvResult;
    switch (InfoLevel) {
    case 10: wr64(out, (uint64_t)st.st_size); return JET_errSuccess;
    case 21: wr64(out, (uint64_t)st.st_blocks * 512u); return JET_errSuccess;
    case 15: wr32(out, db_attached_in_process(path)); return JET_errSuccess;
    case 19: file_type_of(g_hdr, herr, &type); wr32(out, type); return JET_errSuccess;
    }
    if (herr) return herr;
    type = rd32(g_hdr + HDR_FILETYPE);
    if (type != 0 && type != FILETYPE_DB) return JET_errFileInvalidType;
    if (InfoLevel == 17) { wr32(out, cb); return JET_errSuccess; }
    fill_misc(out, g_hdr, cbMax);
    return JET_errSuccess;
}
