# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shipped playbooks and the restore_drill role, on lane hosts (real modules under pwsh).

One host of each playbook has a page checksum error injected (ESESIM_FAULTS, JetReadFileInstance
-1018): it runs all the way through, its backup is aborted and no set is published, while the other
host's set is verified. The two playbooks run at the same time (they share no host), then the role
drills what backup.yml wrote.
"""
import json
import os

import pytest

from lane import REPO, manifest, tree

PLAYBOOKS = os.path.join(REPO, "playbooks")
PAGE_ERROR = [{"api": "JetReadFileInstance", "call": 1, "err": -1018}]
SKIPPED_BACKUP = ["privilege SeBackupPrivilege"]


def bkinfo(db_path, which):
    from ansible_collections.ese.backup.plugins.module_utils.ese_format.structs import db_header
    with open(db_path, "rb") as f:
        info = db_header(f.read(4096))["bkinfo_%s_prev" % which]
    return info["gen_low"], info["gen_high"]


def inventory(lane, hosts, share):
    """ese_hosts as the playbooks expect them, and the backup server (this controller)."""
    ese_hosts = {}
    for name in hosts:
        base = lane.host_root(name)
        sru = os.path.join(base, "sru")
        ese_hosts[name] = dict(lane.hosts[name], ese_databases=[os.path.join(sru, "SRUDB.dat")],
                               ese_log_path=sru)
        # The playbooks write to '<share>\<host>' (Windows separator). The link is this lane's share
        # mapping: the host's view '<share>\<host>' is the backup server's '<share>/<host>'.
        os.makedirs(os.path.join(share, name), exist_ok=True)
        link = share + "\\" + name
        if not os.path.islink(link):
            os.symlink(os.path.join(share, name), link)
    return {"all": {"children": {
        "ese_hosts": {"hosts": ese_hosts, "vars": {
            "ese_session": "nightly", "ese_base_name": "SRU", "ese_backup_share": share}},
        "backup_server": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "backup_server_path": share, "report_path": os.path.join(lane.root, "report.json")}}}}}}


@pytest.fixture(scope="module")
def runs(lane):
    share = os.path.join(lane.root, "share")
    lane.add_host("web01")
    lane.add_host("web03", faults=PAGE_ERROR)
    lane.add_host("web04")
    lane.add_host("web02", faults=PAGE_ERROR)
    backup = lane.start(os.path.join(PLAYBOOKS, "backup.yml"), inventory(lane, ["web01", "web03"], share),
                        name="backup")
    verified = lane.start(os.path.join(PLAYBOOKS, "backup_verified.yml"),
                          inventory(lane, ["web04", "web02"], share), name="backup_verified")
    done = {"backup": lane.collect(backup[0]), "backup_verified": lane.collect(verified[0])}
    drill_inv = inventory(lane, ["web01", "web03"], share)
    for name in ("web01", "web03"):
        os.makedirs(os.path.join(lane.host_root(name), "scratch"), exist_ok=True)
        drill_inv["all"]["children"]["ese_hosts"]["hosts"][name]["restore_drill_backup_path"] = \
            os.path.join(share, name)
    done["drill"] = lane.run("""
- name: Drill every host's newest backup
  hosts: ese_hosts
  gather_facts: false
  roles:
    - role: ese.backup.restore_drill
      vars:
        restore_drill_scratch: '{{ ese_log_path | dirname }}/scratch'
        restore_drill_summary_dir: '%s'
        restore_drill_fail_on_error: false
