#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: verify
short_description: Verify ESE backup sets, databases, logs and checkpoints off-host
version_added: 0.1.0
description:
  - "Checks ESE (esent.dll) files independently of Windows, in Python, wherever they are stored
    (the controller with C(delegate_to: localhost), or a Linux backup server)."
  - "Databases (streamed backup copies and plain files such as C(esentutl /y) copies): header and shadow
    header checksums, magic, page size, format version, state, the backup stream's trailer, and every
    page's checksum with ESE's own algorithms (legacy XOR and XOR+ECC, chosen per page by its format flag;
    4, 8, 16 and 32 KiB pages). All-zero pages are fine. Single-bit errors that ESE corrects on read are
    warnings (RV(valid) stays true); damaged pages past the space the database owns are warnings too.
    Temporary and just-created databases (such as AD's C(temp.edb)) are reported as not backup targets."
  - "Logs: header checksum, every data sector's checksum as ESE checks it (its own sector or a shadow of the one
    before; positions are not compared), generation against the file name, signature against
    the database, each generation's previous-generation time against the prior log's creation time, no
    gaps, and the range the databases need. Temporary (C(*tmp.log)) and reserve (C(*.jrs)) logs are
    ignored by name. A checkpoint, when present, is checked too."
  - "Backup sets: every file of C(manifest.json) present with the right size and SHA-256, nothing extra,
    names relative and safe, database files and log base names inside the set, and the manifest's facts
    against the files. A directory of sets is also checked as chains: each incremental starts where the
    previous set ended, with the same log signature. A kept-logs staging folder (C(.<name>.partial) with
    C(kept-logs.json), the only copy of logs truncated on the host) is verified too, and reported to be kept."
  - "Only regular files are opened (never a FIFO, socket or device), and symbolic links inside a set or
    folder are reported, not followed. C(manifest.json) is read only up to 16 MiB and 64 levels of nesting."
  - Never changes anything; RV(ignore:changed) is always false. An invalid backup is a result
    (RV(valid=false) with RV(problems)), not a task failure, unless O(fail_on_invalid=true).
  - Pages are checked with numpy when it is installed (hundreds of MB/s, flat memory); without numpy a
    pure-Python path is used and RV(notes) says so.
options:
  path:
    description:
      - What to verify. One of
      - a database file (its sibling logs are used to judge whether the logs it needs are there);
      - a log (C(.log)) or checkpoint (C(.chk)) file;
      - a backup set written by M(ese.backup.run) (a directory holding C(manifest.json));
      - a directory holding a database with its logs and checkpoint but no manifest, such as a
        file-level copy of a live ESE folder;
      - a directory of backup sets; every set is verified, then their chains.
      - With O(subfolders=true), a folder of such folders (a backup share with one folder per host).
      - An empty value fails the task; it never means the working directory.
      - Exactly one of O(path) and O(paths) is required.
    type: path
  paths:
    description:
      - Several things to verify in one task, each as O(path) would verify it on its own, up to
        O(processes) of them at once; each gets its own result in RV(results), in this order.
      - For a fleet, one folder per host (C(/srv/backup/web01), C(/srv/backup/web02), ...) instead of a loop
        over the hosts.
      - An empty list, an empty item or a path given twice fails the task. A path that cannot be verified (it does
        not exist) is a result with C(failed) and C(msg), and fails the task once every other path is verified.
    type: list
    elements: path
  names:
    description:
      - With O(paths), the name of each path's result (its C(name) in RV(results)), in the same order, one per path,
        each different (for example the inventory host names).
      - By default each path's last component (C(/srv/backup/web01) is named C(web01)).
    type: list
    elements: str
  subfolders:
    description:
      - With O(path) a folder, verify each folder directly under it on its own, as O(paths) would (names
        starting with a dot are left out; a symbolic link to a folder is a result with C(FOLDER_SYMLINK), not
        followed). Each result's C(name) is the folder's name.
      - Fails the task when O(path) is a backup set or a folder of backup sets itself, or holds no folder.
    type: bool
    default: false
  processes:
    description:
      - With O(paths) or O(subfolders=true), how many paths are verified at once, each in its own process.
      - By default the number of cores this task may run on. From 1 to 256; never more processes than paths.
      - With one O(path) everything runs in the module's process (pages are still read, hashed and checked by
        overlapping threads) and this option is not used.
    type: int
  checksums:
    description:
      - Check every database page and log sector checksum. With V(false) only headers, trailers,
        manifests, sizes, hashes and log sequences are checked.
    type: bool
    default: true
  fail_on_invalid:
    description:
      - Fail the task when the result is not valid (any problem of severity C(error)).
      - By default an invalid backup is reported with RV(valid=false) and the task succeeds, so that a
        playbook can decide (for example with C(failed_when) or an M(ansible.builtin.assert)).
    type: bool
    default: false
