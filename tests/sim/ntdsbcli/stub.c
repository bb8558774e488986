/* stub.c: an ntdsbcli.dll without the backup exports (build/sim/ntdsbcli-noexports/ntdsbcli.dll), for
 * probing code that must tell "the DLL loads but the export is gone" from a working DLL. */
__attribute__((visibility("default"))) int NtdsbcliSimStub(void) { return 0; }
