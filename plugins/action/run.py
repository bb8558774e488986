# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for ese.backup.run: runs the module, then applies the run policy table."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ese.backup.plugins.plugin_utils._async_job import AsyncPolicyAction


class ActionModule(AsyncPolicyAction):
    MODULE = "run"
