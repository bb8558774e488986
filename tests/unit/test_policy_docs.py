# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""docs/jet-policy.md is generated from the policy tables and must match them."""
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_policy_page_matches_the_tables():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_policy_docs.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, "docs/jet-policy.md is stale, run tools/gen_policy_docs.py:\n" + proc.stdout[-3000:]


def test_policy_page_names_every_row():
    from ansible_collections.ese.backup.plugins.plugin_utils._jet_policy import POLICIES
    with open(os.path.join(ROOT, "docs", "jet-policy.md"), encoding="utf-8") as handle:
        page = handle.read()
    for module, policy in POLICIES.items():
        assert "## `ese.backup.%s`" % module in page
        for row in policy.table:
            assert "| `%s` |" % row.id in page
