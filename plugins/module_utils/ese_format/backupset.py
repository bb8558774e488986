# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup sets (docs/architecture.md section 3), plain ESE folders, and chains of sets."""
from __future__ import annotations

import hashlib
import os
import re

from ansible_collections.ese.backup.plugins.module_utils.ese_format import database as dbm
from ansible_collections.ese.backup.plugins.module_utils.ese_format import files as fs
from ansible_collections.ese.backup.plugins.module_utils.ese_format import logs as lgm
from ansible_collections.ese.backup.plugins.module_utils.ese_format.problems import problem, is_error

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "ese.backup/1"
# The reason file the engine writes into a staging folder ('.<name>.partial') that it keeps because
# logs were truncated on the host before the set could be published (docs/verify.md, "Kept-logs folders").
KEPT = "kept-logs.json"
KEPT_FORMAT = "ese.backup/kept-logs/1"
# How the session or run that wrote a set ended (docs/sessions.md, "The ending record"): written by the engine at
# end (sessions) or before publishing (run), atomically. A set without it, or whose ending is not valid, is not
# restorable.
ENDING = "ending.json"
ENDING_FORMAT = "ese.backup/ending/1"
SET_TYPES = ("full", "copy", "incremental", "differential")
RECORDED_AS = ("full", "copy", "incremental", "differential", None)
_HEX56 = re.compile(r"^[0-9a-fA-F]{56}$")
_BASE_NAME = re.compile(r'^[^\\/:*?"<>|.\x00-\x1f]{3}$')


