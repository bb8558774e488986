# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's side of ese.backup.prune on a Windows host's own disk (plugins/module_utils/_EsePrune.cs):
Prune.Scan, Prune.Verify and Prune.Remove under Mono, planned by the controller's planner."""
import datetime
import hashlib
import json
import os
import subprocess
import sys
import time

from engine_host import HOST, ROOT, run_host

sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import ese_synth as syn  # noqa: E402

from ansible_collections.ese.backup.plugins.module_utils.ese_format import backupset as bs  # noqa: E402
from ansible_collections.ese.backup.plugins.module_utils.ese_format import prune_plan as pp  # noqa: E402

NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.timezone.utc)
HOSTNAME = "PRUNEHOST"
ENV = {"COMPUTERNAME": HOSTNAME}
ORDER = ["full-0", "inc-01", "full-a", "inc-a1", "diff-a1", "inc-a2", "full-b", "inc-b1"]


def chains_folder(d):
    """Three chains: full-0 (+ inc), full-a (+ inc, diff, inc), full-b (+ inc), the newest."""
    syn.make_backup_set(d, "full-0", "full", 4, 6, created="2026-11-01T04:00:00Z")
    syn.make_backup_set(d, "inc-01", "incremental", 7, 8, created="2026-11-02T04:00:00Z")
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


def staging(d, name, hours, pid=None):
    p = os.path.join(d, name)
    os.makedirs(os.path.join(p, "logs"))
    with open(os.path.join(p, "logs", "edb00001.log"), "wb") as f:
        f.write(b"x" * 4096)
    if pid is not None:
        with open(os.path.join(p, "run.json"), "w") as f:
            json.dump({"format": "ese.backup/run/1", "set_name": name, "host": HOSTNAME, "pid": pid,
                       "started": "2026-11-26T10:00:00Z"}, f)
    age(p, hours)
    return p


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def plan(d, scan, **opts):
    """What the action plugin does with a scan: the records, the plan, the result."""
    params = dict({"keep_full": 1, "verify": "ending", "partial_older_than_hours": 1}, **opts)
    verify, older, counts = pp.options(params)
    records = [pp.record_from_scan(e) for e in scan["sets"]]

    def verify_chain(names):
        got = run_host("Prune.Verify", {"path": d, "sets": names}, env=ENV)
        return dict((v["name"], v["verified"]) for v in got["verified"])
    pp.verify_lazily(records, verify, counts["min_verified"], verify_chain)
    facts = [dict(e, quiet=e["quiet_seconds"], judged_why=e["why"]) for e in scan["staging"]]
    stg, sprobs = pp.staging_decisions(facts, older)
    res = pp.result(scan["path"], records, NOW, counts, verify, stg, sprobs)
    sha = dict((r["name"], r["manifest_sha256"]) for r in records)
    removal = {"path": d, "partial_older_than_hours": params["partial_older_than_hours"],
               "sets": [{"name": x["name"], "manifest_sha256": sha[x["name"]]} for x in res["removed"]],
               "staging": [{"name": s["name"], "kind": s["kind"]} for s in stg if s["action"] == "remove"]}
    return res, removal


def orphans(d):
    recs = [bs.verify_set(os.path.join(d, n), checksums=False, prefix=n + "/") for n in bs.find_sets(d)[0]]
    return [p["file"] for p in bs.chains(recs)[1] if p["code"] == "CHAIN_NO_BASE"]


