// ese.backup engine, native layer: raw P/Invoke to esent.dll (NativeMethods), checked calls recorded in a
// Trace (JetApi), header facts, page-aligned buffers with the double-buffered copy, and a minimal JSON
// reader/writer. C# 5, references System and System.Core only. Used by EseEngine.cs (docs/architecture.md).

using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Threading;

namespace ansible_collections.ese.backup.plugins.module_utils._EseNative
{
    // ------------------------------------------------------------------------------------------------
    // Layer 1: raw P/Invoke, Windows x64 widths (JET_INSTANCE/JET_SESID/JET_HANDLE = IntPtr,
    // unsigned long/grbit = uint, JET_ERR = int).
    // ------------------------------------------------------------------------------------------------
    public static class NativeMethods
    {
        private const string Esent = "esent.dll";

        [DllImport(Esent, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int JetCreateInstance2W(out IntPtr pinstance, string szInstanceName, string szDisplayName, uint grbit);

        [DllImport(Esent, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int JetSetSystemParameterW(ref IntPtr pinstance, IntPtr sesid, uint paramid, IntPtr lParam, string szParam);

        // Same export with a NULL instance pointer: sets the process-wide (global) value.
        [DllImport(Esent, CharSet = CharSet.Unicode, ExactSpelling = true, EntryPoint = "JetSetSystemParameterW")]
        public static extern int JetSetSystemParameterGlobalW(IntPtr pinstanceNull, IntPtr sesid, uint paramid, IntPtr lParam, string szParam);

        [DllImport(Esent, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int JetGetSystemParameterW(IntPtr instance, IntPtr sesid, uint paramid, ref IntPtr plParam, IntPtr szParam, uint cbMax);

        [DllImport(Esent, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int JetInit3W(ref IntPtr pinstance, IntPtr prstInfo, uint grbit);

        [DllImport(Esent, ExactSpelling = true)]
        public static extern int JetTerm2(IntPtr instance, uint grbit);

        [DllImport(Esent, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int JetBeginSessionW(IntPtr instance, out IntPtr psesid, string szUserName, string szPassword);

        [DllImport(Esent, ExactSpelling = true)]
        public static extern int JetEndSession(IntPtr sesid, uint grbit);

        [DllImport(Esent, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int JetAttachDatabase2W(IntPtr sesid, string szFilename, uint cpgDatabaseSizeMax, uint grbit);

        [DllImport(Esent, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int JetDetachDatabase2W(IntPtr sesid, string szFilename, uint grbit);

        [DllImport(Esent, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int JetGetDatabaseFileInfoW(string szDatabaseName, [Out] byte[] pvResult, uint cbMax, uint infoLevel);

        [DllImport(Esent, ExactSpelling = true)]
        public static extern int JetBeginExternalBackupInstance(IntPtr instance, uint grbit);

        [DllImport(Esent, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int JetGetAttachInfoInstanceW(IntPtr instance, [Out] byte[] szzDatabases, uint cbMax, out uint pcbActual);

        [DllImport(Esent, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int JetOpenFileInstanceW(IntPtr instance, string szFileName, out IntPtr phfFile, out uint pulFileSizeLow, out uint pulFileSizeHigh);

        [DllImport(Esent, ExactSpelling = true)]
        public static extern int JetReadFileInstance(IntPtr instance, IntPtr hfFile, IntPtr pv, uint cb, out uint pcbActual);

        [DllImport(Esent, ExactSpelling = true)]
        public static extern int JetCloseFileInstance(IntPtr instance, IntPtr hfFile);

        // pLogInfo is a JET_LOGINFO_W (20 bytes: cbSize, ulGenLow, ulGenHigh, WCHAR szBaseName[4]).
        [DllImport(Esent, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int JetGetLogInfoInstance2W(IntPtr instance, [Out] byte[] wszzLogs, uint cbMax, out uint pcbActual, [In, Out] byte[] pLogInfo);

        [DllImport(Esent, ExactSpelling = true)]
        public static extern int JetTruncateLogInstance(IntPtr instance);

        [DllImport(Esent, ExactSpelling = true)]
        public static extern int JetEndExternalBackupInstance2(IntPtr instance, uint grbit);

        // JET_RSTMAP_W[] is passed as 2 pointers per entry (szDatabaseName, szNewDatabaseName: 16 bytes on x64);
        // pLogInfo is a 20-byte JET_LOGINFO_W (jet-constants.md 5.3, 5.4).
        [DllImport(Esent, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int JetExternalRestore2W(string szCheckpointFilePath, string szLogPath, [In] IntPtr[] rgrstmap, int crstfilemap,
            string szBackupLogPath, [In, Out] byte[] pLogInfo, string szTargetInstanceName, string szTargetInstanceLogPath,
            string szTargetInstanceCheckpointPath, IntPtr pfn);
    }

    public static class Jet
    {
        public const uint ParamSystemPath = 0, ParamTempPath = 1, ParamLogFilePath = 2, ParamBaseName = 3;
        public const uint ParamMaxTemporaryTables = 10, ParamCircularLog = 17, ParamRecovery = 34;
        public const uint ParamNoInformationEvent = 50, ParamDatabasePageSize = 64, ParamLegacyFileNames = 136;
        public const uint DbInfoMisc = 14, DbInfoPageSize = 17;
        public const int DbInfoMiscSize = 348;
        public const uint BackupIncremental = 0x1, BackupEndNormal = 0x1, BackupEndAbort = 0x2;
        public const uint TermComplete = 0x1, TermStopBackup = 0x4;
        public const uint InitLogStreamMustExist = 0x40;
        public const uint DbReadOnly = 0x1;
        public const int LogInfoWSize = 20;
        public const int errDatabaseNotFound = -1203, errDiskFull = -1808, errDiskIO = -1022;
        public const int errFileAccessDenied = -1032, errInvalidParameter = -1003, errFileInvalidType = -1812;
    }

    // ------------------------------------------------------------------------------------------------
    // Layer 2: checked calls. Every call appends {call, err, detail} to the trace and returns the JET_ERR.
    // ------------------------------------------------------------------------------------------------
    public sealed class JetFailure : Exception
    {
        public readonly string Call;
        public readonly int Err;
        public readonly string Detail;
        public JetFailure(string call, int err, string detail) : base(call + " failed with " + err.ToString(CultureInfo.InvariantCulture) + ": " + detail)
        {
            Call = call; Err = err; Detail = detail;
        }
        public Dictionary<string, object> ToDict()
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["call"] = Call; d["err"] = (long)Err; d["detail"] = Detail;
            return d;
        }
    }

    // A native library that cannot be loaded: esent.dll, libc.so.6 or libcrypto.so.3. .NET throws
    // DllNotFoundException (or EntryPointNotFoundException for a library without the export); PowerShell 7
    // throws ArgumentNullException ("Value cannot be null. (Parameter 'path1')") from its native-library
    // resolver for the in-memory assembly that Add-CSharpType compiles. Either way the failure names the
    // library, the call and what to check.
    public static class NativeLoad
    {
        // True when e is a failure to load (or bind) a P/Invoke target rather than an error of the call.
        public static bool IsLoadFailure(Exception e)
        {
            if (e is DllNotFoundException || e is EntryPointNotFoundException || e is BadImageFormatException) return true;
            ArgumentNullException an = e as ArgumentNullException;
            return an != null && (an.ParamName == "path1" || PInvokeFrame(e) != null || (e.StackTrace ?? "").Contains("managed-to-native"));
        }

        // The P/Invoke method at which e was thrown, or null.
        private static System.Reflection.MethodBase PInvokeFrame(Exception e)
        {
            System.Diagnostics.StackFrame[] frames = new System.Diagnostics.StackTrace(e, false).GetFrames();
            if (frames == null) return null;
            foreach (System.Diagnostics.StackFrame f in frames)
            {
                System.Reflection.MethodBase m = f.GetMethod();
                if (m != null && (m.Attributes & System.Reflection.MethodAttributes.PinvokeImpl) != 0) return m;
            }
            return null;
        }

        private static string Library(System.Reflection.MethodBase m, Exception e, string fallback)
        {
            if (m != null)
                foreach (object a in m.GetCustomAttributes(typeof(DllImportAttribute), false))
                    return ((DllImportAttribute)a).Value;
            string msg = e.Message ?? "";
            foreach (string lib in new string[] { "esent.dll", "libc.so.6", "libcrypto.so.3", "kernel32.dll", "advapi32.dll" })
                if (msg.IndexOf(lib, StringComparison.OrdinalIgnoreCase) >= 0) return lib;
            return fallback;
        }

        public static string Advice(string lib)
        {
            bool windows = Path.DirectorySeparatorChar == '\\';
            if (lib.Equals("esent.dll", StringComparison.OrdinalIgnoreCase))
                return windows ? "check that the system's esent.dll (%SystemRoot%\\System32\\esent.dll) is present and that the module runs in a 64-bit PowerShell"
                    : "off Windows the engine runs against the esent simulator: LD_LIBRARY_PATH must hold the folder with esent.dll (build/sim, made by 'make sim')";
            if (lib.StartsWith("libc", StringComparison.Ordinal))
                return "the engine needs the GNU C library (libc.so.6) off Windows; this host's C library is not glibc";
            if (lib.StartsWith("libcrypto", StringComparison.Ordinal))
                return "OpenSSL 3's libcrypto.so.3 is optional (the managed SHA-256 is used without it)";
            return "check that " + lib + " is present and loadable by this process";
        }

        // A JetFailure naming the library, the call and what to check (call: the library, as the policy
        // tables expect; detail: the P/Invoke call and the runtime's message).
        public static JetFailure Failure(Exception e, string defaultLibrary)
        {
            System.Reflection.MethodBase m = PInvokeFrame(e);
            string call = m != null ? m.Name : null;
            if (call == null)
            {
                // Mono shows the P/Invoke stub only in the text: "at (wrapper managed-to-native) Type.Method(...)".
                System.Text.RegularExpressions.Match w = System.Text.RegularExpressions.Regex.Match(e.StackTrace ?? "", @"managed-to-native\)\s+[\w.+]*?\.(\w+)\s*\(");
                if (w.Success) call = w.Groups[1].Value;
            }
            if (m == null && call != null)
            {
                // No attribute to read: the engine's own imports tell the library by the call's name.
                if (call.StartsWith("Jet", StringComparison.Ordinal)) defaultLibrary = "esent.dll";
                else if (call.StartsWith("EVP_", StringComparison.Ordinal)) defaultLibrary = "libcrypto.so.3";
                else if (Array.IndexOf(new string[] { "getuid", "chmod", "mkdir", "lstat", "__lxstat", "uname", "open", "dup2", "close", "kill", "statvfs" }, call) >= 0)
                    defaultLibrary = "libc.so.6";
            }
            string lib = Library(m, e, defaultLibrary);
            if (call == null) call = "(first call into " + lib + ")";
            return new JetFailure(lib, Jet.errInvalidParameter, "cannot load " + lib + " for " + call + " ("
                + e.GetType().Name + ": " + e.Message + "); " + Advice(lib));
        }
    }

    public sealed class Trace
    {
        private readonly List<object> entries = new List<object>();
        public List<object> Entries { get { return entries; } }
        public int Add(string call, int err, string detail)
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["call"] = call; d["err"] = (long)err; d["detail"] = detail;
            lock (entries) { entries.Add(d); }
            return err;
        }
        public List<object> Snapshot() { lock (entries) { return new List<object>(entries); } }
    }

    public sealed class JetApi
    {
        private readonly Trace trace;
        public JetApi(Trace trace) { this.trace = trace; }
        public Trace Trace { get { return trace; } }

        public static string Hex(uint v) { return "0x" + v.ToString("X", CultureInfo.InvariantCulture); }

        public static void Check(int err, string call, string detail)
        {
            if (err < 0) throw new JetFailure(call, err, detail);
        }

        public int CreateInstance(string name, out IntPtr instance)
        {
            int err = NativeMethods.JetCreateInstance2W(out instance, name, name, 0);
            return trace.Add("JetCreateInstance2W", err, "name=" + name);
        }

        public int SetParam(ref IntPtr instance, uint paramid, long value, string str, string name)
        {
            int err = NativeMethods.JetSetSystemParameterW(ref instance, IntPtr.Zero, paramid, new IntPtr(value), str);
            return trace.Add("JetSetSystemParameterW", err, name + "=" + (str != null ? str : value.ToString(CultureInfo.InvariantCulture)));
        }

        public int SetGlobalParam(uint paramid, long value, string name)
        {
            int err = NativeMethods.JetSetSystemParameterGlobalW(IntPtr.Zero, IntPtr.Zero, paramid, new IntPtr(value), null);
            return trace.Add("JetSetSystemParameterW", err, "global " + name + "=" + value.ToString(CultureInfo.InvariantCulture));
        }

        public int GetGlobalParam(uint paramid, string name, out long value)
        {
            IntPtr v = IntPtr.Zero;
            int err = NativeMethods.JetGetSystemParameterW(IntPtr.Zero, IntPtr.Zero, paramid, ref v, IntPtr.Zero, 0);
            value = v.ToInt64();
            return trace.Add("JetGetSystemParameterW", err, "global " + name + " -> " + value.ToString(CultureInfo.InvariantCulture));
        }

        public int Init(ref IntPtr instance, uint grbit)
        {
            int err = NativeMethods.JetInit3W(ref instance, IntPtr.Zero, grbit);
            return trace.Add("JetInit3W", err, "grbit=" + Hex(grbit));
        }

        public int Term(IntPtr instance, uint grbit)
        {
            return trace.Add("JetTerm2", NativeMethods.JetTerm2(instance, grbit), "grbit=" + Hex(grbit));
        }

        public int BeginSession(IntPtr instance, out IntPtr sesid)
        {
            int err = NativeMethods.JetBeginSessionW(instance, out sesid, null, null);
            return trace.Add("JetBeginSessionW", err, "");
        }

        public int EndSession(IntPtr sesid)
        {
            return trace.Add("JetEndSession", NativeMethods.JetEndSession(sesid, 0), "grbit=0x0");
        }

        public int Attach(IntPtr sesid, string path)
        {
            return trace.Add("JetAttachDatabase2W", NativeMethods.JetAttachDatabase2W(sesid, path, 0, 0), "path=" + path);
        }

        public int AttachReadOnly(IntPtr sesid, string path)
        {
            return trace.Add("JetAttachDatabase2W", NativeMethods.JetAttachDatabase2W(sesid, path, 0, Jet.DbReadOnly), "path=" + path + " grbit=JET_bitDbReadOnly");
        }

        // One JetExternalRestore2W call: map = pairs {original path, path of the streamed copy}.
        public int ExternalRestore(string checkpointPath, string logPath, IList<KeyValuePair<string, string>> map, string backupLogPath,
            uint genLow, uint genHigh, string baseName)
        {
            byte[] info = NewLogInfo();
            BitConverter.GetBytes(genLow).CopyTo(info, 4);
            BitConverter.GetBytes(genHigh).CopyTo(info, 8);
            Encoding.Unicode.GetBytes(baseName.Length > 3 ? baseName.Substring(0, 3) : baseName).CopyTo(info, 12);
            IntPtr[] rst = new IntPtr[map.Count * 2];
            StringBuilder detail = new StringBuilder();
            try
            {
                for (int i = 0; i < map.Count; i++)
                {
                    rst[2 * i] = Marshal.StringToHGlobalUni(map[i].Key);
                    rst[2 * i + 1] = Marshal.StringToHGlobalUni(map[i].Value);
                    detail.Append(" map=" + map[i].Key + "->" + map[i].Value);
                }
                int err = NativeMethods.JetExternalRestore2W(checkpointPath, logPath, rst, map.Count, backupLogPath, info, null, null, null, IntPtr.Zero);
                return trace.Add("JetExternalRestore2W", err, "genLow=" + genLow.ToString(CultureInfo.InvariantCulture) + " genHigh="
                    + genHigh.ToString(CultureInfo.InvariantCulture) + " base=" + baseName + " backupLogPath=" + backupLogPath
                    + " logPath=" + logPath + " checkpointPath=" + checkpointPath + detail.ToString());
            }
            finally
            {
                foreach (IntPtr p in rst) if (p != IntPtr.Zero) Marshal.FreeHGlobal(p);
            }
        }

        public int Detach(IntPtr sesid, string path)
        {
            return trace.Add("JetDetachDatabase2W", NativeMethods.JetDetachDatabase2W(sesid, path, 0), "path=" + path);
        }

        public int GetPageSize(string path, out uint pageSize)
        {
            byte[] b = new byte[4];
            int err = NativeMethods.JetGetDatabaseFileInfoW(path, b, 4, Jet.DbInfoPageSize);
            pageSize = BitConverter.ToUInt32(b, 0);
            return trace.Add("JetGetDatabaseFileInfoW", err, "JET_DbInfoPageSize path=" + path + (err >= 0 ? " -> " + pageSize.ToString(CultureInfo.InvariantCulture) : ""));
        }

        public int GetDbInfoMisc(string path, out byte[] misc)
        {
            misc = new byte[Jet.DbInfoMiscSize]; // zeroed: the engine does not write fUpgradeDb
            int err = NativeMethods.JetGetDatabaseFileInfoW(path, misc, (uint)misc.Length, Jet.DbInfoMisc);
            return trace.Add("JetGetDatabaseFileInfoW", err, "JET_DbInfoMisc cb=348 path=" + path);
        }

        public int BeginBackup(IntPtr instance, uint grbit)
        {
            return trace.Add("JetBeginExternalBackupInstance", NativeMethods.JetBeginExternalBackupInstance(instance, grbit), "grbit=" + Hex(grbit));
        }

        public int EndBackup(IntPtr instance, uint grbit)
        {
            return trace.Add("JetEndExternalBackupInstance2", NativeMethods.JetEndExternalBackupInstance2(instance, grbit), "grbit=" + Hex(grbit));
        }

        public int TruncateLog(IntPtr instance)
        {
            return trace.Add("JetTruncateLogInstance", NativeMethods.JetTruncateLogInstance(instance), "");
        }

        public int OpenFile(IntPtr instance, string name, out IntPtr handle, out long size)
        {
            uint lo, hi;
            int err = NativeMethods.JetOpenFileInstanceW(instance, name, out handle, out lo, out hi);
            size = err >= 0 ? (((long)hi) << 32) | lo : 0;
            return trace.Add("JetOpenFileInstanceW", err, "name=" + name + (err >= 0 ? " size=" + size.ToString(CultureInfo.InvariantCulture) : ""));
        }

        public int CloseFile(IntPtr instance, IntPtr handle)
        {
            return trace.Add("JetCloseFileInstance", NativeMethods.JetCloseFileInstance(instance, handle), "handle=" + handle.ToInt64().ToString(CultureInfo.InvariantCulture));
        }

        // Safe multi-string pattern: NULL -> size, allocate, call, check the double NUL.
        public List<string> GetAttachInfo(IntPtr instance)
        {
            const string call = "JetGetAttachInfoInstanceW";
            for (int attempt = 0; attempt < 4; attempt++)
            {
                uint cb;
                int err = NativeMethods.JetGetAttachInfoInstanceW(instance, null, 0, out cb);
                trace.Add(call, err, "size query -> " + cb.ToString(CultureInfo.InvariantCulture));
                Check(err, call, "size query");
                byte[] buf = new byte[cb];
                uint cbActual;
                err = NativeMethods.JetGetAttachInfoInstanceW(instance, buf, cb, out cbActual);
                trace.Add(call, err, "cbMax=" + cb.ToString(CultureInfo.InvariantCulture) + " -> " + cbActual.ToString(CultureInfo.InvariantCulture));
                Check(err, call, "list");
                if (cbActual > cb) continue; // the list grew between the calls
                return ParseMultiString(buf, (int)cbActual, call);
            }
            throw new JetFailure(call, Jet.errInvalidParameter, "the attach list kept changing size");
        }

        public List<string> GetLogInfo2(IntPtr instance, out uint genLow, out uint genHigh, out string baseName)
        {
            const string call = "JetGetLogInfoInstance2W";
            byte[] info = NewLogInfo();
            uint cb;
            int err = NativeMethods.JetGetLogInfoInstance2W(instance, null, 0, out cb, info);
            trace.Add(call, err, "size query -> " + cb.ToString(CultureInfo.InvariantCulture));
            Check(err, call, "size query");
            byte[] buf = new byte[cb];
            uint cbActual;
            info = NewLogInfo();
            err = NativeMethods.JetGetLogInfoInstance2W(instance, buf, cb, out cbActual, info);
            genLow = BitConverter.ToUInt32(info, 4);
            genHigh = BitConverter.ToUInt32(info, 8);
            baseName = Encoding.Unicode.GetString(info, 12, 8).TrimEnd('\0');
            trace.Add(call, err, "cbMax=" + cb.ToString(CultureInfo.InvariantCulture) + " -> " + cbActual.ToString(CultureInfo.InvariantCulture)
                + " genLow=" + genLow.ToString(CultureInfo.InvariantCulture) + " genHigh=" + genHigh.ToString(CultureInfo.InvariantCulture) + " base=" + baseName);
            Check(err, call, "list");
            if (cbActual != cb) throw new JetFailure(call, Jet.errInvalidParameter, "list size changed between the size query and the call");
            return ParseMultiString(buf, (int)cbActual, call);
        }

        private static byte[] NewLogInfo()
        {
            byte[] info = new byte[Jet.LogInfoWSize];
            BitConverter.GetBytes((uint)Jet.LogInfoWSize).CopyTo(info, 0);
            return info;
        }

        public static List<string> ParseMultiString(byte[] buf, int cb, string call)
        {
            if (cb < 2 || (cb & 1) != 0 || cb > buf.Length || buf[cb - 1] != 0 || buf[cb - 2] != 0)
                throw new JetFailure(call, Jet.errInvalidParameter, "list is not NUL-terminated");
            string all = Encoding.Unicode.GetString(buf, 0, cb - 2);
            List<string> list = new List<string>();
            if (all.Length == 0 || all == "\0") return list; // empty list: only the final NUL(s)
            if (!all.EndsWith("\0", StringComparison.Ordinal))
                throw new JetFailure(call, Jet.errInvalidParameter, "list does not end with a double NUL");
            foreach (string s in all.Substring(0, all.Length - 1).Split('\0'))
            {
                if (s.Length == 0) throw new JetFailure(call, Jet.errInvalidParameter, "empty entry in list");
                list.Add(s);
            }
            return list;
        }
    }

    // ------------------------------------------------------------------------------------------------
    // Header facts (JET_DBINFOMISC4 and the raw DBFILEHDR / trailer page of a stream).
    // ------------------------------------------------------------------------------------------------
    public sealed class DbFacts
    {
        public uint State, PageSize, GenMin, GenMax;
        public byte[] SignDb, SignLog;
        public byte[] FullPrev, IncPrev, FullCur, CopyPrev, DiffPrev; // BKINFO, 24 bytes each

        public static DbFacts FromMisc(byte[] m)
        {
            DbFacts f = new DbFacts();
            f.SignDb = Slice(m, 8, 28); f.State = U32(m, 36); f.SignLog = Slice(m, 88, 28);
            f.FullPrev = Slice(m, 116, 24); f.IncPrev = Slice(m, 140, 24); f.FullCur = Slice(m, 164, 24);
            f.PageSize = U32(m, 212); f.GenMin = U32(m, 216); f.GenMax = U32(m, 220);
            f.CopyPrev = Slice(m, 300, 24); f.DiffPrev = Slice(m, 324, 24);
            return f;
        }

        // Raw DBFILEHDR (first page of the file or of a stream).
        public static DbFacts FromHeaderPage(byte[] h)
        {
            DbFacts f = new DbFacts();
            f.SignDb = Slice(h, 24, 28); f.State = U32(h, 52); f.SignLog = Slice(h, 108, 28);
            f.FullPrev = Slice(h, 136, 24); f.IncPrev = Slice(h, 160, 24); f.FullCur = Slice(h, 184, 24);
            f.PageSize = U32(h, 236); if (f.PageSize == 0) f.PageSize = 4096;
            f.GenMin = U32(h, 296); f.GenMax = U32(h, 300);
            f.CopyPrev = Slice(h, 420, 24); f.DiffPrev = Slice(h, 444, 24);
            return f;
        }

        public static uint U32(byte[] b, int off) { return BitConverter.ToUInt32(b, off); }
        public static byte[] Slice(byte[] b, int off, int n) { byte[] r = new byte[n]; Buffer.BlockCopy(b, off, r, 0, n); return r; }

        public static string HexBytes(byte[] b)
        {
            StringBuilder sb = new StringBuilder(b.Length * 2);
            foreach (byte x in b) sb.Append(x.ToString("x2", CultureInfo.InvariantCulture));
            return sb.ToString();
        }

        public static bool AllZero(byte[] b) { foreach (byte x in b) if (x != 0) return false; return true; }

        public static string LogTime(byte[] b, int off)
        {
            bool zero = true;
            for (int i = 0; i < 8; i++) if (b[off + i] != 0) zero = false;
            if (zero) return null;
            int ms = (b[off + 6] >> 1) | (((b[off + 7] >> 1) & 0x7) << 7);
            try
            {
                DateTime t = new DateTime(1900 + b[off + 5], b[off + 4], b[off + 3], b[off + 2], b[off + 1], b[off], ms % 1000, DateTimeKind.Utc);
                return t.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
            }
            catch (ArgumentException) { return null; }
        }

        public static Dictionary<string, object> BkInfo(byte[] bk)
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["gen_low"] = (long)U32(bk, 16);
            d["gen_high"] = (long)U32(bk, 20);
            d["time"] = LogTime(bk, 8);
            d["mark_generation"] = (long)BitConverter.ToInt32(bk, 4);
            return d;
        }

        public Dictionary<string, object> ToDict()
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["db_state"] = (long)State;
            d["db_state_name"] = StateName(State);
            d["page_size"] = (long)PageSize;
            d["sign_db"] = HexBytes(SignDb);
            d["sign_log"] = HexBytes(SignLog);
            d["gen_min_required"] = (long)GenMin;
            d["gen_max_required"] = (long)GenMax;
            d["last_full"] = BkInfo(FullPrev);
            d["last_incremental"] = BkInfo(IncPrev);
            d["last_copy"] = BkInfo(CopyPrev);
            d["last_differential"] = BkInfo(DiffPrev);
            d["streamed_backup_copy"] = U32(FullCur, 16) != 0;
            return d;
        }

        public static string StateName(uint s)
        {
            switch (s)
            {
                case 1: return "just_created";
                case 2: return "dirty_shutdown";
                case 3: return "clean_shutdown";
                case 4: return "being_converted";
                case 5: return "force_detach";
                default: return "unknown";
            }
        }
    }

    // ------------------------------------------------------------------------------------------------
    // SHA-256 while streaming. Windows: CNG (native). CoreCLR: SHA256.Create() (native).
    // Mono on Linux (the simulator host): OpenSSL's libcrypto when present, else the managed hash.
    // ------------------------------------------------------------------------------------------------
    public abstract class StreamHash : IDisposable
    {
        public abstract bool UsesNative { get; }
        public abstract string Name { get; }
        public abstract void Append(IntPtr p, byte[] managed, int n);
        public abstract byte[] Finish();
        public abstract void Dispose();

        private static int libcryptoState; // 0 unknown, 1 usable, 2 not usable

        public static StreamHash Create()
        {
            if (Environment.OSVersion.Platform == PlatformID.Unix && libcryptoState != 2)
            {
                try
                {
                    StreamHash h = new LibcryptoHash();
                    libcryptoState = 1;
                    return h;
                }
                catch (InvalidOperationException) { libcryptoState = 2; }
                catch (Exception e)
                {
                    // DllNotFoundException, or ArgumentNullException from PowerShell 7's resolver: managed hash.
                    if (!NativeLoad.IsLoadFailure(e)) throw;
                    libcryptoState = 2;
                }
            }
            return new ManagedHash();
        }
    }

    public sealed class ManagedHash : StreamHash
    {
        private readonly HashAlgorithm h;
        public ManagedHash()
        {
#if CORECLR
            h = SHA256.Create();
#else
            if (Environment.OSVersion.Platform == PlatformID.Win32NT) h = new SHA256Cng();
            else h = SHA256.Create();
#endif
        }
        public override bool UsesNative { get { return false; } }
        public override string Name { get { return h.GetType().Name; } }
        public override void Append(IntPtr p, byte[] managed, int n) { h.TransformBlock(managed, 0, n, null, 0); }
        public override byte[] Finish() { h.TransformFinalBlock(new byte[0], 0, 0); return h.Hash; }
        public override void Dispose() { h.Dispose(); }
    }

    public sealed class LibcryptoHash : StreamHash
    {
        private const string Lib = "libcrypto.so.3";
        [DllImport(Lib)] private static extern IntPtr EVP_MD_CTX_new();
        [DllImport(Lib)] private static extern void EVP_MD_CTX_free(IntPtr ctx);
        [DllImport(Lib)] private static extern IntPtr EVP_sha256();
        [DllImport(Lib)] private static extern int EVP_DigestInit_ex(IntPtr ctx, IntPtr type, IntPtr impl);
        [DllImport(Lib)] private static extern int EVP_DigestUpdate(IntPtr ctx, IntPtr d, UIntPtr cnt);
        [DllImport(Lib)] private static extern int EVP_DigestFinal_ex(IntPtr ctx, byte[] md, out uint s);

        private IntPtr ctx;
        public LibcryptoHash()
        {
            ctx = EVP_MD_CTX_new();
            if (ctx == IntPtr.Zero || EVP_DigestInit_ex(ctx, EVP_sha256(), IntPtr.Zero) != 1)
                throw new InvalidOperationException("libcrypto SHA-256 unavailable");
        }
        public override bool UsesNative { get { return true; } }
        public override string Name { get { return "libcrypto"; } }
        public override void Append(IntPtr p, byte[] managed, int n)
        {
            if (EVP_DigestUpdate(ctx, p, new UIntPtr((uint)n)) != 1) throw new CryptographicException("EVP_DigestUpdate failed");
        }
        public override byte[] Finish()
        {
            byte[] md = new byte[32]; uint s;
            if (EVP_DigestFinal_ex(ctx, md, out s) != 1 || s != 32) throw new CryptographicException("EVP_DigestFinal_ex failed");
            return md;
        }
        public override void Dispose() { if (ctx != IntPtr.Zero) { EVP_MD_CTX_free(ctx); ctx = IntPtr.Zero; } }
    }

    // ------------------------------------------------------------------------------------------------
    // Page-aligned native buffers and the double-buffered copy: the caller reads into one slot while a
    // worker thread hashes and writes the other. Memory: 2 x (native + managed) buffer_size bytes.
    // ------------------------------------------------------------------------------------------------
    public sealed class AlignedBuffer : IDisposable
    {
        public const int Alignment = 4096;
        private IntPtr raw;
        public readonly IntPtr Pointer;
        public readonly int Size;
        public AlignedBuffer(int size)
        {
            Size = size;
            raw = Marshal.AllocHGlobal(new IntPtr((long)size + Alignment));
            long a = raw.ToInt64();
            Pointer = new IntPtr((a + Alignment - 1) & ~((long)Alignment - 1));
        }
        public void Dispose() { if (raw != IntPtr.Zero) { Marshal.FreeHGlobal(raw); raw = IntPtr.Zero; } }
    }

    public sealed class WriteFailure : Exception
    {
        public readonly string Path;
        public WriteFailure(string path, Exception inner) : base(inner.Message, inner) { Path = path; }
    }

    public sealed class CopyPipeline : IDisposable
    {
        public sealed class Slot
        {
            public AlignedBuffer Native;
            public byte[] Managed;
            public int Length;
        }

        private readonly Slot[] slots;
        private readonly object gate = new object();
        private readonly Queue<Slot> free = new Queue<Slot>();
        private readonly Queue<Slot> full = new Queue<Slot>();
        private Thread worker;
        private bool finishing;
        private Exception error;
        private FileStream output;
        private StreamHash hash;
        private string path;

        public CopyPipeline(int bufferSize)
        {
            slots = new Slot[2];
            for (int i = 0; i < slots.Length; i++)
            {
                Slot s = new Slot();
                s.Native = new AlignedBuffer(bufferSize);
                s.Managed = new byte[bufferSize];
                slots[i] = s;
            }
        }

        public string HashKind { get { return hash == null ? "none" : hash.Name; } }

        public void Begin(string destPath)
        {
            path = destPath;
            error = null; finishing = false;
            free.Clear(); full.Clear();
            foreach (Slot s in slots) free.Enqueue(s);
            try
            {
                output = new FileStream(destPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 4096, FileOptions.None);
            }
            catch (IOException e) { throw new WriteFailure(destPath, e); }
            catch (UnauthorizedAccessException e) { throw new WriteFailure(destPath, e); }
            hash = StreamHash.Create();
            worker = new Thread(Work);
            worker.IsBackground = true;
            worker.Name = "ese.backup writer";
            worker.Start();
        }

        private void Work()
        {
            while (true)
            {
                Slot s;
                lock (gate)
                {
                    while (full.Count == 0 && !finishing) Monitor.Wait(gate);
                    if (full.Count == 0) return;
                    s = full.Dequeue();
                }
                try
                {
                    if (error == null)
                    {
                        Marshal.Copy(s.Native.Pointer, s.Managed, 0, s.Length);
                        hash.Append(s.Native.Pointer, s.Managed, s.Length);
                        output.Write(s.Managed, 0, s.Length);
                    }
                }
                catch (Exception e)
                {
                    lock (gate) { if (error == null) error = e; }
                }
                lock (gate) { free.Enqueue(s); Monitor.PulseAll(gate); }
            }
        }

        private void ThrowIfFailed()
        {
            if (error != null) throw new WriteFailure(path, error);
        }

        public Slot Acquire()
        {
            lock (gate)
            {
                while (free.Count == 0 && error == null) Monitor.Wait(gate);
                ThrowIfFailed();
                return free.Dequeue();
            }
        }

        public void Release(Slot s) { lock (gate) { free.Enqueue(s); Monitor.PulseAll(gate); } }

        public void Submit(Slot s, int length)
        {
            s.Length = length;
            lock (gate) { full.Enqueue(s); Monitor.PulseAll(gate); }
        }

        private void StopWorker()
        {
            if (worker == null) return;
            lock (gate) { finishing = true; Monitor.PulseAll(gate); }
            worker.Join();
            worker = null;
        }

        // Waits for the worker, flushes the file to stable storage and returns the SHA-256.
        public byte[] Finish()
        {
            StopWorker();
            try
            {
                ThrowIfFailed();
                try
                {
                    output.Flush(true);
                    output.Dispose();
                    output = null;
                }
                catch (IOException e) { throw new WriteFailure(path, e); }
                return hash.Finish();
            }
            finally { Abort(); }
        }

        public void Abort()
        {
            StopWorker();
            if (output != null) { try { output.Dispose(); } catch (IOException) { } output = null; }
            if (hash != null) { hash.Dispose(); hash = null; }
        }

        public void Dispose()
        {
            Abort();
            foreach (Slot s in slots) s.Native.Dispose();
        }
    }

    // ------------------------------------------------------------------------------------------------
    // Minimal JSON (writer for manifest.json and results; reader for requests and manifests).
    // Numbers read as long when integral, else double.
    // ------------------------------------------------------------------------------------------------
    public static class Json
    {
        public static string Write(object value, bool indent)
        {
            StringBuilder sb = new StringBuilder();
            WriteValue(sb, value, indent, 0);
            return sb.ToString();
        }

        private static void NewLine(StringBuilder sb, bool indent, int level)
        {
            if (!indent) return;
            sb.Append('\n');
            sb.Append(' ', level * 2);
        }

        private static void WriteValue(StringBuilder sb, object v, bool indent, int level)
        {
            if (v == null) { sb.Append("null"); return; }
            if (v is string) { WriteString(sb, (string)v); return; }
            if (v is bool) { sb.Append((bool)v ? "true" : "false"); return; }
            if (v is int || v is long || v is uint || v is short || v is byte || v is ulong || v is ushort || v is sbyte)
            { sb.Append(Convert.ToString(v, CultureInfo.InvariantCulture)); return; }
            if (v is double || v is float || v is decimal)
            {
                double d = Convert.ToDouble(v, CultureInfo.InvariantCulture);
                if (double.IsNaN(d) || double.IsInfinity(d)) sb.Append("null");
                else sb.Append(d.ToString("R", CultureInfo.InvariantCulture));
                return;
            }
            IDictionary dict = v as IDictionary;
            if (dict != null)
            {
                sb.Append('{');
                bool first = true;
                foreach (DictionaryEntry e in dict)
                {
                    if (!first) sb.Append(',');
                    first = false;
                    NewLine(sb, indent, level + 1);
                    WriteString(sb, Convert.ToString(e.Key, CultureInfo.InvariantCulture));
                    sb.Append(indent ? ": " : ":");
                    WriteValue(sb, e.Value, indent, level + 1);
                }
                if (!first) NewLine(sb, indent, level);
                sb.Append('}');
                return;
            }
            IEnumerable list = v as IEnumerable;
            if (list != null)
            {
                sb.Append('[');
                bool first = true;
                foreach (object o in list)
                {
                    if (!first) sb.Append(',');
                    first = false;
                    NewLine(sb, indent, level + 1);
                    WriteValue(sb, o, indent, level + 1);
                }
                if (!first) NewLine(sb, indent, level);
                sb.Append(']');
                return;
            }
            WriteString(sb, Convert.ToString(v, CultureInfo.InvariantCulture));
        }

        private static void WriteString(StringBuilder sb, string s)
        {
            sb.Append('"');
            foreach (char c in s)
            {
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    default:
                        if (c < 0x20) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        else sb.Append(c);
                        break;
                }
            }
            sb.Append('"');
        }

        // Limits for documents read from a backup set or a session folder (as the verifier's, ese_format/files.py): a
        // hostile manifest cannot exhaust the stack (nesting) or memory (size). FormatException names the limit.
        public const int MaxDepth = 64;
        public const long MaxFileBytes = 16L << 20;

        // A JSON file of at most MaxFileBytes (checked before it is read), parsed with the depth limit.
        public static object ReadFile(string path)
        {
            long len = new FileInfo(path).Length;
            if (len > MaxFileBytes)
                throw new FormatException(path + " is " + len.ToString(CultureInfo.InvariantCulture) + " bytes, larger than the "
                    + MaxFileBytes.ToString(CultureInfo.InvariantCulture) + " bytes ese.backup reads from a JSON file");
            return Parse(File.ReadAllText(path, Encoding.UTF8));
        }

        public static object Parse(string text)
        {
            int i = 0;
            object v = ParseValue(text, ref i, 0);
            SkipWs(text, ref i);
            if (i != text.Length) throw new FormatException("trailing characters at " + i);
            return v;
        }

        private static void SkipWs(string t, ref int i)
        {
            while (i < t.Length && (t[i] == ' ' || t[i] == '\t' || t[i] == '\r' || t[i] == '\n' || t[i] == '\uFEFF')) i++;
        }

        private static object ParseValue(string t, ref int i, int depth)
        {
            SkipWs(t, ref i);
            if (i >= t.Length) throw new FormatException("unexpected end of JSON");
            char c = t[i];
            if ((c == '{' || c == '[') && depth >= MaxDepth)
                throw new FormatException("JSON nested deeper than " + MaxDepth.ToString(CultureInfo.InvariantCulture) + " levels at " + i.ToString(CultureInfo.InvariantCulture));
            if (c == '{')
            {
                Dictionary<string, object> d = new Dictionary<string, object>();
                i++; SkipWs(t, ref i);
                if (i < t.Length && t[i] == '}') { i++; return d; }
                while (true)
                {
                    SkipWs(t, ref i);
                    if (i >= t.Length || t[i] != '"') throw new FormatException("expected a key at " + i);
                    string k = ParseString(t, ref i);
                    SkipWs(t, ref i);
                    if (i >= t.Length || t[i] != ':') throw new FormatException("expected ':' at " + i);
                    i++;
                    d[k] = ParseValue(t, ref i, depth + 1);
                    SkipWs(t, ref i);
                    if (i < t.Length && t[i] == ',') { i++; continue; }
                    if (i < t.Length && t[i] == '}') { i++; return d; }
                    throw new FormatException("expected ',' or '}' at " + i);
                }
            }
            if (c == '[')
            {
                List<object> l = new List<object>();
                i++; SkipWs(t, ref i);
                if (i < t.Length && t[i] == ']') { i++; return l; }
                while (true)
                {
                    l.Add(ParseValue(t, ref i, depth + 1));
                    SkipWs(t, ref i);
                    if (i < t.Length && t[i] == ',') { i++; continue; }
                    if (i < t.Length && t[i] == ']') { i++; return l; }
                    throw new FormatException("expected ',' or ']' at " + i);
                }
            }
            if (c == '"') return ParseString(t, ref i);
            if (string.CompareOrdinal(t, i, "true", 0, 4) == 0) { i += 4; return true; }
            if (string.CompareOrdinal(t, i, "false", 0, 5) == 0) { i += 5; return false; }
            if (string.CompareOrdinal(t, i, "null", 0, 4) == 0) { i += 4; return null; }
            int start = i;
            while (i < t.Length && "+-0123456789.eE".IndexOf(t[i]) >= 0) i++;
            string num = t.Substring(start, i - start);
            if (num.Length == 0) throw new FormatException("unexpected character '" + c + "' at " + start);
            long lv;
            if (num.IndexOfAny(new char[] { '.', 'e', 'E' }) < 0 && long.TryParse(num, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out lv)) return lv;
            double dv;
            if (double.TryParse(num, NumberStyles.Float, CultureInfo.InvariantCulture, out dv)) return dv;
            throw new FormatException("bad number '" + num + "'");
        }

        private static string ParseString(string t, ref int i)
        {
            i++; // opening quote
            StringBuilder sb = new StringBuilder();
            while (i < t.Length)
            {
                char c = t[i++];
                if (c == '"') return sb.ToString();
                if (c != '\\') { sb.Append(c); continue; }
                if (i >= t.Length) break;
                char e = t[i++];
                switch (e)
                {
                    case '"': sb.Append('"'); break;
                    case '\\': sb.Append('\\'); break;
                    case '/': sb.Append('/'); break;
                    case 'b': sb.Append('\b'); break;
                    case 'f': sb.Append('\f'); break;
                    case 'n': sb.Append('\n'); break;
                    case 'r': sb.Append('\r'); break;
                    case 't': sb.Append('\t'); break;
                    case 'u':
                        if (i + 4 > t.Length) throw new FormatException("bad \\u escape");
                        sb.Append((char)int.Parse(t.Substring(i, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture));
                        i += 4;
                        break;
                    default: throw new FormatException("bad escape \\" + e);
                }
            }
            throw new FormatException("unterminated string");
        }
    }
}
