# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The simulated-host connection plugin: payload shapes, argument validation, path mapping."""
import json
import os

import pytest

from scratch import replace_in
from simulation import REPO, esesim_connection, scratch_collection

ArgSpecError, PathMap, PayloadError = (esesim_connection.ArgSpecError, esesim_connection.PathMap,
                                       esesim_connection.PayloadError)
module_call_from_payload, validate_args = (esesim_connection.module_call_from_payload,
                                           esesim_connection.validate_args)

ARGS = {"_ansible_module_name": "ese.backup.run", "_ansible_check_mode": False, "dest": "C:\\b"}


def test_payload_up_to_2_18_shape():
    payload = b"exec wrapper source\0\0\0\0" + json.dumps({"module_args": ARGS}).encode()
    assert module_call_from_payload(payload) == ("ese.backup.run", ARGS, None)
    manifest = {"module_args": ARGS, "actions": ["async_wrapper", "async_watchdog", "module_powershell_wrapper"],
                "async_jid": "j1", "async_timeout_sec": 30}
    payload = b"exec wrapper source\0\0\0\0" + json.dumps(manifest).encode()
    assert module_call_from_payload(payload) == ("ese.backup.run", ARGS, {"jid": "j1", "timeout": 30})


def test_payload_from_2_19_shape():
    manifest = {"scripts": {}, "actions": [
        {"name": "exec_wrapper.ps1", "params": {}},
        {"name": "module_wrapper.ps1", "params": {"Variables": [{"Name": "complex_args", "Value": ARGS}]}}]}
    payload = b'{"name": "exec_wrapper"}\n\0\0\0\0\n' + json.dumps(manifest).encode()
    assert module_call_from_payload(payload) == ("ese.backup.run", ARGS, None)
    manifest["actions"][:0] = [{"name": "async_wrapper.ps1", "params": {"AsyncJid": "j2", "StartupTimeout": 5}},
                               {"name": "async_watchdog.ps1", "params": {"Timeout": 30}}]
    payload = b'{"name": "exec_wrapper"}\n\0\0\0\0\n' + json.dumps(manifest).encode()
    assert module_call_from_payload(payload) == ("ese.backup.run", ARGS, {"jid": "j2", "timeout": 30})


@pytest.mark.parametrize("payload", [
    b"no sentinel at all",
    b"x\0\0\0\0not json",
    b"x\0\0\0\0" + json.dumps({"something_new": {}}).encode(),
    b"x\0\0\0\0" + json.dumps({"actions": [{"name": "module_wrapper.ps1", "params": {}}]}).encode(),
])
def test_unknown_payload_shapes_fail_loudly(payload):
    with pytest.raises(PayloadError, match="esesim"):
        module_call_from_payload(payload)


def test_become_payload_is_refused():
    manifest = {"actions": [{"name": "become_wrapper.ps1"}, {"name": "module_wrapper.ps1"}]}
    with pytest.raises(PayloadError, match="become_wrapper.ps1 is not simulated"):
        module_call_from_payload(b"x\0\0\0\0" + json.dumps(manifest).encode())


def test_path_map_round_trip(tmp_path):
    paths = PathMap(str(tmp_path), "dc01")
    local = paths.to_local("C:\\Windows\\NTDS\\ntds.dit")
    assert local == os.path.join(str(tmp_path), "hosts", "dc01", "C", "Windows", "NTDS", "ntds.dit")
    assert paths.to_windows(local) == "C:\\Windows\\NTDS\\ntds.dit"
    share = paths.to_local("\\\\Backup01\\ESE\\dc01")
    assert share == os.path.join(str(tmp_path), "unc", "backup01", "ese", "dc01")
    assert paths.to_windows({"a": [share + "/x"]}) == {"a": ["\\\\backup01\\ese\\dc01\\x"]}
    assert paths.to_local("relative\\dir") == "relative\\dir"


def test_argument_validation_follows_the_module_docs():
    if not os.path.exists(os.path.join(REPO, "plugins", "modules", "run.yml")):
        pytest.fail("plugins/modules/run.yml is missing")
    params = validate_args("run", {"databases": ["C:\\db.edb"], "log_path": "C:\\logs", "dest": "C:\\b"})
    assert params["type"] == "full"
    with pytest.raises(ArgSpecError, match="Unsupported parameters.*bogus"):
        validate_args("run", {"databases": ["x"], "log_path": "y", "dest": "z", "bogus": 1})
    with pytest.raises(ArgSpecError, match="missing required arguments: .*dest"):
        validate_args("run", {"databases": ["x"], "log_path": "y"})
    with pytest.raises(ArgSpecError, match="value of type must be one of"):
        validate_args("run", {"databases": ["x"], "log_path": "y", "dest": "z", "type": "weekly"})


def test_the_installed_ansible_core_payload_is_understood(bare_sim):
    sim = bare_sim
    """Canary: a real ansible-playbook run must hand a module name and its args to the host."""
    sim.add_host("probe01")
    playbook = os.path.join(sim.root, "probe.yml")
    with open(playbook, "w") as f:
        f.write("- hosts: all\n  gather_facts: false\n  tasks:\n"
                "    - name: probe\n      payload_probe:\n        marker: canary\n")
    res = sim.run(playbook, extra_args=["-M", os.path.join(REPO, "tests", "e2e", "library")])
    rec = res.task("probe01", "probe")
    assert rec["result"]["msg"] == ("esesim: module payload_probe is not simulated: the module must make exactly "
                                    "one Invoke-EseEntryPoint call (found 0)"), res.stdout
    assert rec["result"]["received_args"]["marker"] == "canary"


