# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup sets (manifest, files, facts) and chains, on synthetic sets built like the engine's."""
import json
import os
import shutil

import pytest

from ansible_collections.ese.backup.plugins.module_utils.ese_format import backupset as bs
from ansible_collections.ese.backup.plugins.module_utils.ese_format.verify import verify


def codes(res):
    return sorted(set(p["code"] for p in res["problems"]))


def by_code(res, code):
    return [p for p in res["problems"] if p["code"] == code]


@pytest.fixture
def full_set(tmp_path, synth):
    return synth.make_backup_set(str(tmp_path), "full-1", "full", gen_low=10, gen_high=12)


def _manifest(path):
    with open(os.path.join(path, "manifest.json")) as f:
        return json.load(f)


def _write_manifest(path, m):
    with open(os.path.join(path, "manifest.json"), "w") as f:
        json.dump(m, f)


def test_valid_full_set(full_set):
    r = verify(full_set)
    assert r["valid"], r["problems"]
    assert r["kind"] == "set" and r["sets"][0]["type"] == "full"
    d = r["databases"][0]
    assert d["file"] == "databases/test.edb" and d["streamed"] and d["required_generations"] == [10, 12]
    assert (r["logs"][0]["gen_low"], r["logs"][0]["gen_high"]) == (10, 12)


def test_manifest_file_itself_as_path(full_set):
    r = verify(os.path.join(full_set, "manifest.json"))
    assert r["valid"] and r["kind"] == "set"


@pytest.mark.parametrize("cb", [8192, 16384, 32768])
def test_valid_sets_other_page_sizes(tmp_path, synth, cb):
    s = synth.make_backup_set(str(tmp_path), "f", "full", 3, 4, page_size=cb, pages=12)
    assert verify(s)["valid"]


def test_missing_file(full_set):
    os.remove(os.path.join(full_set, "logs", "edb0000B.log"))
    r = verify(full_set)
    assert "FILE_MISSING" in codes(r) and by_code(r, "FILE_MISSING")[0]["file"] == "logs/edb0000B.log"
    assert "LOG_GAP" in codes(r) and "LOG_REQUIRED_MISSING" in codes(r)


def test_extra_file(full_set):
    with open(os.path.join(full_set, "logs", "notes.txt"), "w") as f:
        f.write("x")
    r = verify(full_set)
    assert codes(r) == ["FILE_UNLISTED"] and by_code(r, "FILE_UNLISTED")[0]["file"] == "logs/notes.txt"


def test_size_and_hash(full_set):
    m = _manifest(full_set)
    m["files"][1]["sha256"] = "0" * 64
    m["files"][2]["size"] += 1
    _write_manifest(full_set, m)
    r = verify(full_set)
    assert codes(r) == ["FILE_HASH_MISMATCH", "FILE_SIZE_MISMATCH"]


def test_flipped_page_bit_in_set(full_set, synth):
    db = os.path.join(full_set, "databases", "test.edb")
    synth.corrupt(db, (3 + 1) * 4096 + 2000, 2)
    r = verify(full_set)
    assert codes(r) == ["DB_PAGE_CORRECTABLE", "FILE_HASH_MISMATCH"]
    assert by_code(r, "DB_PAGE_CORRECTABLE")[0]["page"] == 3
    assert r["databases"][0]["bad_pages"] == [3]


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "logs/../../x", "C:/x", "logs\\x", "", "logs//x"])
def test_unsafe_names(full_set, name):
    m = _manifest(full_set)
    m["files"].append({"name": name, "role": "log", "size": 1, "sha256": "0" * 64})
    _write_manifest(full_set, m)
    r = verify(full_set)
    assert codes(r) == ["MANIFEST_UNSAFE_NAME"]


def test_safe_name():
    assert bs.safe_name("databases/SRUDB.dat") and bs.safe_name("logs/SRU0005C.log")


def test_invalid_manifest(full_set):
    with open(os.path.join(full_set, "manifest.json"), "w") as f:
        f.write("{not json")
    r = verify(full_set)
    assert codes(r) == ["MANIFEST_INVALID"]
    assert r["databases"] and r["databases"][0]["pages_ok"] > 0     # files are still judged


def test_unknown_format(full_set):
    m = _manifest(full_set)
    m["format"] = "other/2"
    _write_manifest(full_set, m)
    assert codes(verify(full_set)) == ["MANIFEST_INVALID"]


def test_manifest_facts(full_set):
    m = _manifest(full_set)
    m["databases"][0]["page_size"] = 8192
    m["databases"][0]["sign_log"] = "ab" * 28
    m["logs"]["gen_high"] = 13
    _write_manifest(full_set, m)
    r = verify(full_set)
    assert codes(r) == ["MANIFEST_MISMATCH"] and len(r["problems"]) == 3


