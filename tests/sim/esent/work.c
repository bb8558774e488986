// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* work.c: what an application does with its own database (the calls
 * tests/integration/targets/setup_ese_database uses): JetCreateDatabaseW,
 * JetCloseDatabase, JetCreateTable, JetAddColumn (the ANSI exports),
 * JetBeginTransaction, JetCommitTransaction, JetRollback, JetPrepareUpdate,
 * JetSetColumn, JetUpdate and JetCloseTable. Errors and their order follow the
 * ESE source (fldmod.cxx ErrIsamPrepareUpdate/ErrIsamSetColumn, recupd.cxx
 * ErrIsamUpdate, lv.cxx, tm.cxx, db.cxx ErrDBCreateDatabase, fcreate.cxx
 * ErrIsamAddColumn, util.cxx ErrUTILICheckName).
 *
 * Model: inserts are logged when JetUpdate runs and reach the table's pages at
 * the level-0 commit (a rollback or JetEndSession discards them); DDL in a
 * transaction is undone by its rollback. Cursors are never positioned on a
 * record (there is no JetMove/JetSeek), so every prep that needs a current
 * record gives -1603. */
#include "esesim.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "table.h"

#define SIM_MAX_CURSORS 1024
#define LEVEL_USER_MOST 7
#define JET_cbLVColumnMost 0x7FFFFFFFu
#define JET_bitColumnTagged 0x2u
#define JET_bitDbRecoveryOff 0x8u
#define JET_bitDbOverwriteExisting 0x200u
#define COMMIT_LAZY 0x1u
#define COMMIT_WAIT_LAST 0x2u
#define COMMIT_WAIT_ALL 0x8u
#define ROLLBACK_ALL 0x1u

enum {
    PREP_NONE = -1, PREP_INSERT = 0, PREP_REPLACE = 2, PREP_CANCEL = 3, PREP_REPLACE_NOLOCK = 4,
    PREP_INSERT_COPY = 5, PREP_INSERT_COPY_DELETE = 7, PREP_READONLY_COPY = 8, PREP_INSERT_COPY_REPLACE = 9,
    PREP_INSERT_MUST_AUTOINC = 10,
};

typedef struct sim_pending {
    struct sim_pending *next;
    sim_inst *in;
    sim_dbwork *w;                     /* the database it was made for (its slot may be reused) */
    int db, tab, level;
    size_t len;
    uint8_t data[];
} sim_pending;

typedef struct {
    bool used;
    sim_sess *s;
    sim_inst *in;
    int db, tab;
    int prep, prep_level;
    uint8_t *rec;                      /* {u32 columnid, u32 cb, data} per JetSetColumn */
    size_t len, cap;
} sim_cursor;

static sim_cursor g_cur[SIM_MAX_CURSORS];

/* ---------- helpers ---------- */

static sim_cursor *cursor_get(JET_API_PTR tableid, const sim_sess *s)
{
    uintptr_t base = (uintptr_t)g_cur, end = base + sizeof g_cur;
    if (tableid < base || tableid >= end || (tableid - base) % sizeof g_cur[0] != 0) return NULL;
    sim_cursor *c = (sim_cursor *)tableid;
    return c->used && c->s == s ? c : NULL;
}

static void cursor_free(sim_cursor *c)
{
    free(c->rec);
    memset(c, 0, sizeof *c);
}

static sim_table *cursor_table(const sim_cursor *c)
{
    return &c->in->db[c->db].w->t[c->tab];
}

/* JET_DBID -> database slot this session has open (-1010 otherwise) */
static JET_ERR dbid_slot(const sim_sess *s, sim_inst *in, ULONG32 dbid, int *slot)
{
    if (dbid < 1 || dbid > SIM_MAX_DBS) return JET_errInvalidDatabaseId;
    int i = (int)dbid - 1;
    if (!in->db[i].used || !in->db[i].w || s->db_open[i] == 0) return JET_errInvalidDatabaseId;
    *slot = i;
    return JET_errSuccess;
}

/* ErrUTILICheckName: present, no leading space, no control characters, '!', '.',
 * '[' or ']', at most 64 bytes; trailing spaces are not significant */
