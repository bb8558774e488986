// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* backup_logs.c: the log phase (ese-backup-semantics.md §5): range computation
 * with the log roll, the W log lists, JET_LOGINFO_W and JetTruncateLogInstance. */
#include "esesim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct { ULONG32 cbSize, ulGenLow, ulGenHigh; WCHAR szBaseName[4]; } JET_LOGINFO_W;

static JET_ERR db_backup_fields(sim_db *db, bkinfo_t *full, bkinfo_t *inc)
{
    static uint8_t hdr[32768];
    uint32_t cb;
    JET_ERR err = db_read_header_fd(db->fd, hdr, &cb);
    if (err) return err;
    bkinfo_get(hdr + HDR_BK_FULLPREV, full);
    bkinfo_get(hdr + HDR_BK_INCPREV, inc);
    return JET_errSuccess;
}

/* full: deleteMac lowered to FullPrev.genHigh of databases not read completely */
static JET_ERR limit_full_range(sim_inst *in)
{
    sim_backup *bk = &in->bk;
    for (int i = 0; i < SIM_MAX_DBS; i++) {
        bkinfo_t full, inc;
        if (!in->db[i].used || in->db[i].copy_done) continue;
        JET_ERR err = db_backup_fields(&in->db[i], &full, &inc);
        if (err) return err;
        if ((int32_t)full.genHigh < bk->delete_mac) bk->delete_mac = (int32_t)full.genHigh;
    }
    if (bk->delete_mac < bk->delete_mic) bk->delete_mic = bk->delete_mac;
    return JET_errSuccess;
}

/* incremental: copyMic = oldest on disk; -569 if a log after the last backup is gone */
static JET_ERR check_incremental_range(sim_inst *in)
{
    sim_backup *bk = &in->bk;
    bk->copy_mic = bk->delete_mic;
    for (int i = 0; i < SIM_MAX_DBS; i++) {
        bkinfo_t full, inc;
        if (!in->db[i].used) continue;
        JET_ERR err = db_backup_fields(&in->db[i], &full, &inc);
        if (err) return err;
        uint32_t last = full.genHigh > inc.genHigh ? full.genHigh : inc.genHigh;
        if ((uint32_t)bk->delete_mic > last + 1) return JET_errMissingFileToBackup;
    }
    return JET_errSuccess;
}

/* §5.1: first GetLogInfo/GetTruncateLogInfo; errors do not cancel the backup */
JET_ERR bk_prepare_logs(sim_inst *in)
{
    sim_backup *bk = &in->bk;
    JET_ERR err;
    int32_t chk_gen;
    if (!bk->rolled) {
        if ((err = log_roll(in)) != JET_errSuccess) return err;
        bk->rolled = true;
    }
    bk->copy_mac = in->s.gen;
    if ((err = bk_checkpoint_gen(in, &chk_gen)) != JET_errSuccess) return err;
    bk->delete_mic = log_oldest_on_disk(in);
    if (bk->delete_mic == 0) return JET_errFileNotFound;
    bk->delete_mac = chk_gen < bk->copy_mac ? chk_gen : bk->copy_mac;
    err = bk->full ? limit_full_range(in) : check_incremental_range(in);
    if (err) return err;
    bk->range_computed = true;
    bk->status = BK_LOGS;
    return JET_errSuccess;
}

static JET_ERR build_log_list(sim_inst *in, int32_t lo, int32_t hi, WCHAR **list, size_t *size)
{
    int n = hi > lo ? hi - lo : 0;
    char (*paths)[SIM_PATH_MAX] = calloc(n ? (size_t)n : 1, SIM_PATH_MAX);
    if (!paths) return JET_errOutOfMemory;
    for (int i = 0; i < n; i++) log_name(in, lo + i, paths[i], SIM_PATH_MAX);
    *size = wlist_build(paths, n, list);
    free(paths);
    return *list ? JET_errSuccess : JET_errOutOfMemory;
}

static void fill_loginfo(const sim_inst *in, JET_LOGINFO_W *info)
{
    info->ulGenLow = (ULONG32)in->bk.copy_mic;
    info->ulGenHigh = (ULONG32)(in->bk.copy_mac - 1);               /* inclusive (§5.4) */
    for (int i = 0; i < 4; i++) info->szBaseName[i] = (WCHAR)(unsigned char)in->p.base_name[i];
}

