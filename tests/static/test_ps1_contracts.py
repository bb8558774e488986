# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Static contracts of the PowerShell layer, checked without PowerShell.

* every .ps1 under plugins/ parses with a real PowerShell grammar (tree-sitter-powershell): no ERROR
  or MISSING node;
* each module's ``$spec`` (evaluated from the AST) matches its documentation option by option: type,
  required, default, choices, elements, no_log, aliases (and suboptions); the documentation is the YAML
  sidecar as ansible's own doc loader reads it, doc fragments (``extends_documentation_fragment``) merged in;
* ``supports_check_mode`` agrees with the documented check_mode attribute;
* each ``[Namespace.Type]::Method`` the scripts use has its ``#AnsibleRequires -CSharpUtil`` line;
* every engine entry point a script calls exists, public and static, with that arity and the documented
  parameter types, in the compiled engine (``build/engine/EseEngine.dll``; built from
  plugins/module_utils/*.cs into a temporary directory when the build tree has none), checked by
  reflection under Mono.
"""
import glob
import json
import re
import os
import shutil
import subprocess
import sys

import pytest

import ps1_ast

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sim"))
import payload  # noqa: E402  (tests/sim: the .ps1's Invoke-EseEntryPoint call)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COLLECTIONS = os.path.join(ROOT, "build", "collections")  # the conftest links the tree there
PS1 = sorted(glob.glob(os.path.join(ROOT, "plugins", "**", "*.ps1"), recursive=True)
             + glob.glob(os.path.join(ROOT, "plugins", "module_utils", "*.psm1")))
MODULE_UTIL = os.path.join(ROOT, "plugins", "module_utils", "_EseModule.psm1")
MODULES = sorted(p for p in PS1 if os.sep + "modules" + os.sep in p)
ENGINE_NS = "ansible_collections.ese.backup.plugins.module_utils.EseEngine"
RESTORE_NS = "ansible_collections.ese.backup.plugins.module_utils._EseRestore"
SESSION_NS = "ansible_collections.ese.backup.plugins.module_utils._EseSession"
PRUNE_NS = "ansible_collections.ese.backup.plugins.module_utils._EsePrune"
CAFILES_NS = "ansible_collections.ese.backup.plugins.module_utils._EseCaFiles"
ENGINE_DLL = os.path.join(ROOT, "build", "engine", "EseEngine.dll")
# docs/architecture.md section 2, "Entry points".
ENTRY_POINT_PARAMS = {
    "Run": ["System.Collections.IDictionary", "System.Boolean"],
    "Info": ["System.Collections.IDictionary"],
    "Restore.Run": ["System.Collections.IDictionary", "System.Boolean"],
    "Begin": ["System.Collections.IDictionary", "System.Boolean"],
    "Copy": ["System.Collections.IDictionary", "System.Boolean"],
    "Truncate": ["System.Collections.IDictionary", "System.Boolean"],
    "End": ["System.Collections.IDictionary", "System.Boolean"],
    "List": ["System.Collections.IDictionary"],
}
# The C# utils a type namespace needs, as '#AnsibleRequires -CSharpUtil <one of these>'.
REQUIRES = {
    "Ansible.Basic.": ("Ansible.Basic",),
    "Ansible.Privilege.": ("Ansible.Privilege",),
    ENGINE_NS + ".": ("..module_utils.EseEngine", ENGINE_NS),
    RESTORE_NS + ".": ("..module_utils._EseRestore", RESTORE_NS),
    SESSION_NS + ".": ("..module_utils._EseSession", SESSION_NS),
    PRUNE_NS + ".": ("..module_utils._EsePrune", PRUNE_NS),
    CAFILES_NS + ".": ("..module_utils._EseCaFiles", CAFILES_NS),
}


def rel(path):
    return os.path.relpath(path, ROOT)


def tree_of(path):
    with open(path, "rb") as handle:
        return ps1_ast.parse(handle.read())


def test_there_are_modules():
    assert [os.path.basename(p) for p in MODULES] == ["info.ps1", "run.ps1"] or len(MODULES) >= 2


@pytest.mark.parametrize("path", PS1, ids=rel)
def test_parses_without_errors(path):
    tree = tree_of(path)
    assert not tree.root_node.has_error or ps1_ast.problems(tree), "has_error without an ERROR node"
    assert ps1_ast.problems(tree) == [], "%s does not parse as PowerShell" % rel(path)


def test_every_module_requires_the_util_that_defines_and_exports_its_engine_call():
    with open(MODULE_UTIL) as handle:
        util = handle.read()
    assert re.search(r"^Function Invoke-EseEntryPoint \{", util, re.M)
    exported = re.search(r"^Export-ModuleMember -Function (.*)$", util, re.M).group(1)
    assert "'Invoke-EseEntryPoint'" in exported
    for path in MODULES:
        with open(path) as handle:
            text = handle.read()
        assert re.search(r"^#AnsibleRequires -PowerShell ansible_collections\.ese\.backup\.plugins\.module_utils"
                         r"\._EseModule$", text, re.M), rel(path)
        assert len(re.findall(r"^Invoke-EseEntryPoint ", text, re.M)) == 1, rel(path)


def test_the_grammar_does_report_errors():
    tree = ps1_ast.parse("$spec = @{\n    options = @{ a = @{ type = 'str' }\n")
    assert ps1_ast.problems(tree)


# ---- $spec vs YAML docs ---------------------------------------------------------------------------

def spec_of(path):
    tree = tree_of(path)
    values = [ps1_ast.value(node) for node in ps1_ast.assignments(tree, "spec")]
    assert len(values) == 1, "%s: expected exactly one $spec assignment" % rel(path)
    return values[0]


# Reads sidecars as ansible-doc does (ansible.utils.plugin_docs.get_docstring with the doc fragment loader), in a
# child process: the collection loader it installs stays out of this one.
DOC_LOADER = r"""
import json, sys
from ansible.plugins.loader import fragment_loader, init_plugin_loader
from ansible.utils.plugin_docs import get_docstring
init_plugin_loader([sys.argv[1]])
docs = {}
for path in sys.argv[2:]:
    doc, examples, returns, metadata = get_docstring(path, fragment_loader, ignore_errors=False,
                                                     collection_name="ese.backup", is_module=True)
    docs[path] = {"DOCUMENTATION": doc, "RETURN": returns}
json.dump(docs, sys.stdout, default=str)
"""
_DOCS = {}


def load_docs(sidecars):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    proc = subprocess.run([sys.executable, "-c", DOC_LOADER, COLLECTIONS] + list(sidecars), cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, "ansible could not load the docs:\n" + proc.stderr[-3000:]
    return json.loads(proc.stdout)


def sidecar_of(path):
    return os.path.splitext(path)[0] + ".yml"


def docs_of(path):
    """The module's docs as ansible sees them (all modules' docs are loaded by one child process)."""
    sidecar = sidecar_of(path)
    assert os.path.exists(sidecar), "%s has no YAML sidecar" % rel(path)
    if sidecar not in _DOCS:
        _DOCS.update(load_docs([sidecar] + [s for s in map(sidecar_of, MODULES) if s != sidecar and s not in _DOCS
                                            and os.path.exists(s)]))
    return _DOCS[sidecar]


def normalise(option, source):
    """The comparable fields of one option, with Ansible's defaults filled in."""
    aliases = option.get("aliases") or []
    choices = option.get("choices")
    result = {
        "type": option.get("type", "str"),
        "required": bool(option.get("required", False)),
        "default": option.get("default"),
        "choices": list(choices) if choices is not None else None,
        "elements": option.get("elements"),
        # the docs cannot carry no_log (validate-modules refuses the key): a no_log option says so in its description
        "no_log": bool(option.get("no_log", False)) if source == "spec" else "no_log" in str(option.get("description")),
        "aliases": sorted(aliases if isinstance(aliases, list) else [aliases]),
    }
    nested = option.get("options") if source == "spec" else option.get("suboptions")
    if nested:
        result["options"] = dict((name, normalise(sub, source)) for name, sub in nested.items())
    for key, val in result.items():
        assert not isinstance(val, ps1_ast.Opaque), "%s value is not a literal: %r" % (key, val)
    return result


@pytest.mark.parametrize("path", MODULES, ids=rel)
def test_spec_matches_docs(path):
    spec = spec_of(path)
    docs = docs_of(path)["DOCUMENTATION"]
    spec_options = dict((k, normalise(v, "spec")) for k, v in spec.get("options", {}).items())
    doc_options = dict((k, normalise(v, "docs")) for k, v in (docs.get("options") or {}).items())
    assert sorted(spec_options) == sorted(doc_options), "options differ between $spec and the docs"
    mismatches = []
    for name in sorted(spec_options):
        for field in spec_options[name]:
            if spec_options[name][field] != doc_options[name].get(field):
                mismatches.append("%s.%s: spec %r, docs %r"
                                  % (name, field, spec_options[name][field], doc_options[name].get(field)))
    assert not mismatches, "\n".join(mismatches)
    assert docs["module"] == os.path.splitext(os.path.basename(path))[0]


@pytest.mark.parametrize("path", MODULES, ids=rel)
def test_check_mode_support_is_documented(path):
    spec = spec_of(path)
    attribute = docs_of(path)["DOCUMENTATION"]["attributes"]["check_mode"]["support"]
    assert (spec.get("supports_check_mode") is True) == (attribute in ("full", "partial"))


def test_spec_comparison_catches_a_difference(tmp_path):
    module = tmp_path / "m.ps1"
    module.write_text("$spec = @{ options = @{ a = @{ type = 'int'; default = 3 } } }\n")
    (tmp_path / "m.yml").write_text("DOCUMENTATION:\n  module: m\n  options:\n    a: {type: int, default: 4, "
                                    "description: x}\n")
    with pytest.raises(AssertionError, match="a.default: spec 3, docs 4"):
        test_spec_matches_docs(str(module))


def test_spec_comparison_sees_the_options_of_a_doc_fragment(tmp_path):
    """base_name comes from the ese.backup.backup_source fragment only (default edb); the spec says sru."""
    module = tmp_path / "m.ps1"
    module.write_text("""$spec = @{ options = @{
        databases = @{ type = 'list'; elements = 'path'; required = $true }
        log_path = @{ type = 'path'; required = $true }
        system_path = @{ type = 'path' }
        base_name = @{ type = 'str'; default = 'sru' }
        page_size = @{ type = 'int'; choices = 2048, 4096, 8192, 16384, 32768 }
        circular_logging = @{ type = 'bool'; default = $false }
        legacy_file_names = @{ type = 'int'; default = 3 }
        instance_name = @{ type = 'str'; default = 'ese.backup' }
    } }
""")
    (tmp_path / "m.yml").write_text("DOCUMENTATION:\n  module: m\n  options: {}\n"
                                    "  extends_documentation_fragment: [ese.backup.backup_source]\n")
    with pytest.raises(AssertionError) as failure:
        test_spec_matches_docs(str(module))
    # the one difference: the fragment's other options agree with the spec
    assert str(failure.value).split("\nassert ", maxsplit=1)[0] == "base_name.default: spec 'sru', docs 'edb'"


# ---- #AnsibleRequires ------------------------------------------------------------------------------

def requires_of(tree):
    found = set()
    for text in ps1_ast.comments(tree):
        words = text.lstrip("#").split()
        if len(words) >= 3 and text.startswith("#AnsibleRequires") and words[1] == "-CSharpUtil":
            found.add(words[2])
    return found


@pytest.mark.parametrize("path", PS1, ids=rel)
def test_types_used_have_their_requires_line(path):
    tree = tree_of(path)
    requires = requires_of(tree)
    missing = []
    for type_name, method, dummy, line in ps1_ast.static_calls(tree):
        for prefix, accepted in REQUIRES.items():
            if type_name.startswith(prefix) and not requires.intersection(accepted):
                missing.append("line %d [%s]::%s needs #AnsibleRequires -CSharpUtil %s"
                               % (line, type_name, method, accepted[0]))
    assert not missing, "\n".join(missing)
    if os.sep + "modules" + os.sep in path:
        assert "Ansible.Basic" in requires


# ---- engine entry points ---------------------------------------------------------------------------

def engine_calls():
    """(path, type, method, arity, line) of every engine call: ``[Type]::Method(args)``, and each module's
    ``Invoke-EseEntryPoint -Type ([Type]) -Method M`` (arity None: the util calls (IDictionary, bool) if
    the engine has it, else (IDictionary))."""
    calls = []
    for path in PS1:
        for type_name, method, arity, line in ps1_ast.static_calls(tree_of(path)):
            if type_name.startswith((ENGINE_NS + ".", RESTORE_NS + ".", SESSION_NS + ".", PRUNE_NS + ".", CAFILES_NS + ".")):
                calls.append((rel(path), type_name, method, arity, line))
        if path in MODULES:
            with open(path, encoding="utf-8") as f:
                entry = payload.module_entry_call(f.read())
            calls.append((rel(path), entry["type"], entry["method"], None, entry["line"]))
    return calls


def test_modules_call_the_engine():
    called = set((c[0], c[2]) for c in engine_calls())
    assert ("plugins/modules/run.ps1", "Run") in called and ("plugins/modules/info.ps1", "Info") in called
    assert ("plugins/modules/restore.ps1", "Run") in called
    for module, entry in (("begin", "Begin"), ("copy", "Copy"), ("truncate", "Truncate"), ("end", "End"),
                          ("session_host", "HostTask")):
        assert ("plugins/modules/%s.ps1" % module, entry) in called


@pytest.mark.parametrize("path", MODULES, ids=rel)
def test_each_module_makes_one_engine_call(path):
    with open(path, encoding="utf-8") as f:
        entry = payload.module_entry_call(f.read())
    assert entry["type"].startswith((ENGINE_NS + ".", RESTORE_NS + ".", SESSION_NS + ".", PRUNE_NS + ".", CAFILES_NS + "."))


@pytest.fixture(scope="module")
def engine_methods(tmp_path_factory):
    mono, mcs = shutil.which("mono"), shutil.which("mcs")
    if not mono or not mcs:
        pytest.skip("mono and mcs are needed to inspect the engine assembly (Debian: mono-runtime, mono-mcs)")
    work = tmp_path_factory.mktemp("engine")
    dll = ENGINE_DLL
    if not os.path.exists(dll):
        sources = sorted(glob.glob(os.path.join(ROOT, "plugins", "module_utils", "*.cs")))
        assert sources, "no engine source in plugins/module_utils and no build/engine/EseEngine.dll"
        dll = str(work / "EseEngine.dll")
        subprocess.run([mcs, "-langversion:5", "-nologo", "-target:library", "-out:" + dll] + sources, check=True)
    lister = str(work / "EngineEntryPoints.exe")
    subprocess.run([mcs, "-langversion:5", "-nologo", "-out:" + lister,
                    os.path.join(os.path.dirname(__file__), "EngineEntryPoints.cs")], check=True)
    out = subprocess.run([mono, lister, dll], check=True, capture_output=True, text=True).stdout
    methods = {}
    for line in out.splitlines():
        type_name, method, params, returns, is_dict = line.split("\t")
        methods.setdefault((type_name, method), []).append(
            {"params": params.split(",") if params else [], "returns": returns, "returns_dict": is_dict == "True"})
    return methods


@pytest.mark.parametrize("call", engine_calls(), ids=lambda c: "%s:%d %s" % (c[0], c[4], c[2]))
def test_engine_entry_point_exists(engine_methods, call):
    path, type_name, method, arity, line = call
    overloads = engine_methods.get((type_name, method))
    assert overloads, "%s:%d calls [%s]::%s, which the engine assembly does not have (public static)" % (
        path, line, type_name, method)
    if arity is None:  # Invoke-EseEntryPoint: (IDictionary, bool) first, else (IDictionary)
        matching = [o for o in overloads if o["params"] in (ENTRY_POINT_PARAMS["Run"], ENTRY_POINT_PARAMS["Info"])]
        matching = [o for o in matching if len(o["params"]) == 2] or matching
    else:
        matching = [o for o in overloads if len(o["params"]) == arity]
    assert matching, "%s:%d calls %s with %d arguments; the engine has %s" % (
        path, line, method, arity, [o["params"] for o in overloads])
    key = "Restore.Run" if type_name.startswith(RESTORE_NS + ".") and method == "Run" else method
    if key in ENTRY_POINT_PARAMS:
        assert any(o["params"] == ENTRY_POINT_PARAMS[key] for o in matching), (method, matching)
        assert all(o["returns_dict"] for o in matching), "%s must return a dictionary of facts" % method
