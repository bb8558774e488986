// ese.backup engine: hard recovery from backup sets (JetExternalRestore2W) and restore drills.
// C# 5, references System and System.Core only. Contracts: docs/architecture.md (section "Restore"),
// docs/restore.md; esent semantics: ese-backup-semantics.md section 7.

using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;
using ansible_collections.ese.backup.plugins.module_utils._EseNative;
using ansible_collections.ese.backup.plugins.module_utils.EseEngine;

namespace ansible_collections.ese.backup.plugins.module_utils._EseRestore
{
    // A refusal found before anything was written: the chain, a manifest, or a target.
    public sealed class RestoreRefused : Exception
    {
        public readonly string Problem, PathName;
        public RestoreRefused(string problem, string path, string msg) : base(msg) { Problem = problem; PathName = path; }
        public Dictionary<string, object> ToDict()
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["problem"] = Problem; d["path"] = PathName; d["msg"] = Message;
            return d;
        }
    }

    internal sealed class SetFile
    {
        public string Name, Role, Sha256, FullPath;
        public long Size, Generation;
    }

    // One backup set of the chain, read from its manifest.json and checked against its files.
    internal sealed class ChainSet
    {
        public string Path, Name, Type, BaseName;
        public uint GenLow, GenHigh;
        public IDictionary Manifest, Source;
        public List<SetFile> Files = new List<SetFile>();
        public List<IDictionary> Databases = new List<IDictionary>();

        public string Range { get { return GenLow.ToString(CultureInfo.InvariantCulture) + "-" + GenHigh.ToString(CultureInfo.InvariantCulture); } }

        private static long L(object o) { return o is long ? (long)o : (o is int ? (int)o : (o is double ? (long)(double)o : -1)); }

        public static ChainSet Load(string path, string option)
        {
            ChainSet s = new ChainSet();
            s.Path = PathRules.Normalize(path);
            s.Name = System.IO.Path.GetFileName(s.Path);
            string mf = System.IO.Path.Combine(s.Path, "manifest.json");
            if (!File.Exists(mf)) throw new RestoreRefused("not_a_set", s.Path, "'" + s.Path + "' (" + option + ") is not a backup set: it has no manifest.json");
            IDictionary m;
            try { m = Json.Parse(File.ReadAllText(mf, Encoding.UTF8)) as IDictionary; }
            catch (FormatException e) { throw new RestoreRefused("manifest_unreadable", mf, "manifest " + mf + " cannot be read: " + e.Message); }
            if (m == null || !"ese.backup/1".Equals(m["format"]))
                throw new RestoreRefused("manifest_unreadable", mf, "manifest " + mf + " is not in the ese.backup/1 format");
            s.Manifest = m;
            s.Type = Convert.ToString(m["type"], CultureInfo.InvariantCulture);
            s.Source = m["source"] as IDictionary;
            IDictionary logs = m["logs"] as IDictionary;
            if (logs == null || L(logs["gen_low"]) <= 0 || L(logs["gen_high"]) < L(logs["gen_low"]))
                throw new RestoreRefused("manifest_unreadable", mf, "manifest " + mf + " has no valid log generation range");
            s.GenLow = (uint)L(logs["gen_low"]); s.GenHigh = (uint)L(logs["gen_high"]);
            s.BaseName = Convert.ToString(logs["base_name"], CultureInfo.InvariantCulture);
            IList dbs = m["databases"] as IList;
            if (dbs != null) foreach (object o in dbs) if (o is IDictionary) s.Databases.Add((IDictionary)o);
            IList files = m["files"] as IList;
            if (files == null) throw new RestoreRefused("manifest_unreadable", mf, "manifest " + mf + " lists no files");
            foreach (object o in files)
            {
                IDictionary f = o as IDictionary;
                if (f == null) throw new RestoreRefused("manifest_unreadable", mf, "manifest " + mf + " has a malformed files entry");
                SetFile sf = new SetFile();
                sf.Name = Convert.ToString(f["name"], CultureInfo.InvariantCulture);
                sf.Role = Convert.ToString(f["role"], CultureInfo.InvariantCulture);
                sf.Sha256 = Convert.ToString(f["sha256"], CultureInfo.InvariantCulture);
                sf.Size = L(f["size"]);
                sf.Generation = f.Contains("generation") ? L(f["generation"]) : 0;
                try { sf.FullPath = PathRules.SafeJoin(s.Path, sf.Name); }
                catch (InvalidOperationException e) { throw new RestoreRefused("unsafe_name", mf, "manifest " + mf + ": " + e.Message); }
                s.Files.Add(sf);
            }
            return s;
        }

        // Every file exists with the size and SHA-256 its manifest records.
        public void CheckFiles()
        {
            foreach (SetFile f in Files)
            {
                if (!File.Exists(f.FullPath))
                    throw new RestoreRefused("missing_file", f.FullPath, "backup set " + Path + " is missing " + f.Name + " (listed in its manifest)");
                long size = new FileInfo(f.FullPath).Length;
                if (size != f.Size)
                    throw new RestoreRefused("hash_mismatch", f.FullPath, "backup set " + Path + ": " + f.Name + " has " + size.ToString(CultureInfo.InvariantCulture)
                        + " bytes, the manifest records " + f.Size.ToString(CultureInfo.InvariantCulture));
                string sha = Restore.Sha256Of(f.FullPath, null);
                if (!string.Equals(sha, f.Sha256, StringComparison.OrdinalIgnoreCase))
                    throw new RestoreRefused("hash_mismatch", f.FullPath, "backup set " + Path + ": the SHA-256 of " + f.Name + " (" + sha
                        + ") does not match its manifest (" + f.Sha256 + ")");
            }
            for (uint g = GenLow; g <= GenHigh; g++)
                if (LogFile(g) == null)
                    throw new RestoreRefused("missing_file", Path, "backup set " + Path + " lists no log for generation " + g.ToString(CultureInfo.InvariantCulture)
                        + " of its range " + Range);
        }

        public SetFile LogFile(uint gen)
        {
            foreach (SetFile f in Files) if (f.Role == "log" && f.Generation == gen) return f;
            return null;
        }

        public IDictionary History(string source, string key)
        {
            foreach (IDictionary d in Databases)
                if (string.Equals(Convert.ToString(d["source"], CultureInfo.InvariantCulture), source, PathRules.Cmp))
                    return d[key] as IDictionary;
            return null;
        }

        public static bool SameRange(IDictionary bk, uint low, uint high)
        {
            return bk != null && L(bk["gen_low"]) == low && L(bk["gen_high"]) == high;
        }

        public static string RangeOf(IDictionary bk)
        {
            if (bk == null || L(bk["gen_low"]) == 0) return "none";
            return L(bk["gen_low"]).ToString(CultureInfo.InvariantCulture) + "-" + L(bk["gen_high"]).ToString(CultureInfo.InvariantCulture);
        }
    }

    internal sealed class RestoreOptions
    {
        public string BackupSet, LogPath, SystemPath, Scratch, Service, InstanceName;
        public List<string> Incrementals = new List<string>();
        public List<KeyValuePair<string, string>> Map = new List<KeyValuePair<string, string>>();
        public bool Force, Drill;

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
            if (o.Drill && (o.Map.Count > 0 || o.LogPath != null || o.SystemPath != null || o.Force))
                throw new InvalidOption("drill", "a drill restores into its scratch directory only; restore_map, log_path, system_path and force do not apply");
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
            foreach (string d in missing) { Directory.CreateDirectory(d); CreatedDirs.Add(d); }
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
            Dictionary<string, object> r = new Dictionary<string, object>();
            r["trace"] = trace.Entries;
            r["failed_call"] = null;
            r["invalid"] = null;
            r["refused"] = null;
            r["drill"] = false;
            r["chain"] = null;
            r["restored"] = new List<object>();
            r["written"] = new List<object>();
            r["undone"] = new List<object>();
            r["drill_report"] = null;
            r["check"] = null;
            r["warnings"] = new List<object>();
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
            }
            catch (InvalidOption e) { result["invalid"] = e.ToDict(); return result; }
            catch (RestoreRefused e) { result["refused"] = e.ToDict(); return result; }
            try
            {
                if (o.Drill) Drill(o, chain, api, result, checkMode);
                else RestoreTo(o, chain, api, result, checkMode);
            }
            catch (InvalidOption e) { result["invalid"] = e.ToDict(); }
            catch (RestoreRefused e) { result["refused"] = e.ToDict(); }
            catch (Exception e) { if (!NativeLoad.IsLoadFailure(e)) throw; result["failed_call"] = NativeLoad.Failure(e, "esent.dll").ToDict(); }
            return result;
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
                AttachReadOnly(o, chain, targets, logPath, api, result, checks);
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
                chain.Add(s);
            }
            foreach (ChainSet s in chain) s.CheckFiles();
            string signLog = null, signDb = null;
            foreach (IDictionary d in full.Databases)
                if (d["file"] != null) { signLog = Convert.ToString(d["sign_log"], CultureInfo.InvariantCulture); signDb = Convert.ToString(d["sign_db"], CultureInfo.InvariantCulture); break; }
            if (signLog == null) throw new RestoreRefused("not_a_full_set", full.Path, "backup set " + full.Path + " holds no streamed database");
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
                    if (s.GenLow > high + 1)
                        throw new RestoreRefused("chain_gap", s.Path, "the chain has a gap: no set holds log generations " + (high + 1).ToString(CultureInfo.InvariantCulture) + "-"
                            + (s.GenLow - 1).ToString(CultureInfo.InvariantCulture) + " between " + chain[i - 1].Path + " and " + s.Path + " (an incremental is missing)");
                    if (s.GenHigh <= high)
                        throw new RestoreRefused("chain_order", s.Path, "incremental " + s.Path + " (generations " + s.Range + ") is not newer than the chain before it (up to generation "
                            + high.ToString(CultureInfo.InvariantCulture) + "); list the incrementals oldest first");
                    foreach (IDictionary d in s.Databases)
                    {
                        string src = Convert.ToString(d["source"], CultureInfo.InvariantCulture);
                        if (!string.Equals(Convert.ToString(d["sign_db"], CultureInfo.InvariantCulture), signDb, StringComparison.OrdinalIgnoreCase) && full.Databases.Count == 1)
                            throw new RestoreRefused("signature_mismatch", s.Path, "incremental " + s.Path + " belongs to another database (" + src + " has a different database signature)");
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
            return chain;
        }

        private static void CheckLogHeader(ChainSet s, SetFile f, uint gen, string signLog)
        {
            byte[] h = ReadPrefix(f.FullPath, 4096);
            if (h == null || DbFacts.U32(h, 0) != XorOld(h, 4096))
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

        private static List<Target> Targets(RestoreOptions o, ChainSet full, string dbDir)
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
                foreach (SetFile f in full.Files) if (f.FullPath == x.SetFile) x.Sha256 = f.Sha256;
                if (dbDir != null) x.Path = System.IO.Path.Combine(dbDir, System.IO.Path.GetFileName(x.SetFile));
                else
                {
                    x.Path = PathRules.Normalize(x.Source);
                    foreach (KeyValuePair<string, string> kv in o.Map)
                        if (string.Equals(PathRules.Normalize(kv.Key), x.Path, PathRules.Cmp) || string.Equals(kv.Key, x.Source, PathRules.Cmp)) x.Path = kv.Value;
                }
                if (!used.Add(x.Path)) throw new InvalidOption("restore_map", "two databases would be restored to " + x.Path);
                t.Add(x);
            }
            foreach (KeyValuePair<string, string> kv in o.Map)
            {
                bool known = false;
                foreach (Target x in t) if (string.Equals(kv.Key, x.Source, PathRules.Cmp) || string.Equals(PathRules.Normalize(kv.Key), PathRules.Normalize(x.Source), PathRules.Cmp)) known = true;
                if (!known) throw new InvalidOption("restore_map", "restore_map source '" + kv.Key + "' is not a database of backup set " + full.Path);
            }
            return t;
        }

        // A database that esent or another process holds open cannot be restored over.
        private static void CheckNotInUse(JetApi api, string path)
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

        private static void CheckService(string service)
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

        // ---- restore to the original or new paths ----

        private static void RestoreTo(RestoreOptions o, List<ChainSet> chain, JetApi api, Dictionary<string, object> result, bool checkMode)
        {
            ChainSet full = chain[0], last = chain[chain.Count - 1];
            string srcLog = full.Source != null ? Convert.ToString(full.Source["log_path"], CultureInfo.InvariantCulture) : null;
            string srcSys = full.Source != null ? Convert.ToString(full.Source["system_path"], CultureInfo.InvariantCulture) : null;
            string logPath = PathRules.Normalize(o.LogPath ?? srcLog);
            string sysPath = PathRules.Normalize(o.SystemPath ?? (o.LogPath != null ? o.LogPath : (srcSys ?? srcLog)));
            List<Target> targets = Targets(o, full, null);
            string curLog = Path.Combine(logPath, LogName(full.BaseName, ".log"));
            string chk = Path.Combine(sysPath, LogName(full.BaseName, ".chk"));
            CheckService(o.Service);
            foreach (Target t in targets) CheckNotInUse(api, t.Path);
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
                ((List<object>)result["warnings"]).AddRange(OtherLogs(logPath, full.BaseName, last.GenHigh));
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
        private static List<object> OtherLogs(string logPath, string baseName, uint high)
        {
            List<object> w = new List<object>();
            try
            {
                foreach (string f in Directory.GetFiles(logPath, baseName + "*.log"))
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

        private static Dictionary<string, object> CheckFacts(List<ChainSet> chain, List<Target> targets, string logPath, string sysPath, List<string> existing)
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
        private static bool RestoreCore(List<ChainSet> chain, List<Target> targets, string logPath, string sysPath, string scratchRoot,
            JetApi api, Dictionary<string, object> result, Changes changes)
        {
            ChainSet full = chain[0];
            uint low = full.GenLow, high = chain[chain.Count - 1].GenHigh;
            foreach (Target t in targets)
            {
                changes.Written.Add(t.Path);
                string sha = Sha256Of(t.SetFile, t.Path);
                api.Trace.Add("CopyFile", 0, t.SetFile + " -> " + t.Path + " sha256=" + sha);
                if (!string.Equals(sha, t.Sha256, StringComparison.OrdinalIgnoreCase))
                    throw new RestoreRefused("hash_mismatch", t.SetFile, "the streamed database " + t.SetFile + " changed while it was copied (SHA-256 " + sha + ")");
            }
            string rlogs = Path.Combine(scratchRoot, "ese-restore-logs-" + Guid.NewGuid().ToString("N"));
            PrivateDirectory.Create(rlogs);
            try
            {
                foreach (KeyValuePair<uint, string> kv in ChainLogs(chain))
                    File.Copy(kv.Value, Path.Combine(rlogs, Path.GetFileName(kv.Value)), true);
                api.Trace.Add("CopyFile", 0, "logs " + low.ToString(CultureInfo.InvariantCulture) + "-" + high.ToString(CultureInfo.InvariantCulture) + " -> " + rlogs);
                List<KeyValuePair<string, string>> map = new List<KeyValuePair<string, string>>();
                foreach (Target t in targets) map.Add(new KeyValuePair<string, string>(t.Source, t.Path));
                long pageSize;
                uint want = targets.Count > 0 ? targets[0].PageSize : 4096;
                if (api.GetGlobalParam(Jet.ParamDatabasePageSize, "JET_paramDatabasePageSize", out pageSize) >= 0 && pageSize != want)
                    api.SetGlobalParam(Jet.ParamDatabasePageSize, want, "JET_paramDatabasePageSize");
                int err = api.ExternalRestore(PathRules.WithSeparator(sysPath), PathRules.WithSeparator(logPath), map, PathRules.WithSeparator(rlogs), low, high, full.BaseName);
                if (err < 0)
                {
                    result["failed_call"] = new JetFailure("JetExternalRestore2W", err, "generations " + low.ToString(CultureInfo.InvariantCulture) + "-" + high.ToString(CultureInfo.InvariantCulture)).ToDict();
                    result["written"] = new List<object>(changes.Written);
                    changes.Written.Add(Path.Combine(logPath, full.BaseName + ".log"));
                    changes.Written.Add(Path.Combine(sysPath, full.BaseName + ".chk"));
                    return false;
                }
                changes.Written.Add(Path.Combine(logPath, full.BaseName + ".log"));
                changes.Written.Add(Path.Combine(sysPath, full.BaseName + ".chk"));
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
            byte[] h = ReadPrefix(path, 4096);
            d["gen_max_committed"] = h != null ? (long)DbFacts.U32(h, 416) : 0L;  // DBFILEHDR le_lGenMaxCommitted
            d["size"] = new FileInfo(path).Length;
            return d;
        }

        // ---- drill: restore into a scratch directory, attach read-only, check, remove ----

        private static void Drill(RestoreOptions o, List<ChainSet> chain, JetApi api, Dictionary<string, object> result, bool checkMode)
        {
            string root = o.Scratch ?? Path.GetTempPath();
            if (!Directory.Exists(root)) throw new InvalidOption("scratch", "scratch directory " + root + " does not exist");
            string scratch = Path.Combine(root, "ese-drill-" + Guid.NewGuid().ToString("N"));
            Dictionary<string, object> report = new Dictionary<string, object>();
            result["drill_report"] = report;
            report["scratch"] = scratch;
            report["gen_low"] = (long)chain[0].GenLow;
            report["gen_high"] = (long)chain[chain.Count - 1].GenHigh;
            List<Target> targets = Targets(o, chain[0], Path.Combine(scratch, "databases"));
            if (checkMode)
            {
                result["check"] = CheckFacts(chain, targets, Path.Combine(scratch, "logs"), Path.Combine(scratch, "logs"), new List<string>());
                report["passed"] = null;
                return;
            }
            long bytes = 0;
            foreach (Target t in targets) bytes += new FileInfo(t.SetFile).Length;
            long free = PathRules.FreeBytes(root);
            if (free >= 0 && free < bytes + (64L << 20) && Environment.GetEnvironmentVariable("ESE_BACKUP_TEST_IGNORE_FREE_SPACE") != "1")
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
                if (!RestoreCore(chain, targets, logs, logs, scratch, api, result, changes)) { report["passed"] = false; return; }
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
        private static bool AttachReadOnly(RestoreOptions o, List<ChainSet> chain, List<Target> targets, string logs, JetApi api,
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
                    Dictionary<string, object> h = HeaderFacts(api, t.Path);
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

        // Page checksums of the restored file (ese-file-format.md section 5): headers (legacy XOR), data pages
        // (legacy XOR + pgno, or XOR+ECC with flag 0x2000; four blocks for 16/32 KiB pages). All-zero pages are unused.
        private static bool VerifyPages(List<Target> targets, List<object> checks)
        {
            bool all = true;
            foreach (Target t in targets)
            {
                long pages = 0, empty = 0;
                List<object> bad = new List<object>();
                int cb = (int)t.PageSize;
                byte[] page = new byte[cb];
                using (FileStream fs = new FileStream(t.Path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1 << 20))
                {
                    long index = 0;
                    while (ReadFull(fs, page))
                    {
                        if (DbFacts.AllZero(page)) empty++;
                        else if (index < 2 ? DbFacts.U32(page, 0) != XorOld(page, cb) : !PageOk(page, cb, (uint)(index - 1)))
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
                    + empty.ToString(CultureInfo.InvariantCulture) + " unused, " + bad.Count.ToString(CultureInfo.InvariantCulture) + " bad");
                c["pages"] = pages; c["unused_pages"] = empty; c["bad_pages"] = bad;
                checks.Add(c);
            }
            return all;
        }

        private static bool ReadFull(Stream s, byte[] buf)
        {
            int got = 0;
            while (got < buf.Length)
            {
                int n = s.Read(buf, got, buf.Length - got);
                if (n <= 0) return false;
                got += n;
            }
            return true;
        }

        internal static uint XorOld(byte[] b, int cb)
        {
            uint x = 0x89ABCDEF;
            for (int i = 4; i < cb; i += 4) x ^= BitConverter.ToUInt32(b, i);
            return x;
        }

        private static bool Parity(uint v)
        {
            v ^= v >> 16; v ^= v >> 8; v ^= v >> 4; v ^= v >> 2; v ^= v >> 1;
            return (v & 1) != 0;
        }

        private static ulong EccXor(byte[] b, int off, int len, uint pgno, bool headerBlock)
        {
            uint p = 0, c0 = 0, c1 = 0, c2 = 0, c3 = 0, idx = 0xFF800000;
            for (int i = 0; i < len; i += 16)
            {
                uint a = BitConverter.ToUInt32(b, off + i), b1 = BitConverter.ToUInt32(b, off + i + 4);
                uint c = BitConverter.ToUInt32(b, off + i + 8), e = BitConverter.ToUInt32(b, off + i + 12);
                if (headerBlock && i == 0) { a = 0; b1 = 0; }
                c0 ^= a; c1 ^= b1; c2 ^= c; c3 ^= e;
                if (Parity(a ^ b1 ^ c ^ e)) p ^= idx;
                idx = unchecked(idx + 0xFF800080);
            }
            if (Parity(c0 ^ c1)) p |= 0x00400000;
            if (Parity(c2 ^ c3)) p |= 0x00000040;
            uint r0 = c0 ^ c2, r1 = c1 ^ c3;
            if (Parity(r0)) p |= 0x00200000;
            if (Parity(r1)) p |= 0x00000020;
            uint x = r0 ^ r1, r = 0, j = 0xFFFF0000;
            for (int bit = 0; bit < 32; bit++)
            {
                if ((x & (1u << bit)) != 0) r ^= j;
                j = unchecked(j + 0xFFFF0001);
            }
            uint mask = unchecked((uint)((ulong)len << 19) - 1);
            uint ecc = (p & 0xFFE0FFE0 & mask) | (r & 0x001F001F);
            return ((ulong)ecc << 32) | (x ^ pgno);
        }

        private static bool PageOk(byte[] page, int cb, uint pgno)
        {
            if (cb >= 16384)
            {
                int blk = cb / 4;
                for (int k = 1; k < 4; k++)
                    if (BitConverter.ToUInt64(page, 40 + 8 * (k - 1)) != EccXor(page, k * blk, blk, pgno, false)) return false;
                return BitConverter.ToUInt64(page, 0) == EccXor(page, 0, blk, pgno, true) && BitConverter.ToUInt32(page, 64) == pgno;
            }
            if ((BitConverter.ToUInt32(page, 36) & 0x2000) != 0) return BitConverter.ToUInt64(page, 0) == EccXor(page, 0, cb, pgno, true);
            return BitConverter.ToUInt32(page, 0) == XorOld(page, cb) && BitConverter.ToUInt32(page, 4) == pgno;
        }

        // ---- small helpers ----

        private static byte[] ReadPrefix(string path, int n)
        {
            byte[] b = new byte[n];
            using (FileStream fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
                return ReadFull(fs, b) ? b : null;
        }

        // SHA-256 of a file; with copyTo, the file is copied there while it is hashed.
        internal static string Sha256Of(string path, string copyTo)
        {
            byte[] buf = new byte[1 << 20];
            GCHandle pin = GCHandle.Alloc(buf, GCHandleType.Pinned);
            try
            {
                using (StreamHash h = StreamHash.Create())
                using (FileStream fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16))
                using (FileStream outp = copyTo != null ? new FileStream(copyTo, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16) : null)
                {
                    int n;
                    while ((n = fs.Read(buf, 0, buf.Length)) > 0)
                    {
                        h.Append(pin.AddrOfPinnedObject(), buf, n);
                        if (outp != null) outp.Write(buf, 0, n);
                    }
                    return DbFacts.HexBytes(h.Finish());
                }
            }
            finally { pin.Free(); }
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
