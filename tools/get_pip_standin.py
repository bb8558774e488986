# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-in for ansible-test's pip bootstrap script (get-pip.py), for machines that reach only the
package index.

ansible-test bootstraps pip into each sanity-test virtual environment with a get-pip.py script that it
downloads from its own CI file host and caches at ~/.ansible/test/cache/get_pip_<version>.py.
tools/sanity.sh places this file there (under a private HOME) instead, with the pinned pip wheel that it
fetched beforehand with the project venv's pip into the ``wheels`` folder beside it. This script
installs the interpreter's bundled pip (ensurepip, no network), then runs ``pip install`` with the
arguments get-pip.py would have received (the pinned pip), from that folder first and from the
configured package index if the folder lacks something.
"""
import ensurepip
import os
import subprocess
import sys

WHEELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wheels")


def main():
    args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
    ensurepip.bootstrap(upgrade=False, default_pip=False)
    pip = [sys.executable, "-m", "pip", "install", "--upgrade"]
    if os.path.isdir(WHEELS) and subprocess.call(pip + ["--no-index", "--find-links", WHEELS] + args) == 0:
        return
    subprocess.check_call(pip + args)


if __name__ == "__main__":
    main()
