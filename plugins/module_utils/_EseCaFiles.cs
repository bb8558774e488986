// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
// ese.backup engine: what a CA's backup through certadm.dll leaves out (windows-backup-apis.md §1, "What certutil
// and Backup-CARoleService add"), gathered on the CA host for ese.backup.ca_files: the CertSvc\Configuration
// registry key as .reg text (role ca_registry), %SystemRoot%\CAPolicy.inf when present (ca_policy) and, when asked,
// the CA certificate with its private key as a password-protected PFX (ca_key). The files go into a private
// temporary folder (PrivateDirectory) that the backup then copies with include_files; mode cleanup deletes it.
// The key password is never written into a result, a note or an exception message. C# 5, references System and
// System.Core only.

using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.Win32;
using ansible_collections.ese.backup.plugins.module_utils._EseHost;
// Every module's payload carries the engine and its [EseEngine] type accelerator (tests/static/test_payload.py).
using ansible_collections.ese.backup.plugins.module_utils.EseEngine;

#if CORECLR
// The X509Certificate2 constructors that load PKCS#12 are obsolete from .NET 9 (SYSLIB0057; Add-CSharpType fails
// on warnings). Their replacement, X509CertificateLoader, is not in .NET 8 (PowerShell 7.4): the same calls on
// every runtime.
#pragma warning disable SYSLIB0057
#endif

namespace ansible_collections.ese.backup.plugins.module_utils._EseCaFiles
{
    public static class CaFiles
    {
        public const string Format = "ese.backup/ca-files/1";
        // Test hooks (off Windows only). A relative path is taken under the Windows directory's stand-in.
        // The registry key as JSON: {"values": [{"name", "type" (REG_SZ, REG_EXPAND_SZ, REG_MULTI_SZ, REG_DWORD,
        // REG_QWORD, REG_BINARY), "data"}], "keys": {"<name>": {...}}} (REG_BINARY data in hex).
        public const string TestRegistryVar = "ESE_BACKUP_TEST_CA_REGISTRY";
        // A folder of *.pfx files (no password) standing in for LocalMachine\My; <file>.pfx.json beside one may say
        // {"provider": "<key storage provider>", "exportable": false}.
        public const string TestCertStoreVar = "ESE_BACKUP_TEST_CA_CERTS";
        // The Windows directory's stand-in, as _EseRestore.cs reads it (its first entry).
        public const string TestWindowsDirVar = "ESE_BACKUP_TEST_WINDOWS_DIR";
        public const string RegistryPath = @"SYSTEM\CurrentControlSet\Services\CertSvc\Configuration";
        public const string SoftwareKsp = "Microsoft Software Key Storage Provider";
        public const string RoleRegistry = "ca_registry", RolePolicy = "ca_policy", RoleKey = "ca_key";
        public const string FolderPrefix = "ese-ca-files-";

        // mode: collect (default) or cleanup (the internal module ese.backup.ca_files).
        public static Dictionary<string, object> HostTask(IDictionary args, bool checkMode)
        {
            Dictionary<string, object> r = new Dictionary<string, object>();
            r["format"] = Format;
            r["invalid"] = null;
            r["changed"] = false;
            r["notes"] = new List<object>();
            r["warnings"] = new List<object>();
            try
            {
                string mode = Args.Choice(args, "mode", "collect", "collect", "cleanup");
                r["mode"] = mode;
                if (mode == "cleanup") Cleanup(args, checkMode, r);
                else Collect(args, checkMode, r);
            }
            catch (InvalidOption e)
            {
                r["invalid"] = e.ToDict();
                r["failed"] = true;
                r["msg"] = e.Message;
            }
            catch (Exception e)
            {
                if (e is OutOfMemoryException) throw;
                // Messages here never carry the key password: it is only ever handed to Export.
                r["failed"] = true;
                r["msg"] = "ca_files: " + e.GetType().Name + ": " + e.Message;
            }
            return r;
        }

