# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report filters (JSON, JUnit XML, HTML, summary lines) on registered results shaped as a real run of
playbooks/backup.yml with tests/sim/demo-inventory.yml registers them (trimmed: traces shortened)."""
import copy
import html
import re
import xml.etree.ElementTree as ET

from ansible_collections.ese.backup.plugins.filter.backup_report import backup_report
from ansible_collections.ese.backup.plugins.filter.backup_report_html import backup_report_html
from ansible_collections.ese.backup.plugins.filter.backup_report_junit import backup_report_junit
from ansible_collections.ese.backup.plugins.filter.backup_report_summary import backup_report_summary

SRUDB = "C:\\Windows\\System32\\sru\\SRUDB.dat"
ADVICE_1018 = "a database page failed its checksum: run esentutl /k on the database"


def ok_result(host, db_size, log_size, gen, extra_db=None):
    name = "full-20261202T015614Z-%s-5db9" % host.upper()
    databases = [SRUDB] + ([extra_db] if extra_db else [])
    files = [{"name": "databases/SRUDB.dat", "role": "database", "size": db_size, "sha256": "3cdf1f"}]
    if extra_db:
        files.append({"name": "databases/other.edb", "role": "database", "size": 8192, "sha256": "77aa01"})
    files.append({"name": "logs/SRU%05X.log" % gen, "role": "log", "generation": gen, "size": log_size,
                  "sha256": "1fc083"})
    return {
        "changed": True, "ended": "normal", "logs_truncated": True, "recorded_as": "full", "policy_row": "run.created",
        "backup_set": "\\\\backup01\\ese\\%s\\%s" % (host, name),
        "msg": "created full backup set \\\\backup01\\ese\\%s\\%s; logs were truncated" % (host, name),
        "invocation": {"module_args": {"databases": databases}},
        "manifest": {
            "format": "ese.backup/1", "tool": {"name": "ese.backup", "version": "0.1.0"}, "type": "full",
            "created": "2026-12-02T01:56:14Z", "logs_truncated": True,
            "source": {"host": host.upper(), "databases": databases, "log_path": "C:\\Windows\\System32\\sru",
                       "system_path": "C:\\Windows\\System32\\sru", "base_name": "SRU", "page_size": 4096},
            "logs": {"gen_low": gen, "gen_high": gen, "base_name": "SRU"},
            "databases": [{"file": "databases/" + d.rsplit("\\", 1)[-1], "source": d, "page_size": 4096}
                          for d in databases],
            "files": files},
        "trace": [{"call": "JetEndSession", "err": 0, "detail": "grbit=0x0"},
                  {"call": "JetTerm2", "err": 0, "detail": "grbit=0x1"}],
    }


FAILED = {
    "changed": False, "failed": True, "ended": "abort", "logs_truncated": False, "recorded_as": None,
    "backup_set": None, "manifest": None, "policy_row": "run.failed_started",
    "jet_err": {"code": -1018, "name": "JET_errReadVerifyFailure", "call": "JetReadFileInstance"},
    "msg": "JetReadFileInstance returned JET_errReadVerifyFailure (-1018) [name=%s offset=0]: a database page failed "
           "its checksum: run esentutl /k on the database to list the bad pages, restore from the last good backup "
           "(or repair with esentutl /p as a last resort), and keep the previous backup sets; the backup was ended "
           "with abort and no backup set was published" % SRUDB,
    "invocation": {"module_args": {"databases": [SRUDB]}},
    "trace": [{"call": "JetReadFileInstance", "err": -1018, "detail": "name=%s call=1 offset=0" % SRUDB},
              {"call": "JetCloseFileInstance", "err": -1003, "detail": "handle=0"},
              {"call": "JetTerm2", "err": 0, "detail": "grbit=0x1"}],
}


def verified(host, problems=()):
    return {"changed": False, "item": host, "ansible_loop_var": "item", "kind": "sets",
            "valid": not problems, "problems": list(problems),
            "error_count": sum(1 for p in problems if p["severity"] == "error"), "warning_count": 0,
            "chains": [{"base": "full-20261202T015614Z-%s-5db9" % host.upper(), "continuous": True,
                        "sets": ["full-20261202T015614Z-%s-5db9" % host.upper()], "gen_low": 2, "gen_high": 2}]}


def skipped(host):
    return {"changed": False, "skipped": True, "skip_reason": "Conditional result was False", "item": host,
            "ansible_loop_var": "item"}


def demo_run():
    """web01 and web02 backed up and verified, web03 failed on the injected page checksum error (as make demo)."""
    hostvars = {
        "web01": {"ese_databases": [SRUDB], "ese_backup": ok_result("web01", 200704, 65536, 2)},
        "web02": {"ese_databases": [SRUDB], "ese_backup": ok_result("web02", 2494464, 65536, 92)},
        "web03": {"ese_databases": [SRUDB], "ese_backup": copy.deepcopy(FAILED),
                  "ese_backup_failure": FAILED["msg"]},
    }
    return ["web01", "web02", "web03"], hostvars, [verified("web01"), verified("web02"), skipped("web03")]


def test_json_report_keeps_its_keys_and_values():
    hosts, hostvars, verify = demo_run()
    report = backup_report(hosts, hostvars, verify)
    assert [sorted(r) for r in report] == [sorted(["host", "status", "backup_set", "type", "log_generations",
                                                   "jet_err", "message", "verified"])] * 3
    assert [r["status"] for r in report] == ["ok", "ok", "failed"]
    assert report[1]["log_generations"] == [92, 92] and report[1]["verified"] == {"valid": True, "problems": 0}
    assert report[2]["verified"] is None and report[2]["message"] == FAILED["msg"]


def junit(hosts, hostvars, verify):
    text = backup_report_junit(hosts, hostvars, verify)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(text.encode("utf-8"))


def test_junit_has_a_testcase_per_host_and_database_and_a_failure_for_the_failed_host():
    hosts, hostvars, verify = demo_run()
    hostvars["web02"]["ese_backup"] = ok_result("web02", 2494464, 65536, 92, extra_db="D:\\data\\other.edb")
    hostvars["web04"] = {"ese_databases": ["C:\\x.edb"]}  # in the group, never backed up (unreachable, say)
    root = junit(hosts + ["web04"], hostvars, verify)
    cases = [(c.get("classname"), c.get("name")) for c in root.iter("testcase")]
    assert cases == [("web01", SRUDB), ("web02", SRUDB), ("web02", "D:\\data\\other.edb"), ("web03", SRUDB),
                     ("web04", "C:\\x.edb")]
    assert [s.get("name") for s in root.findall("testsuite")] == ["web01", "web02", "web03", "web04"]
    failed = {c.get("classname"): c.find("failure") for c in root.iter("testcase")}
    assert [h for h, f in failed.items() if f is not None] == ["web03"]
    failure = failed["web03"]
    assert failure.get("type") == "JET_errReadVerifyFailure"
    assert "-1018" in failure.get("message") and "JetReadFileInstance" in failure.get("message")
    assert ADVICE_1018 in failure.text and "call=1 offset=0" in failure.text
    assert root.find("testsuite[@name='web04']/testcase/skipped") is not None
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("5", "1", "1")
    assert root.find("testsuite[@name='web03']").get("failures") == "1"


def test_junit_fails_a_database_whose_set_did_not_verify():
    hosts, hostvars, verify = demo_run()
    verify[0] = verified("web01", [{"code": "DB_PAGE_BAD", "severity": "error", "file": "databases/SRUDB.dat",
                                    "page": 17, "detail": "page 17: checksum mismatch"}])
    root = junit(hosts, hostvars, verify)
    failure = root.find("testsuite[@name='web01']/testcase/failure")
    assert failure.get("type") == "verification" and "invalid, 1 problem" in failure.get("message")
    assert "DB_PAGE_BAD" in failure.text


def hostile():
    hosts, hostvars, verify = demo_run()
    evil = 'web<script>alert("x")</script>&\'05'
    hostvars[evil] = {"ese_backup_failure": "ese.backup.info failed before the engine returned its facts: "
                                            "<img src=x onerror=alert(1)> \x00\x1b[31m & done"}
    return hosts + [evil], hostvars, verify, evil


def test_html_escapes_a_hostile_host_name_and_message():
    hosts, hostvars, verify, evil = hostile()
    page = backup_report_html(hosts, hostvars, verify)
    assert "<script" not in page and "<img" not in page and "onerror=alert(1)>" not in page
    assert html.escape(evil, quote=True) in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert 'data-host="%s"' % html.escape(evil, quote=True) in page
    assert "\x00" not in page and "\x1b" not in page


def test_junit_carries_a_hostile_host_name_and_message_as_text():
    hosts, hostvars, verify, evil = hostile()
    root = junit(hosts, hostvars, verify)
    case = root.findall("testsuite")[3].find("testcase")
    assert case.get("classname") == evil and case.find("failure") is not None
    assert "<img src=x onerror=alert(1)> \ufffd\ufffd[31m & done" in case.find("failure").text


def test_html_sizes_add_up_and_every_row_is_there():
    hosts, hostvars, verify = demo_run()
    page = backup_report_html(hosts, hostvars, verify)
    sizes = [int(s) for s in re.findall(r'class="bar status-ok" data-host="[^"]*" data-size="(\d+)"', page)]
    assert sizes == [200704 + 65536, 2494464 + 65536]
    assert 'data-bytes="%d"' % sum(sizes) in page
    assert "260.0 KiB (266240 bytes in 2 files)" in page and "2.4 MiB (2560000 bytes in 2 files)" in page
    assert len(re.findall(r'<rect class="bar ', page)) == 3
    assert page.count('<section class="host status-ok"') == 2 and page.count('<section class="host status-failed"') == 1
    for row in ("Status", "Type", "Set", "Size", "Duration", "Log range", "Verification", "Chain health", "Retention"):
        assert page.count('<th scope="row">%s</th>' % row) == 3, row
    assert page.count("not configured") == 3 and page.count(">not recorded<") == 3
    assert "generations 92 - 92 (logs/SRU0005C.log - logs/SRU0005C.log)" in page
    assert "1 chain, continuous, healthy" in page


def test_html_failure_names_the_jet_error_the_call_and_the_advice():
    hosts, hostvars, verify = demo_run()
    page = backup_report_html(hosts, hostvars, verify)
    failures = page[page.index('<section class="failures">'):page.index("<h2>Hosts</h2>")]
    assert failures.count('<div class="failure"') == 1 and 'data-host="web03"' in failures
    assert "JET_errReadVerifyFailure (-1018)" in failures
    assert "JetReadFileInstance <code>name=%s call=1 offset=0</code>" % html.escape(SRUDB) in failures
    assert ADVICE_1018 in failures


def test_html_chain_health_is_unknown_without_a_verify_result_and_the_page_loads_nothing():
    hosts, hostvars = demo_run()[:2]
    page = backup_report_html(hosts, hostvars, [])
    assert page.count('<td class="chain-health"><span class="unknown">unknown</span></td>') == 3
    assert not re.search(r"<script|<link|\bsrc=|@import|url\(", page)
    assert "default-src 'none'" in page


def test_summary_has_one_line_per_host():
    hosts, hostvars, verify = demo_run()
    lines = backup_report_summary(hosts + ["web04"], dict(hostvars, web04={}), verify)
    assert lines[0].startswith("web01: ok - full set \\\\backup01\\ese\\web01\\full-")
    assert lines[0].endswith(", 260.0 KiB, generations 2 - 2, verified valid, 0 problems")
    assert lines[2] == "web03: failed - JET_errReadVerifyFailure (-1018) in JetReadFileInstance"
    assert lines[3] == "web04: not run" and len(lines) == 4


def one_task(loop_results):
    """The same verify results as ese.backup.verify with paths and names registers them: one task, its results
    named by host, a host without a set not among them (the loop skipped it)."""
    results = []
    for res in loop_results:
        if res.get("skipped"):
            continue
        host = res["item"]
        res = dict((k, v) for k, v in res.items() if k not in ("item", "ansible_loop_var", "changed"))
        res.update(name=host, path="/srv/backup/" + host)
        results.append(res)
    return {"changed": False, "kind": "many", "valid": all(r["valid"] for r in results), "processes": 2,
            "results": results}


def test_the_one_task_verify_result_gives_the_same_reports_as_the_loop():
    hosts, hostvars, verify = demo_run()
    verify[1] = verified("web02", [{"code": "DB_PAGE_CHECKSUM", "severity": "error", "file": "databases/SRUDB.dat",
                                    "page": 17, "detail": "page 17: checksum mismatch"}])
    task = one_task(verify)
    assert [r["name"] for r in task["results"]] == ["web01", "web02"] and "item" not in task["results"][0]
    for render in (backup_report, backup_report_junit, backup_report_html, backup_report_summary):
        loop = render(hosts + ["web04"], dict(hostvars, web04={}), verify)
        assert render(hosts + ["web04"], dict(hostvars, web04={}), task["results"]) == loop, render.__name__
        assert render(hosts + ["web04"], dict(hostvars, web04={}), task) == loop, render.__name__
    assert backup_report(hosts, hostvars, task["results"])[1]["verified"] == {"valid": False, "problems": 1}
    skipped_task = {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}
    assert backup_report(hosts, hostvars, skipped_task) == backup_report(hosts, hostvars, [])
