# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The JET_err -> Ansible state policy, as data.

The engine (``EseEngine.cs``) reports facts only (docs/architecture.md, "Engine result"). The action
plugins turn them into ``changed``/``failed``/``msg`` here:

1. a module's *classifier* reduces the facts to a flat *situation* (strings, ints, booleans);
2. the module's *table* is an ordered list of :class:`Row`; the first row whose ``when`` matches the
   situation decides ``changed``, ``failed``, the message template and, for session modules,
   ``session_state`` and ``backup_valid``;
3. :func:`apply` renders the message with the facts, the JET error's name and advice, and returns the
   policy part of the task result.

A ``when`` maps a situation key to one allowed value, or to a tuple of allowed values. The special
value :data:`ANY_OTHER` in an ``err`` condition matches any code not matched by an earlier row, which
is how "any other error" rows are written. ``docs/jet-policy.md`` is generated from these tables by
``tools/gen_policy_docs.py``.

Adding a module = adding a classifier and a table to :data:`POLICIES`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections

from ansible_collections.ese.backup.plugins.plugin_utils._jet_errors import advice, describe, name_of

ANY_OTHER = "any other"

Row = collections.namedtuple("Row", "id what when changed failed msg session_state backup_valid warn")
"""One policy row.

``id``: stable identifier (tests, docs). ``what``: the situation in words (docs). ``when``: the
conditions. ``changed``/``failed``: booleans. ``msg``: a ``str.format`` template over the message
context (see :func:`_context`). ``session_state``: string or ``None`` (not reported).
``backup_valid``: ``True``/``False``, ``"journal"`` (valid when the journal shows a complete, normal
end) or ``None`` (not reported). ``warn``: a template for one warning, or ``None``.
"""


def row(id, what, when, changed, failed, msg, session_state=None, backup_valid=None, warn=None):
    """Build a :class:`Row` with keyword defaults (keeps the tables short)."""
    return Row(id, what, when, changed, failed, msg, session_state, backup_valid, warn)


Policy = collections.namedtuple("Policy", "module classify table jet_err_always keys")
"""A module's policy: ``classify(facts, check_mode)`` -> situation dict; ``table``: rows in order;
``jet_err_always``: return ``jet_err`` even when no call failed; ``keys``: the module result keys
that the action plugin keeps in the task result (``None``: all of them)."""


# Session journal facts (docs/architecture.md, "Session journal facts").
JOURNAL_ENDED = (None, "normal", "abort", "idle_timeout", "host_crash")
JOURNAL_ENDINGS = {
    None: "the session has no end record: its process exited without ending the backup",
    "normal": "it was ended normally",
    "abort": "it was ended with abort",
    "idle_timeout": "the session host ended it with abort after its idle timeout",
    "host_crash": "the host or the session process stopped while the backup ran",
}


def journal_facts(journal):
    """Normalise a journal (``None`` or a dict) to ``{ended, stop_seen, incomplete_files}`` or ``None``."""
    if journal is None:
        return None
    ended = journal.get("ended")
    if ended not in JOURNAL_ENDED:
        raise ValueError("journal.ended must be one of %s, got %r" % (", ".join(map(str, JOURNAL_ENDED)), ended))
    return {
        "ended": ended,
        "stop_seen": bool(journal.get("stop_seen", False)),
        "incomplete_files": list(journal.get("incomplete_files") or []),
        # The end's verdict as the host recorded it (None in journals of sessions that have not ended normally).
        "backup_valid": journal.get("backup_valid"),
        "proof": journal.get("proof"),
    }


def proven(proof):
    """Both proofs of a valid backup hold (docs/sessions.md, "The proof"); ``None`` when no proof was reported."""
    if not isinstance(proof, dict):
        return None
    return bool(proof.get("sequence_complete")) and bool(proof.get("header_recorded"))


def choice(value, default):
    """A choice option's value as the tables spell it: Ansible.Basic accepts choices in any case (``mode: ABORT``)
    and hands them on as written, so the policy compares them without regard to case."""
    if value is None or value == "":
        return default
    return str(value).strip().lower()


