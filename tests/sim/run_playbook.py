#!/usr/bin/env python
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs any playbook and inventory against simulated Windows hosts.

    tests/sim/run_playbook.py -i INVENTORY PLAYBOOK [ansible-playbook options...]

Hosts whose inventory sets `ansible_connection: esesim` are simulated: each module call of
ese.backup runs the C# engine under Mono against the esent.dll simulator (see tests/sim/README.md).
Simulated file systems live under $ESESIM_ROOT (default build/simhosts); $ESE_TESTDATA points at the
sample ESE files (default tests/data/ese). Needs `make build` first.
"""
import os
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def simulated_env(base=None, sim_root=None):
    """The environment ansible-playbook needs to drive simulated hosts from this working tree."""
    env = dict(os.environ if base is None else base)
    env["ANSIBLE_CONFIG"] = os.path.join(REPO, "ansible.cfg")
    env["ANSIBLE_COLLECTIONS_PATH"] = os.path.join(REPO, "build", "collections")
    env["ANSIBLE_CONNECTION_PLUGINS"] = os.path.join(REPO, "tests", "sim", "plugins", "connection")
    env["ANSIBLE_CALLBACK_PLUGINS"] = os.path.join(REPO, "tests", "sim", "plugins", "callback")
    env["ESESIM_ROOT"] = os.path.abspath(sim_root or env.get("ESESIM_ROOT")
                                         or os.path.join(REPO, "build", "simhosts"))
    env.setdefault("ESE_TESTDATA", os.path.abspath(os.path.join(REPO, "tests", "data", "ese")))
    env["LD_LIBRARY_PATH"] = os.path.join(REPO, "build", "sim")
    env.setdefault("ANSIBLE_NOCOLOR", "1")
    return env


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) >= 2 else 2
    playbook_bin = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    os.execve(playbook_bin, [playbook_bin] + argv[1:], simulated_env())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
