# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Versions: every module and plugin says when it was added. No release is recorded yet
(changelogs/changelog.yaml is written by the first ``antsibull-changelog release``), so everything is new in
galaxy.yml's version, and antsibull-changelog lists each of them under New Modules / New Plugins."""
import ast
import glob
import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def galaxy_version():
    with open(os.path.join(ROOT, "galaxy.yml"), encoding="utf-8") as f:
        return yaml.safe_load(f)["version"]


def documentation(path):
    """The DOCUMENTATION mapping of a .py plugin or a .yml module doc."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".yml"):
        return yaml.safe_load(text)["DOCUMENTATION"]
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["DOCUMENTATION"]:
            return yaml.safe_load(node.value.value)
    raise AssertionError("%s has no DOCUMENTATION" % path)


def plugin_docs():
    paths = glob.glob(os.path.join(ROOT, "plugins", "modules", "*.yml"))
    paths += glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py"))
    paths += glob.glob(os.path.join(ROOT, "plugins", "filter", "*.py"))
    return sorted(paths)


def test_every_module_and_plugin_is_new_in_the_unreleased_version():
    released = os.path.exists(os.path.join(ROOT, "changelogs", "changelog.yaml"))
    version = galaxy_version()
    docs = plugin_docs()
    assert len(docs) >= 14
    wrong = {}
    for path in docs:
        added = str(documentation(path).get("version_added", ""))
        if not added or (not released and added != version):
            wrong[os.path.relpath(path, ROOT)] = added or "missing"
    assert not wrong, "version_added must be %s (no release is recorded): %s" % (version, wrong)
