# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each module's real payload compiles as Windows PowerShell 5.1 would compile it.

The payload is built by the ansible-core that runs this file (``.venv``: the newest, ``.venv-min``: the
lowest supported), exactly as for a WinRM host; its C# utils, in the order Add-CSharpType receives them,
are compiled as Add-CSharpType's PSDesktop branch does (tests/sim/payload.py): C# 5 against the .NET
Framework 4.5 reference assemblies and PowerShell 5.1's System.Management.Automation, every
TypeAccelerator resolved by short type name. One test per module (and per ansible-core: the test id
names the version).

Two defects that once made every module fail to load on Windows are reintroduced in a scratch copy of
the collection (under build/) to show that this check catches them.
"""
import glob
import json
import os
import re
import subprocess
import sys

import pytest

import scratch  # tests/lib
from scratch import replace_in

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PAYLOAD = os.path.join(ROOT, "tests", "sim", "payload.py")
COLLECTIONS = os.path.join(ROOT, "build", "collections")
SCRATCH = os.path.join(ROOT, "build", "payload-scratch")
MODULES = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(ROOT, "plugins", "modules", "*.ps1")))
UTILS = "ansible_collections.ese.backup.plugins.module_utils."
ENGINE_CS = os.path.join("plugins", "module_utils", "EseEngine.cs")
INFO_PS1 = os.path.join("plugins", "modules", "info.ps1")

try:
    from ansible.release import __version__ as ANSIBLE_CORE
except ImportError:  # pragma: no cover - the venvs carry ansible-core
    ANSIBLE_CORE = "none"
CORE = tuple(int(x) for x in re.findall(r"\d+", ANSIBLE_CORE)[:2]) if ANSIBLE_CORE != "none" else (0, 0)


def check(collections_dir, *modules):
    """{module: record} from ``payload.py check`` run by this Python (its ansible-core)."""
    proc = subprocess.run([sys.executable, PAYLOAD, "check", "--collections", collections_dir] + list(modules),
                          capture_output=True, text=True, timeout=600, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {r["module"]: r for r in records}


def scratch_collection(name, edit):
    """A copy of the collection under build/payload-scratch/<name>, changed by ``edit(root)``."""
    return scratch.scratch_collection(os.path.join(SCRATCH, name), edit)


@pytest.fixture(scope="module")
def records():
    if not os.path.isdir(COLLECTIONS):
        pytest.fail("build/collections is missing: run 'make setup'")
    return check(COLLECTIONS)


def test_there_are_modules():
    assert len(MODULES) >= 8 and "run" in MODULES and "info" in MODULES


@pytest.mark.parametrize("module", MODULES, ids=lambda m: "%s-ansible-core-%s" % (m, ANSIBLE_CORE))
def test_payload_compiles_as_windows_powershell_5_1_would(records, module):
    record = records[module]
    assert "error" not in record, record.get("error")
    assert record["ansible_core"] == ANSIBLE_CORE
    assert record["generation"] == ("2.19" if CORE >= (2, 19) else "2.16")
    utils = record["cs_utils"]
    # 2.16-2.18 key utils by the name as written, 2.19+ by file: every one exactly once either way.
    stems = [u[:-3] if u.endswith(".cs") else u for u in utils]
    assert len(stems) == len(set(stems)), "a C# util is carried twice: %s" % stems
    assert "Ansible.Basic" in stems and any(s.startswith(UTILS) for s in stems)
    compiled = record["compile"]
    assert compiled["ok"], compiled["msg"]
    if compiled["reference_set"] != "netfx-ref":
        pytest.skip(compiled.get("note") or "compiled without the .NET Framework reference assemblies")
    assert "Ansible.Basic.AnsibleModule" in compiled["types"]
    assert compiled["accelerators"].get("EseEngine") == UTILS + "EseEngine.Engine"
    with open(os.path.join(ROOT, "plugins", "modules", module + ".ps1"), encoding="utf-8") as f:
        call = re.search(r"-Type \(\[([\w.]+)\]\)", f.read())
    assert call and call.group(1) in compiled["types"], "the entry type of %s.ps1 is not compiled" % module


def test_a_full_type_name_in_a_type_accelerator_is_caught():
    """Add-CSharpType matches -TypeName against each compiled type's short Name: a full name fails."""
    base = scratch_collection("type-accelerator", lambda root: replace_in(
        os.path.join(root, ENGINE_CS), "//TypeAccelerator -Name EseEngine -TypeName Engine",
        "//TypeAccelerator -Name EseEngine -TypeName %sEseEngine.Engine" % UTILS))
    records = check(base, "run", "info")
    for module in ("run", "info"):
        compiled = records[module]["compile"]
        assert not compiled["ok"], "%s compiled with the defect" % module
        assert compiled["msg"] == ("Failed to find compiled class '%sEseEngine.Engine' for custom TypeAccelerator."
                                   % UTILS)


def test_a_util_required_relatively_and_used_absolutely_is_caught_where_it_duplicates():
    """info.ps1 asking for ..module_utils.EseEngine while _EseSession.cs has the absolute 'using': 2.16-2.18
    carry EseEngine.cs twice (CS0101 on Windows), 2.19+ carry it once."""
    base = scratch_collection("relative-util", lambda root: replace_in(
        os.path.join(root, INFO_PS1), "#AnsibleRequires -CSharpUtil %s_EseSession" % UTILS,
        "#AnsibleRequires -CSharpUtil ..module_utils.EseEngine\n#AnsibleRequires -CSharpUtil %s_EseSession"
        % UTILS))
    record = check(base, "info")["info"]
    compiled = record["compile"]
    if CORE >= (2, 19):
        assert compiled["ok"], compiled["msg"]
        assert len([u for u in record["cs_utils"] if u.endswith("EseEngine.cs")]) == 1
    else:
        assert "..module_utils.EseEngine" in record["cs_utils"]
        assert not compiled["ok"], "the duplicated EseEngine.cs compiled"
        assert "CS0101" in compiled["msg"], compiled["msg"]
