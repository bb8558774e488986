# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An application's own database through the simulator: the calls of
tests/integration/targets/setup_ese_database/library/ese_test_database.ps1 make a set that the
verifier accepts and the engine backs up; each misuse gives ESE's error."""
import ctypes
import os
import struct
import sys
from ctypes import byref, c_size_t

import pytest

import esesim
from esesim import E, wbuf
from test_full_backup import full_backup

from ansible_collections.ese.backup.plugins.module_utils.ese_format import verify as ese_verify

ENGINE_TESTS = os.path.join(esesim.ROOT, "tests", "engine")


def payload(i):
    return (chr(ord("a") + i % 26) * (200 + i % 1800)).encode()


def log_data_sectors(path):
    """Non-zero data sectors of a v8 log (sector 0 is the header)."""
    data = open(path, "rb").read()
    return [data[o:o + 4096] for o in range(4096, len(data), 4096) if any(data[o:o + 4096])]


def problems(res):
    return [(p["code"], p["file"]) for p in res["problems"]]


# ---------------------------------------------------------------- the set the .ps1 makes

def test_ps1_calls_make_a_set_the_verifier_accepts(jet, tmp_path):
    folder = str(tmp_path / "db")
    db = jet.create_set(folder, base="tst", database="test.edb", page_size=8192, records=500)
    assert sorted(os.listdir(folder)) == ["test.edb", "tst.chk", "tst.log"]
    res = ese_verify.verify(folder)
    assert res["valid"], problems(res)
    assert res["problems"] == []
    d = res["databases"][0]
    assert d["page_size"] == 8192 and d["state_name"] == "CleanShutdown"
    assert d["gen_min_required"] == 0 and d["gen_max_required"] == 0
    assert d["size"] == 256 * 8192 and d["pages_total"] == 254                     # ESE's initial 256 pages
    # 500 records of 200..699 bytes are in checksummed pages (root, space trees, catalog, table, data)
    stored = sum(200 + i % 1800 for i in range(500))
    assert d["pages_ok"] >= 5 + stored // 8192 and d["pages_ok"] + d["pages_zero"] == 254 and not d["bad_pages"]
    assert d["sign_db"] != "0" * 56
    (stream,) = res["logs"]
    assert stream["base_name"] == "TST" and stream["generations"] == [1]
    assert stream["signature"] == d["sign_log"]
    (chk,) = res["checkpoints"]
    assert chk["generation"] == 1 and chk["sign_log"] == d["sign_log"]
    # the log holds the work: every record's bytes, in segments that verify
    sectors = log_data_sectors(os.path.join(folder, "tst.log"))
    assert len(sectors) * 4056 >= stored
    blob = b"".join(s[40:] for s in sectors)
    assert payload(499) in blob and b"records" in blob and b"payload" in blob
    # the records are in the database's pages too
    raw = open(db, "rb").read()
    assert payload(0) in raw and payload(498)[:4000] in raw
    hdr, shadow = esesim.read_header(db)
    assert hdr.raw == shadow.raw and hdr.checksum_ok and hdr.magic == 0x89ABCDEF and hdr.dbstate == 3


@pytest.mark.parametrize("page_size", [4096, 16384, 32768])
def test_other_page_sizes(jet, tmp_path, page_size):
    folder = str(tmp_path / "db")
    jet.create_set(folder, page_size=page_size, records=60)
    res = ese_verify.verify(folder)
    assert res["valid"], problems(res)
    d = res["databases"][0]
    stored = sum(len(payload(i)) for i in range(60))
    assert d["page_size"] == page_size and d["pages_ok"] >= 5 + stored // page_size and not d["bad_pages"]


def test_small_logs_make_500_records_span_generations(jet, tmp_path):
    folder = str(tmp_path / "db")
    jet.create_set(folder, records=500, log_kb=128)
    names = sorted(os.listdir(folder))
    numbered = [n for n in names if n.startswith("tst0")]
    assert len(numbered) >= 2 and numbered[0] == "tst00001.log"
    res = ese_verify.verify(folder)
    assert res["valid"], problems(res)
    (stream,) = res["logs"]
    assert stream["generations"] == list(range(1, len(numbered) + 2))             # tst.log is the newest
    d = res["databases"][0]
    assert d["gen_max_committed"] == len(numbered) + 1
    assert res["checkpoints"][0]["generation"] == len(numbered) + 1
    for n in numbered:                                                            # full generations
        h = esesim.log_header(os.path.join(folder, n))
        assert len(log_data_sectors(os.path.join(folder, n))) == h["csec"] - 2


