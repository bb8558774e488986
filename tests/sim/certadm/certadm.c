// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* certadm.c: the simulated certadm.dll (build/sim/libcertadm.so, linked as build/sim/certadm.dll).
 * The backup calls go to the simulated CA service (certsvc.c) over its local socket, as the real
 * DLL goes to certsrv.exe over RPC; the restore calls are local and write the record a CA reads at
 * its next start. Exports, widths and HRESULTs: windows-backup-apis.md §1; the contract and its
 * limits: tests/sim/README.md "certadm.dll". */
#include "certsim.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

typedef int32_t BOOL32;
typedef uint32_t DWORD32;

typedef struct { CS_WCHAR *pwszDatabaseName; CS_WCHAR *pwszNewDatabaseName; } CSEDB_RSTMAPW;  /* 16 bytes */

typedef struct cs_ctx {
    struct cs_ctx *next;
    int fd;                  /* backup context: its connection to the service */
    bool restore;
    char label[256];
    uint32_t read_size;      /* chosen by the first OpenFile of the context */
    char *record;            /* restore context: the registered record, up to its status */
} cs_ctx;

static cs_ctx *g_ctx;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static cs_ctx *ctx_new(bool restore, const char *label, int fd)
{
    cs_ctx *c = calloc(1, sizeof *c);
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
static cs_ctx *ctx_get(void *h, int restore)
{
    cs_ctx *found = NULL;
    pthread_mutex_lock(&g_lock);
    for (cs_ctx *c = g_ctx; c && !found; c = c->next)
        if (c == h && (restore < 0 || c->restore == (restore == 1))) found = c;
    pthread_mutex_unlock(&g_lock);
    return found;
}

static void ctx_free(cs_ctx *c)
{
    pthread_mutex_lock(&g_lock);
    for (cs_ctx **p = &g_ctx; *p; p = &(*p)->next)
        if (*p == c) { *p = c->next; break; }
    pthread_mutex_unlock(&g_lock);
    if (c->fd >= 0) close(c->fd);
    free(c->record);
    free(c);
}

/* ---------------------------------------------------------------- the service */

static void local_label(char *out, size_t cap)
{
    const char *host = getenv("COMPUTERNAME");
    char buf[256] = "";
    if (!host || !*host) { gethostname(buf, sizeof buf - 1); host = buf; }
    cs_socket_name(host, out, cap);
}

/* server name -> socket label; *remote when it is not this host (COMPUTERNAME) */
static HRESULT server_label(const CS_WCHAR *server, char *label, size_t cap, bool *remote)
{
    char name[CS_PATH], self[256];
    if (!server || !cs_w16_to_utf8(server, name, sizeof name)) return CS_hrInvalidParam;
    cs_socket_name(name, label, cap);
    if (!label[0]) return CS_hrInvalidParam;
    local_label(self, sizeof self);
    if (remote) *remote = strcmp(label, self) != 0 && strcmp(label, "localhost") != 0;
    return CS_S_OK;
}

/* no directory, no socket or nobody listening: RPC_S_SERVER_UNAVAILABLE */
static HRESULT connect_to(const char *label, int *pfd)
{
    const char *dir = getenv("ESESIM_CERTSVC_DIR");
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    *pfd = -1;
    if (!dir || !*dir || !cs_socket_path(dir, label, sa.sun_path, sizeof sa.sun_path)) return CS_E_RPC_UNAVAILABLE;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return CS_E_RPC_UNAVAILABLE;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) { close(fd); return CS_E_RPC_UNAVAILABLE; }
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
    if (fd < 0 || !cs_send_frame(fd, op, body) || !cs_recv_frame(fd, &head, &b, &k)) return CS_E_RPC_UNAVAILABLE;
    if (reply) { *reply = b; *n = k; } else free(b);
    return (HRESULT)head;
}

static HRESULT simple_call(void *hbc, uint32_t op, const cs_msg *body)
{
    cs_ctx *c = ctx_get(hbc, 0);
    if (!c) return CS_hrInvalidHandle;
    return call(c->fd, op, body, NULL, NULL);
}

/* ---------------------------------------------------------------- exports: online, control */