""" % os.path.join(lane.root, "drill"), drill_inv, name="drill")
    done["share"] = share
    return done


def test_backup_yml_verifies_the_good_host_and_reports_the_page_error(lane, runs):
    res = runs["backup"]
    assert res.rc == 0, res.explain()
    with open(os.path.join(lane.root, "report.json")) as f:
        report = {entry["host"]: entry for entry in json.load(f)}
    good = report["web01"]
    assert good["status"] == "ok" and good["verified"] == {"valid": True, "problems": 0}, good
    set_dir = os.path.join(runs["share"], "web01", os.path.basename(good["backup_set"]))
    assert os.path.basename(set_dir).startswith("full-") and manifest(set_dir)["type"] == "full"
    run = res.task("web01", "Take the backup into the share")["result"]
    assert run["changed"] is True and run["windows_only_skipped"] == SKIPPED_BACKUP
    headers = res.task("web01", "Read the database headers")["result"]
    assert headers["changed"] is False and headers["windows_only_skipped"] == []

    bad = report["web03"]
    assert bad["status"] == "failed" and bad["backup_set"] is None, bad
    assert bad["jet_err"] == {"code": -1018, "name": "JET_errReadVerifyFailure", "call": "JetReadFileInstance"}
    failed = res.task("web03", "Take the backup into the share")
    assert failed["status"] == "failed" and failed["result"].get("backup_set") is None
    trace = [(t["call"], t["err"], t.get("detail", "")) for t in failed["result"]["trace"]]
    assert ("JetReadFileInstance", -1018) in [(c, e) for c, e, dummy in trace]
    assert any((c == "JetEndExternalBackupInstance2" and e in (0, -520)) or (c == "JetTerm2" and "0x4" in d)
               for c, e, d in trace), trace
    assert tree(os.path.join(runs["share"], "web03")) == []  # no set, no staging folder
    sru = os.path.join(lane.host_root("web03"), "sru")
    assert os.path.exists(os.path.join(sru, "SRU00001.log"))  # nothing truncated
    assert bkinfo(os.path.join(sru, "SRUDB.dat"), "full") == (0, 0)


def test_backup_verified_yml_truncates_only_where_the_copy_verified(lane, runs):
    res = runs["backup_verified"]
    assert res.rc == 0, res.explain()
    begin = res.task("web04", "Begin a backup session")["result"]
    assert begin["changed"] is True and begin["windows_only_skipped"] == SKIPPED_BACKUP  # from session_host
    good = res.task("web04", "End the session")["result"]
    assert good["policy_row"] == "end.ended_complete" and good["backup_valid"] is True, good
    assert res.task("web04", "Truncate the logs that are now safely copied")["result"]["changed"] is True
    sru = os.path.join(lane.host_root("web04"), "sru")
    assert not os.path.exists(os.path.join(sru, "SRU00001.log"))
    assert bkinfo(os.path.join(sru, "SRUDB.dat"), "full") == (2, 2)
    copied = res.task("web04", "Copy the databases and logs into the share")["result"]
    assert manifest(os.path.join(runs["share"], "web04", os.path.basename(copied["backup_set"])))["files"]

    bad = res.task("web02", "End the session")["result"]
    assert bad["policy_row"] == "end.ended_abort" and bad["changed"] is True and not bad.get("failed"), bad
    copy = res.task("web02", "Copy the databases and logs into the share")
    assert copy["status"] == "failed" and copy["result"]["jet_err"]["code"] == -1018, copy
    assert res.task("web02", "Truncate the logs that are now safely copied")["status"] == "skipped"
    sru = os.path.join(lane.host_root("web02"), "sru")
    assert os.path.exists(os.path.join(sru, "SRU00001.log"))
    assert bkinfo(os.path.join(sru, "SRUDB.dat"), "full") == (0, 0)
    assert tree(os.path.join(runs["share"], "web02")) == []


def test_restore_drill_role_drills_the_good_set_and_reports_the_host_without_one(lane, runs):
    res = runs["drill"]
    assert res.rc == 0, res.explain()
    with open(os.path.join(lane.root, "drill", "restore-drill.json")) as f:
        rows = {r["host"]: r for r in json.load(f)}
    good = rows["web01"]
    assert good["passed"] is True and good["scratch_removed"] is True, good
    assert os.path.basename(good["set"]).startswith("full-") and good["incrementals"] == []
    drill = res.task("web01", "ese.backup.restore_drill : Drill the restore")["result"]
    assert drill["changed"] is False and drill["policy_row"] == "restore.drill_passed"
    assert drill["windows_only_skipped"] == ["privilege SeRestorePrivilege", "privilege SeBackupPrivilege"]
    assert tree(os.path.join(lane.host_root("web01"), "scratch")) == []
    assert rows["web03"]["passed"] is False and "no backup set found" in rows["web03"]["msg"], rows["web03"]
    with open(os.path.join(lane.root, "drill", "restore-drill.md")) as f:
        assert f.read().count("| passed |") == 1
