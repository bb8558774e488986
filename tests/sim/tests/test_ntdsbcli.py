# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The simulated ntdsbcli.dll against the simulated DC backup server: the backup calls
(windows-backup-apis.md §2) over the server's ESE instance (ese-backup-semantics.md)."""
import ctypes
import os
import signal
import struct
import subprocess
import sys
import time

import esesim
from dssim import (  # noqa: F401 pylint: disable=unused-import
    BFT_CHECKPOINT_DIR, BFT_DATABASE, BFT_LOG, BFT_LOG_DIR, FULL, HR, INCREMENTAL, LOGS_ONLY, READ_MIN, S_OK, dc,
    ds, filetime_to_unix, ntds_dir, ntds_set, parse_list, parse_token, services)
from esesim import read_header

PAGE = 8192
EOF_HR = HR["HandleEof"]


def full_backup(ds, server="DC01", truncate=True):
    """Prepare, names, every database, logs, every log, truncate, End: (token, dbs, streams, logs, read)."""
    hr, hbc, token = ds.prepare(server)
    assert hr == S_OK, hex(hr)
    hr, raw, _ = ds.names(hbc)
    assert hr == S_OK
    dbs = parse_list(raw)
    streams = {name: ds.read_all(hbc, name) for _prefix, name in dbs}
    hr, raw, _ = ds.logs(hbc)
    assert hr == S_OK
    logs = parse_list(raw)
    read = {name: ds.read_all(hbc, name)[0] for _prefix, name in logs}
    if truncate:
        assert ds.truncate(hbc) == S_OK
    assert ds.end(hbc) == S_OK
    return token, dbs, streams, logs, read


def test_full_backup_streams_the_database_and_logs_on_disk(ds, dc, ntds_set):
    folder = os.path.dirname(ntds_set)
    disk = open(ntds_set, "rb").read()
    assert ds.online("DC01") == (S_OK, 1)
    before = time.time()
    hr, hbc, token = ds.prepare("\\\\DC01")
    assert hr == S_OK and hbc
    version, days, when = parse_token(token)                             # the simulator's 16-byte layout
    assert (version, days) == (1, 60) and before - 1 <= filetime_to_unix(when) <= time.time() + 1
    hr, raw, cb = ds.locations(hbc)
    assert hr == S_OK and cb == len(raw)
    assert parse_list(raw) == [(BFT_DATABASE, ntds_set), (BFT_LOG_DIR, folder + "/"),
                               (BFT_CHECKPOINT_DIR, folder + "/")]
    hr, raw, cb = ds.names(hbc)
    assert hr == S_OK and raw[:2] == b"D\0" and raw.endswith(b"\0\0\0\0")       # 'D' prefix, double NUL
    assert parse_list(raw) == [(BFT_DATABASE, ntds_set)] and cb == 2 * (len(ntds_set) + 3)
    stream, size = ds.read_all(hbc, ntds_set, chunk=3 * 8192 * 5, hint=READ_MIN)
    assert size == len(stream) == len(disk) + PAGE                      # (pgnoLast + 3) pages
    assert stream[2 * PAGE:len(disk)] == disk[2 * PAGE:]                 # every page as on disk
    h0, h1 = esesim.Header(stream[:PAGE]), esesim.Header(stream[PAGE:2 * PAGE])
    assert h0.raw == h1.raw and h0.checksum_ok and h0.bk["FullCur"]["low"] == 3
    hr, raw, _ = ds.logs(hbc)
    assert raw[:2] == b"!\0"
    logs = parse_list(raw)
    assert logs == [(BFT_LOG, os.path.join(folder, "edb00003.log"))]
    for _prefix, name in logs:
        assert ds.read_all(hbc, name, chunk=READ_MIN)[0] == open(name, "rb").read()
    assert ds.truncate(hbc) == S_OK
    assert sorted(os.listdir(folder)) == ["edb.chk", "edb.log", "edb00003.log", "ntds.dit"]
    assert ds.end(hbc) == S_OK
    for h in read_header(ntds_set):
        assert (h.bk["FullPrev"]["low"], h.bk["FullPrev"]["high"]) == (3, 3)
    assert ds.end(hbc) == HR["InvalidHandle"]                            # End released the context


