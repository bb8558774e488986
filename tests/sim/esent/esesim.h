// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* esesim.h: shared declarations of the esent.dll simulator.
 *
 * Types follow Windows x64 widths (jet-constants.md §1): JET_ERR is 32-bit,
 * "unsigned long" is 32-bit, handles are pointer-sized, WCHAR is UTF-16LE.
 * Behaviour follows ese-backup-semantics.md ("§" references below). */
#ifndef ESESIM_H
#define ESESIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EXPORT __attribute__((visibility("default")))

typedef int32_t JET_ERR;
typedef uint32_t JET_GRBIT;
typedef uint32_t ULONG32;          /* Windows "unsigned long" */
typedef uintptr_t JET_INSTANCE;
typedef uintptr_t JET_SESID;
typedef uintptr_t JET_HANDLE;
typedef uintptr_t JET_API_PTR;
typedef uint16_t WCHAR;

#define JET_instanceNil ((JET_INSTANCE)~(uintptr_t)0)

/* ---- errors (jet-errors.tsv) ---- */
enum {
    JET_errSuccess = 0,
    JET_errLogFileCorrupt = -501,
    JET_errBackupInProgress = -505,
    JET_errRestoreInProgress = -506,
    JET_errLogGenerationMismatch = -513,
    JET_errLoggingDisabled = -516,
    JET_errNoBackup = -520,
    JET_errInvalidBackupSequence = -521,
    JET_errBackupNotAllowedYet = -523,
    JET_errInvalidBackup = -526,
    JET_errMissingLogFile = -528,
    JET_errBadLogSignature = -530,
    JET_errBadCheckpointSignature = -532,
    JET_errCheckpointCorrupt = -533,
    JET_errBadPatchPage = -535,
    JET_errLogFileSizeMismatch = -541,
    JET_errCheckpointFileNotFound = -542,
    JET_errSoftRecoveryOnBackupDatabase = -544,
    JET_errDatabaseDirtyShutdown = -550,
    JET_errDatabasePatchFileMismatch = -552,
    JET_errGivenLogFileHasBadSignature = -555,
    JET_errGivenLogFileIsNotContiguous = -556,
    JET_errMissingFullBackup = -560,
    JET_errMissingFileToBackup = -569,
    JET_errLogReadVerifyFailure = -612,
    JET_errRestoreOfNonBackupDatabase = -615,
    JET_errLogFileNotCopied = -616,
    JET_errSurrogateBackupInProgress = -617,
    JET_errBackupAbortByCaller = -800,
    JET_errBackupAbortByServer = -801,
    JET_errInvalidGrbit = -900,
    JET_errTermInProgress = -1000,
    JET_errInvalidParameter = -1003,
    JET_errOutOfMemory = -1011,
    JET_errReadVerifyFailure = -1018,
    JET_errDiskIO = -1022,
    JET_errInvalidPath = -1023,
    JET_errNotInitialized = -1029,
    JET_errAlreadyInitialized = -1030,
    JET_errFileAccessDenied = -1032,
    JET_errBufferTooSmall = -1038,
    JET_errInvalidBufferSize = -1047,
    JET_errRunningInOneInstanceMode = -1080,
    JET_errRunningInMultiInstanceMode = -1081,
    JET_errInstanceNameInUse = -1086,
    JET_errInvalidSesid = -1104,
    JET_errInvalidInstance = -1115,
    JET_errReadPgnoVerifyFailure = -1118,
    JET_errDatabaseNotFound = -1203,
    JET_errDatabaseCorrupted = -1206,
    JET_errPageSizeMismatch = -1213,
    JET_errTooManyInstances = -1214,
    JET_errDatabaseSharingViolation = -1215,
    JET_errForceDetachNotAllowed = -1219,
    JET_errClientRequestToStopJetService = -1329,
    JET_errDiskFull = -1808,
    JET_errFileNotFound = -1811,
    JET_errFileInvalidType = -1812,
    JET_wrnDatabaseAttached = 1007,
    /* database creation, DDL, transactions and updates (work.c, table.c) */
    JET_errInvalidName = -1002,
    JET_errInvalidDatabaseId = -1010,
    JET_errNotInTransaction = -1054,
    JET_errTransTooDeep = -1103,
    JET_errInTransaction = -1108,
    JET_errDatabaseDuplicate = -1201,
    JET_errDatabaseInUse = -1202,
    JET_errTableDuplicate = -1303,
    JET_errDensityInvalid = -1307,
    JET_errInvalidTableId = -1310,
    JET_errIllegalOperation = -1312,
    JET_errColumnTooBig = -1506,
    JET_errColumnNotFound = -1507,
    JET_errColumnDuplicate = -1508,
    JET_errInvalidColumnType = -1511,
    JET_errNoCurrentRecord = -1603,
    JET_errAlreadyPrepared = -1607,
    JET_errUpdateNotPrepared = -1609,
};

