# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad input to ese.backup.run fails with a message naming the option, and changes nothing."""
import os
import shutil

from simulation import SHARE, SRU_DIR, sample_set

DB = SRU_DIR + "\\SRUDB.dat"
OPTIONS = ("databases", "log_path", "system_path", "base_name", "page_size", "type", "dest",
           "set_name", "circular_logging", "legacy_file_names", "buffer_size", "instance_name")
GOOD = {"databases": [DB], "log_path": SRU_DIR, "base_name": "SRU", "dest": SHARE + "\\bad"}

# (case, option the message must name, changes to the good arguments)
CASES = [
    ("missing database", "databases", {"databases": [SRU_DIR + "\\missing.edb"]}),
    ("no databases", "databases", {"databases": []}),
    ("same database twice", "databases", {"databases": [DB, DB]}),
    ("checkpoint given as a database", "databases", {"databases": [SRU_DIR + "\\SRU.chk"]}),
    ("flush map given as a database", "databases", {"databases": [SRU_DIR + "\\SRUDB.jfm"]}),
    ("wrong base name", "base_name", {"base_name": "edb"}),
    ("base name of four characters", "base_name", {"base_name": "SRUX"}),
    ("page size contradicting the header", "page_size", {"page_size": 8192}),
    ("page size that ESE does not have", "page_size", {"page_size": 3000}),
    ("destination inside the log folder", "dest", {"dest": SRU_DIR + "\\backups"}),
    ("relative destination", "dest", {"dest": "backups\\web"}),
    ("destination is a file", "dest", {"dest": DB}),
    ("incremental with circular logging", "circular_logging",
     {"type": "incremental", "circular_logging": True}),
    ("differential with circular logging", "circular_logging",
     {"type": "differential", "circular_logging": True}),
    ("buffer not a multiple of the page size", "buffer_size", {"buffer_size": 5000}),
    ("buffer below three pages", "buffer_size", {"buffer_size": 8192}),
    ("set name with a separator", "set_name", {"set_name": "a\\b"}),
    ("set name that climbs out", "set_name", {"set_name": ".."}),
    ("missing log folder", "log_path", {"log_path": "C:\\nowhere\\logs"}),
    ("system path without the checkpoint", "system_path", {"system_path": "C:\\Windows"}),
    ("legacy file names out of range", "legacy_file_names", {"legacy_file_names": 256}),
    ("unknown backup type", "type", {"type": "weekly"}),
    ("existing set of that name", "set_name", {"set_name": "existing"}),
    ("dirty database without its logs", "log_path", {}),
]


def test_bad_input_fails_clearly_and_changes_nothing(sim, tmp_path):
    no_logs = tmp_path / "dirty-without-logs"
    shutil.copytree(sample_set("srum-win11-dirty"), no_logs)
    for name in ("SRU.log", "SRU0005B.log"):
        os.remove(no_logs / name)
    hosts = {}
    for i, (case, option, change) in enumerate(CASES):
        args = dict(dict(GOOD, dest="%s\\b%02d" % (SHARE, i)), **change)
        host_vars = {"a": args}
        if case == "existing set of that name":
            host_vars["esesim_fixtures"] = {SRU_DIR: sample_set("srum-server2022-clean"),
                                            args["dest"] + "\\existing": sample_set("srum-server2022-clean")}
        host = sim.add_host("b%02d" % i, **host_vars)
        if case == "dirty database without its logs":
            sim.hosts[host]["esesim_fixtures"] = {SRU_DIR: str(no_logs)}
        hosts[host] = (case, option)
    task = "\n".join("        %s: \"{{ a.%s | default(omit) }}\"" % (o, o) for o in OPTIONS)
    play = """
- hosts: all
  gather_facts: false
  tasks:
    - name: bad
      ignore_errors: true
      ese.backup.run:
%s
""" % task
    sim.place_fixtures()
    before = {h: sim.snapshot(h) for h in hosts}
    res = sim.run(play)
    problems = []
    for host, (case, option) in hosts.items():
        rec = res.task(host, "bad")
        msg = rec["result"].get("msg", "")
        if not (rec["status"] == "failed" and option in msg):
            problems.append("%s (%s): expected a failure naming %r, got %r" % (host, case, option, msg))
        if sim.snapshot(host) != before[host]:
            problems.append("%s (%s): files changed" % (host, case))
    assert not problems, "\n".join(problems)
    assert len(CASES) >= 20
