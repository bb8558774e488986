// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
// ese.backup engine, file facts: the ESE database header (DbFacts), ESE's page checksums, file bytes and
// hashes, and the project's own backup-set format (BackupManifest), read back from a share that others may
// write (ChainSet, SetEntry, Ending). C# 5, references System and System.Core only (docs/architecture.md).

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

namespace ansible_collections.ese.backup.plugins.module_utils._EseFormat
{
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

    // ESE's page checksums (checksumu.cxx in Microsoft's ESE source): the legacy XOR of headers and old pages,
    // and XOR+ECC of pages with the new-checksum flag; the same rules as ese_format.checksum on the controller.
    internal static class PageChecksum
    {
        public const string PageOkay = "ok", PageZero = "zero", PageBad = "bad", PageCorrectable = "correctable", PageBadPgno = "bad_pgno";

        internal static uint XorOld(byte[] b, int cb)
        {
            uint x = 0x89ABCDEF;
            for (int i = 4; i < cb; i += 4) x ^= BitConverter.ToUInt32(b, i);
            return x;
        }

        internal static bool Parity(uint v)
        {
            v ^= v >> 16; v ^= v >> 8; v ^= v >> 4; v ^= v >> 2; v ^= v >> 1;
            return (v & 1) != 0;
        }

        internal static ulong EccXor(byte[] b, int off, int len, uint pgno, bool headerBlock)
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

        // The verdict for one data page, as ESE checks it (checksumu.cxx; the same rules as ese_format.checksum.page_status):
        // without flag 0x2000 the old XOR on every page size (and zero checksum slots 40-63 on 16/32 KiB pages),
        // with it XOR+ECC (one block up to 8 KiB, four blocks above, page number at offset 64); a single-bit
        // error that ESE's ECC corrects is "correctable".
        internal static string PageStatus(byte[] page, int cb, uint pgno)
        {
            if (DbFacts.AllZero(page)) return PageZero;
            if ((BitConverter.ToUInt32(page, 36) & 0x2000) == 0)
            {
                if (BitConverter.ToUInt32(page, 0) != XorOld(page, cb)) return PageBad;
                if (BitConverter.ToUInt32(page, 4) != pgno) return PageBadPgno;
                if (cb > 8192) for (int i = 40; i < 64; i++) if (page[i] != 0) return PageBad;
                return PageOkay;
            }
            if (cb <= 8192)
            {
                ulong stored = BitConverter.ToUInt64(page, 0), got = EccXor(page, 0, cb, pgno, true);
                if (stored == got) return PageOkay;
                return CorruptedBit(got, stored, cb, true) >= 0 ? PageCorrectable : PageBad;
            }
            int bs = cb / 4, errors = 0;
            ulong[] slots = { BitConverter.ToUInt64(page, 0), BitConverter.ToUInt64(page, 40), BitConverter.ToUInt64(page, 48), BitConverter.ToUInt64(page, 56) };
            for (int k = 0; k < 4; k++)
            {
                ulong got = EccXor(page, k * bs, bs, pgno, k == 0);
                if (slots[k] == got) continue;
                long ibit = CorruptedBit(got, slots[k], bs, k == 0);
                if (ibit < 0) return PageBad;
                errors++;
                if (k == 0 && errors == 1 && ibit >= 40 * 8 && ibit < 64 * 8)
                {
                    long j = ibit - 40 * 8; // TryFixPage: the bit is in another block's stored checksum
                    slots[1 + j / 64] ^= 1UL << (int)(j % 64);
                }
            }
            if (errors > 0) return PageCorrectable;
            return BitConverter.ToUInt32(page, 64) != pgno ? PageBadPgno : PageOkay;
        }

        // FECCErrorIsCorrectable and FTryFixBlock: the bit ESE would flip, or -1.
        internal static long CorruptedBit(ulong expected, ulong actual, int blockSize, bool headerBlock)
        {
            uint diff = (uint)(((expected ^ actual) >> 32) & 0xFFFFFFFF), xdiff = (uint)((expected ^ actual) & 0xFFFFFFFF);
            uint nbits = (uint)(blockSize * 8 - 1);
            if ((((diff >> 16) ^ diff) & nbits) != nbits || xdiff == 0 || (xdiff & (xdiff - 1)) != 0) return -1;
            long ibit = diff & 0xFFFF;
            if (ibit >= blockSize * 8 || (headerBlock && ibit == 9 * 32 + 13)) return -1;
            return ibit;
        }
    }