def test_empty_set(tmp_path):
    s = tmp_path / "empty"
    s.mkdir()
    _write_manifest(str(s), {"format": "ese.backup/1", "type": "incremental", "files": []})
    assert codes(verify(str(s))) == ["SET_EMPTY", "SET_ENDING_MISSING"]


def test_just_created_database_in_a_set(tmp_path, synth):
    s = synth.make_backup_set(str(tmp_path), "f", "full", 3, 4)
    p = os.path.join(s, "databases", "test.edb")
    synth.make_database(p, 4096, pages=32, state=1, sign_log=synth.signature(1), sign_db=synth.signature(1001))
    r = verify(s)
    assert "DB_STATE" in codes(r)


# ------------------------------------------------------------------ chains
def _chain(tmp_path, synth, specs, seed=1):
    root = tmp_path / "sets"
    root.mkdir()
    for i, (name, kind, lo, hi) in enumerate(specs):
        synth.make_backup_set(str(root), name, kind, lo, hi, seed=seed, created="2026-11-25T%02d:00:00Z" % i)
    return str(root)


def test_valid_chain(tmp_path, synth):
    root = _chain(tmp_path, synth, [("a-full", "full", 10, 12), ("b-inc", "incremental", 12, 14),
                                    ("c-inc", "incremental", 15, 16)])
    r = verify(root)
    assert r["valid"], r["problems"]
    assert r["kind"] == "sets" and len(r["sets"]) == 3
    (c,) = r["chains"]
    assert c["sets"] == ["a-full", "b-inc", "c-inc"] and c["continuous"] and (c["gen_low"], c["gen_high"]) == (10, 16)
    assert all(s["valid"] for s in r["sets"])
    assert r["databases"][0]["file"] == "a-full/databases/test.edb"


def test_chain_gap(tmp_path, synth):
    root = _chain(tmp_path, synth, [("a-full", "full", 10, 12), ("b-inc", "incremental", 14, 15)])
    r = verify(root)
    assert codes(r) == ["CHAIN_GAP"]
    p = r["problems"][0]
    assert p["file"] == "b-inc" and p["generation"] == 13
    assert r["chains"][0]["continuous"] is False


def test_chain_signature(tmp_path, synth):
    root = tmp_path / "sets"
    root.mkdir()
    synth.make_backup_set(str(root), "a-full", "full", 10, 12, seed=1, created="2026-11-25T01:00:00Z")
    synth.make_backup_set(str(root), "b-inc", "incremental", 13, 14, seed=2, created="2026-11-25T02:00:00Z")
    assert codes(verify(str(root))) == ["CHAIN_SIGNATURE_MISMATCH"]


def test_chain_without_full(tmp_path, synth):
    root = _chain(tmp_path, synth, [("b-inc", "incremental", 13, 14)])
    assert codes(verify(root)) == ["CHAIN_NO_BASE"]


def test_chain_log_conflict(tmp_path, synth):
    root = _chain(tmp_path, synth, [("a-full", "full", 10, 12), ("b-inc", "incremental", 12, 14)])
    log = os.path.join(root, "b-inc", "logs", "edb0000C.log")
    # a different but self-consistent gen-12 file in the incremental
    synth.make_log(log, 12, synth.signature(1), prev_create_time=synth.gen_time(11, 1), used_sectors=2, seed=1)
    m = _manifest(os.path.join(root, "b-inc"))
    for e in m["files"]:
        if e["name"] == "logs/edb0000C.log":
            e["sha256"] = bs.sha256_file(log)
    _write_manifest(os.path.join(root, "b-inc"), m)
    r = verify(root)
    assert codes(r) == ["CHAIN_LOG_CONFLICT"]


def test_differential_and_copy(tmp_path, synth):
    root = _chain(tmp_path, synth, [("a-full", "full", 10, 12), ("b-copy", "copy", 12, 13),
                                    ("c-diff", "differential", 11, 14)])
    r = verify(root)
    assert r["valid"], r["problems"]
    assert [c["sets"] for c in r["chains"]] == [["a-full", "c-diff"], ["b-copy"]]


def test_partial_set_is_a_warning(tmp_path, synth):
    root = _chain(tmp_path, synth, [("a-full", "full", 10, 12)])
    os.makedirs(os.path.join(root, ".b.partial", "logs"))
    r = verify(root)
    assert r["valid"] and codes(r) == ["SET_PARTIAL"] and r["warning_count"] == 1


def test_one_bad_set_among_many(tmp_path, synth):
    root = _chain(tmp_path, synth, [("a-full", "full", 10, 12), ("b-inc", "incremental", 13, 14)])
    os.remove(os.path.join(root, "b-inc", "logs", "edb0000D.log"))
    r = verify(root, workers=2)
    assert not r["valid"]
    assert [s["valid"] for s in r["sets"]] == [True, False]
    assert by_code(r, "FILE_MISSING")[0]["file"] == "b-inc/logs/edb0000D.log"


