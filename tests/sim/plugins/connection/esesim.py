# Test-only connection plugin: a simulated Windows host for ese.backup modules.
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: esesim
short_description: Simulated Windows host that runs ese.backup modules on the C# engine under Mono
description:
  - Test-only. Receives the PowerShell module payload that ansible-core builds for a Windows host,
    finds the module name and its arguments, validates them against the module's YAML docs the way
    Ansible.Basic validates the .ps1 argument spec, and runs the same C# engine entry point that the
    .ps1 module calls, under Mono, against the esent.dll simulator.
  - Windows paths in arguments (C:\...) map to a per-host directory; UNC paths (\\server\share\...)
    map to one directory shared by all simulated hosts. Results are mapped back.
options:
  esesim_root:
    description: Directory holding the simulated hosts' file systems.
    default: build/simhosts
    env: [{name: ESESIM_ROOT}]
    vars: [{name: esesim_root}]
  esesim_fixtures:
    description:
      - Files to place on the host before its first task, as a mapping of a Windows directory to a
        local directory whose files are copied there (for example a sample ESE set). An empty
        source creates the directory empty (for example the root of a share).
    type: dict
    default: {}
    vars: [{name: esesim_fixtures}]
  esesim_profile:
    description: Simulator profile (C(esent10) or C(xp)), passed as ESESIM_PROFILE.
    default: esent10
    vars: [{name: esesim_profile}]
  esesim_faults:
    description: Faults to inject, a list of C({api, call, err[, every]}), passed as ESESIM_FAULTS.
    type: list
    default: []
    vars: [{name: esesim_faults}]
