// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* instance.c: instances, system parameters, JetInit/JetTerm, sessions and the
 * instance gate (ese-backup-semantics.md §1; jet-constants.md §2-§3). */
#include "esesim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MODE_NONE = 0, MODE_ONE, MODE_MULTI };

uint32_t g_cb_page = 4096;
uint32_t g_max_instances = 16;
uint32_t g_disable_block_verification;

static sim_inst g_inst[SIM_MAX_INSTANCES];
static sim_params g_defaults;
static bool g_defaults_ready;
static int g_mode;
static sim_sess g_sess[SIM_MAX_SESSIONS];

/* ---------- defaults and lookup ---------- */

static void params_default(sim_params *p)
{
    memset(p, 0, sizeof *p);
    path_absolute(".", p->system_path, sizeof p->system_path, true);
    path_absolute(".", p->log_path, sizeof p->log_path, true);
    path_absolute("tmp.edb", p->temp_path, sizeof p->temp_path, false);
    strcpy(p->base_name, "edb");
    strcpy(p->recovery, "on");
    p->max_temp_tables = 20;
    p->log_file_size_kb = 5120;
    p->legacy_names = 3;
    p->engine_format = 0x40000001u;
}

static sim_params *defaults(void)
{
    if (!g_defaults_ready) { params_default(&g_defaults); g_defaults_ready = true; }
    return &g_defaults;
}

/* The process-wide JET_paramLegacyFileNames (set on a nil instance), which JetExternalRestore2W names by. */
uint32_t sim_default_legacy_names(void) { return defaults()->legacy_names; }

static int running_count(void)
{
    int n = 0;
    for (int i = 0; i < SIM_MAX_INSTANCES; i++) n += g_inst[i].state == INST_RUNNING;
    return n;
}

static bool is_nil(JET_INSTANCE h) { return h == 0 || h == JET_instanceNil; }

/* §1 step 1: handle validation (-1115 bogus handle, -1003 nil in multi mode) */
sim_inst *inst_lookup(JET_INSTANCE h, JET_ERR *err)
{
    if (is_nil(h)) {
        for (int i = 0; g_mode == MODE_ONE && i < SIM_MAX_INSTANCES; i++)
            if (g_inst[i].state != INST_FREE) return &g_inst[i];
        *err = JET_errInvalidParameter;
        return NULL;
    }
    uintptr_t base = (uintptr_t)g_inst, end = base + sizeof g_inst;
    if (h < base || h >= end || (h - base) % sizeof(sim_inst) != 0 ||
        ((sim_inst *)h)->state == INST_FREE) {
        *err = JET_errInvalidInstance;
        return NULL;
    }
    return (sim_inst *)h;
}

/* §1 steps 1-2: handle, StopService (-1329), Term (-1000), not initialised (-1029) */
JET_ERR inst_gate(JET_INSTANCE h, sim_inst **out)
{
    JET_ERR err = JET_errSuccess;
    sim_inst *in = inst_lookup(h, &err);
    if (!in) return err;
    if (in->stop_service) return JET_errClientRequestToStopJetService;
    if (in->term_in_progress) return JET_errTermInProgress;
    if (in->state != INST_RUNNING) return JET_errNotInitialized;
    *out = in;
    return JET_errSuccess;
}

bool inst_one_instance_mode(void) { return g_mode == MODE_ONE; }

sim_inst *inst_first_running(void)
{
    for (int i = 0; i < SIM_MAX_INSTANCES; i++)
        if (g_inst[i].state == INST_RUNNING) return &g_inst[i];
    return NULL;
}

bool db_attached_elsewhere(const sim_inst *self, const char *path)
{
    for (int i = 0; i < SIM_MAX_INSTANCES; i++)
        if (&g_inst[i] != self && g_inst[i].state == INST_RUNNING && db_find(&g_inst[i], path) >= 0)
            return true;
    return false;
}

