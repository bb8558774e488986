#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: prune
short_description: Delete old ESE backup sets by retention rules, chain by chain
version_added: 0.1.0
description:
  - "Applies retention to a folder of backup sets written by M(ese.backup.run) (or begin/copy/end), where the sets
    are stored: in Python on the controller (C(delegate_to: localhost)) or a Linux backup server, and, on a Windows
    host, through the engine for sets on the host's own disk (O(path) is then the host's folder, such as
    C(D:\\Backup\\sru))."
  - "On a Windows host (a PowerShell shell) the action plugin has the engine scan the folder (the raw
    C(manifest.json) and C(ending.json) of each set, the staging folders as the engine judges them), plans on the
    controller with the same planner and readers as the Python module, and has the engine remove the planned sets
    in the planned order, each only while its C(manifest.json) has the SHA-256 it had when scanned; a set changed
    since the scan is not removed and stops the removal (C(PRUNE_SET_CHANGED)). Every option applies, except
    O(verify=checksums), which is refused there. See C(docs/prune.md), section Sets on a Windows host."
  - "Chains are the unit: a full set and the incrementals and differentials that depend on it (built as
    M(ese.backup.verify) builds them) are kept or removed together. A copy set is a chain of its own."
  - "A chain is kept when any rule keeps it - O(keep_full), O(keep_days), O(keep_daily), O(keep_weekly),
    O(keep_monthly), O(min_verified) - and always when it is the newest chain whose full set verified. It is also
    kept (held, and reported) when any of its sets has no valid ending record (C(ending.json) missing, invalid, or
    C(backup_valid) false), a manifest that cannot be read, a chain problem (gap, signature mismatch), or no
    creation time. When a set may depend on an older full (its signatures differ from its chain's), every older
    chain is held too."
  - "Sets are deleted newest dependant first and the full set last, each renamed aside (C(.<name>.<random>.prune))
    before it is deleted, so that a run stopped anywhere leaves no incremental or differential without its full set
    and no half-deleted set under its own name."
  - "Staging folders: a C(.<name>.partial) folder with C(kept-logs.json) holds the only copy of logs truncated on the
    host and is never deleted. Other C(.<name>.partial) folders (with or without C(run.json)) may be being written by
    a backup; one is removed only when nothing in it was written for longer than O(partial_older_than_hours), the
    rule the engine uses, and it is renamed aside first so that a backup starting meanwhile gets a fresh folder.
    Leftovers named C(*.new), C(*.stale) and C(*.prune) older than that are removed too."
  - "Symbolic links are never followed: a set folder that is a link is reported, not deleted. C(manifest.json),
    C(ending.json) and C(run.json) are read within the verifier's limits (16 MiB, 64 levels of nesting)."
  - "Check mode lists exactly what would be removed and why; with C(--diff) the folder's listing before and after."
options:
  path:
    description:
      - The folder of backup sets. An empty value fails the task; it never means the working directory.
      - One of O(path) and O(paths) is required.
    type: path
  paths:
    description:
      - Several folders of backup sets (one per host on a backup server), pruned one after another in one task,
        each exactly as O(path) alone would be; the result lists them in RV(results). One task over a fleet's
        folders costs one module start instead of one per host.
      - Not on a Windows host (there, O(path) per task).
    type: list
    elements: path
  names:
    description:
      - With O(paths), the name of each result (for example the host names); defaults to each folder's last
        component. The names must differ.
    type: list
    elements: str
  keep_full:
    description:
      - Keep the newest N chains (each based on a full or a copy set).
      - At least one of O(keep_full), O(keep_days), O(keep_daily), O(keep_weekly) or O(keep_monthly) must be
        more than 0.
    type: int
    default: 0
  keep_days:
    description:
      - Keep every chain that has a set created within the last N days (UTC).
    type: int
    default: 0
  keep_daily:
    description:
      - Keep the newest chain (by its full set's creation time, UTC) of each of the last N calendar days,
        today included. A day without a backup keeps nothing.
    type: int
    default: 0
  keep_weekly:
    description:
      - Keep the newest chain of each of the last N ISO weeks (Monday to Sunday, UTC), this week included.
    type: int
    default: 0
  keep_monthly:
    description:
      - Keep the newest chain of each of the last N calendar months (UTC), this month included.
    type: int
    default: 0
  min_verified:
    description:
      - Always keep the newest N chains whose every set verified (see O(verify)).
    type: int
    default: 1
  verify:
    description:
      - "How a set is judged verified, for O(min_verified) and for the newest verified full."
      - "C(ending): its C(ending.json) says the backup was valid and its manifest reads (no file is read)."
      - "C(files): that, and the checks of M(ese.backup.verify) without page checksums (every file present with
        its size and SHA-256, headers, log sequences); only the newest chains are read, until O(min_verified)
        verified chains and a verified full are found."
      - "C(checksums): as C(files), with every page and log sector checksum."
      - "On a Windows host, C(files) checks every listed file of a set by its size and SHA-256 and its log range
        (what a restore checks before it starts), lazily in the same order; C(checksums) is refused there."
    type: str
    choices: [ending, files, checksums]
    default: files
  partial_older_than_hours:
    description:
      - A C(.<name>.partial) staging folder without C(kept-logs.json), or a C(*.new), C(*.stale) or C(*.prune)
        leftover, is removed only when nothing in it was written for longer than this (hours, more than 0).
      - "On a Windows host a staging folder must also be judged stale by the engine (its run is gone, or nothing
        in it was written for 24 hours): one the engine judges in progress is kept whatever this says."
    type: float
    default: 24
