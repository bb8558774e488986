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
