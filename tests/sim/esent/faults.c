// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* faults.c: ESESIM_PROFILE, ESESIM_FAULTS (architecture.md §1) and the
 * test-only EseSimReset export.
 *
 * ESESIM_FAULTS is a JSON list of objects {"api": "<export>", "call": n,
 * "err": e, "every": bool}. A small recursive-descent parser reads it; an
 * unparsable value disables all faults and prints one line on stderr. */
#include "esesim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FAULTS 64
#define MAX_APIS 64
#define API_NAME 64

typedef struct { char api[API_NAME]; long call; long err; bool every; } fault_t;
typedef struct { char api[API_NAME]; long count; } counter_t;

static fault_t g_faults[MAX_FAULTS];
static int g_nfaults;
static counter_t g_counters[MAX_APIS];
static int g_ncounters;
static bool g_loaded;
static bool g_xp;

/* ---------- JSON ---------- */

typedef struct { const char *p; bool ok; } jp_t;

static void jp_ws(jp_t *j) { while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r') j->p++; }
static bool jp_eat(jp_t *j, char c) { jp_ws(j); if (*j->p != c) return false; j->p++; return true; }
static void jp_fail(jp_t *j) { j->ok = false; }

/* string into out (may be NULL); \uXXXX escapes outside ASCII become '?' */
static void jp_string(jp_t *j, char *out, size_t cap)
{
    size_t n = 0;
    if (!jp_eat(j, '"')) { jp_fail(j); return; }
    while (j->ok && *j->p && *j->p != '"') {
        char c = *j->p++;
        if (c == '\\') {
            char e = *j->p++;
            if (e == 'u') {
                unsigned v = 0;
                for (int i = 0; i < 4; i++) {
                    char h = *j->p++;
                    int d = (h >= '0' && h <= '9') ? h - '0' : (h | 32) >= 'a' && (h | 32) <= 'f' ? (h | 32) - 'a' + 10 : -1;
                    if (d < 0) { jp_fail(j); return; }
                    v = v << 4 | (unsigned)d;
                }
                c = v < 0x80 ? (char)v : '?';
            } else {
                const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
                const char *k = e ? strchr(from, e) : NULL;
                if (!k) { jp_fail(j); return; }
                c = to[k - from];
            }
        }
        if (out && n + 1 < cap) out[n++] = c;
    }
    if (!jp_eat(j, '"')) jp_fail(j);
    if (out) out[n] = 0;
}

static long jp_number(jp_t *j)
{
    char *end;
    jp_ws(j);
    double v = strtod(j->p, &end);
    if (end == j->p) { jp_fail(j); return 0; }
    j->p = end;
    return (long)v;
}

static void jp_skip_value(jp_t *j, int depth);

static void jp_skip_container(jp_t *j, char open, char close, int depth)
{
    if (!jp_eat(j, open)) { jp_fail(j); return; }
    if (jp_eat(j, close)) return;
    do {
        if (open == '{') { jp_string(j, NULL, 0); if (!jp_eat(j, ':')) jp_fail(j); }
        jp_skip_value(j, depth + 1);
    } while (j->ok && jp_eat(j, ','));
    if (!jp_eat(j, close)) jp_fail(j);
}

static bool jp_literal(jp_t *j, const char *lit)
{
    jp_ws(j);
    size_t n = strlen(lit);
    if (strncmp(j->p, lit, n) != 0) return false;
    j->p += n;
    return true;
}

static void jp_skip_value(jp_t *j, int depth)
{
    jp_ws(j);
    if (depth > 32) jp_fail(j);
    else if (*j->p == '"') jp_string(j, NULL, 0);
    else if (*j->p == '{') jp_skip_container(j, '{', '}', depth);
    else if (*j->p == '[') jp_skip_container(j, '[', ']', depth);
    else if (!jp_literal(j, "true") && !jp_literal(j, "false") && !jp_literal(j, "null")) jp_number(j);
}

static bool jp_bool(jp_t *j)
{
    if (jp_literal(j, "true")) return true;
    if (jp_literal(j, "false") || jp_literal(j, "null")) return false;
    return jp_number(j) != 0;
}

static void jp_fault(jp_t *j, fault_t *f)
{
    memset(f, 0, sizeof *f);
    f->call = 1;
    if (!jp_eat(j, '{')) { jp_fail(j); return; }
    if (jp_eat(j, '}')) return;
    do {
        char key[32];
        jp_string(j, key, sizeof key);
        if (!jp_eat(j, ':')) { jp_fail(j); return; }
        if (strcmp(key, "api") == 0) jp_string(j, f->api, sizeof f->api);
        else if (strcmp(key, "call") == 0) f->call = jp_number(j);
        else if (strcmp(key, "err") == 0) f->err = jp_number(j);
        else if (strcmp(key, "every") == 0) f->every = jp_bool(j);
        else jp_skip_value(j, 1);
    } while (j->ok && jp_eat(j, ','));
    if (!jp_eat(j, '}')) jp_fail(j);
}

static void parse_faults(const char *text)
{
    jp_t j = { text, true };
    g_nfaults = 0;
    if (!jp_eat(&j, '[')) jp_fail(&j);
    else if (!jp_eat(&j, ']')) {
        do {
            fault_t f;
            jp_fault(&j, &f);
            if (j.ok && g_nfaults < MAX_FAULTS) g_faults[g_nfaults++] = f;
        } while (j.ok && jp_eat(&j, ','));
        if (!jp_eat(&j, ']')) jp_fail(&j);
    }
    jp_ws(&j);
    if (!j.ok || *j.p) {
        fprintf(stderr, "esesim: ESESIM_FAULTS is not a valid JSON list; faults disabled\n");
        g_nfaults = 0;
    }
}

/* ---------- profile, counters, faults ---------- */

void faults_reload(void)
{
    const char *faults = getenv("ESESIM_FAULTS");
    const char *profile = getenv("ESESIM_PROFILE");
    g_nfaults = 0;
    g_ncounters = 0;
    if (faults && *faults) parse_faults(faults);
    g_xp = profile && strcmp(profile, "xp") == 0;
    g_loaded = true;
}

bool profile_xp(void)
{
    if (!g_loaded) faults_reload();
    return g_xp;
}

static long bump_counter(const char *api)
{
    for (int i = 0; i < g_ncounters; i++)
        if (strcmp(g_counters[i].api, api) == 0) return ++g_counters[i].count;
    if (g_ncounters == MAX_APIS) return 0;
    snprintf(g_counters[g_ncounters].api, API_NAME, "%s", api);
    g_counters[g_ncounters].count = 1;
    return g_counters[g_ncounters++].count;
}

/* Counts a call of api; returns the injected error for this call, or 0. */
JET_ERR fault_check(const char *api)
{
    if (!g_loaded) faults_reload();
    long n = bump_counter(api);
    for (int i = 0; i < g_nfaults; i++) {
        const fault_t *f = &g_faults[i];
        if (strcmp(f->api, api) == 0 && (n == f->call || (f->every && n >= f->call)))
            return (JET_ERR)f->err;
    }
    return JET_errSuccess;
}

/* Test-only export: re-reads the environment, clears every instance, session,
 * global parameter and call counter, as if the process had just started. */
EXPORT void EseSimReset(void)
{
    inst_reset_all();
    disk_reset();
    faults_reload();
}
