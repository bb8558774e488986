# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PowerShell's own parser against the project's grammar.

Each plugins/modules/*.ps1 and plugins/module_utils/*.psm1 is parsed by
``[System.Management.Automation.Language.Parser]::ParseFile`` (parse_ps1.ps1, one pwsh for every
file) and by tree-sitter-powershell (tests/static/ps1_ast.py, what the static contracts read). Both
must find no parse error, and the same: ``$spec`` (options, their keys and literal values, suboptions,
the other spec keys), commands called, functions defined, ``[Type]::Method`` calls with their arity,
and ``#AnsibleRequires`` lines. Any difference fails: the static contracts would be reading
something else than what PowerShell runs.
"""
import glob
import json
import os
import subprocess
import sys

import pytest

from lane import REPO

sys.path.insert(0, os.path.join(REPO, "tests", "static"))
import ps1_ast  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "parse_ps1.ps1")
FILES = sorted(glob.glob(os.path.join(REPO, "plugins", "modules", "*.ps1"))
               + glob.glob(os.path.join(REPO, "plugins", "module_utils", "*.psm1")))


def rel(path):
    return os.path.relpath(path, REPO)


def powershell_view(pwsh, paths):
    out = subprocess.run([pwsh, "-NoProfile", "-NonInteractive", "-File", SCRIPT] + list(paths),
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def _plain(val):
    """tree-sitter literal values in the shape parse_ps1.ps1 gives (Opaque -> {'opaque': text})."""
    if isinstance(val, dict):
        return dict((k, _plain(v)) for k, v in val.items())
    if isinstance(val, list):
        return [_plain(v) for v in val]
    if isinstance(val, ps1_ast.Opaque):
        return {"opaque": val.text}
    return val


def tree_sitter_view(path):
    with open(path, "rb") as f:
        source = f.read()
    tree = ps1_ast.parse(source)
    nodes = list(ps1_ast.walk(tree.root_node))
    return {
        "errors": ["line %d col %d: %s %r" % p for p in ps1_ast.problems(tree)],
        "specs": [_plain(ps1_ast.value(n)) for n in ps1_ast.assignments(tree, "spec")],
        "commands": [n.text.decode() for n in nodes if n.type == "command_name"],
        "functions": [n.text.decode() for n in nodes if n.type == "function_name"],
        "static_calls": [[t, m, a] for t, m, a, dummy in ps1_ast.static_calls(tree)],
        "requires": [c.strip() for c in ps1_ast.comments(tree) if c.startswith("#AnsibleRequires")],
    }


def differences(pwsh_view, ts_view):
    """Human-readable differences between the two parses of one file."""
    found = []
    if pwsh_view["errors"]:
        found.append("PowerShell's parser: %s" % pwsh_view["errors"])
    if ts_view["errors"]:
        found.append("tree-sitter (tests/static): %s" % ts_view["errors"])
    for key in ("specs", "commands", "functions", "static_calls", "requires"):
        mine, theirs = pwsh_view[key], ts_view[key]
        if key in ("commands", "static_calls"):
            mine, theirs = sorted(mine, key=str), sorted(theirs, key=str)
        if mine != theirs:
            found.append("%s: PowerShell %s, tree-sitter %s" % (key, json.dumps(mine), json.dumps(theirs)))
    return found


@pytest.fixture(scope="module")
def parsed(pwsh):
    return powershell_view(pwsh, FILES)


def test_there_are_files():
    assert len([f for f in FILES if f.endswith(".ps1")]) >= 8 and any(f.endswith(".psm1") for f in FILES)


# Known difference, to be fixed in the file (quote the names: -Function 'Invoke-EseEntryPoint', ...).
# Files the project's grammar is known to misread (each strict: a fix makes the test fail until removed).
MISREAD = {}


def cases():
    for path in FILES:
        reason = MISREAD.get(rel(path))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        yield pytest.param(path, marks=marks, id=rel(path))


@pytest.mark.parametrize("path", cases())
def test_both_parsers_agree(parsed, path):
    view = parsed[path]
    problems = differences(view, tree_sitter_view(path))
    assert not problems, "%s:\n  %s" % (rel(path), "\n  ".join(problems))
    if path.endswith(".ps1"):
        assert len(view["specs"]) == 1 and view["specs"][0]["options"], "no $spec found in %s" % rel(path)


def test_the_comparison_catches_errors_and_differences(pwsh, tmp_path):
    """A syntax error is reported by PowerShell; a construct the grammar misreads is a difference."""
    broken = tmp_path / "broken.ps1"
    broken.write_text("$spec = @{ options = @{ a = @{ type = 'str' } }\n")
    misread = tmp_path / "misread.ps1"
    misread.write_text("$spec = @{ options = @{ a = @{ type = 'str' } } }\nExport-ModuleMember -Function A, B\n")
    renamed = tmp_path / "renamed.ps1"
    renamed.write_text("$spec = @{ options = @{ a = @{ type = 'str'; choices = 'x', 'y' } } }\n")
    views = powershell_view(pwsh, [str(broken), str(misread), str(renamed)])
    assert views[str(broken)]["errors"] and differences(views[str(broken)], tree_sitter_view(str(broken)))
    assert not views[str(misread)]["errors"]
    assert differences(views[str(misread)], tree_sitter_view(str(misread)))
    ts = tree_sitter_view(str(renamed))
    assert differences(views[str(renamed)], ts) == []
    ts["specs"][0]["options"]["a"]["choices"] = ["x", "z"]
    assert differences(views[str(renamed)], ts)
