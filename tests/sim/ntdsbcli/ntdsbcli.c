// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* ntdsbcli.c: the simulated ntdsbcli.dll (build/sim/libntdsbcli.so, linked as build/sim/ntdsbcli.dll).
 * The backup calls go to the simulated DC's backup server (ntdssvc.c) over its local socket, as the
 * real DLL goes to lsass.exe over RPC; the restore calls are local and write the record a DC reads at
 * its next start. W exports only (the A forms are not simulated). Exports, widths and HRESULTs:
 * windows-backup-apis.md §2; the contract and its limits: tests/sim/README.md "ntdsbcli.dll". */
#include "ntdssim.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

typedef int32_t BOOL32;
typedef uint32_t DWORD32;

typedef struct { CS_WCHAR *pwszDatabaseName; CS_WCHAR *pwszNewDatabaseName; } EDB_RSTMAPW;  /* 16 bytes */

typedef struct ds_ctx {
    struct ds_ctx *next;
    int fd;                  /* backup context: its connection to the DC */
    bool restore;
    bool restricted;         /* restore context without an expiry token: GetDatabaseLocations only */
    uint32_t rtflag;
    uint32_t tombstone_days;
    int64_t backup_time;     /* FILETIME from the token */
    char label[256];
    char *record;            /* restore context: the registered record, up to its status */
} ds_ctx;

static ds_ctx *g_ctx;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static ds_ctx *ctx_new(bool restore, const char *label, int fd)
{
    ds_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->fd = fd;
    c->restore = restore;
    snprintf(c->label, sizeof c->label, "%s", label);
    pthread_mutex_lock(&g_lock);
    c->next = g_ctx;
    g_ctx = c;
    pthread_mutex_unlock(&g_lock);
    return c;
}

/* a live context of the given kind (restore: 1, backup: 0, either: -1) */
static ds_ctx *ctx_get(void *h, int restore)
{
    ds_ctx *found = NULL;
    pthread_mutex_lock(&g_lock);
    for (ds_ctx *c = g_ctx; c && !found; c = c->next)
        if (c == h && (restore < 0 || c->restore == (restore == 1))) found = c;
    pthread_mutex_unlock(&g_lock);
    return found;
}

static void ctx_free(ds_ctx *c)
{
    pthread_mutex_lock(&g_lock);
    for (ds_ctx **p = &g_ctx; *p; p = &(*p)->next)
        if (*p == c) { *p = c->next; break; }
    pthread_mutex_unlock(&g_lock);
    if (c->fd >= 0) close(c->fd);
    free(c->record);
    free(c);
}

/* ---------------------------------------------------------------- the DC */

static void local_label(char *out, size_t cap)
{
    const char *host = getenv("COMPUTERNAME");
    char buf[256] = "";
    if (!host || !*host) { gethostname(buf, sizeof buf - 1); host = buf; }
    cs_socket_name(host, out, cap);
}

/* server name -> socket label ("localhost" is this host); another host is refused as the real DLL does
 * (local DC only) */
static HRESULT server_label(const CS_WCHAR *server, char *label, size_t cap)
{
    char name[CS_PATH], self[256];
    if (!server || !cs_w16_to_utf8(server, name, sizeof name)) return DS_hrInvalidParam;
    cs_socket_name(name, label, cap);
    if (!label[0]) return DS_hrInvalidParam;
    local_label(self, sizeof self);
    if (strcmp(label, "localhost") == 0) snprintf(label, cap, "%s", self);
    if (strcmp(label, self) != 0) return DS_E_RPC_INVALID_BINDING;
    return CS_S_OK;
}

/* ESESIM_NTDS_NO_ENDPOINT set (not "0"): the DC registers no backup endpoint, as a Windows release
 * that dropped the interface might: every call that needs the DC gets EPT_S_NOT_REGISTERED */
static bool no_endpoint(void)
{
    const char *v = getenv("ESESIM_NTDS_NO_ENDPOINT");
    return v && *v && strcmp(v, "0") != 0;
}