/* ---- grbits (jet-constants.md §4) ---- */
#define BK_INCREMENTAL 0x1u
#define BK_SURROGATE 0x20u
#define BK_INTERNALCOPY 0x40u
#define BKEND_NORMAL 0x1u
#define BKEND_ABORT 0x2u
#define BKEND_TRUNCATEDONE 0x100u
#define BKEND_NOHDRUPDATE 0x200u
#define TERM_COMPLETE 0x1u
#define TERM_ABRUPT 0x2u
#define TERM_STOPBACKUP 0x4u
#define TERM_DIRTY 0x8u
#define INIT_LOGSTREAMMUSTEXIST 0x40u

/* ---- limits ---- */
#define SIM_PATH_MAX 1024
#define SIM_MAX_INSTANCES 64
#define SIM_MAX_DBS 7           /* dbidMax - 1 user databases per instance */
#define SIM_MAX_SESSIONS 256
#define OS_PAGE 4096u           /* ReadFile buffer alignment (§4.1) */

/* ---- DB header offsets (ese-file-format.md §2) ---- */
enum {
    HDR_CHECKSUM = 0, HDR_MAGIC = 4, HDR_VERSION = 8, HDR_DBTIME = 16, HDR_SIGNDB = 24,
    HDR_DBSTATE = 52, HDR_LGPOS_CONSISTENT = 56, HDR_LOGTIME_CONSISTENT = 64,
    HDR_LOGTIME_ATTACH = 72, HDR_LGPOS_ATTACH = 80, HDR_LOGTIME_DETACH = 88,
    HDR_LGPOS_DETACH = 96, HDR_SIGNLOG = 108, HDR_BK_FULLPREV = 136, HDR_BK_INCPREV = 160,
    HDR_BK_FULLCUR = 184, HDR_DBFLAGS = 208, HDR_OSVER = 216, HDR_UPDATE_MAJOR = 232,
    HDR_PAGESIZE = 236, HDR_REPAIRCOUNT = 240, HDR_LOGTIME_REPAIR = 244,
    HDR_GENMIN = 296, HDR_GENMAX = 300, HDR_BK_SNAPCUR = 316, HDR_LOGTIME_GENMAXCREATE = 348,
    HDR_BKTYPE_FULLPREV = 356, HDR_BKTYPE_INCPREV = 360, HDR_REPAIRCOUNT_OLD = 364,
    HDR_GENMAXCOMMITTED = 416, HDR_BK_COPYPREV = 420, HDR_BK_DIFFPREV = 444,
    HDR_BKTYPE_COPYPREV = 468, HDR_BKTYPE_DIFFPREV = 472, HDR_RESEED = 476,
    HDR_DBSCAN = 516, HDR_LOGTIME_REATTACH = 564, HDR_LGPOS_REATTACH = 572,
    HDR_LOGTIME_GENMAXREQ = 672, HDR_FILETYPE = 667,
};
#define DB_MAGIC 0x89ABCDEFu
#define DBSTATE_JUSTCREATED 1
#define DBSTATE_DIRTY 2
#define DBSTATE_CLEAN 3
#define FILETYPE_DB 1
#define FILETYPE_LOG 3
#define FILETYPE_CHK 4

