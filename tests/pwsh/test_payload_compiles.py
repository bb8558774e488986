# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every module's C# utils, as the payload that ansible-core builds for it carries them, compile under
PowerShell 7's Add-CSharpType (Roslyn, CORECLR defined, warnings are errors) — also the modules that no lane
runs (ca_files, prune_host, session_host). A util that compiles for Windows PowerShell 5.1 can still fail
here: an API obsolete on .NET 9 is a warning, and Add-CSharpType fails on warnings."""
import glob
import json
import os
import subprocess
import sys

import pytest

import pwsh as pwsh_lib  # tests/lib
from lane import REPO

sys.path.insert(0, os.path.join(REPO, "tests", "sim"))
import payload  # noqa: E402  (tests/sim/payload.py)

SCRIPT = r"""
param([String]$AddType, [String]$Root)
$ErrorActionPreference = 'Stop'
Import-Module -Name $AddType
foreach ($dir in Get-ChildItem -LiteralPath $Root -Directory | Sort-Object -Property Name) {
    $sources = @(Get-ChildItem -LiteralPath $dir.FullName -Filter '*.cs' | Sort-Object -Property Name |
        ForEach-Object { Get-Content -Raw -LiteralPath $_.FullName })
    try {
        $null = Add-CSharpType -References $sources -TempPath ([IO.Path]::GetTempPath())
        [Console]::Out.WriteLine((@{ module = $dir.Name; ok = $true } | ConvertTo-Json -Compress))
    } catch {
        [Console]::Out.WriteLine((@{ module = $dir.Name; ok = $false; error = "$_" } | ConvertTo-Json -Compress))
    }
}
"""


def module_utils_of(module_path):
    """[(name, source)] of the C# utils the module's payload carries, in Add-CSharpType order."""
    name = os.path.splitext(os.path.basename(module_path))[0]
    built = payload.build_payload(module_path, "ansible_collections.ese.backup.plugins.modules." + name)
    return payload.parse_payload(built)["cs_utils"]


def write_module_sets(root):
    payload.install_collection_finder(os.path.join(REPO, "build", "collections"))
    names = []
    for module_path in sorted(glob.glob(os.path.join(REPO, "plugins", "modules", "*.ps1"))):
        name = os.path.splitext(os.path.basename(module_path))[0]
        utils = module_utils_of(module_path)
        if not any("ese.backup" in n for n, src in utils):
            continue
        folder = os.path.join(root, name)
        os.makedirs(folder)
        for i, (util, source) in enumerate(utils):
            short = util[:-3].rsplit(".", 1)[-1] if util.endswith(".cs") else util.rsplit(".", 1)[-1]
            with open(os.path.join(folder, "%03d_%s.cs" % (i, short)), "w", encoding="utf-8") as f:
                f.write(source)
        names.append(name)
    return names


def compile_all(root, pwsh):
    binary, env = pwsh_lib.interpreter(pwsh)
    import ansible
    add_type = os.path.join(os.path.dirname(ansible.__file__), "module_utils", "powershell",
                            "Ansible.ModuleUtils.AddType.psm1")
    script = os.path.join(root, "compile.ps1")
    with open(script, "w", encoding="utf-8") as f:
        f.write(SCRIPT)
    proc = subprocess.run([binary, "-NoProfile", "-NonInteractive", "-File", script, "-AddType", add_type,
                           "-Root", os.path.join(root, "modules")], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **env), check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_every_modules_engine_compiles_under_powershell_7(tmp_path, pwsh):
    names = write_module_sets(str(tmp_path / "modules"))
    assert {"run", "ca_files", "prune_host", "session_host", "restore"} <= set(names), names
    results = compile_all(str(tmp_path), pwsh)
    assert sorted(r["module"] for r in results) == sorted(names)
    failed = dict((r["module"], r["error"][:1500]) for r in results if not r["ok"])
    assert not failed, failed


def test_an_obsolete_api_fails_the_compile_as_on_a_powershell_7_host(tmp_path, pwsh):
    """The check itself: the SYSLIB0057 suppression removed from _EseCaFiles.cs, ca_files no longer loads."""
    names = write_module_sets(str(tmp_path / "modules"))
    assert "ca_files" in names
    changed = glob.glob(str(tmp_path / "modules" / "ca_files" / "*_EseCaFiles.cs"))
    assert len(changed) == 1, os.listdir(str(tmp_path / "modules" / "ca_files"))
    for path in changed:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if "#pragma warning disable SYSLIB0057" not in text:
            pytest.fail("the suppression this check removes is gone from _EseCaFiles.cs")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace("#pragma warning disable SYSLIB0057", ""))
    for other in os.listdir(str(tmp_path / "modules")):
        if other != "ca_files":
            subprocess.run(["rm", "-rf", str(tmp_path / "modules" / other)], check=True)
    results = compile_all(str(tmp_path), pwsh)
    assert len(results) == 1 and not results[0]["ok"] and "SYSLIB0057" in results[0]["error"], results
