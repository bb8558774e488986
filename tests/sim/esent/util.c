// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* util.c: little-endian access, LOGTIME, UTF-16 strings, paths, I/O helpers. */
#include "esesim.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

void lgpos_put(uint8_t *p, lgpos_t pos)
{
    wr16(p, pos.ib);
    wr16(p + 2, pos.isec);
    wr32(p + 4, (uint32_t)pos.gen);
}

lgpos_t lgpos_get(const uint8_t *p)
{
    lgpos_t pos = { rd16(p), rd16(p + 2), (int32_t)rd32(p + 4) };
    return pos;
}

/* LGPOS compares in log order as (gen, isec, ib) (ese-file-format.md §3) */
uint64_t lgpos_key(lgpos_t pos)
{
    return ((uint64_t)(uint32_t)pos.gen << 32) | ((uint64_t)pos.isec << 16) | pos.ib;
}

/* LOGTIME of "now" in UTC with fTimeIsUTC set (ese-file-format.md §3) */
void logtime_now(uint8_t out[8])
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    unsigned ms = (unsigned)(tv.tv_usec / 1000);
    out[0] = (uint8_t)tm.tm_sec;
    out[1] = (uint8_t)tm.tm_min;
    out[2] = (uint8_t)tm.tm_hour;
    out[3] = (uint8_t)tm.tm_mday;
    out[4] = (uint8_t)(tm.tm_mon + 1);
    out[5] = (uint8_t)tm.tm_year;
    out[6] = (uint8_t)(1u | (ms & 0x7Fu) << 1);
    out[7] = (uint8_t)(((ms >> 7) & 0x7u) << 1);
}

size_t wstrlen16(const WCHAR *w)
{
    size_t n = 0;
    while (w[n])
        n++;
    return n;
}

static size_t put_utf8(uint32_t cp, char *o)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* UTF-16LE -> UTF-8; false if it does not fit */
bool wstr_to_utf8(const WCHAR *w, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; w[i]; i++) {
        uint32_t cp = w[i];
        if (cp >= 0xD800 && cp < 0xDC00 && w[i + 1] >= 0xDC00 && w[i + 1] < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (w[i + 1] - 0xDC00u);
            i++;
        }
        if (o + 4 >= cap)
            return false;
        o += put_utf8(cp, out + o);
    }
    out[o] = 0;
    return true;
}

/* UTF-8 -> UTF-16 code units (no terminator written); returns units needed */
size_t utf8_to_wstr(const char *s, WCHAR *out, size_t cap_units)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t n = 0;
    while (*p) {
        uint32_t cp = *p++;
        int extra = cp >= 0xF0 ? 3 : cp >= 0xE0 ? 2 : cp >= 0xC0 ? 1 : 0;
        if (extra) cp &= 0x3Fu >> extra;
        for (; extra && (*p & 0xC0) == 0x80; extra--)
            cp = cp << 6 | (*p++ & 0x3Fu);
        if (cp >= 0x10000) {
            cp -= 0x10000;
            if (out && n + 1 < cap_units) {
                out[n] = (WCHAR)(0xD800 + (cp >> 10));
                out[n + 1] = (WCHAR)(0xDC00 + (cp & 0x3FF));
            }
            n += 2;
        } else {
            if (out && n < cap_units)
                out[n] = (WCHAR)cp;
            n++;
        }
    }
    return n;
}

/* Path completion: absolute (relative to the cwd), '//' collapsed; folders end in '/'.
 * '\\' separates like '/', as in every Windows file API (a Windows name cannot hold one). */
bool path_absolute(const char *in_raw, char *out, size_t cap, bool folder)
{
    char tmp[SIM_PATH_MAX * 2], conv[SIM_PATH_MAX * 2];
    if (strlen(in_raw) >= sizeof conv) return false;
    for (size_t i = 0;; i++) {
        conv[i] = in_raw[i] == '\\' ? '/' : in_raw[i];
        if (!in_raw[i]) break;
    }
    const char *in = conv;
    if (in[0] == '/') {
        if (strlen(in) >= sizeof tmp) return false;
        strcpy(tmp, in);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) return false;
        const char *rel = (in[0] == '.' && (in[1] == '/' || in[1] == '\\')) ? in + 2 :
                          (in[0] == '.' && in[1] == 0) ? "" : in;
        if (!fmt(tmp, sizeof tmp, "%s/%s", cwd, rel)) return false;
    }
    size_t o = 0;
    for (size_t i = 0; tmp[i]; i++) {
        if (tmp[i] == '/' && o > 0 && out[o - 1] == '/') continue;
        if (o + 2 >= cap) return false;
        out[o++] = tmp[i];
    }
    if (folder && (o == 0 || out[o - 1] != '/')) out[o++] = '/';
    if (!folder && o > 1 && out[o - 1] == '/') o--;
    out[o] = 0;
    return true;
}

bool path_join(char *out, size_t cap, const char *dir, const char *name)
{
    size_t n = strlen(dir);
    const char *sep = (n && dir[n - 1] == '/') ? "" : "/";
    return fmt(out, cap, "%s%s%s", dir, sep, name);
}

/* Windows file names are case-insensitive: find an existing file whose last
 * component matches ignoring case. Returns false when none exists. */
bool resolve_ci(const char *path, char *out, size_t cap)
{
    struct stat st;
    if (strlen(path) >= cap) return false;
    if (stat(path, &st) == 0) { strcpy(out, path); return true; }
    const char *slash = strrchr(path, '/');
    if (!slash) return false;
    char dir[SIM_PATH_MAX];
    size_t dl = (size_t)(slash - path) + 1;
    if (dl >= sizeof dir) return false;
    memcpy(dir, path, dl);
    dir[dl] = 0;
    DIR *d = opendir(dir);
    if (!d) return false;
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d));) {
        if (strcasecmp(e->d_name, slash + 1) == 0)
            found = path_join(out, cap, dir, e->d_name);
    }
    closedir(d);
    return found;
}

/* ESESIM_DISK_FREE: bytes of new space the simulator may still write (architecture.md §1) */
static bool g_disk_loaded;
static bool g_disk_limited;
static uint64_t g_disk_free;

void disk_reset(void) { g_disk_loaded = false; }

JET_ERR disk_reserve(uint64_t bytes)
{
    if (!g_disk_loaded) {
        const char *v = getenv("ESESIM_DISK_FREE");
        g_disk_limited = v && *v;
        g_disk_free = g_disk_limited ? strtoull(v, NULL, 10) : 0;
        g_disk_loaded = true;
    }
    if (!g_disk_limited) return JET_errSuccess;
    if (bytes > g_disk_free) return JET_errDiskFull;
    g_disk_free -= bytes;
    return JET_errSuccess;
}

bool io_pread_full(int fd, void *buf, size_t n, uint64_t off, size_t *got)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, (uint8_t *)buf + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { *got = done; return false; }
        if (r == 0) break;
        done += (size_t)r;
    }
    *got = done;
    return true;
}

bool io_pwrite_full(int fd, const void *buf, size_t n, uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pwrite(fd, (const uint8_t *)buf + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        done += (size_t)r;
    }
    return true;
}

/* snprintf that reports truncation (paths are bounded by SIM_PATH_MAX) */
bool fmt(char *out, size_t cap, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(out, cap, f, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < cap;
}