def situation(facts, check_mode, **more):
    """The facts every table reads (check mode, an invalid option, the failed call's JET_err) plus ``more``."""
    failed_call = facts.get("failed_call")
    base = {
        "check_mode": bool(check_mode),
        "invalid": bool(facts.get("invalid")),
        "failed": failed_call is not None,
        "err": failed_call.get("err") if failed_call else None,
    }
    base.update(more)
    return base


# --------------------------------------------------------------------------------------------------
# ese.backup.run: one-task backup
# --------------------------------------------------------------------------------------------------

def classify_run(facts, check_mode):
    """Situation of an ``Engine.Run`` result.

    An explicit ``set_name`` naming a complete set of the same type and databases is
    ``already_exists``: the backup was taken, nothing to do (re-running a playbook reports ok). Any
    other existing ``set_name`` is an ``invalid`` fact: a run never overwrites or merges into a folder.
    """
    return situation(
        facts, check_mode,
        started=bool(facts.get("backup_started")),
        ended=facts.get("ended"),
        logs_truncated=bool(facts.get("logs_truncated")),
        published=facts.get("backup_set") is not None,
        proven=proven(facts.get("proof")),
        exists=bool(facts.get("already_exists")))


RUN_TABLE = (
    row("invalid", "an option is invalid (the engine checked it before any backup call), including a set_name that "
        "names an existing folder other than a complete set of this backup", {"invalid": True}, False, True,
        "invalid value for option '{option}': {invalid_msg}"),
    row("exists", "set_name names a complete backup set of the same type and databases (a re-run)",
        {"exists": True}, False, False,
        "backup set {backup_set} already holds this {type} backup; nothing to do"),
    row("check_failed", "check mode: a JET call made to inspect the databases failed",
        {"check_mode": True, "failed": True}, False, True,
        "check mode: {call} returned {jet_err}{detail}: {advice}; a real run would fail"),
    row("check_create", "check mode: the options and databases are valid; a real run would create a backup set",
        {"check_mode": True}, True, False,
        "check mode: a {type} backup would create backup set {target}"),
    row("failed_truncated", "a JET call failed after the logs were truncated",
        {"failed": True, "logs_truncated": True}, True, True,
        "{call} returned {jet_err}{detail}: {advice}; {ending} and no backup set was published. The logs were "
        "already truncated, so the backup chain is broken: take a new full backup as soon as the cause is fixed"
        "{staging}"),
    row("failed_started", "a JET call failed during the backup (logs not truncated)",
        {"failed": True, "started": True}, False, True,
        "{call} returned {jet_err}{detail}: {advice}; {ending} and no backup set was published"),
    row("failed_not_started", "a JET call failed before the backup began",
        {"failed": True}, False, True,
        "{call} returned {jet_err}{detail}: {advice}; no backup was started"),
    row("not_recorded_truncated", "End returned JET_errSuccess after the logs were truncated, but the header does "
        "not record the backup; no set was published",
        {"ended": "normal", "published": False, "proven": False, "logs_truncated": True}, True, True,
        "the backup ended but is not valid: {problems}; no backup set was published. The logs were already truncated, "
        "so the backup chain is broken: take a new full backup as soon as the cause is fixed{staging}"),
    row("not_recorded", "End returned JET_errSuccess, but the header does not record the backup; no set was published",
        {"ended": "normal", "published": False, "proven": False}, False, True,
        "the backup ended but is not valid: {problems}; no backup set was published"),
    row("created", "every call succeeded and the set was published",
        {"published": True, "ended": "normal"}, True, False,
        "created {type} backup set {backup_set}{truncated}"),
    row("inconsistent", "any other combination of facts (an engine bug)",
        {}, False, True,
        "the engine returned an inconsistent result (backup_started={started}, ended={ended}, backup_set={backup_set}); "
        "report it with the task's trace"),
)

