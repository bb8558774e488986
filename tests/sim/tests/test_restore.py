# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""JetExternalRestore2W (ese-backup-semantics.md §7): log-set checks, database checks,
header effect, and the restored set accepted by JetInit + attach."""
import ctypes
import os
import shutil
import struct

import pytest

import esesim
from esesim import E, LOGINFO_W, RSTMAP_W, read_header, wbuf
from test_full_backup import full_backup

PFN = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_size_t, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p)


@pytest.fixture
def backup_set(jet, dirty_set, tmp_path):
    """A full backup of the dirty set written like the engine does: databases/ and logs/."""
    s = dirty_set
    assert jet.begin(s.inst) == 0
    dbs, streams, logs, info, trunc = full_backup(jet, s)
    assert jet.end(s.inst) == 0
    root = tmp_path / "set"
    (root / "logs").mkdir(parents=True)
    (root / "databases").mkdir()
    db = str(root / "databases" / "SRUDB.dat")
    open(db, "wb").write(streams[s.db][0])
    for p in logs:
        shutil.copy(p, root / "logs")
    assert jet.lib.JetTerm2(s.inst, 1) == 0
    return dict(src=s, db=db, logs=str(root / "logs"), low=info.ulGenLow, high=info.ulGenHigh,
                target=str(root / "target"), stream=streams[s.db][0])


def restore(jet, b, low=None, high=None, cbsize=20, db=None, crst=1, calls=None):
    os.makedirs(b["target"], exist_ok=True)
    info = LOGINFO_W(cbSize=cbsize, ulGenLow=low or b["low"], ulGenHigh=high or b["high"])
    for i, c in enumerate("SRU\0"):
        info.szBaseName[i] = ord(c)
    keep = [wbuf(b["src"].db), wbuf(db or b["db"])]
    rmap = RSTMAP_W(ctypes.addressof(keep[0]), ctypes.addressof(keep[1]))
    cb = PFN(lambda ses, snp, snt, pv: (calls.append((snp, snt)) if calls is not None else None) or 0)
    return jet.lib.JetExternalRestore2W(wbuf(b["target"]), wbuf(b["target"]), ctypes.byref(rmap), crst,
                                        wbuf(b["logs"]), ctypes.byref(info), None, None, None,
                                        ctypes.cast(cb, ctypes.c_void_p))


def test_restore_then_init_and_attach(jet, backup_set, make_setup):
    b = backup_set
    calls = []
    assert restore(jet, b, calls=calls) == 0
    assert calls[0] == (8, 5) and calls[-1] == (8, 6) and (8, 0) in calls
    for h in read_header(b["db"]):
        assert h.checksum_ok and h.dbstate == 3 and h.bk["FullCur"]["low"] == 0
        assert (h.gen_min, h.gen_max) == (0, 0)
    data = open(b["db"], "rb").read()
    assert len(data) == len(b["stream"]) and not any(data[-4096:])       # trailer zeroed
    cur = esesim.log_header(os.path.join(b["target"], "SRU.log"))
    assert cur["checksum_ok"] and cur["gen"] == b["high"] + 1
    assert esesim.chk_gen(os.path.join(b["target"], "SRU.chk")) == b["high"] + 1
    s = make_setup(b["target"], db="../databases/SRUDB.dat", name="restored")
    assert s.init_err == 0 and s.attach_err == 0


def test_restore_missing_log(jet, backup_set):
    assert restore(jet, backup_set, high=backup_set["high"] + 1) == E["FileNotFound"]


def _edit_log(path, fn):
    with open(path, "r+b") as f:
        h = bytearray(f.read(4096))
        fn(h)
        struct.pack_into("<I", h, 0, esesim.xor_old(bytes(h)))
        f.seek(0)
        f.write(h)


def test_restore_log_signature_and_chain(jet, backup_set, tmp_path):
    b = backup_set
    for n in ("SRU0005A.log", "SRU0005B.log"):                              # gens 90, 91 before 92
        shutil.copyfile(os.path.join(esesim.DATA, "sets/srum-win11-dirty", n), os.path.join(b["logs"], n))
    assert restore(jet, b, low=90) == 0
    p = os.path.join(b["logs"], "SRU0005B.log")
    _edit_log(p, lambda h: h.__setitem__(slice(16, 24), b"\x01" * 8))       # chain 91 -> 92 broken
    assert restore(jet, b, low=90) == -556
    _edit_log(p, lambda h: h.__setitem__(44, h[44] ^ 0xFF))                # other signature
    assert restore(jet, b, low=90) == -555


def test_restore_database_checks(jet, backup_set, tmp_path):
    b = backup_set
    assert restore(jet, b, db=b["src"].db) == -615                          # not a backup copy
    junk = str(tmp_path / "junk.dat")
    open(junk, "wb").write(b"\0" * 65536)
    assert restore(jet, b, db=junk) == -1206
    data = bytearray(b["stream"])
    data[-4096 + 200] ^= 1
    open(b["db"], "wb").write(data)
    assert restore(jet, b) == -535                                          # trailer checksum
    data = bytearray(b["stream"])
    data[-4096 + 64] ^= 1                                                   # trailer signDb
    struct.pack_into("<I", data, len(data) - 4096, esesim.xor_old(bytes(data[-4096:])))
    open(b["db"], "wb").write(data)
    assert restore(jet, b) == -552


def test_restore_parameter_checks(jet, backup_set):
    assert restore(jet, backup_set, cbsize=16) == E["InvalidParameter"]
    assert restore(jet, backup_set, crst=15) == E["InvalidParameter"]


def test_restore_prunes_restore_path_and_replaces_checkpoint(jet, backup_set):
    """§7.2 step 3: logs in the restore path outside [genLow, genHigh] and its current log are deleted
    (restore path != log path); the old checkpoint in the system path is deleted and rewritten."""
    b = backup_set
    src = os.path.join(esesim.DATA, "sets/srum-win11-dirty")
    for n in ("SRU00059.log", "SRU.log"):                                   # gen 89 and a current log
        shutil.copyfile(os.path.join(src, n), os.path.join(b["logs"], n))
    os.makedirs(b["target"])
    shutil.copyfile(os.path.join(src, "SRU.chk"), os.path.join(b["target"], "SRU.chk"))
    assert esesim.chk_gen(os.path.join(b["target"], "SRU.chk")) != b["high"] + 1
    assert restore(jet, b) == 0
    left = sorted(os.listdir(b["logs"]))
    assert left == ["SRU%05X.log" % g for g in range(b["low"], b["high"] + 1)]
    assert esesim.chk_gen(os.path.join(b["target"], "SRU.chk")) == b["high"] + 1


def test_restored_database_attaches_read_only_without_writing(jet, backup_set, make_setup):
    """JET_bitDbReadOnly (0x1): a clean restored database attaches and its header is not written;
    a streamed copy that was never restored still gives -544, a dirty database -550."""
    b = backup_set
    assert restore(jet, b) == 0
    before = open(b["db"], "rb").read()
    s = make_setup(b["target"], db="../databases/SRUDB.dat", name="drill", attach=False)
    assert s.init_err == 0
    assert jet.attach(s.ses, s.db, 1) == 0
    assert jet.dbinfo(s.db, 17, 4)[0] == 0                                  # a reader does not lock others out
    assert jet.detach(s.ses, s.db) == 0
    assert open(b["db"], "rb").read() == before
    streamed = os.path.join(os.path.dirname(b["db"]), "streamed.dat")
    open(streamed, "wb").write(b["stream"])
    assert jet.attach(s.ses, streamed, 1) == E["SoftRecoveryOnBackupDatabase"]
    dirty = os.path.join(os.path.dirname(b["db"]), "dirty.dat")
    shutil.copyfile(os.path.join(esesim.DATA, "sets/srum-win11-dirty", "SRUDB.dat"), dirty)
    assert read_header(dirty)[0].dbstate == 2
    assert jet.attach(s.ses, dirty, 1) == E["DatabaseDirtyShutdown"]


@pytest.mark.parametrize("profile", ["esent10", "xp"])
def test_restore_in_both_profiles(jet, env, tmp_path, make_setup, profile):
    env(ESESIM_PROFILE=profile)
    s = make_setup(esesim.copy_set("srum-win11-dirty", str(tmp_path / "dirty")))
    assert s.init_err == 0 and s.attach_err == 0
    assert jet.begin(s.inst) == 0
    dbs, streams, logs, info, trunc = full_backup(jet, s)
    assert jet.end(s.inst) == 0 and jet.lib.JetTerm2(s.inst, 1) == 0
    root = tmp_path / "set"
    os.makedirs(root / "logs")
    db = str(root / "SRUDB.dat")
    open(db, "wb").write(streams[s.db][0])
    for p in logs:
        shutil.copy(p, root / "logs")
    b = dict(src=s, db=db, logs=str(root / "logs"), low=info.ulGenLow, high=info.ulGenHigh,
             target=str(root / "target"), stream=streams[s.db][0])
    assert restore(jet, b) == 0
    assert [h.dbstate for h in read_header(db)] == [3, 3]
    r = make_setup(b["target"], db="../SRUDB.dat", name="restored")
    assert r.init_err == 0 and r.attach_err == 0