/* ---- log and checkpoint header offsets (ese-file-format.md §6, §7) ---- */
enum {
    LGH_GEN = 4, LGH_CBSEC = 8, LGH_CSECHDR = 10, LGH_CSECFILE = 12, LGH_PAGESIZE = 14,
    LGH_TMCREATE = 16, LGH_TMPREV = 24, LGH_MAJOR = 32, LGH_MINOR = 36, LGH_UPDMAJOR = 40,
    LGH_SIGNLOG = 44, LGH_FLAGS = 639, LGH_LGPOSCHK = 640, LGH_UPDMINOR = 648,
    LGH_PREVSEGCHK = 653,
    CHK_LGPOS = 12, CHK_SIGNLOG = 20,
};
#define LOG_HDR_BYTES 4096u
#define CHK_COPY_BYTES 4096u

/* ---- trailer page (architecture.md §5) ---- */
enum {
    TRL_BKINFO = 40, TRL_SIGNDB = 64, TRL_SIGNLOG = 92, TRL_GENMIN = 120, TRL_GENMAX = 124,
    TRL_GENCOMMITTED = 128, TRL_LOGTIME_GENMAXREQ = 132, TRL_LOGTIME_GENMAXCOMMIT = 140,
};

typedef struct { uint16_t ib, isec; int32_t gen; } lgpos_t;

/* BKINFO (§6.1): 24 bytes on disk */
typedef struct {
    lgpos_t mark;
    uint8_t logtime[8];
    uint32_t genLow, genHigh;
} bkinfo_t;

/* ---- instance model ---- */
typedef struct {
    char system_path[SIM_PATH_MAX];   /* absolute, trailing '/' */
    char log_path[SIM_PATH_MAX];      /* absolute, trailing '/' */
    char temp_path[SIM_PATH_MAX];
    char alt_recovery_path[SIM_PATH_MAX];
    char event_source[260];
    char base_name[4];
    char recovery[16];
    uint32_t max_temp_tables, log_file_size_kb, circular, no_info_event;
    uint32_t delete_out_of_range, zero_db_during_backup, cleanup_mismatched;
    uint32_t create_path, legacy_names, engine_format;
    bool log_file_size_set;
} sim_params;

/* the log stream an initialised instance writes to */
typedef struct {
    bool present;
    uint8_t sign_log[28];
    int32_t gen;                       /* generation of the current <base>.log */
    uint16_t cb_sec, csec_header, csec_file;
    uint64_t file_size;
    lgpos_t tip;                       /* next "log record" position */
    uint8_t tm_create[8];              /* tmCreate of the current log */
    bool writable;                     /* the current log was created by this process (logwrite.c) */
    uint32_t records;                  /* log records this instance wrote */
    int32_t sec_gen;                   /* generation and sector that sec[] holds */
    uint16_t sec_isec;
    uint8_t sec[4096];                 /* that sector as written so far */
} sim_stream;

struct sim_dbwork;                     /* tables and page store of a database created here (table.c) */

typedef struct {
    bool used;
    char path[SIM_PATH_MAX];
    int fd;                            /* holds the flock (shared when read-only) */
    bool read_only;                    /* JET_bitDbReadOnly: header never written */
    uint32_t cb_page;
    bool copy_done;                    /* read completely and closed in this backup (§4.3) */
    struct sim_dbwork *w;              /* JetCreateDatabaseW only: tables, pages, catalog */
} sim_db;

enum { BK_NONE = 0, BK_DATABASES, BK_LOGS };
enum { FILE_NONE = 0, FILE_DB, FILE_LOG, FILE_OTHER };

