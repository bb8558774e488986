# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ese.backup.prune action plugin: the Python module where the shell is not PowerShell; on a Windows host the
engine's scan, the controller's planner, and the engine's removal in the planned order."""
import base64
import datetime
import hashlib
import os
import sys

import pytest

from ansible_collections.ese.backup.plugins.action.prune import ActionModule
from ansible_collections.ese.backup.plugins.modules import prune as prune_module

from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
import ese_synth as syn  # noqa: E402

NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.timezone.utc)


class Shell:
    def __init__(self, family):
        self.SHELL_FAMILY = family
        self.tmpdir = "C:\\Windows\\TEMP\\ansible-tmp"


class Connection:
    def __init__(self, family):
        self._shell = Shell(family)


def chains_folder(d):
    syn.make_backup_set(d, "full-a", "full", 10, 12, created="2026-11-20T04:00:00Z")
    syn.make_backup_set(d, "inc-a1", "incremental", 13, 14, created="2026-11-21T04:00:00Z")
    syn.make_backup_set(d, "diff-a1", "differential", 13, 15, created="2026-11-21T05:00:00Z")
    syn.make_backup_set(d, "full-b", "full", 17, 18, created="2026-11-24T04:00:00Z")
    syn.make_backup_set(d, "inc-b1", "incremental", 19, 20, created="2026-11-25T04:00:00Z")
    return d


def raw(path):
    if not os.path.lexists(path):
        return {"kind": None, "data": None, "sha256": None}
    with open(path, "rb") as f:
        data = f.read()
    return {"kind": "file", "data": base64.b64encode(data).decode(), "sha256": hashlib.sha256(data).hexdigest()}


def scan_of(d, staging=()):
    """What Prune.Scan returns for the folder ``d`` (read here)."""
    sets = []
    for n in sorted(os.listdir(d)):
        if n.startswith("."):
            continue
        sets.append({"name": n, "manifest": raw(os.path.join(d, n, "manifest.json")),
                     "ending": raw(os.path.join(d, n, "ending.json")),
                     "bytes": prune_module.tree_facts(os.path.join(d, n))[0]})
    return {"format": "ese.backup/prune-host/1", "invalid": None, "changed": False, "path": "C:\\backup",
            "sets": sets, "staging": list(staging)}


class Host:
    """A fake Windows host: answers prune_host from the folder ``d`` and records each call."""

    def __init__(self, d, remove=None):
        self.d, self.calls, self.remove = d, [], remove

    def __call__(self, module_name=None, module_args=None, task_vars=None, **kwargs):
        self.calls.append((module_name, dict(module_args)))
        mode = module_args.get("mode")
        if module_name != "ese.backup.prune_host":
            return {"changed": False, "python": True}
        if mode == "scan":
            return scan_of(self.d)
        if mode == "verify":
            return {"format": "ese.backup/prune-host/1", "invalid": None,
                    "verified": [{"name": n, "verified": True} for n in module_args["sets"]]}
        if self.remove:
            return self.remove(module_args)
        return {"format": "ese.backup/prune-host/1", "invalid": None, "changed": True, "stopped": None,
                "removed": [s["name"] for s in module_args["sets"]], "staging": [], "problems": []}


def action(family, args, host, check_mode=False, diff=False, monkeypatch=None):
    task = Task()
    task.args = dict(args)
    task.check_mode = check_mode
    task.diff = diff
    task.action = "ese.backup.prune"
    plugin = ActionModule(task, Connection(family), PlayContext(), loader=None, templar=None, shared_loader_obj=None)
    monkeypatch.setattr(plugin, "_execute_module", host)
    return plugin


def test_a_posix_host_runs_the_python_module(tmp_path, monkeypatch):
    host = Host(str(tmp_path))
    plugin = action("sh", {"path": "/srv/backup", "keep_full": 1}, host, monkeypatch=monkeypatch)
    result = plugin.run(task_vars={})
    assert host.calls == [("ese.backup.prune", {"path": "/srv/backup", "keep_full": 1})]
    assert result["python"] is True


