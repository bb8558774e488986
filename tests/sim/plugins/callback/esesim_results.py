# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Test-only callback: records every task result as one JSON line in $ESESIM_RESULTS.
from __future__ import annotations

DOCUMENTATION = r"""
name: esesim_results
type: aggregate
short_description: Records task results for the simulated-host tests
description: Appends one JSON object per task result (host, task, status, result) to $ESESIM_RESULTS.
"""

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "esesim_results"
    CALLBACK_NEEDS_ENABLED = False

    def _record(self, result, status):
        path = os.environ.get("ESESIM_RESULTS")
        if not path:
            return
        task = getattr(result, "task_name", None) or result._task.get_name()
        host = getattr(result, "host", None) or result._host
        data = getattr(result, "result", None)
        if data is None:
            data = result._result
        line = {"host": host.get_name(), "task": task, "status": status,
                "result": json.loads(json.dumps(dict(data), default=str))}
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")

    def v2_runner_on_ok(self, result, **kwargs):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False, **kwargs):
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result, **kwargs):
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result, **kwargs):
        self._record(result, "unreachable")
