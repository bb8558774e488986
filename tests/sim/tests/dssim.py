# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ctypes bindings for build/sim/libntdsbcli.so (the simulated ntdsbcli.dll) and a runner for the
simulated DC backup server (build/sim/ntdssvc-sim). Widths follow Windows x64: HRESULT c_int32 (returned
here as an unsigned 32-bit number), DWORD/ULONG c_uint32, HBC c_void_p, LARGE_INTEGER c_int64, BOOL
c_int32, WCHAR strings UTF-16LE buffers."""
import ctypes
import os
import select
import shutil
import struct
import subprocess
import tempfile
import time
from ctypes import POINTER, byref, c_int32, c_int64, c_uint32, c_void_p

import pytest

import esesim

ROOT = esesim.ROOT
SIM = os.path.join(ROOT, "build", "sim")
LIB_PATH = os.path.join(SIM, "libntdsbcli.so")
SERVICE = os.path.join(SIM, "ntdssvc-sim")
NO_DLL_DIR = os.path.join(SIM, "no-ntdsbcli")
NO_EXPORTS_DIR = os.path.join(SIM, "ntdsbcli-noexports")

S_OK = 0
HR = dict(
    InvalidParameter=0x80070057, HandleEof=0x80070026, ServiceRunning=0x80070420, PathNotFound=0x80070003,
    RpcUnavailable=0x800706BA, RpcInvalidBinding=0x800706A6, EptNotRegistered=0x800706D9,
    Unexpected=0x8000FFFF,
    InvalidParam=0xC7FF0001, InvalidHandle=0xC7FF0003, RestoreInProgress=0xC7FF0004, AlreadyOpen=0xC7FF0005,
    CouldNotConnect=0xC7FF0007, MissingExpiryToken=0xC7FF000F, UnknownExpiryTokenFormat=0xC7FF0010,
    ContentsExpired=0xC7FF0011,
    BackupInProgress=0xC80001F9, NoBackup=0xC8000208, InvalidBackupSequence=0xC8000209,
    LogFileNotCopied=0xC8000268, ReadVerifyFailure=0xC80003FA, DiskIO=0xC80003FE,
)
FULL, LOGS_ONLY, INCREMENTAL = 0x1, 0x2, 0x4
AUTHORATATIVE, ONLINE, CATCHUP = 0x1, 0x2, 0x4
BFT_DATABASE, BFT_LOG, BFT_LOG_DIR, BFT_CHECKPOINT_DIR = "D", "!", "\x82", "\x83"
READ_MIN = 24576
FILETIME_UNIX_EPOCH = 116444736000000000
FILETIME_PER_DAY = 864000000000


class RSTMAPW(ctypes.Structure):
    """EDB_RSTMAPW: two WCHAR pointers (16 bytes on x64)."""
    _fields_ = [("pwszDatabaseName", c_void_p), ("pwszNewDatabaseName", c_void_p)]


_LIST = [c_void_p, POINTER(c_void_p), POINTER(c_uint32)]
_PROTOS = {
    "DsIsNTDSOnlineW": [c_void_p, POINTER(c_int32)],
    "DsBackupPrepareW": [c_void_p, c_uint32, c_uint32, POINTER(c_void_p), POINTER(c_uint32), POINTER(c_void_p)],
    "DsBackupGetDatabaseNamesW": _LIST,
    "DsBackupGetBackupLogsW": _LIST,
    "DsRestoreGetDatabaseLocationsW": _LIST,
    "DsBackupOpenFileW": [c_void_p, c_void_p, c_uint32, POINTER(c_int64)],
    "DsBackupRead": [c_void_p, c_void_p, c_uint32, POINTER(c_uint32)],
    "DsBackupClose": [c_void_p],
    "DsBackupTruncateLogs": [c_void_p],
    "DsBackupEnd": [c_void_p],
    "DsRestorePrepareW": [c_void_p, c_uint32, c_void_p, c_uint32, POINTER(c_void_p)],
    "DsRestoreRegisterW": [c_void_p, c_void_p, c_void_p, c_void_p, c_int32, c_void_p, c_uint32, c_uint32],
    "DsRestoreRegisterComplete": [c_void_p, c_int32],
    "DsRestoreEnd": [c_void_p],
}
EXPORTS = sorted(list(_PROTOS) + ["DsBackupFree"])
_LIB = None


def build():
    subprocess.run(["make", "-s", "sim"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def load_lib():
    global _LIB  # pylint: disable=global-statement
    if _LIB is None:
        build()
        lib = ctypes.CDLL(LIB_PATH)
        for name, args in _PROTOS.items():
            fn = getattr(lib, name)
            fn.argtypes = args
            fn.restype = c_int32
        lib.DsBackupFree.argtypes = [c_void_p]
        lib.DsBackupFree.restype = None
        _LIB = lib
    return _LIB


def u32(hr):
    return hr & 0xFFFFFFFF


def wstr(s):
    return esesim.wbuf(s) if s is not None else None


def parse_list(raw):
    """A BFT multi-string -> [(prefix char, name)]."""
    text = raw.decode("utf-16-le")
    assert text.endswith("\0\0"), "not double-NUL terminated: %r" % text[-4:]
    return [(s[0], s[1:]) for s in text[:-2].split("\0")]


def parse_token(raw):
    """The simulator's expiry token: (version, tombstone lifetime in days, backup time as a FILETIME)."""
    assert len(raw) == 16
    return struct.unpack("<IIq", raw)


