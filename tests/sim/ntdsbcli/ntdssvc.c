// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* ntdssvc.c: the simulated domain controller's backup server (build/sim/ntdssvc-sim), the
 * counterpart of the NTDS backup RPC interface in lsass.exe for the simulated ntdsbcli.dll. It owns
 * an ESE instance of the esent simulator (linked in), keeps ntds.dit attached (the simulator's
 * exclusive lock: another process gets -1032), and serves the backup calls on a local socket,
 * $ESESIM_NTDS_DIR/<server>.sock, one connection per backup context. In DSRM (--dsrm) it answers
 * "offline" and holds no database, as a DC started in Directory Services Restore Mode. The framing
 * and fault syntax are the certadm simulator's (../certadm); tests/sim/README.md "ntdsbcli.dll" has
 * the contract, windows-backup-apis.md §2 the behaviour modelled. */
#include "ntdssim.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* the esent.dll exports this service calls (jet-constants.md; x64 widths) */
int32_t JetSetSystemParameterW(uintptr_t *pinstance, uintptr_t sesid, uint32_t paramid, uintptr_t lParam,
                               const CS_WCHAR *szParam);
int32_t JetGetSystemParameterW(uintptr_t instance, uintptr_t sesid, uint32_t paramid, uintptr_t *plParam,
                               CS_WCHAR *szParam, uint32_t cbMax);
int32_t JetCreateInstance2W(uintptr_t *pinstance, const CS_WCHAR *name, const CS_WCHAR *display, uint32_t grbit);
int32_t JetInit3W(uintptr_t *pinstance, void *prstInfo, uint32_t grbit);
int32_t JetTerm2(uintptr_t instance, uint32_t grbit);
int32_t JetBeginSessionW(uintptr_t instance, uintptr_t *psesid, const CS_WCHAR *user, const CS_WCHAR *password);
int32_t JetAttachDatabase2W(uintptr_t sesid, const CS_WCHAR *file, uint32_t cpgMax, uint32_t grbit);
int32_t JetGetDatabaseFileInfoW(const CS_WCHAR *file, void *pv, uint32_t cbMax, uint32_t level);
int32_t JetBeginExternalBackupInstance(uintptr_t instance, uint32_t grbit);
int32_t JetGetAttachInfoInstanceW(uintptr_t instance, CS_WCHAR *szz, uint32_t cbMax, uint32_t *pcbActual);
int32_t JetGetLogInfoInstanceW(uintptr_t instance, CS_WCHAR *szz, uint32_t cbMax, uint32_t *pcbActual);
int32_t JetOpenFileInstanceW(uintptr_t instance, const CS_WCHAR *name, uintptr_t *ph, uint32_t *lo, uint32_t *hi);
int32_t JetReadFileInstance(uintptr_t instance, uintptr_t h, void *pv, uint32_t cb, uint32_t *pcb);
int32_t JetCloseFileInstance(uintptr_t instance, uintptr_t h);
int32_t JetTruncateLogInstance(uintptr_t instance);
int32_t JetEndExternalBackupInstance2(uintptr_t instance, uint32_t grbit);

#define MAX_CONNS 32
#define MAX_FAULTS 32
#define ESE_CHUNK (1u << 20)      /* the service's JetReadFileInstance buffer: page-aligned, >= 3 pages */

static struct {
    char dir[CS_PATH], server[256], label[256], db[CS_PATH], logs[CS_PATH], system[CS_PATH];
    char base[8], sock[CS_PATH];
    uint32_t tombstone_days;
    bool dsrm;
} cfg;

typedef struct {
    int fd;
    bool backup;                  /* this context prepared the ESE backup */
    bool listed, file_open;
    char **names;                 /* every name a list call returned to this context */
    int nnames, capnames;
} conn_t;

static conn_t g_conn[MAX_CONNS];
static uintptr_t g_inst, g_ses;
static int g_listen = -1, g_sigpipe[2] = { -1, -1 };
static uint8_t *g_ebuf;           /* ESE read buffer, with what was read but not yet sent */
static uint32_t g_carry_off, g_carry_len;
static bool g_eof;

