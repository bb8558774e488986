# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ctypes bindings for build/sim/libcertadm.so (the simulated certadm.dll) and a runner for the
simulated CA service (build/sim/certsvc-sim). Widths follow Windows x64: HRESULT c_int32 (returned
here as an unsigned 32-bit number), DWORD/ULONG c_uint32, HCSBC c_void_p, LARGE_INTEGER c_int64,
BOOL c_int32, WCHAR strings UTF-16LE buffers."""
import ctypes
import os
import select
import shutil
import subprocess
import tempfile
import time
from ctypes import POINTER, byref, c_int32, c_int64, c_uint32, c_void_p

import pytest

import esesim

ROOT = esesim.ROOT
LIB_PATH = os.path.join(ROOT, "build", "sim", "libcertadm.so")
SERVICE = os.path.join(ROOT, "build", "sim", "certsvc-sim")

S_OK = 0
HR = dict(
    RpcUnavailable=0x800706BA, AccessDenied=0x80070005, InvalidArg=0x80070057, Unexpected=0x8000FFFF,
    NotImpl=0x80004001, ServiceRunning=0x80070420, ServerSuspended=0x80094006, PathNotFound=0x80070003,
    InvalidParam=0xC7FF0001, InvalidHandle=0xC7FF0003, RestoreInProgress=0xC7FF0004,
    BackupInProgress=0xC80001F9, NoBackup=0xC8000208, InvalidBackupSequence=0xC8000209,
    MissingFullBackup=0xC8000230, LogFileNotCopied=0xC8000268, ReadVerifyFailure=0xC80003FA,
    DiskIO=0xC80003FE, FileAccessDenied=0xC8000408,
)
FULL, LOGS_ONLY = 0x1, 0x2
CSBFT_DATABASE, CSBFT_LOG, CSBFT_LOG_DIR, CSBFT_CHECKPOINT_DIR = "D", "!", "\x82", "\x83"
SHUTDOWN, SUSPEND, RESTART = 1, 2, 3
IF_DEFAULT, IF_NOREMOTEICERTADMINBACKUP = 0x641, 0x40


class RSTMAPW(ctypes.Structure):
    """CSEDB_RSTMAPW: two WCHAR pointers (16 bytes on x64)."""
    _fields_ = [("pwszDatabaseName", c_void_p), ("pwszNewDatabaseName", c_void_p)]


_LIST = [c_void_p, POINTER(c_void_p), POINTER(c_uint32)]
_REGISTER = [c_void_p, c_void_p, c_void_p, c_void_p, c_int32, c_void_p, c_uint32, c_uint32]
_PROTOS = {
    "CertSrvIsServerOnlineW": [c_void_p, POINTER(c_int32)],
    "CertSrvBackupPrepareW": [c_void_p, c_uint32, c_uint32, POINTER(c_void_p)],
    "CertSrvRestoreGetDatabaseLocationsW": _LIST,
    "CertSrvBackupGetDatabaseNamesW": _LIST,
    "CertSrvBackupGetBackupLogsW": _LIST,
    "CertSrvBackupGetDynamicFileListW": _LIST,
    "CertSrvBackupOpenFileW": [c_void_p, c_void_p, c_uint32, POINTER(c_int64)],
    "CertSrvBackupRead": [c_void_p, c_void_p, c_uint32, POINTER(c_uint32)],
    "CertSrvBackupClose": [c_void_p],
    "CertSrvBackupTruncateLogs": [c_void_p],
    "CertSrvBackupEnd": [c_void_p],
    "CertSrvServerControlW": [c_void_p, c_uint32, POINTER(c_uint32), POINTER(c_void_p)],
    "CertSrvRestorePrepareW": [c_void_p, c_uint32, POINTER(c_void_p)],
    "CertSrvRestoreRegisterW": _REGISTER,
    "CertSrvRestoreRegisterThroughFile": _REGISTER,
    "CertSrvRestoreRegisterComplete": [c_void_p, c_int32],
    "CertSrvRestoreEnd": [c_void_p],
}
_LIB = None


def load_lib():
    global _LIB  # pylint: disable=global-statement
    if _LIB is None:
        subprocess.run(["make", "-s", "sim"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        lib = ctypes.CDLL(LIB_PATH)
        for name, args in _PROTOS.items():
            fn = getattr(lib, name)
            fn.argtypes = args
            fn.restype = c_int32
        lib.CertSrvBackupFree.argtypes = [c_void_p]
        lib.CertSrvBackupFree.restype = None
        _LIB = lib
    return _LIB


def u32(hr):
    return hr & 0xFFFFFFFF


def wstr(s):
    return esesim.wbuf(s) if s is not None else None


def parse_list(raw):
    """A CSBFT multi-string -> [(prefix char, name)] (prefix "" for the dynamic file list)."""
    text = raw.decode("utf-16-le")
    assert text.endswith("\0\0"), "not double-NUL terminated: %r" % text[-4:]
    return [(s[0], s[1:]) for s in text[:-2].split("\0")]


class CertAdm:
    """Thin wrappers returning (hr as unsigned, outputs...)."""

    def __init__(self, lib):
        self.lib = lib

    def online(self, server):
        flag = c_int32(7)
        hr = self.lib.CertSrvIsServerOnlineW(wstr(server), byref(flag))
        return u32(hr), flag.value

    def prepare(self, server, flags=FULL, grbit=0):
        h = c_void_p(0)
        hr = self.lib.CertSrvBackupPrepareW(wstr(server), grbit, flags, byref(h))
        return u32(hr), h.value

    def _list(self, fn, hbc):
        p, cb = c_void_p(0), c_uint32(77)
        hr = fn(hbc, byref(p), byref(cb))
        ptr = p.value
        raw = None
        if ptr is not None:
            raw = ctypes.string_at(ptr, cb.value)
            self.lib.CertSrvBackupFree(ptr)
        return u32(hr), raw, cb.value

    def names(self, hbc):
        return self._list(self.lib.CertSrvBackupGetDatabaseNamesW, hbc)

    def logs(self, hbc):
        return self._list(self.lib.CertSrvBackupGetBackupLogsW, hbc)

    def dynamic(self, hbc):
        return self._list(self.lib.CertSrvBackupGetDynamicFileListW, hbc)

    def locations(self, hbc):
        return self._list(self.lib.CertSrvRestoreGetDatabaseLocationsW, hbc)

    def open(self, hbc, name, hint=0):
        size = c_int64(-1)
        hr = self.lib.CertSrvBackupOpenFileW(hbc, wstr(name), hint, byref(size))
        return u32(hr), size.value

    def read(self, hbc, buf, cb):
        got = c_uint32(0)
        hr = self.lib.CertSrvBackupRead(hbc, buf, cb, byref(got))
        return u32(hr), got.value

    def close(self, hbc):
        return u32(self.lib.CertSrvBackupClose(hbc))

    def truncate(self, hbc):
        return u32(self.lib.CertSrvBackupTruncateLogs(hbc))

    def end(self, hbc):
        return u32(self.lib.CertSrvBackupEnd(hbc))

    def control(self, server, flags):
        cb, pb = c_uint32(5), c_void_p(1)
        hr = self.lib.CertSrvServerControlW(wstr(server), flags, byref(cb), byref(pb))
        assert cb.value == 0 and not pb.value
        return u32(hr)

    def restore_prepare(self, server, flags=1):
        h = c_void_p(0)
        hr = self.lib.CertSrvRestorePrepareW(wstr(server), flags, byref(h))
        return u32(hr), h.value

    def register(self, hbc, chk, log, maps, backup_log, low, high, through_file=False):
        keep = [wstr(s) for pair in maps for s in pair]
        arr = (RSTMAPW * max(len(maps), 1))()
        for i in range(len(maps)):
            arr[i].pwszDatabaseName = ctypes.addressof(keep[2 * i])
            arr[i].pwszNewDatabaseName = ctypes.addressof(keep[2 * i + 1])
        fn = self.lib.CertSrvRestoreRegisterThroughFile if through_file else self.lib.CertSrvRestoreRegisterW
        return u32(fn(hbc, wstr(chk), wstr(log), arr if maps else None, len(maps), wstr(backup_log), low, high))

    def complete(self, hbc, hr=0):
        return u32(self.lib.CertSrvRestoreRegisterComplete(hbc, c_int32(hr - (1 << 32) if hr >= 1 << 31 else hr)))

    def restore_end(self, hbc):
        return u32(self.lib.CertSrvRestoreEnd(hbc))

    def read_all(self, hbc, name, chunk=1 << 20, hint=0):
        """Open, read until the reported size, close: (bytes, reported size)."""
        hr, size = self.open(hbc, name, hint)
        assert hr == S_OK, hex(hr)
        buf = ctypes.create_string_buffer(chunk)
        out = bytearray()
        while len(out) < size:
            hr, n = self.read(hbc, buf, chunk)
            assert hr == S_OK and n > 0, (hex(hr), n, len(out), size)
            out += buf.raw[:n]
        hr, n = self.read(hbc, buf, chunk)
        assert (hr, n) == (S_OK, 0)
        assert self.close(hbc) == S_OK
        return bytes(out), size


class Service:
    """One simulated CA service process. start() waits for its "ready" line."""

    def __init__(self, svc_dir, db, server="CA01", args=(), env=None):
        self.dir, self.db, self.server = svc_dir, db, server
        self.cmd = [SERVICE, "--db", db, "--server", server] + list(args)
        base = {k: v for k, v in os.environ.items() if not k.startswith("ESESIM_")}
        base.update({"ESESIM_CERTSVC_DIR": svc_dir, "COMPUTERNAME": server})
        base.update(env or {})
        self.env = base
        self.proc = None
        self.stderr = ""

    def start(self, timeout=10):
        # pylint: disable-next=consider-using-with
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _w, _x = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                line = self.proc.stdout.readline().decode()
                if line.startswith("certsvc-sim ready"):
                    return self
            if self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError("certsvc-sim did not start (%s): %s" % (self.proc.returncode, self.stderr))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout=5):
        rc = self.proc.wait(timeout)
        if not self.proc.stderr.closed:
            self.stderr += self.proc.stderr.read().decode()
        return rc

    def stop(self):
        """SIGTERM (a service stop), then SIGKILL if it does not go; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self.proc.stderr.closed:
            self.stderr += self.proc.stderr.read().decode()
            self.proc.stdout.close()
            self.proc.stderr.close()
        return self.proc.returncode

    def run_to_exit(self, timeout=10):
        """Starts a process that is expected not to become ready: (exit code, stderr)."""
        res = subprocess.run(self.cmd, env=self.env, capture_output=True, timeout=timeout, check=False)
        return res.returncode, res.stderr.decode()


