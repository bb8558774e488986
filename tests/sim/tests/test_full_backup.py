# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Full backup path: stream layout (§4.3), log roll (§5.1), lists (§5.2-5.4),
truncation (§5.5) and header updates at End (§6.2)."""
import os
import struct

import esesim
from esesim import Header, parse_multisz, read_header


def full_backup(jet, s, truncate=True):
    err, raw, _ = jet.attach_info(s.inst)
    assert err == 0
    dbs = parse_multisz(raw)
    streams = {p: jet.read_all(s.inst, p) for p in dbs}
    err, raw, info = jet.log_info2(s.inst)
    assert err == 0
    logs = parse_multisz(raw)
    for p in logs:
        jet.read_all(s.inst, p)
    err, raw, _ = jet.truncate_info(s.inst)
    assert err == 0
    trunc = parse_multisz(raw)
    if truncate:
        assert jet.truncate(s.inst) == 0
    return dbs, streams, logs, info, trunc


def test_dirty_set_full_backup_stream_layout(jet, dirty_set):
    s = dirty_set
    src = open(s.db, "rb").read()
    assert jet.begin(s.inst) == 0
    dbs, streams, logs, info, trunc = full_backup(jet, s)
    assert dbs == [s.db]
    stream, size = streams[s.db]
    cb = 4096
    assert size == len(src) + cb == len(stream)          # (pgnoLast + 3) pages
    h0, h1 = Header(stream[:cb]), Header(stream[cb:2 * cb])
    assert h0.raw == h1.raw and h0.checksum_ok
    assert h0.bk["FullCur"]["low"] == 92 and h0.bk["FullCur"]["high"] == 0
    assert h0.bk["FullCur"]["mark"][0] == 92
    assert stream[2 * cb:len(src)] == src[2 * cb:]      # pages at their file offsets
    trailer = stream[-cb:]
    assert struct.unpack_from("<I", trailer, 0)[0] == esesim.xor_old(trailer)
    assert trailer[40:48] == stream[184:192]            # same mark as the header
    assert struct.unpack_from("<II", trailer, 56) == (92, 92)
    assert trailer[64:92] == h0.sign_db and trailer[92:120] == h0.sign_log
    assert logs == [s.log("SRU0005C.log")]
    assert (info.ulGenLow, info.ulGenHigh) == (92, 92)
    assert "".join(map(chr, info.szBaseName[:3])) == "SRU" and info.szBaseName[3] == 0
    assert trunc == [s.log(n) for n in ("SRU00059.log", "SRU0005A.log", "SRU0005B.log")]
    for n in ("SRU00059.log", "SRU0005A.log", "SRU0005B.log"):
        assert not os.path.exists(s.log(n))
    assert os.path.exists(s.log("SRU0005C.log"))
    assert jet.end(s.inst) == 0
    for h in read_header(s.db):
        assert h.checksum_ok
        assert (h.bk["FullPrev"]["low"], h.bk["FullPrev"]["high"]) == (92, 92)
        assert h.bk["FullPrev"]["mark"] == h0.bk["FullCur"]["mark"]
        assert h.bk["FullCur"]["low"] == 0


def test_log_roll_creates_valid_next_generation(jet, dirty_set):
    s = dirty_set
    old = esesim.log_header(s.log("SRU.log"))
    assert jet.begin(s.inst) == 0
    assert jet.log_info(s.inst)[0] == 0
    rolled = esesim.log_header(s.log("SRU0005C.log"))
    new = esesim.log_header(s.log("SRU.log"))
    assert rolled["raw"] == old["raw"]
    assert new["checksum_ok"] and new["gen"] == 93 and new["filetype"] == 3
    assert new["sign_log"] == old["sign_log"] and new["cb_sec"] == old["cb_sec"]
    assert new["tm_prev"] == old["tm_create"] and new["tm_create"] != old["tm_create"]
    assert new["tm_create"][6] & 1                       # fTimeIsUTC
    data = open(s.log("SRU.log"), "rb").read()
    assert len(data) == 65536 and not any(data[4096:])