typedef struct {
    int status;
    bool full, stopped, surrogate;
    bool range_computed, rolled, truncated;
    int32_t copy_mic, copy_mac, delete_mic, delete_mac;
    uint64_t gen_copy_done;            /* m_cGenCopyDone: sum of logs read completely */
    lgpos_t mark;
    uint8_t mark_time[8];
    /* the single open-file slot (crhfMax = 1) */
    int kind;
    int fd;
    int db_index;
    uint64_t size, offset;
    uint32_t pgno_last;
    uint8_t *hdr_page;                 /* patched header snapshot (DB) */
    int32_t log_gen;                   /* generation parsed from the name, 0 if none */
    bool verify_log;
    uint16_t log_cb_sec, log_csec_header, log_csec_file;
    bool log_v8;
} sim_backup;

enum { INST_FREE = 0, INST_CREATED, INST_RUNNING };

typedef struct sim_inst {
    int state;
    char name[256];
    bool stop_service, backup_allowed, term_in_progress, implicit;
    sim_params p;
    sim_stream s;
    sim_db db[SIM_MAX_DBS];
    sim_backup bk;
} sim_inst;

/* a session (instance.c); transactions and updates in work.c */
struct sim_pending;
typedef struct {
    bool used;
    struct sim_inst *in;
    int level;                         /* transaction level, 0..7 (levelUserMost) */
    uint16_t db_open[SIM_MAX_DBS];     /* database handles from JetCreateDatabaseW */
    struct sim_pending *pending;       /* inserts not yet committed to level 0 */
} sim_sess;

/* ---- globals (instance.c) ---- */
extern uint32_t g_cb_page;
extern uint32_t g_max_instances;
extern uint32_t g_disable_block_verification;

/* ---- util.c ---- */
uint32_t rd32(const uint8_t *p);
uint16_t rd16(const uint8_t *p);
uint64_t rd64(const uint8_t *p);
void wr32(uint8_t *p, uint32_t v);
void wr16(uint8_t *p, uint16_t v);
void wr64(uint8_t *p, uint64_t v);
void lgpos_put(uint8_t *p, lgpos_t pos);
lgpos_t lgpos_get(const uint8_t *p);
uint64_t lgpos_key(lgpos_t pos);
void logtime_now(uint8_t out[8]);
bool wstr_to_utf8(const WCHAR *w, char *out, size_t cap);
size_t wstrlen16(const WCHAR *w);
size_t utf8_to_wstr(const char *s, WCHAR *out, size_t cap_units);
bool path_absolute(const char *in, char *out, size_t cap, bool folder);
bool fmt(char *out, size_t cap, const char *f, ...) __attribute__((format(printf, 3, 4)));
bool path_join(char *out, size_t cap, const char *dir, const char *name);
bool resolve_ci(const char *path, char *out, size_t cap);
JET_ERR disk_reserve(uint64_t bytes);
void disk_reset(void);
bool io_pread_full(int fd, void *buf, size_t n, uint64_t off, size_t *got);
bool io_pwrite_full(int fd, const void *buf, size_t n, uint64_t off);

/* ---- checksum.c (ese-file-format.md §5) ---- */
uint32_t xor_old(const uint8_t *buf, size_t len);
uint64_t xe_checksum(const uint8_t *blk, size_t cb, uint32_t pgno, bool header_block);
JET_ERR verify_db_page(uint8_t *page, uint32_t cb, uint32_t pgno, bool fix);
bool verify_log_segment(const uint8_t *seg, uint32_t isec);
bool page_is_zero(const uint8_t *p, size_t n);

