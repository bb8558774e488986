# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""End-to-end harness: real ansible-playbook runs against simulated Windows hosts.

Each simulated host gets its own file system under a temporary ESESIM_ROOT, seeded from a sample ESE
set; module calls go through tests/sim/plugins/connection/esesim.py to the C# engine under Mono and
the esent.dll simulator. One playbook run can drive many hosts, each with its own faults or options.
"""
import atexit
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest
import yaml

import scratch  # tests/lib

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _load(name, *path):
    """Imports a file under a name of its own (the plugin shares its file name with other modules)."""
    import importlib.util
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, *path))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


esesim_connection = _load("esesim_connection", "tests", "sim", "plugins", "connection", "esesim.py")
simulated_env = _load("esesim_run_playbook", "tests", "sim", "run_playbook.py").simulated_env
PathMap, place_fixtures = esesim_connection.PathMap, esesim_connection.place_fixtures
ESESIM_PLUGIN = os.path.join(REPO, "tests", "sim", "plugins", "connection", "esesim.py")

TESTDATA = os.environ.get("ESE_TESTDATA") or os.path.join(REPO, "tests", "data", "ese")
SETS = os.path.join(TESTDATA, "sets")
SRU_DIR = "C:\\Windows\\System32\\sru"
SHARE = "\\\\backup01\\ese"
CERTLOG_DIR = "C:\\Windows\\System32\\CertLog"
NTDS_DIR = "C:\\Windows\\NTDS"
CA_NAME = "Contoso Issuing CA"
# A set made through the esent simulator, as the service tests make theirs (tests/sim/tests/certsim.py, dssim.py).
_MAKE_SET = """
import sys
sys.path.insert(0, sys.argv[1])
import esesim
jet = esesim.Jet(esesim.load_lib())
print(jet.create_set(sys.argv[2], base=sys.argv[3], database=sys.argv[4], page_size=8192,
                     records=int(sys.argv[5]), log_kb=128))
