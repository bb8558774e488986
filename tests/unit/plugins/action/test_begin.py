# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ese.backup.begin action plugin: start_timeout, and the session host's own result when it does not report."""
import json

import pytest

from ansible_collections.ese.backup.plugins.action import begin
from ansible_collections.ese.backup.tests.unit.plugins.action.conftest import FakeShell, make_action

ARGS = {"session": "s", "databases": [r"C:\sru\SRUDB.dat"], "log_path": r"C:\sru", "base_name": "sru"}
LAUNCH = {"session": "s", "serve_file": r"C:\ProgramData\ese.backup\sessions\s.serve.json", "token": "t0"}
RESULTS = r"C:\Users\ansible\.ansible_async\j1"
STARTED = {"started": 1, "finished": 0, "ansible_job_id": "j1", "results_file": RESULTS}
TIMED_OUT = {"trace": [], "failed_call": {"call": "SessionHost", "err": -1003,
                                          "detail": "the session host did not report within 5 s (start_timeout)"},
             "invalid": None, "started": False}
BEGUN = {"trace": [{"call": "JetBeginExternalBackupInstance", "err": 0, "detail": ""}], "failed_call": None,
         "invalid": None, "started": True, "session": {"name": "s", "pid": 7, "state": "open"}, "journal": None}


class Connection:
    _shell = FakeShell()

    def __init__(self, files):
        self.files = files
        self.fetched = []

    def fetch_file(self, in_path, out_path):
        self.fetched.append(in_path)
        if in_path not in self.files:
            raise IOError("no such file %s" % in_path)
        with open(out_path, "wb") as f:
            f.write(self.files[in_path])


def plugin_with(monkeypatch, args, wait_result, files=None):
    plugin = make_action(begin.ActionModule, args)
    plugin._connection = Connection(files or {})
    calls = []

    def fake(module_name=None, module_args=None, task_vars=None, wrap_async=False, **kw):
        calls.append((module_name, dict(module_args), wrap_async))
        if module_name == "ese.backup.begin":
            return {"trace": [], "failed_call": None, "invalid": None, "launch": dict(LAUNCH), "started": False}
        if module_args["mode"] == "serve":
            return dict(STARTED)
        return json.loads(json.dumps(wait_result))

    monkeypatch.setattr(plugin, "_execute_module", fake)
    return plugin, calls


def test_default_wait_is_60_s_and_start_timeout_is_not_passed_to_the_module(monkeypatch):
    plugin, calls = plugin_with(monkeypatch, ARGS, BEGUN)
    result = plugin.run(task_vars={})
    assert (result["changed"], result["failed"]) == (True, False), result
    assert calls[0] == ("ese.backup.begin", ARGS, False)
    assert calls[1][2] is True and calls[1][1]["mode"] == "serve"
    assert calls[2][1] == {"mode": "wait", "session": "s", "token": "t0", "timeout": 60}
    assert plugin._connection.fetched == []


def test_start_timeout_sets_the_wait(monkeypatch):
    plugin, calls = plugin_with(monkeypatch, dict(ARGS, start_timeout=300), BEGUN)
    plugin.run(task_vars={})
    assert "start_timeout" not in calls[0][1]
    assert calls[2][1]["timeout"] == 300


@pytest.mark.parametrize("bad", [0, -1, "soon", 90000, 1.5, True])
def test_bad_start_timeout_is_invalid(monkeypatch, bad):
    plugin, calls = plugin_with(monkeypatch, dict(ARGS, start_timeout=bad), BEGUN)
    result = plugin.run(task_vars={})
    assert result["failed"] and "start_timeout" in result["msg"], result
    assert calls == []


def test_a_host_that_failed_at_start_reports_its_own_error(monkeypatch):
    own = {"started": False, "failed_call": {"call": "SessionHost", "err": -1003, "detail":
                                             "the session host could not start: IOException: cannot replace the "
                                             "session journal C:\\ProgramData\\ese.backup\\sessions\\s.json"}}
    plugin, calls = plugin_with(monkeypatch, ARGS, TIMED_OUT, {RESULTS: json.dumps(own).encode()})
    result = plugin.run(task_vars={})
    assert (result["changed"], result["failed"]) == (False, True)
    assert plugin._connection.fetched == [RESULTS]
    assert "did not report within 5 s" in result["msg"]
    assert "the session host's own result: SessionHost returned -1003: the session host could not start: " \
           "IOException: cannot replace the session journal" in result["msg"], result["msg"]
    assert result["host_result"] == own


def test_a_module_failure_of_the_host_is_reported(monkeypatch):
    own = {"failed": True, "msg": "Unhandled exception while executing module: boom",
           "exception": "Traceback\n  at x\nSystem.TypeLoadException: could not load"}
    plugin = plugin_with(monkeypatch, ARGS, TIMED_OUT, {RESULTS: json.dumps(own).encode()})[0]
    result = plugin.run(task_vars={})
    assert "Unhandled exception while executing module: boom (System.TypeLoadException: could not load)" \
        in result["msg"], result["msg"]


def test_a_host_still_starting_says_so(monkeypatch):
    plugin = plugin_with(monkeypatch, ARGS, TIMED_OUT, {RESULTS: json.dumps(STARTED).encode()})[0]
    result = plugin.run(task_vars={})
    assert "its async job has not finished" in result["msg"], result["msg"]


def test_no_results_file(monkeypatch):
    plugin = plugin_with(monkeypatch, ARGS, TIMED_OUT, {})[0]
    result = plugin.run(task_vars={})
    assert result["failed"] and "left no result in " + RESULTS in result["msg"], result["msg"]


def test_a_jet_failure_at_start_needs_no_results_file(monkeypatch):
    wait = dict(TIMED_OUT, failed_call={"call": "JetInit3W", "err": -1032, "detail": "grbit=0x40"})
    plugin = plugin_with(monkeypatch, ARGS, wait, {})[0]
    result = plugin.run(task_vars={})
    assert "JetInit3W returned" in result["msg"] and plugin._connection.fetched == []
