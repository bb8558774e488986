// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* format.c: database headers, checkpoint files, log headers, log names,
 * log stream creation and the log roll (ese-file-format.md §2, §6, §7;
 * ese-backup-semantics.md §5.1, §5.2). */
#include "esesim.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const uint32_t k_page_sizes[] = { 4096, 8192, 16384, 32768, 2048 };

/* ---------- database header ---------- */

static bool db_copy_valid(const uint8_t *p, uint32_t cb)
{
    uint32_t stored = rd32(p + HDR_PAGESIZE);
    return rd32(p + HDR_MAGIC) == DB_MAGIC && rd32(p) == xor_old(p, cb) &&
           (stored == cb || (stored == 0 && cb == 4096));
}

/* Shadowed header read with page-size detection (ese-file-format.md §1).
 * page must hold 32 KiB. -1812 if no copy carries the DB magic, -1018 if
 * the magic is there but no copy verifies. */
JET_ERR db_read_header_fd(int fd, uint8_t *page, uint32_t *cb_page)
{
    static uint8_t shadow[32768];
    size_t got;
    memset(page, 0, 32768);
    if (!io_pread_full(fd, page, 32768, 0, &got)) return JET_errDiskIO;
    bool magic = got >= 8 && rd32(page + HDR_MAGIC) == DB_MAGIC;
    for (size_t i = 0; i < sizeof k_page_sizes / sizeof *k_page_sizes; i++) {
        uint32_t cb = k_page_sizes[i];
        if (got >= cb && db_copy_valid(page, cb)) { *cb_page = cb; return JET_errSuccess; }
        size_t g2;
        memset(shadow, 0, cb);
        if (io_pread_full(fd, shadow, cb, cb, &g2) && g2 == cb) {
            magic = magic || rd32(shadow + HDR_MAGIC) == DB_MAGIC;
            if (db_copy_valid(shadow, cb)) {
                memcpy(page, shadow, cb);
                *cb_page = cb;
                return JET_errSuccess;
            }
        }
    }
    return magic ? JET_errReadVerifyFailure : JET_errFileInvalidType;
}

JET_ERR db_read_header(const char *path, uint8_t *page, uint32_t *cb_page)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? JET_errFileNotFound : JET_errFileAccessDenied;
    JET_ERR err = db_read_header_fd(fd, page, cb_page);
    close(fd);
    return err;
}

/* Writes both header copies with the checksum recomputed (§6.2). */
JET_ERR db_write_header_fd(int fd, uint8_t *page, uint32_t cb_page)
{
    wr32(page, xor_old(page, cb_page));
    if (!io_pwrite_full(fd, page, cb_page, 0) || !io_pwrite_full(fd, page, cb_page, cb_page))
        return JET_errDiskIO;
    fdatasync(fd);
    return JET_errSuccess;
}

void bkinfo_get(const uint8_t *p, bkinfo_t *bk)
{
    bk->mark = lgpos_get(p);
    memcpy(bk->logtime, p + 8, 8);
    bk->genLow = rd32(p + 16);
    bk->genHigh = rd32(p + 20);
}

void bkinfo_put(uint8_t *p, const bkinfo_t *bk)
{
    lgpos_put(p, bk->mark);
    memcpy(p + 8, bk->logtime, 8);
    wr32(p + 16, bk->genLow);
    wr32(p + 20, bk->genHigh);
}

/* ---------- checkpoint (ese-file-format.md §7) ---------- */

static bool chk_copy_valid(const uint8_t *p)
{
    return !page_is_zero(p, CHK_COPY_BYTES) && rd32(p) == xor_old(p, CHK_COPY_BYTES);
}

