# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for ese.backup.restore: runs the module, then applies the restore policy table.

A set taken with ``source: adcs`` is restored by registering the restore with the stopped CA (certadm.dll); the
task result then carries ``registration`` (what was registered, whether it was completed, and what happens
next), and the message says that the CA replays the logs at its next start.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ese.backup.plugins.plugin_utils._policy_action import EseModuleAction


class ActionModule(EseModuleAction):
    MODULE = "restore"

    def finish(self, module_name, module_result, check_mode):
        result = super(ActionModule, self).finish(module_name, module_result, check_mode)
        reg = module_result.get("registration")
        if not isinstance(reg, dict) or "msg" not in result:
            return result
        result["registration"] = reg
        if reg.get("completed") and reg.get("status") == "0x00000000" and not result.get("failed"):
            paths = ", ".join(str(d.get("path")) for d in module_result.get("restored") or [])
            sets = len(module_result.get("chain") or [])
            what = "registered the restore of %s from %d set(s) with the CA on %s" % (paths, sets, reg.get("server"))
            logs = "log generations %s-%s" % (reg.get("gen_low"), reg.get("gen_high"))
            result["msg"] = "%s (%s): %s" % (what, logs, reg.get("next"))
        elif reg.get("registered") and result.get("failed"):
            result["msg"] = "%s; %s" % (result["msg"], reg.get("next"))
        return result
