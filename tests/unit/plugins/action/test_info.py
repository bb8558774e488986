# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ese.backup.info action plugin: read-only facts passed through; invalid options and failed calls fail."""
from ansible_collections.ese.backup.plugins.action.info import ActionModule

ARGS = {"databases": [r"C:\db\edb.dat"], "backup_path": r"D:\backup"}


def info_facts(**over):
    base = {"trace": [{"call": "JetGetDatabaseFileInfoW", "err": 0}], "invalid": None, "failed_call": None,
            "databases": [{"path": r"C:\db\edb.dat", "db_state": 2, "page_size": 4096}],
            "backup_sets": [{"name": "nightly", "status": "complete"}], "changed": False}
    base.update(over)
    return base


def test_passes_the_facts_through(action_factory):
    module_result = info_facts()
    plugin, calls = action_factory(ActionModule, ARGS, module_result)
    result = plugin.run(task_vars={})
    assert calls[0]["module_name"] == "ese.backup.info" and calls[0]["module_args"] == ARGS
    assert (result["changed"], result["failed"]) == (False, False)
    assert result["databases"] == module_result["databases"]
    assert result["backup_sets"] == module_result["backup_sets"]
    assert result["trace"] == module_result["trace"] and result["invalid"] is None
    assert "failed_call" not in result and "jet_err" not in result
    assert result["msg"] == "read 1 database header(s) and 1 backup set(s)"


def test_never_changed(action_factory):
    plugin = action_factory(ActionModule, ARGS, info_facts(changed=True))[0]
    assert plugin.run(task_vars={})["changed"] is False


def test_failed_call_is_named(action_factory):
    module_result = info_facts(failed_call={"call": "JetGetDatabaseFileInfoW", "err": -1032})
    plugin = action_factory(ActionModule, ARGS, module_result)[0]
    result = plugin.run(task_vars={})
    assert result["failed"] is True
    assert result["jet_err"] == {"code": -1032, "name": "JET_errFileAccessDenied", "call": "JetGetDatabaseFileInfoW"}
    assert "JetGetDatabaseFileInfoW returned JET_errFileAccessDenied (-1032)" in result["msg"]


def test_invalid_option_fails(action_factory):
    module_result = info_facts(invalid={"option": "backup_path", "msg": "backup_path 'x' does not exist"})
    plugin = action_factory(ActionModule, ARGS, module_result)[0]
    result = plugin.run(task_vars={})
    assert result["failed"] is True and "option 'backup_path'" in result["msg"]


def test_module_failure_is_reported(action_factory):
    module_result = {"failed": True, "msg": "one of the following is required: databases, backup_path"}
    plugin = action_factory(ActionModule, ARGS, module_result)[0]
    result = plugin.run(task_vars={})
    assert result["failed"] is True and "one of the following is required" in result["msg"]
    assert "ese.backup.info" in result["msg"]


def test_check_mode_is_supported(action_factory):
    plugin = action_factory(ActionModule, ARGS, info_facts(), check_mode=True)[0]
    result = plugin.run(task_vars={})
    assert (result["changed"], result["failed"]) == (False, False)


def test_a_killed_module_process_is_named_with_its_exit_code(action_factory):
    module_result = {"failed": True, "rc": -9, "module_stdout": "", "module_stderr": "",
                     "msg": "Module result deserialization failed: No start of json char found"}
    plugin = action_factory(ActionModule, ARGS, module_result)[0]
    result = plugin.run(task_vars={})
    assert result["failed"] is True and "exited with rc -9 and no output" in result["msg"], result["msg"]