def test_a_broken_log_sector_is_caught(jet, tmp_path):
    """The verifier really checks the written segments: one flipped byte fails it."""
    folder = str(tmp_path / "db")
    jet.create_set(folder, records=20)
    log = os.path.join(folder, "tst.log")
    data = bytearray(open(log, "rb").read())
    data[4096 + 100] ^= 0xFF
    data[4096 + 900] ^= 0x0F
    open(log, "wb").write(bytes(data))
    res = ese_verify.verify(folder)
    assert not res["valid"]
    assert [c for c, f in problems(res) if f == "tst.log"] == ["LOG_SEGMENT_CHECKSUM"]


def test_the_set_attaches_and_backs_up_through_the_api(jet, tmp_path, make_setup):
    folder = str(tmp_path / "db")
    db = jet.create_set(folder, records=200)
    live = open(db, "rb").read()
    jet.lib.EseSimReset()
    s = make_setup(folder, base="tst", db="test.edb", page=8192)
    assert s.init_err == 0 and s.attach_err == 0
    err, info = jet.dbinfo(db, 17, 4)
    assert err == 0 and struct.unpack("<I", info)[0] == 8192
    assert jet.begin(s.inst) == 0
    dbs, streams, logs, info, trunc = full_backup(jet, s)
    stream, size = streams[db]
    assert size == len(live) + 8192 and stream[2 * 8192:len(live)] == live[2 * 8192:]
    assert [os.path.basename(p) for p in logs] == ["tst00001.log"] and (info.ulGenLow, info.ulGenHigh) == (1, 1)
    assert jet.end(s.inst) == 0
    assert jet.detach(s.ses, db) == 0
    assert jet.lib.JetTerm2(s.inst, 1) == 0
    h, _ = esesim.read_header(db)
    assert h.bk["FullPrev"]["low"] == 1 and h.bk["FullPrev"]["high"] == 1


@pytest.mark.skipif(not os.path.exists(os.path.join(esesim.ROOT, "build", "sim", "EseSimHost.exe")),
                    reason="engine host not built (make engine)")
def test_the_engine_backs_up_the_set(jet, tmp_path):
    sys.path.insert(0, ENGINE_TESTS)
    from engine_host import run_host
    folder = str(tmp_path / "db")
    db = jet.create_set(folder, records=500, log_kb=128)
    chk_gen = esesim.chk_gen(os.path.join(folder, "tst.chk"))
    assert chk_gen >= 3
    dest = str(tmp_path / "dest")
    os.makedirs(dest)
    r = run_host("Run", {"databases": [db], "log_path": folder, "system_path": folder, "base_name": "tst",
                         "dest": dest, "type": "full", "set_name": "full1"})
    assert r["failed_call"] is None and r["invalid"] is None, r
    assert r["ended"] == "normal" and r["logs_truncated"] is True
    res = ese_verify.verify(r["backup_set"])
    assert res["valid"], problems(res)
    m = r["manifest"]
    assert m["source"]["page_size"] == 8192 and m["source"]["base_name"] == "tst"
    assert [e["name"] for e in m["files"] if e["role"] == "database"] == ["databases/test.edb"]
    # a clean database needs the logs from the checkpoint's generation on (copyMic), which is the current log
    assert [e["name"] for e in m["files"] if e["role"] == "log"] == ["logs/tst%05X.log" % chk_gen]
    # the older generations were truncated; what is left is still a valid folder
    assert sorted(os.listdir(folder)) == ["test.edb", "tst.chk", "tst.log", "tst%05X.log" % chk_gen]
    assert ese_verify.verify(folder)["valid"]
    # and the set restores: a drill (hard recovery into a scratch folder, then attach and page checks)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    r = run_host("Restore.Run", {"backup_set": r["backup_set"], "drill": True, "scratch": str(scratch)})
    rep = r["drill_report"]
    assert rep["passed"] is True, rep
    assert os.listdir(str(scratch)) == []


# ---------------------------------------------------------------- transactions and rollback

