# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore.Run against backup sets that someone with write access to the share has edited: the manifest
never chooses where restore writes, a set must be self-contained regular files, sets whose session did
not end validly need force, the messages name what is wrong, restored files are private, and the
drill's page check follows the verifier's checksum rules."""
import hashlib
import json
import os
import shutil
import stat
import struct
import sys

import pytest

from engine_host import CLEAN, DIRTY, ROOT, copy_set, run_host, srum_args

sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

SRU_DB = "SRUDB.dat"


@pytest.fixture(scope="module")
def made(tmp_path_factory, built):
    """A full backup and two incrementals of the dirty SRUM set, and a full + incremental of the clean one."""
    base = tmp_path_factory.mktemp("chains")
    src = copy_set(DIRTY, base / "src")
    dest = str(base / "dest")
    os.mkdir(dest)
    sets = {}
    for name, kind in (("full", "full"), ("inc1", "incremental"), ("inc2", "incremental")):
        r = run_host("Run", srum_args(src, dest, type=kind, set_name=name))
        assert r["backup_set"], r
        sets[name] = r["backup_set"]
    other = copy_set(CLEAN, base / "other-src")
    for name, kind in (("other-full", "full"), ("other-inc", "incremental")):
        r = run_host("Run", srum_args(other, dest, type=kind, set_name=name))
        assert r["backup_set"], r
        sets[name] = r["backup_set"]
    return dict(src=src, sets=sets)


@pytest.fixture
def sets(made, tmp_path):
    """Private copies of the sets (each test may edit its own) and a copy of the live source folder."""
    out = {}
    for name, path in made["sets"].items():
        out[name] = str(tmp_path / "share" / name)
        shutil.copytree(path, out[name])
    out["live"] = copy_set(made["src"], tmp_path / "live")
    return out


def edit(set_dir, change):
    path = os.path.join(set_dir, "manifest.json")
    with open(path) as f:
        m = json.load(f)
    change(m)
    with open(path, "w") as f:
        json.dump(m, f)


def rehash(set_dir, name):
    def change(m):
        for e in m["files"]:
            if e["name"] == name:
                with open(os.path.join(set_dir, name), "rb") as f:
                    e["sha256"] = hashlib.sha256(f.read()).hexdigest()
                e["size"] = os.path.getsize(os.path.join(set_dir, name))
    edit(set_dir, change)


def point_at(set_dir, db, log_dir):
    """The manifest's original paths set to db and log_dir (an edited manifest, or an honest one)."""
    def change(m):
        m["databases"][0]["source"] = db
        m["source"]["log_path"] = log_dir
        m["source"]["system_path"] = log_dir
    edit(set_dir, change)


def restore(sets, target, names=("full", "inc1", "inc2"), mapped=True, **kw):
    a = {"backup_set": sets[names[0]], "incrementals": [sets[n] for n in names[1:]]}
    if mapped:
        with open(os.path.join(sets[names[0]], "manifest.json")) as f:
            source = json.load(f)["databases"][0]["source"]
        a["restore_map"] = [{"source": source, "target": os.path.join(target, SRU_DB)}]
        a["log_path"] = os.path.join(target, "logs")
    a.update(kw)
    return run_host("Restore.Run", a)


def assert_refused(r, problem, *words):
    assert r["refused"] is not None and r["refused"]["problem"] == problem, \
        (r["refused"], r["invalid"], r["failed_call"])
    for w in words:
        assert w in r["refused"]["msg"], (w, r["refused"]["msg"])
    assert r["written"] == [] and r["restored"] == []
    assert not [t for t in r["trace"] if t["call"] in ("JetExternalRestore2W", "CopyFile")]


# ------------------------------------------------------------------ the manifest does not choose the target
def test_edited_source_with_force_does_not_replace_another_file(sets, tmp_path):
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir()
    victim = victim_dir / "important.dat"
    victim.write_bytes(b"not a database")
    point_at(sets["full"], str(victim), str(victim_dir))
    r = restore(sets, None, names=("full",), mapped=False, force=True)
    assert_refused(r, "unconfirmed_target", "restore_map", "to_original_paths: true")
    r = restore(sets, None, names=("full",), mapped=False, force=True, to_original_paths=True)
    assert_refused(r, "target_not_ours", str(victim), "not replaced, even with force")
    assert victim.read_bytes() == b"not a database"
    assert sorted(os.listdir(str(victim_dir))) == ["important.dat"]


def test_log_path_needs_confirming_too(sets, tmp_path):
    target = str(tmp_path / "t")
    r = restore(sets, target, names=("full",), log_path=None)
    assert_refused(r, "unconfirmed_target", "log_path", "to_original_paths")
    assert not os.path.exists(target)


