# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared base for the collection's action plugins.

An action plugin runs its Windows module (``ese.backup.<name>``), which returns the engine's facts,
and owns the task result: the JET_err -> changed/failed/msg policy (``plugin_utils/_jet_policy.py``)
or a plain pass-through.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action import ActionBase

from ansible_collections.ese.backup.plugins.plugin_utils._jet_policy import POLICIES, apply

# Keys of a module result that the action plugin always carries over when present (windows_only_skipped:
# the Windows-only steps the module skipped because the host is not Windows).
CARRIED = ("invocation", "deprecations", "windows_only_skipped")
# A module result carries engine facts when it has this key (every engine result has a trace).
FACTS_KEY = "trace"


def module_failure(module_name, module_result):
    """The task result for a module that returned no engine facts (argument error, crash, skip)."""
    result = dict(module_result)
    if result.get("skipped"):
        return result
    result["changed"] = bool(result.get("changed", False))
    result["failed"] = True
    msg = result.get("msg") or "no message"
    if isinstance(result.get("rc"), int) and result["rc"] != 0 and not (result.get("module_stdout") or "").strip():
        # The module process ended without writing a result: killed, or stopped by its host.
        msg = "the module process exited with rc %d and no output (%s)" % (result["rc"], msg)
    if module_result.get("failed") or result.get("exception"):
        result["msg"] = "%s failed before the engine returned its facts: %s" % (module_name, msg)
    else:
        result["msg"] = "%s returned no engine facts (%s); the module and the controller may be from different " \
                        "versions of ese.backup" % (module_name, msg)
    return result


def policy_result(module, module_result, check_mode):
    """Apply ``module``'s policy table to a module result (dict of engine facts)."""
    policy = POLICIES[module]
    outcome = apply(module, module_result, check_mode)
    if policy.keys is None:
        result = dict((key, val) for key, val in module_result.items() if key not in ("failed_call", "changed"))
    else:
        result = dict((key, module_result[key]) for key in policy.keys + CARRIED if key in module_result)
    warnings = list(module_result.get("warnings") or []) + outcome.pop("warnings", [])
    if warnings:
        result["warnings"] = warnings
    result.update(outcome)
    return result


class EseModuleAction(ActionBase):
    """Run ``ese.backup.<MODULE>`` and turn its facts into the task result.

    Subclasses set ``MODULE``, a key of ``jet_policy.POLICIES``; its table decides the result (a table
    whose ``keys`` is ``None`` passes every fact through, as the read-only info module does).
    """

    MODULE = None
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super(EseModuleAction, self).run(tmp, task_vars)
        del tmp
        module_name = "ese.backup.%s" % self.MODULE
        result.update(self.finish(module_name, self.facts(module_name, task_vars), bool(self._task.check_mode)))
        return result

    def facts(self, module_name, task_vars):
        """The module's result: its engine facts (a subclass may run more than one module)."""
        return self._execute_module(module_name=module_name, module_args=self._task.args, task_vars=task_vars)

    def finish(self, module_name, module_result, check_mode):
        """The task result for ``module_result`` (separate from ``run`` for the unit tests)."""
        if FACTS_KEY not in module_result or module_result.get("skipped"):
            return module_failure(module_name, module_result)
        return policy_result(self.MODULE, module_result, check_mode)
