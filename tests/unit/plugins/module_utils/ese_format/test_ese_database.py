# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Database checks: real samples as the README describes them, and corruptions made here."""
import os
import shutil
import struct

import pytest

from ansible_collections.ese.backup.plugins.module_utils.ese_format import checksum as ck
from ansible_collections.ese.backup.plugins.module_utils.ese_format import database as dbm
from ansible_collections.ese.backup.plugins.module_utils.ese_format.verify import verify


def codes(probs):
    return sorted(set(p["code"] for p in probs))


def codes_of(res):
    return codes(res["problems"])


@pytest.mark.parametrize("use_numpy", [True, False])
def test_samples(testdata, singles, use_numpy):
    facts = [(os.path.join(testdata, "sets/srum-server2022-clean/SRUDB.dat"), 4096, 46, 30, 16),
             (os.path.join(testdata, "sets/srum-win11-dirty/SRUDB.dat"), 4096, 606, 482, 124),
             (singles["Windows.edb"], 32768, 766, 211, 555), (singles["basic.edb"], 4096, 254, 23, 231)]
    for path, cb, total, ok, zero in facts:
        info, probs = dbm.check_database(path, use_numpy=use_numpy)
        assert probs == [], path
        assert (info["page_size"], info["pages_checked"], info["pages_ok"], info["pages_zero"]) == (cb, total, ok, zero)
        assert info["bad_pages"] == []


def test_temp_database_is_not_a_backup_target(singles):
    """AD's temp.edb (JustCreated): ESE does not attach it and does not checksum its pages (sample README)."""
    info, probs = dbm.check_database(singles["temp.edb"])
    assert codes(probs) == ["DB_NOT_BACKUP_TARGET"] and probs[0]["severity"] == "error"
    assert info["page_size"] == 8192 and info["state_name"] == "JustCreated" and info["backup_target"] is False
    assert info["pages_checksummed"] is False and info["pages_checked"] == 0 and "without checksums" in info["note"]
    r = verify(singles["temp.edb"])
    assert r["valid"] is False and codes_of(r) == ["DB_NOT_BACKUP_TARGET"]


def test_temp_database_beside_a_database_is_skipped(tmp_path, singles, synth):
    """In a folder copy of an NTDS folder, temp.edb next to the real database is a warning only."""
    shutil.copyfile(singles["temp.edb"], str(tmp_path / "temp.edb"))
    synth.make_database(str(tmp_path / "ntds.dit"), 8192, pages=8)
    r = verify(str(tmp_path))
    assert r["valid"] and codes_of(r) == ["DB_TEMP_SKIPPED"] and r["problems"][0]["file"] == "temp.edb"


def test_synthetic_temp_database(tmp_path, synth):
    p = str(tmp_path / "tmp.edb")
    synth.make_database(p, 4096, pages=8, filetype=5)
    assert codes(dbm.check_database(p)[1]) == ["DB_NOT_BACKUP_TARGET"]


def test_dirty_32k_needs_logs_9_to_12(singles):
    info, _problems = dbm.check_database(singles["Windows.edb"], checksums=False)
    assert dbm.required_generations(info) == (9, 12)


def test_chunk_boundaries_do_not_matter(testdata):
    path = os.path.join(testdata, "sets/srum-win11-dirty/SRUDB.dat")
    a, _problems_a = dbm.check_database(path, chunk_bytes=3 * 4096, want_sha256=True)
    b, _problems_b = dbm.check_database(path, want_sha256=True)
    assert (a["pages_ok"], a["pages_zero"], a["sha256"]) == (b["pages_ok"], b["pages_zero"], b["sha256"])
    import hashlib
    with open(path, "rb") as f:
        assert a["sha256"] == hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def dirty_db(tmp_path, testdata):
    p = str(tmp_path / "SRUDB.dat")
    shutil.copyfile(os.path.join(testdata, "sets/srum-win11-dirty/SRUDB.dat"), p)
    return p


