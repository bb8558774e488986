# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ESE on-disk structures, as Microsoft's ESE declares them (github.com/microsoft/Extensible-Storage-Engine):
DBFILEHDR and BKINFO in ``dev/ese/src/inc/daedef.hxx``, PATCHHDR (the backup trailer) in
``dev/ese/src/inc/cpage.hxx``, LGFILEHDR and CHECKPOINT in ``dev/ese/src/inc/log.hxx``, LGSEGHDR in
``dev/ese/src/inc/_logstream.hxx``; the manifest format is in ``docs/architecture.md``.

Every parser takes bytes and returns a plain dict (JSON-friendly values) so that results can be
returned by the Ansible module as they are. ``pack_*`` helpers build the same structures; the
synthetic test-file generator uses them.
"""
from __future__ import annotations

import binascii
import struct

DB_MAGIC = 0x89ABCDEF
DB_VERSION = 0x620

FILETYPES = {0: "unknown", 1: "database", 2: "streaming_file", 3: "log", 4: "checkpoint",
             5: "temp_database", 6: "ftl", 7: "flush_map", 8: "cached_file", 9: "caching_file",
             10: "snapshot", 11: "rbs_revert_checkpoint"}
DB_STATES = {1: "JustCreated", 2: "DirtyShutdown", 3: "CleanShutdown", 4: "BeingConverted",
             5: "ForceDetach", 6: "IncrementalReseedInProgress", 7: "DirtyAndPatchedShutdown",
             8: "RevertInProgress"}
BKINFO_TYPES = {0: "normal", 1: "os_snapshot", 2: "snapshot", 3: "surrogate"}
FILETYPE_OFFSET = 667


# ------------------------------------------------------------------------------ small structs
def logtime(b, off=0):
    """LOGTIME (8 bytes) -> dict, or None when all zero (not set)."""
    raw = bytes(b[off:off + 8])
    if raw == b"\0" * 8:
        return None
    sec, mi, hr, day, mon, yr, b6, b7 = raw
    ms = (b6 >> 1) | (((b7 >> 1) & 7) << 7)
    iso = "%04d-%02d-%02dT%02d:%02d:%02d.%03d%s" % (yr + 1900, mon, day, hr, mi, sec, ms, "Z" if b6 & 1 else "")
    return {"iso": iso,
            "utc": bool(b6 & 1), "hex": raw.hex()}


def pack_logtime(year=2026, month=11, day=25, hour=4, minute=0, second=0, ms=0, utc=True):
    return bytes([second, minute, hour, day, month, year - 1900,
                  (1 if utc else 0) | ((ms & 0x7F) << 1), ((ms >> 7) & 7) << 1])


def lgpos(b, off=0):
    ib, isec, gen = struct.unpack_from("<HHi", b, off)
    return {"generation": gen, "isec": isec, "ib": ib}


def pack_lgpos(generation=0, isec=0, ib=0):
    return struct.pack("<HHi", ib, isec, generation)


def signature(b, off=0):
    """SIGNATURE (28 bytes): compared as raw bytes; ``hex`` is the comparison key."""
    raw = bytes(b[off:off + 28])
    rnd = struct.unpack_from("<I", raw, 0)[0]
    name = raw[12:28].split(b"\0", 1)[0].decode("latin-1")
    return {"hex": raw.hex(), "random": rnd, "created": (logtime(raw, 4) or {}).get("iso"),
            "computer": name, "zero": raw == b"\0" * 28}


def pack_signature(random, created=None, computer=b""):
    created = created or pack_logtime()
    return struct.pack("<I", random & 0xFFFFFFFF) + created + computer[:16].ljust(16, b"\0")


def bkinfo(b, off=0):
    gl, gh = struct.unpack_from("<II", b, off + 16)
    return {"lgpos_mark": lgpos(b, off), "time_mark": (logtime(b, off + 8) or {}).get("iso"),
            "gen_low": gl, "gen_high": gh, "mark_hex": bytes(b[off:off + 16]).hex()}


def pack_bkinfo(gen_low=0, gen_high=0, mark=None, time_mark=None):
    mark = mark if mark is not None else (pack_lgpos(gen_low, 1, 0) if gen_low else b"\0" * 8)
    time_mark = time_mark if time_mark is not None else (pack_logtime() if gen_low else b"\0" * 8)
    return mark + time_mark + struct.pack("<II", gen_low, gen_high)


def u32(b, off):
    return struct.unpack_from("<I", b, off)[0]


def i32(b, off):
    return struct.unpack_from("<i", b, off)[0]


def hexsig(b, off):
    return binascii.hexlify(bytes(b[off:off + 28])).decode("ascii")


# ------------------------------------------------------------------------------ database header
def db_header(b):
    """DBFILEHDR fields used by the verifier (b: at least 748 bytes of the header page)."""
    cbp = u32(b, 236)
    state = u32(b, 52)
    h = {
        "checksum": u32(b, 0), "magic": u32(b, 4), "format_version": u32(b, 8),
        "dbtime_dirtied": struct.unpack_from("<Q", b, 16)[0],
        "sign_db": signature(b, 24), "state": state, "state_name": DB_STATES.get(state, "unknown"),
        "lgpos_consistent": lgpos(b, 56), "lgpos_attach": lgpos(b, 80), "lgpos_detach": lgpos(b, 96),
        "sign_log": signature(b, 108),
        "bkinfo_full_prev": bkinfo(b, 136), "bkinfo_inc_prev": bkinfo(b, 160),
        "bkinfo_full_cur": bkinfo(b, 184),
        "db_flags": u32(b, 208),
        "os_version": "%d.%d.%d SP%d" % struct.unpack_from("<IIII", b, 216),
        "update_major": u32(b, 232), "page_size_field": cbp, "page_size": cbp or 4096,
        "repair_count": u32(b, 240),
        "gen_min_required": i32(b, 296), "gen_max_required": i32(b, 300),
        "bkinfo_type_full_prev": BKINFO_TYPES.get(u32(b, 356), u32(b, 356)),
        "bkinfo_type_inc_prev": BKINFO_TYPES.get(u32(b, 360), u32(b, 360)),
        "ecc_fix_success": u32(b, 368), "ecc_fix_fail": u32(b, 384), "bad_checksum": u32(b, 400),
        "gen_max_committed": i32(b, 416),
        "bkinfo_copy_prev": bkinfo(b, 420), "bkinfo_diff_prev": bkinfo(b, 444),
        "gen_min_consistent": i32(b, 640), "update_minor": u32(b, 644),
        "filetype": u32(b, FILETYPE_OFFSET),
    }
    h["filetype_name"] = FILETYPES.get(h["filetype"], "unknown")
    h["streamed"] = h["bkinfo_full_cur"]["gen_low"] != 0
    return h


def pack_db_header(page_size, sign_db, sign_log, state=3, gen_min=0, gen_max=0, gen_max_committed=0,
                   full_cur=None, filetype=1, update_major=0xC8, update_minor=440, dbtime=1000):
    """A header page (bytearray of ``page_size``) with the legacy XOR checksum set."""
    from ansible_collections.ese.backup.plugins.module_utils.ese_format.checksum import seal_header
    p = bytearray(page_size)
    struct.pack_into("<IIII", p, 4, DB_MAGIC, DB_VERSION, 0, 0)
    struct.pack_into("<Q", p, 16, dbtime)
    p[24:52] = sign_db
    struct.pack_into("<I", p, 52, state)
    p[108:136] = sign_log
    if full_cur:
        p[184:208] = full_cur
    struct.pack_into("<IIII", p, 216, 10, 0, 22000, 0)
    struct.pack_into("<II", p, 232, update_major, page_size)
    struct.pack_into("<ii", p, 296, gen_min, gen_max)
    struct.pack_into("<II", p, 340, DB_VERSION, update_major)
    struct.pack_into("<i", p, 416, gen_max_committed)
    struct.pack_into("<I", p, 644, update_minor)
    struct.pack_into("<I", p, FILETYPE_OFFSET, filetype)
    return seal_header(p)


# ------------------------------------------------------------------------------ trailer (PATCHHDR)
def trailer(b):
    return {
        "checksum": u32(b, 0), "pgno": u32(b, 4), "flags": u32(b, 36),
        "bkinfo": bkinfo(b, 40), "sign_db": signature(b, 64), "sign_log": signature(b, 92),
        "gen_min_required": i32(b, 120), "gen_max_required": i32(b, 124),
        "gen_max_committed": i32(b, 128),
        "time_gen_max_required": (logtime(b, 132) or {}).get("iso"),
        "time_gen_max_committed": (logtime(b, 140) or {}).get("iso"),
    }


def pack_trailer(page_size, bkinfo_bytes, sign_db, sign_log, gen_min_req, gen_max_req, gen_max_committed):
    from ansible_collections.ese.backup.plugins.module_utils.ese_format.checksum import seal_header
    p = bytearray(page_size)
    p[40:64] = bkinfo_bytes
    p[64:92] = sign_db
    p[92:120] = sign_log
    struct.pack_into("<iii", p, 120, gen_min_req, gen_max_req, gen_max_committed)
    p[132:140] = pack_logtime()
    p[140:148] = pack_logtime()
    return seal_header(p)


# ------------------------------------------------------------------------------ log header
LOG_HEADER_SIZE = 4096


def log_header(b):
    h = {
        "checksum": u32(b, 0), "generation": i32(b, 4),
        "cb_sec": struct.unpack_from("<H", b, 8)[0], "csec_header": struct.unpack_from("<H", b, 10)[0],
        "csec_file": struct.unpack_from("<H", b, 12)[0],
        "page_size": struct.unpack_from("<H", b, 14)[0] or 4096,
        "created": logtime(b, 16), "prev_gen_created": logtime(b, 24),
        "created_hex": bytes(b[16:24]).hex(), "prev_gen_created_hex": bytes(b[24:32]).hex(),
        "version": "%d.%d.%d.%d" % (u32(b, 32), u32(b, 36), u32(b, 40), u32(b, 648)),
        "major": u32(b, 32), "minor": u32(b, 36), "update_major": u32(b, 40),
        "sign_log": signature(b, 44), "flags": b[639], "lgpos_checkpoint": lgpos(b, 640),
        "filetype": u32(b, FILETYPE_OFFSET),
    }
    return h


def pack_log_header(generation, sign_log, created, prev_created, csec_file=16, cb_sec=4096,
                    page_size=4096, flags=0):
    from ansible_collections.ese.backup.plugins.module_utils.ese_format.checksum import seal_header
    p = bytearray(LOG_HEADER_SIZE)
    struct.pack_into("<iHHHH", p, 4, generation, cb_sec, 1, csec_file, page_size & 0xFFFF)
    p[16:24] = created
    p[24:32] = prev_created or b"\0" * 8
    struct.pack_into("<III", p, 32, 8, 4000, 90)
    p[44:72] = sign_log
    p[639] = flags
    p[640:648] = pack_lgpos(generation, 1, 0)
    struct.pack_into("<I", p, 648, 200)
    struct.pack_into("<I", p, FILETYPE_OFFSET, 3)
    return seal_header(p)


def segment_header(b, off=0):
    return {"checksum": struct.unpack_from("<Q", b, off)[0], "lgpos": lgpos(b, off + 8),
            "flags": u32(b, off + 36)}


# ------------------------------------------------------------------------------ checkpoint
CHECKPOINT_COPY_SIZE = 4096


def checkpoint(b):
    return {
        "checksum": u32(b, 0), "lgpos_full_backup_checkpoint": lgpos(b, 4),
        "lgpos_checkpoint": lgpos(b, 12), "sign_log": signature(b, 20),
        "lgpos_full_backup": lgpos(b, 615), "lgpos_inc_backup": lgpos(b, 631),
        "lgpos_db_consistency": lgpos(b, 648), "filetype": u32(b, FILETYPE_OFFSET),
    }


def pack_checkpoint_copy(generation, sign_log, isec=1):
    from ansible_collections.ese.backup.plugins.module_utils.ese_format.checksum import seal_header
    p = bytearray(CHECKPOINT_COPY_SIZE)
    p[12:20] = pack_lgpos(generation, isec, 0)
    p[20:48] = sign_log
    struct.pack_into("<I", p, FILETYPE_OFFSET, 4)
    return seal_header(p)
