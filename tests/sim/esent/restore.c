// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* restore.c: JetExternalRestore2W at header level (ese-backup-semantics.md §7).
 * Checks the log set and the streamed databases, makes the databases consistent
 * (replay is modelled, not performed), and leaves a new log stream and checkpoint
 * so that JetInit and JetAttachDatabase accept the restored set. */
#include "esesim.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define JET_errBadRestoreTargetInstance (-577)
#define SNP_RESTORE 8u
#define SNT_BEGIN 5u
#define SNT_PROGRESS 0u
#define SNT_COMPLETE 6u

typedef struct { ULONG32 cbSize, ulGenLow, ulGenHigh; WCHAR szBaseName[4]; } JET_LOGINFO_W;
typedef struct { WCHAR *szDatabaseName; WCHAR *szNewDatabaseName; } JET_RSTMAP_W;
typedef struct { ULONG32 cbStruct, cunitDone, cunitTotal; } JET_SNPROG;
typedef JET_ERR (*JET_PFNSTATUS)(JET_SESID, ULONG32, ULONG32, void *);

static void status(JET_PFNSTATUS pfn, ULONG32 snt, ULONG32 done)
{
    JET_SNPROG prog = { sizeof prog, done, 100 };
    if (pfn) pfn(0, SNP_RESTORE, snt, snt == SNT_PROGRESS ? &prog : NULL);
}

static bool folder_w(const WCHAR *w, char *out)
{
    char tmp[SIM_PATH_MAX];
    if (!w || !w[0]) return path_absolute(".", out, SIM_PATH_MAX, true);
    return wstr_to_utf8(w, tmp, sizeof tmp) && path_absolute(tmp, out, SIM_PATH_MAX, true);
}

/* a throw-away instance description used only for names (restore instance, §7.2 step 1-2) */
static void restore_names(sim_inst *ri, const char *dir, const JET_LOGINFO_W *li)
{
    memset(ri, 0, sizeof *ri);
    for (int i = 0; i < 3; i++) ri->p.base_name[i] = (char)li->szBaseName[i];
    ri->p.legacy_names = sim_default_legacy_names();
    strcpy(ri->p.log_path, dir);
    strcpy(ri->p.system_path, dir);
}

/* §7.2 step 3: -1811 missing, -501/-513/-1213 header, -555 signature, -556 chain */
static JET_ERR check_log_set(sim_inst *ri, int32_t lo, int32_t hi, uint8_t last_hdr[LOG_HDR_BYTES])
{
    uint8_t prev[LOG_HDR_BYTES], hdr[LOG_HDR_BYTES];
    for (int32_t g = lo; g <= hi; g++) {
        char path[SIM_PATH_MAX], real[SIM_PATH_MAX];
        log_name(ri, g, path, sizeof path);
        if (!resolve_ci(path, real, sizeof real)) return JET_errFileNotFound;
        JET_ERR err = loghdr_read(real, hdr, NULL);
        if (err) return err;
        if ((int32_t)rd32(hdr + LGH_GEN) != g) return JET_errLogGenerationMismatch;
        uint32_t cb = rd16(hdr + LGH_PAGESIZE) ? rd16(hdr + LGH_PAGESIZE) : 4096;
        if (cb != g_cb_page) return JET_errPageSizeMismatch;
        if (g > lo && memcmp(hdr + LGH_SIGNLOG, prev + LGH_SIGNLOG, 28) != 0)
            return JET_errGivenLogFileHasBadSignature;
        if (g > lo && memcmp(hdr + LGH_TMPREV, prev + LGH_TMCREATE, 8) != 0)
            return JET_errGivenLogFileIsNotContiguous;
        memcpy(prev, hdr, sizeof hdr);
    }
    memcpy(last_hdr, prev, LOG_HDR_BYTES);
    return JET_errSuccess;
}

/* restore path != log path: logs outside [lo, hi] and the current log are deleted */
static void prune_restore_path(sim_inst *ri, int32_t lo, int32_t hi)
{
    char cur[SIM_PATH_MAX], real[SIM_PATH_MAX];
    DIR *d = opendir(ri->p.log_path);
    for (struct dirent *e; d && (e = readdir(d));) {
        char path[SIM_PATH_MAX];
        int32_t g = log_parse_gen(ri, e->d_name);
        if (g > 0 && (g < lo || g > hi) && path_join(path, sizeof path, ri->p.log_path, e->d_name))
            unlink(path);
    }
    if (d) closedir(d);
    log_current_name(ri, cur, sizeof cur);
    if (resolve_ci(cur, real, sizeof real)) unlink(real);
}

