# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for ese.backup.begin.

An ESE instance lives only in the process that created it, so a session needs a process of its own
on the host. The begin module validates and prepares the session; this plugin then starts the
session host (ese.backup.session_host) with Ansible's async wrapper, which on Windows runs it outside
the WinRM shell's job object, waits for the host to report, and applies the begin policy table.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ese.backup.plugins.plugin_utils._policy_action import EseModuleAction

HOST_MODULE = "ese.backup.session_host"
# The async wrapper ends its job after this long; the host ends itself at End or after idle_timeout.
HOST_LIFETIME = 7 * 24 * 3600


class ActionModule(EseModuleAction):
    MODULE = "begin"

    def facts(self, module_name, task_vars):
        facts = super(ActionModule, self).facts(module_name, task_vars)
        launch = facts.pop("launch", None)
        if not launch or "trace" not in facts:
            return facts
        serve = {"mode": "serve", "session": launch["session"], "serve_file": launch["serve_file"]}
        async_val = self._task.async_val
        self._task.async_val = HOST_LIFETIME
        try:
            started = self._execute_module(module_name=HOST_MODULE, module_args=serve, task_vars=task_vars,
                                           wrap_async=True)
        finally:
            self._task.async_val = async_val
        if started.get("failed") or not started.get("ansible_job_id"):
            return started
        wait = {"mode": "wait", "session": launch["session"], "token": launch["token"]}
        return self._execute_module(module_name=HOST_MODULE, module_args=wait, task_vars=task_vars)
