# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The simulated certadm.dll against the simulated CA service: the backup calls
(windows-backup-apis.md §1) over the service's ESE instance (ese-backup-semantics.md)."""
import ctypes
import os
import signal
import struct
import subprocess
import sys
import time

import esesim
from certsim import (  # noqa: F401 pylint: disable=unused-import
    CSBFT_CHECKPOINT_DIR, CSBFT_DATABASE, CSBFT_LOG, CSBFT_LOG_DIR, FULL, HR, LOGS_ONLY, RESTART, S_OK, SHUTDOWN,
    SUSPEND, ca, ca_set, cadm, parse_list, services, svc_dir)
from esesim import read_header

PAGE = 8192


def full_backup(cadm, server="CA01", truncate=True):
    """certutil -backupDB: Prepare, names, every database, logs, every log, truncate, End."""
    hr, hbc = cadm.prepare(server, FULL)
    assert hr == S_OK, hex(hr)
    hr, raw, cb = cadm.names(hbc)
    assert hr == S_OK and cb == len(raw)
    dbs = parse_list(raw)
    streams = {name: cadm.read_all(hbc, name) for prefix, name in dbs}
    hr, raw, cb = cadm.logs(hbc)
    assert hr == S_OK
    logs = parse_list(raw)
    copies = {name: open(name, "rb").read() for prefix, name in logs}
    read = {name: cadm.read_all(hbc, name)[0] for prefix, name in logs}
    if truncate:
        assert cadm.truncate(hbc) == S_OK
    assert cadm.end(hbc) == S_OK
    return dbs, streams, logs, copies, read


def test_full_backup_streams_the_database_and_logs_on_disk(cadm, ca, ca_set):
    folder = os.path.dirname(ca_set)
    disk = open(ca_set, "rb").read()
    assert cadm.online("CA01") == (S_OK, 1)
    hr, hbc = cadm.prepare("\\\\CA01", FULL)
    assert hr == S_OK and hbc
    hr, raw, cb = cadm.locations(hbc)
    assert hr == S_OK and cb == len(raw)
    assert parse_list(raw) == [(CSBFT_DATABASE, ca_set), (CSBFT_LOG_DIR, folder + "/"),
                               (CSBFT_CHECKPOINT_DIR, folder + "/")]
    hr, raw, cb = cadm.names(hbc)
    assert hr == S_OK and raw[:2] == b"D\0" and raw.endswith(b"\0\0\0\0")       # 'D' prefix, double NUL
    assert parse_list(raw) == [(CSBFT_DATABASE, ca_set)] and cb == 2 * (len(ca_set) + 3)
    stream, size = cadm.read_all(hbc, ca_set, chunk=200000, hint=100000)
    assert size == len(stream) == len(disk) + PAGE                      # (pgnoLast + 3) pages
    assert stream[2 * PAGE:len(disk)] == disk[2 * PAGE:]                 # every page as on disk
    h0, h1 = esesim.Header(stream[:PAGE]), esesim.Header(stream[PAGE:2 * PAGE])
    assert h0.raw == h1.raw and h0.checksum_ok and h0.bk["FullCur"]["low"] == 3
    live = bytearray(disk[:PAGE])
    live[184:208] = stream[184:208]
    esesim.seal_header(live)
    assert bytes(live) == stream[:PAGE]                                  # the live header + bkinfoFullCur
    trailer = stream[-PAGE:]
    assert struct.unpack_from("<I", trailer, 0)[0] == esesim.xor_old(trailer)
    hr, raw, _ = cadm.logs(hbc)
    logs = parse_list(raw)
    assert logs == [(CSBFT_LOG, os.path.join(folder, "edb00003.log"))]
    for _prefix, name in logs:
        on_disk = open(name, "rb").read()
        assert cadm.read_all(hbc, name, chunk=65536)[0] == on_disk
    assert sorted(os.listdir(folder)) == ["Sim CA.edb", "edb.chk", "edb.log", "edb00001.log", "edb00002.log",
                                          "edb00003.log"]
    assert cadm.truncate(hbc) == S_OK                                    # ESE's range: below the checkpoint
    assert sorted(os.listdir(folder)) == ["Sim CA.edb", "edb.chk", "edb.log", "edb00003.log"]
    assert cadm.end(hbc) == S_OK
    for h in read_header(ca_set):
        assert (h.bk["FullPrev"]["low"], h.bk["FullPrev"]["high"]) == (3, 3)
    assert cadm.end(hbc) == HR["InvalidHandle"]                          # End released the context