def make_token(days=60, age_days=0.0, version=1):
    now = FILETIME_UNIX_EPOCH + int(time.time() * 10000000)
    return struct.pack("<IIq", version, days, now - int(age_days * FILETIME_PER_DAY))


def filetime_to_unix(ft):
    return (ft - FILETIME_UNIX_EPOCH) / 10000000


class NtdsBcli:
    """Thin wrappers returning (hr as unsigned, outputs...)."""

    def __init__(self, lib):
        self.lib = lib

    def online(self, server):
        flag = c_int32(7)
        hr = self.lib.DsIsNTDSOnlineW(wstr(server), byref(flag))
        return u32(hr), flag.value

    def prepare(self, server, backup_type=FULL, grbit=0):
        """(hr, hbc, token bytes or None)"""
        h, tok, cb = c_void_p(0), c_void_p(1), c_uint32(99)
        hr = self.lib.DsBackupPrepareW(wstr(server), grbit, backup_type, byref(tok), byref(cb), byref(h))
        raw, ptr = None, tok.value
        if ptr is not None:
            raw = ctypes.string_at(ptr, cb.value)
            self.lib.DsBackupFree(ptr)
        else:
            assert cb.value == 0
        return u32(hr), h.value, raw

    def _list(self, fn, hbc):
        p, cb = c_void_p(0), c_uint32(77)
        hr = fn(hbc, byref(p), byref(cb))
        ptr = p.value
        raw = None
        if ptr is not None:
            raw = ctypes.string_at(ptr, cb.value)
            self.lib.DsBackupFree(ptr)
        return u32(hr), raw, cb.value

    def names(self, hbc):
        return self._list(self.lib.DsBackupGetDatabaseNamesW, hbc)

    def logs(self, hbc):
        return self._list(self.lib.DsBackupGetBackupLogsW, hbc)

    def locations(self, hbc):
        return self._list(self.lib.DsRestoreGetDatabaseLocationsW, hbc)

    def open(self, hbc, name, hint=65536):
        size = c_int64(-1)
        hr = self.lib.DsBackupOpenFileW(hbc, wstr(name), hint, byref(size))
        return u32(hr), size.value

    def read(self, hbc, buf, cb):
        got = c_uint32(0)
        hr = self.lib.DsBackupRead(hbc, buf, cb, byref(got))
        return u32(hr), got.value

    def close(self, hbc):
        return u32(self.lib.DsBackupClose(hbc))

    def truncate(self, hbc):
        return u32(self.lib.DsBackupTruncateLogs(hbc))

    def end(self, hbc):
        return u32(self.lib.DsBackupEnd(hbc))

    def restore_prepare(self, server, flags=0, token=None, cb=None):
        h = c_void_p(0)
        buf = ctypes.create_string_buffer(token, len(token)) if token is not None else None
        size = len(token) if cb is None and token is not None else (cb or 0)
        hr = self.lib.DsRestorePrepareW(wstr(server), flags, buf, size, byref(h))
        return u32(hr), h.value

    def register(self, hbc, chk, log, maps, backup_log, low, high):
        keep = [wstr(s) for pair in maps for s in pair]
        arr = (RSTMAPW * max(len(maps), 1))()
        for i in range(len(maps)):
            arr[i].pwszDatabaseName = ctypes.addressof(keep[2 * i])
            arr[i].pwszNewDatabaseName = ctypes.addressof(keep[2 * i + 1])
        return u32(self.lib.DsRestoreRegisterW(hbc, wstr(chk), wstr(log), arr if maps else None, len(maps),
                                               wstr(backup_log), low, high))

    def complete(self, hbc, hr=0):
        return u32(self.lib.DsRestoreRegisterComplete(hbc, c_int32(hr - (1 << 32) if hr >= 1 << 31 else hr)))

    def restore_end(self, hbc):
        return u32(self.lib.DsRestoreEnd(hbc))

    def read_all(self, hbc, name, chunk=1 << 20, hint=65536):
        """Open, read until ERROR_HANDLE_EOF, close: (bytes, reported size)."""
        hr, size = self.open(hbc, name, hint)
        assert hr == S_OK, hex(hr)
        buf = ctypes.create_string_buffer(chunk)
        out = bytearray()
        while True:
            hr, n = self.read(hbc, buf, chunk)
            if hr == HR["HandleEof"]:
                assert n == 0
                break
            assert hr == S_OK and n > 0, (hex(hr), n, len(out), size)
            out += buf.raw[:n]
        assert len(out) == size
        assert self.close(hbc) == S_OK
        return bytes(out), size


