# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""run and copy under Ansible's async: the job's state from its results file, the progress line, and the action
plugin waiting for the job (poll above 0) or returning it (poll 0)."""
import json

from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task

from ansible_collections.ese.backup.plugins.action.run import ActionModule
from ansible_collections.ese.backup.plugins.plugin_utils import _async_job as aj

ARGS = {"databases": ["C:\\db\\x.edb"], "log_path": "C:\\db", "dest": "D:\\backup", "set_name": "big"}
STARTED = {"ansible_job_id": "j1", "started": 1, "finished": 0, "results_file": "C:\\async\\j1", "changed": True}
FACTS = {"trace": [], "failed_call": None, "invalid": None, "check": None, "backup_started": True, "ended": "normal",
         "logs_truncated": True, "backup_set": "D:\\backup\\big", "manifest": {"type": "full"}, "proof": None,
         "recorded_as": "full", "backup_valid": True}


def test_job_state():
    assert aj.job_state(b"") == (False, None)
    assert aj.job_state(b'{"trace": [], "backup') == (False, None)  # still being written
    assert aj.job_state(b'{"started": 1, "finished": 0, "ansible_job_id": "j1"}') == (False, None)
    assert aj.job_state(json.dumps(FACTS).encode()) == (True, FACTS)
    assert aj.job_state(b"[1]")[1]["failed"] is True


def test_progress_line():
    line = aj.progress_line({"set_name": "big", "percent": 50.0, "bytes_done": 1 << 30, "bytes_total": 2 << 30,
                             "file": "databases/x.edb", "rate_bytes_per_s": 50 << 20, "eta_s": 3725,
                             "status": "in_progress"})
    assert line == "big: 50.0% (1.0 GiB of 2.0 GiB), databases/x.edb, 50.0 MiB/s, about 1h02m05s left"
    line = aj.progress_line({"set_name": "big", "status": "in_progress", "bytes_done": None})
    assert line.endswith("no progress recorded yet")


class Fake:
    def __init__(self, monkeypatch, poll, states):
        task = Task()
        task.args = dict(ARGS)
        task.async_val, task.poll = 600, poll
        task.action = "ese.backup.run"
        shell = type("Shell", (), {"tmpdir": "C:\\Windows\\TEMP\\ansible-tmp"})()
        self.plugin = ActionModule(task, type("Connection", (), {"_shell": shell})(), PlayContext(), loader=None,
                                   templar=None, shared_loader_obj=None)
        self.task, self.calls, self.states, self.lines = task, [], list(states), []

        def execute(module_name=None, module_args=None, task_vars=None, wrap_async=False, **kw):
            self.calls.append((module_name, module_args, wrap_async, task.async_val))
            if module_name == "ese.backup.info":
                entry = {"set_name": "big", "status": "in_progress", "bytes_done": 10 * len(self.calls),
                         "bytes_total": 100, "percent": 10.0, "file": "databases/x.edb", "rate_bytes_per_s": 1,
                         "eta_s": 9}
                return {"trace": [], "progress": [entry]}
            return dict(STARTED)

        monkeypatch.setattr(self.plugin, "_execute_module", execute)
        monkeypatch.setattr(self.plugin, "read_remote", lambda path: self.states.pop(0))
        monkeypatch.setattr(aj.time, "sleep", lambda s: None)
        monkeypatch.setattr(aj.display, "display", self.lines.append)


def test_poll_waits_reports_progress_and_applies_the_policy(monkeypatch):
    f = Fake(monkeypatch, 5, [b"", b"", json.dumps(FACTS).encode()])
    result = f.plugin.run(task_vars={"inventory_hostname": "dc01"})
    assert f.calls[0] == ("ese.backup.run", ARGS, True, 600)
    assert [c[0] for c in f.calls[1:]] == ["ese.backup.info", "ese.backup.info"]
    assert all(c[3] == 0 for c in f.calls[1:]), "info must not run as an async job"
    assert result["policy_row"] == "run.created" and result["changed"] is True and not result.get("failed")
    assert result["ansible_job_id"] == "j1" and result["finished"] is True
    assert [p["bytes_done"] for p in result["progress"]] == [20, 30]
    assert f.lines[0].startswith("dc01: ese.backup.run: big: 10.0%")
    assert f.task.async_val == 0  # Ansible does not poll the finished job again


def test_a_failed_job_fails_the_task(monkeypatch):
    failed = dict(FACTS, failed_call={"call": "JetReadFileInstance", "err": -1018, "detail": "x"}, ended="abort",
                  logs_truncated=False, backup_set=None, manifest=None, backup_valid=None)
    result = Fake(monkeypatch, 5, [json.dumps(failed).encode()]).plugin.run(task_vars={})
    assert result["failed"] is True and result["policy_row"] == "run.failed_started", result


def test_poll_0_returns_the_job(monkeypatch):
    f = Fake(monkeypatch, 0, [])
    result = f.plugin.run(task_vars={})
    assert result["ansible_job_id"] == "j1" and result["progress_dest"] == "D:\\backup" and "policy_row" not in result
    assert f.task.async_val == 600


def test_a_retry_of_the_task_runs_as_an_async_job_again(monkeypatch):
    """Ansible reuses the task object for retries (until/retries): the second attempt must not run synchronously
    because the first set async_val to 0 for Ansible."""
    f = Fake(monkeypatch, 5, [json.dumps(FACTS).encode(), json.dumps(FACTS).encode()])
    f.plugin.run(task_vars={})
    assert f.task.async_val == 0
    f.plugin.run(task_vars={})
    assert [c[2:] for c in f.calls if c[0] == "ese.backup.run"] == [(True, 600), (True, 600)]
    assert f.task.async_val == 0


def test_a_job_that_finishes_at_the_deadline_is_not_reported_timed_out(monkeypatch):
    f = Fake(monkeypatch, 5, [b"", json.dumps(FACTS).encode()])
    clock = iter([0.0, 1000.0, 1000.0, 1000.0])
    monkeypatch.setattr(aj.time, "time", lambda: next(clock))
    result = f.plugin.run(task_vars={})
    assert result["policy_row"] == "run.created" and not result.get("failed"), result
