# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The WinRM lane: real ansible-playbook runs over ansible-core's ``winrm`` connection plugin (pywinrm)
against the WinRS stand-in (tests/sim/winrs.py) on 127.0.0.1.

Each host of a lane is the stand-in seen under its own basic-auth user (the user is the host name), so
the stand-in's per-shell counts tell the hosts apart; ansible-core opens one shell per task and host,
so a host's shells, in order, are its tasks that reached the host. Paths in module arguments are this
machine's paths: the modules run here, under PowerShell 7, with the esent.dll simulator.
"""
import hashlib
import json
import os
import subprocess
import sys
import time

import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
for _p in (os.path.join(REPO, "tests", "sim"), os.path.join(REPO, "tests", "lib")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from pwsh import interpreter  # noqa: E402  (tests/lib)
from winrs import WinRS  # noqa: E402

SIM_LIB = os.path.join(REPO, "build", "sim")
PLAYBOOK_TIMEOUT = 1200  # a hang guard; a loaded CI machine can take minutes per playbook


def password(host):
    return "pw-%s-secret" % host


class Results:
    def __init__(self, rc, stdout, records, stats, users):
        self.rc = rc
        self.stdout = stdout
        self.records = records
        self.stats = stats
        self.users = users

    def task(self, host, name):
        found = [r for r in self.records if r["host"] == host and r["task"] == name]
        assert found, "no result for %s / %s in:\n%s" % (host, name, self.stdout[-4000:])
        return found[-1]

    def shells(self, host):
        """The stand-in's record of every shell (= task) of ``host``, in the order they were opened."""
        return [s for s in self.stats["shells"] if s["user"] == self.users[host]]