JET_ERR chk_read(const char *path, uint8_t copy[CHK_COPY_BYTES])
{
    char real[SIM_PATH_MAX];
    uint8_t buf[2 * CHK_COPY_BYTES] = { 0 };
    size_t got;
    if (!resolve_ci(path, real, sizeof real)) return JET_errCheckpointFileNotFound;
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return JET_errCheckpointFileNotFound;
    bool ok = io_pread_full(fd, buf, sizeof buf, 0, &got);
    close(fd);
    if (!ok) return JET_errCheckpointCorrupt;
    for (int i = 0; i < 2; i++) {
        if (chk_copy_valid(buf + i * CHK_COPY_BYTES)) {
            memcpy(copy, buf + i * CHK_COPY_BYTES, CHK_COPY_BYTES);
            return JET_errSuccess;
        }
    }
    return JET_errCheckpointCorrupt;
}

/* Sets lgposCheckpoint (and signLog) in both copies; creates the file if asked. */
JET_ERR chk_write_gen(const char *path, const uint8_t sign_log[28], lgpos_t pos, bool create)
{
    uint8_t copy[CHK_COPY_BYTES];
    char real[SIM_PATH_MAX];
    bool exists = resolve_ci(path, real, sizeof real);
    if (!exists && !create) return JET_errCheckpointFileNotFound;
    if (!exists || chk_read(real, copy) != JET_errSuccess) {
        memset(copy, 0, sizeof copy);
        wr32(copy + HDR_FILETYPE, FILETYPE_CHK);
        if (!exists) {
            JET_ERR err = disk_reserve(2 * CHK_COPY_BYTES);
            if (err) return err;
            fmt(real, sizeof real, "%s", path);
        }
    }
    lgpos_put(copy + CHK_LGPOS, pos);
    memcpy(copy + CHK_SIGNLOG, sign_log, 28);
    wr32(copy, xor_old(copy, CHK_COPY_BYTES));
    int fd = open(real, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return JET_errFileAccessDenied;
    bool ok = io_pwrite_full(fd, copy, CHK_COPY_BYTES, 0) &&
              io_pwrite_full(fd, copy, CHK_COPY_BYTES, CHK_COPY_BYTES);
    close(fd);
    return ok ? JET_errSuccess : JET_errDiskIO;
}

/* ---------- log headers and names ---------- */

bool loghdr_valid(const uint8_t *hdr)
{
    uint32_t ft = rd32(hdr + HDR_FILETYPE);
    return !page_is_zero(hdr, LOG_HDR_BYTES) && rd32(hdr) == xor_old(hdr, LOG_HDR_BYTES) &&
           (ft == 0 || ft == FILETYPE_LOG);
}

/* -528 missing, -501 unreadable or bad checksum */
JET_ERR loghdr_read(const char *path, uint8_t hdr[LOG_HDR_BYTES], uint64_t *size)
{
    char real[SIM_PATH_MAX];
    struct stat st;
    size_t got;
    if (!resolve_ci(path, real, sizeof real)) return JET_errMissingLogFile;
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return JET_errMissingLogFile;
    memset(hdr, 0, LOG_HDR_BYTES);
    bool ok = io_pread_full(fd, hdr, LOG_HDR_BYTES, 0, &got) && fstat(fd, &st) == 0;
    close(fd);
    if (size) *size = ok ? (uint64_t)st.st_size : 0;
    return ok && got == LOG_HDR_BYTES && loghdr_valid(hdr) ? JET_errSuccess : JET_errLogFileCorrupt;
}

static const char *log_ext(const sim_inst *in) { return (in->p.legacy_names & 1) ? "log" : "jtx"; }

/* §5.2: 3-char base + upper-case hex (5 digits up to 0xFFFFF with bit 0x2, else 8) */
void log_name(const sim_inst *in, int32_t gen, char *out, size_t cap)
{
    int digits = ((in->p.legacy_names & 2) && (uint32_t)gen <= 0xFFFFFu) ? 5 : 8;
    fmt(out, cap, "%s%s%0*X.%s", in->p.log_path, in->p.base_name, digits, (unsigned)gen, log_ext(in));
}

void log_current_name(const sim_inst *in, char *out, size_t cap)
{
    fmt(out, cap, "%s%s.%s", in->p.log_path, in->p.base_name, log_ext(in));
}

void chk_name(const sim_inst *in, char *out, size_t cap)
{
    fmt(out, cap, "%s%s.%s", in->p.system_path, in->p.base_name,
             (in->p.legacy_names & 1) ? "chk" : "jcp");
}

static int32_t parse_numbered(const sim_inst *in, const char *name)
{
    size_t n = strlen(name);
    const char *ext = log_ext(in);
    if (n < 3 + 5 + 4 || strncasecmp(name, in->p.base_name, 3) != 0) return 0;
    if (name[n - 4] != '.' || strcasecmp(name + n - 3, ext) != 0) return 0;
    size_t digits = n - 4 - 3;
    if (digits != 5 && digits != 8) return 0;
    uint32_t gen = 0;
    for (size_t i = 3; i < 3 + digits; i++) {
        char c = name[i];
        int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 :
                (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (v < 0) return 0;
        gen = gen << 4 | (uint32_t)v;
    }
    return gen > 0x7FFFFFFFu ? 0 : (int32_t)gen;
}

/* generation of a numbered log path (0 if the name does not parse) */
int32_t log_parse_gen(const sim_inst *in, const char *path)
{
    const char *slash = strrchr(path, '/');
    return parse_numbered(in, slash ? slash + 1 : path);
}

bool log_ext_matches(const sim_inst *in, const char *path)
{
    size_t n = strlen(path);
    return n > 4 && path[n - 4] == '.' && strcasecmp(path + n - 3, log_ext(in)) == 0;
}

/* oldest numbered log in the log path, 0 if none (§5.1 deleteMic) */
int32_t log_oldest_on_disk(const sim_inst *in)
{
    DIR *d = opendir(in->p.log_path);
    int32_t best = 0;
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d));) {
        int32_t g = parse_numbered(in, e->d_name);
        if (g > 0 && (best == 0 || g < best)) best = g;
    }
    closedir(d);
    return best;
}

