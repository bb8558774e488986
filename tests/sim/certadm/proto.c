// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* proto.c: framing, message fields, UTF-16 strings and the HRESULT form of ESE errors,
 * shared by the simulated certadm.dll and the simulated CA service. */
#include "certsim.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void put(cs_msg *m, const void *data, size_t n)
{
    if (m->oom) return;
    if (m->n + n > m->cap) {
        size_t cap = m->cap ? m->cap : 256;
        while (cap < m->n + n) cap *= 2;
        uint8_t *p = realloc(m->p, cap);
        if (!p) { m->oom = true; return; }
        m->p = p;
        m->cap = cap;
    }
    memcpy(m->p + m->n, data, n);
    m->n += n;
}

void cs_msg_raw(cs_msg *m, const void *data, size_t n) { put(m, data, n); }
void cs_msg_u32(cs_msg *m, uint32_t v) { put(m, &v, 4); }
void cs_msg_u64(cs_msg *m, uint64_t v) { put(m, &v, 8); }
void cs_msg_blob(cs_msg *m, const void *data, uint32_t n) { cs_msg_u32(m, n); if (n) put(m, data, n); }
void cs_msg_str(cs_msg *m, const char *s) { cs_msg_blob(m, s, (uint32_t)strlen(s)); }
void cs_msg_free(cs_msg *m) { free(m->p); memset(m, 0, sizeof *m); }

static const uint8_t *take(cs_rd *r, size_t n)
{
    if (r->bad || r->n - r->o < n) { r->bad = true; return NULL; }
    const uint8_t *p = r->p + r->o;
    r->o += n;
    return p;
}

uint32_t cs_rd_u32(cs_rd *r) { uint32_t v = 0; const uint8_t *p = take(r, 4); if (p) memcpy(&v, p, 4); return v; }
uint64_t cs_rd_u64(cs_rd *r) { uint64_t v = 0; const uint8_t *p = take(r, 8); if (p) memcpy(&v, p, 8); return v; }

const uint8_t *cs_rd_blob(cs_rd *r, uint32_t *n)
{
    *n = cs_rd_u32(r);
    const uint8_t *p = take(r, *n);
    if (!p) *n = 0;
    return p;
}

bool cs_rd_str(cs_rd *r, char *out, size_t cap)
{
    uint32_t n;
    const uint8_t *p = cs_rd_blob(r, &n);
    if (r->bad || n >= cap) { out[0] = 0; return false; }
    memcpy(out, p, n);
    out[n] = 0;
    return true;
}

static bool send_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

static bool recv_all(int fd, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t k = recv(fd, p, n, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

bool cs_send_frame(int fd, uint32_t head, const cs_msg *body)
{
    size_t n = body ? body->n : 0;
    if ((body && body->oom) || n + 4 > CS_MAX_FRAME) return false;
    uint32_t hdr[2] = { (uint32_t)(n + 4), head };
    return send_all(fd, hdr, sizeof hdr) && (n == 0 || send_all(fd, body->p, n));
}

/* *body is malloc'd (free it); false on EOF, a broken connection or an oversized frame */
bool cs_recv_frame(int fd, uint32_t *head, uint8_t **body, size_t *n)
{
    uint32_t hdr[2];
    *body = NULL;
    *n = 0;
    if (!recv_all(fd, hdr, sizeof hdr) || hdr[0] < 4 || hdr[0] > CS_MAX_FRAME) return false;
    *head = hdr[1];
    *n = hdr[0] - 4;
    *body = malloc(*n ? *n : 1);
    if (!*body) return false;
    if (*n && !recv_all(fd, *body, *n)) { free(*body); *body = NULL; return false; }
    return true;
}

/* ntdsbmsg.h: FACILITY_NTDSB 0x800; errors 0xC800xxxx = -(xxxx), warnings 0x8800xxxx */
HRESULT cs_hr_from_jet(int32_t err)
{
    if (err == 0) return CS_S_OK;
    if (err < 0) return CS_HR(0xC8000000u | ((uint32_t)-err & 0xFFFFu));
    return CS_HR(0x88000000u | ((uint32_t)err & 0xFFFFu));
}

size_t cs_w16_len(const CS_WCHAR *w)
{
    size_t n = 0;
    while (w[n]) n++;
    return n;
}

bool cs_w16_to_utf8(const CS_WCHAR *w, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; w[i]; i++) {
        uint32_t cp = w[i];
        if (cp >= 0xD800 && cp < 0xDC00 && w[i + 1] >= 0xDC00 && w[i + 1] < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (w[i + 1] - 0xDC00u);
            i++;
        }
        if (o + 5 >= cap) return false;
        if (cp < 0x80) out[o++] = (char)cp;
        else if (cp < 0x800) { out[o++] = (char)(0xC0 | cp >> 6); out[o++] = (char)(0x80 | (cp & 0x3F)); }
        else if (cp < 0x10000) {
            out[o++] = (char)(0xE0 | cp >> 12); out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (cp & 0x3F));
        } else {
            out[o++] = (char)(0xF0 | cp >> 18); out[o++] = (char)(0x80 | ((cp >> 12) & 0x3F));
            out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[o++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    out[o] = 0;
    return true;
}

/* UTF-8 -> UTF-16 code units, no terminator; returns the units needed */
size_t cs_utf8_to_w16(const char *s, CS_WCHAR *out, size_t cap_units)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t n = 0;
    while (*p) {
        uint32_t cp = *p++;
        int extra = cp >= 0xF0 ? 3 : cp >= 0xE0 ? 2 : cp >= 0xC0 ? 1 : 0;
        if (extra) cp &= 0x3Fu >> extra;
        for (; extra && (*p & 0xC0) == 0x80; extra--) cp = cp << 6 | (*p++ & 0x3Fu);
        if (cp >= 0x10000) {
            cp -= 0x10000;
            if (out && n + 1 < cap_units) { out[n] = (CS_WCHAR)(0xD800 + (cp >> 10)); out[n + 1] = (CS_WCHAR)(0xDC00 + (cp & 0x3FF)); }
            n += 2;
        } else {
            if (out && n < cap_units) out[n] = (CS_WCHAR)cp;
            n++;
        }
    }
    return n;
}

/* "\\CA01.corp.example" -> "ca01": leading separators dropped, first DNS label, lower case */
void cs_socket_name(const char *server, char *label, size_t cap)
{
    while (*server == '\\' || *server == '/') server++;
    size_t o = 0;
    for (; *server && *server != '.' && o + 1 < cap; server++)
        label[o++] = (char)tolower((unsigned char)*server);
    label[o] = 0;
}

bool cs_socket_path(const char *dir, const char *label, char *out, size_t cap)
{
    struct sockaddr_un sa;
    int n = snprintf(out, cap, "%s/%s.sock", dir, label);
    return n > 0 && (size_t)n < cap && (size_t)n < sizeof sa.sun_path && label[0];
}