def test_incremental_after_full(cadm, ca, ca_set):
    full_backup(cadm)
    hr, hbc = cadm.prepare("CA01", LOGS_ONLY)
    assert hr == S_OK
    assert cadm.names(hbc)[0] == HR["InvalidBackupSequence"]            # MS-CSRA: 0xC8000209
    hr, raw, _ = cadm.logs(hbc)
    assert hr == S_OK
    logs = [name for _p, name in parse_list(raw)]
    assert [os.path.basename(n) for n in logs] == ["edb00003.log", "edb00004.log"]
    for name in logs:
        assert cadm.read_all(hbc, name)[0] == open(name, "rb").read()
    assert cadm.truncate(hbc) == S_OK
    assert cadm.end(hbc) == S_OK
    assert (read_header(ca_set)[0].bk["IncPrev"]["low"], read_header(ca_set)[0].bk["IncPrev"]["high"]) == (3, 4)


def test_incremental_without_a_full_backup(cadm, ca):
    hr, hbc = cadm.prepare("CA01", LOGS_ONLY)
    assert (hr, hbc) == (HR["MissingFullBackup"], None)                 # certutil: 0xc8000230 (ESE -560)


def test_copy_backup_without_truncation_leaves_no_base_for_incrementals(cadm, ca, ca_set):
    full_backup(cadm, truncate=False)
    assert read_header(ca_set)[0].bk["CopyPrev"]["low"] == 3
    assert cadm.prepare("CA01", LOGS_ONLY)[0] == HR["MissingFullBackup"]


def test_sequencing_and_parameter_errors(cadm, ca, ca_set):
    assert cadm.prepare("CA01", 0)[0] == HR["InvalidParam"]
    assert cadm.prepare("CA01", 0x4)[0] == HR["InvalidParam"]            # INCREMENTAL: "not yet supported"
    assert cadm.prepare(None, FULL)[0] == HR["InvalidParam"]
    assert cadm.lib.CertSrvBackupPrepareW(esesim.wbuf("CA01"), 0, FULL, None) == HR["InvalidParam"] - (1 << 32)
    hr, hbc = cadm.prepare("CA01", FULL)
    assert hr == S_OK
    assert cadm.prepare("CA01", FULL)[0] == HR["BackupInProgress"]      # one backup per CA
    assert cadm.open(hbc, ca_set)[0] == HR["Unexpected"]                 # before GetDatabaseNames
    buf = ctypes.create_string_buffer(65536)
    assert cadm.read(hbc, buf, 65536) == (HR["Unexpected"], 0)           # no file open
    assert cadm.close(hbc) == HR["Unexpected"]
    assert cadm.names(hbc)[0] == S_OK
    assert cadm.open(hbc, "D" + ca_set)[0] == HR["InvalidArg"]           # the CSBFT prefix must be stripped
    assert cadm.open(hbc, ca_set + ".other")[0] == HR["InvalidArg"]      # not a listed name
    assert cadm.open(hbc, None)[0] == HR["InvalidParam"]
    hr, size = cadm.open(hbc, ca_set.replace("/", "\\").replace("Sim CA", "SIM ca"))
    assert hr == S_OK and size == os.path.getsize(ca_set) + PAGE         # separators and case do not matter
    assert cadm.open(hbc, ca_set)[0] == HR["Unexpected"]                 # one open file per context
    assert cadm.lib.CertSrvBackupRead(hbc, None, 10, None) == HR["InvalidParam"] - (1 << 32)
    assert cadm.close(hbc) == S_OK                                       # database not read completely
    assert cadm.logs(hbc)[0] == S_OK
    assert cadm.truncate(hbc) == HR["LogFileNotCopied"]                  # logs not read: ESE -616
    assert cadm.open(hbc, ca_set)[0] == HR["InvalidBackupSequence"]      # database in the logs phase: aborted
    assert cadm.logs(hbc)[0] == HR["NoBackup"]                           # ESE -520 from then on
    assert cadm.end(hbc) == HR["NoBackup"]
    assert cadm.close(hbc) == HR["InvalidHandle"]
    assert cadm.close(ctypes.c_void_p(0x1234).value) == HR["InvalidHandle"]
    assert cadm.prepare("CA01", FULL)[0] == S_OK                         # the abort freed the ESE backup


