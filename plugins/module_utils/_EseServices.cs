// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
// ese.backup engine, service sources: the external backup sequence as a source of files (IBackupSource),
// and the two service-owned streaming APIs behind it: AD CS through certadm.dll (CertAdmNative, CertAdmSource)
// and AD DS through ntdsbcli.dll (NtdsBcliNative, NtdsBcliSource, NtdsBcliSource.Probe); the AD CS restore
// registration (CertAdmRestore, used by _EseRestore). Every call is checked
// and recorded in the same Trace as JetApi's; a failure is a JetFailure naming the call, with the HRESULT decoded
// to its JET_err where it is an ESE one (ServiceHr). C# 5, references System and System.Core only. The files
// above it: docs/architecture.md, section 2; the APIs: windows-backup-apis.md sections 1 and 2.

using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;
using ansible_collections.ese.backup.plugins.module_utils._EseNative;

namespace ansible_collections.ese.backup.plugins.module_utils._EseServices
{
    // ------------------------------------------------------------------------------------------------
    // The external backup sequence as a source sees it. A caller drives it in this order:
    //   Begin(incremental) -> [full] DatabaseNames(), then for each: OpenFile, Read until 0, Close
    //   -> LogNames(), then for each: OpenFile, Read until 0, Close -> [optional] Truncate() -> End(true).
    // On any failure the caller calls End(false), which never throws (it closes an open file first).
    // Names are those OpenFile takes: full paths without the service's one-character type prefix.
    // Read(buffer, cb) fills at most cb bytes and returns 0 at the end of the file; the caller checks that the
    // bytes add up to OpenFile's size (as BackupSequence.StreamFile does for JetReadFileInstance). cb must obey
    // ReadRule (ReadRule.Fit gives the largest allowed size up to a buffer's size); a read may return fewer bytes.
    //
    // The own-instance path (BackupSequence over JetApi) fits the same shape; an InstanceSource would hold the
    // JetApi and the JET_INSTANCE that SetupInstance made and map: Begin -> JetBeginExternalBackupInstance(0 or
    // JET_bitBackupIncremental); DatabaseNames -> JetApi.GetAttachInfo (checked against the plan's databases
    // there); OpenFile -> JetOpenFileInstanceW (the handle kept inside the source); Read ->
    // JetReadFileInstance; Close -> JetCloseFileInstance; LogNames -> JetApi.GetLogInfo2 (with ReadLogInfo's
    // checks, genLow/genHigh kept as facts); Truncate -> JetTruncateLogInstance; End(true) ->
    // JetEndExternalBackupInstance2(Normal), End(false) -> End2(Abort) or JetTerm2(StopBackup); Kind "instance",
    // Server the local host, ReadRule ReadSizeRule.Any, ReadHint ignored, no locations, dynamic files or token. StreamFile would
    // then call source.OpenFile/Read/Close instead of api.OpenFile/NativeMethods.JetReadFileInstance/CloseFile.
    // ------------------------------------------------------------------------------------------------
    public interface IBackupSource
    {
        string Kind { get; }                          // "adcs", "adds" (an own instance would be "instance")
        string Server { get; }                        // the server name the calls go to
        string CaName { get; }                        // the CA's name (adcs), else null
        bool Incremental { get; }                     // what Begin was asked for
        bool Prepared { get; }                        // Begin prepared a backup context that End has not released
        bool SupportsIncremental { get; }
        ReadSizeRule ReadRule { get; }
        uint ReadHint { get; set; }                   // the OpenFile read hint (set it from the buffer, ReadRule.Fit)
        Trace Trace { get; }

        void Begin(bool incremental);
        List<string> DatabaseNames();                 // full backups only; prefix stripped
        long OpenFile(string name);                   // the size to read
        uint Read(IntPtr buffer, uint cb);            // bytes read; 0 at the end of the file
        void Close();
        List<string> LogNames();                      // prefix stripped (logs, and patch files if any)
        void Truncate();
        void End(bool ok);                            // ok: checked; otherwise best effort, never throws

        // Facts for the manifest and for restore (known after Begin):
        List<BackupLocation> DatabaseLocations { get; }  // where the service keeps its files (restore map)
        List<string> DynamicFiles { get; }            // adcs: files to copy by other means (CRLs); else empty
        byte[] ExpiryToken { get; }                   // adds: DsBackupPrepare's token (store with the set); else null
        Dictionary<string, object> Facts();           // kind, server, ca_name, incremental, read rule, the above
    }

