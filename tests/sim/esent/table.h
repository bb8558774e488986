// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* table.h: tables of databases created by the simulator (table.c, work.c). */
#ifndef ESESIM_TABLE_H
#define ESESIM_TABLE_H

#include "esesim.h"

#define SIM_MAX_TABLES 16
#define SIM_MAX_COLUMNS 32
#define SIM_NAME_MOST 64               /* JET_cbNameMost (ANSI) */
#define JET_errTooManyAttachedDatabases (-1805)
#define JET_errTooManyColumns (-1040)

typedef struct {
    bool used;
    char name[SIM_NAME_MOST + 1];
    uint32_t id, coltyp, cbMax, grbit;
    int pend_sess, pend_level;         /* added in a transaction not yet committed (-1: committed) */
} sim_column;

typedef struct {
    bool used;
    char name[SIM_NAME_MOST + 1];
    uint32_t objid, pgno_fdp, pages, density;
    int ncol;
    sim_column col[SIM_MAX_COLUMNS];
    uint32_t next_fixed, next_var, next_tagged;
    int pend_sess, pend_level;         /* created in a transaction not yet committed (-1: committed) */
    uint32_t pgno_prev, pgno_cur, fill; /* the page being filled, bytes used */
    uint8_t *page;
    uint64_t nrec;
} sim_table;

struct sim_dbwork {
    uint32_t pgno_last, pgno_next, objid_last;
    uint64_t dbtime;
    bool catalog_dirty;
    sim_table t[SIM_MAX_TABLES];
};
typedef struct sim_dbwork sim_dbwork;

uint32_t page_hdr_size(uint32_t cb);
JET_ERR tbl_create_fdp(sim_inst *in, int idx, sim_table *tb);
JET_ERR tbl_append(sim_inst *in, int idx, sim_table *tb, const uint8_t *p, size_t n);

#endif
