"""Fixtures for the engine tests; the helpers live in engine_host.py (a name no other suite uses)."""
from engine_host import built, clean_set, dest, dirty_set  # noqa: F401  (fixtures)