"""

import json
import os
import re
import shutil
import subprocess

import yaml

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.plugins.connection import ConnectionBase

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
HOST_EXE = os.path.join(REPO, "build", "sim", "EseSimHost.exe")
SIM_LIB_DIR = os.path.join(REPO, "build", "sim")
MODULE_DOCS = os.path.join(REPO, "plugins", "modules")
COLLECTION = "ese.backup."

# Engine entry point called by each simulated module (the .ps1 module calls the same one).
ENTRY_POINTS = {"run": "Run", "info": "Info", "restore": "Restore.Run", "begin": "Session.Begin",
                "copy": "Session.Copy", "truncate": "Session.Truncate", "end": "Session.End",
                "session_host": "Session.HostTask"}
# info.ps1 adds the session listing when its 'sessions' option is true (a second engine call).
SESSION_LIST = "Session.List"
# Where a simulated host keeps its session journals (on Windows: %ProgramData%\ese.backup\sessions).
SESSION_DIR = "C:\\ProgramData\\ese.backup\\sessions"
# Where async jobs keep their results (on Windows: %USERPROFILE%\.ansible_async).
ASYNC_DIR = "C:\\Users\\ansible\\.ansible_async"

_WIN_ABS = re.compile(r"^([A-Za-z]):[\\/](.*)$", re.S)
_UNC = re.compile(r"^\\\\([^\\/]+)[\\/]([^\\/]+)(?:[\\/](.*))?$", re.S)


class PayloadError(AnsibleConnectionFailure):
    """The module payload has a shape this plugin does not know (a new ansible-core?)."""


def module_call_from_payload(in_data):
    """Returns (module_name, args, async_job) from the stdin payload of a PowerShell module.

    ansible-core <= 2.18: exec_wrapper source, NUL sentinel, manifest with 'module_args' (async adds
    'async_jid' and 'async_timeout_sec'). ansible-core >= 2.19: bootstrap JSON, NUL sentinel, manifest
    whose 'actions' list holds the module_wrapper.ps1 action with the 'complex_args' variable (async
    adds the async_wrapper.ps1 and async_watchdog.ps1 actions). async_job is None or {jid, timeout}.
    """
    if isinstance(in_data, str):
        in_data = in_data.encode("utf-8")
    if not in_data or b"\0\0\0\0" not in in_data:
        raise PayloadError("esesim: the payload has no NUL sentinel; unknown PowerShell payload shape")
    manifest_text = in_data.rsplit(b"\0\0\0\0", 1)[1].strip()
    try:
        manifest = json.loads(manifest_text)
    except ValueError as e:
        raise PayloadError("esesim: the manifest after the sentinel is not JSON: %s" % e)
    args = job = None
    if isinstance(manifest.get("module_args"), dict):
        args = manifest["module_args"]
        actions = [a for a in manifest.get("actions") or [] if isinstance(a, str)]
        if "async_wrapper" in actions:
            job = {"jid": manifest.get("async_jid"), "timeout": manifest.get("async_timeout_sec")}
        if any("become" in a for a in actions):
            raise PayloadError("esesim: become is not simulated")
    elif isinstance(manifest.get("actions"), list):
        for action in manifest["actions"]:
            name = action.get("name") if isinstance(action, dict) else None
            params = action.get("params") or {} if isinstance(action, dict) else {}
            if name and "become" in name:
                raise PayloadError("esesim: %s is not simulated" % name)
            if name == "async_wrapper.ps1":
                job = dict(job or {}, jid=params.get("AsyncJid"))
            elif name == "async_watchdog.ps1":
                job = dict(job or {}, timeout=params.get("Timeout"))
            elif name == "module_wrapper.ps1":
                for var in params.get("Variables", []):
                    if var.get("Name") == "complex_args":
                        args = var.get("Value")
    if not isinstance(args, dict) or "_ansible_module_name" not in args:
        raise PayloadError("esesim: unknown PowerShell payload shape (manifest keys: %s)"
                           % ", ".join(sorted(manifest)))
    if job is not None and not job.get("jid"):
        raise PayloadError("esesim: an async payload without a job id; unknown PowerShell payload shape")
    return args["_ansible_module_name"], args, job


class ArgSpecError(Exception):
    pass


def _convert(name, value, kind, elements=None):
    if value is None:
        return None
    if kind in ("str", "path", "raw", None):
        if kind == "raw" or isinstance(value, str):
            return value
        if isinstance(value, (int, float, bool)):
            return str(value)
        raise ArgSpecError("argument for %s is of type %s and we were unable to convert to str"
                           % (name, type(value).__name__))
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("yes", "on", "1", "true", "t", "y"):
            return True
        if text in ("no", "off", "0", "false", "f", "n"):
            return False
        raise ArgSpecError("argument for %s is of type %s and we were unable to convert to bool"
                           % (name, type(value).__name__))
    if kind == "int":
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError()
            return int(value)
        except (TypeError, ValueError):
            raise ArgSpecError("argument for %s is of type %s and we were unable to convert to int"
                               % (name, type(value).__name__))
    if kind == "list":
        items = value if isinstance(value, list) else [v.strip() for v in str(value).split(",")]
        return [_convert(name, v, elements) for v in items] if elements else items
    if kind == "dict":
        if not isinstance(value, dict):
            raise ArgSpecError("argument for %s is not a dictionary" % name)
        return value
    raise ArgSpecError("esesim: option type %s of %s is not simulated" % (kind, name))


def validate_args(module, args):
    """Validates and completes module args from the module's YAML docs, as Ansible.Basic does."""
    with open(os.path.join(MODULE_DOCS, module + ".yml")) as f:
        options = yaml.safe_load(f)["DOCUMENTATION"].get("options") or {}
    given = {k: v for k, v in args.items() if not k.startswith("_ansible_")}
    known = {}
    for name, spec in options.items():
        for alias in [name] + list(spec.get("aliases") or []):
            known[alias] = name
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ArgSpecError("Unsupported parameters for (%s) module: %s. Supported parameters include: %s"
                           % (COLLECTION + module, ", ".join(unknown), ", ".join(sorted(options))))
    params = {}
    for alias, value in given.items():
        params[known[alias]] = value
    missing = sorted(n for n, s in options.items() if s.get("required") and params.get(n) is None)
    if missing:
        raise ArgSpecError("missing required arguments: %s" % ", ".join(missing))
    for name, spec in options.items():
        value = params.get(name, spec.get("default"))
        value = _convert(name, value, spec.get("type", "str"), spec.get("elements"))
        choices = spec.get("choices")
        if value is not None and choices:
            for v in value if isinstance(value, list) else [value]:
                if v not in choices:
                    raise ArgSpecError("value of %s must be one of: %s, got: %s"
                                       % (name, ", ".join(map(str, choices)), v))
        params[name] = value
    return params