/* §7.2 step 4 on one streamed database */
static JET_ERR check_database(int fd, uint8_t *hdr, uint32_t *cb, const uint8_t *sign_log)
{
    static uint8_t trailer[32768];
    struct stat st;
    size_t got;
    bkinfo_t cur, mark;
    JET_ERR err = db_read_header_fd(fd, hdr, cb);
    if (err) return JET_errDatabaseCorrupted;
    bkinfo_get(hdr + HDR_BK_FULLCUR, &cur);
    if (cur.genLow == 0) return JET_errRestoreOfNonBackupDatabase;
    if (cur.genHigh != 0) return JET_errSuccess;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size < 3ull * *cb) return JET_errBadPatchPage;
    if (!io_pread_full(fd, trailer, *cb, (uint64_t)st.st_size - *cb, &got) || got != *cb ||
        rd32(trailer) != xor_old(trailer, *cb))
        return JET_errBadPatchPage;
    bkinfo_get(trailer + TRL_BKINFO, &mark);
    if (memcmp(trailer + TRL_SIGNDB, hdr + HDR_SIGNDB, 28) != 0 ||
        memcmp(trailer + TRL_SIGNLOG, hdr + HDR_SIGNLOG, 28) != 0 ||
        memcmp(trailer + TRL_SIGNLOG, sign_log, 28) != 0 ||
        lgpos_key(mark.mark) != lgpos_key(cur.mark))
        return JET_errDatabasePatchFileMismatch;
    return JET_errSuccess;
}

/* header effect of replay: consistent, bkinfoFullCur cleared, genMax raised; trailer zeroed */
static JET_ERR make_consistent(int fd, uint8_t *hdr, uint32_t cb, int32_t gen_high)
{
    struct stat st;
    uint8_t now[8];
    lgpos_t end = { 0, 1, gen_high + 1 };
    logtime_now(now);
    if (rd32(hdr + HDR_GENMAXCOMMITTED) < (uint32_t)gen_high) wr32(hdr + HDR_GENMAXCOMMITTED, (uint32_t)gen_high);
    wr32(hdr + HDR_DBSTATE, DBSTATE_CLEAN);
    wr32(hdr + HDR_GENMIN, 0);
    wr32(hdr + HDR_GENMAX, 0);
    memset(hdr + HDR_BK_FULLCUR, 0, 24);
    lgpos_put(hdr + HDR_LGPOS_CONSISTENT, end);
    memcpy(hdr + HDR_LOGTIME_CONSISTENT, now, 8);
    JET_ERR err = db_write_header_fd(fd, hdr, cb);
    if (err) return err;
    uint8_t *zero = calloc(1, cb);
    bool ok = zero && fstat(fd, &st) == 0 && io_pwrite_full(fd, zero, cb, (uint64_t)st.st_size - cb);
    free(zero);
    return ok ? JET_errSuccess : JET_errDiskIO;
}

static JET_ERR restore_databases(const JET_RSTMAP_W *map, long n, const uint8_t *sign_log, int32_t hi)
{
    static uint8_t hdr[32768];
    for (int pass = 0; pass < 2; pass++) {          /* check every database before changing any */
        for (long i = 0; i < n; i++) {
            char path[SIM_PATH_MAX], tmp[SIM_PATH_MAX];
            uint32_t cb;
            const WCHAR *w = map[i].szNewDatabaseName ? map[i].szNewDatabaseName : map[i].szDatabaseName;
            if (!w || !wstr_to_utf8(w, tmp, sizeof tmp) || !path_absolute(tmp, path, sizeof path, false))
                return JET_errInvalidParameter;
            int fd = open(path, pass ? O_RDWR | O_CLOEXEC : O_RDONLY | O_CLOEXEC);
            if (fd < 0) return JET_errDatabaseCorrupted;
            JET_ERR err = check_database(fd, hdr, &cb, sign_log);
            if (!err && pass) {
                bkinfo_t cur;
                bkinfo_get(hdr + HDR_BK_FULLCUR, &cur);
                cur.genHigh = (uint32_t)hi;                           /* recorded, then cleared by replay */
                bkinfo_put(hdr + HDR_BK_FULLCUR, &cur);
                err = make_consistent(fd, hdr, cb, hi);
            }
            close(fd);
            if (err) return err;
        }
    }
    return JET_errSuccess;
}