class App:
    """An initialised instance with a session, a database created in it and one table."""

    def __init__(self, jet, folder, table=True, coltyp=11):
        self.jet, self.lib = jet, jet.lib
        assert jet.setp(None, esesim.P_PAGE_SIZE, 8192) == 0
        err, self.inst = jet.create("app")
        assert err == 0
        for pid, val in ((esesim.P_SYSTEM_PATH, folder), (esesim.P_LOG_PATH, folder), (esesim.P_BASE_NAME, "app")):
            assert jet.setp(self.inst, pid, 0, val) == 0
        assert jet.setp(self.inst, 100, 1) == 0
        assert jet.init(self.inst) == 0
        err, self.ses = jet.session(self.inst)
        assert err == 0
        self.path = os.path.join(folder, "app.edb")
        err, self.dbid = jet.create_db(self.ses, self.path)
        assert err == 0 and 1 <= self.dbid <= 7
        if table:
            err, self.table = jet.create_table(self.ses, self.dbid, "t")
            assert err == 0
            err, self.col = jet.add_column(self.ses, self.table, "c", coltyp)
            assert err == 0

    def insert(self, data):
        assert self.lib.JetPrepareUpdate(self.ses, self.table, 0) == 0
        assert self.jet.set_column(self.ses, self.table, self.col, data) == 0
        assert self.jet.update(self.ses, self.table) == 0

    def finish(self):
        assert self.lib.JetCloseTable(self.ses, self.table) == 0
        assert self.lib.JetCloseDatabase(self.ses, self.dbid, 0) == 0
        assert self.jet.detach(self.ses, self.path) == 0
        assert self.lib.JetEndSession(self.ses, 0) == 0
        assert self.lib.JetTerm2(self.inst, 1) == 0
        return open(self.path, "rb").read()


@pytest.fixture
def app(jet, tmp_path):
    return App(jet, str(tmp_path / "app"))


def test_commit_reaches_the_pages_and_rollback_does_not(app):
    assert app.lib.JetBeginTransaction(app.ses) == 0
    app.insert(b"KEPT-RECORD" * 10)
    assert app.lib.JetCommitTransaction(app.ses, 0) == 0
    assert app.lib.JetBeginTransaction(app.ses) == 0
    app.insert(b"LOST-RECORD" * 10)
    assert app.lib.JetRollback(app.ses, 0) == 0
    raw = app.finish()
    assert b"KEPT-RECORD" * 10 in raw and b"LOST-RECORD" not in raw


def test_nested_commit_is_undone_by_the_outer_rollback(app):
    assert app.lib.JetBeginTransaction(app.ses) == 0
    assert app.lib.JetBeginTransaction(app.ses) == 0
    app.insert(b"INNER-RECORD" * 8)
    assert app.lib.JetCommitTransaction(app.ses, 0) == 0
    assert app.lib.JetRollback(app.ses, 0) == 0
    assert app.lib.JetCommitTransaction(app.ses, 0) == E["NotInTransaction"]
    assert b"INNER-RECORD" not in app.finish()


def test_end_session_rolls_back(jet, app):
    assert app.lib.JetBeginTransaction(app.ses) == 0
    app.insert(b"OPEN-AT-END" * 8)
    assert app.lib.JetEndSession(app.ses, 0) == 0
    err, ses = jet.session(app.inst)
    assert err == 0
    assert jet.detach(ses, app.path) == 0                       # the handles went with the session
    assert app.lib.JetTerm2(app.inst, 1) == 0
    assert b"OPEN-AT-END" not in open(app.path, "rb").read()


def test_rolled_back_ddl_is_gone(jet, tmp_path):
    a = App(jet, str(tmp_path / "app"), table=False)
    assert a.lib.JetBeginTransaction(a.ses) == 0
    err, t = jet.create_table(a.ses, a.dbid, "gone")
    assert err == 0
    assert a.lib.JetRollback(a.ses, 1) == 0                      # JET_bitRollbackAll
    assert a.lib.JetCloseTable(a.ses, t) == E["InvalidTableId"]  # its cursor was closed
    err, t = jet.create_table(a.ses, a.dbid, "gone")
    assert err == 0


def test_insert_outside_a_transaction_with_a_fixed_column(jet, tmp_path):
    a = App(jet, str(tmp_path / "app"), coltyp=4)               # JET_coltypLong: ESE wraps the update itself
    a.insert(struct.pack("<i", 0x5EC0DE))
    assert a.jet.set_column(a.ses, a.table, a.col, b"") == E["UpdateNotPrepared"]
    raw = a.finish()
    assert struct.pack("<i", 0x5EC0DE) in raw


def test_dirty_term_leaves_a_recoverable_database(jet, tmp_path, make_setup):
    folder = str(tmp_path / "app")
    a = App(jet, folder)
    assert a.lib.JetBeginTransaction(a.ses) == 0
    a.insert(b"x" * 500)
    assert a.lib.JetCommitTransaction(a.ses, 0) == 0
    assert a.lib.JetTerm2(a.inst, 8) == 0                        # JET_bitTermDirty
    h, _ = esesim.read_header(a.path)
    assert h.dbstate == 2 and h.gen_min == 1 and h.gen_max == 1
    res = ese_verify.verify(folder)
    assert res["valid"], problems(res)
    assert res["databases"][0]["required_generations"] == [1, 1]
    jet.lib.EseSimReset()
    s = make_setup(folder, base="app", db="app.edb", page=8192)
    assert s.init_err == 0 and s.attach_err == 0


