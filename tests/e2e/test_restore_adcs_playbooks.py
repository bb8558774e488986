# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ese.backup.restore of online CA backups end to end on a simulated CA host (esesim_services): a full and two
incrementals with source adcs while the CA serves, a restore refused while it runs, the CA stopped, the restore
registered with it (the record the simulated certadm.dll writes where a CA keeps RestoreInProgress), a drill of
the chain; and an AD DS set refused naming DSRM."""
import json
import os

import pytest

from simulation import CERTLOG_DIR, CA_NAME, NTDS_DIR, SHARE

CA_DB = "%s\\%s.edb" % (CERTLOG_DIR, CA_NAME)
SETS = SHARE + "\\{{ inventory_hostname }}"
DSRM = ("restoring AD DS needs Directory Services Restore Mode (DSRM); ese.backup does not restore ntds.dit: "
        "use wbadmin / ntdsutil in DSRM")


@pytest.fixture
def services(sim):
    """The simulation; every service process it started is stopped at the end, and none may be left."""
    yield sim
    sim.stop_services()
    assert sim.service_pids() == []


def run_task(name, source, set_name, typ):
    return """
    - name: %s
      ese.backup.run:
        source: %s
        dest: '%s'
        set_name: %s
        type: %s
""" % (name, source, SETS, set_name, typ)


def restore_task(name, incs=("inc1", "inc2"), extra="        to_original_paths: true\n        force: true\n"):
    return """
    - name: %s
      ignore_errors: true
      ese.backup.restore:
        backup_set: '%s\\full'
        incrementals: [%s]
%s""" % (name, SETS, ", ".join("'%s\\%s'" % (SETS, i) for i in incs), extra)


def play(tasks):
    return "\n- hosts: all\n  gather_facts: false\n  tasks:\n" + tasks


def manifest(sim, host, name):
    with open(os.path.join(sim.local(host, "%s\\%s\\%s" % (SHARE, host, name)), "manifest.json")) as f:
        return json.load(f)


def failed(res, host, name):
    """The result of a task that must have failed."""
    rec = res.task(host, name)
    assert rec["status"] == "failed", (name, rec["result"].get("msg"))
    return rec["result"]


def passed(res, host, name):
    rec = res.task(host, name)
    assert rec["status"] == "ok", (name, rec["result"].get("msg"))
    return rec["result"]


def test_an_adcs_chain_is_registered_with_the_stopped_ca_and_drills(services):
    sim = services
    sim.add_ca("ca01")
    sim.hosts["ca01"]["esesim_fixtures"]["C:\\Scratch"] = ""
    tasks = (run_task("full", "adcs", "full", "full") + run_task("inc1", "adcs", "inc1", "incremental")
             + run_task("inc2", "adcs", "inc2", "incremental")
             + restore_task("while the CA runs")
             + restore_task("drill while the CA runs", extra="        drill: true\n        scratch: 'C:\\\\Scratch'\n")
             + sim.stop_service_task("ca01", "adcs")
             + restore_task("without force", extra="        to_original_paths: true\n")
             + restore_task("restore"))
    res = sim.run(play(tasks))
    for name in ("full", "inc1", "inc2"):
        assert res.task("ca01", name)["status"] == "ok", res.task("ca01", name)["result"].get("msg")
    low = manifest(sim, "ca01", "full")["logs"]["gen_low"]
    high = manifest(sim, "ca01", "inc2")["logs"]["gen_high"]
    assert manifest(sim, "ca01", "inc1")["databases"] == []
    record_file = os.path.join(sim.service_dirs()["adcs"], "ca01.restore.json")

    r = failed(res, "ca01", "while the CA runs")
    assert r["changed"] is False and r["refused"]["problem"] == "service_running", r["msg"]
    assert "Stop-Service CertSvc" in r["msg"] and "nothing was written" in r["msg"]

    d = passed(res, "ca01", "drill while the CA runs")
    assert d["drill_report"]["passed"] is True, d["msg"]
    assert (d["drill_report"]["gen_low"], d["drill_report"]["gen_high"]) == (low, high)

    r = failed(res, "ca01", "without force")
    assert r["refused"]["problem"] == "target_exists", r["msg"]

    r = passed(res, "ca01", "restore")
    assert r["changed"] is True, r["msg"]
    assert r["msg"].startswith("registered the restore of %s from 3 set(s) with the CA on CA01" % CA_DB), r["msg"]
    assert "replays log generations %d-%d" % (low, high) in r["msg"]
    assert "take a new full backup" in r["msg"]
    reg = r["registration"]
    assert reg["completed"] is True and reg["status"] == "0x00000000"
    assert (reg["gen_low"], reg["gen_high"]) == (low, high)
    calls = [t["call"] for t in r["trace"] if t["call"].startswith("CertSrv")]
    assert calls == ["CertSrvIsServerOnlineW", "CertSrvRestorePrepareW", "CertSrvRestoreGetDatabaseLocationsW",
                     "CertSrvRestoreRegisterThroughFile", "CertSrvRestoreRegisterComplete", "CertSrvRestoreEnd"]
    # What the CA reads at its next start.
    with open(record_file) as f:
        rec = json.load(f)
    folder = sim.local("ca01", CERTLOG_DIR)
    db = sim.local("ca01", CA_DB)
    src = manifest(sim, "ca01", "full")["databases"][0]["source"]
    assert rec["LowLogNumber"] == low and rec["HighLogNumber"] == high
    assert rec["LogPath"] == folder + "/" and rec["CheckPointFile"] == folder + "/"
    assert rec["BackupLogDirectory"] == folder + "/ese-backup-restore/"
    assert rec["RestoreMap"] == [{"DatabaseName": src, "NewDatabaseName": db}] and rec["RestoreMapCount"] == 1
    assert rec["RegisteredThroughFile"] is True and rec["Completed"] is True and rec["RestoreStatus"] == 0
    staged = sorted(os.listdir(os.path.join(folder, "ese-backup-restore")))
    assert staged == ["edb%05X.log" % g for g in range(low, high + 1)]


def test_an_adds_set_is_refused_naming_dsrm_and_still_drills(services):
    sim = services
    sim.add_dc("dc01")
    sim.hosts["dc01"]["esesim_fixtures"]["C:\\Scratch"] = ""
    dit = NTDS_DIR + "\\ntds.dit"
    tasks = (run_task("full", "adds", "full", "full") + sim.stop_service_task("dc01", "adds")
             + restore_task("restore", incs=(), extra="        to_original_paths: true\n        force: true\n")
             + restore_task("to new paths", incs=(), extra="""        restore_map:
          - source: '%s'
            target: 'D:\\\\Restore\\\\ntds.dit'
        log_path: 'D:\\\\Restore\\\\logs'
""" % dit.replace("\\", "\\\\"))
             + restore_task("drill", incs=(), extra="        drill: true\n        scratch: 'C:\\\\Scratch'\n"))
    res = sim.run(play(tasks))
    assert res.task("dc01", "full")["status"] == "ok", res.task("dc01", "full")["result"].get("msg")
    for name in ("restore", "to new paths"):
        r = failed(res, "dc01", name)
        assert r["changed"] is False and r["refused"]["problem"] == "needs_dsrm", r["msg"]
        assert DSRM in r["msg"] and "nothing was written" in r["msg"]
    assert not os.path.exists(sim.local("dc01", "D:\\Restore"))
    d = passed(res, "dc01", "drill")
    assert d["drill_report"]["passed"] is True, d["msg"]
