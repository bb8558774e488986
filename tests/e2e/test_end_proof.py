# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The end module's verdict rests on proof, end to end (simulated hosts, the session host, both simulator profiles):
the journal's complete sequence and the header slot that ESE's ErrBKUpdateHdrBackupInfo fills. Every set a session
published gets its ending record, which verify reads; a re-run of end reports the same verdict unchanged."""
import json
import os

import pytest

from simulation import SHARE, SRU_DIR, bkinfo, engines_left
from test_sessions import ask_host, hosts_cleanup, play  # noqa: F401  (fixture)

DB = SRU_DIR + "\\SRUDB.dat"
SLOTS = ("full", "inc", "copy", "diff")
PROFILES = ("esent10", "xp")

BEGIN = """
    - name: begin
      ese.backup.begin:
        session: "{{ sess | default('s') }}"
        databases: ['%s']
        log_path: '%s'
        base_name: SRU
        type: "{{ btype | default('full') }}"
        idle_timeout: 600
""" % (DB, SRU_DIR)

COPY = """
    - name: copy
      ese.backup.copy:
        session: "{{ sess | default('s') }}"
        dest: '%s\\{{ inventory_hostname }}'
        set_name: "{{ set_name | default('set') }}"
        logs: "{{ copy_logs | default(true) }}"
      when: do_copy | default(true)
""" % SHARE

TRUNCATE = """
    - name: truncate
      ese.backup.truncate:
        session: "{{ sess | default('s') }}"
      when: do_truncate | default(false)
"""

END = """
    - name: end
      ese.backup.end:
        session: "{{ sess | default('s') }}"
      ignore_errors: true
