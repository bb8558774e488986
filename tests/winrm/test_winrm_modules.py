# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The real modules over ``ansible_connection: winrm``: info, run (check mode, real, again, bad input),
restore with a drill, and begin, which this lane cannot reach. One playbook run, checked by several tests."""
import json
import os
import re

import pytest

from winrm_lane import checked_manifest, figures, synth_source, tree

TASKS = ("info", "run in check mode", "run", "run again", "run with bad input", "drill", "begin")
PLAY = """
- hosts: win01
  gather_facts: false
  vars:
    backup: &backup
      databases: ['{src}/SRUDB.dat']
      log_path: '{src}'
      base_name: SRU
      dest: '{dest}'
      set_name: nightly
  tasks:
    - name: info
      ese.backup.info:
        databases: ['{src}/SRUDB.dat']
        backup_path: '{dest}'
    - name: run in check mode
      ese.backup.run: *backup
      check_mode: true
    - name: after check mode
      ansible.builtin.command: ls -A '{dest}'
      delegate_to: localhost
      vars:
        ansible_connection: local
        ansible_python_interpreter: '{{{{ ansible_playbook_python }}}}'
    - name: run
      ese.backup.run: *backup
    - name: run again
      ese.backup.run: *backup
    - name: run with bad input
      ese.backup.run:
        databases: ['{src}/SRUDB.dat']
        log_path: '{src}'
        base_name: SRU
        dest: '{dest}'
        set_name: bad
        buffer_size: 5000
      ignore_errors: true
    - name: drill
      ese.backup.restore:
        backup_set: '{dest}/nightly'
        drill: true
        scratch: '{scratch}'
    - name: begin
      ese.backup.begin:
        session: nightly
        databases: ['{src}/SRUDB.dat']
        log_path: '{src}'
        base_name: SRU
      ignore_errors: true
"""


@pytest.fixture(scope="module")
def played(module_lane):
    lane = module_lane
    root = lane.root
    src, dest, scratch = (os.path.join(root, d) for d in ("src", "dest", "scratch"))
    synth_source(src, 1)
    os.makedirs(dest)
    os.makedirs(scratch)
    lane.add_host("win01")
    res = lane.run(PLAY.format(src=src, dest=dest, scratch=scratch))
    res.paths = {"src": src, "dest": dest, "scratch": scratch}
    res.open_shells, res.running = lane.winrs.open_shells(), lane.winrs.running()
    return res


def test_each_task_is_one_winrm_shell_running_powershell_with_the_payload_on_stdin(played):
    assert played.rc == 0, played.stdout[-4000:]
    shells = played.shells("win01")
    assert len(shells) == len(TASKS), json.dumps(shells, indent=1)[-4000:]
    for name, shell in zip(TASKS, shells):
        acts = shell["actions"]
        assert acts["Create"]["requests"] == 1 and acts["Delete"]["requests"] == 1, (name, acts)
        first = shell["commands"][0]
        # What a Windows host receives: the cmd shell's PowerShell command line, the script encoded.
        # (the stand-in records the encoded script shortened to "<first 8 characters>...(<length> chars)")
        assert re.match(r"^powershell -NoProfile -NonInteractive -ExecutionPolicy Unrestricted "
                        r"-EncodedCommand [A-Za-z0-9+/]{8}\.\.\.\(\d+ chars\)$", first["line"], re.I), first["line"]
        # Pipelining: the module and its utils arrive on stdin (hundreds of KB), no temp files are copied.
        assert first["stdin_bytes"] > 100000 and first["exit_code"] == 0, (name, first)
        assert acts["Send"]["requests"] >= 2 and acts["Signal"]["requests"] == len(shell["commands"]), (name, acts)
        print(figures(name, shell))
    # begin starts a second command (the async session host), the others one each.
    assert [len(s["commands"]) for s in shells] == [1, 1, 1, 1, 1, 1, 2]
    assert played.open_shells == [] and played.running == []


def test_info_reads_the_header_over_winrm(played):
    r = played.task("win01", "info")
    assert r["status"] == "ok", r
    res = r["result"]
    assert res["policy_row"] == "info.read" and res["changed"] is False
    db = res["databases"][0]
    assert db["path"] == os.path.join(played.paths["src"], "SRUDB.dat")
    assert db["db_state_name"] == "clean_shutdown" and db["page_size"] == 4096 and db["size"] == 1048576
    assert res["backup_sets"] == []


def test_run_check_mode_then_real_then_again(played):
    dest = played.paths["dest"]
    check = played.task("win01", "run in check mode")["result"]
    assert check["check"]["would_create"] == os.path.join(dest, "nightly"), check
    assert check["check"]["would_truncate_logs"] is True
    assert not any(t["call"] == "JetBeginExternalBackupInstance" for t in check["trace"])
    assert played.task("win01", "after check mode")["result"]["stdout"] == ""  # check mode wrote nothing

    real = played.task("win01", "run")
    assert real["status"] == "ok" and real["result"]["changed"] is True, real
    assert real["result"]["policy_row"] == "run.created"
    assert real["result"]["backup_set"] == os.path.join(dest, "nightly")
    manifest = checked_manifest(os.path.join(dest, "nightly"))
    assert manifest["type"] == "full" and (manifest["logs"]["gen_low"], manifest["logs"]["gen_high"]) == (2, 2)
    db = [f for f in manifest["files"] if f["role"] == "database"]
    assert db and db[0]["size"] >= 1048576
    # Truncation deleted the log below the checkpoint on the "host".
    assert not os.path.exists(os.path.join(played.paths["src"], "SRU00001.log"))

    again = played.task("win01", "run again")
    assert again["status"] == "ok" and again["result"]["changed"] is False, again
    assert "already holds this full backup" in again["result"]["msg"]
    assert not any(t["call"] == "JetBeginExternalBackupInstance" for t in again["result"]["trace"])


def test_run_with_bad_input_fails_naming_the_option(played):
    bad = played.task("win01", "run with bad input")
    assert bad["status"] == "failed", bad
    assert "buffer_size" in bad["result"]["msg"] and "5000" in bad["result"]["msg"], bad["result"]["msg"]
    assert sorted(os.listdir(played.paths["dest"])) == ["nightly"]  # no set, no staging for "bad"


def test_restore_drill_over_winrm(played):
    d = played.task("win01", "drill")
    assert d["status"] == "ok", d
    rep = d["result"]["drill_report"]
    assert d["result"]["changed"] is False and rep["passed"] is True and rep["scratch_removed"] is True, rep
    assert {c["check"]: c["ok"] for c in rep["checks"]} == {
        "attach_read_only": True, "clean_shutdown": True, "log_generation": True, "page_checksums": True}
    assert tree(played.paths["scratch"]) == {}


def test_begin_fails_at_once_because_the_async_wrapper_needs_win32(played):
    """begin starts its session host through Ansible's Windows async wrapper, which calls Win32
    (CreateInheritableEvent); off Windows that fails, and it must fail clearly, not hang."""
    b = played.task("win01", "begin")
    assert b["status"] == "failed", b
    assert "CreateInheritableEvent" in b["result"]["msg"], b["result"]["msg"]
    begin_shell = played.shells("win01")[-1]
    assert begin_shell["closed"] - begin_shell["opened"] < 120
