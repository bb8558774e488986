# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ese.backup.ca_backup role end to end on simulated CA hosts: ese.backup.ca_files (the registry key from its
stand-in, CAPolicy.inf, the CA key as a PFX), the backup through certadm.dll with the dynamic files and those
files in the set (include_files), ese.backup.verify on the backup server, and the temporary folder removed; the
PFX password appears nowhere in ansible-playbook's output (-vvv), the results or the hosts' files."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from simulation import CA_NAME, CERTLOG_DIR, ESESIM_PLUGIN, REPO, SHARE, checked_manifest

CERTENROLL = "C:\\Windows\\System32\\CertSrv\\CertEnroll"
TEMP = "C:\\Windows\\Temp"
PASSWORD = "Vaulted-PFX-pa55word-7f3e!"
SECOND_CA = "Fabrikam Issuing CA"


def has_include_files():
    with open(os.path.join(REPO, "plugins", "modules", "run.ps1")) as f:
        run = f.read()
    with open(os.path.join(REPO, "plugins", "modules", "copy.ps1")) as f:
        copy = f.read()
    return "include_files" in run and "include_files" in copy


needs_include_files = pytest.mark.skipif(not has_include_files(), reason="include_files not yet in run/copy")


@pytest.fixture
def services(sim):
    yield sim
    sim.stop_services()
    assert sim.service_pids() == []


@pytest.fixture
def stand_ins(monkeypatch):
    """The registry key and certificate store stand-ins, under each simulated host's Windows folder."""
    monkeypatch.setenv("ESE_BACKUP_TEST_CA_REGISTRY", "ca-registry.json")
    monkeypatch.setenv("ESE_BACKUP_TEST_CA_CERTS", "ca-certs")


def pfx_for(cn):
    """A self-signed CA certificate with its key as a PFX without password (3DES, as Mono reads it)."""
    key = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "-", "-subj",
                          "/CN=" + cn, "-days", "30"], capture_output=True, check=True).stdout
    return subprocess.run(["openssl", "pkcs12", "-export", "-passout", "pass:", "-keypbe", "PBE-SHA1-3DES",
                           "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1"], input=key, capture_output=True,
                          check=True).stdout


def add_ca_host(sim, tmp_path, host, ca_name, policy=True, running=True, provider=None):
    crl = CERTENROLL + "\\" + ca_name + ".crl"
    sim.add_ca(host, ca_name=ca_name, service={"dynamic_files": [crl], "running": running})
    base = tmp_path / ("fixtures-" + host)
    windows, certs, enroll = base / "windows", base / "certs", base / "enroll"
    for d in (windows, certs, enroll):
        d.mkdir(parents=True)
    registry = {"values": [{"name": "Active", "type": "REG_SZ", "data": ca_name},
                           {"name": "DBDirectory", "type": "REG_SZ", "data": CERTLOG_DIR}],
                "keys": {ca_name: {"values": [{"name": "CommonName", "type": "REG_SZ", "data": ca_name}]}}}
    (windows / "ca-registry.json").write_text(json.dumps(registry))
    if policy:
        (windows / "CAPolicy.inf").write_text("[Version]\r\nSignature=\"$Windows NT$\"\r\n")
    (certs / "ca.pfx").write_bytes(pfx_for(ca_name))
    if provider:
        (certs / "ca.pfx.json").write_text(json.dumps({"provider": provider}))
    (enroll / (ca_name + ".crl")).write_bytes(b"0\x82 a CRL of " + ca_name.encode())
    sim.hosts[host]["esesim_fixtures"].update({"C:\\Windows": str(windows), "C:\\Windows\\ca-certs": str(certs),
                                              CERTENROLL: str(enroll), TEMP: ""})
    return crl


def role_play(sim, **extra):
    vars_ = {"ca_backup_dest": SHARE + "\\{{ inventory_hostname }}", "ca_backup_export_key": True,
             "ca_backup_key_password": "{{ vaulted_pfx_password }}", "ca_backup_temp_path": TEMP,
             "ca_backup_dynamic_files": ["{{ ca_crl }}"],
             "ca_backup_verify_path": sim.local("ca01", SHARE) + "/{{ inventory_hostname }}"}
    vars_.update(extra)
    return yaml.safe_dump([{"hosts": "all", "gather_facts": False,
                            "roles": [{"role": "ese.backup.ca_backup", "vars": vars_}]}], width=1000)


