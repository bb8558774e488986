# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sets written by someone who can write into the backup share: each deviation has its own code.

Deep or huge JSON, FIFOs and other non-regular files, links out of the set, names that leave it,
kept-logs staging folders, header-only databases and an empty path.
"""
import json
import os
import threading

import pytest

from ansible_collections.ese.backup.plugins.module_utils.ese_format import files as fs
from ansible_collections.ese.backup.plugins.module_utils.ese_format.verify import verify


def codes(res):
    return sorted(set(p["code"] for p in res["problems"]))


def by_code(res, code):
    return [p for p in res["problems"] if p["code"] == code]


def _manifest(path):
    with open(os.path.join(path, "manifest.json")) as f:
        return json.load(f)


def _write_manifest(path, m):
    with open(os.path.join(path, "manifest.json"), "w") as f:
        json.dump(m, f)


def verify_within(path, seconds=60, **kw):
    """verify() in a daemon thread: a blocking open of a FIFO would leave it hanging, and fail here."""
    out = {}

    def run():
        try:
            out["r"] = verify(path, **kw)
        except BaseException as e:    # noqa: B902 - reported below
            out["e"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "verify blocked"
    if "e" in out:
        raise out["e"]
    return out["r"]


@pytest.fixture
def sets(tmp_path, synth):
    root = tmp_path / "sets"
    root.mkdir()
    synth.make_backup_set(str(root), "a-full", "full", 10, 12, created="2026-11-25T01:00:00Z")
    synth.make_backup_set(str(root), "b-inc", "incremental", 12, 14, created="2026-11-25T02:00:00Z")
    return str(root)


@pytest.fixture
def full_set(tmp_path, synth):
    return synth.make_backup_set(str(tmp_path), "full-1", "full", gen_low=10, gen_high=12)


# ------------------------------------------------------------------ deep and huge JSON
def _deep(n):
    return "[" * n + "]" * n


def test_deeply_nested_manifest_is_one_unreadable_set(sets):
    m = _manifest(os.path.join(sets, "b-inc"))
    text = json.dumps(m)
    # a valid manifest whose extra key nests 200,000 levels deep
    text = text[:-1] + ', "x": ' + _deep(200000) + "}"
    with open(os.path.join(sets, "b-inc", "manifest.json"), "w") as f:
        f.write(text)
    r = verify(sets)
    (p,) = by_code(r, "MANIFEST_UNREADABLE")
    assert p["file"] == "b-inc/manifest.json" and "200001 levels" in p["detail"]
    by_name = dict((s["name"], s) for s in r["sets"])
    assert by_name["a-full"]["valid"] is True and by_name["b-inc"]["valid"] is False
    assert all(x["file"].startswith("b-inc/") for x in r["problems"] if x["severity"] == "error")


def test_deep_string_content_is_not_nesting(full_set):
    m = _manifest(full_set)
    m["note"] = "[" * 100000 + '\\"{'
    _write_manifest(full_set, m)
    assert verify(full_set)["valid"]


def test_manifest_size_limit(full_set, monkeypatch):
    monkeypatch.setattr(fs, "JSON_MAX_BYTES", 1000)
    r = verify(full_set)
    assert codes(r) == ["MANIFEST_UNREADABLE"] and "larger than 1000 bytes" in r["problems"][0]["detail"]
    assert r["databases"][0]["pages_ok"] > 0          # the files are still judged


def test_json_depth_scanner():
    assert fs.json_depth('{"a": [1, {"b": "[[[["}]}') == 3
    assert fs.json_depth('"\\\\" [') == 1


# ------------------------------------------------------------------ FIFOs, sockets, devices
def test_fifo_inside_a_set_is_skipped(full_set):
    os.mkfifo(os.path.join(full_set, "logs", "edb0000D.log"))
    r = verify_within(full_set)
    (p,) = by_code(r, "FILE_NOT_REGULAR")
    assert p["file"] == "logs/edb0000D.log" and "fifo" in p["detail"] and not r["valid"]


def test_fifo_in_place_of_a_listed_log(full_set):
    log = os.path.join(full_set, "logs", "edb0000B.log")
    os.remove(log)
    os.mkfifo(log)
    r = verify_within(full_set)
    assert "FILE_NOT_REGULAR" in codes(r) and "FILE_MISSING" not in codes(r)


def test_fifo_as_manifest(full_set):
    os.remove(os.path.join(full_set, "manifest.json"))
    os.mkfifo(os.path.join(full_set, "manifest.json"))
    r = verify_within(full_set)
    assert r["kind"] == "set" and by_code(r, "FILE_NOT_REGULAR")[0]["file"] == "manifest.json"


def test_fifo_in_a_plain_folder_and_as_the_path(tmp_path, synth):
    sig = synth.signature(1)
    synth.make_log_set(str(tmp_path), "edb", [1, 2], sig)
    os.mkfifo(str(tmp_path / "edb00003.log"))
    os.mkfifo(str(tmp_path / "other.edb"))
    r = verify_within(str(tmp_path))
    assert codes(r) == ["FILE_NOT_REGULAR"] and len(r["problems"]) == 2
    r = verify_within(str(tmp_path / "edb00003.log"))
    assert codes(r) == ["FILE_NOT_REGULAR"] and r["kind"] == "unknown"


def test_fifo_next_to_a_database_is_not_read(tmp_path, synth):
    sig = synth.signature(3)
    synth.make_log_set(str(tmp_path), "edb", [7, 8], sig)
    os.mkfifo(str(tmp_path / "edb00009.log"))
    synth.make_database(str(tmp_path / "my.edb"), 4096, pages=4, sign_log=sig, state=2, gen_min=7, gen_max=8)
    r = verify_within(str(tmp_path / "my.edb"))
    assert r["valid"], r["problems"]


def test_socket_inside_a_set(full_set):
    import socket
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(os.path.join(full_set, "logs", "s"))
        r = verify_within(full_set)
    finally:
        s.close()
    assert by_code(r, "FILE_NOT_REGULAR")[0]["file"] == "logs/s"


def test_open_regular_refuses_a_fifo_without_blocking(tmp_path):
    p = str(tmp_path / "f")
    os.mkfifo(p)
    with pytest.raises(fs.NotRegularFile):
        fs.open_regular(p)
    with pytest.raises(fs.NotRegularFile):
        fs.open_regular(p, follow=True)
    os.symlink(p, str(tmp_path / "l"))
    with pytest.raises(fs.NotRegularFile) as e:
        fs.open_regular(str(tmp_path / "l"))
    assert e.value.kind == "symlink"
    with pytest.raises(OSError):
        fs.open_regular("/dev/null")


# ------------------------------------------------------------------ sets that reach outside themselves
def test_database_file_outside_the_set(full_set):
    m = _manifest(full_set)
    m["databases"][0]["file"] = "../../outside.edb"
    _write_manifest(full_set, m)
    r = verify(full_set)
    assert codes(r) == ["MANIFEST_DB_FILE_UNSAFE"] and not r["valid"]


def test_database_file_naming_a_log(full_set):
    m = _manifest(full_set)
    m["databases"][0]["file"] = "logs/edb0000A.log"
    _write_manifest(full_set, m)
    r = verify(full_set)
    assert codes(r) == ["MANIFEST_DB_FILE_ROLE"] and "listed as a log" in r["problems"][0]["detail"]
    m["databases"][0]["file"] = "databases/other.edb"
    _write_manifest(full_set, m)
    assert codes(verify(full_set)) == ["MANIFEST_DB_FILE_ROLE"]


def test_database_file_as_a_symlink_outside(full_set, tmp_path):
    db = os.path.join(full_set, "databases", "test.edb")
    outside = str(tmp_path / "elsewhere.edb")
    os.rename(db, outside)
    os.symlink(outside, db)
    r = verify(full_set)
    assert codes(r) == ["FILE_SYMLINK"] and r["problems"][0]["file"] == "databases/test.edb"
    assert r["databases"] == [] and not r["valid"]


def test_logs_folder_as_a_symlink_outside(full_set, tmp_path):
    logs = os.path.join(full_set, "logs")
    outside = str(tmp_path / "elsewhere-logs")
    os.rename(logs, outside)
    os.symlink(outside, logs)
    r = verify(full_set)
    assert "FOLDER_SYMLINK" in codes(r) and by_code(r, "FOLDER_SYMLINK")[0]["file"] == "logs"
    assert "FILE_MISSING" not in codes(r) and not r["valid"]
    assert r["logs"] == []            # nothing was read through the link


def test_base_name_leaving_the_set(full_set):
    m = _manifest(full_set)
    m["logs"]["base_name"] = "../../../zz"
    _write_manifest(full_set, m)
    r = verify(full_set)
    assert codes(r) == ["MANIFEST_BASE_NAME_UNSAFE"] and not r["valid"]
    m["logs"]["base_name"] = "edb"
    m["source"]["base_name"] = "e/b"
    _write_manifest(full_set, m)
    assert codes(verify(full_set)) == ["MANIFEST_BASE_NAME_UNSAFE"]


def test_set_folder_as_a_symlink(sets, tmp_path, synth):
    other = synth.make_backup_set(str(tmp_path), "elsewhere", "incremental", 15, 16,
                                  created="2026-11-25T03:00:00Z")
    os.symlink(other, os.path.join(sets, "c-inc"))
    r = verify(sets)
    assert codes(r) == ["FOLDER_SYMLINK"] and [s["name"] for s in r["sets"]] == ["a-full", "b-inc"]


# ------------------------------------------------------------------ kept-logs staging folders
def test_kept_logs_folder_is_verified_and_kept(sets, synth):
    synth.make_kept_logs(sets, "c-inc", "incremental", gen_low=15, gen_high=16, created="2026-11-25T03:00:00Z")
    r = verify(sets)
    assert r["valid"] and codes(r) == ["SET_KEPT_LOGS"], r["problems"]
    (k,) = [s for s in r["sets"] if s["status"] == "kept_logs"]
    assert k["name"] == ".c-inc.partial" and (k["gen_low"], k["gen_high"]) == (15, 16) and "truncated" in k["reason"]
    assert [c["sets"] for c in r["chains"]] == [["a-full", "b-inc"]]
    assert [lg for lg in r["logs"] if lg["set"] == ".c-inc.partial"][0]["count"] == 2
    assert not any("remove" in p["detail"] for p in r["problems"])


def test_kept_logs_folder_with_a_damaged_log(sets, synth):
    k = synth.make_kept_logs(sets, "c-inc", "incremental", gen_low=15, gen_high=16)
    synth.corrupt(os.path.join(k, "logs", "edb00010.log"), 2 * 4096 + 100, 3)
    synth.corrupt(os.path.join(k, "logs", "edb00010.log"), 2 * 4096 + 2100, 5)
    r = verify(sets)
    assert not r["valid"]
    assert by_code(r, "LOG_SEGMENT_CHECKSUM")[0]["file"] == ".c-inc.partial/logs/edb00010.log"
    assert "FILE_HASH_MISMATCH" in codes(r)


def test_kept_logs_folder_as_the_path(tmp_path, synth):
    k = synth.make_kept_logs(str(tmp_path), "x", "full", gen_low=3, gen_high=5)
    r = verify(k)
    assert r["kind"] == "kept_logs" and r["valid"] and codes(r) == ["SET_KEPT_LOGS"]
    assert r["databases"][0]["file"] == "databases/test.edb" and r["databases"][0]["pages_ok"] > 0


def test_kept_logs_folder_with_an_invalid_reason_file(sets, synth):
    k = synth.make_kept_logs(sets, "c-inc", "incremental", gen_low=15, gen_high=16)
    with open(os.path.join(k, "kept-logs.json"), "w") as f:
        f.write('{"format": "other"}')
    r = verify(sets)
    assert "KEPT_LOGS_INVALID" in codes(r) and not r["valid"]


def test_partial_without_reason_file_stays_a_warning(sets):
    os.makedirs(os.path.join(sets, ".d.partial", "logs"))
    r = verify(sets)
    assert r["valid"] and codes(r) == ["SET_PARTIAL"] and "not verified" in r["problems"][0]["detail"]


# ------------------------------------------------------------------ header-only databases, empty path
def test_header_only_database(tmp_path, synth):
    p = str(tmp_path / "h.edb")
    synth.make_database(p, 4096, pages=0)
    r = verify(p)
    assert codes(r) == ["DB_NO_PAGES"] and not r["valid"]


def test_header_only_database_in_a_set(tmp_path, synth):
    s = synth.make_backup_set(str(tmp_path), "f", "full", 3, 4, pages=0)
    r = verify(s)
    assert codes(r) == ["DB_NO_PAGES"] and r["problems"][0]["file"] == "databases/test.edb"


@pytest.mark.parametrize("path", ["", "   "])
def test_empty_path_is_refused(path):
    with pytest.raises(ValueError) as e:
        verify(path)
    assert "path" in str(e.value)


# ------------------------------------------------------------------ any JSON type anywhere
_ODD_VALUES = [None, True, 7, -1, "x", "../x", [], [1], {}, {"a": 1}, 1.5]
_PATHS = [("format",), ("type",), ("created",), ("files",), ("files", 0), ("files", 0, "name"),
          ("files", 0, "size"), ("files", 0, "sha256"), ("files", 0, "role"), ("databases",), ("databases", 0),
          ("databases", 0, "file"), ("databases", 0, "page_size"), ("databases", 0, "sign_log"), ("logs",),
          ("logs", "gen_low"), ("logs", "gen_high"), ("logs", "base_name"), ("source",), ("source", "base_name")]


def test_any_value_anywhere_is_a_result(tmp_path, synth):
    """Every manifest field replaced by every JSON type: a result with problems, never an exception."""
    root = tmp_path / "sets"
    root.mkdir()
    full = synth.make_backup_set(str(root), "a-full", "full", 3, 4, pages=4, created="2026-11-25T01:00:00Z")
    inc = synth.make_backup_set(str(root), "b-inc", "incremental", 4, 5, created="2026-11-25T02:00:00Z")
    tried = 0
    for s in (full, inc):
        good = _manifest(s)
        for path in _PATHS:
            for value in _ODD_VALUES:
                m = json.loads(json.dumps(good))
                node = m
                try:
                    for k in path[:-1]:
                        node = node[k]
                    node[path[-1]]
                except (KeyError, IndexError):
                    continue          # the field does not exist in this set's manifest
                node[path[-1]] = value
                _write_manifest(s, m)
                r = verify(str(root))
                assert r["kind"] == "sets" and isinstance(r["valid"], bool), (path, value)
                tried += 1
        _write_manifest(s, good)
    assert tried > 300 and verify(str(root))["valid"]
