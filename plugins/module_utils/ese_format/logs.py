# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Transaction logs and checkpoints (LGFILEHDR, LGSEGHDR and CHECKPOINT: see ``structs``; segment checks as
``dev/ese/src/ese/_log/logread.cxx`` in github.com/microsoft/Extensible-Storage-Engine)."""
from __future__ import annotations

import hashlib
import re

from ansible_collections.ese.backup.plugins.module_utils.ese_format import checksum as ck
from ansible_collections.ese.backup.plugins.module_utils.ese_format import files as fs
from ansible_collections.ese.backup.plugins.module_utils.ese_format import structs as st
from ansible_collections.ese.backup.plugins.module_utils.ese_format.problems import problem, open_problem

_NUMBERED = re.compile(r"^(?P<base>[^.]{3})(?P<gen>[0-9A-Fa-f]{5}|[0-9A-Fa-f]{8})\.(?P<ext>log|jtx)$", re.I)
_CURRENT = re.compile(r"^(?P<base>[^.]{3})\.(?P<ext>log|jtx)$", re.I)
_TMP = re.compile(r"^(?P<base>[^.]{3})tmp\.(?P<ext>log|jtx)$", re.I)
_RESERVE = re.compile(r"^.*\.jrs$", re.I)


def classify_log_name(filename):
    """``(kind, base, generation)`` for a file name.

    kind: ``numbered`` (generation from the hex), ``current`` (``edb.log``; generation None),
    ``tmp`` and ``reserve`` (ignored by name), ``invalid`` (a .log/.jtx that does not parse),
    or None for anything else.
    """
    m = _TMP.match(filename)
    if m:
        return "tmp", m.group("base"), None
    if _RESERVE.match(filename):
        return "reserve", None, None
    m = _NUMBERED.match(filename)
    if m:
        return "numbered", m.group("base"), int(m.group("gen"), 16)
    m = _CURRENT.match(filename)
    if m:
        return "current", m.group("base"), None
    if filename.lower().endswith((".log", ".jtx")):
        return "invalid", None, None
    return None, None, None


def log_file_name(base, generation):
    """The engine's name for a generation: base + upper-case hex (5 digits, 8 beyond 0xFFFFF)."""
    return "%s%0*X.log" % (base, 5 if generation <= 0xFFFFF else 8, generation)


