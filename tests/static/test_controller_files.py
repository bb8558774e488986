# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's requirements.txt and the execution environment's files under meta/.

- meta/execution-environment.yml parses and names meta/ee-requirements.txt and meta/ee-bindep.txt (paths
  from the collection root, as ansible-builder reads them), which exist;
- the two pip files parse as requirements (with packaging when it is importable), the bindep file as
  ``name [selectors]`` lines, each limited to a platform;
- neither execution environment file pins ansible-core (the execution environment's own definition does);
- requirements.txt pins ansible-core to the range meta/runtime.yml allows and the suites test;
- galaxy.yml's build_ignore leaves meta/ and requirements.txt in the artifact (ansible-builder reads them
  from the installed collection);
- every third-party package that the collection's Python code under plugins/ imports is named in both pip
  files.

Each check is a function of the collection root, so that the tests at the end can show it failing on a
broken copy.
"""
import ast
import fnmatch
import os
import re
import shutil
import sys

import pytest
import yaml

try:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name
    HAS_PACKAGING = True
except ImportError:  # pragma: no cover - the test environments have packaging
    HAS_PACKAGING = False

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EE_FILE = "meta/execution-environment.yml"
EE_PIP = "meta/ee-requirements.txt"
EE_BINDEP = "meta/ee-bindep.txt"
CONTROLLER_PIP = "requirements.txt"
PIP_FILES = (CONTROLLER_PIP, EE_PIP)
# What ansible-galaxy must ship for ansible-builder to find the dependencies.
SHIPPED = ("meta", EE_FILE, EE_PIP, EE_BINDEP, CONTROLLER_PIP)
ANSIBLE_ITSELF = {"ansible", "ansible-core", "ansible-base"}
# Import names whose distribution has another name.
DISTRIBUTION_OF = {"yaml": "pyyaml", "winrm": "pywinrm", "psrp": "pypsrp"}
NOT_THIRD_PARTY = {"ansible", "ansible_collections"}

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_BINDEP_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._+-]*)(?:\s+\[(?P<selectors>[^\[\]]+)\])?$")
_SELECTOR = re.compile(r"^!?[a-z0-9][a-z0-9._-]*(?::[a-z0-9][a-z0-9._-]*)?$")


def _canonical(name):
    if HAS_PACKAGING:
        return canonicalize_name(name)
    return re.sub(r"[-_.]+", "-", name).lower()


def _content_lines(root, relpath):
    """(line number, text) of each line that is not blank or a comment, inline comments removed."""
    with open(os.path.join(root, relpath), encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            text = re.sub(r"(^|\s)#.*$", "", line).strip()
            if text:
                yield number, text


def pip_requirements(root, relpath):
    """{canonical name: requirement text} of a pip requirements file; a line that does not parse raises."""
    found = {}
    for number, text in _content_lines(root, relpath):
        if text.startswith("-"):
            raise ValueError("%s:%d: options and included files are not used here: %s" % (relpath, number, text))
        if HAS_PACKAGING:
            try:
                name = Requirement(text).name
            except InvalidRequirement as exc:
                raise ValueError("%s:%d: %s" % (relpath, number, exc)) from exc
        else:
            match = _NAME.match(text)
            if not match:
                raise ValueError("%s:%d: no package name: %s" % (relpath, number, text))
            name = match.group(0)
        found[_canonical(name)] = text
    return found


def bindep_entries(root, relpath):
    """[(name, [selectors])] of a bindep file; a line that is not ``name [selectors]`` raises."""
    entries = []
    for number, text in _content_lines(root, relpath):
        match = _BINDEP_LINE.match(text)
        selectors = (match.group("selectors") or "").split() if match else []
        if not match or not all(_SELECTOR.match(s) for s in selectors):
            raise ValueError("%s:%d: not a bindep line (name [selectors]): %s" % (relpath, number, text))
        entries.append((match.group("name"), selectors))
    return entries


def ee_reference_problems(root):
    """What is wrong with meta/execution-environment.yml's references to the two dependency files."""
    with open(os.path.join(root, EE_FILE), encoding="utf-8") as handle:
        definition = yaml.safe_load(handle)
    if not isinstance(definition, dict) or not isinstance(definition.get("dependencies"), dict):
        return ["%s has no dependencies mapping" % EE_FILE]
    problems = []
    if definition.get("version") != 3:
        problems.append("%s: version is %r, not 3" % (EE_FILE, definition.get("version")))
    for key, expected in (("python", EE_PIP), ("system", EE_BINDEP)):
        value = definition["dependencies"].get(key)
        if value != expected:
            problems.append("%s: dependencies.%s is %r, not %r (relative to the collection root)"
                            % (EE_FILE, key, value, expected))
        elif not os.path.isfile(os.path.join(root, value)):
            problems.append("%s: dependencies.%s names %s, which does not exist" % (EE_FILE, key, value))
    return problems


