# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ``ese.backup.prune`` decides, whoever reads the folder (docs/prune.md).

The Python module (sets where it runs) and the action plugin (sets on a Windows host's own disk, read by the
engine's ``Prune.Scan``) both hand this module what they found: the options are checked here, each set's
``manifest.json`` and ``ending.json`` are judged by the verifier's readers (``backupset.load_manifest`` and
``load_ending``), sets are verified lazily in the planner's order, ``retention.plan`` decides, and the staging
folders are judged by one rule; ``result`` builds the task result (kept, removed in deletion order, held,
staging, problems, diff). Only the reading and the removing differ between the two.
"""
from __future__ import annotations

import base64
import datetime
import math
import os
import shutil
import tempfile

from ansible_collections.ese.backup.plugins.module_utils.ese_format import backupset as bs
from ansible_collections.ese.backup.plugins.module_utils.ese_format import retention as rt

# The options of ese.backup.prune (the module's argument spec; the action plugin validates a Windows host's
# task with it, ``path`` taken as the host's path, not expanded on the controller).
ARGUMENT_SPEC = dict(
    path=dict(type="path"),
    paths=dict(type="list", elements="path"),
    names=dict(type="list", elements="str"),
    keep_full=dict(type="int", default=0),
    keep_days=dict(type="int", default=0),
    keep_daily=dict(type="int", default=0),
    keep_weekly=dict(type="int", default=0),
    keep_monthly=dict(type="int", default=0),
    min_verified=dict(type="int", default=1),
    verify=dict(type="str", default="files", choices=["ending", "files", "checksums"]),
    partial_older_than_hours=dict(type="float", default=24),
)
COUNTS = ("keep_full", "keep_days", "keep_daily", "keep_weekly", "keep_monthly", "min_verified")
VERIFY = ("ending", "files", "checksums")


class PruneError(Exception):
    """A failure that names the option (or the folder) at fault; ``result`` is what was done before."""

    def __init__(self, msg, result=None):
        Exception.__init__(self, msg)
        self.result = result or {}


def problem(code, file, detail):
    """A problem in the verifier's form; prune's own codes (PRUNE_REMOVE_FAILED, PRUNE_SET_CHANGED) are errors."""
    return {"code": code, "severity": "error", "file": file, "detail": detail}


def options(params, verify_choices=VERIFY):
    """``(verify, older_than_seconds, counts)`` from the task's options; raises PruneError naming the option.
    Nothing is read or removed before this passes."""
    older = params.get("partial_older_than_hours")
    older = 24.0 if older is None else older
    if isinstance(older, bool) or not isinstance(older, (int, float)) or math.isnan(older) or older <= 0:
        raise PruneError("partial_older_than_hours: must be more than 0, got %r" % (older,))
    verify = params.get("verify") or "files"
    if verify not in verify_choices:
        raise PruneError("verify: must be one of %s, got %r" % (", ".join(verify_choices), verify))
    counts = dict((k, params.get(k)) for k in COUNTS)
    if counts["min_verified"] is None:
        counts["min_verified"] = 1
    try:
        rt.plan([], datetime.datetime.now(datetime.timezone.utc), **counts)
    except ValueError as e:
        raise PruneError(str(e))
    return verify, older * 3600.0, counts


def record(name, set_dir, size):
    """The planner's record of a set in ``set_dir`` (read where it is)."""
    m, mp = bs.load_manifest(os.path.join(set_dir, bs.MANIFEST), name + "/" + bs.MANIFEST)
    _e, ok, ep = bs.load_ending(set_dir, lambda r, n=name: n + "/" + r)
    return rt.set_record(name, m, mp, ok, ep, size=size)


def _materialise(path, rec):
    """Recreate a record file the engine scanned (``{kind, data}``) so the verifier's reader judges it."""
    kind = (rec or {}).get("kind")
    if kind is None:
        return
    if kind == "file" and rec.get("too_large"):
        with open(path, "wb") as f:            # sparse: the reader judges its size, never its bytes
            f.truncate(int(rec.get("size") or 0))
    elif kind == "file" and rec.get("over_budget"):
        with open(path, "wb") as f:            # not sent: unreadable here, so its set is held, never removed
            f.write(b"not sent by the host: the scan's budget for record files was spent")
    elif kind == "file":
        with open(path, "wb") as f:
            f.write(base64.b64decode((rec or {}).get("data") or ""))
    elif kind == "symlink":
        os.symlink(path + ".target", path)
    else:
        os.mkdir(path)      # a folder, a device: not a regular file, never opened


