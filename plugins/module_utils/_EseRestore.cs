// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
// ese.backup engine: hard recovery from backup sets (JetExternalRestore2W), the registration of an AD CS restore
// (certadm.dll, as certutil -restoreDB: the CA replays at its next start; RestoreCa) and restore drills.
// AD DS sets are refused (they need Directory Services Restore Mode).
// C# 5, references System and System.Core only. Contracts: docs/architecture.md (section "Restore"),
// docs/restore.md; esent semantics: JetExternalRestore2W in Microsoft's ESE reference and the external restore in dev/ese/src/ese/backup.cxx.

using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Runtime.InteropServices;
using System.Security.AccessControl;
using System.Security.Principal;
using System.Text;
using ansible_collections.ese.backup.plugins.module_utils._EseNative;
using ansible_collections.ese.backup.plugins.module_utils._EseHost;
using ansible_collections.ese.backup.plugins.module_utils._EseFormat;
using ansible_collections.ese.backup.plugins.module_utils._EseServices;
using ansible_collections.ese.backup.plugins.module_utils.EseEngine;

namespace ansible_collections.ese.backup.plugins.module_utils._EseRestore
{
    // Where a restore may write when the operator confirmed the manifest's original paths (to_original_paths).
    internal static class OriginalPaths
    {
        public const string WindowsDirVar = "ESE_BACKUP_TEST_WINDOWS_DIR";
        // ESE data folders under the Windows directory that a restore may write to.
        public static readonly string[] KnownEse = { @"System32\CertLog", @"System32\sru", @"System32\dhcp", @"System32\wins", @"System32\LogFiles\Sum",
            @"System32\catroot2", "NTDS", @"SoftwareDistribution\DataStore", @"Security\Database" };
        private static readonly string[] UnixSystem = { "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin", "/sys", "/usr" };

        public static List<string> WindowsDirs()
        {
            List<string> l = new List<string>();
            if (PathRules.IsWindows)
            {
                string w = Environment.GetFolderPath(Environment.SpecialFolder.Windows);
                if (string.IsNullOrEmpty(w)) w = Environment.GetEnvironmentVariable("SystemRoot");
                if (!string.IsNullOrEmpty(w)) l.Add(PathRules.Normalize(w));
            }
            else
            {
                string v = Environment.GetEnvironmentVariable(WindowsDirVar);
                if (!string.IsNullOrEmpty(v)) foreach (string d in v.Split(System.IO.Path.PathSeparator)) if (d.Length > 0) l.Add(PathRules.Normalize(d));
            }
            return l;
        }

        // Null when a restore may write at p (a file or a folder the manifest records); else why not.
        public static string Problem(string p)
        {
            if (string.IsNullOrEmpty(p)) return "is not recorded";
            foreach (char c in p) if (c < 0x20) return "has a control character";
            if (p.StartsWith(@"\\", StringComparison.Ordinal) || p.StartsWith("//", StringComparison.Ordinal)) return "is a UNC or device path, not a local one";
            if (!PathRules.IsAbsolute(p)) return "is not an absolute path";
            foreach (string part in p.Split('\\', '/')) if (part == "..") return "has a '..' part";
            if (PathRules.IsWindows && p.IndexOf(':', 2) >= 0) return "names an alternate data stream";
            string n = PathRules.Normalize(p);
            foreach (string w in WindowsDirs())
            {
                if (!PathRules.SameOrInside(n, w)) continue;
                bool known = false;
                foreach (string k in KnownEse)
                    if (PathRules.SameOrInside(n, System.IO.Path.Combine(w, k.Replace('\\', System.IO.Path.DirectorySeparatorChar)))) known = true;
                if (!known) return "lies under the Windows directory " + w + ", outside its ESE data folders (" + string.Join(", ", KnownEse) + ")";
            }
            if (!PathRules.IsWindows)
                foreach (string u in UnixSystem) if (PathRules.SameOrInside(n, u)) return "lies under the system directory " + u;
            return null;
        }
    }

    // Restored files hold what the sets hold: the same protection (owner-only on Unix, the private ACL on Windows;
    // folders restore creates are PrivateDirectory folders, so files in them inherit it).
    internal static class Protect
    {
        public static void File_(string path)
        {
            if (!File.Exists(path)) return;
            if (!PathRules.IsWindows)
            {
                if (Posix.chmod(path, 0x180) != 0) throw new IOException("cannot restrict " + path + " to its owner (chmod 0600)");
                return;
            }
            FileSecurity sec = new FileSecurity();
            sec.SetAccessRuleProtection(true, false);
            foreach (IdentityReference who in PrivateDirectory.Owners()) sec.AddAccessRule(new FileSystemAccessRule(who, FileSystemRights.FullControl, AccessControlType.Allow));
#if CORECLR
            System.IO.FileSystemAclExtensions.SetAccessControl(new FileInfo(path), sec);
#else
            File.SetAccessControl(path, sec);
#endif
        }
    }

    internal sealed class RestoreOptions
    {
        public string BackupSet, LogPath, SystemPath, Scratch, Service, InstanceName;
        public List<string> Incrementals = new List<string>();
        public List<KeyValuePair<string, string>> Map = new List<KeyValuePair<string, string>>();
        public bool Force, Drill, ToOriginal;

        public static RestoreOptions Parse(IDictionary args)
        {
            RestoreOptions o = new RestoreOptions();
            o.BackupSet = Args.Str(args, "backup_set", null);
            o.Incrementals = Args.List(args, "incrementals");
            o.LogPath = Args.Str(args, "log_path", null);
            o.SystemPath = Args.Str(args, "system_path", null);
            o.Scratch = Args.Str(args, "scratch", null);
            o.Service = Args.Str(args, "service", null);
            o.InstanceName = Args.Str(args, "instance_name", "ese.backup.restore");
            o.Force = Args.Bool(args, "force", false);
            o.Drill = Args.Bool(args, "drill", false);
            o.ToOriginal = Args.Bool(args, "to_original_paths", false);
            if (o.BackupSet == null) throw new InvalidOption("backup_set", "backup_set is required: the path of a full backup set");
            Abs("backup_set", o.BackupSet);
            foreach (string i in o.Incrementals) Abs("incrementals", i);
            if (o.LogPath != null) Abs("log_path", o.LogPath);
            if (o.SystemPath != null) Abs("system_path", o.SystemPath);
            if (o.Scratch != null) Abs("scratch", o.Scratch);
            object m = Args.Get(args, "restore_map");
            if (m != null)
            {
                IList list = m as IList;
                if (list == null) throw new InvalidOption("restore_map", "restore_map must be a list of {source, target}");
                foreach (object e in list)
                {
                    IDictionary d = e as IDictionary;
                    string src = d != null ? Args.Str(d, "source", null) : null, dst = d != null ? Args.Str(d, "target", null) : null;
                    if (src == null || dst == null) throw new InvalidOption("restore_map", "every restore_map entry needs source and target");
                    Abs("restore_map", dst);
                    o.Map.Add(new KeyValuePair<string, string>(src, PathRules.Normalize(dst)));
                }
            }
            if (o.Drill && (o.Map.Count > 0 || o.LogPath != null || o.SystemPath != null || o.ToOriginal))
                throw new InvalidOption("drill", "a drill restores into its scratch directory only; restore_map, log_path, system_path and to_original_paths do not apply");
            return o;
        }

        private static void Abs(string option, string p)
        {
            if (!PathRules.IsAbsolute(p)) throw new InvalidOption(option, option + " '" + p + "' must be an absolute path");
        }
    }

    // One database to restore: where it was, the streamed copy in the set, where it goes.
    internal sealed class Target
    {
        public string Source, SetFile, Path, Sha256;
        public uint PageSize;
        public long SetSize;
        public bool Original;
    }

    // The files a restore writes, so that a failure can say exactly what changed and undo it.
    internal sealed class Changes
    {
        public readonly List<string> Written = new List<string>();
        public readonly List<string> CreatedDirs = new List<string>();
        public readonly List<KeyValuePair<string, string>> MovedAside = new List<KeyValuePair<string, string>>();

        public void EnsureDir(string dir)
        {
            List<string> missing = new List<string>();
            for (string d = PathRules.Normalize(dir); d != null && !Directory.Exists(d); d = System.IO.Path.GetDirectoryName(d)) missing.Add(d);
            missing.Reverse();
            foreach (string d in missing) { PrivateDirectory.Create(d); CreatedDirs.Add(d); }
        }

        // force: an existing file is renamed aside first and put back if the restore fails.
        public void MoveAside(string path)
        {
            if (!File.Exists(path)) return;
            string aside = path + ".before-restore";
            if (File.Exists(aside)) File.Delete(aside);
            File.Move(path, aside);
            MovedAside.Add(new KeyValuePair<string, string>(path, aside));
        }

