# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention planner for a folder of backup sets (docs/prune.md): pure functions, no I/O.

The module ``ese.backup.prune`` reads the share and hands this planner one record per set (``set_record``);
``plan`` decides, chain by chain, what is kept and what may go, and in which order it is deleted. Chains are
built by ``backupset.chains`` (the verifier's chain builder), so prune and verify agree on what depends on what.
"""
from __future__ import annotations

import datetime

from ansible_collections.ese.backup.plugins.module_utils.ese_format import backupset as bs

# rules that keep a chain, in the order they are reported
RULE_KEEP_FULL = "keep_full"
RULE_KEEP_DAYS = "keep_days"
RULE_DAILY = "keep_daily"
RULE_WEEKLY = "keep_weekly"
RULE_MONTHLY = "keep_monthly"
RULE_MIN_VERIFIED = "min_verified"
RULE_NEWEST_VERIFIED_FULL = "newest_verified_full"
# holds: a chain is kept whatever the rules say, and the reason is reported
HOLD_UNPROVEN = "ending_not_valid"
HOLD_MANIFEST = "manifest_problem"
HOLD_CHAIN = "chain_problem"
HOLD_DEPENDENCY = "dependency_unclear"
HOLD_TIME = "created_unknown"
HOLD_ORPHAN = "no_base"
RULE_REMOVE = "no_rule_keeps_it"
# chain problems that make it unclear which full a set depends on: that chain and every older one are held
_UNCLEAR = ("CHAIN_SIGNATURE_MISMATCH", "CHAIN_LOG_CONFLICT", "CHAIN_DB_SIGNATURE_MISMATCH")


def parse_time(value):
    """A manifest's ``created`` (ISO 8601, UTC: ``2026-11-25T04:00:00Z``) as an aware datetime, or None."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        t = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if t.tzinfo is None:
        return None           # a time without its zone cannot be compared safely
    return t.astimezone(datetime.timezone.utc)


def _sign_dbs(manifest):
    out = []
    for d in manifest.get("databases") or []:
        if isinstance(d, dict) and isinstance(d.get("sign_db"), str) and d["sign_db"]:
            out.append(d["sign_db"].lower())
    return tuple(sorted(set(out)))


def set_record(name, manifest, manifest_problems=(), ending_ok=False, ending_problems=(), verified=None,
               size=0):
    """One set as the planner sees it, from what the module read (bounded) from the share.

    ``manifest`` is the parsed manifest.json (None when it could not be read); ``manifest_problems`` and
    ``ending_problems`` are verifier problems (``backupset.load_manifest`` / ``load_ending``); ``ending_ok``
    says the ending record is there and valid; ``verified`` is True, False, or None (not checked).
    """
    m = manifest if isinstance(manifest, dict) else {}
    lg = m.get("logs") if isinstance(m.get("logs"), dict) else {}
    sign_log = None
    for d in m.get("databases") or []:
        if isinstance(d, dict) and isinstance(d.get("sign_log"), str) and d["sign_log"]:
            sign_log = d["sign_log"].lower()
            break
    log_sha = {}
    for f in m.get("files") or []:
        if isinstance(f, dict) and isinstance(f.get("name"), str) and f["name"].startswith("logs/") \
                and isinstance(f.get("sha256"), str):
            log_sha[f["name"].rsplit("/", 1)[-1]] = f["sha256"].lower()
    created = m.get("created") if isinstance(m.get("created"), str) else None
    return {
        "name": name, "type": m.get("type") if isinstance(m.get("type"), str) else None, "created": created,
        "gen_low": _int(lg.get("gen_low")), "gen_high": _int(lg.get("gen_high")), "sign_log": sign_log,
        "sign_db": _sign_dbs(m), "status": "complete", "_log_sha": log_sha,
        "manifest_ok": manifest is not None and not list(manifest_problems),
        "ending_ok": bool(ending_ok), "verified": verified, "size": size,
        "problems": list(manifest_problems) + list(ending_problems),
    }


def _int(v):
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def build_chains(records):
    """``backupset.chains`` over the records, newest chain first: ``(chains, problems)``.

    Each chain: ``base``, ``sets`` (dependency order: the full first), ``time`` (the base's creation time or
    None), ``last_time`` (its newest set's). A set no chain holds (an incremental without an earlier full) is
    in no chain. A member whose databases' signatures differ from its base's adds a problem
    ``CHAIN_DB_SIGNATURE_MISMATCH`` (it may depend on another full).
    """
    by_name = dict((r["name"], r) for r in records)
    out, probs = bs.chains([dict(r) for r in records])
    for c in out:
        base = by_name[c["base"]]
        for n in c["sets"][1:]:
            s = by_name[n]
            if s["sign_db"] and base["sign_db"] and s["sign_db"] != base["sign_db"]:
                probs.append({"code": "CHAIN_DB_SIGNATURE_MISMATCH", "severity": "error", "file": n,
                              "detail": "its database signature differs from %s's" % base["name"]})
        times = [parse_time(by_name[n]["created"]) for n in c["sets"]]
        c["time"] = times[0]
        c["last_time"] = max(times) if all(times) else None
        c["type"] = base["type"]
    oldest = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)
    out.sort(key=lambda c: (c["time"] or oldest, c["base"]), reverse=True)
    return out, probs


