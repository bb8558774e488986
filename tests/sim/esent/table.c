// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* table.c: databases created by the simulator (JetCreateDatabaseW): the new
 * file, its page store and its catalog (ese-file-format.md §1, §2, §5).
 *
 * A new database is 256 pages (ESE's initial user database size: header,
 * shadow and 254 data pages) and grows by 256 pages. Pages 1-3 stand for the
 * database root and its space trees, pages 4-30 hold the catalog (the tables
 * and columns, rewritten whenever DDL commits), user data starts at page 31.
 * Each table owns a chain of data pages (pgnoPrev/pgnoNext in PGHDR) into which
 * committed records are appended as bytes. Every page carries a page header
 * (PGHDR, PGHDR2 for 16/32 KiB) with objidFDP, dbtimeDirtied, flags 0x2000
 * (new checksum format) and a valid XE checksum. The record and catalog layouts
 * are the simulator's own: no B-tree, no ESE record format. */
#include "esesim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "table.h"

#define DB_INITIAL_PAGES 256u          /* file pages, header and shadow included */
#define DB_EXTENSION_PAGES 256u
#define PGNO_ROOT 1u
#define PGNO_CATALOG 4u
#define PGNO_CATALOG_LAST 30u
#define PGNO_USER_FIRST 31u
#define PG_FLAG_ROOT 0x1u
#define PG_FLAG_LEAF 0x2u
#define PG_FLAG_SPACE 0x20u
#define PG_FLAG_NEWREC 0x800u
#define PG_FLAG_NEWCHECKSUM 0x2000u
#define OBJID_CATALOG 2u

static uint8_t g_hdr[32768];

uint32_t page_hdr_size(uint32_t cb) { return cb >= 16384 ? 80u : 40u; }

/* PGHDR fields (cpage.hxx): dbtimeDirtied@8, pgnoPrev@16, pgnoNext@20,
 * objidFDP@24, cbFree@28, ibMicFree@32, fFlags@36; then the checksums */
static JET_ERR write_page(sim_inst *in, int idx, uint8_t *page, uint32_t pgno, uint32_t objid, uint32_t prev,
                          uint32_t next, uint32_t used, uint32_t flags)
{
    sim_db *db = &in->db[idx];
    sim_dbwork *w = db->w;
    uint32_t cb = db->cb_page, hs = page_hdr_size(cb);
    w->dbtime++;
    memset(page, 0, hs);
    wr64(page + 8, w->dbtime);
    wr32(page + 16, prev);
    wr32(page + 20, next);
    wr32(page + 24, objid);
    wr16(page + 28, (uint16_t)(cb - hs - used));
    wr16(page + 32, (uint16_t)used);
    wr32(page + 36, flags | PG_FLAG_NEWCHECKSUM | PG_FLAG_NEWREC);
    page_seal(page, cb, pgno);
    return io_pwrite_full(db->fd, page, cb, ((uint64_t)pgno + 1) * cb) ? JET_errSuccess : JET_errDiskIO;
}

/* a new data page; the file grows by DB_EXTENSION_PAGES when it is full */
static JET_ERR alloc_page(sim_inst *in, int idx, uint32_t *pgno)
{
    sim_db *db = &in->db[idx];
    sim_dbwork *w = db->w;
    if (w->pgno_next > w->pgno_last) {
        JET_ERR err = disk_reserve((uint64_t)DB_EXTENSION_PAGES * db->cb_page);
        if (err) return err;
        uint64_t size = ((uint64_t)w->pgno_last + 2 + DB_EXTENSION_PAGES) * db->cb_page;
        if (ftruncate(db->fd, (off_t)size) != 0) return JET_errDiskIO;
        w->pgno_last += DB_EXTENSION_PAGES;
    }
    *pgno = w->pgno_next++;
    return JET_errSuccess;
}

/* ---------- catalog ---------- */

static void put_name(uint8_t *o, size_t *n, const char *name)
{
    size_t k = strlen(name);
    o[(*n)++] = (uint8_t)k;
    memcpy(o + *n, name, k);
    *n += k;
}