        public List<object> Undo()
        {
            List<object> notes = new List<object>();
            foreach (string f in Written)
                try { if (File.Exists(f)) { File.Delete(f); notes.Add("removed " + f); } }
                catch (IOException e) { notes.Add("could not remove " + f + ": " + e.Message); }
                catch (UnauthorizedAccessException e) { notes.Add("could not remove " + f + ": " + e.Message); }
            foreach (KeyValuePair<string, string> kv in MovedAside)
                try { if (File.Exists(kv.Key)) File.Delete(kv.Key); File.Move(kv.Value, kv.Key); notes.Add("put back " + kv.Key); }
                catch (IOException e) { notes.Add("could not put back " + kv.Key + " (it is at " + kv.Value + "): " + e.Message); }
            for (int i = CreatedDirs.Count - 1; i >= 0; i--)
                try { if (Directory.Exists(CreatedDirs[i]) && Directory.GetFileSystemEntries(CreatedDirs[i]).Length == 0) { Directory.Delete(CreatedDirs[i]); notes.Add("removed " + CreatedDirs[i]); } }
                catch (IOException) { }
            return notes;
        }

        public void Commit()
        {
            foreach (KeyValuePair<string, string> kv in MovedAside)
                try { File.Delete(kv.Value); } catch (IOException) { }
        }
    }

    public static class Restore
    {
        public const string TestRunningServicesVar = "ESE_BACKUP_TEST_RUNNING_SERVICES";

        private static Dictionary<string, object> NewResult(Trace trace)
        {
            Dictionary<string, object> r = Results.New(trace.Entries, "refused", "chain", "drill_report");
            r["drill"] = false;
            r["restored"] = new List<object>();
            r["written"] = new List<object>();
            r["undone"] = new List<object>();
            return r;
        }

        // Entry point of ese.backup.restore.
        public static Dictionary<string, object> Run(IDictionary args, bool checkMode)
        {
            Trace trace = new Trace();
            JetApi api = new JetApi(trace);
            Dictionary<string, object> result = NewResult(trace);
            RestoreOptions o;
            List<ChainSet> chain;
            try
            {
                o = RestoreOptions.Parse(args);
                result["drill"] = o.Drill;
                chain = LoadChain(o);
                result["chain"] = ChainFacts(chain);
                CheckEndings(chain, o.Force, result);
            }
            catch (InvalidOption e) { result["invalid"] = e.ToDict(); return result; }
            catch (RestoreRefused e) { result["refused"] = e.ToDict(); return result; }
            bool ca = !o.Drill && SourceKind(chain[0]) == "adcs";
            try
            {
                if (o.Drill) RestoreDrill.Run(o, chain, api, result, checkMode);
                else if (ca) RestoreCa.Run(o, chain, api, result, checkMode);
                else RestoreTo(o, chain, api, result, checkMode);
            }
            catch (InvalidOption e) { result["invalid"] = e.ToDict(); }
            catch (RestoreRefused e) { result["refused"] = e.ToDict(); }
            catch (Exception e) { if (!NativeLoad.IsLoadFailure(e)) throw; result["failed_call"] = NativeLoad.Failure(e, ca && (e.Message ?? "").IndexOf("esent", StringComparison.OrdinalIgnoreCase) < 0 ? "certadm.dll" : "esent.dll").ToDict(); }
            return result;
        }

        public const string DsrmRefusal = "restoring AD DS needs Directory Services Restore Mode (DSRM); ese.backup does not restore ntds.dit: "
            + "use wbadmin / ntdsutil in DSRM";

        // The manifest's source.kind ("adcs", "adds"), or "instance" for a set of the own instance.
        internal static string SourceKind(ChainSet s)
        {
            string k = s.Source != null ? s.Source["kind"] as string : null;
            return string.IsNullOrEmpty(k) ? "instance" : k;
        }

        // Attach databases read-only on an existing log stream (soft recovery check) and read their headers.
        // A streamed copy that was never hard-recovered fails here with -544, as in esent.
        public static Dictionary<string, object> Attach(IDictionary args)
        {
            Trace trace = new Trace();
            JetApi api = new JetApi(trace);
            Dictionary<string, object> result = NewResult(trace);
            try
            {
                RestoreOptions o = new RestoreOptions();
                o.InstanceName = Args.Str(args, "instance_name", "ese.backup.restore");
                string logPath = Args.Str(args, "log_path", null);
                string baseName = Args.Str(args, "base_name", "edb");
                if (logPath == null || !PathRules.IsAbsolute(logPath)) throw new InvalidOption("log_path", "log_path must be an absolute path");
                List<Target> targets = new List<Target>();
                foreach (string db in Args.List(args, "databases"))
                {
                    if (!PathRules.IsAbsolute(db)) throw new InvalidOption("databases", "'" + db + "' must be an absolute path");
                    Target t = new Target();
                    t.Source = db; t.Path = db;
                    targets.Add(t);
                }
                ChainSet stream = new ChainSet();
                stream.BaseName = baseName;
                List<ChainSet> chain = new List<ChainSet>();
                chain.Add(stream);
                List<object> checks = new List<object>();
                RestoreDrill.AttachReadOnly(o, chain, targets, logPath, api, result, checks);
                result["checks"] = checks;
            }
            catch (InvalidOption e) { result["invalid"] = e.ToDict(); }
            catch (Exception e) { if (!NativeLoad.IsLoadFailure(e)) throw; result["failed_call"] = NativeLoad.Failure(e, "esent.dll").ToDict(); }
            return result;
        }

        // ---- the chain: every manifest, file, hash, signature and generation, before anything is written ----

        internal static List<ChainSet> LoadChain(RestoreOptions o)
        {
            List<ChainSet> chain = new List<ChainSet>();
            ChainSet full = ChainSet.Load(o.BackupSet, "backup_set");
            if (SourceKind(full) == "adds" && !o.Drill)
                throw new RestoreRefused("needs_dsrm", full.Path, DsrmRefusal + " (backup set " + full.Path + " is an AD DS backup; a drill, drill: true, "
                    + "restores it into a scratch directory to check it)");
            if (full.Type != "full" && full.Type != "copy")
                throw new RestoreRefused("not_a_full_set", full.Path, "backup set " + full.Path + " is a " + full.Type + " set; restore starts from a full (or copy) set and its incrementals follow in 'incrementals'");
            if (o.Incrementals.Count > 0 && full.Type != "full")
                throw new RestoreRefused("chain_broken", full.Path, "backup set " + full.Path + " is a copy backup, which does not start an incremental chain");
            chain.Add(full);
            foreach (string p in o.Incrementals)
            {
                ChainSet s = ChainSet.Load(p, "incrementals");
                if (s.Type != "incremental" && s.Type != "differential")
                    throw new RestoreRefused("chain_broken", s.Path, "backup set " + s.Path + " is a " + s.Type + " set, not an incremental");
                if (SourceKind(s) != SourceKind(full))
                    throw new RestoreRefused("chain_broken", s.Path, "backup set " + s.Path + " was taken with source " + SourceKind(s) + ", the full set "
                        + full.Path + " with source " + SourceKind(full) + ": they are not one chain");
                chain.Add(s);
            }
            foreach (ChainSet s in chain) s.CheckFiles();
            string signLog = null;
            HashSet<string> signDbs = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            foreach (IDictionary d in full.Databases)
                if (d["file"] != null)
                {
                    if (signLog == null) signLog = Convert.ToString(d["sign_log"], CultureInfo.InvariantCulture);
                    signDbs.Add(Convert.ToString(d["sign_db"], CultureInfo.InvariantCulture));
                }
            if (signLog == null) throw new RestoreRefused("not_a_full_set", full.Path, "backup set " + full.Path + " holds no streamed database");
            // Identity before order: an incremental of another database is named as such, whatever its generations.
            for (int i = 1; i < chain.Count; i++)
                foreach (IDictionary d in chain[i].Databases)
                {
                    string src = Convert.ToString(d["source"], CultureInfo.InvariantCulture);
                    string sdb = Convert.ToString(d["sign_db"], CultureInfo.InvariantCulture), slog = d["sign_log"] as string;
                    if (!signDbs.Contains(sdb ?? "") || (slog != null && !string.Equals(slog, signLog, StringComparison.OrdinalIgnoreCase)))
                        throw new RestoreRefused("signature_mismatch", chain[i].Path, "incremental " + chain[i].Path + " belongs to another database (" + src + " has "
                            + (signDbs.Contains(sdb ?? "") ? "another log signature" : "a different database signature") + " than the databases of " + full.Path + ")");
                }
            uint high = full.GenHigh;
            ChainSet lastInc = null;
            Dictionary<string, string> byName = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            for (int i = 0; i < chain.Count; i++)
            {
                ChainSet s = chain[i];
                if (!string.Equals(s.BaseName, full.BaseName, StringComparison.OrdinalIgnoreCase))
                    throw new RestoreRefused("chain_broken", s.Path, "backup set " + s.Path + " has log base name " + s.BaseName + ", the full set " + full.BaseName);
                if (i > 0)
                {
                    string later = ListedLater(chain, i);
                    if (later != null)
                        throw new RestoreRefused("chain_order", s.Path, "the incrementals are in the wrong order: " + s.Path + " (generations " + s.Range + ") was taken after "
                            + later + ", which is listed after it; list the incrementals oldest first");
                    if (s.GenLow > high + 1)
                        throw new RestoreRefused("chain_gap", s.Path, "the chain has a gap: no set holds log generations " + (high + 1).ToString(CultureInfo.InvariantCulture) + "-"
                            + (s.GenLow - 1).ToString(CultureInfo.InvariantCulture) + " between " + chain[i - 1].Path + " and " + s.Path + " (an incremental is missing)");
                    if (s.GenHigh <= high)
                    {
                        string twice = null;
                        for (int j = 0; j < i; j++) if (string.Equals(chain[j].Path, s.Path, PathRules.Cmp)) twice = chain[j].Path;
                        throw new RestoreRefused("chain_order", s.Path, twice != null ? "incremental " + s.Path + " is listed twice in the chain"
                            : "the incrementals are in the wrong order: " + s.Path + " (generations " + s.Range + ") is not newer than the chain before it (up to generation "
                            + high.ToString(CultureInfo.InvariantCulture) + "); list the incrementals oldest first");
                    }
                    foreach (IDictionary d in s.Databases)
                    {
                        IDictionary lf = d["last_full"] as IDictionary, li = d["last_incremental"] as IDictionary;
                        if (lf != null && full.Type == "full" && !ChainSet.SameRange(lf, full.GenLow, full.GenHigh))
                            throw new RestoreRefused("chain_broken", s.Path, "incremental " + s.Path + " follows the full backup of generations " + ChainSet.RangeOf(lf)
                                + ", not " + full.Path + " (generations " + full.Range + ")");
                        if (li != null && s.Type == "incremental")
                        {
                            bool expectNone = lastInc == null;
                            bool ok = expectNone ? ChainSet.RangeOf(li) == "none" : ChainSet.SameRange(li, lastInc.GenLow, lastInc.GenHigh);
                            if (!ok)
                                throw new RestoreRefused("chain_gap", s.Path, "the chain is missing an incremental: " + s.Path + " was taken after the incremental of generations "
                                    + ChainSet.RangeOf(li) + ", but the chain has " + (expectNone ? "no incremental before it" : lastInc.Path + " (generations " + lastInc.Range + ")"));
                        }
                    }
                    if (s.Type == "incremental") lastInc = s;
                    high = s.GenHigh;
                }
                for (uint g = s.GenLow; g <= s.GenHigh; g++)
                {
                    SetFile f = s.LogFile(g);
                    CheckLogHeader(s, f, g, signLog);
                    string leaf = System.IO.Path.GetFileName(f.FullPath), seen;
                    if (byName.TryGetValue(leaf, out seen) && !string.Equals(seen, f.Sha256, StringComparison.OrdinalIgnoreCase))
                        throw new RestoreRefused("chain_broken", f.FullPath, "log " + leaf + " differs between the sets of the chain (" + f.FullPath + ")");
                    byName[leaf] = f.Sha256;
                }
            }
            LegacyFileNames(chain);
            return chain;
        }

