# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ese.backup.prune on real folders of sets written by tests/lib/ese_synth.py."""
import datetime
import json
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("ansible", reason="ansible-core is not installed for this Python (use .venv)")

from ansible_collections.ese.backup.plugins.module_utils.ese_format import backupset as bs  # noqa: E402
from ansible_collections.ese.backup.plugins.modules import prune  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
COLL = os.path.join(REPO, "build", "collections")
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
import ese_synth as syn  # noqa: E402

NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.timezone.utc)


def run_module(args, tmp_path):
    argfile = tmp_path / "args.json"
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=COLL)
    cmd = [sys.executable, "-m", "ansible_collections.ese.backup.plugins.modules.prune", str(argfile)]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=120)
    return json.loads(proc.stdout)


def chains_folder(d):
    """Two chains of the same database: full-a (+ inc, diff, inc) and full-b (+ inc); the newest is full-b's."""
    syn.make_backup_set(d, "full-a", "full", 10, 12, created="2026-11-20T04:00:00Z")
    syn.make_backup_set(d, "inc-a1", "incremental", 13, 14, created="2026-11-21T04:00:00Z")
    syn.make_backup_set(d, "diff-a1", "differential", 13, 15, created="2026-11-21T05:00:00Z")
    syn.make_backup_set(d, "inc-a2", "incremental", 15, 16, created="2026-11-22T04:00:00Z")
    syn.make_backup_set(d, "full-b", "full", 17, 18, created="2026-11-24T04:00:00Z")
    syn.make_backup_set(d, "inc-b1", "incremental", 19, 20, created="2026-11-25T04:00:00Z")
    return d


def age(path, hours):
    t = time.time() - hours * 3600
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            os.utime(os.path.join(dirpath, n), (t, t), follow_symlinks=False)
    os.utime(path, (t, t))


def listing(d):
    return sorted(os.listdir(d))


def orphans(d):
    """Sets left in ``d`` that lack a set they depend on (by the verifier's own chain rules)."""
    names = bs.find_sets(d)[0]
    recs = []
    for n in names:
        v = bs.verify_set(os.path.join(d, n), checksums=False, prefix=n + "/")
        recs.append(v)
    return [p["file"] for p in bs.chains(recs)[1] if p["code"] == "CHAIN_NO_BASE"]


def test_check_mode_lists_what_would_go_and_changes_nothing(tmp_path):
    d = chains_folder(str(tmp_path / "sets"))
    before = listing(d)
    r = run_module({"path": d, "keep_full": 1, "_ansible_check_mode": True, "_ansible_diff": True}, tmp_path)
    assert not r.get("failed") and r["changed"] is True
    assert listing(d) == before
    assert [x["name"] for x in r["removed"]] == ["inc-a2", "diff-a1", "inc-a1", "full-a"]
    assert all(x["rules"] == ["no_rule_keeps_it"] for x in r["removed"])
    assert sorted(x["name"] for x in r["kept"]) == ["full-b", "inc-b1"]
    assert r["newest_verified_full"] == "full-b" and r["bytes_freed"] == sum(x["bytes"] for x in r["removed"]) > 0
    assert "full-a  full" in r["diff"]["before"] and "full-a" not in r["diff"]["after"]
    assert "full-b  full" in r["diff"]["after"]


def test_a_run_removes_old_chains_and_frees_their_bytes(tmp_path):
    d = chains_folder(str(tmp_path / "sets"))
    r = prune.run({"path": d, "keep_full": 1}, now=NOW)
    assert r["changed"] and listing(d) == ["full-b", "inc-b1"]
    assert r["bytes_freed"] > 300000 and orphans(d) == []


