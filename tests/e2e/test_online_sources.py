# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Online backups of service-owned databases end to end: ese.backup.run with source adcs (a CA through
certadm.dll) and adds (a domain controller through ntdsbcli.dll) on simulated hosts that run the service
(esesim_services, tests/sim/README.md), then ese.backup.verify on the backup server."""
import base64
import json
import os
import struct

import pytest

from simulation import CA_NAME, CERTLOG_DIR, NTDS_DIR, SHARE, checked_manifest

CA_DB = "%s\\%s.edb" % (CERTLOG_DIR, CA_NAME)
DIT = NTDS_DIR + "\\ntds.dit"


@pytest.fixture
def services(sim):
    """The simulation; every service process it started is stopped at the end, and none may be left."""
    yield sim
    sim.stop_services()
    assert sim.service_pids() == []


def q(text):
    """A YAML single-quoted scalar."""
    return "'%s'" % text.replace("'", "''")


def online_play(source, tasks=None, hosts="all", **options):
    """A play of ese.backup.run tasks: ``tasks`` a list of (name, {option: value}) added to ``options``."""
    body = ""
    for name, extra in tasks or [("backup", {})]:
        opts = dict({"source": source} if source else {}, dest=SHARE + "\\{{ inventory_hostname }}", **options)
        opts.update(extra)
        body += "    - name: %s\n      ignore_errors: true\n      ese.backup.run:\n" % name
        body += "".join("        %s: %s\n" % (k, json.dumps(v) if not isinstance(v, str) else q(v))
                        for k, v in opts.items())
    return "- hosts: %s\n  gather_facts: false\n  tasks:\n%s" % (hosts, body)


def verify_play(paths):
    return """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: verify
      ese.backup.verify:
        paths: %s
      register: verified
""" % json.dumps(paths)


def failed_call(rec):
    """The failed task's call and JET_err (or HRESULT): {call, err, name} from the result's jet_err."""
    r = rec["result"]
    assert rec["status"] == "failed", r
    j = r.get("jet_err") or {}
    fc = r.get("failed_call") or {}
    return {"call": j.get("call", fc.get("call")), "err": j.get("code", fc.get("err")), "name": j.get("name")}


def no_set_published(sim, host):
    root = sim.local(host, SHARE + "\\" + host)
    published = [n for n in os.listdir(root) if os.path.exists(os.path.join(root, n, "manifest.json"))] \
        if os.path.isdir(root) else []
    assert published == [], published


def proc_argv(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


def service_mains(sim, host, kind):
    """The service processes themselves (not the timeout(1) that bounds their life)."""
    binary = {"adcs": "certsvc-sim", "adds": "ntdssvc-sim"}[kind]
    return [p for p in sim.service_pids(host, kind) if os.path.basename(proc_argv(p)[0]) == binary]


# ---------------------------------------------------------------- the simulated hosts themselves

def test_services_start_once_hold_their_database_and_stop(services):
    sim = services
    sim.add_ca("ca01", service={"dynamic_files": [CERTLOG_DIR + "\\" + CA_NAME + ".crl"]})
    sim.add_dc("dc01")
    # Two tasks per host, forks 4: each host's services start once, before its first module.
    play = """
- hosts: all
  gather_facts: false
  tasks:
%s
""" % "".join("""
    - name: %s
      ignore_errors: true
      ese.backup.run:
        databases: ["{{ db }}"]
        log_path: '{{ logs }}'
        base_name: edb
        type: copy
        dest: '%s\\\\{{ inventory_hostname }}'
        set_name: %s
