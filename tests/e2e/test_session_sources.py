# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup sessions of a running service end to end: ese.backup.begin with source adcs (a simulated CA through
certadm.dll) or adds (a simulated DC through ntdsbcli.dll), copy, ese.backup.verify on the backup server, and
only then truncate and end - the session host keeps the service's backup context between the tasks."""
import base64
import json
import os
import signal
import struct

import pytest

from simulation import CA_NAME, CERTLOG_DIR, NTDS_DIR, SHARE, checked_manifest, engine_pids


@pytest.fixture
def services(sim):
    """The simulation; session hosts are killed and service processes stopped at the end."""
    yield sim
    for pid in engine_pids(sim.root):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    sim.stop_services()
    assert sim.service_pids() == []


def session_play(sim, host, source, set_name, log_dir, session_type="full"):
    """begin, copy, the CA's logs listed, verify on the backup server (the controller), the logs listed again,
    truncate, the logs listed, end."""
    local_set = sim.local(host, "%s\\%s\\%s" % (SHARE, host, set_name))
    local_logs = sim.local(host, log_dir)
    listing = """
    - name: logs %%s
      delegate_to: localhost
      ansible.builtin.find:
        paths: [%s]
        patterns: ['*.log']
      register: logs_%%s
""" % json.dumps(local_logs)
    return """
- hosts: %(host)s
  gather_facts: false
  tasks:
    - name: begin
      ese.backup.begin:
        session: s
        source: %(source)s
        type: %(type)s
        idle_timeout: 600
    - name: copy
      ese.backup.copy:
        session: s
        dest: '%(share)s\\{{ inventory_hostname }}'
        set_name: %(set)s
      register: copied
%(before)s
    - name: verify
      delegate_to: localhost
      ese.backup.verify:
        paths: [%(local_set)s]
      register: verified
%(verified)s
    - name: truncate
      when: verified.valid | default(false)
      ese.backup.truncate:
        session: s
%(after)s
    - name: end
      ese.backup.end:
        session: s
""" % {"host": host, "source": source, "type": session_type, "share": SHARE, "set": set_name,
       "local_set": json.dumps(local_set), "before": listing % ("copied", "copied"),
       "verified": listing % ("verified", "verified"), "after": listing % ("truncated", "truncated")}


def names(rec):
    return sorted(os.path.basename(f["path"]) for f in rec["result"]["files"])


def ok(res, host, task):
    rec = res.task(host, task)
    assert rec["status"] == "ok", (task, rec["result"].get("msg"), rec["result"])
    return rec["result"]


def test_adcs_session_verified_before_truncate_then_an_incremental(services):
    sim = services
    sim.add_ca("ca01")
    res = sim.run(session_play(sim, "ca01", "adcs", "full", CERTLOG_DIR))
    begin = ok(res, "ca01", "begin")
    assert begin["changed"] is True and begin["policy_row"] == "begin.begun", begin
    copy = ok(res, "ca01", "copy")
    assert copy["changed"] is True and copy["backup_set"] == "%s\\ca01\\full" % SHARE, copy
    m = checked_manifest(sim.local("ca01", copy["backup_set"]))
    src = m["source"]
    assert src["kind"] == "adcs" and src["server"].upper() == "CA01" and src["ca_name"] == CA_NAME, src
    assert sorted({f["role"] for f in m["files"]}) == ["database", "log"]
    verify = ok(res, "ca01", "verify")
    assert verify["valid"] is True, verify.get("problems")
    # Until the set verified on the backup server the CA's logs were all there; truncate removed the old ones.
    copied, after_verify = names(res.task("ca01", "logs copied")), names(res.task("ca01", "logs verified"))
    after_truncate = names(res.task("ca01", "logs truncated"))
    assert copied == after_verify, (copied, after_verify)
    assert set(after_verify) - set(after_truncate), (after_verify, after_truncate)
    trunc = ok(res, "ca01", "truncate")
    assert trunc["policy_row"] == "truncate.truncated", trunc
    end = ok(res, "ca01", "end")
    assert (end["policy_row"], end["backup_valid"], end["recorded_as"]) == ("end.ended_complete", True, "full"), end
    assert end["jet_err"]["call"] == "CertSrvBackupEnd" and end["jet_err"]["code"] == 0
    with open(os.path.join(sim.local("ca01", copy["backup_set"]), "ending.json"), encoding="utf-8") as f:
        assert json.load(f)["logs_truncated"] is True

    # an incremental session follows the full, in the next run
    res2 = sim.run(session_play(sim, "ca01", "adcs", "inc1", CERTLOG_DIR, "incremental"), tag="-2")
    copy2 = ok(res2, "ca01", "copy")
    m2 = checked_manifest(sim.local("ca01", copy2["backup_set"]))
    assert m2["type"] == "incremental" and {f["role"] for f in m2["files"]} == {"log"}
    assert ok(res2, "ca01", "verify")["valid"] is True
    assert names(res2.task("ca01", "logs copied")) == names(res2.task("ca01", "logs verified"))
    end2 = ok(res2, "ca01", "end")
    assert (end2["policy_row"], end2["recorded_as"]) == ("end.ended_complete", "incremental"), end2