notes:
  - "Problem codes are stable; each has a severity. C(error) makes RV(valid) false, C(warning) does not.
    The codes are listed below and in C(docs/verify.md)."
  - "Codes:"
  - "C(PATH_UNRECOGNISED) (error) - the path is not an ESE database, log or checkpoint, a backup set, a folder of
    ESE files or a folder of sets."
  - "C(READ_ERROR) (error) - a file could not be read (permissions, I/O error)."
  - "C(FILE_NOT_REGULAR) (error) - an entry is a FIFO, socket, device or other non-regular file: it is skipped and
    never opened."
  - "C(FILE_SYMLINK) (error) - a file of a set or folder is a symbolic link: it is not followed (a set must hold
    its own regular files)."
  - "C(FOLDER_SYMLINK) (error) - a folder of a set (such as logs/), or a set in a folder of sets, is a symbolic
    link: it is not followed."
  - "C(MANIFEST_INVALID) (error) - manifest.json is not valid JSON or lacks required fields or has an unknown
    format."
  - "C(MANIFEST_UNREADABLE) (error) - manifest.json (or kept-logs.json) is larger than 16 MiB or nested deeper
    than 64 levels: it is not parsed, and the set's files are judged without it."
  - "C(MANIFEST_UNSAFE_NAME) (error) - a file name in the manifest is absolute, has a drive, a backslash or '..'."
  - "C(MANIFEST_DB_FILE_UNSAFE) (error) - a databases[].file of the manifest is absolute, has a drive, a backslash
    or '..': it points outside the set."
  - "C(MANIFEST_DB_FILE_ROLE) (error) - a databases[].file of the manifest is not a database file of the set (a
    log, another file, or a file not listed)."
  - "C(MANIFEST_BASE_NAME_UNSAFE) (error) - logs.base_name or source.base_name of the manifest is not a
    3-character log base name (it has a path separator, a dot or '..')."
  - "C(FILE_MISSING) (error) - a file listed in the manifest is absent."
  - "C(FILE_SIZE_MISMATCH) (error) - a file's size differs from the manifest."
  - "C(FILE_HASH_MISMATCH) (error) - a file's SHA-256 differs from the manifest."
  - "C(FILE_UNLISTED) (error) - a file in the set is not listed in the manifest."
  - "C(MANIFEST_MISMATCH) (error) - a fact recorded in the manifest (page size, signature, generations) differs
    from the files."
  - "C(DB_HEADER_UNREADABLE) (error) - neither the header nor the shadow header has a valid checksum and page
    size."
  - "C(DB_HEADER_CHECKSUM) (error) - the primary header (page at offset 0) fails its checksum."
  - "C(DB_SHADOW_CHECKSUM) (error) - the shadow header (second page) fails its checksum."
  - "C(DB_SHADOW_MISMATCH) (warning) - header and shadow header are both valid but differ."
  - "C(DB_BAD_MAGIC) (error) - the header magic is not 0x89ABCDEF."
  - "C(DB_FORMAT_VERSION) (error) - the header format version is not 0x620."
  - "C(DB_FILETYPE) (error) - the header file type is not a database."
  - "C(DB_SIZE) (error) - the file size is not a whole number of pages, or too small."
  - "C(DB_NO_PAGES) (error) - the database has no data pages, only its header pages."
  - "C(DB_NOT_BACKUP_TARGET) (error) - a temporary or just-created database (such as AD's temp.edb): ESE does not
    attach it and writes its pages without checksums; it is not a backup target."
  - "C(DB_TEMP_SKIPPED) (warning) - a temporary or just-created database next to a folder's other databases was
    skipped: it is not a backup target."
  - "C(DB_SIGNATURE) (error) - the header's database signature (signDb) is empty."
  - "C(DB_STATE) (error) - the database state is unknown, or not one a backup can hold."
  - "C(DB_TRAILER_CHECKSUM) (error) - the streamed database's trailer page fails its checksum (or is missing)."
  - "C(DB_TRAILER_SIGNATURE) (error) - the trailer's database or log signature differs from the header's."
  - "C(DB_TRAILER_RANGE) (error) - the trailer's backup mark or generation range does not match the header or is
    inverted."
  - "C(DB_PAGE_CHECKSUM) (error) - a data page fails its checksum."
  - "C(DB_PAGE_CORRECTABLE) (warning) - a data page has a single-bit error that ESE's ECC corrects when it reads
    the page (esentutl /k counts it as correctable); no data is lost."
  - "C(DB_PAGE_NUMBER) (error) - a data page's checksum is good but its page number field is wrong."
  - "C(DB_PAGE_UNOWNED) (warning) - a damaged page lies beyond the space the database owns (past the last extent
    of its space tree): no data is lost."
  - "C(DB_BAD_CHECKSUM_COUNT) (warning) - the header records earlier checksum failures (ulBadChecksum > 0)."
  - "C(LOG_TRUNCATED) (error) - a log file is shorter than its header says (or shorter than a header)."
  - "C(LOG_BLANK) (error) - a numbered log file has an all-zero header."
  - "C(LOG_HEADER_CHECKSUM) (error) - a log header fails its checksum."
  - "C(LOG_NOT_A_LOG) (error) - a .log file's header has a file type other than log."
  - "C(LOG_SEGMENT_CHECKSUM) (error) - a log data sector fails its checksum, both as its own sector and as a
    shadow of the sector before it."
  - "C(LOG_SEGMENT_CORRECTABLE) (warning) - a log data sector has a single-bit error that ESE corrects when it
    reads the log."
  - "C(LOG_NAME_INVALID) (error) - a log file name does not follow <base><hex generation>.log."
  - "C(LOG_GENERATION_MISMATCH) (error) - the generation in a log's name differs from its header (renamed log)."
  - "C(LOG_DUPLICATE_GENERATION) (error) - two log files carry the same generation."
  - "C(LOG_SIGNATURE_MISMATCH) (error) - a log's signature differs from the database's or the stream's."
  - "C(LOG_CHAIN_BROKEN) (error) - a log's previous-generation time differs from the prior log's creation time."
  - "C(LOG_GAP) (error) - generations are missing between the first and last log present."
  - "C(LOG_REQUIRED_MISSING) (error) - log generations a database needs for recovery or restore are absent."
  - "C(LOG_VERSION_MISMATCH) (warning) - log format major/minor versions differ within one stream."
  - "C(CHK_UNREADABLE) (error) - neither copy of the checkpoint has a valid checksum."
  - "C(CHK_CHECKSUM) (error) - one copy of the checkpoint fails its checksum."
  - "C(CHK_NOT_A_CHECKPOINT) (error) - the checkpoint's file type is not checkpoint."
  - "C(CHK_COPIES_DIFFER) (warning) - both checkpoint copies are valid but differ."
  - "C(CHK_SIGNATURE_MISMATCH) (error) - the checkpoint's log signature differs from the logs' or database's."
  - "C(CHK_GENERATION_MISSING) (error) - the log of the checkpoint's generation is not present."
  - "C(SET_PARTIAL) (warning) - an unfinished '.<name>.partial' directory without kept-logs.json was found and not
    verified."
  - "C(SET_KEPT_LOGS) (warning) - a '.<name>.partial' folder with kept-logs.json holds the only copy of logs
    truncated on the host: it is verified, and must be kept."
  - "C(KEPT_LOGS_INVALID) (error) - kept-logs.json is not valid JSON, has an unknown format or lacks its file
    list."
  - "C(SET_EMPTY) (error) - a backup set holds no database and no log."
  - "C(SET_ENDING_MISSING) (warning) - a backup set has no ending.json: its session has not ended, or ended without
    recording how; its copies may be valid, but it is not restorable."
  - "C(SET_ENDING_NOT_VALID) (error) - the set's ending.json says its session or run did not end with a valid backup
    (not copied completely, or not recorded in the database header): not restorable."
  - "C(SET_ENDING_INVALID) (error) - ending.json is not valid JSON, is larger than the JSON limits, or has an unknown
    format: not restorable."
  - "C(CHAIN_NO_BASE) (error) - an incremental or differential set has no earlier full set."
  - "C(CHAIN_GAP) (error) - a set does not start where the previous set of its chain ended."
  - "C(CHAIN_SIGNATURE_MISMATCH) (error) - a set's log signature differs from the previous set of its chain."
  - "C(CHAIN_LOG_CONFLICT) (error) - the same log file name has different contents in two sets of a chain."
  - Runs on the machine where the files are; use C(delegate_to) for files on the controller.
  - Reads files only; check mode runs it as usual.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module is read-only; check mode runs it as usual.
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: ese.backup.run
  - module: ese.backup.info