""" % (n, SHARE, n) for n in ("first", "second"))
    sim.hosts["ca01"].update(db=CA_DB, logs=CERTLOG_DIR)
    sim.hosts["dc01"].update(db=DIT, logs=NTDS_DIR)
    res = sim.run(play, forks=4)
    for host, kind, db in (("ca01", "adcs", CA_DB), ("dc01", "adds", DIT)):
        mains = service_mains(sim, host, kind)
        assert len(mains) == 1, (host, mains)
        record = sim.service(host, kind)
        assert record["server"] == host.upper() and record["stopped"] is None
        with open(record["log"]) as f:
            assert f.read().count(" ready ") == 1
        argv = proc_argv(mains[0])
        assert argv[argv.index("--db") + 1] == sim.local(host, db)
        # The service holds its database: the engine's own instance cannot attach it (JET_errFileAccessDenied).
        for task in ("first", "second"):
            rec = res.task(host, task)
            assert rec["status"] == "failed", rec["result"]
            assert rec["result"].get("jet_err") == -1032 or "-1032" in rec["result"]["msg"], rec["result"]
    # What the services registered, where certadm.dll and ntdsbcli.dll look (one endpoint folder per API).
    dirs = sim.service_dirs()
    with open(os.path.join(dirs["adcs"], "ca01.registry")) as f:
        registry = f.read()
    assert "CommonName=%s" % CA_NAME in registry and "InterfaceFlags=%d" % 0x641 in registry
    assert os.path.exists(os.path.join(dirs["adds"], "dc01.registry"))
    crl = sim.local("ca01", CERTLOG_DIR + "\\" + CA_NAME + ".crl")
    assert sim.service("ca01", "adcs")["argv"][-2:] == ["--dynamic", crl]
    # A second run keeps the same processes serving (same declaration); a stop stops them, and they stay stopped
    # for the rest of that run.
    first = {h: service_mains(sim, h, k) for h, k in (("ca01", "adcs"), ("dc01", "adds"))}
    sim.run(play, forks=4, tag="-2")
    assert {h: service_mains(sim, h, k) for h, k in (("ca01", "adcs"), ("dc01", "adds"))} == first
    stopped = sim.stop_services()
    assert set(first["ca01"] + first["dc01"]) <= set(stopped)
    assert sim.service_pids() == [] and not os.path.exists(dirs["adcs"])
    assert sim.service("ca01", "adcs")["stopped"]


def test_a_task_can_stop_a_service_mid_play_and_declared_faults_reach_it(services):
    sim = services
    faults = [{"api": "CertSrvBackupPrepareW", "call": 1, "err": -1022}]
    sim.add_ca("ca01", service={"faults": faults})
    play = """
- hosts: ca01
  gather_facts: false
  tasks:
    - name: before
      ese.backup.info:
        databases: ['%s']
%s
    - name: after
      ese.backup.info:
        databases: ['%s']
""" % (CA_DB, sim.stop_service_task("ca01", "adcs"), CA_DB)
    res = sim.run(play)
    assert res.task("ca01", "stop adcs on ca01")["status"] == "ok", res.stdout[-3000:]
    assert service_mains(sim, "ca01", "adcs") == []
    assert sim.service("ca01", "adcs")["stopped"]
    # The same run does not start it again: the database is free for the task after the stop.
    with open(sim.service("ca01", "adcs")["log"]) as f:
        log = f.read()
    assert log.count(" ready ") == 1 and "stopped" in log, log
    assert res.task("ca01", "after")["status"] == "ok", res.task("ca01", "after")["result"]
    # A new run starts it again, with its faults in its environment.
    sim.run(play.split("    - name: stop")[0], tag="-2")
    main, = service_mains(sim, "ca01", "adcs")
    with open("/proc/%d/environ" % main, "rb") as f:
        environ = f.read().split(b"\0")
    assert ("ESESIM_CERTSVC_FAULTS=" + json.dumps(faults)).encode() in environ


def test_a_declared_but_stopped_service_does_not_run(services):
    sim = services
    sim.add_ca("ca01", service={"running": False})
    res = sim.run(online_play(None, databases=[CA_DB], log_path=CERTLOG_DIR, base_name="edb", type="copy",
                              set_name="s"))
    assert sim.service("ca01", "adcs")["pid"] is None and sim.service_pids() == []
    # Nothing holds the database: the engine's own instance backs it up.
    rec = res.task("ca01", "backup")
    assert rec["status"] == "ok" and rec["result"]["changed"] is True, rec["result"]


def test_bad_service_declarations_fail_the_host_clearly(services):
    sim = services
    sim.add_ca("ca01", service={"colour": "blue"})
    res = sim.run(online_play("adcs"))
    assert res.rc != 0 and "unknown keys colour" in res.stdout, res.stdout[-3000:]
    assert sim.service_pids() == []


# ---------------------------------------------------------------- source adcs (a CA through certadm.dll)

def logs_on_host(sim, host, folder):
    local = sim.local(host, folder)
    return sorted(n for n in os.listdir(local) if n.lower().endswith(".log"))


def verified(sim, host, names):
    """ese.backup.verify on the backup server over the host's dest folder: the result for each set name."""
    root = sim.local(host, SHARE + "\\" + host)
    res = sim.run(verify_play([os.path.join(root, n) for n in names]), tag="-verify")
    rec = res.task("localhost", "verify")
    assert rec["status"] == "ok", rec["result"]
    return rec["result"]


