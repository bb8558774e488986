# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Entry point of the verifier: ``verify(path, checksums=True)`` -> result dict.

``path`` may be a database, log or checkpoint file; a backup set (a directory with manifest.json);
a directory holding ESE files but no manifest; or a directory of backup sets (all verified, then
their chains). The problem codes are in ``problems.CODES``.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.ese.backup.plugins.module_utils.ese_format import backupset as bs
from ansible_collections.ese.backup.plugins.module_utils.ese_format import checksum as ck
from ansible_collections.ese.backup.plugins.module_utils.ese_format import database as dbm
from ansible_collections.ese.backup.plugins.module_utils.ese_format import files as fs
from ansible_collections.ese.backup.plugins.module_utils.ese_format import logs as lgm
from ansible_collections.ese.backup.plugins.module_utils.ese_format.problems import problem, is_error, open_problem

# re-exported for callers
CODES = __import__("ansible_collections.ese.backup.plugins.module_utils.ese_format.problems",
                   fromlist=["CODES"]).CODES


def _result(kind, path, probs, databases=None, logs=None, checkpoints=None, sets=None, chains=None, notes=None):
    errors = [p for p in probs if is_error(p)]
    return {
        "valid": not errors, "kind": kind, "path": path,
        "problems": probs, "error_count": len(errors), "warning_count": len(probs) - len(errors),
        "databases": databases or [], "logs": logs or [], "checkpoints": checkpoints or [],
        "sets": sets or [], "chains": chains or [], "notes": notes or [],
    }


def _sibling_logs(directory, sign_log):
    """Log files next to a database whose signature matches (header-level read)."""
    out = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return out
    for fn in names:
        kind, base, ng = lgm.classify_log_name(fn)
        if kind not in ("numbered", "current") or fs.lkind(os.path.join(directory, fn)) != "file":
            continue
        info = lgm.check_log(os.path.join(directory, fn), name=fn, checksums=False)[0]
        if info and info.get("header_ok") and info["sign_log"] == sign_log:
            out.append(info["generation"])
    return out


def verify_file(path, checksums=True):
    fn = os.path.basename(path)
    kind, base, ng = lgm.classify_log_name(fn)
    if kind in ("numbered", "current", "tmp", "invalid"):
        info, probs = lgm.check_log(path, name=path, checksums=checksums, follow=True)
        if kind == "numbered" and info and info.get("header_ok") and info["generation"] != ng:
            probs.append(problem("LOG_GENERATION_MISMATCH", path, "name says generation %d, header says %d"
                                 % (ng, info["generation"]), generation=info["generation"]))
        logs = []
        if info and info.get("header_ok"):
            logs = [{"base_name": base, "gen_low": info["generation"], "gen_high": info["generation"],
                     "signature": info["sign_log"], "count": 1, "generations": [info["generation"]],
                     "files": [path], "version": info["version"], "created": info["created_iso"]}]
        return _result("log", path, probs, logs=logs)
    if fn.lower().endswith(".chk"):
        info, probs = lgm.check_checkpoint(path, name=path, follow=True)
        return _result("checkpoint", path, probs, checkpoints=[info] if info else [])
    try:
        with fs.open_regular(path, follow=True) as f:
            head = f.read(65536)
            size = os.fstat(f.fileno()).st_size
    except (IOError, OSError) as e:
        return _result("unknown", path, [open_problem(e, path)])
    # not the magic: maybe a database whose primary header is damaged; try the full detection
    if not dbm.looks_like_database(head) and dbm.detect_header(head, size)[0] is None:
        return _result("unknown", path, [problem("PATH_UNRECOGNISED", path, "not an ESE database, log or checkpoint")])
    info, probs = dbm.check_database(path, name=path, checksums=checksums, follow=True)
    need = dbm.required_generations(info)
    info["required_generations"] = list(need) if need else None
    if need:
        have = _sibling_logs(os.path.dirname(os.path.abspath(path)), info.get("sign_log"))
        missing = lgm.missing_in_range(have, need[0], need[1])
        if missing:
            probs.append(problem("LOG_REQUIRED_MISSING", path, "%s needs log generations %d-%d; missing next to it: %s"
                                 % ("restore" if info.get("streamed") else "recovery", need[0], need[1],
                                    lgm.compress_ranges(missing)), generation=missing[0]))
    return _result("database", path, probs, databases=[info])