    // Reading files of a database, a log set or a backup set.
    internal static class FileBytes
    {
        // The first n bytes of a file (null when it is shorter); the file may be open elsewhere, even for delete.
        public static byte[] ReadPrefix(string path, int n)
        {
            byte[] b = new byte[n];
            using (FileStream fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
                return ReadFull(fs, b) ? b : null;
        }

        // Fills buf from s; false when the stream ends first.
        public static bool ReadFull(Stream s, byte[] buf)
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

        // SHA-256 of a file; with copyTo, the file is copied there while it is hashed (beforeCopy restricts the
        // new file before a byte is in it).
        public static string Sha256Of(string path, string copyTo, Action<string> beforeCopy)
        {
            byte[] buf = new byte[1 << 20];
            GCHandle pin = GCHandle.Alloc(buf, GCHandleType.Pinned);
            try
            {
                using (StreamHash h = StreamHash.Create())
                using (FileStream fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16))
                using (FileStream outp = copyTo != null ? new FileStream(copyTo, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16) : null)
                {
                    if (copyTo != null && beforeCopy != null) beforeCopy(copyTo);
                    int n;
                    while ((n = fs.Read(buf, 0, buf.Length)) > 0)
                    {
                        h.Append(pin.AddrOfPinnedObject(), buf, 0, n);
                        if (outp != null) outp.Write(buf, 0, n);
                    }
                    return DbFacts.HexBytes(h.Finish());
                }
            }
            finally { pin.Free(); }
        }
    }

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

    // The backup set's manifest.json (format ese.backup/1): the one place that names the format, builds a
    // manifest's fixed part, writes it, and reads it back from a share under the size and depth limits.
    internal static class BackupManifest
    {
        public const string FileName = "manifest.json", Format = "ese.backup/1", ToolVersion = "0.1.0"; // galaxy.yml version

        // The fixed part of a new manifest: format, tool, type and creation time.
        public static Dictionary<string, object> New(string type)
        {
            Dictionary<string, object> m = new Dictionary<string, object>();
            m["format"] = Format;
            Dictionary<string, object> tool = new Dictionary<string, object>();
            tool["name"] = "ese.backup"; tool["version"] = ToolVersion;
            m["tool"] = tool;
            m["type"] = type;
            m["created"] = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
            return m;
        }

        // Written once, never over another file, and flushed before the set is published.
        public static void Write(string path, Dictionary<string, object> manifest)
        {
            byte[] data = new UTF8Encoding(false).GetBytes(Json.Write(manifest, true) + "\n");
            using (FileStream fs = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                fs.Write(data, 0, data.Length);
                fs.Flush(true);
            }
        }

        public const string TooLarge = "too_large", TooDeep = "too_deep", NotJson = "not_json", OtherFormat = "other_format";