        // ---------------------------------------------------------------- collect

        private static void Collect(IDictionary args, bool checkMode, Dictionary<string, object> r)
        {
            bool key = Args.Bool(args, "key", false);
            string password = Args.Str(args, "key_password", null);
            if (key && string.IsNullOrEmpty(password))
                throw new InvalidOption("key_password", "key_password: exporting the CA key (key: true) needs a password for the PFX; give key_password (from a vaulted variable)");
            string parent = Args.Str(args, "temp_path", null);
            parent = parent == null ? Path.GetTempPath() : PathRules.Normalize(parent);
            if (!Directory.Exists(parent)) throw new InvalidOption("temp_path", "temp_path: " + parent + " is not a folder; name an existing folder for the private temporary folder");

            RegNode config = ReadRegistry();
            if (config == null) throw new InvalidOption("ca_name", "ca_files: the registry key HKLM\\" + RegistryPath + " does not exist; is AD CS installed on this host?");
            string caName = Args.Str(args, "ca_name", null);
            if (caName == null)
            {
                RegValue active = config.Find("Active");
                if (active == null || !(active.Data is string) || ((string)active.Data).Length == 0)
                    throw new InvalidOption("ca_name", "ca_name: the registry does not name an active CA (CertSvc\\Configuration\\Active); give ca_name");
                caName = (string)active.Data;
            }
            r["ca_name"] = caName;
            List<object> notes = (List<object>)r["notes"];
            if (!config.Keys.ContainsKey(caName))
                notes.Add("the registry has no CertSvc\\Configuration\\" + caName + " key; the export holds the key as it is");
            string policy = Path.Combine(WindowsDir(), "CAPolicy.inf");
            bool hasPolicy = File.Exists(policy);
            if (!hasPolicy) notes.Add("no CAPolicy.inf in " + WindowsDir() + "; nothing to keep for role " + RolePolicy);

            List<object> files = new List<object>();
            r["files"] = files;
            r["key"] = null;
            if (checkMode)
            {
                r["path"] = null;
                return;
            }
            string dir = Path.Combine(parent, FolderPrefix + Guid.NewGuid().ToString("N"));
            PrivateDirectory.Create(dir);
            r["path"] = dir;
            r["changed"] = true;

            string reg = Path.Combine(dir, "CertSvc-Configuration.reg");
            File.WriteAllText(reg, RegText(config), new UnicodeEncoding(false, true));
            files.Add(FileEntry(reg, RoleRegistry));
            if (hasPolicy)
            {
                string copy = Path.Combine(dir, "CAPolicy.inf");
                File.Copy(policy, copy);
                files.Add(FileEntry(copy, RolePolicy));
            }
            if (key)
            {
                Dictionary<string, object> k = ExportKey(caName, password, dir, notes);
                r["key"] = k;
                if (k["path"] != null) files.Add(FileEntry((string)k["path"], RoleKey));
            }
        }

        private static Dictionary<string, object> FileEntry(string path, string role)
        {
            Dictionary<string, object> d = new Dictionary<string, object>();
            d["path"] = path;
            d["role"] = role;
            d["name"] = Path.GetFileName(path);
            d["bytes"] = new FileInfo(path).Length;
            return d;
        }

        private static string StandIn(string var)
        {
            string v = Environment.GetEnvironmentVariable(var);
            if (string.IsNullOrEmpty(v)) return null;
            if (Path.IsPathRooted(v)) return v;
            return Path.Combine(WindowsDir(), v);
        }

        internal static string WindowsDir()
        {
            if (PathRules.IsWindows)
            {
                string w = Environment.GetFolderPath(Environment.SpecialFolder.Windows);
                if (string.IsNullOrEmpty(w)) w = Environment.GetEnvironmentVariable("SystemRoot");
                return w;
            }
            string v = Environment.GetEnvironmentVariable(TestWindowsDirVar);
            if (string.IsNullOrEmpty(v)) return "/nonexistent-windows-dir";
            return v.Split(Path.PathSeparator)[0];
        }

