# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Transport faults over WinRM: refused credentials, a Receive that outlasts the operation timeout, the
connection dropped in the middle of a run, the command killed in the middle of a run, and a host where
esent.dll cannot be loaded. A task that fails names the host and the cause; nothing is left running,
and a run that was cut off publishes no set and truncates nothing."""
import os
import re

import pytest

from scratch import replace_in, scratch_collection
from winrm_lane import REPO, Lane, synth_source, tree, wait_for

RUN_PLAY = """
- hosts: all
  gather_facts: false
  tasks:
    - name: run
      ese.backup.run:
        databases: ['{src}/SRUDB.dat']
        log_path: '{src}'
        base_name: SRU
        dest: '{dest}'
        set_name: nightly
        buffer_size: 12288
"""


def logs(src):
    """{name: SHA-256} of the log files in ``src``."""
    return dict((k, v) for k, v in tree(src).items() if k.endswith(".log"))


def failure_line(res, host):
    """The 'fatal: [host]: ...' line ansible-playbook printed for the host."""
    lines = [line for line in res.stdout.splitlines() if line.startswith("fatal: [%s]" % host)]
    assert lines, res.stdout[-4000:]
    return lines[0]


def test_refused_credentials_make_the_host_unreachable(lane):
    lane.add_host("win01", ansible_password="not-the-password")
    res = lane.run("""
- hosts: all
  gather_facts: false
  tasks:
    - name: info
      ese.backup.info:
        sessions: true
""")
    assert res.rc != 0
    rec = res.task("win01", "info")
    assert rec["status"] == "unreachable", rec
    assert "credentials were rejected" in rec["result"]["msg"], rec["result"]["msg"]
    assert "UNREACHABLE" in failure_line(res, "win01")
    assert res.stats["refused"] >= 1 and res.stats["shells"] == []


def test_a_long_receive_times_out_and_is_asked_again(lane):
    """The stand-in answers a Receive that waited 1 s with the w:TimedOut fault (2150858793), as a Windows
    host does after the OperationTimeout; pywinrm asks again until the command ends."""
    lane.winrs.operation_timeout = 1
    lane.add_host("win01")
    res = lane.run("""
- hosts: all
  gather_facts: false
  tasks:
    - name: sleep
      ansible.builtin.raw: Start-Sleep -Seconds 4; 'slept'
