# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The retention planner (pure): GFS selection, chains as the unit, verified chains, holds, deletion order."""
import datetime

import pytest

from ansible_collections.ese.backup.plugins.module_utils.ese_format import retention as rt

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=UTC)      # a Thursday
SIGN = "ab" * 28


def rec(name, set_type, created, gen_low, gen_high, ending_ok=True, verified=True, sign_db=None, manifest=True):
    dbs = [{"file": "databases/x.edb", "sign_db": sign_db or "cd" * 28, "sign_log": SIGN}] \
        if set_type in ("full", "copy") else ([{"sign_db": sign_db}] if sign_db else [])
    m = {"format": "ese.backup/1", "type": set_type, "created": created, "databases": dbs, "files": [],
         "logs": {"gen_low": gen_low, "gen_high": gen_high}} if manifest else None
    probs = [] if manifest else [{"code": "MANIFEST_INVALID", "severity": "error", "file": name + "/manifest.json",
                                  "detail": "x"}]
    return rt.set_record(name, m, probs, ending_ok, [], verified=verified, size=10)


def daily_fulls(days, start=NOW):
    """One full chain per day, the newest ``start``'s day at 04:00, going back."""
    out = []
    for i in range(days):
        t = (start - datetime.timedelta(days=i)).replace(hour=4, minute=0)
        out.append(rec("full-%02d" % i, "full", t.strftime("%Y-%m-%dT%H:%M:%SZ"), 100 - 2 * i, 101 - 2 * i))
    return out


def actions(p):
    return dict((d["name"], d["action"]) for d in p["sets"])


def kept(p):
    return sorted(n for n, a in actions(p).items() if a == "keep")


def test_keep_full_keeps_the_newest_chains_whole_and_removes_dependants_first():
    recs = [rec("f1", "full", "2026-11-20T04:00:00Z", 10, 12), rec("i1", "incremental", "2026-11-21T04:00:00Z", 13, 14),
            rec("d1", "differential", "2026-11-21T05:00:00Z", 13, 15),
            rec("i2", "incremental", "2026-11-22T04:00:00Z", 15, 16),
            rec("f2", "full", "2026-11-24T04:00:00Z", 17, 18), rec("i3", "incremental", "2026-11-25T04:00:00Z", 19, 20)]
    p = rt.plan(recs, NOW, keep_full=1, min_verified=0)
    assert kept(p) == ["f2", "i3"]
    assert p["remove_order"] == ["i2", "d1", "i1", "f1"]       # newest dependant first, the full last
    assert p["newest_verified_full"] == "f2"
    for i in range(len(p["remove_order"]) + 1):               # stopping after any deletion orphans nothing
        assert rt.dependants_left(p["chains"], set(p["remove_order"][:i])) == []


def test_dependants_left_catches_a_full_deleted_first():
    recs = [rec("f1", "full", "2026-11-20T04:00:00Z", 10, 12), rec("i1", "incremental", "2026-11-21T04:00:00Z", 13, 14)]
    chains = rt.build_chains(recs)[0]
    assert rt.dependants_left(chains, {"f1"}) == ["i1"]


def test_daily_weekly_monthly_selection():
    recs = daily_fulls(70)
    p = rt.plan(recs, NOW, keep_daily=3, min_verified=0)
    assert kept(p) == ["full-00", "full-01", "full-02"]
    p = rt.plan(recs, NOW, keep_weekly=3, min_verified=0)
    # this week (Mon 23 Nov - Thu 26): newest is today's; the week of 16 Nov: its Sunday (22nd, i=4); of 9 Nov: 15th
    assert kept(p) == ["full-00", "full-04", "full-11"]
    p = rt.plan(recs, NOW, keep_monthly=3, min_verified=0)
    # November: today; October: the 31st (i=26); September: the 30th (i=57)
    assert kept(p) == ["full-00", "full-26", "full-57"]
    rules = dict((d["name"], d["rules"]) for d in p["sets"])
    assert rules["full-26"] == ["keep_monthly (newest of 2026-10)"]
    assert rules["full-30"] == ["no_rule_keeps_it"]


def test_gfs_picks_the_newest_chain_of_a_day_and_skips_empty_days():
    recs = [rec("a", "full", "2026-11-26T01:00:00Z", 10, 11), rec("b", "full", "2026-11-26T03:00:00Z", 12, 13),
            rec("c", "full", "2026-11-23T03:00:00Z", 8, 9)]
    p = rt.plan(recs, NOW, keep_daily=3, min_verified=0)
    assert kept(p) == ["b"]          # the 25th and 24th had none; the 23rd is outside the last 3 days


