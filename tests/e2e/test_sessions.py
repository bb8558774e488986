# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup sessions end to end: ese.backup.begin/copy/truncate/end through the simulated-host connection
plugin, the session host process (a detached Mono process serving a Unix socket) and the simulator.

Every row of the END table (docs/jet-policy.md, module end) is produced here for real, except
end.no_call (an engine bug; unit-tested only): faults come from ESESIM_FAULTS, a stop is requested on the
session host's socket, hosts are killed with SIGKILL, and idle timeouts are 2 seconds.
"""
import json
import os
import signal
import socket
import time

import pytest

from simulation import SHARE, SRU_DIR, bkinfo, checked_manifest, engine_pids, engines_left, sha256

DB = SRU_DIR + "\\SRUDB.dat"
JOURNALS = "C:\\ProgramData\\ese.backup\\sessions"


@pytest.fixture
def hosts_cleanup(sim):
    """Kills every session host started under this test's simulation root (CI must never hang)."""
    yield sim
    for pid in engine_pids(sim.root):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def journal(sim, host, session="s"):
    with open(os.path.join(sim.local(host, JOURNALS), session + ".json")) as f:
        return json.load(f)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ask_host(sim, host, request, session="s"):
    """One request on the session host's socket (the protocol of docs/sessions.md)."""
    path = journal(sim, host, session)["endpoint"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(path)
        s.sendall((json.dumps(request) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def play(tasks):
    return "- hosts: all\n  gather_facts: false\n  tasks:\n" + tasks


BEGIN = """
    - name: begin
      ese.backup.begin:
        session: "{{ sess | default('s') }}"
        databases: ['%s']
        log_path: '%s'
        base_name: SRU
        idle_timeout: "{{ idle | default(600) }}"
""" % (DB, SRU_DIR)

COPY = """
    - name: copy
      ese.backup.copy:
        session: "{{ sess | default('s') }}"
        dest: '%s\\{{ inventory_hostname }}'
        set_name: "{{ set_prefix | default('set') }}-{{ run | default(1) }}"
        databases: "{{ copy_dbs | default(true) }}"
      when: idle is not defined
      ignore_errors: true
""" % SHARE

TRUNCATE = """
    - name: truncate
      ese.backup.truncate:
        session: "{{ sess | default('s') }}"
      when: do_truncate | default(false)
      ignore_errors: true
"""

END = """
    - name: end
      ese.backup.end:
        session: "{{ sess | default('s') }}"
        mode: "{{ end_mode | default('normal') }}"
      ignore_errors: true
"""


def check_set(sim, host, path):
    set_dir = sim.local(host, path)
    manifest = checked_manifest(set_dir)
    assert manifest["format"] == "ese.backup/1" and manifest["type"] == "full"
    from ansible_collections.ese.backup.plugins.module_utils.ese_format.verify import verify
    report = verify(set_dir)
    assert report["valid"] is True, report
    return manifest


def test_begin_copy_truncate_end_on_two_hosts_and_again(hosts_cleanup):
    sim = hosts_cleanup
    sim.add_host("web01", fixture="srum-server2022-clean", do_truncate=True)
    sim.add_host("web02", fixture="srum-win11-dirty", do_truncate=True)
    playbook = play(BEGIN + COPY + TRUNCATE + END + """
    - name: sessions
      ese.backup.info:
        sessions: true
""")
    res = sim.run(playbook)
    assert res.rc == 0, res.stdout
    for host, copied, truncated in (("web01", [2], [1]), ("web02", [92], [89, 90, 91])):
        begin = res.task(host, "begin")["result"]
        assert begin["changed"] is True and begin["policy_row"] == "begin.begun", begin
        copy = res.task(host, "copy")["result"]
        assert copy["changed"] is True and copy["backup_set"] == "%s\\%s\\set-1" % (SHARE, host), copy
        manifest = check_set(sim, host, copy["backup_set"])
        assert [f["generation"] for f in manifest["files"] if f["role"] == "log"] == copied
        assert res.task(host, "truncate")["result"]["policy_row"] == "truncate.truncated"
        end = res.task(host, "end")["result"]
        assert (end["changed"], end["policy_row"], end["backup_valid"], end["session_state"]) == (
            True, "end.ended_complete", True, "ended"), end
        assert end["jet_err"] == {"code": 0, "name": "JET_errSuccess", "call": "JetEndExternalBackupInstance2"}
        sru = sim.local(host, SRU_DIR)
        for gen in truncated:
            assert not os.path.exists(os.path.join(sru, "SRU%05X.log" % gen))
        assert bkinfo(os.path.join(sru, "SRUDB.dat"), "full") == (copied[0], copied[-1])
        j = journal(sim, host)
        assert j["ended"] == "normal" and j["truncated"] is True and not alive(j["pid"])
        assert {f["name"] for f in j["files"]} == {"SRUDB.dat"} | {"SRU%05X.log" % g for g in copied}
        assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in j["files"])
        listed = res.task(host, "sessions")["result"]["sessions"]
        assert [(s["name"], s["state"]) for s in listed] == [("s", "ended")]

    # The whole playbook again: a new session, new sets.
    res = sim.run(playbook, extra_args=["-e", "run=2"])
    assert res.rc == 0, res.stdout
    for host in ("web01", "web02"):
        assert res.task(host, "begin")["result"]["changed"] is True
        copy = res.task(host, "copy")["result"]
        assert copy["backup_set"].endswith("set-2")
        check_set(sim, host, copy["backup_set"])
        assert res.task(host, "end")["result"]["policy_row"] == "end.ended_complete"
        assert os.path.isdir(sim.local(host, "%s\\%s\\set-1" % (SHARE, host)))

    # Only the end task again: ok, no change.
    res = sim.run(play(END))
    assert res.rc == 0, res.stdout
    for host in ("web01", "web02"):
        rec = res.task(host, "end")
        assert rec["status"] == "ok", rec
        end = rec["result"]
        assert (end["changed"], end["policy_row"], end["backup_valid"], end["session_state"]) == (
            False, "end.rerun_ended", True, "ended"), end
        assert end["jet_err"]["code"] == -520
    assert engines_left(sim.root) == []


def test_every_end_row_for_real(hosts_cleanup):
    sim = hosts_cleanup
    read_fault = [{"api": "JetReadFileInstance", "call": 1, "err": -1018}]
    sim.add_host("abort", end_mode="abort")
    sim.add_host("dbfault", esesim_faults=read_fault)
    sim.add_host("logfault", esesim_faults=[{"api": "JetReadFileInstance", "call": 1, "err": -1022}],
                 copy_dbs=False, do_truncate=True)
    sim.add_host("stop10")
    sim.add_host("killn")
    sim.add_host("killa", end_mode="abort")
    sim.add_host("idle", idle=2)
    sim.add_host("other", esesim_faults=[{"api": "JetEndExternalBackupInstance2", "call": 1, "err": -1090}])
    sim.add_host("xpstop", esesim_profile="xp")
    sim.add_host("xpabort", esesim_profile="xp", end_mode="abort")
    res = sim.run(play(BEGIN + COPY + TRUNCATE), forks=6)
    assert res.rc == 0, res.stdout
    for host in sim.hosts:
        assert res.task(host, "begin")["result"]["policy_row"] == "begin.begun", host

    # Truncate refuses after a copy that failed part-way, and names the missing logs.
    copy = res.task("logfault", "copy")["result"]
    assert copy["policy_row"] == "copy.failed" and copy["jet_err"]["code"] == -1022, copy
    rec = res.task("logfault", "truncate")
    trunc = rec["result"]
    assert rec["status"] == "failed" and trunc["policy_row"] == "truncate.refused", trunc
    assert trunc["refused"]["missing_logs"] == ["SRU00002.log"] and "SRU00002.log" in trunc["msg"]
    assert os.path.exists(os.path.join(sim.local("logfault", SRU_DIR), "SRU00001.log"))
    assert res.task("dbfault", "copy")["result"]["jet_err"]["code"] == -1018

    # A stop requested on the host (JetStopBackupInstance in the session host's process).
    for host in ("stop10", "xpstop"):
        answer = ask_host(sim, host, {"op": "stop"})
        assert answer["trace"][0]["call"] == "JetStopBackupInstance" and answer["journal"]["stop_seen"] is True
    # SIGKILL between copy and end.
    for host in ("killn", "killa"):
        pid = journal(sim, host)["pid"]
        os.kill(pid, signal.SIGKILL)
        deadline = time.time() + 10
        while alive(pid) and time.time() < deadline:
            time.sleep(0.05)
        assert not alive(pid)
    # The idle timeout (2 s).
    deadline = time.time() + 20
    while journal(sim, "idle")["ended"] is None and time.time() < deadline:
        time.sleep(0.2)
    assert journal(sim, "idle")["ended"] == "idle_timeout"

    res = sim.run(play(END + """
    - name: end again
      ese.backup.end:
        session: s
      when: inventory_hostname == 'other'
    - name: end unknown
      ese.backup.end:
        session: nosuch
      when: inventory_hostname == 'abort'
    - name: end invalid
      ese.backup.end:
        session: ../bad
      when: inventory_hostname == 'abort'
      ignore_errors: true
""" + BEGIN.replace("name: begin", "name: rebegin").replace("'s'", "'s2'").replace("idle | default(600)", "600")
        + "      when: inventory_hostname in ['killn', 'idle']\n"
        + COPY.replace("name: copy", "name: recopy").replace("'s'", "'s2'").replace("set_prefix | default('set')", "'again'")
        .replace("when: idle is not defined", "when: inventory_hostname in ['killn', 'idle']")
        + """
    - name: reend
      ese.backup.end:
        session: s2
      when: inventory_hostname in ['killn', 'idle']
"""), forks=6)
    expected = {
        # host: (policy row, changed, failed, backup_valid, session_state, jet_err code)
        "abort": ("ended_abort", True, False, False, "aborted", 0),
        "dbfault": ("ended_not_valid", True, True, False, "ended", 0),
        "stop10": ("ended_not_valid", True, True, False, "ended", 0),
        "killn": ("gone_normal", False, True, False, "host_crash", -520),
        "killa": ("gone_abort", False, False, False, "host_crash", -520),
        "idle": ("gone_normal", False, True, False, "idle_timeout", -520),
        "logfault": ("gone_normal", False, True, False, "aborted", -520),
        "other": ("other_error", False, True, False, "unknown", -1090),
        "xpstop": ("aborted", True, True, False, "aborted", -801),
        "xpabort": ("aborted", True, True, False, "aborted", -800),
    }
    for host, (row, changed, failed, valid, state, code) in expected.items():
        rec = res.task(host, "end")
        end = rec["result"]
        assert (end["policy_row"], end["changed"], rec["status"] == "failed", end["backup_valid"], end["session_state"],
                end["jet_err"]["code"]) == ("end." + row, changed, failed, valid, state, code), (host, end)
    assert "SRUDB.dat" in res.task("dbfault", "end")["result"]["msg"]
    assert "server stopped the backup" in res.task("stop10", "end")["result"]["msg"]
    again = res.task("other", "end again")["result"]
    assert again["policy_row"] == "end.ended_copy", again
    unknown = res.task("abort", "end unknown")["result"]
    assert (unknown["policy_row"], unknown["session_state"], unknown["changed"]) == ("end.no_session", "not_found",
                                                                                    False)
    assert "no backup session with this name" in unknown["warnings"][0]
    invalid = res.task("abort", "end invalid")
    assert invalid["result"]["policy_row"] == "end.invalid" and invalid["status"] == "failed"

    # After a kill or an idle timeout, a new session on that host works and ends complete.
    for host in ("killn", "idle"):
        assert res.task(host, "rebegin")["result"]["policy_row"] == "begin.begun"
        recopy = res.task(host, "recopy")["result"]
        assert recopy["policy_row"] == "copy.copied", (host, recopy["msg"])
        assert res.task(host, "reend")["result"]["policy_row"] == "end.ended_copy"
    assert engines_left(sim.root) == []


def regular_files(sim, host):
    state = {}
    for base in (sim.paths(host).host_root, sim.paths(host).unc_root):
        for dirpath, _, files in os.walk(base):
            for f in files:
                p = os.path.join(dirpath, f)
                if f == ".fixtures-placed" or not os.path.isfile(p):
                    continue
                state[os.path.relpath(p, sim.root)] = (sha256(p), os.path.getmtime(p))
    return state


def test_check_mode_of_all_four_modules_changes_nothing(hosts_cleanup):
    sim = hosts_cleanup
    sim.add_host("web01", do_truncate=True)
    sim.add_host("web02", do_truncate=True)
    res = sim.run(play(BEGIN + "      when: inventory_hostname == 'web01'\n"))
    assert res.rc == 0, res.stdout
    before = {h: regular_files(sim, h) for h in sim.hosts}
    res = sim.run(play(BEGIN + COPY + TRUNCATE + END), extra_args=["--check"])
    rows = dict(((host, name), res.task(host, name)["result"].get("policy_row"))
                for host in sim.hosts for name in ("begin", "copy", "truncate", "end"))
    assert rows == {("web01", "begin"): "begin.check_exists", ("web02", "begin"): "begin.check_begin",
                    ("web01", "copy"): "copy.check", ("web02", "copy"): "copy.invalid",
                    ("web01", "truncate"): "truncate.refused", ("web02", "truncate"): "truncate.invalid",
                    ("web01", "end"): "end.check_end", ("web02", "end"): "end.check_nothing"}, rows
    assert res.task("web01", "copy")["result"]["check"]["would_create"] == "%s\\web01\\set-1" % SHARE
    assert "copy the logs first" in res.task("web01", "truncate")["result"]["msg"]
    for host in sim.hosts:
        assert regular_files(sim, host) == before[host]
    assert journal(sim, "web01")["ended"] is None and alive(journal(sim, "web01")["pid"])
    assert not os.path.exists(os.path.join(sim.local("web02", JOURNALS), "s.json"))
    # After a real copy, truncate in check mode says it would truncate, and still nothing changes.
    res = sim.run(play(COPY.replace("when: idle is not defined", "when: inventory_hostname == 'web01'")))
    assert res.task("web01", "copy")["result"]["policy_row"] == "copy.copied"
    before = regular_files(sim, "web01")
    res = sim.run(play(TRUNCATE), extra_args=["--check"])
    assert res.task("web01", "truncate")["result"]["policy_row"] == "truncate.check"
    assert regular_files(sim, "web01") == before
    res = sim.run(play(END + "      when: inventory_hostname == 'web01'\n"))
    assert res.task("web01", "end")["result"]["policy_row"] == "end.ended_copy"
