# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Database files: header, shadow, trailer and every page's checksum, with flat memory.

``check_database(path)`` reads the file once in page-aligned chunks (a few MB), checks every data
page (numpy when available) and, when asked, computes the SHA-256 in the same pass so that a backup
set's manifest hash costs no second read.
"""
from __future__ import annotations

import hashlib
import os
import queue
import threading

from ansible_collections.ese.backup.plugins.module_utils.ese_format import checksum as ck
from ansible_collections.ese.backup.plugins.module_utils.ese_format import files as fs
from ansible_collections.ese.backup.plugins.module_utils.ese_format import space as sp
from ansible_collections.ese.backup.plugins.module_utils.ese_format import structs as st
from ansible_collections.ese.backup.plugins.module_utils.ese_format.problems import problem, open_problem

CHUNK_BYTES = 4 << 20
MAX_PAGE_PROBLEMS = 50   # problems listed one by one per code and file; the rest are summarised
MAX_PAGE_LIST = 10000    # page numbers kept per kind in databases[].bad_pages (bad_page_count counts all)
PIPELINE_BUFFERS = 4     # chunks in flight between reading, hashing and checking (memory: this x CHUNK_BYTES)
STAGE_HOOK = None        # tests: called as hook(stage, event, chunk) around each chunk's hash and check


def looks_like_database(head):
    """True when the first bytes carry the DB magic (fast pre-check before a full detection)."""
    return len(head) >= 8 and st.u32(head, 4) == st.DB_MAGIC


def detect_header(head, size):
    """Detect the page size as ESE does: XOR checksum good and page-size field equal to the size.

    ``head`` is the first 64 KiB of the file (or all of it). Returns
    ``(page_size, primary_ok, shadow_ok)``; page_size is None when neither copy is valid.
    """
    found = None
    for cb in (4096, 8192, 16384, 32768, 2048):
        for copy in (0, 1):
            off = copy * cb
            if size < off + cb or len(head) < off + cb:
                continue
            pg = head[off:off + cb]
            field = st.u32(pg, 236) or 4096
            if field == cb and st.u32(pg, 0) == ck.xor_old(pg):
                found = cb
                break
        if found:
            break
    if not found:
        return None, False, False
    cb = found

    def ok(off):
        if len(head) < off + cb:
            return False
        pg = head[off:off + cb]
        return st.u32(pg, 0) == ck.xor_old(pg) and (st.u32(pg, 236) or 4096) == cb
    return cb, ok(0), ok(cb)


class _PageTally(object):
    def __init__(self):
        self.ok = 0
        self.pages = 0
        self.zero = 0
        self.bad = []
        self.correctable = []
        self.bad_pgno = []

        self.counts = {"bad": 0, "correctable": 0, "bad_pgno": 0}

    def add(self, r):
        """Merge one chunk's result; page lists stop growing at MAX_PAGE_LIST (counts go on)."""
        self.pages += r["pages"]
        self.ok += r["ok"]
        self.zero += len(r["zero"])
        for key in ("bad", "correctable", "bad_pgno"):
            self.counts[key] += len(r[key])
            lst = getattr(self, key)
            if len(lst) < MAX_PAGE_LIST:
                lst.extend(r[key][:MAX_PAGE_LIST - len(lst)])


def _stage(stage, event, index):
    """Report a pipeline stage's start or end of chunk ``index`` to ``STAGE_HOOK`` (tests observe the overlap)."""
    hook = STAGE_HOOK
    if hook is not None:
        hook(stage, event, index)


def _check_chunk(view, n, cb, use_numpy, first=1):
    """Check the ``n`` whole pages at the start of ``view`` (a writable buffer, modified in place)."""
    if use_numpy:
        return ck.check_pages(ck.np.frombuffer(view[: n * cb], dtype=ck.np.uint8), first, cb)
    return ck.check_pages_scalar(view[: n * cb], first, cb)


