# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ese.backup.backup_report_summary: the backup report as one line per host, for the play's output."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: backup_report_summary
short_description: The ese.backup report as one line per host
version_added: 0.1.0
description:
  - One line of text per host from the results of M(ese.backup.run) (C(ese_backup)) and M(ese.backup.verify) -
    its status, then the set, its size, log range and verification, or the JET error and the call that
    returned it.
  - Takes the same arguments as P(ese.backup.backup_report#filter); why this is a filter and not a callback
    plugin is said there.
positional: _input, hostvars, verify_results, prune_results
extends_documentation_fragment:
  - ese.backup.backup_report_inputs
"""

EXAMPLES = r"""
- name: Show the report
  ansible.builtin.debug:
    msg: "{{ groups['ese_hosts'] | ese.backup.backup_report_summary(hostvars, verified.results) }}"
# web01: ok - full set \\backup01\ese\web01\full-20261202T015308Z-WEB01-b4f3, 260.0 KiB, generations 2 - 2,
#   verified valid, 0 problems
# web03: failed - JET_errReadVerifyFailure (-1018) in JetReadFileInstance
"""

RETURN = r"""
_value:
  description: One line per host, in the order of the host names.
  type: list
  elements: str
"""

from ansible_collections.ese.backup.plugins.plugin_utils._backup_report import (
    host_entries, human_size, jet_text, retention_text, verification_text)


def _line(entry):
    if entry["status"] == "ok":
        parts = ["%s set %s" % (entry["type"] or "backup", entry["backup_set"])]
        if entry["size"] is not None:
            parts.append(human_size(entry["size"]))
        if entry["log_generations"]:
            parts.append("generations %s - %s" % tuple(entry["log_generations"]))
        parts.append("verified " + verification_text(entry) if entry["verified"] else verification_text(entry))
        if entry["retention"]:
            parts.append("retention: " + retention_text(entry))
        return "%s: ok - %s" % (entry["host"], ", ".join(parts))
    if entry["status"] == "failed":
        first = (entry["message"] or "").split("\n")[0]
        return "%s: failed - %s" % (entry["host"], jet_text(entry["jet_err"]) or first or "no message")
    return "%s: not run" % entry["host"]


def backup_report_summary(hosts, hostvars, verify_results=None, prune_results=None):
    return [_line(entry) for entry in host_entries(hosts, hostvars, verify_results, prune_results)]


class FilterModule:
    def filters(self):
        return {"backup_report_summary": backup_report_summary}
