# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ctypes bindings for build/sim/libesent.so plus ESE format helpers for the tests.

Widths follow Windows x64: JET_ERR c_int32, unsigned long c_uint32, handles c_size_t,
strings UTF-16LE buffers. Read buffers are page-aligned (mmap).
"""
import ctypes
import mmap
import os
import shutil
import struct
import subprocess
from ctypes import POINTER, byref, c_int32, c_size_t, c_uint32, c_void_p

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
LIB_PATH = os.path.join(ROOT, "build", "sim", "libesent.so")
DATA = os.environ.get("ESE_TESTDATA") or os.path.join(ROOT, "tests", "data", "ese")

# errors and constants used by the tests (jet-errors.tsv, jet-constants.md)
E = dict(
    NoBackup=-520, InvalidBackupSequence=-521, BackupInProgress=-505, BackupNotAllowedYet=-523,
    InvalidBackup=-526, MissingLogFile=-528, BadCheckpointSignature=-532, CheckpointCorrupt=-533,
    CheckpointFileNotFound=-542, SoftRecoveryOnBackupDatabase=-544, DatabaseDirtyShutdown=-550,
    MissingFullBackup=-560, MissingFileToBackup=-569, LogReadVerifyFailure=-612,
    LogFileNotCopied=-616, BackupAbortByCaller=-800, BackupAbortByServer=-801, InvalidGrbit=-900,
    InvalidParameter=-1003, OutOfMemory=-1011, ReadVerifyFailure=-1018, NotInitialized=-1029,
    AlreadyInitialized=-1030, FileAccessDenied=-1032, BufferTooSmall=-1038, InvalidBufferSize=-1047,
    InvalidInstance=-1115, ReadPgnoVerifyFailure=-1118, DatabaseNotFound=-1203,
    PageSizeMismatch=-1213, DatabaseSharingViolation=-1215, ClientRequestToStopJetService=-1329,
    DiskFull=-1808, FileNotFound=-1811, FileInvalidType=-1812, InstanceNameInUse=-1086,
    LoggingDisabled=-516, LogFileSizeMismatch=-541, TermInProgress=-1000,
    InvalidName=-1002, InvalidDatabaseId=-1010, NotInTransaction=-1054, TransTooDeep=-1103,
    InTransaction=-1108, DatabaseDuplicate=-1201, DatabaseInUse=-1202, TableDuplicate=-1303,
    DensityInvalid=-1307, InvalidTableId=-1310, IllegalOperation=-1312, ColumnNotFound=-1507,
    ColumnDuplicate=-1508, InvalidColumnType=-1511, NoCurrentRecord=-1603, AlreadyPrepared=-1607,
    UpdateNotPrepared=-1609, InvalidPath=-1023, InvalidSesid=-1104,
)

P_SYSTEM_PATH, P_TEMP_PATH, P_LOG_PATH, P_BASE_NAME = 0, 1, 2, 3
P_MAX_TEMP_TABLES, P_LOG_FILE_SIZE, P_CIRCULAR, P_RECOVERY = 10, 11, 17, 34
P_PAGE_SIZE, P_MAX_INSTANCES, P_LEGACY_NAMES = 64, 104, 136


def wbuf(s):
    return ctypes.create_string_buffer(s.encode("utf-16-le") + b"\0\0")


def parse_multisz(raw):
    """UTF-16 double-NUL list -> list of str"""
    text = raw.decode("utf-16-le")
    if "\0\0" in text:
        text = text[: text.index("\0\0")]
    return [s for s in text.split("\0") if s]


class AlignedBuffer:
    """Page-aligned buffer (ReadFile requires OS-page alignment)."""

    def __init__(self, size):
        self.size = size
        self.map = mmap.mmap(-1, size)
        self.carr = (ctypes.c_char * size).from_buffer(self.map)
        self.addr = ctypes.addressof(self.carr)

    def bytes(self, n, offset=0):
        return bytes(self.map[offset:offset + n])


class LOGINFO_W(ctypes.Structure):
    _fields_ = [("cbSize", c_uint32), ("ulGenLow", c_uint32), ("ulGenHigh", c_uint32),
                ("szBaseName", ctypes.c_uint16 * 4)]


class RSTMAP_W(ctypes.Structure):
    _fields_ = [("szDatabaseName", c_void_p), ("szNewDatabaseName", c_void_p)]


_PROTOS = {
    "JetCreateInstance2W": [POINTER(c_size_t), c_void_p, c_void_p, c_uint32],
    "JetSetSystemParameterW": [POINTER(c_size_t), c_size_t, c_uint32, c_size_t, c_void_p],
    "JetGetSystemParameterW": [c_size_t, c_size_t, c_uint32, POINTER(c_size_t), c_void_p, c_uint32],
    "JetInit3W": [POINTER(c_size_t), c_void_p, c_uint32],
    "JetInit": [POINTER(c_size_t)],
    "JetTerm2": [c_size_t, c_uint32],
    "JetTerm": [c_size_t],
    "JetBeginSessionW": [c_size_t, POINTER(c_size_t), c_void_p, c_void_p],
    "JetEndSession": [c_size_t, c_uint32],
    "JetAttachDatabase2W": [c_size_t, c_void_p, c_uint32, c_uint32],
    "JetDetachDatabase2W": [c_size_t, c_void_p, c_uint32],
    "JetGetDatabaseFileInfoW": [c_void_p, c_void_p, c_uint32, c_uint32],
    "JetBeginExternalBackupInstance": [c_size_t, c_uint32],
    "JetGetAttachInfoInstanceW": [c_size_t, c_void_p, c_uint32, POINTER(c_uint32)],
    "JetOpenFileInstanceW": [c_size_t, c_void_p, POINTER(c_size_t), POINTER(c_uint32), POINTER(c_uint32)],
    "JetReadFileInstance": [c_size_t, c_size_t, c_void_p, c_uint32, POINTER(c_uint32)],
    "JetCloseFileInstance": [c_size_t, c_size_t],
    "JetGetLogInfoInstanceW": [c_size_t, c_void_p, c_uint32, POINTER(c_uint32)],
    "JetGetLogInfoInstance2W": [c_size_t, c_void_p, c_uint32, POINTER(c_uint32), c_void_p],
    "JetGetTruncateLogInfoInstanceW": [c_size_t, c_void_p, c_uint32, POINTER(c_uint32)],
    "JetTruncateLogInstance": [c_size_t],
    "JetEndExternalBackupInstance": [c_size_t],
    "JetEndExternalBackupInstance2": [c_size_t, c_uint32],
    "JetStopBackupInstance": [c_size_t],
    "JetStopServiceInstance": [c_size_t],
    "JetExternalRestore2W": [c_void_p, c_void_p, c_void_p, c_int32, c_void_p, c_void_p,
                             c_void_p, c_void_p, c_void_p, c_void_p],
    # an application's own database (the signatures ese_test_database.ps1 declares)
    "JetCreateInstanceW": [POINTER(c_size_t), c_void_p],
    "JetCreateDatabaseW": [c_size_t, c_void_p, c_void_p, POINTER(c_uint32), c_uint32],
    "JetCreateTable": [c_size_t, c_uint32, ctypes.c_char_p, c_int32, c_int32, POINTER(c_size_t)],
    "JetAddColumn": [c_size_t, c_size_t, ctypes.c_char_p, c_void_p, c_void_p, c_uint32, POINTER(c_uint32)],
    "JetBeginTransaction": [c_size_t],
    "JetCommitTransaction": [c_size_t, c_uint32],
    "JetRollback": [c_size_t, c_uint32],
    "JetPrepareUpdate": [c_size_t, c_size_t, c_uint32],
    "JetSetColumn": [c_size_t, c_size_t, c_uint32, c_void_p, c_uint32, c_uint32, c_void_p],
    "JetUpdate": [c_size_t, c_size_t, c_void_p, c_uint32, c_void_p],
    "JetCloseTable": [c_size_t, c_size_t],
    "JetCloseDatabase": [c_size_t, c_uint32, c_uint32],
    "JetDetachDatabaseW": [c_size_t, c_void_p],
}


class COLUMNDEF(ctypes.Structure):
    """JET_COLUMNDEF as ese_test_database.ps1 declares it (28 bytes on x64)."""
    _fields_ = [("cbStruct", c_uint32), ("columnid", c_uint32), ("coltyp", c_uint32), ("wCountry", ctypes.c_uint16),
                ("langid", ctypes.c_uint16), ("cp", ctypes.c_uint16), ("wCollate", ctypes.c_uint16),
                ("cbMax", c_uint32), ("grbit", c_uint32)]

_LIB = None


def load_lib():
    global _LIB
    if _LIB is None:
        subprocess.run(["make", "-s", "sim"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        lib = ctypes.CDLL(LIB_PATH)
        for name, args in _PROTOS.items():
            if hasattr(lib, name):
                fn = getattr(lib, name)
                fn.argtypes = args
                fn.restype = c_int32
        lib.EseSimReset.argtypes = []
        lib.EseSimReset.restype = None
        _LIB = lib
    return _LIB


class Jet:
    """Thin wrappers returning (err, outputs...)."""

    def __init__(self, lib):
        self.lib = lib
        self._keep = []

    def __getattr__(self, name):
        return getattr(self.lib, name)

    def create(self, name="ese.backup"):
        inst = c_size_t(0)
        err = self.lib.JetCreateInstance2W(byref(inst), wbuf(name) if name else None, None, 0)
        return err, inst.value

    def setp(self, inst, pid, value=0, s=None):
        ptr = byref(c_size_t(inst)) if inst is not None else None
        return self.lib.JetSetSystemParameterW(ptr, 0, pid, value, wbuf(s) if s is not None else None)

    def getp(self, inst, pid, cb=512):
        val = c_size_t(0)
        buf = ctypes.create_string_buffer(cb)
        err = self.lib.JetGetSystemParameterW(inst, 0, pid, byref(val), buf, cb)
        text = buf.raw.decode("utf-16-le").split("\0")[0]
        return err, val.value, text

    def init(self, inst, grbit=0):
        h = c_size_t(inst)
        return self.lib.JetInit3W(byref(h), None, grbit)

    def session(self, inst):
        s = c_size_t(0)
        err = self.lib.JetBeginSessionW(inst, byref(s), None, None)
        return err, s.value

    def attach(self, sesid, path, grbit=0):
        return self.lib.JetAttachDatabase2W(sesid, wbuf(path), 0, grbit)

    def detach(self, sesid, path, grbit=0):
        return self.lib.JetDetachDatabase2W(sesid, wbuf(path) if path else None, grbit)

    def dbinfo(self, path, level, cb):
        buf = ctypes.create_string_buffer(cb)
        err = self.lib.JetGetDatabaseFileInfoW(wbuf(path), buf, cb, level)
        return err, buf.raw

    def begin(self, inst, grbit=0):
        return self.lib.JetBeginExternalBackupInstance(inst, grbit)

    def _list(self, fn, inst, cbmax, *extra):
        got = c_uint32(0)
        if cbmax is None:
            err = fn(inst, None, 0, byref(got), *extra)
            if err:
                return err, None, got.value
            cbmax = got.value
        buf = ctypes.create_string_buffer(max(cbmax, 1))
        err = fn(inst, buf, cbmax, byref(got), *extra)
        return err, buf.raw[:cbmax], got.value

    def attach_info(self, inst, cbmax=None):
        return self._list(self.lib.JetGetAttachInfoInstanceW, inst, cbmax)

    def log_info(self, inst, cbmax=None):
        return self._list(self.lib.JetGetLogInfoInstanceW, inst, cbmax)

    def log_info2(self, inst):
        info = LOGINFO_W(cbSize=20)
        err, raw, got = self._list(self.lib.JetGetLogInfoInstance2W, inst, None, byref(info))
        return err, raw, info

    def truncate_info(self, inst, cbmax=None):
        return self._list(self.lib.JetGetTruncateLogInfoInstanceW, inst, cbmax)

    def open(self, inst, path):
        h, lo, hi = c_size_t(77), c_uint32(0), c_uint32(0)
        err = self.lib.JetOpenFileInstanceW(inst, wbuf(path) if path is not None else None,
                                            byref(h), byref(lo), byref(hi))
        return err, h.value, (hi.value << 32) | lo.value

    def read(self, inst, buf, cb, h=0, offset=0):
        got = c_uint32(0)
        err = self.lib.JetReadFileInstance(inst, h, buf.addr + offset, cb, byref(got))
        return err, got.value

    def close(self, inst, h=0):
        return self.lib.JetCloseFileInstance(inst, h)

    def truncate(self, inst):
        return self.lib.JetTruncateLogInstance(inst)

    def end(self, inst, grbit=1):
        return self.lib.JetEndExternalBackupInstance2(inst, grbit)

    def stop(self, inst):
        return self.lib.JetStopBackupInstance(inst)

    # ---- an application's own database: the calls of ese_test_database.ps1

    def create_db(self, sesid, path, grbit=0):
        dbid = c_uint32(0)
        err = self.lib.JetCreateDatabaseW(sesid, wbuf(path) if path is not None else None, None, byref(dbid), grbit)
        return err, dbid.value

    def create_table(self, sesid, dbid, name, pages=16, density=80):
        t = c_size_t(0)
        raw = name.encode() if name is not None else None
        err = self.lib.JetCreateTable(sesid, dbid, raw, pages, density, byref(t))
        return err, t.value

    def add_column(self, sesid, tableid, name, coltyp=11, cb_struct=None, cb_max=0, grbit=0):
        d = COLUMNDEF(cbStruct=ctypes.sizeof(COLUMNDEF) if cb_struct is None else cb_struct, coltyp=coltyp,
                      cbMax=cb_max, grbit=grbit)
        col = c_uint32(0)
        err = self.lib.JetAddColumn(sesid, tableid, name.encode(), byref(d), None, 0, byref(col))
        return err, col.value

    def set_column(self, sesid, tableid, columnid, data, grbit=0):
        buf = ctypes.create_string_buffer(data, len(data)) if data else None
        return self.lib.JetSetColumn(sesid, tableid, columnid, buf, len(data), grbit, None)

    def update(self, sesid, tableid):
        return self.lib.JetUpdate(sesid, tableid, None, 0, None)

    def create_set(self, folder, base="tst", database="test.edb", page_size=8192, records=100, log_kb=None):
        """What ese_test_database.ps1 does, call for call (plus JET_paramLogFileSize when log_kb is given).
        Returns the database path. Windows separators as the .ps1 builds them."""
        def ok(err, what):
            assert err >= 0, "%s returned %d" % (what, err)
        ok(self.setp(0, P_PAGE_SIZE, page_size), "JetSetSystemParameterW(DatabasePageSize)")
        inst = c_size_t(0)
        ok(self.lib.JetCreateInstanceW(byref(inst), wbuf("ese.backup.integration")), "JetCreateInstanceW")
        inst = inst.value
        win = folder.rstrip("\\") + "\\"
        ok(self.setp(inst, 100, 1), "CreatePathIfNotExist")
        ok(self.setp(inst, P_SYSTEM_PATH, 0, win), "SystemPath")
        ok(self.setp(inst, P_TEMP_PATH, 0, win + "tmp.edb"), "TempPath")
        ok(self.setp(inst, P_LOG_PATH, 0, win), "LogFilePath")
        ok(self.setp(inst, P_BASE_NAME, 0, base), "BaseName")
        ok(self.setp(inst, P_CIRCULAR, 0), "CircularLog")
        if log_kb:
            ok(self.setp(inst, P_LOG_FILE_SIZE, log_kb), "LogFileSize")
        h = c_size_t(inst)
        ok(self.lib.JetInit(byref(h)), "JetInit")
        try:
            err, ses = self.session(inst)
            ok(err, "JetBeginSessionW")
            path = win + database
            err, dbid = self.create_db(ses, path)
            ok(err, "JetCreateDatabaseW")
            ok(self.lib.JetBeginTransaction(ses), "JetBeginTransaction")
            err, table = self.create_table(ses, dbid, "records", 16, 80)
            ok(err, "JetCreateTable")
            err, col = self.add_column(ses, table, "payload", 11)
            ok(err, "JetAddColumn")
            ok(self.lib.JetCommitTransaction(ses, 0), "JetCommitTransaction")
            for i in range(records):
                payload = (chr(ord("a") + i % 26) * (200 + i % 1800)).encode()
                ok(self.lib.JetBeginTransaction(ses), "JetBeginTransaction")
                ok(self.lib.JetPrepareUpdate(ses, table, 0), "JetPrepareUpdate")
                ok(self.set_column(ses, table, col, payload), "JetSetColumn")
                ok(self.update(ses, table), "JetUpdate")
                ok(self.lib.JetCommitTransaction(ses, 0), "JetCommitTransaction")
            ok(self.lib.JetCloseTable(ses, table), "JetCloseTable")
            ok(self.lib.JetCloseDatabase(ses, dbid, 0), "JetCloseDatabase")
            ok(self.lib.JetDetachDatabaseW(ses, wbuf(path)), "JetDetachDatabaseW")
            ok(self.lib.JetEndSession(ses, 0), "JetEndSession")
        finally:
            self.lib.JetTerm2(inst, 1)
        return os.path.join(folder, database)

    def read_all(self, inst, path, chunk=1 << 20):
        """Open, read to EOF, close. Returns (stream bytes, reported size)."""
        err, h, size = self.open(inst, path)
        assert err == 0, err
        buf = AlignedBuffer(chunk)
        out = bytearray()
        while True:
            err, n = self.read(inst, buf, chunk, h)
            assert err == 0, err
            if n == 0:
                break
            out += buf.bytes(n)
        assert self.close(inst, h) == 0
        return bytes(out), size


# ---------------------------------------------------------------- formats

def xor_old(buf):
    a = np.frombuffer(buf, "<u4")
    return int(np.bitwise_xor.reduce(a[1:])) ^ 0x89ABCDEF


def _parity(v):
    return bin(v).count("1") & 1


def xe_checksum(blk, pgno, header_block):
    """ese-file-format.md §5.2, independent Python implementation."""
    d = np.frombuffer(blk, "<u4").copy()
    if header_block:
        d[0] = d[1] = 0
    rows = d.reshape(-1, 4)
    c0, c1, c2, c3 = (int(x) for x in np.bitwise_xor.reduce(rows, axis=0))
    rowx = np.bitwise_xor.reduce(rows, axis=1)
    p, idx = 0, 0xFF800000
    for v in rowx.tolist():
        if _parity(v):
            p ^= idx
        idx = (idx + 0xFF800080) & 0xFFFFFFFF
    if _parity(c0 ^ c1):
        p |= 0x00400000
    if _parity(c2 ^ c3):
        p |= 0x00000040
    r0, r1 = c0 ^ c2, c1 ^ c3
    if _parity(r0):
        p |= 0x00200000
    if _parity(r1):
        p |= 0x00000020
    x = r0 ^ r1
    r, j = 0, 0xFFFF0000
    for bit in range(32):
        if x >> bit & 1:
            r ^= j
        j = (j + 0xFFFF0001) & 0xFFFFFFFF
    mask = (((len(blk) << 19) & 0xFFFFFFFF) - 1) & 0xFFFFFFFF
    ecc = (p & 0xFFE0FFE0 & mask) | (r & 0x001F001F)
    return (ecc << 32) | ((x ^ pgno) & 0xFFFFFFFF)


def page_ok(page, pgno):
    cb = len(page)
    if not any(page):
        return True
    if cb >= 16384:
        blk = cb // 4
        for b in (1, 2, 3):
            if struct.unpack_from("<Q", page, 40 + 8 * (b - 1))[0] != xe_checksum(page[b * blk:(b + 1) * blk], pgno, False):
                return False
        return struct.unpack_from("<Q", page, 0)[0] == xe_checksum(page[:blk], pgno, True) and \
            struct.unpack_from("<I", page, 64)[0] == pgno
    if struct.unpack_from("<I", page, 36)[0] & 0x2000:
        return struct.unpack_from("<Q", page, 0)[0] == xe_checksum(page, pgno, True)
    return struct.unpack_from("<II", page, 0) == (xor_old(page), pgno)


def seal_page(page, pgno):
    """Writes valid checksums into a bytearray data page (new format)."""
    cb = len(page)
    if cb >= 16384:
        blk = cb // 4
        struct.pack_into("<I", page, 64, pgno)
        for b in (1, 2, 3):
            struct.pack_into("<Q", page, 40 + 8 * (b - 1), xe_checksum(bytes(page[b * blk:(b + 1) * blk]), pgno, False))
        struct.pack_into("<Q", page, 0, xe_checksum(bytes(page[:blk]), pgno, True))
    else:
        struct.pack_into("<I", page, 36, struct.unpack_from("<I", page, 36)[0] | 0x2000)
        struct.pack_into("<Q", page, 0, xe_checksum(bytes(page), pgno, True))


def seal_header(page):
    struct.pack_into("<I", page, 0, xor_old(bytes(page)))


class Header:
    """Parsed DB header fields used by the tests (ese-file-format.md §2)."""

    def __init__(self, page):
        self.raw = bytes(page)

        def u32(o):
            return struct.unpack_from("<I", page, o)[0]
        self.checksum_ok = u32(0) == xor_old(bytes(page))
        self.magic = u32(4)
        self.dbstate = u32(52)
        self.sign_db = bytes(page[24:52])
        self.sign_log = bytes(page[108:136])
        self.gen_min, self.gen_max = u32(296), u32(300)
        self.page_size = u32(236) or 4096
        self.bk = {name: self._bk(page, off) for name, off in
                   (("FullPrev", 136), ("IncPrev", 160), ("FullCur", 184), ("CopyPrev", 420),
                    ("DiffPrev", 444), ("SnapCur", 316))}

    @staticmethod
    def _bk(page, off):
        ib, isec, gen = struct.unpack_from("<HHi", page, off)
        low, high = struct.unpack_from("<II", page, off + 16)
        return dict(mark=(gen, isec, ib), time=bytes(page[off + 8:off + 16]), low=low, high=high)


def read_header(path, cb=None):
    with open(path, "rb") as f:
        data = f.read(65536)
    cb = cb or (struct.unpack_from("<I", data, 236)[0] or 4096)
    return Header(data[:cb]), Header(data[cb:2 * cb])


def log_header(path):
    with open(path, "rb") as f:
        h = f.read(4096)
    return dict(checksum_ok=struct.unpack_from("<I", h, 0)[0] == xor_old(h),
                gen=struct.unpack_from("<i", h, 4)[0], cb_sec=struct.unpack_from("<H", h, 8)[0],
                csec=struct.unpack_from("<H", h, 12)[0], tm_create=h[16:24], tm_prev=h[24:32],
                sign_log=h[44:72], filetype=struct.unpack_from("<I", h, 667)[0], raw=h)


def chk_gen(path):
    with open(path, "rb") as f:
        return struct.unpack_from("<i", f.read(4096), 16)[0]


# ---------------------------------------------------------------- sample sets

def copy_set(name, dest):
    src = os.path.join(DATA, "sets", name)
    os.makedirs(dest, exist_ok=True)
    for f in os.listdir(src):
        shutil.copy(os.path.join(src, f), os.path.join(dest, f))
        os.chmod(os.path.join(dest, f), 0o644)
    return dest


def copy_single(relgz, dest_file):
    import gzip
    with gzip.open(os.path.join(DATA, "single", relgz), "rb") as f, open(dest_file, "wb") as o:
        shutil.copyfileobj(f, o)
    return dest_file


def make_synthetic_db(path, cb, npages, template, zero_pages=(), old_format=()):
    """A clean database with checksummed pages of size cb, header from a real one."""
    with open(template, "rb") as f:
        hdr = bytearray(f.read(4096)[:748]) + bytearray(cb - 748)
    struct.pack_into("<I", hdr, 236, cb)
    struct.pack_into("<I", hdr, 52, 3)
    struct.pack_into("<II", hdr, 296, 0, 0)
    seal_header(hdr)
    rng = np.random.default_rng(cb + npages)
    with open(path, "wb") as f:
        f.write(hdr)
        f.write(hdr)
        for pgno in range(1, npages + 1):
            if pgno in zero_pages:
                f.write(bytes(cb))
                continue
            page = bytearray(rng.integers(0, 256, cb, dtype=np.uint8).tobytes())
            if pgno in old_format:
                struct.pack_into("<I", page, 36, 0x0002)
                struct.pack_into("<I", page, 4, pgno)
                struct.pack_into("<I", page, 0, xor_old(bytes(page)))
            else:
                struct.pack_into("<I", page, 36, 0x2002)
                seal_page(page, pgno)
            f.write(page)
    return path