def test_scan_reads_each_set_as_the_python_module_does(tmp_path):
    d = chains_folder(str(tmp_path / "sets"))
    os.remove(os.path.join(d, "inc-a1", "ending.json"))
    with open(os.path.join(d, "inc-01", "manifest.json"), "a") as f:
        f.write("{not json")
    scan = run_host("Prune.Scan", {"path": d}, env=ENV)
    assert scan["invalid"] is None
    assert [s["name"] for s in scan["sets"]] == sorted(ORDER)
    for e in scan["sets"]:
        with open(os.path.join(d, e["name"], "manifest.json"), "rb") as f:
            assert e["manifest"]["sha256"] == hashlib.sha256(f.read()).hexdigest()
        here = pp.record(e["name"], os.path.join(d, e["name"]), 0)
        there = pp.record_from_scan(e)
        for key in ("type", "created", "gen_low", "gen_high", "sign_log", "sign_db", "manifest_ok", "ending_ok",
                    "problems"):
            assert there[key] == here[key], (e["name"], key)
        assert there["size"] > 0
    codes = dict((p["file"], p["code"]) for r in map(pp.record_from_scan, scan["sets"]) for p in r["problems"])
    assert codes == {"inc-a1/ending.json": "SET_ENDING_MISSING", "inc-01/manifest.json": "MANIFEST_INVALID"}


def test_verify_checks_files_against_the_manifest(tmp_path):
    d = chains_folder(str(tmp_path / "sets"))
    syn.corrupt(os.path.join(d, "inc-b1", "logs", os.listdir(os.path.join(d, "inc-b1", "logs"))[0]), 100)
    got = run_host("Prune.Verify", {"path": d, "sets": ["full-b", "inc-b1"]}, env=ENV)
    v = dict((x["name"], x) for x in got["verified"])
    assert v["full-b"]["verified"] is True
    assert v["inc-b1"]["verified"] is False and v["inc-b1"]["problem"] == "hash_mismatch"


def test_a_run_removes_in_the_planned_order_and_keeps_what_the_plan_keeps(tmp_path):
    d = chains_folder(str(tmp_path / "sets"))
    res, removal = plan(d, run_host("Prune.Scan", {"path": d}, env=ENV), verify="files")
    assert [x["name"] for x in res["removed"]] == ["inc-01", "full-0", "inc-a2", "diff-a1", "inc-a1", "full-a"]
    assert res["newest_verified_full"] == "full-b"
    # check mode removes nothing
    r = run_host("Prune.Remove", removal, check_mode=True, env=ENV)
    assert r["removed"] == [] and sorted(os.listdir(d)) == sorted(ORDER)
    r = run_host("Prune.Remove", removal, env=ENV)
    assert r["removed"] == [x["name"] for x in res["removed"]] and r["stopped"] is None and r["changed"] is True
    assert sorted(os.listdir(d)) == ["full-b", "inc-b1"] and orphans(d) == []


def test_a_set_changed_after_the_scan_is_not_removed_and_stops_the_removal(tmp_path):
    d = chains_folder(str(tmp_path / "sets"))
    res, removal = plan(d, run_host("Prune.Scan", {"path": d}, env=ENV))
    # a backup rewrote inc-a1 (same name) after the scan
    mf = os.path.join(d, "inc-a1", "manifest.json")
    m = json.load(open(mf))
    m["created"] = "2026-11-26T11:00:00Z"
    os.chmod(mf, 0o644)
    with open(mf, "w") as f:
        json.dump(m, f)
    r = run_host("Prune.Remove", removal, env=ENV)
    assert r["removed"] == ["inc-01", "full-0", "inc-a2", "diff-a1"]
    assert r["problems"][0]["code"] == "PRUNE_SET_CHANGED" and r["problems"][0]["file"] == "inc-a1"
    assert "inc-a1" in r["stopped"]
    left = sorted(n for n in os.listdir(d) if not n.startswith("."))
    assert left == ["full-a", "full-b", "inc-a1", "inc-b1"] and orphans(d) == []