RUN_KEYS = ("trace", "backup_set", "manifest", "check", "backup_started", "ended", "logs_truncated", "kept_staging",
            "already_exists", "proof", "recorded_as", "ending", "duration_s")


# --------------------------------------------------------------------------------------------------
# ese.backup.info: read-only; every fact is passed through, failures are named
# --------------------------------------------------------------------------------------------------

def classify_info(facts, check_mode):
    """Situation of an ``Engine.Info`` result."""
    failed_call = facts.get("failed_call")
    return {
        "invalid": bool(facts.get("invalid")),
        "failed": failed_call is not None,
        "err": failed_call.get("err") if failed_call else None,
    }


INFO_TABLE = (
    row("invalid", "an option is invalid", {"invalid": True}, False, True,
        "invalid value for option '{option}': {invalid_msg}"),
    row("failed", "a JET call failed", {"failed": True}, False, True,
        "{call} returned {jet_err}{detail}: {advice}"),
    row("read", "the headers and backup sets were read (per-database read errors are in databases[].error)",
        {}, False, False, "read {databases} database header(s) and {backup_sets} backup set(s)"),
)


# --------------------------------------------------------------------------------------------------
# Backup sessions: begin, copy, truncate. Facts: docs/sessions.md.
# --------------------------------------------------------------------------------------------------

def classify_begin(facts, check_mode):
    """Situation of a ``Session.Begin`` result."""
    check = facts.get("check") or {}
    return situation(
        facts, check_mode,
        started=bool(facts.get("started")),
        exists=bool(facts.get("exists")),
        would_begin=bool(check.get("would_begin")))


BEGIN_TABLE = (
    row("invalid", "an option is invalid, or a live session of this name runs with other parameters",
        {"invalid": True}, False, True, "invalid value for option '{option}': {invalid_msg}"),
    row("check_failed", "check mode: a JET call made to inspect the databases failed",
        {"check_mode": True, "failed": True}, False, True,
        "check mode: {call} returned {jet_err}{detail}: {advice}; a real run would fail"),
    row("check_begin", "check mode: no live session of this name; a real run would start one",
        {"check_mode": True, "would_begin": True}, True, False,
        "check mode: a session host would be started for session {session}"),
    row("check_exists", "check mode: a live session of this name runs with the same parameters",
        {"check_mode": True}, False, False, "check mode: session {session} is already open"),
    row("failed", "a JET call (or starting the session host) failed; no session host runs",
        {"failed": True}, False, True, "{call} returned {jet_err}{detail}: {advice}; no backup session was begun"),
    row("begun", "the session host runs and JetBeginExternalBackupInstance succeeded",
        {"started": True}, True, False, "began backup session {session} (session host pid {pid})"),
    row("exists", "a live session of this name runs with the same parameters (a re-run)",
        {"exists": True}, False, False, "backup session {session} is already open with these parameters"),
    row("inconsistent", "any other combination of facts (an engine bug)", {}, False, True,
        "the engine returned an inconsistent begin result; report it with the task's trace"),
)

BEGIN_KEYS = ("trace", "session", "journal", "check", "started", "host_result")


def classify_copy(facts, check_mode):
    """Situation of a ``Session.Copy`` result."""
    return situation(
        facts, check_mode,
        published=facts.get("backup_set") is not None)


COPY_TABLE = (
    row("invalid", "an option is invalid, the set exists, or the session is not running",
        {"invalid": True}, False, True, "invalid value for option '{option}': {invalid_msg}"),
    row("check", "check mode: the session is open and the destination is usable",
        {"check_mode": True, "failed": False}, True, False, "check mode: the session would copy into {target}"),
    row("failed", "a JET call or a destination write failed; nothing was published and the backup stays open",
        {"failed": True}, False, True,
        "{call} returned {jet_err}{detail}: {advice}; no backup set was published. The session stays open{incomplete}: "
        "copy again, or end it with mode abort"),
    row("copied", "every file was read completely and the set was published",
        {"published": True}, True, False, "copied {copied} file(s) of session {session} into {backup_set}"),
    row("inconsistent", "any other combination of facts (an engine bug)", {}, False, True,
        "the engine returned an inconsistent copy result; report it with the task's trace"),
)