static void inst_free(sim_inst *in)
{
    bk_close_file(&in->bk);
    for (int i = 0; i < SIM_MAX_SESSIONS; i++) {
        if (!g_sess[i].used || g_sess[i].in != in) continue;
        work_end_session(&g_sess[i], false);
        memset(&g_sess[i], 0, sizeof g_sess[i]);
    }
    work_inst_freed(in);
    for (int i = 0; i < SIM_MAX_DBS; i++)
        if (in->db[i].used && in->db[i].fd >= 0) close(in->db[i].fd);
    memset(in, 0, sizeof *in);
}

/* handles of a database that the instance's sessions hold open (JetCreateDatabaseW) */
int db_open_count(const sim_inst *in, int idx)
{
    int n = 0;
    for (int i = 0; i < SIM_MAX_SESSIONS; i++)
        if (g_sess[i].used && g_sess[i].in == in) n += g_sess[i].db_open[idx];
    return n;
}

void inst_reset_all(void)
{
    for (int i = 0; i < SIM_MAX_INSTANCES; i++)
        if (g_inst[i].state != INST_FREE) inst_free(&g_inst[i]);
    work_reset();
    memset(g_sess, 0, sizeof g_sess);
    g_defaults_ready = false;
    g_mode = MODE_NONE;
    g_cb_page = 4096;
    g_max_instances = 16;
    g_disable_block_verification = 0;
}

/* ---------- system parameters (jet-constants.md §3) ---------- */

static bool is_global_param(uint32_t id) { return id == 64 || id == 104 || id == 155; }

static JET_ERR set_string(uint32_t id, sim_params *p, const char *s)
{
    size_t n = strlen(s);
    switch (id) {
    case 0: case 2: case 113: {
        char *dst = id == 0 ? p->system_path : id == 2 ? p->log_path : p->alt_recovery_path;
        if (n > 246) return JET_errInvalidParameter;
        if (id == 113 && n == 0) { dst[0] = 0; return JET_errSuccess; }
        return path_absolute(n ? s : ".", dst, SIM_PATH_MAX, true) ? JET_errSuccess : JET_errInvalidPath;
    }
    case 1:
        if (n > 247) return JET_errInvalidParameter;
        return path_absolute(n ? s : "tmp.edb", p->temp_path, SIM_PATH_MAX, n && s[n - 1] == '/')
                   ? JET_errSuccess : JET_errInvalidPath;
    case 3:
        if (n != 3) return JET_errInvalidParameter;
        memcpy(p->base_name, s, 4);
        return JET_errSuccess;
    case 4:
        if (n > 259) return JET_errInvalidParameter;
        memcpy(p->event_source, s, n + 1);
        return JET_errSuccess;
    case 34:
        if (n >= sizeof p->recovery) return JET_errInvalidParameter;
        memcpy(p->recovery, s, n + 1);
        return JET_errSuccess;
    }
    return JET_errInvalidParameter;
}

static bool is_string_param(uint32_t id)
{
    return id == 0 || id == 1 || id == 2 || id == 3 || id == 4 || id == 34 || id == 113;
}

static uint32_t *int_slot(uint32_t id, sim_params *p, uint32_t *lo, uint32_t *hi)
{
    *lo = 0; *hi = 1;
    switch (id) {
    case 10: *hi = 0x7FFFFFFF; return &p->max_temp_tables;
    case 11: *lo = 64; *hi = 32768; return &p->log_file_size_kb;
    case 17: return &p->circular;
    case 50: return &p->no_info_event;
    case 52: return &p->delete_out_of_range;
    case 71: return &p->zero_db_during_backup;
    case 77: return &p->cleanup_mismatched;
    case 100: return &p->create_path;
    case 136: *hi = 255; return &p->legacy_names;
    case 194: *hi = 0xFFFFFFFF; return &p->engine_format;
    }
    return NULL;
}

