# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ese.backup.run action plugin: module call, policy applied to the facts, crash handling."""
import pytest

from ansible_collections.ese.backup.plugins.action.run import ActionModule
from ansible_collections.ese.backup.plugins.plugin_utils import _jet_errors as je
from ansible_collections.ese.backup.plugins.plugin_utils import _jet_policy as jp
from ansible_collections.ese.backup.tests.unit.plugins.plugin_utils.test_jet_policy import CASES as POLICY_CASES

ARGS = {"databases": [r"C:\Windows\System32\sru\SRUDB.dat"], "log_path": r"C:\Windows\System32\sru",
        "base_name": "sru", "dest": r"D:\backup", "set_name": "nightly"}
SET = r"D:\backup\nightly"
TRACE = [{"call": "JetBeginExternalBackupInstance", "err": 0, "detail": "grbit=0x0"}]
MANIFEST = {"format": "ese.backup/1", "type": "full"}


def facts(**over):
    base = {"trace": TRACE, "failed_call": None, "invalid": None, "backup_started": True, "ended": "normal",
            "logs_truncated": True, "backup_set": SET, "manifest": MANIFEST, "check": None,
            "invocation": {"module_args": ARGS}, "changed": False}
    base.update(over)
    return base


def test_calls_the_module_with_the_task_args(action_factory):
    plugin, calls = action_factory(ActionModule, ARGS, facts())
    result = plugin.run(task_vars={"inventory_hostname": "win1"})
    assert calls == [{"module_name": "ese.backup.run", "module_args": ARGS,
                      "task_vars": {"inventory_hostname": "win1"}}]
    assert (result["changed"], result["failed"]) == (True, False)
    assert result["backup_set"] == SET and result["manifest"] == MANIFEST and result["trace"] == TRACE
    assert result["check"] is None and result["logs_truncated"] is True
    assert result["invocation"] == {"module_args": ARGS}
    assert "failed_call" not in result and "invalid" not in result
    assert result["policy_row"] == "run.created"


def test_read_verify_failure(action_factory):
    module_result = facts(failed_call={"call": "JetReadFileInstance", "err": -1018, "detail": "SRUDB.dat"},
                          ended="abort", logs_truncated=False, backup_set=None, manifest=None)
    plugin = action_factory(ActionModule, ARGS, module_result)[0]
    result = plugin.run(task_vars={})
    assert (result["changed"], result["failed"]) == (False, True)
    assert result["jet_err"] == {"code": -1018, "name": "JET_errReadVerifyFailure", "call": "JetReadFileInstance"}
    assert "JetReadFileInstance returned JET_errReadVerifyFailure (-1018)" in result["msg"]
    assert "the backup was ended with abort and no backup set was published" in result["msg"]
    assert result["trace"] == TRACE


def test_check_mode(action_factory):
    module_result = facts(backup_started=False, ended=None, logs_truncated=False, backup_set=None, manifest=None,
                          check={"would_create": SET, "type": "full", "would_truncate_logs": True})
    plugin, calls = action_factory(ActionModule, ARGS, module_result, check_mode=True)
    result = plugin.run(task_vars={})
    assert (result["changed"], result["failed"]) == (True, False)
    assert result["check"]["would_create"] == SET
    assert "check mode: a full backup would create backup set " + SET in result["msg"]


def test_again_with_the_same_set_name_fails_clearly(action_factory):
    module_result = facts(invalid={"option": "set_name", "msg": "a backup set '%s' already exists; choose another "
                                                                "set_name or remove the old set" % SET},
                          backup_started=False, ended=None, logs_truncated=False, backup_set=None, manifest=None)
    plugin = action_factory(ActionModule, ARGS, module_result)[0]
    result = plugin.run(task_vars={})
    assert (result["changed"], result["failed"]) == (False, True)
    assert "option 'set_name'" in result["msg"] and "already exists" in result["msg"]


def test_invalid_option(action_factory):
    module_result = facts(invalid={"option": "buffer_size", "msg": "must be a multiple of the page size 4096"},
                          backup_started=False, ended=None, backup_set=None, manifest=None, logs_truncated=False)
    plugin = action_factory(ActionModule, ARGS, module_result)[0]
    result = plugin.run(task_vars={})
    assert (result["changed"], result["failed"]) == (False, True)
    assert "option 'buffer_size'" in result["msg"] and "jet_err" not in result


def test_module_warnings_are_kept(action_factory):
    plugin = action_factory(ActionModule, ARGS, facts(warnings=["page_size ignored"]))[0]
    result = plugin.run(task_vars={})
    assert result["warnings"] == ["page_size ignored"]


@pytest.mark.parametrize("module_result, words", [
    ({"failed": True, "msg": "missing required arguments: dest", "changed": False}, "missing required arguments"),
    ({"failed": True, "msg": "Unhandled exception while executing module: boom",
      "exception": "at <ScriptBlock>"}, "Unhandled exception"),
    ({"changed": False, "msg": "hello"}, "returned no engine facts"),
    ({"failed": True, "module_stderr": "Exception calling Run", "module_stdout": "", "msg": "MODULE FAILURE"},
     "MODULE FAILURE"),
])
def test_module_crash_without_facts(action_factory, module_result, words):
    plugin = action_factory(ActionModule, ARGS, module_result)[0]
    result = plugin.run(task_vars={})
    assert result["failed"] is True and result["changed"] is False
    assert words in result["msg"] and "ese.backup.run" in result["msg"]


def test_module_skipped_passes_through(action_factory):
    plugin = action_factory(ActionModule, ARGS, {"skipped": True, "msg": "remote module does not support"})[0]
    result = plugin.run(task_vars={})
    assert result["skipped"] is True and "failed" not in result


@pytest.mark.parametrize("case", [c for c in POLICY_CASES if c[1] == "run"], ids=lambda c: c[0])
def test_every_run_row_through_the_plugin(action_factory, case):
    module_facts, check_mode, row_id, changed, failed = case[2:7]
    plugin = action_factory(ActionModule, ARGS, module_facts, check_mode=check_mode)[0]
    result = plugin.run(task_vars={})
    assert result["policy_row"] == "run." + row_id
    assert (result["changed"], result["failed"]) == (changed, failed)
    for key in jp.RUN_KEYS:
        if key in module_facts:
            assert result[key] == module_facts[key]


@pytest.mark.parametrize("code", sorted(c for c in je.BY_VALUE if c != 0))
def test_any_failed_call_through_the_plugin(action_factory, code):
    module_result = facts(failed_call={"call": "JetReadFileInstance", "err": code}, ended="abort",
                          logs_truncated=False, backup_set=None)
    plugin = action_factory(ActionModule, ARGS, module_result)[0]
    result = plugin.run(task_vars={})
    assert (result["changed"], result["failed"]) == (False, True)
    assert result["jet_err"]["code"] == code and je.describe(code) in result["msg"]
