# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ESESIM_FAULTS injection (state changes as the engine's for that error), the xp
profile, ESESIM_DISK_FREE and the JSON parser."""
import json
import os
import subprocess
import sys

import pytest

import esesim
from esesim import E, AlignedBuffer, read_header
from test_full_backup import full_backup


def faults(*items):
    return json.dumps(list(items))


def test_injected_read_error_on_db_closes_handle(jet, with_env):
    dirty_set = with_env("dirty", ESESIM_FAULTS=faults({"api": "JetReadFileInstance", "call": 2, "err": -1018}))
    s = dirty_set
    assert jet.begin(s.inst) == 0
    jet.open(s.inst, s.db)
    buf = AlignedBuffer(1 << 16)
    assert jet.read(s.inst, buf, 1 << 16)[0] == 0
    assert jet.read(s.inst, buf, 1 << 16)[0] == E["ReadVerifyFailure"]
    assert jet.close(s.inst) == E["InvalidParameter"]          # auto-closed
    assert jet.attach_info(s.inst)[0] == 0                     # backup continues
    stream, _ = jet.read_all(s.inst, s.db)                     # call 3+: fine, restarts at page 0
    assert stream[:4] != b"\0\0\0\0"


def test_injected_log_read_error_aborts(jet, with_env):
    dirty_set = with_env("dirty", ESESIM_FAULTS=faults({"api": "JetReadFileInstance", "call": 1, "err": -612, "every": True}))
    s = dirty_set
    assert jet.begin(s.inst) == 0
    assert jet.log_info(s.inst)[0] == 0
    jet.open(s.inst, s.log("SRU0005C.log"))
    assert jet.read(s.inst, AlignedBuffer(8192), 8192)[0] == E["LogReadVerifyFailure"]
    assert jet.log_info(s.inst)[0] == E["NoBackup"]


def test_injected_parameter_error_changes_nothing(jet, with_env):
    clean_set = with_env("clean", ESESIM_FAULTS=faults({"api": "JetReadFileInstance", "call": 1, "err": -1003}))
    assert jet.begin(clean_set.inst) == 0
    jet.open(clean_set.inst, clean_set.db)
    assert jet.read(clean_set.inst, AlignedBuffer(1 << 16), 1 << 16)[0] == E["InvalidParameter"]
    assert jet.close(clean_set.inst) == 0                      # handle still open


def test_injected_begin_error_leaves_s0(jet, with_env):
    clean_set = with_env("clean", ESESIM_FAULTS=faults({"api": "JetBeginExternalBackupInstance", "call": 1, "err": -1022}))
    assert jet.begin(clean_set.inst) == -1022
    assert jet.attach_info(clean_set.inst)[0] == E["NoBackup"]
    assert jet.begin(clean_set.inst) == 0


def test_injected_every_repeats(jet, with_env):
    clean_set = with_env("clean", ESESIM_FAULTS=faults({"api": "JetGetAttachInfoInstanceW", "call": 2, "err": -1011, "every": True}))
    assert jet.begin(clean_set.inst) == 0
    assert jet.attach_info(clean_set.inst, cbmax=512)[0] == 0
    assert jet.attach_info(clean_set.inst, cbmax=512)[0] == E["OutOfMemory"]   # list failure cancels
    assert jet.begin(clean_set.inst) == 0
    assert jet.attach_info(clean_set.inst, cbmax=512)[0] == E["OutOfMemory"]


def test_injected_disk_full_on_log_roll_keeps_state(jet, with_env):
    clean_set = with_env("clean", ESESIM_FAULTS=faults({"api": "JetGetLogInfoInstanceW", "call": 1, "err": -1808}))
    s = clean_set
    assert jet.begin(s.inst) == 0
    jet.read_all(s.inst, s.db)
    assert jet.log_info(s.inst)[0] == E["DiskFull"]
    assert esesim.log_header(s.log("SRU.log"))["gen"] == 2         # no roll happened
    assert jet.log_info(s.inst)[0] == 0                             # retry works
    assert jet.truncate_info(s.inst)[0] == 0


def test_injected_open_error_in_log_phase_aborts(jet, with_env):
    clean_set = with_env("clean", ESESIM_FAULTS=faults({"api": "JetOpenFileInstanceW", "call": 2, "err": -1032}))
    s = clean_set
    assert jet.begin(s.inst) == 0
    assert jet.open(s.inst, s.db)[0] == 0 and jet.close(s.inst) == 0
    assert jet.log_info(s.inst)[0] == 0
    assert jet.open(s.inst, s.log("SRU00002.log"))[0] == E["FileAccessDenied"]
    assert jet.log_info(s.inst)[0] == E["NoBackup"]


def test_disk_free_limit(jet, with_env):
    clean_set = with_env("clean", ESESIM_DISK_FREE="1000")
    s = clean_set
    assert jet.begin(s.inst) == 0
    assert jet.log_info(s.inst)[0] == E["DiskFull"]
    assert os.path.exists(s.log("SRU.log")) and not os.path.exists(s.log("SRU00002.log"))


@pytest.mark.parametrize("text", ["", "not json", "[{\"api\": 3}", "{}", "[1,2]",
                                  "[{\"api\":\"JetBeginExternalBackupInstance\",\"call\":1,\"err\":-1022,\"x\":[1,{\"y\":null}]}]"])
def test_json_parser_robust(jet, with_env, text):
    clean_set = with_env("clean", ESESIM_FAULTS=text)
    err = jet.begin(clean_set.inst)
    assert err == (-1022 if text.startswith("[{\"api\":\"JetBegin") else 0)


def test_xp_profile_end_codes(jet, with_env):
    s = with_env("clean", ESESIM_PROFILE="xp")
    assert jet.begin(s.inst) == 0
    assert jet.end(s.inst) == E["BackupAbortByCaller"]         # End Normal in the DB phase
    assert jet.attach_info(s.inst)[0] == E["NoBackup"]         # but ended
    assert jet.begin(s.inst) == 0
    assert jet.log_info(s.inst)[0] == 0
    assert jet.end(s.inst, 2) == E["BackupAbortByCaller"]      # End Abort
    assert jet.begin(s.inst) == 0
    assert jet.stop(s.inst) == 0
    assert jet.end(s.inst) == E["BackupAbortByServer"]         # after a stop
    assert jet.begin(s.inst) == 0
    full_backup(jet, s)
    assert jet.end(s.inst) == 0                                 # complete sequence
    assert read_header(s.db)[0].bk["FullPrev"]["low"] == 2


def test_default_profile_end_after_partial_read_succeeds(jet, clean_set):
    assert jet.begin(clean_set.inst) == 0
    jet.open(clean_set.inst, clean_set.db)
    jet.read(clean_set.inst, AlignedBuffer(1 << 16), 1 << 16)
    assert jet.end(clean_set.inst) == 0


def test_faults_from_environment_in_fresh_process(tmp_path, lib):
    """The variables are read by the library itself, without EseSimReset."""
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "import esesim\n"
        "j = esesim.Jet(esesim.load_lib())\n"
        "err, inst = j.create('x')\n"
        "print(j.begin(inst), j.begin(inst))\n" % os.path.dirname(__file__))
    env = dict(os.environ, ESESIM_FAULTS='[{"api":"JetBeginExternalBackupInstance","call":2,"err":-1234}]')
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["-1029", "-1029"]             # gate runs before the injected error
