// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
// ese.backup engine, backup sessions (begin -> copy -> truncate -> end across tasks). C# 5, System and
// System.Core only. A JET_INSTANCE lives only in the process that created it, so Session.Begin starts a
// session host process that owns the instance and the backup, and serves later tasks over a named pipe
// (Windows) or a Unix socket (Mono). The host keeps a journal per session. Contracts: docs/sessions.md and
// docs/architecture.md ("Session journal facts").
//AssemblyReference -Type System.IO.Pipes.PipeSecurity -CLR Core

using System;
using System.Collections;
using System.Collections.Generic;
using Process = System.Diagnostics.Process;
using System.Globalization;
using System.IO;
using System.IO.Pipes;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.AccessControl;
using System.Security.Cryptography;
using System.Security.Principal;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;
using ansible_collections.ese.backup.plugins.module_utils.EseEngine;
using ansible_collections.ese.backup.plugins.module_utils._EseNative;
using ansible_collections.ese.backup.plugins.module_utils._EseHost;
using ansible_collections.ese.backup.plugins.module_utils._EseFormat;

namespace ansible_collections.ese.backup.plugins.module_utils._EseSession
{
    internal static class SessionNative
    {
        [DllImport("esent.dll", ExactSpelling = true)]
        internal static extern int JetStopBackupInstance(IntPtr instance);

        [DllImport("libc.so.6", CharSet = CharSet.Ansi, SetLastError = true)]
        internal static extern int mkdir(string path, uint mode);
        [DllImport("libc.so.6")]
        internal static extern uint getuid();
        [DllImport("libc.so.6", CharSet = CharSet.Ansi, SetLastError = true)]
        internal static extern int open(string path, int flags);
        [DllImport("libc.so.6")]
        internal static extern int dup2(int oldfd, int newfd);
        [DllImport("libc.so.6")]
        internal static extern int close(int fd);
        [DllImport("libc.so.6", SetLastError = true)]
        internal static extern int kill(int pid, int sig);
        // glibc 2.33 and later export lstat; older ones only __lxstat.
        [DllImport("libc.so.6", CharSet = CharSet.Ansi, SetLastError = true)]
        internal static extern int lstat(string path, [Out] byte[] buf);
        [DllImport("libc.so.6", CharSet = CharSet.Ansi, SetLastError = true)]
        internal static extern int __lxstat(int ver, string path, [Out] byte[] buf);
        [DllImport("libc.so.6")]
        internal static extern int uname([Out] byte[] buf);

        // Windows Vista and later: the process that serves the server end of a pipe.
        [DllImport("kernel32.dll", SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        internal static extern bool GetNamedPipeServerProcessId(Microsoft.Win32.SafeHandles.SafePipeHandle pipe, out uint serverProcessId);
    }

    // AF_UNIX address for System.Net.Sockets under Mono (family 1, then sun_path, NUL-terminated).
    internal sealed class UnixEndPoint : EndPoint
    {
        public readonly string Path;
        public UnixEndPoint(string path) { Path = path; }
        public override AddressFamily AddressFamily { get { return AddressFamily.Unix; } }
        public override SocketAddress Serialize()
        {
            byte[] b = Encoding.UTF8.GetBytes(Path);
            SocketAddress sa = new SocketAddress(AddressFamily.Unix, 2 + b.Length + 1);
            for (int i = 0; i < b.Length; i++) sa[2 + i] = b[i];
            sa[2 + b.Length] = 0;
            return sa;
        }
        public override EndPoint Create(SocketAddress sa)
        {
            List<byte> b = new List<byte>();
            for (int i = 2; i < sa.Size && sa[i] != 0; i++) b.Add(sa[i]);
            return new UnixEndPoint(Encoding.UTF8.GetString(b.ToArray()));
        }
        public override string ToString() { return Path; }
    }

    // A folder whose content a privileged process acts on (the session folder, the socket folder) is trusted
    // only when nobody else controls it. Windows: owned by SYSTEM, Administrators or the running account, and
    // no access entry lets another account write into it. Unix: a real folder (not a link) owned by the
    // running uid or root, not writable by group or others.
    internal static class FolderTrust
    {
        public static void Check(string dir, string what)
        {
            if (PathRules.IsWindows) CheckWindows(dir, what);
            else CheckUnix(dir, what);
        }

        // Creates a missing folder private to the running account (Windows: protected ACL; Unix: mode 0700,
        // made by mkdir itself so that it is never more open), then checks it (an existing one too).
        public static void Ensure(string dir, string what)
        {
            if (!Directory.Exists(dir) && !File.Exists(dir))
            {
                if (PathRules.IsWindows) PrivateDirectory.Create(dir);
                else if (SessionNative.mkdir(dir, 0x1C0) != 0 && !Directory.Exists(dir))
                    throw new IOException("cannot create " + what + " " + dir + " (errno " + Marshal.GetLastWin32Error().ToString(CultureInfo.InvariantCulture) + ")");
            }
            Check(dir, what);
        }

        private static InvalidOption Refuse(string dir, string what, string problem, string fix)
        {
            return new InvalidOption("session", "the " + what + " " + dir + " " + problem + ": another account could control the sessions kept there, so ese.backup does not use it. " + fix);
        }

        private static string UnixFix(string dir)
        {
            return "Remove it (rm -rf '" + dir + "'; ese.backup recreates it with mode 0700), or give it to the account that runs the module (chown "
                + SessionNative.getuid().ToString(CultureInfo.InvariantCulture) + " '" + dir + "' && chmod 0700 '" + dir + "'), or point "
                + SessionPaths.DirVar + " at a private folder";
        }

        private static void CheckUnix(string dir, string what)
        {
            uint uid, mode;
            if (!UnixStat(dir, out uid, out mode)) return; // missing: the caller creates it
            uint me = SessionNative.getuid();
            uint type = mode & 0xF000;
            if (type == 0xA000) throw Refuse(dir, what, "is a symbolic link", UnixFix(dir));
            if (type != 0x4000) throw Refuse(dir, what, "is not a folder", UnixFix(dir));
            if (uid != me && uid != 0)
                throw Refuse(dir, what, "is owned by uid " + uid.ToString(CultureInfo.InvariantCulture) + ", not by this account (uid "
                    + me.ToString(CultureInfo.InvariantCulture) + ") or root", UnixFix(dir));
            if ((mode & 0x12) != 0)
                throw Refuse(dir, what, "is writable by its group or by others (mode " + Convert.ToString(mode & 0xFFF, 8) + ")", UnixFix(dir));
            if (uid == me) Posix.chmod(dir, 0x1C0);
        }

        // lstat: owner and mode of path (false when it does not exist). struct stat of glibc on x86_64 (st_mode at
        // 24, st_uid at 28) or the generic layout of aarch64 (st_mode at 16, st_uid at 24).
        internal static bool UnixStat(string path, out uint uid, out uint mode)
        {
            uid = 0; mode = 0;
            string machine = Machine();
            bool x64 = machine == "x86_64";
            if (!x64 && machine != "aarch64")
                throw new IOException("cannot check the owner of " + path + ": struct stat of machine '" + machine + "' is not known to ese.backup");
            byte[] st = new byte[256];
            int rc;
            try { rc = SessionNative.lstat(path, st); }
            catch (EntryPointNotFoundException) { rc = SessionNative.__lxstat(x64 ? 1 : 0, path, st); }
            if (rc != 0)
            {
                if (!Directory.Exists(path) && !File.Exists(path)) return false;
                throw new IOException("cannot check the owner of " + path + " (lstat errno " + Marshal.GetLastWin32Error().ToString(CultureInfo.InvariantCulture) + ")");
            }
            mode = BitConverter.ToUInt32(st, x64 ? 24 : 16);
            uid = BitConverter.ToUInt32(st, x64 ? 28 : 24);
            return true;
        }

        private static string Machine()
        {
            byte[] u = new byte[65 * 6 + 64]; // struct utsname: six fields of 65 bytes; machine is the fifth
            if (SessionNative.uname(u) != 0) return "";
            int n = 0;
            while (n < 65 && u[65 * 4 + n] != 0) n++;
            return Encoding.ASCII.GetString(u, 65 * 4, n);
        }

        private static string Who(IdentityReference id)
        {
            try { return id.Translate(typeof(NTAccount)).Value; }
            catch (IdentityNotMappedException) { return id.Value; }
            catch (SystemException) { return id.Value; }
        }

        private static bool Trusted(SecurityIdentifier sid, SecurityIdentifier me)
        {
            return sid != null && (sid.IsWellKnown(WellKnownSidType.LocalSystemSid) || sid.IsWellKnown(WellKnownSidType.BuiltinAdministratorsSid)
                || sid.IsWellKnown(WellKnownSidType.BuiltinBackupOperatorsSid) || sid.IsWellKnown(WellKnownSidType.CreatorOwnerSid) || sid.Equals(me));
        }

        private static void CheckWindows(string dir, string what)
        {
            if (!Directory.Exists(dir)) return;
            string fix = "From an elevated prompt, remove it (Remove-Item -Recurse -Force '" + dir + "'; ese.backup recreates it with a protected ACL: SYSTEM, "
                + "Administrators, Backup Operators and the account that runs the module), or take it over: takeown /F \"" + dir + "\" /A /R /D Y, then icacls \""
                + dir + "\" /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F";
#if CORECLR
            DirectorySecurity sec = System.IO.FileSystemAclExtensions.GetAccessControl(new DirectoryInfo(dir));
#else
            DirectorySecurity sec = Directory.GetAccessControl(dir);
#endif
            SecurityIdentifier me = WindowsIdentity.GetCurrent().User;
            SecurityIdentifier owner = sec.GetOwner(typeof(SecurityIdentifier)) as SecurityIdentifier;
            if (owner == null || !(owner.IsWellKnown(WellKnownSidType.LocalSystemSid) || owner.IsWellKnown(WellKnownSidType.BuiltinAdministratorsSid) || owner.Equals(me)))
                throw Refuse(dir, what, "is owned by " + (owner == null ? "nobody" : Who(owner)) + ", not by SYSTEM, Administrators or this account (" + Who(me) + ")", fix);
            const FileSystemRights write = FileSystemRights.WriteData | FileSystemRights.AppendData | FileSystemRights.WriteAttributes
                | FileSystemRights.WriteExtendedAttributes | FileSystemRights.Delete | FileSystemRights.DeleteSubdirectoriesAndFiles
                | FileSystemRights.ChangePermissions | FileSystemRights.TakeOwnership;
            const int genericWriteOrAll = 0x40000000 | 0x10000000;
            foreach (FileSystemAccessRule rule in sec.GetAccessRules(true, true, typeof(SecurityIdentifier)))
            {
                if (rule.AccessControlType != AccessControlType.Allow) continue;
                if ((rule.FileSystemRights & write) == 0 && ((int)rule.FileSystemRights & genericWriteOrAll) == 0) continue;
                SecurityIdentifier sid = rule.IdentityReference as SecurityIdentifier;
                if (Trusted(sid, me)) continue;
                throw Refuse(dir, what, "lets " + Who(rule.IdentityReference) + " write into it (" + rule.FileSystemRights + (rule.IsInherited ? ", inherited" : "") + ")", fix);
            }
        }
    }

    // Where journals and endpoints live.
    internal static class SessionPaths
    {
        public const string DirVar = "ESE_BACKUP_SESSION_DIR";
        private static readonly Regex NameRule = new Regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$");

        public static bool ValidName(string name) { return name != null && NameRule.IsMatch(name) && Names.Problem(name, 64) == null; }

        public static string Dir()
        {
            string over = Environment.GetEnvironmentVariable(DirVar);
            if (!string.IsNullOrEmpty(over)) return over;
            if (PathRules.IsWindows)
                return System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.CommonApplicationData), "ese.backup", "sessions");
            return System.IO.Path.Combine(System.IO.Path.GetTempPath(), "ese.backup-sessions-" + SessionNative.getuid().ToString(CultureInfo.InvariantCulture));
        }