def _scan(f, npages, cb, checksums, hasher, use_numpy, chunk_bytes, tally):
    """Read ``npages`` data pages from the file's position; hash what is read and check the pages.

    A pipeline of three stages joined by queues, each on its own thread: ``read`` (into one of a fixed
    ring of PIPELINE_BUFFERS buffers, so memory is flat), ``hash`` (SHA-256, in file order) and ``check``
    (page checksums, in place, after the hash has seen the buffer). hashlib and numpy release the GIL
    on large buffers, so the hash of chunk k+1 runs while chunk k is checked: with SHA extensions the
    whole pass costs about one SHA-256 of the file. Returns nothing; fills ``tally``. An error in any stage
    stops the others, and is raised here once every thread has ended.
    """
    per = max(1, chunk_bytes // cb)
    if not checksums or npages <= per:       # nothing to check, or one chunk: nothing to overlap
        view = memoryview(bytearray(min(per, max(npages, 1)) * cb))
        remaining, k = npages, 0
        while remaining > 0:
            want = min(per, remaining)
            got = f.readinto(view[: want * cb]) or 0
            if hasher is not None:
                _stage("hash", "start", k)
                hasher.update(view[:got])
                _stage("hash", "end", k)
            if checksums and got >= cb:
                _stage("check", "start", k)
                tally.add(_check_chunk(view, got // cb, cb, use_numpy))
                _stage("check", "end", k)
            else:
                tally.pages += got // cb
            remaining -= want
            k += 1
            if got < want * cb:
                break                           # the file ended early (it shrank)
        return
    ring = [bytearray(per * cb) for _i in range(PIPELINE_BUFFERS)]

    def check(buf, first, n):
        return _check_chunk(memoryview(buf), n, cb, use_numpy, first)
    free = queue.Queue()
    for buf in ring:
        free.put(buf)
    to_hash = queue.Queue()
    to_check = queue.Queue()
    failed = []
    stop = threading.Event()

    def reader():
        k, first, remaining = 0, 1, npages
        try:
            while remaining > 0 and not stop.is_set():
                try:
                    buf = free.get(timeout=0.2)
                except queue.Empty:
                    continue
                want = min(per, remaining)
                got = f.readinto(memoryview(buf)[: want * cb]) or 0
                to_hash.put((buf, k, first, got // cb, got))
                k += 1
                first += got // cb
                remaining -= want
                if got < want * cb:
                    break                       # the file ended early (it shrank): what was read is hashed
        except BaseException as e:            # pylint: disable=broad-except
            failed.append(e)
        to_hash.put(None)

    def hash_stage():
        while True:
            item = to_hash.get()
            if item is None:
                break
            if hasher is not None and not stop.is_set():
                try:
                    _stage("hash", "start", item[1])
                    hasher.update(memoryview(item[0])[: item[4]])
                    _stage("hash", "end", item[1])
                except BaseException as e:    # pylint: disable=broad-except
                    failed.append(e)
                    stop.set()
            to_check.put(item)
        to_check.put(None)

    def check_stage():
        while True:
            item = to_check.get()
            if item is None:
                break
            buf, k, first, n = item[:4]
            if n and not stop.is_set():
                try:
                    _stage("check", "start", k)
                    tally.add(check(buf, first, n))
                    _stage("check", "end", k)
                except BaseException as e:    # pylint: disable=broad-except
                    failed.append(e)
                    stop.set()
            free.put(buf)

    threads = [threading.Thread(target=t, name="ese-verify-" + t.__name__) for t in (reader, hash_stage)]
    for t in threads:
        t.daemon = True
        t.start()
    try:
        check_stage()
    finally:
        stop.set()
        for t in threads:
            t.join()
    if failed:
        raise failed[0]


def check_database(path, name=None, checksums=True, want_sha256=False, use_numpy=None,
                   chunk_bytes=CHUNK_BYTES, in_set=False, follow=False):
    """Check one database file. Returns ``(info, problems)``.

    ``info`` holds the header facts, the page counts and ``bad_pages``; ``problems`` uses the codes
    of ``problems.CODES``. ``name`` is the file name used in problems (default: ``path``).
    ``in_set``: the file is a backup set's database (a JustCreated database is then a problem).
    """
    name = name or path
    if use_numpy is None:
        use_numpy = ck.HAS_NUMPY
    probs = []
    info = {"file": name, "page_size": None, "state": None, "state_name": None, "pages_total": 0,
            "pages_checked": 0, "pages_ok": 0, "pages_zero": 0, "bad_pages": [], "correctable_pages": [],
            "pages_checksummed": bool(checksums), "streamed": False, "size": None}
    try:
        f = fs.open_regular(path, follow=follow)
    except (IOError, OSError) as e:
        probs.append(open_problem(e, name))
        return info, probs
    size = os.fstat(f.fileno()).st_size
    info["size"] = size
    hasher = hashlib.sha256() if want_sha256 else None
    with f:
        head = f.read(65536)
        cb, p_ok, s_ok = detect_header(head, size)
        if cb is None:
            probs.append(problem("DB_HEADER_UNREADABLE", name,
                                 "no page size from 2 to 32 KiB gives a valid header or shadow header checksum"))
            if hasher is not None:
                hasher.update(head)
                for blk in iter(lambda: f.read(chunk_bytes), b""):
                    hasher.update(blk)
                info["sha256"] = hasher.hexdigest()
            return info, probs
        if not p_ok:
            probs.append(problem("DB_HEADER_CHECKSUM", name, "primary header checksum fails; the shadow is valid"))
        if not s_ok:
            probs.append(problem("DB_SHADOW_CHECKSUM", name, "shadow header checksum fails; the primary is valid"))
        if p_ok and s_ok and head[:cb] != head[cb:2 * cb]:
            probs.append(problem("DB_SHADOW_MISMATCH", name, "header and shadow are valid but not identical"))
        hdr = st.db_header(head[0:cb] if p_ok else head[cb:2 * cb])
        info.update({
            "page_size": cb, "state": hdr["state"], "state_name": hdr["state_name"],
            "format_version": "0x%x" % hdr["format_version"],
            "format": "0x%x.%d.%d" % (hdr["format_version"], hdr["update_major"], hdr["update_minor"]),
            "filetype": hdr["filetype_name"], "sign_db": hdr["sign_db"]["hex"],
            "sign_log": hdr["sign_log"]["hex"], "sign_log_info": hdr["sign_log"],
            "gen_min_required": hdr["gen_min_required"], "gen_max_required": hdr["gen_max_required"],
            "gen_max_committed": hdr["gen_max_committed"], "repair_count": hdr["repair_count"],
            "bad_checksum_count": hdr["bad_checksum"], "streamed": hdr["streamed"],
            "bkinfo_full_prev": hdr["bkinfo_full_prev"], "bkinfo_inc_prev": hdr["bkinfo_inc_prev"],
            "bkinfo_full_cur": hdr["bkinfo_full_cur"], "bkinfo_copy_prev": hdr["bkinfo_copy_prev"],
            "bkinfo_diff_prev": hdr["bkinfo_diff_prev"], "os_version": hdr["os_version"],
        })
        if hdr["magic"] != st.DB_MAGIC:
            probs.append(problem("DB_BAD_MAGIC", name, "magic is 0x%08x" % hdr["magic"]))
        if hdr["format_version"] != st.DB_VERSION:
            probs.append(problem("DB_FORMAT_VERSION", name, "format version 0x%x" % hdr["format_version"]))
        if hdr["filetype"] not in (0, 1, 2, 5):
            probs.append(problem("DB_FILETYPE", name, "file type %d (%s)" % (hdr["filetype"], hdr["filetype_name"])))
        if hdr["sign_db"]["zero"]:
            probs.append(problem("DB_SIGNATURE", name, "signDb is all zero"))
        if hdr["sign_log"]["zero"] and hdr["repair_count"]:
            info["note"] = ("repaired with esentutl /p (repair count %d): its log signature is empty, so no "
                            "earlier log belongs to it" % hdr["repair_count"])
        if hdr["state"] not in st.DB_STATES:
            probs.append(problem("DB_STATE", name, "unknown database state %d" % hdr["state"]))
        elif in_set and hdr["state"] in (1, 4, 6, 8):
            probs.append(problem("DB_STATE", name, "state %s is not one a backup holds" % hdr["state_name"]))
        if hdr["bad_checksum"]:
            probs.append(problem("DB_BAD_CHECKSUM_COUNT", name,
                                 "the header records %d earlier checksum failures" % hdr["bad_checksum"]))
        if size % cb or size < 2 * cb:
            probs.append(problem("DB_SIZE", name, "size %d is not a whole number of %d-byte pages (>= 2)" % (size, cb)))
        npages = max(0, size // cb - 2)
        if hdr["streamed"]:
            npages = max(0, npages - 1)
            f.seek((npages + 2) * cb)
            tr = f.read(cb)
            _check_trailer(tr, cb, hdr, name, probs, info)
        info["pages_total"] = npages
        if npages == 0 and size >= 2 * cb:
            probs.append(problem("DB_NO_PAGES", name, "%d bytes: the header and shadow header%s, no data page"
                                 % (size, " and the trailer" if hdr["streamed"] else "")))
        # Temporary databases (and never-finished ones) are not checksummed: ESE's FBFIDatabasePage()
        # (dev/ese/src/ese/bf.cxx) leaves temp databases out, and ErrDBReadHeaderCheckConsistency()
        # (dev/ese/src/ese/db.cxx) refuses to attach a database whose state is not CleanShutdown (a
        # JustCreated one never becomes one by recovery). They are not something to back up or restore.
        temp = hdr["filetype"] == 5 or hdr["state"] == 1
        info["backup_target"] = not temp
        if temp:
            info["pages_checksummed"] = False
            info["note"] = ("temporary or just-created database (state %s, file type %s): not a backup target; "
                            "ESE writes its data pages without checksums, so they are not checked"
                            % (hdr["state_name"], hdr["filetype_name"]))
            probs.append(problem("DB_NOT_BACKUP_TARGET", name,
                                 "state %s, file type %s: ESE does not attach it, and its pages carry no checksums"
                                 % (hdr["state_name"], hdr["filetype_name"])))
        do_pages = checksums and not temp
        if not do_pages and hasher is None:
            return info, probs
        f.seek(0 if hasher is not None else 2 * cb)
        if hasher is not None:
            hasher.update(f.read(2 * cb))
        tally = _PageTally()
        try:
            _scan(f, npages, cb, do_pages, hasher, use_numpy, chunk_bytes, tally)
        except (IOError, OSError) as e:
            probs.append(problem("READ_ERROR", name, str(e)))
        if hasher is not None:
            for blk in iter(lambda: f.read(chunk_bytes), b""):   # trailer and any partial page
                hasher.update(blk)
            info["sha256"] = hasher.hexdigest()
        unowned = []
        if do_pages and (tally.bad or tally.bad_pgno):
            owned = sp.owned_last_page(lambda pg: _read_page(f, pg, cb, npages), cb)
            info["owned_last_page"] = owned
            if owned is not None:
                unowned = sorted(pg for pg in tally.bad + tally.bad_pgno if pg > owned)
                gone = set(unowned)
                for key in ("bad", "bad_pgno"):
                    lst = getattr(tally, key)
                    kept = [pg for pg in lst if pg not in gone]
                    tally.counts[key] -= len(lst) - len(kept)
                    setattr(tally, key, kept)
    if do_pages:
        info["pages_checked"] = tally.pages
        info["pages_ok"] = tally.ok
        info["pages_zero"] = tally.zero
        info["bad_pages"] = sorted(tally.bad + tally.correctable + tally.bad_pgno + unowned)[:MAX_PAGE_LIST]
        info["correctable_pages"] = sorted(tally.correctable)
        info["unowned_bad_pages"] = unowned
        info["bad_page_count"] = sum(tally.counts.values()) + len(unowned)
        for code, key, text in (("DB_PAGE_CHECKSUM", "bad", "checksum mismatch"),
                                ("DB_PAGE_CORRECTABLE", "correctable", "single-bit error (correctable by ESE's ECC)"),
                                ("DB_PAGE_NUMBER", "bad_pgno", "page number field does not match")):
            pages = sorted(getattr(tally, key))
            for pg in pages[:MAX_PAGE_PROBLEMS]:
                probs.append(problem(code, name, "page %d (offset %d): %s" % (pg, (pg + 1) * cb, text), page=pg))
            if tally.counts[key] > MAX_PAGE_PROBLEMS:
                probs.append(problem(code, name, "%d more pages: %s (see databases[].bad_pages)"
                                     % (tally.counts[key] - MAX_PAGE_PROBLEMS, text)))
        text = "damaged, beyond the space the database owns (its last extent ends at page %s)" % (
            info.get("owned_last_page"),)
        for pg in unowned[:MAX_PAGE_PROBLEMS]:
            probs.append(problem("DB_PAGE_UNOWNED", name, "page %d (offset %d): %s" % (pg, (pg + 1) * cb, text),
                                 page=pg))
        if len(unowned) > MAX_PAGE_PROBLEMS:
            probs.append(problem("DB_PAGE_UNOWNED", name, "%d more pages: %s (see databases[].unowned_bad_pages)"
                                 % (len(unowned) - MAX_PAGE_PROBLEMS, text)))
    return info, probs


def _read_page(f, pgno, cb, npages):
    """Data page ``pgno`` (at offset (pgno + 1) * cb), or None outside the file's data pages."""
    if pgno < 1 or pgno > npages:
        return None
    f.seek((pgno + 1) * cb)
    b = f.read(cb)
    return b if len(b) == cb else None


def _check_trailer(tr, cb, hdr, name, probs, info):
    t = st.trailer(tr) if len(tr) == cb else None
    info["trailer"] = t
    if t is None or st.u32(tr, 0) != ck.xor_old(tr) or not any(tr):
        probs.append(problem("DB_TRAILER_CHECKSUM", name,
                             "the backup trailer (last page) is missing or fails its checksum"))
        return
    if t["sign_db"]["hex"] != hdr["sign_db"]["hex"] or t["sign_log"]["hex"] != hdr["sign_log"]["hex"]:
        probs.append(problem("DB_TRAILER_SIGNATURE", name, "trailer signDb/signLog differ from the header's"))
    b = t["bkinfo"]
    cur = hdr["bkinfo_full_cur"]
    if b["mark_hex"] != cur["mark_hex"] or b["gen_low"] != cur["gen_low"]:
        probs.append(problem("DB_TRAILER_RANGE", name,
                             "trailer backup mark/genLow (%d) differ from the header's bkinfoFullCur (%d)"
                             % (b["gen_low"], cur["gen_low"])))
    elif b["gen_high"] and b["gen_high"] < b["gen_low"]:
        probs.append(problem("DB_TRAILER_RANGE", name,
                             "trailer generation range %d-%d is inverted" % (b["gen_low"], b["gen_high"])))


def required_generations(info):
    """Inclusive (low, high) log generations the database needs, or None when it needs none."""
    if info.get("page_size") is None:
        return None
    if info.get("streamed"):
        t = info.get("trailer") or {}
        bk = t.get("bkinfo") or info.get("bkinfo_full_cur") or {}
        low = bk.get("gen_low") or info["bkinfo_full_cur"]["gen_low"]
        high = max([low, bk.get("gen_high") or 0, t.get("gen_max_required") or 0,
                    info.get("gen_max_required") or 0])
        return low, high
    if info.get("state") in (2, 7) and info.get("gen_min_required", 0) > 0:
        low = info["gen_min_required"]
        return low, max(low, info.get("gen_max_required") or low)
    return None