def test_instance_source_on_a_running_ca_fails_naming_source_adcs(services):
    sim = services
    sim.add_ca("ca01")
    res = sim.run(online_play(None, databases=[CA_DB], log_path=CERTLOG_DIR, base_name="edb", set_name="own"))
    rec = res.task("ca01", "backup")
    assert rec["status"] == "failed" and rec["result"]["backup_started"] is False, rec["result"]
    msg = rec["result"]["msg"]
    assert "-1032" in msg and "'source: adcs'" in msg and "CertSvc" in msg, msg
    no_set_published(sim, "ca01")


def test_adcs_full_then_two_incrementals_while_the_ca_serves(services):
    sim = services
    crl = CERTLOG_DIR + "\\" + CA_NAME + ".crl"
    sim.add_ca("ca01", service={"dynamic_files": [crl]})
    res = sim.run(online_play("adcs", [("copy", {"type": "copy", "set_name": "copy"}),
                                       ("full", {"type": "full", "set_name": "full"}),
                                       ("inc1", {"type": "incremental", "set_name": "inc1"}),
                                       ("inc2", {"type": "incremental", "set_name": "inc2"})]))
    main = service_mains(sim, "ca01", "adcs")
    assert len(main) == 1, "the CA must keep serving through the backups"
    manifests = {}
    for task in ("copy", "full", "inc1", "inc2"):
        rec = res.task("ca01", task)
        r = rec["result"]
        assert rec["status"] == "ok" and r["changed"] is True, (task, r.get("msg"), r.get("failed_call"))
        assert r["backup_set"] == "%s\\ca01\\%s" % (SHARE, task)
        manifests[task] = checked_manifest(sim.local("ca01", r["backup_set"]))
    for task, m in manifests.items():
        src = m["source"]
        assert src["kind"] == "adcs" and src["server"].upper() == "CA01" and src["ca_name"] == CA_NAME, src
        assert sorted(loc["type"] for loc in src["database_locations"]) == ["checkpoint_dir", "database", "log_dir"]
        assert [sim.paths("ca01").to_windows(p) for p in src["dynamic_files"]] == [crl], src["dynamic_files"]
        roles = sorted({f["role"] for f in m["files"]})
        assert roles == (["database", "log"] if task in ("copy", "full") else ["log"]), (task, roles)
        assert m["type"] == {"inc1": "incremental", "inc2": "incremental"}.get(task, task)
    # Each backup rolls one log; each incremental leaves no gap after the one before it (it starts at the
    # checkpoint's generation: the CA's checkpoint does not move while it writes nothing, so logs repeat).
    for prev, cur in (("copy", "full"), ("full", "inc1"), ("inc1", "inc2")):
        p, c = manifests[prev]["logs"], manifests[cur]["logs"]
        assert c["gen_high"] == p["gen_high"] + 1 and c["gen_low"] <= p["gen_high"] + 1, (prev, p, cur, c)
    # Logs are truncated only when asked: the copy leaves every log, full and incremental truncate.
    assert res.task("ca01", "copy")["result"].get("logs_truncated") in (False, None, [], 0)
    for task in ("full", "inc1", "inc2"):
        assert res.task("ca01", task)["result"].get("logs_truncated"), task
    # Every set verifies on the backup server, and the chain full -> inc1 -> inc2 is continuous.
    result = verified(sim, "ca01", ["copy", "full", "inc1", "inc2"])
    assert result["valid"] is True, result.get("problems")
    for one in result["results"]:
        assert one["valid"] is True and one["restorable"] is True, one


def test_adcs_copy_leaves_the_logs_on_the_ca(services):
    sim = services
    sim.add_ca("ca01")
    sim.place_fixtures()
    before = logs_on_host(sim, "ca01", CERTLOG_DIR)
    res = sim.run(online_play("adcs", type="copy", set_name="copy"))
    rec = res.task("ca01", "backup")
    assert rec["status"] == "ok", rec["result"].get("msg")
    after = logs_on_host(sim, "ca01", CERTLOG_DIR)
    assert set(before) <= set(after) and len(after) > len(before), (before, after)  # kept; the roll added one
    res = sim.run(online_play("adcs", type="full", set_name="full"), tag="-2")
    assert res.task("ca01", "backup")["status"] == "ok", res.task("ca01", "backup")["result"].get("msg")
    # The full backup truncated: of the numbered logs there before, none is left.
    numbered = {n for n in before if n.lower() != "edb.log"}
    assert numbered and not numbered & set(logs_on_host(sim, "ca01", CERTLOG_DIR))