static JET_ERR log_list_call(const char *api, JET_INSTANCE instance, WCHAR *szz, ULONG32 cbMax,
                             ULONG32 *pcbActual, JET_LOGINFO_W *info, bool truncate_list)
{
    sim_inst *in = NULL;
    JET_ERR ferr = fault_check(api);
    JET_ERR err = inst_gate(instance, &in);
    if (err) return err;
    sim_backup *bk = &in->bk;
    if (bk->status == BK_NONE) return JET_errNoBackup;
    if (bk->stopped) return JET_errBackupAbortByServer;
    if (bk->kind != FILE_NONE) return JET_errInvalidBackupSequence;
    if (ferr) {                 /* injected: a prepare failure keeps the state, a list failure cancels */
        if (bk->range_computed) bk_abort(in);
        return ferr;
    }
    if (!bk->range_computed && (err = bk_prepare_logs(in)) != JET_errSuccess) return err;
    WCHAR *list;
    size_t size;
    err = truncate_list ? build_log_list(in, bk->delete_mic, bk->delete_mac, &list, &size)
                        : build_log_list(in, bk->copy_mic, bk->copy_mac, &list, &size);
    if (err) { bk_abort(in); return err; }
    wlist_copy(list, size, szz, cbMax, pcbActual, false);
    free(list);
    if (info) fill_loginfo(in, info);
    return JET_errSuccess;
}

EXPORT JET_ERR JetGetLogInfoInstanceW(JET_INSTANCE instance, WCHAR *wszzLogs, ULONG32 cbMax,
                                      ULONG32 *pcbActual)
{
    return log_list_call("JetGetLogInfoInstanceW", instance, wszzLogs, cbMax, pcbActual, NULL, false);
}

EXPORT JET_ERR JetGetLogInfoInstance2W(JET_INSTANCE instance, WCHAR *wszzLogs, ULONG32 cbMax,
                                       ULONG32 *pcbActual, JET_LOGINFO_W *pLogInfo)
{
    return log_list_call("JetGetLogInfoInstance2W", instance, wszzLogs, cbMax, pcbActual, pLogInfo, false);
}

EXPORT JET_ERR JetGetTruncateLogInfoInstanceW(JET_INSTANCE instance, WCHAR *wszzLogs, ULONG32 cbMax,
                                              ULONG32 *pcbActual)
{
    return log_list_call("JetGetTruncateLogInfoInstanceW", instance, wszzLogs, cbMax, pcbActual, NULL, true);
}

/* §5.5: generation-sum rule, then deletion of [deleteMic, deleteMac) ascending */
static bool all_logs_copied(const sim_backup *bk)
{
    uint64_t need = 0;
    for (int64_t g = bk->copy_mic; g < bk->copy_mac; g++) need += (uint64_t)g;
    return bk->gen_copy_done >= need;
}

static JET_ERR delete_range(sim_inst *in)
{
    for (int32_t g = in->bk.delete_mic; g < in->bk.delete_mac; g++) {
        char name[SIM_PATH_MAX], real[SIM_PATH_MAX];
        log_name(in, g, name, sizeof name);
        if (!resolve_ci(name, real, sizeof real)) continue;       /* already missing: skipped */
        if (unlink(real) != 0 && errno != ENOENT) return JET_errFileAccessDenied;
    }
    return JET_errSuccess;
}

EXPORT JET_ERR JetTruncateLogInstance(JET_INSTANCE instance)
{
    sim_inst *in = NULL;
    JET_ERR ferr = fault_check("JetTruncateLogInstance");
    JET_ERR err = inst_gate(instance, &in);
    if (err) return err;
    sim_backup *bk = &in->bk;
    if (bk->status == BK_NONE) return JET_errNoBackup;
    if (bk->stopped) return JET_errBackupAbortByServer;
    if (bk->kind != FILE_NONE || !bk->range_computed) return JET_errInvalidBackupSequence;
    if (ferr) return ferr;
    if (!all_logs_copied(bk)) return JET_errLogFileNotCopied;
    bk->truncated = true;                                          /* set before deleting */
    return delete_range(in);
}
