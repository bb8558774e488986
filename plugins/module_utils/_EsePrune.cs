// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
// ese.backup engine: the host side of ese.backup.prune for a folder of sets on a Windows host's own disk
// (docs/prune.md, "Sets on a Windows host"). The engine only reads and removes: Scan hands the controller the
// raw manifest.json and ending.json of every set (read within the verifier's limits) and the facts of the
// staging folders, Verify checks sets' files against their manifests, and Remove deletes the sets the
// controller's planner (ese_format/retention.py) chose, in its order, each only while its manifest.json is
// the one scanned. C# 5, references System and System.Core only.

using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using ansible_collections.ese.backup.plugins.module_utils._EseHost;
using ansible_collections.ese.backup.plugins.module_utils._EseFormat;
using ansible_collections.ese.backup.plugins.module_utils.EseEngine;

namespace ansible_collections.ese.backup.plugins.module_utils._EsePrune
{
    public static class Prune
    {
        public const string KeptLogsFile = "kept-logs.json";
        // A test hook: the process exits (as if killed) while deleting the set after this many removals.
        public const string KillAfterVar = "ESE_BACKUP_TEST_PRUNE_KILL_AFTER";
        private const int ScanLimit = 10000;
        private static readonly string[] LeftoverEndings = { ".new", ".stale", ".prune" };

        // mode: scan, verify or remove (the internal module ese.backup.prune_host).
        public static Dictionary<string, object> HostTask(IDictionary args, bool checkMode)
        {
            string mode = Args.Str(args, "mode", "scan");
            if (mode == "verify") return Verify(args);
            if (mode == "remove") return Remove(args, checkMode);
            return Scan(args);
        }

        private static Dictionary<string, object> NewResult()
        {
            Dictionary<string, object> r = new Dictionary<string, object>();
            r["format"] = "ese.backup/prune-host/1";
            r["invalid"] = null;
            r["changed"] = false;
            return r;
        }

        private static string Root(IDictionary args)
        {
            string p = Args.Str(args, "path", null);
            if (p == null || p.Trim().Length == 0) throw new InvalidOption("path", "path: must name the folder of backup sets; it is empty");
            string root = PathRules.Normalize(p);
            if (SetEntry.Kind(root) != SetEntry.Directory_) throw new InvalidOption("path", "path: " + root + " is not a folder (a link to one is not followed)");
            return root;
        }

        private static bool IsPartial(string n) { return n.StartsWith(".", StringComparison.Ordinal) && n.EndsWith(".partial", StringComparison.Ordinal) && n.Length > "..partial".Length; }

        private static bool IsLeftover(string n)
        {
            if (!n.StartsWith(".", StringComparison.Ordinal)) return false;
            foreach (string e in LeftoverEndings) if (n.EndsWith(e, StringComparison.Ordinal)) return true;
            return false;
        }