def test_staging_in_progress_is_kept_stale_past_the_threshold_goes(tmp_path):
    d = chains_folder(str(tmp_path / "sets"))
    staging(d, ".live.partial", 48, pid=os.getpid())        # its run is alive: in progress, however quiet
    staging(d, ".gone.partial", 2, pid=dead_pid())          # its run is gone, quiet for 2 h > 1 h: goes
    staging(d, ".fresh.partial", 0.1, pid=dead_pid())       # gone, but written 6 minutes ago: stays
    staging(d, ".quiet.partial", 2)                         # no run.json, 2 h: in progress for the engine (24 h)
    staging(d, ".old.partial", 30)                          # no run.json, 30 h: stale, goes
    age(syn.make_kept_logs(d, "kept"), 100)
    scan = run_host("Prune.Scan", {"path": d}, env=ENV)
    judged = dict((s["name"], (s["kind"], s["judged"])) for s in scan["staging"])
    assert judged == {".live.partial": ("partial", "in_progress"), ".gone.partial": ("partial", "stale"),
                      ".fresh.partial": ("partial", "stale"), ".quiet.partial": ("partial", "in_progress"),
                      ".old.partial": ("partial", "stale"), ".kept.partial": ("kept_logs", "kept_logs")}
    res, removal = plan(d, scan)
    action = dict((s["name"], s["action"]) for s in res["staging"])
    assert sorted(n for n, a in action.items() if a == "remove") == [".gone.partial", ".old.partial"]
    # the live one turns stale meanwhile? No: Remove judges again, and a folder written since is kept
    removal["staging"].append({"name": ".live.partial", "kind": "partial"})
    r = run_host("Prune.Remove", removal, env=ENV)
    gone = dict((s["name"], s["removed"]) for s in r["staging"])
    assert gone == {".gone.partial": True, ".old.partial": True, ".live.partial": False}
    assert sorted(n for n in os.listdir(d) if n.endswith(".partial")) == [".fresh.partial", ".kept.partial",
                                                                          ".live.partial", ".quiet.partial"]


def test_bad_input_names_the_option(tmp_path):
    r = run_host("Prune.Scan", {"path": str(tmp_path / "none")}, env=ENV)
    assert r["invalid"]["option"] == "path"
    d = chains_folder(str(tmp_path / "sets"))
    r = run_host("Prune.Remove", {"path": d, "sets": [{"name": "../x", "manifest_sha256": "0"}]}, env=ENV)
    assert r["invalid"]["option"] == "sets" and sorted(os.listdir(d)) == sorted(ORDER)