def test_a_windows_host_scans_plans_and_removes_in_order(tmp_path, monkeypatch):
    d = chains_folder(str(tmp_path / "sets"))
    host = Host(d)
    plugin = action("powershell", {"path": "C:\\backup", "keep_full": 1}, host, monkeypatch=monkeypatch)
    result = plugin.run_windows({}, NOW)
    modes = [c[1]["mode"] for c in host.calls]
    assert modes == ["scan", "verify", "remove"] and all(c[0] == "ese.backup.prune_host" for c in host.calls)
    assert host.calls[1][1]["sets"] == ["full-b", "inc-b1"]          # the newest chain only: lazily
    sent = host.calls[2][1]["sets"]
    assert [s["name"] for s in sent] == ["diff-a1", "inc-a1", "full-a"]
    for s in sent:
        with open(os.path.join(d, s["name"], "manifest.json"), "rb") as f:
            assert s["manifest_sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert result["changed"] is True and not result.get("failed")
    assert [x["name"] for x in result["removed"]] == ["diff-a1", "inc-a1", "full-a"]
    assert "diff" not in result
    # the same decisions as the Python module on the same folder
    py = prune_module.run({"path": d, "keep_full": 1}, check_mode=True, now=NOW)
    for key in ("kept", "removed", "held", "chains", "newest_verified_full", "bytes_freed"):
        assert result[key] == py[key], key


def test_check_mode_lists_and_diffs_and_removes_nothing(tmp_path, monkeypatch):
    d = chains_folder(str(tmp_path / "sets"))
    host = Host(d)
    plugin = action("powershell", {"path": "C:\\backup", "keep_full": 1, "verify": "ending"}, host,
                    check_mode=True, diff=True, monkeypatch=monkeypatch)
    result = plugin.run(task_vars={})
    assert [c[1]["mode"] for c in host.calls] == ["scan"]
    assert result["changed"] is True and all(x["rules"] == ["no_rule_keeps_it"] for x in result["removed"])
    assert "full-a  full" in result["diff"]["before"] and "full-a" not in result["diff"]["after"]


def test_a_stop_in_the_engine_fails_with_what_was_removed(tmp_path, monkeypatch):
    d = chains_folder(str(tmp_path / "sets"))

    def remove(args):
        return {"format": "ese.backup/prune-host/1", "invalid": None, "changed": True, "removed": ["diff-a1"],
                "stopped": "inc-a1: changed", "staging": [],
                "problems": [{"code": "PRUNE_SET_CHANGED", "severity": "error", "file": "inc-a1",
                              "detail": "its manifest.json changed since the scan"}]}
    host = Host(d, remove)
    plugin = action("powershell", {"path": "C:\\backup", "keep_full": 1}, host, monkeypatch=monkeypatch)
    result = plugin.run_windows({}, NOW)
    assert result["failed"] is True and result["changed"] is True
    assert result["msg"].startswith("inc-a1: not removed (its manifest.json changed since the scan); 1 set(s)")
    assert [x["name"] for x in result["removed"]] == ["diff-a1"]
    assert result["problems"][-1]["code"] == "PRUNE_SET_CHANGED"


def test_staging_judged_in_progress_by_the_engine_is_kept(tmp_path, monkeypatch):
    d = chains_folder(str(tmp_path / "sets"))
    stg = [{"name": ".a.partial", "kind": "partial", "bytes": 10, "quiet_seconds": 7200.0, "judged": "in_progress",
            "why": None, "run": {"host": "W1", "pid": 4, "started": "x"}},
           {"name": ".b.partial", "kind": "partial", "bytes": 20, "quiet_seconds": 7200.0, "judged": "stale",
            "why": "the run that wrote it is gone", "run": None},
           {"name": ".c.partial", "kind": "partial", "bytes": 30, "quiet_seconds": 60.0, "judged": "stale",
            "why": None, "run": None}]
    host = Host(d)

    def answer(module_name=None, module_args=None, task_vars=None, **kw):
        r = host(module_name, module_args, task_vars)
        if module_args.get("mode") == "scan":
            r["staging"] = stg
        return r
    plugin = action("powershell", {"path": "C:\\backup", "keep_full": 5, "partial_older_than_hours": 1}, answer,
                    check_mode=True, monkeypatch=monkeypatch)
    result = plugin.run_windows({}, NOW)
    action_of = dict((s["name"], s["action"]) for s in result["staging"])
    assert action_of == {".a.partial": "keep", ".b.partial": "remove", ".c.partial": "keep"}
    assert result["bytes_freed"] == 20


@pytest.mark.parametrize("args,option", [({"keep_full": 0}, "keep_full"),
                                         ({"keep_full": 1, "verify": "checksums"}, "verify"),
                                         ({"keep_full": 1, "partial_older_than_hours": 0},
                                          "partial_older_than_hours"),
                                         ({"keep_full": -1}, "keep_full"),
                                         ({"keep_full": "many"}, "keep_full"),
                                         ({"keep_full": 1, "path": None, "paths": ["C:\\a", "C:\\b"]}, "paths")])
def test_bad_input_fails_naming_the_option_before_the_host_is_asked(tmp_path, monkeypatch, args, option):
    host = Host(str(tmp_path))
    args = dict({"path": "C:\\backup"}, **args)
    plugin = action("powershell", dict((k, v) for k, v in args.items() if v is not None), host, monkeypatch=monkeypatch)
    result = plugin.run(task_vars={})
    assert result["failed"] is True and option in result["msg"] and host.calls == []


def test_a_host_without_engine_facts_fails_naming_the_module(tmp_path, monkeypatch):
    def broken(module_name=None, module_args=None, task_vars=None, **kw):
        return {"failed": True, "msg": "Add-Type failed"}
    plugin = action("powershell", {"path": "C:\\backup", "keep_full": 1}, broken, monkeypatch=monkeypatch)
    result = plugin.run(task_vars={})
    assert result["failed"] is True and "ese.backup.prune_host (mode scan)" in result["msg"]
    assert "Add-Type failed" in result["msg"]


def test_an_invalid_path_on_the_host_fails_with_the_engines_message(tmp_path, monkeypatch):
    def invalid(module_name=None, module_args=None, task_vars=None, **kw):
        return {"format": "ese.backup/prune-host/1", "changed": False,
                "invalid": {"option": "path", "msg": "path: C:\\nope is not a folder"}}
    plugin = action("powershell", {"path": "C:\\nope", "keep_full": 1}, invalid, monkeypatch=monkeypatch)
    result = plugin.run(task_vars={})
    assert result["failed"] is True and result["msg"] == "path: C:\\nope is not a folder"