/* no directory, no socket or nobody listening: hrCouldNotConnect */
static HRESULT connect_to(const char *label, int *pfd)
{
    const char *dir = getenv("ESESIM_NTDS_DIR");
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    *pfd = -1;
    if (no_endpoint()) return DS_E_EPT_NOT_REGISTERED;
    if (!dir || !*dir || !cs_socket_path(dir, label, sa.sun_path, sizeof sa.sun_path)) return DS_hrCouldNotConnect;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return DS_hrCouldNotConnect;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) { close(fd); return DS_hrCouldNotConnect; }
    *pfd = fd;
    return CS_S_OK;
}

/* one call; *reply (malloc'd, may be NULL) holds the answer's body; a broken connection is
 * RPC_S_SERVER_UNAVAILABLE */
static HRESULT call(int fd, uint32_t op, const cs_msg *body, uint8_t **reply, size_t *n)
{
    uint32_t head;
    uint8_t *b = NULL;
    size_t k = 0;
    if (reply) *reply = NULL;
    if (n) *n = 0;
    if (fd < 0 || !cs_send_frame(fd, op, body) || !cs_recv_frame(fd, &head, &b, &k)) return DS_E_RPC_UNAVAILABLE;
    if (reply) { *reply = b; *n = k; } else free(b);
    return (HRESULT)head;
}

static HRESULT simple_call(void *hbc, uint32_t op)
{
    ds_ctx *c = ctx_get(hbc, 0);
    if (!c) return DS_hrInvalidHandle;
    return call(c->fd, op, NULL, NULL, NULL);
}

/* TRUE online, FALSE in DSRM; the DC not running: hrCouldNotConnect */
static HRESULT ping(const char *label, BOOL32 *online)
{
    int fd;
    HRESULT hr = connect_to(label, &fd);
    if (hr != CS_S_OK) return hr;
    uint8_t *r;
    size_t n;
    hr = call(fd, OP_PING, NULL, &r, &n);
    close(fd);
    if (hr == CS_S_OK && n >= 4) memcpy(online, r, 4);
    free(r);
    return hr;
}

/* ---------------------------------------------------------------- exports: backup */

CS_EXPORT HRESULT DsIsNTDSOnlineW(const CS_WCHAR *szServerName, BOOL32 *pfNTDSOnline)
{
    char label[256];
    BOOL32 online = 0;
    if (pfNTDSOnline) *pfNTDSOnline = 0;
    if (!pfNTDSOnline) return DS_hrInvalidParam;
    HRESULT hr = server_label(szServerName, label, sizeof label);
    if (hr) return hr;
    if ((hr = ping(label, &online)) == CS_S_OK) *pfNTDSOnline = online;
    return hr;
}

CS_EXPORT HRESULT DsBackupPrepareW(const CS_WCHAR *szBackupServer, uint32_t grbit, uint32_t btBackupType,
                                   void **ppvExpiryToken, DWORD32 *pcbExpiryTokenSize, void **phbc)
{
    char label[256];
    int fd;
    if (phbc) *phbc = NULL;
    if (ppvExpiryToken) *ppvExpiryToken = NULL;
    if (pcbExpiryTokenSize) *pcbExpiryTokenSize = 0;
    if (!phbc || !ppvExpiryToken || !pcbExpiryTokenSize) return DS_hrInvalidParam;
    if (grbit != 0) return DS_E_INVALID_PARAMETER;                       /* "must be 0" */
    if (btBackupType != BACKUP_TYPE_FULL) return DS_E_INVALID_PARAMETER; /* only full backups */
    HRESULT hr = server_label(szBackupServer, label, sizeof label);
    if (hr) return hr;
    if ((hr = connect_to(label, &fd)) != CS_S_OK) return hr;
    uint8_t *r;
    size_t n;
    hr = call(fd, OP_PREPARE, NULL, &r, &n);
    uint32_t len = 0;
    cs_rd rd = { r, n, 0, false };
    const uint8_t *tok = hr == CS_S_OK ? cs_rd_blob(&rd, &len) : NULL;
    if (hr == CS_S_OK && (rd.bad || len == 0)) hr = CS_E_UNEXPECTED;
    void *copy = hr == CS_S_OK ? malloc(len) : NULL;
    if (hr == CS_S_OK && !copy) hr = CS_E_OUTOFMEMORY;
    ds_ctx *c = hr == CS_S_OK ? ctx_new(false, label, fd) : NULL;
    if (hr == CS_S_OK && !c) hr = CS_E_OUTOFMEMORY;
    if (hr != CS_S_OK) {
        free(copy);
        free(r);
        close(fd);                 /* a prepared ESE backup is aborted by the DC's context rundown */
        return hr;
    }
    memcpy(copy, tok, len);
    free(r);
    *ppvExpiryToken = copy;
    *pcbExpiryTokenSize = len;
    *phbc = c;
    return CS_S_OK;
}

