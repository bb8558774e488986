# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Synthetic, valid ESE files for tests and benchmarks (numpy required).

Everything written here passes ``ese.backup.verify``: page checksums use the real XOR+ECC
algorithm (``plugins/module_utils/ese_format/checksum.py``, after ESE's checksumu.cxx), headers the
legacy XOR, and all files of one stream share a log signature.

API (all sizes in bytes, generations are ints, signatures are the 28-byte SIGNATURE bytes):

- ``signature(seed)``                                   -> 28 bytes (deterministic per seed)
- ``make_database(path, page_size=4096, pages=64, ...)`` -> dict of facts (a plain or streamed DB)
- ``make_log(path, generation, sign_log, prev_create_time=None, ...)`` -> creation LOGTIME bytes
- ``make_log_set(directory, base, gens, sign_log, ...)``  -> list of dicts {path, generation, created}
- ``make_checkpoint(path, generation, sign_log)``
- ``space_pages(page_size, extents)``, ``pack_tree_page(...)``, ``seal_page(page, pgno)``: B-tree pages
- ``make_backup_set(dest, name, ...)``                  -> path of a complete set with manifest.json
- ``make_kept_logs(dest, name, ...)``                    -> path of a kept-logs staging folder
- ``corrupt(path, offset, bit=0)``                       flips one bit in place

Speed: ``make_database(p, 4096, pages=262144)`` (1 GiB) takes a few seconds.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import sys

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_COLL = os.path.join(_ROOT, "build", "collections")
if not os.path.isdir(os.path.join(_COLL, "ansible_collections", "ese", "backup")):
    os.makedirs(os.path.join(_COLL, "ansible_collections", "ese"), exist_ok=True)
    try:
        os.symlink(_ROOT, os.path.join(_COLL, "ansible_collections", "ese", "backup"))
    except FileExistsError:
        pass
if _COLL not in sys.path:
    sys.path.insert(0, _COLL)

from ansible_collections.ese.backup.plugins.module_utils.ese_format import checksum as ck  # noqa: E402
from ansible_collections.ese.backup.plugins.module_utils.ese_format import structs as st  # noqa: E402

CHUNK_PAGES_BYTES = 8 << 20


def signature(seed, year=2026):
    """A deterministic SIGNATURE (28 bytes) for ``seed``."""
    created = st.pack_logtime(year, 1 + seed % 12, 1 + seed % 28, seed % 24, seed % 60, (seed * 7) % 60, seed % 1000)
    return st.pack_signature(0x1000 + seed * 7919, created)


def gen_time(generation, seed=0):
    """A distinct LOGTIME for a log generation (creation time)."""
    t = generation * 3 + seed * 100000
    return st.pack_logtime(2026, 11, 1 + (t // 86400) % 28, (t // 3600) % 24, (t // 60) % 60, t % 60, (generation * 37) % 1000)


def fill_pages(q, first_pgno, page_size, rng, zero_every=0, old_format_every=0):
    """Fill ``q`` (uint64 array (n, page_size/8)) with random checksummed pages numbered from ``first_pgno``."""
    n = q.shape[0]
    q[:] = rng.integers(0, 2 ** 63, size=q.shape, dtype=np.uint64, endpoint=False)
    d32 = q.view(np.uint32)
    pgnos = np.arange(first_pgno, first_pgno + n, dtype=np.uint64)
    d32[:, 4:8] = 0                     # objidFDP, cbFree, ... (keep small header fields tidy)
    d32[:, 9] = 0x2000 | 0x0802         # new checksum format, leaf, new record format
    if page_size <= 8192:
        q[:, 0] = 0
        q[:, 0] = ck.ecc_xor_blocks(q, pgnos, page_size)
        if old_format_every:
            sel = np.arange(n)[(pgnos % old_format_every) == 0]
            if sel.size:
                d32[sel, 9] = 0x0802
                d32[sel, 1] = pgnos[sel].astype(np.uint32)
                x = np.bitwise_xor.reduce(d32[sel, 1:], axis=1)
                d32[sel, 0] = np.uint32(ck.XOR_SEED) ^ x
    else:
        bs = page_size // 4
        d32[:, 16] = pgnos.astype(np.uint32)
        d32[:, 17:20] = 0
        blocks = q.reshape(n, 4, bs // 8)
        for i in (1, 2, 3):
            q[:, 4 + i] = ck.ecc_xor_blocks(np.ascontiguousarray(blocks[:, i, :]), pgnos, bs)
        q[:, 0] = 0
        q[:, 0] = ck.ecc_xor_blocks(np.ascontiguousarray(blocks[:, 0, :]), pgnos, bs)
        if old_format_every:
            # ESE reads a large page without flag 0x2000 in the old format too: XOR of the whole page,
            # the page number in dword 1, and the other blocks' checksum slots zero
            sel = np.arange(n)[(pgnos % old_format_every) == 0]
            if sel.size:
                d32[sel, 9] = 0x0802
                q[sel, 5:8] = 0
                d32[sel, 1] = pgnos[sel].astype(np.uint32)
                x = np.bitwise_xor.reduce(d32[sel, 1:], axis=1)
                d32[sel, 0] = np.uint32(ck.XOR_SEED) ^ x
    if zero_every:
        q[(pgnos % zero_every) == 0] = 0


def seal_page(page, pgno):
    """Set the XOR+ECC checksums (and, on 16/32 KiB pages, the page number) of ``page`` (a bytearray)."""
    cb = len(page)
    struct.pack_into("<I", page, 36, struct.unpack_from("<I", page, 36)[0] | ck.FLAG_NEW_CHECKSUM)
    if cb <= 8192:
        struct.pack_into("<Q", page, 0, ck.ecc_xor(bytes(page), pgno, True))
        return page
    bs = cb // 4
    struct.pack_into("<I", page, 64, pgno)
    for i in (1, 2, 3):
        struct.pack_into("<Q", page, 32 + 8 * i, ck.ecc_xor(bytes(page[i * bs:(i + 1) * bs]), pgno, False))
    struct.pack_into("<Q", page, 0, ck.ecc_xor(bytes(page[:bs]), pgno, True))
    return page


def pack_tree_page(page_size, pgno, flags, lines, objid=1, next_pgno=0, external=b""):
    """A B-tree page: ``external`` is tag 0, ``lines`` the nodes as ``(key, data)``, checksummed.

    Layout as ESE's CPAGE (dev/ese/src/inc/cpage.hxx): header (40 or 80 bytes), node data, tag array
    at the end (cb, ib per tag); each node is a u16 key length, the key and the data.
    """
    p = bytearray(page_size)
    hdr = 40 if page_size <= 8192 else 80
    blobs = [bytes(external)] + [struct.pack("<H", len(k)) + bytes(k) + bytes(d) for k, d in lines]
    ib = 0
    for i, b in enumerate(blobs):
        p[hdr + ib:hdr + ib + len(b)] = b
        struct.pack_into("<HH", p, page_size - 4 * (i + 1), len(b), ib)
        ib += len(b)
    struct.pack_into("<IIIHHHH", p, 16, 0, next_pgno, objid, page_size - hdr - ib - 4 * len(blobs), 0, ib,
                     len(blobs))
    struct.pack_into("<I", p, 36, flags | 0x0800)
    return seal_page(p, pgno)


def space_pages(page_size, extents, split=False):
    """Pages 1 (the database's root, with its SPACE_HEADER) and its owned-extent tree, as ``{pgno: bytes}``.

    ``extents``: ``[(last_page, page_count), ...]`` in order. ``split=True`` makes the OE tree two
    levels deep: page 2 a parent of leaves 3 and 4 (the extents split between them).
    """
    sph = struct.pack("<IIII", extents[0][1], 0, 1, 2)      # cpgPrimary, pgnoParent, multiple extents, pgnoOE
    out = {1: pack_tree_page(page_size, 1, 0x1 | 0x2, [], external=sph)}
    nodes = [(struct.pack(">I", last), struct.pack("<I", cpg)) for last, cpg in extents]
    if not split:
        out[2] = pack_tree_page(page_size, 2, 0x1 | 0x2 | 0x20, nodes)
        return out
    half = max(1, len(nodes) // 2)
    out[3] = pack_tree_page(page_size, 3, 0x2 | 0x20, nodes[:half], next_pgno=4)
    out[4] = pack_tree_page(page_size, 4, 0x2 | 0x20, nodes[half:])
    out[2] = pack_tree_page(page_size, 2, 0x1 | 0x4 | 0x20,
                            [(nodes[half - 1][0], struct.pack("<I", 3)), (b"", struct.pack("<I", 4))])
    return out


def make_database(path, page_size=4096, pages=64, sign_log=None, sign_db=None, state=3, gen_min=0,
                  gen_max=0, streamed=False, gen_low=0, gen_high=0, zero_every=5, old_format_every=0,
                  filetype=1, seed=1, owned_extents=None, split_space_tree=False):
    """Write a database of ``pages`` data pages (plus header, shadow and, if ``streamed``, a trailer).

    - ``state``: 3 clean (genMin/Max 0), 2 dirty (give ``gen_min``/``gen_max``), 1 JustCreated.
    - ``streamed=True`` writes a backup stream: bkinfoFullCur = (``gen_low``, 0) in both header
      copies and a trailer whose bkinfo is (``gen_low``, ``gen_high``).
    - every ``zero_every``-th page is all zero (0 = none); every ``old_format_every``-th page uses the
      legacy XOR format (any page size).
    - ``owned_extents`` (``[(last_page, count), ...]``) writes the database's root (page 1) and its
      owned-extent tree (page 2, or 2-4 with ``split_space_tree``): pages past the last extent are
      then beyond the space the database owns.
    Returns a dict of the facts written (page_size, pages, size, sign_log, sign_db, ...).
    """
    sign_log = sign_log if sign_log is not None else signature(seed)
    sign_db = sign_db if sign_db is not None else signature(seed + 1000)
    full_cur = st.pack_bkinfo(gen_low, 0) if streamed else None
    hdr = st.pack_db_header(page_size, sign_db, sign_log, state=state, gen_min=gen_min, gen_max=gen_max,
                            gen_max_committed=gen_max, full_cur=full_cur, filetype=filetype)
    rng = np.random.default_rng(seed)
    per = max(1, CHUNK_PAGES_BYTES // page_size)
    buf = np.empty((per, page_size // 8), dtype=np.uint64)
    with open(path, "wb") as f:
        f.write(hdr)
        f.write(hdr)
        done = 0
        while done < pages:
            n = min(per, pages - done)
            q = buf[:n]
            fill_pages(q, done + 1, page_size, rng, zero_every, old_format_every)
            f.write(q.tobytes())
            done += n
        if owned_extents:
            for pg, raw in space_pages(page_size, owned_extents, split_space_tree).items():
                f.seek((pg + 1) * page_size)
                f.write(raw)
            f.seek(0, 2)
        if streamed:
            f.write(st.pack_trailer(page_size, st.pack_bkinfo(gen_low, gen_high), sign_db, sign_log,
                                    gen_min, max(gen_max, gen_high), max(gen_max, gen_high)))
    return {"path": path, "page_size": page_size, "pages": pages, "size": os.path.getsize(path),
            "sign_log": sign_log.hex(), "sign_db": sign_db.hex(), "state": state,
            "gen_min_required": gen_min, "gen_max_required": gen_max, "streamed": streamed,
            "gen_low": gen_low, "gen_high": gen_high}


def make_log(path, generation, sign_log, prev_create_time=None, created=None, sectors=16, used_sectors=4,
             page_size=4096, seed=0):
    """Write a v8 log: a checksummed header, ``used_sectors`` valid data segments, zeros after.

    ``prev_create_time``: the previous generation's creation LOGTIME (8 bytes; None for the first
    generation). Returns this log's creation LOGTIME (8 bytes).
    """
    created = created or gen_time(generation, seed)
    hdr = st.pack_log_header(generation, sign_log, created, prev_create_time, csec_file=sectors,
                             page_size=page_size)
    rng = np.random.default_rng(generation)
    body = np.zeros(((sectors - 1), 512), dtype=np.uint64)
    used = max(0, min(used_sectors, sectors - 2))
    if used:
        q = body[:used]
        q[:] = rng.integers(0, 2 ** 63, size=q.shape, dtype=np.uint64)
        isec = np.arange(1, used + 1, dtype=np.uint64)
        lg = [struct.unpack("<Q", st.pack_lgpos(generation, int(s), 0))[0] for s in isec]
        q[:, 1] = np.array(lg, dtype=np.uint64)
        q[:, 2] = struct.unpack("<Q", created)[0]
        q[:, 3:5] = 0
        q.view(np.uint32)[:, 9] = 0x2000
        q[:, 0] = 0
        q[:, 0] = ck.ecc_xor_blocks(q, isec, 4096)
    with open(path, "wb") as f:
        f.write(hdr)
        f.write(body.tobytes())
    return bytes(created)


def make_log_set(directory, base, gens, sign_log, current=False, prev_create_time=None, seed=0, **kw):
    """Write consecutive logs ``gens`` (an iterable of ints) named ``<base><HEX>.log``.

    Each generation's prev-gen time is the previous one's creation time. With ``current=True`` the
    last generation is named ``<base>.log`` (the live current log). Returns a list of dicts.
    """
    from ansible_collections.ese.backup.plugins.module_utils.ese_format.logs import log_file_name
    out = []
    prev = prev_create_time
    gens = list(gens)
    for i, g in enumerate(gens):
        name = "%s.log" % base if (current and i == len(gens) - 1) else log_file_name(base, g)
        p = os.path.join(directory, name)
        prev = make_log(p, g, sign_log, prev_create_time=prev, seed=seed, **kw)
        out.append({"path": p, "name": name, "generation": g, "created": prev})
    return out


def make_checkpoint(path, generation, sign_log):
    """Write an 8 KiB checkpoint (two identical 4 KiB copies) pointing at ``generation``."""
    c = st.pack_checkpoint_copy(generation, sign_log)
    with open(path, "wb") as f:
        f.write(c)
        f.write(c)


def corrupt(path, offset, bit=0):
    """Flip bit ``bit`` of the byte at ``offset`` in place."""
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ (1 << bit)]))


def _sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for blk in iter(lambda: f.read(1 << 20), b""):
            h.update(blk)
    return h.hexdigest()


def make_backup_set(dest, name, set_type="full", gen_low=10, gen_high=12, sign_log=None, sign_db=None,
                    base="edb", db_name="test.edb", page_size=4096, pages=32, created=None, seed=1,
                    prev_create_time=None, ending=True):
    """Write ``<dest>/<name>/`` as the engine does: databases/ (streamed DB for full and copy sets),
    logs/ (generations ``gen_low..gen_high``), manifest.json and, with ``ending`` (True: a valid ending; a dict:
    those keys over it; False: none), the ending record ending.json. Returns the set's path.

    For a chain, give each set the same ``sign_log`` and ``seed`` so that overlapping logs are
    byte-identical, as real overlapping sets are.
    """
    sign_log = sign_log if sign_log is not None else signature(seed)
    sign_db = sign_db if sign_db is not None else signature(seed + 1000)
    root = os.path.join(dest, name)
    os.makedirs(os.path.join(root, "logs"))
    files = []
    dbs = []
    if set_type in ("full", "copy"):
        os.makedirs(os.path.join(root, "databases"))
        p = os.path.join(root, "databases", db_name)
        facts = make_database(p, page_size, pages, sign_log=sign_log, sign_db=sign_db, state=2,
                              gen_min=gen_low, gen_max=gen_low, streamed=True, gen_low=gen_low,
                              gen_high=gen_high, seed=seed)
        files.append({"name": "databases/" + db_name, "role": "database", "size": facts["size"], "sha256": _sha(p)})
        dbs.append({"file": "databases/" + db_name, "source": "C:\\data\\" + db_name, "page_size": page_size,
                    "db_state": 2, "sign_db": facts["sign_db"], "sign_log": facts["sign_log"],
                    "gen_min_required": gen_low, "gen_max_required": gen_low,
                    "backup_gen_low": gen_low, "backup_gen_high": gen_high})
    prev = prev_create_time
    if prev is None and gen_low > 1:
        prev = gen_time(gen_low - 1, seed)
    for lg in make_log_set(os.path.join(root, "logs"), base, range(gen_low, gen_high + 1), sign_log,
                           prev_create_time=prev, seed=seed, page_size=page_size):
        files.append({"name": "logs/" + lg["name"], "role": "log", "generation": lg["generation"],
                      "size": os.path.getsize(lg["path"]), "sha256": _sha(lg["path"])})
    manifest = {
        "format": "ese.backup/1", "tool": {"name": "ese.backup", "version": "1.0.0"}, "type": set_type,
        "created": created or "2026-11-25T04:%02d:00Z" % (gen_low % 60),
        "source": {"host": "synth", "databases": ["C:\\data\\" + db_name], "log_path": "C:\\data",
                   "system_path": "C:\\data", "base_name": base, "page_size": page_size},
        "logs": {"gen_low": gen_low, "gen_high": gen_high, "base_name": base},
        "databases": dbs, "files": files, "logs_truncated": set_type in ("full", "incremental"), "trace": [],
    }
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    if ending:
        truncated = set_type in ("full", "incremental")
        record = {"format": "ese.backup/ending/1", "session": None, "ended": "normal", "backup_valid": True,
                  "logs_truncated": truncated, "recorded_as": set_type,
                  "proof": {"sequence_complete": True, "header_recorded": True, "missing": []},
                  "end_call": {"call": "JetEndExternalBackupInstance2", "err": 0}, "time": manifest["created"],
                  "type": set_type}
        if isinstance(ending, dict):
            record.update(ending)
        with open(os.path.join(root, "ending.json"), "w") as f:
            json.dump(record, f, indent=2)
    return root


def make_kept_logs(dest, name, set_type="full", reason="logs truncated on the host; the backup could not be ended",
                   **kw):
    """Write ``<dest>/.<name>.partial/`` as the engine keeps it when logs were truncated and the set could
    not be published: the set's files and ``kept-logs.json`` (docs/verify.md) instead of manifest.json.

    ``kw`` goes to ``make_backup_set``. Returns the folder's path.
    """
    staging = "." + name + ".partial"
    root = make_backup_set(dest, staging, set_type, ending=False, **kw)
    with open(os.path.join(root, "manifest.json")) as f:
        manifest = json.load(f)
    os.remove(os.path.join(root, "manifest.json"))
    kept = {"format": "ese.backup/kept-logs/1", "set_name": name, "type": set_type, "reason": reason,
            "created": manifest["created"], "logs_truncated": True, "logs": manifest["logs"],
            "databases": manifest["databases"], "files": manifest["files"]}
    with open(os.path.join(root, "kept-logs.json"), "w") as f:
        json.dump(kept, f, indent=2)
    return root