/* undo phase: a new current log gen hi+1 in the log path and a new checkpoint */
static JET_ERR new_stream_after(sim_inst *ri, const char *log_path, const char *chk_path, uint8_t *hdr,
                                uint64_t size, int32_t hi)
{
    char cur[SIM_PATH_MAX], real[SIM_PATH_MAX], chk[SIM_PATH_MAX];
    strcpy(ri->p.log_path, log_path);
    strcpy(ri->p.system_path, chk_path);
    chk_name(ri, chk, sizeof chk);
    if (resolve_ci(chk, real, sizeof real)) unlink(real);           /* the old checkpoint is deleted */
    log_current_name(ri, cur, sizeof cur);
    if (resolve_ci(cur, real, sizeof real)) unlink(real);
    JET_ERR err = disk_reserve(size + 2 * CHK_COPY_BYTES);
    if (err) return err;
    wr32(hdr + LGH_GEN, (uint32_t)(hi + 1));
    memcpy(hdr + LGH_TMPREV, hdr + LGH_TMCREATE, 8);
    logtime_now(hdr + LGH_TMCREATE);
    wr32(hdr, xor_old(hdr, LOG_HDR_BYTES));
    int fd = open(cur, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return JET_errFileAccessDenied;
    bool ok = io_pwrite_full(fd, hdr, LOG_HDR_BYTES, 0) && ftruncate(fd, (off_t)size) == 0;
    close(fd);
    if (!ok) return JET_errDiskIO;
    lgpos_t pos = { 0, 1, hi + 1 };
    return chk_write_gen(chk, hdr + LGH_SIGNLOG, pos, true);
}

static JET_ERR restore_args(const JET_RSTMAP_W *map, long n, const JET_LOGINFO_W *li, const WCHAR *tname,
                            const WCHAR *tlog, const WCHAR *tchk)
{
    if (n < 0 || n > 14 || (n > 0 && !map) || !li || li->cbSize != sizeof *li) return JET_errInvalidParameter;
    if ((tlog == NULL) != (tchk == NULL) || (tname && tlog)) return JET_errInvalidParameter;
    if (tname && tname[0]) return JET_errBadRestoreTargetInstance;   /* running targets: not modelled */
    if (li->ulGenLow == 0 || li->ulGenHigh < li->ulGenLow) return JET_errFileNotFound;
    return inst_one_instance_mode() ? JET_errRunningInOneInstanceMode : JET_errSuccess;
}

EXPORT JET_ERR JetExternalRestore2W(WCHAR *szCheckpointFilePath, WCHAR *szLogPath, JET_RSTMAP_W *rgrstmap,
                                    int32_t crstfilemap, WCHAR *szBackupLogPath, JET_LOGINFO_W *pLogInfo,
                                    WCHAR *szTargetInstanceName, WCHAR *szTargetInstanceLogPath,
                                    WCHAR *szTargetInstanceCheckpointPath, void *pfn)
{
    static sim_inst ri;
    char backup_dir[SIM_PATH_MAX], log_dir[SIM_PATH_MAX], chk_dir[SIM_PATH_MAX];
    uint8_t last[LOG_HDR_BYTES];
    JET_PFNSTATUS cb = (JET_PFNSTATUS)pfn;
    JET_ERR err = fault_check("JetExternalRestore2W");
    if (err) return err;
    err = restore_args(rgrstmap, crstfilemap, pLogInfo, szTargetInstanceName, szTargetInstanceLogPath,
                       szTargetInstanceCheckpointPath);
    if (err) return err;
    /* the public wrappers swap the last two target arguments (§7.1 quirk) */
    const WCHAR *log_w = szTargetInstanceCheckpointPath ? szTargetInstanceCheckpointPath : szLogPath;
    const WCHAR *chk_w = szTargetInstanceLogPath ? szTargetInstanceLogPath : szCheckpointFilePath;
    if (!folder_w(szBackupLogPath, backup_dir) || !folder_w(log_w, log_dir) || !folder_w(chk_w, chk_dir))
        return JET_errInvalidPath;
    int32_t lo = (int32_t)pLogInfo->ulGenLow, hi = (int32_t)pLogInfo->ulGenHigh;
    status(cb, SNT_BEGIN, 0);
    restore_names(&ri, backup_dir, pLogInfo);
    if ((err = check_log_set(&ri, lo, hi, last)) != JET_errSuccess) return err;
    if (strcmp(backup_dir, log_dir) != 0) prune_restore_path(&ri, lo, hi);
    if ((err = restore_databases(rgrstmap, crstfilemap, last + LGH_SIGNLOG, hi)) != JET_errSuccess) return err;
    status(cb, SNT_PROGRESS, 50);
    uint64_t size = (uint64_t)rd16(last + LGH_CSECFILE) * rd16(last + LGH_CBSEC);
    if ((err = new_stream_after(&ri, log_dir, chk_dir, last, size, hi)) != JET_errSuccess) return err;
    status(cb, SNT_PROGRESS, 100);
    status(cb, SNT_COMPLETE, 100);
    return JET_errSuccess;
}
