# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An action plugin instance with a mocked connection and task, as ansible.windows' win_updates tests do."""
import pytest

from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task


class FakeShell:
    tmpdir = "C:\\Windows\\TEMP\\ansible-tmp"


class FakeConnection:
    _shell = FakeShell()


def make_action(cls, args, check_mode=False):
    task = Task()
    task.args = dict(args)
    task.check_mode = check_mode
    task.action = "ese.backup.%s" % cls.MODULE
    return cls(task, FakeConnection(), PlayContext(), loader=None, templar=None, shared_loader_obj=None)


@pytest.fixture
def action_factory(monkeypatch):
    """make(cls, args, module_result, check_mode) -> (plugin, calls); _execute_module returns module_result."""
    def make(cls, args, module_result, check_mode=False):
        plugin = make_action(cls, args, check_mode)
        calls = []

        def fake_execute_module(module_name=None, module_args=None, task_vars=None, **kwargs):
            calls.append({"module_name": module_name, "module_args": module_args, "task_vars": task_vars})
            return dict(module_result)

        monkeypatch.setattr(plugin, "_execute_module", fake_execute_module)
        return plugin, calls
    return make
