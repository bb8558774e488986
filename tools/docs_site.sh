#!/usr/bin/env bash
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Builds the collection's HTML docs site into build/docs-site/html (make docs-site).
#   tools/docs_site.sh DOCS_VENV ANSIBLE_VENV
#
# DOCS_VENV holds antsibull-docs, Sphinx and MyST (requirements-docs.txt); ANSIBLE_VENV is the test
# virtualenv, whose ansible-doc reads the plugin and role docs (nothing is installed into it). The collection
# is found through build/collections (make setup).
#
# Steps: antsibull-docs sphinx-init writes the Sphinx configuration (build/docs-site/src), and
# antsibull-docs collection the pages of every module, plugin and role, with the collection's extra docs
# (docs/docsite/: the Guides page). The Markdown guides of docs/ are copied under guides/ and rendered with
# MyST, and docs/site/index.rst is the site's front page. Sphinx runs with -W: a warning fails the build, and
# so does a plugin whose docs antsibull-docs cannot parse (--fail-on-error).
#
# The build uses no network: Sphinx's references into Ansible's own documentation resolve from a local
# intersphinx inventory written from docs/site/ansible-docs-refs.tsv.
set -euo pipefail
docs_venv=$(cd "${1:?usage: tools/docs_site.sh DOCS_VENV ANSIBLE_VENV}" && pwd)
ansible_venv=$(cd "${2:?usage: tools/docs_site.sh DOCS_VENV ANSIBLE_VENV}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/build/docs-site"
src="$out/src"

export PATH="$docs_venv/bin:$ansible_venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$root/build/collections"
[[ -e "$ANSIBLE_COLLECTIONS_PATH/ansible_collections/ese/backup/galaxy.yml" ]] \
  || { echo "docs-site: $ANSIBLE_COLLECTIONS_PATH does not hold ese.backup (run make setup)" >&2; exit 1; }

rm -rf "$src" "$out/html"
mkdir -p "$src"
chmod 755 "$out" "$src"  # antsibull-docs writes only into directories that only their owner can write to

antsibull-docs sphinx-init --use-current --dest-dir "$src" \
  --project ese.backup --copyright "Contributors to the ese.backup collection" \
  --title "ese.backup collection" --index-rst-source "$root/docs/site/index.rst" ese.backup >/dev/null

# sphinx-init's conf.py asks the network for Python's, Jinja's and Ansible's inventories; this one reads
# Ansible's from the local file below, and adds MyST for the Markdown guides.
cat >>"$src/conf.py" <<'EOF'

# ese.backup (tools/docs_site.sh): no network at build time; the Markdown guides are rendered with MyST.
intersphinx_mapping = {
    'ansible_devel': ('https://docs.ansible.com/projects/ansible/devel/', '../ansible_devel.inv'),
}
extensions.append('myst_parser')
myst_heading_anchors = 3
html_title = 'ese.backup collection'
# Code without a language is plain text (the generated plugin pages name theirs: yaml+jinja). The guides are
# written for GitHub's renderer, which accepts a heading one level deeper than the last and JSON examples
# with "..." in them; Sphinx would warn about both, and -W would make that an error.
highlight_language = 'none'
suppress_warnings = ['myst.header', 'misc.highlighting_failure']
EOF

# The local inventory: Sphinx's format 2, a text header and zlib-compressed "name domain:role priority uri
# display-name" lines.
python3 - "$root/docs/site/ansible-docs-refs.tsv" "$src/ansible_devel.inv" <<'EOF'
import sys
import zlib

lines = []
with open(sys.argv[1], encoding="utf-8") as refs:
    for line in refs:
        if line.strip() and not line.startswith("#"):
            label, uri, title = line.rstrip("\n").split("\t")
            lines.append(f"{label} std:label -1 {uri} {title}\n")
header = "# Sphinx inventory version 2\n# Project: Ansible\n# Version: devel\n" \
         "# The remainder of this file is compressed using zlib.\n"
with open(sys.argv[2], "wb") as inv:
    inv.write(header.encode() + zlib.compress("".join(lines).encode()))
EOF

cd "$src"
mkdir -p rst
chmod 755 rst
antsibull-docs --config-file antsibull-docs.cfg collection --use-current --fail-on-error --cleanup everything \
  --dest-dir rst ese.backup >/dev/null
# the guides, next to the front page (sphinx-init copied it) and the collection's pages
mkdir -p rst/guides
cp "$root"/docs/*.md rst/guides/

sphinx-build -b html -W --keep-going -q -c . rst "$out/html"
echo "docs-site: $out/html/index.html"