author:
  - ese.backup developers (@ese-backup)
"""

EXAMPLES = r"""
- name: Verify the newest backup set on the controller
  ese.backup.verify:
    path: /srv/backup/sru/full-20261125T040000Z
  delegate_to: localhost
  register: check

- name: Stop when it is not restorable
  ansible.builtin.assert:
    that: check.valid
    fail_msg: "{{ check.problems | map(attribute='code') | list }}"

- name: Verify every set and the chains under a directory, failing the task when anything is wrong
  ese.backup.verify:
    path: /srv/backup/sru
    fail_on_invalid: true
  delegate_to: localhost

- name: Headers, manifests and log sequences only (fast)
  ese.backup.verify:
    path: /srv/backup/sru
    checksums: false
  delegate_to: localhost

- name: Verify every host's folder of the share in one task, two at a time
  ese.backup.verify:
    paths: "{{ ['/srv/backup'] | product(groups['ese_hosts']) | map('join', '/') | list }}"
    names: "{{ groups['ese_hosts'] }}"
    processes: 2
  delegate_to: localhost
  register: fleet

- name: List the hosts whose sets are not valid
  ansible.builtin.debug:
    msg: "{{ fleet.results | rejectattr('valid') | map(attribute='name') | list }}"

- name: The same for every folder under the share (one folder per host)
  ese.backup.verify:
    path: /srv/backup
    subfolders: true
  delegate_to: localhost

