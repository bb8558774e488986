#!powershell

# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

#AnsibleRequires -CSharpUtil Ansible.Basic

# Test helper: creates a small, cleanly shut down ESE database set (database, logs, checkpoint) in
# its own ESE instance through esent.dll, the way an application would. esentutl cannot create one.

$spec = @{
    options = @{
        path = @{ type = 'path'; required = $true }
        base_name = @{ type = 'str'; default = 'edb' }
        database = @{ type = 'str'; default = 'test.edb' }
        page_size = @{ type = 'int'; default = 8192 }
        records = @{ type = 'int'; default = 100 }
    }
    supports_check_mode = $false
}
$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)

Add-Type -TypeDefinition @'
using System;
using System.Runtime.InteropServices;
using System.Text;

public static class EseTestDatabase
{
    [StructLayout(LayoutKind.Sequential)]
    private struct JET_COLUMNDEF
    {
        public uint cbStruct; public uint columnid; public uint coltyp; public ushort wCountry; public ushort langid;
        public ushort cp; public ushort wCollate; public uint cbMax; public uint grbit;
    }

    [DllImport("esent.dll", CharSet = CharSet.Unicode)] private static extern int JetCreateInstanceW(out IntPtr instance, string name);
    [DllImport("esent.dll", CharSet = CharSet.Unicode)] private static extern int JetSetSystemParameterW(ref IntPtr instance, IntPtr sesid, uint paramid, IntPtr lParam, string szParam);
    [DllImport("esent.dll")] private static extern int JetInit(ref IntPtr instance);
    [DllImport("esent.dll", CharSet = CharSet.Unicode)] private static extern int JetBeginSessionW(IntPtr instance, out IntPtr sesid, string user, string password);
    [DllImport("esent.dll", CharSet = CharSet.Unicode)] private static extern int JetCreateDatabaseW(IntPtr sesid, string file, string connect, out uint dbid, uint grbit);
    [DllImport("esent.dll", CharSet = CharSet.Ansi)] private static extern int JetCreateTable(IntPtr sesid, uint dbid, string name, int pages, int density, out IntPtr tableid);
    [DllImport("esent.dll", CharSet = CharSet.Ansi)] private static extern int JetAddColumn(IntPtr sesid, IntPtr tableid, string name, ref JET_COLUMNDEF def, byte[] defaultValue, uint cbDefault, out uint columnid);
    [DllImport("esent.dll")] private static extern int JetBeginTransaction(IntPtr sesid);
    [DllImport("esent.dll")] private static extern int JetCommitTransaction(IntPtr sesid, uint grbit);
    [DllImport("esent.dll")] private static extern int JetPrepareUpdate(IntPtr sesid, IntPtr tableid, uint prep);
    [DllImport("esent.dll")] private static extern int JetSetColumn(IntPtr sesid, IntPtr tableid, uint columnid, byte[] data, uint cb, uint grbit, IntPtr setinfo);
    [DllImport("esent.dll")] private static extern int JetUpdate(IntPtr sesid, IntPtr tableid, IntPtr bookmark, uint cb, IntPtr actual);
    [DllImport("esent.dll")] private static extern int JetCloseTable(IntPtr sesid, IntPtr tableid);
    [DllImport("esent.dll")] private static extern int JetCloseDatabase(IntPtr sesid, uint dbid, uint grbit);
    [DllImport("esent.dll", CharSet = CharSet.Unicode)] private static extern int JetDetachDatabaseW(IntPtr sesid, string file);
    [DllImport("esent.dll")] private static extern int JetEndSession(IntPtr sesid, uint grbit);
    [DllImport("esent.dll")] private static extern int JetTerm2(IntPtr instance, uint grbit);

    private static void Check(int err, string call)
    {
        if (err < 0) throw new InvalidOperationException(call + " returned " + err);
    }

