# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""End downgraded by ESE, on both profiles (Microsoft's dev/ese/src/ese/backup.cxx,
BACKUP_CONTEXT::ErrBKExternalBackupCleanUp): End Normal before the log phase is an abort by the caller, End after
JetStopBackupInstance an abort by the server; later builds return JET_errSuccess, XP the abort code; the header is
not updated. An incremental needs a recorded FullPrev (ErrLGCheckIncrementalBackup). The engine's header proof
reads JetGetDatabaseFileInfoW(JET_DbInfoMisc) on the attached database after End: it sees End's update."""
import struct

import pytest

from esesim import E, parse_multisz, read_header
from test_full_backup import full_backup

PROFILES = ("esent10", "xp")
BK = slice(136, 468)      # every BKINFO field of the header (FullPrev .. DiffPrev)


def bk_bytes(s):
    with open(s.db, "rb") as f:
        return f.read(4096)[BK]


@pytest.fixture(params=PROFILES)
def backup(request, with_env):
    s = with_env("clean", ESESIM_PROFILE=request.param)
    s.xp = request.param == "xp"
    return s


def test_end_normal_before_get_log_info(jet, backup):
    s = backup
    before = bk_bytes(s)
    assert jet.begin(s.inst) == 0
    assert jet.end(s.inst) == (E["BackupAbortByCaller"] if s.xp else 0)
    assert bk_bytes(s) == before
    assert jet.end(s.inst) == E["NoBackup"]          # the backup is over either way


def test_end_normal_after_a_database_only_copy(jet, backup):
    s = backup
    before = bk_bytes(s)
    assert jet.begin(s.inst) == 0
    err, raw, _ = jet.attach_info(s.inst)
    assert err == 0
    for p in parse_multisz(raw):
        jet.read_all(s.inst, p)
    assert jet.end(s.inst) == (E["BackupAbortByCaller"] if s.xp else 0)
    assert bk_bytes(s) == before


def test_end_after_a_stop(jet, backup):
    s = backup
    before = bk_bytes(s)
    assert jet.begin(s.inst) == 0
    full_backup(jet, s, truncate=False)
    assert jet.stop(s.inst) == 0
    assert jet.end(s.inst) == (E["BackupAbortByServer"] if s.xp else 0)
    assert bk_bytes(s) == before


def test_end_after_an_incremental_whose_logs_were_not_copied(jet, backup):
    s = backup
    assert jet.begin(s.inst) == 0
    full_backup(jet, s)
    assert jet.end(s.inst) == 0
    before = bk_bytes(s)
    assert jet.begin(s.inst, 1) == 0
    assert jet.end(s.inst) == 0                       # an incremental starts in the log phase: no downgrade code
    assert bk_bytes(s) == before                      # but no range was computed: nothing to record


def test_an_incremental_needs_a_recorded_full_not_a_copy(jet, backup):
    s = backup
    assert jet.begin(s.inst, 1) == E["MissingFullBackup"]
    assert jet.begin(s.inst) == 0
    full_backup(jet, s, truncate=False)
    assert jet.end(s.inst) == 0                       # a full without truncation is recorded as CopyPrev
    h = read_header(s.db)[0]
    assert h.bk["CopyPrev"]["low"] != 0 and h.bk["FullPrev"]["low"] == 0
    assert jet.begin(s.inst, 1) == E["MissingFullBackup"]


def test_the_attached_header_shows_what_end_recorded(jet, backup):
    s = backup
    assert jet.begin(s.inst) == 0
    _, _, _, info, _ = full_backup(jet, s)
    assert jet.end(s.inst) == 0
    err, misc = jet.dbinfo(s.db, 14, 348)             # JET_DbInfoMisc, JET_DBINFOMISC4, still attached
    assert err == 0
    low, high = struct.unpack_from("<II", misc, 116 + 16)      # bkinfoFullPrev.genLow/genHigh
    assert (low, high) == (info.ulGenLow, info.ulGenHigh)