# Odd Windows paths: every combination of a root, separators and climbing segments must map below the
# simulated root (the host's own tree or the UNC tree), whatever the input.
ODD_ROOTS = ["C:\\", "c:/", "Z:\\\\", "\\\\backup01\\ese\\", "\\\\backup01\\ese\\\\", "//backup01/ese/",
             "\\\\?\\C:\\", "\\\\.\\C:\\", "\\\\?\\UNC\\backup01\\ese\\", "\\", "/", "\\\\..\\..\\",
             "\\\\.\\..\\", "\\\\backup01\\..\\"]
ODD_TAILS = ["x", "..\\x", "..\\..\\..\\..\\x", "a\\..\\..\\b", "..", ".\\.\\..", "a//b\\\\c", "a/../../../etc",
             "...\\x", "a\\.\\b\\..\\..\\..\\..\\..", ""]


def odd_paths():
    for root in ODD_ROOTS:
        for tail in ODD_TAILS:
            yield root + tail


def test_odd_paths_stay_inside_the_simulated_root(tmp_path):
    paths = PathMap(str(tmp_path), "dc01")
    root = os.path.realpath(str(tmp_path))
    checked = 0
    for path in odd_paths():
        local = paths.to_local(path)
        assert local != path, "%r was not mapped" % path
        real = os.path.realpath(local)
        assert os.path.commonpath([root, real]) == root, "%r escapes to %s" % (path, real)
        checked += 1
    assert checked == len(ODD_ROOTS) * len(ODD_TAILS) >= 150


def test_windows_path_normalisation_is_kept(tmp_path):
    paths = PathMap(str(tmp_path), "dc01")
    host, unc = os.path.join(str(tmp_path), "hosts", "dc01"), os.path.join(str(tmp_path), "unc")
    assert paths.to_local("C:\\..\\..\\..\\..\\x") == os.path.join(host, "C", "x")
    assert paths.to_local("\\\\backup01\\ese\\\\x") == os.path.join(unc, "backup01", "ese", "x")
    assert paths.to_local("\\\\backup01\\ese\\..\\..\\x") == os.path.join(unc, "backup01", "ese", "x")
    assert paths.to_local("C:\\\\x") == os.path.join(host, "C", "x")
    assert paths.to_local("C:\\a\\.\\b\\..\\c") == os.path.join(host, "C", "a", "c")
    assert paths.to_local("\\Windows\\x") == os.path.join(host, "C", "Windows", "x")
    assert paths.to_local("\\\\?\\D:\\x") == os.path.join(host, "D", "x")
    assert paths.to_local("not\\rooted") == "not\\rooted"
    assert paths.to_windows(paths.to_local("C:\\a\\..\\b\\c")) == "C:\\b\\c"


UTILS = "ansible_collections.ese.backup.plugins.module_utils."


def _info_task(sim, collections):
    sim.add_host("load01")
    return sim.run("- hosts: all\n  gather_facts: false\n  tasks:\n    - name: info\n      ese.backup.info:\n"
                   "        backup_path: '\\\\backup01\\ese'\n", collections=collections).task("load01", "info")


def test_a_type_accelerator_windows_cannot_resolve_fails_the_task(bare_sim):
    """The simulated host compiles what the payload carries: a full type name in //TypeAccelerator
    (Add-CSharpType matches short names) fails the task as on Windows, on every ansible-core."""
    collections = scratch_collection("esesim-type-accelerator", lambda root: replace_in(
        os.path.join(root, "plugins", "module_utils", "EseEngine.cs"),
        "//TypeAccelerator -Name EseEngine -TypeName Engine",
        "//TypeAccelerator -Name EseEngine -TypeName %sEseEngine.Engine" % UTILS))
    rec = _info_task(bare_sim, collections)
    assert rec["status"] == "failed"
    assert ("Failed to find compiled class '%sEseEngine.Engine' for custom TypeAccelerator." % UTILS
            in rec["result"]["msg"]), rec["result"]["msg"]


def test_a_util_carried_twice_fails_the_task_where_ansible_core_duplicates_it(bare_sim):
    """info.ps1 asking for ..module_utils.EseEngine while _EseSession.cs has the absolute using: ansible-core
    2.16-2.18 carry EseEngine.cs twice and Windows fails with CS0101; 2.19+ carry it once."""
    from ansible.release import __version__
    collections = scratch_collection("esesim-relative-util", lambda root: replace_in(
        os.path.join(root, "plugins", "modules", "info.ps1"), "#AnsibleRequires -CSharpUtil %s_EseSession" % UTILS,
        "#AnsibleRequires -CSharpUtil ..module_utils.EseEngine\n#AnsibleRequires -CSharpUtil %s_EseSession" % UTILS))
    rec = _info_task(bare_sim, collections)
    if tuple(int(x) for x in __version__.split(".")[:2]) >= (2, 19):
        assert "Failed to compile C# code" not in str(rec["result"].get("msg")), rec["result"]
    else:
        assert rec["status"] == "failed" and "CS0101" in rec["result"]["msg"], rec["result"]