def test_a_second_full_backup_gets_a_later_token(ds, dc):
    first = parse_token(full_backup(ds)[0])
    time.sleep(0.01)
    second = parse_token(full_backup(ds)[0])
    assert second[2] > first[2] and second[:2] == first[:2]


def test_tombstone_lifetime_in_the_token(ds, services, ntds_set):
    services(ntds_set, args=["--tombstone-days", "180"])
    hr, hbc, token = ds.prepare("DC01")
    assert hr == S_OK and parse_token(token)[1] == 180
    assert ds.end(hbc) == S_OK


def test_only_full_backups_with_grbit_zero(ds, dc):
    for backup_type in (LOGS_ONLY, INCREMENTAL, 0, FULL | LOGS_ONLY, 0x8):
        assert ds.prepare("DC01", backup_type) == (HR["InvalidParameter"], None, None), backup_type
    assert ds.prepare("DC01", FULL, grbit=1) == (HR["InvalidParameter"], None, None)   # "grbit must be 0"
    assert ds.prepare(None) == (HR["InvalidParam"], None, None)
    tok, cb, h = ctypes.c_void_p(), ctypes.c_uint32(), ctypes.c_void_p()
    lib = ds.lib
    assert lib.DsBackupPrepareW(esesim.wbuf("DC01"), 0, FULL, None, ctypes.byref(cb), ctypes.byref(h)) \
        == HR["InvalidParam"] - (1 << 32)
    assert lib.DsBackupPrepareW(esesim.wbuf("DC01"), 0, FULL, ctypes.byref(tok), None, ctypes.byref(h)) \
        == HR["InvalidParam"] - (1 << 32)
    assert lib.DsBackupPrepareW(esesim.wbuf("DC01"), 0, FULL, ctypes.byref(tok), ctypes.byref(cb), None) \
        == HR["InvalidParam"] - (1 << 32)
    hr, hbc, token = ds.prepare("DC01")                                  # none of the refusals began a backup
    assert hr == S_OK and token and ds.end(hbc) == S_OK


def test_read_and_hint_sizes(ds, dc, ntds_set):
    hr, hbc, _tok = ds.prepare("DC01")
    assert ds.names(hbc)[0] == S_OK
    for hint in (0, 8192, 16384, 24577, 24576 + 4096, 0xFFFFFFFF):
        assert ds.open(hbc, ntds_set, hint) == (HR["InvalidParameter"], 0), hint
    hr, size = ds.open(hbc, ntds_set, 8 << 20)                           # a large hint is accepted
    assert hr == S_OK and size == os.path.getsize(ntds_set) + PAGE
    buf = ctypes.create_string_buffer(8 << 20)
    for cb in (0, 8192, 16384, 24577, 40000):
        assert ds.read(hbc, buf, cb) == (HR["InvalidParameter"], 0), cb
    assert ds.read(hbc, buf, READ_MIN) == (S_OK, READ_MIN)               # the three-page first read
    assert ds.read(hbc, buf, 8 << 20) == (S_OK, size - READ_MIN)         # up to cb (at most 4 MB)
    assert ds.read(hbc, buf, READ_MIN) == (EOF_HR, 0)                    # ERROR_HANDLE_EOF at the end
    assert ds.read(hbc, buf, READ_MIN) == (EOF_HR, 0)                    # and after it
    assert ds.close(hbc) == S_OK
    hr, raw, _ = ds.logs(hbc)
    log = parse_list(raw)[0][1]
    hr, size = ds.open(hbc, log, READ_MIN)
    assert size == 128 * 1024
    got = [ds.read(hbc, buf, 5 * 8192) for _i in range(5)]
    assert got == [(S_OK, 40960), (S_OK, 40960), (S_OK, 40960), (S_OK, 8192), (EOF_HR, 0)]   # short, then EOF
    assert ds.close(hbc) == S_OK and ds.end(hbc) == S_OK