/* committed tables and columns, as records of the simulator's own layout */
static JET_ERR write_catalog(sim_inst *in, int idx)
{
    sim_db *db = &in->db[idx];
    sim_dbwork *w = db->w;
    uint32_t cb = db->cb_page, hs = page_hdr_size(cb), room = cb - hs;
    size_t cap = (size_t)(PGNO_CATALOG_LAST - PGNO_CATALOG + 1) * room, n = 0;
    uint8_t *buf = calloc(1, cap), *page = calloc(1, cb);
    JET_ERR err = JET_errSuccess;
    if (!buf || !page) { free(buf); free(page); return JET_errOutOfMemory; }
    for (int t = 0; t < SIM_MAX_TABLES; t++) {
        const sim_table *tb = &w->t[t];
        if (!tb->used || tb->pend_sess >= 0) continue;
        if (n + 96 > cap) break;
        buf[n++] = 1;
        wr32(buf + n, tb->objid); wr32(buf + n + 4, tb->pgno_fdp);
        wr32(buf + n + 8, tb->pages); wr32(buf + n + 12, tb->density);
        wr64(buf + n + 16, tb->nrec);
        n += 24;
        put_name(buf, &n, tb->name);
        for (int c = 0; c < tb->ncol; c++) {
            const sim_column *col = &tb->col[c];
            if (!col->used || col->pend_sess >= 0) continue;
            if (n + 96 > cap) break;
            buf[n++] = 2;
            wr32(buf + n, tb->objid); wr32(buf + n + 4, col->id); wr32(buf + n + 8, col->coltyp);
            wr32(buf + n + 12, col->cbMax); wr32(buf + n + 16, col->grbit);
            n += 20;
            put_name(buf, &n, col->name);
        }
    }
    uint32_t npages = (uint32_t)((n + room - 1) / room);
    if (npages == 0) npages = 1;
    for (uint32_t i = 0; i < npages && !err; i++) {
        uint32_t pgno = PGNO_CATALOG + i, used = (uint32_t)(n - i * room < room ? n - i * room : room);
        memset(page, 0, cb);
        memcpy(page + hs, buf + (size_t)i * room, used);
        err = write_page(in, idx, page, pgno, OBJID_CATALOG, i ? pgno - 1 : 0, i + 1 < npages ? pgno + 1 : 0, used,
                         i ? PG_FLAG_LEAF : PG_FLAG_ROOT | PG_FLAG_LEAF);
    }
    free(buf);
    free(page);
    w->catalog_dirty = false;
    return err;
}

/* ---------- tables ---------- */

/* the table's first page (its FDP), written empty at JetCreateTable */
JET_ERR tbl_create_fdp(sim_inst *in, int idx, sim_table *tb)
{
    sim_db *db = &in->db[idx];
    JET_ERR err = alloc_page(in, idx, &tb->pgno_fdp);
    if (err) return err;
    tb->page = calloc(1, db->cb_page);
    if (!tb->page) return JET_errOutOfMemory;
    tb->pgno_cur = tb->pgno_fdp;
    tb->fill = 0;
    return write_page(in, idx, tb->page, tb->pgno_cur, tb->objid, 0, 0, 0, PG_FLAG_ROOT | PG_FLAG_LEAF);
}

/* appends committed record bytes to the table's page chain and writes the pages */
JET_ERR tbl_append(sim_inst *in, int idx, sim_table *tb, const uint8_t *p, size_t n)
{
    sim_db *db = &in->db[idx];
    uint32_t cb = db->cb_page, hs = page_hdr_size(cb), room = cb - hs;
    uint32_t flags = tb->pgno_cur == tb->pgno_fdp ? PG_FLAG_ROOT | PG_FLAG_LEAF : PG_FLAG_LEAF;
    JET_ERR err = JET_errSuccess;
    while (n && !err) {
        if (tb->fill == room) {
            uint32_t next;
            if ((err = alloc_page(in, idx, &next)) != JET_errSuccess) return err;
            err = write_page(in, idx, tb->page, tb->pgno_cur, tb->objid, tb->pgno_prev, next, tb->fill, flags);
            if (err) return err;
            tb->pgno_prev = tb->pgno_cur;
            tb->pgno_cur = next;
            tb->fill = 0;
            flags = PG_FLAG_LEAF;
            memset(tb->page, 0, cb);
        }
        size_t k = room - tb->fill < n ? room - tb->fill : n;
        memcpy(tb->page + hs + tb->fill, p, k);
        tb->fill += (uint32_t)k;
        p += k;
        n -= k;
    }
    if (!err) err = write_page(in, idx, tb->page, tb->pgno_cur, tb->objid, tb->pgno_prev, 0, tb->fill, flags);
    return err;
}