CS_EXPORT HRESULT CertSrvIsServerOnlineW(const CS_WCHAR *pwszServerName, BOOL32 *pfServerOnline)
{
    char label[256];
    int fd;
    if (pfServerOnline) *pfServerOnline = 0;
    HRESULT hr = server_label(pwszServerName, label, sizeof label, NULL);
    if (hr) return hr;
    if ((hr = connect_to(label, &fd)) != CS_S_OK) return hr;
    uint8_t *r;
    size_t n;
    hr = call(fd, OP_PING, NULL, &r, &n);
    close(fd);
    if (hr == CS_S_OK && n >= 4 && pfServerOnline) memcpy(pfServerOnline, r, 4);
    free(r);
    return hr;
}

CS_EXPORT HRESULT CertSrvServerControlW(const CS_WCHAR *pwszServerName, DWORD32 dwControlFlags, DWORD32 *pcbOut,
                                        uint8_t **ppbOut)
{
    char label[256];
    int fd;
    if (pcbOut) *pcbOut = 0;
    if (ppbOut) *ppbOut = NULL;
    HRESULT hr = server_label(pwszServerName, label, sizeof label, NULL);
    if (hr) return hr;
    if ((hr = connect_to(label, &fd)) != CS_S_OK) return hr;
    cs_msg m = { 0 };
    cs_msg_u32(&m, dwControlFlags);
    hr = call(fd, OP_CONTROL, &m, NULL, NULL);
    cs_msg_free(&m);
    close(fd);
    return hr;
}

/* ---------------------------------------------------------------- exports: backup */

CS_EXPORT HRESULT CertSrvBackupPrepareW(const CS_WCHAR *pwszServerName, uint32_t grbitJet, uint32_t dwBackupFlags,
                                        void **phbc)
{
    char label[256];
    bool remote = false;
    int fd;
    (void)grbitJet;                          /* "should be zero"; the type comes from dwBackupFlags */
    if (!phbc) return CS_hrInvalidParam;
    *phbc = NULL;
    if (dwBackupFlags != CSBACKUP_TYPE_FULL && dwBackupFlags != CSBACKUP_TYPE_LOGS_ONLY) return CS_hrInvalidParam;
    HRESULT hr = server_label(pwszServerName, label, sizeof label, &remote);
    if (hr) return hr;
    if ((hr = connect_to(label, &fd)) != CS_S_OK) return hr;
    cs_msg m = { 0 };
    cs_msg_u32(&m, remote);
    cs_msg_u32(&m, dwBackupFlags == CSBACKUP_TYPE_LOGS_ONLY);   /* wire grbitJet: 0 full, 1 incremental */
    hr = call(fd, OP_PREPARE, &m, NULL, NULL);
    cs_msg_free(&m);
    if (hr != CS_S_OK) { close(fd); return hr; }
    cs_ctx *c = ctx_new(false, label, fd);
    if (!c) { close(fd); return CS_E_OUTOFMEMORY; }
    *phbc = c;
    return CS_S_OK;
}

/* a list answer -> a CertSrvBackupFree-able copy; an empty list is NULL and 0 bytes */
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
    cs_ctx *c = ctx_get(hbc, 0);
    if (!c) return CS_hrInvalidHandle;
    if (!pp || !pcb) return CS_hrInvalidParam;
    uint8_t *r;
    size_t n;
    HRESULT hr = call(c->fd, op, NULL, &r, &n);
    if (hr == CS_S_OK) hr = list_result(r, n, pp, pcb);
    free(r);
    return hr;
}

CS_EXPORT HRESULT CertSrvBackupGetDatabaseNamesW(void *hbc, CS_WCHAR **ppwszzAttachmentInformation, DWORD32 *pcb)
{
    return list_call(hbc, OP_DBNAMES, ppwszzAttachmentInformation, pcb);
}

CS_EXPORT HRESULT CertSrvBackupGetBackupLogsW(void *hbc, CS_WCHAR **ppwszzBackupLogFiles, DWORD32 *pcb)
{
    return list_call(hbc, OP_LOGS, ppwszzBackupLogFiles, pcb);
}

CS_EXPORT HRESULT CertSrvBackupGetDynamicFileListW(void *hbc, CS_WCHAR **ppwszzFileList, DWORD32 *pcb)
{
    return list_call(hbc, OP_DYNFILES, ppwszzFileList, pcb);
}

