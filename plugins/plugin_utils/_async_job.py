# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible's async for the long-running modules (run, copy), with their policy and their progress.

``async: N`` with ``poll: 0`` starts the module as an async job and returns the job (``ansible_job_id``);
``ese.backup.info`` with ``progress: <dest>`` reports the copy while it runs (docs/progress.md). With
``poll: M`` the action plugin waits for the job itself: every M seconds it reports the copy's progress (the
``progress.json`` that the engine keeps in the staging folder under ``dest``, read through
``ese.backup.info``), and once the job has finished it applies the module's policy table to the engine facts,
which Ansible's own polling (``async_status``) would return without it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import tempfile
import time

from ansible.module_utils.common.text.converters import to_text
from ansible.utils.display import Display

from ansible_collections.ese.backup.plugins.plugin_utils._policy_action import EseModuleAction

display = Display()

# At most this many progress samples are kept in the task result.
MAX_SAMPLES = 1000


def job_state(data):
    """(finished, result) of an async job's results file content (bytes): not finished while it is empty, not
    JSON yet (being written), or the wrapper's own start record ({"started": 1, "finished": 0})."""
    if not data or not data.strip():
        return False, None
    try:
        result = json.loads(to_text(data, errors="surrogate_or_strict"))
    except ValueError:
        return False, None
    if not isinstance(result, dict):
        return True, {"failed": True, "msg": "the async job's results file is not a JSON object"}
    if "finished" in result and not result.get("finished") and "trace" not in result:
        return False, None
    return True, result


def size_text(n):
    value = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024
    return "%d B" % n


def progress_line(entry):
    """One line for a copy in flight: percent, bytes, file, rate and the time left."""
    if entry.get("bytes_done") is None:
        return "%s: %s, no progress recorded yet" % (entry.get("set_name"), entry.get("status"))
    eta = entry.get("eta_s")
    left = "" if eta is None else ", about %dh%02dm%02ds left" % (eta // 3600, eta % 3600 // 60, eta % 60)
    return "%s: %s%% (%s of %s), %s, %s/s%s" % (
        entry.get("set_name"), entry.get("percent"), size_text(entry.get("bytes_done")),
        size_text(entry.get("bytes_total")), entry.get("file") or "-", size_text(entry.get("rate_bytes_per_s")), left)


class AsyncPolicyAction(EseModuleAction):
    """An ``EseModuleAction`` whose module may run as an async job (``async``/``poll``)."""

    _supports_async = True

    def async_val(self):
        """The task's ``async``, also after ``finish`` set it to 0 for Ansible (a retry reuses the task)."""
        return getattr(self._task, "_ese_async_val", None) or self._task.async_val

    def facts(self, module_name, task_vars):
        if not self.async_val():
            return super(AsyncPolicyAction, self).facts(module_name, task_vars)
        self._task.async_val = self.async_val()
        started = self._execute_module(module_name=module_name, module_args=self._task.args, task_vars=task_vars,
                                       wrap_async=True)
        if started.get("failed") or not started.get("ansible_job_id"):
            return started
        if not self._task.poll:
            started["progress_dest"] = self._task.args.get("dest")
            return started
        return self.wait(started, task_vars)

    def finish(self, module_name, module_result, check_mode):
        job = module_result.pop("_ese_job", None)
        if job is None and module_result.get("ansible_job_id") and "trace" not in module_result:
            return module_result  # poll: 0, the job runs on: Ansible's async start result
        result = super(AsyncPolicyAction, self).finish(module_name, module_result, check_mode)
        if job is not None:
            result.update(job)
            # The job was waited for and its result decided here: Ansible must not poll it again (it would
            # replace this result with the bare module facts). The value is kept for a retry of the task.
            self._task._ese_async_val = self.async_val()
            self._task.async_val = 0
        return result

    def wait(self, started, task_vars):
        """Waits for the job, reporting progress every ``poll`` seconds; returns its facts."""
        jid, results_file = started["ansible_job_id"], started.get("results_file")
        dest, set_name = self._task.args.get("dest"), self._task.args.get("set_name")
        host = task_vars.get("inventory_hostname", "") if task_vars else ""
        samples = []
        deadline = time.time() + self._task.async_val
        while True:
            time.sleep(self._task.poll)
            finished, facts = job_state(self.read_remote(results_file))
            if finished:
                break
            if time.time() >= deadline:
                finished, facts = job_state(self.read_remote(results_file))   # one last look
                if finished:
                    break
                facts = {"failed": True,
                         "msg": "async task did not complete within the requested time - %ss" % self._task.async_val}
                break
            for entry in self.in_flight(dest, set_name, task_vars):
                samples.append(entry)
                display.display("%s: ese.backup.%s: %s" % (host, self.MODULE, progress_line(entry)))
        facts = dict(facts)
        facts["_ese_job"] = {"ansible_job_id": jid, "results_file": results_file, "finished": True,
                             "progress": samples[-MAX_SAMPLES:]}
        return facts

    def in_flight(self, dest, set_name, task_vars):
        """The copies writing into dest (of set_name when it is given), from ese.backup.info."""
        if not dest:
            return []
        # A PowerShell module runs as an async job whenever the task's async_val is set: info must not.
        async_val, self._task.async_val = self._task.async_val, 0
        try:
            info = self._execute_module(module_name="ese.backup.info", module_args={"progress": dest},
                                        task_vars=task_vars)
        finally:
            self._task.async_val = async_val
        entries = [e for e in info.get("progress") or [] if isinstance(e, dict) and e.get("status") == "in_progress"]
        if set_name:
            entries = [e for e in entries if e.get("set_name") == set_name]
        return entries

    def read_remote(self, path):
        """The content of a file on the host (b"" when it is missing), fetched through the connection."""
        if not path:
            return b""
        handle, local = tempfile.mkstemp(prefix="ese-backup-job-")
        os.close(handle)
        try:
            try:
                self._connection.fetch_file(path, local)
            except Exception:  # pylint: disable=broad-except  # not there yet is a normal answer here
                return b""
            with open(local, "rb") as f:
                return f.read()
        finally:
            os.remove(local)