/* header-level presence check of one generation: -528 missing, -501 corrupt,
 * -513 generation mismatch, -530 signature mismatch */
JET_ERR log_gen_exists(const sim_inst *in, int32_t gen, const uint8_t sign_log[28])
{
    char path[SIM_PATH_MAX];
    uint8_t hdr[LOG_HDR_BYTES];
    if (gen == in->s.gen) log_current_name(in, path, sizeof path);
    else log_name(in, gen, path, sizeof path);
    JET_ERR err = loghdr_read(path, hdr, NULL);
    if (err) return err;
    if ((int32_t)rd32(hdr + LGH_GEN) != gen) return JET_errLogGenerationMismatch;
    if (memcmp(hdr + LGH_SIGNLOG, sign_log, 28) != 0) return JET_errBadLogSignature;
    return JET_errSuccess;
}

/* ---------- writing logs ---------- */

/* callers reserve the disk space first (ESESIM_DISK_FREE) */
static JET_ERR write_log_file(const char *path, uint8_t *hdr, uint64_t size)
{
    wr32(hdr, xor_old(hdr, LOG_HDR_BYTES));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return errno == EEXIST ? JET_errDiskIO : JET_errFileAccessDenied;
    bool ok = io_pwrite_full(fd, hdr, LOG_HDR_BYTES, 0) && ftruncate(fd, (off_t)size) == 0;
    fdatasync(fd);
    close(fd);
    return ok ? JET_errSuccess : JET_errDiskIO;
}

static void stream_from_header(sim_stream *s, const uint8_t *hdr, uint64_t size)
{
    s->present = true;
    memcpy(s->sign_log, hdr + LGH_SIGNLOG, 28);
    s->gen = (int32_t)rd32(hdr + LGH_GEN);
    s->cb_sec = rd16(hdr + LGH_CBSEC);
    s->csec_header = rd16(hdr + LGH_CSECHDR);
    s->csec_file = rd16(hdr + LGH_CSECFILE);
    s->file_size = size;
    s->tip.gen = s->gen;
    s->tip.isec = s->csec_header;
    s->tip.ib = 0;
    memcpy(s->tm_create, hdr + LGH_TMCREATE, 8);
    s->sec_gen = 0;                    /* no sector buffered */
    s->writable = false;
}