def test_keep_days_counts_the_newest_set_of_a_chain():
    recs = [rec("f1", "full", "2026-11-10T04:00:00Z", 10, 12), rec("i1", "incremental", "2026-11-24T04:00:00Z", 13, 14),
            rec("f0", "full", "2026-11-01T04:00:00Z", 5, 6)]
    p = rt.plan(recs, NOW, keep_days=7, min_verified=0)
    assert kept(p) == ["f1", "i1"]


def test_min_verified_and_newest_verified_full_survive_every_rule():
    recs = daily_fulls(5)
    for r in recs[:2]:
        r["verified"] = False
    p = rt.plan(recs, NOW, keep_full=1, min_verified=2)
    # full-00 by keep_full; full-02 is the newest verified full; full-02 and full-03 are the 2 newest verified
    assert kept(p) == ["full-00", "full-02", "full-03"]
    rules = dict((d["name"], d["rules"]) for d in p["sets"])
    assert "newest_verified_full" in rules["full-02"] and "min_verified (2 of 2)" in rules["full-03"]
    assert p["newest_verified_full"] == "full-02"


def test_a_copy_set_is_a_chain_but_not_the_newest_verified_full():
    recs = [rec("f1", "full", "2026-11-20T04:00:00Z", 10, 12), rec("c1", "copy", "2026-11-25T04:00:00Z", 13, 14)]
    p = rt.plan(recs, NOW, keep_full=1, min_verified=0)
    assert kept(p) == ["c1", "f1"] and p["newest_verified_full"] == "f1"


def test_invalid_or_missing_endings_hold_their_chain_and_are_reported():
    recs = [rec("f1", "full", "2026-11-10T04:00:00Z", 10, 12),
            rec("i1", "incremental", "2026-11-11T04:00:00Z", 13, 14, ending_ok=False, verified=False),
            rec("f2", "full", "2026-11-12T04:00:00Z", 15, 16),
            rec("f3", "full", "2026-11-25T04:00:00Z", 17, 18)]
    p = rt.plan(recs, NOW, keep_full=1, min_verified=0)
    assert kept(p) == ["f1", "f3", "i1"] and p["remove_order"] == ["f2"]
    held = dict((d["name"], d) for d in p["sets"] if d["held"])
    assert sorted(held) == ["f1", "i1"] and held["f1"]["rules"] == ["ending_not_valid: i1"]


def test_an_unreadable_manifest_holds_the_set():
    recs = [rec("f1", "full", "2026-11-10T04:00:00Z", 10, 12, manifest=False),
            rec("f3", "full", "2026-11-25T04:00:00Z", 17, 18)]
    p = rt.plan(recs, NOW, keep_full=1, min_verified=0)
    assert kept(p) == ["f1", "f3"]
    assert [d["rules"] for d in p["sets"] if d["name"] == "f1"] == [["manifest_problem: f1", "created_unknown"]]


def test_an_incremental_without_a_full_is_kept_as_no_base():
    recs = [rec("i0", "incremental", "2026-11-01T04:00:00Z", 5, 6), rec("f3", "full", "2026-11-25T04:00:00Z", 17, 18)]
    p = rt.plan(recs, NOW, keep_full=1, min_verified=0)
    assert kept(p) == ["f3", "i0"] and [x["code"] for x in p["problems"]] == ["CHAIN_NO_BASE"]


def test_a_set_of_another_database_holds_its_chain_and_every_older_one():
    recs = [rec("fa", "full", "2026-11-10T04:00:00Z", 10, 12, sign_db="11" * 28),
            rec("fb", "full", "2026-11-11T04:00:00Z", 10, 12, sign_db="22" * 28),
            rec("ia", "incremental", "2026-11-12T04:00:00Z", 13, 14, sign_db="11" * 28),
            rec("f3", "full", "2026-11-25T04:00:00Z", 17, 18)]
    p = rt.plan(recs, NOW, keep_full=1, min_verified=0)
    # ia sits in fb's chain by time but belongs to fa: neither fa nor fb may go
    assert kept(p) == ["f3", "fa", "fb", "ia"]
    assert "CHAIN_DB_SIGNATURE_MISMATCH" in [x["code"] for x in p["problems"]]


@pytest.mark.parametrize("kw, option", [({"keep_full": -1}, "keep_full"), ({"keep_daily": "3"}, "keep_daily"),
                                        ({"keep_full": 1, "min_verified": -2}, "min_verified"), ({}, "keep_full")])
def test_bad_counts_name_the_option(kw, option):
    with pytest.raises(ValueError, match=option):
        rt.plan([], NOW, **kw)


def test_parse_time():
    assert rt.parse_time("2026-11-25T04:00:00Z") == datetime.datetime(2026, 11, 25, 4, tzinfo=UTC)
    assert rt.parse_time("2026-11-25T05:00:00+01:00") == datetime.datetime(2026, 11, 25, 4, tzinfo=UTC)
    assert rt.parse_time("2026-11-25T04:00:00") is None and rt.parse_time(7) is None and rt.parse_time("x") is None