# ---------------------------------------------------------------- one test per error rule

def test_create_database_on_an_existing_file(app, tmp_path):
    other = str(tmp_path / "exists.edb")
    open(other, "wb").write(b"not a database")
    assert app.jet.create_db(app.ses, other)[0] == E["DatabaseDuplicate"]
    assert open(other, "rb").read() == b"not a database"


def test_create_database_that_is_attached(app):
    assert app.jet.create_db(app.ses, app.path)[0] == E["DatabaseDuplicate"]


def test_create_database_overwrite_existing(app, tmp_path):
    other = str(tmp_path / "exists.edb")
    open(other, "wb").write(b"old")
    err, dbid = app.jet.create_db(app.ses, other, 0x200)          # JET_bitDbOverwriteExisting
    assert err == 0 and dbid != app.dbid and os.path.getsize(other) == 256 * 8192


def test_create_database_in_a_transaction(app, tmp_path):
    assert app.lib.JetBeginTransaction(app.ses) == 0
    assert app.jet.create_db(app.ses, str(tmp_path / "x.edb"))[0] == E["InTransaction"]
    assert not os.path.exists(str(tmp_path / "x.edb"))


def test_create_database_in_a_missing_folder(app, tmp_path):
    assert app.jet.create_db(app.ses, str(tmp_path / "no" / "x.edb"))[0] == E["InvalidPath"]


def test_set_column_without_prepare_update(app):
    assert app.lib.JetBeginTransaction(app.ses) == 0
    assert app.jet.set_column(app.ses, app.table, app.col, b"x") == E["UpdateNotPrepared"]


def test_update_without_prepare_update(app):
    assert app.lib.JetBeginTransaction(app.ses) == 0
    assert app.jet.update(app.ses, app.table) == E["UpdateNotPrepared"]


def test_cancel_without_prepare_update(app):
    assert app.lib.JetPrepareUpdate(app.ses, app.table, 3) == E["UpdateNotPrepared"]


def test_prepare_update_twice(app):
    assert app.lib.JetPrepareUpdate(app.ses, app.table, 0) == 0
    assert app.lib.JetPrepareUpdate(app.ses, app.table, 0) == E["AlreadyPrepared"]
    assert app.lib.JetPrepareUpdate(app.ses, app.table, 3) == 0
    assert app.lib.JetPrepareUpdate(app.ses, app.table, 0) == 0


def test_replace_needs_a_current_record(app):
    assert app.lib.JetPrepareUpdate(app.ses, app.table, 2) == E["NoCurrentRecord"]


def test_long_value_outside_a_transaction(app):
    assert app.lib.JetPrepareUpdate(app.ses, app.table, 0) == 0
    assert app.jet.set_column(app.ses, app.table, app.col, b"x" * 300) == E["NotInTransaction"]


def test_commit_outside_a_transaction(app):
    assert app.lib.JetCommitTransaction(app.ses, 0) == E["NotInTransaction"]
    assert app.lib.JetCommitTransaction(app.ses, 2) == 0          # JET_bitWaitLastLevel0Commit needs none


def test_rollback_outside_a_transaction(app):
    assert app.lib.JetRollback(app.ses, 0) == E["NotInTransaction"]


def test_transactions_nest_seven_deep(app):
    for _ in range(7):
        assert app.lib.JetBeginTransaction(app.ses) == 0
    assert app.lib.JetBeginTransaction(app.ses) == E["TransTooDeep"]


def test_create_table_duplicate(app):
    assert app.jet.create_table(app.ses, app.dbid, "t")[0] == E["TableDuplicate"]
    assert app.jet.create_table(app.ses, app.dbid, "T")[0] == E["TableDuplicate"]   # names ignore case


@pytest.mark.parametrize("name", ["", " lead", "a.b", "x!", "[x]", "a" * 65, "tab\tname"])
def test_create_table_invalid_name(app, name):
    assert app.jet.create_table(app.ses, app.dbid, name)[0] == E["InvalidName"]


def test_create_table_density(app):
    assert app.jet.create_table(app.ses, app.dbid, "d", 1, 19)[0] == E["DensityInvalid"]
    assert app.jet.create_table(app.ses, app.dbid, "d", 1, 101)[0] == E["DensityInvalid"]
    assert app.jet.create_table(app.ses, app.dbid, "d", 1, 0)[0] == 0