def test_checksums_off(full_set, synth):
    synth.corrupt(os.path.join(full_set, "databases", "test.edb"), (3 + 1) * 4096 + 2000, 2)
    r = verify(full_set, checksums=False)
    assert codes(r) == ["FILE_HASH_MISMATCH"]
    assert r["databases"][0]["pages_checked"] == 0


def test_nothing_to_verify(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    r = verify(str(tmp_path))
    assert codes(r) == ["PATH_UNRECOGNISED"] and not r["valid"]
    r = verify(str(tmp_path / "a.txt"))
    assert codes(r) == ["PATH_UNRECOGNISED"]


def test_missing_path(tmp_path):
    with pytest.raises(IOError):
        verify(str(tmp_path / "nope"))


def test_sample_set_laid_out_as_a_backup_set(tmp_path, testdata):
    """The real dirty SRUM files placed as a set (plain DB, logs) with a manifest made here."""
    s = tmp_path / "set"
    (s / "databases").mkdir(parents=True)
    (s / "logs").mkdir()
    src = os.path.join(testdata, "sets", "srum-win11-dirty")
    files = []
    shutil.copyfile(os.path.join(src, "SRUDB.dat"), str(s / "databases" / "SRUDB.dat"))
    files.append(("databases/SRUDB.dat", "database"))
    for fn, gen in (("SRU00059.log", 89), ("SRU0005A.log", 90), ("SRU0005B.log", 91), ("SRU.log", 92)):
        target = "SRU%05X.log" % gen
        shutil.copyfile(os.path.join(src, fn), str(s / "logs" / target))
        files.append(("logs/" + target, "log"))
    m = {"format": "ese.backup/1", "type": "copy", "logs": {"gen_low": 89, "gen_high": 92, "base_name": "SRU"},
         "databases": [{"file": "databases/SRUDB.dat", "page_size": 4096, "db_state": 2,
                        "gen_min_required": 92, "gen_max_required": 92}],
         "files": [{"name": n, "role": role, "size": os.path.getsize(str(s / n)), "sha256": bs.sha256_file(str(s / n))}
                   for n, role in files]}
    _write_manifest(str(s), m)
    r = verify(str(s))
    assert r["valid"], r["problems"]


# ---- the ending record (ending.json) ----

def test_a_set_with_a_valid_ending_is_restorable_and_its_ending_is_no_unlisted_file(full_set):
    r = verify(full_set)
    assert r["valid"] and r["restorable"] is True and r["sets"][0]["restorable"] is True, r["problems"]
    assert r["sets"][0]["ending"]["recorded_as"] == "full" and not r["problems"]


def test_a_set_without_an_ending_is_valid_but_not_restorable(full_set):
    os.remove(os.path.join(full_set, "ending.json"))
    r = verify(full_set)
    assert r["valid"] is True and r["restorable"] is False and r["sets"][0]["restorable"] is False
    assert codes(r) == ["SET_ENDING_MISSING"] and r["problems"][0]["severity"] == "warning"
    assert r["problems"][0]["file"] == "ending.json"


def test_a_set_whose_session_did_not_end_validly_is_not_restorable(tmp_path, synth):
    s = synth.make_backup_set(str(tmp_path), "db-only", "full", ending={
        "session": "nightly", "backup_valid": False, "recorded_as": None,
        "proof": {"sequence_complete": False, "header_recorded": False, "missing": ["the logs were not copied"]}})
    r = verify(s)
    assert r["valid"] is False and r["restorable"] is False
    assert codes(r) == ["SET_ENDING_NOT_VALID"] and r["problems"][0]["severity"] == "error"
    assert "nightly" in r["problems"][0]["detail"] and "the logs were not copied" in r["problems"][0]["detail"]


@pytest.mark.parametrize("text", ["{", "[]", '{"format": "ese.backup/ending/2", "backup_valid": true}',
                                  '{"format": "ese.backup/ending/1", "backup_valid": "yes", "proof": {}}'])
def test_an_unreadable_ending_is_not_restorable(full_set, text):
    with open(os.path.join(full_set, "ending.json"), "w") as f:
        f.write(text)
    r = verify(full_set)
    assert codes(r) == ["SET_ENDING_INVALID"] and r["restorable"] is False and r["valid"] is False


def test_a_directory_of_sets_is_restorable_only_when_every_set_is(tmp_path, synth):
    synth.make_backup_set(str(tmp_path), "a-full", "full", gen_low=10, gen_high=12)
    synth.make_backup_set(str(tmp_path), "b-inc", "incremental", gen_low=12, gen_high=14, ending=False)
    r = verify(str(tmp_path))
    assert [(x["name"], x["restorable"]) for x in r["sets"]] == [("a-full", True), ("b-inc", False)]
    assert r["restorable"] is False


def test_a_kept_logs_folder_is_never_restorable(tmp_path, synth):
    k = synth.make_kept_logs(str(tmp_path), "nightly")
    r = verify(k)
    assert r["restorable"] is False and "SET_ENDING_MISSING" not in codes(r)
