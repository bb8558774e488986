# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/backup.yml verifies every host's folder in one ese.backup.verify task (paths and names), and its
reports are the ones a verify loop over the hosts gave."""
import json
import os

from ansible_collections.ese.backup.plugins.filter.backup_report import backup_report
from ansible_collections.ese.backup.plugins.filter.backup_report_summary import backup_report_summary
from simulation import REPO, SHARE, SRU_DIR

VERIFY_TASK = "Verify each host's backup sets and their chain"


def test_backup_yml_verifies_the_fleet_in_one_task_with_the_reports_of_a_loop(sim):
    sim.add_host("web01")
    sim.add_host("web02", fixture="srum-win11-dirty")
    sim.add_host("web03", esesim_faults=[{"api": "JetReadFileInstance", "call": 1, "err": -1018}])
    share = os.path.join(sim.root, "unc", "backup01", "ese")
    inventory = {"all": {"children": {
        "ese_hosts": {"hosts": sim.hosts, "vars": {
            "ese_databases": [SRU_DIR + "\\SRUDB.dat"], "ese_log_path": SRU_DIR, "ese_base_name": "SRU",
            "ese_backup_share": SHARE}},
        "backup_server": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "backup_server_path": share, "report_path": os.path.join(sim.root, "report.json")}}}}}}
    res = sim.run(os.path.join(REPO, "playbooks", "backup.yml"), inventory=inventory)
    assert res.rc == 0, res.stdout

    verified = [r for r in res.records if r["host"] == "localhost" and r["task"] == VERIFY_TASK]
    assert len(verified) == 1, "one verify task, not one per host"
    task = verified[0]["result"]
    assert "item" not in task and task["kind"] == "many" and task["valid"] is True
    assert [r["name"] for r in task["results"]] == ["web01", "web02"]          # web03 has no set: not verified
    assert [r["path"] for r in task["results"]] == [os.path.join(share, h) for h in ("web01", "web02")]
    assert task["processes"] == min(2, len(os.sched_getaffinity(0)))
    assert all(r["kind"] == "sets" and r["valid"] and r["chains"] for r in task["results"])

    with open(os.path.join(sim.root, "report.json")) as f:
        report = json.load(f)
    assert [(e["host"], e["status"], e["verified"]) for e in report] == [
        ("web01", "ok", {"valid": True, "problems": 0}), ("web02", "ok", {"valid": True, "problems": 0}),
        ("web03", "failed", None)]

    # the same results as a loop over the hosts registered them: the same report
    hostvars = {}
    for host in ("web01", "web02", "web03"):
        record = res.task(host, "Take the backup into the share")
        backup = dict(record["result"], failed=record["status"] == "failed")
        hostvars[host] = {"ese_backup": backup, "ese_databases": [SRU_DIR + "\\SRUDB.dat"]}
        if backup["failed"]:
            hostvars[host]["ese_backup_failure"] = backup["msg"]
    loop = [dict(r, item=r["name"], ansible_loop_var="item") for r in task["results"]]
    loop.append({"changed": False, "skipped": True, "skip_reason": "Conditional result was False", "item": "web03"})
    hosts = ["web01", "web02", "web03"]
    assert backup_report(hosts, hostvars, loop) == backup_report(hosts, hostvars, task["results"]) == report
    shown = res.task("localhost", "Show the report")["result"]["msg"]
    assert backup_report_summary(hosts, hostvars, loop) == shown[:3]