@pytest.mark.parametrize("stop_after", [0, 1, 2, 3])
def test_an_interrupted_run_leaves_no_incremental_without_its_full(tmp_path, monkeypatch, stop_after):
    d = chains_folder(str(tmp_path / "sets"))
    syn.make_backup_set(d, "full-0", "full", 4, 6, created="2026-11-01T04:00:00Z")
    syn.make_backup_set(d, "inc-01", "incremental", 7, 8, created="2026-11-02T04:00:00Z")
    real = prune._remove_folder
    calls = []

    def flaky(root, name):
        if len(calls) == stop_after:
            raise OSError("the share went away")
        calls.append(name)
        real(root, name)
    monkeypatch.setattr(prune, "_remove_folder", flaky)
    with pytest.raises(prune.PruneError) as e:
        prune.run({"path": d, "keep_full": 1}, now=NOW)
    assert [x["name"] for x in e.value.result["removed"]] == calls
    assert e.value.result["problems"][-1]["code"] == "PRUNE_REMOVE_FAILED"
    left = bs.find_sets(d)[0]
    assert len(left) == 8 - stop_after and orphans(d) == []
    # no set is half deleted: every remaining one is whole
    assert all(bs.verify_set(os.path.join(d, n), checksums=False)["valid"] for n in left)
    # and the next run finishes the job
    monkeypatch.setattr(prune, "_remove_folder", real)
    prune.run({"path": d, "keep_full": 1}, now=NOW)
    assert listing(d) == ["full-b", "inc-b1"]


def test_a_set_without_a_valid_ending_is_kept_and_reported(tmp_path):
    d = chains_folder(str(tmp_path / "sets"))
    os.remove(os.path.join(d, "inc-a1", "ending.json"))
    r = prune.run({"path": d, "keep_full": 1}, now=NOW)
    assert "full-a" in listing(d) and "inc-a1" in listing(d) and r["removed"] == []
    assert "SET_ENDING_MISSING" in [p["code"] for p in r["problems"]]
    assert sorted(h["name"] for h in r["held"]) == ["diff-a1", "full-a", "inc-a1", "inc-a2"]


def test_an_ending_not_valid_holds_the_chain(tmp_path):
    d = chains_folder(str(tmp_path / "sets"))
    syn.make_backup_set(d, "full-0", "full", 4, 6, created="2026-11-01T04:00:00Z",
                        ending={"backup_valid": False, "proof": {"missing": ["header not recorded"]}})
    r = prune.run({"path": d, "keep_full": 1}, now=NOW)
    assert "full-0" in listing(d) and "SET_ENDING_NOT_VALID" in [p["code"] for p in r["problems"]]
    assert "full-a" not in listing(d)


def test_the_newest_full_that_verified_stays_when_newer_ones_do_not(tmp_path):
    d = chains_folder(str(tmp_path / "sets"))
    syn.corrupt(os.path.join(d, "full-b", "databases", "test.edb"), 4096 * 5 + 100)
    r = prune.run({"path": d, "keep_full": 1}, now=NOW)
    # full-b kept by keep_full, but it does not verify: full-a's chain is the newest verified full and stays
    assert r["newest_verified_full"] == "full-a" and "full-a" in listing(d) and r["removed"] == []
    r = prune.run({"path": d, "keep_full": 1, "verify": "ending"}, now=NOW)
    assert r["newest_verified_full"] == "full-b"       # by its ending record alone it looks fine


def test_a_set_folder_that_is_a_link_is_reported_not_followed(tmp_path):
    d = chains_folder(str(tmp_path / "sets"))
    other = str(tmp_path / "elsewhere")
    syn.make_backup_set(other, "full-x", "full", 1, 2, created="2026-10-01T04:00:00Z")
    os.symlink(os.path.join(other, "full-x"), os.path.join(d, "full-x"))
    r = prune.run({"path": d, "keep_full": 1}, now=NOW)
    assert os.path.islink(os.path.join(d, "full-x")) and os.listdir(os.path.join(other, "full-x"))
    assert ("FOLDER_SYMLINK", "full-x") in [(p["code"], p["file"]) for p in r["problems"]]
    assert [s["kind"] for s in r["staging"] if s["name"] == "full-x"] == ["link"]