static JET_ERR check_name(const char *name, char out[SIM_NAME_MOST + 1])
{
    size_t n = 0, last = 0;
    if (!name || name[0] == ' ') return JET_errInvalidName;
    for (; n < SIM_NAME_MOST && name[n]; n++) {
        unsigned char ch = (unsigned char)name[n];
        if (ch < 0x20 || ch == '!' || ch == '.' || ch == '[' || ch == ']') return JET_errInvalidName;
        out[n] = (char)ch;
        if (ch != ' ') last = n + 1;
    }
    if (n == SIM_NAME_MOST && name[n]) return JET_errInvalidName;
    if (last == 0) return JET_errInvalidName;
    out[last] = 0;
    return JET_errSuccess;
}

static uint16_t sess_no(const sim_sess *s) { return (uint16_t)sess_index(s); }

static JET_ERR log_str(sim_inst *in, uint8_t type, const sim_sess *s, const void *fixed, size_t nf, const char *str)
{
    return log_record(in, type, sess_no(s), fixed, nf, str, strlen(str));
}

/* bytes of a fixed column type, 0 for variable and long types */
static uint32_t fixed_size(uint32_t coltyp)
{
    static const uint8_t size[19] = { 0, 1, 1, 2, 4, 8, 4, 8, 8, 0, 0, 0, 0, 0, 4, 8, 16, 2, 8 };
    return coltyp < 19 ? size[coltyp] : 0;
}

static bool is_long(uint32_t coltyp) { return coltyp == 11 || coltyp == 12; }

/* ---------- transactions ---------- */

static void pending_add(sim_sess *s, sim_pending *p)
{
    sim_pending **pp = &s->pending;
    while (*pp) pp = &(*pp)->next;
    *pp = p;
}

/* level-0 commit: the session's inserts reach their tables' pages, its DDL the catalog */
static JET_ERR commit_to_zero(sim_sess *s)
{
    JET_ERR err = JET_errSuccess;
    int me = sess_index(s);
    for (sim_pending *p = s->pending, *next; p; p = next) {
        next = p->next;
        sim_db *db = &p->in->db[p->db];
        if (!err && db->used && db->w == p->w && db->w->t[p->tab].used) {
            sim_table *tb = &db->w->t[p->tab];
            err = tbl_append(p->in, p->db, tb, p->data, p->len);
            if (!err) tb->nrec++;
        }
        free(p);
    }
    s->pending = NULL;
    sim_inst *in = s->in;
    for (int i = 0; i < SIM_MAX_DBS; i++) {
        sim_dbwork *w = in->db[i].used ? in->db[i].w : NULL;
        for (int t = 0; w && t < SIM_MAX_TABLES; t++) {
            sim_table *tb = &w->t[t];
            if (!tb->used) continue;
            if (tb->pend_sess == me) { tb->pend_sess = -1; w->catalog_dirty = true; }
            for (int c = 0; c < tb->ncol; c++)
                if (tb->col[c].used && tb->col[c].pend_sess == me) { tb->col[c].pend_sess = -1; w->catalog_dirty = true; }
        }
    }
    return err;
}

/* commit from level L to L-1 (L > 1): what level L did now belongs to L-1 */
static void commit_nested(sim_sess *s)
{
    int me = sess_index(s), lvl = s->level;
    for (sim_pending *p = s->pending; p; p = p->next) if (p->level >= lvl) p->level = lvl - 1;
    sim_inst *in = s->in;
    for (int i = 0; i < SIM_MAX_DBS; i++) {
        sim_dbwork *w = in->db[i].used ? in->db[i].w : NULL;
        for (int t = 0; w && t < SIM_MAX_TABLES; t++) {
            sim_table *tb = &w->t[t];
            if (tb->used && tb->pend_sess == me && tb->pend_level >= lvl) tb->pend_level = lvl - 1;
            for (int c = 0; tb->used && c < tb->ncol; c++)
                if (tb->col[c].pend_sess == me && tb->col[c].pend_level >= lvl) tb->col[c].pend_level = lvl - 1;
        }
    }
    for (int i = 0; i < SIM_MAX_CURSORS; i++)
        if (g_cur[i].used && g_cur[i].s == s && g_cur[i].prep != PREP_NONE && g_cur[i].prep_level >= lvl)
            g_cur[i].prep_level = lvl - 1;
}

