# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of the modules that take a streaming backup (ese.backup.run, ese.backup.begin): the database set
to back up and the ESE instance the backup runs in. Both modules parse them the same way for the engine's own
instance; ese.backup.run's documentation refines them for its ``source`` option (with ``source=adcs`` or
``source=adds`` the service names its files, so they are not required and are refused when given)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options:
  databases:
    description:
      - Paths of the database files to back up. They must share one log set (O(log_path), O(base_name)).
    type: list
    elements: path
    required: true
  log_path:
    description:
      - Directory that holds the transaction logs (C(<base_name>.log), C(<base_name>XXXXX.log)).
    type: path
    required: true
  system_path:
    description:
      - Directory that holds the checkpoint file C(<base_name>.chk).
      - Defaults to O(log_path).
    type: path
  base_name:
    description:
      - The three-character base name of the log set, for example C(edb) or C(sru).
    type: str
    default: edb
  page_size:
    description:
      - Database page size in bytes (2048, 4096, 8192, 16384 or 32768).
      - When set it must equal the page size in the database header; when unset it is read from the header.
    type: int
    choices: [2048, 4096, 8192, 16384, 32768]
  circular_logging:
    description:
      - Whether the ESE instance the backup runs in uses circular logging. It must match how the database's
        owner runs it; V(true) rules out O(type=incremental) and O(type=differential).
    type: bool
    default: false
  legacy_file_names:
    description:
      - Value of C(JET_paramLegacyFileNames) for the ESE instance the backup runs in (bit 0x1 ESE98 file names,
        0x2 eight-character log names). The in-box services use 3.
    type: int
    default: 3
  instance_name:
    description:
      - Name of the ESE instance the backup runs in (shown in the event log and by C(esentutl)).
    type: str
    default: ese.backup
'''