- name: A file-level copy of a live ESE folder (database, logs and checkpoint, no manifest)
  ese.backup.verify:
    path: /srv/copies/sru
  delegate_to: localhost
"""

RETURN = r"""
valid:
  description:
    - True when no problem of severity C(error) was found.
    - With O(paths) or O(subfolders=true), true when every result is valid.
  returned: always
  type: bool
  sample: true
results:
  description:
    - With O(paths) or O(subfolders=true), one result per path in their order (sorted by name for O(subfolders)),
      each as O(path) alone returns it (RV(valid), RV(restorable), RV(kind), RV(problems), RV(databases), RV(logs),
      RV(sets), RV(chains), ...) with its C(name) and C(path).
    - A path that could not be verified has C(failed=true), C(msg) and C(valid=null).
    - RV(databases), RV(logs), RV(checkpoints), RV(sets) and RV(chains) are then only in each result; the top
      level's RV(problems) lists every result's problems, each with its result's C(name) and C(path), and
      RV(error_count), RV(warning_count) are their sums.
  returned: with O(paths) or O(subfolders=true)
  type: list
  elements: dict
  sample: [{"name": "web01", "path": "/srv/backup/web01", "valid": true, "kind": "sets", "problems": [],
            "chains": [{"base": "full-20261202T015614Z-WEB01-5db9", "continuous": true}]}]
processes:
  description: With O(paths) or O(subfolders=true), the number of worker processes used.
  returned: with O(paths) or O(subfolders=true)
  type: int
  sample: 2
restorable:
  description:
    - True when every backup set verified is valid and its C(ending.json) says that its session (or run) ended with a
      valid backup, proven by the engine (every file copied, the backup recorded in the database header).
    - "False for a set without an ending record (a session not yet ended: verify copies before truncate and end with
      O(fail_on_invalid), then check this after end), with an ending that is not valid, and for kept-logs folders."
    - Null when O(path) holds no backup set.
    - With O(paths) or O(subfolders=true), true when every result that holds sets is restorable and no path failed.
  returned: always
  type: bool
  sample: true