/* rollback of levels >= to: discards inserts, drops tables and columns made there
 * (closing cursors on dropped tables), cancels updates prepared there */
static void rollback_to(sim_sess *s, int to)
{
    int me = sess_index(s);
    for (sim_pending **pp = &s->pending; *pp;) {
        sim_pending *p = *pp;
        if (p->level >= to) { *pp = p->next; free(p); } else pp = &p->next;
    }
    sim_inst *in = s->in;
    for (int i = 0; i < SIM_MAX_DBS; i++) {
        sim_dbwork *w = in->db[i].used ? in->db[i].w : NULL;
        for (int t = 0; w && t < SIM_MAX_TABLES; t++) {
            sim_table *tb = &w->t[t];
            if (!tb->used) continue;
            if (tb->pend_sess == me && tb->pend_level >= to) {
                for (int k = 0; k < SIM_MAX_CURSORS; k++)
                    if (g_cur[k].used && g_cur[k].in == in && g_cur[k].db == i && g_cur[k].tab == t) cursor_free(&g_cur[k]);
                free(tb->page);
                memset(tb, 0, sizeof *tb);
                tb->pend_sess = -1;
                continue;
            }
            for (int c = 0; c < tb->ncol; c++)
                if (tb->col[c].used && tb->col[c].pend_sess == me && tb->col[c].pend_level >= to)
                    tb->col[c].used = false;
        }
    }
    for (int i = 0; i < SIM_MAX_CURSORS; i++) {
        sim_cursor *c = &g_cur[i];
        if (c->used && c->s == s && c->prep != PREP_NONE && c->prep_level >= to) { c->prep = PREP_NONE; c->len = 0; }
    }
    if (s->level >= to) s->level = to - 1;
}

EXPORT JET_ERR JetBeginTransaction(JET_SESID sesid)
{
    JET_ERR err = fault_check("JetBeginTransaction");
    sim_sess *s;
    sim_inst *in;
    if (err) return err;
    if ((err = sess_lookup(sesid, &s, &in)) != JET_errSuccess) return err;
    if (s->level >= LEVEL_USER_MOST) return JET_errTransTooDeep;
    if (++s->level == 1) return log_record(in, LR_BEGIN0, sess_no(s), NULL, 0, NULL, 0);
    return JET_errSuccess;
}

EXPORT JET_ERR JetBeginTransaction2(JET_SESID sesid, JET_GRBIT grbit)
{
    (void)grbit;
    return JetBeginTransaction(sesid);
}

/* tm.cxx ErrIsamCommitTransaction: WaitAll/WaitLast alone succeed at any level */
EXPORT JET_ERR JetCommitTransaction(JET_SESID sesid, JET_GRBIT grbit)
{
    JET_ERR err = fault_check("JetCommitTransaction");
    sim_sess *s;
    sim_inst *in;
    if (err) return err;
    if ((err = sess_lookup(sesid, &s, &in)) != JET_errSuccess) return err;
    if (grbit & COMMIT_WAIT_ALL) return grbit == COMMIT_WAIT_ALL ? JET_errSuccess : JET_errInvalidGrbit;
    if (grbit & COMMIT_WAIT_LAST) return grbit == COMMIT_WAIT_LAST ? JET_errSuccess : JET_errInvalidGrbit;
    if (grbit & ~COMMIT_LAZY) return JET_errInvalidGrbit;
    if (s->level == 0) return JET_errNotInTransaction;
    if (s->level > 1) { commit_nested(s); s->level--; return JET_errSuccess; }
    s->level = 0;
    err = log_record(in, LR_COMMIT0, sess_no(s), NULL, 0, NULL, 0);
    JET_ERR aerr = commit_to_zero(s);
    return err ? err : aerr;
}

EXPORT JET_ERR JetRollback(JET_SESID sesid, JET_GRBIT grbit)
{
    JET_ERR err = fault_check("JetRollback");
    sim_sess *s;
    sim_inst *in;
    if (err) return err;
    if ((err = sess_lookup(sesid, &s, &in)) != JET_errSuccess) return err;
    if (grbit & ~ROLLBACK_ALL) return JET_errInvalidGrbit;
    if (s->level == 0) return JET_errNotInTransaction;
    rollback_to(s, (grbit & ROLLBACK_ALL) ? 1 : s->level);
    return s->level == 0 ? log_record(in, LR_ROLLBACK, sess_no(s), NULL, 0, NULL, 0) : JET_errSuccess;
}