    public static void Create(string dir, string baseName, string database, int pageSize, int records)
    {
        IntPtr none = IntPtr.Zero;
        Check(JetSetSystemParameterW(ref none, IntPtr.Zero, 64, new IntPtr(pageSize), null), "JetSetSystemParameterW(DatabasePageSize)");
        IntPtr instance;
        Check(JetCreateInstanceW(out instance, "ese.backup.integration"), "JetCreateInstanceW");
        char sep = System.IO.Path.DirectorySeparatorChar;  // '\\' on Windows
        string folder = dir.TrimEnd(sep) + sep;
        Check(JetSetSystemParameterW(ref instance, IntPtr.Zero, 100, new IntPtr(1), null), "CreatePathIfNotExist");
        Check(JetSetSystemParameterW(ref instance, IntPtr.Zero, 0, IntPtr.Zero, folder), "SystemPath");
        Check(JetSetSystemParameterW(ref instance, IntPtr.Zero, 1, IntPtr.Zero, folder + "tmp.edb"), "TempPath");
        Check(JetSetSystemParameterW(ref instance, IntPtr.Zero, 2, IntPtr.Zero, folder), "LogFilePath");
        Check(JetSetSystemParameterW(ref instance, IntPtr.Zero, 3, IntPtr.Zero, baseName), "BaseName");
        Check(JetSetSystemParameterW(ref instance, IntPtr.Zero, 17, IntPtr.Zero, null), "CircularLog");
        Check(JetInit(ref instance), "JetInit");
        try
        {
            IntPtr sesid;
            Check(JetBeginSessionW(instance, out sesid, null, null), "JetBeginSessionW");
            uint dbid;
            string file = folder + database;
            Check(JetCreateDatabaseW(sesid, file, null, out dbid, 0), "JetCreateDatabaseW");
            IntPtr table;
            Check(JetBeginTransaction(sesid), "JetBeginTransaction");
            Check(JetCreateTable(sesid, dbid, "records", 16, 80, out table), "JetCreateTable");
            JET_COLUMNDEF def = new JET_COLUMNDEF();
            def.cbStruct = (uint)Marshal.SizeOf(typeof(JET_COLUMNDEF));
            def.coltyp = 11;  // JET_coltypLongBinary
            uint column;
            Check(JetAddColumn(sesid, table, "payload", ref def, null, 0, out column), "JetAddColumn");
            Check(JetCommitTransaction(sesid, 0), "JetCommitTransaction");
            for (int i = 0; i < records; i++)
            {
                byte[] payload = Encoding.UTF8.GetBytes(new string((char)('a' + i % 26), 200 + i % 1800));
                Check(JetBeginTransaction(sesid), "JetBeginTransaction");
                Check(JetPrepareUpdate(sesid, table, 0), "JetPrepareUpdate");
                Check(JetSetColumn(sesid, table, column, payload, (uint)payload.Length, 0, IntPtr.Zero), "JetSetColumn");
                Check(JetUpdate(sesid, table, IntPtr.Zero, 0, IntPtr.Zero), "JetUpdate");
                Check(JetCommitTransaction(sesid, 0), "JetCommitTransaction");
            }
            Check(JetCloseTable(sesid, table), "JetCloseTable");
            Check(JetCloseDatabase(sesid, dbid, 0), "JetCloseDatabase");
            Check(JetDetachDatabaseW(sesid, file), "JetDetachDatabaseW");
            Check(JetEndSession(sesid, 0), "JetEndSession");
        }
        finally
        {
            JetTerm2(instance, 1);  // JET_bitTermComplete: clean shutdown, logs and checkpoint stay
        }
    }
}
'@

$dir = $module.Params.path
$file = Join-Path -Path $dir -ChildPath $module.Params.database
$module.Result.database = @{
    path = $file
    log_path = $dir
    system_path = $dir
    base_name = $module.Params.base_name
    page_size = $module.Params.page_size
}
if (Test-Path -LiteralPath $file) {
    $module.ExitJson()
}
try {
    [EseTestDatabase]::Create($dir, $module.Params.base_name, $module.Params.database, $module.Params.page_size,
        $module.Params.records)
}
catch {
    $module.FailJson("Failed to create the test database: $($_.Exception.Message)", $_)
}
$module.Result.changed = $true
$module.ExitJson()