COPY_KEYS = ("trace", "session", "journal", "check", "backup_set", "manifest")


def classify_truncate(facts, check_mode):
    """Situation of a ``Session.Truncate`` result."""
    check = facts.get("check") or {}
    return situation(
        facts, check_mode,
        refused=bool(facts.get("refused")),
        already=bool(facts.get("already_truncated")),
        would_truncate=bool(check.get("would_truncate")),
        truncated=bool(facts.get("logs_truncated")))


TRUNCATE_TABLE = (
    row("invalid", "an option is invalid, the session does not truncate (copy, differential) or is not running",
        {"invalid": True}, False, True, "invalid value for option '{option}': {invalid_msg}"),
    row("refused", "the journal does not show every log of the backup's range copied completely",
        {"refused": True}, False, True, "refusing to truncate the logs of session {session}: {refused_msg}"),
    row("already", "the logs of this session were already truncated (a re-run)",
        {"already": True}, False, False, "the logs of session {session} are already truncated"),
    row("check", "check mode: every log is copied; a real run would truncate",
        {"check_mode": True, "would_truncate": True}, True, False,
        "check mode: the logs of session {session} would be truncated"),
    row("failed", "JetTruncateLogInstance failed (JET_errLogFileNotCopied, JET_errBackupAbortByServer, ...)",
        {"failed": True}, False, True, "{call} returned {jet_err}{detail}: {advice}; the logs were not truncated"),
    row("truncated", "JetTruncateLogInstance succeeded", {"truncated": True}, True, False,
        "truncated the logs of session {session}"),
    row("inconsistent", "any other combination of facts (an engine bug)", {}, False, True,
        "the engine returned an inconsistent truncate result; report it with the task's trace"),
)

TRUNCATE_KEYS = ("trace", "session", "journal", "check", "refused", "logs_truncated")


# --------------------------------------------------------------------------------------------------
# ese.backup.end: end a backup session (JetEndExternalBackupInstance2)
# --------------------------------------------------------------------------------------------------

def classify_end(facts, check_mode):
    """Situation of an end result: ``{invalid, mode, end_call or failed_call, journal, check}``.

    ``err`` is the End call's JET_err (``end_call.err``; ``failed_call.err`` when End was not reached).
    ``journal`` is ``"absent"`` or the journal's ``ended`` (``"open"`` when it has no end record).
    """
    call = facts.get("end_call") or facts.get("failed_call")
    journal = journal_facts(facts.get("journal"))
    check = facts.get("check") or {}
    if journal is None:
        state = "absent"
    else:
        state = journal["ended"] or "open"
    session_type = choice(facts.get("session_type") or (facts.get("journal") or {}).get("type"), None)
    return {
        "check_mode": bool(check_mode),
        "invalid": bool(facts.get("invalid")),
        "mode": choice(facts.get("mode"), "normal"),
        "err": call.get("err") if call else None,
        "journal": state,
        "journal_problem": bool(journal and (journal["stop_seen"] or journal["incomplete_files"])),
        "proven": proven(facts.get("proof")),
        "full_as_copy": session_type == "full" and facts.get("recorded_as") == "copy",
        "journal_valid": journal["backup_valid"] if journal else None,
        "would_end": bool(check.get("would_end")),
        "stopped": bool(facts.get("stopped")),
    }


_ENDED_OTHERWISE = ("abort", "idle_timeout", "host_crash", "open")
COPY_NOTE = "recorded by ESE as a copy backup; incrementals cannot follow it"

