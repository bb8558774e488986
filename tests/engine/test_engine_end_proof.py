# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The end verdict rests on proof (Mono host, esent simulator, both profiles): the journal's sequence and the header
slot that ESE's ErrBKUpdateHdrBackupInfo fills; every published set gets its ending record."""
import json
import os

import pytest

from engine_host import run_host
from test_session_robustness import Sessions

PROFILES = ["esent10", "xp"]


@pytest.fixture(params=PROFILES)
def profile(request):
    return request.param


@pytest.fixture
def sess(tmp_path, profile):
    s = Sessions(tmp_path)
    s.env["ESESIM_PROFILE"] = profile
    yield s
    s.close()


def header(s, set_dir):
    r = run_host("Engine.Info", {"databases": [os.path.join(set_dir, "SRUDB.dat")]}, env=s.env)
    d = r["databases"][0]
    return {k: d[k] for k in ("last_full", "last_incremental", "last_copy", "last_differential")}


def ending_of(set_path):
    with open(os.path.join(set_path, "ending.json")) as f:
        return json.load(f)


def end(s, **kw):
    a = {"session": "s", "mode": "normal"}
    a.update(kw)
    return s.call("Session.End", a)


def test_begin_then_end_is_not_valid_and_changes_no_header(sess, clean_set, profile):
    before = header(sess, clean_set)
    sess.begin(clean_set)
    r = end(sess)
    assert r["end_call"]["err"] == (-800 if profile == "xp" else 0)
    if profile == "esent10":
        assert r["backup_valid"] is False
        assert r["proof"]["sequence_complete"] is False and r["proof"]["header_recorded"] is False
        assert "no file was copied" in r["proof"]["missing"]
        assert any(m.startswith("the header does not record this backup: ESE treated it as aborted")
                   for m in r["proof"]["missing"])
    assert header(sess, clean_set) == before


def test_databases_only_copy_then_end_is_not_valid(sess, clean_set, dest, profile):
    sess.begin(clean_set)
    c = sess.call("Session.Copy", {"session": "s", "dest": dest, "set_name": "db", "logs": False})
    assert c["failed_call"] is None, c
    r = end(sess)
    e = ending_of(os.path.join(dest, "db"))
    assert e["backup_valid"] is False and e["session"] == "s"
    if profile == "esent10":
        assert r["end_call"]["err"] == 0
        assert "the logs were not copied" in r["proof"]["missing"]
        assert r["proof"]["header_recorded"] is False
        assert e["ended"] == "normal" and e["proof"]["sequence_complete"] is False
    else:
        assert r["end_call"]["err"] == -800
        assert e["ended"] == "abort"


def test_copy_truncate_end_is_valid_with_both_proofs(sess, clean_set, dest):
    sess.begin(clean_set)
    c = sess.call("Session.Copy", {"session": "s", "dest": dest, "set_name": "full"})
    assert c["failed_call"] is None, c
    t = sess.call("Session.Truncate", {"session": "s"})
    assert t["failed_call"] is None, t
    r = end(sess)
    assert r["end_call"]["err"] == 0
    assert r["backup_valid"] is True, r["proof"]
    assert r["proof"]["sequence_complete"] is True and r["proof"]["header_recorded"] is True
    assert r["recorded_as"] == "full"
    e = ending_of(os.path.join(dest, "full"))
    assert e["format"] == "ese.backup/ending/1"
    assert e["logs_truncated"] is True and e["backup_valid"] is True and e["recorded_as"] == "full"
    h = header(sess, clean_set)["last_full"]
    m = json.load(open(os.path.join(dest, "full", "manifest.json")))
    assert (h["gen_low"], h["gen_high"]) == (m["logs"]["gen_low"], m["logs"]["gen_high"])
    # no ending.json.tmp left behind
    assert sorted(os.listdir(os.path.join(dest, "full"))) == ["databases", "ending.json", "logs", "manifest.json"]


def test_an_idle_timeout_records_the_ending_of_its_sets(sess, clean_set, dest):
    import time
    sess.begin(clean_set, idle_timeout=3)
    c = sess.call("Session.Copy", {"session": "s", "dest": dest, "set_name": "idle"})
    assert c["failed_call"] is None, c
    deadline = time.time() + 30
    while sess.journal()["ended"] is None and time.time() < deadline:
        time.sleep(0.2)
    assert sess.journal()["ended"] == "idle_timeout"
    e = ending_of(os.path.join(dest, "idle"))
    assert (e["ended"], e["backup_valid"], e["recorded_as"]) == ("idle_timeout", False, None), e
    assert e["proof"]["missing"] == ["the backup was not ended normally (idle_timeout)"]


# --- kept-logs folders: the staging folder is marked before the logs are truncated ---------------------------