/* A new log stream (empty log path): <base>.log gen 1 and a checkpoint. */
JET_ERR log_create_new_stream(sim_inst *in)
{
    uint8_t hdr[LOG_HDR_BYTES] = { 0 };
    char path[SIM_PATH_MAX];
    uint64_t size = (uint64_t)in->p.log_file_size_kb * 1024u;
    wr32(hdr + LGH_GEN, 1);
    wr16(hdr + LGH_CBSEC, 4096);
    wr16(hdr + LGH_CSECHDR, 1);
    wr16(hdr + LGH_CSECFILE, (uint16_t)(size / 4096));
    wr16(hdr + LGH_PAGESIZE, (uint16_t)(g_cb_page == 32768 ? 0 : g_cb_page));
    logtime_now(hdr + LGH_TMCREATE);
    wr32(hdr + LGH_MAJOR, 8);
    wr32(hdr + LGH_MINOR, 4000);
    wr32(hdr + LGH_UPDMAJOR, 90);
    wr32(hdr + LGH_UPDMINOR, 200);
    wr32(hdr + LGH_SIGNLOG, (uint32_t)rand() ^ (uint32_t)time(NULL) ^ (uint32_t)getpid());
    memcpy(hdr + LGH_SIGNLOG + 4, hdr + LGH_TMCREATE, 8);
    hdr[LGH_FLAGS] = in->p.circular ? 0x2 : 0x0;
    lgpos_t chk = { 0, 1, 1 };
    lgpos_put(hdr + LGH_LGPOSCHK, chk);
    wr32(hdr + HDR_FILETYPE, FILETYPE_LOG);
    log_current_name(in, path, sizeof path);
    JET_ERR err = disk_reserve(size);
    if (err) return err;
    err = write_log_file(path, hdr, size);
    if (err) return err;
    stream_from_header(&in->s, hdr, size);
    in->s.writable = true;
    chk_name(in, path, sizeof path);
    return chk_write_gen(path, in->s.sign_log, chk, true);
}

/* Opens the existing stream at its current log (JetInit, §1 of the README). */
JET_ERR log_open_stream(sim_inst *in, const uint8_t *hdr, uint64_t size)
{
    stream_from_header(&in->s, hdr, size);
    return JET_errSuccess;
}

/* §5.1: <base>.log (gen N) becomes the numbered log; a new <base>.log gen N+1
 * gets a valid header (same signLog, cbSec, sizes; tmCreate now; tmPrevGen =
 * gen N's tmCreate; filetype 3; checksum recomputed; data sectors zero). */
JET_ERR log_roll(sim_inst *in)
{
    char cur[SIM_PATH_MAX], real[SIM_PATH_MAX], numbered[SIM_PATH_MAX];
    uint8_t hdr[LOG_HDR_BYTES];
    uint64_t size;
    log_current_name(in, cur, sizeof cur);
    JET_ERR err = loghdr_read(cur, hdr, &size);
    if (err) return err;
    int32_t gen = (int32_t)rd32(hdr + LGH_GEN);
    log_name(in, gen, numbered, sizeof numbered);
    if (resolve_ci(numbered, real, sizeof real)) return JET_errDiskIO;
    err = disk_reserve(size);
    if (err) return err;
    if (!resolve_ci(cur, real, sizeof real) || rename(real, numbered) != 0) return JET_errDiskIO;
    uint8_t prev_flags = hdr[LGH_FLAGS];
    wr32(hdr + LGH_GEN, (uint32_t)(gen + 1));
    memcpy(hdr + LGH_TMPREV, hdr + LGH_TMCREATE, 8);
    logtime_now(hdr + LGH_TMCREATE);
    wr32(hdr + HDR_FILETYPE, FILETYPE_LOG);
    hdr[LGH_FLAGS] = (uint8_t)((prev_flags & ~0x2u) | (in->p.circular ? 0x2u : 0u) |
                               ((prev_flags & 0x2u) ? 0x4u : 0u));
    err = write_log_file(cur, hdr, size);
    if (err) return err;
    stream_from_header(&in->s, hdr, size);
    in->s.writable = true;
    return JET_errSuccess;
}