/* ---------- databases ---------- */

EXPORT JET_ERR JetCreateDatabaseW(JET_SESID sesid, const WCHAR *szFilename, const WCHAR *szConnect,
                                  ULONG32 *pdbid, JET_GRBIT grbit)
{
    (void)szConnect;
    JET_ERR err = fault_check("JetCreateDatabaseW");
    sim_sess *s;
    sim_inst *in;
    char tmp[SIM_PATH_MAX], path[SIM_PATH_MAX];
    int slot;
    if (err) return err;
    if ((err = sess_lookup(sesid, &s, &in)) != JET_errSuccess) return err;
    if (s->level > 0) return JET_errInTransaction;           /* no backup check: ESE has none here */
    if (!pdbid || !szFilename || !szFilename[0] || !wstr_to_utf8(szFilename, tmp, sizeof tmp) ||
        !path_absolute(tmp, path, sizeof path, false))
        return JET_errInvalidParameter;
    if ((err = db_create(in, path, grbit & JET_bitDbOverwriteExisting, &slot)) != JET_errSuccess) return err;
    s->db_open[slot]++;
    *pdbid = (ULONG32)slot + 1;
    return log_str(in, LR_CREATEDB, s, NULL, 0, path);
}

/* closes the session's cursors on the database, then one handle */
EXPORT JET_ERR JetCloseDatabase(JET_SESID sesid, ULONG32 dbid, JET_GRBIT grbit)
{
    (void)grbit;
    JET_ERR err = fault_check("JetCloseDatabase");
    sim_sess *s;
    sim_inst *in;
    int slot;
    if (err) return err;
    if ((err = sess_lookup(sesid, &s, &in)) != JET_errSuccess) return err;
    if ((err = dbid_slot(s, in, dbid, &slot)) != JET_errSuccess) return err;
    for (int i = 0; i < SIM_MAX_CURSORS; i++)
        if (g_cur[i].used && g_cur[i].s == s && g_cur[i].db == slot) cursor_free(&g_cur[i]);
    s->db_open[slot]--;
    return JET_errSuccess;
}

/* ---------- DDL ---------- */

static sim_cursor *cursor_new(sim_sess *s, sim_inst *in, int db, int tab)
{
    for (int i = 0; i < SIM_MAX_CURSORS; i++) {
        if (g_cur[i].used) continue;
        sim_cursor *c = &g_cur[i];
        memset(c, 0, sizeof *c);
        c->used = true;
        c->s = s;
        c->in = in;
        c->db = db;
        c->tab = tab;
        c->prep = PREP_NONE;
        return c;
    }
    return NULL;
}

EXPORT JET_ERR JetCreateTable(JET_SESID sesid, ULONG32 dbid, const char *szTableName, int32_t lPages,
                              int32_t lDensity, JET_API_PTR *ptableid)
{
    JET_ERR err = fault_check("JetCreateTable");
    sim_sess *s;
    sim_inst *in;
    char name[SIM_NAME_MOST + 1];
    int slot, free_t = -1;
    if (ptableid) *ptableid = (JET_API_PTR)~(uintptr_t)0;    /* JET_tableidNil on error */
    if (err) return err;
    if ((err = sess_lookup(sesid, &s, &in)) != JET_errSuccess) return err;
    if ((err = dbid_slot(s, in, dbid, &slot)) != JET_errSuccess) return err;
    if (!ptableid) return JET_errInvalidParameter;
    if ((err = check_name(szTableName, name)) != JET_errSuccess) return err;
    if (lDensity != 0 && (lDensity < 20 || lDensity > 100)) return JET_errDensityInvalid;
    sim_dbwork *w = in->db[slot].w;
    for (int t = 0; t < SIM_MAX_TABLES; t++) {
        if (!w->t[t].used) { if (free_t < 0) free_t = t; continue; }
        if (strcasecmp(w->t[t].name, name) == 0) return JET_errTableDuplicate;
    }
    if (free_t < 0) return JET_errOutOfMemory;
    sim_cursor *c = cursor_new(s, in, slot, free_t);
    if (!c) return JET_errOutOfMemory;
    sim_table *tb = &w->t[free_t];
    memset(tb, 0, sizeof *tb);
    strcpy(tb->name, name);
    tb->objid = ++w->objid_last;
    tb->pages = lPages > 0 ? (uint32_t)lPages : 0;
    tb->density = (uint32_t)lDensity;
    tb->next_fixed = 1;
    tb->next_var = 128;
    tb->next_tagged = 256;
    if ((err = tbl_create_fdp(in, slot, tb)) != JET_errSuccess) {
        free(tb->page);
        memset(tb, 0, sizeof *tb);
        tb->pend_sess = -1;
        cursor_free(c);
        return err;
    }
    tb->used = true;
    tb->pend_sess = s->level > 0 ? sess_index(s) : -1;
    tb->pend_level = s->level;
    if (s->level == 0) w->catalog_dirty = true;
    uint8_t fixed[8];
    wr32(fixed, tb->objid);
    wr32(fixed + 4, tb->pgno_fdp);
    *ptableid = (JET_API_PTR)c;
    return log_str(in, LR_CREATETABLE, s, fixed, sizeof fixed, name);
}