def test_reads_are_capped_at_4_mb(ds, services, jet, tmp_path):
    db = jet.create_set(str(tmp_path / "big"), base="edb", database="ntds.dit", page_size=8192, records=6000,
                        log_kb=128)
    jet.lib.EseSimReset()
    services(db)
    hr, hbc, _tok = ds.prepare("DC01")
    ds.names(hbc)
    hr, size = ds.open(hbc, db, READ_MIN)
    assert hr == S_OK and size > 4 << 20
    buf = ctypes.create_string_buffer(8 << 20)
    assert ds.read(hbc, buf, 8 << 20) == (S_OK, 4 << 20)
    assert ds.end(hbc) == S_OK


def test_sequencing_and_parameter_errors(ds, dc, ntds_set):
    hr, hbc, _tok = ds.prepare("DC01")
    assert hr == S_OK
    assert ds.prepare("DC01")[0] == HR["BackupInProgress"]               # one backup per DC
    assert ds.open(hbc, ntds_set)[0] == HR["InvalidBackupSequence"]      # before GetDatabaseNames
    buf = ctypes.create_string_buffer(READ_MIN)
    assert ds.read(hbc, buf, READ_MIN) == (HR["InvalidHandle"], 0)       # no file open
    assert ds.close(hbc) == HR["InvalidHandle"]                          # "hrInvalidHandle if no file is open"
    assert ds.names(hbc)[0] == S_OK
    assert ds.open(hbc, "D" + ntds_set)[0] == HR["InvalidParam"]         # the BFT prefix must be stripped
    assert ds.open(hbc, ntds_set + ".other")[0] == HR["InvalidParam"]    # not a listed name
    assert ds.open(hbc, None)[0] == HR["InvalidParam"]
    hr, size = ds.open(hbc, ntds_set.replace("/", "\\").upper())
    assert hr == S_OK and size == os.path.getsize(ntds_set) + PAGE       # separators and case do not matter
    assert ds.open(hbc, ntds_set)[0] == HR["AlreadyOpen"]                # one open file per context
    assert ds.lib.DsBackupRead(hbc, None, READ_MIN, None) == HR["InvalidParam"] - (1 << 32)
    assert ds.close(hbc) == S_OK                                         # database not read completely
    assert ds.logs(hbc)[0] == S_OK
    assert ds.truncate(hbc) == HR["LogFileNotCopied"]                    # logs not read: ESE -616
    assert ds.open(hbc, ntds_set)[0] == HR["InvalidBackupSequence"]      # database in the logs phase: aborted
    assert ds.logs(hbc)[0] == HR["NoBackup"]                             # ESE -520 from then on
    assert ds.end(hbc) == HR["NoBackup"]
    assert ds.close(hbc) == HR["InvalidHandle"]                          # released
    assert ds.close(ctypes.c_void_p(0x1234).value) == HR["InvalidHandle"]
    assert ds.names(None)[0] == HR["InvalidHandle"]
    hr, hbc, _tok = ds.prepare("DC01")                                   # the abort freed the ESE backup
    assert hr == S_OK and ds.end(hbc) == S_OK


def test_local_dc_only(ds, dc, monkeypatch):
    assert ds.online("DC02") == (HR["RpcInvalidBinding"], 0)
    assert ds.prepare("\\\\DC02")[:2] == (HR["RpcInvalidBinding"], None)
    for name in ("localhost", "dc01.corp.example", "\\\\dc01"):
        hr, hbc, _tok = ds.prepare(name)
        assert hr == S_OK and ds.end(hbc) == S_OK, name
    monkeypatch.setenv("COMPUTERNAME", "HOST2")                          # the caller is another machine
    assert ds.online("DC01") == (HR["RpcInvalidBinding"], 0)
    assert ds.prepare("DC01")[0] == HR["RpcInvalidBinding"]