/* a list answer -> a DsBackupFree-able copy; an empty list is NULL and 0 bytes */
static HRESULT list_result(uint8_t *r, size_t n, CS_WCHAR **pp, DWORD32 *pcb)
{
    uint32_t len = 0;
    cs_rd rd = { r, n, 0, false };
    const uint8_t *p = cs_rd_blob(&rd, &len);
    if (rd.bad) return CS_E_UNEXPECTED;
    if (len) {
        *pp = malloc(len);
        if (!*pp) return CS_E_OUTOFMEMORY;
        memcpy(*pp, p, len);
    }
    *pcb = len;
    return CS_S_OK;
}

static HRESULT list_call(void *hbc, uint32_t op, CS_WCHAR **pp, DWORD32 *pcb)
{
    if (pp) *pp = NULL;
    if (pcb) *pcb = 0;
    ds_ctx *c = ctx_get(hbc, 0);
    if (!c) return DS_hrInvalidHandle;
    if (!pp || !pcb) return DS_hrInvalidParam;
    uint8_t *r;
    size_t n;
    HRESULT hr = call(c->fd, op, NULL, &r, &n);
    if (hr == CS_S_OK) hr = list_result(r, n, pp, pcb);
    free(r);
    return hr;
}

CS_EXPORT HRESULT DsBackupGetDatabaseNamesW(void *hbc, CS_WCHAR **pszAttachmentInfo, DWORD32 *pcbSize)
{
    return list_call(hbc, OP_DBNAMES, pszAttachmentInfo, pcbSize);
}

CS_EXPORT HRESULT DsBackupGetBackupLogsW(void *hbc, CS_WCHAR **pszBackupLogFiles, DWORD32 *pcbSize)
{
    return list_call(hbc, OP_LOGS, pszBackupLogFiles, pcbSize);
}

static bool read_size_ok(uint32_t cb) { return cb >= DS_READ_MIN && cb % DS_READ_UNIT == 0; }

CS_EXPORT HRESULT DsBackupOpenFileW(void *hbc, const CS_WCHAR *szAttachmentName, DWORD32 cbReadHintSize,
                                    int64_t *pliFileSize)
{
    char name[CS_PATH * 4];
    ds_ctx *c = ctx_get(hbc, 0);
    if (!c) return DS_hrInvalidHandle;
    if (!szAttachmentName || !pliFileSize || !cs_w16_to_utf8(szAttachmentName, name, sizeof name))
        return DS_hrInvalidParam;
    *pliFileSize = 0;
    if (!read_size_ok(cbReadHintSize)) return DS_E_INVALID_PARAMETER;
    cs_msg m = { 0 };
    cs_msg_str(&m, name);
    uint8_t *r;
    size_t n;
    HRESULT hr = call(c->fd, OP_OPEN, &m, &r, &n);
    cs_msg_free(&m);
    if (hr == CS_S_OK) {
        cs_rd rd = { r, n, 0, false };
        *pliFileSize = (int64_t)cs_rd_u64(&rd);
    }
    free(r);
    return hr;
}