def run_killed(removal, after):
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(HOST), ESE_BACKUP_TEST_PRUNE_KILL_AFTER=str(after), **ENV)
    req = {"entry": "Prune.Remove", "args": removal, "check_mode": False}
    return subprocess.run(["mono", HOST], input=json.dumps(req), capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def test_a_remove_killed_midway_leaves_no_incremental_without_its_full(tmp_path):
    for after in (0, 1, 3, 4):
        d = chains_folder(str(tmp_path / ("sets%d" % after)))
        res, removal = plan(d, run_host("Prune.Scan", {"path": d}, env=ENV))
        proc = run_killed(removal, after)
        assert proc.returncode == 137 and proc.stdout == ""
        left = bs.find_sets(d)[0]
        assert len(left) == len(ORDER) - after - 1, after
        assert orphans(d) == [], after
        assert all(bs.verify_set(os.path.join(d, n), checksums=False)["valid"] for n in left)
        hidden = [n for n in os.listdir(d) if n.startswith(".") and n.endswith(".prune")]
        assert len(hidden) == 1
        # the next run plans again and finishes the job; the leftover goes once it is old enough
        age(os.path.join(d, hidden[0]), 2)
        res, removal = plan(d, run_host("Prune.Scan", {"path": d}, env=ENV))
        r = run_host("Prune.Remove", removal, env=ENV)
        assert r["stopped"] is None and r["staging"] == [{"name": hidden[0], "removed": True, "why": None}]
        assert sorted(os.listdir(d)) == ["full-b", "inc-b1"]


def test_a_link_to_a_set_is_reported_not_followed_and_an_aside_set_is_a_leftover(tmp_path):
    d = chains_folder(str(tmp_path / "sets"))
    other = str(tmp_path / "elsewhere")
    syn.make_backup_set(other, "full-x", "full", 1, 2, created="2026-10-01T04:00:00Z")
    os.symlink(os.path.join(other, "full-x"), os.path.join(d, "full-x"))
    os.rename(os.path.join(d, "full-0"), os.path.join(d, ".full-0.0123456789ab.prune"))
    scan = run_host("Prune.Scan", {"path": d}, env=ENV)
    assert "full-x" not in [s["name"] for s in scan["sets"]]
    assert ".full-0.0123456789ab.prune" not in [s["name"] for s in scan["sets"]]
    kinds = dict((s["name"], s["kind"]) for s in scan["staging"])
    assert kinds == {"full-x": "link", ".full-0.0123456789ab.prune": "leftover"}
    res, removal = plan(d, scan)
    assert ("FOLDER_SYMLINK", "full-x") in [(p["code"], p["file"]) for p in res["problems"]]
    removal["sets"].insert(0, {"name": "full-x", "manifest_sha256": "0" * 64})   # never, even if asked
    r = run_host("Prune.Remove", removal, env=ENV)
    assert r["problems"][0]["code"] == "PRUNE_REMOVE_FAILED" and r["removed"] == []
    assert os.path.islink(os.path.join(d, "full-x")) and os.listdir(os.path.join(other, "full-x"))


def test_a_link_inside_a_removed_set_goes_itself_and_its_target_is_untouched(tmp_path):
    d = chains_folder(str(tmp_path / "sets"))
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    os.chmod(outside, 0o444)
    os.symlink(str(outside), os.path.join(d, "full-0", "planted"))
    os.symlink(str(tmp_path / "gone"), os.path.join(d, "inc-01", "dangling"))
    res, removal = plan(d, run_host("Prune.Scan", {"path": d}, env=ENV), verify="files")
    assert "full-0" in [x["name"] for x in res["removed"]] and "inc-01" in [x["name"] for x in res["removed"]]
    r = run_host("Prune.Remove", removal, env=ENV)
    assert r["stopped"] is None and "full-0" in r["removed"] and "inc-01" in r["removed"], r
    assert outside.read_text() == "keep me" and (os.stat(outside).st_mode & 0o777) == 0o444


def test_an_aside_folder_holding_kept_logs_is_never_removed_as_a_leftover(tmp_path):
    d = chains_folder(str(tmp_path / "sets"))
    aside = os.path.join(d, ".run-1.partial.0123456789ab.prune")
    os.makedirs(aside)
    with open(os.path.join(aside, "kept-logs.json"), "w") as f:
        f.write("{}")
    age(aside, 48)
    scan = run_host("Prune.Scan", {"path": d}, env=ENV)
    removal = {"path": d, "partial_older_than_hours": 1, "sets": [],
               "staging": [{"name": ".run-1.partial.0123456789ab.prune", "kind": "leftover"}]}
    assert ".run-1.partial.0123456789ab.prune" in [s["name"] for s in scan["staging"]]
    r = run_host("Prune.Remove", removal, env=ENV)
    assert os.path.exists(os.path.join(aside, "kept-logs.json"))
    assert "kept-logs.json" in json.dumps(r["problems"]), r


def test_an_oversized_manifest_is_sent_as_its_size_and_its_set_held(tmp_path):
    d = chains_folder(str(tmp_path / "sets"))
    with open(os.path.join(d, "full-0", "manifest.json"), "r+b") as f:
        f.truncate(17 << 20)                                      # sparse: 17 MiB of nothing
    scan = run_host("Prune.Scan", {"path": d}, env=ENV)
    e = [s for s in scan["sets"] if s["name"] == "full-0"][0]
    assert e["manifest"]["too_large"] is True and e["manifest"]["data"] is None and e["manifest"]["size"] == 17 << 20
    rec = pp.record_from_scan(e)
    assert not rec["manifest_ok"] and rec["problems"], rec
    res, removal = plan(d, scan)
    assert "full-0" not in [x["name"] for x in res["removed"]]