/* JET_COLUMNDEF (x64): cbStruct@0 columnid@4 coltyp@8 wCountry@12 langid@14 cp@16
 * wCollate@18 cbMax@20 grbit@24, 28 bytes */
EXPORT JET_ERR JetAddColumn(JET_SESID sesid, JET_API_PTR tableid, const char *szColumnName, const void *pcolumndef,
                            const void *pvDefault, ULONG32 cbDefault, ULONG32 *pcolumnid)
{
    (void)pvDefault; (void)cbDefault;
    JET_ERR err = fault_check("JetAddColumn");
    sim_sess *s;
    sim_inst *in;
    char name[SIM_NAME_MOST + 1];
    if (err) return err;
    if ((err = sess_lookup(sesid, &s, &in)) != JET_errSuccess) return err;
    sim_cursor *c = cursor_get(tableid, s);
    if (!c) return JET_errInvalidTableId;
    const uint8_t *def = pcolumndef;
    if (!def || rd32(def) < 28) return JET_errInvalidParameter;
    uint32_t coltyp = rd32(def + 8), cbMax = rd32(def + 20), grbit = rd32(def + 24);
    if (cbMax > JET_cbLVColumnMost) return JET_errInvalidParameter;
    if ((err = check_name(szColumnName, name)) != JET_errSuccess) return err;
    if (coltyp == 0 || coltyp == 13 || coltyp >= 19) return JET_errInvalidColumnType;
    sim_table *tb = cursor_table(c);
    int slot = -1;
    for (int i = 0; i < tb->ncol; i++) {
        if (!tb->col[i].used) continue;
        if (strcasecmp(tb->col[i].name, name) == 0) return JET_errColumnDuplicate;
    }
    for (int i = 0; i < SIM_MAX_COLUMNS && slot < 0; i++) if (!tb->col[i].used) slot = i;
    if (slot < 0) return JET_errTooManyColumns;
    sim_column *col = &tb->col[slot];
    memset(col, 0, sizeof *col);
    col->used = true;
    strcpy(col->name, name);
    col->coltyp = coltyp;
    col->cbMax = cbMax;
    col->grbit = grbit;
    if (is_long(coltyp) || (grbit & JET_bitColumnTagged)) col->id = tb->next_tagged++;
    else if (coltyp == 9 || coltyp == 10) col->id = tb->next_var++;
    else col->id = tb->next_fixed++;
    col->pend_sess = s->level > 0 ? sess_index(s) : -1;
    col->pend_level = s->level;
    if (slot >= tb->ncol) tb->ncol = slot + 1;
    if (s->level == 0) c->in->db[c->db].w->catalog_dirty = true;
    if (pcolumnid) *pcolumnid = col->id;
    uint8_t fixed[16];
    wr32(fixed, tb->objid);
    wr32(fixed + 4, col->id);
    wr32(fixed + 8, coltyp);
    wr32(fixed + 12, cbMax);
    return log_str(in, LR_ADDCOLUMN, s, fixed, sizeof fixed, name);
}