/* ---------- the database file ---------- */

static void new_signature(uint8_t *p)
{
    static uint32_t seq;
    memset(p, 0, 28);
    wr32(p, (uint32_t)rand() ^ (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 8) ^ ++seq);
    logtime_now(p + 4);
}

/* DBFILEHDR of a new, attached database (dirty while attached; detach cleans it).
 * Versions as on a Windows Server 2022 database: 0x620.0xb4.400, created 0x620.0x14. */
static void new_header(sim_inst *in, uint8_t *h, uint32_t cb, int slot)
{
    memset(h, 0, cb);
    wr32(h + HDR_MAGIC, DB_MAGIC);
    wr32(h + HDR_VERSION, 0x620);
    new_signature(h + HDR_SIGNDB);
    wr32(h + 104, (uint32_t)slot + 1);                       /* le_dbid */
    wr32(h + 212, OBJID_CATALOG);                            /* le_objidLast */
    wr32(h + HDR_OSVER, 10);
    wr32(h + HDR_OSVER + 8, 20348);
    wr32(h + HDR_UPDATE_MAJOR, 0xb4);
    wr32(h + HDR_PAGESIZE, cb);
    wr32(h + 340, 0x620);                                    /* le_ulCreateVersion */
    wr32(h + 344, 0x14);                                     /* le_ulCreateUpdate */
    wr32(h + 644, 400);                                      /* le_ulDaeUpdateMinor */
    wr32(h + 648, 0x2490);                                   /* le_efvMaxBinAttachDiagnostic */
    wr32(h + HDR_FILETYPE, FILETYPE_DB);
    uint8_t now[8];
    logtime_now(now);
    memcpy(h + HDR_LOGTIME_ATTACH, now, 8);
    lgpos_put(h + HDR_LGPOS_ATTACH, in->s.tip);
    if (in->s.present) {
        int32_t gen = in->s.gen;
        wr32(h + HDR_DBSTATE, DBSTATE_DIRTY);
        wr32(h + HDR_GENMIN, (uint32_t)gen);
        wr32(h + HDR_GENMAX, (uint32_t)gen);
        wr32(h + HDR_GENMAXCOMMITTED, (uint32_t)gen);
        memcpy(h + HDR_LOGTIME_GENMAXCREATE, in->s.tm_create, 8);
        memcpy(h + HDR_SIGNLOG, in->s.sign_log, 28);
    } else {
        wr32(h + HDR_DBSTATE, DBSTATE_DIRTY);
    }
}

static JET_ERR init_pages(sim_inst *in, int idx)
{
    sim_db *db = &in->db[idx];
    uint8_t *page = calloc(1, db->cb_page);
    JET_ERR err = JET_errSuccess;
    if (!page) return JET_errOutOfMemory;
    /* database root (objid 1) and its own/available extent trees */
    err = write_page(in, idx, page, PGNO_ROOT, 1, 0, 0, 0, PG_FLAG_ROOT | PG_FLAG_LEAF);
    for (uint32_t pgno = 2; pgno <= 3 && !err; pgno++) {
        memset(page, 0, db->cb_page);
        err = write_page(in, idx, page, pgno, 1, 0, 0, 0, PG_FLAG_ROOT | PG_FLAG_LEAF | PG_FLAG_SPACE);
    }
    free(page);
    return err ? err : write_catalog(in, idx);
}

/* JetCreateDatabaseW's work: -1201 if the file exists (unless 0x200
 * JET_bitDbOverwriteExisting) or is attached, -1023 for a missing folder,
 * -1808 when ESESIM_DISK_FREE runs out. The database is attached and open. */
