# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the report filters know about each host, read from the play's registered results.

Controller-side only (the filters ``backup_report``, ``backup_report_junit``, ``backup_report_html`` and
``backup_report_summary``). Sources, per host:

* ``ese_backup``: the registered result of ``ese.backup.run`` (``plugins/modules/run.yml`` RETURN). The
  action plugin folds the engine's ``failed_call`` into ``jet_err`` (``code``, ``name``, ``call``); the
  failing call's ``detail`` is the trace entry that returned that error.
* ``ese_backup_failure``: the message the play's rescue kept when a task before the backup failed.
* the results of ``ese.backup.verify`` on the backup server, per host: the registered result of the one task
  over every host's folder (``paths`` with ``names``, or ``subfolders``: its ``results``, keyed by ``name``), or
  the ``results`` of a task looped over the hosts (keyed by ``item``).
* the results of ``ese.backup.prune`` on the backup server, per host: the registered result of the one task
  over every host's folder (``paths`` with ``names``, keyed by ``name``), the ``results`` of a task looped over
  the hosts (keyed by ``item``), or a mapping of host to prune result.

Nothing is made up: a fact the results do not hold is ``None`` (the renderers print "unknown", "not
recorded" or "not configured").
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.ese.backup.plugins.plugin_utils import _jet_errors

# Characters XML 1.0 does not allow (a host's message may hold any of them).
_NOT_XML = re.compile(u"[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean_text(value):
    """``value`` as text without the characters XML 1.0 cannot carry (HTML escaping is the renderer's)."""
    if value is None:
        return u""
    return _NOT_XML.sub(u"\ufffd", u"%s" % (value,))


def verify_by_host(verify_results):
    """``{host: verify result}`` for the hosts verified.

    ``verify_results`` is the registered result of one ``ese.backup.verify`` task over many paths (a dict with
    ``results`` named by ``name``; a skipped task has none), or a list of results: that task's ``results``,
    or a verify loop's ``results`` (keyed by ``item``, skipped items left out).
    """
    if isinstance(verify_results, dict):
        verify_results = verify_results.get("results")
    found = {}
    for res in verify_results or []:
        if not isinstance(res, dict) or res.get("skipped") or "skip_reason" in res:
            continue
        found[res["item"] if "item" in res else res.get("name")] = res
    return found


def prune_by_host(prune_results):
    """``{host: prune result}``: the registered result of one prune task over every host's folder (``paths``
    with ``names``: its ``results`` keyed by ``name``) or of a prune loop (keyed by ``item``, skipped items left
    out), or a mapping of host name to prune result."""
    if isinstance(prune_results, dict):
        if "results" not in prune_results:
            return dict((host, res) for host, res in prune_results.items() if isinstance(res, dict))
        prune_results = prune_results["results"]
    found = {}
    for res in prune_results or []:
        if isinstance(res, dict) and not res.get("skipped") and ("item" in res or "name" in res):
            found[res["item"] if "item" in res else res["name"]] = res
    return found


def _retention(res):
    """What a host's prune did: counts of kept, removed and held sets and the bytes freed, or its failure."""
    if not res:
        return None
    if res.get("failed"):
        return {"failed": True, "msg": res.get("msg")}
    return {"kept": len(res.get("kept") or []), "removed": len(res.get("removed") or []),
            "held": len(res.get("held") or []), "bytes_freed": res.get("bytes_freed") or 0}


def host_status(backup, failure):
    """``ok``, ``failed`` or ``not run`` (failed also when a task before the backup failed)."""
    if backup.get("failed") or (not backup and failure):
        return "failed"
    if not backup:
        return "not run"
    return "ok"


def _databases(backup, manifest, facts):
    """The databases this host backs up: the set's manifest, else the task's arguments, else the inventory."""
    names = [d.get("source") or d.get("file") for d in manifest.get("databases") or []]
    if not names:
        names = ((backup.get("invocation") or {}).get("module_args") or {}).get("databases") or []
    if not names:
        names = facts.get("ese_databases") or []
    if isinstance(names, str):
        names = [names]
    return [u"%s" % (name,) for name in names if name]


def _failing_call(backup, jet_err):
    """The trace entry of the call that returned ``jet_err`` (the last one with that call and code)."""
    if not jet_err:
        return None
    for entry in reversed(backup.get("trace") or []):
        if entry.get("call") == jet_err.get("call") and entry.get("err") == jet_err.get("code"):
            return entry
    return None


def _chain_health(res):
    """Chain health from a verify result: ``None`` when unknown (no verify result, or it lists no chains)."""
    if not res:
        return None
    chains = res.get("chains")
    if chains is None:
        return None
    broken = [c.get("base") for c in chains if not c.get("continuous")]
    return {"valid": res.get("valid"), "problems": len(res.get("problems") or []),
            "errors": res.get("error_count"), "warnings": res.get("warning_count"),
            "chains": len(chains), "broken": broken}


def host_entries(hosts, hostvars, verify_results=None, prune_results=None):
    """One dict per host with everything the renderers show (see the module docstring)."""
    verified = verify_by_host(verify_results)
    pruned = prune_by_host(prune_results)
    entries = []
    for host in hosts:
        facts = hostvars[host]
        backup = dict(facts.get("ese_backup") or {})
        manifest = backup.get("manifest") or {}
        logs = manifest.get("logs") or {}
        failure = facts.get("ese_backup_failure")
        files = manifest.get("files") or []
        log_files = [f.get("name") for f in files if f.get("role") == "log"]
        jet_err = backup.get("jet_err")
        res = verified.get(host)
        call = _failing_call(backup, jet_err)
        entries.append({
            "host": host,
            "status": host_status(backup, failure),
            "backup_set": backup.get("backup_set"),
            "type": manifest.get("type"),
            "created": manifest.get("created"),
            "log_generations": [logs["gen_low"], logs["gen_high"]] if logs else None,
            "log_files": [log_files[0], log_files[-1]] if log_files else None,
            "size": sum(f.get("size") or 0 for f in files) if files else None,
            "file_count": len(files) if files else None,
            "duration": backup.get("duration_s"),
            "databases": _databases(backup, manifest, facts),
            "jet_err": jet_err,
            "failed_call_detail": call.get("detail") if call else None,
            "advice": _jet_errors.advice(jet_err["code"]) if jet_err and jet_err.get("code") is not None else None,
            "ended": backup.get("ended"),
            "message": backup.get("msg") or failure or "",
            "verified": {"valid": res.get("valid"), "problems": len(res.get("problems") or [])} if res else None,
            "problems": [p for p in (res.get("problems") or []) if isinstance(p, dict)] if res else [],
            "chain": _chain_health(res),
            "retention": _retention(pruned.get(host)),
        })
    return entries


def human_size(size):
    """``200704`` -> ``196.0 KiB``; ``None`` -> ``None``."""
    if size is None:
        return None
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return "%d B" % size if unit == "B" else "%.1f %s" % (value, unit)
        value /= 1024
    return None  # not reached


def jet_text(jet_err):
    """``JET_errReadVerifyFailure (-1018) in JetReadFileInstance``, or ``None``."""
    if not jet_err:
        return None
    name = jet_err.get("name") or "unknown JET error"
    text = "%s (%s)" % (name, jet_err.get("code"))
    if jet_err.get("call"):
        text += " in %s" % jet_err["call"]
    return text


def verification_text(entry):
    """What the verification says: valid/invalid with the problem count, or why there is none."""
    verified = entry["verified"]
    if verified is None:
        return "unknown (not verified: no backup set)" if entry["backup_set"] is None else "unknown (not verified)"
    state = {True: "valid", False: "invalid"}.get(verified["valid"], "unknown")
    return "%s, %d problem%s" % (state, verified["problems"], "" if verified["problems"] == 1 else "s")


def chain_text(entry):
    """Chain health in words, ``None`` (unknown) without a verify result that lists chains."""
    chain = entry["chain"]
    if chain is None:
        return None
    if not chain["chains"]:
        return "unknown (no chain found)"
    text = "%d chain%s" % (chain["chains"], "" if chain["chains"] == 1 else "s")
    if chain["broken"]:
        return "%s, broken: %s" % (text, ", ".join(u"%s" % (b,) for b in chain["broken"]))
    if chain["valid"]:
        return "%s, continuous, healthy" % text
    plural = "" if chain["problems"] == 1 else "s"
    return "%s, continuous, but the sets have %d problem%s" % (text, chain["problems"], plural)


def log_range_text(entry):
    """``generations 2 - 2 (logs/SRU00002.log - logs/SRU00002.log)``, or ``None``."""
    gens = entry["log_generations"]
    if not gens:
        return None
    text = "generations %s - %s" % (gens[0], gens[1])
    if entry["log_files"]:
        text += " (%s - %s)" % (entry["log_files"][0], entry["log_files"][1])
    return text


def retention_text(entry):
    """``kept 4, removed 2 (1.2 GiB freed), 1 held``, the prune's failure, or None when no prune ran."""
    ret = entry.get("retention")
    if not ret:
        return None
    if ret.get("failed"):
        return "prune failed: %s" % (ret.get("msg") or "no message")
    text = "kept %d, removed %d (%s freed)" % (ret["kept"], ret["removed"], human_size(ret["bytes_freed"]))
    return text + (", %d held" % ret["held"] if ret["held"] else "")


def duration_text(entry):
    """``12.3 s`` or None."""
    value = entry.get("duration")
    return None if value is None else "%.1f s" % value