/* ---------------------------------------------------------------- faults (the certadm service's syntax) */

typedef struct { char api[64]; long call; HRESULT hr; bool every, stop; } cfault;
static cfault g_faults[MAX_FAULTS];
static int g_nfaults;
static struct { char api[64]; long n; } g_counts[MAX_FAULTS * 2];
static int g_ncounts;

static const char *ws(const char *p) { while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++; return p; }

static const char *jstring(const char *p, char *out, size_t cap)
{
    size_t n = 0;
    p = ws(p);
    if (*p != '"') return NULL;
    for (p++; *p && *p != '"'; p++) {
        if (*p == '\\' && p[1]) p++;
        if (n + 1 < cap) out[n++] = *p;
    }
    out[n] = 0;
    return *p == '"' ? p + 1 : NULL;
}

/* err: a JET_err (-65535..-1) is mapped to 0xC800xxxx; anything else is the HRESULT itself */
static HRESULT fault_hr(long long v)
{
    if (v < 0 && v >= -65535) return cs_hr_from_jet((int32_t)v);
    return CS_HR((uint32_t)v);
}

static const char *jvalue(const char *p, cfault *f, const char *key)
{
    char s[64];
    p = ws(p);
    if (*p == '"') {
        if (!(p = jstring(p, s, sizeof s))) return NULL;
        if (strcmp(key, "api") == 0) snprintf(f->api, sizeof f->api, "%s", s);
        else if (strcmp(key, "err") == 0) f->hr = fault_hr(strtoll(s, NULL, 0));
        return p;
    }
    if (strncmp(p, "true", 4) == 0 || strncmp(p, "false", 5) == 0) {
        bool v = *p == 't';
        if (strcmp(key, "every") == 0) f->every = v;
        if (strcmp(key, "stop") == 0) f->stop = v;
        return p + (v ? 4 : 5);
    }
    char *end;
    double d = strtod(p, &end);
    if (end == p) return NULL;
    if (strcmp(key, "call") == 0) f->call = (long)d;
    else if (strcmp(key, "err") == 0) f->hr = fault_hr((long long)d);
    return end;
}

/* ESESIM_NTDS_FAULTS: [{"api": "<ntdsbcli export>", "call": n, "err": e, "every": b, "stop": b}, ...] */
static bool parse_faults(const char *p)
{
    p = ws(p);
    if (*p++ != '[') return false;
    p = ws(p);
    if (*p == ']') return true;
    for (;;) {
        cfault f = { .call = 1 };
        p = ws(p);
        if (*p++ != '{') return false;
        for (;;) {
            char key[32];
            if (!(p = jstring(p, key, sizeof key))) return false;
            p = ws(p);
            if (*p++ != ':') return false;
            if (!(p = jvalue(p, &f, key))) return false;
            p = ws(p);
            if (*p == ',') { p++; continue; }
            if (*p++ != '}') return false;
            break;
        }
        if (g_nfaults < MAX_FAULTS) g_faults[g_nfaults++] = f;
        p = ws(p);
        if (*p == ',') { p++; continue; }
        return *p == ']' && *ws(p + 1) == 0;
    }
}

static const cfault *fault_check(const char *api)
{
    long n = 0;
    int i;
    for (i = 0; i < g_ncounts && strcmp(g_counts[i].api, api) != 0; i++) {}
    if (i == g_ncounts && g_ncounts < MAX_FAULTS * 2) snprintf(g_counts[g_ncounts++].api, 64, "%s", api);
    if (i < g_ncounts) n = ++g_counts[i].n;
    for (int k = 0; k < g_nfaults; k++)
        if (strcmp(g_faults[k].api, api) == 0 && (n == g_faults[k].call || (g_faults[k].every && n >= g_faults[k].call)))
            return &g_faults[k];
    return NULL;
}

/* ---------------------------------------------------------------- service life */