        // Every set, staging folder and leftover under path, with what the controller needs to plan.
        public static Dictionary<string, object> Scan(IDictionary args)
        {
            Dictionary<string, object> r = NewResult();
            string root;
            try { root = Root(args); }
            catch (InvalidOption e) { r["invalid"] = e.ToDict(); return r; }
            r["path"] = root;
            List<object> sets = new List<object>(), staging = new List<object>();
            string[] names = Names(root);
            long budget = ScanBudget;
            DateTime now = DateTime.UtcNow;
            foreach (string n in names)
            {
                string full = Path.Combine(root, n);
                string kind = SetEntry.Kind(full);
                if (kind == SetEntry.Link)
                {
                    // a link to a folder that is a set or a staging folder (prune.py's rule): reported, not followed
                    if (Directory.Exists(full) && (IsPartial(n) || Directory.Exists(Path.Combine(full, BackupManifest.FileName)) || File.Exists(Path.Combine(full, BackupManifest.FileName))))
                        staging.Add(Staging(n, "link", 0, 0, null, null));
                    continue;
                }
                if (IsLeftover(n) && (kind == SetEntry.Directory_ || kind == SetEntry.Regular))
                {
                    long bytes; DateTime last;
                    if (kind == SetEntry.Directory_) Tree(full, out bytes, out last);
                    else { bytes = new FileInfo(full).Length; last = File.GetLastWriteTimeUtc(full); }
                    staging.Add(Staging(n, "leftover", bytes, (now - last).TotalSeconds, null, null));
                    continue;
                }
                if (kind != SetEntry.Directory_) continue;
                if (IsPartial(n))
                {
                    long bytes; DateTime last;
                    Tree(full, out bytes, out last);
                    Dictionary<string, object> facts = new Dictionary<string, object>();
                    string judged = StagingFolder.Judge(full, facts);
                    if (judged == null) continue; // published or removed meanwhile
                    bool kept = SetEntry.Kind(Path.Combine(full, KeptLogsFile)) != SetEntry.Missing;
                    staging.Add(Staging(n, kept ? "kept_logs" : "partial", bytes, (now - last).TotalSeconds, kept ? StagingFolder.KeptLogs : judged, facts));
                    continue;
                }
                string mf = Path.Combine(full, BackupManifest.FileName);
                if (SetEntry.Kind(mf) == SetEntry.Missing) continue;
                Dictionary<string, object> s = new Dictionary<string, object>();
                s["name"] = n;
                s["manifest"] = Record(mf, ref budget);
                s["ending"] = Record(Path.Combine(full, Ending.FileName), ref budget);
                long size; DateTime unused;
                Tree(full, out size, out unused);
                s["bytes"] = size;
                sets.Add(s);
            }
            r["sets"] = sets;
            r["staging"] = staging;
            return r;
        }

        private static string[] Names(string root)
        {
            List<string> l = new List<string>();
            foreach (string e in Directory.EnumerateFileSystemEntries(root)) l.Add(Path.GetFileName(e));
            string[] a = l.ToArray();
            Array.Sort(a, StringComparer.Ordinal);
            return a;
        }

        private static Dictionary<string, object> Staging(string name, string kind, long bytes, double quiet, string judged, Dictionary<string, object> facts)
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["name"] = name; d["kind"] = kind; d["bytes"] = bytes; d["quiet_seconds"] = Math.Max(0.0, quiet);
            d["judged"] = judged;
            d["why"] = facts != null && facts.ContainsKey("why") ? facts["why"] : null;
            Dictionary<string, object> run = null;
            if (facts != null && facts.ContainsKey("host"))
            {
                run = new Dictionary<string, object>();
                foreach (string k in new string[] { "host", "pid", "started" }) if (facts[k] is string || facts[k] is long || facts[k] is int) run[k] = facts[k];
            }
            d["run"] = run;
            return d;
        }

        // A record file of a set, as the controller's reader (ese_format.backupset) reads it: its kind without
        // following a link and, for a regular file, its first 16 MiB + 1 bytes (more is refused there), base64.
        // What one scan sends of all the records together: a share is input, and the result crosses WinRM.
        public const long ScanBudget = 64L << 20;

