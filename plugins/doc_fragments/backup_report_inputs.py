# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inputs every report filter takes (backup_report, backup_report_html, backup_report_junit,
backup_report_summary): the hosts, their registered results and the verify results."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options:
  _input:
    description: Host names.
    type: list
    elements: str
    required: true
  hostvars:
    description: The C(hostvars) magic variable.
    type: dict
    required: true
  verify_results:
    description: The C(results) list of a M(ese.backup.verify) task looped over host names.
    type: list
    elements: dict
    default: []
'''