def test_dc_not_running(ds, ntds_dir, monkeypatch):
    assert ds.online("DC01") == (HR["CouldNotConnect"], 0)
    assert ds.prepare("DC01") == (HR["CouldNotConnect"], None, None)
    open(os.path.join(ntds_dir, "dc01.sock"), "w").close()               # a stale endpoint answers nothing
    assert ds.online("DC01")[0] == HR["CouldNotConnect"]
    monkeypatch.delenv("ESESIM_NTDS_DIR")
    assert ds.prepare("DC01")[0] == HR["CouldNotConnect"]


def test_dsrm_is_offline_and_holds_no_database(ds, jet, services, ntds_set):
    services(ntds_set, args=["--dsrm"])
    assert ds.online("DC01") == (S_OK, 0)
    assert ds.prepare("DC01") == (HR["CouldNotConnect"], None, None)
    assert jet.dbinfo(ntds_set, 17, 4)[0] == 0                           # ntds.dit is not attached


def test_no_endpoint_answers_like_a_release_without_the_interface(ds, dc, monkeypatch):
    monkeypatch.setenv("ESESIM_NTDS_NO_ENDPOINT", "1")
    assert ds.online("DC01") == (HR["EptNotRegistered"], 0)
    assert ds.prepare("DC01") == (HR["EptNotRegistered"], None, None)
    monkeypatch.setenv("ESESIM_NTDS_NO_ENDPOINT", "0")
    assert ds.online("DC01") == (S_OK, 1)


def test_faults_return_hresults(ds, services, ntds_set):
    faults = ('[{"api": "DsBackupRead", "call": 2, "err": -1018},'
              ' {"api": "DsBackupOpenFileW", "call": 2, "err": "0x80070005"},'
              ' {"api": "DsBackupGetBackupLogsW", "call": 1, "err": 3221225473},'
              ' {"api": "DsIsNTDSOnlineW", "call": 1, "err": "0x800706D9"}]')
    services(ntds_set, env={"ESESIM_NTDS_FAULTS": faults})
    assert ds.online("DC01") == (HR["EptNotRegistered"], 0)
    assert ds.online("DC01") == (S_OK, 1)
    hr, hbc, _tok = ds.prepare("DC01")
    assert hr == S_OK
    ds.names(hbc)
    buf = ctypes.create_string_buffer(65536)
    assert ds.open(hbc, ntds_set)[0] == S_OK
    assert ds.read(hbc, buf, 65536) == (S_OK, 65536)
    assert ds.read(hbc, buf, 65536) == (HR["ReadVerifyFailure"], 0)      # a JET_err as 0xC800xxxx
    assert ds.read(hbc, buf, 65536) == (S_OK, 65536)                     # the injected call changed nothing
    assert ds.close(hbc) == S_OK
    assert ds.open(hbc, ntds_set)[0] == 0x80070005                       # an HRESULT as given
    assert ds.logs(hbc)[0] == 0xC0000001
    assert ds.logs(hbc)[0] == S_OK
    assert ds.end(hbc) == S_OK


def test_ese_faults_inside_the_service_are_mapped(ds, services, ntds_set):
    services(ntds_set, env={"ESESIM_FAULTS": '[{"api": "JetReadFileInstance", "call": 1, "err": -1022}]'})
    hr, hbc, _tok = ds.prepare("DC01")
    assert hr == S_OK
    ds.names(hbc)
    ds.open(hbc, ntds_set)
    buf = ctypes.create_string_buffer(65536)
    assert ds.read(hbc, buf, 65536) == (HR["DiskIO"], 0)
    assert ds.end(hbc) == S_OK


