# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every cell of the state x API table (ese-backup-semantics.md §1.1) and the
instance gate (§1)."""
import os

import pytest

from esesim import E, AlignedBuffer

BUF = AlignedBuffer(1 << 16)


def to_state(jet, s, state):
    """Drives the instance into S0..S5 (S5 = Stop from S1); returns an open-able log."""
    if state == "S0":
        return
    assert jet.begin(s.inst) == 0
    if state == "S2":
        assert jet.open(s.inst, s.db)[0] == 0
    if state in ("S3", "S4"):
        assert jet.log_info(s.inst)[0] == 0
    if state == "S4":
        assert jet.open(s.inst, s.log("SRU00001.log"))[0] == 0
    if state == "S5":
        assert jet.stop(s.inst) == 0


STATES = ["S0", "S1", "S2", "S3", "S4", "S5"]


def expect(cells, state):
    return cells[STATES.index(state)]


@pytest.mark.parametrize("state", STATES)
def test_begin(jet, clean_set, state):
    to_state(jet, clean_set, state)
    assert jet.begin(clean_set.inst) == expect([0, -505, -505, -505, -505, -505], state)


@pytest.mark.parametrize("state", STATES)
def test_get_attach_info_full(jet, clean_set, state):
    to_state(jet, clean_set, state)
    assert jet.attach_info(clean_set.inst)[0] == expect([-520, 0, 0, 0, 0, -801], state)


@pytest.mark.parametrize("state", STATES)
def test_open_attached_db(jet, clean_set, state):
    to_state(jet, clean_set, state)
    err = jet.open(clean_set.inst, clean_set.db)[0]
    assert err == expect([-520, 0, -1011, -521, -1011, -801], state)
    if state == "S3":                                    # aborted -> S0
        assert jet.attach_info(clean_set.inst)[0] == E["NoBackup"]
    if state == "S2":                                    # backup continues
        assert jet.attach_info(clean_set.inst)[0] == 0


@pytest.mark.parametrize("state", STATES)
def test_open_log_or_other_file(jet, clean_set, state):
    to_state(jet, clean_set, state)
    err = jet.open(clean_set.inst, clean_set.log("SRU.chk"))[0]
    assert err == expect([-520, -1203, -1011, 0, -1011, -801], state)
    if state == "S1":
        assert jet.open(clean_set.inst, clean_set.db)[0] == 0     # slot was freed


@pytest.mark.parametrize("state", STATES)
def test_open_missing_file(jet, clean_set, state):
    to_state(jet, clean_set, state)
    err = jet.open(clean_set.inst, clean_set.log("nothere.log"))[0]
    assert err == expect([-520, -1203, -1011, -569, -1011, -801], state)
    if state == "S3":
        assert jet.log_info(clean_set.inst)[0] == E["NoBackup"]


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("name", [None, ""])
def test_open_null_or_empty_name(jet, clean_set, state, name):
    to_state(jet, clean_set, state)
    assert jet.open(clean_set.inst, name)[0] == expect([-520, -1003, -1003, -1003, -1003, -801], state)


def test_open_returns_handle_zero_and_sizes(jet, clean_set):
    to_state(jet, clean_set, "S1")
    err, h, size = jet.open(clean_set.inst, clean_set.db)
    assert (err, h, size) == (0, 0, os.path.getsize(clean_set.db) + 4096)


@pytest.mark.parametrize("state", STATES)
def test_read(jet, clean_set, state):
    to_state(jet, clean_set, state)
    err, n = jet.read(clean_set.inst, BUF, 3 * 4096)
    assert err == expect([-520, 0, 0, 0, 0, -801], state)
    assert n == expect([0, 0, 3 * 4096, 0, 3 * 4096, 0], state)   # S1/S3: note R, empty slot 0


def test_read_after_stop_keeps_handle_open(jet, clean_set):
    to_state(jet, clean_set, "S2")
    assert jet.stop(clean_set.inst) == 0
    assert jet.read(clean_set.inst, BUF, 3 * 4096)[0] == E["BackupAbortByServer"]
    assert jet.close(clean_set.inst) == 0                  # handle stayed open; close has no stop check


def test_read_note_r_needs_two_pages(jet, clean_set):
    to_state(jet, clean_set, "S1")
    assert jet.read(clean_set.inst, BUF, 4096)[0] == E["InvalidParameter"]
    assert jet.read(clean_set.inst, BUF, 2 * 4096) == (0, 0)


@pytest.mark.parametrize("state", STATES)
def test_close(jet, clean_set, state):
    to_state(jet, clean_set, state)
    assert jet.close(clean_set.inst) == expect([-520, -1003, 0, -1003, 0, -1003], state)


def test_close_in_stopped_state_with_open_handle(jet, clean_set):
    to_state(jet, clean_set, "S4")
    assert jet.stop(clean_set.inst) == 0
    assert jet.close(clean_set.inst) == 0


@pytest.mark.parametrize("state", STATES)
def test_get_log_info(jet, clean_set, state):
    to_state(jet, clean_set, state)
    assert jet.log_info(clean_set.inst)[0] == expect([-520, 0, -521, 0, -521, -801], state)
    if state in ("S2", "S4"):                             # no abort
        assert jet.close(clean_set.inst) == 0


@pytest.mark.parametrize("state", STATES)
def test_get_truncate_log_info(jet, clean_set, state):
    to_state(jet, clean_set, state)
    assert jet.truncate_info(clean_set.inst)[0] == expect([-520, 0, -521, 0, -521, -801], state)


@pytest.mark.parametrize("state", STATES)
def test_truncate(jet, clean_set, state):
    to_state(jet, clean_set, state)
    assert jet.truncate(clean_set.inst) == expect([-520, -521, -521, -616, -521, -801], state)


@pytest.mark.parametrize("state", STATES)
def test_end_normal(jet, clean_set, state):
    to_state(jet, clean_set, state)
    assert jet.end(clean_set.inst, 1) == expect([-520, 0, 0, 0, 0, 0], state)
    assert jet.attach_info(clean_set.inst)[0] == E["NoBackup"]      # -> S0


@pytest.mark.parametrize("state", STATES)
def test_end_abort(jet, clean_set, state):
    to_state(jet, clean_set, state)
    assert jet.end(clean_set.inst, 2) == expect([-520, 0, 0, 0, 0, 0], state)


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("grbit", [0, 3, 0x100, 0x200])
def test_end_bad_grbit_checked_first(jet, clean_set, state, grbit):
    to_state(jet, clean_set, state)
    assert jet.end(clean_set.inst, grbit) == E["InvalidParameter"]


def test_end_other_bits_not_rejected(jet, clean_set):
    to_state(jet, clean_set, "S1")
    assert jet.end(clean_set.inst, 0x1 | 0x8000) == 0


@pytest.mark.parametrize("state", STATES)
def test_stop(jet, clean_set, state):
    to_state(jet, clean_set, state)
    assert jet.stop(clean_set.inst) == 0


def test_stop_in_s0_is_cleared_by_begin(jet, clean_set):
    assert jet.stop(clean_set.inst) == 0
    assert jet.begin(clean_set.inst) == 0
    assert jet.attach_info(clean_set.inst)[0] == 0


def test_incremental_attach_info_and_open(jet, clean_set):
    s = clean_set
    assert jet.begin(s.inst) == 0                    # give the DB a FullPrev first
    jet.read_all(s.inst, s.db)
    assert jet.log_info(s.inst)[0] == 0
    assert jet.end(s.inst, 0x1 | 0x100) == 0
    assert jet.begin(s.inst, 1) == 0                  # incremental starts in S3
    assert jet.attach_info(s.inst)[0] == E["InvalidBackupSequence"]
    assert jet.truncate(s.inst) == E["InvalidBackupSequence"]      # range not computed
    assert jet.log_info(s.inst)[0] == 0
    assert jet.open(s.inst, s.log("SRU00002.log"))[0] == 0
    assert jet.attach_info(s.inst)[0] == E["InvalidBackupSequence"]


# ---------------------------------------------------------------- the gate (§1)

def test_gate_bogus_and_nil_handles(jet, clean_set):
    assert jet.begin(0xDEAD0) == E["InvalidInstance"]
    assert jet.begin(0) == E["InvalidParameter"]                      # multi-instance mode
    assert jet.begin(2**64 - 1) == E["InvalidParameter"]
    assert jet.stop(0xDEAD0) == E["InvalidInstance"]


def test_gate_not_initialised(jet):
    err, inst = jet.create("x")
    assert err == 0
    assert jet.begin(inst) == E["NotInitialized"]
    assert jet.attach_info(inst)[0] == E["NotInitialized"]


def test_gate_stop_service_blocks_everything_even_end(jet, clean_set):
    s = clean_set
    assert jet.begin(s.inst) == 0
    assert jet.lib.JetStopServiceInstance(s.inst) == 0
    for call in (lambda: jet.end(s.inst), lambda: jet.attach_info(s.inst)[0], lambda: jet.begin(s.inst),
                 lambda: jet.close(s.inst), lambda: jet.truncate(s.inst)):
        assert call() == E["ClientRequestToStopJetService"]
    assert jet.stop(s.inst) == 0                       # Stop skips the gate


def test_begin_not_allowed_after_term_refused(jet, clean_set):
    s = clean_set
    assert jet.begin(s.inst) == 0
    assert jet.lib.JetTerm2(s.inst, 0) == E["BackupInProgress"]
    assert jet.lib.JetTerm2(s.inst, 1) == E["BackupInProgress"]
    assert jet.attach_info(s.inst)[0] == 0             # instance and backup still up
    assert jet.end(s.inst) == 0
    assert jet.begin(s.inst) == E["BackupNotAllowedYet"]


@pytest.mark.parametrize("grbit", [2, 4])
def test_term_abrupt_or_stopbackup_ends_backup_without_header_update(jet, clean_set, grbit):
    s = clean_set
    before = open(s.db, "rb").read(4096)
    assert jet.begin(s.inst) == 0
    jet.read_all(s.inst, s.db)
    assert jet.log_info(s.inst)[0] == 0
    assert jet.lib.JetTerm2(s.inst, grbit) == 0
    assert jet.begin(s.inst) == E["InvalidInstance"]
    from esesim import read_header
    h = read_header(s.db)[0]
    assert h.dbstate == 3 and h.bk["FullPrev"]["low"] == 0 and h.checksum_ok
    assert before[136:160] == h.raw[136:160]


def test_jetterm_is_abrupt(jet, clean_set):
    assert jet.begin(clean_set.inst) == 0
    assert jet.lib.JetTerm(clean_set.inst) == 0


def test_term_dirty_skips_backup_check_and_leaves_db_dirty(jet, clean_set):
    assert jet.begin(clean_set.inst) == 0
    assert jet.lib.JetTerm2(clean_set.inst, 8) == 0
    from esesim import read_header
    assert read_header(clean_set.db)[0].dbstate == 2
