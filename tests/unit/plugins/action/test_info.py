"""ese.backup.info action plugin: a read-only pass-through."""
from ansible_collections.ese.backup.plugins.action.info import ActionModule

ARGS = {"databases": [r"C:\db\edb.dat"], "backup_path": r"D:\backup"}


def test_passes_the_result_through(action_factory):
    module_result = {"changed": False, "databases": [{"path": r"C:\db\edb.dat", "db_state": 2}],
                     "backup_sets": [{"name": "nightly"}], "trace": []}
    plugin, calls = action_factory(ActionModule, ARGS, module_result)
    result = plugin.run(task_vars={})
    assert calls[0]["module_name"] == "ese.backup.info" and calls[0]["module_args"] == ARGS
    assert result["changed"] is False
    assert result["databases"] == module_result["databases"]
    assert result["backup_sets"] == module_result["backup_sets"]


def test_never_changed(action_factory):
    plugin, _ = action_factory(ActionModule, ARGS, {"changed": True, "trace": []})
    assert plugin.run(task_vars={})["changed"] is False


def test_failed_call_is_named(action_factory):
    module_result = {"failed": True, "msg": "cannot read header", "trace": [],
                     "failed_call": {"call": "JetGetDatabaseFileInfoW", "err": -1032}}
    plugin, _ = action_factory(ActionModule, ARGS, module_result)
    result = plugin.run(task_vars={})
    assert result["failed"] is True
    assert result["jet_err"] == {"code": -1032, "name": "JET_errFileAccessDenied", "call": "JetGetDatabaseFileInfoW"}


def test_module_failure_passes_through(action_factory):
    plugin, _ = action_factory(ActionModule, ARGS, {"failed": True, "msg": "missing required arguments"})
    result = plugin.run(task_vars={})
    assert result["failed"] is True and result["msg"] == "missing required arguments"


def test_check_mode_is_supported(action_factory):
    plugin, _ = action_factory(ActionModule, ARGS, {"changed": False, "trace": []}, check_mode=True)
    assert plugin.run(task_vars={})["changed"] is False