        // The path of an incremental listed after chain[i] that chain[i]'s manifest says was taken before it.
        private static string ListedLater(List<ChainSet> chain, int i)
        {
            foreach (IDictionary d in chain[i].Databases)
            {
                IDictionary li = d["last_incremental"] as IDictionary;
                if (li == null || ChainSet.RangeOf(li) == "none") continue;
                for (int j = i + 1; j < chain.Count; j++)
                    if (chain[j].Type == "incremental" && ChainSet.SameRange(li, chain[j].GenLow, chain[j].GenHigh))
                        return chain[j].Path + " (generations " + chain[j].Range + ")";
            }
            return null;
        }

        // Each set's ending record says its backup session ended validly; force accepts a set without one (warning).
        private static void CheckEndings(List<ChainSet> chain, bool force, Dictionary<string, object> result)
        {
            List<object> facts = (List<object>)result["chain"];
            for (int i = 0; i < chain.Count; i++)
            {
                Dictionary<string, object> e = new Dictionary<string, object>();
                string problem;
                string why = Ending.Problem(chain[i], e, out problem);
                if (i < facts.Count) ((Dictionary<string, object>)facts[i])["ending"] = e;
                if (why == null) continue;
                string what = "backup set " + chain[i].Path + " " + why;
                if (!force)
                    throw new RestoreRefused(problem, (string)e["path"], what + "; it may not restore to a consistent state: verify it, take a new backup, "
                        + "or set force: true to restore it anyway");
                ((List<object>)result["warnings"]).Add(what + "; restored anyway (force: true)");
            }
        }

        private static void CheckLogHeader(ChainSet s, SetFile f, uint gen, string signLog)
        {
            byte[] h = FileBytes.ReadPrefix(f.FullPath, 4096);
            if (h == null || DbFacts.U32(h, 0) != PageChecksum.XorOld(h, 4096))
                throw new RestoreRefused("bad_log", f.FullPath, "log " + f.FullPath + " has no valid log file header");
            if (DbFacts.U32(h, 4) != gen)
                throw new RestoreRefused("bad_log", f.FullPath, "log " + f.FullPath + " holds generation " + DbFacts.U32(h, 4).ToString(CultureInfo.InvariantCulture)
                    + ", the manifest of " + s.Path + " says " + gen.ToString(CultureInfo.InvariantCulture));
            string sig = DbFacts.HexBytes(DbFacts.Slice(h, 44, 28));
            if (!string.Equals(sig, signLog, StringComparison.OrdinalIgnoreCase))
                throw new RestoreRefused("signature_mismatch", f.FullPath, "log " + f.FullPath + " (generation " + gen.ToString(CultureInfo.InvariantCulture)
                    + ") has log signature " + sig + ", but the full backup's database belongs to log stream " + signLog + ": it comes from another log stream");
        }

        private static List<object> ChainFacts(List<ChainSet> chain)
        {
            List<object> l = new List<object>();
            foreach (ChainSet s in chain)
            {
                Dictionary<string, object> d = new Dictionary<string, object>();
                d["path"] = s.Path; d["type"] = s.Type; d["gen_low"] = (long)s.GenLow; d["gen_high"] = (long)s.GenHigh;
                l.Add(d);
            }
            return l;
        }

        // ---- targets ----

        internal static List<Target> Targets(RestoreOptions o, ChainSet full, string dbDir)
        {
            List<Target> t = new List<Target>();
            HashSet<string> used = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            foreach (IDictionary d in full.Databases)
            {
                if (d["file"] == null) continue;
                Target x = new Target();
                x.Source = Convert.ToString(d["source"], CultureInfo.InvariantCulture);
                x.SetFile = PathRules.SafeJoin(full.Path, Convert.ToString(d["file"], CultureInfo.InvariantCulture));
                x.PageSize = (uint)(d["page_size"] is long ? (long)d["page_size"] : 4096);
                foreach (SetFile f in full.Files) if (f.FullPath == x.SetFile) { x.Sha256 = f.Sha256; x.SetSize = f.Size; }
                if (x.PageSize != 2048 && x.PageSize != 4096 && x.PageSize != 8192 && x.PageSize != 16384 && x.PageSize != 32768)
                    throw new RestoreRefused("manifest_unreadable", x.SetFile, "manifest of " + full.Path + ": databases[].page_size " + x.PageSize.ToString(CultureInfo.InvariantCulture) + " is not an ESE page size");
                CheckHasPages(full, x);
                if (dbDir != null) x.Path = System.IO.Path.Combine(dbDir, System.IO.Path.GetFileName(x.SetFile));
                else
                {
                    foreach (KeyValuePair<string, string> kv in o.Map)
                        if (string.Equals(kv.Key, x.Source, PathRules.Cmp) || (PathRules.IsAbsolute(kv.Key) && PathRules.IsAbsolute(x.Source)
                            && string.Equals(PathRules.Normalize(kv.Key), PathRules.Normalize(x.Source), PathRules.Cmp))) x.Path = kv.Value;
                    if (x.Path == null)
                    {
                        if (!o.ToOriginal)
                            throw new RestoreRefused("unconfirmed_target", x.Source, "backup set " + full.Path + " holds database '" + x.Source + "', and no target is confirmed for it: "
                                + "name it in restore_map (source: '" + x.Source + "', target: <where to write it>), or set to_original_paths: true to restore it to the path its manifest records");
                        x.Path = Original(x.Source, "databases[].source", full);
                        x.Original = true;
                    }
                }
                if (!used.Add(x.Path)) throw new InvalidOption("restore_map", "two databases would be restored to " + x.Path);
                t.Add(x);
            }
            foreach (KeyValuePair<string, string> kv in o.Map)
            {
                bool known = false;
                foreach (Target x in t) if (string.Equals(kv.Key, x.Source, PathRules.Cmp) || (PathRules.IsAbsolute(kv.Key) && PathRules.IsAbsolute(x.Source)
                    && string.Equals(PathRules.Normalize(kv.Key), PathRules.Normalize(x.Source), PathRules.Cmp))) known = true;
                if (!known) throw new InvalidOption("restore_map", "restore_map source '" + kv.Key + "' is not a database of backup set " + full.Path);
            }
            return t;
        }

