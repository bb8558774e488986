# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scratch copies of the collection with a defect put back, to show that a check catches it."""
import os
import shutil

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def scratch_collection(base, edit=None, source=REPO):
    """``base`` (a collections path) holding a copy of ``source``'s galaxy.yml, meta and plugins as
    ansible_collections/ese/backup, changed by ``edit(collection_root)``. Returns ``base``."""
    shutil.rmtree(base, ignore_errors=True)
    root = os.path.join(base, "ansible_collections", "ese", "backup")
    os.makedirs(root)
    for item in ("galaxy.yml", "meta", "plugins"):
        src = os.path.join(source, item)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(root, item), ignore=shutil.ignore_patterns("__pycache__"))
        elif os.path.exists(src):
            shutil.copyfile(src, os.path.join(root, item))
    if edit:
        edit(root)
    return base


def replace_in(path, old, new):
    """Replaces the first ``old`` in the file; fails when the file no longer holds it."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert old in text, "%s no longer holds %r: update the test" % (path, old)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(old, new, 1))
