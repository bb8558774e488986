# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for ese.backup.info: runs the module and passes its read-only facts
through; an invalid option or a failed JET call fails the task."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ese.backup.plugins.plugin_utils._policy_action import EseModuleAction


class ActionModule(EseModuleAction):
    MODULE = "info"