static void conn_close(conn_t *c, bool rundown)
{
    if (c->fd < 0) return;
    if (rundown && c->backup) JetEndExternalBackupInstance2(g_inst, 0x2);   /* context rundown: abort */
    close(c->fd);
    for (int i = 0; i < c->nnames; i++) free(c->names[i]);
    free(c->names);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

/* DC shutdown (signal or a "stop" fault): the endpoint goes away, every connection breaks, and
 * JetTerm2(Abrupt) ends a running backup as a server abort. */
static void service_stop(int code, const char *why)
{
    if (g_listen >= 0) { close(g_listen); unlink(cfg.sock); }
    for (int i = 0; i < MAX_CONNS; i++) {
        if (g_conn[i].fd >= 0) close(g_conn[i].fd);
        g_conn[i].fd = -1;
    }
    int32_t err = g_inst ? JetTerm2(g_inst, 0x2) : 0;
    fprintf(stderr, "ntdssvc-sim: %s stopped (%s; JetTerm2 %d)\n", cfg.server, why, err);
    exit(code);
}

static void on_signal(int sig)
{
    char c = (char)sig;
    if (write(g_sigpipe[1], &c, 1) < 0) _exit(1);
}

static void die(const char *what, int32_t err)
{
    fprintf(stderr, "ntdssvc-sim: %s failed (%d)\n", what, err);
    exit(3);
}

static void wbuf(const char *s, CS_WCHAR *out, size_t cap)
{
    size_t n = cs_utf8_to_w16(s, out, cap - 1);
    out[n < cap - 1 ? n : cap - 1] = 0;
}

static void get_path_param(uint32_t id, char *out)
{
    CS_WCHAR w[CS_PATH];
    uintptr_t v = 0;
    if (!g_inst || JetGetSystemParameterW(g_inst, 0, id, &v, w, sizeof w) != 0 || !cs_w16_to_utf8(w, out, CS_PATH))
        out[0] = 0;
}

/* what a real DC keeps under Services\NTDS\Parameters: the restore context reads it (ntdsbcli.c) */
static void write_registry(void)
{
    char path[CS_PATH + 300], logs[CS_PATH], sys[CS_PATH];
    get_path_param(2, logs);
    get_path_param(0, sys);
    if (!logs[0]) snprintf(logs, sizeof logs, "%s", cfg.logs);
    if (!sys[0]) snprintf(sys, sizeof sys, "%s", cfg.system);
    snprintf(path, sizeof path, "%s/%s.registry", cfg.dir, cfg.label);
    if (cfg.dsrm && access(path, F_OK) == 0) return;     /* DSRM keeps what the DC wrote when it ran */
    FILE *f = fopen(path, "w");
    if (!f) return;
    fprintf(f, "DSA Database file=%s\nDatabase log files path=%s\nDSA Working Directory=%s\n"
            "Tombstone Lifetime=%u\n", cfg.db, logs, sys, cfg.tombstone_days);
    fclose(f);
}

/* windows-backup-apis.md §2: the DS does not start until a good restore is registered */
static void check_restore_record(void)
{
    char path[CS_PATH + 300], text[65536];
    snprintf(path, sizeof path, "%s/%s.restore.json", cfg.dir, cfg.label);
    FILE *f = fopen(path, "r");
    if (!f) return;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    if (!strstr(text, "\"Completed\": true") || !strstr(text, "\"RestoreStatus\": 0,")) {
        fprintf(stderr, "ntdssvc-sim: %s: a restore is registered but not completed (%s)\n", cfg.server, path);
        exit(5);
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: ntdssvc-sim --db PATH [--logs DIR] [--system DIR] [--base edb] [--server NAME] "
                    "[--tombstone-days N] [--dsrm]\n");
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    const char *dir = getenv("ESESIM_NTDS_DIR"), *host = getenv("COMPUTERNAME");
    snprintf(cfg.server, sizeof cfg.server, "%s", host && *host ? host : "localhost");
    snprintf(cfg.base, sizeof cfg.base, "edb");
    cfg.tombstone_days = 60;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--dsrm") == 0) { cfg.dsrm = true; continue; }
        if (!v) usage();
        i++;
        if (strcmp(a, "--db") == 0) snprintf(cfg.db, sizeof cfg.db, "%s", v);
        else if (strcmp(a, "--logs") == 0) snprintf(cfg.logs, sizeof cfg.logs, "%s", v);
        else if (strcmp(a, "--system") == 0) snprintf(cfg.system, sizeof cfg.system, "%s", v);
        else if (strcmp(a, "--base") == 0) snprintf(cfg.base, sizeof cfg.base, "%s", v);
        else if (strcmp(a, "--server") == 0) snprintf(cfg.server, sizeof cfg.server, "%s", v);
        else if (strcmp(a, "--tombstone-days") == 0) {
            char *end;
            unsigned long d = strtoul(v, &end, 0);
            if (*end || d == 0 || d > 100000) usage();
            cfg.tombstone_days = (uint32_t)d;
        } else usage();
    }
    if (!cfg.db[0]) usage();
    if (!dir || !*dir) { fprintf(stderr, "ntdssvc-sim: ESESIM_NTDS_DIR is not set\n"); exit(2); }
    snprintf(cfg.dir, sizeof cfg.dir, "%s", dir);
    char real[PATH_MAX];
    if (realpath(cfg.db, real) && strlen(real) < sizeof cfg.db) strcpy(cfg.db, real);
    if (!cfg.logs[0] || !cfg.system[0]) {
        char d[CS_PATH];
        snprintf(d, sizeof d, "%s", cfg.db);
        char *slash = strrchr(d, '/');
        if (slash) slash[1] = 0;
        if (!cfg.logs[0]) snprintf(cfg.logs, sizeof cfg.logs, "%s", d);
        if (!cfg.system[0]) snprintf(cfg.system, sizeof cfg.system, "%s", d);
    }
    cs_socket_name(cfg.server, cfg.label, sizeof cfg.label);
    if (!cs_socket_path(cfg.dir, cfg.label, cfg.sock, sizeof cfg.sock)) {
        fprintf(stderr, "ntdssvc-sim: socket path %s/%s.sock is empty or too long\n", cfg.dir, cfg.label);
        exit(2);
    }
    const char *faults = getenv("ESESIM_NTDS_FAULTS");
    if (faults && *faults && !parse_faults(faults)) {
        fprintf(stderr, "ntdssvc-sim: ESESIM_NTDS_FAULTS is not a valid JSON list; faults disabled\n");
        g_nfaults = 0;
    }
}

