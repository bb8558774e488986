// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
// ese.backup engine, host plumbing shared by every entry point: module arguments (Args) and the
// option failure (InvalidOption), the name rule, this host and its processes, path rules, private folders,
// the result builder, hashing, the overlapped copy pipeline and a bounded JSON reader/writer. C# 5, references
// System and System.Core only (docs/architecture.md).
//AssemblyReference -Type System.IO.FileSystemAclExtensions -CLR Core

using System;
using System.Collections;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Runtime.InteropServices;
using System.Security.AccessControl;
using System.Security.Cryptography;
using System.Security.Principal;
using System.Text;
using System.Threading;
using ansible_collections.ese.backup.plugins.module_utils._EseNative;

namespace ansible_collections.ese.backup.plugins.module_utils._EseHost
{
    // ------------------------------------------------------------------------------------------------
    // Options (architecture.md section 4), converted robustly from Ansible.Basic or JSON data.
    // ------------------------------------------------------------------------------------------------
    public sealed class InvalidOption : Exception
    {
        public readonly string Option;
        public InvalidOption(string option, string msg) : base(msg) { Option = option; }
        public Dictionary<string, object> ToDict()
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["option"] = Option; d["msg"] = Message;
            return d;
        }
    }

    internal static class Args
    {
        public static object Get(IDictionary args, string key)
        {
            if (args == null || !args.Contains(key)) return null;
            return args[key];
        }

        public static string Str(IDictionary args, string key, string def)
        {
            object v = Get(args, key);
            if (v == null) return def;
            string s = Convert.ToString(v, CultureInfo.InvariantCulture);
            return s.Length == 0 ? def : s;
        }

        // A choice option: Ansible.Basic accepts a choice in any case (FULL, Abort) and hands it on as written;
        // the engine compares without regard to case and returns the choice as listed.
        public static string Choice(IDictionary args, string key, string def, params string[] choices)
        {
            string v = Str(args, key, def);
            if (v == null) return null;
            foreach (string c in choices)
                if (string.Equals(c, v.Trim(), StringComparison.OrdinalIgnoreCase)) return c;
            throw new InvalidOption(key, key + " '" + v + "' is not one of " + string.Join(", ", choices));
        }

        public static bool Bool(IDictionary args, string key, bool def)
        {
            object v = Get(args, key);
            if (v == null) return def;
            if (v is bool) return (bool)v;
            string s = Convert.ToString(v, CultureInfo.InvariantCulture).Trim().ToLowerInvariant();
            if (s == "true" || s == "yes" || s == "on" || s == "1") return true;
            if (s == "false" || s == "no" || s == "off" || s == "0") return false;
            throw new InvalidOption(key, "'" + s + "' is not a boolean; use true or false");
        }

        public static long? Long(IDictionary args, string key)
        {
            object v = Get(args, key);
            if (v == null) return null;
            if (v is string && ((string)v).Trim().Length == 0) return null;
            try
            {
                if (v is double || v is float || v is decimal)
                {
                    double d = Convert.ToDouble(v, CultureInfo.InvariantCulture);
                    if (d != Math.Floor(d) || Math.Abs(d) > 9e15) throw new FormatException();
                    return (long)d;
                }
                return Convert.ToInt64(v, CultureInfo.InvariantCulture);
            }
            catch (FormatException) { }
            catch (InvalidCastException) { }
            catch (OverflowException) { }
            throw new InvalidOption(key, "'" + Convert.ToString(v, CultureInfo.InvariantCulture) + "' is not an integer");
        }

        public static List<string> List(IDictionary args, string key)
        {
            object v = Get(args, key);
            List<string> r = new List<string>();
            if (v == null) return r;
            if (v is string) { r.Add((string)v); return r; }
            IEnumerable e = v as IEnumerable;
            if (e == null) throw new InvalidOption(key, "must be a list of paths");
            foreach (object o in e)
            {
                if (o == null) continue;
                r.Add(Convert.ToString(o, CultureInfo.InvariantCulture));
            }
            return r;
        }
    }

    internal static class PathRules
    {
        public static bool IsWindows { get { return Path.DirectorySeparatorChar == '\\'; } }
        public static StringComparison Cmp { get { return IsWindows ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal; } }

        public static bool IsAbsolute(string p)
        {
            if (string.IsNullOrEmpty(p)) return false;
            if (IsWindows)
            {
                if (p.StartsWith(@"\\", StringComparison.Ordinal)) return true; // UNC
                return p.Length >= 3 && char.IsLetter(p[0]) && p[1] == ':' && (p[2] == '\\' || p[2] == '/');
            }
            return p[0] == '/';
        }

        public static string Normalize(string p)
        {
            string f = Path.GetFullPath(p);
            string root = Path.GetPathRoot(f);
            while (f.Length > root.Length && (f.EndsWith("\\", StringComparison.Ordinal) || f.EndsWith("/", StringComparison.Ordinal)))
                f = f.Substring(0, f.Length - 1);
            return f;
        }

        public static bool SameOrInside(string child, string parent)
        {
            string c = Normalize(child), p = Normalize(parent);
            if (string.Equals(c, p, Cmp)) return true;
            string ps = p.EndsWith(Path.DirectorySeparatorChar.ToString(), StringComparison.Ordinal) ? p : p + Path.DirectorySeparatorChar;
            return c.StartsWith(ps, Cmp);
        }

        public static string WithSeparator(string dir)
        {
            string n = Normalize(dir);
            return n.EndsWith(Path.DirectorySeparatorChar.ToString(), StringComparison.Ordinal) ? n : n + Path.DirectorySeparatorChar;
        }

        // Joins a relative name made of safe components under root; refuses anything that could escape.
        public static string SafeJoin(string root, string relative)
        {
            string[] parts = relative.Split('/');
            string p = root;
            foreach (string part in parts)
            {
                if (part.Length == 0 || part == "." || part == ".." || part.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0
                    || part.IndexOf('\\') >= 0 || part.IndexOf(':') >= 0)
                    throw new InvalidOperationException("unsafe name in backup set: " + relative);
                p = Path.Combine(p, part);
            }
            string full = Path.GetFullPath(p);
            if (!SameOrInside(full, root) || string.Equals(Normalize(full), Normalize(root), Cmp))
                throw new InvalidOperationException("name escapes the backup set: " + relative);
            return full;
        }

        // The file in dir whose name equals name without regard to case, as Windows matches names (the exact
        // spelling first); null when there is none. Used for every file of a log set.
        public static string FindFile(string dir, string name)
        {
            string exact = Path.Combine(dir, name);
            if (File.Exists(exact)) return exact;
            if (!Directory.Exists(dir)) return null;
            foreach (string f in Directory.GetFiles(dir))
                if (string.Equals(Path.GetFileName(f), name, StringComparison.OrdinalIgnoreCase)) return f;
            return null;
        }

        public static bool IsUnc(string p) { return p != null && p.StartsWith(@"\\", StringComparison.Ordinal) && !p.StartsWith(@"\\?\", StringComparison.Ordinal) && !p.StartsWith(@"\\.\", StringComparison.Ordinal); }

        // What to say when a share answers access denied (or seems not to exist) to a module run over WinRM.
        public static string DoubleHop(string dest)
        {
            if (!IsUnc(dest)) return "";
            return ". dest is a share: over WinRM with NTLM, or Kerberos without delegation, the module runs in a network logon that cannot "
                + "authenticate to another server (the double hop), so the share answers access denied or seems missing. Ways out: become "
                + "(runas with a password) for the task, CredSSP, or Kerberos (constrained) delegation for the connection, or a local dest "
                + "with the backup server pulling the set";
        }

        public static long FreeBytes(string dir)
        {
            if (IsWindows)
            {
                ulong avail, total, free;
                if (Win.GetDiskFreeSpaceExW(WithSeparator(dir), out avail, out total, out free)) return (long)avail;
                return -1;
            }
            byte[] st = new byte[256]; // struct statvfs (glibc x86_64: 112 bytes)
            try
            {
                if (Unix.statvfs(dir, st) != 0) return -1;
            }
            catch (Exception e) { if (!NativeLoad.IsLoadFailure(e)) throw; return -1; }
            ulong frsize = BitConverter.ToUInt64(st, 8), bavail = BitConverter.ToUInt64(st, 32);
            return (long)(frsize * bavail);
        }

        private static class Win
        {
            [DllImport("kernel32.dll", CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
            [return: MarshalAs(UnmanagedType.Bool)]
            internal static extern bool GetDiskFreeSpaceExW(string lpDirectoryName, out ulong lpFreeBytesAvailable, out ulong lpTotalNumberOfBytes, out ulong lpTotalNumberOfFreeBytes);
        }

        private static class Unix
        {
            [DllImport("libc.so.6", CharSet = CharSet.Ansi)]
            internal static extern int statvfs(string path, [Out] byte[] buf);
        }
    }

    // Backup sets can hold password hashes (ntds.dit): only SYSTEM, Administrators, Backup Operators
    // and the account that runs the backup may open a set's folder.
    // The one rule for names a user gives sets and sessions: a name that Windows keeps as written, as a folder
    // or file name, on a local volume or a share.
    internal static class Names
    {
        private static readonly string[] Devices = { "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9",
            "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "CONIN$", "CONOUT$" };

        // The device name a file name part opens instead of a file on Windows (CON, nul.txt, COM1 .log), or null.
        public static string Device(string part)
        {
            string stem = part.Split('.')[0].TrimEnd(' ');
            foreach (string dev in Devices) if (string.Equals(stem, dev, StringComparison.OrdinalIgnoreCase)) return dev;
            return null;
        }

        // Null when name is acceptable; else why not.
        public static string Problem(string name, int max)
        {
            if (name == null || name.Length == 0) return "is empty";
            if (name.Length > max) return "is longer than " + max.ToString(CultureInfo.InvariantCulture) + " characters";
            foreach (char c in name)
            {
                if (c < 0x20 || c == 0x7F) return "has a control character";
                if (c == '/' || c == '\\') return "has a path separator ('" + c + "')";
                if (":*?\"<>|".IndexOf(c) >= 0) return "has '" + c + "', which Windows names cannot hold";
            }
            if (name[0] == '.') return "starts with '.' (the engine's staging folders do)";
            if (name[0] == ' ') return "starts with a space";
            if (name.EndsWith(".", StringComparison.Ordinal) || name.EndsWith(" ", StringComparison.Ordinal)) return "ends with a dot or a space, which Windows strips";
            string dev = Device(name);
            if (dev != null) return "opens the Windows device " + dev + " instead of a folder";
            return null;
        }

        public static void Require(string option, string name, int max)
        {
            string why = Problem(name, max);
            if (why != null)
                throw new InvalidOption(option, option + " " + Json.Write(name, false) + " " + why + ": give a name of letters, digits, '-', '_' and inner dots, "
                    + "at most " + max.ToString(CultureInfo.InvariantCulture) + " characters (for example nightly-2026-12-01)");
        }
    }

    // This host's name as sets and staging records carry it: COMPUTERNAME (what Windows sets, the NetBIOS name),
    // else the machine name.
    internal static class HostName
    {
        public static string Current
        {
            get
            {
                string n = Environment.GetEnvironmentVariable("COMPUTERNAME");
                return string.IsNullOrEmpty(n) ? Environment.MachineName : n;
            }
        }

        // The name as a part of a set name: letters, digits and '-' only, at most 15 characters.
        public static string ForName()
        {
            StringBuilder b = new StringBuilder();
            foreach (char c in Current)
                if (b.Length < 15 && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')) b.Append(c);
            return b.Length == 0 ? "host" : b.ToString();
        }
    }

    // Is a recorded process (a session host, or the run that holds a staging folder) still running? Its pid
    // alone is not enough (pids are reused): the record also holds the process's start (Linux: starttime of /proc/<pid>/stat, in clock ticks since
    // boot; elsewhere Process.StartTime), and a host is gone only when no process with that pid and that start
    // exists. A host that exists but does not answer is busy, never crashed.
    internal static class HostProcess
    {
        public static string StartKey(int pid)
        {
            if (!PathRules.IsWindows)
            {
                string state, start;
                if (ProcStat(pid, out state, out start)) return "proc:" + start;
            }
            try
            {
                using (Process p = Process.GetProcessById(pid))
                    return "utc:" + p.StartTime.ToUniversalTime().Ticks.ToString(CultureInfo.InvariantCulture);
            }
            catch (ArgumentException) { return null; }
            catch (InvalidOperationException) { return null; }
            catch (System.ComponentModel.Win32Exception) { return null; }
            catch (NotSupportedException) { return null; }
        }

        private static bool ProcStat(int pid, out string state, out string start)
        {
            state = null; start = null;
            string text;
            try { text = File.ReadAllText("/proc/" + pid.ToString(CultureInfo.InvariantCulture) + "/stat"); }
            catch (IOException) { return false; }
            catch (UnauthorizedAccessException) { return false; }
            int close = text.LastIndexOf(')');
            if (close < 0) return false;
            string[] f = text.Substring(close + 1).Trim().Split(' ');
            if (f.Length < 20) return false;
            state = f[0]; start = f[19]; // fields 3 (state) and 22 (starttime) of proc(5)
            return true;
        }

        // Null when the recorded process (pid, pid_start) exists; otherwise why it is gone.
        public static string Gone(IDictionary j)
        {
            object po = j.Contains("pid") ? j["pid"] : null;
            long pidL = -1;
            if (po is long || po is int) pidL = Convert.ToInt64(po, CultureInfo.InvariantCulture);
            if (pidL <= 0 || pidL > int.MaxValue) return "the record holds no process id";
            int pid = (int)pidL;
            string recorded = j.Contains("pid_start") ? j["pid_start"] as string : null;
            string pidText = pid.ToString(CultureInfo.InvariantCulture);
            if (!PathRules.IsWindows)
            {
                string state, start;
                if (ProcStat(pid, out state, out start))
                {
                    if (state == "Z" || state == "X") return "process " + pidText + " has exited (it is a zombie)";
                    if (recorded != null && recorded.StartsWith("proc:", StringComparison.Ordinal) && recorded != "proc:" + start)
                        return "process " + pidText + " is another process now (its start differs from the record's)";
                    return null;
                }
                if (Directory.Exists("/proc/self")) return "no process " + pidText + " exists";
            }
            try
            {
                using (Process p = Process.GetProcessById(pid))
                {
                    if (p.HasExited) return "process " + pidText + " has exited";
                    if (recorded != null && recorded.StartsWith("utc:", StringComparison.Ordinal))
                    {
                        string now = "utc:" + p.StartTime.ToUniversalTime().Ticks.ToString(CultureInfo.InvariantCulture);
                        if (now != recorded) return "process " + pidText + " is another process now (its start time differs from the record's)";
                    }
                    return null;
                }
            }
            catch (ArgumentException) { return "no process " + pidText + " exists"; }
            catch (InvalidOperationException) { return "process " + pidText + " has exited"; }
            catch (System.ComponentModel.Win32Exception) { return null; } // exists, but its start cannot be read: not gone
            catch (NotSupportedException) { return null; }
        }
    }

    internal static class PrivateDirectory
    {
        public static void Create(string path)
        {
            if (!PathRules.IsWindows)
            {
                Directory.CreateDirectory(path);
                if (Posix.chmod(path, 0x1C0) != 0) throw new IOException("cannot restrict " + path + " to its owner (chmod 0700)");
                return;
            }
#if CORECLR
            System.IO.FileSystemAclExtensions.Create(new DirectoryInfo(path), Acl());
#else
            Directory.CreateDirectory(path, Acl());
#endif
        }

        // The accounts that may open a set, a journal or a restored file (Windows).
        internal static IdentityReference[] Owners()
        {
            return new IdentityReference[] {
                new SecurityIdentifier(WellKnownSidType.LocalSystemSid, null),
                new SecurityIdentifier(WellKnownSidType.BuiltinAdministratorsSid, null),
                new SecurityIdentifier(WellKnownSidType.BuiltinBackupOperatorsSid, null),
                WindowsIdentity.GetCurrent().User };
        }

        private static DirectorySecurity Acl()
        {
            DirectorySecurity sec = new DirectorySecurity();
            sec.SetAccessRuleProtection(true, false);
            foreach (IdentityReference who in Owners())
                sec.AddAccessRule(new FileSystemAccessRule(who, FileSystemRights.FullControl,
                    InheritanceFlags.ContainerInherit | InheritanceFlags.ObjectInherit, PropagationFlags.None, AccessControlType.Allow));
            return sec;
        }
    }

    // Every entry point's result starts the same: its trace, no failed call, no invalid option, no check facts
    // and no warnings; nullKeys are the entry point's own keys that start as null.
    internal static class Results
    {
        public static Dictionary<string, object> New(List<object> trace, params string[] nullKeys)
        {
            Dictionary<string, object> r = new Dictionary<string, object>();
            r["trace"] = trace;
            r["failed_call"] = null; r["invalid"] = null; r["check"] = null;
            foreach (string k in nullKeys) r[k] = null;
            r["warnings"] = new List<object>();
            return r;
        }
    }

    // The one libc call every entry point may make off Windows: restricting a folder or file to its owner.
    internal static class Posix
    {
        [DllImport("libc.so.6", CharSet = CharSet.Ansi, SetLastError = true)]
        internal static extern int chmod(string path, uint mode);
    }

    // ------------------------------------------------------------------------------------------------
    // SHA-256 while streaming. Windows: CNG (native). CoreCLR: SHA256.Create() (native).
    // Mono on Linux (the simulator host): OpenSSL's libcrypto when present, else the managed hash.
    // ------------------------------------------------------------------------------------------------
    public abstract class StreamHash : IDisposable
    {
        public abstract bool UsesNative { get; }
        public abstract string Name { get; }
        public abstract void Append(IntPtr p, byte[] managed, int offset, int n);
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
        public override void Append(IntPtr p, byte[] managed, int offset, int n) { h.TransformBlock(managed, offset, n, null, 0); }
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
        public override void Append(IntPtr p, byte[] managed, int offset, int n)
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
    // The copy pipeline. The caller reads into a slot; a hasher thread and a writer thread consume every
    // slot in order, side by side, and the slot is free again when both are done. So the read (with
    // esent's page checks), the SHA-256 and the write overlap, and memory is depth x buffer_size.
    // Buffers are page-aligned windows into pinned managed arrays: esent, the hash and the file write
    // all use the same bytes, with no copy between them.
    // ------------------------------------------------------------------------------------------------
    public sealed class AlignedBuffer : IDisposable
    {
        public const int Alignment = 4096;
        public readonly byte[] Array;
        public readonly int Offset;
        public readonly IntPtr Pointer;
        public readonly int Size;
        private GCHandle pin;
        public AlignedBuffer(int size)
        {
            Size = size;
            Array = new byte[size + Alignment];
            pin = GCHandle.Alloc(Array, GCHandleType.Pinned);
            long start = pin.AddrOfPinnedObject().ToInt64();
            long aligned = (start + Alignment - 1) & ~((long)Alignment - 1);
            Offset = (int)(aligned - start);
            Pointer = new IntPtr(aligned);
        }
        public void Dispose() { if (pin.IsAllocated) pin.Free(); }
    }

    public sealed class WriteFailure : Exception
    {
        public readonly string Path;
        public WriteFailure(string path, Exception inner) : base(inner.Message, inner) { Path = path; }
    }

    // Told of each file a copy pipeline starts and of the bytes it has written (called on the writer thread).
    public interface ICopyProgress
    {
        void FileStarted(string path);
        void Written(long bytes);
    }

    public sealed class CopyPipeline : IDisposable
    {
        // Measured (bench/stream.py, 1 GiB, 4 and 32 KiB pages): 4 slots of 1 MiB keep both consumers busy;
        // more slots gained nothing, 2 left the hasher waiting on reads.
        public const int DefaultDepth = 4;

        // Test hook: milliseconds the writer sleeps before each write (a slow destination).
        public const string TestWriteDelayVar = "ESE_BACKUP_TEST_WRITE_DELAY_MS";

        public sealed class Slot
        {
            public AlignedBuffer Native;
            public int Length;
            internal int Pending;
        }

        private sealed class Stage
        {
            public readonly Queue<Slot> Queue = new Queue<Slot>();
            public Thread Thread;
            public long BusyTicks, WaitTicks;
            public int Done;
        }

        private readonly Slot[] slots;
        private readonly Queue<Slot> free = new Queue<Slot>();
        private readonly Stage hashing = new Stage();
        private readonly Stage writing = new Stage();
        private volatile bool finishing, aborting;
        private volatile Exception error;
        private FileStream output;
        private StreamHash hash;
        private string path;
        private int writeDelayMs;
        private long readWaitTicks;
        private int inFlight, peakInFlight, hashAhead;

        public ICopyProgress Progress;

        public CopyPipeline(int bufferSize) : this(bufferSize, DefaultDepth) { }

        public CopyPipeline(int bufferSize, int depth)
        {
            if (depth < 1) throw new ArgumentOutOfRangeException("depth", "a copy pipeline needs at least one slot");
            slots = new Slot[depth];
            for (int i = 0; i < slots.Length; i++)
            {
                Slot s = new Slot();
                s.Native = new AlignedBuffer(bufferSize);
                slots[i] = s;
            }
        }

        public string HashKind { get { return hash == null ? "none" : hash.Name; } }

        // How the last file's stages waited on each other, for the trace: slots in flight at most (peak), time
        // each stage waited and worked, and how many slots the hasher got ahead of the writer at most.
        public string Stats
        {
            get
            {
                return "depth=" + slots.Length + " peak=" + peakInFlight
                    + " read_wait_ms=" + Ms(readWaitTicks)
                    + " hash_ms=" + Ms(hashing.BusyTicks) + " hash_wait_ms=" + Ms(hashing.WaitTicks)
                    + " write_ms=" + Ms(writing.BusyTicks) + " write_wait_ms=" + Ms(writing.WaitTicks)
                    + " hash_ahead=" + hashAhead;
            }
        }

        private static string Ms(long ticks)
        {
            return (ticks * 1000.0 / Stopwatch.Frequency).ToString("F1", CultureInfo.InvariantCulture);
        }

        public void Begin(string destPath)
        {
            path = destPath;
            error = null; finishing = false; aborting = false;
            free.Clear(); hashing.Queue.Clear(); writing.Queue.Clear();
            foreach (Slot s in slots) free.Enqueue(s);
            readWaitTicks = 0; inFlight = 0; peakInFlight = 0; hashAhead = 0;
            hashing.BusyTicks = hashing.WaitTicks = writing.BusyTicks = writing.WaitTicks = 0;
            hashing.Done = writing.Done = 0;
            int delay;
            writeDelayMs = int.TryParse(Environment.GetEnvironmentVariable(TestWriteDelayVar), NumberStyles.None, CultureInfo.InvariantCulture, out delay) ? delay : 0;
            try
            {
                output = new FileStream(destPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 4096, FileOptions.None);
            }
            catch (IOException e) { throw new WriteFailure(destPath, e); }
            catch (UnauthorizedAccessException e) { throw new WriteFailure(destPath, e); }
            hash = StreamHash.Create();
            if (Progress != null)
            {
                try { Progress.FileStarted(destPath); }
                catch (Exception) { Progress = null; }
            }
            Start(hashing, "ese.backup hasher", HashSlot);
            Start(writing, "ese.backup writer", WriteSlot);
        }

        private void Start(Stage stage, string name, Action<Slot> work)
        {
            stage.Thread = new Thread(delegate() { Consume(stage, work); });
            stage.Thread.IsBackground = true;
            stage.Thread.Name = name;
            stage.Thread.Start();
        }

        private void HashSlot(Slot s)
        {
            hash.Append(s.Native.Pointer, s.Native.Array, s.Native.Offset, s.Length);
            int ahead = Interlocked.Increment(ref hashing.Done) - Volatile.Read(ref writing.Done);
            if (ahead > hashAhead) hashAhead = ahead;
        }

        private void WriteSlot(Slot s)
        {
            if (writeDelayMs > 0) Thread.Sleep(writeDelayMs);
            output.Write(s.Native.Array, s.Native.Offset, s.Length);
            Interlocked.Increment(ref writing.Done);
            if (Progress == null) return;
            try { Progress.Written(s.Length); }
            catch (Exception) { Progress = null; }   // progress is a report: it never fails the copy
        }

        private void Consume(Stage stage, Action<Slot> work)
        {
            while (true)
            {
                Slot s;
                long waited = Stopwatch.GetTimestamp();
                lock (stage.Queue)
                {
                    while (stage.Queue.Count == 0 && !finishing) Monitor.Wait(stage.Queue);
                    if (stage.Queue.Count == 0) return;
                    s = stage.Queue.Dequeue();
                }
                long started = Stopwatch.GetTimestamp();
                stage.WaitTicks += started - waited;
                try
                {
                    if (error == null && !aborting) work(s);
                }
                catch (Exception e)
                {
                    lock (free) { if (error == null) error = e; Monitor.Pulse(free); }
                }
                stage.BusyTicks += Stopwatch.GetTimestamp() - started;
                if (Interlocked.Decrement(ref s.Pending) == 0)
                    lock (free) { free.Enqueue(s); inFlight--; Monitor.Pulse(free); }
            }
        }

        private void ThrowIfFailed()
        {
            if (error != null) throw new WriteFailure(path, error);
        }

        public Slot Acquire()
        {
            long waited = Stopwatch.GetTimestamp();
            lock (free)
            {
                while (free.Count == 0 && error == null) Monitor.Wait(free);
                readWaitTicks += Stopwatch.GetTimestamp() - waited;
                ThrowIfFailed();
                return free.Dequeue();
            }
        }

        // Gives back a slot that the caller acquired and did not submit.
        public void Release(Slot s) { lock (free) { free.Enqueue(s); Monitor.Pulse(free); } }

        public void Submit(Slot s, int length)
        {
            s.Length = length;
            s.Pending = 2;
            lock (free)
            {
                if (++inFlight > peakInFlight) peakInFlight = inFlight;
            }
            foreach (Stage stage in new[] { hashing, writing })
                lock (stage.Queue) { stage.Queue.Enqueue(s); Monitor.Pulse(stage.Queue); }
        }

        private void StopConsumers()
        {
            finishing = true;
            foreach (Stage stage in new[] { hashing, writing })
            {
                lock (stage.Queue) Monitor.Pulse(stage.Queue);
                if (stage.Thread == null) continue;
                stage.Thread.Join();
                stage.Thread = null;
            }
        }

        // Waits for both consumers, flushes the file to stable storage and returns the SHA-256.
        public byte[] Finish()
        {
            StopConsumers();
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

        // Stops the consumers without hashing or writing what is still queued (the file is discarded).
        public void Abort()
        {
            aborting = true;
            StopConsumers();
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
