# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ese.backup.backup_report_junit: the backup report as JUnit XML, a test case per host and database."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: backup_report_junit
short_description: The ese.backup report as JUnit XML
version_added: 0.1.0
description:
  - Renders the results of M(ese.backup.run) (C(ese_backup)) and M(ese.backup.verify) as JUnit XML for CI
    dashboards - one C(testsuite) per host and one C(testcase) per host and database (C(classname) the host,
    C(name) the database path).
  - A database of a host whose backup failed has a C(failure) (type the JET error name, message the JET
    error and the call that returned it, text the task's message and the advice for that error); so has a
    database whose set the verification found invalid. A host that was not backed up has C(skipped) cases.
  - Takes the same arguments as P(ese.backup.backup_report#filter); why this is a filter and not a callback
    plugin is said there.
  - Characters that XML 1.0 cannot hold are replaced by U+FFFD; the rest is escaped.
positional: _input, hostvars, verify_results, prune_results
extends_documentation_fragment:
  - ese.backup.backup_report_inputs
"""

EXAMPLES = r"""
- name: Write the JUnit report
  ansible.builtin.copy:
    dest: /srv/reports/ese-backup.xml
    mode: "0600"
    content: "{{ groups['ese_hosts'] | ese.backup.backup_report_junit(hostvars, verified.results) }}"
"""

RETURN = r"""
_value:
  description: The JUnit XML document (C(testsuites) root), with an XML declaration.
  type: str
"""

import xml.etree.ElementTree as ET

from ansible_collections.ese.backup.plugins.plugin_utils._backup_report import (
    chain_text, clean_text, duration_text, host_entries, human_size, jet_text, log_range_text, retention_text,
    verification_text)


def _case_failure(entry):
    """``(type, message, text)`` of a failed case, or ``None``."""
    if entry["status"] == "failed":
        jet_err = entry["jet_err"]
        if jet_err:
            text = entry["message"]
            if entry["failed_call_detail"]:
                text += "\ncall: %s %s" % (jet_err.get("call"), entry["failed_call_detail"])
            if entry["advice"]:
                text += "\nadvice: %s" % entry["advice"]
            kind = jet_err.get("name") or "JET_err %s" % jet_err.get("code")
            return kind, "backup failed: %s" % jet_text(jet_err), text
        return "backup", "backup failed before the engine ran", entry["message"]
    if entry["verified"] and entry["verified"]["valid"] is False:
        lines = ["%s %s: %s" % (p.get("severity"), p.get("code"), p.get("detail")) for p in entry["problems"]]
        return "verification", "backup set invalid: %s" % verification_text(entry), "\n".join(lines)
    return None


def _props(case, entry):
    details = [("status", entry["status"]), ("set", entry["backup_set"] or "none published"), ("type", entry["type"]),
               ("size", "%s (%s bytes)" % (human_size(entry["size"]), entry["size"]) if entry["size"] is not None
                else None),
               ("log range", log_range_text(entry)), ("verification", verification_text(entry)),
               ("chain health", chain_text(entry)), ("duration", duration_text(entry)),
               ("retention", retention_text(entry) or "not configured")]
    out = ET.SubElement(case, "system-out")
    out.text = clean_text("\n".join("%s: %s" % (key, "unknown" if val is None else val) for key, val in details))


def backup_report_junit(hosts, hostvars, verify_results=None, prune_results=None):
    root = ET.Element("testsuites", name="ese.backup")
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for entry in host_entries(hosts, hostvars, verify_results, prune_results):
        suite = ET.SubElement(root, "testsuite", name=clean_text(entry["host"]))
        counts = {"tests": 0, "failures": 0, "skipped": 0}
        failure = _case_failure(entry)
        for database in entry["databases"] or ["(no database listed)"]:
            case = ET.SubElement(suite, "testcase", classname=clean_text(entry["host"]), name=clean_text(database))
            counts["tests"] += 1
            if failure:
                node = ET.SubElement(case, "failure", type=clean_text(failure[0]), message=clean_text(failure[1]))
                node.text = clean_text(failure[2])
                counts["failures"] += 1
            elif entry["status"] == "not run":
                ET.SubElement(case, "skipped", message="not run: no backup result for this host")
                counts["skipped"] += 1
            _props(case, entry)
        for key, val in counts.items():
            suite.set(key, str(val))
            totals[key] += val
        suite.set("errors", "0")
    for key, val in totals.items():
        root.set(key, str(val))
    root.set("errors", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


class FilterModule:
    def filters(self):
        return {"backup_report_junit": backup_report_junit}
