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
        path: %s
      register: verified
""" % json.dumps(paths)


def failed_call(rec):
    r = rec["result"]
    assert rec["status"] == "failed", r
    return r.get("failed_call") or {}


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
    assert sim.service("ca01", "adcs")["argv"][-2:] == ["--dynamic", sim.local("ca01", CERTLOG_DIR + "\\"
                                                                                + CA_NAME + ".crl")]
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