def verification_order(records):
    """The sets to verify, chain by chain, newest chain first (the module verifies lazily in this order)."""
    return [list(c["sets"]) for c in build_chains(records)[0]]


def _periods(now, count, unit):
    today = now.date()
    keys = []
    for i in range(count):
        if unit == "day":
            keys.append((today - datetime.timedelta(days=i)).isoformat())
        elif unit == "week":
            y, w = (today - datetime.timedelta(days=7 * i)).isocalendar()[:2]
            keys.append("%04d-W%02d" % (y, w))
        else:
            y, mo = today.year, today.month - i
            while mo < 1:
                mo += 12
                y -= 1
            keys.append("%04d-%02d" % (y, mo))
    return keys


def _period_of(t, unit):
    d = t.date()
    if unit == "day":
        return d.isoformat()
    if unit == "week":
        y, w = d.isocalendar()[:2]
        return "%04d-W%02d" % (y, w)
    return "%04d-%02d" % (d.year, d.month)


def _bad_count(name, value):
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("%s: must be a whole number of 0 or more, got %r" % (name, value))
    return value


def plan(records, now, keep_full=0, keep_days=0, keep_daily=0, keep_weekly=0, keep_monthly=0, min_verified=1):
    """Decide what to keep. ``now`` is an aware datetime; counts are whole numbers (0: the rule is off).

    Returns ``{"chains", "sets", "remove_order", "problems"}``: ``sets`` has one decision per record
    (``name``, ``type``, ``chain``, ``action`` keep|remove, ``rules``, ``why``); ``remove_order`` lists the
    sets to delete, chain by chain (oldest chain first), each chain's newest dependant first and its full last,
    so that stopping anywhere leaves no set without the sets it depends on.
    Raises ValueError naming the option for a bad count, and when no retention rule is given.
    """
    keep_full = _bad_count("keep_full", keep_full)
    keep_days = _bad_count("keep_days", keep_days)
    keep_daily = _bad_count("keep_daily", keep_daily)
    keep_weekly = _bad_count("keep_weekly", keep_weekly)
    keep_monthly = _bad_count("keep_monthly", keep_monthly)
    min_verified = _bad_count("min_verified", min_verified)
    if not (keep_full or keep_days or keep_daily or keep_weekly or keep_monthly):
        raise ValueError("keep_full, keep_days, keep_daily, keep_weekly, keep_monthly: give at least one "
                         "retention rule (all are 0 or unset, which would keep only the verified chains)")
    if not isinstance(now, datetime.datetime) or now.tzinfo is None:
        raise ValueError("now: must be an aware datetime")
    by_name = dict((r["name"], r) for r in records)
    chains, probs = build_chains(records)
    owner = {}
    for c in chains:
        for n in c["sets"]:
            owner[n] = c["base"]
    rules = dict((c["base"], []) for c in chains)
    holds = dict((c["base"], []) for c in chains)
    # holds
    unclear_from = None
    for i, c in enumerate(chains):
        for n in c["sets"]:
            r = by_name[n]
            if not r["ending_ok"]:
                holds[c["base"]].append("%s: %s" % (HOLD_UNPROVEN, n))
            if not r["manifest_ok"]:
                holds[c["base"]].append("%s: %s" % (HOLD_MANIFEST, n))
        if c["time"] is None:
            holds[c["base"]].append(HOLD_TIME)
    for p in probs:
        n = p["file"].split("/", 1)[0]
        base = owner.get(n)
        if base is None:
            continue
        holds[base].append("%s: %s %s" % (HOLD_CHAIN, p["code"], n))
        if p["code"] in _UNCLEAR:
            idx = [c["base"] for c in chains].index(base)
            unclear_from = idx if unclear_from is None else min(unclear_from, idx)
    if unclear_from is not None:
        for c in chains[unclear_from + 1:]:
            holds[c["base"]].append("%s: a newer chain (%s) holds a set that may depend on this one"
                                    % (HOLD_DEPENDENCY, chains[unclear_from]["base"]))
    # rules, newest chain first
    for c in chains[:keep_full]:
        rules[c["base"]].append("%s (one of the %d newest)" % (RULE_KEEP_FULL, keep_full))
    if keep_days:
        cutoff = now - datetime.timedelta(days=keep_days)
        for c in chains:
            if c["last_time"] is not None and c["last_time"] >= cutoff:
                rules[c["base"]].append("%s (a set of it is newer than %d days)" % (RULE_KEEP_DAYS, keep_days))
    for rule, unit, count in ((RULE_DAILY, "day", keep_daily), (RULE_WEEKLY, "week", keep_weekly),
                              (RULE_MONTHLY, "month", keep_monthly)):
        wanted = set(_periods(now, count, unit)) if count else set()
        for c in chains:
            if c["time"] is None:
                continue
            key = _period_of(c["time"], unit)
            if key in wanted:
                wanted.discard(key)
                rules[c["base"]].append("%s (newest of %s)" % (rule, key))
    newest_full = None
    for c in chains:
        if c["type"] == "full" and by_name[c["base"]]["verified"] is True:
            newest_full = c["base"]
            rules[c["base"]].append(RULE_NEWEST_VERIFIED_FULL)
            break
    n_ver = 0
    for c in chains:
        if n_ver >= min_verified:
            break
        if all(by_name[n]["verified"] is True for n in c["sets"]):
            n_ver += 1
            rules[c["base"]].append("%s (%d of %d)" % (RULE_MIN_VERIFIED, n_ver, min_verified))
    decisions = []
    remove_order = []
    for c in reversed(chains):          # oldest first
        keep = bool(rules[c["base"]] or holds[c["base"]])
        for n in c["sets"]:
            r = by_name[n]
            why = rules[c["base"]] + holds[c["base"]] if keep else [RULE_REMOVE]
            decisions.append({"name": n, "type": r["type"], "chain": c["base"], "created": r["created"],
                              "action": "keep" if keep else "remove", "rules": why, "size": r.get("size", 0),
                              "held": bool(holds[c["base"]]) and not rules[c["base"]]})
        if not keep:
            remove_order.extend(reversed(c["sets"]))
    for r in records:
        if r["name"] not in owner:
            decisions.append({"name": r["name"], "type": r["type"], "chain": None, "created": r["created"],
                              "action": "keep", "rules": [HOLD_ORPHAN], "size": r.get("size", 0), "held": True})
    rank = dict((n, i) for i, n in enumerate(remove_order))
    if dependants_left(chains, set(rank)):  # chains are removed whole: a planner bug, never a user error
        raise RuntimeError("retention plan would leave a kept set without a set it depends on")
    return {"chains": [dict((k, v) for k, v in c.items() if k not in ("time", "last_time")) for c in chains],
            "sets": decisions, "remove_order": remove_order, "problems": probs, "newest_verified_full": newest_full}


def dependants_left(chains, removed):
    """Sets that are not removed but depend on a removed set (an empty list for a sound plan or a sound
    partial deletion in ``remove_order``)."""
    bad = []
    for c in chains:
        members = list(c["sets"])
        for i, n in enumerate(members):
            if n in removed:
                continue
            # a set depends on the base and (incrementals) on every earlier member; being conservative,
            # any earlier member of its chain
            if any(m in removed for m in members[:i]):
                bad.append(n)
    return bad
