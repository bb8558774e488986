// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
// ese.backup engine: external (streaming) backup of ESE databases through esent.dll: options, validation,
// the backup sequence, the set writer and the entry points (Engine). C# 5, references System and System.Core
// only. Below it: _EseNative.cs (JetApi), _EseHost.cs (plumbing), _EseFormat.cs (file facts).
// Contracts: docs/architecture.md.
//TypeAccelerator -Name EseEngine -TypeName Engine

using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Runtime.InteropServices;
using System.Security.AccessControl;
using System.Security.Cryptography;
using System.Security.Principal;
using System.Text;
using System.Threading;
using ansible_collections.ese.backup.plugins.module_utils._EseNative;
using ansible_collections.ese.backup.plugins.module_utils._EseHost;
using ansible_collections.ese.backup.plugins.module_utils._EseFormat;
using ansible_collections.ese.backup.plugins.module_utils._EseServices;

namespace ansible_collections.ese.backup.plugins.module_utils.EseEngine
{
    public sealed class Options
    {
        public List<string> Databases = new List<string>();
        public string LogPath, SystemPath, BaseName, Type, Dest, SetName, InstanceName;
        // source: "instance" (the engine's own ESE instance over the files), "adcs" (certadm.dll), "adds"
        // (ntdsbcli.dll); Server: the service's host (service sources; default the local host name).
        public string Source = SourceInstance, Server;
        public const string SourceInstance = "instance", SourceAdcs = "adcs", SourceAdds = "adds";
        // The options of the own-instance source that were given (a service source refuses them).
        public readonly List<string> InstanceOptionsGiven = new List<string>();
        public static readonly string[] InstanceOnly = { "databases", "log_path", "system_path", "base_name", "page_size", "circular_logging", "legacy_file_names", "instance_name" };
        public bool IsService { get { return Source != SourceInstance; } }
        public long? PageSize;
        public bool CircularLogging;
        public long LegacyFileNames, BufferSize;

        public bool Incremental { get { return Type == "incremental" || Type == "differential"; } }
        public bool Truncate { get { return Type == "full" || Type == "incremental"; } }

        // include_files: files of the host copied into the set under files/<role>/<name>, hashed and listed in the
        // manifest (run and a session's copy). The roles are a fixed set (docs: run.yml, copy.yml).
        public sealed class IncludedFile { public string Path, Role, Name; }
        public List<IncludedFile> IncludeFiles = new List<IncludedFile>();
        public static readonly string[] IncludeRoles = { "ca_dynamic", "ca_registry", "ca_policy", "ca_key" };

        public static List<IncludedFile> ParseIncludeFiles(IDictionary args)
        {
            List<IncludedFile> l = new List<IncludedFile>();
            object v = Args.Get(args, "include_files");
            if (v == null) return l;
            IList list = v as IList;
            if (list == null) throw new InvalidOption("include_files", "include_files must be a list of {path, role}");
            for (int i = 0; i < list.Count; i++)
            {
                IDictionary d = list[i] as IDictionary;
                string at = "include_files[" + i.ToString(CultureInfo.InvariantCulture) + "]";
                if (d == null) throw new InvalidOption("include_files", at + " must be a dictionary with path and role");
                IncludedFile f = new IncludedFile();
                f.Path = Args.Str(d, "path", null);
                f.Role = Args.Str(d, "role", null);
                if (string.IsNullOrEmpty(f.Path)) throw new InvalidOption("include_files", at + ": path is required (the file on the host to copy into the set)");
                if (f.Role == null || Array.IndexOf(IncludeRoles, f.Role) < 0)
                    throw new InvalidOption("include_files", at + ": role '" + f.Role + "' is not one of " + string.Join(", ", IncludeRoles));
                f.Name = f.Path.Replace('\\', '/').Substring(f.Path.Replace('\\', '/').LastIndexOf('/') + 1);
                l.Add(f);
            }
            return l;
        }

        public static Options Parse(IDictionary args)
        {
            Options o = new Options();
            o.Source = Args.Str(args, "source", SourceInstance).Trim().ToLowerInvariant();
            o.Server = Args.Str(args, "server", null);
            foreach (string k in InstanceOnly)
            {
                object v = Args.Get(args, k);
                IList l = v as IList;
                if (v != null && !(l != null && l.Count == 0)) o.InstanceOptionsGiven.Add(k);
            }
            o.Databases = Args.List(args, "databases");
            o.LogPath = Args.Str(args, "log_path", null);
            o.SystemPath = Args.Str(args, "system_path", null);
            o.BaseName = Args.Str(args, "base_name", "edb");
            o.PageSize = Args.Long(args, "page_size");
            o.Type = Args.Str(args, "type", "full").Trim().ToLowerInvariant(); // any case, as Ansible.Basic accepts it
            o.Dest = Args.Str(args, "dest", null);
            o.CircularLogging = Args.Bool(args, "circular_logging", false);
            long? lf = Args.Long(args, "legacy_file_names");
            o.LegacyFileNames = lf.HasValue ? lf.Value : DefaultLegacyFileNames;
            long? bs = Args.Long(args, "buffer_size");
            o.BufferSize = bs.HasValue ? bs.Value : DefaultBufferSize;
            o.InstanceName = Args.Str(args, "instance_name", "ese.backup");
            if (o.SystemPath == null) o.SystemPath = o.LogPath;
            o.SetName = SetNameOf(args, o.Type);
            o.IncludeFiles = ParseIncludeFiles(args);
            return o;
        }

        // set_name as given (an empty one too: the name rule refuses it), else the default: type, UTC time, host
        // and a random part, so that runs on one host or many writing to one dest never pick the same name, and
        // one type's sets sort by time.
        public static string SetNameOf(IDictionary args, string type)
        {
            object given = Args.Get(args, "set_name");
            if (given != null) return Convert.ToString(given, CultureInfo.InvariantCulture);
            byte[] r = new byte[2];
            using (RandomNumberGenerator rng = RandomNumberGenerator.Create()) rng.GetBytes(r);
            return type + "-" + DateTime.UtcNow.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture) + "-" + HostName.ForName() + "-" + DbFacts.HexBytes(r);
        }

        public const long DefaultBufferSize = 4194304;

        // One read from the engine: whole pages, at least 3 of them, at most 256 MiB.
        public static void RequireBufferSize(long bufferSize, uint pageSize)
        {
            if (bufferSize % pageSize != 0 || bufferSize < 3 * (long)pageSize || bufferSize > 256L * 1024 * 1024)
                throw new InvalidOption("buffer_size", "buffer_size " + bufferSize.ToString(CultureInfo.InvariantCulture) + " must be a multiple of the page size "
                    + pageSize.ToString(CultureInfo.InvariantCulture) + ", at least 3 pages (" + (3L * pageSize).ToString(CultureInfo.InvariantCulture)
                    + ") and at most 256 MiB; the default is " + DefaultBufferSize.ToString(CultureInfo.InvariantCulture));
        }

        public Options With(string dest, string setName, long bufferSize)
        {
            Options o = (Options)MemberwiseClone();
            o.Dest = dest; o.SetName = setName; o.BufferSize = bufferSize;
            return o;
        }

        public string LogExt { get { return LogExtOf(LegacyFileNames); } }
        public string ChkExt { get { return ChkExtOf(LegacyFileNames); } }
        public string LogName(uint gen) { return LogNameOf(BaseName, gen, LegacyFileNames); }

        // The one definition of ESE's file names under JET_paramLegacyFileNames (backup and restore use it):
        // bit 0 (JET_bitESE98FileNames) keeps .log/.chk, else .jtx/.jcp; bit 1 (JET_bitEightDotThreeSoftCompat)
        // names generations up to 0xFFFFF with 5 hex digits, else 8.
        public const long DefaultLegacyFileNames = 3;
        public static string LogExtOf(long legacyFileNames) { return (legacyFileNames & 1) != 0 ? ".log" : ".jtx"; }
        public static string ChkExtOf(long legacyFileNames) { return (legacyFileNames & 1) != 0 ? ".chk" : ".jcp"; }