"""


def headers(sim, host):
    db = os.path.join(sim.local(host, SRU_DIR), "SRUDB.dat")
    return dict((s, bkinfo(db, s)) for s in SLOTS)


def set_dir(sim, host, name="set"):
    return sim.local(host, "%s\\%s\\%s" % (SHARE, host, name))


def ending(sim, host, name="set"):
    with open(os.path.join(set_dir(sim, host, name), "ending.json")) as f:
        return json.load(f)


def verified(sim, host, name="set"):
    from ansible_collections.ese.backup.plugins.module_utils.ese_format.verify import verify
    return verify(set_dir(sim, host, name))


def outcome(res, host, task="end"):
    rec = res.task(host, task)
    r = rec["result"]
    return rec["status"], r.get("policy_row"), r.get("changed"), r.get("backup_valid")


def test_end_is_valid_only_with_both_proofs_on_both_profiles(hosts_cleanup):
    sim = hosts_cleanup
    for p in PROFILES:
        sim.add_host("none-" + p, esesim_profile=p, do_copy=False)
        sim.add_host("dbonly-" + p, esesim_profile=p, copy_logs=False)
        sim.add_host("stop-" + p, esesim_profile=p)
        sim.add_host("trunc-" + p, esesim_profile=p, do_truncate=True)
    sim.place_fixtures()
    before = dict((h, headers(sim, h)) for h in sim.hosts)
    res = sim.run(play(BEGIN + COPY + TRUNCATE), forks=4)
    assert res.rc == 0, res.stdout[-3000:]
    for p in PROFILES:
        answer = ask_host(sim, "stop-" + p, {"op": "stop"})
        assert answer["journal"]["stop_seen"] is True, answer
    res = sim.run(play(END), forks=4)
    first = {}
    for p in PROFILES:
        xp = p == "xp"
        # begin -> end: nothing copied; ESE ends Normal before the log phase as an abort by the caller
        # (backup.cxx ErrBKExternalBackupCleanUp: JET_errSuccess on later builds, -800 on XP); no header change.
        status, row, changed, valid = outcome(res, "none-" + p)
        end = res.task("none-" + p, "end")["result"]
        assert (status, valid) == ("failed", False), end
        if xp:
            assert row == "end.aborted" and end["jet_err"]["code"] == -800, end
        else:
            assert row == "end.ended_not_valid" and end["jet_err"]["code"] == 0 and changed is True, end
            assert "no file was copied" in end["msg"], end["msg"]
            assert "the header does not record this backup: ESE treated it as aborted" in end["msg"], end["msg"]
            assert end["proof"]["sequence_complete"] is False and end["proof"]["header_recorded"] is False
        assert headers(sim, "none-" + p) == before["none-" + p]

        # begin -> copy (databases only) -> end: no log phase
        status, row, changed, valid = outcome(res, "dbonly-" + p)
        end = res.task("dbonly-" + p, "end")["result"]
        assert (status, valid) == ("failed", False), end
        assert row == ("end.aborted" if xp else "end.ended_not_valid"), end
        if not xp:
            assert "the logs were not copied" in end["msg"] and "ESE treated it as aborted" in end["msg"], end["msg"]
        assert headers(sim, "dbonly-" + p) == before["dbonly-" + p]
        e = ending(sim, "dbonly-" + p)
        assert e["backup_valid"] is False and e["ended"] == ("abort" if xp else "normal") and e["session"] == "s"
        v = verified(sim, "dbonly-" + p)
        assert v["restorable"] is False and "SET_ENDING_NOT_VALID" in [x["code"] for x in v["problems"]]

        # begin -> copy -> stop -> end: ESE ends it as an abort by the server (-801 on XP)
        status, row, changed, valid = outcome(res, "stop-" + p)
        end = res.task("stop-" + p, "end")["result"]
        assert (status, valid) == ("failed", False), end
        if xp:
            assert row == "end.aborted" and end["jet_err"]["code"] == -801, end
        else:
            assert row == "end.ended_not_valid", end
            assert "server stopped the backup" in end["msg"] and "ESE treated it as aborted" in end["msg"], end["msg"]
            assert end["proof"]["sequence_complete"] is True and end["proof"]["header_recorded"] is False
        assert headers(sim, "stop-" + p) == before["stop-" + p]
        v = verified(sim, "stop-" + p)
        assert v["restorable"] is False and [x["code"] for x in v["problems"]] == ["SET_ENDING_NOT_VALID"], v["problems"]

        # begin -> copy -> truncate -> end: valid, both proofs, the ending record says truncated
        status, row, changed, valid = outcome(res, "trunc-" + p)
        end = res.task("trunc-" + p, "end")["result"]
        assert (status, row, changed, valid) == ("ok", "end.ended_complete", True, True), end
        assert end["proof"]["sequence_complete"] is True and end["proof"]["header_recorded"] is True, end["proof"]
        assert end["proof"]["missing"] == [] and end["recorded_as"] == "full"
        e = ending(sim, "trunc-" + p)
        assert (e["format"], e["ended"], e["backup_valid"], e["logs_truncated"], e["recorded_as"]) == (
            "ese.backup/ending/1", "normal", True, True, "full"), e
        with open(os.path.join(set_dir(sim, "trunc-" + p), "manifest.json")) as f:
            m = json.load(f)
        assert headers(sim, "trunc-" + p)["full"] == (m["logs"]["gen_low"], m["logs"]["gen_high"])
        v = verified(sim, "trunc-" + p)
        assert v["valid"] is True and v["restorable"] is True and v["problems"] == [], v["problems"]
        for h in ("none-", "dbonly-", "stop-", "trunc-"):
            first[h + p] = outcome(res, h + p)

    # end again: the same verdict, changed false
    res = sim.run(play(END), forks=4)
    for host, (status, row, changed, valid) in first.items():
        again = res.task(host, "end")["result"]
        assert (res.task(host, "end")["status"], again["changed"], again["backup_valid"]) == (status, False, valid), (
            host, again)
        if row == "end.ended_not_valid":
            assert again["policy_row"] == "end.rerun_not_valid" and "ESE treated it as aborted" in again["msg"], again
    assert engines_left(sim.root) == []


def test_a_full_without_truncation_is_recorded_as_a_copy_and_no_incremental_follows_it(hosts_cleanup):
    sim = hosts_cleanup
    for p in PROFILES:
        sim.add_host("copyfull-" + p, esesim_profile=p)
        sim.add_host("inc-" + p, esesim_profile=p, do_truncate=True)
    res = sim.run(play(BEGIN + COPY + TRUNCATE + END), forks=4)
    assert res.rc == 0, res.stdout[-3000:]
    for p in PROFILES:
        host = "copyfull-" + p
        rec = res.task(host, "end")
        end = rec["result"]
        assert (rec["status"], end["policy_row"], end["backup_valid"], end["recorded_as"]) == (
            "ok", "end.ended_copy", True, "copy"), end
        assert "recorded by ESE as a copy backup; incrementals cannot follow it" in end["msg"]
        assert any("recorded by ESE as a copy backup" in w for w in end.get("warnings", [])), end
        e = ending(sim, host)
        assert e["recorded_as"] == "copy" and e["logs_truncated"] is False
        assert e["note"] == "recorded by ESE as a copy backup; incrementals cannot follow it"
        with open(os.path.join(set_dir(sim, host), "manifest.json")) as f:
            m = json.load(f)
        assert headers(sim, host)["copy"] == (m["logs"]["gen_low"], m["logs"]["gen_high"])
        assert headers(sim, host)["full"] == (0, 0)
        assert verified(sim, host)["restorable"] is True
    # An incremental: on a database whose only backup was recorded as a copy, ESE refuses at Begin
    # (ErrLGCheckIncrementalBackup: bkinfoFullPrev.genLow == 0 -> JET_errMissingFullBackup); after a truncating
    # full it begins, and ending it without copying its logs is not valid.
    inc = BEGIN.replace("name: begin", "name: begin inc") + END.replace("name: end", "name: end inc")
    res = sim.run(play(inc), forks=4, extra_args=["-e", "btype=incremental", "-e", "sess=i"])
    for p in PROFILES:
        rec = res.task("copyfull-" + p, "begin inc")
        begin = rec["result"]
        assert rec["status"] == "failed" and begin["jet_err"]["code"] == -560, begin
        assert "JET_errMissingFullBackup (-560)" in begin["msg"] and "recorded as a copy" in begin["msg"], begin["msg"]
        rec = res.task("inc-" + p, "begin inc")
        assert rec["status"] == "ok", rec["result"]["msg"]
        before = headers(sim, "inc-" + p)
        status, row, changed, valid = outcome(res, "inc-" + p, "end inc")
        end = res.task("inc-" + p, "end inc")["result"]
        assert (status, row, valid) == ("failed", "end.ended_not_valid", False), end
        assert "no file was copied" in end["msg"]
        assert headers(sim, "inc-" + p) == before
    # end again
    res = sim.run(play(END), forks=4)
    for p in PROFILES:
        again = res.task("copyfull-" + p, "end")
        assert (again["status"], again["result"]["changed"], again["result"]["backup_valid"],
                again["result"]["policy_row"]) == ("ok", False, True, "end.rerun_ended"), again["result"]
    res = sim.run(play(END), forks=4, extra_args=["-e", "sess=i"])
    for p in PROFILES:
        again = res.task("inc-" + p, "end")
        assert (again["status"], again["result"]["changed"], again["result"]["policy_row"]) == (
            "failed", False, "end.rerun_not_valid"), again["result"]
    assert engines_left(sim.root) == []


@pytest.mark.parametrize("profile", PROFILES)
def test_a_run_publishes_only_a_recorded_backup(sim, profile):
    """ese.backup.run: the set holds its ending record; when the header cannot be read after End, no set is
    published and the task says why (the logs were truncated, so the staging folder is kept)."""
    sim.add_host("ok", esesim_profile=profile)
    sim.add_host("noread", esesim_profile=profile,
                 # validation reads the page size and the header, the instance setup the page size again; the 4th call is the read after End
                 esesim_faults=[{"api": "JetGetDatabaseFileInfoW", "call": 4, "err": -1022}])
    res = sim.run(play("""
    - name: run
      ese.backup.run:
        databases: ['%s']
        log_path: '%s'
        base_name: SRU
        dest: '%s\\{{ inventory_hostname }}'
        set_name: set
      ignore_errors: true
""" % (DB, SRU_DIR, SHARE)))
    rec = res.task("ok", "run")
    assert rec["status"] == "ok" and rec["result"]["proof"]["header_recorded"] is True, rec["result"]
    e = ending(sim, "ok")
    assert (e["session"], e["backup_valid"], e["recorded_as"], e["logs_truncated"]) == (None, True, "full", True)
    assert verified(sim, "ok")["restorable"] is True
    rec = res.task("noread", "run")
    r = rec["result"]
    assert rec["status"] == "failed" and r["policy_row"] == "run.not_recorded_truncated", r
    assert "could not be read after End" in r["msg"] and "no backup set was published" in r["msg"], r["msg"]
    assert not os.path.exists(set_dir(sim, "noread")) and r["kept_staging"], r
