# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a Windows host receives for a PowerShell module, and what Windows PowerShell 5.1 makes of it.

* :func:`parse_payload` reads the payload that ansible-core built for a task (both manifest
  generations: 2.16-2.18 exec wrapper + ``csharp_utils``, 2.19+ bootstrap + ``scripts``/``actions``):
  module name, arguments, async job, the module's own ``.ps1``, its C# utils in the order
  ``Add-CSharpType`` receives them and its PowerShell utils.
* :func:`build_payload` builds a module's real payload with the ansible-core that runs it.
* :func:`windows_compile` compiles the C# utils as ``Ansible.ModuleUtils.AddType.psm1`` does on
  Windows PowerShell 5.1 (CodeDom/csc branch): C# 5, ``AMD64;WINDOWS``, System, System.Core and
  System.Management.Automation against the .NET Framework 4.5 reference assemblies
  (``../shared/tools/netfx-ref``), ``//AssemblyReference`` and ``//NoWarn`` honoured (``-CLR Core`` ones
  skipped), warning CS1610 ignored, warnings of the collection's own files are errors, and every
  ``//TypeAccelerator`` resolved against the compiled types' short names as Add-CSharpType does.
* :func:`runnable_assembly` compiles the collection's own C# utils of a payload the same way, against
  Mono's profile, into the assembly the simulated host runs (Ansible.Basic and
  System.Management.Automation cannot run under Mono).
* :func:`loader_exe` is the small Mono loader (``tests/sim/host/EseSimHost.cs``) that calls an entry
  point of such an assembly by reflection.
* :func:`module_entry_call` and :func:`module_spec` read the engine call and the Ansible.Basic spec
  from the ``.ps1`` itself (tree-sitter AST, ``tests/static/ps1_ast.py``).

Everything compiled is cached under ``build/esesim/`` by the SHA-256 of what went in.

Command line (used by ``tests/static/test_payload.py``)::

    python tests/sim/payload.py check [--collections DIR] [MODULE ...]