def _strip(s):
    return dict((k, v) for k, v in s.items() if not k.startswith("_"))


def verify(path, checksums=True, workers=None):
    """Verify ``path``; never modifies anything. Returns the result dict (see module RETURN)."""
    t0 = time.time()
    notes = []
    if not ck.HAS_NUMPY and checksums:
        notes.append("numpy is not installed: page checksums use the slower pure-Python path")
    if not isinstance(path, str) or not path.strip():
        raise ValueError("path is empty: name a database, log, checkpoint, backup set or folder")
    path = os.path.abspath(path)
    try:
        kind = fs.kind_of(os.stat(path).st_mode)     # the operator's own path may be a link
    except OSError:
        kind = None
    if kind == "file":
        if os.path.basename(path) == bs.MANIFEST:
            res = verify(os.path.dirname(path), checksums=checksums, workers=workers)
            return res
        res = verify_file(path, checksums)
    elif kind == "dir":
        if fs.lkind(os.path.join(path, bs.MANIFEST)) is not None:
            res = _one_set(path, checksums, kept=False)
        elif bs.is_partial(os.path.basename(path)) and fs.lkind(os.path.join(path, bs.KEPT)) is not None:
            res = _one_set(path, checksums, kept=True)
        else:
            names, kept, partial, links = bs.find_sets(path)
            if names or kept:
                res = _verify_sets(path, names, kept, partial, links, checksums, workers)
            else:
                g = bs.verify_folder(path, checksums=checksums)
                probs = g["problems"]
                if not g["databases"] and not g["logs"] and not g["checkpoints"]:
                    probs.append(problem("PATH_UNRECOGNISED", path,
                                         "no backup set, database, log or checkpoint found in the directory"))
                res = _result("folder", path, probs, databases=g["databases"], logs=g["logs"],
                              checkpoints=g["checkpoints"])
                res["problems"].extend(_leftovers(partial, links))
    elif kind is not None:
        res = _result("unknown", path, [problem("FILE_NOT_REGULAR", path, "a %s, not a regular file or folder: "
                                                "not opened" % kind.replace("_", " "))])
    else:
        raise IOError("path does not exist: %s" % path)
    res["notes"] = notes + res["notes"] + [d["note"] for d in res["databases"] if d.get("note")]
    # restorable: every backup set verified is valid and its ending record says its session ended with a valid
    # backup (kept-logs folders are never restorable); None when the path holds no backup set
    sets = list(res["sets"])
    res["restorable"] = all(x.get("restorable") for x in sets) if sets else None
    res["checksums"] = bool(checksums)
    res["numpy"] = ck.HAS_NUMPY
    res["seconds"] = round(time.time() - t0, 3)
    return res


def _set_summary(s):
    out = {"name": s["name"], "path": s["path"], "type": s["type"], "created": s["created"],
           "status": s["status"], "valid": s["valid"], "gen_low": s["gen_low"], "gen_high": s["gen_high"],
           "sign_log": s["sign_log"], "problem_count": len(s["problems"]),
           "databases": [d["file"] for d in s["databases"]],
           "restorable": bool(s.get("restorable")), "ending": s.get("ending")}
    if s["status"] == "kept_logs":
        out["reason"] = s.get("reason")
    return out


def _one_set(path, checksums, kept):
    s = bs.verify_set(path, checksums=checksums, kept=kept)
    return _result("kept_logs" if kept else "set", path, s["problems"], databases=s["databases"], logs=s["logs"],
                   sets=[_set_summary(s)])


def _leftovers(partial, links):
    probs = [problem("SET_PARTIAL", p, "unfinished set directory without %s: not verified" % bs.KEPT)
             for p in partial]
    probs += [problem("FOLDER_SYMLINK", n, "a symbolic link to a set folder: not followed") for n in links]
    return probs