        // A path the manifest records, as a target the operator confirmed with to_original_paths.
        internal static string Original(string p, string field, ChainSet full)
        {
            string why = OriginalPaths.Problem(p);
            if (why != null)
                throw new RestoreRefused("unsafe_target", p ?? full.Path, "the manifest of " + full.Path + " records " + field + " '" + p + "', which " + why
                    + ": to_original_paths writes only to absolute local paths outside the system directories; name the target instead ("
                    + (field == "databases[].source" ? "restore_map" : "log_path, system_path") + ")");
            return PathRules.Normalize(p);
        }

        // A database of only its header pages (and the trailer of a streamed copy) holds no data: nothing to restore.
        private static void CheckHasPages(ChainSet full, Target x)
        {
            long cb = x.PageSize;
            long pages = x.SetSize / cb - 2;
            byte[] h = x.SetSize >= 4096 ? FileBytes.ReadPrefix(x.SetFile, 4096) : null;
            bool streamed = h != null && DbFacts.U32(h, 200) != 0; // bkinfoFullCur.genLow
            if (streamed) pages--;
            if (pages <= 0)
                throw new RestoreRefused("no_pages", x.SetFile, "backup set " + full.Path + ": database " + x.SetFile + " holds only its header pages" + (streamed ? " and trailer" : "")
                    + " (" + x.SetSize.ToString(CultureInfo.InvariantCulture) + " bytes), no data page: there is nothing to restore");
        }

        // An existing file at an original path is replaced (force) only when it is this database (same signDb),
        // or, for the current log and checkpoint, an ESE file: an edited manifest cannot aim force at another file.
        internal static void CheckOriginalIsOurs(string path, string signDb, bool database)
        {
            if (!File.Exists(path)) return;
            string kind = SetEntry.Kind(path);
            byte[] h = kind == SetEntry.Regular ? FileBytes.ReadPrefix(path, 4096) : null;
            bool ok = h != null && DbFacts.U32(h, 0) == PageChecksum.XorOld(h, 4096) && (!database || string.Equals(DbFacts.HexBytes(DbFacts.Slice(h, 24, 28)), signDb, StringComparison.OrdinalIgnoreCase));
            if (!ok)
                throw new RestoreRefused("target_not_ours", path, "to_original_paths would replace " + path + ", which is not "
                    + (database ? "this database (its header does not carry the database signature of the backup)" : "an ESE log or checkpoint")
                    + ": it is not replaced, even with force; name the target in " + (database ? "restore_map" : "log_path, system_path") + " if you mean it");
        }

        internal static string SignDbOf(ChainSet full, string source)
        {
            foreach (IDictionary d in full.Databases)
                if (d["file"] != null && string.Equals(Convert.ToString(d["source"], CultureInfo.InvariantCulture), source, PathRules.Cmp))
                    return Convert.ToString(d["sign_db"], CultureInfo.InvariantCulture);
            return null;
        }

        // A database that esent or another process holds open cannot be restored over.
        internal static void CheckNotInUse(JetApi api, string path)
        {
            if (!File.Exists(path)) return;
            uint ps;
            int err = api.GetPageSize(path, out ps);
            bool inUse = err == Jet.errFileAccessDenied;
            if (!inUse)
            {
                try { using (new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None)) { } }
                catch (IOException) { inUse = true; }
                catch (UnauthorizedAccessException) { inUse = true; }
            }
            if (inUse)
                throw new RestoreRefused("in_use", path, "database " + path + " is in use (attached by esent or open in another process"
                    + (err == Jet.errFileAccessDenied ? ": JetGetDatabaseFileInfoW returned -1032 JET_errFileAccessDenied" : "") + "); stop its service and try again");
        }

        internal static void CheckService(string service)
        {
            if (service == null) return;
            bool running;
            if (PathRules.IsWindows) running = Services.IsRunning(service);
            else
            {
                string list = Environment.GetEnvironmentVariable(TestRunningServicesVar) ?? "";
                running = Array.IndexOf(list.Split(','), service) >= 0;
            }
            if (running)
                throw new RestoreRefused("service_running", service, "service " + service + " is running; stop it before restoring its databases");
        }

        private static string LogName(string baseName, string ext) { return baseName + ext; }

        // The JET_paramLegacyFileNames value that names the chain's logs as its sets hold them (Options.LogNameOf, the
        // rule the backup wrote them by): a set taken with .jtx logs restores to .jtx logs and a .jcp checkpoint. Every
        // log of the chain must follow one rule; a chain without logs (Attach) uses ESE's default.
        internal static long LegacyFileNames(List<ChainSet> chain)
        {
            List<long> fits = new List<long> { 3, 2, 1, 0 }; // the default first
            foreach (ChainSet s in chain)
                foreach (SetFile f in s.Files)
                {
                    if (f.Role != "log") continue;
                    string leaf = Path.GetFileName(f.FullPath);
                    List<long> names = new List<long>();
                    foreach (long v in fits)
                        if (f.Generation > 0 && f.Generation <= uint.MaxValue
                            && string.Equals(leaf, Options.LogNameOf(s.BaseName, (uint)f.Generation, v), StringComparison.OrdinalIgnoreCase))
                            names.Add(v);
                    if (names.Count == 0)
                        throw new RestoreRefused("bad_log", f.FullPath, "log " + f.Name + " of backup set " + s.Path + " is not named as ESE names generation "
                            + f.Generation.ToString(CultureInfo.InvariantCulture) + " of base name " + s.BaseName + " (for example "
                            + Options.LogNameOf(s.BaseName, (uint)Math.Max(0, Math.Min(uint.MaxValue, f.Generation)), fits[0]) + ")"
                            + (fits.Count < 4 ? ", as the chain's other logs are" : ""));
                    fits = names;
                }
            return fits[0];
        }

        // ---- restore to the original or new paths ----

        private static void RestoreTo(RestoreOptions o, List<ChainSet> chain, JetApi api, Dictionary<string, object> result, bool checkMode)
        {
            ChainSet full = chain[0], last = chain[chain.Count - 1];
            string srcLog = full.Source != null ? Convert.ToString(full.Source["log_path"], CultureInfo.InvariantCulture) : null;
            string srcSys = full.Source != null ? Convert.ToString(full.Source["system_path"], CultureInfo.InvariantCulture) : null;
            List<Target> targets = Targets(o, full, null);
            if (o.LogPath == null && !o.ToOriginal)
                throw new RestoreRefused("unconfirmed_target", full.Path, "the restored log stream needs a confirmed folder: give log_path (and system_path for the checkpoint, "
                    + "if not the same), or set to_original_paths: true to use the log path the manifest of " + full.Path + " records ('" + srcLog + "')");
            string logPath = o.LogPath != null ? PathRules.Normalize(o.LogPath) : Original(srcLog, "source.log_path", full);
            string sysPath = o.SystemPath != null ? PathRules.Normalize(o.SystemPath) : (o.LogPath != null ? logPath : Original(srcSys ?? srcLog, "source.system_path", full));
            long legacy = LegacyFileNames(chain);
            string curLog = Path.Combine(logPath, LogName(full.BaseName, Options.LogExtOf(legacy)));
            string chk = Path.Combine(sysPath, LogName(full.BaseName, Options.ChkExtOf(legacy)));
            CheckService(o.Service);
            foreach (Target t in targets) CheckNotInUse(api, t.Path);
            string signDb = null;
            foreach (IDictionary d in full.Databases) if (d["file"] != null) { signDb = Convert.ToString(d["sign_db"], CultureInfo.InvariantCulture); break; }
            foreach (Target t in targets) if (t.Original) CheckOriginalIsOurs(t.Path, SignDbOf(full, t.Source) ?? signDb, true);
            if (o.ToOriginal && o.LogPath == null) CheckOriginalIsOurs(curLog, null, false);
            if (o.ToOriginal && o.LogPath == null && o.SystemPath == null) CheckOriginalIsOurs(chk, null, false);
            List<string> existing = new List<string>();
            foreach (Target t in targets) if (File.Exists(t.Path)) existing.Add(t.Path);
            foreach (string f in new string[] { curLog, chk }) if (File.Exists(f)) existing.Add(f);
            if (existing.Count > 0 && !o.Force)
                throw new RestoreRefused("target_exists", existing[0], "restore would overwrite " + string.Join(", ", existing.ToArray())
                    + "; set force: true to replace them, or restore to new paths (restore_map, log_path, system_path)");
            if (checkMode)
            {
                result["check"] = CheckFacts(chain, targets, logPath, sysPath, existing);
                return;
            }
            string scratchRoot = o.Scratch ?? Path.GetTempPath();
            Changes changes = new Changes();
            try
            {
                foreach (Target t in targets) changes.EnsureDir(Path.GetDirectoryName(t.Path));
                changes.EnsureDir(logPath); changes.EnsureDir(sysPath);
                if (o.Force) { foreach (Target t in targets) changes.MoveAside(t.Path); changes.MoveAside(curLog); changes.MoveAside(chk); }
                bool ok = RestoreCore(chain, targets, logPath, sysPath, scratchRoot, api, result, changes);
                if (!ok)
                {
                    result["undone"] = changes.Undo();
                    return;
                }
                changes.Commit();
                result["written"] = Written(changes, curLog, chk);
                foreach (object f in (List<object>)result["written"]) Protect.File_((string)f);
                ((List<object>)result["warnings"]).AddRange(OtherLogs(logPath, full.BaseName, Options.LogExtOf(legacy), last.GenHigh));
            }
            catch (Exception e)
            {
                if (e is RestoreRefused || e is InvalidOption) { result["undone"] = changes.Undo(); throw; }
                result["failed_call"] = NativeLoad.IsLoadFailure(e) ? NativeLoad.Failure(e, "esent.dll").ToDict() : new JetFailure(e is IOException || e is UnauthorizedAccessException ? "WriteFile" : "Restore",
                    e is UnauthorizedAccessException ? Jet.errFileAccessDenied : (e is IOException ? Jet.errDiskIO : Jet.errInvalidParameter), e.Message).ToDict();
                result["written"] = new List<object>(changes.Written);
                result["undone"] = changes.Undo();
            }
        }