static void open_database(void)
{
    CS_WCHAR w[CS_PATH];
    uint32_t page = 0;
    wbuf(cfg.db, w, CS_PATH);
    int32_t err = JetGetDatabaseFileInfoW(w, &page, 4, 17);          /* JET_DbInfoPageSize */
    if (err) die("JetGetDatabaseFileInfoW(PageSize)", err);
    if (page != 4096 && (err = JetSetSystemParameterW(NULL, 0, 64, page, NULL)) != 0) die("DatabasePageSize", err);
    if ((err = JetCreateInstance2W(&g_inst, u"NTDSA", u"NTDS", 0)) != 0) die("JetCreateInstance2W", err);
    CS_WCHAR p[CS_PATH];
    wbuf(cfg.system, p, CS_PATH);
    if ((err = JetSetSystemParameterW(&g_inst, 0, 0, 0, p)) != 0) die("SystemPath", err);
    wbuf(cfg.logs, p, CS_PATH);
    if ((err = JetSetSystemParameterW(&g_inst, 0, 2, 0, p)) != 0) die("LogFilePath", err);
    wbuf(cfg.base, p, CS_PATH);
    if ((err = JetSetSystemParameterW(&g_inst, 0, 3, 0, p)) != 0) die("BaseName", err);
    if ((err = JetInit3W(&g_inst, NULL, 0)) != 0) die("JetInit3W", err);
    if ((err = JetBeginSessionW(g_inst, &g_ses, NULL, NULL)) != 0) die("JetBeginSessionW", err);
    if ((err = JetAttachDatabase2W(g_ses, w, 0, 0)) < 0) die("JetAttachDatabase2W", err);
}