END_TABLE = (
    row("invalid", "an option is invalid", {"invalid": True}, False, True,
        "invalid value for option '{option}': {invalid_msg}", "unknown", False),
    row("check_end", "check mode: a backup is in progress and would be ended",
        {"check_mode": True, "would_end": True}, True, False,
        "check mode: the backup session would be ended (mode {mode})", "open", None),
    row("check_nothing", "check mode: no backup is in progress",
        {"check_mode": True, "would_end": False}, False, False,
        "check mode: no backup is in progress; nothing would be ended", "not_found", None),
    row("ended_copy", "End returned JET_errSuccess, both proofs hold, but a full session did not truncate: ESE "
        "recorded it in the header's CopyPrev slot", {"err": 0, "mode": "normal", "journal_problem": False,
                                                      "proven": True, "full_as_copy": True}, True, False,
        "{call} returned {jet_err}: the backup ended normally and is valid, " + COPY_NOTE, "ended", True,
        warn="session {session} is a full backup whose logs were not truncated: " + COPY_NOTE + ". Truncate the logs "
             "before end (ese.backup.truncate), or pass truncate_done when another program truncated them"),
    row("ended_complete", "End returned JET_errSuccess, the journal proves the sequence complete and the header "
        "records the backup in the slot ESE fills for this session (mode normal)",
        {"err": 0, "mode": "normal", "journal_problem": False, "proven": True}, True, False,
        "{call} returned {jet_err}: the backup ended normally and is valid", "ended", True),
    row("ended_not_valid", "End returned JET_errSuccess without both proofs (a file or log not copied, the header "
        "not recording the backup: ESE downgraded it to an abort), or the journal shows a server stop (-801) or a "
        "file not read completely", {"err": 0, "mode": "normal"}, True, True,
        "backup ended but is not valid: {problems}; take a new backup", "ended", False),
    row("ended_abort", "End returned JET_errSuccess with mode abort",
        {"err": 0, "mode": "abort"}, True, False,
        "{call} returned {jet_err}: the backup was ended with abort; its files are not a usable backup",
        "aborted", False),
    row("rerun_ended", "JET_errNoBackup, and the journal says this session already ended normally with a valid "
        "backup (a re-run)", {"err": -520, "journal": "normal", "journal_valid": (True, None)}, False, False,
        "the backup session already ended normally; nothing to do", "ended", "journal"),
    row("rerun_not_valid", "JET_errNoBackup, and the journal says this session already ended normally without a "
        "valid backup (a re-run)", {"err": -520, "journal": "normal"}, False, True,
        "the backup session already ended but is not valid: {problems}; take a new backup", "ended", False),
    row("gone_normal", "JET_errNoBackup, and the journal says the session ended by abort, idle timeout or a host "
        "crash (mode normal)", {"err": -520, "journal": _ENDED_OTHERWISE, "mode": "normal"}, False, True,
        "cannot end the backup normally: {journal_ending}; the backup is not valid, take a new one",
        "{journal_state}", False),
    row("gone_abort", "JET_errNoBackup, and the journal says the session ended by abort, idle timeout or a host "
        "crash (mode abort)", {"err": -520, "journal": _ENDED_OTHERWISE, "mode": "abort"}, False, False,
        "the backup session is already over ({journal_ending}); nothing to abort", "{journal_state}", False),
    row("no_session", "JET_errNoBackup and no journal at all", {"err": -520, "journal": "absent"}, False, False,
        "{call} returned {jet_err}: no backup is in progress", "not_found", False,
        warn="no backup session with this name exists on the host (no journal and no backup in progress); "
             "check the session name, or whether it was started on another host"),
    row("aborted", "JET_errBackupAbortByServer, or JET_errBackupAbortByCaller (older builds)",
        {"err": (-801, -800)}, True, True,
        "{call} returned {jet_err}: the backup was aborted and ended; {advice}", "aborted", False),
    row("stopped", "End with mode abort returned an error, so the session host stopped the backup with JetTerm2 "
        "(JET_bitTermStopBackup) and exited", {"mode": "abort", "stopped": True}, True, False,
        "the backup was ended with abort: {call} returned {jet_err}, so the session host stopped it with JetTerm2 "
        "(JET_bitTermStopBackup); its files are not a usable backup", "aborted", False),
    row("other_error", "JET_errClientRequestToStopJetService, JET_errInstanceUnavailable, JET_errNotInitialized, "
        "JET_errRestoreInProgress, JET_errRunningInMultiInstanceMode, JET_errTermInProgress, "
        "JET_errInvalidParameter, or any other code", {"err": ANY_OTHER}, False, True,
        "{call} returned {jet_err}{detail}: {advice}; the backup was not ended", "unknown", False),
    row("no_call", "no End call was recorded (an engine bug)", {}, False, True,
        "the engine returned no End call; report it with the task's trace", "unknown", False),
)

