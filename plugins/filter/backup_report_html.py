# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ese.backup.backup_report_html: the backup report as one self-contained HTML page."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: backup_report_html
short_description: The ese.backup report as a self-contained HTML page
version_added: 0.1.0
description:
  - Renders the results of M(ese.backup.run) (C(ese_backup)) and M(ese.backup.verify) as one HTML page for
    people - no network, no external assets, no JavaScript; the style sheet and the chart (SVG) are inline,
    and the page's Content-Security-Policy forbids loading anything.
  - A table per host - status, type, set, size (the sum of the set manifest's C(files[].size)), duration,
    log range, verification, chain health, retention; the failures with their JET error (code and name), the
    call that returned it, the advice for that error and the task's message; a chart of the set size per host.
  - Duration is the engine's (C(duration_s) of M(ese.backup.run)), C(not recorded) when the result has none.
    Retention is what M(ese.backup.prune) did to the host's folder (sets kept, removed and held, bytes freed),
    C(not configured) when no prune results are given. Chain health comes from the verify result
    (valid, problem count, chains and whether each is continuous) and is C(unknown) without one.
  - Everything that comes from hosts (names, paths, messages) is HTML-escaped.
  - Takes the same arguments as P(ese.backup.backup_report#filter); why this is a filter and not a callback
    plugin is said there.
positional: _input, hostvars, verify_results, prune_results
extends_documentation_fragment:
  - ese.backup.backup_report_inputs
"""

EXAMPLES = r"""
- name: Write the HTML report
  ansible.builtin.copy:
    dest: /srv/reports/ese-backup.html
    mode: "0600"
    content: "{{ groups['ese_hosts'] | ese.backup.backup_report_html(hostvars, verified.results) }}"
"""

RETURN = r"""
_value:
  description: The HTML document. Each host's section has the class C(host) and C(status-ok), C(status-failed)
    or C(status-not-run), and the attribute C(data-host); the chart has one C(rect) of class C(bar) per host.
  type: str
"""

import html

from ansible_collections.ese.backup.plugins.plugin_utils._backup_report import (
    chain_text, clean_text, duration_text, host_entries, human_size, jet_text, log_range_text, retention_text,
    verification_text)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:72em;color:#1d2430;
padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
.summary{color:#444}
table{border-collapse:collapse;width:100%;margin:.4em 0 1em}
th,td{border:1px solid #d0d7de;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f5f7;width:11em;font-weight:600}
td{word-break:break-all}
.badge{display:inline-block;border-radius:.8em;padding:0 .7em;font-size:.8em;color:#fff;vertical-align:middle}
.status-ok .badge{background:#1a7f37}.status-failed .badge{background:#cf222e}.status-not-run .badge{background:#6e7781}
section.host{border-left:.4em solid #6e7781;padding-left:.8em;margin-bottom:1.2em}
section.host.status-ok{border-color:#1a7f37}section.host.status-failed{border-color:#cf222e}
.failure{background:#fff5f5;border:1px solid #f5c2c7;border-radius:.3em;padding:.4em .9em;margin:.6em 0}
.unknown{color:#6e7781;font-style:italic}
svg text{font:12px system-ui,sans-serif;fill:#1d2430}
svg .bar.status-ok{fill:#2f81f7}svg .bar.status-failed{fill:#cf222e}svg .bar.status-not-run{fill:#afb8c1}
"""


def _e(value):
    return html.escape(clean_text(value), quote=True)


def _cell(value, missing="unknown"):
    if value is None or value == "":
        return '<span class="unknown">%s</span>' % _e(missing)
    return _e(value)


def _slug(status):
    return "status-" + status.replace(" ", "-")


def _size_text(entry):
    if entry["size"] is None:
        return None
    return "%s (%d bytes in %d files)" % (human_size(entry["size"]), entry["size"], entry["file_count"])


def _host_section(index, entry):
    rows = [
        ("Status", _cell(entry["status"])),
        ("Type", _cell(entry["type"], "none (no backup set)" if entry["backup_set"] is None else "unknown")),
        ("Set", _cell(entry["backup_set"], "none published")),
        ("Created", _cell(entry["created"])),
        ("Databases", "<br>".join(_e(d) for d in entry["databases"]) or _cell(None)),
        ("Size", _cell(_size_text(entry), "none (no backup set)" if entry["backup_set"] is None else "unknown")),
        ("Duration", _cell(duration_text(entry), "not recorded")),
        ("Log range", _cell(log_range_text(entry))),
        ("Verification", _cell(verification_text(entry))),
        ("Chain health", _cell(chain_text(entry))),
        ("Retention", _cell(retention_text(entry), "not configured")),
        ("Message", _cell(entry["message"], "none")),
    ]
    body = "\n".join('<tr><th scope="row">%s</th><td class="%s">%s</td></tr>' % (
        name, name.lower().replace(" ", "-"), value) for name, value in rows)
    return ('<section class="host %s" id="host-%d" data-host="%s">\n<h3>%s <span class="badge">%s</span></h3>\n'
            '<table>\n%s\n</table>\n</section>' % (_slug(entry["status"]), index, _e(entry["host"]),
                                                   _e(entry["host"]), _e(entry["status"]), body))


def _failure(index, entry):
    jet_err = entry["jet_err"]
    rows = []
    if jet_err:
        name = jet_err.get("name") or "unknown JET error"
        rows.append(("JET error", "%s (%s)" % (_e(name), _e(jet_err.get("code")))))
        call = _e(jet_err.get("call"))
        if entry["failed_call_detail"]:
            call += " <code>%s</code>" % _e(entry["failed_call_detail"])
        rows.append(("Call", call))
        rows.append(("Advice", _cell(entry["advice"])))
        rows.append(("Ended", _cell(entry["ended"])))
    else:
        rows.append(("JET error", _cell(None, "none: the task failed before the engine ran")))
    rows.append(("Message", _cell(entry["message"], "none")))
    body = "\n".join('<tr><th scope="row">%s</th><td>%s</td></tr>' % row for row in rows)
    return ('<div class="failure" data-host="%s">\n<h3><a href="#host-%d">%s</a>: %s</h3>\n<table>\n%s\n</table>\n'
            '</div>' % (_e(entry["host"]), index, _e(entry["host"]),
                        _e(jet_text(jet_err) or "failed before the backup"), body))


def _chart(entries):
    """Horizontal bars of the set size per host; a host without a set gets a thin bar of its status colour."""
    label_w, bar_w, row_h, top = 160, 560, 28, 30
    width, height = label_w + bar_w + 200, top + row_h * len(entries) + 10
    largest = max([e["size"] for e in entries if e["size"]] or [1])
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="%d" height="%d" '
             'viewBox="0 0 %d %d" aria-label="Set size per host">' % (width, height, width, height),
             '<title>Set size per host</title>',
             '<text x="0" y="16">Set size per host%s</text>' % (
                 ", with the backup's duration" if any(e["duration"] is not None for e in entries)
                 else " (duration: not recorded by ese.backup.run)")]
    for i, entry in enumerate(entries):
        y = top + i * row_h
        length = max(3, int(round(bar_w * entry["size"] / float(largest)))) if entry["size"] else 3
        value = human_size(entry["size"]) if entry["size"] is not None else "no set (%s)" % entry["status"]
        if entry["duration"] is not None:
            value += ", " + duration_text(entry)
        parts.append(
            '<g class="mark %s" data-host="%s"><text x="0" y="%d">%s</text>'
            '<rect class="bar %s" data-host="%s" data-size="%s" x="%d" y="%d" width="%d" height="%d"/>'
            '<text x="%d" y="%d">%s</text></g>' % (
                _slug(entry["status"]), _e(entry["host"]), y + 15, _e(entry["host"][:24]), _slug(entry["status"]),
                _e(entry["host"]), entry["size"] if entry["size"] is not None else "", label_w, y, length, row_h - 8,
                label_w + length + 6, y + 15, _e(value)))
    parts.append("</svg>")
    return "\n".join(parts)


def backup_report_html(hosts, hostvars, verify_results=None, prune_results=None):
    entries = host_entries(hosts, hostvars, verify_results, prune_results)
    counts = dict((s, sum(1 for e in entries if e["status"] == s)) for s in ("ok", "failed", "not run"))
    total = sum(e["size"] or 0 for e in entries)
    failures = [_failure(i, e) for i, e in enumerate(entries, 1) if e["status"] == "failed"]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        "<title>ese.backup report</title>",
        "<style>%s</style></head><body>" % CSS,
        "<h1>ese.backup report</h1>",
        '<p class="summary">%d host%s: %d ok, %d failed, %d not run. Total size of the sets: '
        '<span class="total-size" data-bytes="%d">%s (%d bytes)</span>.</p>' % (
            len(entries), "" if len(entries) == 1 else "s", counts["ok"], counts["failed"], counts["not run"],
            total, human_size(total), total),
        "<h2>Chart</h2>",
        _chart(entries),
        '<h2>Failures</h2>\n<section class="failures">',
        "\n".join(failures) if failures else "<p>None.</p>",
        "</section>",
        "<h2>Hosts</h2>",
        "\n".join(_host_section(i, e) for i, e in enumerate(entries, 1)),
        "</body></html>",
    ]
    return "\n".join(out) + "\n"


class FilterModule:
    def filters(self):
        return {"backup_report_html": backup_report_html}
