# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad input is refused before anything starts; check mode validates everything and writes nothing."""
import hashlib
import os
import shutil

import pytest

from engine_host import CLEAN, run_host, srum_args, trace_calls, tree

STARTS = {"JetCreateInstance2W", "JetInit3W", "JetBeginExternalBackupInstance", "JetAttachDatabase2W"}


def digest_tree(path):
    h = {}
    for p in tree(path):
        fp = os.path.join(path, p)
        if os.path.isfile(fp):
            h[p] = hashlib.sha256(open(fp, "rb").read()).hexdigest()
    return h


def assert_invalid(r, option, *words):
    assert r["invalid"] is not None, r
    assert r["invalid"]["option"] == option, r["invalid"]
    for w in words:
        assert w in r["invalid"]["msg"], r["invalid"]["msg"]
    assert r["backup_started"] is False and r["backup_set"] is None and r["failed_call"] is None
    assert not STARTS & {c for c, _, _ in trace_calls(r)}


def test_check_mode_writes_nothing(dirty_set, dest):
    before_src, before_dest = digest_tree(dirty_set), tree(dest)
    r = run_host("Run", srum_args(dirty_set, dest, set_name="cm"), check_mode=True)
    assert r["invalid"] is None and r["failed_call"] is None
    c = r["check"]
    assert c["would_create"] == os.path.join(dest, "cm")
    assert c["would_truncate_logs"] is True and c["page_size"] == 4096
    assert c["databases"][0]["db_state"] == 2 and c["databases"][0]["gen_min_required"] == 92
    assert c["databases"][0]["file"] == "databases/SRUDB.dat"
    assert c["estimated_bytes"] > os.path.getsize(os.path.join(dirty_set, "SRUDB.dat"))
    assert r["backup_started"] is False and r["backup_set"] is None
    assert not STARTS & {c for c, _, _ in trace_calls(r)}
    assert digest_tree(dirty_set) == before_src and tree(dest) == before_dest


def test_check_mode_reports_the_same_invalid_input(dirty_set, dest):
    r = run_host("Run", srum_args(dirty_set, dest, base_name="edb"), check_mode=True)
    assert_invalid(r, "base_name")
    assert r["check"] is None


def _db(s):
    return os.path.join(s, "SRUDB.dat")


CASES = [
    ("missing database", lambda s, d: {"databases": [os.path.join(s, "nope.dat")]}, "databases", ["does not exist"]),
    ("not ESE", lambda s, d: {"databases": [os.path.join(s, "SRU.chk")]}, "databases", ["not"]),
    ("wrong base name", lambda s, d: {"base_name": "edb"}, "base_name", ["edb"]),
    ("base name length", lambda s, d: {"base_name": "SRUM"}, "base_name", ["3 characters"]),
    ("page size", lambda s, d: {"page_size": 8192}, "page_size", ["4096"]),
    ("relative dest", lambda s, d: {"dest": "backups"}, "dest", ["absolute"]),
    ("dest in log folder", lambda s, d: {"dest": os.path.join(s, "bk")}, "dest", ["log_path"]),
    ("dest and its parent missing", lambda s, d: {"dest": os.path.join(d, "missing", "deeper")}, "dest", ["parent folder"]),
    ("incremental with circular", lambda s, d: {"type": "incremental", "circular_logging": True}, "circular_logging", ["circular"]),
    ("differential with circular", lambda s, d: {"type": "differential", "circular_logging": "yes"}, "circular_logging", []),
    ("buffer not page multiple", lambda s, d: {"buffer_size": 1000000}, "buffer_size", ["multiple"]),
    ("buffer too small", lambda s, d: {"buffer_size": 4096}, "buffer_size", ["3 pages"]),
    ("set name with separator", lambda s, d: {"set_name": "a/b"}, "set_name", ["separator"]),
    ("set name dotdot", lambda s, d: {"set_name": ".."}, "set_name", []),
    ("bad type", lambda s, d: {"type": "snapshot"}, "type", ["full"]),
    ("no databases", lambda s, d: {"databases": []}, "databases", ["required"]),
    ("relative log path", lambda s, d: {"log_path": "logs"}, "log_path", ["absolute"]),
    ("bad integer", lambda s, d: {"buffer_size": "lots"}, "buffer_size", ["integer"]),
]


@pytest.mark.parametrize("name,change,option,words", CASES, ids=[c[0] for c in CASES])
def test_invalid_input(dirty_set, dest, name, change, option, words):
    before = digest_tree(dirty_set)
    r = run_host("Run", srum_args(dirty_set, dest, **change(dirty_set, dest)))
    assert_invalid(r, option, *words)
    assert digest_tree(dirty_set) == before
    assert os.listdir(dest) == []