notes:
  - Runs on the machine where the sets are; use C(delegate_to) for sets on the controller. On a Windows host the
    plan is made on the controller and the engine (C(ese.backup.prune_host), internal) reads and removes.
  - "The planner (C(plugins/module_utils/ese_format/retention.py)) is pure; the rules and their names are in
    C(docs/prune.md)."
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Lists what would be removed and why, and changes nothing.
  diff_mode:
    support: full
    details: The folder's sets and staging folders before and after.
  platform:
    platforms: [posix, windows]
seealso:
  - module: ese.backup.verify
  - module: ese.backup.run
author:
  - ese.backup developers (@ese-backup)
"""

EXAMPLES = r"""
- name: Every host's folder on the backup server in one task (a fleet)
  ese.backup.prune:
    paths: "{{ groups['ese_hosts'] | map('regex_replace', '^', '/srv/backup/') | list }}"
    names: "{{ groups['ese_hosts'] }}"
    keep_full: 7
  delegate_to: localhost
  register: pruned

- name: Keep a week of daily chains, four weekly and six monthly ones
  ese.backup.prune:
    path: /srv/backup/sru
    keep_daily: 7
    keep_weekly: 4
    keep_monthly: 6
    min_verified: 2
  delegate_to: localhost

- name: See what would go, and why
  ese.backup.prune:
    path: /srv/backup/sru
    keep_full: 3
  check_mode: true
  diff: true
  delegate_to: localhost
  register: plan

- name: Show the sets held for a person to look at
  ansible.builtin.debug:
    msg: "{{ plan.held }}"
"""

RETURN = r"""
kept:
  description:
    - "The sets kept, each with C(name), C(type), C(chain) (its full set's name), C(created) and C(rules) (the rules
      that keep its chain, such as C(keep_daily (newest of 2026-11-25)), or the holds, such as
      C(ending_not_valid: <set>))."
  returned: always
  type: list
  elements: dict
  sample: [{"name": "full-20261125T040000Z", "type": "full", "chain": "full-20261125T040000Z",
            "created": "2026-11-25T04:00:00Z", "rules": ["keep_full (one of the 3 newest)", "newest_verified_full"]}]
removed:
  description:
    - The sets removed (in check mode, that would be removed), in the order of deletion, each with C(name), C(type),
      C(chain), C(created), C(rules) (C(no_rule_keeps_it)) and C(bytes).
  returned: always
  type: list
  elements: dict
held:
  description: The sets kept only by a hold (no rule keeps them) - worth a look; see C(rules) and RV(problems).
  returned: always
  type: list
  elements: dict
