# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether ntdsbcli.dll answers, as code would probe it on a Windows release that may have dropped the
API (windows-backup-apis.md §2: export present? then DsIsNTDSOnline): the library folders without the
DLL or without its exports, ESESIM_NTDS_NO_ENDPOINT, and a full backup through C# 5 P/Invoke
declarations ([DllImport("ntdsbcli.dll")]) compiled with mcs and run under Mono."""
import os
import shutil
import subprocess
import sys

import pytest

from dssim import (  # noqa: F401 pylint: disable=unused-import
    NO_DLL_DIR, NO_EXPORTS_DIR, SIM, build, dc, ds, ntds_dir, ntds_set, services)

CTYPES_PROBE = r"""
import ctypes, sys
try:
    lib = ctypes.CDLL("ntdsbcli.dll")
except OSError:
    print("absent"); sys.exit(0)
if not hasattr(lib, "DsIsNTDSOnlineW"):
    print("no-export"); sys.exit(0)
esent = ctypes.CDLL("esent.dll")                       # the rest of the folder still loads
online = ctypes.c_int32(7)
hr = lib.DsIsNTDSOnlineW(ctypes.create_string_buffer(sys.argv[1].encode("utf-16-le") + b"\0\0"),
                         ctypes.byref(online))
print("0x%08X %d" % (hr & 0xFFFFFFFF, online.value))
"""


def probe(folder, server="DC01", **env):
    full = dict(os.environ, LD_LIBRARY_PATH=folder, **env)
    res = subprocess.run([sys.executable, "-c", CTYPES_PROBE, server], env=full, capture_output=True, text=True,
                         timeout=30, check=True)
    return res.stdout.strip()


def test_ctypes_probe_outcomes(dc):
    build()
    assert probe(SIM) == "0x00000000 1"
    assert probe(NO_DLL_DIR) == "absent"
    assert probe(NO_EXPORTS_DIR) == "no-export"
    assert probe(SIM, ESESIM_NTDS_NO_ENDPOINT="1") == "0x800706D9 0"           # EPT_S_NOT_REGISTERED
    assert probe(SIM, server="DC02") == "0x800706A6 0"                          # RPC_S_INVALID_BINDING
    dc.stop()
    assert probe(SIM) == "0xC7FF0007 0"                                         # hrCouldNotConnect


PROGRAM = r"""
using System;
using System.Runtime.InteropServices;

static class Ntds
{
    [DllImport("ntdsbcli.dll", CharSet = CharSet.Unicode, ExactSpelling = true)]
    public static extern int DsIsNTDSOnlineW(string server, out int online);
    [DllImport("ntdsbcli.dll", CharSet = CharSet.Unicode, ExactSpelling = true)]
    public static extern int DsBackupPrepareW(string server, uint grbit, uint type, out IntPtr token, out uint cbToken,
                                              out IntPtr hbc);
    [DllImport("ntdsbcli.dll", ExactSpelling = true)]
    public static extern int DsBackupGetDatabaseNamesW(IntPtr hbc, out IntPtr list, out uint cb);
    [DllImport("ntdsbcli.dll", ExactSpelling = true)]
    public static extern int DsBackupGetBackupLogsW(IntPtr hbc, out IntPtr list, out uint cb);
    [DllImport("ntdsbcli.dll", CharSet = CharSet.Unicode, ExactSpelling = true)]
    public static extern int DsBackupOpenFileW(IntPtr hbc, string name, uint hint, out long size);
    [DllImport("ntdsbcli.dll", ExactSpelling = true)]
    public static extern int DsBackupRead(IntPtr hbc, byte[] pv, uint cb, out uint read);
    [DllImport("ntdsbcli.dll", ExactSpelling = true)]
    public static extern int DsBackupClose(IntPtr hbc);
    [DllImport("ntdsbcli.dll", ExactSpelling = true)]
    public static extern int DsBackupTruncateLogs(IntPtr hbc);
    [DllImport("ntdsbcli.dll", ExactSpelling = true)]
    public static extern int DsBackupEnd(IntPtr hbc);
    [DllImport("ntdsbcli.dll", ExactSpelling = true)]
    public static extern void DsBackupFree(IntPtr pv);
}