/* up to cb bytes (at most 4 MB a call); fewer only at the end; ERROR_HANDLE_EOF once nothing is left */
CS_EXPORT HRESULT DsBackupRead(void *hbc, void *pvBuffer, DWORD32 cbBuffer, DWORD32 *pcbRead)
{
    ds_ctx *c = ctx_get(hbc, 0);
    if (!c) return DS_hrInvalidHandle;
    if (!pvBuffer || !pcbRead) return DS_hrInvalidParam;
    *pcbRead = 0;
    if (!read_size_ok(cbBuffer)) return DS_E_INVALID_PARAMETER;
    cs_msg m = { 0 };
    cs_msg_u32(&m, cbBuffer < CS_MAX_READ ? cbBuffer : CS_MAX_READ);
    uint8_t *r;
    size_t n;
    HRESULT hr = call(c->fd, OP_READ, &m, &r, &n);
    cs_msg_free(&m);
    if (hr == CS_S_OK) {
        uint32_t len = 0;
        cs_rd rd = { r, n, 0, false };
        const uint8_t *p = cs_rd_blob(&rd, &len);
        if (rd.bad || len > cbBuffer) hr = CS_E_UNEXPECTED;
        else { memcpy(pvBuffer, p, len); *pcbRead = len; }
    }
    free(r);
    return hr;
}

CS_EXPORT HRESULT DsBackupClose(void *hbc) { return simple_call(hbc, OP_CLOSE); }
CS_EXPORT HRESULT DsBackupTruncateLogs(void *hbc) { return simple_call(hbc, OP_TRUNCATE); }

/* the handle is released whatever the DC answers */
CS_EXPORT HRESULT DsBackupEnd(void *hbc)
{
    ds_ctx *c = ctx_get(hbc, 0);
    if (!c) return DS_hrInvalidHandle;
    HRESULT hr = call(c->fd, OP_END, NULL, NULL, NULL);
    ctx_free(c);
    return hr;
}

CS_EXPORT void DsBackupFree(void *pvBuffer) { free(pvBuffer); }

/* ---------------------------------------------------------------- exports: locations, restore */

static void w_append(cs_msg *m, CS_WCHAR prefix, const char *s)
{
    CS_WCHAR w[CS_PATH];
    size_t n = cs_utf8_to_w16(s, w, CS_PATH);
    cs_msg_raw(m, &prefix, 2);
    cs_msg_raw(m, w, 2 * (n < CS_PATH ? n : CS_PATH));
    cs_msg_raw(m, &(CS_WCHAR){ 0 }, 2);
}

/* restore context: the DS is offline, so the locations come from its configuration */
static HRESULT registry_locations(const char *label, CS_WCHAR **pp, DWORD32 *pcb)
{
    char path[CS_PATH + 300], line[CS_PATH + 64], db[CS_PATH] = "", logs[CS_PATH] = "", sys[CS_PATH] = "";
    const char *dir = getenv("ESESIM_NTDS_DIR");
    snprintf(path, sizeof path, "%s/%s.registry", dir ? dir : "", label);
    FILE *f = dir ? fopen(path, "r") : NULL;
    if (!f) return DS_E_PATH_NOT_FOUND;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *v = strchr(line, '=');
        if (!v) continue;
        *v++ = 0;
        if (strcmp(line, "DSA Database file") == 0) snprintf(db, sizeof db, "%s", v);
        else if (strcmp(line, "Database log files path") == 0) snprintf(logs, sizeof logs, "%s", v);
        else if (strcmp(line, "DSA Working Directory") == 0) snprintf(sys, sizeof sys, "%s", v);
    }
    fclose(f);
    cs_msg m = { 0 };
    w_append(&m, BFT_NTDS_DATABASE, db);
    w_append(&m, BFT_LOG_DIR, logs);
    w_append(&m, BFT_CHECKPOINT_DIR, sys);
    cs_msg_raw(&m, &(CS_WCHAR){ 0 }, 2);
    if (m.oom) { cs_msg_free(&m); return CS_E_OUTOFMEMORY; }
    *pp = (CS_WCHAR *)m.p;
    *pcb = (DWORD32)m.n;
    return CS_S_OK;
}