prints one JSON line per module: the ansible-core version, the C# utils carried and the compile result.
"""
import base64
import glob
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "static"))

import ps1_ast  # noqa: E402  (tests/static)

CACHE = os.environ.get("ESESIM_CACHE") or os.path.join(REPO, "build", "esesim")
NETFX_REF = os.environ.get("ESE_NETFX_REF") or os.path.join(os.path.dirname(REPO), "shared", "tools", "netfx-ref")
MONO_45 = "/usr/lib/mono/4.5"
LOADER_SRC = os.path.join(REPO, "tests", "sim", "host", "EseSimHost.cs")
COLLECTION_UTILS = "ansible_collections."
ENTRY_COMMAND = "Invoke-EseEntryPoint"
# What Add-CSharpType's PSDesktop branch always passes (AddType.psm1).
DESKTOP_DEFINES = ("AMD64", "WINDOWS")
DESKTOP_NOWARN = ("1610",)

_ASSEMBLY_RE = re.compile(r"//\s*AssemblyReference\s+-(?P<Parameter>(Name)|(Type))\s+(?P<Name>[\w.]*)"
                          r"(\s+-CLR\s+(?P<CLR>Core|Framework))?")
_NOWARN_RE = re.compile(r"//\s*NoWarn\s+-Name\s+(?P<Name>[\w\d]*)(\s+-CLR\s+(?P<CLR>Core|Framework))?")
_TYPE_ACC_RE = re.compile(r"//\s*TypeAccelerator\s+-Name\s+(?P<Name>[\w.]*)\s+-TypeName\s+(?P<TypeName>[\w.]*)")
_UNSAFE_RE = re.compile(r"//\s*AllowUnsafe?")
_MCS_LINE = re.compile(r"^(?P<file>.*?)\((?P<line>\d+),(?P<col>\d+)\): (?P<kind>error|warning) (?P<code>CS\d+): "
                       r"(?P<text>.*)$")
_MCS_GLOBAL = re.compile(r"^(?:error|warning) (?P<code>CS\d+): (?P<text>.*)$")


class PayloadError(Exception):
    """The payload has a shape this code does not know (a new ansible-core?)."""


class WindowsLoadError(Exception):
    """What Windows would fail with when loading or starting the module."""


# ---- payload ----------------------------------------------------------------------------------------

def _b64(text):
    return base64.b64decode(text).decode("utf-8-sig")


def parse_payload(in_data):
    """The module call that a PowerShell payload carries, as a dict:

    ``module`` (``_ansible_module_name``), ``args``, ``job`` (None or {jid, timeout}), ``script`` (the
    module's ``.ps1`` source), ``script_name``, ``cs_utils`` ([(name, source)] in Add-CSharpType order),
    ``ps_utils`` ([(name, source)]), ``generation`` ("2.16" for 2.16-2.18, "2.19" for 2.19+).
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
    if not isinstance(manifest, dict):
        raise PayloadError("esesim: the manifest is not a JSON object; unknown PowerShell payload shape")
    call = {"args": None, "job": None, "script": None, "script_name": None, "cs_utils": [], "ps_utils": []}
    if isinstance(manifest.get("module_args"), dict):
        call["generation"] = "2.16"
        call["args"] = manifest["module_args"]
        actions = [a for a in manifest.get("actions") or [] if isinstance(a, str)]
        if "async_wrapper" in actions:
            call["job"] = {"jid": manifest.get("async_jid"), "timeout": manifest.get("async_timeout_sec")}
        if any("become" in a for a in actions):
            raise PayloadError("esesim: become is not simulated")
        if manifest.get("module_entry"):
            call["script"] = _b64(manifest["module_entry"])
            call["script_name"] = str(call["args"].get("_ansible_module_name")) + ".ps1"
        sources = manifest.get("csharp_utils") or {}
        for name in manifest.get("csharp_utils_module") or []:
            if name not in sources:
                raise WindowsLoadError("C# util %s is listed but not carried" % name)
            call["cs_utils"].append((name, _b64(sources[name])))
        for name, data in (manifest.get("powershell_modules") or {}).items():
            call["ps_utils"].append((name, _b64(data)))
    elif isinstance(manifest.get("actions"), list):
        call["generation"] = "2.19"
        scripts = manifest.get("scripts") or {}
        for action in manifest["actions"]:
            name = action.get("name") if isinstance(action, dict) else None
            params = action.get("params") or {} if isinstance(action, dict) else {}
            if name and "become" in name:
                raise PayloadError("esesim: %s is not simulated" % name)
            if name == "async_wrapper.ps1":
                call["job"] = dict(call["job"] or {}, jid=params.get("AsyncJid"))
            elif name == "async_watchdog.ps1":
                call["job"] = dict(call["job"] or {}, timeout=params.get("Timeout"))
            elif name == "module_wrapper.ps1":
                for var in params.get("Variables", []):
                    if var.get("Name") == "complex_args":
                        call["args"] = var.get("Value")
                script = params.get("Script")
                if script in scripts:
                    call["script_name"] = script
                    call["script"] = _b64(scripts[script]["script"])
                for kind, key in (("cs_utils", "CSharpModules"), ("ps_utils", "PowerShellModules")):
                    for util in params.get(key) or []:
                        if util not in scripts:
                            raise WindowsLoadError("util %s is listed but not carried" % util)
                        call[kind].append((util, _b64(scripts[util]["script"])))
    args = call["args"]
    if not isinstance(args, dict) or "_ansible_module_name" not in args:
        raise PayloadError("esesim: unknown PowerShell payload shape (manifest keys: %s)"
                           % ", ".join(sorted(manifest)))
    if call["job"] is not None and not call["job"].get("jid"):
        raise PayloadError("esesim: an async payload without a job id; unknown PowerShell payload shape")
    call["module"] = args["_ansible_module_name"]
    return call


def build_payload(module_path, fqn, module_args=None, async_timeout=0):
    """The payload the installed ansible-core builds for a PowerShell module (no become).

    The ``ansible_collections`` package must be importable (an installed collection finder)."""
    import inspect
    from ansible.executor.powershell import module_manifest
    with open(module_path, "rb") as f:
        data = f.read()
    args = {"_ansible_module_name": fqn.replace("ansible_collections.", "").replace(".plugins.modules", ""),
            "_ansible_remote_tmp": "C:\\Windows\\Temp", "_ansible_check_mode": False}
    args.update(module_args or {})
    env = {"ANSIBLE_ASYNC_DIR": "C:\\Users\\ansible\\.ansible_async"} if async_timeout else {}
    create = module_manifest._create_powershell_wrapper
    if "name" in inspect.signature(create).parameters:  # 2.19+
        return create(name=fqn, module_data=data, module_path=module_path, module_args=args, environment=env,
                      async_timeout=async_timeout, become_plugin=None, substyle="powershell", task_vars={},
                      profile="legacy")
    return create(data, module_path, args, env, async_timeout, False, None, None, None, None, "powershell", {}, fqn)


def install_collection_finder(collections_dir):
    from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder
    finder = _AnsibleCollectionFinder(paths=[collections_dir])
    finder._install()


# ---- .NET metadata: the types of a compiled assembly --------------------------------------------------

def dotnet_types(path):
    """[(namespace, name)] of every TypeDef in an assembly, in table order (``<Module>`` excluded), read
    from the ECMA-335 metadata tables: what ``Assembly.GetTypes()`` lists, nested types by short name."""
    with open(path, "rb") as f:
        pe = f.read()
    pe_off = struct.unpack_from("<I", pe, 0x3C)[0]
    if pe[pe_off:pe_off + 4] != b"PE\0\0":
        raise ValueError("%s is not a PE file" % path)
    nsections, = struct.unpack_from("<H", pe, pe_off + 6)
    opt_size, = struct.unpack_from("<H", pe, pe_off + 20)
    opt = pe_off + 24
    magic, = struct.unpack_from("<H", pe, opt)
    dirs = opt + (96 if magic == 0x10B else 112)
    sections = []
    for i in range(nsections):
        s = opt + opt_size + 40 * i
        vsize, va, rawsize, raw = struct.unpack_from("<IIII", pe, s + 8)
        sections.append((va, max(vsize, rawsize), raw))

    def at(rva):
        for va, size, raw in sections:
            if va <= rva < va + size:
                return rva - va + raw
        raise ValueError("rva %#x outside sections" % rva)

    cli_rva, _ = struct.unpack_from("<II", pe, dirs + 14 * 8)
    cli = at(cli_rva)
    md_rva, _ = struct.unpack_from("<II", pe, cli + 8)
    md = at(md_rva)
    vlen, = struct.unpack_from("<I", pe, md + 12)
    p = md + 16 + vlen
    nstreams, = struct.unpack_from("<H", pe, p + 2)
    p += 4
    streams = {}
    for _ in range(nstreams):
        off, size = struct.unpack_from("<II", pe, p)
        end = pe.index(b"\0", p + 8)
        name = pe[p + 8:end].decode()
        p = p + 8 + ((end - (p + 8)) // 4 + 1) * 4
        streams[name] = md + off
    tables = streams.get("#~", streams.get("#-"))
    strings = streams["#Strings"]
    heap_sizes = pe[tables + 6]
    valid, = struct.unpack_from("<Q", pe, tables + 8)
    rows = {}
    q = tables + 24
    for t in range(64):
        if valid >> t & 1:
            rows[t], = struct.unpack_from("<I", pe, q)
            q += 4
    str_size = 4 if heap_sizes & 1 else 2
    guid_size = 4 if heap_sizes & 2 else 2

    def index_size(*tabs, tag_bits=0):
        limit = 1 << (16 - tag_bits)
        return 4 if max(rows.get(t, 0) for t in tabs) >= limit else 2

    module_row = 2 + str_size + 3 * guid_size
    typeref_row = index_size(0x00, 0x1A, 0x23, 0x01, tag_bits=2) + 2 * str_size
    typedef_row = (4 + 2 * str_size + index_size(0x02, 0x01, 0x1B, tag_bits=2)
                   + index_size(0x04) + index_size(0x06))
    start = q + rows.get(0, 0) * module_row + rows.get(1, 0) * typeref_row

    def string(off):
        s = strings + off
        return pe[s:pe.index(b"\0", s)].decode("utf-8")

    found = []
    for i in range(rows.get(2, 0)):
        r = start + i * typedef_row + 4
        name_off = struct.unpack_from("<I" if str_size == 4 else "<H", pe, r)[0]
        ns_off = struct.unpack_from("<I" if str_size == 4 else "<H", pe, r + str_size)[0]
        if i == 0 and string(name_off) == "<Module>":
            continue
        found.append((string(ns_off), string(name_off)))
    return found


# ---- compiling as Windows PowerShell 5.1 does -----------------------------------------------------------

def _sha(*parts):
    h = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else json.dumps(part, sort_keys=True).encode()
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()[:32]


def _mcs_version():
    """Identity of the compiler for cache keys (path, size and time of mcs and its mcs.exe; no process)."""
    if not hasattr(_mcs_version, "value"):
        found = []
        for path in (shutil.which("mcs"), "/usr/lib/mono/4.5/mcs.exe"):
            if path and os.path.exists(path):
                st = os.stat(path)
                found.append([os.path.realpath(path), st.st_size, int(st.st_mtime)])
        _mcs_version.value = found
    return _mcs_version.value


def reference_set():
    """(name, dir of the framework assemblies, System.Management.Automation.dll or None)."""
    v45 = os.path.join(NETFX_REF, "v4.5")
    sma = os.path.join(NETFX_REF, "powershell-5.1", "System.Management.Automation.dll")
    if os.path.isfile(os.path.join(v45, "mscorlib.dll")) and os.path.isfile(sma):
        return "netfx-ref", v45, sma
    return "mono-4.5", MONO_45, None


def _directives(cs_utils, framework_dir):
    """Add-CSharpType's scan of each source (PSDesktop branch): references, NoWarn, accelerators, unsafe."""
    refs, nowarn, accelerators, unsafe, errors = [], list(DESKTOP_NOWARN), [], False, []
    for name, source in cs_utils:
        for m in _ASSEMBLY_RE.finditer(source):
            if m.group("CLR") and m.group("CLR") != "Framework":
                continue
            if m.group("Parameter") == "Type":
                where = _assembly_of_type(m.group("Name"), framework_dir)
                if where is None:
                    errors.append("%s: //AssemblyReference -Type %s: Unable to find type [%s]."
                                  % (name, m.group("Name"), m.group("Name")))
                    continue
            else:
                where = m.group("Name")
                if not os.path.isabs(where):
                    where = os.path.join(framework_dir, where)
                if not os.path.isfile(where):
                    errors.append("%s: //AssemblyReference -Name %s: metadata file not found"
                                  % (name, m.group("Name")))
                    continue
            if where not in refs:
                refs.append(where)
        for m in _NOWARN_RE.finditer(source):
            if m.group("CLR") and m.group("CLR") != "Framework":
                continue
            code = m.group("Name")
            nowarn.append(code[2:] if code.startswith("CS") else code)
        for m in _TYPE_ACC_RE.finditer(source):
            accelerators.append((name, m.group("Name"), m.group("TypeName")))
        if _UNSAFE_RE.search(source):
            unsafe = True
    return refs, nowarn, accelerators, unsafe, errors


# Assemblies a Windows PowerShell 5.1 session has loaded when Add-CSharpType resolves [Type]Name.
_SESSION_ASSEMBLIES = ("mscorlib.dll", "System.dll", "System.Core.dll", "System.Xml.dll",
                       "System.Configuration.dll", "System.DirectoryServices.dll", "System.Management.dll",
                       "System.Data.dll", "Microsoft.CSharp.dll", "System.Numerics.dll",
                       "System.Transactions.dll")


def _assembly_of_type(type_name, framework_dir):
    ns, _, short = type_name.rpartition(".")
    candidates = [os.path.join(framework_dir, n) for n in _SESSION_ASSEMBLIES]
    sma = reference_set()[2]
    if sma:
        candidates.append(sma)
    for path in candidates:
        if os.path.isfile(path) and (ns, short) in _types_cached(path):
            return path
    return None


def _types_cached(path):
    cache = _types_cached.__dict__.setdefault("cache", {})
    if path not in cache:
        cache[path] = set(dotnet_types(path))
    return cache[path]


def _own(name):
    return name.startswith(COLLECTION_UTILS)


def _source_file(work, name):
    return os.path.join(work, name if name.endswith(".cs") else name + ".cs")


def _run_mcs(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc.returncode, (proc.stdout + proc.stderr).splitlines()


def _atomic_json(path, data):
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def windows_compile(cs_utils):
    """Compiles the C# utils as Add-CSharpType does on Windows PowerShell 5.1; returns a dict:

    ``ok``, ``msg`` (the Add-CSharpType error when not ok), ``errors`` ([str]), ``types`` ([full name]),
    ``accelerators`` ({name: full type name}), ``reference_set`` ("netfx-ref", or "mono-4.5" with a
    ``note`` when ../shared/tools/netfx-ref is absent), ``utils`` ([name]).
    """
    ref_name, framework, sma = reference_set()
    utils = list(cs_utils)
    skipped = []
    if sma is None:  # Mono has no System.Management.Automation: what needs it cannot be compiled here
        skipped = [n for n, s in utils if re.search(r"^using\s+System\.Management\.Automation", s, re.M)]
        utils = [(n, s) for n, s in utils if n not in skipped]
    # ansible-core orders the utils by set iteration (it changes with PYTHONHASHSEED), so one canonical
    # order is compiled and cached; a TypeAccelerator whose short name matches several types (where the
    # order would decide) is an error.
    utils.sort()
    key = _sha("windows-v2", ref_name, framework, _mcs_version(), [[n, s] for n, s in utils])
    out_dir = os.path.join(CACHE, "windows")
    os.makedirs(out_dir, exist_ok=True)
    result_path = os.path.join(out_dir, key + ".json")
    if os.path.exists(result_path):
        with open(result_path) as f:
            return json.load(f)
    result = _windows_compile(utils, ref_name, framework, sma, os.path.join(out_dir, key))
    result["utils"] = [n for n, _ in cs_utils]
    if skipped:
        result["note"] = ("../shared/tools/netfx-ref is absent: compiled against Mono's 4.5 profile, without %s "
                          "(System.Management.Automation is not available)" % ", ".join(skipped))
    _atomic_json(result_path, result)
    return result


def _windows_compile(utils, ref_name, framework, sma, work):
    result = {"ok": False, "reference_set": ref_name, "errors": [], "types": [], "accelerators": {}}
    names = [n for n, _ in utils]
    if not utils:
        result.update(ok=True, msg="")
        return result
    refs, nowarn, accelerators, unsafe, errors = _directives(utils, framework)
    if errors:
        result.update(errors=errors, msg="Failed to compile C# code: " + "\r\n".join(errors))
        return result
    work = tempfile.mkdtemp(prefix=os.path.basename(work) + ".", dir=os.path.dirname(work))
    try:
        return _mcs_windows(utils, names, refs, nowarn, accelerators, unsafe, framework, sma, work, result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _mcs_windows(utils, names, refs, nowarn, accelerators, unsafe, framework, sma, work, result):
    errors = []
    sources = []
    for name, source in utils:
        path = _source_file(work, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(source)
        sources.append(path)
    dll = os.path.join(work, "payload.dll")
    base = [os.path.join(framework, "mscorlib.dll"), os.path.join(framework, "System.dll"),
            os.path.join(framework, "System.Core.dll")] + ([sma] if sma else [])
    cmd = ["mcs", "-nologo", "-nostdlib", "-noconfig", "-langversion:5", "-target:library", "-optimize",
           "-define:" + ";".join(DESKTOP_DEFINES), "-nowarn:" + ",".join(nowarn), "-out:" + dll]
    cmd += ["-r:" + r for r in base + [r for r in refs if r not in base]]
    if unsafe:
        cmd.append("-unsafe")
    rc, lines = _run_mcs(cmd + sources)
    by_file = {p: n for p, n in zip(sources, names)}
    for line in lines:
        m = _MCS_LINE.match(line)
        if m:
            util = by_file.get(m.group("file"), by_file.get(os.path.join(work, m.group("file")), m.group("file")))
            text = "%s(%s,%s): %s %s: %s" % (util, m.group("line"), m.group("col"), m.group("kind"),
                                             m.group("code"), m.group("text"))
            # csc.exe is run with TreatWarningsAsErrors; mcs warns where csc does not (CS0219 in
            # Ansible.Basic.cs), so only the collection's own files are held to it here.
            if m.group("kind") == "error" or _own(util):
                errors.append(text)
        elif _MCS_GLOBAL.match(line) and line.startswith("error"):
            errors.append(line)
    if rc != 0 and not errors:
        errors = [line for line in lines if line.strip()] or ["mcs exited with %d" % rc]
    if errors:
        result.update(errors=errors, msg="Failed to compile C# code: \r\n" + "\r\n".join(errors))
        return result
    types = dotnet_types(dll)
    result["types"] = [(ns + "." + n) if ns else n for ns, n in types]
    for util, acc_name, type_name in accelerators:
        matches = [(ns, n) for ns, n in types if n == type_name]
        match = matches[0] if matches else None
        if len(matches) > 1:
            result.update(errors=["%s: //TypeAccelerator -Name %s -TypeName %s matches %s" % (
                util, acc_name, type_name, ", ".join(".".join(filter(None, m)) for m in matches))],
                msg="TypeAccelerator %s: '%s' names %d compiled types; Add-CSharpType takes the first, in an "
                    "order ansible-core does not fix" % (acc_name, type_name, len(matches)))
            return result
        if match is None:
            result.update(errors=["%s: //TypeAccelerator -Name %s -TypeName %s" % (util, acc_name, type_name)],
                          msg="Failed to find compiled class '%s' for custom TypeAccelerator." % type_name)
            return result
        result["accelerators"][acc_name] = (match[0] + "." + match[1]) if match[0] else match[1]
    result.update(ok=True, msg="")
    return result


def runnable_assembly(cs_utils):
    """Path of the assembly of the collection's own C# utils of a payload, compiled for Mono (cached).

    Compiled as on Windows PowerShell 5.1 (C# 5, AMD64;WINDOWS, //AssemblyReference and //NoWarn of the
    Framework), against Mono's own profile because it must run here. Raises WindowsLoadError on a
    compile error."""
    own = sorted((n, s) for n, s in cs_utils if _own(n))
    key = _sha("runnable-v1", _mcs_version(), [[n, s] for n, s in own])
    out_dir = os.path.join(CACHE, "runnable")
    dll = os.path.join(out_dir, key + ".dll")
    if os.path.exists(dll):
        return dll
    os.makedirs(out_dir, exist_ok=True)
    refs, nowarn, _, unsafe, errors = _directives(own, MONO_45)
    if errors:
        raise WindowsLoadError("Failed to compile C# code: " + "; ".join(errors))
    work = tempfile.mkdtemp(prefix=key, dir=out_dir)
    try:
        sources = []
        for name, source in own:
            path = _source_file(work, name)
            with open(path, "w", encoding="utf-8") as f:
                f.write(source)
            sources.append(path)
        tmp = os.path.join(work, "out.dll")
        cmd = ["mcs", "-nologo", "-langversion:5", "-target:library", "-optimize", "-debug",
               "-define:" + ";".join(DESKTOP_DEFINES), "-nowarn:" + ",".join(nowarn), "-out:" + tmp]
        cmd += ["-r:" + r for r in refs] + (["-unsafe"] if unsafe else [])
        rc, lines = _run_mcs(cmd + sources)
        if rc != 0:
            raise WindowsLoadError("Failed to compile C# code: \r\n" + "\r\n".join(
                line for line in lines if ": error " in line or line.startswith("error")))
        if os.path.exists(tmp + ".mdb"):
            os.replace(tmp + ".mdb", dll + ".mdb")
        os.replace(tmp, dll)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dll


def loader_exe():
    """Path of the Mono loader compiled from tests/sim/host/EseSimHost.cs alone (cached)."""
    with open(LOADER_SRC, "rb") as f:
        source = f.read()
    key = _sha("loader-v1", _mcs_version(), source)
    out_dir = os.path.join(CACHE, "loader")
    exe = os.path.join(out_dir, key + ".exe")
    if not os.path.exists(exe):
        os.makedirs(out_dir, exist_ok=True)
        tmp = "%s.%d.tmp.exe" % (exe[:-4], os.getpid())
        rc, lines = _run_mcs(["mcs", "-nologo", "-langversion:5", "-target:exe", "-debug", "-out:" + tmp,
                              LOADER_SRC])
        if rc != 0:
            raise RuntimeError("esesim: the loader does not compile:\n" + "\n".join(lines))
        if os.path.exists(tmp + ".mdb"):
            os.replace(tmp + ".mdb", exe + ".mdb")
        os.replace(tmp, exe)
    return exe


# ---- the .ps1 itself -----------------------------------------------------------------------------------

def _argument_text(node):
    text = node.text.decode("utf-8").strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return text


def module_entry_call(source):
    """The module's one ``Invoke-EseEntryPoint`` call as {type, method, privileges, line}; raises
    WindowsLoadError when the .ps1 has none, several, or one whose -Type/-Method is not literal."""
    tree = ps1_ast.parse(source)
    calls = []
    for node in ps1_ast.walk(tree.root_node):
        if node.type != "command":
            continue
        name = next((c for c in node.children if c.type == "command_name"), None)
        if name is None or name.text.decode().lower() != ENTRY_COMMAND.lower():
            continue
        elements = next((c for c in node.children if c.type == "command_elements"), None)
        items = [c for c in (elements.named_children if elements else []) if c.type != "command_argument_sep"]
        params, i = {}, 0
        while i < len(items):
            item = items[i]
            if item.type == "command_parameter":
                pname = item.text.decode().lstrip("-").rstrip(":").lower()
                value = items[i + 1] if i + 1 < len(items) and items[i + 1].type != "command_parameter" else None
                params[pname] = value
                i += 2 if value is not None else 1
            else:
                raise WindowsLoadError("%s: positional argument %r is not simulated"
                                       % (ENTRY_COMMAND, item.text.decode()))
        calls.append((node, params))
    if len(calls) != 1:
        raise WindowsLoadError("the module must make exactly one %s call (found %d)" % (ENTRY_COMMAND, len(calls)))
    node, params = calls[0]
    type_node = params.get("type")
    type_lit = None
    if type_node is not None:
        type_lit = next((n for n in ps1_ast.walk(type_node) if n.type == "type_literal"), None)
    if type_lit is None or type_node.text.decode().strip("() ") != type_lit.text.decode().strip():
        raise WindowsLoadError("%s -Type must be a type literal such as ([Namespace.Type])" % ENTRY_COMMAND)
    method = params.get("method")
    if method is None or not re.match(r"^['\"]?\w+['\"]?$", method.text.decode()):
        raise WindowsLoadError("%s -Method must be a literal method name" % ENTRY_COMMAND)
    if "module" not in params:
        raise WindowsLoadError("%s needs -Module" % ENTRY_COMMAND)
    privileges = []
    if params.get("privilege") is not None:
        pnode = params["privilege"]
        parts = [c for c in ps1_ast.walk(pnode) if c.type in ("string_literal", "generic_token")]
        privileges = [_argument_text(p) for p in parts] if parts else [_argument_text(pnode)]
        if not all(re.match(r"^Se\w+Privilege$", p) for p in privileges):
            raise WindowsLoadError("%s -Privilege must list privilege names, got %s"
                                   % (ENTRY_COMMAND, pnode.text.decode()))
    return {"type": type_lit.text.decode().strip("[] "), "method": _argument_text(method),
            "privileges": privileges, "line": node.start_point[0] + 1}


def module_spec(source):
    """The ``$spec`` hashtable of a .ps1 (the last literal assignment), evaluated from the AST."""
    tree = ps1_ast.parse(source)
    problems = ps1_ast.problems(tree)
    if problems:
        raise WindowsLoadError("the module does not parse as PowerShell: line %d column %d %s %r" % problems[0])
    specs = [ps1_ast.value(n) for n in ps1_ast.assignments(tree, "spec")]
    if not specs or not isinstance(specs[-1], dict):
        raise WindowsLoadError("the module has no literal $spec hashtable")
    return specs[-1]


def defines_function(ps_utils, function):
    """Name of the PowerShell util that defines ``Function <function>`` (None if none does)."""
    pattern = re.compile(r"^\s*Function\s+%s\b" % re.escape(function), re.I | re.M)
    return next((name for name, source in ps_utils if pattern.search(source)), None)


# ---- command line --------------------------------------------------------------------------------------

def _check(collections_dir, modules):
    install_collection_finder(collections_dir)
    from ansible.release import __version__
    base = os.path.join(collections_dir, "ansible_collections", "ese", "backup", "plugins", "modules")
    names = modules or sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(base, "*.ps1")))
    for name in names:
        record = {"module": name, "ansible_core": __version__}
        try:
            payload = build_payload(os.path.join(base, name + ".ps1"), "ansible_collections.ese.backup.plugins.modules."
                                    + name)
            call = parse_payload(payload)
            record["generation"] = call["generation"]
            record["cs_utils"] = [n for n, _ in call["cs_utils"]]
            record["ps_utils"] = [n for n, _ in call["ps_utils"]]
            record["compile"] = windows_compile(call["cs_utils"])
        except Exception as e:  # reported, the test decides
            record["error"] = "%s: %s" % (type(e).__name__, e)
        print(json.dumps(record), flush=True)


def main(argv):
    if len(argv) < 2 or argv[1] != "check":
        print(__doc__.strip().split("Command line")[1])
        return 2
    collections_dir = os.path.join(REPO, "build", "collections")
    rest = argv[2:]
    if rest[:1] == ["--collections"]:
        collections_dir, rest = rest[1], rest[2:]
    _check(os.path.abspath(collections_dir), rest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