/* ---------- updates ---------- */

static const sim_column *find_column(const sim_table *tb, uint32_t columnid)
{
    for (int i = 0; i < tb->ncol; i++)
        if (tb->col[i].used && tb->col[i].id == columnid) return &tb->col[i];
    return NULL;
}

EXPORT JET_ERR JetPrepareUpdate(JET_SESID sesid, JET_API_PTR tableid, ULONG32 prep)
{
    JET_ERR err = fault_check("JetPrepareUpdate");
    sim_sess *s;
    sim_inst *in;
    if (err) return err;
    if ((err = sess_lookup(sesid, &s, &in)) != JET_errSuccess) return err;
    sim_cursor *c = cursor_get(tableid, s);
    if (!c) return JET_errInvalidTableId;
    switch (prep) {
    case PREP_CANCEL:
        if (c->prep == PREP_NONE) return JET_errUpdateNotPrepared;
        c->prep = PREP_NONE;
        c->len = 0;
        return JET_errSuccess;
    case PREP_INSERT:
    case PREP_INSERT_MUST_AUTOINC:
        if (c->prep != PREP_NONE) return JET_errAlreadyPrepared;
        if (prep == PREP_INSERT_MUST_AUTOINC) return JET_errIllegalOperation;   /* no autoincrement columns */
        c->prep = PREP_INSERT;
        c->prep_level = s->level;
        c->len = 0;
        return JET_errSuccess;
    case PREP_READONLY_COPY:
        if (c->prep != PREP_NONE) return JET_errAlreadyPrepared;
        return s->level == 0 ? JET_errNotInTransaction : JET_errNoCurrentRecord;
    case PREP_REPLACE: case PREP_REPLACE_NOLOCK: case PREP_INSERT_COPY: case PREP_INSERT_COPY_DELETE:
    case PREP_INSERT_COPY_REPLACE:
        if (c->prep != PREP_NONE) return JET_errAlreadyPrepared;
        return JET_errNoCurrentRecord;
    }
    return JET_errInvalidParameter;
}

/* JET_SETINFO: cbStruct@0 ibLongValue@4 itagSequence@8 (12 bytes) */
EXPORT JET_ERR JetSetColumn(JET_SESID sesid, JET_API_PTR tableid, ULONG32 columnid, const void *pvData, ULONG32 cbData,
                            JET_GRBIT grbit, const void *psetinfo)
{
    (void)grbit;
    JET_ERR err = fault_check("JetSetColumn");
    sim_sess *s;
    sim_inst *in;
    if (err) return err;
    if ((err = sess_lookup(sesid, &s, &in)) != JET_errSuccess) return err;
    sim_cursor *c = cursor_get(tableid, s);
    if (!c) return JET_errInvalidTableId;
    if (cbData > JET_cbLVColumnMost) return JET_errInvalidParameter;
    if (c->prep == PREP_NONE) return JET_errUpdateNotPrepared;
    if (psetinfo && rd32(psetinfo) < 12) return JET_errInvalidParameter;
    const sim_column *col = find_column(cursor_table(c), columnid);
    if (!col) return JET_errColumnNotFound;
    if (is_long(col->coltyp) && s->level == 0) return JET_errNotInTransaction;   /* lv.cxx: LV update at level 0 */
    uint32_t fs = fixed_size(col->coltyp);
    if (fs && !(col->grbit & JET_bitColumnTagged) && cbData != 0 && cbData != fs) return JET_errInvalidBufferSize;
    if (cbData && !pvData) return JET_errInvalidParameter;
    size_t need = c->len + 8 + cbData;
    if (need > c->cap) {
        size_t cap = need > 2 * c->cap ? need : 2 * c->cap;
        uint8_t *r = realloc(c->rec, cap);
        if (!r) return JET_errOutOfMemory;
        c->rec = r;
        c->cap = cap;
    }
    wr32(c->rec + c->len, columnid);
    wr32(c->rec + c->len + 4, cbData);
    if (cbData) memcpy(c->rec + c->len + 8, pvData, cbData);
    c->len = need;
    return JET_errSuccess;
}

