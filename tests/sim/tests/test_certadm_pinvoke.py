# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""certadm.dll as the engine would P/Invoke it: C# 5 declarations ([DllImport("certadm.dll")], Unicode
strings, IntPtr handles and lists, long sizes) compiled with mcs and run under Mono, resolved through
LD_LIBRARY_PATH=build/sim to the simulated DLL, against the simulated CA service."""
import os
import shutil
import subprocess

import pytest

from certsim import ROOT, ca, ca_set, cadm, services, svc_dir  # noqa: F401 pylint: disable=unused-import

PROGRAM = r"""
using System;
using System.Runtime.InteropServices;
using System.Text;

static class CertAdm
{
    [DllImport("certadm.dll", CharSet = CharSet.Unicode, ExactSpelling = true)]
    public static extern int CertSrvIsServerOnlineW(string server, out int online);
    [DllImport("certadm.dll", CharSet = CharSet.Unicode, ExactSpelling = true)]
    public static extern int CertSrvBackupPrepareW(string server, uint grbitJet, uint flags, out IntPtr hbc);
    [DllImport("certadm.dll", ExactSpelling = true)]
    public static extern int CertSrvBackupGetDatabaseNamesW(IntPtr hbc, out IntPtr list, out uint cb);
    [DllImport("certadm.dll", ExactSpelling = true)]
    public static extern int CertSrvBackupGetBackupLogsW(IntPtr hbc, out IntPtr list, out uint cb);
    [DllImport("certadm.dll", CharSet = CharSet.Unicode, ExactSpelling = true)]
    public static extern int CertSrvBackupOpenFileW(IntPtr hbc, string name, uint hint, out long size);
    [DllImport("certadm.dll", ExactSpelling = true)]
    public static extern int CertSrvBackupRead(IntPtr hbc, byte[] pv, uint cb, out uint read);
    [DllImport("certadm.dll", ExactSpelling = true)]
    public static extern int CertSrvBackupClose(IntPtr hbc);
    [DllImport("certadm.dll", ExactSpelling = true)]
    public static extern int CertSrvBackupTruncateLogs(IntPtr hbc);
    [DllImport("certadm.dll", ExactSpelling = true)]
    public static extern int CertSrvBackupEnd(IntPtr hbc);
    [DllImport("certadm.dll", ExactSpelling = true)]
    public static extern void CertSrvBackupFree(IntPtr pv);
}

static class P
{
    static string[] List(IntPtr p, uint cb)
    {
        string s = Marshal.PtrToStringUni(p, (int)(cb / 2));
        CertAdm.CertSrvBackupFree(p);
        return s.TrimEnd('\0').Split('\0');
    }

    static long Copy(IntPtr h, string name)
    {
        long size;
        int hr = CertAdm.CertSrvBackupOpenFileW(h, name, 0, out size);
        if (hr != 0) throw new Exception(string.Format("open 0x{0:X8}", hr));
        byte[] buf = new byte[1 << 20];
        long total = 0;
        uint n;
        while (total < size) {
            hr = CertAdm.CertSrvBackupRead(h, buf, (uint)buf.Length, out n);
            if (hr != 0 || n == 0) throw new Exception(string.Format("read 0x{0:X8}", hr));
            total += n;
        }
        CertAdm.CertSrvBackupClose(h);
        return total;
    }

    static int Main(string[] args)
    {
        int online;
        int hr = CertAdm.CertSrvIsServerOnlineW(args[0], out online);
        Console.WriteLine("online 0x{0:X8} {1}", hr, online);
        IntPtr h;
        hr = CertAdm.CertSrvBackupPrepareW(args[0], 0, 1, out h);
        Console.WriteLine("prepare 0x{0:X8}", hr);
        if (hr != 0) return 1;
        IntPtr p; uint cb;
        CertAdm.CertSrvBackupGetDatabaseNamesW(h, out p, out cb);
        foreach (string d in List(p, cb))
            Console.WriteLine("{0} {1} {2}", (int)d[0], d.Substring(1), Copy(h, d.Substring(1)));
        CertAdm.CertSrvBackupGetBackupLogsW(h, out p, out cb);
        foreach (string d in List(p, cb))
            Console.WriteLine("{0} {1} {2}", (int)d[0], d.Substring(1), Copy(h, d.Substring(1)));
        Console.WriteLine("truncate 0x{0:X8}", CertAdm.CertSrvBackupTruncateLogs(h));
        Console.WriteLine("end 0x{0:X8}", CertAdm.CertSrvBackupEnd(h));
        return 0;
    }
}
"""


@pytest.mark.skipif(not (shutil.which("mcs") and shutil.which("mono")), reason="needs mcs and mono")
def test_full_backup_through_pinvoke_under_mono(ca, ca_set, tmp_path):
    cs, exe = tmp_path / "P.cs", tmp_path / "P.exe"
    cs.write_text(PROGRAM)
    subprocess.run(["mcs", "-langversion:5", "-nologo", "-warnaserror+", "-out:" + str(exe), str(cs)], check=True)
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(ROOT, "build", "sim"))
    res = subprocess.run(["mono", str(exe), "CA01"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    folder = os.path.dirname(ca_set)
    assert res.stdout.splitlines() == [
        "online 0x00000000 1", "prepare 0x00000000",
        "68 %s %d" % (ca_set, os.path.getsize(ca_set) + 8192),          # 'D', the stream with its trailer
        "33 %s %d" % (os.path.join(folder, "edb00003.log"), 128 * 1024),  # '!'
        "truncate 0x00000000", "end 0x00000000"]