def ansible_core_pins(root):
    """Lines of the execution environment's dependency files that name ansible itself."""
    pins = ["%s: %s" % (EE_PIP, text) for name, text in pip_requirements(root, EE_PIP).items()
            if name in ANSIBLE_ITSELF]
    pins += ["%s: %s" % (EE_BINDEP, name) for name, dummy in bindep_entries(root, EE_BINDEP)
             if _canonical(name) in ANSIBLE_ITSELF]
    return pins


def ignored_shipped_paths(root):
    """(path, pattern) for each path of SHIPPED that a build_ignore pattern of galaxy.yml leaves out."""
    with open(os.path.join(root, "galaxy.yml"), encoding="utf-8") as handle:
        patterns = yaml.safe_load(handle).get("build_ignore") or []
    return [(path, pattern) for path in SHIPPED for pattern in patterns
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern.rstrip("/") + "/")]


def third_party_imports(root):
    """{distribution name: [files]} of the top-level imports in plugins/**/*.py that are not the standard
    library, ansible, ansible_collections or the collection's own modules."""
    plugins = os.path.join(root, "plugins")
    sources, own = [], set()
    for folder, dirs, files in os.walk(plugins):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        own.update(dirs)
        for name in files:
            if name.endswith(".py"):
                own.add(name[:-3])
                sources.append(os.path.join(folder, name))
    found = {}
    for path in sorted(sources):
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for top in {n.split(".", 1)[0] for n in names}:
                if top in sys.stdlib_module_names or top in NOT_THIRD_PARTY or top in own:
                    continue
                dist = _canonical(DISTRIBUTION_OF.get(top, top))
                found.setdefault(dist, []).append(os.path.relpath(path, root))
    return found


def missing_requirements(root, relpath):
    """The third-party packages plugins/ imports that the pip file relpath does not name."""
    named = pip_requirements(root, relpath)
    return sorted(set(third_party_imports(root)) - set(named))


# --- the repository -----------------------------------------------------------------------------------


def test_ee_definition_references_the_two_dependency_files():
    assert ee_reference_problems(REPO) == []


@pytest.mark.parametrize("relpath", PIP_FILES)
def test_pip_files_parse(relpath):
    assert pip_requirements(REPO, relpath)


def test_bindep_file_parses_and_limits_every_entry_to_a_platform():
    entries = bindep_entries(REPO, EE_BINDEP)
    assert entries
    unlimited = [name for name, selectors in entries if not any(s.startswith("platform:") for s in selectors)]
    assert unlimited == []
    # ansible-builder's images are RPM-based: every package is named for them
    assert any("platform:rpm" in selectors for dummy, selectors in entries)


def test_ee_files_do_not_pin_ansible_core():
    assert ansible_core_pins(REPO) == []


@pytest.mark.skipif(not HAS_PACKAGING, reason="needs packaging")
def test_controller_requirements_pin_ansible_core_to_the_supported_range():
    core = Requirement(pip_requirements(REPO, CONTROLLER_PIP)["ansible-core"])
    with open(os.path.join(REPO, "meta", "runtime.yml"), encoding="utf-8") as handle:
        requires = SpecifierSet(yaml.safe_load(handle)["requires_ansible"])
    for version in ("2.16.0", "2.16.19", "2.21.5"):  # the lowest allowed, and the two the suites run
        assert version in core.specifier and version in requires, version
    for version in ("2.15.13", "2.22.0"):
        assert version not in core.specifier, version


