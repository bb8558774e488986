# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/backup.yml over WinRM: two hosts back up a 1 MiB and a 64 MiB database, the backup server
(the controller) verifies both sets, and the WS-Man bytes of the two backups are compared."""
import json
import os

import pytest

from winrm_lane import REPO, checked_manifest, figures, synth_source, wire

SIZES = {"w01m": 1, "w64m": 64}  # host -> database size in MiB (names of equal length: equal messages)


@pytest.fixture(scope="module")
def played(module_lane):
    lane = module_lane
    root = lane.root
    share = os.path.join(root, "share")
    server = os.path.join(root, "server")
    os.makedirs(server)
    for host, mib in SIZES.items():
        src = synth_source(os.path.join(root, host, "src"), mib, seed=7)
        lane.add_host(host, ese_databases=[src], ese_log_path=os.path.dirname(src), ese_base_name="SRU",
                      ese_backup_share=share)
        # The playbook writes "<share>\<host>", a Windows path: here one directory whose name holds the
        # backslash. The backup server sees each host's folder under its own path, as a share is mounted.
        os.symlink(share + "\\" + host, os.path.join(server, host))
    inventory = {"all": {"children": {
        "ese_hosts": {"hosts": lane.hosts},
        "backup_server": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "backup_server_path": server, "report_path": os.path.join(root, "report.json")}}}}}}
    res = lane.run(os.path.join(REPO, "playbooks", "backup.yml"), inventory=inventory)
    res.root, res.server = root, server
    res.open_shells, res.running = lane.winrs.open_shells(), lane.winrs.running()
    return res


def test_backup_playbook_sets_are_verified_on_the_controller(played):
    assert played.rc == 0, played.stdout[-4000:]
    with open(os.path.join(played.root, "report.json")) as f:
        report = dict((entry["host"], entry) for entry in json.load(f))
    verify = played.task("localhost", "Verify each host's backup sets and their chain")["result"]["results"]
    for host, mib in SIZES.items():
        assert report[host]["status"] == "ok", report[host]
        assert report[host]["verified"] == {"valid": True, "problems": 0}, [
            (r["name"], r.get("problems")) for r in verify]
        backup_set = played.task(host, "Take the backup into the share")["result"]["backup_set"]
        assert backup_set == report[host]["backup_set"]
        set_dir = os.path.join(played.server, host, os.path.basename(backup_set))
        manifest = checked_manifest(set_dir)
        db = [f for f in manifest["files"] if f["role"] == "database"]
        assert db[0]["size"] >= mib * 1048576, db
        verified = [r for r in verify if r["name"] == host]        # one verify task over every host's folder
        assert verified and verified[0]["valid"] is True, verified
    assert played.open_shells == [] and played.running == []


def test_backup_bytes_never_cross_winrm(played):
    """The same full backup of 1 MiB and of 64 MiB costs the same WS-Man bytes (within 5 %): the database
    streams to the share on the host; only the module, its arguments and its result cross WinRM.
    (Receives that timed out carry no data and are left out: how many there are depends on the load.)"""
    assert played.rc == 0, played.stdout[-4000:]
    runs = {}
    for host in SIZES:
        shells = played.shells(host)
        assert len(shells) == 2, shells  # info, run
        runs[host] = shells[1]
        for task, shell in zip(("info", "run"), shells):
            print(figures("%s %s" % (host, task), shell))
    small, big = wire(runs["w01m"]), wire(runs["w64m"])
    assert abs(big - small) < 0.05 * small, (small, big)
    assert big < 64 * 1048576 / 16  # far below the 64 MiB the backup wrote