def run_capturing(sim, monkeypatch, play, secrets_dir, tag=""):
    """sim.run with -vvv and the password from a vars file outside the hosts' folders; returns (results, the whole
    output: stdout and stderr)."""
    secret = os.path.join(str(secrets_dir), "vault.yml")
    with open(secret, "w") as f:
        yaml.safe_dump({"vaulted_pfx_password": PASSWORD}, f)
    seen = []
    real = subprocess.run

    def keep(*args, **kwargs):
        proc = real(*args, **kwargs)
        seen.append(proc)
        return proc
    monkeypatch.setattr(subprocess, "run", keep)
    try:
        res = sim.run(play, extra_args=["-vvv", "-e", "@" + secret], tag=tag)
    finally:
        monkeypatch.setattr(subprocess, "run", real)
    out = "".join((p.stdout or "") + (p.stderr or "") for p in seen if isinstance(p.stdout, str))
    return res, out


def failures(res, out):
    """What failed in a run (each task's name and message), else the output's end."""
    failed = ["%s / %s: %s" % (r["host"], r["task"], r["result"].get("msg")) for r in res.records
              if r["status"] == "failed"]
    return "\n".join(failed) or out[-6000:]


def task(res, host, suffix):
    found = [r for r in res.records if r["host"] == host and r["task"].endswith(suffix)]
    assert found, "no result for %s / %s in:\n%s" % (host, suffix, res.stdout[-4000:])
    return found[-1]