static void open_endpoint(void)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    memcpy(sa.sun_path, cfg.sock, strlen(cfg.sock) + 1);   /* length checked by cs_socket_path */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0) {
        fprintf(stderr, "ntdssvc-sim: a service already answers at %s\n", cfg.sock);
        if (g_inst) JetTerm2(g_inst, 0x2);
        exit(4);
    }
    if (probe >= 0) close(probe);
    unlink(cfg.sock);
    g_listen = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (g_listen < 0 || bind(g_listen, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(g_listen, 16) != 0) {
        perror("ntdssvc-sim: socket");
        if (g_inst) JetTerm2(g_inst, 0x2);
        exit(4);
    }
}

/* ---------------------------------------------------------------- lists */

static bool same_name(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        int x = *a == '\\' ? '/' : tolower((unsigned char)*a), y = *b == '\\' ? '/' : tolower((unsigned char)*b);
        if (x != y) return false;
    }
    return *a == *b;
}

static void remember(conn_t *c, const char *name)
{
    for (int i = 0; i < c->nnames; i++) if (same_name(c->names[i], name)) return;
    if (c->nnames == c->capnames) {
        int cap = c->capnames ? c->capnames * 2 : 16;
        char **p = realloc(c->names, (size_t)cap * sizeof *p);
        if (!p) return;
        c->names = p;
        c->capnames = cap;
    }
    c->names[c->nnames++] = strdup(name);
}

static void w_put(cs_msg *m, CS_WCHAR u)
{
    uint8_t b[2] = { (uint8_t)u, (uint8_t)(u >> 8) };
    cs_msg_raw(m, b, 2);
}

/* one prefixed entry */
static void w_entry(cs_msg *m, CS_WCHAR prefix, const char *utf8)
{
    CS_WCHAR w[CS_PATH];
    size_t n = cs_utf8_to_w16(utf8, w, CS_PATH);
    w_put(m, prefix);
    for (size_t i = 0; i < n && i < CS_PATH; i++) w_put(m, w[i]);
    w_put(m, 0);
}

typedef int32_t (*list_fn)(uintptr_t, CS_WCHAR *, uint32_t, uint32_t *);

/* an ESE W list -> the same names with a BFT prefix; every name is remembered for OpenFile */
static HRESULT ese_list(conn_t *c, list_fn fn, CS_WCHAR prefix, cs_msg *out)
{
    uint32_t cb = 0;
    int32_t err = fn(g_inst, NULL, 0, &cb);
    if (err) return cs_hr_from_jet(err);
    CS_WCHAR *w = calloc(cb / 2 + 2, 2);
    if (!w) return CS_E_OUTOFMEMORY;
    if ((err = fn(g_inst, w, cb, &cb)) != 0) { free(w); return cs_hr_from_jet(err); }
    cs_msg list = { 0 };
    for (size_t i = 0; i < cb / 2 && w[i]; i += cs_w16_len(w + i) + 1) {
        char name[CS_PATH * 4];
        if (!cs_w16_to_utf8(w + i, name, sizeof name)) continue;
        remember(c, name);
        w_entry(&list, prefix, name);
    }
    free(w);
    if (list.n) w_put(&list, 0);
    c->listed = true;
    cs_msg_blob(out, list.p, (uint32_t)list.n);
    cs_msg_free(&list);
    return CS_S_OK;
}

static HRESULT locations(cs_msg *out)
{
    char logs[CS_PATH], sys[CS_PATH];
    get_path_param(2, logs);
    get_path_param(0, sys);
    cs_msg list = { 0 };
    w_entry(&list, BFT_NTDS_DATABASE, cfg.db);
    w_entry(&list, BFT_LOG_DIR, logs);
    w_entry(&list, BFT_CHECKPOINT_DIR, sys);
    w_put(&list, 0);
    cs_msg_blob(out, list.p, (uint32_t)list.n);
    cs_msg_free(&list);
    return CS_S_OK;
}

/* ---------------------------------------------------------------- file calls */