static class P
{
    const int HandleEof = unchecked((int)0x80070026);

    static string[] List(IntPtr p, uint cb)
    {
        string s = Marshal.PtrToStringUni(p, (int)(cb / 2));
        Ntds.DsBackupFree(p);
        return s.TrimEnd('\0').Split('\0');
    }

    static long Copy(IntPtr h, string name)
    {
        long size;
        int hr = Ntds.DsBackupOpenFileW(h, name, 65536, out size);
        if (hr != 0) throw new Exception(string.Format("open 0x{0:X8}", hr));
        byte[] buf = new byte[1 << 20];
        long total = 0;
        uint n;
        while ((hr = Ntds.DsBackupRead(h, buf, (uint)buf.Length, out n)) == 0) total += n;
        if (hr != HandleEof || total != size) throw new Exception(string.Format("read 0x{0:X8}", hr));
        Ntds.DsBackupClose(h);
        return total;
    }

    static int Main(string[] args)
    {
        int online;
        int hr;
        try {
            hr = Ntds.DsIsNTDSOnlineW(args[0], out online);
        } catch (DllNotFoundException) {
            Console.WriteLine("absent");
            return 0;
        } catch (EntryPointNotFoundException) {
            Console.WriteLine("no-export");
            return 0;
        }
        Console.WriteLine("online 0x{0:X8} {1}", hr, online);
        if (hr != 0 || args.Length < 2) return 0;
        IntPtr h, token;
        uint cbToken;
        hr = Ntds.DsBackupPrepareW(args[0], 0, 1, out token, out cbToken, out h);
        Console.WriteLine("prepare 0x{0:X8} token {1}", hr, cbToken);
        if (hr != 0) return 1;
        Ntds.DsBackupFree(token);
        IntPtr p; uint cb;
        Ntds.DsBackupGetDatabaseNamesW(h, out p, out cb);
        foreach (string d in List(p, cb))
            Console.WriteLine("{0} {1} {2}", (int)d[0], d.Substring(1), Copy(h, d.Substring(1)));
        Ntds.DsBackupGetBackupLogsW(h, out p, out cb);
        foreach (string d in List(p, cb))
            Console.WriteLine("{0} {1} {2}", (int)d[0], d.Substring(1), Copy(h, d.Substring(1)));
        Console.WriteLine("truncate 0x{0:X8}", Ntds.DsBackupTruncateLogs(h));
        Console.WriteLine("end 0x{0:X8}", Ntds.DsBackupEnd(h));
        return 0;
    }
}
"""


@pytest.mark.skipif(not (shutil.which("mcs") and shutil.which("mono")), reason="needs mcs and mono")
def test_pinvoke_probe_and_full_backup_under_mono(dc, ntds_set, tmp_path):
    cs, exe = tmp_path / "P.cs", tmp_path / "P.exe"
    cs.write_text(PROGRAM)
    subprocess.run(["mcs", "-langversion:5", "-nologo", "-warnaserror+", "-out:" + str(exe), str(cs)], check=True)

    def run(folder, *args, **env):
        full = dict(os.environ, LD_LIBRARY_PATH=folder, **env)
        res = subprocess.run(["mono", str(exe)] + list(args), env=full, capture_output=True, text=True, timeout=60,
                             check=False)
        assert res.returncode == 0, res.stdout + res.stderr
        return res.stdout.splitlines()

    assert run(NO_DLL_DIR, "DC01") == ["absent"]                            # DllNotFoundException
    assert run(NO_EXPORTS_DIR, "DC01") == ["no-export"]                     # EntryPointNotFoundException
    assert run(SIM, "DC01", ESESIM_NTDS_NO_ENDPOINT="1") == ["online 0x800706D9 0"]
    folder = os.path.dirname(ntds_set)
    assert run(SIM, "DC01", "backup") == [
        "online 0x00000000 1", "prepare 0x00000000 token 16",
        "68 %s %d" % (ntds_set, os.path.getsize(ntds_set) + 8192),         # 'D', the stream with its trailer
        "33 %s %d" % (os.path.join(folder, "edb00003.log"), 128 * 1024),   # '!'
        "truncate 0x00000000", "end 0x00000000"]
