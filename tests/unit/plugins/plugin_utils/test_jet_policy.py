# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The JET_err -> Ansible state policy: every row of every table, data-driven, plus exhaustive
"any other" rows over every catalog value."""
import pytest

from ansible_collections.ese.backup.plugins.plugin_utils import _jet_errors as je
from ansible_collections.ese.backup.plugins.plugin_utils import _jet_policy as jp

READ = "JetReadFileInstance"
BEGIN = "JetBeginExternalBackupInstance"
END = "JetEndExternalBackupInstance2"
SET = r"D:\backup\full-20261125T040000Z"


def run_facts(**over):
    facts = {"trace": [{"call": BEGIN, "err": 0}], "failed_call": None, "invalid": None, "backup_started": True,
             "ended": "normal", "logs_truncated": True, "backup_set": SET, "manifest": {"type": "full"}, "check": None}
    facts.update(over)
    return facts


def failed(call, err, **over):
    base = {"failed_call": {"call": call, "err": err, "detail": "SRUDB.dat"}, "ended": "abort", "backup_set": None,
            "manifest": None, "logs_truncated": False}
    base.update(over)
    return run_facts(**base)


PROVEN = {"sequence_complete": True, "header_recorded": True, "missing": []}
NOT_COPIED = {"sequence_complete": False, "header_recorded": False,
              "missing": ["no file was copied", "the header does not record this backup: ESE treated it as aborted"]}


def end_facts(err, mode="normal", journal="absent", **over):
    facts = {"trace": [{"call": END, "err": err}], "invalid": None, "mode": mode,
             "end_call": {"call": END, "err": err}, "proof": PROVEN}
    if journal != "absent":
        facts["journal"] = journal
    facts.update(over)
    return facts


def journal(ended=None, stop_seen=False, incomplete_files=(), **more):
    j = {"ended": ended, "stop_seen": stop_seen, "incomplete_files": list(incomplete_files)}
    j.update(more)
    return j


# (id, module, facts, check_mode, row, changed, failed, substrings of msg)
CASES = [
    # ---- run ----
    ("run invalid", "run", run_facts(invalid={"option": "page_size", "msg": "must be 4096 (the header's), got 8192"},
                                     backup_started=False, ended=None, backup_set=None),
     False, "invalid", False, True, ["option 'page_size'", "must be 4096"]),
    ("run invalid in check mode", "run", run_facts(invalid={"option": "dest", "msg": "must be absolute"},
                                                   backup_started=False, ended=None, backup_set=None),
     True, "invalid", False, True, ["option 'dest'"]),
    ("run check create", "run", run_facts(backup_started=False, ended=None, backup_set=None, logs_truncated=False,
                                          manifest=None, check={"would_create": SET, "type": "copy"}),
     True, "check_create", True, False, ["a copy backup would create backup set " + SET]),
    ("run check no details", "run", run_facts(backup_started=False, ended=None, backup_set=None, manifest=None,
                                              check={}), True, "check_create", True, False, ["would create"]),
    ("run existing set_name", "run", run_facts(
        invalid={"option": "set_name", "msg": "a backup set 'D:\\backup\\nightly' already exists; choose another "
                 "set_name or remove the old set"}, backup_started=False, ended=None, backup_set=None),
     False, "invalid", False, True, ["option 'set_name'", "already exists"]),
    ("run check failed", "run", failed("JetGetDatabaseFileInfoW", -1032, backup_started=False, ended=None,
                                       check={"would_create": True}),
     True, "check_failed", False, True, ["JetGetDatabaseFileInfoW returned JET_errFileAccessDenied (-1032)",
                                         "a real run would fail"]),
    ("run read verify", "run", failed(READ, -1018, backup_started=True),
     False, "failed_started", False, True,
     ["JetReadFileInstance returned JET_errReadVerifyFailure (-1018)", "esentutl /k",
      "the backup was ended with abort and no backup set was published"]),
    ("run end not reached", "run", failed(READ, -1022, backup_started=True, ended=None),
     False, "failed_started", False, True, ["the backup could not be ended"]),
    ("run failed after truncation", "run", failed("JetEndExternalBackupInstance2", -1003, logs_truncated=True),
     False, "failed_truncated", True, True, ["backup chain is broken", "new full backup"]),
    ("run failed after truncation, staging kept", "run",
     failed("JetReadFileInstance", -612, logs_truncated=True, kept_staging=r"D:\backup\.nightly.partial"),
     False, "failed_truncated", True, True, [r"D:\backup\.nightly.partial holds the only copy"]),
    ("run begin refused", "run", failed(BEGIN, -505, backup_started=False, ended=None),
     False, "failed_not_started", False, True,
     ["JetBeginExternalBackupInstance returned JET_errBackupInProgress (-505)", "no backup was started"]),
    ("run missing full", "run", failed(BEGIN, -560, backup_started=False, ended=None),
     False, "failed_not_started", False, True, ["recorded as a copy and does not count", "take a full backup that "
                                                "truncates the logs first"]),
    ("run created", "run", run_facts(), False, "created", True, False, ["created full backup set " + SET,
                                                                        "logs were truncated"]),
    ("run created copy", "run", run_facts(logs_truncated=False, manifest={"type": "copy"}), False, "created", True,
     False, ["created copy backup set"]),
    ("run again with the same set_name", "run",
     run_facts(already_exists=True, backup_started=False, ended=None, trace=[]), False, "exists", False, False,
     ["backup set " + SET + " already holds this full backup; nothing to do"]),
    ("run again in check mode", "run",
     run_facts(already_exists=True, backup_started=False, ended=None, trace=[]), True, "exists", False, False,
     ["nothing to do"]),
    ("run not recorded", "run", run_facts(backup_set=None, manifest=None, logs_truncated=False, proof={
        "sequence_complete": True, "header_recorded": False,
        "missing": ["the header does not record this backup: ESE treated it as aborted (C:\\db: bkinfoCopyPrev)"]}),
     False, "not_recorded", False, True, ["the backup ended but is not valid", "ESE treated it as aborted",
                                          "no backup set was published"]),
    ("run not recorded after truncation", "run", run_facts(backup_set=None, manifest=None, kept_staging="D:\\s",
                                                           proof=NOT_COPIED),
     False, "not_recorded_truncated", True, True, ["no file was copied", "backup chain is broken", "D:\\s holds"]),
    ("run not ended", "run", run_facts(backup_started=False, ended=None, logs_truncated=False),
     False, "inconsistent", False, True, ["inconsistent result"]),
    # ---- info ----
    ("info read", "info", {"trace": [], "invalid": None, "failed_call": None, "databases": [{"path": "a"}],
                           "backup_sets": []}, False, "read", False, False, ["read 1 database header(s)"]),
    ("info invalid", "info", {"trace": [], "invalid": {"option": "backup_path", "msg": "must be absolute"},
                              "failed_call": None}, False, "invalid", False, True, ["option 'backup_path'"]),
    ("info failed", "info", {"trace": [], "invalid": None, "failed_call": {"call": "esent.dll", "err": -1003,
                                                                           "detail": "DllNotFoundException"}},
     False, "failed", False, True, ["esent.dll returned JET_errInvalidParameter (-1003) [DllNotFoundException]"]),
    ("run inconsistent", "run", run_facts(backup_set=None), False, "inconsistent", False, True,
     ["inconsistent result"]),
    # ---- end ----
    ("end invalid", "end", end_facts(None, invalid={"option": "mode", "msg": "use normal or abort"}, end_call=None),
     False, "invalid", False, True, ["option 'mode'"]),
    ("end check open", "end", end_facts(None, end_call=None, check={"would_end": True}), True, "check_end", True,
     False, ["would be ended"]),
    ("end check nothing", "end", end_facts(None, end_call=None, check={"would_end": False}), True, "check_nothing",
     False, False, ["nothing would be ended"]),
    ("end complete", "end", end_facts(0, journal=journal()), False, "ended_complete", True, False,
     ["ended normally and is valid"]),
    ("end complete no journal", "end", end_facts(0), False, "ended_complete", True, False, ["valid"]),
    ("end nothing copied", "end", end_facts(0, journal=journal(), proof=NOT_COPIED), False, "ended_not_valid", True,
     True, ["backup ended but is not valid", "no file was copied", "ESE treated it as aborted"]),
    ("end no proof", "end", end_facts(0, journal=journal(), proof=None), False, "ended_not_valid", True, True,
     ["no proof of the backup was recorded"]),
    ("end logs not copied", "end", end_facts(0, proof={"sequence_complete": False, "header_recorded": True,
                                                       "missing": ["the logs were not copied"]}),
     False, "ended_not_valid", True, True, ["the logs were not copied"]),
    ("end full recorded as copy", "end", end_facts(0, journal=journal(), recorded_as="copy", session_type="full",
                                                   session={"name": "nightly"}),
     False, "ended_copy", True, False, ["is valid, recorded by ESE as a copy backup; incrementals cannot follow it"]),
    ("end copy session recorded as copy", "end", end_facts(0, recorded_as="copy", session_type="copy"),
     False, "ended_complete", True, False, ["is valid"]),
    ("end rerun not valid", "end", end_facts(-520, journal=journal("normal", backup_valid=False, proof=NOT_COPIED),
                                             proof=None),
     False, "rerun_not_valid", False, True, ["already ended but is not valid", "no file was copied"]),
    ("end stop seen", "end", end_facts(0, journal=journal(stop_seen=True)), False, "ended_not_valid", True, True,
     ["backup ended but is not valid", "-801"]),
    ("end incomplete", "end", end_facts(0, journal=journal(incomplete_files=["SRU0005C.log"])), False,
     "ended_not_valid", True, True, ["backup ended but is not valid", "SRU0005C.log"]),
    ("end abort", "end", end_facts(0, mode="abort", journal=journal(stop_seen=True)), False, "ended_abort", True,
     False, ["ended with abort"]),
    ("end rerun", "end", end_facts(-520, journal=journal("normal")), False, "rerun_ended", False, False,
     ["already ended normally"]),
    ("end rerun abort mode", "end", end_facts(-520, mode="abort", journal=journal("normal")), False, "rerun_ended",
     False, False, ["already ended normally"]),
    ("end gone abort", "end", end_facts(-520, journal=journal("abort")), False, "gone_normal", False, True,
     ["ended with abort"]),
    ("end gone idle", "end", end_facts(-520, journal=journal("idle_timeout")), False, "gone_normal", False, True,
     ["idle timeout"]),
    ("end gone crash", "end", end_facts(-520, journal=journal("host_crash")), False, "gone_normal", False, True,
     ["stopped while the backup ran"]),
    ("end gone open journal", "end", end_facts(-520, journal=journal(None)), False, "gone_normal", False, True,
     ["no end record"]),
    ("end gone crash abort", "end", end_facts(-520, mode="abort", journal=journal("host_crash")), False,
     "gone_abort", False, False, ["nothing to abort"]),
    ("end gone idle abort", "end", end_facts(-520, mode="abort", journal=journal("idle_timeout")), False,
     "gone_abort", False, False, ["idle timeout"]),
    ("end no session", "end", end_facts(-520), False, "no_session", False, False, ["no backup is in progress"]),
    ("end no session abort", "end", end_facts(-520, mode="abort"), False, "no_session", False, False, []),
    ("end abort by server", "end", end_facts(-801), False, "aborted", True, True,
     ["JET_errBackupAbortByServer (-801)"]),
    ("end abort by caller", "end", end_facts(-800), False, "aborted", True, True, ["errBackupAbortByCaller (-800)"]),
    ("end stop service", "end", end_facts(-1329), False, "other_error", False, True,
     ["JET_errClientRequestToStopJetService (-1329)", "the backup was not ended"]),
    ("end via failed_call", "end", end_facts(-1090, end_call=None, failed_call={"call": END, "err": -1090}), False,
     "other_error", False, True, ["JET_errInstanceUnavailable (-1090)"]),
    ("end abort stopped with term", "end", end_facts(-1090, mode="abort", journal=journal("abort"), stopped=True), False,
     "stopped", True, False, ["JET_errInstanceUnavailable (-1090)", "JetTerm2"]),
    ("end normal not stopped", "end", end_facts(-1090, stopped=False), False, "other_error", False, True,
     ["the backup was not ended"]),
    ("end no call", "end", end_facts(None, end_call=None), False, "no_call", False, True, ["no End call"]),
    # ---- begin / copy / truncate (sessions) ----
] + [
    ("begin " + c[0], "begin", dict({"trace": [], "invalid": None, "failed_call": None,
                                     "session": {"name": "nightly", "pid": 42}}, **c[1]), c[2], c[3], c[4], c[5], c[6])
    for c in (
        ("invalid", {"invalid": {"option": "session", "msg": "bad name"}}, False, "invalid", False, True, ["'session'"]),
        ("check failed", {"failed_call": {"call": "JetGetDatabaseFileInfoW", "err": -1032}}, True, "check_failed",
         False, True, ["a real run would fail"]),
        ("check begin", {"check": {"would_begin": True}}, True, "check_begin", True, False, ["nightly"]),
        ("check exists", {"check": {"would_begin": False}}, True, "check_exists", False, False, ["already open"]),
        ("failed", {"failed_call": {"call": BEGIN, "err": -505}}, False, "failed", False, True,
         ["JET_errBackupInProgress (-505)", "no backup session was begun"]),
        ("begun", {"started": True}, False, "begun", True, False, ["began backup session nightly", "pid 42"]),
        ("exists", {"exists": True}, False, "exists", False, False, ["already open"]),
        ("inconsistent", {}, False, "inconsistent", False, True, ["inconsistent"]),
    )
] + [
    ("copy " + c[0], "copy", dict({"trace": [], "invalid": None, "failed_call": None, "backup_set": None,
                                   "session": {"name": "nightly"}}, **c[1]), c[2], c[3], c[4], c[5], c[6])
    for c in (
        ("invalid", {"invalid": {"option": "session", "msg": "not running"}}, False, "invalid", False, True,
         ["not running"]),
        ("check", {"check": {"would_create": SET}}, True, "check", True, False, [SET]),
        ("failed", {"failed_call": {"call": READ, "err": -1018, "detail": "SRU00002.log"},
                    "journal": journal(incomplete_files=["C:\\sru\\SRU00002.log"])}, False, "failed", False, True,
         ["JET_errReadVerifyFailure (-1018)", "not read completely: C:\\sru\\SRU00002.log", "stays open"]),
        ("copied", {"backup_set": SET, "manifest": {"files": [1, 2]}}, False, "copied", True, False,
         ["copied 2 file(s) of session nightly into " + SET]),
        ("inconsistent", {}, False, "inconsistent", False, True, ["inconsistent"]),
    )
] + [
    ("truncate " + c[0], "truncate", dict({"trace": [], "invalid": None, "failed_call": None,
                                           "session": {"name": "nightly"}}, **c[1]), c[2], c[3], c[4], c[5], c[6])
    for c in (
        ("invalid", {"invalid": {"option": "session", "msg": "copy backup"}}, False, "invalid", False, True,
         ["copy backup"]),
        ("refused", {"refused": {"msg": "missing: SRU00002.log", "missing_logs": ["SRU00002.log"]}}, False,
         "refused", False, True, ["refusing to truncate the logs of session nightly: missing: SRU00002.log"]),
        ("already", {"already_truncated": True, "logs_truncated": True}, False, "already", False, False,
         ["already truncated"]),
        ("check", {"check": {"would_truncate": True}}, True, "check", True, False, ["would be truncated"]),
        ("failed", {"failed_call": {"call": "JetTruncateLogInstance", "err": -616}}, False, "failed", False, True,
         ["(-616)", "not truncated"]),
        ("truncated", {"logs_truncated": True}, False, "truncated", True, False, ["truncated the logs"]),
        ("inconsistent", {}, False, "inconsistent", False, True, ["inconsistent"]),
    )

]

# The end table, row by row: (err, mode, journal) -> (changed, failed, session_state, backup_valid)
END_SPEC = [
    (0, "normal", journal(), True, False, "ended", True),
    (0, "normal", journal(stop_seen=True), True, True, "ended", False),
    (0, "normal", journal(incomplete_files=["edb.log"]), True, True, "ended", False),
    (0, "abort", journal(), True, False, "aborted", False),
    (-520, "normal", journal("normal"), False, False, "ended", True),
    (-520, "normal", journal("abort"), False, True, "aborted", False),
    (-520, "normal", journal("idle_timeout"), False, True, "idle_timeout", False),
    (-520, "normal", journal("host_crash"), False, True, "host_crash", False),
    (-520, "abort", journal("abort"), False, False, "aborted", False),
    (-520, "abort", journal("idle_timeout"), False, False, "idle_timeout", False),
    (-520, "abort", journal("host_crash"), False, False, "host_crash", False),
    (-520, "normal", "absent", False, False, "not_found", False),
    (-801, "normal", journal(), True, True, "aborted", False),
    (-800, "normal", journal(), True, True, "aborted", False),
] + [(code, "normal", journal(), False, True, "unknown", False)
     for code in (-1329, -1090, -1029, -506, -1081, -1000, -1003)]


def restore_facts(**over):
    facts = {"trace": [], "failed_call": None, "invalid": None, "refused": None, "drill": False,
             "chain": [{"path": "D:\\b\\full", "type": "full", "gen_low": 92, "gen_high": 92},
                       {"path": "D:\\b\\inc1", "type": "incremental", "gen_low": 92, "gen_high": 93}],
             "restored": [], "written": [], "undone": [], "drill_report": None, "check": None}
    facts.update(over)
    return facts


DRILL_OK = {"passed": True, "scratch_removed": True, "checks": [{"check": "clean_shutdown", "ok": True}]}
CASES += [
    ("restore invalid", "restore", restore_facts(invalid={"option": "backup_set", "msg": "must be absolute"}),
     False, "invalid", False, True, ["option 'backup_set'"]),
    ("restore refused", "restore", restore_facts(refused={"problem": "chain_gap", "path": "x",
                                                          "msg": "the chain is missing an incremental"}),
     False, "refused", False, True, ["chain_gap", "nothing was written", "missing an incremental"]),
    ("restore check drill", "restore", restore_facts(drill=True, check={}, drill_report={"passed": None}),
     True, "check_drill", False, False, ["92-93", "2 set(s)"]),
    ("restore check", "restore", restore_facts(check={"would_write": [{"path": "E:\\r\\app.edb"}]}),
     True, "check_restore", True, False, ["would write E:\\r\\app.edb", "92-93"]),
    ("restore drill call failed", "restore", restore_facts(
        drill=True, failed_call={"call": "JetExternalRestore2W", "err": -555, "detail": ""},
        drill_report={"passed": False, "scratch_removed": True}),
     False, "drill_failed_call", False, True, ["drill failed", "JET_errGivenLogFileHasBadSignature"]),
    ("restore drill check failed", "restore", restore_facts(
        drill=True, drill_report={"passed": False, "scratch_removed": False, "scratch": "C:\\t\\x",
                                  "checks": [{"check": "page_checksums", "ok": False, "detail": "2 bad"}]}),
     False, "drill_failed_check", False, True, ["page_checksums (2 bad)", "could not be removed"]),
    ("restore drill passed", "restore", restore_facts(drill=True, drill_report=DRILL_OK),
     False, "drill_passed", False, False, ["drill passed", "92-93"]),
    ("restore failed undone", "restore", restore_facts(
        failed_call={"call": "JetExternalRestore2W", "err": -1811, "detail": ""}, written=["E:\\a.edb"],
        undone=["removed E:\\a.edb"]), False, "failed_undone", False, True, ["as they were", "removed E:"]),
    ("restore failed changed", "restore", restore_facts(
        failed_call={"call": "WriteFile", "err": -1022, "detail": ""}, written=["E:\\a.edb"],
        undone=["could not remove E:\\a.edb: busy"]), False, "failed_changed", True, True, ["could not undo"]),
    ("restore restored", "restore", restore_facts(restored=[{"path": "E:\\a.edb"}], written=["E:\\a.edb"]),
     False, "restored", True, False, ["restored 1 database(s) from 2 set(s)", "92-93"]),
    ("restore inconsistent", "restore", restore_facts(), False, "inconsistent", False, True, ["inconsistent"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_policy_rows(case):
    module, facts, check_mode, row_id, changed, failed_, substrings = case[1:]
    result = jp.apply(module, facts, check_mode)
    assert result["policy_row"] == "%s.%s" % (module, row_id)
    assert (result["changed"], result["failed"]) == (changed, failed_)
    for text in substrings:
        assert text in result["msg"]
    assert "unknown>" not in result["msg"], result["msg"]
    if row_id != "inconsistent":
        assert "None" not in result["msg"], result["msg"]


def test_every_row_is_exercised():
    seen = set((c[1], c[4]) for c in CASES)
    for module, policy in jp.POLICIES.items():
        for row in policy.table:
            assert (module, row.id) in seen, "no test case for %s.%s" % (module, row.id)


@pytest.mark.parametrize("spec", END_SPEC, ids=["%s-%s-%d" % (s[0], s[1], i) for i, s in enumerate(END_SPEC)])
def test_end_table_of_issue_4(spec):
    err, mode, jour, changed, failed_, state, valid = spec
    result = jp.apply("end", end_facts(err, mode=mode, journal=jour), False)
    assert (result["changed"], result["failed"], result["session_state"], result["backup_valid"]) == (
        changed, failed_, state, valid), result
    assert result["jet_err"] == {"code": err, "name": je.name_of(err), "call": END}


def test_end_no_session_warns():
    result = jp.apply("end", end_facts(-520), False)
    assert "no backup session" in result["warnings"][0]


def test_end_rerun_after_invalid_end_reports_invalid_backup():
    result = jp.apply("end", end_facts(-520, journal=journal("normal", stop_seen=True)), False)
    assert (result["changed"], result["failed"], result["backup_valid"]) == (False, False, False)


def test_end_every_result_has_the_session_keys():
    for case in CASES:
        if case[1] == "end":
            result = jp.apply("end", case[2], case[3])
            assert set(["jet_err", "backup_valid", "session_state"]) <= set(result), case[0]
            assert set(result["jet_err"]) == set(["code", "name", "call"])


ALL_VALUES = sorted(je.BY_VALUE)


@pytest.mark.parametrize("code", ALL_VALUES)
def test_end_any_other_code(code):
    """Every catalog value the end table does not name is 'any other': not changed, failed."""
    result = jp.apply("end", end_facts(code, journal=journal()), False)
    if code in jp.explicit_errs(jp.END_TABLE):
        assert result["policy_row"] != "end.other_error"
        return
    assert result["policy_row"] == "end.other_error"
    assert (result["changed"], result["failed"], result["session_state"], result["backup_valid"]) == (
        False, True, "unknown", False)
    assert je.describe(code) in result["msg"]
    assert result["jet_err"]["name"] == je.BY_VALUE[code].name


@pytest.mark.parametrize("code", [c for c in ALL_VALUES if c != 0])
def test_run_any_failed_call(code):
    """Any failed call during a run fails the task, names the error and the call, and changes nothing."""
    result = jp.apply("run", failed(READ, code), False)
    assert (result["changed"], result["failed"]) == (False, True)
    assert "%s returned %s" % (READ, je.describe(code)) in result["msg"]
    assert result["jet_err"] == {"code": code, "name": je.BY_VALUE[code].name, "call": READ}
    truncated = jp.apply("run", failed(READ, code, logs_truncated=True), False)
    assert (truncated["changed"], truncated["failed"]) == (True, True)


def test_run_success_has_no_jet_err():
    result = jp.apply("run", run_facts(), False)
    assert "jet_err" not in result and "session_state" not in result and "backup_valid" not in result


def test_run_hresult_in_failed_call_is_decoded():
    result = jp.apply("run", failed("CertSrvBackupRead", 0xC80003FA), False)
    assert "JET_errReadVerifyFailure (-1018, HRESULT 0xC80003FA)" in result["msg"]
    assert result["jet_err"]["name"] == "JET_errReadVerifyFailure"


def test_tables_end_with_a_catch_all():
    for policy in jp.POLICIES.values():
        assert policy.table[-1].when == {}
        ids = [row.id for row in policy.table]
        assert len(ids) == len(set(ids))


def test_journal_shape_is_checked():
    with pytest.raises(ValueError):
        jp.journal_facts({"ended": "exploded"})
    assert jp.journal_facts({"ended": "normal"}) == {"ended": "normal", "stop_seen": False, "incomplete_files": [],
                                                     "backup_valid": None, "proof": None}
