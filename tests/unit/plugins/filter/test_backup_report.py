# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from ansible_collections.ese.backup.plugins.filter.backup_report import backup_report


def test_report_has_one_entry_per_host_with_status_and_verification():
    hostvars = {
        "web01": {"ese_backup": {"changed": True, "backup_set": "\\\\b\\web01\\full-1",
                                 "manifest": {"type": "full", "logs": {"gen_low": 2, "gen_high": 2}}}},
        "web02": {"ese_backup": {"failed": True, "msg": "JetReadFileInstance returned ...",
                                 "jet_err": {"code": -1018, "name": "JET_errReadVerifyFailure",
                                             "call": "JetReadFileInstance"}}},
        "web03": {},
    }
    verify = [{"item": "web01", "valid": True, "problems": []}, {"item": "web02", "skipped": True}]
    report = backup_report(["web01", "web02", "web03"], hostvars, verify)
    assert [r["status"] for r in report] == ["ok", "failed", "not run"]
    assert report[0]["log_generations"] == [2, 2] and report[0]["type"] == "full"
    assert report[0]["verified"] == {"valid": True, "problems": 0}
    assert report[1]["verified"] is None and report[1]["jet_err"]["code"] == -1018
    assert report[2]["backup_set"] is None


def test_a_host_that_failed_before_its_backup_is_reported_failed_with_its_message():
    hostvars = {"web04": {"ese_backup_failure": "ese.backup.info failed before the engine returned its facts: boom"},
                "web05": {}}
    report = backup_report(["web04", "web05"], hostvars, [])
    assert [r["status"] for r in report] == ["failed", "not run"]
    assert "boom" in report[0]["message"] and report[1]["message"] == ""


def test_retention_and_duration_come_from_the_prune_results_and_the_run_result():
    from ansible_collections.ese.backup.plugins.filter.backup_report_html import backup_report_html
    from ansible_collections.ese.backup.plugins.filter.backup_report_junit import backup_report_junit
    from ansible_collections.ese.backup.plugins.filter.backup_report_summary import backup_report_summary
    hostvars = {
        "web01": {"ese_backup": {"changed": True, "backup_set": "\\\\b\\web01\\full-2", "duration_s": 12.34,
                                 "manifest": {"type": "full", "files": [{"name": "d", "size": 10}]}}},
        "web02": {"ese_backup": {"changed": True, "backup_set": "\\\\b\\web02\\full-2",
                                 "manifest": {"type": "full", "files": [{"name": "d", "size": 10}]}}},
        "web03": {"ese_backup": {"changed": True, "backup_set": "\\\\b\\web03\\full-2",
                                 "manifest": {"type": "full", "files": [{"name": "d", "size": 10}]}}},
    }
    pruned = {"changed": True, "results": [
        {"item": "web01", "kept": [{"name": "full-2"}, {"name": "full-1"}], "removed": [{"name": "full-0"}],
         "held": [], "bytes_freed": 3 * 1048576},
        {"item": "web02", "failed": True, "msg": "path is not a folder of backup sets"},
        {"item": "web03", "skipped": True}]}
    from ansible_collections.ese.backup.plugins.plugin_utils._backup_report import host_entries
    report = host_entries(["web01", "web02", "web03"], hostvars, [], pruned)
    assert report[0]["retention"] == {"kept": 2, "removed": 1, "held": 0, "bytes_freed": 3 * 1048576}
    assert report[0]["duration"] == 12.34 and report[1]["duration"] is None
    assert report[1]["retention"] == {"failed": True, "msg": "path is not a folder of backup sets"}
    assert report[2]["retention"] is None
    page = backup_report_html(["web01", "web02", "web03"], hostvars, [], pruned)
    assert '<td class="retention">kept 2, removed 1 (3.0 MiB freed)</td>' in page
    assert '<td class="retention">prune failed: path is not a folder of backup sets</td>' in page
    assert '<td class="duration">12.3 s</td>' in page and "Set size per host, with the backup's duration" in page
    assert page.count('<td class="retention"><span class="unknown">not configured</span></td>') == 1
    assert "retention: kept 2, removed 1 (3.0 MiB freed)" in backup_report_junit(["web01"], hostvars, [], pruned)
    assert backup_report_summary(["web01"], hostvars, [], pruned)[0].endswith(
        "retention: kept 2, removed 1 (3.0 MiB freed)")
    assert all(e["retention"] is None for e in host_entries(["web01", "web02"], hostvars))
    assert sorted(backup_report(["web01"], hostvars, [], pruned)[0]) == sorted(
        ["host", "status", "backup_set", "type", "log_generations", "jet_err", "message", "verified"])