static HRESULT open_file(conn_t *c, cs_rd *r, cs_msg *out)
{
    char name[CS_PATH * 4];
    if (!cs_rd_str(r, name, sizeof name)) return DS_hrInvalidParam;
    if (c->file_open) return DS_hrAlreadyOpen;
    if (!c->listed) return DS_hrInvalidBackupSequence;               /* no list call yet */
    const char *listed = NULL;
    for (int i = 0; i < c->nnames && !listed; i++) if (same_name(c->names[i], name)) listed = c->names[i];
    if (!listed) return DS_hrInvalidParam;                            /* not a name from the lists */
    CS_WCHAR w[CS_PATH];
    uintptr_t h = 0;
    uint32_t lo = 0, hi = 0;
    wbuf(listed, w, CS_PATH);
    int32_t err = JetOpenFileInstanceW(g_inst, w, &h, &lo, &hi);
    if (err) return cs_hr_from_jet(err);
    c->file_open = true;
    g_carry_off = g_carry_len = 0;
    g_eof = false;
    cs_msg_u64(out, (uint64_t)hi << 32 | lo);
    return CS_S_OK;
}

/* fills up to cb bytes from ESE reads of ESE_CHUNK; short only at the end; nothing left: ERROR_HANDLE_EOF */
static HRESULT read_file(conn_t *c, cs_rd *r, cs_msg *out)
{
    uint32_t cb = cs_rd_u32(r);
    if (!c->file_open) return DS_hrInvalidHandle;
    if (cb > CS_MAX_READ) cb = CS_MAX_READ;
    uint8_t *data = malloc(cb ? cb : 1);
    uint32_t n = 0;
    if (!data) return CS_E_OUTOFMEMORY;
    while (n < cb) {
        if (g_carry_len) {
            uint32_t k = g_carry_len < cb - n ? g_carry_len : cb - n;
            memcpy(data + n, g_ebuf + g_carry_off, k);
            n += k;
            g_carry_off += k;
            g_carry_len -= k;
            continue;
        }
        if (g_eof) break;
        uint32_t got = 0;
        int32_t err = JetReadFileInstance(g_inst, 0, g_ebuf, ESE_CHUNK, &got);
        if (err) { free(data); return cs_hr_from_jet(err); }
        if (got == 0) g_eof = true;
        g_carry_off = 0;
        g_carry_len = got;
    }
    if (n == 0) { free(data); return DS_E_HANDLE_EOF; }
    cs_msg_blob(out, data, n);
    free(data);
    return CS_S_OK;
}

/* ---------------------------------------------------------------- dispatch */

static const char *op_api(uint32_t op)
{
    static const char *names[] = {
        [OP_PING] = "DsIsNTDSOnlineW", [OP_PREPARE] = "DsBackupPrepareW",
        [OP_LOCATIONS] = "DsRestoreGetDatabaseLocationsW", [OP_DBNAMES] = "DsBackupGetDatabaseNamesW",
        [OP_OPEN] = "DsBackupOpenFileW", [OP_READ] = "DsBackupRead", [OP_CLOSE] = "DsBackupClose",
        [OP_LOGS] = "DsBackupGetBackupLogsW", [OP_TRUNCATE] = "DsBackupTruncateLogs", [OP_END] = "DsBackupEnd",
    };
    return op < sizeof names / sizeof *names && names[op] ? names[op] : "?";
}

/* the expiry token (ntdssim.h): version, tombstone lifetime, backup time as a FILETIME */
static void expiry_token(cs_msg *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ft = DS_FILETIME_UNIX_EPOCH + (int64_t)ts.tv_sec * 10000000 + ts.tv_nsec / 100;
    uint8_t tok[DS_TOKEN_SIZE];
    uint32_t version = DS_TOKEN_VERSION;
    memcpy(tok, &version, 4);
    memcpy(tok + 4, &cfg.tombstone_days, 4);
    memcpy(tok + 8, &ft, 8);
    cs_msg_blob(out, tok, sizeof tok);
}

static HRESULT prepare(conn_t *c, cs_msg *out)
{
    if (cfg.dsrm) return DS_hrCouldNotConnect;                       /* no directory service in DSRM */
    if (c->backup) return DS_hrInvalidHandle;
    int32_t err = JetBeginExternalBackupInstance(g_inst, 0);
    if (err) return cs_hr_from_jet(err);
    c->backup = true;
    expiry_token(out);
    return CS_S_OK;
}