def test_meta_and_requirements_are_shipped():
    assert ignored_shipped_paths(REPO) == []


@pytest.mark.parametrize("relpath", PIP_FILES)
def test_every_third_party_import_of_the_plugins_is_named(relpath):
    imports = third_party_imports(REPO)
    # numpy is imported inside try/except by ese_format/checksum.py: the scan must see such imports
    assert "numpy" in imports
    assert missing_requirements(REPO, relpath) == [], imports


# --- the checks catch what they are for (on broken copies) -----------------------------------------------


@pytest.fixture(name="copy")
def _copy(tmp_path):
    """A copy of what the checks read: plugins/ (Python only), meta/, the pip files and galaxy.yml."""
    root = tmp_path / "collection"
    shutil.copytree(os.path.join(REPO, "plugins"), root / "plugins",
                    ignore=lambda folder, names: [n for n in names if n == "__pycache__"
                                                  or (not n.endswith(".py") and "." in n)])
    shutil.copytree(os.path.join(REPO, "meta"), root / "meta")
    for name in (CONTROLLER_PIP, "galaxy.yml"):
        shutil.copy(os.path.join(REPO, name), root / name)
    return root


def _rewrite(path, change):
    text = path.read_text(encoding="utf-8")
    new = change(text)
    assert new != text
    path.write_text(new, encoding="utf-8")


@pytest.mark.parametrize("relpath", PIP_FILES)
def test_a_missing_entry_is_caught(copy, relpath):
    assert missing_requirements(str(copy), relpath) == []
    _rewrite(copy / relpath, lambda text: re.sub(r"(?m)^numpy.*\n", "", text))
    assert missing_requirements(str(copy), relpath) == ["numpy"]


def test_a_new_third_party_import_is_caught(copy):
    _rewrite(copy / "plugins" / "modules" / "verify.py", lambda text: text + "import winrm.protocol\n")
    assert missing_requirements(str(copy), CONTROLLER_PIP) == []  # winrm is pywinrm's, which is named
    _rewrite(copy / "plugins" / "filter" / "backup_report.py",
             lambda text: text + "try:\n    from jmespath import search\nexcept ImportError:\n    search = None\n")
    assert missing_requirements(str(copy), CONTROLLER_PIP) == ["jmespath"]


def test_an_ansible_core_pin_in_the_ee_files_is_caught(copy):
    _rewrite(copy / EE_PIP, lambda text: text + "ansible_core>=2.16\n")
    assert ansible_core_pins(str(copy)) == ["%s: ansible_core>=2.16" % EE_PIP]


def test_a_wrong_ee_reference_is_caught(copy):
    _rewrite(copy / EE_FILE, lambda text: text.replace("python: meta/ee-requirements.txt",
                                                       "python: ee-requirements.txt"))
    assert len(ee_reference_problems(str(copy))) == 1
    os.remove(copy / EE_BINDEP)
    assert len(ee_reference_problems(str(copy))) == 2


def test_meta_in_build_ignore_is_caught(copy):
    _rewrite(copy / "galaxy.yml", lambda text: text.replace("build_ignore:\n", "build_ignore:\n  - meta\n", 1))
    assert ("meta", "meta") in ignored_shipped_paths(str(copy))
    assert (EE_FILE, "meta") in ignored_shipped_paths(str(copy))


def test_malformed_lines_are_caught(copy):
    _rewrite(copy / EE_BINDEP, lambda text: text + "krb5-libs [platform:rpm\n")
    with pytest.raises(ValueError, match="not a bindep line"):
        bindep_entries(str(copy), EE_BINDEP)
    _rewrite(copy / EE_PIP, lambda text: text + "pywinrm[kerberos>=0.5\n")
    with pytest.raises(ValueError, match=EE_PIP):
        pip_requirements(str(copy), EE_PIP)