        // ---------------------------------------------------------------- cleanup

        private static void Cleanup(IDictionary args, bool checkMode, Dictionary<string, object> r)
        {
            string p = Args.Str(args, "path", null);
            r["path"] = p;
            r["removed"] = false;
            if (p == null) return; // nothing was collected (a failed or check-mode collect)
            string full = PathRules.Normalize(p);
            if (!Path.GetFileName(full).StartsWith(FolderPrefix, StringComparison.Ordinal))
                throw new InvalidOption("path", "path: " + full + " is not a folder ese.backup.ca_files made (its name starts with " + FolderPrefix + "); give the path its collect returned");
            if (!Directory.Exists(full)) return;
            r["changed"] = true;
            if (checkMode) return;
            Directory.Delete(full, true);
            r["removed"] = true;
        }

        // ---------------------------------------------------------------- the registry key

        internal sealed class RegValue
        {
            public string Name, Kind;
            public object Data; // string, string[], long, byte[]
        }

        internal sealed class RegNode
        {
            public readonly List<RegValue> Values = new List<RegValue>();
            public readonly SortedDictionary<string, RegNode> Keys = new SortedDictionary<string, RegNode>(StringComparer.OrdinalIgnoreCase);
            public RegValue Find(string name)
            {
                foreach (RegValue v in Values) if (string.Equals(v.Name, name, StringComparison.OrdinalIgnoreCase)) return v;
                return null;
            }
        }

        private static RegNode ReadRegistry()
        {
            if (PathRules.IsWindows)
            {
                using (RegistryKey k = Registry.LocalMachine.OpenSubKey(RegistryPath, false))
                    return k == null ? null : FromKey(k);
            }
            string standIn = StandIn(TestRegistryVar);
            if (standIn == null || !File.Exists(standIn)) return null;
            return FromJson(Json.ReadFile(standIn) as IDictionary, standIn);
        }

        private static RegNode FromKey(RegistryKey k)
        {
            RegNode n = new RegNode();
            string[] names = k.GetValueNames();
            Array.Sort(names, StringComparer.OrdinalIgnoreCase);
            foreach (string name in names)
            {
                RegistryValueKind kind = k.GetValueKind(name);
                object data = k.GetValue(name, null, RegistryValueOptions.DoNotExpandEnvironmentNames);
                RegValue v = new RegValue { Name = name };
                switch (kind)
                {
                    case RegistryValueKind.String: v.Kind = "REG_SZ"; v.Data = Convert.ToString(data, CultureInfo.InvariantCulture); break;
                    case RegistryValueKind.ExpandString: v.Kind = "REG_EXPAND_SZ"; v.Data = Convert.ToString(data, CultureInfo.InvariantCulture); break;
                    case RegistryValueKind.MultiString: v.Kind = "REG_MULTI_SZ"; v.Data = (string[])data; break;
                    case RegistryValueKind.DWord: v.Kind = "REG_DWORD"; v.Data = (long)unchecked((uint)(int)data); break;
                    case RegistryValueKind.QWord: v.Kind = "REG_QWORD"; v.Data = (long)data; break;
                    default: v.Kind = "REG_BINARY"; v.Data = data as byte[] ?? new byte[0]; break;
                }
                n.Values.Add(v);
            }
            foreach (string sub in k.GetSubKeyNames())
                using (RegistryKey s = k.OpenSubKey(sub, false))
                    if (s != null) n.Keys[sub] = FromKey(s);
            return n;
        }