        // The engine's own log naming rule: base name + upper-case hex generation + extension.
        public static string LogNameOf(string baseName, uint gen, long legacyFileNames)
        {
            string hex = ((legacyFileNames & 2) != 0 && gen <= 0xFFFFF)
                ? gen.ToString("X5", CultureInfo.InvariantCulture) : gen.ToString("X8", CultureInfo.InvariantCulture);
            return baseName + hex + LogExtOf(legacyFileNames);
        }
    }

    // ------------------------------------------------------------------------------------------------
    // Validation (shared by check mode and real runs): nothing is started and nothing is left behind.
    // ------------------------------------------------------------------------------------------------
    internal sealed class Plan
    {
        public Options Opt;
        public List<string> DbPaths = new List<string>();
        public List<string> DbSetNames = new List<string>();
        public List<DbFacts> DbFacts = new List<DbFacts>();
        public uint PageSize;
        public long EstimatedBytes, FreeBytes;
        public string FinalPath, StagingPath;
        public List<object> LogsOnDisk = new List<object>();
        public IDictionary ExistingManifest; // set_name names a complete set of this same backup: nothing to do
        public string StaleStaging; // why the staging folder left at StagingPath is stale (removed when the run starts)

        // The same validated source with another destination (a session's copy): dest, set_name and buffer_size
        // are the copy's own, and the session's plan is left as it is.
        public Plan ForCopy(string dest, string setName, long bufferSize)
        {
            Plan p = new Plan();
            p.Opt = Opt.With(dest, setName, bufferSize);
            p.DbPaths = DbPaths; p.DbSetNames = DbSetNames; p.DbFacts = DbFacts; p.PageSize = PageSize;
            return p;
        }
    }

    // Why a file of the source is in use, and what to do (ESE opens databases and logs exclusively and without
    // backup semantics, so SeBackupPrivilege does not let this engine's own instance read what a running
    // service holds: the own-instance source needs the owning service stopped).
    internal static class InUse
    {
        public static bool Is(int err) { return err == Jet.errFileAccessDenied || err == -1019; }

        public static string Database(string db, string call, int err)
        {
            return "database '" + db + "' is in use by another process, for example its service (" + call + " returned " + err.ToString(CultureInfo.InvariantCulture)
                + "): the engine's own instance needs that service stopped (SeBackupPrivilege does not let it open a database another process holds); "
                + "stop the service, or use an online source (the service's own backup)" + ServiceHint(db) + Otherwise(err);
        }

        // The online source for a file an in-box service holds: the CA database (a .edb in a CertLog folder, where
        // AD CS keeps it) or the AD DS database (ntds.dit, or the logs of a folder named NTDS).
        public static string ServiceOf(string path)
        {
            string p = (path ?? "").Replace('\\', '/').TrimEnd('/');
            string leaf = p.Substring(p.LastIndexOf('/') + 1);
            List<string> parts = new List<string>(p.Split('/'));
            bool certLog = parts.Exists(x => string.Equals(x, "CertLog", StringComparison.OrdinalIgnoreCase));
            bool ntds = parts.Exists(x => string.Equals(x, "NTDS", StringComparison.OrdinalIgnoreCase));
            if (string.Equals(leaf, "ntds.dit", StringComparison.OrdinalIgnoreCase) || (ntds && !leaf.EndsWith(".edb", StringComparison.OrdinalIgnoreCase))) return Options.SourceAdds;
            if (certLog) return Options.SourceAdcs;
            return null;
        }

        private static string ServiceHint(string path)
        {
            string s = ServiceOf(path);
            if (s == Options.SourceAdcs)
                return ". This is a CA database of AD CS, which the CA service (CertSvc) holds while it runs: back it up online with 'source: adcs' (the CA's own backup "
                    + "through certadm.dll; databases, log_path and base_name are then not given), or stop the service (Stop-Service CertSvc) for the own-instance source";
            if (s == Options.SourceAdds)
                return ". This is the AD DS database, which the directory service (NTDS) holds while it runs: back it up online with 'source: adds' (ntdsbcli.dll, where "
                    + "the domain controller still serves it), with VSS (" + NtdsBcliSource.Vss + "), or stop the service (Stop-Service NTDS) for the own-instance source";
            return "";
        }

        // -1019 (JET_errPageNotInitialized) is also what a damaged page gives.
        private static string Otherwise(int err)
        {
            return err == -1019 ? ". If no other process holds it, -1019 (JET_errPageNotInitialized) means a damaged page: check the database with esentutl /k" : "";
        }

        public static string LogSet(string logPath, string call, int err)
        {
            return "the log set in '" + logPath + "' is in use by another process, for example the service that owns the database (" + call + " returned "
                + err.ToString(CultureInfo.InvariantCulture) + "): the engine's own instance needs that service stopped; stop the service, or use an online source (the service's own backup)" + ServiceHint(logPath) + Otherwise(err);
        }
    }

    internal static class Validator
    {
        public const string TestIgnoreFreeSpaceVar = "ESE_BACKUP_TEST_IGNORE_FREE_SPACE";

        private static void Fail(string option, string msg) { throw new InvalidOption(option, msg); }

        public static Plan Validate(Options o, JetApi api)
        {
            if (o.Source == Options.SourceAdcs || o.Source == Options.SourceAdds) return ValidateService(o);
            return ValidateDest(ValidateSource(o, api));
        }

        // The databases and the log set (a session's begin checks these; its copies check the destination).
        public static Plan ValidateSource(Options o, JetApi api)
        {
            Plan p = new Plan();
            p.Opt = o;
            if (o.Source == Options.SourceAdcs || o.Source == Options.SourceAdds) return ValidateServiceSource(o); // a session's begin
            if (o.Source != Options.SourceInstance)
                Fail("source", "source '" + o.Source + "' is not supported; use instance (the engine's own ESE instance over the files), adcs (AD CS through certadm.dll) or adds (AD DS through ntdsbcli.dll)");
            if (o.Server != null)
                Fail("server", "server is used only with source adcs or adds (the service's host); the own-instance source backs up files on this host: remove server");
            if (o.Type != "full" && o.Type != "copy" && o.Type != "incremental" && o.Type != "differential")
                Fail("type", "type '" + o.Type + "' is not supported; use full, copy, incremental or differential");
            if (o.Databases.Count == 0) Fail("databases", "databases is required: give the path of each database file to back up");
            if (o.LogPath == null) Fail("log_path", "log_path is required: give the folder that holds the <base>XXXXX.log files");
            if (!PathRules.IsAbsolute(o.LogPath)) Fail("log_path", "log_path '" + o.LogPath + "' must be an absolute path");
            if (!Directory.Exists(o.LogPath)) Fail("log_path", "log_path '" + o.LogPath + "' does not exist or is not a folder");
            if (!PathRules.IsAbsolute(o.SystemPath)) Fail("system_path", "system_path '" + o.SystemPath + "' must be an absolute path");
            if (!Directory.Exists(o.SystemPath)) Fail("system_path", "system_path '" + o.SystemPath + "' does not exist or is not a folder");
            if (o.BaseName.Length != 3 || o.BaseName.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || o.BaseName.IndexOf('.') >= 0)
                Fail("base_name", "base_name '" + o.BaseName + "' must be exactly 3 characters (for example edb, SRU or j50)");
            if (o.LegacyFileNames < 0 || o.LegacyFileNames > 255) Fail("legacy_file_names", "legacy_file_names must be between 0 and 255 (ESENT default 3)");
            if (o.InstanceName.Length == 0 || o.InstanceName.Length > 64) Fail("instance_name", "instance_name must be 1 to 64 characters");
            if (o.Incremental && o.CircularLogging)
                Fail("circular_logging", "type " + o.Type + " needs the logs since the last backup, which circular logging deletes; use type full or copy, or turn circular logging off in the application");

            // Names of the log set are matched without regard to case, as Windows does; the engine then uses the
            // base name as the checkpoint (else the current log) spells it on disk.
            string chk = PathRules.FindFile(o.SystemPath, o.BaseName + o.ChkExt);
            string cur = PathRules.FindFile(o.LogPath, o.BaseName + o.LogExt);
            if (chk == null && cur == null)
                Fail("base_name", "no " + o.BaseName + o.ChkExt + " in system_path and no " + o.BaseName + o.LogExt + " in log_path: base_name '" + o.BaseName + "' does not match this log set (check base_name, log_path, system_path and legacy_file_names)");
            o.BaseName = Path.GetFileName(chk ?? cur).Substring(0, 3);
            if (chk == null)
                Fail("system_path", "the checkpoint " + o.BaseName + o.ChkExt + " is not in system_path '" + o.SystemPath + "'; set system_path to the folder that holds it (often the log folder)");

            // Databases: exist, are ESE databases, not streamed copies, same page size, header matches the logs.
            HashSet<string> seen = new HashSet<string>(PathRules.IsWindows ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal);
            HashSet<string> setNames = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            foreach (string db in o.Databases)
            {
                if (!PathRules.IsAbsolute(db)) Fail("databases", "database path '" + db + "' must be absolute");
                if (!File.Exists(db)) Fail("databases", "database file '" + db + "' does not exist; check the path");
                string full = PathRules.Normalize(db);
                if (!seen.Add(full)) Fail("databases", "database '" + db + "' is listed twice");
                uint ps;
                int err = api.GetPageSize(full, out ps);
                if (InUse.Is(err)) Fail("databases", InUse.Database(db, "JetGetDatabaseFileInfoW", err));
                if (err < 0) Fail("databases", "'" + db + "' is not a readable ESE database (JetGetDatabaseFileInfoW returned " + err + ")");
                byte[] misc;
                err = api.GetDbInfoMisc(full, out misc);
                if (InUse.Is(err)) Fail("databases", InUse.Database(db, "JetGetDatabaseFileInfoW", err));
                if (err < 0) Fail("databases", "'" + db + "' is not an ESE database (JET_DbInfoMisc returned " + err + ")");
                DbFacts f = DbFacts.FromMisc(misc);
                if (DbFacts.U32(f.FullCur, 16) != 0)
                    Fail("databases", "'" + db + "' is a streamed backup copy (bkinfoFullCur is set); restore it instead of backing it up");
                if (f.State != 2 && f.State != 3)
                    Fail("databases", "'" + db + "' is in state " + f.State + " (" + DbFacts.StateName(f.State) + "); only clean or dirty-shutdown databases can be backed up");
                if (p.DbPaths.Count == 0) p.PageSize = ps;
                else if (ps != p.PageSize) Fail("databases", "'" + db + "' has page size " + ps + " but the other databases use " + p.PageSize + "; one instance runs one page size, back them up in separate tasks");
                CheckLogs(o, db, f);
                p.DbPaths.Add(full);
                p.DbFacts.Add(f);
                string name = Path.GetFileName(full);
                string unique = name; int n = 2;
                while (!setNames.Add(unique))
                {
                    unique = Path.GetFileNameWithoutExtension(name) + "-" + n.ToString(CultureInfo.InvariantCulture) + Path.GetExtension(name);
                    n++;
                }
                p.DbSetNames.Add(unique);
            }
            if (o.PageSize.HasValue && o.PageSize.Value != p.PageSize)
                Fail("page_size", "page_size " + o.PageSize.Value + " contradicts the database header (" + p.PageSize + "); omit page_size or set it to " + p.PageSize);
            Options.RequireBufferSize(o.BufferSize, p.PageSize);

            return p;
        }

        // include_files (run and copy): every file exists now, before anything is written or published.
        public static void CheckIncludeFiles(Options o)
        {
            HashSet<string> seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            for (int i = 0; i < o.IncludeFiles.Count; i++)
            {
                Options.IncludedFile f = o.IncludeFiles[i];
                string at = "include_files[" + i.ToString(CultureInfo.InvariantCulture) + "] (role " + f.Role + ")";
                if (!PathRules.IsAbsolute(f.Path)) Fail("include_files", at + ": path '" + f.Path + "' must be an absolute path");
                if (!File.Exists(f.Path))
                    Fail("include_files", at + ": '" + f.Path + "' does not exist or is not a file; fix the path or remove the entry (nothing was backed up)");
                string problem = Names.Problem(f.Name, 200);
                if (problem != null) Fail("include_files", at + ": the file name of '" + f.Path + "' cannot name a file of the set: " + problem);
                if (!seen.Add(f.Role + "/" + f.Name))
                    Fail("include_files", at + ": another entry of role " + f.Role + " has the file name " + f.Name + " (files/" + f.Role + "/" + f.Name + "); give each file of a role its own name");
            }
        }

        // The destination and set name of a plan whose source is validated.
        public static Plan ValidateDest(Plan p)
        {
            Options o = p.Opt;
            CheckIncludeFiles(o);
            string cur = PathRules.FindFile(o.LogPath, o.BaseName + o.LogExt) ?? Path.Combine(o.LogPath, o.BaseName + o.LogExt);
            // Destination.
            RequireAbsoluteDest(o);
            if (PathRules.SameOrInside(o.Dest, o.LogPath)) Fail("dest", "dest '" + o.Dest + "' is inside log_path; truncation and log rolls happen there, choose a folder outside it");
            if (PathRules.SameOrInside(o.Dest, o.SystemPath)) Fail("dest", "dest '" + o.Dest + "' is inside system_path; choose a folder outside the log set");
            foreach (string db in p.DbPaths)
                if (PathRules.SameOrInside(o.Dest, Path.GetDirectoryName(db)))
                    Fail("dest", "dest '" + o.Dest + "' is next to the database '" + db + "'; choose a folder on another volume or at least outside the database folder");
            string destProbe = ExistingDestFolder(o);
            NameTheSet(p);
            string notSame = "it is a file";
            if (Directory.Exists(p.FinalPath))
            {
                p.ExistingManifest = SameBackupSet(p.FinalPath, o, p, out notSame);
                if (p.ExistingManifest != null) return p;
            }
            if (Directory.Exists(p.FinalPath) || File.Exists(p.FinalPath))
                Fail("set_name", "'" + p.FinalPath + "' already exists and is not a complete, valid " + o.Type + " backup set of these databases ("
                    + notSame + "); choose another set_name or remove it");
            Dictionary<string, object> holder = new Dictionary<string, object>();
            string held = StagingFolder.Judge(p.StagingPath, holder);
            if (held == StagingFolder.KeptLogs)
                Fail("set_name", "the kept-logs folder '" + p.StagingPath + "' from an earlier run holds the only copy of logs truncated on the host: keep it with the last good "
                    + "backup (ese.backup.verify checks it) until a later full backup is verified, and choose another set_name");
            if (held == StagingFolder.InProgress) Fail("set_name", StagingFolder.Busy(o.SetName, p.StagingPath, holder));
            if (held == StagingFolder.Stale) p.StaleStaging = (string)holder["why"];
            ProbeWritable(destProbe);

            // Space: streamed databases (file + one trailer page) + the numbered logs on disk + the current log.
            long need = 64 * 1024;
            if (!o.Incremental)
                foreach (string db in p.DbPaths) need += new FileInfo(db).Length + 2L * p.PageSize;
            long logBytes = 0;
            foreach (string f in LogFiles(o))
            {
                long len = new FileInfo(f).Length;
                logBytes += len;
                p.LogsOnDisk.Add(Path.GetFileName(f));
            }
            FileInfo curInfo = new FileInfo(cur);
            need += logBytes + (curInfo.Exists ? curInfo.Length : 0);
            p.EstimatedBytes = need;
            p.FreeBytes = PathRules.FreeBytes(destProbe);
            if (p.FreeBytes >= 0 && p.FreeBytes < need && Environment.GetEnvironmentVariable(TestIgnoreFreeSpaceVar) != "1")
                Fail("dest", "not enough free space in dest '" + o.Dest + "': about " + need + " bytes needed, " + p.FreeBytes + " available; free space or choose another dest");
            return p;
        }

        // A service source (source adcs or adds): the service names its files and runs its own ESE instance, so only
        // type, server, dest, set_name and buffer_size apply; nothing is contacted here (check mode stays offline).
        public const long ServiceBufferUnit = 32768, ServiceBufferMin = 65536;
        public static Plan ValidateService(Options o) { return ValidateServiceDest(ValidateServiceSource(o)); }

        // The service part (type, the refused own-instance options, server, buffer_size): run and a session's begin.
        public static Plan ValidateServiceSource(Options o)
        {
            Plan p = new Plan();
            p.Opt = o;
            bool adcs = o.Source == Options.SourceAdcs;
            string what = adcs ? "AD CS (certadm.dll)" : "AD DS (ntdsbcli.dll)";
            if (o.Type != "full" && o.Type != "copy" && o.Type != "incremental" && o.Type != "differential")
                Fail("type", "type '" + o.Type + "' is not supported; use " + (adcs ? "full, copy or incremental" : "full"));
            if (adcs && o.Type == "differential")
                Fail("type", "type differential is not supported with source adcs: the CA's backup offers full (with or without truncation: full or copy) and incremental (logs only, truncated); use full, copy or incremental");
            if (!adcs && o.Type != "full")
                Fail("type", "type " + o.Type + " is not supported with source adds: the AD DS streaming backup API takes full backups only; use type full, or back up AD DS with VSS: "
                    + NtdsBcliSource.Vss);
            foreach (string k in o.InstanceOptionsGiven)
                Fail(k, k + " is not used with source " + o.Source + ": the service (" + what + ") names its database and log files and runs its own ESE instance; remove "
                    + k + ", or use source instance to back up files with the engine's own instance");
            if (o.Server == null) o.Server = HostName.Current;
            o.Server = o.Server.Trim();
            if (o.Server.TrimStart('\\').Length == 0 || o.Server.IndexOfAny(new char[] { '/', ' ', '\t' }) >= 0)
                Fail("server", "server '" + o.Server + "' is not a host name; give the " + (adcs ? "CA's" : "domain controller's") + " host name (default: this host, " + HostName.Current + ")");
            RequireServiceBufferSize(o);
            return p;
        }

        // buffer_size of a service source (run, and each copy of a session): whole 32 KiB units.
        public static void RequireServiceBufferSize(Options o)
        {
            bool adcs = o.Source == Options.SourceAdcs;
            if (o.BufferSize % ServiceBufferUnit != 0 || o.BufferSize < ServiceBufferMin || o.BufferSize > 256L * 1024 * 1024)
                Fail("buffer_size", "buffer_size " + o.BufferSize.ToString(CultureInfo.InvariantCulture) + " does not fit a service source's reads: with source " + o.Source
                    + " it must be a multiple of 32768 (the largest ESE page, so every read holds whole pages" + (adcs ? "" : "; ntdsbcli.dll reads " + ReadSizeRule.NtdsBcli.Text)
                    + "), at least 65536 and at most 256 MiB; the default is " + Options.DefaultBufferSize.ToString(CultureInfo.InvariantCulture));
        }

        private static void RequireAbsoluteDest(Options o)
        {
            if (o.Dest == null) Fail("dest", "dest is required: give an absolute folder for the backup sets");
            if (!PathRules.IsAbsolute(o.Dest)) Fail("dest", "dest '" + o.Dest + "' must be an absolute path (a local folder or a UNC path)");
        }

        // dest, or its parent when dest is still to be created: the folder that exists (the free-space probe's).
        private static string ExistingDestFolder(Options o)
        {
            if (Directory.Exists(o.Dest)) return o.Dest;
            if (File.Exists(o.Dest)) Fail("dest", "dest '" + o.Dest + "' is a file; give a folder for the backup sets");
            string parent = Path.GetDirectoryName(PathRules.Normalize(o.Dest));
            if (parent == null || !Directory.Exists(parent))
                Fail("dest", "neither dest '" + o.Dest + "' nor its parent folder exists; create the parent folder (dest itself is created when missing)" + PathRules.DoubleHop(o.Dest));
            return parent;
        }

        // set_name checked, and the set's final and staging paths.
        private static void NameTheSet(Plan p)
        {
            Names.Require("set_name", p.Opt.SetName, 120);
            p.FinalPath = Path.Combine(PathRules.Normalize(p.Opt.Dest), p.Opt.SetName);
            p.StagingPath = StagingFolder.PathFor(p.Opt.Dest, p.Opt.SetName);
            CheckPathLength(p);
        }

        // dest and set_name of a service source (run, and each copy of a session).
        public static Plan ValidateServiceDest(Plan p)
        {
            Options o = p.Opt;
            CheckIncludeFiles(o);
            RequireAbsoluteDest(o);
            string destProbe = ExistingDestFolder(o);
            NameTheSet(p);
            string notSame = "it is a file";
            if (Directory.Exists(p.FinalPath))
            {
                p.ExistingManifest = SameServiceSet(p.FinalPath, o, out notSame);
                if (p.ExistingManifest != null) return p;
            }
            if (Directory.Exists(p.FinalPath) || File.Exists(p.FinalPath))
                Fail("set_name", "'" + p.FinalPath + "' already exists and is not a complete, valid " + o.Type + " backup set of source " + o.Source + " on " + o.Server
                    + " (" + notSame + "); choose another set_name or remove it");
            Dictionary<string, object> holder = new Dictionary<string, object>();
            string held = StagingFolder.Judge(p.StagingPath, holder);
            if (held == StagingFolder.KeptLogs)
                Fail("set_name", "the kept-logs folder '" + p.StagingPath + "' from an earlier run holds the only copy of logs truncated on the host: keep it with the last good "
                    + "backup (ese.backup.verify checks it) until a later full backup is verified, and choose another set_name");
            if (held == StagingFolder.InProgress) Fail("set_name", StagingFolder.Busy(o.SetName, p.StagingPath, holder));
            if (held == StagingFolder.Stale) p.StaleStaging = (string)holder["why"];
            ProbeWritable(destProbe);
            p.EstimatedBytes = 64 * 1024; // the service lists its files only once the backup began
            p.FreeBytes = PathRules.FreeBytes(destProbe);
            return p;
        }

        // An existing set that is this same service backup (type, source kind, server and host), complete and valid.
        private static IDictionary SameServiceSet(string dir, Options o, out string why)
        {
            try
            {
                ChainSet s = ChainSet.Load(dir, "set_name");
                IDictionary m = s.Manifest;
                IDictionary source = m["source"] as IDictionary;
                if (!o.Type.Equals(m["type"])) { why = "it is a " + Convert.ToString(m["type"], CultureInfo.InvariantCulture) + " set"; return null; }
                string kind = source == null ? null : source["kind"] as string, server = source == null ? null : source["server"] as string;
                string host = source == null ? null : source["host"] as string;
                if (kind != o.Source) { why = "it is a backup of source " + (kind ?? Options.SourceInstance); return null; }
                if (!string.Equals(ServiceCall.Label(server), ServiceCall.Label(o.Server), StringComparison.OrdinalIgnoreCase)) { why = "it is a backup of server " + (server ?? "(none)"); return null; }
                if (!string.Equals(host, HostName.Current, StringComparison.OrdinalIgnoreCase)) { why = "it was written by host " + (host ?? "(none)") + ", not " + HostName.Current; return null; }
                Dictionary<string, object> facts = new Dictionary<string, object>();
                string problem;
                why = Ending.Problem(s, facts, out problem);
                if (why != null) { why = "it " + why; return null; }
                s.CheckFiles();
                return m;
            }
            catch (RestoreRefused e) { why = e.Message; return null; }
            catch (IOException e) { why = e.Message; return null; }
            catch (UnauthorizedAccessException e) { why = e.Message; return null; }
        }

        // Windows PowerShell 5.1 runs on .NET Framework, whose file APIs refuse paths of MAX_PATH (260) characters
        // or more unless the process opted into long paths: the set's longest path is checked before anything is
        // written (PowerShell 7 has no such limit).
        public const int MaxPathFramework = 259;
        private static void CheckPathLength(Plan p)
        {
#if !CORECLR
            if (!PathRules.IsWindows) return;
            int longest = p.StagingPath.Length + "\\manifest.json".Length;
            foreach (string n in p.DbSetNames) longest = Math.Max(longest, p.StagingPath.Length + "\\databases\\".Length + n.Length);
            longest = Math.Max(longest, p.StagingPath.Length + "\\logs\\".Length + p.Opt.LogName(0xFFFFFFFF).Length);
            if (longest > MaxPathFramework)
                Fail("dest", "the backup set's paths would be up to " + longest.ToString(CultureInfo.InvariantCulture) + " characters long (for example "
                    + p.StagingPath + "), over the " + MaxPathFramework.ToString(CultureInfo.InvariantCulture)
                    + " that Windows PowerShell 5.1 (.NET Framework) can open; choose a shorter dest or set_name, or run the module under PowerShell 7");
#endif
        }

        // The manifest of an existing set when it is this same backup, complete and valid: same type, host and
        // databases (paths, and the live headers' signatures), every file there with the size and SHA-256 its
        // manifest records, and an ending record that says the backup ended validly. Else null, and why not: a
        // folder planted in a share (a copied manifest.json alone, say) is never taken for a finished backup.
        private static IDictionary SameBackupSet(string dir, Options o, Plan p, out string why)
        {
            ChainSet s;
            try
            {
                s = ChainSet.Load(dir, "set_name");
                IDictionary m = s.Manifest;
                why = SameSource(m, o, p);
                if (why != null) return null;
                Dictionary<string, object> facts = new Dictionary<string, object>();
                string problem;
                why = Ending.Problem(s, facts, out problem);
                if (why != null) { why = "it " + why; return null; }
                s.CheckFiles();
                return m;
            }
            catch (RestoreRefused e) { why = e.Message; return null; }
            catch (IOException e) { why = e.Message; return null; }
            catch (UnauthorizedAccessException e) { why = e.Message; return null; }
        }

        private static string SameSource(IDictionary m, Options o, Plan p)
        {
            if (!o.Type.Equals(m["type"])) return "it is a " + Convert.ToString(m["type"], CultureInfo.InvariantCulture) + " set";
            IDictionary source = m["source"] as IDictionary;
            string host = source == null ? null : source["host"] as string;
            if (!string.Equals(host, HostName.Current, StringComparison.OrdinalIgnoreCase))
                return "it was written by host " + (host ?? "(none)") + ", not " + HostName.Current;
            IList dbs = source["databases"] as IList;
            if (dbs == null || dbs.Count != p.DbPaths.Count) return "it holds other databases";
            IList entries = m["databases"] as IList;
            for (int i = 0; i < dbs.Count; i++)
            {
                if (!string.Equals(Convert.ToString(dbs[i], CultureInfo.InvariantCulture), p.DbPaths[i], PathRules.Cmp)) return "it holds other databases";
                string live = DbFacts.HexBytes(p.DbFacts[i].SignDb), recorded = null;
                if (entries != null)
                    foreach (object e in entries)
                    {
                        IDictionary d = e as IDictionary;
                        if (d != null && string.Equals(Convert.ToString(d["source"], CultureInfo.InvariantCulture), p.DbPaths[i], PathRules.Cmp))
                            recorded = d["sign_db"] as string;
                    }
                if (!string.Equals(recorded, live, StringComparison.OrdinalIgnoreCase))
                    return "its copy of " + p.DbPaths[i] + " is of another database (signDb " + (recorded ?? "missing") + ", the live header's is " + live + ")";
            }
            return null;
        }

        // Numbered logs in log_path: <base> + 5 or 8 hex digits + extension.
        public static List<string> LogFiles(Options o)
        {
            List<string> r = new List<string>();
            foreach (string f in Directory.GetFiles(o.LogPath))
            {
                string n = Path.GetFileName(f);
                if (n.Length <= 3 + o.LogExt.Length || !n.EndsWith(o.LogExt, StringComparison.OrdinalIgnoreCase)) continue;
                string mid = n.Substring(3, n.Length - 3 - o.LogExt.Length);
                uint g;
                if ((mid.Length == 5 || mid.Length == 8) && uint.TryParse(mid, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out g)
                    && string.Equals(n.Substring(0, 3), o.BaseName, StringComparison.OrdinalIgnoreCase))
                    r.Add(f);
            }
            r.Sort(StringComparer.OrdinalIgnoreCase);
            return r;
        }

        private static void ProbeWritable(string dest)
        {
            string probe = Path.Combine(dest, ".ese-backup-probe-" + Guid.NewGuid().ToString("N"));
            try
            {
                using (FileStream fs = new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 4096, FileOptions.DeleteOnClose))
                {
                    fs.WriteByte(0);
                }
            }
            catch (IOException e) { Fail("dest", "dest '" + dest + "' is not writable: " + e.Message + PathRules.DoubleHop(dest)); }
            catch (UnauthorizedAccessException e) { Fail("dest", "dest '" + dest + "' is not writable: " + e.Message + PathRules.DoubleHop(dest)); }
            finally { try { if (File.Exists(probe)) File.Delete(probe); } catch (IOException) { } }
        }

        // The header's signLog must match the checkpoint and the logs; a dirty database needs its logs.
        private static void CheckLogs(Options o, string db, DbFacts f)
        {
            string sign = DbFacts.HexBytes(f.SignLog);
            string chk = PathRules.FindFile(o.SystemPath, o.BaseName + o.ChkExt);
            if (chk != null)
            {
                byte[] h = FileBytes.ReadPrefix(chk, 4096);
                if (h != null && DbFacts.HexBytes(DbFacts.Slice(h, 20, 28)) != sign && !DbFacts.AllZero(DbFacts.Slice(h, 20, 28)))
                    Fail("databases", "database '" + db + "' does not belong to the log set in " + o.SystemPath + " (signLog differs from " + Path.GetFileName(chk) + "); check log_path, system_path and base_name");
            }
            if (f.State != 2) return;
            if (f.GenMin == 0 || f.GenMax < f.GenMin)
                Fail("databases", "database '" + db + "' is dirty but records no required log range");
            Dictionary<uint, string> byGen = new Dictionary<uint, string>();
            foreach (string lf in LogFiles(o))
            {
                string mid = Path.GetFileName(lf).Substring(3, Path.GetFileName(lf).Length - 3 - o.LogExt.Length);
                byGen[uint.Parse(mid, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture)] = lf;
            }
            string cur = PathRules.FindFile(o.LogPath, o.BaseName + o.LogExt);
            if (cur != null)
            {
                byte[] h = FileBytes.ReadPrefix(cur, 72);
                if (h != null) { uint g = (uint)BitConverter.ToInt32(h, 4); if (!byGen.ContainsKey(g)) byGen[g] = cur; }
            }
            for (uint g = f.GenMin; g <= f.GenMax; g++)
            {
                string lf;
                if (!byGen.TryGetValue(g, out lf))
                    Fail("log_path", "database '" + db + "' is dirty and needs log generations " + f.GenMin + "-" + f.GenMax + ", but generation " + g + " (" + o.LogName(g) + ") is not in " + o.LogPath);
                byte[] h = FileBytes.ReadPrefix(lf, 72);
                if (h == null || DbFacts.HexBytes(DbFacts.Slice(h, 44, 28)) != sign)
                    Fail("log_path", "log " + lf + " does not carry the signLog of database '" + db + "'; the log set does not belong to this database");
            }
        }
    }

    // ------------------------------------------------------------------------------------------------
    // The proof that a backup is valid. JetEndExternalBackupInstance2 with JET_bitBackupEndNormal returns
    // JET_errSuccess even when ESE has downgraded the backup (dev/ese/src/ese/backup.cxx,
    // BACKUP_CONTEXT::ErrBKExternalBackupCleanUp: m_fStopBackup -> JET_errBackupAbortByServer, event 226;
    // m_fBackupStatus == backupStateDatabases, End before the log phase -> errBackupAbortByCaller, event 215; in
    // both the header is not updated and only later builds return success). So the engine proves a backup itself:
    // (a) the sequence is complete (every file read to its reported size, hashed, into a published set), and
    // (b) after End the header records it, in the one slot that BACKUP_CONTEXT::ErrBKUpdateHdrBackupInfo fills:
    // rgbkInfo2[fLogOnly][fLogTruncated] = CopyPrev (full, not truncated), FullPrev (full, truncated), DiffPrev
    // (incremental, not truncated), IncPrev (incremental, truncated), where fLogTruncated is
    // JET_bitBackupTruncateDone || FBKLogsTruncated(); a full whose database copy was not done
    // (!FBackupFileCopyDone) records nothing. Its genLow..genHigh is the range JetGetLogInfoInstance2W reported
    // (ulGenHigh = m_lgenCopyMac - 1, the header's genHigh too). The header is read with JetGetDatabaseFileInfoW
    // (JET_DbInfoMisc) on the attached path: for a database attached in this process ESE copies the in-memory
    // header of its FMP (JetGetDatabaseFileInfoEx in dev/ese/src/ese/jetapi.cxx), so it sees what End recorded.
    // ------------------------------------------------------------------------------------------------
    internal static class BackupProof
    {
        public const string HeaderNotRecorded = "the header does not record this backup: ESE treated it as aborted";
        public const string CopyNote = "recorded by ESE as a copy backup; incrementals cannot follow it";

        // The slot ESE fills: "full", "copy", "incremental" or "differential" (the names of the result's recorded_as).
        public static string RecordedAs(bool logsOnly, bool truncated)
        {
            if (logsOnly) return truncated ? "incremental" : "differential";
            return truncated ? "full" : "copy";
        }

        private static byte[] Slot(DbFacts f, string recordedAs)
        {
            if (recordedAs == "full") return f.FullPrev;
            if (recordedAs == "copy") return f.CopyPrev;
            if (recordedAs == "incremental") return f.IncPrev;
            return f.DiffPrev;
        }

        private static string SlotName(string recordedAs)
        {
            if (recordedAs == "full") return "bkinfoFullPrev";
            if (recordedAs == "copy") return "bkinfoCopyPrev";
            if (recordedAs == "incremental") return "bkinfoIncPrev";
            return "bkinfoDiffPrev";
        }

        // Proof (b), read after a normal End and before detach. True when the slot of every database shows
        // genLow..genHigh and differs from what it held before the backup began; otherwise adds what is missing.
        public static bool Header(JetApi api, Plan plan, string recordedAs, long genLow, long genHigh, bool rangeKnown, List<object> missing, List<object> seen)
        {
            bool ok = true;
            for (int i = 0; i < plan.DbPaths.Count; i++)
            {
                string db = plan.DbPaths[i];
                byte[] misc;
                int err = api.GetDbInfoMisc(db, out misc);
                if (err < 0)
                {
                    ok = false;
                    missing.Add("the header of " + db + " could not be read after End (JetGetDatabaseFileInfoW returned " + err.ToString(CultureInfo.InvariantCulture) + ")");
                    continue;
                }
                byte[] slot = Slot(DbFacts.FromMisc(misc), recordedAs);
                byte[] before = i < plan.DbFacts.Count ? Slot(plan.DbFacts[i], recordedAs) : null;
                long lo = DbFacts.U32(slot, 16), hi = DbFacts.U32(slot, 20);
                Dictionary<string, object> s = new Dictionary<string, object>();
                s["database"] = db; s["slot"] = SlotName(recordedAs); s["gen_low"] = lo; s["gen_high"] = hi;
                s["changed"] = before == null || DbFacts.HexBytes(before) != DbFacts.HexBytes(slot);
                seen.Add(s);
                if (rangeKnown && lo == genLow && hi == genHigh && true.Equals(s["changed"])) continue;
                ok = false;
                missing.Add(HeaderNotRecorded + " (" + db + ": " + SlotName(recordedAs) + " holds generations " + lo.ToString(CultureInfo.InvariantCulture) + "-"
                    + hi.ToString(CultureInfo.InvariantCulture) + (rangeKnown ? ", the backup's range is " + genLow.ToString(CultureInfo.InvariantCulture) + "-" + genHigh.ToString(CultureInfo.InvariantCulture)
                    : ", and the backup never computed its log range") + ")");
            }
            return ok;
        }

        public static Dictionary<string, object> Facts(bool sequenceComplete, bool headerRecorded, List<object> missing, List<object> headers)
        {
            Dictionary<string, object> p = new Dictionary<string, object>();
            p["sequence_complete"] = sequenceComplete; p["header_recorded"] = headerRecorded; p["missing"] = missing;
            p["headers"] = headers;
            return p;
        }

        // <set>/ending.json, written atomically (a temporary file in the set folder, then a rename): how the
        // session or run that wrote the set ended. Format "ese.backup/ending/1" (docs/sessions.md).
        public static void WriteEnding(string setDir, Dictionary<string, object> ending)
        {
            string final = Path.Combine(setDir, "ending.json");
            string tmp = Path.Combine(setDir, ".ending.json." + System.Diagnostics.Process.GetCurrentProcess().Id.ToString(CultureInfo.InvariantCulture) + ".tmp");
            byte[] data = new UTF8Encoding(false).GetBytes(Json.Write(ending, true) + "\n");
            using (FileStream fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                fs.Write(data, 0, data.Length);
                fs.Flush(true);
            }
            try
            {
                if (File.Exists(final)) File.Replace(tmp, final, null);
                else File.Move(tmp, final);
            }
            catch (Exception)
            {
                try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
                throw;
            }
        }

        public static Dictionary<string, object> Ending(string session, string ended, bool valid, bool truncated, string recordedAs, Dictionary<string, object> proof, object endCall, string type)
        {
            Dictionary<string, object> e = new Dictionary<string, object>();
            e["format"] = "ese.backup/ending/1";
            e["session"] = session;
            e["ended"] = ended;
            e["backup_valid"] = valid;
            e["logs_truncated"] = truncated;
            e["recorded_as"] = recordedAs;
            Dictionary<string, object> p = new Dictionary<string, object>();
            p["sequence_complete"] = proof != null && true.Equals(proof["sequence_complete"]);
            p["header_recorded"] = proof != null && true.Equals(proof["header_recorded"]);
            p["missing"] = proof != null ? proof["missing"] : (object)new List<object> { "the backup was not ended normally (" + ended + ")" };
            e["proof"] = p;
            e["end_call"] = endCall;
            e["time"] = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
            e["type"] = type;
            e["note"] = valid && type == "full" && recordedAs == "copy" ? CopyNote : null;
            return e;
        }
    }

    // ------------------------------------------------------------------------------------------------
    // The backup sequence, its staging folder and the backup set writer.
    // ------------------------------------------------------------------------------------------------
    // The staging folder <dest>/.<set_name>.partial belongs to one run. The run prepares it under a name of its
    // own, with run.json (host, pid, start) in it, and renames it into place: a rename never replaces an
    // existing folder, so of two runs with one set_name exactly one gets it, and the other fails naming
    // set_name without touching the folder. run.json lets a later run tell a folder whose run is gone
    // (stale: removed, with a warning) from one still being written.
    internal static class StagingFolder
    {
        public const string RunFile = "run.json", RunFormat = "ese.backup/run/1";
        public const string KeptLogs = "kept_logs", InProgress = "in_progress", Stale = "stale";
        public static readonly TimeSpan QuietLimit = TimeSpan.FromHours(24);

        public static string PathFor(string dest, string setName) { return Path.Combine(PathRules.Normalize(dest), "." + setName + ".partial"); }

        // Null when nothing is at path; else KeptLogs, Stale or InProgress, with facts (why, host, pid, started).
        public static string Judge(string path, Dictionary<string, object> facts)
        {
            try { return JudgeFolder(path, facts); }
            catch (IOException) { if (!Directory.Exists(path)) return null; } // published or removed meanwhile
            catch (UnauthorizedAccessException) { }
            facts["why"] = "it cannot be read";
            return InProgress;
        }

        private static string JudgeFolder(string path, Dictionary<string, object> facts)
        {
            if (File.Exists(path)) { facts["why"] = "it is a file"; return InProgress; }
            if (!Directory.Exists(path)) return null;
            if (File.Exists(Path.Combine(path, BackupSequence.KeptLogsFile))) return KeptLogs;
            IDictionary run = ReadRun(path);
            if (run != null)
            {
                facts["host"] = run["host"]; facts["pid"] = run["pid"]; facts["started"] = run["started"];
                if (string.Equals(run["host"] as string, HostName.Current, StringComparison.OrdinalIgnoreCase))
                {
                    string gone = HostProcess.Gone(run);
                    if (gone != null) { facts["why"] = "the run that wrote it is gone (" + gone + ")"; return Stale; }
                    return InProgress;
                }
            }
            DateTime last = LastWrite(path);
            if (DateTime.UtcNow - last > QuietLimit)
            {
                facts["why"] = "nothing in it was written for over " + QuietLimit.TotalHours.ToString(CultureInfo.InvariantCulture) + " hours (last " + last.ToString("u", CultureInfo.InvariantCulture) + ")";
                return Stale;
            }
            return InProgress;
        }

        public static string Busy(string setName, string path, Dictionary<string, object> holder)
        {
            string who = holder.ContainsKey("host") ? " (run.json: host " + Convert.ToString(holder["host"], CultureInfo.InvariantCulture) + ", pid "
                + Convert.ToString(holder["pid"], CultureInfo.InvariantCulture) + ", started " + Convert.ToString(holder["started"], CultureInfo.InvariantCulture) + ")" : "";
            return "another run is writing set_name '" + setName + "': its staging folder " + path + " exists" + who + "; choose another set_name, or leave it "
                + "unset for a unique default. If no such run is in progress, remove that folder (it holds no kept logs)";
        }

        // Takes path for this run, or fails naming set_name when another run holds it.
        public static void Claim(string path, string setName)
        {
            string own = path + "." + Guid.NewGuid().ToString("N").Substring(0, 12) + ".new";
            PrivateDirectory.Create(own);
            try
            {
                Dictionary<string, object> run = new Dictionary<string, object>();
                run["format"] = RunFormat; run["set_name"] = setName; run["host"] = HostName.Current;
                int pid = System.Diagnostics.Process.GetCurrentProcess().Id;
                run["pid"] = (long)pid; run["pid_start"] = HostProcess.StartKey(pid);
                run["started"] = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
                File.WriteAllText(Path.Combine(own, RunFile), Json.Write(run, true) + "\n", new UTF8Encoding(false));
                for (int attempt = 1; ; attempt++)
                {
                    try
                    {
                        if (Directory.Exists(path) || File.Exists(path)) break;
                        Directory.Move(own, path);
                        return;
                    }
                    // Refused because another run took the name; or that run has published (and so released it)
                    // since: then this run takes it, and finds the published set before it truncates or publishes.
                    catch (IOException) { if (Directory.Exists(path) || File.Exists(path) || attempt >= 3) throw; }
                }
            }
            catch (IOException)
            {
                try { Directory.Delete(own, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
                if (!Directory.Exists(path) && !File.Exists(path)) throw;
            }
            try { Directory.Delete(own, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            Dictionary<string, object> holder = new Dictionary<string, object>();
            Judge(path, holder);
            throw new InvalidOption("set_name", Busy(setName, path, holder));
        }

        // Removes a staging folder judged stale, unless another run took the name since: the folder is renamed
        // aside first, and deleted only when its run.json is still the one judged.
        public static string RemoveStale(string path, string why)
        {
            IDictionary before = ReadRun(path);
            string aside = path + "." + Guid.NewGuid().ToString("N").Substring(0, 12) + ".stale";
            try { Directory.Move(path, aside); }
            catch (IOException) { return null; } // gone already, or taken: the claim decides
            IDictionary after = ReadRun(aside);
            bool same = (before == null && after == null) || (before != null && after != null && Json.Write(before, false) == Json.Write(after, false));
            if (!same) { try { Directory.Move(aside, path); } catch (IOException) { } return null; }
            try { Directory.Delete(aside, true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            return "removed the stale staging folder " + path + ": " + why;
        }

        // run.json of a staging folder: untrusted (a share), so bounded and parsed without throwing.
        private static IDictionary ReadRun(string dir) { return ReadRecord(Path.Combine(dir, RunFile), RunFormat); }

        // A small JSON record of ours in a staging folder (at most 64 KiB, a regular file, of the given format);
        // null when it is missing, too large or not one.
        internal static IDictionary ReadRecord(string f, string format)
        {
            try
            {
                if (SetEntry.Kind(f) != SetEntry.Regular || new FileInfo(f).Length > 64 * 1024) return null;
                IDictionary d = Json.ReadFile(f) as IDictionary;
                return d != null && format.Equals(d["format"]) ? d : null;
            }
            catch (FormatException) { return null; }
            catch (IOException) { return null; }
            catch (UnauthorizedAccessException) { return null; }
        }

        private static DateTime LastWrite(string dir)
        {
            DateTime last = Directory.GetLastWriteTimeUtc(dir);
            int seen = 0;
            foreach (string f in Directory.EnumerateFileSystemEntries(dir, "*", SearchOption.AllDirectories))
            {
                DateTime t = File.GetLastWriteTimeUtc(f);
                if (t > last) last = t;
                if (++seen > 10000) break;
            }
            return last;
        }
    }

    // ------------------------------------------------------------------------------------------------
    // Progress of a copy (docs/progress.md): the copy pipeline tells it of each file it starts and of the bytes
    // it writes (on its writer thread); it keeps <staging>/progress.json (format ese.backup/progress/1) up to
    // date, at most about once a second, written atomically (a temporary file, then a rename), so that a later
    // task (ese.backup.info with progress) can report a run or copy in flight. A failure to write it never
    // fails the backup. BackupSetWriter.Publish removes it: a set never carries it.
    // ------------------------------------------------------------------------------------------------
    internal sealed class CopyProgress : ICopyProgress
    {
        public const string FileName = "progress.json", Format = "ese.backup/progress/1";
        public static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

        private readonly string staging, setName;
        private readonly long total;
        private readonly System.Diagnostics.Stopwatch clock = System.Diagnostics.Stopwatch.StartNew();
        private readonly string started = Now();
        private long done, files;
        private string file;
        private TimeSpan lastWrite = TimeSpan.MinValue;

        public CopyProgress(string staging, string setName, long total)
        {
            this.staging = staging; this.setName = setName; this.total = Math.Max(0, total);
            Write();
        }

        // What a copy will write: every database streamed (its file, the header copy and the trailer page) and the
        // logs now on disk with the current log (the log range is known only once the databases are read).
        public static long Estimate(Plan p, bool databases, bool logs)
        {
            long bytes = 0;
            if (databases && !p.Opt.Incremental)
                foreach (string db in p.DbPaths)
                {
                    try { bytes += new FileInfo(db).Length + 2L * p.PageSize; }
                    catch (IOException) { }
                    catch (UnauthorizedAccessException) { }
                }
            if (logs)
            {
                try
                {
                    foreach (string f in Validator.LogFiles(p.Opt)) bytes += new FileInfo(f).Length;
                    string cur = PathRules.FindFile(p.Opt.LogPath, p.Opt.BaseName + p.Opt.LogExt);
                    if (cur != null) bytes += new FileInfo(cur).Length;
                }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
            }
            return bytes;
        }

        public void FileStarted(string path)
        {
            file = RelativeName(path);
            files++;
            Write();
        }

        public void Written(long bytes)
        {
            done += bytes;
            if (clock.Elapsed - lastWrite >= Interval) Write();
        }

        private string RelativeName(string path)
        {
            string root = PathRules.WithSeparator(staging);
            string rel = path.StartsWith(root, StringComparison.Ordinal) ? path.Substring(root.Length) : Path.GetFileName(path);
            return rel.Replace('\\', '/');
        }

        private static string Now() { return DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture); }

        // The progress facts (docs/progress.md): the total is the estimate, raised to what was written when a copy
        // writes more (the log roll at the first log-info call adds a log).
        public Dictionary<string, object> Facts()
        {
            double seconds = clock.Elapsed.TotalSeconds;
            long all = Math.Max(total, done);
            double rate = seconds > 0 ? done / seconds : 0;
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["format"] = Format;
            d["set_name"] = setName;
            d["pid"] = (long)System.Diagnostics.Process.GetCurrentProcess().Id;
            d["started"] = started;
            d["updated"] = Now();
            d["file"] = file;
            d["files_started"] = files;
            d["bytes_done"] = done;
            d["bytes_total"] = all;
            d["percent"] = all > 0 ? Math.Round(100.0 * done / all, 1) : 0.0;
            d["rate_bytes_per_s"] = (long)rate;
            d["elapsed_s"] = (long)seconds;
            d["eta_s"] = rate > 0 ? (object)(long)Math.Ceiling((all - done) / rate) : null;
            return d;
        }

        private readonly object gate = new object();

        private void Write()
        {
            lock (gate) WriteFile();
        }

        private void WriteFile()
        {
            lastWrite = clock.Elapsed;
            string final = Path.Combine(staging, FileName), tmp = Path.Combine(staging, "." + FileName + ".tmp");
            try
            {
                File.WriteAllText(tmp, Json.Write(Facts(), true) + "\n", new UTF8Encoding(false));
                if (File.Exists(final)) File.Replace(tmp, final, null);
                else File.Move(tmp, final);
            }
            catch (IOException) { Discard(tmp); }
            catch (UnauthorizedAccessException) { Discard(tmp); }
        }

        private static void Discard(string tmp)
        {
            try { if (File.Exists(tmp)) File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }

        // Before a set is published or kept: its folder holds no progress file.
        public static void Remove(string staging)
        {
            foreach (string n in new string[] { FileName, "." + FileName + ".tmp" })
            {
                string p = Path.Combine(staging, n);
                try { if (File.Exists(p)) File.Delete(p); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            }
        }

        // The progress file of a staging folder (a share: untrusted, so bounded and parsed without throwing); null
        // when there is none or it is not one.
        public static IDictionary Read(string dir) { return StagingFolder.ReadRecord(Path.Combine(dir, FileName), Format); }
    }

    internal sealed class BackupSetWriter
    {
        public readonly string Staging, Final;
        public readonly List<object> Files = new List<object>();
        public readonly string SetName, StaleWhy; // StaleWhy: the staging folder left there is stale (see Create)
        public BackupSetWriter(Plan p) { Staging = p.StagingPath; Final = p.FinalPath; SetName = p.Opt.SetName; StaleWhy = p.StaleStaging; }

        private bool owned; // this run created Staging: only then may it remove it

        // Claims Staging for this run (StagingFolder.Claim), then creates the set's folders in it.
        // Returns a warning when a stale folder was removed first.
        public string Create(bool withDatabases)
        {
            string removed = StaleWhy != null ? StagingFolder.RemoveStale(Staging, StaleWhy) : null;
            StagingFolder.Claim(Staging, SetName);
            owned = true;
            if (withDatabases) Directory.CreateDirectory(Path.Combine(Staging, "databases"));
            Directory.CreateDirectory(Path.Combine(Staging, "logs"));
            return removed;
        }

        // Another run published this set while this one ran: fail before logs are truncated.
        public void RequireFinalFree()
        {
            string setName = SetName;
            if (Directory.Exists(Final) || File.Exists(Final))
                throw new InvalidOption("set_name", "another run published set_name '" + setName + "' (" + Final + ") while this one ran, so this run's set is not "
                    + "published; choose another set_name, or leave set_name unset for a unique default");
        }

        public string PathFor(string relative) { return PathRules.SafeJoin(Staging, relative); }

        public void AddFile(string relative, string role, long size, byte[] sha, long generation)
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["name"] = relative; d["role"] = role;
            if (generation >= 0) d["generation"] = generation;
            d["size"] = size; d["sha256"] = DbFacts.HexBytes(sha);
            Files.Add(d);
        }

        public void WriteManifest(Dictionary<string, object> manifest) { BackupManifest.Write(PathFor(BackupManifest.FileName), manifest); }

        // Test hook: the first N moves of this process fail as an antivirus holding a file of the set would.
        public const string TestPublishFailuresVar = "ESE_BACKUP_TEST_PUBLISH_FAILURES";
        public const int PublishAttempts = 8;
        private static int publishFailures;

        // The set appears under its final name in one rename. An antivirus scanning a file just written holds it
        // open: Windows then refuses the move (sharing violation or access denied), so it is retried with backoff.
        public void Publish()
        {
            string run = Path.Combine(Staging, StagingFolder.RunFile);
            if (File.Exists(run)) File.Delete(run); // the claim's record: not part of a set
            CopyProgress.Remove(Staging);
            int delay = 100;
            for (int attempt = 1; ; attempt++)
            {
                try
                {
                    string hook = Environment.GetEnvironmentVariable(TestPublishFailuresVar);
                    int n;
                    if (!string.IsNullOrEmpty(hook) && int.TryParse(hook, NumberStyles.Integer, CultureInfo.InvariantCulture, out n)
                        && Interlocked.Increment(ref publishFailures) <= n)
                        throw new IOException("The process cannot access the file because it is being used by another process (" + TestPublishFailuresVar + ")");
                    Directory.Move(Staging, Final);
                    return;
                }
                catch (IOException e) { if (attempt >= PublishAttempts || Directory.Exists(Final)) throw Retried(e, attempt); }
                catch (UnauthorizedAccessException e) { if (attempt >= PublishAttempts || Directory.Exists(Final)) throw Retried(e, attempt); }
                Thread.Sleep(delay);
                delay = Math.Min(delay * 2, 2000);
            }
        }

        private IOException Retried(Exception e, int attempts)
        {
            return new IOException("cannot rename " + Staging + " to " + Final + " (" + attempts.ToString(CultureInfo.InvariantCulture)
                + " attempts; a program such as an antivirus may hold a file of the set open): " + e.Message, e);
        }

        public void Remove()
        {
            if (!owned) return; // never another run's folder
            try { if (Directory.Exists(Staging)) Directory.Delete(Staging, true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }

    // What a backup sequence established (BackupSequence.Run, or the steps a session host calls for one request):
    // the entry point turns them into its result with WriteTo. Each fact is written only once established, so a
    // result keeps what its entry point set before (a session request's backup_started and logs_truncated, say).
    internal sealed class BackupFacts
    {
        public bool BackupStarted, LogsTruncated;
        public string Ended;                        // null, "normal" or "abort"
        public Dictionary<string, object> FailedCall, Invalid;
        public readonly List<object> Warnings = new List<object>();
        public string RecordedAs;
        public Dictionary<string, object> Proof;
        public bool? BackupValid;                    // the proof's verdict once End(Normal) returned
        public string BackupSet, KeptStaging;        // the published set; the staging folder kept for its logs
        public Dictionary<string, object> Manifest, Ending;

        public void WriteTo(Dictionary<string, object> r)
        {
            if (BackupStarted) r["backup_started"] = true;
            if (Ended != null) r["ended"] = Ended;
            if (LogsTruncated) r["logs_truncated"] = true;
            if (Invalid != null) r["invalid"] = Invalid;
            if (FailedCall != null) r["failed_call"] = FailedCall;
            if (RecordedAs != null) r["recorded_as"] = RecordedAs;
            if (Proof != null) r["proof"] = Proof;
            if (BackupValid.HasValue) r["backup_valid"] = BackupValid.Value;
            if (KeptStaging != null) r["kept_staging"] = KeptStaging;
            if (BackupSet != null) r["backup_set"] = BackupSet;
            if (Manifest != null) r["manifest"] = Manifest;
            if (Ending != null) r["ending"] = Ending;
            if (Warnings.Count > 0) ((List<object>)r["warnings"]).AddRange(Warnings);
        }
    }

    internal sealed class BackupSequence
    {
        private readonly Plan plan;
        private readonly Options o;
        private JetApi api;
        private BackupFacts facts;
        private IntPtr inst = IntPtr.Zero, sesid = IntPtr.Zero;
        private bool instCreated, terminated, sessionOpen, backupOpen;
        private readonly List<string> attached = new List<string>();
        private BackupSetWriter writer;
        private readonly List<object> dbEntries = new List<object>();
        private uint genLow, genHigh;

        public BackupSequence(Plan plan, JetApi api, BackupFacts facts)
        {
            this.plan = plan; this.o = plan.Opt; this.api = api; this.facts = facts;
        }

        // Reusable steps (Run below, and the session host in _EseSession.cs, which keeps one sequence across
        // requests: each request brings its own trace and facts).
        internal void Rebind(JetApi api, BackupFacts facts) { this.api = api; this.facts = facts; }
        internal BackupFacts Facts { get { return facts; } }
        internal IntPtr Instance { get { return inst; } }
        internal bool BackupOpen { get { return backupOpen; } }
        internal uint GenLow { get { return genLow; } }
        internal uint GenHigh { get { return genHigh; } }
        internal BackupSetWriter Writer { get { return writer; } }
        // The file opened by StreamFile and not yet read completely and closed (null when none).
        internal string OpenSource;
        internal void StartSet(BackupSetWriter w, bool withDatabases)
        {
            writer = w; dbEntries.Clear(); serviceDbs.Clear(); StreamedFrom.Clear();
            try
            {
                string removed = writer.Create(withDatabases);
                if (removed != null) facts.Warnings.Add(removed);
            }
            catch (IOException e) { throw new JetFailure("CreateDirectory", MapIo(e), writer.Staging + ": " + e.Message); }
            catch (UnauthorizedAccessException e) { throw new JetFailure("CreateDirectory", Jet.errFileAccessDenied, writer.Staging + ": " + e.Message + PathRules.DoubleHop(writer.Staging)); }
        }

        // End failed: JetTerm2(JET_bitTermStopBackup) ends the backup and the instance at once (the attached
        // databases and the session go with it).
        internal void StopBackupAndTerminate()
        {
            if (instCreated && !terminated) api.Term(inst, Jet.TermStopBackup);
            terminated = true; backupOpen = false; sessionOpen = false;
            attached.Clear();
        }

        // The whole backup of Engine.Run; what it established, for the entry point's result.
        public BackupFacts Run()
        {
            if (o.Source == Options.SourceAdcs || o.Source == Options.SourceAdds) return RunService();
            try
            {
                SetupInstance();
                StartSet(new BackupSetWriter(plan), !o.Incremental);
                DoBackup();
                Teardown();
                if (facts.BackupValid == true) { writer.RequireFinalFree(); Publish(); }
                else DiscardStaging(); // no set: the header does not record the backup (kept when the logs were truncated)
            }
            catch (JetFailure f)
            {
                facts.FailedCall = f.ToDict();
                AbortAndCleanup();
            }
            catch (InvalidOption e)
            {
                AbortAndCleanup();
                facts.Invalid = e.ToDict();
            }
            catch (Exception e)
            {
                facts.FailedCall = (NativeLoad.IsLoadFailure(e) ? NativeLoad.Failure(e, "esent.dll")
                    : new JetFailure("Engine", Jet.errInvalidParameter, e.GetType().Name + ": " + e.Message)).ToDict();
                AbortAndCleanup();
            }
            return facts;
        }

        // ---- Service sources (source adcs or adds): the service's own backup API drives the same set writer. ----
        private IBackupSource source;
        private string serviceBase;       // the log set's base name, from the service's log names
        private uint servicePageSize;     // from the first streamed database header
        private readonly List<string> serviceDbs = new List<string>();
        private readonly List<object> serviceHeaders = new List<object>();
        private bool truncationAttempted;

        private string ReadCall { get { return source == null ? "JetReadFileInstance" : source.Kind == Options.SourceAdcs ? "CertSrvBackupRead" : "DsBackupRead"; } }
        private string LogBase { get { return source != null ? serviceBase ?? "edb" : o.BaseName; } }

        internal static IBackupSource NewSource(Options o, Trace trace)
        {
            if (o.Source == Options.SourceAdcs) return new CertAdmSource(trace, o.Server, null);
            return new NtdsBcliSource(trace, o.Server);
        }

        // Begin, the databases (full), the logs, the truncation when asked and after every file was copied, End(true);
        // on any failure End(false) and no set. The own instance is not set up: the service owns the ESE instance.
        private BackupFacts RunService()
        {
            source = NewSource(o, api.Trace);
            try
            {
                StartSet(new BackupSetWriter(plan), !o.Incremental);
                DoServiceBackup();
                if (facts.BackupValid == true) { writer.RequireFinalFree(); Publish(); }
                else DiscardStaging();
            }
            catch (JetFailure f)
            {
                facts.FailedCall = f.ToDict();
                AbortService();
            }
            catch (InvalidOption e)
            {
                AbortService();
                facts.Invalid = e.ToDict();
            }
            catch (Exception e)
            {
                string lib = o.Source == Options.SourceAdcs ? "certadm.dll" : "ntdsbcli.dll";
                facts.FailedCall = (NativeLoad.IsLoadFailure(e) ? NativeLoad.Failure(e, lib)
                    : new JetFailure("Engine", Jet.errInvalidParameter, e.GetType().Name + ": " + e.Message)).ToDict();
                AbortService();
            }
            return facts;
        }

        private void AbortService()
        {
            AbortSource(); // End(false): never throws; closes an open file first
            DiscardStaging();
        }

        // The steps of a service backup (DoServiceBackup below; the session host calls them one request at a time:
        // BeginService at begin, PrepareServiceCopy and the Stream steps at each copy, TruncateService, EndService).
        internal IBackupSource Source { get { return source; } }
        // The trace the service's calls go to: the run's own; in a session, the session's (each request takes the
        // entries it added).
        internal Trace ServiceTrace { get { return source != null ? source.Trace : api.Trace; } }
        private Trace T { get { return source != null ? source.Trace : api.Trace; } }
        private List<string> serviceDbNames, serviceLogNames;
        internal List<string> ServiceDbNames { get { return serviceDbNames; } }
        // rel (databases/<leaf>, logs/<leaf>) -> the name the service gave the file (the current set's files)
        internal readonly Dictionary<string, string> StreamedFrom = new Dictionary<string, string>(StringComparer.Ordinal);

        internal void BeginService(Trace trace)
        {
            if (source == null) source = NewSource(o, trace);
            source.Begin(o.Incremental);
            facts.BackupStarted = true;
        }

        // Before a copy's first OpenFile: dest outside the service's files, and the read hint from the buffer size.
        internal void PrepareServiceCopy(string dest, long bufferSize)
        {
            // Where the service keeps its files: dest must not be among them (truncation and log rolls happen there).
            foreach (BackupLocation l in source.DatabaseLocations)
            {
                string dir = l.Type == "database" ? Path.GetDirectoryName(l.Path.TrimEnd('/', '\\')) : l.Path.TrimEnd('/', '\\');
                if (!string.IsNullOrEmpty(dir) && PathRules.IsAbsolute(dir) && PathRules.SameOrInside(dest, dir))
                    throw new InvalidOption("dest", "dest '" + dest + "' is inside " + dir + ", where the service keeps its " + l.Type.Replace('_', ' ') + "; choose a folder outside the service's files");
            }
            // The read hint before the first OpenFile: the buffer size, which validation made whole 32 KiB units.
            uint cb = (uint)bufferSize;
            if (source.ReadRule.Fit(cb) != cb)
                throw new InvalidOption("buffer_size", "buffer_size " + cb.ToString(CultureInfo.InvariantCulture) + " does not fit the " + source.Kind + " read rule (" + source.ReadRule.Text + ")");
            source.ReadHint = cb;
        }

        // Full and copy: every database the service names (listed once per backup), into databases/.
        internal void StreamServiceDatabases(CopyPipeline pipe)
        {
            if (serviceDbNames == null)
            {
                string namesCall = source.Kind == Options.SourceAdcs ? "CertSrvBackupGetDatabaseNamesW" : "DsBackupGetDatabaseNamesW";
                List<string> dbs = source.DatabaseNames();
                if (dbs.Count == 0) throw new JetFailure(namesCall, Jet.errDatabaseNotFound, "the service listed no database to back up");
                serviceDbNames = dbs;
            }
            HashSet<string> setNames = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            foreach (string db in serviceDbNames)
            {
                string rel = "databases/" + UniqueLeaf(db, setNames);
                byte[] hh, tt;
                long size = StreamFile(pipe, db, rel, "database", -1, false, out hh, out tt);
                serviceDbs.Add(db);
                dbEntries.Add(ServiceDbEntry(db, rel, size));
            }
        }

        // The service's log list (the first call computes the range; later copies of a session reuse it), checked
        // as one log set of consecutive generations.
        internal List<string> ServiceLogs()
        {
            if (serviceLogNames == null)
            {
                List<string> logs = source.LogNames();
                ServiceLogRange(logs);
                serviceLogNames = logs;
            }
            return serviceLogNames;
        }

        // The leaves of the range's logs (not patch files), as the set names them.
        internal List<string> ServiceLogLeaves()
        {
            List<string> l = new List<string>();
            uint g;
            foreach (string n in ServiceLogs()) if (ParseLogName(Leaf(n), out g)) l.Add(Leaf(n));
            return l;
        }

        internal void StreamServiceLogs(CopyPipeline pipe)
        {
            HashSet<string> logNames = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            foreach (string l in ServiceLogs())
            {
                uint g;
                bool isLog = ParseLogName(Leaf(l), out g);
                byte[] hh, tt;
                StreamFile(pipe, l, "logs/" + UniqueLeaf(l, logNames), isLog ? "log" : "patch", isLog ? (long)g : -1, false, out hh, out tt);
            }
        }

        // include_files: each file copied into files/<role>/<name> of the staging set (private like the rest of it),
        // hashed while copied, and listed in the manifest's files with its role; never its content in any message.
        internal void CopyIncludedFiles(List<Options.IncludedFile> files)
        {
            foreach (Options.IncludedFile f in files)
            {
                string rel = "files/" + f.Role + "/" + f.Name, dest;
                try { dest = writer.PathFor(rel); }
                catch (InvalidOperationException e) { throw new InvalidOption("include_files", "'" + f.Path + "' cannot be placed in the set: " + e.Message); }
                long total = 0;
                byte[] hash;
                FileStream src;
                try { src = new FileStream(f.Path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete); }
                catch (Exception e)
                {
                    if (!(e is IOException || e is UnauthorizedAccessException)) throw;
                    throw new InvalidOption("include_files", "include_files (role " + f.Role + "): cannot read '" + f.Path + "' (" + e.GetType().Name + "); nothing was published");
                }
                using (src)
                using (SHA256 sha = SHA256.Create())
                {
                    try
                    {
                        Directory.CreateDirectory(Path.GetDirectoryName(dest));
                        using (FileStream dst = new FileStream(dest, FileMode.CreateNew, FileAccess.Write, FileShare.None))
                        {
                            byte[] buf = new byte[1 << 20];
                            while (true)
                            {
                                int n;
                                try { n = src.Read(buf, 0, buf.Length); }
                                catch (IOException e) { throw new InvalidOption("include_files", "include_files (role " + f.Role + "): reading '" + f.Path + "' failed (" + e.GetType().Name + "); nothing was published"); }
                                if (n == 0) break;
                                sha.TransformBlock(buf, 0, n, null, 0);
                                dst.Write(buf, 0, n);
                                total += n;
                            }
                            dst.Flush(true);
                            Array.Clear(buf, 0, buf.Length);
                        }
                    }
                    catch (IOException e) { throw new JetFailure("WriteFile", MapIo(e), rel + ": " + e.Message); }
                    catch (UnauthorizedAccessException e) { throw new JetFailure("WriteFile", Jet.errFileAccessDenied, rel + ": " + e.Message); }
                    sha.TransformFinalBlock(new byte[0], 0, 0);
                    hash = sha.Hash;
                }
                writer.AddFile(rel, f.Role, total, hash, -1);
                T.Add("IncludeFile", 0, "role=" + f.Role + " name=" + rel + " bytes=" + total.ToString(CultureInfo.InvariantCulture));
            }
        }

        internal void TruncateService()
        {
            truncationAttempted = true;   // a failed truncation may still have deleted logs: the staging folder stays
            source.Truncate();
            facts.LogsTruncated = true;
        }

        // Proof (b) on the copies before the truncation; its header facts are gathered again by EndService.
        private bool CopiesRecordTheBackup(List<KeyValuePair<string, string>> dbFiles)
        {
            List<object> missing = new List<object>();
            bool ok = o.Incremental ? ServiceLogHeaders(StagedLogs(), missing) : ServiceDbHeaders(dbFiles, StagedLogs(), missing);
            serviceHeaders.Clear();
            if (!ok) api.Trace.Add("TruncateLogs", 0, "not truncated: the copies do not record the backup: " + string.Join("; ", missing.ConvertAll(m => (string)m).ToArray()));
            return ok;
        }

        // End(true), then the proof over the given copies (the run's staging set; a session's published sets).
        // Returns End's trace entry.
        internal object EndService(bool truncated, List<KeyValuePair<string, string>> dbFiles, List<KeyValuePair<string, long>> logFiles)
        {
            source.End(true);
            object endCall = T.Entries[T.Entries.Count - 1];
            facts.Ended = "normal";
            facts.LogsTruncated = truncated;
            // The proof: (a) the sequence, from the trace (every call of the sequence succeeded, in order, and every file
            // was read to its reported size: StreamFile throws otherwise); (b) the live header is locked by the service, so
            // the header facts come from the streamed copy's first page in the set: it must carry the backup mark.
            List<object> missing = new List<object>();
            bool complete = ServiceSequenceComplete(truncated, missing);
            bool recorded = o.Incremental ? ServiceLogHeaders(logFiles, missing) : ServiceDbHeaders(dbFiles, logFiles, missing);
            string recordedAs = BackupProof.RecordedAs(o.Incremental, truncated);
            Dictionary<string, object> proof = BackupProof.Facts(complete, recorded, missing, serviceHeaders);
            proof["header_source"] = o.Incremental ? "the streamed logs' headers (an incremental streams no database; the live header is locked by the service)"
                : "the streamed database copy's header page in the set (the live header is locked by the service)";
            facts.RecordedAs = recordedAs;
            facts.Proof = proof;
            facts.BackupValid = complete && recorded;
            if (complete && recorded) ending = BackupProof.Ending(null, "normal", true, truncated, recordedAs, proof, endCall, o.Type);
            return endCall;
        }

        // Any failure or an abort: End(false) (never throws; it closes an open file) when the source holds a context.
        internal void AbortSource()
        {
            if (source != null && source.Prepared)
            {
                source.End(false);
                facts.Ended = "abort";
            }
        }

        private void DoServiceBackup()
        {
            BeginService(api.Trace);
            PrepareServiceCopy(o.Dest, o.BufferSize);
            using (CopyPipeline pipe = new CopyPipeline((int)o.BufferSize))
            {
                pipe.Progress = new CopyProgress(writer.Staging, writer.SetName, 0);
                if (!o.Incremental) StreamServiceDatabases(pipe);
                ServiceLogs();
                StreamServiceLogs(pipe);
            }
            CopyIncludedFiles(o.IncludeFiles);

            List<KeyValuePair<string, string>> dbFiles = new List<KeyValuePair<string, string>>();
            foreach (object o2 in dbEntries)
            {
                IDictionary d = (IDictionary)o2;
                dbFiles.Add(new KeyValuePair<string, string>((string)d["source"], writer.PathFor((string)d["file"])));
            }
            bool truncated = false;
            // Only after every file was copied completely and the copies carry the backup (proof (b), checked again at
            // End), and only for the types that truncate (full, incremental): copies that are no backup keep the logs.
            if (o.Truncate && CopiesRecordTheBackup(dbFiles))
            {
                writer.RequireFinalFree();
                WriteKeptLogs();
                TruncateService();
                truncated = true;
            }
            EndService(truncated, dbFiles, StagedLogs());
        }

        // The logs of the current set: (path, generation), in the set's order.
        internal List<KeyValuePair<string, long>> StagedLogs()
        {
            List<KeyValuePair<string, long>> l = new List<KeyValuePair<string, long>>();
            foreach (object fo in writer.Files)
            {
                IDictionary f = (IDictionary)fo;
                if ("log".Equals(f["role"])) l.Add(new KeyValuePair<string, long>(writer.PathFor((string)f["name"]), (long)f["generation"]));
            }
            return l;
        }

        private static string Leaf(string name)
        {
            string n = name.Replace('\\', '/');
            return n.Substring(n.LastIndexOf('/') + 1);
        }

        private static string UniqueLeaf(string name, HashSet<string> taken)
        {
            string leaf = Leaf(name), unique = leaf;
            int n = 2;
            while (!taken.Add(unique))
            {
                unique = Path.GetFileNameWithoutExtension(leaf) + "-" + n.ToString(CultureInfo.InvariantCulture) + Path.GetExtension(leaf);
                n++;
            }
            return unique;
        }

        // <base (3)><5 or 8 hex digits>.log or .jtx: the generation.
        private static bool ParseLogName(string leaf, out uint gen)
        {
            gen = 0;
            string ext = Path.GetExtension(leaf).ToLowerInvariant();
            if (ext != ".log" && ext != ".jtx") return false;
            string mid = leaf.Length > 3 + ext.Length ? leaf.Substring(3, leaf.Length - 3 - ext.Length) : "";
            return (mid.Length == 5 || mid.Length == 8) && uint.TryParse(mid, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out gen) && gen > 0;
        }

        // genLow..genHigh and the base name from the service's log names: one base name, consecutive generations.
        private void ServiceLogRange(List<string> logs)
        {
            string call = source.Kind == Options.SourceAdcs ? "CertSrvBackupGetBackupLogsW" : "DsBackupGetBackupLogsW";
            List<uint> gens = new List<uint>();
            foreach (string l in logs)
            {
                string leaf = Leaf(l);
                uint g;
                if (!ParseLogName(leaf, out g))
                {
                    if (leaf.EndsWith(".pat", StringComparison.OrdinalIgnoreCase)) continue; // a patch file: copied, no generation
                    throw new JetFailure(call, Jet.errInvalidParameter, "list entry '" + l + "' is not a log name (<base><5 or 8 hex digits>.log or .jtx)");
                }
                string b = leaf.Substring(0, 3);
                if (serviceBase == null) serviceBase = b;
                else if (!string.Equals(serviceBase, b, StringComparison.OrdinalIgnoreCase))
                    throw new JetFailure(call, Jet.errInvalidParameter, "list entry '" + l + "' has base name " + b + " but an earlier log has " + serviceBase);
                gens.Add(g);
            }
            gens.Sort();
            for (int i = 1; i < gens.Count; i++)
                if (gens[i] != gens[i - 1] + 1)
                    throw new JetFailure(call, Jet.errInvalidParameter, "the log list is not a consecutive range: generation " + gens[i - 1].ToString(CultureInfo.InvariantCulture)
                        + " is followed by " + gens[i].ToString(CultureInfo.InvariantCulture));
            genLow = gens.Count > 0 ? gens[0] : 0;
            genHigh = gens.Count > 0 ? gens[gens.Count - 1] : 0;
        }

        // The set's copy of a streamed database: header facts from its first page, the backup range from its trailer.
        private Dictionary<string, object> ServiceDbEntry(string name, string rel, long size)
        {
            string path = writer.PathFor(rel);
            byte[] first = FileBytes.ReadPrefix(path, (int)Math.Min(size, 32768L)); // a header page is at most 32 KiB
            uint ps = first != null && first.Length >= 240 ? DbFacts.U32(first, 236) : 0;
            if (ps != 4096 && ps != 8192 && ps != 16384 && ps != 32768 && ps != 2048)
                throw new JetFailure(ReadCall, Jet.errInvalidParameter, "the stream of " + name + " does not start with a database header (page size " + ps.ToString(CultureInfo.InvariantCulture) + ")");
            if (size < 3L * ps || size % ps != 0)
                throw new JetFailure(ReadCall, Jet.errInvalidParameter, "the stream of " + name + " (" + size.ToString(CultureInfo.InvariantCulture) + " bytes) is not whole pages of " + ps.ToString(CultureInfo.InvariantCulture) + " with a header and a trailer");
            if (servicePageSize == 0) servicePageSize = ps;
            else if (servicePageSize != ps) throw new JetFailure(ReadCall, Jet.errInvalidParameter, name + " has page size " + ps + " but an earlier database has " + servicePageSize);
            byte[] header = DbFacts.Slice(first, 0, (int)ps);
            byte[] trailer = new byte[ps];
            using (FileStream fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read))
            {
                fs.Seek(size - ps, SeekOrigin.Begin);
                if (!FileBytes.ReadFull(fs, trailer)) throw new JetFailure(ReadCall, Jet.errInvalidParameter, "the set's copy of " + name + " is shorter than its stream");
            }
            DbFacts f = DbFacts.FromHeaderPage(header);
            Dictionary<string, object> d = FactsEntry(rel, name, f);
            d["backup_gen_low"] = (long)DbFacts.U32(trailer, 40 + 16);
            d["backup_gen_high"] = (long)DbFacts.U32(trailer, 40 + 20);
            d["stream_size"] = size;
            d["backup_mark"] = DbFacts.BkInfo(f.FullCur);
            return d;
        }

        // Proof (a) for a service source: the trace holds each call of the sequence, successful and in order, ending
        // with End; every listed file is in the set.
        private bool ServiceSequenceComplete(bool truncated, List<object> missing)
        {
            bool adcs = source.Kind == Options.SourceAdcs;
            List<string> want = new List<string>();
            want.Add(adcs ? "CertSrvBackupPrepareW" : "DsBackupPrepareW");
            if (!o.Incremental) want.Add(adcs ? "CertSrvBackupGetDatabaseNamesW" : "DsBackupGetDatabaseNamesW");
            want.Add(adcs ? "CertSrvBackupGetBackupLogsW" : "DsBackupGetBackupLogsW");
            if (truncated) want.Add(adcs ? "CertSrvBackupTruncateLogs" : "DsBackupTruncateLogs");
            want.Add(adcs ? "CertSrvBackupEnd" : "DsBackupEnd");
            int next = 0;
            bool ok = true;
            foreach (object e in T.Entries)
            {
                IDictionary t = e as IDictionary;
                if (t == null || next >= want.Count || !want[next].Equals(t["call"])) continue;
                long err = Convert.ToInt64(t["err"], CultureInfo.InvariantCulture);
                if (err < 0) { ok = false; missing.Add(want[next] + " returned " + err.ToString(CultureInfo.InvariantCulture)); }
                next++;
            }
            for (int i = next; i < want.Count; i++) { ok = false; missing.Add("the trace has no successful " + want[i]); }
            IDictionary last = T.Entries.Count > 0 ? T.Entries[T.Entries.Count - 1] as IDictionary : null;
            if (last == null || !want[want.Count - 1].Equals(last["call"])) { ok = false; missing.Add("the sequence does not end with " + want[want.Count - 1]); }
            return ok;
        }

        // Proof (b), full and copy: each streamed copy's header page (and its shadow) carries the backup mark that
        // the service's OpenFile put there (bkinfoFullCur: mark, genLow = the checkpoint generation at Begin), and its
        // signLog is the one of the logs in the set.
        private bool ServiceDbHeaders(List<KeyValuePair<string, string>> dbFiles, List<KeyValuePair<string, long>> logFiles, List<object> missing)
        {
            bool ok = true;
            if (dbFiles.Count == 0) { missing.Add("no database was copied"); return false; }
            foreach (KeyValuePair<string, string> d in dbFiles)
            {
                string name = d.Key, path = d.Value;
                string rel = "databases/" + Path.GetFileName(path);
                byte[] two = FileBytes.ReadPrefix(path, 2 * (int)servicePageSize);
                byte[] header = DbFacts.Slice(two, 0, (int)servicePageSize), shadow = DbFacts.Slice(two, (int)servicePageSize, (int)servicePageSize);
                DbFacts f = DbFacts.FromHeaderPage(header);
                uint markGen = DbFacts.U32(f.FullCur, 4), low = DbFacts.U32(f.FullCur, 16);
                bool markSet = !DbFacts.AllZero(DbFacts.Slice(f.FullCur, 0, 16)) && low != 0;
                bool sameShadow = DbFacts.HexBytes(header) == DbFacts.HexBytes(shadow);
                bool inRange = genLow != 0 && low == genLow;
                Dictionary<string, object> s = new Dictionary<string, object>();
                s["database"] = name; s["file"] = rel; s["slot"] = "bkinfoFullCur (streamed header)";
                s["gen_low"] = (long)low; s["mark_generation"] = (long)markGen; s["shadow_matches"] = sameShadow;
                serviceHeaders.Add(s);
                if (!markSet) { ok = false; missing.Add("the streamed header of " + name + " carries no backup mark (bkinfoFullCur is empty): it is not a streamed backup copy"); }
                else if (!inRange) { ok = false; missing.Add("the streamed header of " + name + " marks the backup from generation " + low + ", but the logs of the set start at " + genLow); }
                if (!sameShadow) { ok = false; missing.Add("the streamed header of " + name + " differs from its shadow copy (page 1)"); }
                if (!ServiceLogSigns(logFiles, DbFacts.HexBytes(f.SignLog), name, missing)) ok = false;
            }
            return ok;
        }

        // Proof (b), incremental: each log's header names its generation and one signLog runs through them.
        private bool ServiceLogHeaders(List<KeyValuePair<string, long>> logFiles, List<object> missing)
        {
            if (genLow == 0) { missing.Add("the service listed no log for the incremental backup"); return false; }
            return ServiceLogSigns(logFiles, null, null, missing);
        }

        private bool ServiceLogSigns(List<KeyValuePair<string, long>> logFiles, string sign, string db, List<object> missing)
        {
            bool ok = true;
            foreach (KeyValuePair<string, long> f in logFiles)
            {
                string rel = "logs/" + Path.GetFileName(f.Key);
                byte[] h = FileBytes.ReadPrefix(f.Key, 72);
                long gen = f.Value;
                if (h == null || h.Length < 72) { ok = false; missing.Add("the log " + rel + " has no header"); continue; }
                uint hg = (uint)BitConverter.ToInt32(h, 4);
                string ls = DbFacts.HexBytes(DbFacts.Slice(h, 44, 28));
                if (db == null)
                {
                    Dictionary<string, object> s = new Dictionary<string, object>();
                    s["log"] = rel; s["generation"] = (long)hg; s["sign_log"] = ls;
                    serviceHeaders.Add(s);
                }
                if (hg != gen) { ok = false; missing.Add("the log " + rel + " holds generation " + hg + ", not the " + gen + " its name says"); }
                if (sign == null) sign = ls;
                else if (ls != sign) { ok = false; missing.Add("the log " + rel + " does not carry the signLog of " + (db ?? "the first log") + ": the logs are not of one log set"); }
            }
            return ok;
        }

        private static int MapIo(Exception e)
        {
            int code = Marshal.GetHRForException(e) & 0xFFFF;
            string m = (e.Message ?? "").ToLowerInvariant();
            if (code == 0x70 || code == 0x27 || m.Contains("disk full") || m.Contains("no space") || m.Contains("not enough space"))
                return Jet.errDiskFull;
            if (e is UnauthorizedAccessException) return Jet.errFileAccessDenied;
            return Jet.errDiskIO;
        }

        internal void SetupInstance()
        {
            // Page size: read from the header before init, set globally (NULL instance pointer).
            uint headerPs;
            JetApi.Check(api.GetPageSize(plan.DbPaths[0], out headerPs), "JetGetDatabaseFileInfoW", "JET_DbInfoPageSize");
            long current;
            int gerr = api.GetGlobalParam(Jet.ParamDatabasePageSize, "JET_paramDatabasePageSize", out current);
            int serr = api.SetGlobalParam(Jet.ParamDatabasePageSize, headerPs, "JET_paramDatabasePageSize");
            if (serr < 0)
            {
                if (gerr >= 0 && current != headerPs)
                {
                    facts.Invalid = new InvalidOption("page_size", "this process already runs ESE with page size " + current
                        + " and cannot switch to the database's " + headerPs + "; run the backup in a fresh process").ToDict();
                    throw new JetFailure("JetSetSystemParameterW", serr, "JET_paramDatabasePageSize=" + headerPs + " (process uses " + current + ")");
                }
                if (gerr < 0 || current != headerPs) JetApi.Check(serr, "JetSetSystemParameterW", "JET_paramDatabasePageSize=" + headerPs);
            }

            JetApi.Check(api.CreateInstance(o.InstanceName, out inst), "JetCreateInstance2W", "name=" + o.InstanceName);
            instCreated = true;
            Set(Jet.ParamSystemPath, 0, PathRules.WithSeparator(o.SystemPath), "JET_paramSystemPath");
            Set(Jet.ParamLogFilePath, 0, PathRules.WithSeparator(o.LogPath), "JET_paramLogFilePath");
            Set(Jet.ParamBaseName, 0, o.BaseName, "JET_paramBaseName");
            Set(Jet.ParamLegacyFileNames, o.LegacyFileNames, null, "JET_paramLegacyFileNames");
            Set(Jet.ParamCircularLog, o.CircularLogging ? 1 : 0, null, "JET_paramCircularLog");
            Set(Jet.ParamRecovery, 0, "On", "JET_paramRecovery");
            Set(Jet.ParamMaxTemporaryTables, 0, null, "JET_paramMaxTemporaryTables");
            Set(Jet.ParamNoInformationEvent, 1, null, "JET_paramNoInformationEvent");
            int ierr = api.Init(ref inst, Jet.InitLogStreamMustExist);
            if (InUse.Is(ierr))
                facts.Invalid = new InvalidOption("log_path", InUse.LogSet(o.LogPath, "JetInit3W", ierr)).ToDict();
            JetApi.Check(ierr, "JetInit3W", "grbit=0x40");
            JetApi.Check(api.BeginSession(inst, out sesid), "JetBeginSessionW", "");
            sessionOpen = true;
            foreach (string db in plan.DbPaths)
            {
                int err = api.Attach(sesid, db);
                if (InUse.Is(err))
                    facts.Invalid = new InvalidOption("databases", InUse.Database(db, "JetAttachDatabase2W", err)).ToDict();
                JetApi.Check(err, "JetAttachDatabase2W", "path=" + db);
                attached.Add(db);
            }
        }

        private void Set(uint id, long value, string str, string name)
        {
            JetApi.Check(api.SetParam(ref inst, id, value, str, name), "JetSetSystemParameterW", name);
        }

        private void DoBackup()
        {
            BeginBackup();
            using (CopyPipeline pipe = new CopyPipeline((int)o.BufferSize))
            {
                pipe.Progress = new CopyProgress(writer.Staging, writer.SetName, CopyProgress.Estimate(plan, true, true));
                StreamDatabases(pipe);
                List<string> names = ReadLogInfo();
                StreamLogs(pipe, names, 0);
            }
            CopyIncludedFiles(o.IncludeFiles); // before the logs are truncated: a missing file leaves them as they are

            bool truncated = false;
            if (o.Truncate)
            {
                // After truncation the staging folder may hold the only copy of these logs: mark it first, so that a
                // failure before publishing leaves a folder that verify, info and a re-run know as kept logs.
                writer.RequireFinalFree();
                WriteKeptLogs();
                TruncateLogs();
                truncated = true;
            }
            JetApi.Check(api.EndBackup(inst, Jet.BackupEndNormal), "JetEndExternalBackupInstance2", "grbit=0x1");
            object endCall = api.Trace.Entries[api.Trace.Entries.Count - 1];
            backupOpen = false;
            facts.Ended = "normal";
            facts.LogsTruncated = truncated;
            // The proof (BackupProof): every file above was read to its reported size into the staging set (a short
            // read throws), so the sequence is complete; the header is read now, before detach.
            List<object> missing = new List<object>(), headers = new List<object>();
            string recordedAs = BackupProof.RecordedAs(o.Incremental, truncated);
            bool recorded = BackupProof.Header(api, plan, recordedAs, genLow, genHigh, genLow != 0, missing, headers);
            Dictionary<string, object> proof = BackupProof.Facts(true, recorded, missing, headers);
            facts.RecordedAs = recordedAs;
            facts.Proof = proof;
            facts.BackupValid = recorded;
            if (recorded) ending = BackupProof.Ending(null, "normal", true, truncated, recordedAs, proof, endCall, o.Type);
        }

        public const string KeptLogsFile = "kept-logs.json";

        // <staging>/kept-logs.json (docs/verify.md, "Kept-logs folders"): written atomically just before
        // JetTruncateLogInstance, deleted just before the manifest is written and the set published.
        private void WriteKeptLogs()
        {
            Dictionary<string, object> k = new Dictionary<string, object>();
            k["format"] = "ese.backup/kept-logs/1";
            k["set_name"] = writer.SetName; k["type"] = o.Type;
            k["reason"] = "the logs were truncated on the host before the set " + writer.Final + " was published; this folder holds the only copy of them";
            k["created"] = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
            k["logs_truncated"] = true;
            Dictionary<string, object> logs = new Dictionary<string, object>();
            logs["gen_low"] = (long)genLow; logs["gen_high"] = (long)genHigh; logs["base_name"] = LogBase;
            k["logs"] = logs;
            k["databases"] = dbEntries;
            k["files"] = writer.Files;
            string final = Path.Combine(writer.Staging, KeptLogsFile), tmp = final + ".tmp";
            try
            {
                byte[] data = new UTF8Encoding(false).GetBytes(Json.Write(k, true) + "\n");
                using (FileStream fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
                {
                    fs.Write(data, 0, data.Length);
                    fs.Flush(true);
                }
                File.Move(tmp, final);
                string run = Path.Combine(writer.Staging, StagingFolder.RunFile);
                if (File.Exists(run)) File.Delete(run); // kept-logs.json now says what the folder is
                CopyProgress.Remove(writer.Staging);
            }
            catch (IOException e) { throw new JetFailure("WriteFile", MapIo(e), KeptLogsFile + " (written before the logs are truncated; they were not): " + e.Message); }
            catch (UnauthorizedAccessException e) { throw new JetFailure("WriteFile", Jet.errFileAccessDenied, KeptLogsFile + " (written before the logs are truncated; they were not): " + e.Message); }
        }

        // The run's ending record, written into the staging set just before its manifest (sessions write theirs at end).
        private Dictionary<string, object> ending;

        internal void BeginBackup()
        {
            uint grbit = o.Incremental ? Jet.BackupIncremental : 0;
            JetApi.Check(api.BeginBackup(inst, grbit), "JetBeginExternalBackupInstance", "grbit=" + JetApi.Hex(grbit));
            backupOpen = true;
            facts.BackupStarted = true;
        }

        // Full: streams every configured database (checked against the attach list); incremental: header facts.
        internal void StreamDatabases(CopyPipeline pipe)
        {
            if (!o.Incremental)
            {
                List<string> list = api.GetAttachInfo(inst);
                for (int i = 0; i < plan.DbPaths.Count; i++)
                {
                    string db = plan.DbPaths[i];
                    bool found = false;
                    foreach (string e in list)
                        if (string.Equals(PathRules.Normalize(e), db, PathRules.Cmp)) found = true;
                    if (!found) throw new JetFailure("JetGetAttachInfoInstanceW", Jet.errDatabaseNotFound, "configured database " + db + " is not in the attach list");
                    string rel = "databases/" + plan.DbSetNames[i];
                    byte[] header, trailer;
                    long size = StreamFile(pipe, db, rel, "database", -1, true, out header, out trailer);
                    dbEntries.Add(StreamedDbFacts(db, rel, header, trailer, size));
                }
            }
            else
            {
                for (int i = 0; i < plan.DbPaths.Count; i++)
                {
                    Dictionary<string, object> d = FactsEntry(null, plan.DbPaths[i], plan.DbFacts[i]);
                    dbEntries.Add(d);
                }
            }
        }

        // JetGetLogInfoInstance2W (computes the range and rolls the log on its first call); returns the log
        // file names of genLow..genHigh by the engine's own rule, checked against esent's list.
        internal List<string> ReadLogInfo()
        {
            string baseName;
            List<string> logs = api.GetLogInfo2(inst, out genLow, out genHigh, out baseName);
            List<string> expected = new List<string>();
            if (genHigh >= genLow && genLow != 0)
                for (uint g = genLow; g <= genHigh; g++) expected.Add(o.LogName(g));
            if (!string.Equals(baseName, o.BaseName, StringComparison.OrdinalIgnoreCase))
                throw new JetFailure("JetGetLogInfoInstance2W", Jet.errInvalidParameter, "JET_LOGINFO base name '" + baseName + "' differs from base_name '" + o.BaseName + "'");
            if (logs.Count != expected.Count)
                throw new JetFailure("JetGetLogInfoInstance2W", Jet.errInvalidParameter, "the list has " + logs.Count + " entries but JET_LOGINFO gives generations " + genLow + "-" + genHigh);
            string logDir = PathRules.Normalize(o.LogPath);
            for (int i = 0; i < logs.Count; i++)
            {
                string entry = logs[i];
                string dir = Path.GetDirectoryName(PathRules.Normalize(entry));
                if (!string.Equals(Path.GetFileName(entry), expected[i], StringComparison.OrdinalIgnoreCase) || !string.Equals(dir, logDir, PathRules.Cmp))
                    throw new JetFailure("JetGetLogInfoInstance2W", Jet.errInvalidParameter, "list entry '" + entry + "' does not match the expected " + Path.Combine(logDir, expected[i]));
            }
            return expected;
        }

        // Streams the logs named by ReadLogInfo, from index 'first' on (generation genLow + index).
        internal void StreamLogs(CopyPipeline pipe, List<string> names, int first)
        {
            string logDir = PathRules.Normalize(o.LogPath);
            for (int i = first; i < names.Count; i++)
            {
                byte[] h, t;
                string src = Path.Combine(logDir, names[i]); // the engine's own name, checked against the list
                StreamFile(pipe, src, "logs/" + names[i], "log", genLow + (uint)i, false, out h, out t);
            }
        }

        internal void TruncateLogs()
        {
            JetApi.Check(api.TruncateLog(inst), "JetTruncateLogInstance", "");
            facts.LogsTruncated = true;
        }

        // Streams one file from esent into the set; returns the size. Total must equal OpenFile's size.
        private long StreamFile(CopyPipeline pipe, string openName, string rel, string role, long generation, bool isDb, out byte[] header, out byte[] trailer)
        {
            header = null; trailer = null;
            string dest;
            try { dest = writer.PathFor(rel); }
            catch (InvalidOperationException e) { throw new JetFailure("BackupSetWriter", Jet.errInvalidParameter, e.Message); }
            IntPtr h = IntPtr.Zero; long size;
            if (source != null) size = source.OpenFile(openName);
            else JetApi.Check(api.OpenFile(inst, openName, out h, out size), "JetOpenFileInstanceW", "name=" + openName);
            bool open = true;
            OpenSource = openName;
            int ps = (int)plan.PageSize;
            long total = 0; int calls = 0;
            System.Diagnostics.Stopwatch clock = System.Diagnostics.Stopwatch.StartNew();
            try
            {
                try { pipe.Begin(dest); }
                catch (WriteFailure w) { throw WriteFail(w); }
                while (true)
                {
                    CopyPipeline.Slot slot;
                    try { slot = pipe.Acquire(); }
                    catch (WriteFailure w) { throw WriteFail(w); }
                    uint got;
                    int err = 0;
                    if (source != null)
                    {
                        try { got = source.Read(slot.Native.Pointer, (uint)slot.Native.Size); }
                        catch (Exception) { pipe.Release(slot); throw; }
                    }
                    else err = NativeMethods.JetReadFileInstance(inst, h, slot.Native.Pointer, (uint)slot.Native.Size, out got);
                    calls++;
                    if (err < 0)
                    {
                        pipe.Release(slot);
                        T.Add("JetReadFileInstance", err, "name=" + openName + " call=" + calls + " offset=" + total);
                        throw new JetFailure("JetReadFileInstance", err, "name=" + openName + " offset=" + total);
                    }
                    if (got == 0) { pipe.Release(slot); break; }
                    if (got > slot.Native.Size || total + got > size)
                    {
                        pipe.Release(slot);
                        throw new JetFailure(ReadCall, Jet.errInvalidParameter, "name=" + openName + " delivered more than the reported size " + size);
                    }
                    if (isDb && total == 0 && got >= ps)
                    {
                        header = new byte[ps];
                        Marshal.Copy(slot.Native.Pointer, header, 0, ps);
                    }
                    if (isDb && total + got == size && got >= ps)
                    {
                        trailer = new byte[ps];
                        Marshal.Copy(new IntPtr(slot.Native.Pointer.ToInt64() + got - ps), trailer, 0, ps);
                    }
                    pipe.Submit(slot, (int)got);
                    total += got;
                }
                string hashKind = pipe.HashKind;
                byte[] sha;
                try { sha = pipe.Finish(); }
                catch (WriteFailure w) { throw WriteFail(w); }
                T.Add(source != null ? "CopyPipeline" : "JetReadFileInstance", 0, "name=" + openName + " calls=" + calls + " bytes=" + total
                    + " ms=" + clock.Elapsed.TotalMilliseconds.ToString("F1", CultureInfo.InvariantCulture) + " hash=" + hashKind
                    + (pipe.Stats.Length > 0 ? " " + pipe.Stats : ""));
                if (total != size)
                    throw new JetFailure(ReadCall, Jet.errInvalidParameter, "name=" + openName + " delivered " + total + " bytes but OpenFile reported " + size);
                open = false;
                if (source != null) source.Close();
                else JetApi.Check(api.CloseFile(inst, h), "JetCloseFileInstance", "name=" + openName);
                OpenSource = null;
                writer.AddFile(rel, role, total, sha, generation);
                StreamedFrom[rel] = openName;
                return total;
            }
            finally
            {
                if (open)
                {
                    pipe.Abort();
                    if (source == null) api.CloseFile(inst, h); // a service source's End(false) closes its open file
                }
            }
        }

        private static JetFailure WriteFail(WriteFailure w)
        {
            Exception e = w.InnerException ?? w;
            return new JetFailure("WriteFile", MapIo(e), w.Path + ": " + e.Message);
        }

        private Dictionary<string, object> FactsEntry(string rel, string source, DbFacts f)
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["file"] = rel; d["source"] = source;
            d["page_size"] = (long)f.PageSize; d["db_state"] = (long)f.State;
            d["sign_db"] = DbFacts.HexBytes(f.SignDb); d["sign_log"] = DbFacts.HexBytes(f.SignLog);
            d["gen_min_required"] = (long)f.GenMin; d["gen_max_required"] = (long)f.GenMax;
            // The header's backup history before this backup: restore checks a chain against it.
            d["last_full"] = DbFacts.BkInfo(f.FullPrev); d["last_incremental"] = DbFacts.BkInfo(f.IncPrev);
            return d;
        }

        private Dictionary<string, object> StreamedDbFacts(string source, string rel, byte[] header, byte[] trailer, long size)
        {
            if (header == null || trailer == null)
                throw new JetFailure("JetReadFileInstance", Jet.errInvalidParameter, "stream of " + source + " is too short for a header and a trailer");
            DbFacts f = DbFacts.FromHeaderPage(header);
            Dictionary<string, object> d = FactsEntry(rel, source, f);
            d["backup_gen_low"] = (long)DbFacts.U32(trailer, 40 + 16);
            d["backup_gen_high"] = (long)DbFacts.U32(trailer, 40 + 20);
            d["stream_size"] = size;
            return d;
        }

        internal void Teardown()
        {
            // After a normal End: detach, end session, terminate. Problems here are warnings; the set is complete.
            List<object> warnings = facts.Warnings;
            foreach (string db in new List<string>(attached))
            {
                int err = api.Detach(sesid, db);
                if (err < 0) warnings.Add("JetDetachDatabase2W " + db + " returned " + err);
                attached.Remove(db);
            }
            if (sessionOpen)
            {
                int err = api.EndSession(sesid);
                if (err < 0) warnings.Add("JetEndSession returned " + err);
                sessionOpen = false;
            }
            if (instCreated && !terminated)
            {
                int err = api.Term(inst, Jet.TermComplete);
                if (err < 0)
                {
                    warnings.Add("JetTerm2(Complete) returned " + err);
                    api.Term(inst, Jet.TermStopBackup);
                }
                terminated = true;
            }
        }

        internal void Publish()
        {
            Dictionary<string, object> m = BackupManifest.New(o.Type);
            Dictionary<string, object> src = source != null ? ServiceSourceFacts() : new Dictionary<string, object>();
            if (source == null)
            {
                src["host"] = HostName.Current;
                List<object> dbs = new List<object>();
                foreach (string d in plan.DbPaths) dbs.Add(d);
                src["databases"] = dbs;
                src["log_path"] = PathRules.Normalize(o.LogPath);
                src["system_path"] = PathRules.Normalize(o.SystemPath);
                src["base_name"] = o.BaseName;
                src["page_size"] = (long)plan.PageSize;
            }
            m["source"] = src;
            Dictionary<string, object> logs = new Dictionary<string, object>();
            logs["gen_low"] = (long)genLow; logs["gen_high"] = (long)genHigh; logs["base_name"] = LogBase;
            m["logs"] = logs;
            m["databases"] = dbEntries;
            m["files"] = writer.Files;
            m["logs_truncated"] = facts.LogsTruncated;
            m["trace"] = T.Snapshot();
            try
            {
                if (ending != null) BackupProof.WriteEnding(writer.Staging, ending);
                string kept = Path.Combine(writer.Staging, KeptLogsFile);
                if (File.Exists(kept)) File.Delete(kept); // the set is about to be complete: no longer a kept-logs folder
                writer.WriteManifest(m);
                writer.Publish();
            }
            catch (IOException e)
            {
                DiscardStaging();
                facts.FailedCall = new JetFailure("WriteFile", MapIo(e), "manifest.json: " + e.Message).ToDict();
                return;
            }
            facts.BackupSet = writer.Final;
            facts.Manifest = m;
            if (ending != null) facts.Ending = ending;
        }

        // The manifest's source of a service backup (docs/architecture.md, "Service sources"): the keys of an
        // own-instance set (host, databases, log_path, system_path, base_name, page_size; the paths as the service
        // names them) and the service's facts: kind, server, ca_name, database_locations (the restore map),
        // dynamic_files (adcs: to copy by other means), expiry_token (adds: base64, needed by the restore), read rule.
        private Dictionary<string, object> ServiceSourceFacts()
        {
            Dictionary<string, object> sf = source.Facts();
            Dictionary<string, object> src = new Dictionary<string, object>();
            src["kind"] = source.Kind;
            src["host"] = HostName.Current;
            src["server"] = source.Server;
            string caName = source.CaName;
            if (caName == null && source.Kind == Options.SourceAdcs)
                foreach (BackupLocation l in source.DatabaseLocations)
                    if (l.Type == "database" && caName == null) caName = Path.GetFileNameWithoutExtension(Leaf(l.Path)); // <CA name>.edb
            src["ca_name"] = caName;
            List<object> dbs = new List<object>();
            foreach (string d in serviceDbs) dbs.Add(d);
            src["databases"] = dbs;
            string logDir = null, sysDir = null;
            foreach (BackupLocation l in source.DatabaseLocations)
            {
                if (l.Type == "log_dir" && logDir == null) logDir = l.Path;
                if (l.Type == "checkpoint_dir" && sysDir == null) sysDir = l.Path;
            }
            src["log_path"] = logDir;
            src["system_path"] = sysDir;
            src["base_name"] = LogBase;
            src["page_size"] = servicePageSize == 0 ? null : (object)(long)servicePageSize;
            src["database_locations"] = sf["database_locations"];
            src["dynamic_files"] = sf["dynamic_files"];
            byte[] token = source.ExpiryToken;
            src["expiry_token"] = token == null ? null : Convert.ToBase64String(token);
            src["read_rule"] = sf["read_rule"];
            src["read_hint"] = (long)source.ReadHint;
            if (sf.ContainsKey("read_size")) src["read_size"] = sf["read_size"];
            return src;
        }

        // Any failure: End2(Abort); if End fails, JetTerm2(StopBackup) so no backup is left open.
        internal void AbortAndCleanup()
        {
            if (source != null) { AbortService(); return; } // a service source: End(false); no own instance
            if (backupOpen)
            {
                int err = api.EndBackup(inst, Jet.BackupEndAbort);
                backupOpen = false;
                facts.Ended = "abort";
                if (err < 0)
                {
                    api.Term(inst, Jet.TermStopBackup);
                    terminated = true;
                }
            }
            if (!terminated)
            {
                foreach (string db in attached) api.Detach(sesid, db);
                attached.Clear();
                if (sessionOpen) { api.EndSession(sesid); sessionOpen = false; }
                if (instCreated)
                {
                    int err = api.Term(inst, Jet.TermComplete);
                    if (err < 0) api.Term(inst, Jet.TermStopBackup);
                    terminated = true;
                }
            }
            DiscardStaging();
        }

        // Removes the staging folder, unless it holds the only copy of logs already truncated on the host.
        private void DiscardStaging()
        {
            if (writer == null) return;
            if (facts.LogsTruncated || truncationAttempted)
                facts.KeptStaging = writer.Staging;
            else
                writer.Remove();
        }
    }

    // ------------------------------------------------------------------------------------------------
    // Entry points (plain data in, plain data out).
    // ------------------------------------------------------------------------------------------------
    public static class Engine
    {
        public const string ToolVersion = BackupManifest.ToolVersion;

        private static Dictionary<string, object> NewResult(Trace trace)
        {
            Dictionary<string, object> r = Results.New(trace.Entries, "ended", "backup_set", "manifest", "proof", "recorded_as");
            r["backup_started"] = false;
            r["logs_truncated"] = false;
            return r;
        }

        public static Dictionary<string, object> Run(IDictionary args, bool checkMode)
        {
            Trace trace = new Trace();
            JetApi api = new JetApi(trace);
            Dictionary<string, object> result = NewResult(trace);
            Plan plan;
            try
            {
                Options o = Options.Parse(args);
                plan = Validator.Validate(o, api);
            }
            catch (InvalidOption e)
            {
                result["invalid"] = e.ToDict();
                return result;
            }
            catch (Exception e)
            {
                if (!NativeLoad.IsLoadFailure(e)) throw;
                result["failed_call"] = NativeLoad.Failure(e, "esent.dll").ToDict();
                return result;
            }
            if (plan.ExistingManifest != null)
            {
                result["already_exists"] = true;
                result["backup_set"] = plan.FinalPath;
                result["manifest"] = plan.ExistingManifest;
                return result;
            }
            if (checkMode)
            {
                Dictionary<string, object> c = new Dictionary<string, object>();
                c["would_create"] = plan.FinalPath;
                c["staging"] = plan.StagingPath;
                c["type"] = plan.Opt.Type;
                c["would_truncate_logs"] = plan.Opt.Truncate;
                c["page_size"] = (long)plan.PageSize;
                c["buffer_size"] = plan.Opt.BufferSize;
                c["estimated_bytes"] = plan.EstimatedBytes;
                c["free_bytes"] = plan.FreeBytes;
                List<object> dbs = new List<object>();
                for (int i = 0; i < plan.DbPaths.Count; i++)
                {
                    Dictionary<string, object> d = plan.DbFacts[i].ToDict();
                    d["path"] = plan.DbPaths[i];
                    d["file"] = plan.Opt.Incremental ? null : "databases/" + plan.DbSetNames[i];
                    dbs.Add(d);
                }
                c["databases"] = dbs;
                c["logs_on_disk"] = plan.LogsOnDisk;
                c["include_files"] = (long)plan.Opt.IncludeFiles.Count;
                if (plan.Opt.IsService)
                {
                    // The service is not contacted in check mode: it names its files only once a backup begins.
                    c["source"] = plan.Opt.Source; c["server"] = plan.Opt.Server;
                    c["page_size"] = null; c["estimated_bytes"] = null;
                }
                result["check"] = c;
                return result;
            }
            System.Diagnostics.Stopwatch clock = System.Diagnostics.Stopwatch.StartNew();
            new BackupSequence(plan, api, new BackupFacts()).Run().WriteTo(result);
            result["duration_s"] = Math.Round(clock.Elapsed.TotalSeconds, 3);
            return result;
        }

        public static Dictionary<string, object> Info(IDictionary args)
        {
            Trace trace = new Trace();
            JetApi api = new JetApi(trace);
            Dictionary<string, object> result = new Dictionary<string, object>();
            result["trace"] = trace.Entries;
            result["invalid"] = null;
            result["failed_call"] = null;
            List<object> dbs = new List<object>();
            List<object> sets = new List<object>();
            result["databases"] = dbs;
            result["backup_sets"] = sets;
            try
            {
                foreach (string db in Args.List(args, "databases"))
                {
                    Dictionary<string, object> d = new Dictionary<string, object>();
                    d["path"] = db;
                    if (!PathRules.IsAbsolute(db) || !File.Exists(db))
                    {
                        d["error"] = "file not found or path not absolute";
                        dbs.Add(d);
                        continue;
                    }
                    byte[] misc;
                    int err = api.GetDbInfoMisc(db, out misc);
                    if (err < 0) { d["error"] = "JetGetDatabaseFileInfoW(JET_DbInfoMisc) returned " + err; d["err"] = (long)err; dbs.Add(d); continue; }
                    DbFacts f = DbFacts.FromMisc(misc);
                    foreach (KeyValuePair<string, object> kv in f.ToDict()) d[kv.Key] = kv.Value;
                    d["size"] = new FileInfo(db).Length;
                    dbs.Add(d);
                }
                string bp = Args.Str(args, "backup_path", null);
                if (bp != null)
                {
                    if (!PathRules.IsAbsolute(bp)) throw new InvalidOption("backup_path", "backup_path '" + bp + "' must be an absolute path");
                    if (!Directory.Exists(bp)) throw new InvalidOption("backup_path", "backup_path '" + bp + "' does not exist");
                    string[] dirs = Directory.GetDirectories(bp);
                    Array.Sort(dirs, StringComparer.Ordinal);
                    foreach (string dir in dirs)
                    {
                        string name = Path.GetFileName(dir);
                        Dictionary<string, object> s = new Dictionary<string, object>();
                        s["name"] = name; s["path"] = dir;
                        if (name.StartsWith(".", StringComparison.Ordinal))
                        {
                            if (name.EndsWith(".partial", StringComparison.Ordinal))
                            {
                                // a kept-logs folder holds the only copy of logs truncated on the host: never stale
                                Dictionary<string, object> holder = new Dictionary<string, object>();
                                s["status"] = StagingFolder.Judge(dir, holder);
                                if (holder.ContainsKey("why")) s["why"] = holder["why"];
                                sets.Add(s);
                            }
                            continue;
                        }
                        string mf = Path.Combine(dir, BackupManifest.FileName);
                        string kind = SetEntry.Kind(mf);
                        if (kind == SetEntry.Missing) continue;
                        try
                        {
                            string problem = null, why = null;
                            IDictionary m = kind == SetEntry.Regular ? BackupManifest.Read(mf, out problem, out why) : null;
                            if (kind != SetEntry.Regular) { problem = BackupManifest.NotJson; why = mf + " is a " + (kind == SetEntry.Other ? "FIFO, socket or device" : kind == SetEntry.Directory_ ? "folder" : "symbolic link") + ", not a regular file: it is not read"; }
                            if (m == null)
                            {
                                s["status"] = problem == BackupManifest.OtherFormat ? "unknown_format" : "unreadable_manifest";
                                if (problem != BackupManifest.OtherFormat) s["error"] = why;
                                sets.Add(s);
                                continue;
                            }
                            s["status"] = "complete";
                            s["type"] = m["type"]; s["created"] = m["created"];
                            IDictionary logs = m["logs"] as IDictionary;
                            if (logs != null) { s["gen_low"] = logs["gen_low"]; s["gen_high"] = logs["gen_high"]; }
                            s["logs_truncated"] = m.Contains("logs_truncated") ? m["logs_truncated"] : null;
                            IList files = m["files"] as IList;
                            long bytes = 0; long count = 0;
                            if (files != null)
                                foreach (object fo in files)
                                {
                                    IDictionary fd = fo as IDictionary;
                                    count++;
                                    if (fd != null && fd["size"] is long) bytes += (long)fd["size"];
                                }
                            s["files"] = count; s["bytes"] = bytes;
                            IList mdbs = m["databases"] as IList;
                            s["databases"] = mdbs != null ? (long)mdbs.Count : 0L;
                        }
                        catch (IOException e) { s["status"] = "unreadable_manifest"; s["error"] = e.Message; }
                        catch (UnauthorizedAccessException e) { s["status"] = "unreadable_manifest"; s["error"] = e.Message; }
                        sets.Add(s);
                    }
                }
                string pp = Args.Str(args, "progress", null);
                if (pp != null) result["progress"] = InFlight(pp);
            }
            catch (InvalidOption e) { result["invalid"] = e.ToDict(); }
            catch (Exception e) { if (!NativeLoad.IsLoadFailure(e)) throw; result["failed_call"] = NativeLoad.Failure(e, "esent.dll").ToDict(); }
            return result;
        }

        // The runs and session copies writing into dest (its .<set_name>.partial staging folders): each folder's
        // state (StagingFolder.Judge) and the progress it records (CopyProgress), oldest first.
        private static List<object> InFlight(string dest)
        {
            if (!PathRules.IsAbsolute(dest)) throw new InvalidOption("progress", "progress '" + dest + "' must be an absolute path: give the dest of the runs or copies to report");
            List<object> l = new List<object>();
            if (!Directory.Exists(dest)) return l; // nothing written there yet
            string[] dirs = Directory.GetDirectories(dest, ".*.partial");
            Array.Sort(dirs, StringComparer.Ordinal);
            foreach (string dir in dirs)
            {
                string name = Path.GetFileName(dir);
                Dictionary<string, object> e = new Dictionary<string, object>();
                e["set_name"] = name.Substring(1, name.Length - 1 - ".partial".Length);
                e["staging"] = dir;
                Dictionary<string, object> holder = new Dictionary<string, object>();
                string status = StagingFolder.Judge(dir, holder);
                if (status == null) continue; // published or removed meanwhile
                e["status"] = status;
                if (holder.ContainsKey("why")) e["why"] = holder["why"];
                IDictionary p = CopyProgress.Read(dir);
                foreach (string k in new string[] { "file", "files_started", "bytes_done", "bytes_total", "percent", "rate_bytes_per_s", "eta_s", "elapsed_s", "started", "updated", "pid" })
                    e[k] = p != null && p.Contains(k) ? p[k] : null;
                l.Add(e);
            }
            return l;
        }
    }

}
