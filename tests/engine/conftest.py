# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the engine tests; the helpers live in engine_host.py (a name no other suite uses)."""
from engine_host import built, clean_set, dest, dirty_set  # noqa: F401  (fixtures)