def safe_name(name):
    """True for a relative, '/'-separated name without '..', a drive, a root or a backslash."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        return False
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return False
    parts = name.split("/")
    return all(p not in ("", ".", "..") for p in parts)


def safe_base_name(name):
    """True for a log base name as ESE uses it: three characters, no separator, dot or control character."""
    return isinstance(name, str) and bool(_BASE_NAME.match(name))


def sha256_file(path, chunk=4 << 20):
    h = hashlib.sha256()
    with fs.open_regular(path) as f:
        for blk in iter(lambda: f.read(chunk), b""):
            h.update(blk)
    return h.hexdigest()


def _is_database(path):
    try:
        with fs.open_regular(path) as f:
            return dbm.looks_like_database(f.read(8))
    except (IOError, OSError):
        return False


def oddity_problems(odd, display):
    """Problems for the entries ``fs.inventory`` did not list as regular files (never opened)."""
    probs = []
    for rel, kind, detail in odd:
        if kind == "dir_symlink":
            probs.append(problem("FOLDER_SYMLINK", display(rel), detail + ": not followed"))
        elif kind == "symlink":
            probs.append(problem("FILE_SYMLINK", display(rel), detail + ": not followed"))
        elif kind == "unreadable":
            probs.append(problem("READ_ERROR", display(rel), detail))
        else:
            probs.append(problem("FILE_NOT_REGULAR", display(rel), detail + ": skipped, not opened"))
    return probs


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


def load_manifest(path, display, kept=False):
    """Read manifest.json (or, with ``kept``, kept-logs.json) within the size and depth limits."""
    probs = []
    invalid = "KEPT_LOGS_INVALID" if kept else "MANIFEST_INVALID"
    what = KEPT if kept else "manifest"
    try:
        m = fs.load_json(path)
    except fs.JsonLimitError as e:
        return None, [problem("MANIFEST_UNREADABLE", display, "%s not read: %s" % (what, e))]
    except fs.NotRegularFile as e:
        code = "FILE_SYMLINK" if e.kind == "symlink" else "FILE_NOT_REGULAR"
        return None, [problem(code, display, "%s is a %s: not opened" % (what, e.kind))]
    except (IOError, OSError, ValueError, UnicodeDecodeError) as e:
        return None, [problem(invalid, display, "cannot read %s: %s" % (what, e))]
    if not isinstance(m, dict):
        return None, [problem(invalid, display, "the %s is not a JSON object" % what)]
    want = KEPT_FORMAT if kept else MANIFEST_FORMAT
    if m.get("format") != want:
        probs.append(problem(invalid, display, "format is %r, expected %r" % (m.get("format"), want)))
    if not kept and m.get("type") not in SET_TYPES:
        probs.append(problem(invalid, display, "type %r is not one of %s" % (m.get("type"), ", ".join(SET_TYPES))))
    files = m.get("files")
    if not isinstance(files, list) or not all(isinstance(x, dict) and "name" in x for x in files):
        probs.append(problem(invalid, display, "'files' must be a list of objects with a name"))
        m["files"] = []
    if m.get("databases") is not None and not isinstance(m.get("databases"), list):
        probs.append(problem(invalid, display, "'databases' must be a list"))
        m["databases"] = []
    for key in ("logs", "source"):
        if m.get(key) is not None and not isinstance(m.get(key), dict):
            probs.append(problem(invalid, display, "'%s' must be an object" % key))
            m[key] = {}
    return m, probs


def _self_contained(m, listed, roles, display, meta):
    """databases[].file and the base names must stay inside the set (restore uses them)."""
    probs = []
    for e in m.get("databases") or []:
        if not isinstance(e, dict):
            probs.append(problem("MANIFEST_INVALID", display(meta), "a databases[] entry is not an object"))
            continue
        f = e.get("file")
        if f is None:
            continue          # an incremental records the databases' facts without a copy of them
        if not safe_name(f):
            probs.append(problem("MANIFEST_DB_FILE_UNSAFE", display(meta),
                                 "databases[].file %r is not a name inside the set" % (f,)))
        elif f not in listed or roles.get(f) != "database":
            probs.append(problem("MANIFEST_DB_FILE_ROLE", display(meta),
                                 "databases[].file %r is %s" % (f, "not listed in files" if f not in listed else
                                                                "listed as a %s, not a database" % roles.get(f))))
    for key in ("logs", "source"):
        sect = m.get(key) or {}
        if "base_name" in sect and not safe_base_name(sect.get("base_name")):
            probs.append(problem("MANIFEST_BASE_NAME_UNSAFE", display(meta),
                                 "%s.base_name %r is not a 3-character log base name" % (key, sect.get("base_name"))))
    return probs


def load_ending(set_dir, display):
    """Read ``ending.json``: ``(ending or None, restorable, problems)``."""
    path = os.path.join(set_dir, ENDING)
    kind = fs.lkind(path)
    if kind is None:
        return None, False, [problem("SET_ENDING_MISSING", display(ENDING),
                                     "the set has no ending record: the session that wrote it has not ended, or "
                                     "ended without recording how (a crash); its copies may be valid, but it is "
                                     "not known to be a backup ESE recorded")]
    if kind != "file":
        code = "FILE_SYMLINK" if kind == "symlink" else "FILE_NOT_REGULAR"
        return None, False, [problem(code, display(ENDING), "the ending record is a %s: not opened" % kind)]
    try:
        e = fs.load_json(path)
    except fs.JsonLimitError as err:
        return None, False, [problem("SET_ENDING_INVALID", display(ENDING), "not read: %s" % err)]
    except (IOError, OSError, ValueError, UnicodeDecodeError) as err:
        return None, False, [problem("SET_ENDING_INVALID", display(ENDING), "cannot read it: %s" % err)]
    if not isinstance(e, dict) or e.get("format") != ENDING_FORMAT or not isinstance(e.get("backup_valid"), bool) \
            or e.get("recorded_as") not in RECORDED_AS or not isinstance(e.get("proof"), dict):
        return None, False, [problem("SET_ENDING_INVALID", display(ENDING),
                                     "not an ending record of format %r with backup_valid, recorded_as and proof"
                                     % ENDING_FORMAT)]
    if not e["backup_valid"]:
        missing = e["proof"].get("missing")
        why = "; ".join(str(m) for m in missing) if isinstance(missing, list) and missing else "no proof recorded"
        return e, False, [problem("SET_ENDING_NOT_VALID", display(ENDING),
                                  "the session%s ended %s without a valid backup: %s"
                                  % (" %s" % e.get("session") if isinstance(e.get("session"), str) else "",
                                     e.get("ended"), why))]
    return e, True, []


def _role(n, e):
    r = e.get("role")
    if isinstance(r, str) and r:
        return r
    return "database" if n.startswith("databases/") else "log" if n.startswith("logs/") else "other"


def verify_set(set_dir, checksums=True, prefix="", kept=False):
    """Verify one backup set directory (with manifest.json). Returns a per-set result dict.

    ``kept``: the directory is a kept-logs staging folder ('.<name>.partial' with kept-logs.json);
    its reason file stands in for the manifest (the same file list), and the result says so.
    """
    def display(rel):
        return prefix + rel
    name = os.path.basename(os.path.normpath(set_dir))
    meta = KEPT if kept else MANIFEST
    probs = []
    present, odd = fs.inventory(set_dir)
    meta_kind = fs.lkind(os.path.join(set_dir, meta))
    if meta_kind in ("file", None):
        m, p = load_manifest(os.path.join(set_dir, meta), display(meta), kept=kept)
        probs.extend(p)
    else:
        m = None      # a link or a FIFO in the manifest's place: reported with the oddities, not opened
    probs.extend(oddity_problems(odd, display))
    blocked = [rel for rel, _k, _d in odd]
    # a kept folder may also hold the manifest the engine wrote but could not publish
    present = [r for r in present if r != meta and not (kept and r == MANIFEST) and r != ENDING]
    listed = {}
    roles = {}
    if m is not None:
        for e in m["files"]:
            n = e.get("name")
            if not safe_name(n):
                probs.append(problem("MANIFEST_UNSAFE_NAME", display(meta), "unsafe file name %r" % (n,)))
                continue
            listed[n] = e
            roles[n] = _role(n, e)
        probs.extend(_self_contained(m, listed, roles, display, meta))
    for rel in (present if m is not None else []):
        if rel not in listed:
            probs.append(problem("FILE_UNLISTED", display(rel), "present in the set but not in the %s" % meta))
    present_set = set(present)
    dbs, logs, others = [], [], []
    for n, e in listed.items():
        if n not in present_set:
            if not any(n == b or n.startswith(b + "/") for b in blocked):   # a link or FIFO: reported above
                probs.append(problem("FILE_MISSING", display(n), "listed in the %s but absent" % meta))
            continue
        size = fs.size_of(os.path.join(set_dir, *n.split("/")))
        if e.get("size") is not None and e.get("size") != size:
            probs.append(problem("FILE_SIZE_MISMATCH", display(n), "size %d, %s says %s" % (size, meta, e.get("size"))))
        role = roles[n]
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
        want = e.get("sha256")
        want = want.lower() if isinstance(want, str) else ""
        if n in sha and want and sha[n] != want:
            probs.append(problem("FILE_HASH_MISMATCH", display(n), "SHA-256 %s, %s says %s" % (sha[n], meta, want)))
    if m is not None:
        probs.extend(_manifest_facts(m, g, listed, display))
    if not g["databases"] and not any(s["count"] for s in g["logs"]):
        probs.append(problem("SET_EMPTY", display(meta) if m is not None else prefix or name,
                             "the set holds no database and no log"))
    ending, ending_ok = None, False
    if not kept:
        ending, ending_ok, p = load_ending(set_dir, display)
        probs.extend(p)
    reason = None
    if kept:
        reason = (m or {}).get("reason")
        reason = reason if isinstance(reason, str) else None
        probs.insert(0, problem("SET_KEPT_LOGS", prefix.rstrip("/") or name,
                                "kept-logs folder%s: it holds the only copy of logs truncated on the host, "
                                "so keep it until a later full backup is verified; its files were verified"
                                % (" (%s)" % reason if reason else "")))
    stream = g["logs"][0] if g["logs"] else None
    sign = stream["signature"] if stream else None
    for d in g["databases"]:
        if d.get("sign_log"):
            sign = d["sign_log"]
            break
    gen_low = stream["gen_low"] if stream else None
    gen_high = stream["gen_high"] if stream else None
    if m is not None and gen_low is None and isinstance(m.get("logs"), dict):
        gen_low, gen_high = _int(m["logs"].get("gen_low")), _int(m["logs"].get("gen_high"))
    for d in g["databases"]:
        d.pop("_rel", None)
    created = (m or {}).get("created")
    out = {
        "name": name, "path": set_dir, "type": _str((m or {}).get("type")),
        "created": created if isinstance(created, str) else None,
        "status": "kept_logs" if kept else "complete",
        "valid": not any(is_error(x) for x in probs), "gen_low": gen_low, "gen_high": gen_high,
        "restorable": ending_ok and not any(is_error(x) for x in probs),
        "ending": None if ending is None else dict((k, ending.get(k)) for k in (
            "session", "ended", "backup_valid", "logs_truncated", "recorded_as", "time", "note")),
        "sign_log": sign, "databases": g["databases"], "logs": g["logs"], "checkpoints": g["checkpoints"],
        "problems": probs,
        "_log_sha": dict((n.rsplit("/", 1)[-1], sha.get(n)) for n in logs),
    }
    if kept:
        out["reason"] = reason
    return out


def _int(v):
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _str(v):
    return v if isinstance(v, str) else None


def _manifest_facts(m, g, listed, display):
    probs = []
    dbmap = dict((d["_rel"], d) for d in g["databases"])
    for e in m.get("databases") or []:
        if not isinstance(e, dict) or not isinstance(e.get("file"), str):
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
    """A directory holding ESE files but no manifest (e.g. a file-level copy of a live ESE folder).

    Only the regular files directly in it are read; links and FIFOs, sockets or devices are reported
    and never opened.
    """
    def display(rel):
        return prefix + rel
    files, odd = fs.inventory(root, recursive=False)
    dbs, logs, chks = [], [], []
    for rel in files:
        r = classify(root, rel)
        (dbs if r == "database" else logs if r == "log" else chks if r == "checkpoint" else []).append(rel)
    g = verify_group(root, dbs, logs, chks, checksums=checksums, display=display)
    g["problems"] = oddity_problems(odd, display) + g["problems"]
    if any(d.get("backup_target") for d in g["databases"]):
        # AD keeps temp.edb next to ntds.dit: beside a real database a temporary one is skipped, not an error
        temp = set(d["file"] for d in g["databases"] if d.get("backup_target") is False)
        for i, p in enumerate(g["problems"]):
            if p["code"] == "DB_NOT_BACKUP_TARGET" and p["file"] in temp:
                g["problems"][i] = problem("DB_TEMP_SKIPPED", p["file"], p["detail"])
    for d in g["databases"]:
        d.pop("_rel", None)
    return g


def is_partial(n):
    return n.startswith(".") and n.endswith(".partial") and len(n) > len("..partial")


def find_sets(root):
    """Immediate subdirectories of ``root``: ``(sets, kept, partial, links)``.

    ``sets`` hold a manifest; ``kept`` are '.<name>.partial' staging folders with kept-logs.json;
    ``partial`` are other '.partial' folders; ``links`` are symbolic links to folders (not followed).
    """
    sets, kept, partial, links = [], [], [], []
    for n in sorted(os.listdir(root)):
        full = os.path.join(root, n)
        k = fs.lkind(full)
        if k == "symlink" and os.path.isdir(full) and (is_partial(n) or fs.lkind(os.path.join(full, MANIFEST))):
            links.append(n)
            continue
        if k != "dir":
            continue
        if is_partial(n):
            (kept if fs.lkind(os.path.join(full, KEPT)) is not None else partial).append(n)
        elif fs.lkind(os.path.join(full, MANIFEST)) is not None:
            sets.append(n)
    return sets, kept, partial, links


def chains(sets):
    """Chain checks over verified sets (ordered by creation time, full first, generations, name).

    Returns ``(chains, problems)``: each chain is a full set followed by its incrementals and
    differentials; copy sets stand alone.
    """
    probs = []
    # 'created' has one-second resolution: within a second a full set comes first, then by generations
    sets = [s for s in sets if s.get("status") != "kept_logs"]
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