class Service:
    """One simulated DC backup server process. start() waits for its "ready" line."""

    def __init__(self, svc_dir, db, server="DC01", args=(), env=None):
        self.dir, self.db, self.server = svc_dir, db, server
        self.cmd = [SERVICE, "--db", db, "--server", server] + list(args)
        base = {k: v for k, v in os.environ.items() if not k.startswith("ESESIM_")}
        base.update({"ESESIM_NTDS_DIR": svc_dir, "COMPUTERNAME": server})
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
                if line.startswith("ntdssvc-sim ready"):
                    return self
            if self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError("ntdssvc-sim did not start (%s): %s" % (self.proc.returncode, self.stderr))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout=5):
        rc = self.proc.wait(timeout)
        if not self.proc.stderr.closed:
            self.stderr += self.proc.stderr.read().decode()
        return rc

    def wait_gone(self, timeout=5):
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self.alive()

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


# ---------------------------------------------------------------- fixtures (imported by test_ntdsbcli*.py)

@pytest.fixture
def ds():
    return NtdsBcli(load_lib())


@pytest.fixture
def ntds_dir(monkeypatch):
    """The service directory (short: AF_UNIX paths are limited to 107 bytes); this process is DC01."""
    d = tempfile.mkdtemp(prefix="ds", dir="/tmp")
    monkeypatch.setenv("ESESIM_NTDS_DIR", d)
    monkeypatch.setenv("COMPUTERNAME", "DC01")
    monkeypatch.delenv("ESESIM_NTDS_NO_ENDPOINT", raising=False)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def ntds_set(jet, tmp_path):
    """An ntds.dit set made through the esent simulator: 8 KiB pages, 128 KB logs, three generations."""
    db = jet.create_set(str(tmp_path / "NTDS"), base="edb", database="ntds.dit", page_size=8192,
                        records=500, log_kb=128)
    jet.lib.EseSimReset()
    return db


@pytest.fixture
def services(ntds_dir):
    """start(db, server="DC01", args=(), env=None, wait=True) -> Service; every process is stopped at the end."""
    started = []

    def start(db, server="DC01", args=(), env=None, wait=True):
        svc = Service(ntds_dir, db, server, args, env)
        started.append(svc)
        return svc.start() if wait else svc
    yield start
    for svc in started:
        svc.stop()
    assert not [svc for svc in started if svc.alive()]


@pytest.fixture
def dc(services, ntds_set):  # pylint: disable=redefined-outer-name
    return services(ntds_set)