def test_adds_session_full_keeps_the_expiry_token(services):
    sim = services
    sim.add_dc("dc01", service={"tombstone_days": 180})
    res = sim.run(session_play(sim, "dc01", "adds", "full", NTDS_DIR))
    copy = ok(res, "dc01", "copy")
    src = checked_manifest(sim.local("dc01", copy["backup_set"]))["source"]
    assert src["kind"] == "adds" and src["ca_name"] is None
    version, days, _filetime = struct.unpack("<IIq", base64.b64decode(src["expiry_token"]))
    assert (version, days) == (1, 180)
    assert ok(res, "dc01", "verify")["valid"] is True
    assert ok(res, "dc01", "truncate")["policy_row"] == "truncate.truncated"
    end = ok(res, "dc01", "end")
    assert (end["policy_row"], end["recorded_as"]) == ("end.ended_complete", "full"), end
    assert end["jet_err"]["call"] == "DsBackupEnd"


def test_adds_session_refuses_an_incremental_naming_vss(services):
    sim = services
    sim.add_dc("dc01")
    res = sim.run(session_play(sim, "dc01", "adds", "inc", NTDS_DIR, "incremental"))
    rec = res.task("dc01", "begin")
    assert rec["status"] == "failed" and "VSS" in rec["result"]["msg"], rec["result"]


def test_include_files_of_run_and_copy_on_a_ca(services):
    sim = services
    sim.add_ca("ca01")
    export = "C:\\CAExport"
    local = sim.local("ca01", export)
    os.makedirs(local, exist_ok=True)
    secret = b"pfx-secret-bytes-0123456789"
    for name, data in (("CAPolicy.inf", b"[Version]\r\n"), ("ca.pfx", secret)):
        with open(os.path.join(local, name), "wb") as f:
            f.write(data)
    files = [{"path": export + "\\CAPolicy.inf", "role": "ca_policy"}, {"path": export + "\\ca.pfx", "role": "ca_key"}]
    play = """
- hosts: ca01
  gather_facts: false
  tasks:
    - name: run
      ese.backup.run:
        source: adcs
        type: copy
        dest: '%(share)s\\{{ inventory_hostname }}'
        set_name: run
        include_files: %(files)s
    - name: begin
      ese.backup.begin:
        session: s
        source: adcs
    - name: copy
      ese.backup.copy:
        session: s
        dest: '%(share)s\\{{ inventory_hostname }}'
        set_name: sess
        include_files: %(files)s
    - name: missing
      ignore_errors: true
      ese.backup.copy:
        session: s
        dest: '%(share)s\\{{ inventory_hostname }}'
        set_name: never
        include_files: [{path: '%(export)s\\absent.pfx', role: ca_key}]
    - name: end
      ese.backup.end:
        session: s
""" % {"share": SHARE, "files": json.dumps(files), "export": export}
    res = sim.run(play)
    for task in ("run", "copy"):
        r = ok(res, "ca01", task)
        assert secret.decode() not in json.dumps(r)
        set_dir = sim.local("ca01", r["backup_set"])
        m = checked_manifest(set_dir)
        listed = {f["name"]: f for f in m["files"]}
        assert listed["files/ca_key/ca.pfx"]["role"] == "ca_key" and listed["files/ca_policy/CAPolicy.inf"]["size"] == 11
        from ansible_collections.ese.backup.plugins.module_utils.ese_format.verify import verify  # pylint: disable=import-outside-toplevel
        assert verify(set_dir)["valid"] is True
    missing = res.task("ca01", "missing")
    assert missing["status"] == "failed" and "include_files" in missing["result"]["msg"], missing["result"]
    assert not os.path.exists(sim.local("ca01", SHARE + "\\ca01\\never"))
    assert ok(res, "ca01", "end")["policy_row"] == "end.ended_copy"
