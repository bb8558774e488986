#!/usr/bin/env bash
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# A clone of the committed tree with nothing beside it builds, tests and demos: `make test` and
# `make demo` pass there.
#   tools/clean_clone_check.sh [COMMIT]      default: this checkout's HEAD
#
# The clone is made with `git clone --no-local` into a new temporary folder, as <tmp>/main: no
# ../shared beside it (no bundled PowerShell 7, no .NET Framework reference assemblies, no test data or
# specs), no .venv, .venv-min or build/ of this checkout (the first `make` creates its own from the
# package index with tools/bootstrap.sh). It runs with the machine's environment only: PATH and
# LD_LIBRARY_PATH without entries inside this checkout (so no pwsh from its build/), and without the
# variables that point the tests somewhere else (ESE_*, ESESIM_*, ANSIBLE_*, VIRTUAL_ENV, PYTHONPATH,
# PYTHONHOME, make's own). pytest prints the reason of every skip (PYTEST_ADDOPTS=-rs).
#
# Without pwsh on the machine's PATH the PowerShell 7 and WinRM lanes skip there, saying so; the payload
# compile check uses Mono's 4.5 profile instead of ../shared/tools/netfx-ref.
#
# Phases: clone, `make test`, `make demo`; each prints its start, its result and how long it took, and a
# summary ends the run. Both make phases run even when the first fails; the exit status is non-zero when
# any phase failed. The temporary folder is removed afterwards unless ESE_CLEAN_CLONE_KEEP=1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd -P)
# A checkout without git (an unpacked archive, say) is copied instead, without its build/ and virtualenvs.
commit=$(git -C "$root" rev-parse --verify "${1:-HEAD}^{commit}" 2>/dev/null) || commit=""

base=$(mktemp -d "${TMPDIR:-/tmp}/ese-clean-clone.XXXXXX")
base=$(cd "$base" && pwd -P)
if [[ ${ESE_CLEAN_CLONE_KEEP:-0} == 1 ]]; then
  trap 'echo "clean clone: kept $base"' EXIT
else
  trap 'rm -rf "$base"' EXIT
fi
clone="$base/main"
case "$base/" in "$root"/*) echo "clean clone: $base is inside $root" >&2; exit 2 ;; esac

duration() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# PATH-like list without the entries inside this checkout, as written or with symlinks resolved (its .venv
# may be a link to elsewhere).
roots=("$root" "$(cd "$(dirname "$0")/.." && pwd -L)")
outside_root() {
  local IFS=: entry path top inside kept=()
  for entry in $1; do
    [[ -n $entry ]] || continue
    inside=0
    for path in "$(realpath -s -m -- "$entry")" "$(realpath -m -- "$entry")"; do
      for top in "${roots[@]}"; do [[ $path == "$top" || $path == "$top"/* ]] && inside=1; done
    done
    ((inside)) || kept+=("$entry")
  done
  echo "${kept[*]}"
}

clean_env=(env)
while read -r name; do
  case $name in
    ESE_* | ESESIM_* | ANSIBLE_* | VIRTUAL_ENV | PYTHONPATH | PYTHONHOME | PYTEST_ADDOPTS | MAKEFLAGS | MFLAGS | \
      MAKELEVEL | MAKEOVERRIDES | LD_LIBRARY_PATH) clean_env+=(-u "$name") ;;
  esac
done < <(compgen -e)
clean_path=$(outside_root "$PATH")
clean_env+=("PATH=$clean_path" "PYTEST_ADDOPTS=-rs")
clean_ld=$(outside_root "${LD_LIBRARY_PATH:-}")
[[ -z $clean_ld ]] || clean_env+=("LD_LIBRARY_PATH=$clean_ld")

names=() results=() times=()
failed=0
phase() {  # phase NAME COMMAND...: runs COMMAND in the clean environment, timed
  local name=$1 start rc=0
  shift
  echo
  echo "=== clean clone: $name: started $(date -u +%H:%M:%SZ)"
  start=$SECONDS
  "${clean_env[@]}" "$@" || rc=$?
  names+=("$name") times+=("$(duration $((SECONDS - start)))")
  if ((rc == 0)); then results+=(ok); else results+=("FAILED (exit $rc)"); failed=1; fi
  echo "=== clean clone: $name: ${results[-1]} in ${times[-1]}"
  return 0
}

total=$SECONDS
# The checkout's files, without what a build or a test run made (phase runs commands, not functions).
# shellcheck disable=SC2016  # expanded by the bash -c below
copy_tree='mkdir -p "$2" && tar -C "$1" --exclude=./.git --exclude=./build --exclude=./.venv --exclude=./.venv-min \
  --exclude=./.ansible -cf - . | tar -C "$2" -xf -'
if [[ -n $commit ]]; then
  phase clone git clone -q --no-local --no-checkout "$root" "$clone"
else
  phase "copy (no git)" bash -c "$copy_tree" copy "$root" "$clone"
fi
if [[ ${results[-1]} == ok ]]; then
  if [[ -n $commit ]]; then
    git -C "$clone" cat-file -e "$commit^{commit}" 2>/dev/null || git -C "$clone" fetch -q origin "$commit"
    git -C "$clone" -c advice.detachedHead=false checkout -q --detach "$commit"
  fi
  [[ ! -e $base/shared ]] || { echo "clean clone: $base/shared exists" >&2; exit 2; }
  found=$(PATH=$clean_path && cd "$clone" && command -v pwsh) || found=""
  echo "clean clone: $clone at ${commit:0:12}${commit:+ }$(git -C "$clone" log -1 --format='%s' 2>/dev/null | cut -c1-100)"
  echo "clean clone: beside it: $(find "$base" -mindepth 1 -maxdepth 1 -printf '%f '); pwsh on PATH: ${found:-none}"
  case $found in "$root"/*) echo "clean clone: pwsh $found is inside $root" >&2; exit 2 ;; esac
  phase "make test" make -C "$clone" --no-print-directory test
  phase "make demo" make -C "$clone" --no-print-directory demo
fi

echo
echo "=== clean clone: summary ($(duration $((SECONDS - total))) in all, commit ${commit:-none (copied tree)})"
for i in "${!names[@]}"; do
  printf '    %-10s %-18s %s\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
done
exit $failed
