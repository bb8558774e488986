# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ese.backup.run end to end: playbooks -> action plugin -> simulated host -> engine -> simulator."""
import json
import os

import pytest

from simulation import SHARE, SRU_DIR, bkinfo, checked_manifest, sample_set, sha256

DB = SRU_DIR + "\\SRUDB.dat"


def backup_play(extra="", task_extra=""):
    return """
- hosts: all
  gather_facts: false
  tasks:
    - name: backup
      ese.backup.run:
        databases: ["%s"]
        log_path: '%s'
        base_name: SRU
        dest: '%s\\{{ inventory_hostname }}'
        set_name: "{{ set_name | default('nightly') }}"
        type: "{{ backup_type | default('full') }}"
%s
%s
""" % (DB.replace("\\", "\\\\"), SRU_DIR, SHARE, task_extra, extra)


def test_full_backup_of_each_sample_set(sim):
    sim.add_host("web01", fixture="srum-server2022-clean")
    sim.add_host("web02", fixture="srum-win11-dirty")
    res = sim.run(backup_play())
    assert res.rc == 0, res.stdout
    for host, fixture, copied, truncated in (
            ("web01", "srum-server2022-clean", [2], [1]),
            ("web02", "srum-win11-dirty", [92], [89, 90, 91])):
        rec = res.task(host, "backup")
        assert rec["status"] == "ok" and rec["result"]["changed"] is True, rec
        assert rec["result"]["backup_set"] == "%s\\%s\\nightly" % (SHARE, host)
        set_dir = sim.local(host, rec["result"]["backup_set"])
        manifest = checked_manifest(set_dir)
        assert manifest["type"] == "full"
        assert (manifest["logs"]["gen_low"], manifest["logs"]["gen_high"]) == (copied[0], copied[-1])
        # The copied log is the fixture's current log, byte for byte (rolled to a numbered name).
        log = [f for f in manifest["files"] if f["role"] == "log"]
        assert [f["generation"] for f in log] == copied
        assert log[0]["sha256"] == sha256(os.path.join(sample_set(fixture), "SRU.log"))
        # Truncation deleted the logs below the checkpoint on the host; End recorded FullPrev.
        sru = sim.local(host, SRU_DIR)
        for gen in truncated:
            assert not os.path.exists(os.path.join(sru, "SRU%05X.log" % gen))
        assert bkinfo(os.path.join(sru, "SRUDB.dat"), "full") == (copied[0], copied[-1])
        streamed = os.path.join(set_dir, "databases", "SRUDB.dat")
        assert bkinfo(streamed, "cur")[0] == copied[0]


def test_check_mode_changes_nothing(sim):
    sim.add_host("web01", fixture="srum-win11-dirty")
    sim.add_host("web02", fixture="srum-server2022-clean")
    sim.place_fixtures()
    before = {h: sim.snapshot(h) for h in ("web01", "web02")}
    res = sim.run(backup_play(), extra_args=["--check"])
    assert res.rc == 0, res.stdout
    for host in ("web01", "web02"):
        rec = res.task(host, "backup")
        assert rec["status"] == "ok" and rec["result"]["changed"] is True
        assert rec["result"]["backup_set"] is None
        assert rec["result"]["check"]["would_create"] == "%s\\%s\\nightly" % (SHARE, host)
        assert sim.snapshot(host) == before[host]


