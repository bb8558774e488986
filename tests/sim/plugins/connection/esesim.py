# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Test-only connection plugin: a simulated Windows host for ese.backup modules.
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
  esesim_services:
    description:
      - Services that run on the host and own an ESE database, as a list of mappings. Each is started (once per
        host per playbook run; a lock and a record in the host's C(.esesim-services) folder keep forks from
        starting it twice) before the host's first module runs, and keeps running until it is stopped (see
        C(stop_host_services)); a service that is still running from an earlier run with the same declaration
        keeps serving.
      - C(kind) C(adcs) is a CA (build/sim/certsvc-sim, answered through certadm.dll), with keys C(database) (its
        C(<CA name>.edb), required), C(log_path), C(system_path), C(base) (default C(edb)), C(ca_name),
        C(remote_backup) (false, the default, keeps IF_NOREMOTEICERTADMINBACKUP 0x40 in the interface flags),
        C(interface_flags) (the flags themselves, instead), C(paused), C(dynamic_files) (Windows paths).
      - C(kind) C(adds) is a domain controller (build/sim/ntdssvc-sim, answered through ntdsbcli.dll), with keys
        C(database) (C(ntds.dit), required), C(log_path), C(system_path), C(base), C(tombstone_days), C(dsrm).
      - Both take C(faults) (the service's fault list, ESESIM_CERTSVC_FAULTS or ESESIM_NTDS_FAULTS),
        C(esent_faults) (ESESIM_FAULTS inside the service) and C(running) (false for a service
        declared but not started, a stopped service). Windows paths map into the host's folder; the server name
        is the host's COMPUTERNAME.
      - The database files themselves come from O(esesim_fixtures).
    type: list
    default: []
    vars: [{name: esesim_services}]
  esesim_ntdsbcli:
    description:
      - What ntdsbcli.dll does on this host. C(present) answers; C(missing) has no ntdsbcli.dll
        (build/sim/no-ntdsbcli); C(no_exports) one without the backup exports (build/sim/ntdsbcli-noexports);
        C(no_endpoint) loads but answers EPT_S_NOT_REGISTERED (ESESIM_NTDS_NO_ENDPOINT=1).
    default: present
    choices: [present, missing, no_exports, no_endpoint]
    vars: [{name: esesim_ntdsbcli}]
notes:
  - With C(ESESIM_COUNT_FILE) set, each C(exec_command) call (one module execution, which is one WinRM
    round trip on a real host) appends one JSON line to that file,
    C({host, module, host_cpu, plugin_cpu, time}). C(host) is the host's address; C(module) the module's
    name (null when the payload could not be read); C(host_cpu) the CPU seconds of the processes the call
    ran and waited for (the engine under Mono, a compile); C(plugin_cpu) the CPU seconds the call itself
    took in the worker process (reading the payload, Ansible.Basic's checks); C(time) when it ended.
    Workers are separate processes, so each line is one O_APPEND write.
"""

import fcntl
import hashlib
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
                head, _sep, tail = m.group(1).partition("/")
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


# ---------------------------------------------------------------- services that own an ESE database

SERVICE_BINARIES = {"adcs": os.path.join(SIM_LIB_DIR, "certsvc-sim"), "adds": os.path.join(SIM_LIB_DIR, "ntdssvc-sim")}
SERVICE_DIR_VARS = {"adcs": "ESESIM_CERTSVC_DIR", "adds": "ESESIM_NTDS_DIR"}
SERVICE_FAULT_VARS = {"adcs": "ESESIM_CERTSVC_FAULTS", "adds": "ESESIM_NTDS_FAULTS"}
SERVICE_KEYS = {
    "common": {"kind", "database", "log_path", "system_path", "base", "faults", "esent_faults", "running"},
    "adcs": {"ca_name", "remote_backup", "interface_flags", "paused", "dynamic_files"},
    "adds": {"tombstone_days", "dsrm"},
}
NTDSBCLI_LIB_DIRS = {"present": SIM_LIB_DIR, "no_endpoint": SIM_LIB_DIR,
                     "missing": os.path.join(SIM_LIB_DIR, "no-ntdsbcli"),
                     "no_exports": os.path.join(SIM_LIB_DIR, "ntdsbcli-noexports")}
IF_DEFAULT, IF_NOREMOTEICERTADMINBACKUP = 0x641, 0x40
SERVICE_STATE = ".esesim-services"  # in the host's folder: the lock, one record and one log per service
# The environment variable that marks every service process with the simulation it belongs to.
SERVICE_MARK = "ESESIM_SERVICE_OF"


class ServiceError(AnsibleConnectionFailure):
    """A service declaration esesim cannot start, or a service that did not become ready."""


def computer_name(host):
    """What Windows sets as COMPUTERNAME for a host address: the NetBIOS name."""
    return (host or "localhost").split(".")[0].upper()[:15]


def service_dirs(sim_root):
    """The socket folders of one simulation, shared by all its hosts as a network is (a remote caller reaches
    <dir>/<server>.sock): short paths below /tmp, since AF_UNIX paths are limited to 107 bytes."""
    tag = hashlib.sha1(os.path.abspath(sim_root).encode()).hexdigest()[:12]
    base = os.path.join("/tmp", "esesim-" + tag)
    return {"adcs": os.path.join(base, "cs"), "adds": os.path.join(base, "ds")}


def service_command(paths, kind, decl, server):
    """(argv, extra environment) for one declared service; raises ServiceError naming a bad key."""
    unknown = set(decl) - SERVICE_KEYS["common"] - SERVICE_KEYS.get(kind, set())
    if kind not in SERVICE_BINARIES:
        raise ServiceError("esesim_services: kind must be adcs or adds, not %r" % (kind,))
    if unknown:
        raise ServiceError("esesim_services (%s): unknown keys %s" % (kind, ", ".join(sorted(unknown))))
    if not decl.get("database"):
        raise ServiceError("esesim_services (%s): database is required (the Windows path of the service's database)"
                           % kind)
    argv = [SERVICE_BINARIES[kind], "--db", paths.to_local(decl["database"]), "--server", server]
    for key, flag in (("log_path", "--logs"), ("system_path", "--system")):
        if decl.get(key):
            argv += [flag, paths.to_local(decl[key])]
    if decl.get("base"):
        argv += ["--base", str(decl["base"])]
    if kind == "adcs":
        if decl.get("ca_name"):
            argv += ["--ca", str(decl["ca_name"])]
        flags = decl.get("interface_flags")
        if flags is None:
            flags = IF_DEFAULT & ~IF_NOREMOTEICERTADMINBACKUP if decl.get("remote_backup") else IF_DEFAULT
        argv += ["--interface-flags", str(int(flags))]
        if decl.get("paused"):
            argv.append("--paused")
        for path in decl.get("dynamic_files") or ():
            argv += ["--dynamic", paths.to_local(path)]
    else:
        if decl.get("tombstone_days") is not None:
            argv += ["--tombstone-days", str(int(decl["tombstone_days"]))]
        if decl.get("dsrm"):
            argv.append("--dsrm")
    env = {SERVICE_FAULT_VARS[kind]: json.dumps(decl.get("faults") or []),
           "ESESIM_FAULTS": json.dumps(decl.get("esent_faults") or [])}
    return argv, env


def _alive(pid):
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def service_pids(sim_root, host=None, kind=None):
    """The service processes of the simulation under ``sim_root`` (optionally of one host and kind), found by
    the mark esesim sets in their environment."""
    mark = ("%s=%s" % (SERVICE_MARK, os.path.abspath(sim_root))).encode()
    want = [mark]
    if host is not None:
        want.append(("ESESIM_SERVICE_HOST=%s" % host).encode())
    if kind is not None:
        want.append(("ESESIM_SERVICE_KIND=%s" % kind).encode())
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if all(w in environ for w in want) and _alive(int(entry)):
            pids.append(int(entry))
    return pids


def _record_path(state_dir, kind):
    return os.path.join(state_dir, kind + ".json")


def read_service_record(host_root, kind):
    """What esesim knows of a host's service: {kind, run, config, pid, argv, running, log, stopped}, or None."""
    try:
        with open(_record_path(os.path.join(host_root, SERVICE_STATE), kind)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_record(state_dir, kind, record):
    tmp = _record_path(state_dir, kind) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, _record_path(state_dir, kind))


def _terminate(pids, timeout=10):
    """SIGTERM (a service stop), then SIGKILL for what is still running after ``timeout`` seconds."""
    for pid in pids:
        try:
            os.kill(pid, 15)
        except OSError:
            pass
    deadline = time.time() + timeout
    while [p for p in pids if _alive(p)] and time.time() < deadline:
        time.sleep(0.05)
    for pid in [p for p in pids if _alive(p)]:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    deadline = time.time() + 5
    while [p for p in pids if _alive(p)] and time.time() < deadline:
        time.sleep(0.05)


def _start_service(sim_root, host, state_dir, kind, argv, extra_env, server, profile):
    sock_dir = service_dirs(sim_root)[kind]
    os.makedirs(sock_dir, exist_ok=True)
    log = os.path.join(state_dir, kind + ".log")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESESIM_")}
    env.update(extra_env)
    env.update({SERVICE_DIR_VARS[kind]: sock_dir, "COMPUTERNAME": server, "ESESIM_PROFILE": profile,
                SERVICE_MARK: os.path.abspath(sim_root), "ESESIM_SERVICE_HOST": host, "ESESIM_SERVICE_KIND": kind})
    lifetime = str(int(os.environ.get("ESESIM_SERVICE_LIFETIME") or 1800))
    # Detached (a new session, the shell exits at once): the service outlives the task that started it and is
    # never a zombie of a worker; timeout(1) bounds its life should nothing stop it.
    script = 'timeout -s TERM "$0" "$@" >"$ESESIM_SERVICE_LOG" 2>&1 </dev/null & echo $!'
    env["ESESIM_SERVICE_LOG"] = log
    out = subprocess.run(["/bin/sh", "-c", script, lifetime] + argv, env=env, capture_output=True, text=True,
                         check=True, start_new_session=True).stdout
    pid = int(out.strip())
    ready = os.path.basename(argv[0]) + " ready"
    deadline = time.time() + 20
    text = ""
    while time.time() < deadline:
        with open(log, errors="replace") as f:
            text = f.read()
        if ready in text:
            return pid, log
        if not _alive(pid):
            break
        time.sleep(0.02)
    _terminate([pid])
    with open(log, errors="replace") as f:
        text = f.read()
    raise ServiceError("esesim: the %s service of %s did not start (%s): %s"
                       % (kind, host, " ".join(argv), text.strip()[-2000:]))


def ensure_services(paths, sim_root, host, services, run_id, profile="esent10"):
    """Starts a host's declared services once per playbook run (``run_id``), under a lock in the host's folder.

    A service already started (or stopped) in this run is left as it is; one still running from an earlier run
    with the same declaration keeps serving; one whose declaration changed is restarted."""
    if not services:
        return
    state_dir = os.path.join(paths.host_root, SERVICE_STATE)
    os.makedirs(state_dir, exist_ok=True)
    server = computer_name(host)
    with open(os.path.join(state_dir, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        seen = set()
        for decl in services:
            if not isinstance(decl, dict):
                raise ServiceError("esesim_services: each entry must be a mapping, not %r" % (decl,))
            kind = decl.get("kind")
            if kind in seen:
                raise ServiceError("esesim_services: one %s service per host" % kind)
            seen.add(kind)
            argv, extra_env = service_command(paths, kind, decl, server)
            config = hashlib.sha256(json.dumps([argv, extra_env, profile, decl.get("running", True)],
                                               sort_keys=True).encode()).hexdigest()
            record = read_service_record(paths.host_root, kind)
            if record and record["run"] == run_id and record["config"] == config:
                continue
            if record and record["config"] == config and record.get("pid") and _alive(record["pid"]):
                record["run"] = run_id
                _write_record(state_dir, kind, record)
                continue
            _terminate(service_pids(sim_root, host, kind))
            record = {"kind": kind, "run": run_id, "config": config, "argv": argv, "server": server,
                      "pid": None, "log": None, "stopped": None}
            if decl.get("running", True):
                record["pid"], record["log"] = _start_service(sim_root, host, state_dir, kind, argv, extra_env,
                                                              server, profile)
            _write_record(state_dir, kind, record)


def stop_host_services(sim_root, host=None, kind=None, timeout=10):
    """Stops the services of the simulation (of one host, one kind) as a service stop does (SIGTERM, then SIGKILL);
    their records stay, so the same playbook run does not start them again. Returns the pids stopped."""
    pids = service_pids(sim_root, host, kind)
    _terminate(pids, timeout)
    hosts_dir = os.path.join(os.path.abspath(sim_root), "hosts")
    for name in ([host] if host is not None else (os.listdir(hosts_dir) if os.path.isdir(hosts_dir) else [])):
        state_dir = os.path.join(hosts_dir, name, SERVICE_STATE)
        for k in ([kind] if kind is not None else list(SERVICE_BINARIES)):
            record = read_service_record(os.path.join(hosts_dir, name), k)
            if record and record.get("pid") and not record.get("stopped"):
                record["stopped"] = time.time()
                _write_record(state_dir, k, record)
    return pids


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
    wanted = [entry["type"]] + [s[0] for s in ps_payload.ps1_ast.static_calls(ps_payload.ps1_ast.parse(script))]
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
            self._sim_root = root
            self._place_fixtures()
            ensure_services(self._paths, root, self._play_context.remote_addr or "localhost",
                            self.get_option("esesim_services") or [],
                            os.environ.get("ESESIM_RUN_ID") or str(os.getppid()), self.get_option("esesim_profile"))
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
        ntdsbcli = self.get_option("esesim_ntdsbcli") or "present"
        env["LD_LIBRARY_PATH"] = NTDSBCLI_LIB_DIRS[ntdsbcli]
        env.pop("ESESIM_NTDS_NO_ENDPOINT", None)
        if ntdsbcli == "no_endpoint":
            env["ESESIM_NTDS_NO_ENDPOINT"] = "1"
        # The services' endpoints (certadm.dll and ntdsbcli.dll find <dir>/<server>.sock there).
        for kind, path in service_dirs(self._sim_root).items():
            env[SERVICE_DIR_VARS[kind]] = path
        env["ESESIM_PROFILE"] = self.get_option("esesim_profile")
        env["ESESIM_FAULTS"] = json.dumps(self.get_option("esesim_faults") or [])
        env["ESE_BACKUP_SESSION_DIR"] = self._paths.to_local(SESSION_DIR)
        # Restore's rule for the Windows directory (only its ESE data folders may be restored into).
        env["ESE_BACKUP_TEST_WINDOWS_DIR"] = self._paths.to_local(WINDOWS_DIR)
        # What Windows sets: the NetBIOS name, which the engine records as the set's host.
        env["COMPUTERNAME"] = computer_name(self._play_context.remote_addr)
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
                              env=self._engine_env(), timeout=600, check=False)
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


def main(argv):
    """esesim.py stop-service SIM_ROOT HOST [KIND]: stops a simulated host's services (for a playbook task that
    stops a service between two others)."""
    if len(argv) not in (3, 4) or argv[0] != "stop-service":
        sys.stderr.write("usage: esesim.py stop-service SIM_ROOT HOST [adcs|adds]\n")
        return 2
    stopped = stop_host_services(argv[1], argv[2], argv[3] if len(argv) == 4 else None)
    sys.stdout.write(json.dumps({"stopped": stopped}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
