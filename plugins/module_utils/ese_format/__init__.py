# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Off-host parser and checker for ESE (esent.dll) databases, logs, checkpoints and backup sets.

Modules:

- ``checksum``: the legacy XOR and the XOR+ECC page checksums, scalar reference and numpy-vectorised.
- ``structs``: LOGTIME, SIGNATURE, LGPOS, BKINFO, database header, log header, checkpoint, trailer.
- ``database``: header/shadow/trailer checks and a streaming page check with flat memory.
- ``logs``: log files, segments, generation sequences, checkpoints.
- ``backupset``: manifest checks, backup sets and chains.
- ``space``: the last page a database owns (its root's space header and owned-extent tree).
- ``files``: safe access (regular files only, links not followed, bounded JSON).
- ``verify``: orchestration and the problem-code table used by ``ese.backup.verify``.
"""
from __future__ import annotations

__all__ = ["checksum", "structs", "database", "logs", "backupset", "verify", "problems", "space", "files"]