JET_ERR db_create(sim_inst *in, const char *path, JET_GRBIT grbit, int *pslot)
{
    char real[SIM_PATH_MAX];
    int slot = -1;
    uint32_t cb = g_cb_page;
    if (db_find(in, path) >= 0 || db_attached_elsewhere(in, path)) return JET_errDatabaseDuplicate;
    if (resolve_ci(path, real, sizeof real)) {
        if (!(grbit & 0x200u)) return JET_errDatabaseDuplicate;
        int fd = open(real, O_RDONLY | O_CLOEXEC);
        if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) { close(fd); return JET_errFileAccessDenied; }
        if (fd >= 0) close(fd);
        if (unlink(real) != 0) return JET_errFileAccessDenied;
    }
    for (int i = SIM_MAX_DBS - 1; i >= 0; i--) if (!in->db[i].used) slot = i;
    if (slot < 0) return JET_errTooManyAttachedDatabases;
    JET_ERR err = disk_reserve((uint64_t)DB_INITIAL_PAGES * cb);
    if (err) return err;
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return errno == ENOENT || errno == ENOTDIR ? JET_errInvalidPath : JET_errFileAccessDenied;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0 || ftruncate(fd, (off_t)DB_INITIAL_PAGES * cb) != 0) {
        close(fd);
        unlink(path);
        return JET_errDiskIO;
    }
    sim_db *db = &in->db[slot];
    memset(db, 0, sizeof *db);
    db->used = true;
    db->fd = fd;
    db->cb_page = cb;
    strcpy(db->path, path);
    db->w = calloc(1, sizeof *db->w);
    if (!db->w) err = JET_errOutOfMemory;
    if (!err) {
        for (int t = 0; t < SIM_MAX_TABLES; t++) db->w->t[t].pend_sess = -1;
        db->w->pgno_last = DB_INITIAL_PAGES - 2;
        db->w->pgno_next = PGNO_USER_FIRST;
        db->w->objid_last = OBJID_CATALOG;
        new_header(in, g_hdr, cb, slot);
        err = db_write_header_fd(fd, g_hdr, cb);
    }
    if (!err) err = init_pages(in, slot);
    if (!err) fdatasync(fd);
    if (err) {
        dbw_free(db);
        close(fd);
        unlink(path);
        memset(db, 0, sizeof *db);
        db->fd = -1;
        return err;
    }
    *pslot = slot;
    return JET_errSuccess;
}

/* before a clean detach: the catalog if DDL changed it, the header's dbtime and objidLast */
JET_ERR dbw_flush(sim_inst *in, int idx)
{
    sim_db *db = &in->db[idx];
    uint32_t cb;
    if (!db->w) return JET_errSuccess;
    JET_ERR err = db->w->catalog_dirty ? write_catalog(in, idx) : JET_errSuccess;
    if (!err) err = db_read_header_fd(db->fd, g_hdr, &cb);
    if (err) return err;
    wr64(g_hdr + HDR_DBTIME, db->w->dbtime);
    wr32(g_hdr + 212, db->w->objid_last);
    return db_write_header_fd(db->fd, g_hdr, cb);
}

void dbw_free(sim_db *db)
{
    if (!db->w) return;
    for (int t = 0; t < SIM_MAX_TABLES; t++) free(db->w->t[t].page);
    free(db->w);
    db->w = NULL;
}

/* a new generation while databases are attached: genMaxRequired, genMaxCommitted
 * and logtimeGenMaxCreate follow it (the waypoint) */
void dbw_on_roll(sim_inst *in)
{
    for (int i = 0; i < SIM_MAX_DBS; i++) {
        sim_db *db = &in->db[i];
        uint32_t cb;
        if (!db->used || db->read_only || db_read_header_fd(db->fd, g_hdr, &cb) != JET_errSuccess) continue;
        if (rd32(g_hdr + HDR_DBSTATE) != DBSTATE_DIRTY) continue;
        wr32(g_hdr + HDR_GENMAX, (uint32_t)in->s.gen);
        if (rd32(g_hdr + HDR_GENMAXCOMMITTED) < (uint32_t)in->s.gen) wr32(g_hdr + HDR_GENMAXCOMMITTED, (uint32_t)in->s.gen);
        memcpy(g_hdr + HDR_LOGTIME_GENMAXCREATE, in->s.tm_create, 8);
        db_write_header_fd(db->fd, g_hdr, cb);
    }
}