"""


def sample_set(name):
    path = os.path.join(SETS, name)
    if not os.path.isdir(path):
        pytest.skip("sample ESE set %s not found (set ESE_TESTDATA)" % path)
    return path


class Results:
    def __init__(self, proc, records):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.records = records

    def task(self, host, name):
        found = [r for r in self.records if r["host"] == host and r["task"] == name]
        assert found, "no result for %s / %s in:\n%s" % (host, name, self.stdout[-4000:])
        return found[-1]


class Simulation:
    """Simulated hosts under ``root``. Hosts that declare services (add_ca, add_dc, or esesim_services) get
    service processes at their first module; stop_services() stops every one (the e2e ``services`` fixtures do,
    and so does the interpreter's exit should a test not); a Simulation is also a context manager that does."""

    def __init__(self, root):
        self.root = str(root)
        self.hosts = {}
        self._stop_registered = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop_services()
        return False

    def add_host(self, name, fixture="srum-server2022-clean", at=SRU_DIR, **host_vars):
        host = {"ansible_connection": "esesim", "esesim_fixtures": {at: sample_set(fixture), SHARE: ""}}
        host.update(host_vars)
        self.hosts[name] = host
        return name

    def ese_set(self, name, database, base="edb", records=500):
        """A consistent ESE set (8 KiB pages, 128 KB logs, three generations) made by the esent simulator in a
        folder of its own under the simulation's root, made once per name: a fixture folder."""
        folder = os.path.join(self.root, "sets", name)
        if not os.path.exists(os.path.join(folder, database)):
            shutil.rmtree(folder, ignore_errors=True)
            env = {k: v for k, v in os.environ.items() if not k.startswith("ESESIM_")}
            subprocess.run([sys.executable, "-c", _MAKE_SET, os.path.join(REPO, "tests", "sim", "tests"), folder,
                            base, database, str(records)], env=env, check=True, capture_output=True, cwd=REPO)
        return folder

    def add_ca(self, name, ca_name=CA_NAME, at=CERTLOG_DIR, service=None, **host_vars):
        """A host running a CA: a synthetic ``<ca_name>.edb`` set in ``at`` and an adcs service on it
        (``service``: more keys of its declaration, see esesim_services)."""
        decl = {"kind": "adcs", "ca_name": ca_name, "database": "%s\\%s.edb" % (at, ca_name), "log_path": at}
        decl.update(service or {})
        return self._add_service_host(name, self.ese_set("ca-" + ca_name, ca_name + ".edb"), at, decl, host_vars)

    def add_dc(self, name, at=NTDS_DIR, service=None, **host_vars):
        """A domain controller: a synthetic ``ntds.dit`` set in ``at`` and an adds service on it."""
        decl = {"kind": "adds", "database": at + "\\ntds.dit", "log_path": at}
        decl.update(service or {})
        return self._add_service_host(name, self.ese_set("ntds", "ntds.dit"), at, decl, host_vars)

    def _add_service_host(self, name, folder, at, decl, host_vars):
        host = self.hosts.get(name) or {"ansible_connection": "esesim", "esesim_fixtures": {SHARE: ""}}
        host["esesim_fixtures"][at] = folder
        services = [s for s in host.get("esesim_services", []) if s["kind"] != decl["kind"]] + [decl]
        host["esesim_services"] = services
        host.update(host_vars)
        self.hosts[name] = host
        return name

    def service(self, host, kind):
        """esesim's record of a host's service ({pid, argv, log, stopped, ...}), or None."""
        return esesim_connection.read_service_record(self.paths(host).host_root, kind)

    def service_pids(self, host=None, kind=None):
        """The service processes of this simulation that run (of one host, one kind)."""
        return esesim_connection.service_pids(self.root, host, kind)

    def service_dirs(self):
        """{kind: the folder of the services' endpoints and registry files} (ESESIM_CERTSVC_DIR, ESESIM_NTDS_DIR)."""
        return esesim_connection.service_dirs(self.root)

    def stop_service(self, host, kind=None):
        """Stops a host's service (or all of its services) now, as a service stop does; the same playbook run
        does not start it again, the next one does."""
        return esesim_connection.stop_host_services(self.root, host, kind)

    def stop_service_task(self, host, kind, name=None):
        """A playbook task (YAML text, indented for a play's tasks) that stops ``host``'s ``kind`` service between
        two tasks of a play that runs on ``host``."""
        return """
    - name: %s
      delegate_to: localhost
      run_once: true
      ansible.builtin.command:
        argv: [%s, %s, stop-service, %s, %s, %s]
""" % (name or "stop %s on %s" % (kind, host), json.dumps(sys.executable), json.dumps(ESESIM_PLUGIN),
            json.dumps(self.root), json.dumps(host), kind)

    def stop_services(self):
        """Stops every service process of this simulation and removes their endpoint folders; returns the pids
        that were still running."""
        pids = esesim_connection.stop_host_services(self.root)
        left = self.service_pids()
        assert not left, "service processes outlived their stop: %s" % left
        for path in self.service_dirs().values():
            shutil.rmtree(path, ignore_errors=True)
        base = os.path.dirname(next(iter(self.service_dirs().values())))
        if os.path.isdir(base) and not os.listdir(base):
            os.rmdir(base)
        return pids

    def paths(self, host):
        return PathMap(self.root, host)

    def local(self, host, windows_path):
        return self.paths(host).to_local(windows_path)

    def snapshot(self, host):
        """Every file on the host (and the share) with its SHA-256, to prove nothing changed."""
        state = {}
        for base in (self.paths(host).host_root, self.paths(host).unc_root):
            for dirpath, _dirs, files in os.walk(base):
                if os.path.basename(dirpath) == esesim_connection.SERVICE_STATE:
                    continue
                for f in files:
                    if f == ".fixtures-placed":
                        continue
                    p = os.path.join(dirpath, f)
                    with open(p, "rb") as fh:
                        state[os.path.relpath(p, self.root)] = hashlib.sha256(fh.read()).hexdigest()
        return state

    def place_fixtures(self):
        for name, host in self.hosts.items():
            place_fixtures(self.paths(name), host.get("esesim_fixtures", {}))

    def run(self, playbook, extra_args=(), forks=4, inventory=None, collections=None, tag=""):
        """Runs a playbook (a path, or YAML text) against the hosts added, or against ``inventory``
        (a dict, or the path of an inventory file whose hosts place their own fixtures); ``collections``:
        another collections path (for example a scratch copy, see scratch_collection); ``tag``: a suffix of
        the run's own files, for runs that overlap."""
        self.place_fixtures()
        if isinstance(inventory, str):
            inv_path = inventory
        else:
            inv_path = os.path.join(self.root, "inventory%s.yml" % tag)
            with open(inv_path, "w") as f:
                yaml.safe_dump(inventory or {"all": {"hosts": self.hosts}}, f)
        if "\n" in playbook:
            pb_path = os.path.join(self.root, "playbook%s.yml" % tag)
            with open(pb_path, "w") as f:
                f.write(playbook)
        else:
            pb_path = playbook
        results = os.path.join(self.root, "results%s.jsonl" % tag)
        if os.path.exists(results):
            os.remove(results)
        env = simulated_env(sim_root=self.root)
        env["ESESIM_RESULTS"] = results
        env["ESESIM_RUN_ID"] = uuid.uuid4().hex  # services start once per host in this run
        if not self._stop_registered and any(h.get("esesim_services") for h in self.hosts.values()):
            atexit.register(self.stop_services)
            self._stop_registered = True
        env["ANSIBLE_FORKS"] = str(forks)
        if collections:
            env["ANSIBLE_COLLECTIONS_PATH"] = collections
        cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inv_path,
               pb_path] + list(extra_args)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200, cwd=REPO, check=False)
        records = []
        if os.path.exists(results):
            with open(results) as f:
                records = [json.loads(line) for line in f]
        return Results(proc, records)