@pytest.mark.parametrize("where,words", [
    ("relative", "not an absolute path"),
    ("unc", "UNC"),
    ("dotdot", "'..'"),
    ("system", "system directory /etc"),
    ("windows", "Windows directory"),
])
def test_original_paths_outside_the_rules_are_refused(sets, tmp_path, where, words):
    windir = tmp_path / "C" / "Windows"
    (windir / "System32" / "config").mkdir(parents=True)
    db = {"relative": "Data\\" + SRU_DB, "unc": "\\\\fileserver\\c$\\Data\\" + SRU_DB,
          "dotdot": str(tmp_path / "a" / ".." / SRU_DB), "system": "/etc/ese/" + SRU_DB,
          "windows": str(windir / "System32" / "config" / "SAM")}[where]
    point_at(sets["full"], db, str(tmp_path / "logs"))
    r = run_host("Restore.Run", {"backup_set": sets["full"], "to_original_paths": True, "force": True},
                 env={"ESE_BACKUP_TEST_WINDOWS_DIR": str(windir)})
    assert_refused(r, "unsafe_target", words, "restore_map")
    assert os.listdir(str(windir / "System32" / "config")) == []


def test_a_relative_log_path_in_the_manifest_is_refused(sets, tmp_path):
    target = str(tmp_path / "t")
    point_at(sets["full"], os.path.join(sets["live"], SRU_DB), "logs")
    r = restore(sets, target, names=("full",), log_path=None, to_original_paths=True)
    assert_refused(r, "unsafe_target", "source.log_path", "not an absolute path", "log_path")
    assert not os.path.exists(target) and not os.path.exists(os.path.join(os.getcwd(), "logs", "SRU.log"))


def test_to_original_paths_restores_over_the_same_database_in_a_known_ese_folder(sets, tmp_path):
    """The honest case: the manifest's paths are the live database's, in an ESE folder of the Windows directory."""
    windir = tmp_path / "C" / "Windows"
    sru = windir / "System32" / "sru"
    shutil.copytree(sets["live"], str(sru))
    for name in ("full", "inc1", "inc2"):
        point_at(sets[name], str(sru / SRU_DB), str(sru))
    env = {"ESE_BACKUP_TEST_WINDOWS_DIR": str(windir)}
    a = {"backup_set": sets["full"], "incrementals": [sets["inc1"], sets["inc2"]], "to_original_paths": True}
    r = run_host("Restore.Run", a, env=env)
    assert_refused(r, "target_exists", "force: true")
    a["force"] = True
    r = run_host("Restore.Run", a, env=env)
    assert r["failed_call"] is None and r["refused"] is None, r
    assert r["restored"][0]["db_state_name"] == "clean_shutdown"
    assert str(sru / SRU_DB) in r["written"]


# ------------------------------------------------------------------ a set is self-contained regular files
def _db_file_outside(s, tmp):
    shutil.copyfile(os.path.join(s, "databases", SRU_DB), os.path.join(tmp, SRU_DB))
    edit(s, lambda m: m["databases"][0].update(file="../" + SRU_DB))


def _db_file_is_a_log(s, tmp):
    with open(os.path.join(s, "manifest.json")) as f:
        log = [e["name"] for e in json.load(f)["files"] if e["role"] == "log"][0]
    edit(s, lambda m: m["databases"][0].update(file=log))


def _db_symlink(s, tmp):
    db = os.path.join(s, "databases", SRU_DB)
    shutil.move(db, os.path.join(tmp, SRU_DB))
    os.symlink(os.path.join(tmp, SRU_DB), db)


def _logs_symlink(s, tmp):
    shutil.move(os.path.join(s, "logs"), os.path.join(tmp, "logs"))
    os.symlink(os.path.join(tmp, "logs"), os.path.join(s, "logs"))


def _fifo_log(s, tmp):
    with open(os.path.join(s, "manifest.json")) as f:
        log = [e["name"] for e in json.load(f)["files"] if e["role"] == "log"][0]
    os.remove(os.path.join(s, log))
    os.mkfifo(os.path.join(s, log))


def _base_name(value):
    def mutate(s, tmp):
        edit(s, lambda m: m["logs"].update(base_name=value))
    return mutate


def _headers_only(s, tmp):
    db = os.path.join(s, "databases", SRU_DB)
    with open(db, "rb") as f:
        data = f.read()
    with open(os.path.join(s, "manifest.json")) as f:
        cb = json.load(f)["databases"][0]["page_size"]
    with open(db, "wb") as f:
        f.write(data[:2 * cb] + data[-cb:])       # header, shadow header, trailer: no data page
    rehash(s, "databases/" + SRU_DB)


