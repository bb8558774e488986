# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ese.backup.backup_report: one line of facts per host from registered backup and verify results."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: backup_report
short_description: Summarise ese.backup results per host
version_added: 0.1.0
description:
  - Builds one report entry per host from the registered results of M(ese.backup.run) (C(ese_backup))
    and, optionally, the C(results) of M(ese.backup.verify), either of one task over every host's folder
    (O(ese.backup.verify#module:paths) with O(ese.backup.verify#module:names), or
    O(ese.backup.verify#module:subfolders)), keyed by their C(name), or of a task looped over the hosts, keyed
    by C(item).
  - The JSON report of C(playbooks/backup.yml). The same results give a JUnit XML report
    (P(ese.backup.backup_report_junit#filter)), an HTML page (P(ese.backup.backup_report_html#filter)) and a
    line per host (P(ese.backup.backup_report_summary#filter)).
  - The reports are filters rather than a callback plugin. They are built from the results the play
    registered (C(hostvars) and the verify task's C(results)), so they hold exactly what the play saw. They
    need no callback to be enabled (C(callbacks_enabled) in C(ansible.cfg) or the environment) and run
    wherever the play runs - AWX and automation controller replace the stdout callback with their own, and a
    callback would write its file on the controller (there, a job's short-lived execution environment).
    The reports are written by ordinary M(ansible.builtin.copy) tasks of the backup server's play, onto the
    backup server, with the mode those tasks set.
positional: _input, hostvars, verify_results, prune_results
extends_documentation_fragment:
  - ese.backup.backup_report_inputs
"""

EXAMPLES = r"""
- name: Report
  ansible.builtin.debug:
    msg: "{{ groups['ese_hosts'] | ese.backup.backup_report(hostvars, verified.results) }}"

- name: Report with what the retention policy did (a prune task looped over the hosts, registered as pruned)
  ansible.builtin.debug:
    msg: "{{ groups['ese_hosts'] | ese.backup.backup_report(hostvars, verified, pruned) }}"
"""

RETURN = r"""
_value:
  description: One entry per host with C(host), C(status) (ok, failed, not run; failed also when a task
    before the backup failed and the play kept its message in C(ese_backup_failure)), C(backup_set),
    C(type), C(log_generations), C(jet_err), C(message) and C(verified) (true, false or null). The JSON keeps
    these keys only; the duration and the retention (O(prune_results)) show in the HTML, JUnit and summary
    reports.
  type: list
  elements: dict
"""

from ansible_collections.ese.backup.plugins.plugin_utils._backup_report import host_entries

KEYS = ("host", "status", "backup_set", "type", "log_generations", "jet_err", "message", "verified")


def backup_report(hosts, hostvars, verify_results=None, prune_results=None):
    return [dict((key, entry[key]) for key in KEYS) for entry in host_entries(hosts, hostvars, verify_results, prune_results)]


class FilterModule:
    def filters(self):
        return {"backup_report": backup_report}