def engine_pids(root):
    """Engine processes (Mono) of the simulation under ``root``, session hosts included: found by the
    session folder in their environment, which esesim sets for every engine it starts (a session host's
    command line names only the loader and its payload)."""
    marker = ("ESE_BACKUP_SESSION_DIR=" + str(root)).encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmd = f.read()
            with open("/proc/%s/environ" % entry, "rb") as f:
                environ = f.read().split(b"\0")
            with open("/proc/%s/stat" % entry) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"mono" in cmd and state != "Z" and any(v.startswith(marker) for v in environ):
            pids.append(int(entry))
    return pids


def engines_left(root, timeout=20):
    """The engine processes still running ``timeout`` seconds after a play (a session host answers its last
    request, then exits): an empty list when every one exited."""
    deadline = time.time() + timeout
    pids = engine_pids(root)
    while pids and time.time() < deadline:
        time.sleep(0.1)
        pids = engine_pids(root)
    return pids


def assert_refused_before_writing(res, host, expect):
    """Each restore task of ``expect`` ({task: (problem, words of the message)}) failed on ``host``, refused with
    that problem before anything was written: no restore call, no file copied."""
    for task, (problem, words) in expect.items():
        rec = res.task(host, task)
        r = rec["result"]
        assert rec["status"] == "failed" and r["changed"] is False, (task, r.get("msg"))
        assert r["refused"]["problem"] == problem and words in r["msg"], (task, r["msg"])
        assert "nothing was written" in r["msg"]
        assert not [t for t in r["trace"] if t["call"] in ("JetExternalRestore2W", "CopyFile")]


def scratch_collection(name, edit):
    """A copy of the collection under build/payload-scratch/<name> (a collections path), changed by
    ``edit(collection_root)``."""
    return scratch.scratch_collection(os.path.join(REPO, "build", "payload-scratch", name), edit)


def bkinfo(db_path, which):
    """(genLow, genHigh) of a BKINFO field in a database header: full, inc, cur, copy or diff."""
    from ansible_collections.ese.backup.plugins.module_utils.ese_format.structs import db_header
    field = {"full": "bkinfo_full_prev", "inc": "bkinfo_inc_prev", "cur": "bkinfo_full_cur",
             "copy": "bkinfo_copy_prev", "diff": "bkinfo_diff_prev"}[which]
    with open(db_path, "rb") as f:
        info = db_header(f.read(4096))[field]
    return info["gen_low"], info["gen_high"]


def checked_manifest(set_dir):
    """The set's manifest.json, after asserting it lists exactly the files on disk, sizes and hashes right.

    ``ending.json`` (how the session that wrote the set ended) is written after the manifest and is not
    one of its files; when present it must record a valid backup."""
    with open(os.path.join(set_dir, "manifest.json")) as f:
        manifest = json.load(f)
    ending = os.path.join(set_dir, "ending.json")
    if os.path.exists(ending):
        with open(ending) as f:
            assert json.load(f)["backup_valid"] is True, set_dir
    on_disk = sorted(os.path.relpath(os.path.join(d, n), set_dir)
                     for d, _d, names in os.walk(set_dir) for n in names if n not in ("manifest.json", "ending.json"))
    assert on_disk == sorted(f["name"] for f in manifest["files"])
    for entry in manifest["files"]:
        path = os.path.join(set_dir, entry["name"])
        assert os.path.getsize(path) == entry["size"] and sha256(path) == entry["sha256"]
    return manifest


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
