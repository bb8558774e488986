# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Failures mid-backup: the run fails naming the JET error, the backup ends with abort, nothing is left."""
import os
import subprocess

import pytest

from engine_host import live_header, run_host, srum_args, trace_calls


def assert_aborted(r, dest, call, err):
    assert r["invalid"] is None
    assert r["failed_call"] is not None, r
    assert r["failed_call"]["call"] == call and r["failed_call"]["err"] == err, r["failed_call"]
    assert r["backup_started"] is True
    assert r["ended"] == "abort"
    assert r["backup_set"] is None and r["manifest"] is None
    ends = [c for c in trace_calls(r) if c[0] == "JetEndExternalBackupInstance2"]
    assert [c[2] for c in ends] == ["grbit=0x2"], ends
    if ends[0][1] != 0:  # the backup was already gone (the engine aborted it): terminate with StopBackup
        assert trace_calls(r)[-1][:3:2] == ("JetTerm2", "grbit=0x4")
    assert os.listdir(dest) == [], os.listdir(dest)  # no staging directory, no manifest
    assert trace_calls(r)[-1][0] == "JetTerm2"


@pytest.mark.parametrize("profile", ["esent10", "xp"])
def test_read_verify_failure_aborts(dirty_set, dest, profile):
    faults = [{"api": "JetReadFileInstance", "call": 2, "err": -1018}]
    r = run_host("Run", srum_args(dirty_set, dest, set_name="x", buffer_size=65536), faults=faults, profile=profile)
    assert_aborted(r, dest, "JetReadFileInstance", -1018)
    assert live_header(os.path.join(dirty_set, "SRUDB.dat"))["full_prev"] == (0, 0)
    assert r["logs_truncated"] is False
    assert "JetTruncateLogInstance" not in [c for c, _, _ in trace_calls(r)]


def test_stop_mid_copy_aborts(dirty_set, dest):
    faults = [{"api": "JetReadFileInstance", "call": 3, "err": -801, "every": True}]
    r = run_host("Run", srum_args(dirty_set, dest, set_name="x", buffer_size=65536), faults=faults)
    assert_aborted(r, dest, "JetReadFileInstance", -801)


def test_log_read_failure_aborts(dirty_set, dest):
    # first read of the first log (the database takes exactly 2 reads with a 4 MiB buffer: data, then 0 bytes);
    # a log read error aborts the backup inside esent, so End2(Abort) returns -520 and Term2(StopBackup) follows
    faults = [{"api": "JetReadFileInstance", "call": 3, "err": -612}]
    r = run_host("Run", srum_args(dirty_set, dest, set_name="x", buffer_size=4 << 20), faults=faults)
    assert_aborted(r, dest, "JetReadFileInstance", -612)
    assert ("JetEndExternalBackupInstance2", -520, "grbit=0x2") in trace_calls(r)


def test_truncate_failure_aborts(dirty_set, dest):
    faults = [{"api": "JetTruncateLogInstance", "call": 1, "err": -616}]
    r = run_host("Run", srum_args(dirty_set, dest, set_name="x"), faults=faults)
    assert_aborted(r, dest, "JetTruncateLogInstance", -616)


def test_end_failure_terminates_with_stop_backup(dirty_set, dest):
    faults = [{"api": "JetTruncateLogInstance", "call": 1, "err": -616},
              {"api": "JetEndExternalBackupInstance2", "call": 1, "err": -1003}]
    r = run_host("Run", srum_args(dirty_set, dest, set_name="x"), faults=faults)
    assert r["failed_call"]["call"] == "JetTruncateLogInstance"
    assert r["ended"] == "abort"
    t = trace_calls(r)
    assert ("JetEndExternalBackupInstance2", -1003, "grbit=0x2") in t
    assert t[-1][0] == "JetTerm2" and t[-1][2] == "grbit=0x4"
    assert os.listdir(dest) == []


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    rc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if rc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + rc.stderr.decode())
    yield str(mnt)
    subprocess.run(["umount", str(mnt)])


def test_full_destination_disk_aborts(dirty_set, small_fs):
    # The free-space preflight would refuse this destination; the test-only variable lets the run start
    # so that the write itself hits ENOSPC.
    r = run_host("Run", srum_args(dirty_set, small_fs, set_name="x"),
                 env={"ESE_BACKUP_TEST_IGNORE_FREE_SPACE": "1"})
    assert_aborted(r, small_fs, "WriteFile", -1808)


def test_full_destination_disk_is_refused_up_front(dirty_set, small_fs):
    r = run_host("Run", srum_args(dirty_set, small_fs, set_name="x"))
    assert r["invalid"]["option"] == "dest" and "free space" in r["invalid"]["msg"]
    assert r["backup_started"] is False
    assert os.listdir(small_fs) == []


def test_attach_in_use_is_reported_as_invalid_and_cleaned_up(dirty_set, dest):
    faults = [{"api": "JetAttachDatabase2W", "call": 1, "err": -1032}]
    r = run_host("Run", srum_args(dirty_set, dest, set_name="x"), faults=faults)
    assert r["failed_call"]["call"] == "JetAttachDatabase2W" and r["failed_call"]["err"] == -1032
    assert r["invalid"]["option"] == "databases" and "in use" in r["invalid"]["msg"]
    assert r["backup_started"] is False and r["ended"] is None
    t = trace_calls(r)
    assert t[-2][0] == "JetEndSession" and t[-1] == ("JetTerm2", 0, "grbit=0x1")
    assert os.listdir(dest) == []


def test_begin_failure_does_not_start_a_backup(dirty_set, dest):
    faults = [{"api": "JetBeginExternalBackupInstance", "call": 1, "err": -505}]
    r = run_host("Run", srum_args(dirty_set, dest, set_name="x"), faults=faults)
    assert r["failed_call"]["call"] == "JetBeginExternalBackupInstance" and r["failed_call"]["err"] == -505
    assert r["backup_started"] is False and r["ended"] is None
    assert "JetEndExternalBackupInstance2" not in [c for c, _, _ in trace_calls(r)]
    assert trace_calls(r)[-1][0] == "JetTerm2"
    assert os.listdir(dest) == []


def test_end_failure_after_truncation_keeps_the_only_copy_of_the_logs(dirty_set, dest):
    faults = [{"api": "JetEndExternalBackupInstance2", "call": 1, "err": -1329}]
    r = run_host("Run", srum_args(dirty_set, dest, set_name="x"), faults=faults)
    assert r["failed_call"]["call"] == "JetEndExternalBackupInstance2" and r["failed_call"]["err"] == -1329
    assert r["logs_truncated"] is True and r["backup_set"] is None
    kept = r["kept_staging"]
    assert os.path.dirname(kept) == dest and os.path.basename(kept) == ".x.partial"
    assert not os.path.exists(os.path.join(dest, "x"))  # nothing published
    assert sorted(os.listdir(os.path.join(kept, "logs"))) == ["SRU0005C.log"]
    assert not os.path.exists(os.path.join(dirty_set, "SRU00059.log"))  # truncated on the host
