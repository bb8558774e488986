# -*- coding: utf-8 -*-
# Copyright: contributors to ese.backup
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup sets (docs/architecture.md section 3), plain ESE folders, and chains of sets."""
from __future__ import annotations

import hashlib
import json
import os
import re

from ansible_collections.ese.backup.plugins.module_utils.ese_format import database as dbm
from ansible_collections.ese.backup.plugins.module_utils.ese_format import logs as lgm
from ansible_collections.ese.backup.plugins.module_utils.ese_format.problems import problem, is_error

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "ese.backup/1"
SET_TYPES = ("full", "copy", "incremental", "differential")
_HEX56 = re.compile(r"^[0-9a-fA-F]{56}$")


def safe_name(name):
    """True for a relative, '/'-separated name without '..', a drive, a root or a backslash."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        return False
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return False
    parts = name.split("/")
    return all(p not in ("", ".", "..") for p in parts)


def sha256_file(path, chunk=4 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for blk in iter(lambda: f.read(chunk), b""):
            h.update(blk)
    return h.hexdigest()


def _walk(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            full = os.path.join(dirpath, fn)
            out.append(os.path.relpath(full, root).replace(os.sep, "/"))
    return out


def _is_database(path):
    try:
        with open(path, "rb") as f:
            return dbm.looks_like_database(f.read(8))
    except (IOError, OSError):
        return False


def classify(root, rel):
    """Role of a file found in a folder: database, log, checkpoint, ignored (tmp/reserve/flush map), other."""
    fn = rel.rsplit("/", 1)[-1]
    kind = lgm.classify_log_name(fn)[0]
    if kind in ("tmp", "reserve"):
        return "ignored"
    if kind in ("numbered", "current", "invalid"):
        return "log"
    if fn.lower().endswith(".chk"):
        return "checkpoint"
    if fn.lower().endswith(".jfm"):
        return "ignored"
    if _is_database(os.path.join(root, rel)):
        return "database"
    return "other"


def verify_group(root, dbs, logs, chks, checksums=True, want_sha=False, in_set=False, display=None):
    """Check databases, logs and checkpoints that belong together (a set or an ESE folder).

    ``dbs``/``logs``/``chks`` are names relative to ``root``. ``display(rel)`` gives the name used
    in problems. Returns a dict: databases, logs (streams), checkpoints, problems, sha256 (rel -> hex).
    """
    display = display or (lambda r: r)
    probs = []
    sha = {}
    dinfos = []
    for rel in dbs:
        info, p = dbm.check_database(os.path.join(root, rel), name=display(rel), checksums=checksums,
                                     want_sha256=want_sha, in_set=in_set)
        info["_rel"] = rel
        if "sha256" in info:
            sha[rel] = info.pop("sha256")
        dinfos.append(info)
        probs.extend(p)
    # logs, grouped into streams by base name
    streams = {}
    for rel in logs:
        fn = rel.rsplit("/", 1)[-1]
        kind, base, ng = lgm.classify_log_name(fn)
        if kind == "invalid":
            probs.append(problem("LOG_NAME_INVALID", display(rel), "not <base><hex generation>.log"))
            continue
        info, p = lgm.check_log(os.path.join(root, rel), name=display(rel), checksums=checksums,
                                want_sha256=want_sha)
        if info and "sha256" in info:
            sha[rel] = info.pop("sha256")
        probs.extend(p)
        streams.setdefault(base.upper(), []).append((rel, kind, ng, info))
    db_sign = None
    for d in dinfos:
        s = d.get("sign_log")
        if s and s != "0" * 56:
            db_sign = s
            break
    summaries = []
    for base in sorted(streams):
        summary, p = lgm.check_stream(streams[base], display, sign_log=db_sign, base=base)
        summaries.append(summary)
        probs.extend(p)
    # checkpoints
    cinfos = []
    for rel in chks:
        info, p = lgm.check_checkpoint(os.path.join(root, rel), name=display(rel))
        probs.extend(p)
        if info is None:
            continue
        cinfos.append(info)
        expect = db_sign or (summaries[0]["signature"] if summaries else None)
        if expect and info["sign_log"] != expect:
            probs.append(problem("CHK_SIGNATURE_MISMATCH", display(rel),
                                 "checkpoint signature differs from the %s" % ("database's" if db_sign else "logs'")))
        elif summaries:
            gens = set()
            for s in summaries:
                if s["signature"] == info["sign_log"]:
                    gens.update(s["generations"])
            if gens and info["generation"] not in gens:
                probs.append(problem("CHK_GENERATION_MISSING", display(rel),
                                     "no log of the checkpoint's generation %d" % info["generation"],
                                     generation=info["generation"]))
    # what each database needs
    for d in dinfos:
        need = dbm.required_generations(d)
        d["required_generations"] = list(need) if need else None
        if not need:
            continue
        gens = set()
        for s in summaries:
            if s["signature"] == d.get("sign_log"):
                gens.update(s["generations"])
        missing = lgm.missing_in_range(gens, need[0], need[1])
        if missing:
            probs.append(problem("LOG_REQUIRED_MISSING", d["file"],
                                 "%s needs log generations %d-%d; missing: %s"
                                 % ("restore" if d.get("streamed") else "recovery", need[0], need[1],
                                    lgm.compress_ranges(missing)), generation=missing[0]))
    return {"databases": dinfos, "logs": summaries, "checkpoints": cinfos, "problems": probs, "sha256": sha}


def load_manifest(path, display):
    probs = []
    try:
        with open(path, "rb") as f:
            m = json.loads(f.read().decode("utf-8"))
    except (IOError, OSError, ValueError, UnicodeDecodeError) as e:
        return None, [problem("MANIFEST_INVALID", display, "cannot read manifest: %s" % e)]
    if not isinstance(m, dict):
        return None, [problem("MANIFEST_INVALID", display, "the manifest is not a JSON object")]
    if m.get("format") != MANIFEST_FORMAT:
        probs.append(problem("MANIFEST_INVALID", display, "format is %r, expected %r" % (m.get("format"), MANIFEST_FORMAT)))
    if m.get("type") not in SET_TYPES:
        probs.append(problem("MANIFEST_INVALID", display, "type %r is not one of %s" % (m.get("type"), ", ".join(SET_TYPES))))
    files = m.get("files")
    if not isinstance(files, list) or not all(isinstance(x, dict) and "name" in x for x in files):
        probs.append(problem("MANIFEST_INVALID", display, "'files' must be a list of objects with a name"))
        m["files"] = []
    return m, probs


def verify_set(set_dir, checksums=True, prefix=""):
    """Verify one backup set directory (with manifest.json). Returns a per-set result dict."""
    def display(rel):
        return prefix + rel
    name = os.path.basename(os.path.normpath(set_dir))
    probs = []
    m, p = load_manifest(os.path.join(set_dir, MANIFEST), display(MANIFEST))
    probs.extend(p)
    present = [r for r in _walk(set_dir) if r != MANIFEST]
    listed = {}
    if m is not None:
        for e in m["files"]:
            n = e.get("name")
            if not safe_name(n):
                probs.append(problem("MANIFEST_UNSAFE_NAME", display(MANIFEST), "unsafe file name %r" % (n,)))
                continue
            listed[n] = e
    for rel in (present if m is not None else []):
        if rel not in listed:
            probs.append(problem("FILE_UNLISTED", display(rel), "present in the set but not in the manifest"))
    dbs, logs, others = [], [], []
    for n, e in listed.items():
        full = os.path.join(set_dir, *n.split("/"))
        if not os.path.isfile(full):
            probs.append(problem("FILE_MISSING", display(n), "listed in the manifest but absent"))
            continue
        size = os.path.getsize(full)
        if e.get("size") is not None and e.get("size") != size:
            probs.append(problem("FILE_SIZE_MISMATCH", display(n), "size %d, manifest says %s" % (size, e.get("size"))))
        role = e.get("role") or ("database" if n.startswith("databases/") else "log" if n.startswith("logs/") else "other")
        (dbs if role == "database" else logs if role == "log" else others).append(n)
    if m is None:   # unreadable manifest: still judge what is there
        for rel in present:
            r = classify(set_dir, rel)
            (dbs if r == "database" else logs if r == "log" else others).append(rel)
    g = verify_group(set_dir, sorted(dbs), sorted(logs), [], checksums=checksums, want_sha=True,
                     in_set=True, display=display)
    probs.extend(g["problems"])
    sha = g["sha256"]
    for n in others:
        try:
            sha[n] = sha256_file(os.path.join(set_dir, *n.split("/")))
        except (IOError, OSError) as e:
            probs.append(problem("READ_ERROR", display(n), str(e)))
    for n, e in listed.items():
        want = (e.get("sha256") or "").lower()
        if n in sha and want and sha[n] != want:
            probs.append(problem("FILE_HASH_MISMATCH", display(n), "SHA-256 %s, manifest says %s" % (sha[n], want)))
    if m is not None:
        probs.extend(_manifest_facts(m, g, listed, display))
    if not g["databases"] and not any(s["count"] for s in g["logs"]):
        probs.append(problem("SET_EMPTY", display(MANIFEST) if m is not None else prefix or name,
                             "the set holds no database and no log"))
    stream = g["logs"][0] if g["logs"] else None
    sign = stream["signature"] if stream else None
    for d in g["databases"]:
        if d.get("sign_log"):
            sign = d["sign_log"]
            break
    gen_low = stream["gen_low"] if stream else None
    gen_high = stream["gen_high"] if stream else None
    if m is not None and gen_low is None and isinstance(m.get("logs"), dict):
        gen_low, gen_high = m["logs"].get("gen_low"), m["logs"].get("gen_high")
    for d in g["databases"]:
        d.pop("_rel", None)
    return {
        "name": name, "path": set_dir, "type": (m or {}).get("type"), "created": (m or {}).get("created"),
        "valid": not any(is_error(x) for x in probs), "gen_low": gen_low, "gen_high": gen_high,
        "sign_log": sign, "databases": g["databases"], "logs": g["logs"], "checkpoints": g["checkpoints"],
        "problems": probs,
        "_log_sha": dict((n.rsplit("/", 1)[-1], sha.get(n)) for n in logs),
    }


def _manifest_facts(m, g, listed, display):
    probs = []
    dbmap = dict((d["_rel"], d) for d in g["databases"])
    for e in m.get("databases") or []:
        if not isinstance(e, dict):
            continue
        d = dbmap.get(e.get("file"))
        if d is None or d.get("page_size") is None:
            continue
        facts = [("page_size", d.get("page_size")), ("db_state", d.get("state")),
                 ("gen_min_required", d.get("gen_min_required")), ("gen_max_required", d.get("gen_max_required"))]
        t = d.get("trailer") or {}
        bk = t.get("bkinfo") or {}
        if bk:
            facts += [("backup_gen_low", bk.get("gen_low")), ("backup_gen_high", bk.get("gen_high"))]
        for key, actual in facts:
            if e.get(key) is not None and actual is not None and e.get(key) != actual:
                probs.append(problem("MANIFEST_MISMATCH", display(e["file"]),
                                     "%s is %s, manifest says %s" % (key, actual, e.get(key))))
        for key in ("sign_db", "sign_log"):
            want = e.get(key)
            if isinstance(want, str) and _HEX56.match(want) and d.get(key) and want.lower() != d[key]:
                probs.append(problem("MANIFEST_MISMATCH", display(e["file"]), "%s differs from the header's" % key))
    lg = m.get("logs")
    if isinstance(lg, dict) and g["logs"]:
        s = g["logs"][0]
        for key in ("gen_low", "gen_high"):
            if lg.get(key) is not None and s[key] is not None and lg.get(key) != s[key]:
                probs.append(problem("MANIFEST_MISMATCH", display(MANIFEST),
                                     "logs.%s is %s, the log files give %s" % (key, lg.get(key), s[key])))
    return probs


def verify_folder(root, checksums=True, prefix=""):
    """A directory holding ESE files but no manifest (e.g. a file-level copy of a live ESE folder)."""
    files = [r for r in _walk(root) if "/" not in r]
    dbs, logs, chks = [], [], []
    for rel in files:
        r = classify(root, rel)
        (dbs if r == "database" else logs if r == "log" else chks if r == "checkpoint" else []).append(rel)
    g = verify_group(root, dbs, logs, chks, checksums=checksums, display=lambda r: prefix + r)
    for d in g["databases"]:
        d.pop("_rel", None)
    return g


def find_sets(root):
    """Immediate subdirectories with a manifest, and leftover '.partial' directories."""
    sets, partial = [], []
    for n in sorted(os.listdir(root)):
        full = os.path.join(root, n)
        if not os.path.isdir(full):
            continue
        if n.startswith(".") and n.endswith(".partial"):
            partial.append(n)
        elif os.path.isfile(os.path.join(full, MANIFEST)):
            sets.append(n)
    return sets, partial


def chains(sets):
    """Chain checks over verified sets (ordered by creation time, full first, generations, name).

    Returns ``(chains, problems)``: each chain is a full set followed by its incrementals and
    differentials; copy sets stand alone.
    """
    probs = []
    # 'created' has one-second resolution: within a second a full set comes first, then by generations
    order = sorted(sets, key=lambda s: (s.get("created") or "", 0 if s.get("type") == "full" else 1,
                                        s.get("gen_low") or 0, s.get("gen_high") or 0, s["name"]))
    out = []
    cur = None
    prev = None
    for s in order:
        t = s.get("type")
        if t == "full":
            cur = {"base": s["name"], "sets": [s["name"]], "gen_low": s["gen_low"], "gen_high": s["gen_high"],
                   "continuous": True, "_members": [s]}
            out.append(cur)
            prev = s
            continue
        if t == "copy" or t not in ("incremental", "differential"):
            out.append({"base": s["name"], "sets": [s["name"]], "gen_low": s["gen_low"],
                        "gen_high": s["gen_high"], "continuous": True, "_members": [s]})
            continue
        if cur is None:
            probs.append(problem("CHAIN_NO_BASE", s["name"], "%s set with no earlier full set" % t))
            continue
        ref = prev if t == "incremental" else cur["_members"][0]
        ok = True
        if s["gen_low"] is not None and ref["gen_high"] is not None and s["gen_low"] > ref["gen_high"] + 1:
            probs.append(problem("CHAIN_GAP", s["name"], "starts at generation %d but %s ended at %d"
                                 % (s["gen_low"], ref["name"], ref["gen_high"]), generation=ref["gen_high"] + 1))
            ok = False
        if s.get("sign_log") and ref.get("sign_log") and s["sign_log"] != ref["sign_log"]:
            probs.append(problem("CHAIN_SIGNATURE_MISMATCH", s["name"],
                                 "log signature differs from %s's" % ref["name"]))
            ok = False
        for other in cur["_members"]:
            for fn, h in s["_log_sha"].items():
                oh = other["_log_sha"].get(fn)
                if h and oh and h != oh:
                    probs.append(problem("CHAIN_LOG_CONFLICT", s["name"] + "/logs/" + fn,
                                         "differs from the same log in %s" % other["name"]))
                    ok = False
        cur["sets"].append(s["name"])
        cur["_members"].append(s)
        if s["gen_high"] is not None:
            cur["gen_high"] = max(cur["gen_high"] or 0, s["gen_high"])
        cur["continuous"] = cur["continuous"] and ok
        if t == "incremental":
            prev = s
    for c in out:
        c.pop("_members", None)
    return out, probs
