# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PowerShell 7 lane: the real .ps1 modules under pwsh, through ansible-core's own exec and async
wrappers (``ansible_connection: local``), against the esent.dll simulator (``build/sim``).

A lane host is an alias of this machine with a folder of its own as its file system. What a Windows
host's environment would be (the simulator's ``ESESIM_FAULTS`` and ``ESESIM_PROFILE``, the session
folder) is set per host by its shell (``ansible_shell_executable``: a two-line script that exports the
variables and runs ``/bin/sh``), so that playbooks without an ``environment:`` keyword, such as the
shipped ones, reach the simulator the way ``esesim_faults`` does for simulated hosts.
"""
import ctypes
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

from pwsh import interpreter  # tests/lib

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SIM = os.path.join(REPO, "build", "sim")
TESTDATA = os.environ.get("ESE_TESTDATA") or os.path.join(REPO, "tests", "data", "ese")
ROLES = os.path.join(REPO, "tests", "integration", "targets")
CERTSVC = os.path.join(SIM, "certsvc-sim")
# A CA database set made through the esent simulator, as tests/e2e/simulation.py ese_set makes one.
_MAKE_CA_SET = """
import sys
sys.path.insert(0, sys.argv[1])
import esesim
jet = esesim.Jet(esesim.load_lib())
print(jet.create_set(sys.argv[2], base="edb", database=sys.argv[3], page_size=8192, records=500, log_kb=128))
"""


def sample_set(name):
    path = os.path.join(TESTDATA, "sets", name)
    if not os.path.isdir(path):
        pytest.skip("sample ESE set %s not found (set ESE_TESTDATA)" % path)
    return path


def check_simulator():
    lib = os.path.join(SIM, "libesent.so")
    if not os.path.exists(lib):
        pytest.fail("build/sim/libesent.so is missing: run 'make sim'")
    if not os.path.exists(os.path.join(SIM, "esent.dll")):
        pytest.fail("build/sim/esent.dll (a link to libesent.so) is missing: run 'make sim'")


class Results:
    """One ansible-playbook run: return code, output and every task result (tests/sim callback)."""

    def __init__(self, proc, records, seconds):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.records = records
        self.seconds = seconds

    def all(self, host, name):
        return [r for r in self.records if r["host"] == host and r["task"] == name]

    def task(self, host, name):
        found = self.all(host, name)
        assert found, "no result for %s / %s in:\n%s" % (host, name, self.stdout[-6000:])
        return found[-1]

    def recap(self, host):
        """The PLAY RECAP counters of ``host`` (ok, changed, unreachable, failed, skipped, ignored...)."""
        for line in self.stdout.splitlines():
            words = line.split()
            if len(words) > 2 and words[0] == host and words[1] == ":":
                return dict((k, int(v)) for k, v in (w.split("=") for w in words[2:]))
        raise AssertionError("no recap for %s in:\n%s" % (host, self.stdout[-4000:]))

    def explain(self):
        return "rc=%s\n%s\n%s" % (self.rc, self.stdout[-8000:], self.stderr[-3000:])


class Lane:
    """Lane hosts under ``root``; ``run`` drives ansible-playbook against them."""

    def __init__(self, root, pwsh):
        self.root = str(root)
        self.pwsh, self.pwsh_env = interpreter(pwsh)
        self.hosts = {}

    def host_root(self, name):
        return os.path.join(self.root, "hosts", name)

    def add_host(self, name, fixture="srum-server2022-clean", faults=None, profile=None, **host_vars):
        """A lane host whose folder holds a copy of the sample set ``fixture`` in ``<root>/sru``."""
        base = self.host_root(name)
        os.makedirs(base, exist_ok=True)
        if fixture:
            sru = os.path.join(base, "sru")
            if not os.path.isdir(sru):
                shutil.copytree(sample_set(fixture), sru)
        env = {"ESE_BACKUP_SESSION_DIR": os.path.join(base, "sessions"), "COMPUTERNAME": name.upper()[:15]}
        if faults:
            env["ESESIM_FAULTS"] = json.dumps(faults)
        if profile:
            env["ESESIM_PROFILE"] = profile
        shell = os.path.join(base, "shell")
        with open(shell, "w") as f:
            f.write("#!/bin/sh\n# this lane host's environment\n")
            for key, val in sorted(env.items()):
                f.write("export %s=%s\n" % (key, shlex.quote(val)))
            f.write('exec /bin/sh "$@"\n')
        os.chmod(shell, 0o755)
        host = self.base_vars()
        host["ansible_shell_executable"] = shell
        host.update(host_vars)
        self.hosts[name] = host
        return base

    def base_vars(self):
        return {"ansible_connection": "local", "ansible_shell_type": "sh",
                "ansible_pwsh_interpreter": self.pwsh, "ansible_python_interpreter": sys.executable}

    def env(self, collections=None):
        env = dict(os.environ)
        env["ANSIBLE_CONFIG"] = os.path.join(REPO, "ansible.cfg")
        # ESE_LANE_COLLECTIONS: run the lane against another copy of the collection (an installed one).
        env["ANSIBLE_COLLECTIONS_PATH"] = (collections or os.environ.get("ESE_LANE_COLLECTIONS")
                                           or os.path.join(REPO, "build", "collections"))
        env["ANSIBLE_CALLBACK_PLUGINS"] = os.path.join(REPO, "tests", "sim", "plugins", "callback")
        env["ANSIBLE_ROLES_PATH"] = ROLES
        env["ANSIBLE_ASYNC_DIR"] = os.path.join(self.root, "async")
        env["ANSIBLE_REMOTE_TMP"] = os.path.join(self.root, "ansible-tmp")
        env["ANSIBLE_LOCAL_TEMP"] = os.path.join(self.root, "ansible-local")
        env["ANSIBLE_NOCOLOR"] = "1"
        env["ANSIBLE_HOST_KEY_CHECKING"] = "False"
        env["LD_LIBRARY_PATH"] = SIM  # absolute: the modules run with another working directory
        env.update(self.pwsh_env)
        for key in ("ESESIM_FAULTS", "ESESIM_PROFILE", "ESE_BACKUP_SESSION_DIR"):
            env.pop(key, None)
        return env

    def run(self, playbook, inventory=None, forks=4, extra_args=(), env=None, collections=None, name="run",
            timeout=900):
        """Runs ``playbook`` (a path, or YAML text) against ``inventory`` (a dict or a path; default all
        hosts added). Returns Results."""
        start = time.monotonic()
        proc, results = self.start(playbook, inventory, forks, extra_args, env, collections, name)
        out, err = proc.communicate(timeout=timeout)
        return self.finish(proc, out, err, results, start)

    def start(self, playbook, inventory=None, forks=4, extra_args=(), env=None, collections=None, name="run"):
        """Starts ansible-playbook; ``finish`` collects it (two runs can overlap)."""
        work = os.path.join(self.root, "runs", name)
        os.makedirs(work, exist_ok=True)
        if isinstance(inventory, str):
            inv_path = inventory
        else:
            inv_path = os.path.join(work, "inventory.yml")
            with open(inv_path, "w") as f:
                yaml.safe_dump(inventory or {"all": {"hosts": self.hosts}}, f)
        if "\n" in playbook:
            pb_path = os.path.join(work, "playbook.yml")
            with open(pb_path, "w") as f:
                f.write(playbook)
        else:
            pb_path = playbook
        results = os.path.join(work, "results.jsonl")
        if os.path.exists(results):
            os.remove(results)
        run_env = self.env(collections)
        run_env["ESESIM_RESULTS"] = results
        run_env["ANSIBLE_FORKS"] = str(forks)
        run_env.update(env or {})
        cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inv_path, pb_path]
        cmd += list(extra_args)
        proc = subprocess.Popen(cmd, env=run_env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        proc.results_path = results
        proc.started = time.monotonic()
        return proc, results

    @staticmethod
    def finish(proc, out, err, results, start=None):
        proc.stdout, proc.stderr = out, err
        records = []
        if os.path.exists(results):
            with open(results) as f:
                records = [json.loads(line) for line in f]
        return Results(proc, records, time.monotonic() - (start or proc.started))

    def collect(self, proc, timeout=900):
        out, err = proc.communicate(timeout=timeout)
        return self.finish(proc, out, err, proc.results_path)


def _die_with_parent():
    """In the child before exec: SIGTERM when the process that started it ends (PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


class SimulatedCA:
    """A simulated CA (build/sim/certsvc-sim) serving a CA database set in ``<root>/CertLog``, for the lane
    host of the adcs target. ``env`` is what that host needs (its endpoint folder and computer name);
    ``stop`` ends the process. It also ends with the process that started it."""

    def __init__(self, root, server="LANE-ADCS", ca_name="Lane CA"):
        self.server, self.ca_name = server, ca_name
        self.log_path = os.path.join(str(root), "CertLog")
        self.database = os.path.join(self.log_path, ca_name + ".edb")
        # short: AF_UNIX paths are limited to 107 bytes
        self.endpoint_dir = tempfile.mkdtemp(prefix="ese-lane-cs", dir="/tmp")
        self.proc = None
        self.log = os.path.join(str(root), "certsvc-sim.log")

    def env(self):
        """The variables tests/integration/lane/inventory.yml reads for lane-adcs."""
        return {"ESE_LANE_CERTSVC_DIR": self.endpoint_dir, "ESE_LANE_CA_SERVER": self.server,
                "ESE_LANE_CA_NAME": self.ca_name, "ESE_LANE_CA_DB": self.database,
                "ESE_LANE_CA_LOGS": self.log_path}

    def start(self, timeout=20):
        if not os.path.exists(CERTSVC):
            pytest.fail("build/sim/certsvc-sim is missing: run 'make sim'")
        clean = {k: v for k, v in os.environ.items() if not k.startswith("ESESIM_")}
        if not os.path.exists(self.database):
            subprocess.run([sys.executable, "-c", _MAKE_CA_SET, os.path.join(REPO, "tests", "sim", "tests"),
                            self.log_path, os.path.basename(self.database)], env=clean, check=True,
                           capture_output=True, cwd=REPO)
        env = dict(clean, ESESIM_CERTSVC_DIR=self.endpoint_dir, COMPUTERNAME=self.server, LD_LIBRARY_PATH=SIM)
        cmd = [CERTSVC, "--db", self.database, "--logs", self.log_path, "--server", self.server,
               "--ca", self.ca_name]
        with open(self.log, "w") as log:
            # pylint: disable-next=consider-using-with
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         preexec_fn=_die_with_parent)  # pylint: disable=subprocess-popen-preexec-fn
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "certsvc-sim ready" in self.output():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        pytest.fail("certsvc-sim did not start (%s): %s" % (self.proc.returncode, self.output()[-2000:]))
        return self

    def output(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM (a service stop), then SIGKILL; removes the endpoint folder. Returns the exit code."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.endpoint_dir, ignore_errors=True)
        return self.proc.returncode if self.proc is not None else None


def manifest(set_dir):
    with open(os.path.join(set_dir, "manifest.json")) as f:
        return json.load(f)


def tree(path):
    """Every file under ``path``, relative (empty when it does not exist)."""
    return sorted(os.path.relpath(os.path.join(d, n), path) for d, dummy, names in os.walk(path) for n in names)