def test_read_sizes_follow_the_first_open_hint(cadm, ca, ca_set):
    hr, hbc = cadm.prepare("CA01", FULL)
    assert hr == S_OK
    cadm.names(hbc)
    hr, size = cadm.open(hbc, ca_set, 100 * 1024)                        # -> 128 KB
    buf = ctypes.create_string_buffer(1 << 20)
    assert cadm.read(hbc, buf, 1 << 20) == (S_OK, 128 * 1024)
    assert cadm.read(hbc, buf, 5000) == (S_OK, 5000)                     # a smaller buffer is filled
    assert cadm.close(hbc) == S_OK
    hr, raw, _ = cadm.logs(hbc)
    log = parse_list(raw)[0][1]
    hr, size = cadm.open(hbc, log, 8 << 20)                              # later hints are ignored
    assert cadm.read(hbc, buf, 1 << 20) == (S_OK, 128 * 1024) and size == 128 * 1024
    assert cadm.read(hbc, buf, 1 << 20) == (S_OK, 0)                     # 0 bytes at the end
    assert cadm.close(hbc) == S_OK and cadm.end(hbc) == S_OK


def test_service_not_running(cadm, svc_dir, monkeypatch):
    assert cadm.online("CA01") == (HR["RpcUnavailable"], 0)
    assert cadm.prepare("CA01", FULL) == (HR["RpcUnavailable"], None)
    assert cadm.control("CA01", SHUTDOWN) == HR["RpcUnavailable"]
    open(os.path.join(svc_dir, "ca01.sock"), "w").close()                # a stale endpoint answers nothing
    assert cadm.online("CA01")[0] == HR["RpcUnavailable"]
    monkeypatch.delenv("ESESIM_CERTSVC_DIR")
    assert cadm.prepare("CA01", FULL)[0] == HR["RpcUnavailable"]


def test_paused_service_is_offline_for_backup(cadm, services, ca_set):
    services(ca_set, args=["--paused"])
    assert cadm.online("CA01") == (S_OK, 0)
    assert cadm.prepare("CA01", FULL) == (HR["ServerSuspended"], None)
    assert cadm.control("CA01", RESTART) == S_OK
    assert cadm.online("CA01") == (S_OK, 1)
    hr, hbc = cadm.prepare("CA01", FULL)
    assert hr == S_OK and cadm.end(hbc) == S_OK
    assert cadm.control("CA01", SUSPEND) == S_OK
    assert cadm.online("CA01") == (S_OK, 0)
    assert cadm.control("CA01", 99) == HR["InvalidArg"]


def test_remote_backup_is_disabled_by_default(cadm, services, ca_set, monkeypatch):
    services(ca_set)
    monkeypatch.setenv("COMPUTERNAME", "HOST2")                          # the caller is another machine
    assert cadm.online("CA01") == (S_OK, 1)
    assert cadm.prepare("CA01", FULL) == (HR["AccessDenied"], None)      # IF_NOREMOTEICERTADMINBACKUP


def test_dns_name_of_the_local_host_is_local(cadm, ca):
    hr, hbc = cadm.prepare("ca01.corp.example", FULL)
    assert hr == S_OK and cadm.end(hbc) == S_OK


def test_remote_backup_when_the_interface_flags_allow_it(cadm, services, ca_set, monkeypatch):
    services(ca_set, args=["--interface-flags", "0x601"])
    monkeypatch.setenv("COMPUTERNAME", "HOST2")
    dbs, streams, _logs, copies, read = full_backup(cadm)
    assert dbs == [(CSBFT_DATABASE, ca_set)] and read == copies and len(streams[ca_set][0]) > 0