CS_EXPORT HRESULT DsRestoreGetDatabaseLocationsW(void *hbc, CS_WCHAR **pszDatabaseLocationList, DWORD32 *pcbSize)
{
    if (pszDatabaseLocationList) *pszDatabaseLocationList = NULL;
    if (pcbSize) *pcbSize = 0;
    ds_ctx *c = ctx_get(hbc, -1);
    if (!c) return DS_hrInvalidHandle;
    if (!pszDatabaseLocationList || !pcbSize) return DS_hrInvalidParam;
    if (c->restore) return registry_locations(c->label, pszDatabaseLocationList, pcbSize);
    return list_call(hbc, OP_LOCATIONS, pszDatabaseLocationList, pcbSize);
}

static int64_t filetime_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return DS_FILETIME_UNIX_EPOCH + (int64_t)ts.tv_sec * 10000000 + ts.tv_nsec / 100;
}

CS_EXPORT HRESULT DsRestorePrepareW(const CS_WCHAR *szServerName, uint32_t rtFlag, const void *pvExpiryToken,
                                    DWORD32 cbExpiryTokenSize, void **phbcBackupContext)
{
    char label[256];
    uint32_t version = 0, days = 0;
    int64_t when = 0;
    if (!phbcBackupContext) return DS_hrInvalidParam;
    *phbcBackupContext = NULL;
    if (rtFlag & ~RESTORE_TYPE_CATCHUP) return DS_E_INVALID_PARAMETER;   /* AUTHORATATIVE, ONLINE: unsupported */
    if (!pvExpiryToken && cbExpiryTokenSize) return DS_hrInvalidParam;
    if (pvExpiryToken) {
        if (cbExpiryTokenSize != DS_TOKEN_SIZE) return DS_hrUnknownExpiryTokenFormat;
        memcpy(&version, pvExpiryToken, 4);
        memcpy(&days, (const uint8_t *)pvExpiryToken + 4, 4);
        memcpy(&when, (const uint8_t *)pvExpiryToken + 8, 8);
        if (version != DS_TOKEN_VERSION || days == 0) return DS_hrUnknownExpiryTokenFormat;
        if (filetime_now() > when + (int64_t)days * DS_FILETIME_PER_DAY) return DS_hrContentsExpired;
    }
    HRESULT hr = server_label(szServerName, label, sizeof label);
    if (hr) return hr;
    const char *dir = getenv("ESESIM_NTDS_DIR");
    if (!dir || !*dir) return DS_E_PATH_NOT_FOUND;
    BOOL32 online = 0;
    if (!no_endpoint() && ping(label, &online) == CS_S_OK && online) return DS_E_SERVICE_RUNNING;  /* not DSRM */
    ds_ctx *c = ctx_new(true, label, -1);
    if (!c) return CS_E_OUTOFMEMORY;
    c->restricted = pvExpiryToken == NULL;
    c->rtflag = rtFlag;
    c->tombstone_days = days;
    c->backup_time = when;
    *phbcBackupContext = c;
    return CS_S_OK;
}

static void json_str(cs_msg *m, const CS_WCHAR *w)
{
    char s[CS_PATH * 4];
    if (!w) { cs_msg_raw(m, "null", 4); return; }
    if (!cs_w16_to_utf8(w, s, sizeof s)) s[0] = 0;
    cs_msg_raw(m, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') { esc[0] = '\\'; esc[1] = (char)*p; cs_msg_raw(m, esc, 2); }
        else if (*p < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", *p); cs_msg_raw(m, esc, 6); }
        else cs_msg_raw(m, p, 1);
    }
    cs_msg_raw(m, "\"", 1);
}

static void json_text(cs_msg *m, const char *t) { cs_msg_raw(m, t, strlen(t)); }

/* writes <dir>/<server>.restore.json: the record's prefix, then the status */
static HRESULT write_record(ds_ctx *c, HRESULT status, bool completed)
{
    char path[CS_PATH + 300], tmp[CS_PATH + 310], tail[96];
    const char *dir = getenv("ESESIM_NTDS_DIR");
    if (!dir || !*dir) return DS_E_PATH_NOT_FOUND;
    snprintf(path, sizeof path, "%s/%s.restore.json", dir, c->label);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(tail, sizeof tail, "  \"RestoreStatus\": %u,\n  \"Completed\": %s\n}\n", (uint32_t)status,
             completed ? "true" : "false");
    FILE *f = fopen(tmp, "w");
    if (!f) return DS_E_PATH_NOT_FOUND;
    bool ok = fputs(c->record, f) >= 0 && fputs(tail, f) >= 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) { unlink(tmp); return DS_E_PATH_NOT_FOUND; }
    return CS_S_OK;
}