/* the record goes to the log now and to the table at the level-0 commit (at once
 * outside a transaction, which ESE wraps in its own); the bookmark is a 4-byte
 * record number */
EXPORT JET_ERR JetUpdate(JET_SESID sesid, JET_API_PTR tableid, void *pvBookmark, ULONG32 cbBookmark,
                         ULONG32 *pcbActual)
{
    JET_ERR err = fault_check("JetUpdate");
    sim_sess *s;
    sim_inst *in;
    if (err) return err;
    if ((err = sess_lookup(sesid, &s, &in)) != JET_errSuccess) return err;
    sim_cursor *c = cursor_get(tableid, s);
    if (!c) return JET_errInvalidTableId;
    if (c->prep == PREP_NONE) return JET_errUpdateNotPrepared;
    sim_table *tb = cursor_table(c);
    sim_pending *p = malloc(sizeof *p + c->len + 4);
    if (!p) return JET_errOutOfMemory;
    p->next = NULL;
    p->in = in;
    p->w = in->db[c->db].w;
    p->db = c->db;
    p->tab = c->tab;
    p->level = s->level;
    p->len = c->len + 4;
    wr32(p->data, (uint32_t)c->len);
    if (c->len) memcpy(p->data + 4, c->rec, c->len);
    uint32_t recno = (uint32_t)tb->nrec + 1;
    for (sim_pending *q = s->pending; q; q = q->next) if (q->db == p->db && q->tab == p->tab) recno++;
    uint8_t fixed[4];
    wr32(fixed, tb->objid);
    bool implicit = s->level == 0;
    if (implicit) err = log_record(in, LR_BEGIN0, sess_no(s), NULL, 0, NULL, 0);
    if (!err) err = log_record(in, LR_INSERT, sess_no(s), fixed, sizeof fixed, p->data, p->len);
    if (err) { free(p); return err; }
    c->prep = PREP_NONE;
    c->len = 0;
    pending_add(s, p);
    if (pvBookmark && cbBookmark) {
        uint8_t bm[4];
        wr32(bm, recno);
        memcpy(pvBookmark, bm, cbBookmark < 4 ? cbBookmark : 4);
    }
    if (pcbActual) *pcbActual = 4;
    if (implicit) {
        err = log_record(in, LR_COMMIT0, sess_no(s), NULL, 0, NULL, 0);
        JET_ERR aerr = commit_to_zero(s);
        return err ? err : aerr;
    }
    return JET_errSuccess;
}

EXPORT JET_ERR JetCloseTable(JET_SESID sesid, JET_API_PTR tableid)
{
    JET_ERR err = fault_check("JetCloseTable");
    sim_sess *s;
    sim_inst *in;
    if (err) return err;
    if ((err = sess_lookup(sesid, &s, &in)) != JET_errSuccess) return err;
    sim_cursor *c = cursor_get(tableid, s);
    if (!c) return JET_errInvalidTableId;
    cursor_free(c);                    /* a prepared update is cancelled */
    return JET_errSuccess;
}

/* ---------- session and instance end ---------- */

/* JetEndSession (log): rollback of everything open, cursors and database
 * handles closed; also when the instance goes away (no log record then) */
void work_end_session(sim_sess *s, bool log)
{
    if (s->level > 0) {
        rollback_to(s, 1);
        if (log) log_record(s->in, LR_ROLLBACK, sess_no(s), NULL, 0, NULL, 0);
    }
    for (sim_pending *p = s->pending, *next; p; p = next) { next = p->next; free(p); }
    s->pending = NULL;
    for (int i = 0; i < SIM_MAX_CURSORS; i++) if (g_cur[i].used && g_cur[i].s == s) cursor_free(&g_cur[i]);
    memset(s->db_open, 0, sizeof s->db_open);
    s->level = 0;
}

void work_inst_freed(sim_inst *in)
{
    for (int i = 0; i < SIM_MAX_CURSORS; i++) if (g_cur[i].used && g_cur[i].in == in) cursor_free(&g_cur[i]);
    for (int i = 0; i < SIM_MAX_DBS; i++) dbw_free(&in->db[i]);
}

void work_reset(void)
{
    for (int i = 0; i < SIM_MAX_CURSORS; i++) if (g_cur[i].used) cursor_free(&g_cur[i]);
}
