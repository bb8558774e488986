# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every source file carries the collection's one copyright header (tools/headers.py)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import headers  # noqa: E402


def test_every_source_file_has_the_header():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "headers.py")], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout


def test_the_check_finds_a_missing_header_and_the_fix_adds_it_after_the_shebang(tmp_path, monkeypatch):
    module = tmp_path / "plugins" / "modules" / "x.ps1"
    module.parent.mkdir(parents=True)
    module.write_text("#!powershell\n\n#AnsibleRequires -CSharpUtil Ansible.Basic\n", encoding="utf-8")
    source = tmp_path / "y.py"
    source.write_text("# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)\nx = 1\n",
                      encoding="utf-8")
    monkeypatch.setattr(headers, "ROOT", str(tmp_path))
    assert not headers.has_header("plugins/modules/x.ps1") and not headers.has_header("y.py")
    headers.fix("plugins/modules/x.ps1")
    headers.fix("y.py")
    assert module.read_text(encoding="utf-8").split("\n")[:4] == [
        "#!powershell", "", "# " + headers.COPYRIGHT, "# " + headers.LICENCE]
    assert source.read_text(encoding="utf-8") == "# %s\n# %s\nx = 1\n" % (headers.COPYRIGHT, headers.LICENCE)
    assert headers.has_header("plugins/modules/x.ps1") and headers.has_header("y.py")