def record_from_scan(entry):
    """The planner's record of a set from the engine's scan (``name``, ``manifest``, ``ending``, ``bytes``):
    the bytes it read are judged by the same readers as a set read in place."""
    tmp = tempfile.mkdtemp(prefix="ese-prune-")
    try:
        d = os.path.join(tmp, "set")
        os.mkdir(d)
        _materialise(os.path.join(d, bs.MANIFEST), entry.get("manifest"))
        _materialise(os.path.join(d, bs.ENDING), entry.get("ending"))
        rec = record(entry["name"], d, entry.get("bytes") or 0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rec["manifest_sha256"] = (entry.get("manifest") or {}).get("sha256")
    return rec


def verify_lazily(records, verify, min_verified, verify_chain):
    """Mark ``verified`` on the records: with ``ending``, from the records; else chain by chain, newest first,
    until ``min_verified`` verified chains and a verified full are found. ``verify_chain(names)`` returns
    ``{name: bool}`` for a chain's sets (read where they are)."""
    if verify == "ending":
        for r in records:
            r["verified"] = r["ending_ok"] and r["manifest_ok"]
        return records
    by_name = dict((r["name"], r) for r in records)
    found, full_found = 0, False
    for chain in rt.verification_order(records):
        if found >= min_verified and full_found:
            break
        got = verify_chain(list(chain))
        ok = True
        for n in chain:
            by_name[n]["verified"] = bool(got.get(n))
            ok = ok and by_name[n]["verified"]
        if ok:
            found += 1
        if by_name[chain[0]]["type"] == "full" and by_name[chain[0]]["verified"]:
            full_found = True
    return records


def _hours(seconds):
    return "%.1f hours" % (seconds / 3600.0)


def staging_decisions(entries, older_than):
    """Keep or remove each staging folder or leftover. An entry: ``name``, ``kind`` (kept_logs, partial, leftover,
    link), ``bytes``, ``quiet`` (seconds since anything in it was written), ``run`` (its run.json's facts), and
    from the engine ``judged`` (StagingFolder.Judge: kept_logs, in_progress, stale) with its ``judged_why``;
    ``other`` names a leftover that is neither a file nor a folder. Returns ``(staging, problems)``."""
    out, probs = [], []
    for e in entries:
        n, kind = e["name"], e["kind"]
        d = {"name": n, "kind": kind, "action": "keep", "bytes": e.get("bytes") or 0, "run": e.get("run")}
        quiet = e.get("quiet") or 0.0
        if kind == "kept_logs":
            d["why"] = "holds kept-logs.json, the only copy of logs truncated on the host: never removed"
        elif kind == "link":
            d["why"] = "a symbolic link: not followed, not removed"
            probs.append(problem("FOLDER_SYMLINK", n, "a symbolic link to a set folder: not followed, not removed"))
        elif kind == "partial":
            judged = e.get("judged")
            if judged is not None and judged != "stale":
                d["why"] = "the engine judges it in progress (%s): a backup may be writing it" \
                           % (e.get("judged_why") or "its run is alive or it was written within 24 hours")
            elif quiet > older_than:
                d["action"] = "remove"
                d["why"] = "nothing in it was written for %s, more than partial_older_than_hours" % _hours(quiet)
            else:
                d["why"] = "written %s ago: a backup may be writing it" % _hours(max(quiet, 0))
        elif e.get("other"):
            d["why"] = "a %s: not followed, not removed" % e["other"]
        elif quiet > older_than:
            d["action"] = "remove"
            d["why"] = "a leftover untouched for %s" % _hours(quiet)
        else:
            d["why"] = "written %s ago: may be in use" % _hours(max(quiet, 0))
        out.append(d)
    return out, probs


def _line(d):
    return "%s  %s %s  (%s)" % (d["name"], d.get("type") or d.get("kind"), d.get("created") or "",
                                "; ".join(d["rules"]) if "rules" in d else d["why"])


def result(root, records, now, counts, verify, staging, sprobs):
    """Plan and build the task result (as a check-mode run reports it); ``result["_plan"]`` is the plan."""
    p = rt.plan(records, now, **counts)
    problems = [x for r in records for x in r["problems"]] + p["problems"] + sprobs
    decisions = dict((d["name"], d) for d in p["sets"])

    def out(d):
        return dict((k, d[k]) for k in ("name", "type", "chain", "created", "rules"))
    removed = [dict(out(decisions[n]), bytes=decisions[n]["size"]) for n in p["remove_order"]]
    res = {
        "path": root, "kept": [out(d) for d in p["sets"] if d["action"] == "keep"], "removed": removed,
        "staging": staging, "problems": problems, "held": [out(d) for d in p["sets"] if d["held"]],
        "chains": p["chains"], "newest_verified_full": p["newest_verified_full"], "verify": verify,
        "bytes_freed": sum(x["bytes"] for x in removed) + sum(s["bytes"] for s in staging if s["action"] == "remove"),
        "changed": bool(removed or any(s["action"] == "remove" for s in staging)),
    }
    before = sorted([_line(decisions[n]) for n in decisions] + [_line(s) for s in staging])
    after = sorted([_line(decisions[n]) for n in decisions if decisions[n]["action"] == "keep"]
                   + [_line(s) for s in staging if s["action"] == "keep"])
    res["diff"] = {"before_header": root + " (before)", "after_header": root + " (after)",
                   "before": "\n".join(before) + "\n", "after": "\n".join(after) + "\n"}
    return res