        private static RegNode FromJson(IDictionary d, string file)
        {
            if (d == null) throw new InvalidDataException(file + " is not a JSON object of the registry key");
            RegNode n = new RegNode();
            IList values = d.Contains("values") ? d["values"] as IList : null;
            if (values != null)
                foreach (object o in values)
                {
                    IDictionary e = o as IDictionary;
                    if (e == null) continue;
                    RegValue v = new RegValue { Name = Convert.ToString(e["name"], CultureInfo.InvariantCulture), Kind = Convert.ToString(e["type"], CultureInfo.InvariantCulture) };
                    object data = e.Contains("data") ? e["data"] : null;
                    switch (v.Kind)
                    {
                        case "REG_SZ": case "REG_EXPAND_SZ": v.Data = Convert.ToString(data, CultureInfo.InvariantCulture) ?? ""; break;
                        case "REG_MULTI_SZ":
                            List<string> l = new List<string>();
                            if (data is IList) foreach (object s in (IList)data) l.Add(Convert.ToString(s, CultureInfo.InvariantCulture));
                            v.Data = l.ToArray(); break;
                        case "REG_DWORD": case "REG_QWORD": v.Data = Convert.ToInt64(data, CultureInfo.InvariantCulture); break;
                        case "REG_BINARY": v.Data = Hex(Convert.ToString(data, CultureInfo.InvariantCulture) ?? ""); break;
                        default: throw new InvalidDataException(file + ": value " + v.Name + " has type " + v.Kind + ", not a registry type");
                    }
                    n.Values.Add(v);
                }
            IDictionary keys = d.Contains("keys") ? d["keys"] as IDictionary : null;
            if (keys != null) foreach (DictionaryEntry e in keys) n.Keys[(string)e.Key] = FromJson(e.Value as IDictionary, file);
            return n;
        }