/* ---- format.c ---- */
JET_ERR db_read_header(const char *path, uint8_t *page, uint32_t *cb_page);
JET_ERR db_read_header_fd(int fd, uint8_t *page, uint32_t *cb_page);
JET_ERR db_write_header_fd(int fd, uint8_t *page, uint32_t cb_page);
void bkinfo_get(const uint8_t *p, bkinfo_t *bk);
void bkinfo_put(uint8_t *p, const bkinfo_t *bk);
JET_ERR chk_read(const char *path, uint8_t copy[CHK_COPY_BYTES]);
JET_ERR chk_write_gen(const char *path, const uint8_t sign_log[28], lgpos_t pos, bool create);
bool loghdr_valid(const uint8_t *hdr);
JET_ERR loghdr_read(const char *path, uint8_t hdr[LOG_HDR_BYTES], uint64_t *size);
void log_name(const sim_inst *in, int32_t gen, char *out, size_t cap);
void log_current_name(const sim_inst *in, char *out, size_t cap);
void chk_name(const sim_inst *in, char *out, size_t cap);
int32_t log_oldest_on_disk(const sim_inst *in);
int32_t log_parse_gen(const sim_inst *in, const char *path);
bool log_ext_matches(const sim_inst *in, const char *path);
JET_ERR log_create_new_stream(sim_inst *in);
JET_ERR log_roll(sim_inst *in);
JET_ERR log_open_stream(sim_inst *in, const uint8_t *hdr, uint64_t size);
JET_ERR log_gen_exists(const sim_inst *in, int32_t gen, const uint8_t sign_log[28]);

/* ---- faults.c ---- */
JET_ERR fault_check(const char *api);
bool profile_xp(void);
void faults_reload(void);

/* ---- instance.c ---- */
sim_inst *inst_lookup(JET_INSTANCE h, JET_ERR *err);
JET_ERR inst_gate(JET_INSTANCE h, sim_inst **out);
sim_inst *inst_first_running(void);
bool inst_one_instance_mode(void);
bool db_attached_elsewhere(const sim_inst *self, const char *path);
void inst_reset_all(void);

/* ---- database.c ---- */
int db_find(const sim_inst *in, const char *path);
JET_ERR db_attach(sim_inst *in, const char *path, JET_GRBIT grbit);
JET_ERR db_detach(sim_inst *in, int idx, bool clean);

/* ---- backup*.c ---- */
void bk_close_file(sim_backup *bk);
void bk_abort(sim_inst *in);
JET_ERR bk_end(sim_inst *in, JET_GRBIT grbit);
JET_ERR bk_prepare_logs(sim_inst *in);
JET_ERR bk_read_db(sim_inst *in, uint8_t *pv, uint32_t cb, uint32_t *got);
JET_ERR bk_read_log(sim_inst *in, uint8_t *pv, uint32_t cb, uint32_t *got);
void bk_make_trailer(sim_inst *in, uint8_t *page);
JET_ERR bk_checkpoint_gen(sim_inst *in, int32_t *gen);
size_t wlist_build(char paths[][SIM_PATH_MAX], int n, WCHAR **out);
void wlist_copy(const WCHAR *list, size_t size, WCHAR *szz, ULONG32 cbMax, ULONG32 *pcbActual, bool report_full);
JET_ERR sess_gate(JET_SESID sesid, sim_inst **out);
JET_ERR sess_lookup(JET_SESID sesid, sim_sess **ps, sim_inst **pin);
int sess_index(const sim_sess *s);

/* ---- logwrite.c: log records in v8 segments ---- */
enum {
    LR_INIT = 1, LR_TERM, LR_BEGIN0, LR_COMMIT0, LR_ROLLBACK, LR_CREATEDB, LR_ATTACHDB, LR_DETACHDB,
    LR_CREATETABLE, LR_ADDCOLUMN, LR_INSERT,
};
JET_ERR log_record(sim_inst *in, uint8_t type, uint16_t sess, const void *a, size_t na, const void *b, size_t nb);

/* ---- table.c: page store and catalog of databases created by the simulator ---- */
JET_ERR db_create(sim_inst *in, const char *path, JET_GRBIT grbit, int *slot);
JET_ERR dbw_flush(sim_inst *in, int idx);
void dbw_free(sim_db *db);
void dbw_on_roll(sim_inst *in);
void page_seal(uint8_t *page, uint32_t cb, uint32_t pgno);

/* ---- work.c: session state on instance and session end ---- */
void work_end_session(sim_sess *s, bool log);
int db_open_count(const sim_inst *in, int idx);
void work_inst_freed(sim_inst *in);
void work_reset(void);

uint32_t sim_default_legacy_names(void);

#endif