        private static List<object> Written(Changes c, string curLog, string chk)
        {
            List<object> l = new List<object>(c.Written);
            foreach (string f in new string[] { curLog, chk }) if (File.Exists(f) && !l.Contains(f)) l.Add(f);
            return l;
        }

        // Logs newer than the restored range in the log path: esent replays them after the backup's logs.
        internal static List<object> OtherLogs(string logPath, string baseName, string logExt, uint high)
        {
            List<object> w = new List<object>();
            try
            {
                foreach (string f in Directory.GetFiles(logPath, baseName + "*" + logExt))
                {
                    string n = Path.GetFileNameWithoutExtension(f).Substring(baseName.Length);
                    uint g;
                    if (uint.TryParse(n, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out g) && g > high + 1)
                        w.Add("log path " + logPath + " already holds " + Path.GetFileName(f) + " (newer than the restored range): it does not belong to the restored stream; move it away before starting the service");
                }
            }
            catch (IOException) { }
            return w;
        }

        internal static Dictionary<string, object> CheckFacts(List<ChainSet> chain, List<Target> targets, string logPath, string sysPath, List<string> existing)
        {
            Dictionary<string, object> c = new Dictionary<string, object>();
            List<object> dbs = new List<object>();
            foreach (Target t in targets)
            {
                Dictionary<string, object> d = new Dictionary<string, object>();
                d["source"] = t.Source; d["from"] = t.SetFile; d["path"] = t.Path; d["exists"] = File.Exists(t.Path);
                dbs.Add(d);
            }
            c["would_write"] = dbs;
            c["would_replace"] = new List<object>(existing.ToArray());
            c["log_path"] = logPath; c["system_path"] = sysPath;
            c["gen_low"] = (long)chain[0].GenLow; c["gen_high"] = (long)chain[chain.Count - 1].GenHigh;
            List<object> logs = new List<object>();
            foreach (string f in ChainLogs(chain).Values) logs.Add(f);
            c["would_replay"] = logs;
            return c;
        }

        private static SortedDictionary<uint, string> ChainLogs(List<ChainSet> chain)
        {
            SortedDictionary<uint, string> logs = new SortedDictionary<uint, string>();
            foreach (ChainSet s in chain)
                for (uint g = s.GenLow; g <= s.GenHigh; g++) logs[g] = s.LogFile(g).FullPath;
            return logs;
        }

        // Copies the streamed databases to their targets and the chain's logs to a private restore log
        // directory, calls JetExternalRestore2W once (genLow = full's, genHigh = last set's) and checks the
        // restored headers. False (with failed_call) when a step failed.
        internal static bool RestoreCore(List<ChainSet> chain, List<Target> targets, string logPath, string sysPath, string scratchRoot,
            JetApi api, Dictionary<string, object> result, Changes changes)
        {
            ChainSet full = chain[0];
            uint low = full.GenLow, high = chain[chain.Count - 1].GenHigh;
            foreach (Target t in targets)
            {
                changes.Written.Add(t.Path);
                string sha = FileBytes.Sha256Of(t.SetFile, t.Path, Protect.File_);
                api.Trace.Add("CopyFile", 0, t.SetFile + " -> " + t.Path + " sha256=" + sha);
                if (!string.Equals(sha, t.Sha256, StringComparison.OrdinalIgnoreCase))
                    throw new RestoreRefused("hash_mismatch", t.SetFile, "the streamed database " + t.SetFile + " changed while it was copied (SHA-256 " + sha + ")");
            }
            string rlogs = Path.Combine(scratchRoot, "ese-restore-logs-" + Guid.NewGuid().ToString("N"));
            PrivateDirectory.Create(rlogs);
            try
            {
                // Each log is hashed while it is copied: a file swapped on the share after the checks is not replayed.
                SortedDictionary<uint, SetFile> logs = new SortedDictionary<uint, SetFile>();
                foreach (ChainSet s in chain) for (uint g = s.GenLow; g <= s.GenHigh; g++) logs[g] = s.LogFile(g);
                foreach (SetFile f in logs.Values)
                {
                    string sha = FileBytes.Sha256Of(f.FullPath, Path.Combine(rlogs, Path.GetFileName(f.FullPath)), Protect.File_);
                    if (!string.Equals(sha, f.Sha256, StringComparison.OrdinalIgnoreCase))
                        throw new RestoreRefused("hash_mismatch", f.FullPath, "log " + f.FullPath + " changed after it was checked (SHA-256 " + sha + " while it was copied)");
                }
                api.Trace.Add("CopyFile", 0, "logs " + low.ToString(CultureInfo.InvariantCulture) + "-" + high.ToString(CultureInfo.InvariantCulture) + " -> " + rlogs);
                List<KeyValuePair<string, string>> map = new List<KeyValuePair<string, string>>();
                foreach (Target t in targets) map.Add(new KeyValuePair<string, string>(t.Source, t.Path));
                long pageSize;
                uint want = targets.Count > 0 ? targets[0].PageSize : 4096;
                if (api.GetGlobalParam(Jet.ParamDatabasePageSize, "JET_paramDatabasePageSize", out pageSize) >= 0 && pageSize != want)
                    api.SetGlobalParam(Jet.ParamDatabasePageSize, want, "JET_paramDatabasePageSize");
                // The restore instance esent creates takes the process's defaults: the sets' log naming (only when not ESE's).
                long legacy = LegacyFileNames(chain);
                if (legacy != Options.DefaultLegacyFileNames)
                    JetApi.Check(api.SetGlobalParam(Jet.ParamLegacyFileNames, legacy, "JET_paramLegacyFileNames"), "JetSetSystemParameterW", "JET_paramLegacyFileNames");
                string logExt = Options.LogExtOf(legacy), chkExt = Options.ChkExtOf(legacy);
                int err = api.ExternalRestore(PathRules.WithSeparator(sysPath), PathRules.WithSeparator(logPath), map, PathRules.WithSeparator(rlogs), low, high, full.BaseName);
                if (err < 0)
                {
                    result["failed_call"] = new JetFailure("JetExternalRestore2W", err, "generations " + low.ToString(CultureInfo.InvariantCulture) + "-" + high.ToString(CultureInfo.InvariantCulture)).ToDict();
                    result["written"] = new List<object>(changes.Written);
                    changes.Written.Add(Path.Combine(logPath, full.BaseName + logExt));
                    changes.Written.Add(Path.Combine(sysPath, full.BaseName + chkExt));
                    return false;
                }
                changes.Written.Add(Path.Combine(logPath, full.BaseName + logExt));
                changes.Written.Add(Path.Combine(sysPath, full.BaseName + chkExt));
                List<object> restored = (List<object>)result["restored"];
                foreach (Target t in targets)
                {
                    Dictionary<string, object> facts = HeaderFacts(api, t.Path);
                    facts["source"] = t.Source; facts["from"] = t.SetFile;
                    restored.Add(facts);
                    string problem = null;
                    if (facts.ContainsKey("error")) problem = (string)facts["error"];
                    else if (!"clean_shutdown".Equals(facts["db_state_name"])) problem = "its header says " + facts["db_state_name"] + ", not clean_shutdown";
                    else if ((bool)facts["streamed_backup_copy"]) problem = "its header still carries the backup marker (bkinfoFullCur)";
                    else if ((long)facts["gen_max_committed"] < high) problem = "its header's last committed generation is " + facts["gen_max_committed"] + ", not " + high.ToString(CultureInfo.InvariantCulture);
                    if (problem != null)
                    {
                        result["failed_call"] = new JetFailure("JetExternalRestore2W", Jet.errInvalidParameter, "restored " + t.Path + " but " + problem).ToDict();
                        result["written"] = new List<object>(changes.Written);
                        return false;
                    }
                }
                return true;
            }
            finally
            {
                try { Directory.Delete(rlogs, true); } catch (IOException) { }
            }
        }