@pytest.mark.parametrize("mutate,problem,words", [
    (_db_file_outside, "unsafe_name", "databases[].file '../SRUDB.dat'"),
    (_db_file_is_a_log, "db_file_role", "listed as a log"),
    (_db_symlink, "symlink", "databases/SRUDB.dat is a symbolic link"),
    (_logs_symlink, "symlink", "logs is a symbolic link"),
    (_fifo_log, "not_regular", "FIFO"),
    (_base_name("../../../zz"), "unsafe_base_name", "logs.base_name '../../../zz'"),
    (_base_name("S.U"), "unsafe_base_name", "3-character"),
    (_headers_only, "no_pages", "only its header pages"),
], ids=["db-file-outside", "db-file-is-a-log", "db-symlink", "logs-symlink", "fifo", "base-name-dotdot",
        "base-name-dot", "headers-only"])
def test_hostile_set_is_refused_before_anything_is_written(sets, tmp_path, mutate, problem, words):
    outside = tmp_path / "outside"
    outside.mkdir()
    mutate(sets["full"], str(outside))
    target = str(tmp_path / "t")
    r = restore(sets, target, names=("full",))
    assert_refused(r, problem, words, sets["full"])
    assert not os.path.exists(target)


def test_drill_refuses_a_symlinked_logs_folder(sets, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    _logs_symlink(sets["full"], str(outside))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    r = run_host("Restore.Run", {"backup_set": sets["full"], "drill": True, "scratch": str(scratch)})
    assert_refused(r, "symlink", "logs is a symbolic link")
    assert os.listdir(str(scratch)) == []


# ------------------------------------------------------------------ messages that send the operator the right way
def test_incrementals_in_the_wrong_order_say_so(sets, tmp_path):
    r = restore(sets, str(tmp_path / "t"), names=("full", "inc2", "inc1"))
    assert_refused(r, "chain_order", "wrong order", sets["inc2"], sets["inc1"])
    assert "missing an incremental" not in r["refused"]["msg"]


def test_an_incremental_listed_twice_says_so(sets, tmp_path):
    r = restore(sets, str(tmp_path / "t"), names=("full", "inc1", "inc1"))
    assert_refused(r, "chain_order", "listed twice")


def test_an_incremental_of_another_database_says_so(sets, tmp_path):
    r = restore(sets, str(tmp_path / "t"), names=("full", "inc1", "other-inc"))
    assert_refused(r, "signature_mismatch", "belongs to another database", sets["other-inc"])
    assert "oldest first" not in r["refused"]["msg"]


def test_a_skipped_incremental_is_still_missing(sets, tmp_path):
    r = restore(sets, str(tmp_path / "t"), names=("full", "inc2"))
    assert_refused(r, "chain_gap", "missing an incremental")


# ------------------------------------------------------------------ how the backup session ended
def write_ending(set_dir, **kw):
    e = {"format": "ese.backup/ending/1", "session": None, "ended": "normal", "backup_valid": True,
         "logs_truncated": True, "recorded_as": "full",
         "proof": {"sequence_complete": True, "header_recorded": True, "missing": []},
         "end_call": {"call": "JetEndExternalBackupInstance2", "err": 0}, "time": "2026-12-01T00:00:00Z"}
    e.update(kw)
    with open(os.path.join(set_dir, "ending.json"), "w") as f:
        json.dump(e, f)


def test_a_set_without_an_ending_record_needs_force(sets, tmp_path):
    for name in ("full", "inc1", "inc2"):
        write_ending(sets[name])
    os.remove(os.path.join(sets["inc1"], "ending.json"))
    target = str(tmp_path / "t")
    r = restore(sets, target)
    assert_refused(r, "no_ending", sets["inc1"], "no ending record", "force: true")
    assert not os.path.exists(target)
    r = restore(sets, target, force=True)
    assert r["failed_call"] is None and r["refused"] is None, r
    assert any("no ending record" in w and "force: true" in w for w in r["warnings"]), r["warnings"]
    assert [c["ending"]["status"] for c in r["chain"]] == ["valid", "missing", "valid"]


@pytest.mark.parametrize("ending,words", [
    ({"ended": "abort", "backup_valid": False}, "ended: abort; backup_valid: false"),
    ({"backup_valid": False, "proof": {"sequence_complete": False, "header_recorded": True, "missing": ["begin"]}},
     "sequence_complete: false"),
    ({"format": "something/else"}, "not valid ese.backup/ending/1"),
    ({"backup_valid": "yes"}, "not valid ese.backup/ending/1"),
])
def test_a_set_whose_session_did_not_end_validly_is_refused(sets, tmp_path, ending, words):
    write_ending(sets["full"], **ending)
    target = str(tmp_path / "t")
    r = restore(sets, target, names=("full",))
    problem = "backup_not_valid" if ending.get("backup_valid") is False else "ending_unreadable"
    assert_refused(r, problem, sets["full"], words)
    assert not os.path.exists(target)


def test_a_drill_of_a_set_that_did_not_end_validly_needs_force(sets, tmp_path):
    write_ending(sets["full"], ended="abort", backup_valid=False)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    a = {"backup_set": sets["full"], "drill": True, "scratch": str(scratch)}
    assert_refused(run_host("Restore.Run", a), "backup_not_valid", "ended: abort")
    a["force"] = True
    r = run_host("Restore.Run", a)
    assert r["drill_report"]["passed"] is True, r["drill_report"]
    assert any("did not end validly" in w for w in r["warnings"])


# ------------------------------------------------------------------ restored files are as private as sets
def test_restored_files_and_created_folders_are_owner_only(sets, tmp_path):
    target = str(tmp_path / "new" / "restore")
    old = os.umask(0o022)
    try:
        r = restore(sets, target)
    finally:
        os.umask(old)
    assert r["failed_call"] is None and r["refused"] is None, r
    for d in (str(tmp_path / "new"), target, os.path.join(target, "logs")):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, d
    assert len(r["written"]) == 3
    for f in r["written"]:
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f


# ------------------------------------------------------------------ the drill's page rules are the verifier's
def _page_file(path, pages, cb):
    with open(path, "wb") as f:
        f.write(bytes(2 * cb))
        for p in pages:
            f.write(p)


@pytest.mark.parametrize("cb", [4096, 8192, 16384, 32768])
def test_page_verdicts_agree_with_the_verifier(tmp_path, cb):
    import numpy as np
    import ese_synth
    from ansible_collections.ese.backup.plugins.module_utils.ese_format import checksum as ck
    q = np.zeros((9, cb // 8), dtype=np.uint64)
    ese_synth.fill_pages(q, 1, cb, np.random.default_rng(cb), zero_every=0, old_format_every=2)
    pages = [bytearray(q[i].tobytes()) for i in range(9)]   # even page numbers in the old format
    pages[2][cb // 2] ^= 0x01                        # new format, one bit: ECC corrects it
    pages[3][cb // 2] ^= 0x01                        # old format, one bit: bad
    pages[4][100] ^= 0x01
    pages[4][300] ^= 0x01                            # new format, two bits in one block
    pages[5][48] = 0x01                              # old format with a non-zero checksum slot (large pages)
    struct.pack_into("<I", pages[5], 0, ck.xor_old(bytes(pages[5])))
    pages[6] = bytearray(cb)                         # unused
    struct.pack_into("<I", pages[7], 4, 99)          # old format, wrong page number
    struct.pack_into("<I", pages[7], 0, ck.xor_old(bytes(pages[7])))
    if cb > 8192:
        pages[8][45] ^= 0x04                         # header block bit on block 1's checksum slot
    path = str(tmp_path / "pages.edb")
    _page_file(path, [bytes(p) for p in pages], cb)
    want = [ck.page_status(bytes(p), i + 1, cb) for i, p in enumerate(pages)]
    got = run_host("Restore.PageVerdicts", {"path": path, "page_size": cb})["verdicts"]
    assert got == want
    assert want[:5] == [ck.OK, ck.OK, ck.CORRECTABLE, ck.BAD, ck.BAD] and want[6:8] == [ck.ZERO, ck.BAD_PGNO]
    assert want[5] == (ck.BAD if cb > 8192 else ck.OK) and want[8] == (ck.CORRECTABLE if cb > 8192 else ck.OK)


# ------------------------------------------------------------------ records nested too deep
@pytest.mark.parametrize("record", ["manifest.json", "ending.json"])
def test_deeply_nested_records_are_refused_not_fatal(sets, tmp_path, record):
    path = os.path.join(sets["full"], record)
    with open(path) as f:
        rec = json.load(f)
    rec["deep"] = "@"
    text = json.dumps(rec).replace('"@"', "[" * 200000 + "]" * 200000)
    with open(path, "w") as f:
        f.write(text)
    target = str(tmp_path / "t")
    with open(os.path.join(sets["inc1"], "manifest.json")) as f:
        source = json.load(f)["databases"][0]["source"]
    r = restore(sets, target, names=("full",), mapped=False, log_path=target,
                restore_map=[{"source": source, "target": os.path.join(target, SRU_DB)}])
    if record == "manifest.json":
        assert_refused(r, "manifest_unreadable", "nested deeper than 64 levels")
    else:
        assert_refused(r, "ending_unreadable", "not valid ese.backup/ending/1")
