# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stable problem codes reported by the verifier.

Each problem is a dict ``{"code", "severity", "file", "detail"}`` plus, where it applies, ``page``
(a data page number), ``sector`` (a log sector) or ``generation``. ``severity`` is ``error`` (the
backup is not valid) or ``warning`` (worth a look; ``valid`` stays true). Codes never change
meaning; new codes may be added. ``docs/verify.md`` and the module documentation carry this table.
"""
from __future__ import annotations

ERROR = "error"
WARNING = "warning"

# code -> (severity, meaning)
CODES = {
    # input and layout
    "PATH_UNRECOGNISED": (ERROR, "the path is not an ESE database, log or checkpoint, a backup set, "
                                 "a folder of ESE files or a folder of sets"),
    "READ_ERROR": (ERROR, "a file could not be read (permissions, I/O error)"),
    "FILE_NOT_REGULAR": (ERROR, "an entry is a FIFO, socket, device or other non-regular file: it is skipped and "
                                "never opened"),
    "FILE_SYMLINK": (ERROR, "a file of a set or folder is a symbolic link: it is not followed (a set must hold "
                            "its own regular files)"),
    "FOLDER_SYMLINK": (ERROR, "a folder of a set (such as logs/), or a set in a folder of sets, is a symbolic "
                              "link: it is not followed"),
    # manifest
    "MANIFEST_INVALID": (ERROR, "manifest.json is not valid JSON or lacks required fields or has an unknown format"),
    "MANIFEST_UNREADABLE": (ERROR, "manifest.json (or kept-logs.json) is larger than 16 MiB or nested deeper than "
                                   "64 levels: it is not parsed, and the set's files are judged without it"),
    "MANIFEST_UNSAFE_NAME": (ERROR, "a file name in the manifest is absolute, has a drive, a backslash or '..'"),
    "MANIFEST_DB_FILE_UNSAFE": (ERROR, "a databases[].file of the manifest is absolute, has a drive, a backslash "
                                       "or '..': it points outside the set"),
    "MANIFEST_DB_FILE_ROLE": (ERROR, "a databases[].file of the manifest is not a database file of the set "
                                     "(a log, another file, or a file not listed)"),
    "MANIFEST_BASE_NAME_UNSAFE": (ERROR, "logs.base_name or source.base_name of the manifest is not a "
                                         "3-character log base name (it has a path separator, a dot or '..')"),
    "FILE_MISSING": (ERROR, "a file listed in the manifest is absent"),
    "FILE_SIZE_MISMATCH": (ERROR, "a file's size differs from the manifest"),
    "FILE_HASH_MISMATCH": (ERROR, "a file's SHA-256 differs from the manifest"),
    "FILE_UNLISTED": (ERROR, "a file in the set is not listed in the manifest"),
    "MANIFEST_MISMATCH": (ERROR, "a fact recorded in the manifest (page size, signature, generations) "
                                 "differs from the files"),
    # database
    "DB_HEADER_UNREADABLE": (ERROR, "neither the header nor the shadow header has a valid checksum and page size"),
    "DB_HEADER_CHECKSUM": (ERROR, "the primary header (page at offset 0) fails its checksum"),
    "DB_SHADOW_CHECKSUM": (ERROR, "the shadow header (second page) fails its checksum"),
    "DB_SHADOW_MISMATCH": (WARNING, "header and shadow header are both valid but differ"),
    "DB_BAD_MAGIC": (ERROR, "the header magic is not 0x89ABCDEF"),
    "DB_FORMAT_VERSION": (ERROR, "the header format version is not 0x620"),
    "DB_FILETYPE": (ERROR, "the header file type is not a database"),
    "DB_SIZE": (ERROR, "the file size is not a whole number of pages, or too small"),
    "DB_NO_PAGES": (ERROR, "the database has no data pages, only its header pages"),
    "DB_NOT_BACKUP_TARGET": (ERROR, "a temporary or just-created database (such as AD's temp.edb): ESE does not "
                                    "attach it and writes its pages without checksums; it is not a backup target"),
    "DB_TEMP_SKIPPED": (WARNING, "a temporary or just-created database next to a folder's other databases was "
                                 "skipped: it is not a backup target"),
    "DB_SIGNATURE": (ERROR, "the header's database signature (signDb) is empty"),
    "DB_STATE": (ERROR, "the database state is unknown, or not one a backup can hold"),
    "DB_TRAILER_CHECKSUM": (ERROR, "the streamed database's trailer page fails its checksum (or is missing)"),
    "DB_TRAILER_SIGNATURE": (ERROR, "the trailer's database or log signature differs from the header's"),
    "DB_TRAILER_RANGE": (ERROR, "the trailer's backup mark or generation range does not match the header or is inverted"),
    "DB_PAGE_CHECKSUM": (ERROR, "a data page fails its checksum"),
    "DB_PAGE_CORRECTABLE": (WARNING, "a data page has a single-bit error that ESE's ECC corrects when it reads "
                                     "the page (esentutl /k counts it as correctable); no data is lost"),
    "DB_PAGE_NUMBER": (ERROR, "a data page's checksum is good but its page number field is wrong"),
    "DB_PAGE_UNOWNED": (WARNING, "a damaged page lies beyond the space the database owns (past the last extent "
                                 "of its space tree): no data is lost"),
    "DB_BAD_CHECKSUM_COUNT": (WARNING, "the header records earlier checksum failures (ulBadChecksum > 0)"),
    # logs
    "LOG_TRUNCATED": (ERROR, "a log file is shorter than its header says (or shorter than a header)"),
    "LOG_BLANK": (ERROR, "a numbered log file has an all-zero header"),
    "LOG_HEADER_CHECKSUM": (ERROR, "a log header fails its checksum"),
    "LOG_NOT_A_LOG": (ERROR, "a .log file's header has a file type other than log"),
    "LOG_SEGMENT_CHECKSUM": (ERROR, "a log data sector fails its checksum, both as its own sector and as a "
                                    "shadow of the sector before it"),
    "LOG_SEGMENT_CORRECTABLE": (WARNING, "a log data sector has a single-bit error that ESE corrects when it "
                                         "reads the log"),
    "LOG_NAME_INVALID": (ERROR, "a log file name does not follow <base><hex generation>.log"),
    "LOG_GENERATION_MISMATCH": (ERROR, "the generation in a log's name differs from its header (renamed log)"),
    "LOG_DUPLICATE_GENERATION": (ERROR, "two log files carry the same generation"),
    "LOG_SIGNATURE_MISMATCH": (ERROR, "a log's signature differs from the database's or the stream's"),
    "LOG_CHAIN_BROKEN": (ERROR, "a log's previous-generation time differs from the prior log's creation time"),
    "LOG_GAP": (ERROR, "generations are missing between the first and last log present"),
    "LOG_REQUIRED_MISSING": (ERROR, "log generations a database needs for recovery or restore are absent"),
    "LOG_VERSION_MISMATCH": (WARNING, "log format major/minor versions differ within one stream"),
    # checkpoint
    "CHK_UNREADABLE": (ERROR, "neither copy of the checkpoint has a valid checksum"),
    "CHK_CHECKSUM": (ERROR, "one copy of the checkpoint fails its checksum"),
    "CHK_NOT_A_CHECKPOINT": (ERROR, "the checkpoint's file type is not checkpoint"),
    "CHK_COPIES_DIFFER": (WARNING, "both checkpoint copies are valid but differ"),
    "CHK_SIGNATURE_MISMATCH": (ERROR, "the checkpoint's log signature differs from the logs' or database's"),
    "CHK_GENERATION_MISSING": (ERROR, "the log of the checkpoint's generation is not present"),
    # sets and chains
    "SET_PARTIAL": (WARNING, "an unfinished '.<name>.partial' directory without kept-logs.json was found and "
                             "not verified"),
    "SET_KEPT_LOGS": (WARNING, "a '.<name>.partial' folder with kept-logs.json holds the only copy of logs "
                               "truncated on the host: it is verified, and must be kept"),
    "KEPT_LOGS_INVALID": (ERROR, "kept-logs.json is not valid JSON, has an unknown format or lacks its file list"),
    "SET_EMPTY": (ERROR, "a backup set holds no database and no log"),
    "SET_ENDING_MISSING": (WARNING, "a backup set has no ending.json: its session has not ended, or ended without "
                                    "recording how; its copies may be valid, but it is not restorable"),
    "SET_ENDING_NOT_VALID": (ERROR, "the set's ending.json says its session or run did not end with a valid backup "
                                    "(not copied completely, or not recorded in the database header): not restorable"),
    "SET_ENDING_INVALID": (ERROR, "ending.json is not valid JSON, is larger than the JSON limits, or has an unknown "
                                  "format: not restorable"),
    "CHAIN_NO_BASE": (ERROR, "an incremental or differential set has no earlier full set"),
    "CHAIN_GAP": (ERROR, "a set does not start where the previous set of its chain ended"),
    "CHAIN_SIGNATURE_MISMATCH": (ERROR, "a set's log signature differs from the previous set of its chain"),
    "CHAIN_LOG_CONFLICT": (ERROR, "the same log file name has different contents in two sets of a chain"),
}


def problem(code, file, detail, **extra):
    sev = CODES[code][0]
    p = {"code": code, "severity": sev, "file": file, "detail": detail}
    p.update(extra)
    return p


def open_problem(e, name):
    """The problem for a failed ``files.open_regular`` (``NotRegularFile`` carries ``kind``)."""
    kind = getattr(e, "kind", None)
    if kind == "symlink":
        return problem("FILE_SYMLINK", name, "a symbolic link: not followed")
    if kind:
        return problem("FILE_NOT_REGULAR", name, "a %s, not a regular file: not opened" % kind.replace("_", " "))
    return problem("READ_ERROR", name, str(e))


def is_error(p):
    return p.get("severity", ERROR) == ERROR


def markdown_table():
    """The code table as Markdown (docs/verify.md is checked against it by a test)."""
    lines = ["| code | severity | meaning |", "|---|---|---|"]
    for code, (sev, text) in CODES.items():
        lines.append("| `%s` | %s | %s |" % (code, sev, text))
    return "\n".join(lines)