def test_a_run_that_fails_after_truncation_leaves_a_kept_logs_folder_that_nothing_advises_removing(clean_set, dest):
    from engine_host import srum_args
    from ansible_collections.ese.backup.plugins.module_utils.ese_format.verify import verify
    args = srum_args(clean_set, dest, set_name="nightly")
    r = run_host("Engine.Run", args, faults=[{"api": "JetEndExternalBackupInstance2", "call": 1, "err": -1090}])
    assert r["logs_truncated"] is True and r["backup_set"] is None and r["failed_call"]["err"] == -1090, r
    staging = os.path.join(dest, ".nightly.partial")
    assert r["kept_staging"] == staging
    with open(os.path.join(staging, "kept-logs.json")) as f:
        kept = json.load(f)
    assert (kept["format"], kept["set_name"], kept["type"], kept["logs_truncated"]) == (
        "ese.backup/kept-logs/1", "nightly", "full", True)
    on_disk = sorted(os.path.relpath(os.path.join(d, n), staging) for d, _, ns in os.walk(staging) for n in ns)
    assert sorted(f["name"] for f in kept["files"]) == [n for n in on_disk if n != "kept-logs.json"]
    v = verify(staging)
    assert v["kind"] == "kept_logs" and v["valid"] is True and v["restorable"] is False, v["problems"]
    info = run_host("Engine.Info", {"backup_path": dest})
    assert [(s["name"], s["status"]) for s in info["backup_sets"]] == [(".nightly.partial", "kept_logs")]
    again = run_host("Engine.Run", args)
    assert again["invalid"]["option"] == "set_name", again
    msg = again["invalid"]["msg"]
    assert "holds the only copy of logs truncated on the host" in msg and "remove" not in msg, msg
    assert os.path.isdir(staging)


def test_a_published_run_set_holds_no_kept_logs_file(clean_set, dest):
    from engine_host import srum_args
    r = run_host("Engine.Run", srum_args(clean_set, dest, set_name="ok"))
    assert r["backup_set"] and r["logs_truncated"] is True, r
    assert sorted(os.listdir(r["backup_set"])) == ["databases", "ending.json", "logs", "manifest.json"]
    assert "WriteFile" not in [c["call"] for c in r["trace"]]


# --- the engine's JSON reader: depth and size limits --------------------------------------------------------

def test_info_reports_a_hostile_manifest_as_that_one_set_unreadable(clean_set, dest):
    from engine_host import srum_args
    ok = run_host("Engine.Run", srum_args(clean_set, dest, set_name="a-good"))
    assert ok["backup_set"], ok
    deep = os.path.join(dest, "b-deep")
    os.makedirs(deep)
    with open(os.path.join(deep, "manifest.json"), "w") as f:
        f.write('{"format": "ese.backup/1", "x": ' + "[" * 200000 + "]" * 200000 + "}")
    big = os.path.join(dest, "c-big")
    os.makedirs(big)
    with open(os.path.join(big, "manifest.json"), "w") as f:
        f.write('{"format": "ese.backup/1", "pad": "' + "x" * (16 << 20) + '"}')
    edge = os.path.join(dest, "d-edge")         # 64 levels are read
    os.makedirs(edge)
    with open(os.path.join(edge, "manifest.json"), "w") as f:
        f.write('{"format": "ese.backup/1", "type": "full", "x": ' + "[" * 63 + "]" * 63 + "}")
    r = run_host("Engine.Info", {"backup_path": dest})
    assert r["failed_call"] is None and r["invalid"] is None, r
    by = dict((s["name"], s) for s in r["backup_sets"])
    assert by["a-good"]["status"] == "complete" and by["d-edge"]["status"] == "complete"
    assert by["b-deep"]["status"] == "unreadable_manifest" and "deeper than 64" in by["b-deep"]["error"]
    assert by["c-big"]["status"] == "unreadable_manifest" and "larger than" in by["c-big"]["error"]


@pytest.mark.parametrize("kind,truncate,slot", [("incremental", True, "last_incremental"),
                                                ("incremental", False, "last_differential"),
                                                ("differential", False, "last_differential")])
def test_an_incremental_after_a_recorded_full_is_proven_in_its_own_slot(sess, clean_set, dest, kind, truncate, slot):
    sess.begin(clean_set)
    assert sess.call("Session.Copy", {"session": "s", "dest": dest, "set_name": "full"})["failed_call"] is None
    assert sess.call("Session.Truncate", {"session": "s"})["failed_call"] is None
    assert end(sess)["backup_valid"] is True
    sess.begin(clean_set, name="i", type=kind)
    c = sess.call("Session.Copy", {"session": "i", "dest": dest, "set_name": "inc"})
    assert c["failed_call"] is None and c["invalid"] is None, c
    if truncate:
        assert sess.call("Session.Truncate", {"session": "i"})["failed_call"] is None
    r = end(sess, session="i")
    want = {"last_incremental": "incremental", "last_differential": "differential"}[slot]
    assert (r["backup_valid"], r["recorded_as"]) == (True, want), r["proof"]
    h = header(sess, clean_set)[slot]
    m = json.load(open(os.path.join(dest, "inc", "manifest.json")))
    assert (h["gen_low"], h["gen_high"]) == (m["logs"]["gen_low"], m["logs"]["gen_high"])
    assert ending_of(os.path.join(dest, "inc"))["recorded_as"] == want


def test_truncate_done_is_refused_on_a_copy_session(sess, clean_set, dest):
    sess.begin(clean_set, type="copy")
    assert sess.call("Session.Copy", {"session": "s", "dest": dest, "set_name": "c"})["failed_call"] is None
    r = end(sess, truncate_done=True)
    assert r["invalid"]["option"] == "truncate_done" and r.get("end_call") is None, r
    r = end(sess)
    assert (r["backup_valid"], r["recorded_as"]) == (True, "copy"), r