class PathMap:
    """Maps Windows paths of one simulated host to local paths and back."""

    def __init__(self, sim_root, host):
        self.host_root = os.path.join(sim_root, "hosts", host)
        self.unc_root = os.path.join(sim_root, "unc")

    def to_local(self, value):
        if isinstance(value, dict):
            return {k: self.to_local(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.to_local(v) for v in value]
        if not isinstance(value, str):
            return value
        m = _UNC.match(value)
        if m:
            rest = (m.group(3) or "").replace("\\", "/")
            return os.path.join(self.unc_root, m.group(1).lower(), m.group(2).lower(), rest).rstrip("/")
        m = _WIN_ABS.match(value)
        if m:
            rest = m.group(2).replace("\\", "/")
            return os.path.join(self.host_root, m.group(1).upper(), rest).rstrip("/")
        return value

    def to_windows(self, value):
        if isinstance(value, dict):
            return {k: self.to_windows(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.to_windows(v) for v in value]
        if not isinstance(value, str):
            return value
        for root, fmt in ((self.host_root, "%s:\\%s"), (self.unc_root, "\\\\%s\\%s")):
            def windows(m, fmt=fmt):
                head, _, tail = m.group(1).partition("/")
                path = fmt % (head, tail.replace("/", "\\"))
                return path.rstrip("\\") if tail else path
            value = re.sub(re.escape(root) + r"/([^\s'\",;)]+)", windows, value)
        return value


def place_fixtures(paths, fixtures):
    """Copies each fixture directory's files to its Windows directory, once per host."""
    marker = os.path.join(paths.host_root, ".fixtures-placed")
    if os.path.exists(marker):
        return
    os.makedirs(paths.host_root, exist_ok=True)
    for windows_dir, source in fixtures.items():
        target = paths.to_local(windows_dir)
        os.makedirs(target, exist_ok=True)
        for name in sorted(os.listdir(source)) if source else ():
            path = os.path.join(source, name)
            if os.path.isfile(path):
                shutil.copyfile(path, os.path.join(target, name))
    open(marker, "w").close()


class Connection(ConnectionBase):
    """Hands each ese.backup module call to the engine under Mono against the simulator."""

    transport = "esesim"
    module_implementation_preferences = (".ps1", ".exe", "")
    allow_executable = False
    has_pipelining = True
    always_pipeline_modules = True  # ansible-core < 2.19
    has_native_async = True  # the PowerShell exec wrapper carries async itself, as for winrm and psrp

    def __init__(self, *args, **kwargs):
        self._shell_type = "powershell"  # must be set before the base class loads the shell
        super().__init__(*args, **kwargs)

    def is_pipelining_enabled(self, wrap_async=False):  # ansible-core >= 2.19, as psrp
        return True

    def _connect(self):
        if not self._connected:
            root = os.path.abspath(self.get_option("esesim_root"))
            self._paths = PathMap(root, self._play_context.remote_addr or "localhost")
            self._place_fixtures()
            self._connected = True
        return self

    def _place_fixtures(self):
        place_fixtures(self._paths, self.get_option("esesim_fixtures") or {})

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        self._connect()
        name, args, job = module_call_from_payload(in_data)
        short = name[len(COLLECTION):] if name.startswith(COLLECTION) else name
        if short not in ENTRY_POINTS:
            return self._reply({"failed": True, "msg": "esesim: module %s is not simulated" % name,
                                "received_args": args})
        try:
            params = validate_args(short, args)
        except ArgSpecError as e:
            return self._reply({"failed": True, "msg": str(e)})
        request = {"entry": ENTRY_POINTS[short], "args": self._paths.to_local(params),
                   "check_mode": bool(args.get("_ansible_check_mode"))}
        if job:
            return self._reply(self._start_async(request, job))
        result = self._run_engine(request)
        if short == "info" and params.get("sessions") and "trace" in result:
            listing = self._run_engine({"entry": SESSION_LIST, "args": {}, "check_mode": False})
            result["sessions"] = listing.get("sessions", [])
        result = self._paths.to_windows(result)
        result.setdefault("changed", False)
        result["invocation"] = {"module_args": params}
        return self._reply(result)

    def _engine_env(self):
        if not os.path.exists(HOST_EXE):
            raise AnsibleError("esesim: %s is missing; run 'make build' first" % HOST_EXE)
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = SIM_LIB_DIR
        env["ESESIM_PROFILE"] = self.get_option("esesim_profile")
        env["ESESIM_FAULTS"] = json.dumps(self.get_option("esesim_faults") or [])
        env["ESE_BACKUP_SESSION_DIR"] = self._paths.to_local(SESSION_DIR)
        return env

    def _start_async(self, request, job):
        """Runs the module detached from this task, as the Windows async wrapper does."""
        job_dir = self._paths.to_local(ASYNC_DIR)
        os.makedirs(job_dir, exist_ok=True)
        request_file = os.path.join(job_dir, job["jid"] + ".request")
        with open(request_file, "w") as f:
            json.dump(request, f)
        with open(request_file, "rb") as stdin, open(request_file[:-len(".request")], "wb") as results:
            proc = subprocess.Popen(["mono", "--debug", HOST_EXE], stdin=stdin, stdout=results,
                                    stderr=subprocess.DEVNULL, env=self._engine_env(), start_new_session=True)
        os.remove(request_file)
        return {"changed": True, "started": 1, "finished": 0, "ansible_job_id": job["jid"],
                "ansible_async_watchdog_pid": proc.pid,
                "results_file": self._paths.to_windows(request_file[:-len(".request")]),
                "_ansible_suppress_tmpdir_delete": True}

    def _run_engine(self, request):
        proc = subprocess.run(["mono", "--debug", HOST_EXE], input=json.dumps(request).encode(),
                              capture_output=True, env=self._engine_env(), timeout=600)
        try:
            return json.loads(proc.stdout)
        except ValueError:
            return {"failed": True, "rc": proc.returncode,
                    "msg": "esesim: the engine host exited with %d without a result" % proc.returncode,
                    "module_stdout": proc.stdout.decode("utf-8", "replace"),
                    "module_stderr": proc.stderr.decode("utf-8", "replace")}

    @staticmethod
    def _reply(result):
        return 0, json.dumps(result).encode("utf-8"), b""

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        self._connect()
        target = self._paths.to_local(out_path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(in_path, target)

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        self._connect()
        shutil.copyfile(self._paths.to_local(in_path), out_path)

    def close(self):
        self._connected = False