def test_staging_folders(tmp_path):
    d = str(tmp_path / "sets")
    syn.make_backup_set(d, "full-b", "full", 17, 18, created="2026-11-24T04:00:00Z")
    fresh = syn.make_backup_set(d, ".fresh.partial", "full", 17, 18, ending=False)
    old = syn.make_backup_set(d, ".old.partial", "full", 17, 18, ending=False)
    with open(os.path.join(old, "run.json"), "w") as f:
        json.dump({"format": "ese.backup/run/1", "host": "WIN1", "pid": 4242, "started": "2026-11-20T04:00:00Z"}, f)
    age(old, 30)
    touched = syn.make_backup_set(d, ".touched.partial", "full", 17, 18, ending=False)
    age(touched, 30)
    with open(os.path.join(touched, "logs", "late.tmp"), "w") as f:   # one recent write deep inside
        f.write("x")
    kept = syn.make_kept_logs(d, "kept", created="2026-11-01T04:00:00Z")
    age(kept, 24 * 60)
    os.makedirs(os.path.join(d, ".x.partial.0123456789ab.new"))
    age(os.path.join(d, ".x.partial.0123456789ab.new"), 48)
    os.makedirs(os.path.join(d, ".y.partial.0123456789ab.stale"))
    os.makedirs(os.path.join(d, ".z.0123456789ab.prune"))
    age(os.path.join(d, ".z.0123456789ab.prune"), 25)
    r = prune.run({"path": d, "keep_full": 1}, check_mode=True, now=NOW)
    acts = dict((s["name"], (s["kind"], s["action"])) for s in r["staging"])
    assert acts == {".fresh.partial": ("partial", "keep"), ".old.partial": ("partial", "remove"),
                    ".touched.partial": ("partial", "keep"), ".kept.partial": ("kept_logs", "keep"),
                    ".x.partial.0123456789ab.new": ("leftover", "remove"),
                    ".y.partial.0123456789ab.stale": ("leftover", "keep"),
                    ".z.0123456789ab.prune": ("leftover", "remove")}
    assert [s["run"] for s in r["staging"] if s["name"] == ".old.partial"] == [
        {"host": "WIN1", "pid": 4242, "started": "2026-11-20T04:00:00Z"}]
    assert r["changed"] and os.path.isdir(old)
    r = prune.run({"path": d, "keep_full": 1}, now=NOW)
    assert listing(d) == [".fresh.partial", ".kept.partial", ".touched.partial", ".y.partial.0123456789ab.stale",
                          "full-b"]
    r = prune.run({"path": d, "keep_full": 1, "partial_older_than_hours": 0.0001}, now=NOW)
    assert ".kept.partial" in listing(d)      # never, however old


def test_a_staging_folder_written_while_being_removed_is_put_back(tmp_path, monkeypatch):
    d = str(tmp_path / "sets")
    syn.make_backup_set(d, "full-b", "full", 17, 18, created="2026-11-24T04:00:00Z")
    old = syn.make_backup_set(d, ".old.partial", "full", 17, 18, ending=False)
    age(old, 30)
    real_rename = os.rename

    def rename_then_write(src, dst):
        real_rename(src, dst)
        if dst.endswith(".prune"):
            with open(os.path.join(dst, "kept-logs.json"), "w") as f:   # the engine kept logs meanwhile
                f.write("{}")
    monkeypatch.setattr(prune.os, "rename", rename_then_write)
    r = prune.run({"path": d, "keep_full": 1}, now=NOW)
    assert os.path.isfile(os.path.join(old, "kept-logs.json"))
    assert [p["code"] for p in r["problems"]] == ["PRUNE_REMOVE_FAILED"]


@pytest.mark.parametrize("args, option", [({"keep_full": -1}, "keep_full"), ({}, "keep_full"),
                                          ({"keep_full": 1, "partial_older_than_hours": 0},
                                           "partial_older_than_hours"),
                                          ({"keep_full": 1, "min_verified": -1}, "min_verified"),
                                          ({"keep_full": 1, "verify": "maybe"}, "verify")])
def test_bad_input_fails_naming_the_option_and_removes_nothing(tmp_path, args, option):
    d = chains_folder(str(tmp_path / "sets"))
    age(os.path.join(d, "full-a"), 48)
    os.makedirs(os.path.join(d, ".old.partial"))
    age(os.path.join(d, ".old.partial"), 48)
    before = listing(d)
    r = run_module(dict(args, path=d), tmp_path)
    assert r.get("failed") and option in r["msg"] and not r.get("changed")
    assert listing(d) == before


