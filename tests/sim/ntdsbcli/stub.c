// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
/* stub.c: an ntdsbcli.dll without the backup exports (build/sim/ntdsbcli-noexports/ntdsbcli.dll), for
 * probing code that must tell "the DLL loads but the export is gone" from a working DLL. */
__attribute__((visibility("default"))) int NtdsbcliSimStub(void) { return 0; }
