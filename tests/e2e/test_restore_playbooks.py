# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ese.backup.restore end to end: a full backup and two incrementals through ese.backup.run, then a
restore to new paths, a drill, and the refusals that must leave every file as it was."""
import fcntl
import hashlib
import json
import os
import shutil
import struct

import pytest

from simulation import SHARE, SRU_DIR, assert_refused_before_writing
from ansible_collections.ese.backup.plugins.module_utils.ese_format.checksum import xor_old

DB = SRU_DIR + "\\SRUDB.dat"
SETS = SHARE + "\\{{ inventory_hostname }}"


def q(path):
    return path.replace("\\", "\\\\")


def backups():
    tasks = ""
    for name, kind in (("full", "full"), ("inc1", "incremental"), ("inc2", "incremental")):
        tasks += """
    - name: backup %s
      ese.backup.run:
        databases: ["%s"]
        log_path: '%s'
        base_name: SRU
        dest: '%s'
        set_name: %s
        type: %s
""" % (name, q(DB), SRU_DIR, SETS, name, kind)
    return tasks


def restore_task(name, full="full", incs=("inc1", "inc2"), target="D:\\Restore", extra=""):
    return """
    - name: %s
      ese.backup.restore:
        backup_set: '%s\\%s'
        incrementals: [%s]
        restore_map:
          - source: '%s'
            target: '%s\\SRUDB.dat'
        log_path: '%s\\logs'
%s      ignore_errors: true
""" % (name, SETS, full, ", ".join("'%s\\%s'" % (SETS, i) for i in incs), DB, target, target, extra)


def play(tasks):
    return "\n- hosts: all\n  gather_facts: false\n  tasks:\n" + tasks


def test_full_and_two_incrementals_restore_to_new_paths_and_drill(sim):
    sim.add_host("web01", fixture="srum-win11-dirty")
    sim.hosts["web01"]["esesim_fixtures"]["C:\\Scratch"] = ""
    tasks = backups() + restore_task("restore") + """
    - name: restored header
      ese.backup.info:
        databases: ['D:\\Restore\\SRUDB.dat']
    - name: first backup of the restored database
      ese.backup.run:
        databases: ['D:\\Restore\\SRUDB.dat']
        log_path: 'D:\\Restore\\logs'
        base_name: SRU
        dest: 'D:\\AfterRestore'
        set_name: first
    - name: drill
      ese.backup.restore:
        backup_set: '%s\\full'
        incrementals: ['%s\\inc1', '%s\\inc2']
        drill: true
        scratch: 'C:\\Scratch'
