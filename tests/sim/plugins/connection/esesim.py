# Test-only connection plugin: a simulated Windows host for ese.backup modules.
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: esesim
short_description: Simulated Windows host that runs what a Windows host would receive for ese.backup modules
description:
  - Test-only. Receives the PowerShell module payload that ansible-core builds for a Windows host and
    does with it what Windows PowerShell 5.1 would, as far as it can be done without Windows.
  - The C# utils the payload carries are compiled as Add-CSharpType compiles them on Windows PowerShell
    5.1 (tests/sim/payload.py); a compile error or a TypeAccelerator it cannot resolve fails the task
    with Add-CSharpType's message.
  - The module's own .ps1 (carried in the payload) gives the Ansible.Basic argument spec, validated as
    Ansible.Basic does (tests/sim/ansible_basic.py), and its one Invoke-EseEntryPoint call gives the
    engine entry point and the privileges. The collection's C# utils, compiled the same way for Mono,
    run that entry point through a small loader (tests/sim/host/EseSimHost.cs), which builds the result
    as plugins/module_utils/_EseModule.psm1 does.
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
notes:
  - With C(ESESIM_COUNT_FILE) set, each C(exec_command) call (one module execution, which is one WinRM
    round trip on a real host) appends one JSON line to that file,
    C({host, module, host_cpu, plugin_cpu, time}). C(host) is the host's address; C(module) the module's
    name (null when the payload could not be read); C(host_cpu) the CPU seconds of the processes the call
    ran and waited for (the engine under Mono, a compile); C(plugin_cpu) the CPU seconds the call itself
    took in the worker process (reading the payload, Ansible.Basic's checks); C(time) when it ended.
    Workers are separate processes, so each line is one O_APPEND write.
"""

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.connection import ConnectionBase

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
SIM_LIB_DIR = os.path.join(REPO, "build", "sim")
MODULES = os.path.join(REPO, "plugins", "modules")
sys.path.insert(0, os.path.join(REPO, "tests", "sim"))

import ansible_basic  # noqa: E402  (tests/sim)
import payload as ps_payload  # noqa: E402  (tests/sim)

# Where a simulated host keeps its session journals (on Windows: %ProgramData%\ese.backup\sessions).
SESSION_DIR = "C:\\ProgramData\\ese.backup\\sessions"
WINDOWS_DIR = "C:\\Windows"
# Where async jobs keep their results (on Windows: %USERPROFILE%\.ansible_async).
ASYNC_DIR = "C:\\Users\\ansible\\.ansible_async"
# The drive of a path rooted without one (\x or /x), as on Windows: the current drive.
CURRENT_DRIVE = "C"

_DRIVE = re.compile(r"^([A-Za-z]):[\\/](.*)$", re.S)
_UNC = re.compile(r"^[\\/]{2}([^\\/]+)[\\/]+([^\\/]+)(?:[\\/](.*))?$", re.S)
_LONG = re.compile(r"^[\\/]{2}[?.][\\/](?:UNC[\\/](?P<unc>.*)|(?P<path>.*))$", re.S | re.I)
_ROOTED = re.compile(r"^[\\/](?![\\/])(.*)$", re.S)


class PayloadError(AnsibleConnectionFailure):
    """The module payload has a shape this plugin does not know (a new ansible-core?)."""


class ArgSpecError(Exception):
    pass


def module_call_from_payload(in_data):
    """Returns (module_name, args, async_job) of a PowerShell module payload (tests/sim/payload.py)."""
    try:
        call = ps_payload.parse_payload(in_data)
    except ps_payload.PayloadError as e:
        raise PayloadError(str(e))
    return call["module"], call["args"], call["job"]


def validate_args(module, args):
    """Validates and completes the args of plugins/modules/<module>.ps1 from its own $spec, as Ansible.Basic
    does; raises ArgSpecError with Ansible.Basic's message."""
    with open(os.path.join(MODULES, module + ".ps1"), encoding="utf-8") as f:
        spec = ps_payload.module_spec(f.read())
    try:
        return dict(ansible_basic.AnsibleModule(dict(args, _ansible_module_name="ese.backup." + module),
                                                spec).params)
    except ansible_basic.Exit as e:
        raise ArgSpecError(e.result.get("msg"))


def _parts(rest):
    """The components of a Windows path below its root, '.' and '..' resolved, never above the root."""
    parts = []
    for part in re.split(r"[\\/]+", rest or ""):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return parts


class PathMap:
    """Maps Windows paths of one simulated host to local paths below its root, and back."""

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
        m = _LONG.match(value)
        if m:  # \\?\C:\x, \\.\C:\x, \\?\UNC\server\share\x
            value = ("\\\\" + m.group("unc")) if m.group("unc") is not None else m.group("path")
            if not (_DRIVE.match(value) or _UNC.match(value)):
                return os.path.join(self.unc_root, "_device_", *_parts(value))
        m = _UNC.match(value)
        if m:
            server, share = m.group(1).lower(), m.group(2).lower()
            if server in (".", "..") or share in (".", ".."):  # not a share: keep it inside the UNC root
                return os.path.join(self.unc_root, "_invalid_", *_parts(value))
            return self._inside(self.unc_root, os.path.join(self.unc_root, server, share, *_parts(m.group(3))))
        m = _DRIVE.match(value)
        if m:
            return self._inside(self.host_root, os.path.join(self.host_root, m.group(1).upper(), *_parts(m.group(2))))
        m = _ROOTED.match(value)
        if m:
            return self._inside(self.host_root, os.path.join(self.host_root, CURRENT_DRIVE, *_parts(m.group(1))))
        return value

    @staticmethod
    def _inside(root, path):
        if os.path.commonpath([root, os.path.normpath(path)]) != root:
            raise ValueError("esesim: %s escapes %s" % (path, root))
        return path

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


def plan_module_call(call):
    """What a Windows host does with a payload before the engine runs, as far as it can be checked here.

    Returns (plan, None) with plan = {entry, privileges, params, check_mode, result, assembly}, or
    (None, result) when the module exits before the engine: a compile error or a bad TypeAccelerator
    (Add-CSharpType), a .ps1 without its engine call, an unknown type, a spec Ansible.Basic rejects, or an
    argument Ansible.Basic rejects (its own result: failed, or skipped in check mode)."""
    name = call["module"]
    failed = {"failed": True, "changed": False}
    script = call["script"]
    if not script:
        return None, dict(failed, msg="esesim: the payload of %s carries no module script" % name)
    compiled = ps_payload.windows_compile(call["cs_utils"])
    if not compiled["ok"]:
        return None, dict(failed, msg=compiled["msg"], esesim_compile=compiled)
    try:
        entry = ps_payload.module_entry_call(script)
    except ps_payload.WindowsLoadError as e:
        return None, dict(failed, msg="esesim: module %s is not simulated: %s" % (name, e),
                          received_args=call["args"])
    if ps_payload.defines_function(call["ps_utils"], ps_payload.ENTRY_COMMAND) is None:
        return None, dict(failed, msg="The term '%s' is not recognized as the name of a cmdlet, function, script "
                          "file, or operable program." % ps_payload.ENTRY_COMMAND)
    try:
        spec = ps_payload.module_spec(script)
    except ps_payload.WindowsLoadError as e:
        return None, dict(failed, msg="esesim: %s: %s" % (name, e))
    known = set(compiled["types"])
    wanted = [entry["type"]] + [t for t, _, _, _ in ps_payload.ps1_ast.static_calls(ps_payload.ps1_ast.parse(script))]
    for type_name in wanted:
        if type_name.split(".")[0] in ("Ansible", "ansible_collections") and type_name not in known:
            if compiled.get("note") and type_name.startswith("Ansible."):
                continue  # not compiled without the reference assemblies (see the compile note)
            return None, dict(failed, msg="Unable to find type [%s]." % type_name)
    try:
        module = ansible_basic.AnsibleModule(call["args"], spec)
    except ansible_basic.Exit as e:
        return None, e.result
    except ansible_basic.SpecNotSimulated as e:
        return None, dict(failed, msg=str(e))
    try:
        assembly = ps_payload.runnable_assembly(call["cs_utils"])
    except ps_payload.WindowsLoadError as e:
        return None, dict(failed, msg=str(e))
    return {"entry": entry["type"] + "." + entry["method"], "privileges": entry["privileges"],
            "params": dict(module.params), "check_mode": module.check_mode, "result": dict(module.result),
            "assembly": assembly, "compile_note": compiled.get("note")}, None


def _children_cpu():
    """User and system CPU seconds of this process's children that ended and were waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Connection(ConnectionBase):
    """Runs each ese.backup module call as a Windows host would, on the engine under Mono and the simulator."""

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
        count_file = os.environ.get("ESESIM_COUNT_FILE")
        if not count_file:
            return self._exec(in_data)
        started = (_children_cpu(), time.process_time())
        module = []
        try:
            return self._exec(in_data, module)
        finally:
            line = {"host": self._play_context.remote_addr or "localhost", "module": (module or [None])[0],
                    "host_cpu": round(_children_cpu() - started[0], 4),
                    "plugin_cpu": round(time.process_time() - started[1], 4), "time": time.time()}
            fd = os.open(count_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (json.dumps(line) + "\n").encode("utf-8"))
            finally:
                os.close(fd)

    def _exec(self, in_data, module=None):
        """One module execution; appends the module's name to ``module`` once the payload is read."""
        self._connect()
        try:
            call = ps_payload.parse_payload(in_data)
        except ps_payload.PayloadError as e:
            raise PayloadError(str(e))
        except ps_payload.WindowsLoadError as e:
            return self._reply({"failed": True, "msg": str(e)})
        if module is not None:
            module.append(call["module"])
        plan, exit_result = plan_module_call(call)
        if plan is None:
            return self._reply(exit_result)
        try:
            local_args = self._paths.to_local(plan["params"])
        except ValueError as e:
            return self._reply({"failed": True, "msg": str(e)})
        request = {"args": local_args, "check_mode": plan["check_mode"], "privileges": plan["privileges"],
                   "result": plan["result"]}
        command = ["mono", "--debug", ps_payload.loader_exe(), plan["assembly"], plan["entry"]]
        if call["job"]:
            return self._reply(self._start_async(command, request, call["job"]))
        result = self._paths.to_windows(self._run_engine(command, request))
        result["invocation"] = {"module_args": plan["params"]}
        return self._reply(result)

    def _engine_env(self):
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = SIM_LIB_DIR
        env["ESESIM_PROFILE"] = self.get_option("esesim_profile")
        env["ESESIM_FAULTS"] = json.dumps(self.get_option("esesim_faults") or [])
        env["ESE_BACKUP_SESSION_DIR"] = self._paths.to_local(SESSION_DIR)
        # Restore's rule for the Windows directory (only its ESE data folders may be restored into).
        env["ESE_BACKUP_TEST_WINDOWS_DIR"] = self._paths.to_local(WINDOWS_DIR)
        # What Windows sets: the NetBIOS name, which the engine records as the set's host.
        env["COMPUTERNAME"] = (self._play_context.remote_addr or "localhost").split(".")[0].upper()[:15]
        return env

    def _start_async(self, command, request, job):
        """Runs the module detached from this task, as the Windows async wrapper does."""
        job_dir = self._paths.to_local(ASYNC_DIR)
        os.makedirs(job_dir, exist_ok=True)
        request_file = os.path.join(job_dir, job["jid"] + ".request")
        with open(request_file, "w") as f:
            json.dump(request, f)
        with open(request_file, "rb") as stdin, open(request_file[:-len(".request")], "wb") as results:
            proc = subprocess.Popen(command, stdin=stdin, stdout=results, stderr=subprocess.DEVNULL,
                                    env=self._engine_env(), start_new_session=True)
        os.remove(request_file)
        return {"changed": True, "started": 1, "finished": 0, "ansible_job_id": job["jid"],
                "ansible_async_watchdog_pid": proc.pid,
                "results_file": self._paths.to_windows(request_file[:-len(".request")]),
                "_ansible_suppress_tmpdir_delete": True}

    def _run_engine(self, command, request):
        proc = subprocess.run(command, input=json.dumps(request).encode(), capture_output=True,
                              env=self._engine_env(), timeout=600)
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