def test_local_backup_refused_with_nolocal_flag(cadm, services, ca_set):
    services(ca_set, args=["--interface-flags", "0x6c1"])
    assert cadm.prepare("CA01", FULL)[0] == HR["AccessDenied"]


def test_dynamic_file_list(cadm, services, ca_set, tmp_path):
    crl = [str(tmp_path / "Sim CA.crl"), str(tmp_path / "Sim CA+.crl")]
    for name in crl:
        open(name, "wb").write(b"crl")
    services(ca_set, args=["--dynamic", crl[0], "--dynamic", crl[1]])
    hr, hbc = cadm.prepare("CA01", FULL)
    hr, raw, cb = cadm.dynamic(hbc)
    assert hr == S_OK and cb == len(raw) == 2 * (len(crl[0]) + len(crl[1]) + 3)
    assert raw.decode("utf-16-le") == crl[0] + "\0" + crl[1] + "\0\0"    # no CSBFT prefix
    cadm.names(hbc)
    assert cadm.open(hbc, crl[0])[0] == HR["InvalidArg"]                 # copied by other means
    assert cadm.end(hbc) == S_OK


def test_empty_dynamic_file_list(cadm, ca):
    hr, hbc = cadm.prepare("CA01", FULL)
    assert hr == S_OK
    assert cadm.dynamic(hbc) == (S_OK, None, 0)
    assert cadm.end(hbc) == S_OK


def test_faults_return_hresults(cadm, services, ca_set):
    faults = ('[{"api": "CertSrvBackupRead", "call": 2, "err": -1018},'
              ' {"api": "CertSrvBackupOpenFileW", "call": 2, "err": "0x80070005"},'
              ' {"api": "CertSrvBackupGetBackupLogsW", "call": 1, "err": 3221225473}]')
    services(ca_set, env={"ESESIM_CERTSVC_FAULTS": faults})
    hr, hbc = cadm.prepare("CA01", FULL)
    assert hr == S_OK
    cadm.names(hbc)
    buf = ctypes.create_string_buffer(65536)
    assert cadm.open(hbc, ca_set)[0] == S_OK
    assert cadm.read(hbc, buf, 65536) == (S_OK, 65536)
    assert cadm.read(hbc, buf, 65536) == (HR["ReadVerifyFailure"], 0)    # a JET_err as 0xC800xxxx
    assert cadm.read(hbc, buf, 65536) == (S_OK, 65536)                   # the injected call changed nothing
    assert cadm.close(hbc) == S_OK
    assert cadm.open(hbc, ca_set)[0] == HR["AccessDenied"]               # an HRESULT as given
    assert cadm.logs(hbc)[0] == 0xC0000001
    assert cadm.logs(hbc)[0] == S_OK
    assert cadm.end(hbc) == S_OK


def test_ese_faults_inside_the_service_are_mapped(cadm, services, ca_set):
    services(ca_set, env={"ESESIM_FAULTS": '[{"api": "JetReadFileInstance", "call": 1, "err": -1022}]'})
    hr, hbc = cadm.prepare("CA01", FULL)
    assert hr == S_OK
    cadm.names(hbc)
    cadm.open(hbc, ca_set)
    buf = ctypes.create_string_buffer(65536)
    assert cadm.read(hbc, buf, 65536) == (HR["DiskIO"], 0)
    assert cadm.end(hbc) == S_OK


def wait_gone(svc, timeout=5):
    deadline = time.monotonic() + timeout
    while svc.alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    return not svc.alive()


