# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The docs site links every guide, and the changelog names every module, role, playbook and filter.

`make lint` builds the site and lints the fragments (antsibull-docs, antsibull-changelog); these checks catch what
those tools accept: a guide in docs/ that the collection's Guides page does not link, and a module, role, playbook
or filter that no changelog entry names (the modules carry no version_added, so a release lists no new ones by
itself).
"""
import glob
import os
import re

import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GUIDES_PAGE = os.path.join(REPO, "docs", "docsite", "rst", "guides.rst")


def guides():
    return sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(REPO, "docs", "*.md")))


def linked_guides(page_text):
    return re.findall(r":doc:`[^`<]*</guides/([^>`]+)>`", page_text)


def changelog_entries():
    """Every entry of the fragments, and of changelogs/changelog.yaml once a release has consumed fragments."""
    entries = []
    for path in sorted(glob.glob(os.path.join(REPO, "changelogs", "fragments", "*.yml"))):
        with open(path, encoding="utf-8") as f:
            for value in (yaml.safe_load(f) or {}).values():
                if isinstance(value, list):  # release_summary is one string
                    entries.extend(value)
    released = os.path.join(REPO, "changelogs", "changelog.yaml")
    if os.path.exists(released):
        with open(released, encoding="utf-8") as f:
            releases = (yaml.safe_load(f) or {}).get("releases") or {}
        for release in releases.values():
            for value in (release.get("changes") or {}).values():
                if isinstance(value, list):
                    entries.extend(value)
            new = [item["name"] for item in release.get("modules") or []]
            kinds = list((release.get("plugins") or {}).items()) + list((release.get("objects") or {}).items())
            for kind, items in kinds:
                new.extend(f"playbooks/{item['name']}.yml" if kind == "playbook" else item["name"] for item in items)
            entries.extend(f"{name} - new in this release" for name in new)
    return entries


def named_in(entries):
    """The names an entry's prefix gives ("begin, copy, truncate, end - ...", "restore_drill role - ...")."""
    names = set()
    for entry in entries:
        if " - " in entry:
            for part in entry.split(" - ", 1)[0].split(","):
                if part.strip():
                    names.add(part.split()[0])
    return names


def things():
    modules = {os.path.splitext(n)[0] for n in os.listdir(os.path.join(REPO, "plugins", "modules"))
               if n.endswith((".ps1", ".py")) and not n.startswith("_")}
    roles = {os.path.basename(p) for p in glob.glob(os.path.join(REPO, "roles", "*")) if os.path.isdir(p)}
    playbooks = {"playbooks/" + os.path.basename(p) for p in glob.glob(os.path.join(REPO, "playbooks", "*.yml"))}
    filters = set()
    for path in glob.glob(os.path.join(REPO, "plugins", "filter", "*.py")):
        with open(path, encoding="utf-8") as f:
            filters.update(re.findall(r"^name: (\w+)$", f.read(), re.M))
    return modules | roles | playbooks | filters


def test_the_guides_page_links_every_guide_in_docs():
    with open(GUIDES_PAGE, encoding="utf-8") as f:
        linked = linked_guides(f.read())
    assert guides(), "no docs/*.md found"
    assert sorted(set(linked)) == guides(), "docs/docsite/rst/guides.rst must link exactly the guides in docs/*.md"


def test_every_module_role_playbook_and_filter_has_a_changelog_entry():
    missing = sorted(things() - named_in(changelog_entries()))
    assert not missing, f"no changelog entry names {missing}: add a fragment under changelogs/fragments"


def test_the_changelog_check_reads_entry_prefixes():
    entries = ["begin, copy, truncate, end - sessions.", "restore_drill role - drills.",
               "playbooks/backup.yml (``ese.backup.backup``) - the main job.", "a line that names nothing"]
    assert named_in(entries) == {"begin", "copy", "truncate", "end", "restore_drill", "playbooks/backup.yml"}
    assert "session_host" in things() and "backup_report" in things() and "playbooks/backup.yml" in things()