        // A record file's bytes and SHA-256 for the controller's readers. A file over the readers' limit, or past
        // the scan's budget, is sent as its size only (too_large or over_budget): its set is then held.
        private static Dictionary<string, object> Record(string path, ref long budget)
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            string kind = SetEntry.Kind(path);
            d["kind"] = kind == SetEntry.Regular ? "file" : kind == SetEntry.Directory_ ? "dir" : kind == SetEntry.Missing ? null : kind;
            d["data"] = null;
            d["sha256"] = null;
            if (kind != SetEntry.Regular) return d;
            try
            {
                long size = new FileInfo(path).Length;
                d["size"] = size;
                if (size > SetEntry.MaxRecordBytes) { d["too_large"] = true; return d; }
                if (size > budget) { d["over_budget"] = true; return d; }
                budget -= size;
                byte[] data = Prefix(path, (int)SetEntry.MaxRecordBytes + 1);
                d["data"] = Convert.ToBase64String(data);
                d["sha256"] = FileBytes.Sha256Of(path, null, null);
            }
            catch (IOException e) { d["error"] = e.Message; }
            catch (UnauthorizedAccessException e) { d["error"] = e.Message; }
            return d;
        }

        private static byte[] Prefix(string path, int max)
        {
            using (FileStream fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
            {
                byte[] buf = new byte[(int)Math.Min(fs.Length + 1, (long)max)];
                int got = 0;
                while (got < buf.Length)
                {
                    int n = fs.Read(buf, got, buf.Length - got);
                    if (n <= 0) break;
                    got += n;
                }
                if (got == buf.Length) return buf;
                byte[] b = new byte[got];
                Buffer.BlockCopy(buf, 0, b, 0, got);
                return b;
            }
        }

        // Bytes of the regular files of a folder and its newest write time (the folder and its entries), links
        // not followed, at most 10000 entries looked into: prune.py's tree_facts and the engine's LastWrite.
        private static void Tree(string dir, out long bytes, out DateTime last)
        {
            bytes = 0;
            last = Directory.GetLastWriteTimeUtc(dir);
            int seen = 0;
            Stack<string> todo = new Stack<string>();
            todo.Push(dir);
            while (todo.Count > 0)
            {
                string d = todo.Pop();
                IEnumerable<string> entries;
                try { entries = new List<string>(Directory.EnumerateFileSystemEntries(d)); }
                catch (IOException) { continue; }
                catch (UnauthorizedAccessException) { continue; }
                foreach (string e in entries)
                {
                    string k;
                    try
                    {
                        k = SetEntry.Kind(e);
                        DateTime t = File.GetLastWriteTimeUtc(e);
                        if (t > last) last = t;
                        seen++;
                        if (k == SetEntry.Regular) bytes += new FileInfo(e).Length;
                    }
                    catch (IOException) { continue; }
                    catch (UnauthorizedAccessException) { continue; }
                    if (k == SetEntry.Directory_ && seen < ScanLimit) todo.Push(e);
                }
            }
        }

        // Each set named in sets (a list of names): every file its manifest lists is there, regular, with its size
        // and SHA-256, and its log range is whole (the checks a restore makes before it starts).
        public static Dictionary<string, object> Verify(IDictionary args)
        {
            Dictionary<string, object> r = NewResult();
            string root;
            List<string> names;
            try { root = Root(args); names = SetNames(args); }
            catch (InvalidOption e) { r["invalid"] = e.ToDict(); return r; }
            List<object> outp = new List<object>();
            foreach (string n in names)
            {
                Dictionary<string, object> v = new Dictionary<string, object>();
                v["name"] = n;
                string why = null, code = null;
                try
                {
                    ChainSet s = ChainSet.Load(Path.Combine(root, n), "path");
                    s.CheckFiles();
                }
                catch (RestoreRefused e) { code = e.Problem; why = e.Message; }
                catch (InvalidOption e) { code = "unsafe_name"; why = e.Message; }
                catch (IOException e) { code = "unreadable"; why = e.Message; }
                catch (UnauthorizedAccessException e) { code = "unreadable"; why = e.Message; }
                v["verified"] = why == null;
                v["problem"] = code;
                v["detail"] = why;
                outp.Add(v);
            }
            r["verified"] = outp;
            return r;
        }

        private static List<string> SetNames(IDictionary args)
        {
            List<string> l = new List<string>();
            IList sets = Args.Get(args, "sets") as IList;
            if (sets == null) return l;
            foreach (object o in sets)
            {
                string n = o as string;
                IDictionary d = o as IDictionary;
                if (d != null) n = d["name"] as string;
                if (!SafeName(n)) throw new InvalidOption("sets", "sets: '" + Convert.ToString(n, CultureInfo.InvariantCulture) + "' is not the name of a folder of path");
                l.Add(n);
            }
            return l;
        }

        private static bool SafeName(string n)
        {
            if (string.IsNullOrEmpty(n) || n == "." || n == ".." || n.IndexOf('/') >= 0 || n.IndexOf('\\') >= 0 || n.IndexOf(':') >= 0) return false;
            foreach (char c in n) if (c < 0x20) return false;
            return true;
        }

        // Deletes, in the order given, each set of sets ({name, manifest_sha256}) whose manifest.json still has
        // that SHA-256, then the staging folders and leftovers of staging ({name, kind}) that are still stale and
        // quiet for longer than partial_older_than_hours. The first set that changed, or that cannot be removed,
        // stops the sets (the rest of the order may depend on it); a set is renamed aside (.<name>.<random>.prune)
        // before it is deleted, so that an interrupted run leaves whole sets under their names.
        public static Dictionary<string, object> Remove(IDictionary args, bool checkMode)
        {
            Dictionary<string, object> r = NewResult();
            string root;
            List<string> names;
            double older;
            try
            {
                root = Root(args); names = SetNames(args);
                older = Args.Get(args, "partial_older_than_hours") == null ? 24.0 : Convert.ToDouble(Args.Get(args, "partial_older_than_hours"), CultureInfo.InvariantCulture);
                if (!(older > 0)) throw new InvalidOption("partial_older_than_hours", "partial_older_than_hours: must be more than 0");
            }
            catch (InvalidOption e) { r["invalid"] = e.ToDict(); return r; }
            List<object> removed = new List<object>(), staging = new List<object>(), problems = new List<object>();
            r["removed"] = removed; r["staging"] = staging; r["problems"] = problems;
            string stop = null;
            int kill = -1;
            string hook = Environment.GetEnvironmentVariable(KillAfterVar);
            if (!string.IsNullOrEmpty(hook)) kill = int.Parse(hook, CultureInfo.InvariantCulture);
            IList sets = Args.Get(args, "sets") as IList ?? new ArrayList();
            for (int i = 0; i < names.Count && !checkMode; i++)
            {
                string n = names[i];
                IDictionary want = sets[i] as IDictionary;
                string sha = want == null ? null : want["manifest_sha256"] as string;
                string full = Path.Combine(root, n);
                string why = null, code = "PRUNE_REMOVE_FAILED";
                try
                {
                    string kind = SetEntry.Kind(full);
                    string mf = Path.Combine(full, BackupManifest.FileName);
                    if (kind != SetEntry.Directory_) why = full + " is " + (kind == SetEntry.Missing ? "gone" : "a " + kind + ", not a folder") + ": not removed";
                    else if (sha == null || SetEntry.Kind(mf) != SetEntry.Regular || !string.Equals(FileBytes.Sha256Of(mf, null, null), sha, StringComparison.OrdinalIgnoreCase))
                    {
                        code = "PRUNE_SET_CHANGED";
                        why = "its manifest.json changed since the scan (or is gone): not removed; run prune again to plan with what is there now";
                    }
                    else
                    {
                        string aside = Aside(root, n);
                        Directory.Move(full, aside);
                        if (kill >= 0 && removed.Count >= kill) { DeleteSome(aside); Environment.Exit(137); }
                        Delete(aside);
                    }
                }
                catch (IOException e) { why = e.Message; }
                catch (UnauthorizedAccessException e) { why = e.Message; }
                if (why != null)
                {
                    problems.Add(Problem(code, n, why));
                    stop = n + ": " + why;
                    break;
                }
                removed.Add(n);
                r["changed"] = true;
            }
            r["stopped"] = stop;
            IList stage = Args.Get(args, "staging") as IList ?? new ArrayList();
            foreach (object o in stage)
            {
                IDictionary s = o as IDictionary;
                if (s == null || checkMode) continue;
                string n = s["name"] as string, kind = s["kind"] as string;
                if (!SafeName(n)) continue;
                Dictionary<string, object> d = new Dictionary<string, object>();
                d["name"] = n;
                string why = null;
                try { why = RemoveStaging(root, n, kind, older * 3600.0); }
                catch (IOException e) { why = e.Message; }
                catch (UnauthorizedAccessException e) { why = e.Message; }
                d["removed"] = why == null;
                d["why"] = why;
                if (why != null) problems.Add(Problem("PRUNE_REMOVE_FAILED", n, why));
                else r["changed"] = true;
                staging.Add(d);
            }
            return r;
        }

        // Null when removed; else why it was kept.
        private static string RemoveStaging(string root, string n, string kind, double olderSeconds)
        {
            string full = Path.Combine(root, n);
            string k = SetEntry.Kind(full);
            if (kind == "partial")
            {
                if (!IsPartial(n) || k != SetEntry.Directory_) return full + " is gone or not a folder: not removed";
                Dictionary<string, object> facts = new Dictionary<string, object>();
                string judged = StagingFolder.Judge(full, facts);
                long bytes; DateTime last;
                Tree(full, out bytes, out last);
                if (judged != StagingFolder.Stale || (DateTime.UtcNow - last).TotalSeconds <= olderSeconds)
                    return full + " is " + (judged ?? "gone") + " now (" + Convert.ToString(facts.ContainsKey("why") ? facts["why"] : "written recently", CultureInfo.InvariantCulture) + "): kept";
                string aside = Aside(root, n);
                string before = RunText(full);
                Directory.Move(full, aside);
                Tree(aside, out bytes, out last);
                if (SetEntry.Kind(Path.Combine(aside, KeptLogsFile)) != SetEntry.Missing || RunText(aside) != before || (DateTime.UtcNow - last).TotalSeconds <= olderSeconds)
                {
                    try { Directory.Move(aside, full); }
                    catch (IOException e) { return full + " was written to while being removed, and could not be renamed back (" + e.Message + "): it stays as " + aside + ", which prune never removes while it holds " + KeptLogsFile; }
                    return full + " was written to while being removed: kept";
                }
                Delete(aside);
                return null;
            }
            if (kind != "leftover" || !IsLeftover(n)) return full + ": not a staging folder or leftover prune removes";
            DateTime t;
            if (k == SetEntry.Regular) t = File.GetLastWriteTimeUtc(full);
            else if (k == SetEntry.Directory_) { long b; Tree(full, out b, out t); }
            else return full + " is " + k + ": not removed";
            if ((DateTime.UtcNow - t).TotalSeconds <= olderSeconds) return full + " was written to since the scan: kept";
            if (k == SetEntry.Directory_ && SetEntry.Kind(Path.Combine(full, KeptLogsFile)) != SetEntry.Missing)
                return full + " holds " + KeptLogsFile + " (the only copy of truncated logs): kept";
            if (k == SetEntry.Regular) File.Delete(full);
            else if (n.EndsWith(".prune", StringComparison.Ordinal)) Delete(full);
            else { string aside = Aside(root, n); Directory.Move(full, aside); Delete(aside); }
            return null;
        }

        private static string RunText(string dir)
        {
            string f = Path.Combine(dir, StagingFolder.RunFile);
            try { return SetEntry.Kind(f) == SetEntry.Regular && new FileInfo(f).Length <= 65536 ? File.ReadAllText(f) : null; }
            catch (IOException) { return null; }
        }

        private static string Aside(string root, string name)
        {
            string hidden = name.StartsWith(".", StringComparison.Ordinal) ? name : "." + name;
            return Path.Combine(root, hidden + "." + Guid.NewGuid().ToString("N").Substring(0, 12) + ".prune");
        }

        // Deletes a folder renamed aside: links inside are removed, never followed.
        private static void Delete(string dir)
        {
            foreach (string e in Directory.GetFileSystemEntries(dir))
            {
                string k = SetEntry.Kind(e);
                if (k == SetEntry.Directory_) Delete(e);
                // a link goes itself, never what it points to (no attribute change through it either); on Windows
                // a folder link is removed as a folder, elsewhere as a file
                else if (k == SetEntry.Link && Directory.Exists(e) && Environment.OSVersion.Platform == PlatformID.Win32NT) Directory.Delete(e, false);
                else if (k == SetEntry.Link) File.Delete(e);
                else
                {
                    if ((File.GetAttributes(e) & FileAttributes.ReadOnly) != 0) File.SetAttributes(e, FileAttributes.Normal);
                    File.Delete(e);
                }
            }
            Directory.Delete(dir, false);
        }

        // The test hook's partial deletion: the first regular file found goes, the rest stays.
        private static void DeleteSome(string dir)
        {
            foreach (string e in Directory.GetFiles(dir)) { File.Delete(e); return; }
        }

        private static Dictionary<string, object> Problem(string code, string file, string detail)
        {
            Dictionary<string, object> p = new Dictionary<string, object>();
            p["code"] = code; p["severity"] = "error"; p["file"] = file; p["detail"] = detail;
            return p;
        }
    }
}