/* hint 0: 256 KB; otherwise the power of 2 at or above it, within 64 KB..4 MB */
static uint32_t read_size_for(uint32_t hint)
{
    if (hint == 0) return 256u << 10;
    uint32_t s = 64u << 10;
    while (s < hint && s < CS_MAX_READ) s <<= 1;
    return s;
}

CS_EXPORT HRESULT CertSrvBackupOpenFileW(void *hbc, const CS_WCHAR *pwszAttachmentName, DWORD32 cbReadHintSize,
                                         int64_t *pliFileSize)
{
    char name[CS_PATH * 4];
    cs_ctx *c = ctx_get(hbc, 0);
    if (!c) return CS_hrInvalidHandle;
    if (!pwszAttachmentName || !pliFileSize || !cs_w16_to_utf8(pwszAttachmentName, name, sizeof name))
        return CS_hrInvalidParam;
    *pliFileSize = 0;
    if (!c->read_size) c->read_size = read_size_for(cbReadHintSize);
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

/* up to min(cb, the context's read size) bytes; fewer only at the end; 0 bytes after it */
CS_EXPORT HRESULT CertSrvBackupRead(void *hbc, void *pvBuffer, DWORD32 cbBuffer, DWORD32 *pcbRead)
{
    cs_ctx *c = ctx_get(hbc, 0);
    if (!c) return CS_hrInvalidHandle;
    if (!pvBuffer || !pcbRead) return CS_hrInvalidParam;
    *pcbRead = 0;
    uint32_t limit = c->read_size ? c->read_size : CS_MAX_READ;
    cs_msg m = { 0 };
    cs_msg_u32(&m, cbBuffer < limit ? cbBuffer : limit);
    uint8_t *r;
    size_t n;
    HRESULT hr = call(c->fd, OP_READ, &m, &r, &n);
    cs_msg_free(&m);
    if (hr == CS_S_OK) {
        uint32_t len = 0;
        cs_rd rd = { r, n, 0, false };
        const uint8_t *p = cs_rd_blob(&rd, &len);
        if (len > cbBuffer) hr = CS_E_UNEXPECTED;
        else { if (len) memcpy(pvBuffer, p, len); *pcbRead = len; }
    }
    free(r);
    return hr;
}

CS_EXPORT HRESULT CertSrvBackupClose(void *hbc) { return simple_call(hbc, OP_CLOSE, NULL); }
CS_EXPORT HRESULT CertSrvBackupTruncateLogs(void *hbc) { return simple_call(hbc, OP_TRUNCATE, NULL); }

/* the handle is released whatever the service answers */
CS_EXPORT HRESULT CertSrvBackupEnd(void *hbc)
{
    cs_ctx *c = ctx_get(hbc, 0);
    if (!c) return CS_hrInvalidHandle;
    HRESULT hr = call(c->fd, OP_END, NULL, NULL, NULL);
    ctx_free(c);
    return hr;
}

CS_EXPORT void CertSrvBackupFree(void *pv) { free(pv); }

/* ---------------------------------------------------------------- exports: locations, restore */

static void w_append(cs_msg *m, CS_WCHAR prefix, const char *s)
{
    CS_WCHAR w[CS_PATH];
    size_t n = cs_utf8_to_w16(s, w, CS_PATH);
    if (prefix) cs_msg_raw(m, &prefix, 2);
    cs_msg_raw(m, w, 2 * (n < CS_PATH ? n : CS_PATH));
    cs_msg_raw(m, &(CS_WCHAR){ 0 }, 2);
}

/* restore context: the CA is stopped, so the locations come from its configuration */
static HRESULT registry_locations(const char *label, CS_WCHAR **pp, DWORD32 *pcb)
{
    char path[CS_PATH + 300], line[CS_PATH + 64], db[CS_PATH] = "", logs[CS_PATH] = "", sys[CS_PATH] = "";
    const char *dir = getenv("ESESIM_CERTSVC_DIR");
    snprintf(path, sizeof path, "%s/%s.registry", dir ? dir : "", label);
    FILE *f = dir ? fopen(path, "r") : NULL;
    if (!f) return CS_E_PATH_NOT_FOUND;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *v = strchr(line, '=');
        if (!v) continue;
        *v++ = 0;
        if (strcmp(line, "DBFile") == 0) snprintf(db, sizeof db, "%s", v);
        else if (strcmp(line, "DBLogDirectory") == 0) snprintf(logs, sizeof logs, "%s", v);
        else if (strcmp(line, "DBSystemDirectory") == 0) snprintf(sys, sizeof sys, "%s", v);
    }
    fclose(f);
    cs_msg m = { 0 };
    w_append(&m, CSBFT_CERTSERVER_DATABASE, db);
    w_append(&m, CSBFT_LOG_DIR, logs);
    w_append(&m, CSBFT_CHECKPOINT_DIR, sys);
    cs_msg_raw(&m, &(CS_WCHAR){ 0 }, 2);
    if (m.oom) { cs_msg_free(&m); return CS_E_OUTOFMEMORY; }
    *pp = (CS_WCHAR *)m.p;
    *pcb = (DWORD32)m.n;
    return CS_S_OK;
}

