# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Under PowerShell 7 (the real modules, Ansible.Basic and Add-CSharpType): a missing esent.dll is named with
its call and what to check (PowerShell's native-library resolver throws ArgumentNullException 'path1' there),
choices and log set names are taken in any case, as on Windows, and an engine warning reaches the task."""
import os

PLAY = """
- hosts: all
  gather_facts: false
  tasks:
    - name: no esent
      ese.backup.info:
        databases: ['{sru}/SRUDB.dat']
      environment:
        LD_LIBRARY_PATH: /nonexistent
      ignore_errors: true
    - name: any case
      ese.backup.run:
        databases: ['{sru}/SRUDB.dat']
        log_path: '{sru}'
        base_name: sru
        type: COPY
        dest: '{dest}'
        set_name: any-case
    - name: forget the ending
      ansible.builtin.file:
        path: '{dest}/any-case/ending.json'
        state: absent
    - name: engine warning
      ese.backup.restore:
        backup_set: '{dest}/any-case'
        drill: true
        scratch: '{scratch}'
        force: true
"""


def test_missing_esent_and_choices_in_any_case(lane):
    base = lane.add_host("win")
    sru = os.path.join(base, "sru")
    dest = os.path.join(base, "dest")
    scratch = os.path.join(base, "scratch")
    os.makedirs(dest, exist_ok=True)
    os.makedirs(scratch, exist_ok=True)
    res = lane.run(PLAY.format(sru=sru, dest=dest, scratch=scratch), name="windows_behaviour")
    missing = res.task("win", "no esent")
    assert missing["status"] == "failed", res.explain()
    msg = missing["result"]["msg"]
    assert msg.startswith("esent.dll returned"), msg
    assert "cannot load esent.dll for JetGetDatabaseFileInfoW" in msg, msg
    assert "LD_LIBRARY_PATH must hold the folder with esent.dll" in msg, msg
    run = res.task("win", "any case")
    assert run["status"] == "ok" and run["result"]["changed"] is True, res.explain()
    manifest = run["result"]["manifest"]
    assert manifest["type"] == "copy" and manifest["source"]["base_name"] == "SRU", manifest["source"]
    assert os.path.isdir(os.path.join(dest, "any-case"))
    # An engine warning reaches the task through Ansible.Basic's Warn(), which replaces Result.warnings.
    drill = res.task("win", "engine warning")
    assert drill["status"] == "ok", res.explain()
    assert any("restored anyway (force: true)" in w for w in drill["result"].get("warnings", [])), drill["result"]