static JET_ERR set_global(uint32_t id, JET_API_PTR v)
{
    if (running_count() > 0) return JET_errAlreadyInitialized;
    if (id == 64) {
        if (v < 4096 || v > 32768 || (v & (v - 1))) return JET_errInvalidParameter;
        g_cb_page = (uint32_t)v;
    } else if (id == 104) {
        if (v < 1 || v > 10240) return JET_errInvalidParameter;
        g_max_instances = (uint32_t)v;
    } else {
        g_disable_block_verification = v != 0;
    }
    return JET_errSuccess;
}

static JET_ERR set_param(sim_params *p, bool running, uint32_t id, JET_API_PTR v, const WCHAR *sz)
{
    if (is_global_param(id)) return set_global(id, v);
    if (running && id != 100) return JET_errAlreadyInitialized;
    if (is_string_param(id)) {
        char s[SIM_PATH_MAX];
        if (!sz) return JET_errInvalidParameter;
        if (!wstr_to_utf8(sz, s, sizeof s)) return JET_errInvalidParameter;
        return set_string(id, p, s);
    }
    uint32_t lo, hi, *slot = int_slot(id, p, &lo, &hi);
    if (!slot) return id < 256 ? JET_errSuccess : JET_errInvalidParameter;
    if (v < lo || v > hi) return JET_errInvalidParameter;
    *slot = (uint32_t)v;
    if (id == 11) p->log_file_size_set = true;
    return JET_errSuccess;
}

EXPORT JET_ERR JetSetSystemParameterW(JET_INSTANCE *pinstance, JET_SESID sesid, ULONG32 paramid,
                                      JET_API_PTR lParam, const WCHAR *szParam)
{
    (void)sesid;
    JET_ERR err = fault_check("JetSetSystemParameterW");
    if (err) return err;
    if (!pinstance || is_nil(*pinstance)) return set_param(defaults(), false, paramid, lParam, szParam);
    sim_inst *in = inst_lookup(*pinstance, &err);
    if (!in) return err;
    return set_param(&in->p, in->state == INST_RUNNING, paramid, lParam, szParam);
}

static JET_ERR get_string(const sim_params *p, uint32_t id, WCHAR *out, ULONG32 cbMax)
{
    const char *s = id == 0 ? p->system_path : id == 1 ? p->temp_path : id == 2 ? p->log_path :
                    id == 3 ? p->base_name : id == 4 ? p->event_source : id == 34 ? p->recovery :
                    p->alt_recovery_path;
    size_t units = utf8_to_wstr(s, NULL, 0) + 1;
    if (!out || cbMax < units * 2) return JET_errBufferTooSmall;
    utf8_to_wstr(s, out, units);
    out[units - 1] = 0;
    return JET_errSuccess;
}

EXPORT JET_ERR JetGetSystemParameterW(JET_INSTANCE instance, JET_SESID sesid, ULONG32 paramid,
                                      JET_API_PTR *plParam, WCHAR *szParam, ULONG32 cbMax)
{
    (void)sesid;
    JET_ERR err = fault_check("JetGetSystemParameterW");
    if (err) return err;
    sim_params *p = defaults();
    if (!is_nil(instance)) {
        sim_inst *in = inst_lookup(instance, &err);
        if (!in) return err;
        p = &in->p;
    }
    if (is_string_param(paramid)) return get_string(p, paramid, szParam, cbMax);
    if (!plParam) return JET_errInvalidParameter;
    uint32_t lo, hi, *slot = int_slot(paramid, p, &lo, &hi);
    if (paramid == 64) *plParam = g_cb_page;
    else if (paramid == 104) *plParam = g_max_instances;
    else if (paramid == 155) *plParam = g_disable_block_verification;
    else if (slot) *plParam = *slot;
    else if (paramid < 256) *plParam = 0;
    else return JET_errInvalidParameter;
    return JET_errSuccess;
}

/* ---------- instances ---------- */

