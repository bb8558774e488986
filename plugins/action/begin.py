# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for ese.backup.begin.

An ESE instance lives only in the process that created it, so a session needs a process of its own
on the host. The begin module validates and prepares the session; this plugin then starts the
session host (ese.backup.session_host) with Ansible's async wrapper, which on Windows runs it outside
the WinRM shell's job object, waits for the host to report (at most ``start_timeout`` seconds), and
applies the begin policy table. When the host does not report, its own result (the async job's
results file, read through the connection as async_status reads it) says why.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import tempfile

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.ese.backup.plugins.plugin_utils._policy_action import EseModuleAction

HOST_MODULE = "ese.backup.session_host"
# The async wrapper ends its job after this long; the host ends itself at End or after idle_timeout.
HOST_LIFETIME = 7 * 24 * 3600
# How long the wait step waits for the host to report: a first run on Windows PowerShell 5.1 compiles the
# engine's C# in the new process, and JetInit may replay logs.
START_TIMEOUT = 60
START_TIMEOUT_MAX = 24 * 3600


def start_timeout_of(args):
    """``(seconds, None)`` or ``(None, invalid)`` for the task's ``start_timeout``."""
    value = args.get("start_timeout")
    if value is None or value == "":
        return START_TIMEOUT, None
    try:
        seconds = int(value)
        if isinstance(value, float) and value != seconds:
            raise ValueError()
    except (TypeError, ValueError):
        seconds = None
    if seconds is None or isinstance(value, bool) or not 1 <= seconds <= START_TIMEOUT_MAX:
        return None, {"option": "start_timeout",
                      "msg": "start_timeout %r must be a whole number of seconds from 1 to %d (default %d)"
                             % (value, START_TIMEOUT_MAX, START_TIMEOUT)}
    return seconds, None


def describe_host_result(own):
    """One sentence from the session host's own result (a dict), or ``None`` when it says nothing yet."""
    if not isinstance(own, dict) or not own:
        return None
    failed_call = own.get("failed_call")
    if isinstance(failed_call, dict) and failed_call.get("call"):
        return "%s returned %s: %s" % (failed_call.get("call"), failed_call.get("err"), failed_call.get("detail"))
    invalid = own.get("invalid")
    if isinstance(invalid, dict) and invalid.get("msg"):
        return "invalid value for option '%s': %s" % (invalid.get("option"), invalid.get("msg"))
    if own.get("msg"):
        text = to_text(own["msg"])
        exception = own.get("exception")
        if exception:
            lines = [line for line in to_text(exception).strip().splitlines() if line.strip()]
            if lines:
                text += " (%s)" % lines[-1].strip()
        return text
    if own.get("started") == 1 and own.get("started") is not True and not own.get("finished"):
        return "its async job has not finished (the host process may still be starting)"
    if own.get("started") is True:
        return "it reports the backup begun, but only after the wait gave up: end the session with mode abort"
    return None


class ActionModule(EseModuleAction):
    MODULE = "begin"

    def facts(self, module_name, task_vars):
        module_args = dict(self._task.args)
        timeout, invalid = start_timeout_of(module_args)
        module_args.pop("start_timeout", None)  # the action plugin's option, not the module's
        if invalid:
            return {"trace": [], "invalid": invalid, "failed_call": None, "check": None, "started": False}
        facts = self._execute_module(module_name=module_name, module_args=module_args, task_vars=task_vars)
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
        wait = {"mode": "wait", "session": launch["session"], "token": launch["token"], "timeout": timeout}
        result = self._execute_module(module_name=HOST_MODULE, module_args=wait, task_vars=task_vars)
        failed_call = result.get("failed_call")
        if isinstance(failed_call, dict) and failed_call.get("call") == "SessionHost":
            own = self.host_result(started.get("results_file"))
            why = describe_host_result(own)
            if why:
                failed_call["detail"] = "%s; the session host's own result: %s" % (failed_call.get("detail"), why)
            else:
                failed_call["detail"] = "%s; the session host left no result in %s (if it starts later, it ends " \
                                        "the backup with abort after idle_timeout)" % (failed_call.get("detail"),
                                                                                       started.get("results_file"))
            result["host_result"] = own
        return result

    def host_result(self, results_file):
        """The async job's results file (the session host's own module result), fetched through the connection;
        ``None`` when it is missing, empty or not JSON."""
        if not results_file:
            return None
        handle, local = tempfile.mkstemp(prefix="ese-backup-host-")
        os.close(handle)
        try:
            try:
                self._connection.fetch_file(results_file, local)
            except Exception:  # pylint: disable=broad-except  # a missing file is a normal answer here
                return None
            with open(local, "rb") as f:
                data = f.read()
            try:
                own = json.loads(to_text(data, errors="surrogate_or_strict")) if data.strip() else None
            except ValueError:
                return {"msg": "the results file is not JSON: %s" % to_text(data[:500], errors="replace")}
            return own if isinstance(own, dict) else None
        finally:
            os.remove(local)