CS_EXPORT HRESULT DsRestoreRegisterW(void *hbc, const CS_WCHAR *szCheckPointFilePath, const CS_WCHAR *szLogPath,
                                     const EDB_RSTMAPW *rgrstmap, int32_t crstmap, const CS_WCHAR *szBackupLogPath,
                                     uint32_t genLow, uint32_t genHigh)
{
    char num[256];
    ds_ctx *c = ctx_get(hbc, 1);
    if (!c) return DS_hrInvalidHandle;
    if (c->restricted) return DS_hrMissingExpiryToken;
    if (!szCheckPointFilePath || !szLogPath || !szBackupLogPath || crstmap < 0 || (crstmap > 0 && !rgrstmap) ||
        genLow > genHigh || genHigh > 0xFFFFFu)
        return DS_hrInvalidParam;
    for (int32_t i = 0; i < crstmap; i++)
        if (!rgrstmap[i].pwszDatabaseName || !rgrstmap[i].pwszNewDatabaseName) return DS_hrInvalidParam;
    cs_msg m = { 0 };
    json_text(&m, "{\n  \"Server\": ");
    CS_WCHAR wl[256];
    size_t n = cs_utf8_to_w16(c->label, wl, 255);
    wl[n < 255 ? n : 255] = 0;
    json_str(&m, wl);
    json_text(&m, ",\n  \"CheckPointFilePath\": ");
    json_str(&m, szCheckPointFilePath);
    json_text(&m, ",\n  \"LogPath\": ");
    json_str(&m, szLogPath);
    json_text(&m, ",\n  \"BackupLogPath\": ");
    json_str(&m, szBackupLogPath);
    snprintf(num, sizeof num, ",\n  \"LowLog\": %u,\n  \"HighLog\": %u,\n  \"CatchUp\": %s,\n"
             "  \"BackupTime\": %lld,\n  \"TombstoneLifetimeDays\": %u,\n  \"RestoreMap\": [",
             genLow, genHigh, (c->rtflag & RESTORE_TYPE_CATCHUP) ? "true" : "false", (long long)c->backup_time,
             c->tombstone_days);
    json_text(&m, num);
    for (int32_t i = 0; i < crstmap; i++) {
        json_text(&m, i ? ", {\"DatabaseName\": " : "{\"DatabaseName\": ");
        json_str(&m, rgrstmap[i].pwszDatabaseName);
        json_text(&m, ", \"NewDatabaseName\": ");
        json_str(&m, rgrstmap[i].pwszNewDatabaseName);
        json_text(&m, "}");
    }
    json_text(&m, "],\n");
    cs_msg_raw(&m, "", 1);
    if (m.oom) { cs_msg_free(&m); return CS_E_OUTOFMEMORY; }
    free(c->record);
    c->record = (char *)m.p;
    return write_record(c, DS_hrRestoreInProgress, false);
}

CS_EXPORT HRESULT DsRestoreRegisterComplete(void *hbc, HRESULT hrRestoreState)
{
    ds_ctx *c = ctx_get(hbc, 1);
    if (!c) return DS_hrInvalidHandle;
    if (!c->record) return CS_E_UNEXPECTED;                 /* nothing registered on this context */
    return write_record(c, hrRestoreState, true);
}

CS_EXPORT HRESULT DsRestoreEnd(void *hbc)
{
    ds_ctx *c = ctx_get(hbc, 1);
    if (!c) return DS_hrInvalidHandle;
    ctx_free(c);
    return CS_S_OK;
}
