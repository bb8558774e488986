# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inputs every report filter takes (backup_report, backup_report_html, backup_report_junit,
backup_report_summary): the hosts, their registered results, the verify results and the prune results."""

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
    description:
      - The registered result of one M(ese.backup.verify) task over every host's folder (its C(results) are
        keyed by C(name)), or the C(results) list of a verify task looped over host names (keyed by C(item)).
    type: raw
    default: []
  prune_results:
    description:
      - What M(ese.backup.prune) did to each host's folder - the registered result (or its C(results)) of one
        prune task over every host's folder (O(ese.backup.prune#module:paths) with
        O(ese.backup.prune#module:names), keyed by C(name)) or of a prune task looped over host names (keyed by
        C(item)), or a mapping of host name to prune result. Without it, retention shows as not configured.
    type: raw
    default: []
'''