staging:
  description:
    - The staging folders and leftovers found, each with C(name), C(kind) (C(kept_logs), C(partial), C(leftover),
      C(link)), C(action) (C(keep) or C(remove)), C(why), C(bytes), and C(run) (the facts of its C(run.json)).
  returned: always
  type: list
  elements: dict
problems:
  description:
    - What was found wrong, in the verifier's form (C(code), C(severity), C(file), C(detail)) - endings missing or not
      valid, unreadable manifests, chain problems, links - plus C(PRUNE_REMOVE_FAILED) for a deletion that failed
      and, on a Windows host, C(PRUNE_SET_CHANGED) for a set whose manifest changed since the scan (not removed).
  returned: always
  type: list
  elements: dict
chains:
  description: The chains, newest first (C(base), C(sets), C(continuous), C(type)).
  returned: always
  type: list
  elements: dict
bytes_freed:
  description: The bytes of the files removed (in check mode, that would be removed); with O(paths), their sum.
  returned: always
  type: int
results:
  description:
    - With O(paths), one result per folder in their order, each what O(path) alone returns (RV(kept), RV(removed),
      RV(held), RV(staging), RV(problems), RV(chains), RV(bytes_freed), RV(newest_verified_full)) with C(name)
      and C(path); a folder that failed has C(failed=true) and C(msg), and the task fails after the others ran.
    - The other return values are then only in each result.
  returned: with O(paths)
  type: list
  elements: dict
newest_verified_full:
  description: The full set of the newest chain whose full verified (never removed), or null.
  returned: always
  type: str
