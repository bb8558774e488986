# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The playbooks shipped in playbooks/, run against simulated hosts."""
import json
import os

from simulation import REPO, SHARE, SRU_DIR, bkinfo

PLAYBOOKS = os.path.join(REPO, "playbooks")


def test_main_job_with_the_demo_inventory(sim):
    """What `make demo` shows: two verified sets, one host failing with the injected JET error."""
    inventory = os.path.join(REPO, "tests", "sim", "demo-inventory.yml")
    res = sim.run(os.path.join(PLAYBOOKS, "backup.yml"), inventory=inventory)
    assert res.rc == 0, res.stdout
    with open(os.path.join(sim.root, "report.json")) as f:
        report = {entry["host"]: entry for entry in json.load(f)}
    for host in ("web01", "web02"):
        assert report[host]["status"] == "ok"
        assert report[host]["verified"] == {"valid": True, "problems": 0}
        assert report[host]["backup_set"].startswith("%s\\%s\\full-" % (SHARE, host))
    assert report["web03"]["status"] == "failed" and report["web03"]["backup_set"] is None
    assert report["web03"]["jet_err"] == {"code": -1018, "name": "JET_errReadVerifyFailure",
                                          "call": "JetReadFileInstance"}


def test_sessions_truncate_only_where_the_copies_verified(sim):
    sim.add_host("web01")
    sim.add_host("web02", esesim_faults=[{"api": "JetReadFileInstance", "call": 1, "err": -1018}])
    inventory = {"all": {"children": {
        "ese_hosts": {"hosts": sim.hosts, "vars": {
            "ese_session": "nightly", "ese_databases": [SRU_DIR + "\\SRUDB.dat"], "ese_log_path": SRU_DIR,
            "ese_base_name": "SRU", "ese_backup_share": SHARE}},
        "backup_server": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "backup_server_path": os.path.join(sim.root, "unc", "backup01", "ese")}}}}}}
    res = sim.run(os.path.join(PLAYBOOKS, "backup_verified.yml"), inventory=inventory)
    assert res.rc == 0, res.stdout

    good = res.task("web01", "End the session")["result"]
    assert good["policy_row"] == "end.ended_complete" and good["backup_valid"] is True
    assert res.task("web01", "Truncate the logs that are now safely copied")["result"]["changed"] is True
    sru = sim.local("web01", SRU_DIR)
    assert not os.path.exists(os.path.join(sru, "SRU00001.log"))
    assert bkinfo(os.path.join(sru, "SRUDB.dat"), "full") == (2, 2)

    bad = res.task("web02", "End the session")["result"]
    assert bad["policy_row"] == "end.ended_abort" and bad["changed"] is True and not bad.get("failed")
    assert res.task("web02", "Truncate the logs that are now safely copied")["status"] == "skipped"
    sru = sim.local("web02", SRU_DIR)
    assert os.path.exists(os.path.join(sru, "SRU00001.log"))  # nothing truncated where the copy failed
    assert bkinfo(os.path.join(sru, "SRUDB.dat"), "full") == (0, 0)
