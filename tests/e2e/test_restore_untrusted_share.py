# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ese.backup.restore against a share someone else can write: an edited manifest cannot aim force at
another file, a set with a symlinked logs/ folder is refused, and to_original_paths restores over the
same database in an ESE folder of the Windows directory, as the operator confirmed."""
import json
import os
import shutil

from simulation import SHARE, SRU_DIR, assert_refused_before_writing

DB = SRU_DIR + "\\SRUDB.dat"
SETS = SHARE + "\\web01"


def q(path):
    return path.replace("\\", "\\\\")


def play(tasks):
    return "\n- hosts: all\n  gather_facts: false\n  tasks:\n" + tasks


BACKUP = """
    - name: backup full
      ese.backup.run:
        databases: ["%s"]
        log_path: '%s'
        base_name: SRU
        dest: '%s'
        set_name: full
        type: full
""" % (q(DB), SRU_DIR, SETS)


def restore(name, backup_set, extra):
    return """
    - name: %s
      ese.backup.restore:
        backup_set: '%s\\%s'
%s      ignore_errors: true
""" % (name, SETS, backup_set, extra)


def test_the_manifest_cannot_choose_where_restore_writes(sim, monkeypatch):
    sim.add_host("web01", fixture="srum-win11-dirty")
    res = sim.run(play(BACKUP))
    assert res.rc == 0, res.stdout[-3000:]
    share = sim.local("web01", SETS)

    # An edited manifest: databases[].source and the log path point at another file on the host.
    victim = sim.local("web01", "D:\\Victim\\important.dat")
    os.makedirs(os.path.dirname(victim))
    with open(victim, "wb") as f:
        f.write(b"precious, not a database")
    edited = os.path.join(share, "edited")
    shutil.copytree(os.path.join(share, "full"), edited)
    mf = os.path.join(edited, "manifest.json")
    with open(mf) as f:
        m = json.load(f)
    m["databases"][0]["source"] = victim
    m["source"]["log_path"] = m["source"]["system_path"] = os.path.dirname(victim)
    with open(mf, "w") as f:
        json.dump(m, f)
    # A set whose logs/ folder is a link to logs elsewhere (the same files: every hash still matches).
    linked = os.path.join(share, "linked")
    shutil.copytree(os.path.join(share, "full"), linked)
    elsewhere = sim.local("web01", "D:\\Elsewhere\\logs")
    shutil.move(os.path.join(linked, "logs"), elsewhere)
    os.symlink(elsewhere, os.path.join(linked, "logs"))

    tasks = (restore("force only", "edited", "        force: true\n")
             + restore("original paths", "edited", "        force: true\n        to_original_paths: true\n")
             + restore("linked logs", "linked",
                       "        restore_map: [{source: '%s', target: 'D:\\Restore\\SRUDB.dat'}]\n"
                       "        log_path: 'D:\\Restore\\logs'\n" % DB))
    before = sim.snapshot("web01")
    res = sim.run(play(tasks))
    assert sim.snapshot("web01") == before
    with open(victim, "rb") as f:
        assert f.read() == b"precious, not a database"
    assert os.listdir(os.path.dirname(victim)) == ["important.dat"]
    assert not os.path.exists(sim.local("web01", "D:\\Restore"))
    expect = {"force only": ("unconfirmed_target", "to_original_paths: true"),
              "original paths": ("target_not_ours", "not replaced, even with force"),
              "linked logs": ("symlink", "is a symbolic link")}
    assert_refused_before_writing(res, "web01", expect)

    # The honest manifest, confirmed by the operator: back over the same database in C:\Windows\System32\sru.
    monkeypatch.setenv("ESE_BACKUP_TEST_WINDOWS_DIR", sim.local("web01", "C:\\Windows"))
    res = sim.run(play(restore("over the original", "full", "        force: true\n        to_original_paths: true\n")))
    r = res.task("web01", "over the original")["result"]
    assert r["changed"] is True and not r.get("failed"), r["msg"]
    assert r["restored"][0]["db_state_name"] == "clean_shutdown"
    assert sorted(r["written"]) == sorted([DB, SRU_DIR + "\\SRU.log", SRU_DIR + "\\SRU.chk"])
    assert [c["ending"]["status"] for c in r["chain"]] == ["valid"]