class Lane:
    """A WinRS stand-in plus the inventory and environment to drive it with ansible-playbook."""

    def __init__(self, root, pwsh, lifetime=1800, esent=True, collections=None, **winrs_options):
        self.root = str(root)
        self.collections = collections or os.path.join(REPO, "build", "collections")
        os.makedirs(self.root, exist_ok=True)
        self.hosts = {}
        host_env = dict(os.environ)
        if esent:  # the simulator stands in for esent.dll
            host_env["LD_LIBRARY_PATH"] = SIM_LIB
        else:
            host_env.pop("LD_LIBRARY_PATH", None)
        host_env["ESE_BACKUP_SESSION_DIR"] = os.path.join(self.root, "sessions")
        pwsh, pwsh_env = interpreter(pwsh)
        host_env.update(pwsh_env)
        self.winrs = WinRS(users={}, pwsh=pwsh, env=host_env, cwd=self.root, lifetime=lifetime,
                           **winrs_options).start()

    def stop(self):
        self.winrs.stop()

    def add_host(self, name, **host_vars):
        self.winrs.users[name] = password(name)
        host = {"ansible_host": "127.0.0.1", "ansible_port": self.winrs.port, "ansible_connection": "winrm",
                "ansible_user": name, "ansible_password": password(name), "ansible_winrm_transport": "basic",
                "ansible_winrm_scheme": "http", "ansible_winrm_server_cert_validation": "ignore"}
        host.update(host_vars)
        self.hosts[name] = host
        return name

    def env(self):
        env = dict(os.environ)
        env.update({
            "ANSIBLE_CONFIG": os.path.join(REPO, "ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": self.collections,
            "ANSIBLE_CALLBACK_PLUGINS": os.path.join(REPO, "tests", "sim", "plugins", "callback"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORKS": "4",
            "ESESIM_RESULTS": os.path.join(self.root, "results.jsonl"),
        })
        env.pop("LD_LIBRARY_PATH", None)  # the controller does not load esent.dll; the host's commands do
        return env

    def start(self, playbook, inventory=None, extra_args=()):
        """Starts ansible-playbook (``playbook`` is a path or YAML text); returns the Popen."""
        inv_path = os.path.join(self.root, "inventory.yml")
        with open(inv_path, "w") as f:
            yaml.safe_dump(inventory or {"all": {"hosts": self.hosts}}, f)
        if "\n" in playbook:
            pb_path = os.path.join(self.root, "playbook.yml")
            with open(pb_path, "w") as f:
                f.write(playbook)
        else:
            pb_path = playbook
        results = os.path.join(self.root, "results.jsonl")
        if os.path.exists(results):
            os.remove(results)
        self.winrs.reset_stats()
        cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inv_path, pb_path]
        cmd += list(extra_args)
        return subprocess.Popen(cmd, env=self.env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    def finish(self, proc):
        try:
            stdout, dummy = proc.communicate(timeout=PLAYBOOK_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, dummy = proc.communicate()
            raise AssertionError("ansible-playbook did not finish in %d s:\n%s" % (PLAYBOOK_TIMEOUT, stdout[-4000:]))
        records = []
        results = os.path.join(self.root, "results.jsonl")
        if os.path.exists(results):
            with open(results) as f:
                records = [json.loads(line) for line in f]
        users = dict((h, v.get("ansible_user", h)) for h, v in self.hosts.items())
        return Results(proc.returncode, stdout, records, self.winrs.stats(), users)

    def run(self, playbook, inventory=None, extra_args=()):
        return self.finish(self.start(playbook, inventory, extra_args))


def wait_for(predicate, proc, timeout=300, interval=0.002):
    """Polls ``predicate`` until it is true; fails if ``proc`` ends first or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError("ansible-playbook ended before the awaited moment:\n" + proc.stdout.read()[-4000:])
        time.sleep(interval)
    raise AssertionError("the awaited moment did not come in %d s" % timeout)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def tree(path):
    """{relative path: SHA-256} of every file under ``path``."""
    out = {}
    for d, dummy, names in os.walk(path):
        for n in names:
            p = os.path.join(d, n)
            out[os.path.relpath(p, path)] = sha256(p)
    return out


def checked_manifest(set_dir):
    """The set's manifest.json, after asserting it lists exactly the files on disk with their sizes and hashes,
    and that the set's ending record (ending.json, written after the manifest) says the backup ended valid."""
    with open(os.path.join(set_dir, "manifest.json")) as f:
        manifest = json.load(f)
    with open(os.path.join(set_dir, "ending.json")) as f:
        ending = json.load(f)
    assert (ending["ended"], ending["backup_valid"]) == ("normal", True), ending
    on_disk = tree(set_dir)
    on_disk.pop("manifest.json")
    on_disk.pop("ending.json")
    listed = sorted(f["name"] for f in manifest["files"])
    assert sorted(on_disk) == listed, (sorted(on_disk), listed)
    for entry in manifest["files"]:
        path = os.path.join(set_dir, entry["name"])
        assert os.path.getsize(path) == entry["size"] and on_disk[entry["name"]] == entry["sha256"]
    return manifest


def synth_source(directory, size_mib, seed=7):
    """A clean database of ``size_mib`` MiB (4 KiB pages, checksummed) with logs 1 and 2 (current) and a
    checkpoint at 2, as bench/stream.py builds it; returns the database path."""
    import ese_synth
    os.makedirs(directory, exist_ok=True)
    sign_log = ese_synth.signature(seed)
    db = os.path.join(directory, "SRUDB.dat")
    ese_synth.make_database(db, page_size=4096, pages=size_mib * 1048576 // 4096 - 2, sign_log=sign_log,
                            state=3, zero_every=0, seed=seed)
    ese_synth.make_log_set(directory, "SRU", [1, 2], sign_log, current=True)
    ese_synth.make_checkpoint(os.path.join(directory, "SRU.chk"), 2, sign_log)
    return db


def wire(shell, timed_out=False):
    """Bytes of a shell (task) on the wire, both directions; without the Receives that timed out (how many
    there are depends on how long the task ran, not on what it carried) unless ``timed_out``."""
    total = shell["bytes_in"] + shell["bytes_out"]
    if not timed_out:
        t = shell["actions"].get("Receive:TimedOut", {"bytes_in": 0, "bytes_out": 0})
        total -= t["bytes_in"] + t["bytes_out"]
    return total


def figures(name, shell):
    """One line of per-task figures: requests and bytes sent (controller to host) and received, with and
    without the Receives that timed out, and the requests per action."""
    t = shell["actions"].get("Receive:TimedOut", {"requests": 0, "bytes_in": 0, "bytes_out": 0})
    return "%-22s requests %3d (%2d timed out)  sent %8d (%8d without)  received %6d (%6d without)  " \
           "stdin %s  %s" % (
               name, shell["requests"], t["requests"], shell["bytes_in"], shell["bytes_in"] - t["bytes_in"],
               shell["bytes_out"], shell["bytes_out"] - t["bytes_out"],
               "+".join(str(c["stdin_bytes"]) for c in shell["commands"]),
               " ".join("%s=%d" % (a, v["requests"]) for a, v in sorted(shell["actions"].items())))
