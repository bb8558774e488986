#!/usr/bin/env bash
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Runs `ansible-test sanity` on the collection without PowerShell and without containers.
#   tools/sanity.sh VENV [extra ansible-test arguments...]
#
# ansible-test needs the tree at a path shaped .../ansible_collections/<namespace>/<name>, and resolves
# symlinks (the build/collections link used by the unit tests and ansible-doc points back at the repo
# root, which has the wrong shape), so this unpacks the collection as `ansible-galaxy collection build`
# ships it to build/sanity.XXXXXX/ansible_collections/ese/backup (one per run, so concurrent runs do
# not clobber each other; removed afterwards unless ESE_SANITY_KEEP=1) and runs there with the venv's
# Python.
#
# Tests that need pwsh: pslint skips itself (warning, exit 0); validate-modules is skipped for each
# .ps1 by tests/sanity/ignore-2.*.txt (reasons in tests/sanity/README.md) and still runs on every
# other plugin. Nothing else is skipped.
#
# ansible-test creates one virtual environment per sanity test from the package index, and bootstraps
# pip into each with a get-pip script downloaded from its own CI file host. To need nothing but the
# package index, it runs with HOME=build/ansible-test-home, where tools/get_pip_standin.py is placed as
# that cached script (ensurepip, then the pinned pip from a wheel this script downloads with the
# venv's own pip). The environments are kept there between runs.
set -euo pipefail
venv=${1:?usage: tools/sanity.sh VENV [ansible-test args...]}
shift
root=$(cd "$(dirname "$0")/.." && pwd -P)
venv=$(cd "$venv" && pwd -P)
python="$venv/bin/python"
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
mkdir -p "$root/build"
run_root=$(mktemp -d "$root/build/sanity.XXXXXX")
[[ ${ESE_SANITY_KEEP:-0} == 1 ]] || trap 'rm -rf "$run_root"' EXIT
dest="$run_root/ansible_collections/ese/backup"
mkdir -p "$dest"
# The tree as shipped: exactly the files `ansible-galaxy collection build` puts in the artifact
# (galaxy.yml build_ignore leaves out build/, the venvs and the Linux-only simulation harness).
"$venv/bin/ansible-galaxy" collection build --force --output-path "$run_root" "$root" >/dev/null
tar -xzf "$run_root"/ese-backup-*.tar.gz -C "$dest"
rm -f "$run_root"/ese-backup-*.tar.gz  # MANIFEST.json stays: validate-modules reads the version from it
# ansible-test lists files through git when the tree is a repository; the copy gets its own.
git -C "$dest" init -q
git -C "$dest" add -A >/dev/null
git -C "$dest" -c user.name=sanity -c user.email=sanity@localhost commit -qm sanity --no-verify >/dev/null

test_home="$root/build/ansible-test-home"
# the pip version ansible-test pins for its environments names the cached script
pip_version=$("$python" -c '
import sys
from ansible_test._internal.host_configs import NativePythonConfig
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(NativePythonConfig(version="%d.%d" % sys.version_info[:2], path=sys.executable))["pip"])')
cache="$test_home/.ansible/test/cache"
mkdir -p "$cache/wheels"
cp "$root/tools/get_pip_standin.py" "$cache/get_pip_${pip_version//./_}.py"
ls "$cache/wheels/pip-$pip_version-"*.whl >/dev/null 2>&1 \
  || "$python" -m pip download -q --no-deps -d "$cache/wheels" "pip==$pip_version"

cd "$dest"
export HOME="$test_home"
export ANSIBLE_COLLECTIONS_PATH="$run_root"
args=(sanity --color no --python "$pyver" --python-interpreter "$python" --local --requirements)
echo "sanity: ansible-test ${args[*]} $* (in $dest)"
rc=0
"$venv/bin/ansible-test" "${args[@]}" "$@" || rc=$?
exit $rc