        // The session folder, created private (its parent too, when missing: on Windows %ProgramData%\ese.backup,
        // which would otherwise inherit ProgramData's ACL that lets Users create folders), or an existing one
        // checked (FolderTrust). Throws InvalidOption naming the folder and the fix.
        public static void EnsureDir()
        {
            string d = Dir();
            if (!Directory.Exists(d))
            {
                string parent = System.IO.Path.GetDirectoryName(d);
                if (parent != null && !Directory.Exists(parent)) PrivateDirectory.Create(parent);
            }
            FolderTrust.Ensure(d, "session folder");
        }

        // Before reading journals (info, copy, truncate, end): an existing folder must pass the same check.
        public static void CheckDir()
        {
            string d = Dir();
            if (Directory.Exists(d)) FolderTrust.Check(d, "session folder");
        }

        public static string Journal(string name) { return System.IO.Path.Combine(Dir(), name + ".json"); }
        public static string ServeFile(string name) { return System.IO.Path.Combine(Dir(), name + ".serve.json"); }

        // Windows: a pipe name with a random part, kept in the private journal only, so that no other account can
        // create the pipe first (squatting). Unix: a socket path (sun_path holds 107 bytes, so long directories use
        // a private folder under the temp directory and a hashed name).
        public static string Endpoint(string name)
        {
            if (PathRules.IsWindows) return "ese.backup.session." + name + "." + Guid.NewGuid().ToString("N");
            string p = System.IO.Path.Combine(Dir(), name + ".sock");
            if (Encoding.UTF8.GetByteCount(p) <= 100) return p;
            string dir = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "ese.backup-" + SessionNative.getuid().ToString(CultureInfo.InvariantCulture));
            FolderTrust.Ensure(dir, "socket folder");
            byte[] h;
            using (SHA256 sha = SHA256.Create()) h = sha.ComputeHash(Encoding.UTF8.GetBytes(p));
            return System.IO.Path.Combine(dir, DbFacts.HexBytes(h).Substring(0, 24) + ".sock");
        }
    }

    // One file a copy of the session read completely: its place in the set, size and hash, and the set it went
    // to (null until the copy ends; "(discarded: <staging>)" when that copy failed).
    internal sealed class CopiedFile
    {
        public string File, Name, Role, Sha256, Set, Source;
        public long? Generation;
        public long Size;

        public bool Published { get { return Set != null && !Set.StartsWith("(discarded", StringComparison.Ordinal); } }

        public Dictionary<string, object> ToJson()
        {
            Dictionary<string, object> e = new Dictionary<string, object>();
            e["file"] = File; e["name"] = Name; e["role"] = Role;
            if (Generation.HasValue) e["generation"] = Generation.Value;
            e["size"] = Size; e["sha256"] = Sha256; e["set"] = Set; e["source"] = Source;
            return e;
        }

        public static CopiedFile FromJson(IDictionary d)
        {
            CopiedFile f = new CopiedFile();
            f.File = SessionJournal.Str(d, "file"); f.Name = SessionJournal.Str(d, "name"); f.Role = SessionJournal.Str(d, "role");
            f.Generation = SessionJournal.Long(d, "generation");
            long? size = SessionJournal.Long(d, "size");
            f.Size = size.HasValue ? size.Value : 0;
            f.Sha256 = SessionJournal.Str(d, "sha256"); f.Set = SessionJournal.Str(d, "set"); f.Source = SessionJournal.Str(d, "source");
            return f;
        }
    }

    // The log range of the session (JetGetLogInfoInstance2W at the first copy of logs) and its file names.
    internal sealed class LogRange
    {
        public long GenLow, GenHigh;
        public List<string> Names = new List<string>();

        public Dictionary<string, object> ToJson()
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["gen_low"] = GenLow; d["gen_high"] = GenHigh;
            d["names"] = SessionJournal.Objects(Names);
            return d;
        }

        public static LogRange FromJson(IDictionary d)
        {
            if (d == null) return null;
            LogRange r = new LogRange();
            long? lo = SessionJournal.Long(d, "gen_low"), hi = SessionJournal.Long(d, "gen_high");
            r.GenLow = lo.HasValue ? lo.Value : 0; r.GenHigh = hi.HasValue ? hi.Value : 0;
            r.Names = SessionJournal.Strings(d, "names");
            return r;
        }
    }

    // The session journal (format ese.backup.session/1, docs/architecture.md "Session journal facts"): one record
    // per session, written and read as JSON only through ToJson and FromJson. The first twenty keys are always
    // written; the others once they are known (begin_*, stop_requested, ended_at, ending_records; proof,
    // backup_valid and recorded_as once a verdict is recorded). Keys it does not know are kept as they were.
    internal sealed class SessionJournal
    {
        public const string FormatName = "ese.backup.session/1";

        public string Format = FormatName, Session, Token;
        public long? Pid;
        public string PidStart, Started, LastActivity;
        public long? IdleTimeout;            // seconds
        public IDictionary Params;           // the begin options (Session.Params)
        public string Endpoint;              // the pipe name (Windows) or socket path
        public string State;                 // starting, open, failed, ended
        public string Ended, EndReason;      // null, normal, abort, idle_timeout, host_crash; and why
        public object EndCall;               // the JetEndExternalBackupInstance2 trace entry
        public bool StopSeen, Truncated;
        public List<string> IncompleteFiles = new List<string>();
        public List<CopiedFile> Files = new List<CopiedFile>();
        public List<object> Calls = new List<object>(); // {time, op, call, err}
        public LogRange LogRange;

        public List<object> BeginTrace;
        public object BeginInvalid, BeginFailedCall;
        public string StopRequested, EndedAt;
        public bool HasVerdict;              // proof, backup_valid and recorded_as are recorded
        public object Proof;
        public bool? BackupValid;
        public string RecordedAs;
        public List<object> EndingRecords;

        private Dictionary<string, object> unknown = new Dictionary<string, object>();

        private static readonly string[] Known = { "format", "session", "token", "pid", "pid_start", "started", "last_activity", "idle_timeout",
            "params", "endpoint", "state", "ended", "end_reason", "end_call", "stop_seen", "truncated", "incomplete_files", "files", "calls",
            "log_range", "begin_trace", "begin_invalid", "begin_failed_call", "stop_requested", "ended_at", "proof", "backup_valid",
            "recorded_as", "ending_records" };

        // Ended with a verdict: proof, backup_valid and recorded_as together.
        public void RecordVerdict(object proof, bool valid, string recordedAs)
        {
            HasVerdict = true; Proof = proof; BackupValid = valid; RecordedAs = recordedAs;
        }

        // What HostProcess.Gone reads: the host's pid and start.
        public IDictionary ProcessRecord()
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["pid"] = Pid.HasValue ? (object)Pid.Value : null; d["pid_start"] = PidStart;
            return d;
        }

        public string Type { get { return Params != null ? Params["type"] as string : null; } }

        public Dictionary<string, object> ToJson()
        {
            Dictionary<string, object> j = new Dictionary<string, object>();
            j["format"] = Format; j["session"] = Session; j["token"] = Token;
            j["pid"] = Pid.HasValue ? (object)Pid.Value : null; j["pid_start"] = PidStart;
            j["started"] = Started; j["last_activity"] = LastActivity;
            j["idle_timeout"] = IdleTimeout.HasValue ? (object)IdleTimeout.Value : null;
            j["params"] = Params; j["endpoint"] = Endpoint; j["state"] = State;
            j["ended"] = Ended; j["end_reason"] = EndReason; j["end_call"] = EndCall;
            j["stop_seen"] = StopSeen; j["truncated"] = Truncated;
            j["incomplete_files"] = Objects(IncompleteFiles);
            List<object> files = new List<object>();
            foreach (CopiedFile f in Files) files.Add(f.ToJson());
            j["files"] = files;
            j["calls"] = Calls;
            j["log_range"] = LogRange != null ? LogRange.ToJson() : null;
            if (BeginFailedCall != null) j["begin_failed_call"] = BeginFailedCall;
            if (BeginInvalid != null) j["begin_invalid"] = BeginInvalid;
            if (BeginTrace != null) j["begin_trace"] = BeginTrace;
            if (StopRequested != null) j["stop_requested"] = StopRequested;
            if (EndedAt != null) j["ended_at"] = EndedAt;
            if (HasVerdict)
            {
                j["proof"] = Proof; j["backup_valid"] = BackupValid.HasValue ? (object)BackupValid.Value : null; j["recorded_as"] = RecordedAs;
            }
            if (EndingRecords != null) j["ending_records"] = EndingRecords;
            foreach (KeyValuePair<string, object> kv in unknown) j[kv.Key] = kv.Value;
            return j;
        }

        // A journal as read from disk; FormatException names a field of the wrong type.
        public static SessionJournal FromJson(IDictionary d)
        {
            if (d == null) return null;
            SessionJournal j = new SessionJournal();
            j.Load(d);
            return j;
        }

        // Takes over every field of another record of this session (a fresher read of the file).
        public void CopyFrom(SessionJournal other) { Load(other.ToJson()); }

        private void Load(IDictionary d)
        {
            Format = Str(d, "format"); Session = Str(d, "session"); Token = Str(d, "token");
            Pid = Long(d, "pid"); PidStart = Str(d, "pid_start");
            Started = Str(d, "started"); LastActivity = Str(d, "last_activity");
            IdleTimeout = Long(d, "idle_timeout");
            Params = Dict(d, "params");
            Endpoint = Str(d, "endpoint"); State = Str(d, "state");
            Ended = Str(d, "ended"); EndReason = Str(d, "end_reason");
            EndCall = d.Contains("end_call") ? d["end_call"] : null;
            StopSeen = d.Contains("stop_seen") && true.Equals(d["stop_seen"]);
            Truncated = d.Contains("truncated") && true.Equals(d["truncated"]);
            IncompleteFiles = Strings(d, "incomplete_files");
            Files = new List<CopiedFile>();
            IList files = List(d, "files");
            if (files != null)
                foreach (object o in files)
                {
                    if (!(o is IDictionary)) throw Wrong("files[]", o, "an object");
                    Files.Add(CopiedFile.FromJson((IDictionary)o));
                }
            IList calls = List(d, "calls");
            Calls = new List<object>();
            if (calls != null) foreach (object o in calls) Calls.Add(o);
            LogRange = LogRange.FromJson(Dict(d, "log_range"));
            BeginTrace = null;
            IList bt = List(d, "begin_trace");
            if (bt != null) { BeginTrace = new List<object>(); foreach (object o in bt) BeginTrace.Add(o); }
            BeginInvalid = d.Contains("begin_invalid") ? d["begin_invalid"] : null;
            BeginFailedCall = d.Contains("begin_failed_call") ? d["begin_failed_call"] : null;
            StopRequested = Str(d, "stop_requested"); EndedAt = Str(d, "ended_at");
            HasVerdict = d.Contains("backup_valid") || d.Contains("proof") || d.Contains("recorded_as");
            Proof = d.Contains("proof") ? d["proof"] : null;
            BackupValid = d.Contains("backup_valid") && d["backup_valid"] is bool ? (bool?)(bool)d["backup_valid"] : null;
            RecordedAs = Str(d, "recorded_as");
            EndingRecords = null;
            IList er = List(d, "ending_records");
            if (er != null) { EndingRecords = new List<object>(); foreach (object o in er) EndingRecords.Add(o); }
            unknown = new Dictionary<string, object>();
            foreach (DictionaryEntry e in d)
            {
                string k = Convert.ToString(e.Key, CultureInfo.InvariantCulture);
                if (Array.IndexOf(Known, k) < 0) unknown[k] = e.Value;
            }
        }

        private static FormatException Wrong(string k, object o, string want)
        {
            return new FormatException("the session journal's '" + k + "' is " + (o == null ? "null" : "a " + o.GetType().Name) + ", not " + want);
        }

        // Absent and null read as null; any other type is a FormatException.
        internal static string Str(IDictionary d, string k)
        {
            object o = d.Contains(k) ? d[k] : null;
            if (o == null || o is string) return (string)o;
            throw Wrong(k, o, "a string");
        }

        internal static long? Long(IDictionary d, string k)
        {
            object o = d.Contains(k) ? d[k] : null;
            if (o == null) return null;
            if (o is long) return (long)o;
            if (o is int) return (int)o;
            throw Wrong(k, o, "a whole number");
        }

        internal static List<string> Strings(IDictionary d, string k)
        {
            List<string> l = new List<string>();
            object v = d.Contains(k) ? d[k] : null;
            if (v == null) return l;
            IList src = v as IList;
            if (src == null) throw Wrong(k, v, "a list");
            foreach (object o in src)
            {
                if (!(o is string)) throw Wrong(k + "[]", o, "a string");
                l.Add((string)o);
            }
            return l;
        }

        internal static IList List(IDictionary d, string k)
        {
            object v = d.Contains(k) ? d[k] : null;
            if (v == null || v is IList) return (IList)v;
            throw Wrong(k, v, "a list");
        }

        internal static IDictionary Dict(IDictionary d, string k)
        {
            object v = d.Contains(k) ? d[k] : null;
            if (v == null || v is IDictionary) return (IDictionary)v;
            throw Wrong(k, v, "an object");
        }

        internal static List<object> Objects(List<string> l)
        {
            List<object> r = new List<object>();
            foreach (string s in l) r.Add(s);
            return r;
        }
    }

    // The journal: one small JSON file per session, rewritten atomically. Readers open it with
    // FileShare.ReadWrite | FileShare.Delete, so that they never block the host's replace. Another process that
    // holds it without FileShare.Delete (an antivirus, an older reader) makes File.Replace fail with a sharing
    // violation on Windows: Write retries with backoff.
    internal static class JournalFile
    {
        // Test hook: the first N replace attempts of this process fail as a sharing violation would.
        public const string TestReplaceFailuresVar = "ESE_BACKUP_TEST_JOURNAL_REPLACE_FAILURES";
        public const int WriteAttempts = 10;
        private static int injectedFailures;

        // The journal of a session (null when there is none); FormatException when a field has the wrong type.
        public static SessionJournal Read(string name)
        {
            return SessionJournal.FromJson(ReadJson(name));
        }

        private static IDictionary ReadJson(string name)
        {
            string p = SessionPaths.Journal(name);
            for (int attempt = 0; attempt < 5; attempt++)
            {
                try
                {
                    if (!File.Exists(p)) return null;
                    using (FileStream fs = new FileStream(p, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
                    using (StreamReader reader = new StreamReader(fs, Encoding.UTF8))
                        return Json.Parse(reader.ReadToEnd()) as IDictionary;
                }
                catch (FileNotFoundException) { return null; }
                catch (IOException) { Thread.Sleep(50); }
                catch (UnauthorizedAccessException) { Thread.Sleep(50); }
                catch (FormatException) { Thread.Sleep(50); }
            }
            return null;
        }

        // "N": the first N replace attempts of this process fail; "S:N": the first S succeed, the next N fail.
        private static void InjectFault(string p)
        {
            string v = Environment.GetEnvironmentVariable(TestReplaceFailuresVar);
            if (string.IsNullOrEmpty(v)) return;
            string[] parts = v.Split(':');
            int skip = 0, n;
            if (parts.Length > 2 || !int.TryParse(parts[parts.Length - 1], NumberStyles.Integer, CultureInfo.InvariantCulture, out n)
                || (parts.Length == 2 && !int.TryParse(parts[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out skip)))
                return;
            int attempt = Interlocked.Increment(ref injectedFailures);
            if (attempt > skip && attempt <= skip + n)
                throw new IOException("The process cannot access the file '" + p + "' because it is being used by another process (" + TestReplaceFailuresVar + ")");
        }

        public static void Write(string name, SessionJournal j)
        {
            string p = SessionPaths.Journal(name);
            string tmp = p + "." + Process.GetCurrentProcess().Id.ToString(CultureInfo.InvariantCulture) + ".tmp";
            File.WriteAllText(tmp, Json.Write(j.ToJson(), true) + "\n", new UTF8Encoding(false));
            if (!PathRules.IsWindows) Posix.chmod(tmp, 0x180);
            int delay = 10;
            for (int attempt = 1; ; attempt++)
            {
                Exception failure;
                try
                {
                    InjectFault(p);
                    if (File.Exists(p)) File.Replace(tmp, p, null);
                    else File.Move(tmp, p);
                    return;
                }
                catch (IOException e) { failure = e; }
                catch (UnauthorizedAccessException e) { failure = e; }
                if (attempt >= WriteAttempts)
                {
                    try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
                    throw new IOException("cannot replace the session journal " + p + " (" + attempt.ToString(CultureInfo.InvariantCulture)
                        + " attempts; another process may hold it open without sharing, for example an antivirus): " + failure.Message, failure);
                }
                Thread.Sleep(delay);
                delay = Math.Min(delay * 2, 500);
            }
        }

        public static void Delete(string name)
        {
            try { File.Delete(SessionPaths.Journal(name)); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }

        // The journal facts of docs/architecture.md: {ended, stop_seen, incomplete_files}, plus context.
        public static Dictionary<string, object> Facts(SessionJournal j)
        {
            if (j == null) return null;
            Dictionary<string, object> f = new Dictionary<string, object>();
            f["ended"] = j.Ended;
            f["stop_seen"] = j.StopSeen;
            f["incomplete_files"] = SessionJournal.Objects(j.IncompleteFiles);
            f["end_reason"] = j.EndReason;
            f["pid"] = j.Pid.HasValue ? (object)j.Pid.Value : null;
            f["logs_truncated"] = j.Truncated;
            f["missing_logs"] = MissingLogs(j);
            f["proof"] = j.Proof;
            f["backup_valid"] = j.BackupValid.HasValue ? (object)j.BackupValid.Value : null;
            f["recorded_as"] = j.RecordedAs;
            f["type"] = j.Type;
            f["path"] = SessionPaths.Journal(j.Session);
            return f;
        }

        // Logs of the computed range that no copy has read completely (empty list: none; null: no range yet).
        public static List<object> MissingLogs(SessionJournal j)
        {
            if (j.LogRange == null) return null;
            HashSet<string> done = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            foreach (CopiedFile f in j.Files)
                if (f.Role == "log" && f.Published && f.Name != null) done.Add(f.Name); // a copy in a published set only
            List<object> missing = new List<object>();
            foreach (string n in j.LogRange.Names)
                if (!done.Contains(n)) missing.Add(n);
            return missing;
        }
    }

    // A line-delimited JSON exchange with the session host: one request, one response, per connection.
    internal static class Wire
    {
        // No answer: nothing listens, the connection failed or closed, or the answer did not come in time.
        public sealed class NoHost : Exception { public NoHost(string m) : base(m) { } }
        // The pipe is served by a process other than the journal's session host (Windows).
        public sealed class Impostor : Exception { public Impostor(string m) : base(m) { } }

        public static Dictionary<string, object> Call(string endpoint, long hostPid, Dictionary<string, object> request, int timeoutMs)
        {
            Stream s = Connect(endpoint, hostPid, timeoutMs);
            using (s)
            {
                string line;
                try
                {
                    byte[] data = new UTF8Encoding(false).GetBytes(Json.Write(request, false) + "\n");
                    s.Write(data, 0, data.Length);
                    s.Flush();
                    line = ReadLine(s, timeoutMs);
                }
                catch (TimeoutException) { throw new NoHost("no answer within " + (timeoutMs / 1000).ToString(CultureInfo.InvariantCulture) + " s"); }
                catch (IOException e) { throw new NoHost("the connection failed: " + e.Message); }
                catch (ObjectDisposedException e) { throw new NoHost("the connection closed: " + e.Message); }
                catch (SocketException e) { throw new NoHost("the connection failed: " + e.Message); }
                if (line == null) throw new NoHost("the session host closed the connection without an answer");
                Dictionary<string, object> r;
                try { r = Json.Parse(line) as Dictionary<string, object>; }
                catch (FormatException e) { throw new NoHost("the answer is not JSON: " + e.Message); }
                if (r == null) throw new NoHost("the session host's answer is not a JSON object");
                return r;
            }
        }

        private static Stream Connect(string endpoint, long hostPid, int timeoutMs)
        {
            if (PathRules.IsWindows)
            {
                // Identification: the host may learn who connects but can never act as the caller.
                NamedPipeClientStream c = new NamedPipeClientStream(".", endpoint, PipeDirection.InOut, PipeOptions.Asynchronous, TokenImpersonationLevel.Identification);
                try { c.Connect(Math.Min(timeoutMs, 5000)); }
                catch (TimeoutException) { c.Dispose(); throw new NoHost("no instance of pipe " + endpoint + " accepted a connection within 5 s"); }
                catch (IOException e) { c.Dispose(); throw new NoHost("pipe " + endpoint + ": " + e.Message); }
                catch (UnauthorizedAccessException e) { c.Dispose(); throw new NoHost("pipe " + endpoint + ": " + e.Message); }
                uint server;
                if (!SessionNative.GetNamedPipeServerProcessId(c.SafePipeHandle, out server))
                {
                    int err = Marshal.GetLastWin32Error();
                    c.Dispose();
                    throw new Impostor("cannot tell which process serves pipe " + endpoint + " (GetNamedPipeServerProcessId error " + err.ToString(CultureInfo.InvariantCulture) + "); nothing was sent");
                }
                if ((long)server != hostPid)
                {
                    c.Dispose();
                    throw new Impostor("pipe " + endpoint + " is served by process " + server.ToString(CultureInfo.InvariantCulture) + ", not by the session host (pid "
                        + hostPid.ToString(CultureInfo.InvariantCulture) + "); nothing was sent. Another program created the pipe: find it (for example with Sysinternals handle.exe) and end the session");
                }
                return c;
            }
            if (!File.Exists(endpoint)) throw new NoHost("no socket " + endpoint);
            Socket sock = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try { sock.Connect(new UnixEndPoint(endpoint)); }
            catch (SocketException e) { sock.Close(); throw new NoHost("socket " + endpoint + ": " + e.Message); }
            return new NetworkStream(sock, true);
        }

        // One line, read with a deadline: TimeoutException when it has not come within timeoutMs (the stream is
        // then closed). Asynchronous reads, so that the deadline holds for pipes and sockets alike.
        public static string ReadLine(Stream s, int timeoutMs)
        {
            DateTime deadline = DateTime.UtcNow.AddMilliseconds(timeoutMs);
            MemoryStream buf = new MemoryStream();
            byte[] chunk = new byte[65536];
            while (true)
            {
                IAsyncResult ar = s.BeginRead(chunk, 0, chunk.Length, null, null);
                double left = (deadline - DateTime.UtcNow).TotalMilliseconds;
                if (!ar.IsCompleted && (left <= 0 || !ar.AsyncWaitHandle.WaitOne((int)Math.Min(int.MaxValue, Math.Max(1.0, left)))))
                {
                    try { s.Dispose(); } catch (IOException) { } catch (ObjectDisposedException) { }
                    throw new TimeoutException("no complete line within " + timeoutMs.ToString(CultureInfo.InvariantCulture) + " ms");
                }
                int n = s.EndRead(ar);
                if (n <= 0) { if (buf.Length == 0) return null; break; }
                int nl = Array.IndexOf(chunk, (byte)'\n', 0, n);
                buf.Write(chunk, 0, nl >= 0 ? nl : n);
                if (nl >= 0) break;
                if (buf.Length > 16 * 1024 * 1024) throw new FormatException("request line too long");
            }
            return Encoding.UTF8.GetString(buf.ToArray());
        }

        public static void WriteLine(Stream s, object value)
        {
            byte[] data = new UTF8Encoding(false).GetBytes(Json.Write(value, false) + "\n");
            s.Write(data, 0, data.Length);
            s.Flush();
        }
    }

    // Server side of the endpoint: Accept returns null when the timeout passes without a client, and may
    // throw (the caller retries).
    internal interface IListener : IDisposable { Stream Accept(int timeoutMs); }

    internal sealed class UnixListener : IListener
    {
        private readonly Socket sock;
        private readonly string path;
        public UnixListener(string path)
        {
            this.path = path;
            if (File.Exists(path)) File.Delete(path);
            sock = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            sock.Bind(new UnixEndPoint(path));
            if (Posix.chmod(path, 0x180) != 0) throw new IOException("cannot restrict " + path + " to its owner (chmod 0600)");
            sock.Listen(4);
        }
        public Stream Accept(int timeoutMs)
        {
            DateTime deadline = DateTime.UtcNow.AddMilliseconds(timeoutMs);
            while (true)
            {
                int left = (int)Math.Min(1000.0, (deadline - DateTime.UtcNow).TotalMilliseconds);
                if (left <= 0) return null;
                if (sock.Poll(left * 1000, SelectMode.SelectRead)) return new NetworkStream(sock.Accept(), true);
            }
        }
        public void Dispose()
        {
            sock.Close();
            try { File.Delete(path); } catch (IOException) { }
        }
    }

    // Windows: a named pipe whose ACL admits only SYSTEM, Administrators, Backup Operators and the user that
    // began the session; the host's own account has FullControl (CreateNewInstance among it). Two instances:
    // the next one listens before the connected one is handled and disposed, so a client never finds no
    // instance while the host replies; creating one is retried.
    internal sealed class PipeListener : IListener
    {
        private const int Instances = 2;
        private readonly string name;
        private NamedPipeServerStream pending;
        private IAsyncResult pendingWait;

        public PipeListener(string name) { this.name = name; Listen(); }

        private static PipeSecurity Acl()
        {
            PipeSecurity sec = new PipeSecurity();
            sec.SetAccessRuleProtection(true, false);
            SecurityIdentifier self = WindowsIdentity.GetCurrent().User;
            IdentityReference[] who = {
                new SecurityIdentifier(WellKnownSidType.LocalSystemSid, null),
                new SecurityIdentifier(WellKnownSidType.BuiltinAdministratorsSid, null),
                new SecurityIdentifier(WellKnownSidType.BuiltinBackupOperatorsSid, null) };
            foreach (IdentityReference id in who)
                sec.AddAccessRule(new PipeAccessRule(id, PipeAccessRights.ReadWrite | PipeAccessRights.Synchronize, AccessControlType.Allow));
            sec.AddAccessRule(new PipeAccessRule(self, PipeAccessRights.FullControl, AccessControlType.Allow));
            return sec;
        }

        private NamedPipeServerStream Create()
        {
#if CORECLR
            return NamedPipeServerStreamAcl.Create(name, PipeDirection.InOut, Instances, PipeTransmissionMode.Byte, PipeOptions.Asynchronous, 0, 0, Acl());
#else
            return new NamedPipeServerStream(name, PipeDirection.InOut, Instances, PipeTransmissionMode.Byte, PipeOptions.Asynchronous, 0, 0, Acl());
#endif
        }

        // A listening instance, retried with backoff (all instances busy, or a transient failure).
        private void Listen()
        {
            if (pending != null) return;
            Exception last = null;
            int delay = 50;
            for (int attempt = 0; attempt < 8; attempt++)
            {
                try
                {
                    NamedPipeServerStream p = Create();
                    pendingWait = p.BeginWaitForConnection(null, null);
                    pending = p;
                    return;
                }
                catch (IOException e) { last = e; }
                catch (UnauthorizedAccessException e) { last = e; }
                Thread.Sleep(delay);
                delay = Math.Min(delay * 2, 1000);
            }
            throw new IOException("cannot create an instance of pipe " + name + ": " + (last == null ? "" : last.Message), last);
        }

        public Stream Accept(int timeoutMs)
        {
            Listen();
            if (!pendingWait.AsyncWaitHandle.WaitOne(timeoutMs)) return null;
            NamedPipeServerStream connected = pending;
            IAsyncResult done = pendingWait;
            pending = null; pendingWait = null;
            try { connected.EndWaitForConnection(done); }
            catch (IOException) { connected.Dispose(); throw; }
            // The next instance listens before this one is handled; if that fails now, the next Accept retries.
            try { Listen(); }
            catch (IOException) { }
            return connected;
        }

        public void Dispose()
        {
            if (pending != null) { try { pending.Dispose(); } catch (IOException) { } pending = null; }
        }
    }

    // The session host: owns the instance and the backup; one request at a time.
    internal sealed class SessionHost
    {
        private readonly string name;
        private readonly SessionJournal journal;
        private readonly int idleMs;
        private BackupSequence seq;
        private Plan plan;
        private bool done;

        public SessionHost(string name, SessionJournal journal, int idleMs)
        {
            this.name = name; this.journal = journal; this.idleMs = idleMs;
        }

        // A service source (source adcs or adds) keeps its backup context (HCSBC/HBC) in this process and traces its
        // calls into one trace for the whole session; each request takes the entries it added (Drain).
        private Trace serviceTrace;
        private int serviceMark;
        private bool IsService { get { return plan != null && plan.Opt.IsService; } }
        private void Drain(Trace into)
        {
            if (serviceTrace == null) return;
            List<object> all = serviceTrace.Snapshot();
            for (int i = serviceMark; i < all.Count; i++) into.Entries.Add(all[i]);
            serviceMark = all.Count;
        }
        private string EndCallName { get { return !IsService ? "JetEndExternalBackupInstance2" : plan.Opt.Source == Options.SourceAdcs ? "CertSrvBackupEnd" : "DsBackupEnd"; } }

        private static string Now() { return DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture); }

        // The in-memory journal is the host's record; a save that fails (after JournalFile.Write's retries) never
        // ends the host or its backup: the next save writes everything again, and the reply says so.
        private string saveProblem;
        private bool Save()
        {
            journal.LastActivity = Now();
            try { JournalFile.Write(name, journal); saveProblem = null; return true; }
            catch (IOException e) { saveProblem = e.Message; }
            catch (UnauthorizedAccessException e) { saveProblem = e.Message; }
            return false;
        }

        // How long the host waits for the request line of a connected client (a client that connects and sends
        // nothing must not hold the host: it serves one request at a time).
        internal const int RequestReadMs = 60000;

        private void Record(string op, List<object> trace)
        {
            foreach (object o in trace)
            {
                IDictionary e = (IDictionary)o;
                Dictionary<string, object> c = new Dictionary<string, object>();
                c["time"] = Now(); c["op"] = op; c["call"] = e["call"]; c["err"] = e["err"];
                journal.Calls.Add(c);
                if (Convert.ToInt64(e["err"], CultureInfo.InvariantCulture) == Jet.errBackupAbortByServer) journal.StopSeen = true;
            }
        }

        private static Dictionary<string, object> NewResult(Trace trace)
        {
            Dictionary<string, object> r = Results.New(trace.Entries, "ended");
            r["logs_truncated"] = false; r["backup_started"] = true;
            return r;
        }

        public int Serve(Options o)
        {
            Trace trace = new Trace();
            JetApi api = new JetApi(trace);
            BackupFacts begun = new BackupFacts();
            try
            {
                plan = Validator.ValidateSource(o, api);
                seq = new BackupSequence(plan, api, begun);
                if (plan.Opt.IsService)
                {
                    serviceTrace = new Trace();
                    seq.BeginService(serviceTrace); // full (copy) or incremental; the context stays in this process
                    Drain(trace);
                }
                else
                {
                    seq.SetupInstance();
                    seq.BeginBackup();
                }
            }
            catch (Exception e)
            {
                Drain(trace);
                JetFailure f = e as JetFailure;
                InvalidOption inv = e as InvalidOption;
                if (inv != null) journal.BeginInvalid = inv.ToDict();
                else journal.BeginFailedCall = f != null ? f.ToDict() : new JetFailure("Engine", Jet.errInvalidParameter, e.GetType().Name + ": " + e.Message).ToDict();
                if (begun.Invalid != null) journal.BeginInvalid = begun.Invalid;
                if (seq != null) seq.AbortAndCleanup();
                Drain(trace);
                journal.BeginTrace = trace.Snapshot();
                journal.State = "failed";
                Save();
                Failed = journal.BeginFailedCall;
                FailedInvalid = journal.BeginInvalid;
                return 1;
            }
            journal.BeginTrace = trace.Snapshot();
            Record("begin", trace.Snapshot());
            IListener listener;
            try
            {
                string ep = journal.Endpoint;
                listener = PathRules.IsWindows ? (IListener)new PipeListener(ep) : new UnixListener(ep);
            }
            catch (Exception e)
            {
                InvalidOption inv = e as InvalidOption;
                if (inv != null) journal.BeginInvalid = inv.ToDict();
                else journal.BeginFailedCall = new JetFailure("SessionEndpoint", Jet.errInvalidParameter, e.GetType().Name + ": " + e.Message).ToDict();
                seq.AbortAndCleanup();
                journal.State = "failed";
                Save();
                Failed = journal.BeginFailedCall;
                FailedInvalid = journal.BeginInvalid;
                return 1;
            }
            journal.State = "open";
            if (!Save())
            {
                // Nobody could learn that the backup began: end it rather than serve a session no task can see.
                Trace t2 = new Trace();
                seq.Rebind(new JetApi(t2), new BackupFacts());
                seq.AbortAndCleanup();
                listener.Dispose();
                Failed = new JetFailure("SessionJournal", Jet.errInvalidParameter, "the journal could not record the session as open, so the backup was ended with abort: " + saveProblem).ToDict();
                return 1;
            }
            Started = true;
            Session.DetachStdio();
            using (listener)
            {
                DateTime lastRequest = DateTime.UtcNow;
                int failures = 0;
                while (!done)
                {
                    Stream s;
                    int left = (int)Math.Max(0.0, Math.Min(int.MaxValue, idleMs - (DateTime.UtcNow - lastRequest).TotalMilliseconds));
                    try { s = left > 0 ? listener.Accept(left) : null; failures = 0; }
                    catch (Exception)
                    {
                        // Never let the endpoint end the host (and with it the backup): retry until the idle timeout.
                        failures++;
                        Thread.Sleep(Math.Min(5000, 100 * failures));
                        continue;
                    }
                    if (s == null) { IdleTimeout(); break; }
                    lastRequest = DateTime.UtcNow;
                    try
                    {
                        using (s)
                        {
                            string line = Wire.ReadLine(s, RequestReadMs);
                            if (line == null) continue;
                            IDictionary req = Json.Parse(line) as IDictionary;
                            Dictionary<string, object> answer = Handle(req);
                            Wire.WriteLine(s, answer);
                        }
                    }
                    catch (Exception) { } // the client went away or sent garbage; the host keeps serving
                    lastRequest = DateTime.UtcNow;
                }
            }
            return 0;
        }

        // What Serve reports in its own result (the async job's results file): whether the backup began, and the
        // failure at start when not.
        internal bool Started;
        internal object Failed, FailedInvalid;

        private void IdleTimeout()
        {
            Trace trace = new Trace();
            Dictionary<string, object> r = NewResult(trace);
            seq.Rebind(new JetApi(trace), new BackupFacts());
            seq.AbortAndCleanup(); // End2(Abort); JetTerm2(StopBackup) if End fails; detach, end session, term (a service: End(false))
            Drain(trace);
            foreach (object o in trace.Snapshot())
                if (EndCallName.Equals(((IDictionary)o)["call"])) { journal.EndCall = o; break; }
            journal.Ended = "idle_timeout";
            journal.EndReason = "no request for " + (idleMs / 1000).ToString(CultureInfo.InvariantCulture) + " s (idle_timeout); the session host ended the backup with abort";
            journal.EndedAt = Now();
            journal.State = "ended";
            journal.RecordVerdict(null, false, null);
            WriteEndings("idle_timeout", false, null, null, journal.EndCall, r);
            Record("idle_timeout", trace.Snapshot());
            Save();
        }

        private Dictionary<string, object> Handle(IDictionary req)
        {
            string op = req != null && req.Contains("op") ? Convert.ToString(req["op"], CultureInfo.InvariantCulture) : "";
            IDictionary args = req != null && req.Contains("args") ? req["args"] as IDictionary : null;
            if (args == null) args = new Dictionary<string, object>();
            bool check = req != null && req.Contains("check_mode") && true.Equals(req["check_mode"]);
            Trace trace = new Trace();
            JetApi api = new JetApi(trace);
            Dictionary<string, object> r = NewResult(trace);
            BackupFacts facts = new BackupFacts();
            facts.LogsTruncated = journal.Truncated; // a staging folder that holds truncated logs is kept
            seq.Rebind(api, facts);
            r["logs_truncated"] = journal.Truncated;
            try
            {
                if (op == "status") { }
                else if (op == "copy") Copy(args, check, r);
                else if (op == "truncate") Truncate(check, r);
                else if (op == "end") End(args, check, r, api);
                else if (op == "stop" && IsService)
                    r["invalid"] = new InvalidOption("op", "a stop request is for the engine's own instance; the backup of session '" + name + "' is held by the service ("
                        + plan.Opt.Source + "): end it with mode abort").ToDict();
                else if (op == "stop")
                {
                    int err = trace.Add("JetStopBackupInstance", SessionNative.JetStopBackupInstance(seq.Instance), "requested on the session host");
                    if (err >= 0) { journal.StopSeen = true; journal.StopRequested = Now(); }
                }
                else r["invalid"] = new InvalidOption("op", "unknown session request '" + op + "'").ToDict();
            }
            catch (InvalidOption e) { r["invalid"] = e.ToDict(); }
            catch (JetFailure f) { r["failed_call"] = f.ToDict(); }
            catch (Exception e) { r["failed_call"] = new JetFailure("Engine", Jet.errInvalidParameter, e.GetType().Name + ": " + e.Message).ToDict(); }
            Drain(trace);
            facts.WriteTo(r);
            if ((!check && op != "status") || trace.Entries.Count > 0)
            {
                Record(op, trace.Snapshot());
                if (!Save())
                    ((List<object>)r["warnings"]).Add("the session journal could not be saved (" + saveProblem + "); the session host keeps the record and saves it again with the next request");
            }
            r["logs_truncated"] = journal.Truncated;
            r["session"] = Session.Describe(name, journal, !done);
            r["journal"] = JournalFile.Facts(journal);
            return r;
        }

        private void Copy(IDictionary args, bool check, Dictionary<string, object> r)
        {
            long? bs = Args.Long(args, "buffer_size");
            Plan target = plan.ForCopy(Args.Str(args, "dest", null), Options.SetNameOf(args, plan.Opt.Type), bs.HasValue ? bs.Value : Options.DefaultBufferSize);
            Options o = target.Opt;
            o.IncludeFiles = Options.ParseIncludeFiles(args);
            bool dbs = Args.Bool(args, "databases", true) && !o.Incremental;
            bool logs = Args.Bool(args, "logs", true);
            if (!dbs && !logs) throw new InvalidOption("logs", "nothing to copy: databases and logs are both false" + (o.Incremental ? " (an incremental session has no databases to stream)" : ""));
            if (IsService) Validator.RequireServiceBufferSize(o);
            else Options.RequireBufferSize(o.BufferSize, plan.PageSize);
            if (IsService ? !seq.Source.Prepared : !seq.BackupOpen) throw new InvalidOption("session", "the backup of session '" + name + "' is no longer in progress; end it and begin a new one");
            if (journal.Truncated) throw new InvalidOption("session", "the logs of session '" + name + "' are already truncated; end the session");
            if (IsService) Validator.ValidateServiceDest(target);
            else Validator.ValidateDest(target);
            if (target.ExistingManifest != null || Directory.Exists(target.FinalPath))
                throw new InvalidOption("set_name", "'" + target.FinalPath + "' already exists; a session copy never writes into an existing set, choose another set_name");
            if (check)
            {
                Dictionary<string, object> c = new Dictionary<string, object>();
                c["would_create"] = target.FinalPath; c["staging"] = target.StagingPath;
                c["databases"] = dbs; c["logs"] = logs; c["include_files"] = (long)o.IncludeFiles.Count; c["estimated_bytes"] = target.EstimatedBytes; c["free_bytes"] = target.FreeBytes;
                r["check"] = c;
                return;
            }
            seq.OpenSource = null;
            List<string> names = null;
            try
            {
                seq.StartSet(new BackupSetWriter(target), dbs);
                if (IsService) CopyService(target, dbs, logs);
                else
                using (CopyPipeline pipe = new CopyPipeline((int)o.BufferSize))
                {
                    pipe.Progress = new CopyProgress(seq.Writer.Staging, seq.Writer.SetName, CopyProgress.Estimate(plan, dbs, logs));
                    if (dbs) seq.StreamDatabases(pipe);
                    if (logs)
                    {
                        names = seq.ReadLogInfo();
                        LogRange range = new LogRange();
                        range.GenLow = seq.GenLow; range.GenHigh = seq.GenHigh; range.Names = new List<string>(names);
                        journal.LogRange = range;
                        seq.StreamLogs(pipe, names, 0);
                    }
                }
                seq.CopyIncludedFiles(o.IncludeFiles);
                NoteFiles(seq.Writer.Files);
                seq.Publish();
                string set = seq.Facts.FailedCall == null ? target.FinalPath : "(discarded: " + target.StagingPath + ")";
                foreach (CopiedFile f in journal.Files) if (f.Set == null) f.Set = set;
            }
            catch (Exception e)
            {
                if (seq.Writer != null)
                {
                    NoteFiles(seq.Writer.Files);
                    seq.Writer.Remove();
                }
                if (seq.OpenSource != null && !journal.IncompleteFiles.Contains(seq.OpenSource)) journal.IncompleteFiles.Add(seq.OpenSource);
                foreach (CopiedFile f in journal.Files) if (f.Set == null) f.Set = "(discarded: " + target.StagingPath + ")";
                if (IsService && !(e is InvalidOption)) EndSourceAfterFailure(r);
                throw;
            }
            r["backup_set"] = seq.Facts.FailedCall == null ? target.FinalPath : null;
        }

        // A service source's copy: the databases the service names (full, copy) and its logs, through the same
        // StreamFile and CopyPipeline as a run, into the set the caller started; Copy publishes it.
        private void CopyService(Plan target, bool dbs, bool logs)
        {
            Options o = target.Opt;
            using (CopyPipeline pipe = new CopyPipeline((int)o.BufferSize))
            {
                seq.PrepareServiceCopy(o.Dest, o.BufferSize);
                pipe.Progress = new CopyProgress(seq.Writer.Staging, seq.Writer.SetName, 0); // the service names its files only now
                if (dbs) seq.StreamServiceDatabases(pipe);
                if (logs)
                {
                    List<string> leaves = seq.ServiceLogLeaves();
                    LogRange range = new LogRange();
                    range.GenLow = seq.GenLow; range.GenHigh = seq.GenHigh; range.Names = leaves;
                    journal.LogRange = range;
                    seq.StreamServiceLogs(pipe);
                }
            }
        }

        // A copy of a service source failed after it began: the service's context may hold a file half read, so the
        // host ends the backup with End(false) (which closes it), records the session ended with abort, and exits.
        private void EndSourceAfterFailure(Dictionary<string, object> r)
        {
            seq.AbortSource();
            List<object> all = serviceTrace.Snapshot();
            for (int i = serviceMark; i < all.Count; i++)
                if (EndCallName.Equals(((IDictionary)all[i])["call"])) journal.EndCall = all[i];
            journal.Ended = "abort";
            journal.EndReason = "a copy failed while the service's backup was open; the session host ended it with " + EndCallName + " (abort)";
            journal.EndedAt = Now();
            journal.State = "ended";
            journal.RecordVerdict(null, false, null);
            r["ended"] = "abort";
            WriteEndings("abort", false, null, null, journal.EndCall, r);
            done = true;
        }

        // Files read completely into the current set: recorded with size and hash; no longer incomplete.
        private void NoteFiles(List<object> written)
        {
            foreach (object o in written)
            {
                IDictionary w = (IDictionary)o;
                string rel = (string)w["name"];
                string role = (string)w["role"];
                string fileName = rel.Substring(rel.IndexOf('/') + 1);
                bool seen = false;
                foreach (CopiedFile f in journal.Files)
                    if (f.Set == null && rel == f.File) seen = true;
                if (seen) continue;
                CopiedFile e = new CopiedFile();
                e.File = rel; e.Name = fileName; e.Role = role;
                if (w.Contains("generation")) e.Generation = (long)w["generation"];
                e.Size = (long)w["size"]; e.Sha256 = (string)w["sha256"]; e.Set = null;
                string source = IsService ? (seq.StreamedFrom.ContainsKey(rel) ? seq.StreamedFrom[rel] : null)
                    : role == "log" ? System.IO.Path.Combine(PathRules.Normalize(plan.Opt.LogPath), fileName) : null;
                if (role == "database" && !IsService)
                    for (int i = 0; i < plan.DbSetNames.Count; i++) if (plan.DbSetNames[i] == fileName) source = plan.DbPaths[i];
                e.Source = source;
                journal.Files.Add(e);
                if (source != null) journal.IncompleteFiles.Remove(source);
            }
        }

        private void Truncate(bool check, Dictionary<string, object> r)
        {
            Options o = plan.Opt;
            if (!o.Truncate)
                throw new InvalidOption("session", "session '" + name + "' is a " + o.Type + " backup, which never truncates logs; use type full or incremental");
            if (journal.Truncated) { r["already_truncated"] = true; return; }
            if (IsService ? !seq.Source.Prepared : !seq.BackupOpen) throw new InvalidOption("session", "the backup of session '" + name + "' is no longer in progress; nothing can be truncated");
            List<object> missing = JournalFile.MissingLogs(journal);
            if (missing == null || missing.Count > 0)
            {
                Dictionary<string, object> refused = new Dictionary<string, object>();
                refused["missing_logs"] = missing ?? new List<object>();
                refused["msg"] = missing == null
                    ? "no log of this session has been copied yet (the log range is not computed); copy the logs first"
                    : "the journal does not show these logs copied completely: " + string.Join(", ", missing.ConvertAll(x => (string)x).ToArray()) + "; copy the logs again first";
                r["refused"] = refused;
                return;
            }
            if (check) { Dictionary<string, object> c = new Dictionary<string, object>(); c["would_truncate"] = true; r["check"] = c; return; }
            if (IsService) seq.TruncateService(); // CertSrvBackupTruncateLogs / DsBackupTruncateLogs
            else seq.TruncateLogs();
            journal.Truncated = true;
        }

        private void End(IDictionary args, bool check, Dictionary<string, object> r, JetApi api)
        {
            string mode = Args.Choice(args, "mode", "normal", "normal", "abort");
            bool truncateDone = Args.Bool(args, "truncate_done", false);
            r["mode"] = mode;
            // JET_bitBackupTruncateDone makes ESE record the backup as truncating (FullPrev or IncPrev,
            // ErrBKUpdateHdrBackupInfo in dev/ese/src/ese/backup.cxx): a copy or differential would then claim to be
            // a full or an incremental.
            if (truncateDone && !plan.Opt.Truncate)
                throw new InvalidOption("truncate_done", "truncate_done makes ESE record session '" + name + "' as a " + (plan.Opt.Incremental ? "incremental" : "full")
                    + " backup, but it is a " + plan.Opt.Type + " backup, which never truncates logs; end it without truncate_done");
            if (truncateDone && IsService)
                throw new InvalidOption("truncate_done", "truncate_done is for the engine's own instance; the service (" + plan.Opt.Source
                    + ") truncates its logs only through its own call: run ese.backup.truncate before end, and end without truncate_done");
            if (check)
            {
                Dictionary<string, object> c = new Dictionary<string, object>();
                c["would_end"] = IsService ? seq.Source.Prepared : seq.BackupOpen;
                r["check"] = c;
                return;
            }
            if (IsService) { EndService(mode, r); return; }
            uint grbit = mode == "abort" ? Jet.BackupEndAbort : Jet.BackupEndNormal;
            if (truncateDone && mode == "normal") grbit |= Jet.BackupTruncateDone;
            int err = api.EndBackup(seq.Instance, grbit);
            r["end_call"] = api.Trace.Entries[api.Trace.Entries.Count - 1];
            journal.EndCall = r["end_call"];
            bool stopped = false;
            if (err < 0 && err != Jet.errNoBackup && err != Jet.errBackupAbortByCaller && err != Jet.errBackupAbortByServer)
            {
                if (mode != "abort") return; // not ended (for example -1090): the host keeps serving; end again, or with mode abort
                // End(Abort) failed too: JetTerm2 with JET_bitTermStopBackup ends the backup with the instance, as a run
                // does, so neither the backup nor the database lock outlives this request; the host then exits.
                seq.StopBackupAndTerminate();
                stopped = true;
                r["stopped"] = true;
            }
            journal.Ended = err >= 0 ? mode : "abort";
            journal.EndReason = err >= 0 ? "ended by request (mode " + mode + ")"
                : stopped ? "End with abort returned " + err.ToString(CultureInfo.InvariantCulture) + ": the session host stopped the backup with JetTerm2(JET_bitTermStopBackup)"
                : err == Jet.errNoBackup ? "esent had no backup in progress any more (an earlier call aborted it)"
                : "End returned " + err.ToString(CultureInfo.InvariantCulture) + ": esent ended the backup as an abort";
            journal.EndedAt = Now();
            journal.State = "ended";
            r["ended"] = journal.Ended;
            bool truncated = journal.Truncated || truncateDone;
            string recordedAs = BackupProof.RecordedAs(plan.Opt.Incremental, truncated);
            Dictionary<string, object> proof = null;
            bool valid = false;
            if (err >= 0 && mode == "normal")
            {
                // The proof (BackupProof in EseEngine.cs): the journal's sequence, then the header, read before detach.
                List<object> missing = new List<object>(), headers = new List<object>();
                bool complete = SequenceComplete(missing);
                LogRange range = journal.LogRange;
                long lo = range != null ? range.GenLow : 0;
                long hi = range != null ? range.GenHigh : 0;
                bool recorded = BackupProof.Header(api, plan, recordedAs, lo, hi, range != null, missing, headers);
                proof = BackupProof.Facts(complete, recorded, missing, headers);
                valid = complete && recorded && !journal.StopSeen && journal.IncompleteFiles.Count == 0;
            }
            journal.RecordVerdict(proof, valid, err >= 0 && mode == "normal" && valid ? recordedAs : null);
            r["proof"] = proof;
            r["backup_valid"] = valid;
            r["recorded_as"] = journal.RecordedAs;
            r["session_type"] = plan.Opt.Type;
            WriteEndings(journal.Ended, valid, journal.RecordedAs, proof, journal.EndCall, r);
            seq.Teardown(); // after StopBackupAndTerminate: nothing left to detach or terminate
            done = true;
        }

        // A service source: End(true) and the proof over the published copies (mode normal), or End(false) (abort).
        private void EndService(string mode, Dictionary<string, object> r)
        {
            bool truncated = journal.Truncated;
            string recordedAs = BackupProof.RecordedAs(plan.Opt.Incremental, truncated);
            Dictionary<string, object> proof = null;
            bool valid = false;
            JetFailure failed = null;
            if (mode == "normal")
            {
                List<object> missing = new List<object>();
                bool complete = SequenceComplete(missing);
                try
                {
                    seq.EndService(truncated, PublishedDatabases(), PublishedLogs());
                    Dictionary<string, object> p = seq.Facts.Proof;
                    // (a) also needs the journal's copies into published sets with their manifests' hashes
                    foreach (object m in missing) ((List<object>)p["missing"]).Add(m);
                    p["sequence_complete"] = complete && true.Equals(p["sequence_complete"]);
                    proof = p;
                    valid = complete && seq.Facts.BackupValid == true && !journal.StopSeen && journal.IncompleteFiles.Count == 0;
                }
                catch (JetFailure f) { failed = f; seq.AbortSource(); } // the service released the context whatever End returned
            }
            else seq.AbortSource();
            seq.Facts.Proof = null; seq.Facts.BackupValid = null; seq.Facts.RecordedAs = null; seq.Facts.Ended = null; // the session's verdict below
            List<object> all = serviceTrace.Snapshot();
            for (int i = all.Count - 1; i >= serviceMark; i--)
                if (EndCallName.Equals(((IDictionary)all[i])["call"])) { journal.EndCall = all[i]; break; }
            r["end_call"] = journal.EndCall;
            if (failed != null) r["failed_call"] = failed.ToDict();
            journal.Ended = failed == null ? mode : "abort";
            journal.EndReason = failed == null ? "ended by request (mode " + mode + ")"
                : EndCallName + " failed (" + failed.Message + "); the service released the backup";
            journal.EndedAt = Now();
            journal.State = "ended";
            r["ended"] = journal.Ended;
            journal.RecordVerdict(proof, valid, valid ? recordedAs : null);
            r["proof"] = proof;
            r["backup_valid"] = valid;
            r["recorded_as"] = journal.RecordedAs;
            r["session_type"] = plan.Opt.Type;
            WriteEndings(journal.Ended, valid, journal.RecordedAs, proof, journal.EndCall, r);
            done = true;
        }

        // The latest published copy of each database the service named: (service name, path in the set).
        private List<KeyValuePair<string, string>> PublishedDatabases()
        {
            List<KeyValuePair<string, string>> l = new List<KeyValuePair<string, string>>();
            if (plan.Opt.Incremental || seq.ServiceDbNames == null) return l;
            foreach (string db in seq.ServiceDbNames)
            {
                CopiedFile hit = null;
                foreach (CopiedFile f in journal.Files)
                    if (f.Published && f.Role == "database" && f.Source == db) hit = f;
                if (hit != null) l.Add(new KeyValuePair<string, string>(db, System.IO.Path.Combine(hit.Set, hit.File)));
            }
            return l;
        }

        // The latest published copy of each log of the range: (path in the set, generation).
        private List<KeyValuePair<string, long>> PublishedLogs()
        {
            List<KeyValuePair<string, long>> l = new List<KeyValuePair<string, long>>();
            if (journal.LogRange == null) return l;
            foreach (string n in journal.LogRange.Names)
            {
                CopiedFile hit = null;
                foreach (CopiedFile f in journal.Files)
                    if (f.Published && f.Role == "log" && string.Equals(f.Name, n, StringComparison.OrdinalIgnoreCase)) hit = f;
                if (hit != null) l.Add(new KeyValuePair<string, long>(System.IO.Path.Combine(hit.Set, hit.File), hit.Generation.HasValue ? hit.Generation.Value : 0));
            }
            return l;
        }

        // Proof (a): every database of the attach list (full, copy) and every log of the JetGetLogInfoInstance2W range
        // was read to its reported size into a published set of this session, with that hash in the set's manifest.
        private bool SequenceComplete(List<object> missing)
        {
            List<CopiedFile> published = new List<CopiedFile>();
            foreach (CopiedFile f in journal.Files) if (f.Published) published.Add(f);
            if (published.Count == 0) { missing.Add("no file was copied"); return false; }
            bool ok = true;
            Dictionary<string, IDictionary> manifests = new Dictionary<string, IDictionary>(StringComparer.Ordinal);
            List<CopiedFile> needed = new List<CopiedFile>();
            List<string> wantDbs = IsService ? seq.ServiceDbNames : plan.DbPaths;
            if (!plan.Opt.Incremental && wantDbs == null) { ok = false; missing.Add("the databases were not copied"); }
            if (!plan.Opt.Incremental && wantDbs != null)
                foreach (string db in wantDbs)
                {
                    CopiedFile hit = null;
                    foreach (CopiedFile f in published)
                        if (f.Role == "database" && string.Equals(f.Source, db, PathRules.Cmp)) hit = f;
                    if (hit == null) { ok = false; missing.Add("the database " + db + " was not copied"); }
                    else needed.Add(hit);
                }
            LogRange range = journal.LogRange;
            if (range == null) { ok = false; missing.Add("the logs were not copied"); }
            else
            {
                List<string> absent = new List<string>();
                foreach (string n in range.Names)
                {
                    CopiedFile hit = null;
                    foreach (CopiedFile f in published)
                        if (f.Role == "log" && string.Equals(f.Name, n, StringComparison.OrdinalIgnoreCase)) hit = f;
                    if (hit == null) absent.Add(n); else needed.Add(hit);
                }
                if (absent.Count > 0) { ok = false; missing.Add("the logs were not copied completely: " + string.Join(", ", absent.ToArray())); }
            }
            foreach (CopiedFile f in needed)
            {
                string set = f.Set;
                IDictionary m;
                if (!manifests.TryGetValue(set, out m))
                {
                    string problem, why = null;
                    try { m = BackupManifest.Read(System.IO.Path.Combine(set, BackupManifest.FileName), out problem, out why); }
                    catch (Exception e) { m = null; why = e.Message; }
                    if (m == null) { missing.Add("the manifest of set " + set + " cannot be read: " + why); ok = false; }
                    manifests[set] = m ?? new Dictionary<string, object>();
                    if (m == null) continue;
                }
                bool listed = false;
                IList mf = m.Contains("files") ? m["files"] as IList : null;
                if (mf != null)
                    foreach (object o in mf)
                    {
                        IDictionary e = o as IDictionary;
                        if (e != null && Equals(e["name"], f.File) && Equals(e["sha256"], f.Sha256)) listed = true;
                    }
                if (!listed && m.Count > 0) { ok = false; missing.Add("the manifest of set " + set + " does not list " + f.File + " with the hash of its copy"); }
            }
            return ok;
        }

        // The ending record of every set this session published (ending.json, BackupProof.WriteEnding). A set that
        // cannot take it is named in a warning; verify then reports it as not restorable (no ending record).
        private void WriteEndings(string ended, bool valid, string recordedAs, Dictionary<string, object> proof, object endCall, Dictionary<string, object> r)
        {
            HashSet<string> sets = new HashSet<string>(StringComparer.Ordinal);
            foreach (CopiedFile f in journal.Files) if (f.Published) sets.Add(f.Set);
            Dictionary<string, object> ending = BackupProof.Ending(name, ended, valid, journal.Truncated, recordedAs, proof, endCall, plan.Opt.Type);
            List<object> written = new List<object>();
            foreach (string set in sets)
            {
                try { BackupProof.WriteEnding(set, ending); written.Add(System.IO.Path.Combine(set, "ending.json")); }
                catch (Exception e)
                {
                    ((List<object>)r["warnings"]).Add("the ending record of set " + set + " could not be written (" + e.GetType().Name + ": " + e.Message + "); verify reports the set as not restorable");
                }
            }
            journal.EndingRecords = written;
            r["ending"] = ending;
            r["ending_records"] = written;
        }
    }

    // Entry points (plain data in and out); each connects to the session host over the pipe or socket.
    public static class Session
    {
        private const int StatusTimeoutMs = 10000;
        private const int WorkTimeoutMs = 24 * 3600 * 1000;

        private static Dictionary<string, object> NewResult()
        {
            return Results.New(new List<object>(), "journal", "session");
        }

        private static string Name(IDictionary args)
        {
            string name = Args.Str(args, "session", null);
            if (!SessionPaths.ValidName(name))
                throw new InvalidOption("session", "session name '" + name + "' must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit");
            return name;
        }

        internal static Dictionary<string, object> Describe(string name, SessionJournal j, bool running)
        {
            return Describe(name, j, running ? "open" : null, null);
        }

        // live: "open" (the host answered), "busy" (its process runs but did not answer) or null (no host).
        internal static Dictionary<string, object> Describe(string name, SessionJournal j, string live, string busy)
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["name"] = name;
            if (j == null) { d["state"] = "not_found"; return d; }
            string state;
            if (j.Ended == null) state = live ?? "lost";
            else state = new Dictionary<string, string> { { "normal", "ended" }, { "abort", "aborted" }, { "idle_timeout", "idle_timeout" }, { "host_crash", "host_crash" } }[j.Ended];
            d["state"] = state;
            d["pid"] = j.Pid.HasValue ? (object)j.Pid.Value : null;
            d["started"] = j.Started;
            d["last_activity"] = j.LastActivity;
            d["idle_timeout"] = j.IdleTimeout.HasValue ? (object)j.IdleTimeout.Value : null;
            d["type"] = j.Type;
            d["end_reason"] = j.EndReason;
            d["logs_truncated"] = j.Truncated;
            d["files_copied"] = (long)j.Files.Count;
            if (busy != null) d["busy"] = busy;
            return d;
        }

        // Asks a live host; null when no host answers. Then the journal's process decides: when it still runs
        // (same pid, same start), the host is busy (busy says why) and the journal is left as it is; when it is
        // gone, a journal without an end record is marked host_crash (no backup survives its process).
        private static Dictionary<string, object> Ask(string name, SessionJournal j, Dictionary<string, object> request, int timeoutMs, out string busy)
        {
            busy = null;
            if (j == null || j.Ended != null) return null;
            string pidText = j.Pid.HasValue ? j.Pid.Value.ToString(CultureInfo.InvariantCulture) : "";
            if (j.State == "starting")
            {
                if (HostProcess.Gone(j.ProcessRecord()) == null) busy = "its session host (pid " + pidText + ") is still starting";
                return null;
            }
            if (j.State != "open") return null;
            string problem;
            try { return Wire.Call(j.Endpoint, j.Pid.HasValue ? j.Pid.Value : 0, request, timeoutMs); }
            catch (Wire.Impostor e) { throw new InvalidOption("session", "session '" + name + "': " + e.Message); }
            catch (Wire.NoHost e) { problem = e.Message; }
            string gone = HostProcess.Gone(j.ProcessRecord());
            if (gone == null)
            {
                busy = "its session host (pid " + pidText + ") runs but did not answer (" + problem + "); it serves one request at a time, so another task (a long copy?) may be using it";
                return null;
            }
            SessionJournal again = JournalFile.Read(name);
            if (again != null && again.Ended == null && again.Token == j.Token)
            {
                again.Ended = "host_crash";
                again.State = "ended";
                again.EndReason = "the session host process (pid " + pidText + ") is gone without an end record (" + gone + "; " + problem + "); no backup survives its process";
                again.EndedAt = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
                try { JournalFile.Write(name, again); }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
                j.CopyFrom(again);
            }
            return null;
        }

        // The begin options of a live session against a new begin's: base names compared without regard to case
        // (the log set's file names are), everything else as normalised by Params.
        private static bool SameParams(object journalParams, Dictionary<string, object> prm)
        {
            Dictionary<string, object> a = new Dictionary<string, object>(), b = new Dictionary<string, object>(prm);
            IDictionary jp = journalParams as IDictionary;
            if (jp == null) return false;
            foreach (DictionaryEntry e in jp) a[Convert.ToString(e.Key, CultureInfo.InvariantCulture)] = e.Value;
            foreach (Dictionary<string, object> d in new Dictionary<string, object>[] { a, b })
                if (d.ContainsKey("base_name") && d["base_name"] is string) d["base_name"] = ((string)d["base_name"]).ToLowerInvariant();
            return Json.Write(a, false) == Json.Write(b, false);
        }

        private static Dictionary<string, object> Params(Options o)
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            List<object> dbs = new List<object>();
            foreach (string s in o.Databases) dbs.Add(PathRules.IsAbsolute(s) ? PathRules.Normalize(s) : s);
            d["databases"] = dbs;
            d["log_path"] = o.LogPath != null && PathRules.IsAbsolute(o.LogPath) ? PathRules.Normalize(o.LogPath) : o.LogPath;
            d["system_path"] = o.SystemPath != null && PathRules.IsAbsolute(o.SystemPath) ? PathRules.Normalize(o.SystemPath) : o.SystemPath;
            d["base_name"] = o.BaseName; d["type"] = o.Type;
            d["circular_logging"] = o.CircularLogging; d["legacy_file_names"] = o.LegacyFileNames;
            d["instance_name"] = o.InstanceName;
            d["page_size"] = o.PageSize.HasValue ? (object)o.PageSize.Value : null;
            if (o.IsService)
            {
                // a service source: the service names its files (the own-instance options are refused when given)
                d["source"] = o.Source;
                d["server"] = (o.Server ?? HostName.Current).Trim();
            }
            return d;
        }

        public static Dictionary<string, object> Begin(IDictionary args, bool checkMode)
        {
            Dictionary<string, object> r = NewResult();
            r["started"] = false;
            try
            {
                string name = Name(args);
                long? idle = Args.Long(args, "idle_timeout");
                long idleSec = idle.HasValue ? idle.Value : 3600;
                if (idleSec < 1 || idleSec > 7 * 24 * 3600) throw new InvalidOption("idle_timeout", "idle_timeout must be between 1 and 604800 seconds");
                Options o = Options.Parse(args);
                Trace trace = new Trace();
                r["trace"] = trace.Entries;
                Dictionary<string, object> prm = Params(o);
                SessionPaths.EnsureDir();
                SessionJournal j = JournalFile.Read(name);
                Dictionary<string, object> status = new Dictionary<string, object>();
                status["op"] = "status";
                string busy;
                Dictionary<string, object> live = Ask(name, j, status, StatusTimeoutMs, out busy);
                if (live == null && busy != null)
                {
                    // A live session whose host is busy: the same as an open one, without its answer.
                    r["session"] = Describe(name, j, "busy", busy);
                    r["journal"] = JournalFile.Facts(j);
                    if (!SameParams(j.Params, prm))
                        throw new InvalidOption("session", "session '" + name + "' is running with other parameters (" + Json.Write(j.Params, false) + "); end it first or choose another name");
                    r["exists"] = true;
                    ((List<object>)r["warnings"]).Add("session '" + name + "' is open but busy: " + busy);
                    if (checkMode) { Dictionary<string, object> c0 = new Dictionary<string, object>(); c0["would_begin"] = false; r["check"] = c0; }
                    return r;
                }
                if (live != null)
                {
                    r["session"] = live["session"];
                    r["journal"] = live["journal"];
                    if (!SameParams(j.Params, prm))
                        throw new InvalidOption("session", "session '" + name + "' is running with other parameters (" + Json.Write(j.Params, false) + "); end it first or choose another name");
                    r["exists"] = true;
                    if (checkMode) { Dictionary<string, object> c0 = new Dictionary<string, object>(); c0["would_begin"] = false; r["check"] = c0; }
                    return r;
                }
                r["exists"] = false;
                // Checked only when no live session of this name holds the databases (which it opens).
                Validator.ValidateSource(o, new JetApi(trace));
                if (checkMode)
                {
                    Dictionary<string, object> c = new Dictionary<string, object>();
                    c["would_begin"] = true; c["type"] = o.Type; c["databases"] = prm["databases"]; c["idle_timeout"] = idleSec;
                    c["source"] = o.Source; if (o.IsService) c["server"] = o.Server;
                    c["previous"] = Describe(name, j, false);
                    r["check"] = c;
                    r["session"] = Describe(name, null, false); // {name, state: not_found}: no session of that name runs
                    r["journal"] = JournalFile.Facts(j);
                    return r;
                }
                if (!PathRules.IsWindows) SessionPaths.Endpoint(name); // a socket folder is checked now, not in the host
                return Prepare(name, args, prm, idleSec, r);
            }
            catch (InvalidOption e) { r["invalid"] = e.ToDict(); }
            catch (Exception e)
            {
                if (NativeLoad.IsLoadFailure(e)) r["failed_call"] = NativeLoad.Failure(e, "esent.dll").ToDict();
                else if (e is IOException || e is UnauthorizedAccessException)
                    r["failed_call"] = new JetFailure("SessionFolder", e is UnauthorizedAccessException ? Jet.errFileAccessDenied : Jet.errDiskIO, SessionPaths.Dir() + ": " + e.GetType().Name + ": " + e.Message).ToDict();
                else throw;
            }
            return r;
        }

        // Writes the serve file for the session host and returns how to start it. The host must outlive
        // this task's process (and, on Windows, the WinRM shell's job object): the begin action plugin
        // starts ese.backup.session_host with Ansible's async wrapper, which runs it in a process outside
        // the job, then waits for the journal to report the backup begun (HostTask mode wait).
        private static Dictionary<string, object> Prepare(string name, IDictionary args, Dictionary<string, object> prm, long idleSec, Dictionary<string, object> r)
        {
            string token = Guid.NewGuid().ToString("N");
            Dictionary<string, object> serve = new Dictionary<string, object>();
            Dictionary<string, object> a = new Dictionary<string, object>();
            foreach (DictionaryEntry e in args) a[Convert.ToString(e.Key, CultureInfo.InvariantCulture)] = e.Value;
            serve["args"] = a; serve["token"] = token; serve["params"] = prm; serve["idle_timeout"] = idleSec;
            serve["session_dir"] = SessionPaths.Dir();
            string serveFile = SessionPaths.ServeFile(name);
            ClaimServeFile(name, serveFile, Json.Write(serve, false));
            Dictionary<string, object> launch = new Dictionary<string, object>();
            launch["session"] = name; launch["serve_file"] = serveFile; launch["token"] = token;
            r["launch"] = launch;
            return r;
        }

        // A serve file older than this was left by a begin whose controller went away before the host started.
        private static readonly TimeSpan ServeFileLimit = TimeSpan.FromMinutes(10);

        // The serve file is created exclusively: it exists from this begin until its host has written the journal
        // ("starting"), so a second begin of the session in that window fails at once, saying so, instead of
        // replacing it and waiting for a host that serves the other begin.
        private static void ClaimServeFile(string name, string serveFile, string text)
        {
            string busy = "session '" + name + "' is already starting: another begin of it is starting its session host (" + serveFile
                + "); wait for that begin to finish, then run begin again, which reports the open session";
            if (File.Exists(serveFile) && DateTime.UtcNow - File.GetLastWriteTimeUtc(serveFile) > ServeFileLimit)
                try { File.Delete(serveFile); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            byte[] data = new UTF8Encoding(false).GetBytes(text);
            try
            {
                using (FileStream fs = new FileStream(serveFile, FileMode.CreateNew, FileAccess.Write, FileShare.None))
                {
                    if (!PathRules.IsWindows) Posix.chmod(serveFile, 0x180);
                    fs.Write(data, 0, data.Length);
                }
            }
            catch (IOException) { if (File.Exists(serveFile)) throw new InvalidOption("session", busy); throw; }
            // A begin that read no live journal, while another's host wrote one since: that one holds the session.
            SessionJournal j = JournalFile.Read(name);
            if (j != null && j.Ended == null && (j.State == "starting" || j.State == "open") && HostProcess.Gone(j.ProcessRecord()) == null)
            {
                try { File.Delete(serveFile); } catch (IOException) { } catch (UnauthorizedAccessException) { }
                throw new InvalidOption("session", busy.Replace("is starting its session host", "started its session host"));
            }
        }

        // Entry point of ese.backup.session_host: mode serve runs the session host (until the backup
        // ends or idles out); mode wait returns the begin facts once the host has reported.
        public static Dictionary<string, object> HostTask(IDictionary args)
        {
            Dictionary<string, object> r = NewResult();
            r["started"] = false;
            string mode;
            try { mode = Args.Choice(args, "mode", null, "serve", "wait"); }
            catch (InvalidOption e) { r["invalid"] = e.ToDict(); return r; }
            if (mode == "serve")
            {
                // Whatever fails here is the host's own error: it goes to this module's result (the async job's
                // results file, which the begin action plugin reads when the host does not report).
                try
                {
                    string serveFile = Args.Str(args, "serve_file", null);
                    if (serveFile == null) throw new InvalidOption("serve_file", "serve_file is required with mode serve");
                    IDictionary serve = Json.Parse(File.ReadAllText(serveFile, Encoding.UTF8)) as IDictionary;
                    if (serve == null)
                    {
                        try { File.Delete(serveFile); } catch (IOException) { } catch (UnauthorizedAccessException) { }
                        throw new FormatException("the serve file " + serveFile + " is not a JSON object");
                    }
                    return Serve(serve, serveFile, r);
                }
                catch (InvalidOption e) { r["invalid"] = e.ToDict(); }
                catch (Exception e)
                {
                    r["failed_call"] = (NativeLoad.IsLoadFailure(e) ? NativeLoad.Failure(e, "esent.dll")
                        : new JetFailure("SessionHost", Jet.errInvalidParameter, "the session host could not start: " + e.GetType().Name + ": " + e.Message)).ToDict();
                }
                return r;
            }
            string name, token = Args.Str(args, "token", "");
            try { name = Name(args); }
            catch (InvalidOption e) { r["invalid"] = e.ToDict(); return r; }
            long? timeout = Args.Long(args, "timeout");
            long waitSec = timeout.HasValue ? timeout.Value : 60;
            DateTime deadline = DateTime.UtcNow.AddSeconds(waitSec);
            while (DateTime.UtcNow < deadline)
            {
                SessionJournal j;
                try { j = JournalFile.Read(name); }
                catch (FormatException) { j = null; } // not the host's record: wait for it
                if (j == null || token != j.Token) { Thread.Sleep(50); continue; }
                if (j.State == "starting")
                {
                    string gone = HostProcess.Gone(j.ProcessRecord());
                    if (gone == null) { Thread.Sleep(50); continue; }
                    r["failed_call"] = new JetFailure("SessionHost", Jet.errInvalidParameter, "the session host (pid "
                        + (j.Pid.HasValue ? j.Pid.Value.ToString(CultureInfo.InvariantCulture) : "") + ") ended while starting, before it reported (" + gone + ")").ToDict();
                    r["backup_started"] = false;
                    return r;
                }
                r["trace"] = j.BeginTrace;
                if (j.State == "failed")
                {
                    r["failed_call"] = j.BeginFailedCall;
                    r["invalid"] = j.BeginInvalid;
                    r["backup_started"] = false;
                    JournalFile.Delete(name);
                    return r;
                }
                r["started"] = true;
                r["backup_started"] = true;
                r["exists"] = false;
                r["session"] = Describe(name, j, true);
                r["journal"] = JournalFile.Facts(j);
                return r;
            }
            try { File.Delete(SessionPaths.ServeFile(name)); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            r["failed_call"] = new JetFailure("SessionHost", Jet.errInvalidParameter, "the session host did not report within "
                + waitSec.ToString(CultureInfo.InvariantCulture) + " s (start_timeout; see " + SessionPaths.Journal(name) + ")").ToDict();
            return r;
        }

        // Unix: the host outlives the task; once it has reported, its standard streams point at /dev/null (before
        // that, a failure at start reaches its own result).
        internal static void DetachStdio()
        {
            if (PathRules.IsWindows) return;
            int fd = SessionNative.open("/dev/null", 2);
            if (fd >= 0) { SessionNative.dup2(fd, 0); SessionNative.dup2(fd, 1); SessionNative.dup2(fd, 2); if (fd > 2) SessionNative.close(fd); }
        }

        // The session host process: runs with the serve file that Begin wrote.
        private static Dictionary<string, object> Serve(IDictionary serve, string serveFile, Dictionary<string, object> r)
        {
            IDictionary args = (IDictionary)serve["args"];
            string name = Name(args);
            SessionJournal j = new SessionJournal();
            j.Session = name;
            j.Token = serve["token"] as string;
            Process self = Process.GetCurrentProcess();
            j.Pid = self.Id;
            j.PidStart = HostProcess.StartKey(self.Id);
            j.Started = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
            j.LastActivity = j.Started;
            j.IdleTimeout = Convert.ToInt64(serve["idle_timeout"], CultureInfo.InvariantCulture);
            j.Params = serve["params"] as IDictionary;
            j.Endpoint = SessionPaths.Endpoint(name);
            j.State = "starting";
            JournalFile.Write(name, j);
            // Deleted once the journal says "starting": a concurrent begin always sees one or the other.
            try { File.Delete(serveFile); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            int idleMs = (int)Math.Min(int.MaxValue, Convert.ToInt64(serve["idle_timeout"], CultureInfo.InvariantCulture) * 1000);
            SessionHost host = new SessionHost(name, j, idleMs);
            r["rc"] = (long)host.Serve(Options.Parse(args));
            r["started"] = host.Started;
            r["backup_started"] = host.Started;
            r["trace"] = j.BeginTrace ?? new List<object>();
            r["failed_call"] = host.Failed;
            r["invalid"] = host.FailedInvalid;
            return r;
        }

        private static Dictionary<string, object> Forward(string op, IDictionary args, bool checkMode)
        {
            Dictionary<string, object> r = NewResult();
            try
            {
                string name = Name(args);
                SessionPaths.CheckDir();
                SessionJournal j = JournalFile.Read(name);
                Dictionary<string, object> req = new Dictionary<string, object>();
                Dictionary<string, object> a = new Dictionary<string, object>();
                foreach (DictionaryEntry e in args) a[Convert.ToString(e.Key, CultureInfo.InvariantCulture)] = e.Value;
                req["op"] = op; req["args"] = a; req["check_mode"] = checkMode;
                string busy;
                Dictionary<string, object> answer = Ask(name, j, req, WorkTimeoutMs, out busy);
                if (answer != null) return answer;
                r["journal"] = JournalFile.Facts(j);
                r["session"] = Describe(name, j, busy != null ? "busy" : null, busy);
                if (op == "end") r["mode"] = Args.Choice(args, "mode", "normal", "normal", "abort");
                if (busy != null)
                    throw new InvalidOption("session", "session '" + name + "' is busy: " + busy + "; nothing was done, run the task again when its current request has ended");
                if (op == "end")
                {
                    // No host: no process holds this backup, so esent can have none in progress (JET_errNoBackup).
                    if (checkMode) { Dictionary<string, object> c = new Dictionary<string, object>(); c["would_end"] = false; r["check"] = c; return r; }
                    r["failed_call"] = new JetFailure("JetEndExternalBackupInstance2", Jet.errNoBackup, "not called: no session host serves session '" + name + "'"
                        + (j == null ? " and it has no journal" : " (" + Convert.ToString(Describe(name, j, false)["state"], CultureInfo.InvariantCulture) + ")")).ToDict();
                    return r;
                }
                string why = j == null ? "no session named '" + name + "' exists on this host (no journal)"
                    : "session '" + name + "' is not running (" + Convert.ToString(Describe(name, j, false)["state"], CultureInfo.InvariantCulture)
                      + (j.EndReason != null ? ": " + j.EndReason : "") + "); begin a new session";
                throw new InvalidOption("session", why);
            }
            catch (InvalidOption e) { r["invalid"] = e.ToDict(); }
            catch (Exception e) { r["failed_call"] = new JetFailure("SessionHost", Jet.errInvalidParameter, e.GetType().Name + ": " + e.Message).ToDict(); }
            return r;
        }

        public static Dictionary<string, object> Copy(IDictionary args, bool checkMode) { return Forward("copy", args, checkMode); }
        public static Dictionary<string, object> Truncate(IDictionary args, bool checkMode) { return Forward("truncate", args, checkMode); }
        public static Dictionary<string, object> End(IDictionary args, bool checkMode) { return Forward("end", args, checkMode); }

        // ese.backup.info: the engine's header and backup-set facts, plus the sessions when asked for.
        public static Dictionary<string, object> Info(IDictionary args)
        {
            Dictionary<string, object> r = Engine.Info(args);
            object want = args == null ? null : args["sessions"];
            if (want is bool && (bool)want)
            {
                Dictionary<string, object> listing = List(args);
                r["sessions"] = listing["sessions"];
                if (listing["invalid"] != null && r["invalid"] == null) r["invalid"] = listing["invalid"];
            }
            return r;
        }

        // Every session with a journal on this host, with its state (a gone host is recorded as host_crash; a
        // host that runs but does not answer is busy, and its journal is left as it is).
        public static Dictionary<string, object> List(IDictionary args)
        {
            Dictionary<string, object> r = NewResult();
            List<object> sessions = new List<object>();
            r["sessions"] = sessions;
            string dir = SessionPaths.Dir();
            if (!Directory.Exists(dir)) return r;
            try { SessionPaths.CheckDir(); }
            catch (InvalidOption e) { r["invalid"] = e.ToDict(); return r; }
            string[] files = Directory.GetFiles(dir, "*.json");
            Array.Sort(files, StringComparer.Ordinal);
            foreach (string f in files)
            {
                string n = System.IO.Path.GetFileNameWithoutExtension(f);
                if (n.EndsWith(".serve", StringComparison.Ordinal) || !SessionPaths.ValidName(n)) continue;
                SessionJournal j = null;
                Dictionary<string, object> status = new Dictionary<string, object>();
                status["op"] = "status";
                string busy;
                Dictionary<string, object> live;
                try
                {
                    j = JournalFile.Read(n);
                    if (j == null) continue;
                    live = Ask(n, j, status, StatusTimeoutMs, out busy);
                }
                catch (InvalidOption e)
                {
                    Dictionary<string, object> d = Describe(n, j, "unverified", null);
                    d["problem"] = e.Message;
                    sessions.Add(d);
                    continue;
                }
                catch (Exception e)
                {
                    // One unreadable journal never hides the others.
                    Dictionary<string, object> d = new Dictionary<string, object>();
                    d["name"] = n; d["state"] = "unknown"; d["problem"] = e.GetType().Name + ": " + e.Message;
                    sessions.Add(d);
                    continue;
                }
                sessions.Add(live != null ? live["session"] : Describe(n, j, busy != null ? "busy" : null, busy));
            }
            return r;
        }
    }
}
