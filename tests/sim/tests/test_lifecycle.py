# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Own-instance lifecycle: parameters, JetInit at header level, attach/detach header
effects, locking, JetGetDatabaseFileInfoW (jet-constants.md §2, §3, §6)."""
import os
import struct
import subprocess
import sys

import esesim
from esesim import E, read_header


def test_params_roundtrip_and_rules(jet, tmp_path):
    err, inst = jet.create("p")
    assert jet.setp(inst, esesim.P_LOG_PATH, s=str(tmp_path)) == 0
    assert jet.getp(inst, esesim.P_LOG_PATH)[2] == str(tmp_path) + "/"
    assert jet.setp(inst, esesim.P_BASE_NAME, s="ab") == E["InvalidParameter"]
    assert jet.setp(inst, esesim.P_BASE_NAME, s="sru") == 0
    assert jet.getp(inst, esesim.P_BASE_NAME)[2] == "sru"
    assert jet.getp(inst, esesim.P_BASE_NAME, cb=4)[0] == E["BufferTooSmall"]
    assert jet.getp(inst, esesim.P_LEGACY_NAMES)[1] == 3
    assert jet.getp(inst, esesim.P_LOG_FILE_SIZE)[1] == 5120
    assert jet.setp(inst, esesim.P_LOG_FILE_SIZE, 10) == E["InvalidParameter"]
    assert jet.setp(None, esesim.P_PAGE_SIZE, 12288) == E["InvalidParameter"]
    assert jet.setp(None, esesim.P_PAGE_SIZE, 8192) == 0
    assert jet.getp(0, esesim.P_PAGE_SIZE)[1] == 8192
    assert jet.setp(0xBAD0, esesim.P_BASE_NAME, s="edb") == E["InvalidInstance"]
    assert jet.setp(inst, 99999, 1) == E["InvalidParameter"]


def test_global_defaults_inherited_and_fixed_after_init(jet, tmp_path):
    assert jet.setp(None, esesim.P_BASE_NAME, s="abc") == 0
    err, inst = jet.create("g")
    assert jet.getp(inst, esesim.P_BASE_NAME)[2] == "abc"
    jet.setp(inst, esesim.P_LOG_PATH, s=str(tmp_path))
    jet.setp(inst, esesim.P_SYSTEM_PATH, s=str(tmp_path))
    jet.setp(inst, esesim.P_LOG_FILE_SIZE, 64)
    assert jet.init(inst) == 0
    assert jet.init(inst) == E["AlreadyInitialized"]
    assert jet.setp(inst, esesim.P_BASE_NAME, s="edb") == E["AlreadyInitialized"]
    assert jet.setp(None, esesim.P_PAGE_SIZE, 8192) == E["AlreadyInitialized"]
    assert os.path.exists(tmp_path / "abc.log") and os.path.exists(tmp_path / "abc.chk")


def test_instance_names_and_max_instances(jet):
    assert jet.setp(None, esesim.P_MAX_INSTANCES, 2) == 0
    assert jet.create("a")[0] == 0
    assert jet.create("a")[0] == E["InstanceNameInUse"]
    assert jet.create("b")[0] == 0
    assert jet.create("c")[0] == -1214


def test_init_errors(jet, tmp_path, make_setup):
    d = esesim.copy_set("srum-win11-dirty", str(tmp_path / "a"))
    os.remove(os.path.join(d, "SRU.log"))
    assert make_setup(d).init_err == E["MissingLogFile"]
    jet.lib.EseSimReset()
    d = esesim.copy_set("srum-win11-dirty", str(tmp_path / "b"))
    os.remove(os.path.join(d, "SRU0005B.log"))                     # between checkpoint and current? no: 92 only
    assert make_setup(d).init_err == 0
    jet.lib.EseSimReset()
    d = esesim.copy_set("srum-win11-dirty", str(tmp_path / "c"))
    with open(os.path.join(d, "SRU.log"), "r+b") as f:
        f.seek(200)
        f.write(b"x")
    assert make_setup(d).init_err == -501
    jet.lib.EseSimReset()
    d = esesim.copy_set("srum-win11-dirty", str(tmp_path / "d"))
    assert make_setup(d, page=8192).init_err == E["PageSizeMismatch"]
    jet.lib.EseSimReset()
    err, inst = jet.create("e")
    jet.setp(inst, esesim.P_LOG_PATH, s=str(tmp_path / "e"))
    jet.setp(inst, esesim.P_SYSTEM_PATH, s=str(tmp_path / "e"))
    assert jet.init(inst) == -1023                                  # missing directory
    jet.setp(inst, 100, 1)                                         # CreatePathIfNotExist
    assert jet.init(inst, 0x40) == E["FileNotFound"]               # LogStreamMustExist
    jet.setp(inst, esesim.P_LOG_FILE_SIZE, 64)
    assert jet.init(inst) == 0


def test_init_log_file_size_mismatch_only_when_set(jet, tmp_path):
    d = esesim.copy_set("srum-server2022-clean", str(tmp_path / "a"))
    err, inst = jet.create("s")
    for pid, v in ((esesim.P_LOG_PATH, d), (esesim.P_SYSTEM_PATH, d), (esesim.P_BASE_NAME, "SRU")):
        jet.setp(inst, pid, s=v)
    jet.setp(inst, esesim.P_LOG_FILE_SIZE, 128)
    assert jet.init(inst) == E["LogFileSizeMismatch"]
    jet.setp(inst, esesim.P_LOG_FILE_SIZE, 64)
    assert jet.init(inst) == 0


def test_missing_intermediate_log_fails_init(jet, tmp_path, make_setup):
    d = esesim.copy_set("srum-win11-dirty", str(tmp_path / "a"))
    data = bytearray(open(os.path.join(d, "SRU.chk"), "rb").read())  # checkpoint back to gen 90
    for off in (0, 4096):
        struct.pack_into("<i", data, off + 16, 90)
        struct.pack_into("<I", data, off, esesim.xor_old(bytes(data[off:off + 4096])))
    open(os.path.join(d, "SRU.chk"), "wb").write(data)
    os.remove(os.path.join(d, "SRU0005B.log"))
    assert make_setup(d).init_err == E["MissingLogFile"]


def test_attach_detach_header_effects(jet, clean_set):
    s = clean_set
    for h in read_header(s.db):
        assert h.checksum_ok and h.dbstate == 2 and (h.gen_min, h.gen_max) == (2, 2)
    assert jet.attach(s.ses, s.db) == 1007                        # already attached: warning
    assert jet.detach(s.ses, s.db) == 0
    for h in read_header(s.db):
        assert h.checksum_ok and h.dbstate == 3 and (h.gen_min, h.gen_max) == (0, 0)
        assert h.raw[64] != 0 or h.raw[64:72] != b"\0" * 8       # logtimeConsistent set
    assert jet.detach(s.ses, s.db) == E["DatabaseNotFound"]
    assert jet.detach(s.ses, s.db, 1) == -1219
    assert jet.attach(s.ses, s.db) == 0
    assert jet.lib.JetTerm2(s.inst, 1) == 0
    assert read_header(s.db)[0].dbstate == 3


def test_dirty_set_recovers_at_attach(jet, dirty_set):
    h = read_header(dirty_set.db)[0]
    assert h.dbstate == 2 and (h.gen_min, h.gen_max) == (92, 92)


def test_dirty_db_without_logs_fails(jet, tmp_path, make_setup):
    d = str(tmp_path)
    esesim.copy_single("windows-search-win10-dirty-32k/Windows.edb.gz", os.path.join(d, "Windows.edb"))
    s = make_setup(d, base="edb", db="Windows.edb", page=32768)
    assert s.init_err == 0 and s.attach_err == E["DatabaseDirtyShutdown"]
    jet.lib.EseSimReset()
    d2 = esesim.copy_set("srum-win11-dirty", str(tmp_path / "x"))
    data = bytearray(open(os.path.join(d2, "SRUDB.dat"), "rb").read(8192))
    hdr = bytearray(data[:4096])
    struct.pack_into("<I", hdr, 300, 95)
    esesim.seal_header(hdr)
    with open(os.path.join(d2, "SRUDB.dat"), "r+b") as f:
        f.write(hdr)
        f.write(hdr)                                   # needs gen 95: not on disk
    assert make_setup(d2).attach_err == E["DatabaseDirtyShutdown"]


def test_attach_page_size_mismatch_and_missing(jet, tmp_path, make_setup):
    d = str(tmp_path)
    esesim.copy_single("dissect-basic/basic.edb.gz", os.path.join(d, "basic.edb"))
    s = make_setup(d, base="edb", db="basic.edb", page=8192)
    assert s.attach_err == E["PageSizeMismatch"]
    assert jet.attach(s.ses, os.path.join(d, "none.edb")) == E["FileNotFound"]


def test_attach_streamed_copy_fails_544(jet, dirty_set, tmp_path):
    s = dirty_set
    assert jet.begin(s.inst) == 0
    stream, _ = jet.read_all(s.inst, s.db)
    jet.end(s.inst, 2)
    copy = str(tmp_path / "copy.dat")
    open(copy, "wb").write(stream)
    assert jet.attach(s.ses, copy) == E["SoftRecoveryOnBackupDatabase"]


def test_attach_during_backup_and_other_instance(jet, clean_set):
    s = clean_set
    assert jet.begin(s.inst) == 0
    assert jet.attach(s.ses, s.db + "x") == E["BackupInProgress"]
    assert jet.detach(s.ses, s.db) == E["BackupInProgress"]
    jet.end(s.inst, 2)
    err, other = jet.create("other")
    jet.setp(other, esesim.P_LOG_PATH, s=s.dir + "/o")
    jet.setp(other, esesim.P_SYSTEM_PATH, s=s.dir + "/o")
    jet.setp(other, 100, 1)
    jet.setp(other, esesim.P_LOG_FILE_SIZE, 64)
    assert jet.init(other) == 0
    err, ses2 = jet.session(other)
    assert jet.attach(ses2, s.db) == E["DatabaseSharingViolation"]


def test_database_held_by_another_process(jet, clean_set, tmp_path):
    s = clean_set
    assert jet.detach(s.ses, s.db) == 0
    code = ("import fcntl,sys,time\nf=open(sys.argv[1],'rb')\nfcntl.flock(f,fcntl.LOCK_EX)\n"
            "print('locked',flush=True)\ntime.sleep(30)\n")
    p = subprocess.Popen([sys.executable, "-c", code, s.db], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        assert jet.attach(s.ses, s.db) == E["FileAccessDenied"]
        assert jet.dbinfo(s.db, 17, 4)[0] == E["FileAccessDenied"]
    finally:
        p.kill()
        p.wait()
    assert jet.attach(s.ses, s.db) == 0


def test_get_database_file_info_levels(jet, tmp_path):
    d = esesim.copy_set("srum-win11-dirty", str(tmp_path / "a"))
    db = os.path.join(d, "SRUDB.dat")
    assert jet.dbinfo(db, 10, 8) == (0, struct.pack("<Q", os.path.getsize(db)))
    assert jet.dbinfo(db, 17, 4) == (0, struct.pack("<I", 4096))
    assert jet.dbinfo(db, 19, 4) == (0, struct.pack("<I", 1))
    assert jet.dbinfo(db, 15, 4) == (0, struct.pack("<I", 0))
    assert jet.dbinfo(os.path.join(d, "SRU.log"), 19, 4) == (0, struct.pack("<I", 3))
    assert jet.dbinfo(os.path.join(d, "SRU.chk"), 19, 4) == (0, struct.pack("<I", 4))
    assert jet.dbinfo(os.path.join(d, "SRU.log"), 14, 348)[0] == E["FileInvalidType"]
    assert jet.dbinfo(db, 14, 347)[0] == E["InvalidBufferSize"]
    assert jet.dbinfo(db, 17, 8)[0] == E["InvalidBufferSize"]
    assert jet.dbinfo(db, 99, 4)[0] == E["InvalidParameter"]
    assert jet.dbinfo(os.path.join(d, "nope"), 17, 4)[0] == E["FileNotFound"]
    raw = open(db, "rb").read(4096)
    for size in (216, 296, 300, 348):
        err, m = jet.dbinfo(db, 14, size)
        assert err == 0
        assert struct.unpack_from("<II", m, 0) == (0x620, struct.unpack_from("<I", raw, 232)[0])
        assert m[8:36] == raw[24:52] and struct.unpack_from("<I", m, 36)[0] == 2
        assert m[88:116] == raw[108:136] and struct.unpack_from("<I", m, 212)[0] == 4096
        if size >= 296:
            assert struct.unpack_from("<II", m, 216) == (92, 92)
    w = esesim.copy_single("windows-search-win10-dirty-32k/Windows.edb.gz", str(tmp_path / "W.edb"))
    assert jet.dbinfo(w, 17, 4) == (0, struct.pack("<I", 32768))
    err, m = jet.dbinfo(w, 14, 348)
    assert struct.unpack_from("<II", m, 216) == (9, 12)
    t = esesim.copy_single("ntds-2012r2-temp-8k/temp.edb.gz", str(tmp_path / "t.edb"))
    assert jet.dbinfo(t, 17, 4) == (0, struct.pack("<I", 8192))


def test_db_in_use_level_while_attached(jet, clean_set):
    assert jet.dbinfo(clean_set.db, 15, 4) == (0, struct.pack("<I", 1))