    // One entry of a service's database locations (CSBFT_/BFT_ type: database, log_dir, checkpoint_dir).
    public sealed class BackupLocation
    {
        public readonly string Type, Path;
        public readonly int Code;
        public BackupLocation(int code, string type, string path) { Code = code; Type = type; Path = path; }
        public Dictionary<string, object> ToDict()
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["type"] = Type; d["path"] = Path; d["code"] = (long)Code;
            return d;
        }
    }

    // How large one Read may be. Minimum/Multiple: what the API accepts for cb (ntdsbcli: a multiple of 8192 and
    // at least 24576). HintRounding: certadm's OpenFile hint (the first Open of a backup context sets the read size:
    // hint 0 -> 256 KB, else the power of 2 at or above it within 64 KB..4 MB; one Read then returns at most that).
    public sealed class ReadSizeRule
    {
        public readonly uint Minimum, Multiple;
        public readonly bool HintRounding;
        public readonly string Text;
        public const uint CertAdmMinHint = 64 * 1024, CertAdmMaxHint = 4 * 1024 * 1024, CertAdmDefault = 256 * 1024;

        public ReadSizeRule(uint minimum, uint multiple, bool hintRounding, string text)
        {
            Minimum = minimum; Multiple = multiple < 1 ? 1 : multiple; HintRounding = hintRounding; Text = text;
        }

        public static readonly ReadSizeRule Any = new ReadSizeRule(1, 1, false, "any size");
        public static readonly ReadSizeRule CertAdm = new ReadSizeRule(1, 1, true,
            "any size; the first OpenFile's hint sets the largest read (0: 256 KB, else the power of 2 at or above it within 64 KB..4 MB)");
        public static readonly ReadSizeRule NtdsBcli = new ReadSizeRule(24576, 8192, false, "a multiple of 8192 and at least 24576");

        public bool Allows(uint cb) { return cb >= Minimum && cb % Multiple == 0; }

        // The largest allowed read size not above cb; 0 when cb is below the minimum.
        public uint Fit(uint cb)
        {
            uint f = cb - cb % Multiple;
            return f >= Minimum ? f : 0;
        }

        // certadm: the read size the service picks for a first OpenFile hint.
        public static uint RoundHint(uint hint)
        {
            if (hint == 0) return CertAdmDefault;
            uint v = CertAdmMinHint;
            while (v < hint && v < CertAdmMaxHint) v <<= 1;
            return v;
        }

        // The most bytes one Read(cb) can deliver once the first OpenFile used 'hint'.
        public uint Delivered(uint hint, uint cb)
        {
            uint allowed = Fit(cb);
            if (!HintRounding) return allowed;
            return Math.Min(allowed, RoundHint(hint));
        }

        public Dictionary<string, object> ToDict()
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["minimum"] = (long)Minimum; d["multiple"] = (long)Multiple; d["hint_rounding"] = HintRounding; d["text"] = Text;
            return d;
        }
    }

    // ------------------------------------------------------------------------------------------------
    // HRESULTs of the service APIs (ntdsbmsg.h: FACILITY_NTDSB 0x800 carries ESE's codes, 0xC800xxxx = JET_err
    // -xxxx, 0x8800xxxx = JET_wrn +xxxx; FACILITY_BACKUP 0x7FF the client layer). ESE's own application convention
    // FACILITY_JET_ERR 0xE5E (0x8E5Exxxx / 0x0E5Exxxx) is accepted as well.
    // ------------------------------------------------------------------------------------------------
    public static class ServiceHr
    {
        public const int S_OK = 0;
        public const uint RpcUnavailable = 0x800706BA, RpcInvalidBinding = 0x800706A6, AccessDenied = 0x80070005;
        public const uint ServerSuspended = 0x80094006, HandleEof = 0x80070026, Win32HandleEof = 38;
        public const uint MissingFullBackup = 0xC8000230, InvalidParameter = 0x80070057;
        public const uint CouldNotConnect = 0xC7FF0007, EptNotRegistered = 0x800706D9;
        public const int errMissingFullBackup = -560, errInvalidBackupSequence = -521;

        private static readonly Dictionary<uint, string> names = Names();

        private static Dictionary<uint, string> Names()
        {
            Dictionary<uint, string> n = new Dictionary<uint, string>();
            n[0x800706BA] = "RPC_S_SERVER_UNAVAILABLE"; n[0x800706A6] = "RPC_S_INVALID_BINDING";
            n[0x80070005] = "E_ACCESSDENIED"; n[0x80070057] = "E_INVALIDARG"; n[0x8000FFFF] = "E_UNEXPECTED";
            n[0x8007000E] = "E_OUTOFMEMORY"; n[0x80004001] = "E_NOTIMPL"; n[0x80070003] = "ERROR_PATH_NOT_FOUND";
            n[0x80070026] = "ERROR_HANDLE_EOF"; n[0x80070420] = "ERROR_SERVICE_ALREADY_RUNNING";
            n[0x80094006] = "CERTSRV_E_SERVER_SUSPENDED"; n[0x80070002] = "ERROR_FILE_NOT_FOUND";
            n[0x800706D9] = "EPT_S_NOT_REGISTERED";
            string[] client = { null, "hrInvalidParam", "hrError", "hrInvalidHandle", "hrRestoreInProgress", "hrAlreadyOpen",
                null, "hrCouldNotConnect", "hrRestoreMapExists", "hrIncrementalBackupDisabled", "hrLogFileNotFound",
                "hrCircularLogging", "hrNoFullRestore", "hrCommunicationError", "hrFullBackupNotTaken",
                "hrMissingExpiryToken", "hrUnknownExpiryTokenFormat", "hrContentsExpired" };
            for (uint i = 1; i < client.Length; i++) if (client[i] != null) n[0xC7FF0000 | i] = client[i];
            return n;
        }

        private static readonly Dictionary<int, string> jetNames = JetNames();

        private static Dictionary<int, string> JetNames()
        {
            Dictionary<int, string> n = new Dictionary<int, string>();
            n[-501] = "JET_errLogFileCorrupt"; n[-505] = "JET_errBackupInProgress"; n[-520] = "JET_errNoBackup";
            n[-521] = "JET_errInvalidBackupSequence"; n[-523] = "JET_errBackupNotAllowedYet"; n[-526] = "JET_errInvalidBackup";
            n[-560] = "JET_errMissingFullBackup"; n[-616] = "JET_errLogFileNotCopied"; n[-800] = "JET_errBackupAbortByCaller";
            n[-801] = "JET_errBackupAbortByServer"; n[-1003] = "JET_errInvalidParameter"; n[-1018] = "JET_errReadVerifyFailure";
            n[-1022] = "JET_errDiskIO"; n[-1032] = "JET_errFileAccessDenied"; n[-1203] = "JET_errDatabaseNotFound";
            n[-1808] = "JET_errDiskFull"; n[-1907] = "JET_errAccessDenied";
            return n;
        }

        public static bool IsJet(int hr)
        {
            uint u = (uint)hr & 0xFFFF0000;
            return u == 0xC8000000 || u == 0x88000000 || u == 0x8E5E0000 || u == 0x0E5E0000;
        }

        // The value a JetFailure and the trace carry: the JET_err (or JET_wrn) for an ESE code, 0 for S_OK, the
        // HRESULT itself (a negative int outside ESE's range) for any other failure. ntdsbcli also returns plain
        // Win32 and RPC error codes (positive: 87, 1722, ...): those are failures too, carried as their HRESULT
        // (HRESULT_FROM_WIN32) so that they are named.
        public static int ToErr(int hr)
        {
            uint u = (uint)hr, high = u & 0xFFFF0000;
            int low = (int)(u & 0xFFFF);
            if ((high == 0xC8000000 || high == 0x8E5E0000) && low != 0) return -low;
            if ((high == 0x88000000 || high == 0x0E5E0000) && low != 0) return low;
            if (hr > 0 && high == 0) return unchecked((int)(0x80070000u | u));
            return hr < 0 ? hr : 0;
        }

        // Anything but S_OK and a JET warning (0x8800xxxx, a success with a JET_wrn; FAILED() would call it a failure).
        public static bool Failed(int hr) { return hr != S_OK && ToErr(hr) < 0; }

        public static string Hex(int hr) { return "0x" + ((uint)hr).ToString("X8", CultureInfo.InvariantCulture); }

        // "0xC8000230 (ESE: -560 JET_errMissingFullBackup)", "0x800706BA (RPC_S_SERVER_UNAVAILABLE)".
        public static string Describe(int hr)
        {
            if (hr > 0 && ((uint)hr & 0xFFFF0000) == 0) hr = ToErr(hr);   // a plain Win32 code, named as its HRESULT
            string s = Hex(hr);
            if (IsJet(hr))
            {
                int err = ToErr(hr);
                string name;
                return s + " (ESE: " + err.ToString(CultureInfo.InvariantCulture) + (jetNames.TryGetValue(err, out name) ? " " + name : "") + ")";
            }
            string n;
            if (names.TryGetValue((uint)hr, out n)) return s + " (" + n + ")";
            return s;
        }
    }

    // Checked calls shared by both sources: trace one call, throw a JetFailure naming it when it failed.
    internal static class ServiceCall
    {
        public static int Record(Trace trace, string call, int hr, string detail)
        {
            trace.Add(call, ServiceHr.ToErr(hr), (detail.Length > 0 ? detail + " " : "") + "hr=" + ServiceHr.Describe(hr));
            return hr;
        }

        public static JetFailure Failure(string call, int hr, string detail, string why)
        {
            return new JetFailure(call, ServiceHr.ToErr(hr), (detail.Length > 0 ? detail + " " : "") + "hr=" + ServiceHr.Describe(hr)
                + (why != null ? ": " + why : ""));
        }

        // A list returned in a buffer the DLL allocated (size in bytes, double-NUL WCHAR multi-string), copied and
        // freed with the DLL's free function; NULL with 0 bytes is the empty list.
        public static List<string> TakeList(IntPtr p, uint cb, string call, Action<IntPtr> free)
        {
            if (p == IntPtr.Zero)
            {
                if (cb != 0) throw new JetFailure(call, Jet.errInvalidParameter, "the list is NULL but its size is " + cb.ToString(CultureInfo.InvariantCulture) + " bytes");
                return new List<string>();
            }
            byte[] buf;
            try
            {
                if (cb > 64u * 1024 * 1024) throw new JetFailure(call, Jet.errInvalidParameter, "the list claims " + cb.ToString(CultureInfo.InvariantCulture) + " bytes");
                buf = new byte[cb];
                Marshal.Copy(p, buf, 0, (int)cb);
            }
            finally { free(p); }
            return JetApi.ParseMultiString(buf, (int)cb, call);
        }

        // The type prefix (CSBFT_/BFT_, one WCHAR) of each entry, checked against the allowed ones and stripped.
        public static List<string> Strip(List<string> entries, string call, params char[] allowed)
        {
            List<string> names = new List<string>();
            foreach (string e in entries)
            {
                if (e.Length < 2 || Array.IndexOf(allowed, e[0]) < 0)
                    throw new JetFailure(call, Jet.errInvalidParameter, "list entry '" + e + "' does not start with an expected type prefix (0x"
                        + (e.Length > 0 ? ((int)e[0]).ToString("X2", CultureInfo.InvariantCulture) : "--") + ")");
                names.Add(e.Substring(1));
            }
            return names;
        }

        public static List<BackupLocation> Locations(List<string> entries, string call)
        {
            List<BackupLocation> list = new List<BackupLocation>();
            foreach (string e in entries)
            {
                if (e.Length < 2) throw new JetFailure(call, Jet.errInvalidParameter, "empty location entry");
                int code = e[0];
                string type = code == 0x44 ? "database" : code == 0x82 ? "log_dir" : code == 0x83 ? "checkpoint_dir"
                    : code == 0x21 ? "log" : code == 0x25 ? "patch_file" : "unknown";
                list.Add(new BackupLocation(code, type, e.Substring(1)));
            }
            return list;
        }

        public static string LocalComputer()
        {
            string n = Environment.GetEnvironmentVariable("COMPUTERNAME");
            return string.IsNullOrEmpty(n) ? Environment.MachineName : n;
        }

        // The host part of a server name: "\\CA01" / "ca01.corp.example" -> "ca01".
        public static string Label(string server)
        {
            string s = (server ?? "").TrimStart('\\');
            int dot = s.IndexOf('.');
            return (dot >= 0 ? s.Substring(0, dot) : s).ToLowerInvariant();
        }

        public static bool IsLocal(string server)
        {
            string l = Label(server);
            return l == "localhost" || l == Label(LocalComputer());
        }

        public static string Bytes(long n) { return n.ToString(CultureInfo.InvariantCulture); }
    }

    // ------------------------------------------------------------------------------------------------
    // certadm.dll, Windows x64 widths: HRESULT int, BOOL int, DWORD/ULONG uint, HCSBC IntPtr, LARGE_INTEGER long,
    // WCHAR strings; W exports only (the documentation says to resolve the ...W names). Lists come back as a
    // DLL-allocated WCHAR multi-string with its size in bytes, freed with CertSrvBackupFree.
    // ------------------------------------------------------------------------------------------------
    public static class CertAdmNative
    {
        private const string CertAdm = "certadm.dll";

        [DllImport(CertAdm, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int CertSrvIsServerOnlineW(string pwszServerName, out int pfServerOnline);

        [DllImport(CertAdm, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int CertSrvBackupPrepareW(string pwszServerName, uint grbitJet, uint dwBackupFlags, out IntPtr phbc);

        [DllImport(CertAdm, ExactSpelling = true)]
        public static extern int CertSrvRestoreGetDatabaseLocationsW(IntPtr hbc, out IntPtr ppwszzDatabaseLocationList, out uint pcbSize);

        [DllImport(CertAdm, ExactSpelling = true)]
        public static extern int CertSrvBackupGetDatabaseNamesW(IntPtr hbc, out IntPtr ppwszzAttachmentInformation, out uint pcbSize);

        [DllImport(CertAdm, ExactSpelling = true)]
        public static extern int CertSrvBackupGetDynamicFileListW(IntPtr hbc, out IntPtr ppwszzFileList, out uint pcbSize);

        [DllImport(CertAdm, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int CertSrvBackupOpenFileW(IntPtr hbc, string pwszAttachmentName, uint cbReadHintSize, out long pliFileSize);

        [DllImport(CertAdm, ExactSpelling = true)]
        public static extern int CertSrvBackupRead(IntPtr hbc, IntPtr pvBuffer, uint cbBuffer, out uint pcbRead);

        [DllImport(CertAdm, ExactSpelling = true)]
        public static extern int CertSrvBackupClose(IntPtr hbc);

        [DllImport(CertAdm, ExactSpelling = true)]
        public static extern int CertSrvBackupGetBackupLogsW(IntPtr hbc, out IntPtr ppwszzBackupLogFiles, out uint pcbSize);

        [DllImport(CertAdm, ExactSpelling = true)]
        public static extern int CertSrvBackupTruncateLogs(IntPtr hbc);

        [DllImport(CertAdm, ExactSpelling = true)]
        public static extern int CertSrvBackupEnd(IntPtr hbc);

        [DllImport(CertAdm, ExactSpelling = true)]
        public static extern void CertSrvBackupFree(IntPtr pv);

        // The restore calls are local (no RPC): they register the restore the CA runs at its next start.
        [DllImport(CertAdm, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int CertSrvRestorePrepareW(string pwszServerName, uint dwRestoreFlags, out IntPtr phbc);

        [DllImport(CertAdm, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int CertSrvRestoreRegisterThroughFile(IntPtr hbc, string pwszCheckPointFilePath, string pwszLogPath,
            [In] CsedbRstmapW[] rgrstmap, int crstmap, string pwszBackupLogPath, uint genLow, uint genHigh);

        [DllImport(CertAdm, ExactSpelling = true)]
        public static extern int CertSrvRestoreRegisterComplete(IntPtr hbc, int hrRestoreState);

        [DllImport(CertAdm, ExactSpelling = true)]
        public static extern int CertSrvRestoreEnd(IntPtr hbc);

        public const uint BackupTypeFull = 0x1, BackupTypeLogsOnly = 0x2, RestoreTypeFull = 0x1;
        public const char PrefixDatabase = 'D', PrefixLog = '!', PrefixPatch = '%';
        public const uint IfNoRemoteICertAdminBackup = 0x40, IfNoLocalICertAdminBackup = 0x80;
    }

    // CSEDB_RSTMAPW: {pwszDatabaseName, pwszNewDatabaseName}, two WCHAR pointers (16 bytes on x64).
    [StructLayout(LayoutKind.Sequential, CharSet = CharSet.Unicode)]
    public struct CsedbRstmapW
    {
        [MarshalAs(UnmanagedType.LPWStr)] public string DatabaseName;
        [MarshalAs(UnmanagedType.LPWStr)] public string NewDatabaseName;
    }

    // ------------------------------------------------------------------------------------------------
    // AD CS restore, as certutil -restoreDB does it, with the CA stopped: CertSrvRestorePrepareW(CSRESTORE_TYPE_FULL)
    // -> CertSrvRestoreRegisterThroughFile(checkpoint path, log path, {backed-up name -> restored path}, the folder
    // that holds the backup's logs, genLow, genHigh) -> CertSrvRestoreRegisterComplete(S_OK) -> CertSrvRestoreEnd.
    // The CA runs the ESE restore (replays the logs) at its next start. A registration that is never completed
    // keeps the CA from starting; one completed with a failure HRESULT records a failed restore, which the CA
    // does not run (and does not start over either) until a restore is registered and completed again.
    // ------------------------------------------------------------------------------------------------
    public sealed class CertAdmRestore
    {
        public const uint ServiceAlreadyRunning = 0x80070420, EFail = 0x80004005;

        private readonly Trace trace;
        private readonly string server;
        private IntPtr hbc = IntPtr.Zero;
        private bool prepared, registered, completed;

        public CertAdmRestore(Trace trace, string server)
        {
            this.trace = trace;
            this.server = string.IsNullOrEmpty(server) ? ServiceCall.LocalComputer() : server;
        }

        public string Server { get { return server; } }
        public bool Prepared { get { return prepared; } }
        public bool Registered { get { return registered; } }
        public bool Completed { get { return completed; } }

        // Does the CA answer? true: running (online, or paused), false: not running (RPC server unavailable),
        // null: it gave another answer (the restore's own check, RestorePrepare, decides then).
        public static bool? IsRunning(Trace trace, string server)
        {
            const string call = "CertSrvIsServerOnlineW";
            int flag;
            int hr = CertAdmNative.CertSrvIsServerOnlineW(server, out flag);
            ServiceCall.Record(trace, call, hr, "server=" + server + (hr >= 0 ? " online=" + (flag != 0 ? "TRUE" : "FALSE") : ""));
            if ((uint)hr == ServiceHr.RpcUnavailable) return false;
            if (ServiceHr.Failed(hr)) return null;
            return true;
        }

        private void Check(string call, int hr, string detail, string why)
        {
            ServiceCall.Record(trace, call, hr, detail);
            if (ServiceHr.Failed(hr)) throw ServiceCall.Failure(call, hr, detail, why);
        }

        // 0x80070420 (ERROR_SERVICE_ALREADY_RUNNING): the CA runs; a restore needs it stopped.
        public void Prepare()
        {
            const string call = "CertSrvRestorePrepareW";
            if (prepared) throw new JetFailure(call, Jet.errInvalidParameter, "a restore is already prepared");
            IntPtr h;
            string detail = "server=" + server + " flags=0x1 (CSRESTORE_TYPE_FULL)";
            int hr = CertAdmNative.CertSrvRestorePrepareW(server, CertAdmNative.RestoreTypeFull, out h);
            uint u = (uint)hr;
            string why = u == ServiceAlreadyRunning ? "the CA on " + server + " is running; a restore needs it stopped (Stop-Service CertSvc)"
                : u == ServiceHr.AccessDenied ? "access denied: a restore runs on the CA host and needs SeRestorePrivilege enabled (Administrators, Backup Operators)"
                : null;
            Check(call, hr, detail, why);
            hbc = h; prepared = true;
        }

        // Where the CA's configuration keeps its database, logs and checkpoint (the restore context reads them
        // from the CA's configuration; the CA need not run).
        public List<BackupLocation> Locations()
        {
            const string call = "CertSrvRestoreGetDatabaseLocationsW";
            if (!prepared) throw new JetFailure(call, Jet.errInvalidParameter, "RestorePrepare was not called");
            IntPtr p; uint cb;
            int hr = CertAdmNative.CertSrvRestoreGetDatabaseLocationsW(hbc, out p, out cb);
            ServiceCall.Record(trace, call, hr, "cb=" + cb.ToString(CultureInfo.InvariantCulture) + " (restore context)");
            if (ServiceHr.Failed(hr))
            {
                if (p != IntPtr.Zero) CertAdmNative.CertSrvBackupFree(p);
                throw ServiceCall.Failure(call, hr, "(restore context)", null);
            }
            return ServiceCall.Locations(ServiceCall.TakeList(p, cb, call, CertAdmNative.CertSrvBackupFree), call);
        }

        // ThroughFile: the same registration as CertSrvRestoreRegisterW, needing only the restore privilege.
        public void Register(string checkpointPath, string logPath, List<KeyValuePair<string, string>> map, string backupLogPath, uint genLow, uint genHigh)
        {
            const string call = "CertSrvRestoreRegisterThroughFile";
            if (!prepared) throw new JetFailure(call, Jet.errInvalidParameter, "RestorePrepare was not called");
            CsedbRstmapW[] m = null;
            StringBuilder names = new StringBuilder();
            if (map.Count > 0)
            {
                m = new CsedbRstmapW[map.Count];
                for (int i = 0; i < map.Count; i++)
                {
                    m[i].DatabaseName = map[i].Key; m[i].NewDatabaseName = map[i].Value;
                    names.Append(i > 0 ? ", " : "").Append(map[i].Key).Append(" -> ").Append(map[i].Value);
                }
            }
            string detail = "checkpoint=" + checkpointPath + " log=" + logPath + " map=[" + names + "] backup_logs=" + backupLogPath
                + " generations=" + genLow.ToString(CultureInfo.InvariantCulture) + "-" + genHigh.ToString(CultureInfo.InvariantCulture);
            int hr = CertAdmNative.CertSrvRestoreRegisterThroughFile(hbc, checkpointPath, logPath, m, map.Count, backupLogPath, genLow, genHigh);
            Check(call, hr, detail, null);
            registered = true;
        }

        // hr S_OK: the CA runs the registered restore at its next start; a failure HRESULT records a failed restore.
        public void Complete(int hrRestoreState)
        {
            const string call = "CertSrvRestoreRegisterComplete";
            if (!prepared) throw new JetFailure(call, Jet.errInvalidParameter, "RestorePrepare was not called");
            int hr = CertAdmNative.CertSrvRestoreRegisterComplete(hbc, hrRestoreState);
            Check(call, hr, "state=" + ServiceHr.Describe(hrRestoreState), null);
            completed = true;
        }

        // ok false: best effort, never throws (the context is released whatever the answer).
        public void End(bool ok)
        {
            const string call = "CertSrvRestoreEnd";
            if (!prepared) return;
            int hr = CertAdmNative.CertSrvRestoreEnd(hbc);
            prepared = false; hbc = IntPtr.Zero;
            ServiceCall.Record(trace, call, hr, ok ? "" : "(after a failure)");
            if (ok && ServiceHr.Failed(hr)) throw ServiceCall.Failure(call, hr, "", null);
        }
    }

    // ------------------------------------------------------------------------------------------------
    // AD CS: a full (CSBACKUP_TYPE_FULL) or incremental (CSBACKUP_TYPE_LOGS_ONLY) backup of the CA database
    // through certadm.dll. Begin checks CertSrvIsServerOnlineW, prepares, and captures the restore locations and
    // the dynamic file list. Incremental: no database names (the CA answers 0xC8000209), only logs.
    // ------------------------------------------------------------------------------------------------
    public sealed class CertAdmSource : IBackupSource
    {
        private readonly Trace trace;
        private readonly string server;
        private string caName;
        private IntPtr hbc = IntPtr.Zero;
        private bool incremental, prepared, fileOpen, anyOpen;
        private string openName;
        private long openSize, openRead;
        private int openReads;
        private uint readHint;
        private List<BackupLocation> locations = new List<BackupLocation>();
        private List<string> dynamicFiles = new List<string>();

        // server: the CA host (null: this computer); caName: the CA's name when known (else taken from the database
        // file name, <CA name>.edb, once the names are listed).
        public CertAdmSource(Trace trace, string server, string caName)
        {
            this.trace = trace;
            this.server = string.IsNullOrEmpty(server) ? ServiceCall.LocalComputer() : server;
            this.caName = caName;
        }

        public string Kind { get { return "adcs"; } }
        public string Server { get { return server; } }
        public string CaName { get { return caName; } }
        public bool Incremental { get { return incremental; } }
        public bool SupportsIncremental { get { return true; } }
        public ReadSizeRule ReadRule { get { return ReadSizeRule.CertAdm; } }
        public Trace Trace { get { return trace; } }
        public List<BackupLocation> DatabaseLocations { get { return locations; } }
        public List<string> DynamicFiles { get { return dynamicFiles; } }
        public byte[] ExpiryToken { get { return null; } }
        public bool Prepared { get { return prepared; } }

        // The cbReadHintSize passed to OpenFile; the first Open of the backup sets the read size (ReadSizeRule.RoundHint).
        public uint ReadHint { get { return readHint; } set { readHint = value; } }
        // The most bytes one Read returns in this backup (known once a file was opened).
        public uint ReadSize { get { return ReadSizeRule.RoundHint(readHint); } }

        private string Remote()
        {
            return ServiceCall.IsLocal(server) ? null : server;
        }

        private string NotRunning()
        {
            return "the certificate services (CertSvc) on " + server + " are not running or cannot be reached (RPC server unavailable); "
                + "start the CA (Start-Service CertSvc) and run the backup on the CA host";
        }

        private string Paused()
        {
            return "the CA on " + server + " is paused (CertSrvIsServerOnlineW answered FALSE); a backup needs the CA online: resume it "
                + "(certutil -? ServerControl restart, or restart CertSvc) and retry";
        }

        // The first calls into certadm.dll: a library that cannot be loaded is a JetFailure naming it (NativeLoad).
        public void Begin(bool incremental)
        {
            try { Prepare(incremental); }
            catch (Exception e)
            {
                if (e is JetFailure || !NativeLoad.IsLoadFailure(e)) throw;
                JetFailure f = NativeLoad.Failure(e, "certadm.dll");
                trace.Add(f.Call, f.Err, f.Detail);
                throw f;
            }
        }

        private void Prepare(bool incremental)
        {
            if (prepared) throw new JetFailure("CertSrvBackupPrepareW", Jet.errInvalidParameter, "a backup is already prepared on this source");
            this.incremental = incremental;
            const string online = "CertSrvIsServerOnlineW";
            int flag;
            int hr = CertAdmNative.CertSrvIsServerOnlineW(server, out flag);
            ServiceCall.Record(trace, online, hr, "server=" + server + (hr >= 0 ? " online=" + (flag != 0 ? "TRUE" : "FALSE") : ""));
            if ((uint)hr == ServiceHr.RpcUnavailable) throw ServiceCall.Failure(online, hr, "server=" + server, NotRunning());
            if (ServiceHr.Failed(hr)) throw ServiceCall.Failure(online, hr, "server=" + server, "the CA did not answer whether it is online");
            if (flag == 0) throw new JetFailure(online, unchecked((int)ServiceHr.ServerSuspended), "server=" + server + " online=FALSE: " + Paused());

            const string prepare = "CertSrvBackupPrepareW";
            uint type = incremental ? CertAdmNative.BackupTypeLogsOnly : CertAdmNative.BackupTypeFull;
            string detail = "server=" + server + " flags=" + JetApi.Hex(type) + (incremental ? " (CSBACKUP_TYPE_LOGS_ONLY)" : " (CSBACKUP_TYPE_FULL)");
            IntPtr h;
            hr = CertAdmNative.CertSrvBackupPrepareW(server, 0, type, out h);
            ServiceCall.Record(trace, prepare, hr, detail);
            if (ServiceHr.Failed(hr))
            {
                uint u = (uint)hr;
                string why = null;
                if (u == ServiceHr.RpcUnavailable) why = NotRunning();
                else if (u == ServiceHr.ServerSuspended) why = Paused();
                else if (u == ServiceHr.MissingFullBackup)
                    why = "an incremental backup needs a full backup of this CA first (a full backup that did not truncate the logs is a copy "
                        + "backup and does not count); take a full backup with log truncation, then the incrementals";
                else if (u == ServiceHr.AccessDenied)
                    why = Remote() != null
                        ? "remote backup is disabled on the CA " + server + " (this host is " + ServiceCall.LocalComputer() + "): the CA's "
                          + "InterfaceFlags hold IF_NOREMOTEICERTADMINBACKUP (0x40, part of the default); run the backup on the CA host, "
                          + "or clear the flag (certutil -setreg CA\\InterfaceFlags -IF_NOREMOTEICERTADMINBACKUP) and restart CertSvc"
                        : "access denied: the backup needs SeBackupPrivilege enabled in the caller's token (Administrators, Backup "
                          + "Operators), and the CA's InterfaceFlags must not hold IF_NOLOCALICERTADMINBACKUP (0x80)";
                else if (u == 0xC80001F9)
                    why = "another backup of this CA is running; wait for it to end";
                throw ServiceCall.Failure(prepare, hr, detail, why);
            }
            hbc = h; prepared = true;

            List<string> loc = List("CertSrvRestoreGetDatabaseLocationsW");
            locations = ServiceCall.Locations(loc, "CertSrvRestoreGetDatabaseLocationsW");
            dynamicFiles = List("CertSrvBackupGetDynamicFileListW");
        }

        private List<string> List(string call)
        {
            if (!prepared) throw new JetFailure(call, Jet.errInvalidParameter, "Begin was not called");
            IntPtr p; uint cb;
            int hr;
            switch (call)
            {
                case "CertSrvRestoreGetDatabaseLocationsW": hr = CertAdmNative.CertSrvRestoreGetDatabaseLocationsW(hbc, out p, out cb); break;
                case "CertSrvBackupGetDynamicFileListW": hr = CertAdmNative.CertSrvBackupGetDynamicFileListW(hbc, out p, out cb); break;
                case "CertSrvBackupGetDatabaseNamesW": hr = CertAdmNative.CertSrvBackupGetDatabaseNamesW(hbc, out p, out cb); break;
                default: hr = CertAdmNative.CertSrvBackupGetBackupLogsW(hbc, out p, out cb); break;
            }
            ServiceCall.Record(trace, call, hr, "cb=" + cb.ToString(CultureInfo.InvariantCulture));
            if (ServiceHr.Failed(hr))
            {
                if (p != IntPtr.Zero) CertAdmNative.CertSrvBackupFree(p);
                throw ServiceCall.Failure(call, hr, "", (uint)hr == ServiceHr.RpcUnavailable ? NotRunning() : null);
            }
            return ServiceCall.TakeList(p, cb, call, CertAdmNative.CertSrvBackupFree);
        }

        public List<string> DatabaseNames()
        {
            const string call = "CertSrvBackupGetDatabaseNamesW";
            if (incremental) throw new JetFailure(call, ServiceHr.errInvalidBackupSequence, "an incremental (logs only) backup has no database files");
            List<string> names = ServiceCall.Strip(List(call), call, CertAdmNative.PrefixDatabase);
            if (caName == null && names.Count > 0)
            {
                string n = names[0].Replace('\\', '/');
                caName = Path.GetFileNameWithoutExtension(n.Substring(n.LastIndexOf('/') + 1)); // <CA name>.edb
            }
            return names;
        }

        public List<string> LogNames()
        {
            const string call = "CertSrvBackupGetBackupLogsW";
            return ServiceCall.Strip(List(call), call, CertAdmNative.PrefixLog, CertAdmNative.PrefixPatch);
        }

        public long OpenFile(string name)
        {
            const string call = "CertSrvBackupOpenFileW";
            if (!prepared) throw new JetFailure(call, Jet.errInvalidParameter, "Begin was not called");
            if (fileOpen) throw new JetFailure(call, Jet.errInvalidParameter, "name=" + name + ": " + openName + " is still open (one file at a time)");
            long size;
            int hr = CertAdmNative.CertSrvBackupOpenFileW(hbc, name, readHint, out size);
            string detail = "name=" + name + " hint=" + readHint.ToString(CultureInfo.InvariantCulture);
            ServiceCall.Record(trace, call, hr, detail + (ServiceHr.Failed(hr) ? "" : " size=" + ServiceCall.Bytes(size)));
            if (ServiceHr.Failed(hr)) throw ServiceCall.Failure(call, hr, detail, (uint)hr == ServiceHr.RpcUnavailable ? NotRunning() : null);
            if (size <= 0) throw new JetFailure(call, Jet.errInvalidParameter, detail + ": the service reports " + ServiceCall.Bytes(size) + " for it; a database or log file is never empty");
            fileOpen = true; anyOpen = true;
            openName = name; openSize = size; openRead = 0; openReads = 0;
            return size;
        }

        public uint Read(IntPtr buffer, uint cb)
        {
            const string call = "CertSrvBackupRead";
            if (!fileOpen) throw new JetFailure(call, Jet.errInvalidParameter, "no file is open");
            uint got;
            int hr = CertAdmNative.CertSrvBackupRead(hbc, buffer, cb, out got);
            openReads++;
            if (ServiceHr.Failed(hr))
            {
                string d = "name=" + openName + " call=" + openReads.ToString(CultureInfo.InvariantCulture) + " offset=" + ServiceCall.Bytes(openRead);
                ServiceCall.Record(trace, call, hr, d);
                throw ServiceCall.Failure(call, hr, d, (uint)hr == ServiceHr.RpcUnavailable ? NotRunning() : null);
            }
            if (got > cb) throw new JetFailure(call, Jet.errInvalidParameter, "name=" + openName + " delivered " + got + " bytes into a buffer of " + cb);
            openRead += got;
            return got;
        }

        public void Close()
        {
            const string call = "CertSrvBackupClose";
            if (!fileOpen) throw new JetFailure(call, Jet.errInvalidParameter, "no file is open");
            trace.Add("CertSrvBackupRead", 0, "name=" + openName + " calls=" + openReads.ToString(CultureInfo.InvariantCulture) + " bytes=" + ServiceCall.Bytes(openRead)
                + " size=" + ServiceCall.Bytes(openSize));
            fileOpen = false;
            int hr = CertAdmNative.CertSrvBackupClose(hbc);
            ServiceCall.Record(trace, call, hr, "name=" + openName);
            if (ServiceHr.Failed(hr)) throw ServiceCall.Failure(call, hr, "name=" + openName, (uint)hr == ServiceHr.RpcUnavailable ? NotRunning() : null);
        }

        public void Truncate()
        {
            const string call = "CertSrvBackupTruncateLogs";
            if (!prepared) throw new JetFailure(call, Jet.errInvalidParameter, "Begin was not called");
            int hr = CertAdmNative.CertSrvBackupTruncateLogs(hbc);
            ServiceCall.Record(trace, call, hr, "");
            if (ServiceHr.Failed(hr)) throw ServiceCall.Failure(call, hr, "", (uint)hr == ServiceHr.RpcUnavailable ? NotRunning() : null);
        }

        // certadm has no abort flag: End(false) closes an open file and ends the backup context all the same (the
        // handle is released whatever End returns). The CA records in its header only what ESE records for an end.
        public void End(bool ok)
        {
            const string call = "CertSrvBackupEnd";
            if (!prepared) { if (ok) throw new JetFailure(call, Jet.errInvalidParameter, "Begin was not called"); return; }
            if (fileOpen)
            {
                fileOpen = false;
                ServiceCall.Record(trace, "CertSrvBackupClose", CertAdmNative.CertSrvBackupClose(hbc), "name=" + openName + " (before End)");
            }
            int hr = CertAdmNative.CertSrvBackupEnd(hbc);
            prepared = false; hbc = IntPtr.Zero;
            ServiceCall.Record(trace, call, hr, ok ? "" : "(after a failure)");
            if (ok && ServiceHr.Failed(hr)) throw ServiceCall.Failure(call, hr, "", (uint)hr == ServiceHr.RpcUnavailable ? NotRunning() : null);
        }

        public Dictionary<string, object> Facts()
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["kind"] = Kind; d["server"] = server; d["ca_name"] = caName; d["incremental"] = incremental;
            d["read_rule"] = ReadRule.ToDict();
            if (anyOpen) d["read_size"] = (long)ReadSize;
            List<object> loc = new List<object>();
            foreach (BackupLocation l in locations) loc.Add(l.ToDict());
            d["database_locations"] = loc;
            d["dynamic_files"] = new List<object>(dynamicFiles.ConvertAll(s => (object)s));
            return d;
        }
    }

    // ------------------------------------------------------------------------------------------------
    // ntdsbcli.dll, Windows x64 widths (as above; HBC IntPtr). W exports for the string calls; DsBackupRead,
    // DsBackupClose, DsBackupTruncateLogs, DsBackupEnd, DsBackupFree have a single export.
    // ------------------------------------------------------------------------------------------------
    public static class NtdsBcliNative
    {
        private const string NtdsBcli = "ntdsbcli.dll";

        [DllImport(NtdsBcli, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int DsIsNTDSOnlineW(string szServerName, out int pfNTDSOnline);

        [DllImport(NtdsBcli, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int DsBackupPrepareW(string szBackupServer, uint grbit, uint btFlag, out IntPtr ppvExpiryToken,
            out uint pcbExpiryTokenSize, out IntPtr phbc);

        // On a backup context: where the DC keeps ntds.dit, its logs and checkpoint (BFT_NTDS_DATABASE, _LOG_DIR,
        // _CHECKPOINT_DIR), the map a restore needs.
        [DllImport(NtdsBcli, ExactSpelling = true)]
        public static extern int DsRestoreGetDatabaseLocationsW(IntPtr hbc, out IntPtr pszDatabaseLocationList, out uint pcbSize);

        [DllImport(NtdsBcli, ExactSpelling = true)]
        public static extern int DsBackupGetDatabaseNamesW(IntPtr hbc, out IntPtr pszAttachmentInfo, out uint pcbSize);

        [DllImport(NtdsBcli, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int DsBackupOpenFileW(IntPtr hbc, string szAttachmentName, uint cbReadHintSize, out long pliFileSize);

        [DllImport(NtdsBcli, ExactSpelling = true)]
        public static extern int DsBackupRead(IntPtr hbc, IntPtr pvBuffer, uint cbBuffer, out uint pcbRead);

        [DllImport(NtdsBcli, ExactSpelling = true)]
        public static extern int DsBackupClose(IntPtr hbc);

        [DllImport(NtdsBcli, ExactSpelling = true)]
        public static extern int DsBackupGetBackupLogsW(IntPtr hbc, out IntPtr pszBackupLogFiles, out uint pcbSize);

        [DllImport(NtdsBcli, ExactSpelling = true)]
        public static extern int DsBackupTruncateLogs(IntPtr hbc);

        [DllImport(NtdsBcli, ExactSpelling = true)]
        public static extern int DsBackupEnd(IntPtr hbc);

        [DllImport(NtdsBcli, ExactSpelling = true)]
        public static extern void DsBackupFree(IntPtr pvBuffer);

        public const uint BackupTypeFull = 0x1;
        public const char PrefixDatabase = 'D', PrefixLog = '!', PrefixPatch = '%';

        // Every export the source uses, for the probe.
        public static readonly string[] Exports = { "DsIsNTDSOnlineW", "DsBackupPrepareW", "DsRestoreGetDatabaseLocationsW", "DsBackupGetDatabaseNamesW", "DsBackupOpenFileW",
            "DsBackupRead", "DsBackupClose", "DsBackupGetBackupLogsW", "DsBackupTruncateLogs", "DsBackupEnd", "DsBackupFree" };
    }

    // ------------------------------------------------------------------------------------------------
    // AD DS: a full backup of ntds.dit and its logs through ntdsbcli.dll (deprecated since Windows Vista in favour
    // of VSS; Probe says whether this host still answers it). Full only; reads obey ReadSizeRule.NtdsBcli; the end
    // of a file is S_OK with 0 bytes or ERROR_HANDLE_EOF; the expiry token from DsBackupPrepareW is kept.
    // ------------------------------------------------------------------------------------------------
    public sealed class NtdsBcliSource : IBackupSource
    {
        public const string Vss = "the supported way to back up AD DS is VSS (the NTDS writer): 'wbadmin start systemstatebackup "
            + "-backupTarget:<volume>' (Windows Server Backup), or an IFM copy with ntdsutil \"ac i ntds\" ifm \"create full <path>\"";

        private readonly Trace trace;
        private readonly string server;
        private IntPtr hbc = IntPtr.Zero;
        private bool prepared, fileOpen, atEof;
        private string openName;
        private long openSize, openRead;
        private int openReads;
        private uint readHint = 65536;
        private byte[] token;
        private List<BackupLocation> locations = new List<BackupLocation>();

        public NtdsBcliSource(Trace trace, string server)
        {
            this.trace = trace;
            this.server = string.IsNullOrEmpty(server) ? ServiceCall.LocalComputer() : server;
        }

        public string Kind { get { return "adds"; } }
        public string Server { get { return server; } }
        public string CaName { get { return null; } }
        public bool Incremental { get { return false; } }
        public bool SupportsIncremental { get { return false; } }
        public ReadSizeRule ReadRule { get { return ReadSizeRule.NtdsBcli; } }
        public Trace Trace { get { return trace; } }
        public List<BackupLocation> DatabaseLocations { get { return locations; } }
        public List<string> DynamicFiles { get { return new List<string>(); } }
        public byte[] ExpiryToken { get { return token; } }
        public bool Prepared { get { return prepared; } }

        // The cbReadHintSize passed to DsBackupOpenFileW (fitted to ReadSizeRule.NtdsBcli; default 64 KiB).
        public uint ReadHint
        {
            get { return readHint; }
            set
            {
                uint f = ReadSizeRule.NtdsBcli.Fit(value);
                if (f == 0) throw new JetFailure("DsBackupOpenFileW", Jet.errInvalidParameter, "read hint " + value + " is below " + ReadSizeRule.NtdsBcli.Text);
                readHint = f;
            }
        }

        // The clear reason for the HRESULTs that say the DC does not serve this backup, else null.
        private static string NotAnswering(string server, int hr)
        {
            uint u = (uint)hr;
            string why;
            if (u == ServiceHr.RpcInvalidBinding) why = server + " is not this host: the AD DS backup API serves the local domain controller only; run the backup on the DC";
            else if (u == ServiceHr.CouldNotConnect || u == ServiceHr.RpcUnavailable) why = "AD DS on " + server + " is not running or cannot be reached (is this host a domain controller?)";
            else if (u == ServiceHr.EptNotRegistered) why = "the domain controller " + server + " registers no endpoint for the AD DS streaming backup API (deprecated since Windows Vista)";
            else if (u == ServiceHr.AccessDenied) return "access denied: the backup needs SeBackupPrivilege enabled in the caller's token (Administrators, Backup Operators)";
            else return null;
            return why + "; " + Vss;
        }

        // DsIsNTDSOnlineW must answer S_OK with TRUE (FALSE: the DC runs in Directory Services Restore Mode).
        private static void CheckOnline(Trace trace, string srv)
        {
            const string call = "DsIsNTDSOnlineW";
            int online;
            int hr = NtdsBcliNative.DsIsNTDSOnlineW(srv, out online);
            ServiceCall.Record(trace, call, hr, "server=" + srv + (hr >= 0 ? " online=" + (online != 0 ? "TRUE" : "FALSE") : ""));
            if (ServiceHr.Failed(hr))
                throw ServiceCall.Failure(call, hr, "server=" + srv, NotAnswering(srv, hr) ?? "AD DS did not answer whether it is online; " + Vss);
            if (online == 0)
                throw new JetFailure(call, Jet.errInvalidParameter, "server=" + srv + " online=FALSE: AD DS is not online on " + srv
                    + " (the DC runs in Directory Services Restore Mode, or the directory service is stopped); a backup needs it online");
        }

        // Is ntdsbcli.dll there with every export the source uses, and does DsIsNTDSOnlineW say NTDS is online?
        // Returns the probe's facts; throws a JetFailure (call ntdsbcli.dll or DsIsNTDSOnlineW) naming VSS otherwise.
        public static Dictionary<string, object> Probe(Trace trace, string server)
        {
            string srv = string.IsNullOrEmpty(server) ? ServiceCall.LocalComputer() : server;
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["library"] = "ntdsbcli.dll"; d["server"] = srv;
            foreach (string export in NtdsBcliNative.Exports)
            {
                try { Marshal.Prelink(typeof(NtdsBcliNative).GetMethod(export)); }
                catch (Exception e)
                {
                    if (!NativeLoad.IsLoadFailure(e)) throw;
                    bool noLib = e is DllNotFoundException || (e.Message ?? "").IndexOf("ntdsbcli", StringComparison.OrdinalIgnoreCase) >= 0 && !(e is EntryPointNotFoundException);
                    string what = noLib ? "ntdsbcli.dll cannot be loaded on this host" : "ntdsbcli.dll has no export " + export;
                    trace.Add("ntdsbcli.dll", Jet.errInvalidParameter, "probe " + export + ": " + e.GetType().Name + ": " + e.Message);
                    throw new JetFailure("ntdsbcli.dll", Jet.errInvalidParameter, what + " (" + e.GetType().Name + ": " + e.Message
                        + "); the AD DS streaming backup API is deprecated and may be absent from Windows Server 2016 and later; " + Vss);
                }
            }
            trace.Add("ntdsbcli.dll", 0, "probe: " + NtdsBcliNative.Exports.Length.ToString(CultureInfo.InvariantCulture) + " exports present");
            d["exports"] = true;
            CheckOnline(trace, srv);
            d["online"] = true;
            return d;
        }

        // The first call into ntdsbcli.dll: a library that cannot be loaded is a JetFailure naming it and VSS.
        public void Begin(bool incremental)
        {
            try { Prepare(incremental); }
            catch (Exception e)
            {
                if (e is JetFailure || !NativeLoad.IsLoadFailure(e)) throw;
                JetFailure f = NativeLoad.Failure(e, "ntdsbcli.dll");
                f = new JetFailure(f.Call, f.Err, f.Detail + "; " + Vss);
                trace.Add(f.Call, f.Err, f.Detail);
                throw f;
            }
        }

        private void Prepare(bool incremental)
        {
            const string call = "DsBackupPrepareW";
            if (incremental)
                throw new JetFailure(call, Jet.errInvalidParameter, "AD DS supports full backups only (BACKUP_TYPE_FULL); incremental AD backups "
                    + "are unsupported; " + Vss);
            if (prepared) throw new JetFailure(call, Jet.errInvalidParameter, "a backup is already prepared on this source");
            CheckOnline(trace, server);
            IntPtr t, h; uint cbt;
            string detail = "server=" + server + " btFlag=0x1 (BACKUP_TYPE_FULL)";
            int hr = NtdsBcliNative.DsBackupPrepareW(server, 0, NtdsBcliNative.BackupTypeFull, out t, out cbt, out h);
            ServiceCall.Record(trace, call, hr, detail + (ServiceHr.Failed(hr) ? "" : " token=" + cbt.ToString(CultureInfo.InvariantCulture) + " bytes"));
            if (ServiceHr.Failed(hr))
            {
                if (t != IntPtr.Zero) NtdsBcliNative.DsBackupFree(t);
                string why = NotAnswering(server, hr);
                if ((uint)hr == 0xC80001F9) why = "another backup of this domain controller is running; wait for it to end";
                throw ServiceCall.Failure(call, hr, detail, why);
            }
            hbc = h; prepared = true;   // from here on the DC holds a backup context: End must follow, whatever fails next
            try
            {
                if (t != IntPtr.Zero)
                {
                    if (cbt > 1024 * 1024) throw new JetFailure(call, Jet.errInvalidParameter, "expiry token claims " + cbt + " bytes");
                    token = new byte[cbt];
                    Marshal.Copy(t, token, 0, (int)cbt);
                }
                else token = new byte[0];
            }
            finally { if (t != IntPtr.Zero) NtdsBcliNative.DsBackupFree(t); }
            locations = ServiceCall.Locations(List("DsRestoreGetDatabaseLocationsW"), "DsRestoreGetDatabaseLocationsW");
        }

        private List<string> List(string call)
        {
            if (!prepared) throw new JetFailure(call, Jet.errInvalidParameter, "Begin was not called");
            IntPtr p; uint cb;
            int hr = call == "DsBackupGetDatabaseNamesW" ? NtdsBcliNative.DsBackupGetDatabaseNamesW(hbc, out p, out cb)
                : call == "DsRestoreGetDatabaseLocationsW" ? NtdsBcliNative.DsRestoreGetDatabaseLocationsW(hbc, out p, out cb)
                : NtdsBcliNative.DsBackupGetBackupLogsW(hbc, out p, out cb);
            ServiceCall.Record(trace, call, hr, "cb=" + cb.ToString(CultureInfo.InvariantCulture));
            if (ServiceHr.Failed(hr))
            {
                if (p != IntPtr.Zero) NtdsBcliNative.DsBackupFree(p);
                throw ServiceCall.Failure(call, hr, "", NotAnswering(server, hr));
            }
            return ServiceCall.TakeList(p, cb, call, NtdsBcliNative.DsBackupFree);
        }

        public List<string> DatabaseNames()
        {
            const string call = "DsBackupGetDatabaseNamesW";
            return ServiceCall.Strip(List(call), call, NtdsBcliNative.PrefixDatabase);
        }

        public List<string> LogNames()
        {
            const string call = "DsBackupGetBackupLogsW";
            return ServiceCall.Strip(List(call), call, NtdsBcliNative.PrefixLog, NtdsBcliNative.PrefixPatch);
        }

        public long OpenFile(string name)
        {
            const string call = "DsBackupOpenFileW";
            if (!prepared) throw new JetFailure(call, Jet.errInvalidParameter, "Begin was not called");
            if (fileOpen) throw new JetFailure(call, Jet.errInvalidParameter, "name=" + name + ": " + openName + " is still open (one file at a time)");
            long size;
            string detail = "name=" + name + " hint=" + readHint.ToString(CultureInfo.InvariantCulture);
            int hr = NtdsBcliNative.DsBackupOpenFileW(hbc, name, readHint, out size);
            ServiceCall.Record(trace, call, hr, detail + (ServiceHr.Failed(hr) ? "" : " size=" + ServiceCall.Bytes(size)));
            if (ServiceHr.Failed(hr)) throw ServiceCall.Failure(call, hr, detail, NotAnswering(server, hr));
            if (size <= 0) throw new JetFailure(call, Jet.errInvalidParameter, detail + ": the service reports " + ServiceCall.Bytes(size) + " for it; a database or log file is never empty");
            fileOpen = true; atEof = false;
            openName = name; openSize = size; openRead = 0; openReads = 0;
            return size;
        }

        // cb is fitted down to the rule (a multiple of 8192); below 24576 is the caller's error.
        public uint Read(IntPtr buffer, uint cb)
        {
            const string call = "DsBackupRead";
            if (!fileOpen) throw new JetFailure(call, Jet.errInvalidParameter, "no file is open");
            uint fit = ReadSizeRule.NtdsBcli.Fit(cb);
            if (fit == 0) throw new JetFailure(call, Jet.errInvalidParameter, "read size " + cb + " is not allowed: " + ReadSizeRule.NtdsBcli.Text);
            if (atEof) return 0;
            uint got;
            int hr = NtdsBcliNative.DsBackupRead(hbc, buffer, fit, out got);
            openReads++;
            uint u = (uint)hr;
            if (u == ServiceHr.HandleEof || u == ServiceHr.Win32HandleEof) { atEof = true; return 0; }
            if (ServiceHr.Failed(hr))
            {
                string d = "name=" + openName + " call=" + openReads.ToString(CultureInfo.InvariantCulture) + " offset=" + ServiceCall.Bytes(openRead);
                ServiceCall.Record(trace, call, hr, d);
                throw ServiceCall.Failure(call, hr, d, NotAnswering(server, hr));
            }
            if (got > fit) throw new JetFailure(call, Jet.errInvalidParameter, "name=" + openName + " delivered " + got + " bytes for a read of " + fit);
            openRead += got;
            if (got == 0) atEof = true;
            return got;
        }

        public void Close()
        {
            const string call = "DsBackupClose";
            if (!fileOpen) throw new JetFailure(call, Jet.errInvalidParameter, "no file is open");
            trace.Add("DsBackupRead", 0, "name=" + openName + " calls=" + openReads.ToString(CultureInfo.InvariantCulture) + " bytes=" + ServiceCall.Bytes(openRead)
                + " size=" + ServiceCall.Bytes(openSize) + (atEof ? " eof" : ""));
            fileOpen = false;
            int hr = NtdsBcliNative.DsBackupClose(hbc);
            ServiceCall.Record(trace, call, hr, "name=" + openName);
            if (ServiceHr.Failed(hr)) throw ServiceCall.Failure(call, hr, "name=" + openName, NotAnswering(server, hr));
        }

        public void Truncate()
        {
            const string call = "DsBackupTruncateLogs";
            if (!prepared) throw new JetFailure(call, Jet.errInvalidParameter, "Begin was not called");
            int hr = NtdsBcliNative.DsBackupTruncateLogs(hbc);
            ServiceCall.Record(trace, call, hr, "");
            if (ServiceHr.Failed(hr)) throw ServiceCall.Failure(call, hr, "", NotAnswering(server, hr));
        }

        public void End(bool ok)
        {
            const string call = "DsBackupEnd";
            if (!prepared) { if (ok) throw new JetFailure(call, Jet.errInvalidParameter, "Begin was not called"); return; }
            if (fileOpen)
            {
                fileOpen = false;
                ServiceCall.Record(trace, "DsBackupClose", NtdsBcliNative.DsBackupClose(hbc), "name=" + openName + " (before End)");
            }
            int hr = NtdsBcliNative.DsBackupEnd(hbc);
            prepared = false; hbc = IntPtr.Zero;
            ServiceCall.Record(trace, call, hr, ok ? "" : "(after a failure)");
            if (ok && ServiceHr.Failed(hr)) throw ServiceCall.Failure(call, hr, "", NotAnswering(server, hr));
        }

        public Dictionary<string, object> Facts()
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["kind"] = Kind; d["server"] = server; d["ca_name"] = null; d["incremental"] = false;
            d["read_rule"] = ReadRule.ToDict();
            d["read_hint"] = (long)readHint;
            List<object> loc = new List<object>();
            foreach (BackupLocation l in locations) loc.Add(l.ToDict());
            d["database_locations"] = loc;
            d["dynamic_files"] = new List<object>();
            d["expiry_token"] = token == null ? null : Hex(token);
            return d;
        }

        private static string Hex(byte[] b)
        {
            StringBuilder s = new StringBuilder(b.Length * 2);
            foreach (byte x in b) s.Append(x.ToString("x2", CultureInfo.InvariantCulture));
            return s.ToString();
        }
    }
}