static JET_ERR create_instance(JET_INSTANCE *pinstance, const WCHAR *wname, sim_inst **out)
{
    char name[256] = "";
    if (wname && !wstr_to_utf8(wname, name, sizeof name)) return JET_errInvalidParameter;
    int used = 0, slot = -1;
    for (int i = 0; i < SIM_MAX_INSTANCES; i++) {
        if (g_inst[i].state == INST_FREE) { if (slot < 0) slot = i; continue; }
        used++;
        if (name[0] && strcmp(g_inst[i].name, name) == 0) return JET_errInstanceNameInUse;
    }
    if (used >= (int)g_max_instances || slot < 0) return JET_errTooManyInstances;
    sim_inst *in = &g_inst[slot];
    memset(in, 0, sizeof *in);
    in->state = INST_CREATED;
    strcpy(in->name, name);
    in->p = *defaults();
    in->bk.fd = -1;
    for (int i = 0; i < SIM_MAX_DBS; i++) in->db[i].fd = -1;
    if (pinstance) *pinstance = (JET_INSTANCE)in;
    *out = in;
    return JET_errSuccess;
}

EXPORT JET_ERR JetCreateInstance2W(JET_INSTANCE *pinstance, const WCHAR *szInstanceName,
                                   const WCHAR *szDisplayName, JET_GRBIT grbit)
{
    (void)szDisplayName; (void)grbit;
    JET_ERR err = fault_check("JetCreateInstance2W");
    sim_inst *in = NULL;
    if (err) return err;
    if (!pinstance) return JET_errInvalidParameter;
    if (g_mode == MODE_ONE) return JET_errRunningInOneInstanceMode;
    err = create_instance(pinstance, szInstanceName, &in);
    if (err == JET_errSuccess) g_mode = MODE_MULTI;
    return err;
}

EXPORT JET_ERR JetCreateInstanceW(JET_INSTANCE *pinstance, const WCHAR *szInstanceName)
{
    return JetCreateInstance2W(pinstance, szInstanceName, NULL, 0);
}

static JET_ERR ensure_dir(const char *dir, bool create)
{
    struct stat st;
    if (stat(dir, &st) == 0) return S_ISDIR(st.st_mode) ? JET_errSuccess : JET_errInvalidPath;
    if (!create) return JET_errInvalidPath;
    char tmp[SIM_PATH_MAX];
    fmt(tmp, sizeof tmp, "%s", dir);
    for (char *s = tmp + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return JET_errInvalidPath;
        *s = '/';
    }
    return JET_errSuccess;
}

/* The existing stream: current log checks, checkpoint, generations checkpoint..current. */
static JET_ERR open_existing_stream(sim_inst *in, const uint8_t *hdr, uint64_t size)
{
    uint32_t cb = rd16(hdr + LGH_PAGESIZE) ? rd16(hdr + LGH_PAGESIZE) : 4096;
    if (cb != g_cb_page) return JET_errPageSizeMismatch;
    if (in->p.log_file_size_set && size != (uint64_t)in->p.log_file_size_kb * 1024u)
        return JET_errLogFileSizeMismatch;
    in->p.log_file_size_kb = (uint32_t)(size / 1024);
    log_open_stream(in, hdr, size);
    char chk[SIM_PATH_MAX];
    uint8_t copy[CHK_COPY_BYTES];
    chk_name(in, chk, sizeof chk);
    int32_t first = log_oldest_on_disk(in);
    JET_ERR err = chk_read(chk, copy);
    if (err == JET_errSuccess) {
        if (memcmp(copy + CHK_SIGNLOG, in->s.sign_log, 28) != 0) return JET_errBadCheckpointSignature;
        first = lgpos_get(copy + CHK_LGPOS).gen;
    } else if (err != JET_errCheckpointFileNotFound) {
        return err;
    }
    if (first <= 0 || first > in->s.gen) first = in->s.gen;
    for (int32_t g = first; g < in->s.gen; g++)
        if ((err = log_gen_exists(in, g, in->s.sign_log)) != JET_errSuccess) return err;
    return JET_errSuccess;
}

