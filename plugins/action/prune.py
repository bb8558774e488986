# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for ese.backup.prune.

On a host whose shell is not PowerShell (the controller with ``delegate_to: localhost``, a Linux backup
server) it runs the Python module, which reads, plans and removes where the sets are. On a Windows host
(PowerShell) the sets are on the host's own disk: the engine reads them (``ese.backup.prune_host`` in mode
``scan``, and ``verify`` chain by chain as the planner asks), the same planner decides here on the controller
(``module_utils/ese_format/prune_plan.py`` and ``retention.py``), and, unless in check mode, the engine removes
the planned sets in the planned order, each only while its manifest.json is the one scanned (docs/prune.md).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.ese.backup.plugins.module_utils.ese_format import prune_plan as pp

MODULE = "ese.backup.prune"
HOST_MODULE = "ese.backup.prune_host"
HOST_FORMAT = "ese.backup/prune-host/1"
WINDOWS_VERIFY = ("ending", "files")


def windows_spec():
    """The module's options, ``path`` as the host's path (not expanded on the controller)."""
    spec = copy.deepcopy(pp.ARGUMENT_SPEC)
    spec["path"]["type"] = "str"
    spec["paths"]["elements"] = "str"
    return spec


def host_failure(mode, res):
    """A task failure for a prune_host result that holds no engine facts, or names an invalid option."""
    if isinstance(res, dict) and res.get("format") == HOST_FORMAT and not res.get("failed"):
        inv = res.get("invalid")
        if inv:
            return inv.get("msg") or "%s: invalid" % inv.get("option")
        return None
    msg = (res or {}).get("msg") or "no message"
    return "%s (mode %s) returned no engine facts: %s" % (HOST_MODULE, mode, msg)


class ActionModule(ActionBase):
    MODULE = "prune"
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def is_windows(self):
        shell = getattr(self._connection, "_shell", None)
        return getattr(shell, "SHELL_FAMILY", None) == "powershell"

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        if not self.is_windows():
            result.update(self._execute_module(module_name=MODULE, module_args=self._task.args, task_vars=task_vars))
            return result
        result.update(self.run_windows(task_vars, now=datetime.datetime.now(datetime.timezone.utc)))
        return result

    def host(self, mode, args, task_vars):
        res = self._execute_module(module_name=HOST_MODULE, module_args=dict(args, mode=mode), task_vars=task_vars)
        why = host_failure(mode, res)
        if why:
            raise pp.PruneError(why)
        return res

    def run_windows(self, task_vars, now):
        """Plan with the engine's scan, remove with the engine (not in check mode); the task result."""
        try:
            return self._run_windows(task_vars, now)
        except pp.PruneError as e:
            res = dict(e.result)
            res.pop("diff", None)
            res.update(failed=True, msg=str(e), changed=bool(res.get("removed")))
            return res

    def _run_windows(self, task_vars, now):
        try:
            unused, params = self.validate_argument_spec(argument_spec=windows_spec())
        except AnsibleActionFail as e:
            raise pp.PruneError(str(e))
        del unused
        if params.get("paths") is not None or params.get("names") is not None:
            raise pp.PruneError("paths: on a Windows host prune takes one folder of sets (path) per task; paths and "
                                "names are for the backup server's folders")
        root = params.get("path")
        if not isinstance(root, str) or not root.strip():
            raise pp.PruneError("path: must name the folder of backup sets; it is empty")
        if params.get("verify") == "checksums":
            raise pp.PruneError("verify: checksums is not available for sets on a Windows host (the engine checks "
                                "files by size and SHA-256); use files or ending, or prune a copy on the controller")
        verify, older, counts = pp.options(params, WINDOWS_VERIFY)
        scan = self.host("scan", {"path": root}, task_vars)
        records = [pp.record_from_scan(e) for e in scan.get("sets") or []]

        def verify_chain(names):
            got = self.host("verify", {"path": root, "sets": names}, task_vars)
            return dict((v["name"], bool(v.get("verified"))) for v in got.get("verified") or [])
        pp.verify_lazily(records, verify, counts["min_verified"], verify_chain)
        facts = [dict(e, quiet=e.get("quiet_seconds") or 0.0, judged_why=e.get("why"))
                 for e in scan.get("staging") or []]
        staging, sprobs = pp.staging_decisions(facts, older)
        result = pp.result(scan.get("path") or root, records, now, counts, verify, staging, sprobs)
        if not self._task.diff:
            result.pop("diff")
        warnings = ["%s kept: %s" % (h["name"], "; ".join(h["rules"])) for h in result["held"]]
        if warnings:
            result["warnings"] = warnings      # shown by Ansible, as a module's warnings are
        if self._task.check_mode:
            return result
        sha = dict((r["name"], r.get("manifest_sha256")) for r in records)
        planned = result["removed"]
        gone = [s for s in staging if s["action"] == "remove"]
        if not planned and not gone:
            return result
        done = self.host("remove", {
            "path": root, "partial_older_than_hours": params["partial_older_than_hours"],
            "sets": [{"name": x["name"], "manifest_sha256": sha[x["name"]]} for x in planned],
            "staging": [{"name": s["name"], "kind": s["kind"]} for s in gone]}, task_vars)
        return self.applied(result, planned, staging, done)

    @staticmethod
    def applied(result, planned, staging, done):
        """The result once the engine removed what it could (``done``: Prune.Remove's facts)."""
        removed_names = list(done.get("removed") or [])
        removed = [x for x in planned if x["name"] in removed_names]
        result["removed"] = removed
        result["problems"].extend(done.get("problems") or [])
        by_name = dict((s["name"], s) for s in done.get("staging") or [])
        freed = sum(x["bytes"] for x in removed)
        for s in staging:
            if s["action"] != "remove":
                continue
            got = by_name.get(s["name"])
            if got and got.get("removed"):
                freed += s["bytes"]
            else:
                s["action"] = "keep"
                s["why"] = "not removed: %s" % ((got or {}).get("why") or "the engine did not remove it")
        result["bytes_freed"] = freed
        result["changed"] = bool(removed or any(s["action"] == "remove" for s in staging))
        if done.get("stopped"):
            failed = planned[len(removed)]["name"] if len(removed) < len(planned) else "?"
            why = [p["detail"] for p in done.get("problems") or [] if p.get("file") == failed] or [done["stopped"]]
            raise pp.PruneError("%s: not removed (%s); %d set(s) removed before it, none left without the sets it "
                                "depends on" % (failed, why[0], len(removed)), result)
        return result
