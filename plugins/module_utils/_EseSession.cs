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

namespace ansible_collections.ese.backup.plugins.module_utils._EseSession
{
    internal static class SessionNative
    {
        [DllImport("esent.dll", ExactSpelling = true)]
        internal static extern int JetStopBackupInstance(IntPtr instance);

        [DllImport("libc.so.6", CharSet = CharSet.Ansi, SetLastError = true)]
        internal static extern int chmod(string path, uint mode);
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

    // Where journals and endpoints live.
    internal static class SessionPaths
    {
        public const string DirVar = "ESE_BACKUP_SESSION_DIR";
        private static readonly Regex NameRule = new Regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$");

        public static bool ValidName(string name) { return name != null && NameRule.IsMatch(name) && !name.EndsWith(".", StringComparison.Ordinal); }

        public static string Dir()
        {
            string over = Environment.GetEnvironmentVariable(DirVar);
            if (!string.IsNullOrEmpty(over)) return over;
            if (PathRules.IsWindows)
                return System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.CommonApplicationData), "ese.backup", "sessions");
            return System.IO.Path.Combine(System.IO.Path.GetTempPath(), "ese.backup-sessions-" + SessionNative.getuid().ToString(CultureInfo.InvariantCulture));
        }

        public static void EnsureDir()
        {
            string d = Dir();
            if (Directory.Exists(d))
            {
                if (!PathRules.IsWindows) SessionNative.chmod(d, 0x1C0);
                return;
            }
            string parent = System.IO.Path.GetDirectoryName(d);
            if (parent != null) Directory.CreateDirectory(parent);
            PrivateDirectory.Create(d);
        }

        public static string Journal(string name) { return System.IO.Path.Combine(Dir(), name + ".json"); }
        public static string ServeFile(string name) { return System.IO.Path.Combine(Dir(), name + ".serve.json"); }