@pytest.mark.parametrize("fault, call, err, name", [
    ({"api": "CertSrvBackupRead", "call": 2, "err": -1022}, "CertSrvBackupRead", -1022, "JET_errDiskIO"),
    ({"api": "CertSrvBackupOpenFileW", "call": 1, "err": "0xC80003FA"}, "CertSrvBackupOpenFileW", -1018,
     "JET_errReadVerifyFailure"),
    ({"api": "CertSrvBackupGetBackupLogsW", "call": 1, "err": -616}, "CertSrvBackupGetBackupLogsW", -616,
     "JET_errLogFileNotCopied"),
])
def test_injected_service_hresults_fail_naming_the_jet_error_and_the_call(services, fault, call, err, name):
    sim = services
    sim.add_ca("ca01", service={"faults": [fault]})
    res = sim.run(online_play("adcs", type="full", set_name="full"))
    rec = res.task("ca01", "backup")
    fc = failed_call(rec)
    assert fc["call"] == call and fc["err"] == err, fc
    assert name in rec["result"]["msg"] and call in rec["result"]["msg"], rec["result"]["msg"]
    assert rec["result"].get("backup_set") is None
    no_set_published(sim, "ca01")
    assert len(service_mains(sim, "ca01", "adcs")) == 1  # the CA itself keeps running


def test_incremental_without_a_full_gives_missing_full_backup(services):
    sim = services
    sim.add_ca("ca01")
    res = sim.run(online_play("adcs", type="incremental", set_name="inc"))
    rec = res.task("ca01", "backup")
    fc = failed_call(rec)
    assert fc["call"] == "CertSrvBackupPrepareW" and fc["err"] == -560, fc
    assert "JET_errMissingFullBackup" in rec["result"]["msg"] and "full backup" in rec["result"]["msg"]
    no_set_published(sim, "ca01")


def test_a_stopped_ca_gives_a_clear_message(services):
    sim = services
    sim.add_ca("ca01")
    play = online_play("adcs", [("full", {"set_name": "full"})])
    play += sim.stop_service_task("ca01", "adcs")
    play += online_play("adcs", [("after stop", {"type": "incremental", "set_name": "inc"})]).split("tasks:\n", 1)[1]
    res = sim.run(play)
    assert res.task("ca01", "full")["status"] == "ok", res.task("ca01", "full")["result"].get("msg")
    rec = res.task("ca01", "after stop")
    fc = failed_call(rec)
    assert fc["call"] == "CertSrvIsServerOnlineW" and fc["err"] == -2147023174, fc  # 0x800706BA
    assert "not running" in rec["result"]["msg"] and "Start-Service CertSvc" in rec["result"]["msg"]
    assert rec["result"].get("backup_set") is None
    # Declared stopped from the start: the same message.
    sim.add_ca("ca02", service={"running": False})
    res = sim.run(online_play("adcs", hosts="ca02", set_name="full"), tag="-2")
    rec = res.task("ca02", "backup")
    assert failed_call(rec)["call"] == "CertSrvIsServerOnlineW" and "not running" in rec["result"]["msg"]


def test_remote_backup_disabled_names_the_interface_flag_and_enabled_works(services):
    sim = services
    sim.add_ca("ca01")
    sim.add_ca("ca02", ca_name="Contoso Root CA", service={"remote_backup": True})
    sim.add_host("web01")
    play = online_play("adcs", [("from web01 to ca01", {"server": "CA01", "set_name": "remote1"}),
                                ("from web01 to ca02", {"server": "CA02", "set_name": "remote2"})], hosts="web01")
    warm = online_play("adcs", [("warm", {"type": "copy", "set_name": "warm"})], hosts="ca01:ca02")
    res = sim.run(warm + play.split("- hosts: web01", 1)[0] + "\n- hosts: web01" + play.split("- hosts: web01", 1)[1])
    assert res.task("ca01", "warm")["status"] == "ok", res.task("ca01", "warm")["result"].get("msg")
    rec = res.task("web01", "from web01 to ca01")
    fc = failed_call(rec)
    assert fc["call"] == "CertSrvBackupPrepareW" and fc["err"] == -2147024891, fc  # 0x80070005
    assert "remote backup is disabled" in rec["result"]["msg"] and "IF_NOREMOTEICERTADMINBACKUP" in rec["result"]["msg"]
    assert rec["result"].get("backup_set") is None
    rec = res.task("web01", "from web01 to ca02")
    assert rec["status"] == "ok", rec["result"].get("msg")
    src = checked_manifest(sim.local("web01", rec["result"]["backup_set"]))["source"]
    assert src["server"].upper() == "CA02" and src["ca_name"] == "Contoso Root CA" and src["host"].upper() == "WEB01"