def test_stop_fault_mid_backup(ds, services, ntds_set):
    svc = services(ntds_set, env={"ESESIM_NTDS_FAULTS": '[{"api": "DsBackupRead", "call": 3, "stop": true}]'})
    before = read_header(ntds_set)[0]
    hr, hbc, _tok = ds.prepare("DC01")
    ds.names(hbc)
    ds.open(hbc, ntds_set)
    buf = ctypes.create_string_buffer(65536)
    assert ds.read(hbc, buf, 65536)[0] == S_OK
    assert ds.read(hbc, buf, 65536)[0] == S_OK
    assert ds.read(hbc, buf, 65536) == (HR["RpcUnavailable"], 0)         # the connection broke mid-call
    assert svc.wait_gone() and svc.wait() == 0
    assert "JetTerm2 0" in svc.stderr                                    # the service ended its ESE backup
    assert ds.close(hbc) == HR["RpcUnavailable"]
    assert ds.logs(hbc)[0] == HR["RpcUnavailable"]
    assert ds.online("DC01")[0] == HR["CouldNotConnect"]                 # no endpoint any more
    assert ds.end(hbc) == HR["RpcUnavailable"]                           # End still releases the context
    assert ds.end(hbc) == HR["InvalidHandle"]
    after = read_header(ntds_set)[0]
    assert after.dbstate == 3 and after.bk == before.bk                  # clean, no backup recorded
    services(ntds_set)
    hr, hbc, _tok = ds.prepare("DC01")                                   # nothing of the old backup remains
    assert hr == S_OK and ds.end(hbc) == S_OK


def test_service_stop_signal_mid_backup(ds, dc):
    hr, hbc, _tok = ds.prepare("DC01")
    assert hr == S_OK
    ds.names(hbc)
    dc.proc.send_signal(signal.SIGTERM)
    assert dc.wait_gone()
    assert not os.path.exists(os.path.join(dc.dir, "dc01.sock"))
    assert ds.open(hbc, dc.db)[0] == HR["RpcUnavailable"]
    assert ds.end(hbc) == HR["RpcUnavailable"]


CLIENT_EXITS = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
h, tok, cb = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_uint32()
name = ctypes.create_string_buffer("DC01".encode("utf-16-le") + b"\0\0")
sys.exit(lib.DsBackupPrepareW(name, 0, 1, ctypes.byref(tok), ctypes.byref(cb), ctypes.byref(h)) or cb.value != 16)
"""


def test_a_client_that_exits_without_end_releases_the_backup(ds, dc):
    """The context's connection closing is an RPC context rundown: the server aborts the backup."""
    res = subprocess.run([sys.executable, "-c", CLIENT_EXITS, ds.lib._name], check=False,  # pylint: disable=W0212
                         env=dict(os.environ), timeout=30)
    assert res.returncode == 0
    for _attempt in range(50):
        hr, hbc, _tok = ds.prepare("DC01")
        if hr != HR["BackupInProgress"]:
            break
        time.sleep(0.02)
    assert hr == S_OK and ds.end(hbc) == S_OK


def test_service_holds_the_database_exclusively(jet, services, ntds_set):
    svc = services(ntds_set)
    assert jet.dbinfo(ntds_set, 17, 4)[0] == esesim.E["FileAccessDenied"]          # esentutl /mh: -1032
    code, err_text = services(ntds_set, server="DC02", wait=False).run_to_exit()
    assert code == 3 and "-1032" in err_text
    code, err_text = services(ntds_set, wait=False).run_to_exit()                  # same server name
    assert code != 0
    svc.stop()
    assert jet.dbinfo(ntds_set, 17, 4)[0] == 0                                     # released at stop


def test_widths_and_exports(ds):
    assert struct.calcsize("P") == 8 and ctypes.sizeof(ctypes.c_wchar) in (2, 4)
    names = subprocess.run(["nm", "-D", "--defined-only", ds.lib._name], check=True,  # pylint: disable=W0212
                           capture_output=True, text=True).stdout.split()
    exported = sorted(n for n in names if n.startswith("Ds"))
    assert exported == sorted(["DsIsNTDSOnlineW", "DsBackupPrepareW", "DsBackupGetDatabaseNamesW",
                               "DsBackupOpenFileW", "DsBackupRead", "DsBackupClose", "DsBackupGetBackupLogsW",
                               "DsBackupTruncateLogs", "DsBackupEnd", "DsBackupFree", "DsRestorePrepareW",
                               "DsRestoreGetDatabaseLocationsW", "DsRestoreRegisterW", "DsRestoreRegisterComplete",
                               "DsRestoreEnd"])
    assert not [n for n in names if n.startswith("cs_")]                 # the shared framing stays internal