CS_EXPORT HRESULT CertSrvRestoreGetDatabaseLocationsW(void *hbc, CS_WCHAR **ppwszzDatabaseLocationList, DWORD32 *pcb)
{
    if (ppwszzDatabaseLocationList) *ppwszzDatabaseLocationList = NULL;
    if (pcb) *pcb = 0;
    cs_ctx *c = ctx_get(hbc, -1);
    if (!c) return CS_hrInvalidHandle;
    if (!ppwszzDatabaseLocationList || !pcb) return CS_hrInvalidParam;
    if (c->restore) return registry_locations(c->label, ppwszzDatabaseLocationList, pcb);
    return list_call(hbc, OP_LOCATIONS, ppwszzDatabaseLocationList, pcb);
}

CS_EXPORT HRESULT CertSrvRestorePrepareW(const CS_WCHAR *pwszServerName, uint32_t dwRestoreFlags, void **phbc)
{
    char label[256];
    bool remote = false;
    int fd;
    if (!phbc) return CS_hrInvalidParam;
    *phbc = NULL;
    if ((dwRestoreFlags & ~0x7u) || !(dwRestoreFlags & CSRESTORE_TYPE_FULL)) return CS_hrInvalidParam;
    if (dwRestoreFlags & (CSRESTORE_TYPE_ONLINE | CSRESTORE_TYPE_CATCHUP)) return CS_E_NOTIMPL;  /* "not yet supported" */
    HRESULT hr = server_label(pwszServerName, label, sizeof label, &remote);
    if (hr) return hr;
    if (remote) return CS_E_ACCESSDENIED;
    const char *dir = getenv("ESESIM_CERTSVC_DIR");
    if (!dir || !*dir) return CS_E_PATH_NOT_FOUND;
    if (connect_to(label, &fd) == CS_S_OK) { close(fd); return CS_E_SERVICE_RUNNING; }  /* the CA must be offline */
    cs_ctx *c = ctx_new(true, label, -1);
    if (!c) return CS_E_OUTOFMEMORY;
    *phbc = c;
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

/* writes <dir>/<server>.restore.json: the record's prefix, then the status (RestoreInProgress values) */
static HRESULT write_record(cs_ctx *c, HRESULT status, bool completed)
{
    char path[CS_PATH + 300], tmp[CS_PATH + 310], tail[96];
    const char *dir = getenv("ESESIM_CERTSVC_DIR");
    if (!dir || !*dir) return CS_E_PATH_NOT_FOUND;
    snprintf(path, sizeof path, "%s/%s.restore.json", dir, c->label);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(tail, sizeof tail, "  \"RestoreStatus\": %u,\n  \"Completed\": %s\n}\n", (uint32_t)status,
             completed ? "true" : "false");
    FILE *f = fopen(tmp, "w");
    if (!f) return CS_E_PATH_NOT_FOUND;
    bool ok = fputs(c->record, f) >= 0 && fputs(tail, f) >= 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) { unlink(tmp); return CS_E_PATH_NOT_FOUND; }
    return CS_S_OK;
}

