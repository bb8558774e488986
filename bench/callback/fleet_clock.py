# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bench-only callback (bench/fleet.py): the CPU time of ansible-playbook at each play's start and at the end."""
from __future__ import annotations

DOCUMENTATION = r"""
name: fleet_clock
type: aggregate
short_description: CPU time of the controller at each play's start and at the end
description:
  - Appends one JSON line to $FLEET_CLOCK_FILE at each play's start and at the end of the run, with the wall
    time and the user + system CPU seconds of ansible-playbook itself and of the processes it waited for (its
    forks, and theirs). The forks of the play before are waited for first, so that their time counts there.
"""

import json
import multiprocessing
import os
import resource
import time

from ansible.plugins.callback import CallbackBase


def _cpu(who):
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "fleet_clock"
    CALLBACK_NEEDS_ENABLED = False

    def _mark(self, event, name):
        path = os.environ.get("FLEET_CLOCK_FILE")
        if not path:
            return
        deadline = time.time() + 30
        while multiprocessing.active_children() and time.time() < deadline:  # reaps the forks that ended
            time.sleep(0.01)
        line = {"event": event, "name": name, "time": time.time(),
                "self_cpu": _cpu(resource.RUSAGE_SELF), "children_cpu": _cpu(resource.RUSAGE_CHILDREN)}
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")

    def v2_playbook_on_play_start(self, play):
        self._mark("play", play.get_name())

    def v2_playbook_on_stats(self, stats):
        self._mark("end", None)