kind:
  description:
    - What O(path) was taken to be (C(database), C(log), C(checkpoint), C(set), C(kept_logs), C(folder), C(sets),
      C(unknown)); C(many) with O(paths) or O(subfolders=true).
  returned: always
  type: str
  sample: set
problems:
  description:
    - Everything found wrong. C(code) is stable (see the module notes), C(file) is relative to O(path) when
      O(path) is a directory, C(detail) is for people. C(page), C(sector) or C(generation) are added when they apply.
  returned: always
  type: list
  elements: dict
  sample: [{"code": "DB_PAGE_CORRECTABLE", "severity": "error", "file": "databases/SRUDB.dat", "page": 17,
            "detail": "page 17 (offset 73728): single-bit error (correctable by ESE's ECC)"}]
error_count:
  description: Number of problems of severity C(error).
  returned: always
  type: int
warning_count:
  description: Number of problems of severity C(warning).
  returned: always
  type: int
databases:
  description:
    - One entry per database file with its header facts and page counts.
    - C(bad_pages) lists the failing page numbers (correctable ones included, also in C(correctable_pages));
      at most 10000 of each kind are listed, C(bad_page_count) counts all.
    - C(pages_checksummed) is false for temporary databases, whose pages ESE writes without checksums;
      C(backup_target) is false for them.
    - C(unowned_bad_pages) lists damaged pages past C(owned_last_page), the last page the database owns
      (read from its space tree when pages fail).
  returned: with O(path), unless O(subfolders=true)
  type: list
  elements: dict
  sample: [{"file": "databases/SRUDB.dat", "page_size": 4096, "state": 2, "state_name": "DirtyShutdown",
            "pages_total": 606, "pages_checked": 606, "pages_ok": 482, "pages_zero": 124, "bad_pages": [],
            "streamed": true, "required_generations": [92, 93]}]
logs:
  description: One entry per log stream (base name) with its generation range and signature.
  returned: with O(path), unless O(subfolders=true)
  type: list
  elements: dict
  sample: [{"base_name": "SRU", "gen_low": 89, "gen_high": 92, "signature": "024c8925...", "count": 4}]
checkpoints:
  description: Checkpoint files found, with their generation and signature.
  returned: with O(path), unless O(subfolders=true)
  type: list
  elements: dict
sets:
  description:
    - For a set or a directory of sets, one summary per set (name, type, valid, generation range).
    - C(status) is C(complete), or C(kept_logs) for a kept-logs staging folder (with its C(reason)).
    - C(restorable) and C(ending) (from the set's C(ending.json) - C(session), C(ended), C(backup_valid),
      C(logs_truncated), C(recorded_as), C(time), C(note); null when it has none).
  returned: with O(path), unless O(subfolders=true)
  type: list
  elements: dict
chains:
  description: For a directory of sets, each chain (a full set and its incrementals) and whether it is continuous.
  returned: with O(path), unless O(subfolders=true)
  type: list
  elements: dict
notes:
  description: Remarks that are not problems (temporary database not page-checked, pure-Python fallback).
  returned: always
  type: list
  elements: str
seconds:
  description: Time the verification took.
  returned: always
  type: float
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ese.backup.plugins.module_utils.ese_format.verify import (
    MAX_PROCESSES, default_processes, verify, verify_many, verify_subfolders)

WARN_CODES = ("SET_KEPT_LOGS", "SET_ENDING_MISSING")


def warn_problems(module, problems, prefix=""):
    for p in problems:
        if p["code"] == "DB_NOT_BACKUP_TARGET":
            module.warn("%s%s is not a backup target: %s" % (prefix, p["file"], p["detail"]))
        elif p["code"] in WARN_CODES:
            module.warn("%s%s: %s" % (prefix, p["file"], p["detail"]))


