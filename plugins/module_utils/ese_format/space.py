# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The space a database owns: the last page of the last extent of its owned-extent (OE) tree.

A database file can be longer than the space its root owns (the file grows ahead of use, or was not
shrunk); pages past the last owned extent hold no data. ``esentutl /k`` still reads them, but a
damaged page there loses nothing, so the verifier reports it with a lower severity.

Sources (github.com/microsoft/Extensible-Storage-Engine):

- ``dev/ese/src/inc/daeconst.hxx``: the database's root is ``pgnoSystemRoot`` = 1;
- ``dev/ese/src/inc/space.hxx`` (SPACE_HEADER): the root page's external header (tag 0) holds
  ``cpgPrimary`` (u32), ``pgnoParent`` (u32), flags (u32; bit 0 = multiple extents) and, for
  multiple extents, ``pgnoOE`` (u32) at offset 12;
- ``dev/ese/src/ese/space.cxx`` (SPEXTKEY): an OE node's key is the extent's last page number, 4 bytes
  big-endian (a 5-byte key, flags byte first, is the pool format of available-extent trees); its data
  is the extent's page count;
- ``dev/ese/src/inc/cpage.hxx`` and ``dev/ese/src/ese/cpage.cxx`` (PGHDR, PGHDR2, TAG): a 40-byte page
  header (80 bytes for 16/32 KiB pages), the tag array at the end of the page (4 bytes per tag:
  cb and ib, 13 bits on small pages with the node flags in ib's top 3 bits, 15 bits on large pages
  with the flags in the top 3 bits of the node's first u16), ``itagState & 0x0fff`` tags;
- ``dev/ese/src/inc/node.hxx``: node flags (0x4 = compressed: a u16 prefix length comes first), then
  the u16 suffix length, the key suffix and the data. A parent page's nodes point at their child
  with a u32 page number in the data.

Everything is read defensively: when a page of the space tree is damaged or not what it should be,
the answer is None (unknown), and every damaged page keeps its full severity.
"""
from __future__ import annotations

import struct

from ansible_collections.ese.backup.plugins.module_utils.ese_format import checksum as ck

PGNO_SYSTEM_ROOT = 1
OBJID_SYSTEM_ROOT = 1
FLAG_ROOT = 0x1
FLAG_LEAF = 0x2
FLAG_SPACE_TREE = 0x20
FLAG_MULTIPLE_EXTENT = 0x1
ND_COMPRESSED = 0x4
MAX_DEPTH = 8
MAX_LEAF_HOPS = 64


def header_size(cb):
    return 40 if cb <= 8192 else 80


def nodes(page, cb):
    """``(external_header, [(flags, key, data), ...])`` of a page; raises ValueError when malformed."""
    small = cb <= 8192
    mask = 0x1FFF if small else 0x7FFF
    hdr = header_size(cb)
    ntag = struct.unpack_from("<H", page, 34)[0] & 0x0FFF
    if ntag == 0 or hdr + 4 * ntag > cb:
        raise ValueError("no tags")
    lines = []
    for i in range(ntag):
        c, ib = struct.unpack_from("<HH", page, cb - 4 * (i + 1))
        flags = ib >> 13 if small else 0
        c &= mask
        ib &= mask
        start = hdr + ib
        if start + c > cb - 4 * ntag:
            raise ValueError("tag %d outside the page" % i)
        line = bytes(page[start:start + c])
        if not small and c >= 2:
            flags = struct.unpack_from("<H", line, 0)[0] >> 13
        lines.append((flags, line))
    ext = lines[0][1]
    out = []
    for flags, line in lines[1:]:
        off = 0
        prefix = b""
        if flags & ND_COMPRESSED:
            cpre = struct.unpack_from("<H", line, off)[0] & 0x1FFF
            off += 2
            if cpre > len(ext):
                raise ValueError("prefix longer than the external header")
            prefix = ext[:cpre]
        if off + 2 > len(line):
            raise ValueError("short node")
        csuf = struct.unpack_from("<H", line, off)[0] & 0x1FFF
        off += 2
        if off + csuf > len(line):
            raise ValueError("key past the node")
        out.append((flags, prefix + line[off:off + csuf], line[off + csuf:]))
    return ext, out


def _good(page, pgno, cb):
    return page is not None and len(page) == cb and ck.page_status(page, pgno, cb) == ck.OK


def owned_last_page(read_page, cb):
    """The last page the database owns, or None when its space tree cannot be read with confidence.

    ``read_page(pgno)`` returns the ``cb`` bytes of data page ``pgno`` (or None past the end).
    """
    try:
        root = read_page(PGNO_SYSTEM_ROOT)
        if not _good(root, PGNO_SYSTEM_ROOT, cb) or not struct.unpack_from("<I", root, 36)[0] & FLAG_ROOT:
            return None
        ext, _lines = nodes(root, cb)
        if len(ext) < 16:
            return None
        cpg_primary, _parent, sph_flags, pgno_oe = struct.unpack_from("<IIII", ext, 0)
        if not sph_flags & FLAG_MULTIPLE_EXTENT:
            return PGNO_SYSTEM_ROOT + cpg_primary - 1 if cpg_primary else None
        pgno = pgno_oe
        seen = set()
        for _depth in range(MAX_DEPTH + MAX_LEAF_HOPS):
            if pgno in seen or pgno < 1:
                return None
            seen.add(pgno)
            page = read_page(pgno)
            if not _good(page, pgno, cb):
                return None
            objid, = struct.unpack_from("<I", page, 24)
            flags, = struct.unpack_from("<I", page, 36)
            if objid != OBJID_SYSTEM_ROOT or not flags & FLAG_SPACE_TREE:
                return None
            _ext, lines = nodes(page, cb)
            if not lines:
                return None
            if flags & FLAG_LEAF:
                nxt, = struct.unpack_from("<I", page, 20)
                if nxt:                     # not yet the rightmost leaf
                    pgno = nxt
                    continue
                last = None
                for _f, key, _data in lines:
                    if len(key) in (4, 5):
                        v = struct.unpack(">I", key[-4:])[0]
                        last = v if last is None or v > last else last
                    else:
                        return None
                return last
            data = lines[-1][2]             # the rightmost child
            if len(data) < 4:
                return None
            pgno, = struct.unpack_from("<I", data, 0)
        return None
    except (ValueError, struct.error):
        return None