def _segments(data, hdr, name, probs, use_numpy):
    """Check every data sector as ESE's LOG_VERIFY_STATE::ErrVerifyLogSegments does.

    Source: dev/ese/src/ese/_log/logread.cxx (ErrVerifyHeader, ErrVerifyLogSegments). From sector
    ``csecHeader`` to the end of the file, including the last sector: an all-zero sector is skipped;
    any other must pass ChecksumAndPossiblyFixPage as a page numbered with its sector index, or else
    with the index before it (a shadow copy of the previous sector). The sector's own position field
    (lgposSegment) is never compared, so a recycled log's stale sectors that are checksum-valid pass.
    Log segments are checksummed like database pages (``logfilePage`` equals ``databasePage`` in
    dev/ese/src/inc/_osu/checksumu.hxx): XOR+ECC when flag 0x2000 is set, the old XOR otherwise, and
    a single-bit error is corrected on read (reported here as LOG_SEGMENT_CORRECTABLE).
    """
    cbs = hdr["cb_sec"]
    if hdr["major"] < 8 or cbs != 4096:
        return 0     # pre-v8 (LRCHECKSUM) logs: header-level checks only
    first = max(1, hdr["csec_header"])
    last = len(data) // cbs
    if last <= first:
        return 0
    nsec = last - first
    if use_numpy:
        np = ck.np
        buf = np.frombuffer(bytearray(data[first * cbs:last * cbs]), dtype=np.uint8)
        q = buf.view(np.uint64).reshape(nsec, cbs // 8)
        stored = q[:, 0].copy()
        new = (q.view(np.uint32)[:, 9] & ck.FLAG_NEW_CHECKSUM) != 0
        nz = (q[:, 1:] != 0).any(axis=1) | (stored != 0)
        q[:, 0] = 0
        isec = np.arange(first, last, dtype=np.uint64)
        got = ck.ecc_xor_blocks(q, isec, cbs)
        cand = np.nonzero(nz & ~(new & (got == stored)))[0].tolist()   # the rest pass at their own index
    else:
        cand = [i for i in range(nsec) if any(data[(first + i) * cbs:(first + i + 1) * cbs])]
    for i in cand:
        s = first + i
        sec = bytes(data[s * cbs:(s + 1) * cbs])
        v = ck.page_status(sec, s, cbs)
        if v == ck.OK:
            continue
        if v == ck.CORRECTABLE:
            probs.append(problem("LOG_SEGMENT_CORRECTABLE", name, "sector %d: single-bit error (ESE corrects it "
                                 "when it reads the log)" % s, sector=s))
            continue
        prev = ck.page_status(sec, s - 1, cbs) if s - 1 >= 1 else ck.BAD
        if prev == ck.OK:
            continue          # a shadow of the previous sector
        if prev == ck.CORRECTABLE:
            probs.append(problem("LOG_SEGMENT_CORRECTABLE", name, "sector %d (a shadow of sector %d): single-bit "
                                 "error (ESE corrects it when it reads the log)" % (s, s - 1), sector=s))
            continue
        probs.append(problem("LOG_SEGMENT_CHECKSUM", name, "sector %d: checksum mismatch, as sector %d and as a "
                             "shadow of sector %d" % (s, s, s - 1), sector=s))
    return nsec


def check_log(path, name=None, checksums=True, want_sha256=False, use_numpy=None, follow=False):
    """Check one log file. Returns ``(info, problems)``; info is None when the header is unusable."""
    name = name or path
    if use_numpy is None:
        use_numpy = ck.HAS_NUMPY
    probs = []
    try:
        with fs.open_regular(path, follow=follow) as f:
            data = f.read()
    except (IOError, OSError) as e:
        return None, [open_problem(e, name)]
    base_info = {"file": name, "size": len(data)}
    if want_sha256:
        base_info["sha256"] = hashlib.sha256(data).hexdigest()
    if len(data) < st.LOG_HEADER_SIZE:
        probs.append(problem("LOG_TRUNCATED", name, "%d bytes, shorter than the 4096-byte header" % len(data)))
        return dict(base_info, header_ok=False), probs
    h = data[:st.LOG_HEADER_SIZE]
    if not any(h):
        probs.append(problem("LOG_BLANK", name, "the header is all zero (a pre-allocated, unused file)"))
        return dict(base_info, header_ok=False), probs
    if st.u32(h, 0) != ck.xor_old(h):
        probs.append(problem("LOG_HEADER_CHECKSUM", name, "log header checksum fails"))
        return dict(base_info, header_ok=False), probs
    hdr = st.log_header(h)
    if hdr["filetype"] not in (0, 3):
        probs.append(problem("LOG_NOT_A_LOG", name, "file type %d (%s)"
                             % (hdr["filetype"], st.FILETYPES.get(hdr["filetype"], "unknown"))))
        return dict(base_info, header_ok=False), probs
    info = dict(base_info, header_ok=True, generation=hdr["generation"], sign_log=hdr["sign_log"]["hex"],
                created=hdr["created_hex"], prev_gen_created=hdr["prev_gen_created_hex"],
                created_iso=(hdr["created"] or {}).get("iso"), version=hdr["version"],
                major=hdr["major"], minor=hdr["minor"], page_size=hdr["page_size"],
                sectors=hdr["csec_file"], sector_size=hdr["cb_sec"])
    expect = hdr["csec_file"] * hdr["cb_sec"]
    if expect and len(data) < expect:
        probs.append(problem("LOG_TRUNCATED", name, "%d bytes, the header says %d (%d sectors of %d)"
                             % (len(data), expect, hdr["csec_file"], hdr["cb_sec"])))
    if checksums:
        info["sectors_checked"] = _segments(data, hdr, name, probs, use_numpy)
    return info, probs


def check_checkpoint(path, name=None, follow=False):
    """Check a checkpoint file (two 4 KiB copies). Returns ``(info, problems)``."""
    name = name or path
    probs = []
    try:
        with fs.open_regular(path, follow=follow) as f:
            data = f.read(2 * st.CHECKPOINT_COPY_SIZE)
    except (IOError, OSError) as e:
        return None, [open_problem(e, name)]
    copies = []
    for i in (0, 1):
        c = data[i * 4096:(i + 1) * 4096]
        copies.append(len(c) == 4096 and any(c) and st.u32(c, 0) == ck.xor_old(c))
    if not any(copies):
        probs.append(problem("CHK_UNREADABLE", name, "neither checkpoint copy has a valid checksum"))
        return None, probs
    for i in (0, 1):
        if not copies[i]:
            probs.append(problem("CHK_CHECKSUM", name, "%s copy fails its checksum" % ("primary", "shadow")[i]))
    good = data[0:4096] if copies[0] else data[4096:8192]
    if all(copies) and data[0:4096] != data[4096:8192]:
        probs.append(problem("CHK_COPIES_DIFFER", name, "both copies are valid but differ"))
    c = st.checkpoint(good)
    if c["filetype"] not in (0, 4):
        probs.append(problem("CHK_NOT_A_CHECKPOINT", name, "file type %d" % c["filetype"]))
    info = {"file": name, "generation": c["lgpos_checkpoint"]["generation"],
            "lgpos_checkpoint": c["lgpos_checkpoint"], "sign_log": c["sign_log"]["hex"],
            "sign_log_info": c["sign_log"]}
    return info, probs


def check_stream(logs, name_of, sign_log=None, base=None):
    """Sequence checks over the parsed logs of one stream (``logs``: list of (filename, kind, name_gen, info)).

    ``sign_log``: the expected signature (the database's); default the most common one.
    Returns ``(summary, problems)``; summary has gen_low, gen_high, signature, files, generations.
    """
    probs = []
    usable = [(fn, kind, ng, i) for fn, kind, ng, i in logs if i and i.get("header_ok")]
    for fn, kind, ng, i in usable:
        if kind == "numbered" and ng != i["generation"]:
            probs.append(problem("LOG_GENERATION_MISMATCH", name_of(fn),
                                 "name says generation %d, header says %d" % (ng, i["generation"]),
                                 generation=i["generation"]))
    if sign_log is None and usable:
        counts = {}
        for entry in usable:
            i = entry[3]
            counts[i["sign_log"]] = counts.get(i["sign_log"], 0) + 1
        sign_log = max(sorted(counts), key=lambda k: counts[k])
    for fn, _kind, _ng, i in usable:
        if sign_log is not None and i["sign_log"] != sign_log:
            probs.append(problem("LOG_SIGNATURE_MISMATCH", name_of(fn),
                                 "log signature %s differs from %s" % (i["sign_log"][:24], sign_log[:24]),
                                 generation=i["generation"]))
    bygen = {}
    for fn, kind, ng, i in usable:
        bygen.setdefault(i["generation"], []).append((fn, i))
    for g, lst in sorted(bygen.items()):
        if len(lst) > 1:
            probs.append(problem("LOG_DUPLICATE_GENERATION", name_of(lst[1][0]),
                                 "generation %d is also in %s" % (g, ", ".join(name_of(x[0]) for x in lst[:1])),
                                 generation=g))
    gens = sorted(bygen)
    summary = {"base_name": base, "gen_low": gens[0] if gens else None, "gen_high": gens[-1] if gens else None,
               "signature": sign_log, "count": len(usable), "generations": gens,
               "files": sorted(name_of(entry[0]) for entry in logs)}
    for a, b in zip(gens, gens[1:]):
        if b != a + 1:
            missing = "%d" % (a + 1) if b == a + 2 else "%d-%d" % (a + 1, b - 1)
            probs.append(problem("LOG_GAP", name_of(bygen[b][0][0]),
                                 "generation(s) %s missing between %d and %d" % (missing, a, b),
                                 generation=a + 1))
            continue
        prev, cur = bygen[a][0][1], bygen[b][0][1]
        if cur["prev_gen_created"] != prev["created"]:
            probs.append(problem("LOG_CHAIN_BROKEN", name_of(bygen[b][0][0]),
                                 "generation %d's previous-generation time %s is not generation %d's creation "
                                 "time %s" % (b, cur["prev_gen_created"], a, prev["created"]), generation=b))
    versions = set((e[3]["major"], e[3]["minor"]) for e in usable)
    if len(versions) > 1:
        probs.append(problem("LOG_VERSION_MISMATCH", name_of(usable[0][0]),
                             "major.minor versions %s differ within the stream"
                             % ", ".join("%d.%d" % v for v in sorted(versions))))
    return summary, probs


def missing_in_range(gens, low, high):
    have = set(gens)
    return [g for g in range(low, high + 1) if g not in have]


def compress_ranges(nums):
    out = []
    for n in sorted(nums):
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ", ".join("%d" % a if a == b else "%d-%d" % (a, b) for a, b in out)
