# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hosts that back up into one share folder at the same time: parallel ansible-playbook forks, repeated so
that the runs overlap. One set_name for all of them gives exactly one set, that of the host that reports it;
the default set_name gives one set per host."""
import json
import os

from simulation import SHARE, SRU_DIR, sha256

DB = SRU_DIR + "\\SRUDB.dat"
HOSTS = ("web01", "web02", "web03", "web04")


def play(set_name_line):
    return """
- hosts: all
  gather_facts: false
  tasks:
    - name: backup
      ese.backup.run:
        databases: ['%s']
        log_path: '%s'
        base_name: SRU
        type: copy
        dest: '%s\\\\shared'
%s
""" % (DB, SRU_DIR, SHARE, set_name_line)


def own_set(sim, host, set_dir):
    m = json.load(open(os.path.join(set_dir, "manifest.json")))
    assert m["source"]["host"] == host.upper()
    for f in m["files"]:
        assert sha256(os.path.join(set_dir, f["name"])) == f["sha256"]


def test_one_set_name_from_four_hosts_at_once_gives_one_set(sim):
    for h in HOSTS:
        sim.add_host(h)
    shared = sim.local(HOSTS[0], SHARE + "\\shared")
    for rnd in range(3):
        res = sim.run(play("        set_name: nightly-%d" % rnd), forks=len(HOSTS))
        recs = dict((h, res.task(h, "backup")) for h in HOSTS)
        won = [h for h, r in recs.items() if r["status"] == "ok"]
        assert len(won) == 1, res.stdout[-4000:]
        assert recs[won[0]]["result"]["changed"] is True
        own_set(sim, won[0], os.path.join(shared, "nightly-%d" % rnd))
        for h, r in recs.items():
            if h != won[0]:
                assert r["status"] == "failed" and "set_name" in r["result"]["msg"], r
                assert "nightly-%d" % rnd in r["result"]["msg"]
        assert sorted(os.listdir(shared)) == ["nightly-%d" % k for k in range(rnd + 1)]


def test_default_set_names_from_four_hosts_at_once_never_collide(sim):
    for h in HOSTS:
        sim.add_host(h)
    res = sim.run(play(""), forks=len(HOSTS))
    assert res.rc == 0, res.stdout[-4000:]
    shared = sim.local(HOSTS[0], SHARE + "\\shared")
    sets = sorted(os.listdir(shared))
    assert len(sets) == len(HOSTS), sets
    for h in HOSTS:
        name = res.task(h, "backup")["result"]["backup_set"].split("\\")[-1]
        assert name in sets and "-%s-" % h.upper() in name
        own_set(sim, h, os.path.join(shared, name))