def _first_nonzero_page(path, cb=4096):
    with open(path, "rb") as f:
        data = f.read()
    return next(pg for pg in range(1, len(data) // cb - 1) if any(data[(pg + 1) * cb:(pg + 2) * cb]))


def test_single_bit_flip_in_a_page_is_correctable(dirty_db, synth):
    pg = _first_nonzero_page(dirty_db) + 5
    synth.corrupt(dirty_db, (pg + 1) * 4096 + 1234, 5)
    info, probs = dbm.check_database(dirty_db)
    assert codes(probs) == ["DB_PAGE_CORRECTABLE"]
    assert probs[0]["page"] == pg and info["bad_pages"] == [pg] and info["correctable_pages"] == [pg]


def test_multi_bit_damage_is_a_page_checksum_error(dirty_db, synth):
    pg = 300
    synth.corrupt(dirty_db, (pg + 1) * 4096 + 700, 1)
    synth.corrupt(dirty_db, (pg + 1) * 4096 + 1900, 6)
    info, probs = dbm.check_database(dirty_db)
    assert codes(probs) == ["DB_PAGE_CHECKSUM"] and probs[0]["page"] == pg and info["bad_pages"] == [pg]


def test_flipped_bit_in_header(dirty_db, synth):
    synth.corrupt(dirty_db, 300, 0)
    info, probs = dbm.check_database(dirty_db)
    assert codes(probs) == ["DB_HEADER_CHECKSUM"]
    assert info["state"] == 2 and info["pages_ok"] == 482      # read from the shadow


def test_flipped_bit_in_shadow(dirty_db, synth):
    synth.corrupt(dirty_db, 4096 + 60, 2)
    _info, probs = dbm.check_database(dirty_db)
    assert codes(probs) == ["DB_SHADOW_CHECKSUM"]


def test_both_headers_damaged(dirty_db, synth):
    synth.corrupt(dirty_db, 300, 0)
    synth.corrupt(dirty_db, 4096 + 300, 0)
    _info, probs = dbm.check_database(dirty_db)
    assert codes(probs) == ["DB_HEADER_UNREADABLE"]


def test_truncated_database(dirty_db):
    with open(dirty_db, "r+b") as f:
        f.truncate(os.path.getsize(dirty_db) - 1000)
    _info, probs = dbm.check_database(dirty_db)
    assert "DB_SIZE" in codes(probs)


def test_header_fields_resealed(dirty_db):
    with open(dirty_db, "r+b") as f:
        hdr = bytearray(f.read(4096))
        struct.pack_into("<I", hdr, 8, 0x600)          # format version
        struct.pack_into("<I", hdr, 52, 42)            # state
        st_hdr = ck.seal_header(hdr)
        f.seek(0)
        f.write(st_hdr)
        f.write(st_hdr)
    _info, probs = dbm.check_database(dirty_db, checksums=False)
    assert codes(probs) == ["DB_FORMAT_VERSION", "DB_STATE"]


@pytest.mark.parametrize("cb", [4096, 8192, 16384, 32768])
def test_synthetic_databases_every_size(tmp_path, synth, cb):
    p = str(tmp_path / "x.edb")
    synth.make_database(p, cb, pages=40, zero_every=4, old_format_every=5 if cb <= 8192 else 0)
    info, probs = dbm.check_database(p)
    assert probs == [] and info["pages_checked"] == 40 and info["pages_zero"] == 10 and info["pages_ok"] == 30
    synth.corrupt(p, (7 + 1) * cb + cb - 9, 4)
    info, probs = dbm.check_database(p)
    assert codes(probs) == ["DB_PAGE_CORRECTABLE"] and info["correctable_pages"] == [7]


def test_streamed_database_and_trailer(tmp_path, synth):
    p = str(tmp_path / "s.edb")
    synth.make_database(p, 8192, pages=20, state=2, gen_min=30, gen_max=31, streamed=True, gen_low=30, gen_high=33)
    info, probs = dbm.check_database(p)
    assert probs == [] and info["streamed"] and info["pages_checked"] == 20
    assert info["trailer"]["bkinfo"]["gen_high"] == 33
    assert dbm.required_generations(info) == (30, 33)
    size = os.path.getsize(p)
    synth.corrupt(p, size - 8192 + 100, 0)
    _info, probs = dbm.check_database(p)
    assert codes(probs) == ["DB_TRAILER_CHECKSUM"]


def test_trailer_signature_and_range(tmp_path, synth):
    p = str(tmp_path / "s.edb")
    synth.make_database(p, 4096, pages=8, state=2, gen_min=30, gen_max=30, streamed=True, gen_low=30, gen_high=33)
    with open(p, "r+b") as f:
        f.seek(-4096, 2)
        tr = bytearray(f.read())
        tr[92] ^= 1                                    # signLog
        struct.pack_into("<I", tr, 56, 29)              # bkinfo.genLow
        f.seek(-4096, 2)
        f.write(ck.seal_header(tr))
    _info, probs = dbm.check_database(p)
    assert codes(probs) == ["DB_TRAILER_RANGE", "DB_TRAILER_SIGNATURE"]


def test_missing_trailer(tmp_path, synth):
    p = str(tmp_path / "s.edb")
    synth.make_database(p, 4096, pages=8, state=2, gen_min=30, gen_max=30, streamed=True, gen_low=30, gen_high=31)
    with open(p, "r+b") as f:
        f.truncate(os.path.getsize(p) - 4096)
    _info, probs = dbm.check_database(p)
    assert "DB_TRAILER_CHECKSUM" in codes(probs)


def test_many_bad_pages_are_summarised(tmp_path, synth):
    p = str(tmp_path / "g.edb")
    synth.make_database(p, 4096, pages=200, zero_every=0)
    with open(p, "r+b") as f:
        f.seek(3 * 4096)
        f.write(os.urandom(120 * 4096))
    info, probs = dbm.check_database(p)
    page_probs = [x for x in probs if x["code"] == "DB_PAGE_CHECKSUM"]
    assert len(page_probs) == dbm.MAX_PAGE_PROBLEMS + 1 and "70 more" in page_probs[-1]["detail"]
    assert info["bad_pages"] == list(range(2, 122))


def test_empty_database_signature(dirty_db):
    with open(dirty_db, "r+b") as f:
        hdr = bytearray(f.read(4096))
        hdr[24:52] = bytes(28)
        hdr = ck.seal_header(hdr)
        f.seek(0)
        f.write(hdr)
        f.write(hdr)
    _info, probs = dbm.check_database(dirty_db, checksums=False)
    assert codes(probs) == ["DB_SIGNATURE"]


def test_not_a_database(tmp_path):
    p = tmp_path / "junk.bin"
    p.write_bytes(os.urandom(65536))
    _info, probs = dbm.check_database(str(p))
    assert codes(probs) == ["DB_HEADER_UNREADABLE"]