        private static byte[] Hex(string s)
        {
            s = s.Replace(",", "").Replace(" ", "");
            byte[] b = new byte[s.Length / 2];
            for (int i = 0; i < b.Length; i++) b[i] = byte.Parse(s.Substring(2 * i, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            return b;
        }

        // The key as regedit exports it (Windows Registry Editor Version 5.00, UTF-16 with CRLF), importable with
        // reg.exe import or regedit.
        internal static string RegText(RegNode root)
        {
            StringBuilder sb = new StringBuilder();
            sb.Append("Windows Registry Editor Version 5.00\r\n");
            AppendKey(sb, @"HKEY_LOCAL_MACHINE\" + RegistryPath, root);
            sb.Append("\r\n");
            return sb.ToString();
        }

        private static void AppendKey(StringBuilder sb, string path, RegNode n)
        {
            sb.Append("\r\n[").Append(path).Append("]\r\n");
            foreach (RegValue v in n.Values)
            {
                sb.Append(v.Name.Length == 0 ? "@" : Quote(v.Name)).Append('=');
                switch (v.Kind)
                {
                    case "REG_SZ": sb.Append(Quote((string)v.Data)); break;
                    case "REG_DWORD": sb.Append("dword:").Append(((uint)unchecked((long)v.Data)).ToString("x8", CultureInfo.InvariantCulture)); break;
                    case "REG_QWORD": sb.Append("hex(b):").Append(HexList(BitConverter.GetBytes((long)v.Data))); break;
                    case "REG_EXPAND_SZ": sb.Append("hex(2):").Append(HexList(Encoding.Unicode.GetBytes((string)v.Data + "\0"))); break;
                    case "REG_MULTI_SZ": sb.Append("hex(7):").Append(HexList(Encoding.Unicode.GetBytes(string.Join("\0", (string[])v.Data) + "\0\0"))); break;
                    default: sb.Append("hex:").Append(HexList((byte[])v.Data)); break;
                }
                sb.Append("\r\n");
            }
            foreach (KeyValuePair<string, RegNode> e in n.Keys) AppendKey(sb, path + "\\" + e.Key, e.Value);
        }

        private static string Quote(string s) { return "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\""; }

        private static string HexList(byte[] b)
        {
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < b.Length; i++) { if (i > 0) sb.Append(','); sb.Append(b[i].ToString("x2", CultureInfo.InvariantCulture)); }
            return sb.ToString();
        }

        // ---------------------------------------------------------------- the CA certificate and key

        private sealed class Candidate
        {
            public X509Certificate2 Cert;
            public string Provider;   // the key's storage provider (CNG) or CSP name
            public bool Cng;          // a CNG key storage provider holds it
            public bool? Exportable;  // known before trying (the stand-in); null on Windows (the export tells)
        }

        private static Dictionary<string, object> ExportKey(string caName, string password, string dir, List<object> notes)
        {
            Dictionary<string, object> k = new Dictionary<string, object>();
            k["path"] = null; k["exported"] = false; k["certificates"] = new List<object>(); k["note"] = null;
            List<Candidate> found = Candidates(caName);
            X509Certificate2Collection export = new X509Certificate2Collection();
            List<string> skipped = new List<string>();
            foreach (Candidate c in found)
            {
                Dictionary<string, object> facts = new Dictionary<string, object>();
                facts["thumbprint"] = c.Cert.Thumbprint;
                facts["not_after"] = c.Cert.NotAfter.ToUniversalTime().ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);
                facts["provider"] = c.Provider;
                string why = null;
                if (c.Cng && !string.Equals(c.Provider, SoftwareKsp, StringComparison.OrdinalIgnoreCase))
                    why = "its key is held by the key storage provider '" + c.Provider + "' (an HSM or another provider, not the " + SoftwareKsp + "); back it up with that provider's own tools";
                else if (c.Exportable == false)
                    why = "its private key is not exportable";
                else if (PathRules.IsWindows && !ExportsOnWindows(c.Cert))
                    why = "its private key is not exportable";
                facts["skipped"] = why;
                ((List<object>)k["certificates"]).Add(facts);
                if (why == null) export.Add(c.Cert);
                else skipped.Add("certificate " + c.Cert.Thumbprint + ": " + why);
            }
            foreach (string s in skipped) notes.Add("CA key not exported for " + s);
            if (found.Count == 0)
            {
                k["note"] = "no certificate with a private key for '" + caName + "' in LocalMachine\\My; the CA key was not exported";
                notes.Add((string)k["note"]);
                return k;
            }
            if (export.Count == 0)
            {
                k["note"] = "the CA key was not exported: " + string.Join("; ", skipped.ToArray());
                return k;
            }
            byte[] pfx = export.Export(X509ContentType.Pkcs12, password);
            if (pfx == null) throw new CryptographicException("the PFX export returned nothing");
            string path = Path.Combine(dir, SafeName(caName) + ".pfx");
            File.WriteAllBytes(path, pfx);
            k["path"] = path;
            k["exported"] = true;
            if (skipped.Count > 0) k["note"] = "some CA certificates were left out: " + string.Join("; ", skipped.ToArray());
            return k;
        }

        private static string SafeName(string s)
        {
            StringBuilder sb = new StringBuilder();
            foreach (char c in s) sb.Append(Array.IndexOf(Path.GetInvalidFileNameChars(), c) >= 0 || c == '\\' || c == ':' ? '_' : c);
            return sb.ToString();
        }

        private static bool SubjectIs(X509Certificate2 c, string caName)
        {
            string cn = c.GetNameInfo(X509NameType.SimpleName, false);
            return string.Equals(cn, caName, StringComparison.OrdinalIgnoreCase);
        }

        private static List<Candidate> Candidates(string caName)
        {
            List<Candidate> l = new List<Candidate>();
            if (PathRules.IsWindows)
            {
                X509Store store = new X509Store(StoreName.My, StoreLocation.LocalMachine);
                store.Open(OpenFlags.ReadOnly | OpenFlags.OpenExistingOnly);
                try
                {
                    foreach (X509Certificate2 c in store.Certificates)
                    {
                        if (!c.HasPrivateKey || !SubjectIs(c, caName)) continue;
                        Candidate k = new Candidate { Cert = c };
                        KeyProvider(c, out k.Provider, out k.Cng);
                        l.Add(k);
                    }
                }
                finally { store.Close(); }
                return l;
            }
            string folder = StandIn(TestCertStoreVar);
            if (folder == null || !Directory.Exists(folder)) return l;
            string[] pfxs = Directory.GetFiles(folder, "*.pfx");
            Array.Sort(pfxs, StringComparer.Ordinal);
            foreach (string f in pfxs)
            {
                X509Certificate2 c = new X509Certificate2(f, "", X509KeyStorageFlags.Exportable);
                if (!c.HasPrivateKey || !SubjectIs(c, caName)) continue;
                Candidate k = new Candidate { Cert = c, Provider = SoftwareKsp, Cng = true };
                if (File.Exists(f + ".json"))
                {
                    IDictionary side = Json.ReadFile(f + ".json") as IDictionary;
                    if (side != null && side.Contains("provider")) k.Provider = Convert.ToString(side["provider"], CultureInfo.InvariantCulture);
                    if (side != null && side.Contains("exportable")) k.Exportable = side["exportable"] is bool && (bool)side["exportable"];
                }
                l.Add(k);
            }
            return l;
        }

        // Windows: the certificate's key provider (CERT_KEY_PROV_INFO_PROP_ID): dwProvType 0 is a CNG key storage
        // provider.
        [DllImport("crypt32.dll", SetLastError = true)]
        private static extern bool CertGetCertificateContextProperty(IntPtr pCertContext, uint dwPropId, IntPtr pvData, ref uint pcbData);

        [StructLayout(LayoutKind.Sequential, CharSet = CharSet.Unicode)]
        private struct CRYPT_KEY_PROV_INFO
        {
            public IntPtr pwszContainerName;
            public IntPtr pwszProvName;
            public uint dwProvType;
            public uint dwFlags;
            public uint cProvParam;
            public IntPtr rgProvParam;
            public uint dwKeySpec;
        }

        private static void KeyProvider(X509Certificate2 c, out string provider, out bool cng)
        {
            provider = null; cng = false;
            const uint CERT_KEY_PROV_INFO_PROP_ID = 2;
            uint size = 0;
            if (!CertGetCertificateContextProperty(c.Handle, CERT_KEY_PROV_INFO_PROP_ID, IntPtr.Zero, ref size) || size == 0) return;
            IntPtr buf = Marshal.AllocHGlobal((int)size);
            try
            {
                if (!CertGetCertificateContextProperty(c.Handle, CERT_KEY_PROV_INFO_PROP_ID, buf, ref size)) return;
                CRYPT_KEY_PROV_INFO info = (CRYPT_KEY_PROV_INFO)Marshal.PtrToStructure(buf, typeof(CRYPT_KEY_PROV_INFO));
                provider = info.pwszProvName == IntPtr.Zero ? null : Marshal.PtrToStringUni(info.pwszProvName);
                cng = info.dwProvType == 0;
            }
            finally { Marshal.FreeHGlobal(buf); }
        }

        // Windows: whether the key exports: a trial export with a throwaway password, read back (the key must be in
        // it), its bytes dropped.
        private static bool ExportsOnWindows(X509Certificate2 c)
        {
            try
            {
                X509Certificate2Collection one = new X509Certificate2Collection(c);
                string trial = Guid.NewGuid().ToString("N");
                byte[] b = one.Export(X509ContentType.Pkcs12, trial);
                if (b == null) return false;
                // An export may leave a key out without failing: read it back, the key must be in it.
                X509Certificate2 back = new X509Certificate2(b, trial);
                bool withKey = back.HasPrivateKey;
                back.Reset();
                Array.Clear(b, 0, b.Length);
                return withKey;
            }
            catch (CryptographicException) { return false; }
        }
    }
}