static HRESULT dispatch(conn_t *c, uint32_t op, cs_rd *r, cs_msg *out)
{
    const cfault *f = fault_check(op_api(op));
    if (f && f->stop) service_stop(0, "stopped by an injected fault");
    if (f) return f->hr;
    if (op == OP_PING) { cs_msg_u32(out, !cfg.dsrm); return CS_S_OK; }
    if (op == OP_PREPARE) return prepare(c, out);
    if (!c->backup) return DS_hrInvalidHandle;                       /* no Prepare on this context */
    switch (op) {
    case OP_LOCATIONS: return locations(out);
    case OP_DBNAMES: return ese_list(c, JetGetAttachInfoInstanceW, BFT_NTDS_DATABASE, out);
    case OP_LOGS: return ese_list(c, JetGetLogInfoInstanceW, BFT_LOG, out);
    case OP_OPEN: return open_file(c, r, out);
    case OP_READ: return read_file(c, r, out);
    case OP_CLOSE:
        if (!c->file_open) return DS_hrInvalidHandle;
        c->file_open = false;
        return cs_hr_from_jet(JetCloseFileInstance(g_inst, 0));
    case OP_TRUNCATE: return cs_hr_from_jet(JetTruncateLogInstance(g_inst));
    case OP_END: {
        int32_t err = JetEndExternalBackupInstance2(g_inst, 0x1);
        c->backup = c->file_open = false;
        return cs_hr_from_jet(err);
    }
    }
    return DS_hrInvalidParam;
}

static void serve(conn_t *c)
{
    uint32_t op;
    uint8_t *body;
    size_t n;
    if (!cs_recv_frame(c->fd, &op, &body, &n)) { conn_close(c, true); return; }
    cs_rd r = { body, n, 0, false };
    cs_msg out = { 0 };
    HRESULT hr = dispatch(c, op, &r, &out);
    free(body);
    if (hr != CS_S_OK) cs_msg_free(&out);
    bool sent = cs_send_frame(c->fd, (uint32_t)hr, &out);
    cs_msg_free(&out);
    if (!sent) conn_close(c, true);
}

int main(int argc, char **argv)
{
    for (int i = 0; i < MAX_CONNS; i++) g_conn[i].fd = -1;
    parse_args(argc, argv);
    if (!cfg.dsrm) check_restore_record();
    if (posix_memalign((void **)&g_ebuf, 4096, ESE_CHUNK) != 0) die("posix_memalign", 0);
    if (pipe(g_sigpipe) != 0) die("pipe", errno);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    if (!cfg.dsrm) open_database();
    open_endpoint();
    write_registry();
    printf("ntdssvc-sim ready %s%s\n", cfg.sock, cfg.dsrm ? " (DSRM)" : "");
    fflush(stdout);
    for (;;) {
        struct pollfd p[MAX_CONNS + 2];
        int map[MAX_CONNS + 2], np = 0;
        p[np] = (struct pollfd){ g_sigpipe[0], POLLIN, 0 }; map[np++] = -2;
        p[np] = (struct pollfd){ g_listen, POLLIN, 0 }; map[np++] = -1;
        for (int i = 0; i < MAX_CONNS; i++)
            if (g_conn[i].fd >= 0) { p[np] = (struct pollfd){ g_conn[i].fd, POLLIN, 0 }; map[np++] = i; }
        if (poll(p, (nfds_t)np, -1) < 0) { if (errno == EINTR) continue; die("poll", errno); }
        for (int k = 0; k < np; k++) {
            if (!p[k].revents) continue;
            if (map[k] == -2) service_stop(0, "signal");
            if (map[k] == -1) {
                int fd = accept4(g_listen, NULL, NULL, SOCK_CLOEXEC);
                int slot = -1;
                for (int i = 0; i < MAX_CONNS && slot < 0; i++) if (g_conn[i].fd < 0) slot = i;
                if (fd >= 0 && slot < 0) close(fd);
                else if (fd >= 0) { memset(&g_conn[slot], 0, sizeof g_conn[slot]); g_conn[slot].fd = fd; }
                continue;
            }
            serve(&g_conn[map[k]]);
        }
    }
}