        // The manifest at path (a regular file: the caller checked), or null with the problem (one of the four
        // above) and a message that names the file.
        public static IDictionary Read(string path, out string problem, out string message)
        {
            problem = null; message = null;
            if (new FileInfo(path).Length > SetEntry.MaxRecordBytes)
            {
                problem = TooLarge; message = "manifest " + path + " is larger than 16 MiB: it is not read";
                return null;
            }
            string text = File.ReadAllText(path, Encoding.UTF8);
            if (SetEntry.Nesting(text) > SetEntry.MaxNesting)
            {
                problem = TooDeep; message = "manifest " + path + " is nested deeper than 64 levels: it is not parsed";
                return null;
            }
            IDictionary m;
            try { m = Json.Parse(text) as IDictionary; }
            catch (Exception e)
            {
                if (!(e is FormatException || e is InvalidOperationException || e is ArgumentException || e is InsufficientExecutionStackException || e is OverflowException)) throw;
                problem = NotJson; message = "manifest " + path + " cannot be read: " + e.Message;
                return null;
            }
            if (m == null || !Format.Equals(m["format"]))
            {
                problem = OtherFormat; message = "manifest " + path + " is not in the " + Format + " format";
                return null;
            }
            return m;
        }
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
            string mf = System.IO.Path.Combine(s.Path, BackupManifest.FileName);
            string kind = SetEntry.Kind(mf);
            if (kind == SetEntry.Missing) throw new RestoreRefused("not_a_set", s.Path, "'" + s.Path + "' (" + option + ") is not a backup set: it has no manifest.json");
            SetEntry.RequireRegular(s.Path, mf, kind);
            string problem, why;
            IDictionary m = BackupManifest.Read(mf, out problem, out why);
            if (m == null) throw new RestoreRefused("manifest_unreadable", mf, why);
            s.Manifest = m;
            s.Type = Convert.ToString(m["type"], CultureInfo.InvariantCulture);
            s.Source = m["source"] as IDictionary;
            IDictionary logs = m["logs"] as IDictionary;
            if (logs == null || L(logs["gen_low"]) <= 0 || L(logs["gen_high"]) < L(logs["gen_low"]) || L(logs["gen_high"]) > uint.MaxValue - 1)
                throw new RestoreRefused("manifest_unreadable", mf, "manifest " + mf + " has no valid log generation range");
            s.GenLow = (uint)L(logs["gen_low"]); s.GenHigh = (uint)L(logs["gen_high"]);
            s.BaseName = logs["base_name"] as string;
            SetEntry.RequireBaseName(mf, "logs.base_name", s.BaseName);
            if (s.Source != null && s.Source.Contains("base_name") && s.Source["base_name"] != null)
                SetEntry.RequireBaseName(mf, "source.base_name", s.Source["base_name"] as string);
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
                sf.FullPath = SetEntry.Join(s.Path, mf, "files[].name", sf.Name);
                s.Files.Add(sf);
            }
            // databases[].file: a database file of this set, never a path out of it or another role's file.
            foreach (IDictionary d in s.Databases)
            {
                if (d["file"] == null) continue;
                string rel = d["file"] as string;
                string full = SetEntry.Join(s.Path, mf, "databases[].file", rel ?? Convert.ToString(d["file"], CultureInfo.InvariantCulture));
                SetFile listed = null;
                foreach (SetFile f in s.Files) if (string.Equals(f.FullPath, full, PathRules.Cmp)) listed = f;
                if (listed == null || listed.Role != "database")
                    throw new RestoreRefused("db_file_role", mf, "manifest " + mf + ": databases[].file '" + rel + "' is "
                        + (listed == null ? "not a file listed in the set" : "listed as a " + listed.Role + ", not a database file of the set"));
            }
            return s;
        }

        // Every file exists with the size and SHA-256 its manifest records.
        public void CheckFiles()
        {
            foreach (SetFile f in Files)
            {
                string kind = SetEntry.KindInside(Path, f.FullPath);
                if (kind == SetEntry.Missing)
                    throw new RestoreRefused("missing_file", f.FullPath, "backup set " + Path + " is missing " + f.Name + " (listed in its manifest)");
                SetEntry.RequireRegular(Path, f.FullPath, kind);
                long size = new FileInfo(f.FullPath).Length;
                if (size != f.Size)
                    throw new RestoreRefused("hash_mismatch", f.FullPath, "backup set " + Path + ": " + f.Name + " has " + size.ToString(CultureInfo.InvariantCulture)
                        + " bytes, the manifest records " + f.Size.ToString(CultureInfo.InvariantCulture));
                string sha = FileBytes.Sha256Of(f.FullPath, null, null);
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

    // A backup share is input that others may write: every file of a set is looked at without following a
    // link before it is opened, and only regular files inside the set are read (docs/security.md).
    internal static class SetEntry
    {
        public const string Missing = "missing", Regular = "regular", Directory_ = "directory", Link = "symlink", Other = "other";
        public const long MaxRecordBytes = 16L << 20;
        public const int MaxNesting = 64;

        // The deepest nesting of arrays and objects in a JSON text (strings skipped), so that a hostile
        // manifest is refused before a recursive parser could overflow the stack.
        public static int Nesting(string text)
        {
            int depth = 0, max = 0;
            bool inString = false;
            for (int i = 0; i < text.Length; i++)
            {
                char c = text[i];
                if (inString) { if (c == '\\') i++; else if (c == '"') inString = false; continue; }
                if (c == '"') inString = true;
                else if (c == '[' || c == '{') { if (++depth > max) max = depth; }
                else if (c == ']' || c == '}') depth--;
            }
            return max;
        }

        // The kind of a path, without following a symbolic link (or junction) at its last component.
        public static string Kind(string path)
        {
            if (!PathRules.IsWindows)
            {
                try
                {
                    byte[] st = new byte[256]; // struct statx: stx_mode (u16) at offset 28 on every architecture
                    if (Unix.statx(-100, path, 0x100, 0x1, st) == 0) // AT_FDCWD, AT_SYMLINK_NOFOLLOW, STATX_TYPE
                    {
                        int mode = BitConverter.ToUInt16(st, 28) & 0xF000;
                        return mode == 0x8000 ? Regular : mode == 0x4000 ? Directory_ : mode == 0xA000 ? Link : Other;
                    }
                    int errno = Marshal.GetLastWin32Error();
                    if (errno == 2 || errno == 20) return Missing; // ENOENT, ENOTDIR
                }
                catch (Exception e) { if (!NativeLoad.IsLoadFailure(e)) throw; }
            }
            FileAttributes a;
            try { a = File.GetAttributes(path); }
            catch (FileNotFoundException) { return Missing; }
            catch (DirectoryNotFoundException) { return Missing; }
            if ((a & FileAttributes.ReparsePoint) != 0) return Link;
            if ((a & FileAttributes.Directory) != 0) return Directory_;
            if ((a & FileAttributes.Device) != 0) return Other;
            return Regular;
        }

        // The kind of a file of a set, and of every folder between the set and it: a folder that is a link
        // (logs/ pointing elsewhere) makes the file a link too.
        public static string KindInside(string setPath, string fullPath)
        {
            string root = PathRules.Normalize(setPath);
            List<string> chain = new List<string>();
            for (string d = System.IO.Path.GetDirectoryName(fullPath); d != null && d.Length > root.Length && PathRules.SameOrInside(d, root); d = System.IO.Path.GetDirectoryName(d))
                chain.Add(d);
            chain.Reverse();
            foreach (string d in chain)
            {
                string k = Kind(d);
                if (k == Missing) return Missing;
                if (k == Link) throw new RestoreRefused("symlink", d, "backup set " + setPath + ": folder " + d + " is a symbolic link (or junction): restore does not follow it; a set must hold its own folders and regular files");
                if (k != Directory_) throw new RestoreRefused("not_regular", d, "backup set " + setPath + ": " + d + " is not a folder");
            }
            return Kind(fullPath);
        }

        public static void RequireRegular(string setPath, string path, string kind)
        {
            if (kind == Regular) return;
            if (kind == Link)
                throw new RestoreRefused("symlink", path, "backup set " + setPath + ": " + path + " is a symbolic link: restore does not follow it; a set must hold its own regular files");
            throw new RestoreRefused("not_regular", path, "backup set " + setPath + ": " + path + " is a " + (kind == Directory_ ? "folder" : "FIFO, socket or device") + ", not a regular file: it is not opened");
        }

        // A name of the manifest joined under the set: relative, '/'-separated, no '..', drive, backslash, device name.
        public static string Join(string setPath, string manifest, string field, string name)
        {
            string why = null;
            if (string.IsNullOrEmpty(name)) why = "is empty";
            else
            {
                foreach (char c in name) if (c < 0x20) { why = "has a control character"; break; }
                if (why == null)
                    foreach (string part in name.Split('/'))
                    {
                        string dev = Names.Device(part);
                        if (dev != null) why = "names the device " + dev;
                        if (part.EndsWith(".", StringComparison.Ordinal) && part != "." && part != "..") why = "has a part ending in a dot";
                    }
            }
            if (why == null)
            {
                try { return PathRules.SafeJoin(setPath, name); }
                catch (InvalidOperationException e) { why = e.Message; }
                catch (ArgumentException e) { why = e.Message; }
                catch (NotSupportedException e) { why = e.Message; }
            }
            throw new RestoreRefused("unsafe_name", manifest, "manifest " + manifest + ": " + field + " '" + name + "' " + (why.StartsWith("unsafe", StringComparison.Ordinal) || why.StartsWith("name", StringComparison.Ordinal) ? "is unsafe (" + why + ")" : why)
                + ": a name of a set must stay inside it (relative, '/'-separated, no '..', drive, root or backslash)");
        }

        // logs.base_name and source.base_name: exactly 3 characters, none of them a separator, dot or control character.
        public static void RequireBaseName(string manifest, string field, string b)
        {
            bool ok = b != null && b.Length == 3;
            if (ok) foreach (char c in b) if (c < 0x20 || "\\/:*?\"<>|.".IndexOf(c) >= 0) ok = false;
            if (!ok)
                throw new RestoreRefused("unsafe_base_name", manifest, "manifest " + manifest + ": " + field + " '" + b + "' is not a 3-character log base name "
                    + "(no path separator, dot or control character): the restored log names would not stay in the log folder");
        }

        private static class Unix
        {
            [DllImport("libc.so.6", CharSet = CharSet.Ansi, SetLastError = true)]
            internal static extern int statx(int dirfd, string path, int flags, uint mask, [Out] byte[] buf);
        }
    }

    // The ending record of a set (<set>/ending.json, format ese.backup/ending/1): how its backup session ended.
    internal static class Ending
    {
        public const string FileName = "ending.json", Format = "ese.backup/ending/1";
        private static readonly string[] RecordedAs = { "full", "copy", "incremental", "differential" };

        // Null when the set ended validly; else why not. facts gets what the record says.
        public static string Problem(ChainSet s, Dictionary<string, object> facts, out string problem)
        {
            string path = System.IO.Path.Combine(s.Path, FileName);
            facts["path"] = path;
            problem = null;
            string kind = SetEntry.Kind(path);
            if (kind == SetEntry.Missing) { problem = "no_ending"; facts["status"] = "missing"; return "has no ending record (" + FileName + "): whether its backup session ended validly is unknown"; }
            if (kind != SetEntry.Regular) { problem = "ending_unreadable"; facts["status"] = kind; return "has an ending record " + path + " that is a " + kind + ", not a regular file: it is not read"; }
            IDictionary e = null;
            string text = new FileInfo(path).Length <= 1L << 20 ? File.ReadAllText(path, Encoding.UTF8) : null;
            if (text != null && SetEntry.Nesting(text) <= SetEntry.MaxNesting)
            {
                try { e = Json.Parse(text) as IDictionary; }
                catch (Exception x) { if (!(x is FormatException || x is InvalidOperationException || x is ArgumentException || x is InsufficientExecutionStackException || x is OverflowException)) throw; }
            }
            if (e == null || !Format.Equals(e["format"])) { problem = "ending_unreadable"; facts["status"] = "unreadable"; return "has an ending record " + path + " that is not valid " + Format + " JSON (at most 1 MiB)"; }
            object ended = e["ended"], valid = e["backup_valid"], recorded = e["recorded_as"];
            IDictionary proof = e["proof"] as IDictionary;
            if (!(valid is bool) || proof == null || (recorded != null && Array.IndexOf(RecordedAs, recorded as string) < 0))
            {
                problem = "ending_unreadable"; facts["status"] = "unreadable";
                return "has an ending record " + path + " that is not valid " + Format + " JSON (backup_valid, recorded_as and proof)";
            }
            facts["ended"] = ended; facts["backup_valid"] = valid; facts["session"] = e["session"]; facts["recorded_as"] = recorded;
            List<string> why = new List<string>();
            // backup_valid is the engine's verdict (both proofs: the complete sequence and the header slot ESE filled),
            // the rule ese.backup.verify applies too (SET_ENDING_NOT_VALID).
            if (!true.Equals(valid))
            {
                why.Add("ended: " + Convert.ToString(ended ?? "null", CultureInfo.InvariantCulture));
                why.Add("backup_valid: false");
                if (false.Equals(proof["sequence_complete"])) why.Add("sequence_complete: false");
                if (false.Equals(proof["header_recorded"])) why.Add("header_recorded: false");
                IList missing = proof["missing"] as IList;
                if (missing != null && missing.Count > 0)
                {
                    List<string> m = new List<string>();
                    foreach (object o in missing) { if (m.Count == 5) { m.Add("..."); break; } m.Add(Convert.ToString(o, CultureInfo.InvariantCulture)); }
                    why.Add("missing: " + string.Join(", ", m.ToArray()));
                }
            }
            if (why.Count == 0) { facts["status"] = "valid"; return null; }
            problem = "backup_not_valid"; facts["status"] = "not_valid";
            return "records that its backup session did not end validly (" + string.Join("; ", why.ToArray()) + ")";
        }
    }
}