"""

import datetime
import os
import shutil
import time
import uuid

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ese.backup.plugins.module_utils.ese_format import backupset as bs
from ansible_collections.ese.backup.plugins.module_utils.ese_format import files as fs
from ansible_collections.ese.backup.plugins.module_utils.ese_format import prune_plan as pp

RUN = "run.json"
RUN_FORMAT = "ese.backup/run/1"
LEFTOVER_ENDINGS = (".new", ".stale", ".prune")
SCAN_LIMIT = 10000          # entries looked at for the last write time, as the engine does

PruneError = pp.PruneError
problem = pp.problem


def tree_facts(path):
    """``(bytes, last_write)`` of a folder without following links: regular files' sizes, and the newest
    modification time of the folder and its entries (at most SCAN_LIMIT entries)."""
    st = os.lstat(path)
    total, last, seen = 0, st.st_mtime, 0
    stack = [path]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            try:
                est = e.stat(follow_symlinks=False)
            except OSError:
                continue
            seen += 1
            last = max(last, est.st_mtime)
            k = fs.kind_of(est.st_mode)
            if k == "file":
                total += est.st_size
            elif k == "dir" and seen < SCAN_LIMIT:
                stack.append(e.path)
    return total, last


def _aside(root, name):
    hidden = name if name.startswith(".") else "." + name
    return os.path.join(root, "%s.%s.prune" % (hidden, uuid.uuid4().hex[:12]))


def _remove_folder(root, name):
    """Rename ``root/name`` aside, then delete it (links inside are removed, never followed)."""
    src = os.path.join(root, name)
    kind = fs.lkind(src)
    if kind != "dir":
        raise OSError("%s is %s, not a folder: not removed" % (src, kind or "gone"))
    aside = _aside(root, name)
    os.rename(src, aside)
    shutil.rmtree(aside)


def _remove_leftover(root, name):
    full = os.path.join(root, name)
    kind = fs.lkind(full)
    if kind == "file":
        os.unlink(full)
    elif kind == "dir" and fs.lkind(os.path.join(full, "kept-logs.json")) is not None:
        raise OSError("%s holds kept-logs.json (the only copy of truncated logs): kept" % full)
    elif kind == "dir":
        if name.endswith(".prune"):
            shutil.rmtree(full)
        else:
            _remove_folder(root, name)
    else:
        raise OSError("%s is %s: not removed" % (full, kind or "gone"))


def _remove_partial(root, name, older_than):
    """Rename a quiet staging folder aside and delete it, unless it gained kept logs or a write meanwhile."""
    src = os.path.join(root, name)
    if fs.lkind(src) != "dir" or fs.lkind(os.path.join(src, bs.KEPT)) is not None:
        raise OSError("%s changed: not removed" % src)
    aside = _aside(root, name)
    os.rename(src, aside)
    if fs.lkind(os.path.join(aside, bs.KEPT)) is not None or time.time() - tree_facts(aside)[1] <= older_than:
        try:
            os.rename(aside, src)
        except OSError:
            pass
        raise OSError("%s was written to while being removed: kept" % src)
    shutil.rmtree(aside)


def _run_facts(folder):
    p = os.path.join(folder, RUN)
    if fs.lkind(p) != "file":
        return None
    try:
        r = fs.load_json(p, max_bytes=65536)
    except (IOError, OSError, ValueError, UnicodeDecodeError):
        return {"readable": False}
    if not isinstance(r, dict) or r.get("format") != RUN_FORMAT:
        return {"readable": False}
    return dict((k, r.get(k)) for k in ("host", "pid", "started") if isinstance(r.get(k), (str, int)))


def is_leftover(name):
    return name.startswith(".") and name.endswith(LEFTOVER_ENDINGS)


def staging_facts(root, now_ts, kept, partial, links):
    """What prune_plan.staging_decisions judges, read here (no engine: no ``judged``)."""
    out = []
    for n in kept:
        out.append({"name": n, "kind": "kept_logs", "bytes": tree_facts(os.path.join(root, n))[0]})
    for n in partial:
        b, last = tree_facts(os.path.join(root, n))
        out.append({"name": n, "kind": "partial", "bytes": b, "quiet": now_ts - last,
                    "run": _run_facts(os.path.join(root, n))})
    for n in links:
        out.append({"name": n, "kind": "link", "bytes": 0})
    for n in sorted(os.listdir(root)):
        if not is_leftover(n):
            continue
        full = os.path.join(root, n)
        k = fs.lkind(full)
        if k not in ("dir", "file"):
            out.append({"name": n, "kind": "leftover", "bytes": 0, "other": k})
            continue
        b, last = tree_facts(full) if k == "dir" else (os.lstat(full).st_size, os.lstat(full).st_mtime)
        out.append({"name": n, "kind": "leftover", "bytes": b, "quiet": now_ts - last})
    return out


def scan_staging(root, older_than, now_ts, kept, partial, links):
    return pp.staging_decisions(staging_facts(root, now_ts, kept, partial, links), older_than)


def read_records(root, names, verify, min_verified):
    records = [pp.record(n, os.path.join(root, n), tree_facts(os.path.join(root, n))[0]) for n in names]

    def verify_chain(chain):
        return dict((n, bool(bs.verify_set(os.path.join(root, n), checksums=(verify == "checksums"),
                                           prefix=n + "/")["restorable"])) for n in chain)
    return pp.verify_lazily(records, verify, min_verified, verify_chain)


def run(params, check_mode=False, now=None):
    """Plan and (unless ``check_mode``) apply retention. Returns the result dict; raises PruneError."""
    root = params.get("path")
    if not isinstance(root, str) or not root.strip():
        raise PruneError("path: must name the folder of backup sets; it is empty")
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise PruneError("path: %s is not a folder" % root)
    verify, older, counts = pp.options(params)     # nothing is read or removed on bad input
    now = now or datetime.datetime.now(datetime.timezone.utc)
    names, kept, partial, links = bs.find_sets(root)
    # a set renamed aside by a run that was stopped is a leftover (removed by age), not a set of the folder
    names = [n for n in names if not is_leftover(n)]
    records = read_records(root, names, verify, counts["min_verified"])
    # file times are the share's clock: judged against this machine's clock, whatever ``now`` plans with
    staging, sprobs = scan_staging(root, older, time.time(), kept, partial, links)
    result = pp.result(root, records, now, counts, verify, staging, sprobs)
    if check_mode:
        return result
    removed = result["removed"]
    done, freed = [], 0
    for item in removed:
        try:
            _remove_folder(root, item["name"])
        except (IOError, OSError) as e:
            result["removed"] = done
            result["bytes_freed"] = freed
            result["changed"] = bool(done)
            result["problems"].append(problem("PRUNE_REMOVE_FAILED", item["name"], str(e)))
            raise PruneError("%s: not removed (%s); %d set(s) removed before it, none left without the sets it "
                             "depends on" % (item["name"], e, len(done)), result)
        done.append(item)
        freed += item["bytes"]
    for s in staging:
        if s["action"] != "remove":
            continue
        try:
            if s["kind"] == "partial":
                _remove_partial(root, s["name"], older)
            else:
                _remove_leftover(root, s["name"])
            freed += s["bytes"]
        except (IOError, OSError) as e:
            s["action"] = "keep"
            s["why"] = "not removed: %s" % e
            result["problems"].append(problem("PRUNE_REMOVE_FAILED", s["name"], str(e)))
    result["bytes_freed"] = freed
    result["changed"] = bool(done or any(s["action"] == "remove" for s in staging))
    return result


def run_many(params, check_mode=False, now=None):
    """``run`` for each of ``paths`` in turn (one task over every host's folder: a loop of tasks costs each its
    module start); ``names`` name the results (default: each folder's last component). Returns
    ``(result, failed names)``: ``results`` in order, each what ``path`` alone returns, with ``name`` and ``path``
    (``failed`` and ``msg`` for a folder that failed), and the sums."""
    paths = params.get("paths") or []
    names = params.get("names")
    if not paths:
        raise PruneError("paths: must list at least one folder of backup sets")
    if names is None:
        names = [os.path.basename(os.path.normpath(p)) for p in paths]
    if len(names) != len(paths):
        raise PruneError("names: %d names for %d paths; give one name per path, or none" % (len(names), len(paths)))
    if len(set(names)) != len(names):
        raise PruneError("names: each must be different (they key the results)")
    pp.options(params)                              # bad input fails before any folder is read
    results, failed = [], []
    for name, path in zip(names, paths):
        try:
            res = run(dict(params, path=path), check_mode=check_mode, now=now)
        except (PruneError, IOError, OSError) as e:
            res = dict(getattr(e, "result", None) or {}, failed=True, msg=str(e))
            failed.append(name)
        res.update(name=name, path=path)
        results.append(res)
    diff = {"before": "".join("== %s\n%s" % (r["name"], (r.get("diff") or {}).get("before", "")) for r in results),
            "after": "".join("== %s\n%s" % (r["name"], (r.get("diff") or {}).get("after", "")) for r in results)}
    for r in results:
        r.pop("diff", None)
    return {"results": results, "changed": any(r.get("changed") for r in results),
            "bytes_freed": sum(r.get("bytes_freed") or 0 for r in results), "diff": diff}, failed


def main():
    module = AnsibleModule(
        argument_spec=pp.ARGUMENT_SPEC,
        supports_check_mode=True,
        mutually_exclusive=[("path", "paths")],
        required_one_of=[("path", "paths")],
        required_by={"names": "paths"},
    )
    if module.params["paths"] is not None:
        try:
            result, failed = run_many(module.params, check_mode=module.check_mode)
        except PruneError as e:
            module.fail_json(msg=str(e), changed=False)
        if not module._diff:
            result.pop("diff")
        for r in result["results"]:
            for h in r.get("held") or []:
                module.warn("%s: %s kept: %s" % (r["name"], h["name"], "; ".join(h["rules"])))
        if failed:
            module.fail_json(msg="prune failed for %d of %d folders: %s" % (
                len(failed), len(result["results"]), ", ".join(failed)), **result)
        module.exit_json(**result)
    try:
        result = run(module.params, check_mode=module.check_mode)
    except PruneError as e:
        module.fail_json(msg=str(e), **dict(e.result, changed=bool(e.result.get("removed"))))
    except (IOError, OSError) as e:
        module.fail_json(msg="path: cannot prune %s: %s" % (module.params["path"], e), changed=False)
    if not module._diff:
        result.pop("diff")
    for h in result["held"]:
        module.warn("%s kept: %s" % (h["name"], "; ".join(h["rules"])))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