def test_stop_fault_mid_backup(cadm, services, ca_set):
    svc = services(ca_set, env={"ESESIM_CERTSVC_FAULTS": '[{"api": "CertSrvBackupRead", "call": 3, "stop": true}]'})
    before = read_header(ca_set)[0]
    hr, hbc = cadm.prepare("CA01", FULL)
    cadm.names(hbc)
    cadm.open(hbc, ca_set)
    buf = ctypes.create_string_buffer(65536)
    assert cadm.read(hbc, buf, 65536)[0] == S_OK
    assert cadm.read(hbc, buf, 65536)[0] == S_OK
    assert cadm.read(hbc, buf, 65536) == (HR["RpcUnavailable"], 0)
    assert wait_gone(svc) and svc.wait() == 0
    assert "JetTerm2 0" in svc.stderr                                    # the service ended its ESE backup
    assert cadm.close(hbc) == HR["RpcUnavailable"]
    assert cadm.logs(hbc)[0] == HR["RpcUnavailable"]
    assert cadm.online("CA01")[0] == HR["RpcUnavailable"]
    assert cadm.end(hbc) == HR["RpcUnavailable"]                         # End still releases the context
    assert cadm.end(hbc) == HR["InvalidHandle"]
    after = read_header(ca_set)[0]
    assert after.dbstate == 3 and after.bk == before.bk                  # clean, no backup recorded
    services(ca_set)
    hr, hbc = cadm.prepare("CA01", FULL)                                 # nothing of the old backup remains
    assert hr == S_OK and cadm.end(hbc) == S_OK


def test_service_stop_signal_mid_backup(cadm, ca):
    hr, hbc = cadm.prepare("CA01", FULL)
    assert hr == S_OK
    cadm.names(hbc)
    ca.proc.send_signal(signal.SIGTERM)
    assert wait_gone(ca)
    assert not os.path.exists(os.path.join(ca.dir, "ca01.sock"))
    assert cadm.open(hbc, ca.db)[0] == HR["RpcUnavailable"]
    assert cadm.end(hbc) == HR["RpcUnavailable"]


def test_shutdown_control_from_another_context(cadm, ca):
    hr, hbc = cadm.prepare("CA01", FULL)
    assert hr == S_OK
    assert cadm.control("CA01", SHUTDOWN) == S_OK
    assert wait_gone(ca) and ca.wait() == 0
    assert cadm.names(hbc)[0] == HR["RpcUnavailable"]
    assert cadm.end(hbc) == HR["RpcUnavailable"]


CLIENT_EXITS = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
h = ctypes.c_void_p()
name = ctypes.create_string_buffer("CA01".encode("utf-16-le") + b"\0\0")
sys.exit(lib.CertSrvBackupPrepareW(name, 0, 1, ctypes.byref(h)))
"""


def test_a_client_that_exits_without_end_releases_the_backup(cadm, ca):
    """The context's connection closing is an RPC context rundown: the service aborts the backup."""
    res = subprocess.run([sys.executable, "-c", CLIENT_EXITS, cadm.lib._name], check=False,  # pylint: disable=W0212
                         env=dict(os.environ), timeout=30)
    assert res.returncode == 0
    for _attempt in range(50):
        hr, hbc = cadm.prepare("CA01", FULL)
        if hr != HR["BackupInProgress"]:
            break
        time.sleep(0.02)
    assert hr == S_OK and cadm.end(hbc) == S_OK


def test_service_holds_the_database_exclusively(jet, cadm, services, ca_set):
    svc = services(ca_set)
    assert jet.dbinfo(ca_set, 17, 4)[0] == esesim.E["FileAccessDenied"]           # esentutl /mh: -1032
    assert jet.setp(None, esesim.P_PAGE_SIZE, PAGE) == 0
    err, inst = jet.create("other")
    assert err == 0
    folder = os.path.dirname(ca_set)
    other = os.path.join(os.path.dirname(folder), "other")
    os.makedirs(other)
    for pid, value in ((esesim.P_LOG_PATH, other), (esesim.P_SYSTEM_PATH, other)):
        assert jet.setp(inst, pid, s=value) == 0
    assert jet.init(inst) == 0
    err, ses = jet.session(inst)
    assert jet.attach(ses, ca_set) == esesim.E["FileAccessDenied"]                 # held by another process
    second = services(ca_set, server="CA02", wait=False)
    code, err_text = second.run_to_exit()
    assert code == 3 and "-1032" in err_text
    code, err_text = services(ca_set, wait=False).run_to_exit()                   # same server name
    assert code != 0
    svc.stop()
    assert jet.attach(ses, ca_set) == 0                                            # released at stop
