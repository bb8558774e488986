// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* certsim.h: what the simulated certadm.dll (certadm.c) and the simulated CA service
 * (certsvc.c) share: HRESULT values, the local wire protocol and its framing.
 *
 * Widths follow Windows x64 (windows-backup-apis.md §1): WCHAR 16-bit, HRESULT int32,
 * DWORD/ULONG uint32, HCSBC void*, LARGE_INTEGER int64, BOOL int32. */
#ifndef CERTSIM_H
#define CERTSIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CS_EXPORT __attribute__((visibility("default")))

typedef int32_t HRESULT;
typedef uint16_t CS_WCHAR;

#define CS_HR(x) ((HRESULT)(uint32_t)(x))
#define CS_S_OK 0
/* Win32 and COM forms */
#define CS_E_RPC_UNAVAILABLE CS_HR(0x800706BAu)  /* HRESULT_FROM_WIN32(RPC_S_SERVER_UNAVAILABLE) */
#define CS_E_ACCESSDENIED CS_HR(0x80070005u)
#define CS_E_INVALIDARG CS_HR(0x80070057u)
#define CS_E_UNEXPECTED CS_HR(0x8000FFFFu)
#define CS_E_OUTOFMEMORY CS_HR(0x8007000Eu)
#define CS_E_NOTIMPL CS_HR(0x80004001u)
#define CS_E_PATH_NOT_FOUND CS_HR(0x80070003u)
#define CS_E_SERVICE_RUNNING CS_HR(0x80070420u)  /* HRESULT_FROM_WIN32(ERROR_SERVICE_ALREADY_RUNNING) */
#define CS_E_SERVER_SUSPENDED CS_HR(0x80094006u) /* CERTSRV_E_SERVER_SUSPENDED */
/* backup client layer, FACILITY_BACKUP 0x7FF (ntdsbmsg.h) */
#define CS_hrInvalidParam CS_HR(0xC7FF0001u)
#define CS_hrInvalidHandle CS_HR(0xC7FF0003u)
#define CS_hrRestoreInProgress CS_HR(0xC7FF0004u)

/* CSBFT_* (certbcli.h) */
#define CSBFT_LOG 0x21
#define CSBFT_LOG_DIR 0x82
#define CSBFT_CHECKPOINT_DIR 0x83
#define CSBFT_CERTSERVER_DATABASE 0x44

#define CSBACKUP_TYPE_FULL 0x1u
#define CSBACKUP_TYPE_LOGS_ONLY 0x2u
#define CSRESTORE_TYPE_FULL 0x1u
#define CSRESTORE_TYPE_ONLINE 0x2u
#define CSRESTORE_TYPE_CATCHUP 0x4u
#define CSCONTROL_SHUTDOWN 0x1u
#define CSCONTROL_SUSPEND 0x2u
#define CSCONTROL_RESTART 0x3u

/* certsrv.h interface flags */
#define IF_NOREMOTEICERTADMINBACKUP 0x40u
#define IF_NOLOCALICERTADMINBACKUP 0x80u
#define IF_DEFAULT_FLAGS 0x641u

/* Requests: frame {u32 length of what follows, u32 op, body}; answers: {u32 length, i32 hr, body}. */
enum {
    OP_PING = 1, OP_PREPARE, OP_LOCATIONS, OP_DBNAMES, OP_OPEN, OP_READ, OP_CLOSE, OP_LOGS,
    OP_TRUNCATE, OP_DYNFILES, OP_END, OP_CONTROL,
};
#define CS_MAX_FRAME (8u << 20)
#define CS_MAX_READ (4u << 20)   /* the largest read buffer certadm.dll picks (4 MB) */
#define CS_PATH 1024

typedef struct { uint8_t *p; size_t n, cap; bool oom; } cs_msg;
typedef struct { const uint8_t *p; size_t n, o; bool bad; } cs_rd;

void cs_msg_raw(cs_msg *m, const void *data, size_t n);
void cs_msg_u32(cs_msg *m, uint32_t v);
void cs_msg_u64(cs_msg *m, uint64_t v);
void cs_msg_blob(cs_msg *m, const void *data, uint32_t n);
void cs_msg_str(cs_msg *m, const char *s);
void cs_msg_free(cs_msg *m);
uint32_t cs_rd_u32(cs_rd *r);
uint64_t cs_rd_u64(cs_rd *r);
const uint8_t *cs_rd_blob(cs_rd *r, uint32_t *n);
bool cs_rd_str(cs_rd *r, char *out, size_t cap);

bool cs_send_frame(int fd, uint32_t head, const cs_msg *body);
bool cs_recv_frame(int fd, uint32_t *head, uint8_t **body, size_t *n);

HRESULT cs_hr_from_jet(int32_t err);
size_t cs_w16_len(const CS_WCHAR *w);
bool cs_w16_to_utf8(const CS_WCHAR *w, char *out, size_t cap);
size_t cs_utf8_to_w16(const char *s, CS_WCHAR *out, size_t cap_units);
void cs_socket_name(const char *server, char *label, size_t cap);
bool cs_socket_path(const char *dir, const char *label, char *out, size_t cap);

#endif
