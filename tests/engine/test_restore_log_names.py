# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A set taken with ESE's newer file names (legacy_file_names without bit 0: .jtx logs, a .jcp checkpoint)
restores by the names its set holds: the target's log and checkpoint are .jtx and .jcp."""
import os

import pytest

from engine_host import run_host, srum_args


def jtx_source(set_dir):
    """The dirty SRUM log set renamed as ESE names it with JET_paramLegacyFileNames 2 (5 hex digits, .jtx/.jcp)."""
    for n in os.listdir(set_dir):
        if n.startswith("SRU") and n.endswith(".log") and not n.startswith("SRUtmp"):
            os.rename(os.path.join(set_dir, n), os.path.join(set_dir, n[:-4] + ".jtx"))
    os.rename(os.path.join(set_dir, "SRU.chk"), os.path.join(set_dir, "SRU.jcp"))
    return set_dir


@pytest.fixture
def jtx_set(dirty_set, dest):
    src = jtx_source(dirty_set)
    r = run_host("Run", srum_args(src, dest, set_name="full", legacy_file_names=2))
    assert r["backup_set"], r
    logs = [f["name"] for f in r["manifest"]["files"] if f["role"] == "log"]
    assert logs and all(n.endswith(".jtx") for n in logs), logs
    return dict(src=src, set=r["backup_set"], db=os.path.join(src, "SRUDB.dat"))


def restore_args(c, target, **kw):
    a = {"backup_set": c["set"], "restore_map": [{"source": c["db"], "target": os.path.join(target, "SRUDB.dat")}],
         "log_path": os.path.join(target, "logs")}
    a.update(kw)
    return a


def test_the_target_log_and_checkpoint_carry_the_sets_extensions(jtx_set, tmp_path):
    target = tmp_path / "restore"
    (target / "logs").mkdir(parents=True)
    (target / "logs" / "SRU.jtx").write_bytes(b"old log")
    (target / "logs" / "SRU.jcp").write_bytes(b"old checkpoint")
    r = run_host("Restore.Run", restore_args(jtx_set, str(target)))
    assert r["refused"]["problem"] == "target_exists", r
    assert "SRU.jtx" in r["refused"]["msg"] and "SRU.jcp" in r["refused"]["msg"], r["refused"]
    r = run_host("Restore.Run", restore_args(jtx_set, str(target), force=True), check_mode=True)
    assert sorted(os.path.basename(p) for p in r["check"]["would_replace"]) == ["SRU.jcp", "SRU.jtx"], r["check"]
    assert all(p.endswith(".jtx") for p in r["check"]["would_replay"]), r["check"]


def test_a_log_not_named_by_the_rule_is_refused(jtx_set, tmp_path):
    """The manifest names a log by the rule and no other name: one renamed (manifest and file) is refused."""
    import json
    mf = os.path.join(jtx_set["set"], "manifest.json")
    with open(mf) as f:
        m = json.load(f)
    log = [f for f in m["files"] if f["role"] == "log"][0]
    old = os.path.join(jtx_set["set"], log["name"])
    log["name"] = log["name"][:-4] + ".txt"
    os.rename(old, os.path.join(jtx_set["set"], log["name"]))
    with open(mf, "w") as f:
        json.dump(m, f)
    r = run_host("Restore.Run", restore_args(jtx_set, str(tmp_path / "t"), force=True), check_mode=True)
    assert r["refused"]["problem"] == "bad_log" and "is not named as ESE names generation" in r["refused"]["msg"], r


def test_a_jtx_set_restores(jtx_set, tmp_path):
    target = str(tmp_path / "restore")
    r = run_host("Restore.Run", restore_args(jtx_set, target))
    assert r["failed_call"] is None and r["restored"][0]["db_state_name"] == "clean_shutdown", r
    assert os.path.exists(os.path.join(target, "logs", "SRU.jtx"))
    assert os.path.exists(os.path.join(target, "logs", "SRU.jcp"))