        internal static Dictionary<string, object> HeaderFacts(JetApi api, string path)
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["path"] = path;
            byte[] misc;
            int err = api.GetDbInfoMisc(path, out misc);
            if (err < 0) { d["error"] = "JetGetDatabaseFileInfoW(JET_DbInfoMisc) returned " + err.ToString(CultureInfo.InvariantCulture); d["err"] = (long)err; return d; }
            foreach (KeyValuePair<string, object> kv in DbFacts.FromMisc(misc).ToDict()) d[kv.Key] = kv.Value;
            byte[] h = FileBytes.ReadPrefix(path, 4096);
            d["gen_max_committed"] = h != null ? (long)DbFacts.U32(h, 416) : 0L;  // DBFILEHDR le_lGenMaxCommitted
            d["size"] = new FileInfo(path).Length;
            return d;
        }

        // ---- drill: restore into a scratch directory, attach read-only, check, remove ----

        // Test entry: the verdict of every data page of a file ({path, page_size}); the header pages are skipped.
        public static Dictionary<string, object> PageVerdicts(IDictionary args)
        {
            string path = Args.Str(args, "path", null);
            long? ps = Args.Long(args, "page_size");
            int cb = ps.HasValue ? (int)ps.Value : 4096;
            List<object> v = new List<object>();
            byte[] page = new byte[cb];
            using (FileStream fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
            {
                long index = 0;
                while (FileBytes.ReadFull(fs, page)) { if (index >= 2) v.Add(PageChecksum.PageStatus(page, cb, (uint)(index - 1))); index++; }
            }
            Dictionary<string, object> r = new Dictionary<string, object>();
            r["verdicts"] = v;
            return r;
        }
    }

    // ---- AD CS: the restore certutil -restoreDB registers, with the CA stopped ----
    // The chain's database is copied to its target and the chain's logs to a folder in the CA's log path
    // (StagingName), both hash-checked while they are copied; then certadm.dll registers the restore:
    // CertSrvRestorePrepareW -> CertSrvRestoreRegisterThroughFile(checkpoint path, log path, {backed-up name ->
    // target}, staging folder, genLow of the full, genHigh of the last set) -> CertSrvRestoreRegisterComplete(S_OK)
    // -> CertSrvRestoreEnd. The CA replays the logs at its next start. A failure after RestorePrepare:
    // a registration that was made is completed with the failure's HRESULT (the CA records a failed restore and
    // does not run it; it starts again once a restore is registered and completed with S_OK), RestoreEnd is
    // called, and the copied files are removed (the files force moved aside are put back).
    internal static class RestoreCa
    {
        public const string StagingName = "ese-backup-restore";
        public const string DefaultService = "CertSvc";

        private static string Loc(ChainSet full, string type)
        {
            IList locs = full.Source != null ? full.Source["database_locations"] as IList : null;
            if (locs == null) return null;
            foreach (object o in locs)
            {
                IDictionary d = o as IDictionary;
                if (d != null && string.Equals(d["type"] as string, type, StringComparison.Ordinal)) return d["path"] as string;
            }
            return null;
        }

        private static string Src(ChainSet full, string key)
        {
            return full.Source != null && full.Source[key] != null ? Convert.ToString(full.Source[key], CultureInfo.InvariantCulture) : null;
        }

        internal static void Run(RestoreOptions o, List<ChainSet> chain, JetApi api, Dictionary<string, object> result, bool checkMode)
        {
            ChainSet full = chain[0], last = chain[chain.Count - 1];
            Trace trace = api.Trace;
            string srcLog = Loc(full, "log_dir") ?? Src(full, "log_path");
            string srcSys = Loc(full, "checkpoint_dir") ?? Src(full, "system_path");
            List<Target> targets = Restore.Targets(o, full, null);
            if (o.LogPath == null && !o.ToOriginal)
                throw new RestoreRefused("unconfirmed_target", full.Path, "the CA's log folder needs confirming: give log_path (and system_path for the checkpoint, "
                    + "if not the same), or set to_original_paths: true to use the CA's log folder the manifest of " + full.Path + " records ('" + srcLog + "')");
            string logPath = o.LogPath != null ? PathRules.Normalize(o.LogPath) : Restore.Original(srcLog, "source.log_path", full);
            string sysPath = o.SystemPath != null ? PathRules.Normalize(o.SystemPath) : (o.LogPath != null ? logPath : Restore.Original(srcSys ?? srcLog, "source.system_path", full));
            string staging = Path.Combine(logPath, StagingName);
            string server = ServiceCall.LocalComputer();
            string manifestServer = Src(full, "server");
            if (manifestServer != null && ServiceCall.Label(manifestServer) != ServiceCall.Label(server))
                ((List<object>)result["warnings"]).Add("backup set " + full.Path + " was taken on " + manifestServer + "; it is registered with the CA on this host, " + server);

            // The CA must be stopped: the service (SCM on Windows), then the CA itself (CertSrvIsServerOnlineW).
            Restore.CheckService(o.Service ?? DefaultService);
            bool? running = CertAdmRestore.IsRunning(trace, server);
            if (running == true)
                throw new RestoreRefused("service_running", server, "the CA on " + server + " is running (CertSrvIsServerOnlineW answered); stop it "
                    + "(Stop-Service CertSvc) before restoring its database: the CA replays the restored logs at its next start");
            foreach (Target t in targets) Restore.CheckNotInUse(api, t.Path);
            string signDb = null;
            foreach (IDictionary d in full.Databases) if (d["file"] != null) { signDb = Convert.ToString(d["sign_db"], CultureInfo.InvariantCulture); break; }
            foreach (Target t in targets) if (t.Original) Restore.CheckOriginalIsOurs(t.Path, Restore.SignDbOf(full, t.Source) ?? signDb, true);

            SortedDictionary<uint, SetFile> logs = new SortedDictionary<uint, SetFile>();
            foreach (ChainSet s in chain) for (uint g = s.GenLow; g <= s.GenHigh; g++) logs[g] = s.LogFile(g);
            List<string> existing = new List<string>();
            foreach (Target t in targets) if (File.Exists(t.Path)) existing.Add(t.Path);
            foreach (SetFile f in logs.Values) { string p = Path.Combine(staging, Path.GetFileName(f.FullPath)); if (File.Exists(p)) existing.Add(p); }
            if (existing.Count > 0 && !o.Force)
                throw new RestoreRefused("target_exists", existing[0], "restore would overwrite " + string.Join(", ", existing.ToArray())
                    + "; set force: true to replace them, or restore to new paths (restore_map, log_path, system_path)");

            uint low = full.GenLow, high = last.GenHigh;
            Dictionary<string, object> reg = new Dictionary<string, object>();
            reg["server"] = server;
            reg["call"] = "CertSrvRestoreRegisterThroughFile";
            reg["checkpoint_path"] = PathRules.WithSeparator(sysPath);
            reg["log_path"] = PathRules.WithSeparator(logPath);
            reg["backup_log_path"] = PathRules.WithSeparator(staging);
            reg["gen_low"] = (long)low; reg["gen_high"] = (long)high;
            List<object> mapFacts = new List<object>();
            List<KeyValuePair<string, string>> map = new List<KeyValuePair<string, string>>();
            foreach (Target t in targets)
            {
                map.Add(new KeyValuePair<string, string>(t.Source, t.Path));
                Dictionary<string, object> m = new Dictionary<string, object>();
                m["database_name"] = t.Source; m["new_database_name"] = t.Path;
                mapFacts.Add(m);
            }
            reg["restore_map"] = mapFacts;
            reg["registered"] = false; reg["completed"] = false; reg["status"] = null;
            result["registration"] = reg;
            if (checkMode)
            {
                Dictionary<string, object> c = Restore.CheckFacts(chain, targets, logPath, sysPath, existing);
                c["backup_log_path"] = staging;
                result["check"] = c;
                return;
            }

            CertAdmRestore r = new CertAdmRestore(trace, server);
            try { r.Prepare(); }
            catch (JetFailure f)
            {
                if ((uint)f.Err == CertAdmRestore.ServiceAlreadyRunning)
                    throw new RestoreRefused("service_running", server, "the CA on " + server + " is running (CertSrvRestorePrepareW answered "
                        + ServiceHr.Describe(f.Err) + "); stop it (Stop-Service CertSvc) before restoring its database");
                result["failed_call"] = f.ToDict();
                return;
            }
            Changes changes = new Changes();
            int failHr = 0;
            try
            {
                try
                {
                    foreach (BackupLocation l in r.Locations())
                        if (l.Type == "database")
                        {
                            bool mapped = false;
                            foreach (Target t in targets) if (string.Equals(PathRules.Normalize(l.Path), t.Path, PathRules.Cmp)) mapped = true;
                            if (!mapped)
                                ((List<object>)result["warnings"]).Add("the CA's configuration keeps its database at " + l.Path + " (CertSrvRestoreGetDatabaseLocationsW); "
                                    + "this restore writes " + string.Join(", ", targets.ConvertAll(t => t.Path).ToArray()) + ": the CA opens the database its configuration names");
                        }
                }
                catch (JetFailure f) { ((List<object>)result["warnings"]).Add("could not read the CA's database locations: " + f.Detail); }

                foreach (Target t in targets) changes.EnsureDir(Path.GetDirectoryName(t.Path));
                changes.EnsureDir(logPath); changes.EnsureDir(sysPath); changes.EnsureDir(staging);
                if (o.Force)
                {
                    foreach (Target t in targets) changes.MoveAside(t.Path);
                    foreach (SetFile f in logs.Values) changes.MoveAside(Path.Combine(staging, Path.GetFileName(f.FullPath)));
                }
                List<object> restored = (List<object>)result["restored"];
                foreach (Target t in targets)
                {
                    changes.Written.Add(t.Path);
                    string sha = FileBytes.Sha256Of(t.SetFile, t.Path, Protect.File_);
                    trace.Add("CopyFile", 0, t.SetFile + " -> " + t.Path + " sha256=" + sha);
                    if (!string.Equals(sha, t.Sha256, StringComparison.OrdinalIgnoreCase))
                        throw new RestoreRefused("hash_mismatch", t.SetFile, "the streamed database " + t.SetFile + " changed while it was copied (SHA-256 " + sha + ")");
                    Dictionary<string, object> d = new Dictionary<string, object>();
                    d["path"] = t.Path; d["source"] = t.Source; d["from"] = t.SetFile; d["sha256"] = sha; d["size"] = new FileInfo(t.Path).Length;
                    d["replayed"] = "at the CA's next start";
                    restored.Add(d);
                }
                foreach (SetFile f in logs.Values)
                {
                    string dst = Path.Combine(staging, Path.GetFileName(f.FullPath));
                    changes.Written.Add(dst);
                    string sha = FileBytes.Sha256Of(f.FullPath, dst, Protect.File_);
                    if (!string.Equals(sha, f.Sha256, StringComparison.OrdinalIgnoreCase))
                        throw new RestoreRefused("hash_mismatch", f.FullPath, "log " + f.FullPath + " changed after it was checked (SHA-256 " + sha + " while it was copied)");
                }
                trace.Add("CopyFile", 0, "logs " + low.ToString(CultureInfo.InvariantCulture) + "-" + high.ToString(CultureInfo.InvariantCulture) + " -> " + staging);

                r.Register((string)reg["checkpoint_path"], (string)reg["log_path"], map, (string)reg["backup_log_path"], low, high);
                reg["registered"] = true;
                r.Complete(0);
                reg["completed"] = true; reg["status"] = ServiceHr.Hex(0);
                r.End(true);
                changes.Commit();
                result["written"] = new List<object>(changes.Written);
                List<object> w = (List<object>)result["warnings"];
                w.AddRange(Restore.OtherLogs(logPath, full.BaseName, Options.LogExtOf(Restore.LegacyFileNames(chain)), high));
                reg["next"] = "start the CA (Start-Service CertSvc): it replays log generations " + low.ToString(CultureInfo.InvariantCulture) + "-"
                    + high.ToString(CultureInfo.InvariantCulture) + " from " + staging + " into " + string.Join(", ", targets.ConvertAll(t => t.Path).ToArray())
                    + " at its start; then take a new full backup (type: full): backups taken before the restore cannot be combined with those after it; "
                    + staging + " can be removed once the CA has started";
            }
            catch (Exception e)
            {
                if (e is RestoreRefused || e is InvalidOption) { failHr = unchecked((int)CertAdmRestore.EFail); Abort(r, failHr, reg, result); result["undone"] = changes.Undo(); throw; }
                JetFailure f = e as JetFailure;
                if (f != null) { result["failed_call"] = f.ToDict(); failHr = HrOf(f.Err); }
                else if (NativeLoad.IsLoadFailure(e)) { result["failed_call"] = NativeLoad.Failure(e, "certadm.dll").ToDict(); failHr = unchecked((int)CertAdmRestore.EFail); }
                else
                {
                    result["failed_call"] = new JetFailure(e is IOException || e is UnauthorizedAccessException ? "WriteFile" : "Restore",
                        e is UnauthorizedAccessException ? Jet.errFileAccessDenied : (e is IOException ? Jet.errDiskIO : Jet.errInvalidParameter), e.Message).ToDict();
                    failHr = unchecked((int)CertAdmRestore.EFail);
                }
                Abort(r, failHr, reg, result);
                result["written"] = new List<object>(changes.Written);
                result["undone"] = changes.Undo();
            }
        }

        // A JetFailure's err as the HRESULT a registration is completed with: an HRESULT as it is, a JET_err as 0xC800xxxx.
        private static int HrOf(int err)
        {
            if (err < -0xFFFF) return err;
            if (err < 0) return unchecked((int)(0xC8000000u | (uint)(-err)));
            return unchecked((int)CertAdmRestore.EFail);
        }

        // After a failure: a registration that was made is completed with the failure (never left pending), then the
        // restore context is released; the result says what the CA will do at its next start.
        private static void Abort(CertAdmRestore r, int hr, Dictionary<string, object> reg, Dictionary<string, object> result)
        {
            if (r.Registered && !r.Completed)
            {
                try { r.Complete(hr); reg["completed"] = true; reg["status"] = ServiceHr.Hex(hr); }
                catch (JetFailure) { }
            }
            r.End(false);
            if (r.Registered)
                reg["next"] = (bool)reg["completed"]
                    ? "the CA records this restore as failed (" + ServiceHr.Describe(hr) + ") and does not start until a restore is registered and completed again: "
                      + "run ese.backup.restore again once the cause is fixed"
                    : "the restore registration could not be completed: the CA does not start until a restore is registered and completed again "
                      + "(run ese.backup.restore again), or the RestoreInProgress key under HKLM\\SYSTEM\\CurrentControlSet\\Services\\CertSvc\\Configuration is removed";
            else reg["next"] = "nothing was registered with the CA; it starts with the database it had";
            ((List<object>)result["warnings"]).Add((string)reg["next"]);
        }
    }

    // The restore drill: the chain restored into a scratch folder, attached read-only, every page checked,
    // and the scratch folder removed whatever happens.
    internal static class RestoreDrill
    {
        internal static void Run(RestoreOptions o, List<ChainSet> chain, JetApi api, Dictionary<string, object> result, bool checkMode)
        {
            string root = o.Scratch ?? Path.GetTempPath();
            if (!Directory.Exists(root)) throw new InvalidOption("scratch", "scratch directory " + root + " does not exist");
            string scratch = Path.Combine(root, "ese-drill-" + Guid.NewGuid().ToString("N"));
            Dictionary<string, object> report = new Dictionary<string, object>();
            result["drill_report"] = report;
            report["scratch"] = scratch;
            report["gen_low"] = (long)chain[0].GenLow;
            report["gen_high"] = (long)chain[chain.Count - 1].GenHigh;
            List<Target> targets = Restore.Targets(o, chain[0], Path.Combine(scratch, "databases"));
            if (checkMode)
            {
                result["check"] = Restore.CheckFacts(chain, targets, Path.Combine(scratch, "logs"), Path.Combine(scratch, "logs"), new List<string>());
                report["passed"] = null;
                return;
            }
            long bytes = 0;
            foreach (Target t in targets) bytes += new FileInfo(t.SetFile).Length;
            long free = PathRules.FreeBytes(root);
            if (free >= 0 && free < bytes + (64L << 20) && Environment.GetEnvironmentVariable(Validator.TestIgnoreFreeSpaceVar) != "1")
                throw new InvalidOption("scratch", "scratch directory " + root + " has " + free.ToString(CultureInfo.InvariantCulture) + " bytes free; the drill needs about " + bytes.ToString(CultureInfo.InvariantCulture));
            List<object> checks = new List<object>();
            report["checks"] = checks;
            bool passed = false;
            try
            {
                PrivateDirectory.Create(scratch);
                string logs = Path.Combine(scratch, "logs");
                Directory.CreateDirectory(logs);
                Directory.CreateDirectory(Path.Combine(scratch, "databases"));
                Changes changes = new Changes();
                if (!Restore.RestoreCore(chain, targets, logs, logs, scratch, api, result, changes)) { report["passed"] = false; return; }
                passed = AttachReadOnly(o, chain, targets, logs, api, result, checks);
                if (passed) passed = VerifyPages(targets, checks);
                result["written"] = new List<object>();
            }
            catch (Exception e)
            {
                if (e is InvalidOption || e is RestoreRefused) throw;
                result["failed_call"] = NativeLoad.IsLoadFailure(e) ? NativeLoad.Failure(e, "esent.dll").ToDict() : new JetFailure(e is IOException ? "WriteFile" : "Restore", e is IOException ? Jet.errDiskIO : Jet.errInvalidParameter, e.Message).ToDict();
            }
            finally
            {
                report["passed"] = passed && result["failed_call"] == null;
                try { if (Directory.Exists(scratch)) Directory.Delete(scratch, true); }
                catch (IOException e) { ((List<object>)result["warnings"]).Add("could not remove the drill's scratch directory " + scratch + ": " + e.Message); }
                catch (UnauthorizedAccessException e) { ((List<object>)result["warnings"]).Add("could not remove the drill's scratch directory " + scratch + ": " + e.Message); }
                report["scratch_removed"] = !Directory.Exists(scratch);
            }
        }

        private static Dictionary<string, object> Check(string name, bool ok, string detail)
        {
            Dictionary<string, object> c = new Dictionary<string, object>();
            c["check"] = name; c["ok"] = ok; c["detail"] = detail;
            return c;
        }

        // Hard recovery done: a fresh instance on the restored log stream attaches every database read-only
        // (JET_bitDbReadOnly) and reads its header, then detaches and terminates.
        internal static bool AttachReadOnly(RestoreOptions o, List<ChainSet> chain, List<Target> targets, string logs, JetApi api,
            Dictionary<string, object> result, List<object> checks)
        {
            uint high = chain[chain.Count - 1].GenHigh;
            IntPtr inst = IntPtr.Zero, ses = IntPtr.Zero;
            bool initialised = false, ok = true;
            List<string> attached = new List<string>();
            try
            {
                string dir = PathRules.WithSeparator(logs);
                JetApi.Check(api.CreateInstance(o.InstanceName + "-" + Guid.NewGuid().ToString("N").Substring(0, 8), out inst), "JetCreateInstance2W", "drill instance");
                JetApi.Check(api.SetParam(ref inst, Jet.ParamSystemPath, 0, dir, "JET_paramSystemPath"), "JetSetSystemParameterW", "JET_paramSystemPath");
                JetApi.Check(api.SetParam(ref inst, Jet.ParamLogFilePath, 0, dir, "JET_paramLogFilePath"), "JetSetSystemParameterW", "JET_paramLogFilePath");
                JetApi.Check(api.SetParam(ref inst, Jet.ParamTempPath, 0, dir, "JET_paramTempPath"), "JetSetSystemParameterW", "JET_paramTempPath");
                JetApi.Check(api.SetParam(ref inst, Jet.ParamBaseName, 0, chain[0].BaseName, "JET_paramBaseName"), "JetSetSystemParameterW", "JET_paramBaseName");
                long legacy = Restore.LegacyFileNames(chain);
                if (legacy != Options.DefaultLegacyFileNames)
                    JetApi.Check(api.SetParam(ref inst, Jet.ParamLegacyFileNames, legacy, null, "JET_paramLegacyFileNames"), "JetSetSystemParameterW", "JET_paramLegacyFileNames");
                JetApi.Check(api.SetParam(ref inst, Jet.ParamMaxTemporaryTables, 0, null, "JET_paramMaxTemporaryTables"), "JetSetSystemParameterW", "JET_paramMaxTemporaryTables");
                JetApi.Check(api.SetParam(ref inst, Jet.ParamNoInformationEvent, 1, null, "JET_paramNoInformationEvent"), "JetSetSystemParameterW", "JET_paramNoInformationEvent");
                JetApi.Check(api.Init(ref inst, Jet.InitLogStreamMustExist), "JetInit3W", "the restored log stream");
                initialised = true;
                JetApi.Check(api.BeginSession(inst, out ses), "JetBeginSessionW", "");
                ((List<object>)result["restored"]).Clear(); // the headers as read while attached replace the post-restore read
                foreach (Target t in targets)
                {
                    JetApi.Check(api.AttachReadOnly(ses, t.Path), "JetAttachDatabase2W", "read-only " + t.Path);
                    attached.Add(t.Path);
                    checks.Add(Check("attach_read_only", true, t.Path));
                    Dictionary<string, object> h = Restore.HeaderFacts(api, t.Path);
                    h["source"] = t.Source;
                    ((List<object>)result["restored"]).Add(h);
                    bool clean = "clean_shutdown".Equals(h["db_state_name"]);
                    checks.Add(Check("clean_shutdown", clean, t.Path + ": " + h["db_state_name"]));
                    bool gen = h.ContainsKey("gen_max_committed") && (long)h["gen_max_committed"] == high;
                    if (high == 0) { ok = ok && clean; continue; } // Attach: no expected generation
                    checks.Add(Check("log_generation", gen, t.Path + ": last committed generation " + (h.ContainsKey("gen_max_committed") ? h["gen_max_committed"] : "?")
                        + ", expected " + high.ToString(CultureInfo.InvariantCulture)));
                    ok = ok && clean && gen;
                }
            }
            catch (JetFailure f)
            {
                result["failed_call"] = f.ToDict();
                checks.Add(Check("attach_read_only", false, f.Message));
                ok = false;
            }
            finally
            {
                foreach (string p in attached) api.Detach(ses, p);
                if (ses != IntPtr.Zero) api.EndSession(ses);
                if (initialised || inst != IntPtr.Zero) api.Term(inst, 0);
            }
            return ok;
        }

        // Page checksums of the restored file (checksumu.cxx in Microsoft's ESE source): headers (legacy XOR), data pages
        // (legacy XOR + pgno, or XOR+ECC with flag 0x2000; four blocks for 16/32 KiB pages). All-zero pages are unused.
        private static bool VerifyPages(List<Target> targets, List<object> checks)
        {
            bool all = true;
            foreach (Target t in targets)
            {
                long pages = 0, empty = 0;
                List<object> bad = new List<object>(), correctable = new List<object>();
                int cb = (int)t.PageSize;
                byte[] page = new byte[cb];
                using (FileStream fs = new FileStream(t.Path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1 << 20))
                {
                    long index = 0;
                    while (FileBytes.ReadFull(fs, page))
                    {
                        string verdict = DbFacts.AllZero(page) ? PageChecksum.PageZero : index < 2 ? (DbFacts.U32(page, 0) == PageChecksum.XorOld(page, cb) ? PageChecksum.PageOkay : PageChecksum.PageBad) : PageChecksum.PageStatus(page, cb, (uint)(index - 1));
                        if (verdict == PageChecksum.PageZero) empty++;
                        else if (verdict == PageChecksum.PageCorrectable) { if (correctable.Count < 20) correctable.Add(index - 1); }
                        else if (verdict != PageChecksum.PageOkay)
                        {
                            if (bad.Count < 20) bad.Add(index < 2 ? (object)("header copy " + index.ToString(CultureInfo.InvariantCulture)) : (object)(index - 1));
                            else if (bad.Count == 20) bad.Add("...");
                        }
                        pages++; index++;
                    }
                }
                bool ok = bad.Count == 0;
                all = all && ok;
                Dictionary<string, object> c = Check("page_checksums", ok, t.Path + ": " + pages.ToString(CultureInfo.InvariantCulture) + " pages, "
                    + empty.ToString(CultureInfo.InvariantCulture) + " unused, " + bad.Count.ToString(CultureInfo.InvariantCulture) + " bad"
                    + (correctable.Count > 0 ? ", " + correctable.Count.ToString(CultureInfo.InvariantCulture) + " with a single-bit error that ESE corrects" : ""));
                c["pages"] = pages; c["unused_pages"] = empty; c["bad_pages"] = bad; c["correctable_pages"] = correctable;
                checks.Add(c);
            }
            return all;
        }
    }

    // Service state through the service control manager (Windows only).
    internal static class Services
    {
        [DllImport("advapi32.dll", CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        private static extern IntPtr OpenSCManagerW(string machine, string database, uint access);
        [DllImport("advapi32.dll", CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        private static extern IntPtr OpenServiceW(IntPtr scm, string name, uint access);
        [DllImport("advapi32.dll", ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        private static extern bool QueryServiceStatus(IntPtr service, [Out] byte[] status);
        [DllImport("advapi32.dll", ExactSpelling = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        private static extern bool CloseServiceHandle(IntPtr h);

        public static bool IsRunning(string name)
        {
            IntPtr scm = OpenSCManagerW(null, null, 0x0001); // SC_MANAGER_CONNECT
            if (scm == IntPtr.Zero) throw new RestoreRefused("service_unknown", name, "cannot open the service control manager to check service " + name);
            try
            {
                IntPtr svc = OpenServiceW(scm, name, 0x0004); // SERVICE_QUERY_STATUS
                if (svc == IntPtr.Zero) throw new RestoreRefused("service_unknown", name, "service " + name + " does not exist on this host");
                try
                {
                    byte[] st = new byte[28]; // SERVICE_STATUS: dwServiceType, dwCurrentState, ...
                    if (!QueryServiceStatus(svc, st)) throw new RestoreRefused("service_unknown", name, "cannot query the state of service " + name);
                    return BitConverter.ToUInt32(st, 4) != 1; // SERVICE_STOPPED = 1
                }
                finally { CloseServiceHandle(svc); }
            }
            finally { CloseServiceHandle(scm); }
        }
    }
}
