# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module executions per host (one WinRM round trip each on a real host), as the simulated host counts them
with ESESIM_COUNT_FILE: what bench/fleet.py reports."""
import json
import os

from simulation import SHARE, SRU_DIR

DB = (SRU_DIR + "\\SRUDB.dat").replace("\\", "\\\\")

RUN = """
    - name: backup
      ese.backup.run:
        databases: ["%s"]
        log_path: '%s'
        base_name: SRU
        dest: '%s\\{{ inventory_hostname }}'
""" % (DB, SRU_DIR, SHARE)

INFO = """
    - name: headers
      ese.backup.info:
        databases: ["%s"]
""" % DB

# Controller-only tasks: no module goes to the host.
LOCAL = """
    - name: note
      ansible.builtin.set_fact:
        noted: "{{ inventory_hostname }}"
    - name: say
      ansible.builtin.debug:
        msg: "{{ noted }}"
"""


def play(tasks):
    return "- hosts: all\n  gather_facts: false\n  tasks:\n" + "".join(tasks)


def counted(sim, monkeypatch, playbook, hosts=("web01", "web02")):
    """{host: [module, ...]} of the module executions the run cost, in order, after checking each line."""
    for host in hosts:
        sim.add_host(host)
    count_file = os.path.join(sim.root, "executions.jsonl")
    monkeypatch.setenv("ESESIM_COUNT_FILE", count_file)
    res = sim.run(playbook, forks=2)
    assert res.rc == 0, res.stdout
    per_host = {host: [] for host in hosts}
    with open(count_file) as f:
        for line in f:
            entry = json.loads(line)
            assert set(entry) == {"host", "module", "host_cpu", "plugin_cpu", "time"}, entry
            # The engine ran under Mono, a child the call waited for; the plugin's own work is apart.
            assert entry["host_cpu"] > 0 and entry["plugin_cpu"] >= 0, entry
            per_host[entry["host"]].append(entry["module"])
    return per_host


def test_one_run_task_is_one_module_execution(sim, monkeypatch):
    assert counted(sim, monkeypatch, play([RUN])) == {"web01": ["ese.backup.run"], "web02": ["ese.backup.run"]}


def test_info_and_run_are_two_and_controller_tasks_none(sim, monkeypatch):
    per_host = counted(sim, monkeypatch, play([INFO, LOCAL, RUN]))
    assert per_host == {"web01": ["ese.backup.info", "ese.backup.run"], "web02": ["ese.backup.info", "ese.backup.run"]}


def test_nothing_is_written_without_the_variable(sim, monkeypatch):
    sim.add_host("web01")
    monkeypatch.delenv("ESESIM_COUNT_FILE", raising=False)
    res = sim.run(play([INFO]))
    assert res.rc == 0, res.stdout
    assert not [name for name in os.listdir(sim.root) if name.startswith("executions")]
