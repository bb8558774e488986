# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Header, log and checkpoint parsing against the README facts of the real samples."""
import os

import pytest

from ansible_collections.ese.backup.plugins.module_utils.ese_format import structs as st
from ansible_collections.ese.backup.plugins.module_utils.ese_format import logs as lgm


def _read(path, n):
    with open(path, "rb") as f:
        return f.read(n)


@pytest.mark.parametrize("rel,cb,fmt,state,gens", [
    ("sets/srum-server2022-clean/SRUDB.dat", 4096, (0x620, 0xb4, 400), 3, (0, 0)),
    ("sets/srum-win11-dirty/SRUDB.dat", 4096, (0x620, 0xc8, 440), 2, (92, 92)),
])
def test_db_header_facts(testdata, rel, cb, fmt, state, gens):
    h = st.db_header(_read(os.path.join(testdata, rel), cb))
    assert h["magic"] == st.DB_MAGIC and h["page_size"] == cb
    assert (h["format_version"], h["update_major"], h["update_minor"]) == fmt
    assert h["state"] == state and (h["gen_min_required"], h["gen_max_required"]) == gens
    assert h["filetype"] == 1 and not h["streamed"]


def test_single_db_headers(singles):
    h = st.db_header(_read(singles["Windows.edb"], 32768))
    assert (h["page_size"], h["state"], h["gen_min_required"], h["gen_max_required"]) == (32768, 2, 9, 12)
    assert (h["update_major"], h["update_minor"]) == (0x6e, 240)
    h = st.db_header(_read(singles["temp.edb"], 8192))
    assert (h["page_size"], h["state"], h["state_name"]) == (8192, 1, "JustCreated")
    h = st.db_header(_read(singles["basic.edb"], 4096))
    assert (h["page_size"], h["state"], h["update_major"]) == (4096, 3, 0x14)


def test_clean_set_lgpos_consistent(testdata):
    h = st.db_header(_read(os.path.join(testdata, "sets/srum-server2022-clean/SRUDB.dat"), 4096))
    assert h["lgpos_consistent"] == {"generation": 2, "isec": 1, "ib": 1542}


def test_log_headers(testdata):
    d = os.path.join(testdata, "sets/srum-win11-dirty")
    db = st.db_header(_read(os.path.join(d, "SRUDB.dat"), 4096))
    hs = {}
    for fn in ("SRU00059.log", "SRU0005A.log", "SRU0005B.log", "SRU.log", "SRUtmp.log"):
        h = st.log_header(_read(os.path.join(d, fn), 4096))
        assert h["version"] == "8.4000.90.200" and h["filetype"] == 3
        assert (h["cb_sec"], h["csec_header"], h["csec_file"]) == (4096, 1, 16)
        assert h["sign_log"]["hex"] == db["sign_log"]["hex"]
        hs[fn] = h
    assert [hs[f]["generation"] for f in ("SRU00059.log", "SRU0005A.log", "SRU0005B.log", "SRU.log")] == [89, 90, 91, 92]
    assert hs["SRUtmp.log"]["generation"] == 80
    assert hs["SRU0005A.log"]["prev_gen_created_hex"] == hs["SRU00059.log"]["created_hex"]
    assert hs["SRU.log"]["prev_gen_created_hex"] == hs["SRU0005B.log"]["created_hex"]


def test_first_generation_has_no_prev_time(testdata):
    h = st.log_header(_read(os.path.join(testdata, "sets/srum-server2022-clean/SRU00001.log"), 4096))
    assert h["generation"] == 1 and h["prev_gen_created"] is None and h["flags"] == 2


@pytest.mark.parametrize("rel,gen,isec", [("sets/srum-server2022-clean/SRU.chk", 2, 2),
                                          ("sets/srum-win11-dirty/SRU.chk", 92, 8)])
def test_checkpoints(testdata, rel, gen, isec):
    info, probs = lgm.check_checkpoint(os.path.join(testdata, rel))
    assert probs == []
    assert info["lgpos_checkpoint"] == {"generation": gen, "isec": isec, "ib": 0}
    db = st.db_header(_read(os.path.join(testdata, os.path.dirname(rel), "SRUDB.dat"), 4096))
    assert info["sign_log"] == db["sign_log"]["hex"]


def test_ad_checkpoint(singles):
    info, probs = lgm.check_checkpoint(singles["edb.chk"])
    assert probs == []
    assert info["lgpos_checkpoint"] == {"generation": 3, "isec": 755, "ib": 0}
    assert info["sign_log_info"]["random"] == 754851477
    assert info["sign_log_info"]["created"] == "2020-09-17T17:55:52.312Z"


def test_logtime_round_trip():
    t = st.pack_logtime(2024, 2, 29, 23, 59, 58, 999)
    assert st.logtime(t)["iso"] == "2024-02-29T23:59:58.999Z"
    assert st.logtime(bytes(8)) is None


@pytest.mark.parametrize("name,kind,gen", [
    ("SRU0005A.log", "numbered", 0x5A), ("edb00001.log", "numbered", 1), ("E0000000001.log", "numbered", 1),
    ("SRU.log", "current", None), ("SRUtmp.log", "tmp", None), ("edbtmp.log", "tmp", None),
    ("SRUres00001.jrs", "reserve", None), ("notalog.log", "invalid", None), ("SRUDB.dat", None, None),
    ("edb0000G.log", "invalid", None),
])
def test_log_name_classes(name, kind, gen):
    k, _base, g = lgm.classify_log_name(name)
    assert (k, g) == (kind, gen)


def test_log_file_name():
    assert lgm.log_file_name("SRU", 0x5A) == "SRU0005A.log"
    assert lgm.log_file_name("E00", 0x100000) == "E0000100000.log"