def check_options(module):
    """Fail the task on option values that cannot work, naming the option and the fix."""
    params = module.params
    path, paths, names = params["path"], params["paths"], params["names"]
    fail = module.fail_json
    if paths is None and (path is None or not path.strip()):
        fail(msg="path: must name a database, log, checkpoint, backup set or folder; it is empty", changed=False)
    if params["processes"] is not None and not 1 <= params["processes"] <= MAX_PROCESSES:
        fail(msg="processes: must be from 1 to %d (how many paths are verified at once; leave it out for the "
                 "number of cores, %d here); got %d" % (MAX_PROCESSES, default_processes(), params["processes"]),
             changed=False)
    if params["subfolders"] and paths is not None:
        fail(msg="subfolders: only with path (the folder whose folders are verified one by one), not with paths",
             changed=False)
    if names is not None and paths is None:
        fail(msg="names: only with paths (one name per path, naming its result)", changed=False)
    if paths is None:
        return
    if not paths:
        fail(msg="paths: the list is empty; give at least one database, set or folder to verify", changed=False)
    seen = {}
    for i, p in enumerate(paths):
        if p is None or not p.strip():
            fail(msg="paths: item %d is empty; every item must name a database, log, checkpoint, backup set or "
                     "folder" % (i + 1), changed=False)
        full = os.path.abspath(p)
        if full in seen:
            fail(msg="paths: %s is given twice (items %d and %d); give each path once" % (p, seen[full] + 1, i + 1),
                 changed=False)
        seen[full] = i
    if names is None:
        return
    if len(names) != len(paths):
        fail(msg="names: %d names for %d paths; give one name per path, in the same order" % (len(names), len(paths)),
             changed=False)
    given = set()
    for i, n in enumerate(names):
        if n is None or not n.strip():
            fail(msg="names: item %d is empty; name every path's result" % (i + 1), changed=False)
        if n in given:
            fail(msg="names: %s is given twice; each result needs its own name" % n, changed=False)
        given.add(n)


def run_many(module):
    params = module.params
    try:
        if params["subfolders"]:
            result = verify_subfolders(params["path"], checksums=params["checksums"], processes=params["processes"])
        else:
            result = verify_many(params["paths"], checksums=params["checksums"], processes=params["processes"],
                                 names=params["names"])
    except (IOError, OSError, ValueError) as e:
        module.fail_json(msg="%s: cannot verify: %s" % ("subfolders" if params["subfolders"] else "paths", e),
                         changed=False)
    result["changed"] = False
    for res in result["results"]:
        warn_problems(module, res.get("problems") or [], "%s: " % res["name"])
    failed = [r for r in result["results"] if r.get("failed")]
    if failed:
        module.fail_json(msg="%d of %d paths could not be verified: %s" % (
            len(failed), len(result["results"]), "; ".join(r["msg"] for r in failed)), **result)
    if params["fail_on_invalid"] and not result["valid"]:
        bad = ["%s (%s)" % (r["name"], ", ".join(sorted(set(p["code"] for p in r["problems"]
                                                            if p["severity"] == "error"))))
               for r in result["results"] if not r.get("valid")]
        module.fail_json(msg="%d of %d not valid: %s" % (len(bad), len(result["results"]), "; ".join(bad)), **result)
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path"),
            paths=dict(type="list", elements="path"),
            names=dict(type="list", elements="str"),
            subfolders=dict(type="bool", default=False),
            processes=dict(type="int"),
            checksums=dict(type="bool", default=True),
            fail_on_invalid=dict(type="bool", default=False),
        ),
        required_one_of=[("path", "paths")],
        mutually_exclusive=[("path", "paths")],
        supports_check_mode=True,
    )
    check_options(module)
    if module.params["paths"] is not None or module.params["subfolders"]:
        run_many(module)
    path = module.params["path"]
    try:
        result = verify(path, checksums=module.params["checksums"])
    except (IOError, OSError, ValueError) as e:
        module.fail_json(msg="path: cannot verify %s: %s" % (path, e), changed=False)
    result["changed"] = False
    warn_problems(module, result["problems"])
    if module.params["fail_on_invalid"] and not result["valid"]:
        codes = sorted(set(p["code"] for p in result["problems"] if p["severity"] == "error"))
        module.fail_json(msg="%s is not valid: %d problem(s): %s"
                         % (path, result["error_count"], ", ".join(codes)), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