END_KEYS = ("trace", "journal", "check", "mode", "session", "proof", "recorded_as", "ending", "ending_records")


# --------------------------------------------------------------------------------------------------
# ese.backup.restore: hard recovery from a chain of backup sets, or a restore drill
# --------------------------------------------------------------------------------------------------

def classify_restore(facts, check_mode):
    """Situation of a ``Restore.Run`` result.

    ``refused`` is a problem found before anything was written (chain, manifest hash, log signature,
    target exists or in use, service running). ``undo_complete`` is false when a failed restore could
    not remove or put back everything it had changed (the ``undone`` notes say what).
    """
    report = facts.get("drill_report") or {}
    undone = facts.get("undone") or []
    return situation(
        facts, check_mode,
        refused=bool(facts.get("refused")),
        drill=bool(facts.get("drill")),
        drill_passed=bool(report.get("passed")),
        restored=bool(facts.get("restored")),
        undo_complete=not any(str(n).startswith("could not") for n in undone))


RESTORE_TABLE = (
    row("invalid", "an option is invalid", {"invalid": True}, False, True,
        "invalid value for option '{option}': {invalid_msg}"),
    row("refused", "the chain, a manifest, a log or a target failed a check; nothing was written",
        {"refused": True}, False, True,
        "restore refused ({problem}), nothing was written: {refused_msg}"),
    row("check_drill", "check mode, drill: the chain and the scratch directory are valid",
        {"check_mode": True, "drill": True}, False, False,
        "check mode: a drill would restore log generations {gen_low}-{gen_high} from {sets} set(s) into a "
        "scratch directory"),
    row("check_restore", "check mode: the chain and the targets are valid; a real run would restore",
        {"check_mode": True}, True, False,
        "check mode: would write {would_write} and replay log generations {gen_low}-{gen_high} from {sets} set(s)"),
    row("drill_failed_call", "drill: a JET call or file step failed; the scratch directory was removed",
        {"drill": True, "failed": True}, False, True,
        "drill failed: {call} returned {jet_err}{detail}: {advice}; {scratch_note}"),
    row("drill_failed_check", "drill: the restore worked but a check of the result failed",
        {"drill": True, "drill_passed": False}, False, True,
        "drill failed: {failed_checks}; {scratch_note}"),
    row("drill_passed", "drill: restored, attached read-only, clean, expected generation, pages verified",
        {"drill": True}, False, False,
        "drill passed: log generations {gen_low}-{gen_high} from {sets} set(s) restore to a clean database; "
        "{scratch_note}"),
    row("failed_undone", "a JET call or file step failed; everything the restore wrote was removed or put back",
        {"failed": True, "undo_complete": True}, False, True,
        "{call} returned {jet_err}{detail}: {advice}; the targets are as they were ({undone})"),
    row("failed_changed", "a JET call or file step failed and the restore could not undo all of its changes",
        {"failed": True}, True, True,
        "{call} returned {jet_err}{detail}: {advice}; the restore wrote {written} and could not undo all of it: "
        "{undone}"),
    row("restored", "every step succeeded and the restored headers are clean at the chain's last generation",
        {"restored": True}, True, False,
        "restored {n_restored} database(s) from {sets} set(s), log generations {gen_low}-{gen_high}: {restored_paths}"),
    row("inconsistent", "any other combination of facts (an engine bug)", {}, False, True,
        "the engine returned an inconsistent result; report it with the task's trace"),
)

RESTORE_KEYS = ("trace", "refused", "chain", "restored", "written", "undone", "drill", "drill_report", "check")


