# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore.Run through the Mono host: soft recovery of a streamed copy (-544), a failed hard recovery
undone, force putting the old files back, the service refusal, and a drill that finds a bad page."""
import os
import shutil

import pytest

from engine_host import run_host, srum_args


@pytest.fixture
def chain(dirty_set, dest):
    """A full backup and two incrementals of the dirty SRUM set."""
    sets = []
    for name, kind in (("full", "full"), ("inc1", "incremental"), ("inc2", "incremental")):
        r = run_host("Run", srum_args(dirty_set, dest, type=kind, set_name=name))
        assert r["backup_set"], r
        sets.append(r["backup_set"])
    return dict(src=dirty_set, sets=sets, db=os.path.join(dirty_set, "SRUDB.dat"))


def restore_args(c, target, **kw):
    a = {"backup_set": c["sets"][0], "incrementals": c["sets"][1:],
         "restore_map": [{"source": c["db"], "target": os.path.join(target, "SRUDB.dat")}],
         "log_path": os.path.join(target, "logs")}
    a.update(kw)
    return a


def test_plain_attach_of_a_streamed_copy_fails_with_544(chain, tmp_path):
    """Copying the streamed database back and attaching it is soft recovery: esent refuses (-544).
    ese.backup.run refuses to back such a copy up before attaching it."""
    live = str(tmp_path / "copied-back")
    shutil.copytree(chain["src"], live)
    shutil.copyfile(os.path.join(chain["sets"][0], "databases", "SRUDB.dat"), os.path.join(live, "SRUDB.dat"))
    db = os.path.join(live, "SRUDB.dat")
    r = run_host("Restore.Attach", {"databases": [db], "log_path": live, "base_name": "SRU"})
    assert r["failed_call"]["call"] == "JetAttachDatabase2W" and r["failed_call"]["err"] == -544, r
    r = run_host("Run", srum_args(live, str(tmp_path / "d2")))
    assert r["invalid"]["option"] == "databases" and "streamed backup copy" in r["invalid"]["msg"]
    # After hard recovery (Restore.Run) the same attach succeeds.
    target = str(tmp_path / "restored")
    r = run_host("Restore.Run", restore_args(chain, target))
    assert r["failed_call"] is None, r
    r = run_host("Restore.Attach", {"databases": [os.path.join(target, "SRUDB.dat")],
                                    "log_path": os.path.join(target, "logs"), "base_name": "SRU"})
    assert r["failed_call"] is None and r["restored"][0]["db_state_name"] == "clean_shutdown", r


def test_failed_hard_recovery_removes_what_it_wrote(chain, tmp_path):
    target = str(tmp_path / "restore")
    r = run_host("Restore.Run", restore_args(chain, target),
                 faults=[{"api": "JetExternalRestore2W", "call": 1, "err": -555}])
    assert r["failed_call"]["call"] == "JetExternalRestore2W" and r["failed_call"]["err"] == -555
    assert os.path.join(target, "SRUDB.dat") in r["written"]
    assert any(n.startswith("removed") for n in r["undone"])
    assert not os.path.exists(target)


def test_force_puts_the_old_files_back_when_recovery_fails(chain, tmp_path):
    target = tmp_path / "restore"
    (target / "logs").mkdir(parents=True)
    (target / "SRUDB.dat").write_bytes(b"old database")
    (target / "logs" / "SRU.chk").write_bytes(b"old checkpoint")
    r = run_host("Restore.Run", restore_args(chain, str(target)))
    assert r["refused"]["problem"] == "target_exists"
    r = run_host("Restore.Run", restore_args(chain, str(target), force=True),
                 faults=[{"api": "JetExternalRestore2W", "call": 1, "err": -1811}])
    assert r["failed_call"]["err"] == -1811
    assert (target / "SRUDB.dat").read_bytes() == b"old database"
    assert (target / "logs" / "SRU.chk").read_bytes() == b"old checkpoint"
    assert sorted(os.listdir(target)) == ["SRUDB.dat", "logs"]
    r = run_host("Restore.Run", restore_args(chain, str(target), force=True))
    assert r["failed_call"] is None and r["restored"][0]["db_state_name"] == "clean_shutdown", r
    assert not any(n.endswith(".before-restore") for n in os.listdir(target))


def test_running_service_is_refused(chain, tmp_path):
    r = run_host("Restore.Run", restore_args(chain, str(tmp_path / "t"), service="CertSvc"),
                 env={"ESE_BACKUP_TEST_RUNNING_SERVICES": "W32Time,CertSvc"})
    assert r["refused"]["problem"] == "service_running" and "CertSvc" in r["refused"]["msg"]
    assert not os.path.exists(str(tmp_path / "t"))


def _damage_page(full, bits):
    """Flips ``bits`` (offsets in one data page) of the full set's database; the manifest is updated to match."""
    import hashlib
    import json
    db = os.path.join(full, "databases", "SRUDB.dat")
    with open(db, "rb") as f:
        data = bytearray(f.read())
    pgno = next(i for i in range(3, len(data) // 4096 - 1) if any(data[(i + 1) * 4096:(i + 2) * 4096]))
    for off in bits:
        data[(pgno + 1) * 4096 + off] ^= 0x10
    with open(db, "wb") as f:
        f.write(data)
    mf = os.path.join(full, "manifest.json")
    m = json.load(open(mf))
    for e in m["files"]:
        if e["name"] == "databases/SRUDB.dat":
            e["sha256"] = hashlib.sha256(data).hexdigest()
    json.dump(m, open(mf, "w"))
    return pgno


def _drill(chain, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    r = run_host("Restore.Run", {"backup_set": chain["sets"][0], "incrementals": chain["sets"][1:], "drill": True,
                                 "scratch": str(scratch)})
    assert os.listdir(scratch) == []
    rep = r["drill_report"]
    assert rep["scratch_removed"] is True
    return rep, [c for c in rep["checks"] if c["check"] == "page_checksums"][0]


def test_drill_reports_a_bad_page_and_removes_its_scratch(chain, tmp_path):
    """A page damaged in the set (manifest updated to match) restores, but the drill's page pass fails."""
    pgno = _damage_page(chain["sets"][0], (200, 300))
    rep, pages = _drill(chain, tmp_path)
    assert rep["passed"] is False
    assert pages["ok"] is False and pages["bad_pages"] == [pgno]


def test_drill_passes_a_page_that_esent_corrects(chain, tmp_path):
    """A single-bit error that ESE's ECC corrects when it reads the page is no damage (the verifier's
    DB_PAGE_CORRECTABLE warning): the drill lists it and passes."""
    pgno = _damage_page(chain["sets"][0], (200,))
    rep, pages = _drill(chain, tmp_path)
    assert rep["passed"] is True, pages
    assert pages["ok"] is True and pages["bad_pages"] == [] and pages["correctable_pages"] == [pgno]
    assert "single-bit error" in pages["detail"]