# ---------------------------------------------------------------- fixtures (imported by test_certadm*.py)

@pytest.fixture
def cadm():
    return CertAdm(load_lib())


@pytest.fixture
def svc_dir(monkeypatch):
    """The service directory (short: AF_UNIX paths are limited to 107 bytes); this process is CA01."""
    d = tempfile.mkdtemp(prefix="cs", dir="/tmp")
    monkeypatch.setenv("ESESIM_CERTSVC_DIR", d)
    monkeypatch.setenv("COMPUTERNAME", "CA01")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def ca_set(jet, tmp_path):
    """A CA database set made through the esent simulator: 8 KiB pages, 128 KB logs, three generations."""
    db = jet.create_set(str(tmp_path / "CertLog"), base="edb", database="Sim CA.edb", page_size=8192,
                        records=500, log_kb=128)
    jet.lib.EseSimReset()
    return db


@pytest.fixture
def services(svc_dir):
    """start(db, server="CA01", args=(), env=None, wait=True) -> Service; every process is stopped at the end."""
    started = []

    def start(db, server="CA01", args=(), env=None, wait=True):
        svc = Service(svc_dir, db, server, args, env)
        started.append(svc)
        return svc.start() if wait else svc
    yield start
    for svc in started:
        svc.stop()
    assert not [svc for svc in started if svc.alive()]


@pytest.fixture
def ca(services, ca_set):  # pylint: disable=redefined-outer-name
    return services(ca_set)
