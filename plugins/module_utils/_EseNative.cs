// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
// ese.backup engine, native layer: raw P/Invoke to esent.dll (NativeMethods), the JET constants, and
// checked calls recorded in a Trace (JetApi). C# 5, references System and System.Core only. The files above
// it: docs/architecture.md, section 2.

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
    // Raw P/Invoke, Windows x64 widths (JET_INSTANCE/JET_SESID/JET_HANDLE = IntPtr,
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
        // pLogInfo is a 20-byte JET_LOGINFO_W (as above).
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
        public const uint BackupIncremental = 0x1, BackupEndNormal = 0x1, BackupEndAbort = 0x2, BackupTruncateDone = 0x100;
        public const uint TermComplete = 0x1, TermStopBackup = 0x4;
        public const uint InitLogStreamMustExist = 0x40;
        public const uint DbReadOnly = 0x1;
        public const int LogInfoWSize = 20;
        public const int errDatabaseNotFound = -1203, errDiskFull = -1808, errDiskIO = -1022;
        public const int errFileAccessDenied = -1032, errInvalidParameter = -1003, errFileInvalidType = -1812;
        public const int errNoBackup = -520, errBackupAbortByCaller = -800, errBackupAbortByServer = -801;
    }

    // ------------------------------------------------------------------------------------------------
    // Checked calls. Every call appends {call, err, detail} to the trace and returns the JET_ERR.
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

}