""")
    assert res.rc == 0, res.stdout[-4000:]
    assert res.task("win01", "sleep")["result"]["stdout"].strip() == "slept"
    assert res.stats["timeouts"] >= 2, res.stats
    acts = res.shells("win01")[0]["actions"]
    assert acts["Receive:TimedOut"]["requests"] == res.stats["timeouts"] and acts["Receive"]["requests"] == 1, acts


def _cut_off_run(lane, inject):
    """Starts a run of a 64 MiB backup, waits until its staging folder exists (the engine is streaming),
    freezes the command there and calls ``inject``; returns (result, src, dest, logs before)."""
    src = os.path.join(lane.root, "src")
    dest = os.path.join(lane.root, "dest")
    synth_source(src, 64)
    os.makedirs(dest)
    before = logs(src)
    lane.add_host("win01")
    proc = lane.start(RUN_PLAY.format(src=src, dest=dest))
    wait_for(lambda: os.path.exists(os.path.join(dest, ".nightly.partial")), proc)
    assert not os.path.exists(os.path.join(dest, "nightly")), "the backup finished before the fault"
    assert lane.winrs.freeze_commands() == 1
    inject()
    res = lane.finish(proc)
    return res, src, dest, before


def _nothing_published_nothing_truncated(lane, res, src, dest, before):
    assert not os.path.exists(os.path.join(dest, "nightly")), os.listdir(dest)
    assert [n for n in os.listdir(dest) if n != ".nightly.partial"] == []
    assert logs(src) == before  # no log deleted, renamed or changed: nothing truncated
    assert lane.winrs.open_shells() == [] and lane.winrs.running() == []


def test_connection_dropped_in_the_middle_of_a_run(lane):
    res, src, dest, before = _cut_off_run(lane, lane.winrs.drop_receive)
    assert res.rc != 0
    rec = res.task("win01", "run")
    assert rec["status"] in ("failed", "unreachable"), rec
    msg = rec["result"]["msg"]
    assert re.search(r"Connection aborted|RemoteDisconnected|connection", msg, re.I), msg
    failure_line(res, "win01")
    assert res.stats["dropped"] == 1
    # The plugin's clean-up reached the host afterwards: Signal terminate killed the command, Delete closed the shell.
    shell = res.shells("win01")[0]
    assert shell["commands"][0]["killed_by"] == "terminate" and shell["closed"], shell
    _nothing_published_nothing_truncated(lane, res, src, dest, before)
    print("left in dest after the drop:", sorted(os.listdir(dest)), "; message:", msg)


@pytest.fixture(scope="module")
def killed(tmp_path_factory, pwsh):
    lane = Lane(tmp_path_factory.mktemp("killed"), pwsh)
    try:
        res, src, dest, before = _cut_off_run(lane, lane.winrs.kill_commands)
        res.lane, res.src, res.dest, res.before = lane, src, dest, before
        yield res
    finally:
        lane.stop()


def test_command_killed_in_the_middle_of_a_run(killed):
    res = killed
    assert res.rc != 0
    rec = res.task("win01", "run")
    assert rec["status"] == "failed", rec
    # The process died without a word: exit code -9 (SIGKILL; a Windows host reports the code given to
    # TerminateProcess), no output.
    assert (rec["result"]["rc"], rec["result"]["module_stdout"]) == (-9, ""), rec["result"]
    assert "failed before the engine returned its facts" in rec["result"]["msg"]
    failure_line(res, "win01")
    assert res.shells("win01")[0]["commands"][0]["killed_by"] == "killed by the stand-in"
    _nothing_published_nothing_truncated(res.lane, res, res.src, res.dest, res.before)
    print("left in dest after the kill:", sorted(os.listdir(res.dest)), "; message:", rec["result"]["msg"])


def test_killed_run_message_names_the_exit_code(killed):
    msg = killed.task("win01", "run")["result"]["msg"]
    assert re.search(r"-9\b", msg) and re.search(r"no output|exit", msg, re.I), msg


INFO_PLAY = """
- hosts: all
  gather_facts: false
  tasks:
    - name: info
      ese.backup.info:
        databases: ['%s']
"""


def info_on_one_host(tmp_path, pwsh, **lane_options):
    """The ``info`` task's record on one host of a lane made with ``lane_options``."""
    lane = Lane(tmp_path / "lane", pwsh, **lane_options)
    try:
        src = synth_source(str(tmp_path / "src"), 1)
        lane.add_host("win01")
        res = lane.run(INFO_PLAY % src)
    finally:
        lane.stop()
    return res.task("win01", "info")


def test_a_host_without_esent_dll_is_told_which_library_and_call(tmp_path, pwsh):
    """The simulator is not on the library path of the host's commands: the engine's message names the
    library, the call, and what to check (off Windows: LD_LIBRARY_PATH)."""
    rec = info_on_one_host(tmp_path, pwsh, esent=False)
    assert rec["status"] == "failed", rec
    msg = rec["result"]["msg"]
    print("message without esent.dll:", msg)
    assert re.search(r"cannot load esent\.dll for JetGetDatabaseFileInfoW\b", msg), msg
    assert "LD_LIBRARY_PATH" in msg, msg


def test_a_type_accelerator_by_full_name_fails_to_load_over_winrm(tmp_path, pwsh):
    """A scratch copy of the collection with the engine's TypeAccelerator naming the full type name, which
    Add-CSharpType cannot find (it matches short names): the module fails to load, as it did on Windows."""
    engine = os.path.join("plugins", "module_utils", "EseEngine.cs")
    collections = scratch_collection(
        os.path.join(REPO, "build", "winrm-scratch", "type-accelerator"),
        lambda root: replace_in(os.path.join(root, engine), "-TypeName Engine\n",
                                "-TypeName ansible_collections.ese.backup.plugins.module_utils.EseEngine.Engine\n"))
    rec = info_on_one_host(tmp_path, pwsh, collections=collections)
    assert rec["status"] == "failed", rec
    assert "Failed to find compiled class" in rec["result"]["msg"], rec["result"]["msg"]