def _verify_sets(root, names, kept, partial, links, checksums, workers):
    workers = workers or min(2, os.cpu_count() or 1)
    todo = [(n, False) for n in names] + [(n, True) for n in kept]

    def one(item):
        n, k = item
        return bs.verify_set(os.path.join(root, n), checksums=checksums, prefix=n + "/", kept=k)
    if workers > 1 and len(todo) > 1:
        with ThreadPoolExecutor(max_workers=workers) as ex:
            sets = list(ex.map(one, todo))
    else:
        sets = [one(t) for t in todo]
    probs = []
    dbs, logs = [], []
    for s in sets:
        probs.extend(s["problems"])
        dbs.extend(s["databases"])
        for lg in s["logs"]:
            logs.append(dict(lg, set=s["name"]))
    chains, cp = bs.chains(sets)
    probs.extend(cp)
    probs.extend(_leftovers(partial, links))
    return _result("sets", root, probs, databases=dbs, logs=logs, sets=[_set_summary(s) for s in sets],
                   chains=chains)


# --------------------------------------------------------------------------------------------
# many paths at once (a fleet's backup share): one result per path, in parallel processes
# --------------------------------------------------------------------------------------------
MAX_PROCESSES = 256


def default_processes():
    """The cores this process may run on (its CPU affinity), else the machine's; at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_processes(processes):
    """``processes`` as a number of worker processes (None: ``default_processes()``); ValueError when out of range."""
    if processes is None:
        return default_processes()
    if isinstance(processes, bool) or not isinstance(processes, int) or not 1 <= processes <= MAX_PROCESSES:
        raise ValueError("processes must be a whole number from 1 to %d, not %r" % (MAX_PROCESSES, processes))
    return processes


def host_folders(root):
    """The folders directly under ``root`` to verify one by one: ``(names, links)``, sorted.

    Hidden folders (a name starting with '.') are left out; symbolic links to folders are listed in
    ``links`` (not followed). Raises ValueError when ``root`` is not a folder, or is a backup set or a
    folder of backup sets itself (its subfolders are then not things to verify on their own).
    """
    if fs.lkind(root) != "dir" and not os.path.isdir(root):
        raise ValueError("%s is not a folder" % root)
    if fs.lkind(os.path.join(root, bs.MANIFEST)) is not None:
        raise ValueError("%s is a backup set itself (it holds %s)" % (root, bs.MANIFEST))
    sets, kept, dummy_partial, dummy_set_links = bs.find_sets(root)
    if sets or kept:
        raise ValueError("%s is a folder of backup sets itself (%s)" % (root, ", ".join((sets + kept)[:3])))
    names, links = [], []
    for n in sorted(os.listdir(root)):
        if n.startswith("."):
            continue
        k = fs.lkind(os.path.join(root, n))
        if k == "dir":
            names.append(n)
        elif k == "symlink" and os.path.isdir(os.path.join(root, n)):
            links.append(n)
    return names, links


def _verify_entry(job):
    """One path of ``verify_many``: ``(index, result)``; runs in a worker process (or inline)."""
    index, path, name, checksums, workers = job
    try:
        res = verify(path, checksums=checksums, workers=workers)
    except Exception as e:  # pylint: disable=broad-except  # one path's failure must not lose the others' results
        res = _failed(path, "cannot verify %s: %s: %s" % (path, type(e).__name__, e))
    res["name"] = name
    return index, res


def _failed(path, msg):
    return {"path": os.path.abspath(path), "failed": True, "valid": None, "msg": msg}


def _link_entry(root, name):
    path = os.path.join(root, name)
    res = _result("unknown", path, [problem("FOLDER_SYMLINK", name, "a symbolic link to a folder: not followed")])
    res.update({"name": name, "restorable": None, "checksums": True, "numpy": ck.HAS_NUMPY, "seconds": 0.0})
    return res


def verify_many(paths, checksums=True, processes=None, names=None):
    """Verify each of ``paths`` on its own, each as ``verify(path)`` would, ``processes`` at a time.

    ``names`` (same length) name the results (default: each path's last component). Returns a dict:
    ``results`` (one per path, in order: the ``verify`` result with ``name``, or ``failed``/``msg`` when
    the path could not be verified), ``valid`` (all valid), ``restorable``, ``error_count``,
    ``warning_count``, ``problems`` (every result's, each with ``path`` and ``name``), ``notes``,
    ``processes`` (the worker processes used) and ``seconds``.

    The workers are forked processes (a pool of ``min(processes, len(paths))``); with one path or
    ``processes=1`` everything runs in this process.
    """
    t0 = time.time()
    processes = check_processes(processes)
    paths = list(paths)
    names = list(names) if names is not None else [os.path.basename(os.path.normpath(p)) for p in paths]
    if len(names) != len(paths):
        raise ValueError("names must name every path: %d names for %d paths" % (len(names), len(paths)))
    used = min(processes, len(paths)) or 1
    # one set at a time in each worker process: the processes already take the cores
    jobs = [(i, p, n, checksums, 1 if used > 1 else None) for i, (p, n) in enumerate(zip(paths, names))]
    results = [None] * len(jobs)
    if used > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        # fork: the workers inherit the loaded modules (an AnsiballZ module cannot be re-imported by a
        # spawned interpreter). A worker that dies (killed, out of memory) breaks the pool instead of
        # hanging it; the paths left unfinished are then verified again one worker each, so only the path
        # whose worker dies again is a failed result.
        def in_pool(todo, workers):
            unfinished = []
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
                for job, future in [(job, pool.submit(_verify_entry, job)) for job in todo]:
                    try:
                        i, res = future.result()
                        results[i] = res
                    except BrokenProcessPool:
                        unfinished.append(job)
            return unfinished

        for job in [j for j in in_pool(jobs, used) if in_pool([j], 1)]:
            results[job[0]] = dict(_failed(job[1], "cannot verify %s: its worker process died (killed, or out "
                                           "of memory)" % job[1]), name=job[2])
    else:
        for job in jobs:
            i, res = _verify_entry(job)
            results[i] = res
    return summarise(results, checksums, used, t0)


def verify_subfolders(root, checksums=True, processes=None):
    """``verify_many`` over the folders directly under ``root`` (a share with one folder per host).

    Symbolic links to folders are results with a FOLDER_SYMLINK problem (not followed). Raises ValueError
    when ``root`` has no such folder (see ``host_folders``).
    """
    t0 = time.time()
    processes = check_processes(processes)
    root = os.path.abspath(root)
    names, links = host_folders(root)
    if not names and not links:
        raise ValueError("%s holds no folder to verify" % root)
    res = verify_many([os.path.join(root, n) for n in names], checksums=checksums, processes=processes,
                      names=names) if names else None
    results = sorted((res["results"] if res else []) + [_link_entry(root, n) for n in links],
                     key=lambda r: r["name"])
    return summarise(results, checksums, res["processes"] if res else 1, t0)


def summarise(results, checksums, used, t0):
    """The top of a many-path result from its ``results``."""
    probs = []
    for r in results:
        for p in r.get("problems") or []:
            probs.append(dict(p, path=r.get("path"), name=r.get("name")))
    notes = []
    for r in results:
        for n in r.get("notes") or []:
            if n not in notes:
                notes.append(n)
    sets = [r.get("restorable") for r in results if r.get("restorable") is not None]
    return {
        "valid": bool(results) and all(r.get("valid") is True for r in results),
        "restorable": all(sets) and not any(r.get("failed") for r in results) if sets else None,
        "kind": "many", "results": results, "problems": probs,
        "error_count": sum(r.get("error_count") or 0 for r in results),
        "warning_count": sum(r.get("warning_count") or 0 for r in results),
        "failed_paths": [r["path"] for r in results if r.get("failed")],
        "notes": notes, "checksums": bool(checksums), "numpy": ck.HAS_NUMPY, "processes": used,
        "seconds": round(time.time() - t0, 3),
    }