        // Windows: a pipe name; Unix: a socket path (sun_path holds 107 bytes, so long directories use a
        // private folder under the temp directory and a hashed name).
        public static string Endpoint(string name)
        {
            if (PathRules.IsWindows) return "ese.backup.session." + name;
            string p = System.IO.Path.Combine(Dir(), name + ".sock");
            if (Encoding.UTF8.GetByteCount(p) <= 100) return p;
            string dir = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "ese.backup-" + SessionNative.getuid().ToString(CultureInfo.InvariantCulture));
            Directory.CreateDirectory(dir);
            SessionNative.chmod(dir, 0x1C0);
            byte[] h;
            using (SHA256 sha = SHA256.Create()) h = sha.ComputeHash(Encoding.UTF8.GetBytes(p));
            return System.IO.Path.Combine(dir, DbFacts.HexBytes(h).Substring(0, 24) + ".sock");
        }
    }

    // The journal: one small JSON file per session, rewritten atomically.
    internal static class JournalFile
    {
        public static Dictionary<string, object> Read(string name)
        {
            string p = SessionPaths.Journal(name);
            for (int attempt = 0; attempt < 5; attempt++)
            {
                try
                {
                    if (!File.Exists(p)) return null;
                    return Json.Parse(File.ReadAllText(p, Encoding.UTF8)) as Dictionary<string, object>;
                }
                catch (IOException) { Thread.Sleep(50); }
                catch (FormatException) { Thread.Sleep(50); }
            }
            return null;
        }

        public static void Write(string name, Dictionary<string, object> j)
        {
            string p = SessionPaths.Journal(name);
            string tmp = p + "." + Process.GetCurrentProcess().Id.ToString(CultureInfo.InvariantCulture) + ".tmp";
            File.WriteAllText(tmp, Json.Write(j, true) + "\n", new UTF8Encoding(false));
            if (!PathRules.IsWindows) SessionNative.chmod(tmp, 0x180);
            if (File.Exists(p)) File.Replace(tmp, p, null);
            else File.Move(tmp, p);
        }

        public static void Delete(string name)
        {
            try { File.Delete(SessionPaths.Journal(name)); } catch (IOException) { }
        }

        // The journal facts of docs/architecture.md: {ended, stop_seen, incomplete_files}, plus context.
        public static Dictionary<string, object> Facts(Dictionary<string, object> j)
        {
            if (j == null) return null;
            Dictionary<string, object> f = new Dictionary<string, object>();
            f["ended"] = j.ContainsKey("ended") ? j["ended"] : null;
            f["stop_seen"] = j.ContainsKey("stop_seen") && true.Equals(j["stop_seen"]);
            f["incomplete_files"] = j.ContainsKey("incomplete_files") ? j["incomplete_files"] : new List<object>();
            f["end_reason"] = j.ContainsKey("end_reason") ? j["end_reason"] : null;
            f["pid"] = j.ContainsKey("pid") ? j["pid"] : null;
            f["logs_truncated"] = j.ContainsKey("truncated") && true.Equals(j["truncated"]);
            f["missing_logs"] = MissingLogs(j);
            f["path"] = SessionPaths.Journal(Convert.ToString(j["session"], CultureInfo.InvariantCulture));
            return f;
        }

        // Logs of the computed range that no copy has read completely (empty list: none; null: no range yet).
        public static List<object> MissingLogs(Dictionary<string, object> j)
        {
            IDictionary range = j.ContainsKey("log_range") ? j["log_range"] as IDictionary : null;
            if (range == null) return null;
            HashSet<string> done = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            IList files = j["files"] as IList;
            if (files != null)
                foreach (object o in files)
                {
                    IDictionary f = o as IDictionary;
                    if (f != null && "log".Equals(f["role"])) done.Add(Convert.ToString(f["name"], CultureInfo.InvariantCulture));
                }
            List<object> missing = new List<object>();
            foreach (object n in (IList)range["names"])
                if (!done.Contains((string)n)) missing.Add(n);
            return missing;
        }
    }

    // A line-delimited JSON exchange with the session host: one request, one response, per connection.
    internal static class Wire
    {
        public sealed class NoHost : Exception { public NoHost(string m) : base(m) { } }

        public static Dictionary<string, object> Call(string endpoint, Dictionary<string, object> request, int timeoutMs)
        {
            Stream s = Connect(endpoint, timeoutMs);
            using (s)
            {
                byte[] data = new UTF8Encoding(false).GetBytes(Json.Write(request, false) + "\n");
                s.Write(data, 0, data.Length);
                s.Flush();
                string line = ReadLine(s);
                if (line == null) throw new NoHost("the session host closed the connection without an answer");
                Dictionary<string, object> r = Json.Parse(line) as Dictionary<string, object>;
                if (r == null) throw new FormatException("the session host's answer is not a JSON object");
                return r;
            }
        }

        private static Stream Connect(string endpoint, int timeoutMs)
        {
            if (PathRules.IsWindows)
            {
                NamedPipeClientStream c = new NamedPipeClientStream(".", endpoint, PipeDirection.InOut, PipeOptions.None);
                try { c.Connect(Math.Min(timeoutMs, 5000)); }
                catch (TimeoutException) { c.Dispose(); throw new NoHost("no session host listens on pipe " + endpoint); }
                catch (IOException e) { c.Dispose(); throw new NoHost("pipe " + endpoint + ": " + e.Message); }
                return c;
            }
            if (!File.Exists(endpoint)) throw new NoHost("no socket " + endpoint);
            Socket sock = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try { sock.Connect(new UnixEndPoint(endpoint)); }
            catch (SocketException e) { sock.Close(); throw new NoHost("socket " + endpoint + ": " + e.Message); }
            sock.ReceiveTimeout = timeoutMs;
            return new NetworkStream(sock, true);
        }

        public static string ReadLine(Stream s)
        {
            MemoryStream buf = new MemoryStream();
            while (true)
            {
                int b = s.ReadByte();
                if (b < 0) { if (buf.Length == 0) return null; break; }
                if (b == '\n') break;
                buf.WriteByte((byte)b);
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

    // Server side of the endpoint: Accept returns null when the timeout passes without a client.
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
            if (SessionNative.chmod(path, 0x180) != 0) throw new IOException("cannot restrict " + path + " to its owner (chmod 0600)");
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

    // Windows: a named pipe whose ACL admits only SYSTEM, Administrators, Backup Operators and the user
    // that began the session.
    internal sealed class PipeListener : IListener
    {
        private readonly string name;
        public PipeListener(string name) { this.name = name; }

        private static PipeSecurity Acl()
        {
            PipeSecurity sec = new PipeSecurity();
            sec.SetAccessRuleProtection(true, false);
            IdentityReference[] who = {
                new SecurityIdentifier(WellKnownSidType.LocalSystemSid, null),
                new SecurityIdentifier(WellKnownSidType.BuiltinAdministratorsSid, null),
                new SecurityIdentifier(WellKnownSidType.BuiltinBackupOperatorsSid, null),
                WindowsIdentity.GetCurrent().User };
            foreach (IdentityReference id in who)
                sec.AddAccessRule(new PipeAccessRule(id, PipeAccessRights.ReadWrite, AccessControlType.Allow));
            return sec;
        }

        private NamedPipeServerStream Create()
        {
#if CORECLR
            return NamedPipeServerStreamAcl.Create(name, PipeDirection.InOut, 1, PipeTransmissionMode.Byte, PipeOptions.Asynchronous, 0, 0, Acl());
#else
            return new NamedPipeServerStream(name, PipeDirection.InOut, 1, PipeTransmissionMode.Byte, PipeOptions.Asynchronous, 0, 0, Acl());
#endif
        }

        public Stream Accept(int timeoutMs)
        {
            NamedPipeServerStream p = Create();
            IAsyncResult ar = p.BeginWaitForConnection(null, null);
            if (!ar.AsyncWaitHandle.WaitOne(timeoutMs))
            {
                p.Dispose();
                return null;
            }
            p.EndWaitForConnection(ar);
            return p;
        }

        public void Dispose() { }
    }

    // The session host: owns the instance and the backup; one request at a time.
    internal sealed class SessionHost
    {
        private readonly string name;
        private readonly Dictionary<string, object> journal;
        private readonly int idleMs;
        private BackupSequence seq;
        private Plan plan;
        private bool done;

        public SessionHost(string name, Dictionary<string, object> journal, int idleMs)
        {
            this.name = name; this.journal = journal; this.idleMs = idleMs;
        }

        private static string Now() { return DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture); }

        private void Save() { journal["last_activity"] = Now(); JournalFile.Write(name, journal); }

        private void Record(string op, List<object> trace)
        {
            List<object> calls = (List<object>)journal["calls"];
            foreach (object o in trace)
            {
                IDictionary e = (IDictionary)o;
                Dictionary<string, object> c = new Dictionary<string, object>();
                c["time"] = Now(); c["op"] = op; c["call"] = e["call"]; c["err"] = e["err"];
                calls.Add(c);
                if (Convert.ToInt64(e["err"], CultureInfo.InvariantCulture) == -801) journal["stop_seen"] = true;
            }
        }

        private static Dictionary<string, object> NewResult(Trace trace)
        {
            Dictionary<string, object> r = new Dictionary<string, object>();
            r["trace"] = trace.Entries;
            r["failed_call"] = null; r["invalid"] = null; r["check"] = null;
            r["logs_truncated"] = false; r["backup_started"] = true; r["ended"] = null;
            r["warnings"] = new List<object>();
            return r;
        }

        public int Serve(Options o)
        {
            Trace trace = new Trace();
            JetApi api = new JetApi(trace);
            Dictionary<string, object> r = NewResult(trace);
            r["backup_started"] = false;
            try
            {
                plan = Validator.ValidateSource(o, api);
                seq = new BackupSequence(plan, api, r);
                seq.Setup();
                seq.BeginBackup();
            }
            catch (Exception e)
            {
                JetFailure f = e as JetFailure;
                InvalidOption inv = e as InvalidOption;
                if (inv != null) journal["begin_invalid"] = inv.ToDict();
                else journal["begin_failed_call"] = f != null ? f.ToDict() : new JetFailure("Engine", Jet.errInvalidParameter, e.GetType().Name + ": " + e.Message).ToDict();
                if (r["invalid"] != null) journal["begin_invalid"] = r["invalid"];
                if (seq != null) seq.Cleanup();
                journal["begin_trace"] = trace.Snapshot();
                journal["state"] = "failed";
                Save();
                return 1;
            }
            journal["begin_trace"] = trace.Snapshot();
            Record("begin", trace.Snapshot());
            IListener listener;
            try
            {
                string ep = (string)journal["endpoint"];
                listener = PathRules.IsWindows ? (IListener)new PipeListener(ep) : new UnixListener(ep);
            }
            catch (Exception e)
            {
                journal["begin_failed_call"] = new JetFailure("SessionEndpoint", Jet.errInvalidParameter, e.GetType().Name + ": " + e.Message).ToDict();
                seq.Cleanup();
                journal["state"] = "failed";
                Save();
                return 1;
            }
            journal["state"] = "open";
            Save();
            using (listener)
            {
                while (!done)
                {
                    Stream s = listener.Accept(idleMs);
                    if (s == null) { IdleTimeout(); break; }
                    using (s)
                    {
                        try
                        {
                            string line = Wire.ReadLine(s);
                            if (line == null) continue;
                            IDictionary req = Json.Parse(line) as IDictionary;
                            Wire.WriteLine(s, Handle(req));
                        }
                        catch (IOException) { }
                        catch (FormatException) { }
                        catch (SocketException) { }
                    }
                }
            }
            return 0;
        }

        private void IdleTimeout()
        {
            Trace trace = new Trace();
            Dictionary<string, object> r = NewResult(trace);
            seq.Rebind(new JetApi(trace), r);
            seq.Cleanup(); // End2(Abort); JetTerm2(StopBackup) if End fails; detach, end session, term
            foreach (object o in trace.Snapshot())
                if ("JetEndExternalBackupInstance2".Equals(((IDictionary)o)["call"])) { journal["end_call"] = o; break; }
            journal["ended"] = "idle_timeout";
            journal["end_reason"] = "no request for " + (idleMs / 1000).ToString(CultureInfo.InvariantCulture) + " s (idle_timeout); the session host ended the backup with abort";
            journal["ended_at"] = Now();
            journal["state"] = "ended";
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
            seq.Rebind(api, r);
            r["logs_truncated"] = true.Equals(journal["truncated"]);
            try
            {
                if (op == "status") { }
                else if (op == "copy") Copy(args, check, r);
                else if (op == "truncate") Truncate(check, r);
                else if (op == "end") End(args, check, r, api);
                else if (op == "stop")
                {
                    int err = trace.Add("JetStopBackupInstance", SessionNative.JetStopBackupInstance(seq.Instance), "requested on the session host");
                    if (err >= 0) { journal["stop_seen"] = true; journal["stop_requested"] = Now(); }
                }
                else r["invalid"] = new InvalidOption("op", "unknown session request '" + op + "'").ToDict();
            }
            catch (InvalidOption e) { r["invalid"] = e.ToDict(); }
            catch (JetFailure f) { r["failed_call"] = f.ToDict(); }
            catch (Exception e) { r["failed_call"] = new JetFailure("Engine", Jet.errInvalidParameter, e.GetType().Name + ": " + e.Message).ToDict(); }
            if ((!check && op != "status") || trace.Entries.Count > 0)
            {
                Record(op, trace.Snapshot());
                Save();
            }
            r["logs_truncated"] = true.Equals(journal["truncated"]);
            r["session"] = Session.Describe(name, journal, !done);
            r["journal"] = JournalFile.Facts(journal);
            return r;
        }

        private List<object> Files() { return (List<object>)journal["files"]; }
        private List<object> Incomplete() { return (List<object>)journal["incomplete_files"]; }

        private void Copy(IDictionary args, bool check, Dictionary<string, object> r)
        {
            Options o = plan.Opt;
            o.Dest = Args.Str(args, "dest", null);
            string setName = Args.Str(args, "set_name", null);
            o.SetName = setName ?? (o.Type + "-" + DateTime.UtcNow.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture));
            o.SetNameGiven = setName != null;
            long? bs = Args.Long(args, "buffer_size");
            o.BufferSize = bs.HasValue ? bs.Value : 1048576;
            bool dbs = Args.Bool(args, "databases", true) && !o.Incremental;
            bool logs = Args.Bool(args, "logs", true);
            if (!dbs && !logs) throw new InvalidOption("logs", "nothing to copy: databases and logs are both false" + (o.Incremental ? " (an incremental session has no databases to stream)" : ""));
            if (o.BufferSize % plan.PageSize != 0 || o.BufferSize < 3 * (long)plan.PageSize || o.BufferSize > 256L * 1024 * 1024)
                throw new InvalidOption("buffer_size", "buffer_size " + o.BufferSize + " must be a multiple of the page size " + plan.PageSize + ", at least 3 pages and at most 256 MiB");
            if (!seq.BackupOpen) throw new InvalidOption("session", "the backup of session '" + name + "' is no longer in progress; end it and begin a new one");
            if (true.Equals(journal["truncated"])) throw new InvalidOption("session", "the logs of session '" + name + "' are already truncated; end the session");
            plan.LogsOnDisk.Clear();
            plan.ExistingManifest = null;
            Validator.ValidateDest(plan);
            if (plan.ExistingManifest != null || Directory.Exists(plan.FinalPath))
                throw new InvalidOption("set_name", "'" + plan.FinalPath + "' already exists; a session copy never writes into an existing set, choose another set_name");
            if (check)
            {
                Dictionary<string, object> c = new Dictionary<string, object>();
                c["would_create"] = plan.FinalPath; c["staging"] = plan.StagingPath;
                c["databases"] = dbs; c["logs"] = logs; c["estimated_bytes"] = plan.EstimatedBytes; c["free_bytes"] = plan.FreeBytes;
                r["check"] = c;
                return;
            }
            seq.OpenSource = null;
            List<string> names = null;
            try
            {
                seq.StartSet(new BackupSetWriter(plan.StagingPath, plan.FinalPath), dbs);
                using (CopyPipeline pipe = new CopyPipeline((int)o.BufferSize))
                {
                    if (dbs) seq.StreamDatabases(pipe);
                    if (logs)
                    {
                        names = seq.ReadLogInfo();
                        Dictionary<string, object> range = new Dictionary<string, object>();
                        range["gen_low"] = (long)seq.GenLow; range["gen_high"] = (long)seq.GenHigh;
                        List<object> n = new List<object>(); foreach (string s in names) n.Add(s);
                        range["names"] = n;
                        journal["log_range"] = range;
                        seq.StreamLogs(pipe, names, 0);
                    }
                }
                NoteFiles(seq.Writer.Files);
                seq.PublishSet();
                string set = r["failed_call"] == null ? plan.FinalPath : "(discarded: " + plan.StagingPath + ")";
                foreach (object f in Files()) { IDictionary d = (IDictionary)f; if (d["set"] == null) d["set"] = set; }
            }
            catch (Exception)
            {
                if (seq.Writer != null)
                {
                    NoteFiles(seq.Writer.Files);
                    seq.Writer.Remove();
                }
                if (seq.OpenSource != null && !Incomplete().Contains(seq.OpenSource)) Incomplete().Add(seq.OpenSource);
                foreach (object f in Files()) { IDictionary d = (IDictionary)f; if (d["set"] == null) d["set"] = "(discarded: " + plan.StagingPath + ")"; }
                throw;
            }
            r["backup_set"] = r["failed_call"] == null ? plan.FinalPath : null;
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
                foreach (object f in Files())
                {
                    IDictionary d = (IDictionary)f;
                    if (d["set"] == null && rel.Equals(d["file"])) seen = true;
                }
                if (seen) continue;
                Dictionary<string, object> e = new Dictionary<string, object>();
                e["file"] = rel; e["name"] = fileName; e["role"] = role;
                if (w.Contains("generation")) e["generation"] = w["generation"];
                e["size"] = w["size"]; e["sha256"] = w["sha256"]; e["set"] = null;
                string source = role == "log" ? System.IO.Path.Combine(PathRules.Normalize(plan.Opt.LogPath), fileName) : null;
                if (role == "database")
                    for (int i = 0; i < plan.DbSetNames.Count; i++) if (plan.DbSetNames[i] == fileName) source = plan.DbPaths[i];
                e["source"] = source;
                Files().Add(e);
                if (source != null) Incomplete().Remove(source);
            }
        }

        private void Truncate(bool check, Dictionary<string, object> r)
        {
            Options o = plan.Opt;
            if (!o.Truncate)
                throw new InvalidOption("session", "session '" + name + "' is a " + o.Type + " backup, which never truncates logs; use type full or incremental");
            if (true.Equals(journal["truncated"])) { r["already_truncated"] = true; return; }
            if (!seq.BackupOpen) throw new InvalidOption("session", "the backup of session '" + name + "' is no longer in progress; nothing can be truncated");
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
            seq.TruncateLogs();
            journal["truncated"] = true;
        }

        private void End(IDictionary args, bool check, Dictionary<string, object> r, JetApi api)
        {
            string mode = Args.Str(args, "mode", "normal");
            bool truncateDone = Args.Bool(args, "truncate_done", false);
            r["mode"] = mode;
            if (mode != "normal" && mode != "abort") throw new InvalidOption("mode", "mode must be normal or abort");
            if (check)
            {
                Dictionary<string, object> c = new Dictionary<string, object>();
                c["would_end"] = seq.BackupOpen;
                r["check"] = c;
                return;
            }
            uint grbit = mode == "abort" ? Jet.BackupEndAbort : Jet.BackupEndNormal;
            if (truncateDone && mode == "normal") grbit |= 0x100; // JET_bitBackupTruncateDone
            int err = api.EndBackup(seq.Instance, grbit);
            r["end_call"] = api.Trace.Entries[api.Trace.Entries.Count - 1];
            journal["end_call"] = r["end_call"];
            if (err < 0 && err != -520 && err != -800 && err != -801)
                return; // not ended (for example -1090): the host keeps serving; end again or let it time out
            if (err >= 0) journal["ended"] = mode;
            else journal["ended"] = "abort";
            journal["end_reason"] = err >= 0 ? "ended by request (mode " + mode + ")"
                : err == -520 ? "esent had no backup in progress any more (an earlier call aborted it)"
                : "End returned " + err.ToString(CultureInfo.InvariantCulture) + ": esent ended the backup as an abort";
            journal["ended_at"] = Now();
            journal["state"] = "ended";
            r["ended"] = journal["ended"];
            seq.Finish();
            done = true;
        }
    }

    // Entry points (plain data in and out); each connects to the session host over the pipe or socket.
    public static class Session
    {
        private const int StatusTimeoutMs = 15000;
        private const int WorkTimeoutMs = 24 * 3600 * 1000;

        private static Dictionary<string, object> NewResult()
        {
            Dictionary<string, object> r = new Dictionary<string, object>();
            r["trace"] = new List<object>();
            r["failed_call"] = null;
            r["invalid"] = null;
            r["check"] = null;
            r["journal"] = null;
            r["session"] = null;
            r["warnings"] = new List<object>();
            return r;
        }

        private static string Name(IDictionary args)
        {
            string name = Args.Str(args, "session", null);
            if (!SessionPaths.ValidName(name))
                throw new InvalidOption("session", "session name '" + name + "' must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit");
            return name;
        }

        internal static Dictionary<string, object> Describe(string name, Dictionary<string, object> j, bool running)
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["name"] = name;
            if (j == null) { d["state"] = "not_found"; return d; }
            object ended = j.ContainsKey("ended") ? j["ended"] : null;
            string state;
            if (ended == null) state = running ? "open" : "lost";
            else state = new Dictionary<string, string> { { "normal", "ended" }, { "abort", "aborted" }, { "idle_timeout", "idle_timeout" }, { "host_crash", "host_crash" } }[(string)ended];
            d["state"] = state;
            d["pid"] = j.ContainsKey("pid") ? j["pid"] : null;
            d["started"] = j.ContainsKey("started") ? j["started"] : null;
            d["last_activity"] = j.ContainsKey("last_activity") ? j["last_activity"] : null;
            d["idle_timeout"] = j.ContainsKey("idle_timeout") ? j["idle_timeout"] : null;
            d["type"] = j.ContainsKey("params") ? ((IDictionary)j["params"])["type"] : null;
            d["end_reason"] = j.ContainsKey("end_reason") ? j["end_reason"] : null;
            d["logs_truncated"] = j.ContainsKey("truncated") && true.Equals(j["truncated"]);
            d["files_copied"] = j.ContainsKey("files") ? (long)((IList)j["files"]).Count : 0L;
            return d;
        }

        // Asks a live host; null when no host answers. A journal without an end record whose host is gone is
        // marked host_crash here (the process died: no backup survives it).
        private static Dictionary<string, object> Ask(string name, Dictionary<string, object> j, Dictionary<string, object> request, int timeoutMs)
        {
            if (j == null || j["ended"] != null || !"open".Equals(j["state"])) return null;
            try { return Wire.Call((string)j["endpoint"], request, timeoutMs); }
            catch (Wire.NoHost e)
            {
                Dictionary<string, object> again = JournalFile.Read(name);
                if (again != null && again["ended"] == null && Equals(again["token"], j["token"]))
                {
                    again["ended"] = "host_crash";
                    again["state"] = "ended";
                    again["end_reason"] = "the session host process (pid " + Convert.ToString(j["pid"], CultureInfo.InvariantCulture) + ") is gone without an end record (" + e.Message + "); no backup survives its process";
                    again["ended_at"] = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
                    JournalFile.Write(name, again);
                    foreach (KeyValuePair<string, object> kv in again) j[kv.Key] = kv.Value;
                }
                return null;
            }
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
                Dictionary<string, object> j = JournalFile.Read(name);
                Dictionary<string, object> status = new Dictionary<string, object>();
                status["op"] = "status";
                Dictionary<string, object> live = Ask(name, j, status, StatusTimeoutMs);
                if (live != null)
                {
                    r["session"] = live["session"];
                    r["journal"] = live["journal"];
                    if (Json.Write(j["params"], false) != Json.Write(prm, false))
                        throw new InvalidOption("session", "session '" + name + "' is running with other parameters (" + Json.Write(j["params"], false) + "); end it first or choose another name");
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
                    c["previous"] = Describe(name, j, false);
                    r["check"] = c;
                    r["journal"] = JournalFile.Facts(j);
                    return r;
                }
                return Prepare(name, args, prm, idleSec, r);
            }
            catch (InvalidOption e) { r["invalid"] = e.ToDict(); }
            catch (DllNotFoundException e) { r["failed_call"] = new JetFailure("esent.dll", Jet.errInvalidParameter, e.Message).ToDict(); }
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
            File.WriteAllText(serveFile, Json.Write(serve, false), new UTF8Encoding(false));
            if (!PathRules.IsWindows) SessionNative.chmod(serveFile, 0x180);
            Dictionary<string, object> launch = new Dictionary<string, object>();
            launch["session"] = name; launch["serve_file"] = serveFile; launch["token"] = token;
            r["launch"] = launch;
            return r;
        }

        // Entry point of ese.backup.session_host: mode serve runs the session host (until the backup
        // ends or idles out); mode wait returns the begin facts once the host has reported.
        public static Dictionary<string, object> HostTask(IDictionary args)
        {
            string mode = Args.Str(args, "mode", "");
            if (mode == "serve")
            {
                string serveFile = Args.Str(args, "serve_file", null);
                IDictionary serve = Json.Parse(File.ReadAllText(serveFile, Encoding.UTF8)) as IDictionary;
                try { File.Delete(serveFile); } catch (IOException) { }
                return Serve(serve);
            }
            Dictionary<string, object> r = NewResult();
            r["started"] = false;
            string name, token = Args.Str(args, "token", "");
            try { name = Name(args); }
            catch (InvalidOption e) { r["invalid"] = e.ToDict(); return r; }
            long? timeout = Args.Long(args, "timeout");
            DateTime deadline = DateTime.UtcNow.AddSeconds(timeout.HasValue ? timeout.Value : 60);
            while (DateTime.UtcNow < deadline)
            {
                Dictionary<string, object> j = JournalFile.Read(name);
                if (j == null || !token.Equals(j["token"]) || "starting".Equals(j["state"])) { Thread.Sleep(50); continue; }
                r["trace"] = j["begin_trace"];
                if ("failed".Equals(j["state"]))
                {
                    r["failed_call"] = j.ContainsKey("begin_failed_call") ? j["begin_failed_call"] : null;
                    r["invalid"] = j.ContainsKey("begin_invalid") ? j["begin_invalid"] : null;
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
            try { File.Delete(SessionPaths.ServeFile(name)); } catch (IOException) { }
            r["failed_call"] = new JetFailure("SessionHost", Jet.errInvalidParameter, "the session host did not report within "
                + (timeout.HasValue ? timeout.Value : 60) + " s (see " + SessionPaths.Journal(name) + ")").ToDict();
            return r;
        }


        // The session host process: runs with the serve file that Begin wrote.
        private static Dictionary<string, object> Serve(IDictionary serve)
        {
            Dictionary<string, object> r = new Dictionary<string, object>();
            if (!PathRules.IsWindows)
            {
                int fd = SessionNative.open("/dev/null", 2);
                if (fd >= 0) { SessionNative.dup2(fd, 0); SessionNative.dup2(fd, 1); SessionNative.dup2(fd, 2); if (fd > 2) SessionNative.close(fd); }
            }
            IDictionary args = (IDictionary)serve["args"];
            string name = Name(args);
            Dictionary<string, object> j = new Dictionary<string, object>();
            j["format"] = "ese.backup.session/1";
            j["session"] = name;
            j["token"] = serve["token"];
            Process self = Process.GetCurrentProcess();
            j["pid"] = (long)self.Id;
            j["started"] = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
            j["last_activity"] = j["started"];
            j["idle_timeout"] = serve["idle_timeout"];
            j["params"] = serve["params"];
            j["endpoint"] = SessionPaths.Endpoint(name);
            j["state"] = "starting";
            j["ended"] = null; j["end_reason"] = null; j["end_call"] = null;
            j["stop_seen"] = false; j["truncated"] = false;
            j["incomplete_files"] = new List<object>();
            j["files"] = new List<object>();
            j["calls"] = new List<object>();
            j["log_range"] = null;
            JournalFile.Write(name, j);
            int idleMs = (int)Math.Min(int.MaxValue, Convert.ToInt64(serve["idle_timeout"], CultureInfo.InvariantCulture) * 1000);
            r["rc"] = (long)new SessionHost(name, j, idleMs).Serve(Options.Parse(args));
            return r;
        }

        private static Dictionary<string, object> Forward(string op, IDictionary args, bool checkMode)
        {
            Dictionary<string, object> r = NewResult();
            try
            {
                string name = Name(args);
                Dictionary<string, object> j = JournalFile.Read(name);
                Dictionary<string, object> req = new Dictionary<string, object>();
                Dictionary<string, object> a = new Dictionary<string, object>();
                foreach (DictionaryEntry e in args) a[Convert.ToString(e.Key, CultureInfo.InvariantCulture)] = e.Value;
                req["op"] = op; req["args"] = a; req["check_mode"] = checkMode;
                Dictionary<string, object> answer = Ask(name, j, req, WorkTimeoutMs);
                if (answer != null) return answer;
                r["journal"] = JournalFile.Facts(j);
                r["session"] = Describe(name, j, false);
                if (op == "end")
                {
                    // No host: no process holds this backup, so esent can have none in progress (JET_errNoBackup).
                    r["mode"] = Args.Str(args, "mode", "normal");
                    if (checkMode) { Dictionary<string, object> c = new Dictionary<string, object>(); c["would_end"] = false; r["check"] = c; return r; }
                    r["failed_call"] = new JetFailure("JetEndExternalBackupInstance2", -520, "not called: no session host serves session '" + name + "'"
                        + (j == null ? " and it has no journal" : " (" + Convert.ToString(Describe(name, j, false)["state"], CultureInfo.InvariantCulture) + ")")).ToDict();
                    return r;
                }
                string why = j == null ? "no session named '" + name + "' exists on this host (no journal)"
                    : "session '" + name + "' is not running (" + Convert.ToString(Describe(name, j, false)["state"], CultureInfo.InvariantCulture)
                      + (j["end_reason"] != null ? ": " + j["end_reason"] : "") + "); begin a new session";
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
            if (want is bool && (bool)want) r["sessions"] = List(args)["sessions"];
            return r;
        }

        // Every session with a journal on this host, with its state (a gone host is recorded as host_crash).
        public static Dictionary<string, object> List(IDictionary args)
        {
            Dictionary<string, object> r = NewResult();
            List<object> sessions = new List<object>();
            r["sessions"] = sessions;
            string dir = SessionPaths.Dir();
            if (!Directory.Exists(dir)) return r;
            string[] files = Directory.GetFiles(dir, "*.json");
            Array.Sort(files, StringComparer.Ordinal);
            foreach (string f in files)
            {
                string n = System.IO.Path.GetFileNameWithoutExtension(f);
                if (n.EndsWith(".serve", StringComparison.Ordinal) || !SessionPaths.ValidName(n)) continue;
                Dictionary<string, object> j = JournalFile.Read(n);
                if (j == null) continue;
                Dictionary<string, object> status = new Dictionary<string, object>();
                status["op"] = "status";
                Dictionary<string, object> live = Ask(n, j, status, StatusTimeoutMs);
                sessions.Add(live != null ? live["session"] : Describe(n, j, false));
            }
            return r;
        }
    }
}
