# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Makes the working tree importable as ansible_collections.ese.backup, and tests/lib, for every test."""
import os
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
COLLECTIONS = os.path.join(ROOT, "build", "collections")
_link = os.path.join(COLLECTIONS, "ansible_collections", "ese", "backup")
if not os.path.islink(_link):
    os.makedirs(os.path.dirname(_link), exist_ok=True)
    os.symlink(ROOT, _link)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
# Shared test helpers (tests/lib: pwsh, scratch, ese_synth).
LIB = os.path.join(ROOT, "tests", "lib")
if LIB not in sys.path:
    sys.path.append(LIB)