def password_nowhere(sim, res, out):
    assert PASSWORD not in out
    assert PASSWORD not in json.dumps(res.records)
    for dirpath, _dirs, files in os.walk(sim.root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                assert PASSWORD.encode() not in f.read(), os.path.join(dirpath, name)


def temp_left(sim, host):
    return os.listdir(sim.local(host, TEMP))


BACKUP_TASK = {"run": "Back up the CA's database, logs and files in one run (type copy, nothing truncated)",
               "session": "Copy the CA's database, logs and files into the set"}


@needs_include_files
@pytest.mark.parametrize("method", ["session", "run"])
def test_the_role_backs_up_two_cas_completely_and_verifies_them(services, stand_ins, monkeypatch,
                                                                 tmp_path_factory, method):
    from cryptography.hazmat.primitives.serialization import pkcs12
    sim = services
    crls = {"ca01": add_ca_host(sim, tmp_path_factory.mktemp("f1"), "ca01", CA_NAME),
            "ca02": add_ca_host(sim, tmp_path_factory.mktemp("f2"), "ca02", SECOND_CA, policy=False)}
    for host, crl in crls.items():
        sim.hosts[host]["ca_crl"] = crl
    res, out = run_capturing(sim, monkeypatch, role_play(sim, ca_backup_method=method),
                             tmp_path_factory.mktemp("vault"))
    assert res.rc == 0, failures(res, out)
    for host, ca in (("ca01", CA_NAME), ("ca02", SECOND_CA)):
        backup = task(res, host, BACKUP_TASK[method])
        assert backup["status"] == "ok", backup["result"].get("msg")
        set_dir = sim.local(host, backup["result"]["backup_set"])
        manifest = checked_manifest(set_dir)  # every file on disk listed, size and SHA-256 right
        by_role = {}
        for f in manifest["files"]:
            assert len(f["sha256"]) == 64, f
            by_role.setdefault(f["role"], []).append(f["name"])
        expect = {"database", "log", "ca_dynamic", "ca_registry", "ca_key"}
        expect |= {"ca_policy"} if host == "ca01" else set()
        assert set(by_role) == expect, by_role
        assert by_role["ca_dynamic"] == ["files/ca_dynamic/%s.crl" % ca]
        assert by_role["ca_registry"] == ["files/ca_registry/CertSvc-Configuration.reg"]
        assert by_role["ca_key"] == ["files/ca_key/%s.pfx" % ca]
        with open(os.path.join(set_dir, by_role["ca_key"][0]), "rb") as f:
            key, cert, _more = pkcs12.load_key_and_certificates(f.read(), PASSWORD.encode())
        assert key is not None and ca in cert.subject.rfc4514_string()
        with open(os.path.join(set_dir, by_role["ca_registry"][0]), "rb") as f:
            assert ('"Active"="%s"' % ca) in f.read().decode("utf-16")
        verified = task(res, host, "Verify the new set on the backup server")
        assert verified["status"] == "ok" and verified["result"]["valid"] is True, verified["result"]
        truncated = task(res, host, "Truncate the CA's logs, now that the set verified")
        ended = task(res, host, "End the session")
        if method == "session":
            assert truncated["status"] == "ok" and ended["status"] == "ok", (truncated["result"], ended["result"])
            assert ended["result"]["invocation"]["module_args"]["mode"] == "normal"
        else:
            assert truncated["status"] == "skipped" and ended["status"] == "skipped"
        cleanup = task(res, host, "Remove the private temporary folder of the CA's files")
        assert cleanup["status"] == "ok" and cleanup["result"]["removed"] is True, cleanup["result"]
        assert temp_left(sim, host) == []
    password_nowhere(sim, res, out)


def test_a_failed_backup_still_removes_the_temporary_folder_and_never_shows_the_password(
        services, stand_ins, monkeypatch, tmp_path_factory):
    sim = services
    sim.hosts.clear()
    crl = add_ca_host(sim, tmp_path_factory.mktemp("f1"), "ca01", CA_NAME, running=False)
    sim.hosts["ca01"]["ca_crl"] = crl
    res, out = run_capturing(sim, monkeypatch, role_play(sim), tmp_path_factory.mktemp("vault"))
    assert res.rc != 0
    gathered = task(res, "ca01", "Write the CA's registry key, CAPolicy.inf and key into a private temporary folder")
    assert gathered["status"] == "ok" and gathered["result"].get("censored"), gathered["result"]
    failed = task(res, "ca01", "Fail the host whose backup or verification failed")
    assert failed["status"] == "failed", failed["result"]
    if has_include_files():
        assert "not running" in failed["result"]["msg"], failed["result"]
    cleanup = task(res, "ca01", "Remove the private temporary folder of the CA's files")
    assert cleanup["status"] == "ok" and cleanup["result"]["removed"] is True, cleanup["result"]
    assert temp_left(sim, "ca01") == []
    password_nowhere(sim, res, out)


def test_ca_files_on_a_host_keeps_the_key_in_an_hsm_out_with_a_note(services, stand_ins, monkeypatch,
                                                                    tmp_path_factory):
    sim = services
    add_ca_host(sim, tmp_path_factory.mktemp("f1"), "ca01", CA_NAME, provider="SafeNet Key Storage Provider")
    # As the role runs it: no_log on the task that sees the password (Ansible.Basic masks the no_log option in the
    # module's invocation on Windows; the simulated host hands the module's arguments back as given).
    play = """
- hosts: all
  gather_facts: false
  tasks:
    - name: collect
      ese.backup.ca_files:
        key: true
        key_password: "{{ vaulted_pfx_password }}"
        temp_path: '%s'
      register: gathered
      no_log: true
    - name: show
      ansible.builtin.debug:
        msg: "{{ {'path': gathered.path, 'files': gathered.files, 'key': gathered.key, 'notes': gathered.notes} }}"
    - name: cleanup
      ese.backup.ca_files:
        mode: cleanup
        path: "{{ gathered.path }}"
""" % TEMP
    res, out = run_capturing(sim, monkeypatch, play, tmp_path_factory.mktemp("vault"))
    assert res.rc == 0, failures(res, out)
    assert task(res, "ca01", "collect")["result"].get("censored"), task(res, "ca01", "collect")["result"]
    r = task(res, "ca01", "show")["result"]["msg"]
    assert r["path"].startswith(TEMP + "\\ese-ca-files-"), r["path"]
    assert sorted(f["role"] for f in r["files"]) == ["ca_policy", "ca_registry"], r["files"]
    assert r["key"]["exported"] is False and "SafeNet Key Storage Provider" in r["key"]["note"], r["key"]
    assert any("SafeNet Key Storage Provider" in n for n in r["notes"]), r["notes"]
    assert task(res, "ca01", "cleanup")["result"]["removed"] is True
    assert temp_left(sim, "ca01") == []
    password_nowhere(sim, res, out)
    # The module's own argument spec marks the password no_log (what Ansible.Basic masks in every result).
    with open(os.path.join(REPO, "plugins", "modules", "ca_files.ps1")) as f:
        assert "key_password = @{ type = 'str'; no_log = $true }" in f.read()


# ---------------------------------------------------------------- playbooks/ca_restore.yml

def restore_run(sim, tmp_path, tag, **extra):
    """playbooks/ca_restore.yml against ca01 with its extra vars from a file."""
    extra_vars = {"ca_restore_hosts": "ca01", "ca_restore_backup_set": SHARE + "\\ca01\\full"}
    extra_vars.update(extra)
    path = os.path.join(str(tmp_path), "restore-vars%s.json" % tag)
    with open(path, "w") as f:
        json.dump(extra_vars, f)
    return sim.run(os.path.join(REPO, "playbooks", "ca_restore.yml"), extra_args=["-e", "@" + path], tag=tag)


def test_ca_restore_playbook_stops_the_ca_and_registers_the_chain(services, tmp_path_factory):
    sim = services
    sim.add_ca("ca01")
    backup = """
- hosts: all
  gather_facts: false
  tasks:
    - name: full
      ese.backup.run:
        source: adcs
        dest: '%s\\\\ca01'
        set_name: full
""" % SHARE
    res = sim.run(backup)
    assert res.task("ca01", "full")["status"] == "ok", res.task("ca01", "full")["result"].get("msg")
    vars_dir = tmp_path_factory.mktemp("restore-vars")
    # A set that is not there: refused before the CA is stopped.
    stop = [sys.executable, ESESIM_PLUGIN, "stop-service", sim.root, "ca01", "adcs"]
    res = restore_run(sim, vars_dir, "-typo", ca_restore_backup_set=SHARE + "\\ca01\\fulll", ca_restore_stop_argv=stop)
    assert res.rc != 0
    checked = task(res, "ca01", "Check that the chain's sets are there and complete (a typo must not stop the CA)")
    assert checked["status"] == "failed" and "no complete set fulll" in checked["result"]["msg"], checked["result"]
    assert "(complete sets there: full)" in checked["result"]["msg"], checked["result"]["msg"]
    assert not [r for r in res.records if r["task"] == "Stop the CA"]
    assert sim.service("ca01", "adcs")["stopped"] is None
    # The CA runs and no stop command is given: the restore refuses and writes nothing.
    res = restore_run(sim, vars_dir, "-running")
    assert res.rc != 0
    refused = task(res, "ca01", "Register the restore of the CA database and its incrementals (the CA replays them "
                                "at its start)")
    assert refused["status"] == "failed" and refused["result"]["refused"]["problem"] == "service_running"
    assert "Stop-Service CertSvc" in refused["result"]["msg"]
    # With the controller command that stops it (here the simulator's): stopped, registered, steps printed.
    res = restore_run(sim, vars_dir, "-stop", ca_restore_stop_argv=stop, ca_restore_show_import_steps=True)
    assert res.rc == 0, res.stdout[-4000:]
    assert task(res, "ca01", "Stop the CA")["status"] == "ok"
    reg = task(res, "ca01", "Register the restore of the CA database and its incrementals (the CA replays them "
                            "at its start)")["result"]
    assert reg["changed"] is True and reg["registration"]["completed"] is True, reg["msg"]
    assert os.path.exists(os.path.join(sim.service_dirs()["adcs"], "ca01.restore.json"))
    steps = task(res, "ca01", "The steps that import the set's registry export and CA key (run them before the CA "
                              "starts)")["result"]["msg"]
    assert steps[0] == 'reg import "%s\\ca01\\full\\files\\ca_registry\\CertSvc-Configuration.reg"' % SHARE, steps
    assert "-restoreKey" in steps[1]
    assert task(res, "ca01", "Start the CA")["status"] == "skipped"
    remains = task(res, "ca01", "What remains")["result"]["msg"]
    assert "Start-Service CertSvc" in remains and "new full backup" in remains, remains


def test_the_role_takes_a_full_then_an_incremental_and_truncates_only_after_verifying(services, stand_ins,
                                                                                      monkeypatch, tmp_path_factory):
    sim = services
    crl = add_ca_host(sim, tmp_path_factory.mktemp("f1"), "ca01", CA_NAME)
    sim.hosts["ca01"]["ca_crl"] = crl
    sim.place_fixtures()
    logs_before = {n for n in os.listdir(sim.local("ca01", CERTLOG_DIR))
                   if n.lower().endswith(".log") and n.lower() != "edb.log"}
    vault = tmp_path_factory.mktemp("vault")
    sets = {}
    for typ in ("full", "incremental"):
        res, out = run_capturing(sim, monkeypatch, role_play(sim, ca_backup_type=typ), vault, tag="-" + typ)
        assert res.rc == 0, failures(res, out)
        copied = task(res, "ca01", BACKUP_TASK["session"])["result"]
        assert task(res, "ca01", "Verify the new set on the backup server")["result"]["valid"] is True
        assert task(res, "ca01", "Truncate the CA's logs, now that the set verified")["status"] == "ok"
        sets[typ] = checked_manifest(sim.local("ca01", copied["backup_set"]))
        password_nowhere(sim, res, out)
    full, inc = sets["full"], sets["incremental"]
    assert full["type"] == "full" and inc["type"] == "incremental"
    assert {f["role"] for f in inc["files"]} == {"log", "ca_dynamic", "ca_registry", "ca_policy", "ca_key"}
    assert inc["logs"]["gen_low"] <= full["logs"]["gen_high"] + 1 <= inc["logs"]["gen_high"]
    # The full backup's truncation (after its set verified) removed the numbered logs that were there before.
    left = {n for n in os.listdir(sim.local("ca01", CERTLOG_DIR)) if n.lower().endswith(".log")}
    assert logs_before and not logs_before & left, (logs_before, left)


def test_a_set_the_backup_server_cannot_verify_keeps_the_cas_logs_and_ends_with_abort(services, stand_ins,
                                                                                      monkeypatch, tmp_path_factory):
    sim = services
    crl = add_ca_host(sim, tmp_path_factory.mktemp("f1"), "ca01", CA_NAME)
    sim.hosts["ca01"]["ca_crl"] = crl
    sim.place_fixtures()
    logs_before = {n for n in os.listdir(sim.local("ca01", CERTLOG_DIR)) if n.lower().endswith(".log")}
    wrong = str(tmp_path_factory.mktemp("not-the-share"))
    res, out = run_capturing(sim, monkeypatch, role_play(sim, ca_backup_verify_path=wrong),
                             tmp_path_factory.mktemp("vault"))
    assert res.rc != 0
    assert task(res, "ca01", "Verify the new set on the backup server")["status"] == "failed"
    assert not [r for r in res.records if r["task"].endswith("Truncate the CA's logs, now that the set verified")
                and r["status"] == "ok"]
    aborted = task(res, "ca01", "End the session with abort")
    assert aborted["status"] == "ok", aborted["result"]
    assert task(res, "ca01", "Fail the host whose backup or verification failed")["status"] == "failed"
    assert task(res, "ca01", "Remove the private temporary folder of the CA's files")["result"]["removed"] is True
    left = {n for n in os.listdir(sim.local("ca01", CERTLOG_DIR)) if n.lower().endswith(".log")}
    assert logs_before <= left, (logs_before, left)  # nothing truncated
    password_nowhere(sim, res, out)