# ---------------------------------------------------------------- source adds (a DC through ntdsbcli.dll)

def test_adds_full_keeps_the_expiry_token_in_the_manifest(services):
    sim = services
    sim.add_dc("dc01", service={"tombstone_days": 180})
    res = sim.run(online_play("adds", type="full", set_name="full"))
    rec = res.task("dc01", "backup")
    assert rec["status"] == "ok" and rec["result"]["changed"] is True, rec["result"].get("msg")
    m = checked_manifest(sim.local("dc01", rec["result"]["backup_set"]))
    src = m["source"]
    assert src["kind"] == "adds" and src["server"].upper() == "DC01" and src["ca_name"] is None
    assert src["expiry_token"], "the expiry token is not kept in the manifest"
    version, days, filetime = struct.unpack("<IIq", base64.b64decode(src["expiry_token"]))
    assert (version, days) == (1, 180)
    assert abs((filetime - 116444736000000000) / 10000000 - os.path.getmtime(
        os.path.join(sim.local("dc01", rec["result"]["backup_set"]), "manifest.json"))) < 300
    assert sorted(loc["type"] for loc in src["database_locations"]) == ["checkpoint_dir", "database", "log_dir"]
    assert [os.path.basename(f["name"]) for f in m["files"] if f["role"] == "database"] == ["ntds.dit"]
    result = verified(sim, "dc01", ["full"])
    assert result["valid"] is True and result["results"][0]["restorable"] is True, result.get("problems")
    assert len(service_mains(sim, "dc01", "adds")) == 1


@pytest.mark.parametrize("mode", ["missing", "no_exports", "no_endpoint"])
def test_a_dc_whose_ntdsbcli_does_not_answer_gives_the_vss_message(services, mode):
    sim = services
    sim.add_dc("dc01", esesim_ntdsbcli=mode)
    res = sim.run(online_play("adds", type="full", set_name="full"))
    rec = res.task("dc01", "backup")
    failed_call(rec)
    assert "VSS" in rec["result"]["msg"] and "wbadmin start systemstatebackup" in rec["result"]["msg"], \
        rec["result"]["msg"]
    no_set_published(sim, "dc01")


def test_a_ca_that_stops_mid_backup_fails_the_task_and_the_next_run_starts_it_again(services):
    sim = services
    sim.add_ca("ca01", service={"faults": [{"api": "CertSrvBackupRead", "call": 2, "stop": True}]})
    res = sim.run(online_play("adcs", [("full", {"set_name": "full"}), ("again", {"set_name": "again"})]))
    for task in ("full", "again"):
        rec = res.task("ca01", task)
        fc = failed_call(rec)
        assert fc["err"] == -2147023174 and "not running" in rec["result"]["msg"], (task, fc, rec["result"]["msg"])
    assert failed_call(res.task("ca01", "full"))["call"] == "CertSrvBackupRead"
    assert failed_call(res.task("ca01", "again"))["call"] == "CertSrvIsServerOnlineW"  # stopped for the whole run
    no_set_published(sim, "ca01")
    assert service_mains(sim, "ca01", "adcs") == []
    # The next run starts the CA again (a new process, the same fault list: its first full backup is stopped
    # again, so the declaration changes to none).
    sim.hosts["ca01"]["esesim_services"][0]["faults"] = []
    res = sim.run(online_play("adcs", set_name="full"), tag="-2")
    assert res.task("ca01", "backup")["status"] == "ok", res.task("ca01", "backup")["result"].get("msg")
    assert len(service_mains(sim, "ca01", "adcs")) == 1


def test_forks_reaching_one_host_at_once_start_its_service_once(services):
    sim = services
    sim.add_ca("ca01")
    for n in range(1, 5):
        sim.add_host("web%02d" % n)
    play = """
- hosts: web*
  gather_facts: false
  tasks:
    - name: on the CA
      delegate_to: ca01
      ese.backup.info:
        databases: ['%s']
""" % CA_DB
    res = sim.run(play, forks=4)
    assert res.rc == 0, res.stdout[-3000:]
    assert len(service_mains(sim, "ca01", "adcs")) == 1
    with open(sim.service("ca01", "adcs")["log"]) as f:
        assert f.read().count(" ready ") == 1