def test_create_table_closed_database(app):
    assert app.lib.JetCloseDatabase(app.ses, app.dbid, 0) == 0
    assert app.jet.create_table(app.ses, app.dbid, "u")[0] == E["InvalidDatabaseId"]
    assert app.lib.JetCloseDatabase(app.ses, app.dbid, 0) == E["InvalidDatabaseId"]


def test_add_column_duplicate(app):
    assert app.jet.add_column(app.ses, app.table, "C")[0] == E["ColumnDuplicate"]


@pytest.mark.parametrize("coltyp", [0, 13, 19])
def test_add_column_invalid_type(app, coltyp):
    assert app.jet.add_column(app.ses, app.table, "n", coltyp)[0] == E["InvalidColumnType"]


def test_add_column_short_columndef(app):
    assert ctypes.sizeof(esesim.COLUMNDEF) == 28
    assert app.jet.add_column(app.ses, app.table, "n", 11, cb_struct=24)[0] == E["InvalidParameter"]


def test_column_ids_by_class(app):
    assert app.col == 256                                           # long values are tagged
    assert app.jet.add_column(app.ses, app.table, "fixed", 4)[1] == 1
    assert app.jet.add_column(app.ses, app.table, "var", 10)[1] == 128
    assert app.jet.add_column(app.ses, app.table, "tagged", 4, grbit=0x2)[1] == 257


def test_set_column_unknown_column(app):
    assert app.lib.JetBeginTransaction(app.ses) == 0
    assert app.lib.JetPrepareUpdate(app.ses, app.table, 0) == 0
    assert app.jet.set_column(app.ses, app.table, 999, b"x") == E["ColumnNotFound"]


def test_closed_table(app):
    assert app.lib.JetCloseTable(app.ses, app.table) == 0
    assert app.lib.JetCloseTable(app.ses, app.table) == E["InvalidTableId"]
    assert app.lib.JetPrepareUpdate(app.ses, app.table, 0) == E["InvalidTableId"]


def test_detach_in_a_transaction(app):
    assert app.lib.JetCloseDatabase(app.ses, app.dbid, 0) == 0
    assert app.lib.JetBeginTransaction(app.ses) == 0
    assert app.jet.detach(app.ses, app.path) == E["InTransaction"]


def test_detach_while_open(app):
    assert app.jet.detach(app.ses, app.path) == E["DatabaseInUse"]
    assert app.jet.detach(app.ses, None) == E["DatabaseInUse"]
    assert app.lib.JetCloseDatabase(app.ses, app.dbid, 0) == 0
    assert app.jet.detach(app.ses, app.path) == 0


def test_work_on_a_bad_session(jet, app):
    assert app.lib.JetBeginTransaction(12345) == E["InvalidSesid"]
    assert app.lib.JetEndSession(app.ses, 0) == 0
    assert app.lib.JetBeginTransaction(app.ses) == E["InvalidSesid"]
    assert jet.create_db(app.ses, app.path + "2")[0] == E["InvalidSesid"]


def test_windows_separators(jet, tmp_path):
    """The .ps1 builds paths with '\\': they name the same folders and files."""
    folder = str(tmp_path / "w")
    jet.create_set(folder, records=3)
    assert sorted(os.listdir(folder)) == ["test.edb", "tst.chk", "tst.log"]
    assert not [n for n in os.listdir(str(tmp_path)) if "\\" in n]


def test_ansi_exports_take_char_names(lib):
    """JetCreateTable and JetAddColumn are the ANSI exports; the W forms are not the ones the .ps1 binds."""
    assert hasattr(lib, "JetCreateTable") and hasattr(lib, "JetAddColumn")
    inst = c_size_t(0)
    assert lib.JetCreateInstanceW(byref(inst), wbuf("x")) == 0
    assert lib.JetTerm2(inst.value, 0) == 0


def test_faults_reach_the_new_exports(jet, env, tmp_path):
    env(ESESIM_FAULTS='[{"api": "JetUpdate", "call": 2, "err": -1808}]')
    a = App(jet, str(tmp_path / "app"))
    assert a.lib.JetBeginTransaction(a.ses) == 0
    a.insert(b"first" * 10)
    assert a.lib.JetPrepareUpdate(a.ses, a.table, 0) == 0
    assert a.jet.set_column(a.ses, a.table, a.col, b"second" * 10) == 0
    assert a.jet.update(a.ses, a.table) == -1808                     # injected: nothing logged or stored
    assert a.lib.JetCommitTransaction(a.ses, 0) == 0
    raw = a.finish()
    assert b"first" * 10 in raw and b"second" * 10 not in raw