""" % (SETS, SETS, SETS)
    res = sim.run(play(tasks))
    assert res.rc == 0, res.stdout[-3000:]
    gens = []
    for name in ("full", "inc1", "inc2"):
        with open(os.path.join(sim.local("web01", "%s\\web01\\%s" % (SHARE, name)), "manifest.json")) as f:
            logs = json.load(f)["logs"]
        gens.append((logs["gen_low"], logs["gen_high"]))
    last = gens[-1][1]
    assert gens[0][0] < last

    r = res.task("web01", "restore")["result"]
    assert r["changed"] is True and not r.get("failed"), r["msg"]
    assert r["policy_row"] == "restore.restored"
    assert [c["gen_high"] for c in r["chain"]] == [g[1] for g in gens]
    assert r["restored"][0]["db_state_name"] == "clean_shutdown" and r["restored"][0]["gen_max_committed"] == last
    assert sorted(r["written"]) == sorted(["D:\\Restore\\SRUDB.dat", "D:\\Restore\\logs\\SRU.log",
                                           "D:\\Restore\\logs\\SRU.chk"])
    calls = [(t["call"], t["err"], t["detail"]) for t in r["trace"]]
    restore_calls = [c for c in calls if c[0] == "JetExternalRestore2W"]
    assert len(restore_calls) == 1 and restore_calls[0][1] == 0
    assert "genLow=%d genHigh=%d" % (gens[0][0], last) in restore_calls[0][2]

    # The restored header on disk: clean, no backup marker, last committed generation = inc2's gen_high.
    db = sim.local("web01", "D:\\Restore\\SRUDB.dat")
    with open(db, "rb") as f:
        hdr = f.read(4096)
    # (read before the post-restore backup below attached it again; that backup ends with a clean detach)
    info = res.task("web01", "restored header")["result"]["databases"][0]
    assert info["db_state_name"] == "clean_shutdown" and info["streamed_backup_copy"] is False
    assert struct.unpack_from("<I", hdr, 416)[0] >= last
    # The restored database attaches on its restored log stream (a full backup of it succeeds).
    after = res.task("web01", "first backup of the restored database")["result"]
    assert after["changed"] is True, after["msg"]
    assert ("JetAttachDatabase2W", 0) in [(c["call"], c["err"]) for c in after["trace"]]
    assert after["manifest"]["logs"]["gen_low"] == last + 1

    d = res.task("web01", "drill")["result"]
    assert d["changed"] is False and not d.get("failed"), d["msg"]
    rep = d["drill_report"]
    assert rep["passed"] is True and rep["scratch_removed"] is True and rep["gen_high"] == last
    assert {c["check"]: c["ok"] for c in rep["checks"]} == {
        "attach_read_only": True, "clean_shutdown": True, "log_generation": True, "page_checksums": True}
    assert os.listdir(sim.local("web01", "C:\\Scratch")) == []
    assert ("JetAttachDatabase2W", 0, True) in [(t["call"], t["err"], "JET_bitDbReadOnly" in t["detail"])
                                                for t in d["trace"]]


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _copy_set(src, dst):
    shutil.copytree(src, dst)
    return dst


def _rewrite_manifest_entry(set_dir, name):
    path = os.path.join(set_dir, "manifest.json")
    with open(path) as f:
        m = json.load(f)
    for entry in m["files"]:
        if entry["name"] == name:
            entry["sha256"] = _sha(os.path.join(set_dir, name))
            entry["size"] = os.path.getsize(os.path.join(set_dir, name))
    with open(path, "w") as f:
        json.dump(m, f)


def test_broken_chains_and_busy_target_fail_before_writing(sim):
    sim.add_host("web01", fixture="srum-win11-dirty")
    res = sim.run(play(backups()))
    assert res.rc == 0, res.stdout[-3000:]
    share = sim.local("web01", SHARE + "\\web01")

    # A log from another log stream (same generation, other signature), with a manifest that matches it.
    bad_inc = _copy_set(os.path.join(share, "inc2"), os.path.join(share, "inc2-foreign"))
    with open(os.path.join(bad_inc, "manifest.json")) as f:
        last_log = [e for e in json.load(f)["files"] if e["role"] == "log"][-1]["name"]
    with open(os.path.join(bad_inc, last_log), "r+b") as f:
        h = bytearray(f.read(4096))
        h[44] ^= 0xFF
        struct.pack_into("<I", h, 0, xor_old(h))
        f.seek(0)
        f.write(h)
    _rewrite_manifest_entry(bad_inc, last_log)
    # A full set whose streamed database no longer matches its manifest's SHA-256.
    bad_full = _copy_set(os.path.join(share, "full"), os.path.join(share, "full-tampered"))
    with open(os.path.join(bad_full, "databases", "SRUDB.dat"), "r+b") as f:
        f.seek(5 * 4096 + 100)
        byte = f.read(1)
        f.seek(5 * 4096 + 100)
        f.write(bytes([byte[0] ^ 1]))
    # A target database that another process holds (the simulator's attach lock).
    busy = sim.local("web01", "D:\\Busy\\SRUDB.dat")
    os.makedirs(os.path.dirname(busy))
    shutil.copyfile(os.path.join(share, "full", "databases", "SRUDB.dat"), busy)
    idle = sim.local("web01", "D:\\Existing\\SRUDB.dat")
    os.makedirs(os.path.dirname(idle))
    shutil.copyfile(busy, idle)

    tasks = (restore_task("missing incremental", incs=("inc2",))
             + restore_task("foreign log", incs=("inc1", "inc2-foreign"))
             + restore_task("hash mismatch", full="full-tampered")
             + restore_task("in use", target="D:\\Busy", extra="        force: true\n")
             + restore_task("exists without force", target="D:\\Existing"))
    before = sim.snapshot("web01")
    with open(busy, "rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        res = sim.run(play(tasks))
    assert sim.snapshot("web01") == before
    assert not os.path.exists(sim.local("web01", "D:\\Restore"))
    expect = {
        "missing incremental": ("chain_gap", "missing an incremental"),
        "foreign log": ("signature_mismatch", "another log stream"),
        "hash mismatch": ("hash_mismatch", "SHA-256 of databases/SRUDB.dat"),
        "in use": ("in_use", "is in use"),
    }
    assert_refused_before_writing(res, "web01", expect)
    assert "-1032" in res.task("web01", "in use")["result"]["msg"]
    r = res.task("web01", "exists without force")["result"]
    assert r["refused"]["problem"] == "target_exists" and "force: true" in r["msg"], r["msg"]


def test_check_mode_reports_what_would_be_written_and_replayed(sim):
    sim.add_host("web01", fixture="srum-win11-dirty")
    assert sim.run(play(backups())).rc == 0
    before = sim.snapshot("web01")
    res = sim.run(play(restore_task("restore")), extra_args=["--check"])
    r = res.task("web01", "restore")["result"]
    assert r["changed"] is True and not r.get("failed"), r["msg"]
    assert r["check"]["would_write"][0]["path"] == "D:\\Restore\\SRUDB.dat"
    assert [os.path.basename(p.replace("\\", "/")) for p in r["check"]["would_replay"]] == \
        ["SRU%05X.log" % g for g in range(r["check"]["gen_low"], r["check"]["gen_high"] + 1)]
    assert sim.snapshot("web01") == before


def test_restore_drill_role_across_a_fleet_writes_a_summary(sim, tmp_path):
    for host in ("web01", "web02"):
        sim.add_host(host, fixture="srum-win11-dirty")
        sim.hosts[host]["esesim_fixtures"]["C:\\Scratch"] = ""
    summary = str(tmp_path / "summary")
    res = sim.run(play(backups()) + """
- hosts: all
  gather_facts: false
  roles:
    - role: ese.backup.restore_drill
      vars:
        restore_drill_backup_path: '%s'
        restore_drill_scratch: 'C:\\Scratch'
        restore_drill_summary_dir: '%s'
""" % (SETS, summary))
    assert res.rc == 0, res.stdout[-3000:]
    with open(os.path.join(summary, "restore-drill.json")) as f:
        rows = json.load(f)
    assert sorted(r["host"] for r in rows) == ["web01", "web02"]
    for r in rows:
        assert r["passed"] is True and r["set"].endswith("\\full") and len(r["incrementals"]) == 2, r
        assert r["scratch_removed"] is True
        assert os.listdir(sim.local(r["host"], "C:\\Scratch")) == []
    with open(os.path.join(summary, "restore-drill.md")) as f:
        md = f.read()
    assert md.count("| passed |") == 2
