// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* ntdssim.h: what the simulated ntdsbcli.dll (ntdsbcli.c) and the simulated DC service (ntdssvc.c)
 * share beyond the certadm simulator's framing, message fields, UTF-16 strings and JET_ERR form
 * (../certadm/certsim.h and proto.c, used as they are).
 *
 * Widths follow Windows x64 (windows-backup-apis.md §2): WCHAR 16-bit, HRESULT int32, DWORD/ULONG
 * uint32, HBC void*, LARGE_INTEGER int64, BOOL int32. */
#ifndef NTDSSIM_H
#define NTDSSIM_H

#include "../certadm/certsim.h"

/* Win32 errors in their HRESULT form (HRESULT_FROM_WIN32) */
#define DS_E_INVALID_PARAMETER CS_HR(0x80070057u)   /* ERROR_INVALID_PARAMETER 87 */
#define DS_E_HANDLE_EOF CS_HR(0x80070026u)          /* ERROR_HANDLE_EOF 38 */
#define DS_E_ACCESS_DENIED CS_HR(0x80070005u)       /* ERROR_ACCESS_DENIED 5 */
#define DS_E_SERVICE_RUNNING CS_HR(0x80070420u)     /* ERROR_SERVICE_ALREADY_RUNNING 1056 */
#define DS_E_PATH_NOT_FOUND CS_HR(0x80070003u)      /* ERROR_PATH_NOT_FOUND 3 */
#define DS_E_RPC_UNAVAILABLE CS_HR(0x800706BAu)     /* RPC_S_SERVER_UNAVAILABLE 1722 */
#define DS_E_RPC_INVALID_BINDING CS_HR(0x800706A6u) /* RPC_S_INVALID_BINDING 1702 */
#define DS_E_EPT_NOT_REGISTERED CS_HR(0x800706D9u)  /* EPT_S_NOT_REGISTERED 1753 */
/* backup client layer, FACILITY_BACKUP 0x7FF (ntdsbmsg.h) */
#define DS_hrInvalidParam CS_HR(0xC7FF0001u)
#define DS_hrInvalidHandle CS_HR(0xC7FF0003u)
#define DS_hrRestoreInProgress CS_HR(0xC7FF0004u)
#define DS_hrAlreadyOpen CS_HR(0xC7FF0005u)
#define DS_hrCouldNotConnect CS_HR(0xC7FF0007u)
#define DS_hrMissingExpiryToken CS_HR(0xC7FF000Fu)
#define DS_hrUnknownExpiryTokenFormat CS_HR(0xC7FF0010u)
#define DS_hrContentsExpired CS_HR(0xC7FF0011u)
#define DS_hrInvalidBackupSequence CS_HR(0xC8000209u)

/* ntdsbcli.h */
#define BACKUP_TYPE_FULL 0x01u
#define BACKUP_TYPE_LOGS_ONLY 0x02u
#define BACKUP_TYPE_INCREMENTAL 0x04u
#define RESTORE_TYPE_AUTHORATATIVE 0x01u
#define RESTORE_TYPE_ONLINE 0x02u
#define RESTORE_TYPE_CATCHUP 0x04u
#define BFT_LOG 0x21
#define BFT_LOG_DIR 0x82
#define BFT_CHECKPOINT_DIR 0x83
#define BFT_NTDS_DATABASE 0x44

/* The read hint and every read size: a multiple of 8192, at least 3 pages of 8 KB (§2). */
#define DS_READ_UNIT 8192u
#define DS_READ_MIN 24576u

/* The expiry token (a choice of the simulator; tests/sim/README.md "ntdsbcli.dll"): 16 bytes,
 * little-endian: u32 version (1), u32 tombstone lifetime in days, i64 backup time as a FILETIME
 * (100 ns units since 1601-01-01 UTC). */
#define DS_TOKEN_VERSION 1u
#define DS_TOKEN_SIZE 16u
#define DS_FILETIME_UNIX_EPOCH 116444736000000000LL
#define DS_FILETIME_PER_DAY 864000000000LL

#endif