def _restore_context(facts):
    refused = facts.get("refused") or {}
    chain = facts.get("chain") or []
    check = facts.get("check") or {}
    report = facts.get("drill_report") or {}
    restored = facts.get("restored") or []
    failed_checks = ["%s (%s)" % (c.get("check"), c.get("detail")) for c in report.get("checks") or [] if not c.get("ok")]
    return {
        "problem": refused.get("problem"),
        "refused_msg": refused.get("msg"),
        "sets": len(chain),
        "gen_low": chain[0].get("gen_low") if chain else None,
        "gen_high": chain[-1].get("gen_high") if chain else None,
        "would_write": ", ".join(d.get("path", "?") for d in check.get("would_write") or []) or "nothing",
        "n_restored": len(restored),
        "restored_paths": ", ".join(str(d.get("path")) for d in restored),
        "written": ", ".join(str(f) for f in facts.get("written") or []) or "nothing",
        "undone": "; ".join(str(n) for n in facts.get("undone") or []) or "nothing to undo",
        "failed_checks": "; ".join(failed_checks) or "no check passed",
        "scratch_note": "the scratch directory was removed" if report.get("scratch_removed", True)
        else "the scratch directory %s could not be removed" % report.get("scratch"),
    }


POLICIES = collections.OrderedDict([
    ("run", Policy("run", classify_run, RUN_TABLE, False, RUN_KEYS)),
    ("info", Policy("info", classify_info, INFO_TABLE, False, None)),
    ("begin", Policy("begin", classify_begin, BEGIN_TABLE, False, BEGIN_KEYS)),
    ("copy", Policy("copy", classify_copy, COPY_TABLE, False, COPY_KEYS)),
    ("truncate", Policy("truncate", classify_truncate, TRUNCATE_TABLE, False, TRUNCATE_KEYS)),
    ("end", Policy("end", classify_end, END_TABLE, True, END_KEYS)),
    ("restore", Policy("restore", classify_restore, RESTORE_TABLE, False, RESTORE_KEYS)),
])


# --------------------------------------------------------------------------------------------------
# Matching and rendering
# --------------------------------------------------------------------------------------------------

def _matches(when, situation, earlier_errs):
    for key, allowed in when.items():
        value = situation.get(key)
        if allowed == ANY_OTHER:
            if value is None or value in earlier_errs:
                return False
            continue
        if isinstance(allowed, tuple):
            if value not in allowed:
                return False
        elif value != allowed:
            return False
    return True


def explicit_errs(table):
    """Every JET value an ``err`` condition of the table names explicitly."""
    errs = set()
    for entry in table:
        allowed = entry.when.get("err")
        if isinstance(allowed, tuple):
            errs.update(allowed)
        elif isinstance(allowed, int):
            errs.add(allowed)
    return errs


def select(module, situation):
    """The first row of ``module``'s table that matches ``situation``."""
    table = POLICIES[module].table
    earlier = explicit_errs(table)
    for entry in table:
        if _matches(entry.when, situation, earlier):
            return entry
    raise LookupError("no %s policy row matches %r" % (module, situation))  # the tables end with a catch-all


class _Lenient(dict):
    def __missing__(self, key):
        return "<%s unknown>" % key


def _problems(journal, proof=None):
    parts = []
    if journal and journal["stop_seen"]:
        parts.append("the server stopped the backup during the session (JET_errBackupAbortByServer -801 was seen)")
    if journal and journal["incomplete_files"]:
        parts.append("not read completely: %s" % ", ".join(str(f) for f in journal["incomplete_files"]))
    if not isinstance(proof, dict) and journal:
        proof = journal.get("proof")
    if isinstance(proof, dict):
        parts.extend(str(m) for m in proof.get("missing") or [] if str(m) not in parts)
    else:
        parts.append("no proof of the backup was recorded (the engine read neither the journal's sequence nor the "
                     "header)")
    return "; ".join(parts) or "no problem recorded"


def _target(check, facts):
    would_create = check.get("would_create")
    if isinstance(would_create, str) and would_create:
        return would_create  # the engine reports the path of the set it would create
    return check.get("backup_set") or facts.get("backup_set") or "(named at run time)"


