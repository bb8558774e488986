# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ese.backup.backup_report: one line of facts per host from registered backup and verify results."""
from __future__ import annotations

DOCUMENTATION = r"""
name: backup_report
short_description: Summarise ese.backup results per host
description:
  - Builds one report entry per host from the registered results of M(ese.backup.run) (C(ese_backup))
    and, optionally, the looped results of M(ese.backup.verify) keyed by host name.
positional: _input, hostvars, verify_results
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
"""

EXAMPLES = r"""
- name: Report
  ansible.builtin.debug:
    msg: "{{ groups['ese_hosts'] | ese.backup.backup_report(hostvars, verified.results) }}"
"""

RETURN = r"""
_value:
  description: One entry per host with C(host), C(status) (ok, failed, not run; failed also when a task
    before the backup failed and the play kept its message in C(ese_backup_failure)), C(backup_set),
    C(type), C(log_generations), C(jet_err), C(message) and C(verified) (true, false or null).
  type: list
  elements: dict
"""


def backup_report(hosts, hostvars, verify_results=None):
    verified = {}
    for res in verify_results or []:
        if not res.get("skipped"):
            verified[res.get("item")] = {"valid": res.get("valid"),
                                         "problems": len(res.get("problems") or [])}
    report = []
    for host in hosts:
        facts = hostvars[host]
        backup = dict(facts.get("ese_backup") or {})
        manifest = backup.get("manifest") or {}
        logs = manifest.get("logs") or {}
        # A task before the backup (reading the headers, reaching the host) failed: the play's rescue
        # keeps its message in ese_backup_failure.
        failure = facts.get("ese_backup_failure")
        if backup.get("failed") or (not backup and failure):
            status = "failed"
        elif not backup:
            status = "not run"
        else:
            status = "ok"
        report.append({
            "host": host,
            "status": status,
            "backup_set": backup.get("backup_set"),
            "type": manifest.get("type"),
            "log_generations": [logs["gen_low"], logs["gen_high"]] if logs else None,
            "jet_err": backup.get("jet_err"),
            "message": backup.get("msg") or failure or "",
            "verified": verified.get(host),
        })
    return report


class FilterModule:
    def filters(self):
        return {"backup_report": backup_report}
