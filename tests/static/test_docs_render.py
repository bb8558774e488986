# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`ansible-doc ese.backup.<module>` run from the repository root renders every module's docs."""
import os
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODULES = sorted({os.path.splitext(n)[0] for n in os.listdir(os.path.join(REPO, "plugins", "modules"))
                  if n.endswith((".yml", ".py")) and not n.startswith("_")})


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders_from_the_repository_root(module):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
    proc = subprocess.run([exe, "ese.backup." + module], cwd=REPO, env=env, capture_output=True,
                          text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ese.backup." + module in proc.stdout
    assert "OPTIONS" in proc.stdout and "RETURN VALUES" in proc.stdout


def test_filter_docs_render():
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
    proc = subprocess.run([exe, "-t", "filter", "ese.backup.backup_report"], cwd=REPO, env=env,
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