def test_incremental_after_full_copies_only_logs_and_records_incprev(sim):
    sim.add_host("web02", fixture="srum-win11-dirty")
    play = backup_play() + """
    - name: incremental
      ese.backup.run:
        databases: ["%s"]
        log_path: '%s'
        base_name: SRU
        dest: '%s\\{{ inventory_hostname }}'
        set_name: inc1
        type: incremental
""" % (DB.replace("\\", "\\\\"), SRU_DIR, SHARE)
    res = sim.run(play)
    assert res.rc == 0, res.stdout
    rec = res.task("web02", "incremental")
    assert rec["result"]["changed"] is True
    set_dir = sim.local("web02", rec["result"]["backup_set"])
    with open(os.path.join(set_dir, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["type"] == "incremental"
    assert {f["role"] for f in manifest["files"]} == {"log"}
    assert not os.path.exists(os.path.join(set_dir, "databases"))
    gens = [f["generation"] for f in manifest["files"]]
    assert gens == list(range(manifest["logs"]["gen_low"], manifest["logs"]["gen_high"] + 1))
    assert gens[-1] == 93  # the generation the full backup's roll started
    db = os.path.join(sim.local("web02", SRU_DIR), "SRUDB.dat")
    assert bkinfo(db, "inc") == (gens[0], gens[-1])
    assert bkinfo(db, "full") == (92, 92)


# Every JET_err the simulator can inject on each call of a full backup of the clean sample set
# (one database streamed in two reads: data + trailer, then the 0-byte read; one log).
FAULTS = [("JetBeginExternalBackupInstance", 1, e) for e in
          (-505, -510, -516, -519, -523, -526, -529, -532, -533, -542, -617, -900, -1003, -1029,
           -1090, -1329)] + \
    [("JetGetAttachInfoInstanceW", 1, e) for e in (-520, -801, -1029, -1329, -1011)] + \
    [("JetOpenFileInstanceW", 1, e) for e in (-520, -1011, -1203, -1032, -801, -1022, -1231)] + \
    [("JetReadFileInstance", 1, e) for e in (-1018, -1118, -1119, -1021, -1022, -1003, -801)] + \
    [("JetCloseFileInstance", 1, e) for e in (-1003, -520)] + \
    [("JetGetLogInfoInstance2W", 1, e) for e in (-521, -801, -1811, -569, -520)] + \
    [("JetOpenFileInstanceW", 2, e) for e in (-569, -801, -1032)] + \
    [("JetReadFileInstance", 3, e) for e in (-612, -801, -1022)] + \
    [("JetTruncateLogInstance", 1, e) for e in (-616, -801, -1032)] + \
    [("JetEndExternalBackupInstance2", 1, e) for e in (-1003, -520, -1329, -800, -801)]


def test_every_injected_jet_error_fails_the_task_and_publishes_nothing(sim):
    from ansible_collections.ese.backup.plugins.plugin_utils import _jet_errors as jet_errors
    hosts = {}
    for i, (api, call, err) in enumerate(FAULTS):
        host = sim.add_host("f%02d" % i, esesim_faults=[{"api": api, "call": call, "err": err}])
        hosts[host] = (api, call, err)
    res = sim.run(backup_play(task_extra="      ignore_errors: true"))
    problems = []
    for host, (api, call, err) in hosts.items():
        rec = res.task(host, "backup")
        r = rec["result"]
        name = jet_errors.lookup(err).name
        trace = [(t["call"], t["err"], t.get("detail", "")) for t in r.get("trace", [])]
        checks = {
            "failed": rec["status"] == "failed",
            "jet_err": r.get("jet_err", {}).get("code") == err and r["jet_err"]["call"] == api,
            "msg names error and call": name in r.get("msg", "") and api in r.get("msg", ""),
            "no set published": r.get("backup_set") is None
            and not os.path.exists(sim.local(host, "%s\\%s\\nightly" % (SHARE, host))),
            # Ended by End2 (-520: esent had already aborted it), or torn down by JetTerm2(StopBackup).
            "backup ended": api == "JetBeginExternalBackupInstance" or any(
                (c == "JetEndExternalBackupInstance2" and e in (0, -520))
                or (c == "JetTerm2" and e == 0 and "0x4" in d) for c, e, d in trace),
        }
        share = sim.local(host, "%s\\%s" % (SHARE, host))
        leftovers = os.listdir(share) if os.path.isdir(share) else []
        if not r.get("logs_truncated"):
            checks["no staging left"] = leftovers == []
        failed = [k for k, ok in checks.items() if not ok]
        if failed:
            problems.append("%s %s#%d %d: %s -> %s" % (host, api, call, err, failed,
                                                       {k: r.get(k) for k in ("msg", "jet_err")}))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("profile", ["esent10", "xp"])
def test_profiles_back_up_alike(sim, profile):
    sim.add_host("web01", esesim_profile=profile)
    res = sim.run(backup_play())
    assert res.rc == 0, res.stdout
    assert res.task("web01", "backup")["result"]["changed"] is True


def test_rerun_with_the_same_set_name_reports_ok(sim):
    sim.add_host("web01")
    first = sim.run(backup_play())
    assert first.task("web01", "backup")["result"]["changed"] is True, first.stdout
    set_dir = sim.local("web01", "%s\\web01\\nightly" % SHARE)
    before = sim.snapshot("web01")
    for extra in ([], ["--check"]):
        again = sim.run(backup_play(), extra_args=extra)
        assert again.rc == 0, again.stdout
        rec = again.task("web01", "backup")
        assert rec["status"] == "ok" and rec["result"]["changed"] is False, rec
        assert "already holds this full backup" in rec["result"]["msg"]
        assert not any(t["call"] == "JetBeginExternalBackupInstance" for t in rec["result"]["trace"])
    assert sim.snapshot("web01") == before and os.path.isfile(os.path.join(set_dir, "manifest.json"))