def test_dest_next_to_database(tmp_path, dirty_set):
    # database in its own folder, logs elsewhere, dest = the database folder
    dbdir = tmp_path / "dbdir"
    dbdir.mkdir()
    shutil.move(_db(dirty_set), dbdir / "SRUDB.dat")
    r = run_host("Run", srum_args(dirty_set, str(dbdir), databases=[str(dbdir / "SRUDB.dat")]))
    assert_invalid(r, "dest", "next to the database")


def test_existing_set_name(dirty_set, dest):
    os.mkdir(os.path.join(dest, "taken"))
    r = run_host("Run", srum_args(dirty_set, dest, set_name="taken"))
    assert_invalid(r, "set_name", "already exists")


def test_dest_not_writable(dirty_set, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.system("mount -t tmpfs -o size=1m,ro tmpfs %s 2>/dev/null" % ro)
    try:
        if not os.path.ismount(str(ro)):
            pytest.skip("cannot mount a read-only tmpfs")
        r = run_host("Run", srum_args(dirty_set, str(ro)))
        assert_invalid(r, "dest", "not writable")
    finally:
        os.system("umount %s 2>/dev/null" % ro)


def test_missing_required_log(dirty_set, dest):
    # the dirty database needs generation 92, which is the current log SRU.log
    os.rename(os.path.join(dirty_set, "SRU.log"), os.path.join(dirty_set, "SRU.log.moved"))
    r = run_host("Run", srum_args(dirty_set, dest), check_mode=True)
    assert_invalid(r, "log_path", "generation 92", "SRU0005C.log")


def test_no_log_set_at_all(dirty_set, dest):
    os.rename(os.path.join(dirty_set, "SRU.log"), os.path.join(dirty_set, "SRU.log.moved"))
    os.remove(os.path.join(dirty_set, "SRU.chk"))
    r = run_host("Run", srum_args(dirty_set, dest))
    assert_invalid(r, "base_name", "SRU.chk")


def test_log_signature_mismatch(tmp_path, dirty_set, dest):
    # the clean set's checkpoint belongs to another log stream
    shutil.copy(os.path.join(CLEAN, "SRU.chk"), os.path.join(dirty_set, "SRU.chk"))
    r = run_host("Run", srum_args(dirty_set, dest), check_mode=True)
    assert_invalid(r, "databases", "signLog")


def test_streamed_copy_is_refused(dirty_set, dest, tmp_path):
    r = run_host("Run", srum_args(dirty_set, dest, set_name="f"))
    assert r["failed_call"] is None, r["failed_call"]
    copy_dir = tmp_path / "restored"
    copy_dir.mkdir()
    shutil.copy(os.path.join(dest, "f", "databases", "SRUDB.dat"), copy_dir / "SRUDB.dat")
    r2 = run_host("Run", srum_args(dirty_set, dest, set_name="g", databases=[str(copy_dir / "SRUDB.dat")]))
    assert_invalid(r2, "databases", "streamed backup copy")


def test_int32_and_double_arguments_are_accepted(dirty_set, dest):
    r = run_host("Run", srum_args(dirty_set, dest, buffer_size=65536.0, page_size="4096", legacy_file_names=3),
                 check_mode=True)
    assert r["invalid"] is None, r["invalid"]
    assert r["check"]["buffer_size"] == 65536


def test_database_in_use(dirty_set, dest):
    import fcntl
    with open(os.path.join(dirty_set, "SRUDB.dat"), "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what the owning service's attach does in the simulator
        r = run_host("Run", srum_args(dirty_set, dest))
    assert_invalid(r, "databases", "in use")
    assert os.listdir(dest) == []


def test_info_reports_headers_and_refuses_a_relative_backup_path(dirty_set):
    r = run_host("Info", {"databases": [os.path.join(dirty_set, "SRUDB.dat"), os.path.join(dirty_set, "nope.dat")]})
    assert r["invalid"] is None
    good, missing = r["databases"]
    assert good["db_state"] == 2 and good["page_size"] == 4096 and good["gen_min_required"] == 92
    assert good["gen_max_required"] == 92 and good["last_full"]["gen_low"] == 0 and not good["streamed_backup_copy"]
    assert "error" in missing
    r = run_host("Info", {"databases": [], "backup_path": "relative/dir"})
    assert r["invalid"]["option"] == "backup_path"