/* JetInit at header level (README "Recovery"): verify or create the log stream. */
static JET_ERR init_stream(sim_inst *in, JET_GRBIT grbit)
{
    JET_ERR err = ensure_dir(in->p.log_path, in->p.create_path);
    if (!err) err = ensure_dir(in->p.system_path, in->p.create_path);
    if (err || strcasecmp(in->p.recovery, "off") == 0) return err;
    char cur[SIM_PATH_MAX], chk[SIM_PATH_MAX], real[SIM_PATH_MAX];
    uint8_t hdr[LOG_HDR_BYTES];
    uint64_t size;
    log_current_name(in, cur, sizeof cur);
    err = loghdr_read(cur, hdr, &size);
    if (err == JET_errSuccess) return open_existing_stream(in, hdr, size);
    if (err != JET_errMissingLogFile) return err;
    chk_name(in, chk, sizeof chk);
    if (log_oldest_on_disk(in) > 0 || resolve_ci(chk, real, sizeof real)) return JET_errMissingLogFile;
    if (grbit & INIT_LOGSTREAMMUSTEXIST) return JET_errFileNotFound;
    return log_create_new_stream(in);
}

static JET_ERR init_instance(sim_inst *in, JET_GRBIT grbit)
{
    if (in->state == INST_RUNNING) return JET_errAlreadyInitialized;
    JET_ERR err = init_stream(in, grbit);
    if (err) { memset(&in->s, 0, sizeof in->s); return err; }
    in->state = INST_RUNNING;
    in->backup_allowed = true;
    return JET_errSuccess;
}

EXPORT JET_ERR JetInit3W(JET_INSTANCE *pinstance, void *prstInfo, JET_GRBIT grbit)
{
    (void)prstInfo;
    JET_ERR err = fault_check("JetInit3W");
    sim_inst *in = NULL;
    if (err) return err;
    if (!pinstance || is_nil(*pinstance)) {
        if (g_mode == MODE_MULTI) return JET_errInvalidParameter;
        if (g_mode == MODE_ONE) return JET_errAlreadyInitialized;
        if ((err = create_instance(NULL, NULL, &in)) != JET_errSuccess) return err;
        in->implicit = true;
        g_mode = MODE_ONE;
        if ((err = init_instance(in, grbit)) != JET_errSuccess) { inst_free(in); g_mode = MODE_NONE; return err; }
        if (pinstance) *pinstance = (JET_INSTANCE)in;
        return JET_errSuccess;
    }
    in = inst_lookup(*pinstance, &err);
    return in ? init_instance(in, grbit) : err;
}

EXPORT JET_ERR JetInit2(JET_INSTANCE *pinstance, JET_GRBIT grbit) { return JetInit3W(pinstance, NULL, grbit); }
EXPORT JET_ERR JetInit(JET_INSTANCE *pinstance) { return JetInit3W(pinstance, NULL, 0); }

/* §1.1 "JetTerm while a backup runs" */
EXPORT JET_ERR JetTerm2(JET_INSTANCE instance, JET_GRBIT grbit)
{
    JET_ERR err = fault_check("JetTerm2");
    if (err) return err;
    sim_inst *in = inst_lookup(instance, &err);
    if (!in) return err;
    if (in->state != INST_RUNNING) { inst_free(in); return JET_errSuccess; }
    bool dirty = grbit & TERM_DIRTY;
    if (in->bk.status != BK_NONE && !dirty) {
        if (!(grbit & (TERM_ABRUPT | TERM_STOPBACKUP))) {
            in->backup_allowed = false;
            return JET_errBackupInProgress;
        }
        in->bk.stopped = true;
        bk_end(in, BKEND_ABORT);
    }
    for (int i = 0; i < SIM_MAX_DBS; i++)
        if (in->db[i].used) db_detach(in, i, !dirty);
    if (in->s.records && !dirty) log_record(in, LR_TERM, 0, NULL, 0, NULL, 0);
    if (in->s.present && !dirty) {
        char chk[SIM_PATH_MAX];
        lgpos_t pos = { 0, in->s.csec_header, in->s.gen };
        chk_name(in, chk, sizeof chk);
        chk_write_gen(chk, in->s.sign_log, pos, true);
    }
    bool implicit = in->implicit;
    inst_free(in);
    if (implicit) g_mode = MODE_NONE;
    return JET_errSuccess;
}

