#!/usr/bin/env bash
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Installs what the tests need from the project's own lists: Debian packages, then a virtualenv.
#   tools/bootstrap.sh main .venv      newest ansible-core the machine's Pythons allow
#   tools/bootstrap.sh min  .venv-min  lowest supported ansible-core
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=$1 venv=$2

missing=()
while read -r pkg; do
  [[ -z "$pkg" || "$pkg" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done < tools/apt-packages.txt
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Debian's chromium renders the HTML report in tests/e2e/test_report_html_browser.py. Installed where
# apt-get can install it; elsewhere the bootstrap goes on and that test skips, saying how to install it.
if ! command -v chromium >/dev/null 2>&1; then
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
  if command -v apt-get >/dev/null 2>&1 && { [[ -z $sudo ]] || command -v sudo >/dev/null 2>&1; }; then
    echo "bootstrap: installing Debian's chromium (the HTML report's browser test)"
    if ! { $sudo apt-get update -qq &&
           DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null; }; then
      echo "bootstrap: apt-get could not install chromium; the browser test will fail until it is installed" >&2
    fi
  else
    echo "bootstrap: chromium not installed (no apt-get, or no root and no sudo);" \
      "tests/e2e/test_report_html_browser.py will skip: install Debian's chromium to run it" >&2
  fi
fi

pick_python() {  # newest first for main, 3.11 for min
  local want=("$@") p
  for v in "${want[@]}"; do
    for p in "$HOME"/.pyenv/versions/"$v".*/bin/python"$v" "$(command -v "python$v" 2>/dev/null)"; do
      [[ -x "$p" ]] && "$p" -c 'import venv' 2>/dev/null && { echo "$p"; return; }
    done
  done
  command -v python3
}
if [[ $flavour == main ]]; then py=$(pick_python 3.12 3.13); req=requirements-test.txt
else py=$(pick_python 3.11 3.12); req=requirements-min.txt; fi

echo "bootstrap: $venv with $("$py" --version) and $req"
rm -rf "$venv"
"$py" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -r "$req"