def _context(facts, call):
    invalid = facts.get("invalid") or {}
    err = call.get("err") if call else None
    journal = journal_facts(facts.get("journal"))
    journal_state = "not_found" if journal is None else {
        None: "lost", "normal": "ended", "abort": "aborted", "idle_timeout": "idle_timeout",
        "host_crash": "host_crash"}[journal["ended"]]
    ended = facts.get("ended")
    manifest = facts.get("manifest") or {}
    check = facts.get("check") or {}
    context = {
        "option": invalid.get("option"),
        "invalid_msg": invalid.get("msg"),
        "call": call.get("call") if call else None,
        "err": err,
        "jet_err": describe(err) if err is not None else None,
        "detail": " [%s]" % call["detail"] if call and call.get("detail") else "",
        "advice": advice(err) if err is not None else None,
        "ending": {"abort": "the backup was ended with abort", "normal": "the backup was ended"}.get(
            ended, "the backup could not be ended" if facts.get("backup_started") else "no backup was running"),
        "started": facts.get("backup_started"),
        "ended": ended,
        "backup_set": facts.get("backup_set"),
        "target": _target(check, facts),
        "type": choice(manifest.get("type") or check.get("type") or facts.get("type"), "full"),
        "truncated": "; logs were truncated" if facts.get("logs_truncated") else "",
        "staging": "; the staging directory %s holds the only copy of the truncated logs: keep it with the last "
                   "good backup" % facts["kept_staging"] if facts.get("kept_staging") else "",
        "mode": choice(facts.get("mode"), "normal"),
        "problems": _problems(journal, facts.get("proof")),
        "journal_ending": JOURNAL_ENDINGS[journal["ended"]] if journal else "no journal",
        "journal_state": journal_state,
        "databases": len(facts.get("databases") or []),
        "session": (facts.get("session") or {}).get("name"),
        "pid": (facts.get("session") or {}).get("pid"),
        "refused_msg": (facts.get("refused") or {}).get("msg"),
        "copied": len(manifest.get("files") or []),
        "incomplete": "; not read completely: %s" % ", ".join(map(str, journal["incomplete_files"]))
                      if journal and journal["incomplete_files"] else "",
        "backup_sets": len(facts.get("backup_sets") or []),
    }
    context.update(_restore_context(facts))
    return _Lenient(context)


def jet_err(call):
    """``{code, name, call}`` for a recorded call, or ``None``."""
    if not call:
        return None
    code = call.get("err")
    return {"code": code, "name": name_of(code) if code is not None else None, "call": call.get("call")}


def apply(module, facts, check_mode):
    """Turn an engine result (``facts``) into the policy part of the task result.

    Returns ``{changed, failed, msg[, jet_err][, warnings][, session_state, backup_valid]}`` plus the
    id of the row that decided (``policy_row``), for the trace and the docs.
    """
    policy = POLICIES[module]
    situation = policy.classify(facts, check_mode)
    decided = select(module, situation)
    if module == "end":
        call = facts.get("end_call") or facts.get("failed_call")
    else:
        call = facts.get("failed_call")
    context = _context(facts, call)
    result = {
        "changed": decided.changed,
        "failed": decided.failed,
        "msg": decided.msg.format_map(context),
        "policy_row": "%s.%s" % (module, decided.id),
    }
    error = jet_err(call)
    if error is not None or policy.jet_err_always:
        result["jet_err"] = error or {"code": None, "name": None, "call": None}
    if decided.warn:
        result["warnings"] = [decided.warn.format_map(context)]
    if decided.session_state is not None:
        result["session_state"] = decided.session_state.format_map(context)
    if decided.backup_valid is not None or module == "end":
        valid = decided.backup_valid
        if valid == "journal":
            recorded = situation.get("journal_valid")
            valid = recorded if recorded is not None else not situation.get("journal_problem", False)
        result["backup_valid"] = bool(valid)
    return result
