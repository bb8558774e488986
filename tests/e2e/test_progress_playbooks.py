# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A long copy under Ansible's async: ese.backup.run with async and poll waits for its job, reports the copy's
rising progress every poll, and applies its policy once the job has finished (docs/progress.md). The source is
a 2 GiB database whose pages past the sample's are unused (zero, sparse on disk); the set is removed after."""
import os
import shutil

from simulation import SHARE, SRU_DIR, checked_manifest

DB = SRU_DIR + "\\SRUDB.dat"
SIZE = 2 << 30

PLAY = """
- hosts: all
  gather_facts: false
  tasks:
    - name: big backup
      ese.backup.run:
        databases: ["%s"]
        log_path: '%s'
        base_name: SRU
        dest: '%s\\big'
        set_name: big
      async: 600
      poll: 2
""" % (DB.replace("\\", "\\\\"), SRU_DIR, SHARE)


def test_a_2_gib_copy_under_async_reports_rising_progress_and_finishes(sim, monkeypatch):
    sim.add_host("web01")
    sim.place_fixtures()
    db = sim.local("web01", DB)
    with open(db, "r+b") as f:
        f.truncate(SIZE)  # zero pages: unused, as esent reads them
    # Each 1 MiB written waits 4 ms more (no CPU), so that the copy runs for several polls.
    monkeypatch.setenv("ESE_BACKUP_TEST_WRITE_DELAY_MS", "4")
    set_dir = sim.local("web01", SHARE + "\\big\\big")
    try:
        res = sim.run(PLAY)
        assert res.rc == 0, res.stdout[-4000:]
        rec = res.task("web01", "big backup")
        r = rec["result"]
        assert rec["status"] == "ok" and r["changed"] is True and r["policy_row"] == "run.created", r.get("msg")
        # The job's own result, as its results file holds it (esesim writes an async job's results file with the
        # simulated host's local paths; a Windows host writes Windows paths).
        assert r["backup_set"] in (SHARE + "\\big\\big", set_dir) and r["finished"] is True and r["ansible_job_id"], r
        samples = r["progress"]
        done = [s["bytes_done"] for s in samples]
        assert len(set(done)) >= 3 and done == sorted(done), (done, res.stdout[-3000:])
        assert all(s["set_name"] == "big" and s["bytes_total"] >= SIZE for s in samples), samples
        assert any(s["file"] == "databases/SRUDB.dat" and 0 < s["percent"] < 100 and s["eta_s"]
                   for s in samples), samples
        assert "web01: ese.backup.run: big: " in res.stdout and "GiB" in res.stdout, res.stdout[-4000:]
        manifest = checked_manifest(set_dir)
        assert [f["size"] for f in manifest["files"] if f["role"] == "database"][0] >= SIZE
        assert "progress.json" not in os.listdir(set_dir)
    finally:
        shutil.rmtree(os.path.dirname(set_dir), ignore_errors=True)
        os.remove(db)


BACKGROUND = """
- hosts: all
  gather_facts: false
  tasks:
    - name: start
      ese.backup.run:
        databases: ["%s"]
        log_path: '%s'
        base_name: SRU
        dest: '%s\\big'
        set_name: big
      async: 600
      poll: 0
      register: job
    - name: progress
      ese.backup.info:
        progress: '%s\\big'
      loop: [1, 2, 3, 4]
      loop_control:
        pause: 1
    - name: done
      ese.backup.info:
        progress: '%s\\big'
      register: left
      until: left.progress | length == 0
      retries: 60
      delay: 1
""" % (DB.replace("\\", "\\\\"), SRU_DIR, SHARE, SHARE, SHARE)


def test_poll_0_returns_the_job_and_info_reports_the_copy_until_it_is_published(sim, monkeypatch):
    sim.add_host("web01")
    sim.place_fixtures()
    db = sim.local("web01", DB)
    with open(db, "r+b") as f:
        f.truncate(256 << 20)
    monkeypatch.setenv("ESE_BACKUP_TEST_WRITE_DELAY_MS", "30")
    set_dir = sim.local("web01", SHARE + "\\big\\big")
    try:
        res = sim.run(BACKGROUND)
        assert res.rc == 0, res.stdout[-4000:]
        start = res.task("web01", "start")["result"]
        assert start["ansible_job_id"] and start["finished"] in (0, False) and "trace" not in start, start
        assert start["progress_dest"] == SHARE + "\\big", start
        seen = [p for item in res.task("web01", "progress")["result"]["results"] for p in item["progress"]]
        done = [p["bytes_done"] for p in seen if p["bytes_done"] is not None]
        assert len(set(done)) >= 2 and done == sorted(done), seen
        assert all(p["set_name"] == "big" and p["status"] == "in_progress" for p in seen), seen
        assert res.task("web01", "done")["result"]["progress"] == []
        checked_manifest(set_dir)
    finally:
        shutil.rmtree(os.path.dirname(set_dir), ignore_errors=True)
        os.remove(db)