def test_an_empty_or_missing_path_fails(tmp_path):
    r = run_module({"path": "", "keep_full": 1}, tmp_path)
    assert r.get("failed") and "path" in r["msg"]
    r = run_module({"path": str(tmp_path / "nothing"), "keep_full": 1}, tmp_path)
    assert r.get("failed") and "not a folder" in r["msg"]


def test_a_set_left_aside_by_an_interrupted_run_is_a_leftover_not_a_set(tmp_path):
    d = chains_folder(str(tmp_path / "sets"))
    # a run renamed full-0 aside and was stopped before it was deleted: it still has its manifest
    syn.make_backup_set(d, "full-0", "full", 4, 6, created="2026-11-01T04:00:00Z")
    aside = os.path.join(d, ".full-0.0123456789ab.prune")
    os.rename(os.path.join(d, "full-0"), aside)
    age(aside, 30)
    r = prune.run({"path": d, "keep_full": 1}, check_mode=True, now=NOW)
    names = [x["name"] for x in r["kept"] + r["removed"] + r["held"]]
    assert aside.rsplit("/", 1)[1] not in names and not [p for p in r["problems"] if "prune" in p["file"]]
    assert [(s["kind"], s["action"]) for s in r["staging"] if s["name"] == ".full-0.0123456789ab.prune"] == [
        ("leftover", "remove")]


def test_a_leftover_folder_holding_kept_logs_is_never_removed(tmp_path):
    aside = tmp_path / ".run-1.partial.0123456789ab.prune"
    aside.mkdir()
    (aside / "kept-logs.json").write_text("{}")
    with pytest.raises(OSError, match="kept-logs.json"):
        prune._remove_leftover(str(tmp_path), aside.name)
    assert (aside / "kept-logs.json").exists()


def test_paths_prune_every_folder_in_one_task_each_as_path_alone_would(tmp_path):
    one, two, alone = (chains_folder(str(tmp_path / n)) for n in ("web01", "web02", "alone"))
    r = run_module({"paths": [one, two, str(tmp_path / "missing")], "names": ["web01", "web02", "web03"],
                    "keep_full": 1}, tmp_path)
    solo = run_module({"path": alone, "keep_full": 1}, tmp_path)
    assert r["failed"] and "1 of 3 folders: web03" in r["msg"], r
    by = dict((x["name"], x) for x in r["results"])
    assert [x["name"] for x in r["results"]] == ["web01", "web02", "web03"]
    for name, d in (("web01", one), ("web02", two)):
        assert listing(d) == listing(alone) == ["full-b", "inc-b1"]
        assert [x["name"] for x in by[name]["removed"]] == [x["name"] for x in solo["removed"]]
        assert by[name]["bytes_freed"] == solo["bytes_freed"] and by[name]["path"] == d
    assert by["web03"]["failed"] and "not a folder" in by["web03"]["msg"]
    assert r["bytes_freed"] == 2 * solo["bytes_freed"] and r["changed"]


@pytest.mark.parametrize("args, option", [
    ({"names": ["a"]}, "paths"),                                       # names without paths
    ({"paths": ["X", "Y"], "names": ["a"]}, "names"),                  # one name per path
    ({"paths": ["X", "Y"], "names": ["a", "a"]}, "names"),
    ({"paths": []}, "paths"),
    ({"paths": ["X"], "path": "X"}, "path"),                           # one or the other
])
def test_bad_paths_input_fails_naming_the_option_and_removes_nothing(tmp_path, args, option):
    d = chains_folder(str(tmp_path / "sets"))
    before = listing(d)
    args = dict((k, [d if p == "X" else str(tmp_path / "other") if p == "Y" else p for p in v]
                 if k == "paths" else d if k == "path" else v) for k, v in args.items())
    r = run_module(dict(args, keep_full=1), tmp_path)
    assert r.get("failed") and option in r["msg"] and not r.get("changed"), r
    assert listing(d) == before