static HRESULT restore_register(void *hbc, const CS_WCHAR *pwszCheckPointFilePath, const CS_WCHAR *pwszLogPath,
                                const CSEDB_RSTMAPW *rgrstmap, int32_t crstmap, const CS_WCHAR *pwszBackupLogPath,
                                uint32_t genLow, uint32_t genHigh, bool through_file)
{
    char num[128];
    cs_ctx *c = ctx_get(hbc, 1);
    if (!c) return CS_hrInvalidHandle;
    if (crstmap < 0 || (crstmap > 0 && !rgrstmap) || !pwszBackupLogPath || genLow > genHigh) return CS_hrInvalidParam;
    for (int32_t i = 0; i < crstmap; i++)
        if (!rgrstmap[i].pwszDatabaseName || !rgrstmap[i].pwszNewDatabaseName) return CS_hrInvalidParam;
    cs_msg m = { 0 };
    json_text(&m, "{\n  \"Server\": ");
    CS_WCHAR wl[256];
    size_t n = cs_utf8_to_w16(c->label, wl, 255);
    wl[n < 255 ? n : 255] = 0;
    json_str(&m, wl);
    json_text(&m, ",\n  \"CheckPointFile\": ");
    json_str(&m, pwszCheckPointFilePath);
    json_text(&m, ",\n  \"LogPath\": ");
    json_str(&m, pwszLogPath);
    json_text(&m, ",\n  \"BackupLogDirectory\": ");
    json_str(&m, pwszBackupLogPath);
    snprintf(num, sizeof num, ",\n  \"LowLogNumber\": %u,\n  \"HighLogNumber\": %u,\n  \"RestoreMapCount\": %d,\n"
             "  \"RestoreMap\": [", genLow, genHigh, crstmap);
    json_text(&m, num);
    for (int32_t i = 0; i < crstmap; i++) {
        json_text(&m, i ? ", {\"DatabaseName\": " : "{\"DatabaseName\": ");
        json_str(&m, rgrstmap[i].pwszDatabaseName);
        json_text(&m, ", \"NewDatabaseName\": ");
        json_str(&m, rgrstmap[i].pwszNewDatabaseName);
        json_text(&m, "}");
    }
    json_text(&m, through_file ? "],\n  \"RegisteredThroughFile\": true,\n" : "],\n  \"RegisteredThroughFile\": false,\n");
    cs_msg_raw(&m, "", 1);
    if (m.oom) { cs_msg_free(&m); return CS_E_OUTOFMEMORY; }
    free(c->record);
    c->record = (char *)m.p;
    return write_record(c, CS_hrRestoreInProgress, false);
}

CS_EXPORT HRESULT CertSrvRestoreRegisterW(void *hbc, const CS_WCHAR *pwszCheckPointFilePath, const CS_WCHAR *pwszLogPath,
                                          const CSEDB_RSTMAPW *rgrstmap, int32_t crstmap,
                                          const CS_WCHAR *pwszBackupLogPath, uint32_t genLow, uint32_t genHigh)
{
    return restore_register(hbc, pwszCheckPointFilePath, pwszLogPath, rgrstmap, crstmap, pwszBackupLogPath, genLow,
                            genHigh, false);
}

CS_EXPORT HRESULT CertSrvRestoreRegisterThroughFile(void *hbc, const CS_WCHAR *pwszCheckPointFilePath,
                                                    const CS_WCHAR *pwszLogPath, const CSEDB_RSTMAPW *rgrstmap,
                                                    int32_t crstmap, const CS_WCHAR *pwszBackupLogPath,
                                                    uint32_t genLow, uint32_t genHigh)
{
    return restore_register(hbc, pwszCheckPointFilePath, pwszLogPath, rgrstmap, crstmap, pwszBackupLogPath, genLow,
                            genHigh, true);
}

CS_EXPORT HRESULT CertSrvRestoreRegisterComplete(void *hbc, HRESULT hrRestoreState)
{
    cs_ctx *c = ctx_get(hbc, 1);
    if (!c) return CS_hrInvalidHandle;
    if (!c->record) return CS_E_UNEXPECTED;                 /* nothing registered on this context */
    return write_record(c, hrRestoreState, true);
}

CS_EXPORT HRESULT CertSrvRestoreEnd(void *hbc)
{
    cs_ctx *c = ctx_get(hbc, 1);
    if (!c) return CS_hrInvalidHandle;
    ctx_free(c);
    return CS_S_OK;
}