/* JetTerm(instance) == JetTerm2(instance, JET_bitTermAbrupt) (§2.3) */
EXPORT JET_ERR JetTerm(JET_INSTANCE instance) { return JetTerm2(instance, TERM_ABRUPT); }

EXPORT JET_ERR JetStopServiceInstance2(JET_INSTANCE instance, JET_GRBIT grbit)
{
    JET_ERR err = fault_check("JetStopServiceInstance");
    sim_inst *in = NULL;
    if (err) return err;
    if ((err = inst_gate(instance, &in)) != JET_errSuccess) return err;
    in->stop_service = !(grbit & 0x80000000u);
    return JET_errSuccess;
}

/* After it every call on the instance, End included, returns -1329 (§1). */
EXPORT JET_ERR JetStopServiceInstance(JET_INSTANCE instance) { return JetStopServiceInstance2(instance, 0); }

/* ---------- sessions ---------- */

EXPORT JET_ERR JetBeginSessionW(JET_INSTANCE instance, JET_SESID *psesid, const WCHAR *szUserName,
                                const WCHAR *szPassword)
{
    (void)szUserName; (void)szPassword;
    JET_ERR err = fault_check("JetBeginSessionW");
    sim_inst *in = NULL;
    if (err) return err;
    if ((err = inst_gate(instance, &in)) != JET_errSuccess) return err;
    if (!psesid) return JET_errInvalidParameter;
    for (int i = 0; i < SIM_MAX_SESSIONS; i++) {
        if (g_sess[i].used) continue;
        memset(&g_sess[i], 0, sizeof g_sess[i]);
        g_sess[i].used = true;
        g_sess[i].in = in;
        *psesid = (JET_SESID)&g_sess[i];
        return JET_errSuccess;
    }
    return JET_errOutOfMemory;
}

/* session -> its instance through the gate; -1104 for a bad session */
JET_ERR sess_lookup(JET_SESID sesid, sim_sess **ps, sim_inst **pin)
{
    uintptr_t base = (uintptr_t)g_sess, end = base + sizeof g_sess;
    if (sesid < base || sesid >= end || (sesid - base) % sizeof g_sess[0] != 0)
        return JET_errInvalidSesid;
    size_t i = (sesid - base) / sizeof g_sess[0];
    if (!g_sess[i].used) return JET_errInvalidSesid;
    if (ps) *ps = &g_sess[i];
    return inst_gate((JET_INSTANCE)g_sess[i].in, pin);
}

JET_ERR sess_gate(JET_SESID sesid, sim_inst **out) { return sess_lookup(sesid, NULL, out); }

int sess_index(const sim_sess *s) { return (int)(s - g_sess); }

EXPORT JET_ERR JetEndSession(JET_SESID sesid, JET_GRBIT grbit)
{
    (void)grbit;
    JET_ERR err = fault_check("JetEndSession");
    sim_inst *in = NULL;
    if (err) return err;
    uintptr_t base = (uintptr_t)g_sess, end = base + sizeof g_sess;
    if (sesid < base || sesid >= end || (sesid - base) % sizeof g_sess[0] != 0 ||
        !g_sess[(sesid - base) / sizeof g_sess[0]].used)
        return JET_errInvalidSesid;
    sim_sess *s = NULL;
    if ((err = sess_lookup(sesid, &s, &in)) != JET_errSuccess) return err;
    work_end_session(s, true);
    memset(s, 0, sizeof *s);
    return JET_errSuccess;
}
