# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lane catches what no Windows host would load: scratch copies of the collection (under build/),
each with one defect reintroduced, fail where the unmodified copy backs up.

- EseEngine.cs's TypeAccelerator given as the full type name (Add-CSharpType matches short names).
- run.ps1 calling Ansible.Privilege unguarded before the engine call (Windows-only API).
"""
import os

import pytest

import scratch  # tests/lib
from lane import REPO
from scratch import replace_in

SOURCE_VAR = "ESE_LANE_COLLECTIONS"
ACCELERATOR = "//TypeAccelerator -Name EseEngine -TypeName Engine"
FULL_ACCELERATOR = ("//TypeAccelerator -Name EseEngine -TypeName "
                    "ansible_collections.ese.backup.plugins.module_utils.EseEngine.Engine")
ENTRY = "Invoke-EseEntryPoint -Module $module"
UNGUARDED = "$null = [Ansible.Privilege.PrivilegeUtil]::GetCurrentProcess()\n"

PLAY = """
- name: One backup
  hosts: all
  gather_facts: false
  tasks:
    - name: backup
      ese.backup.run:
        databases: ['{{ sru }}/SRUDB.dat']
        log_path: '{{ sru }}'
        base_name: SRU
        dest: '{{ dest }}'
        set_name: nightly
      ignore_errors: true
"""


def collection_source():
    """The collection the lane runs (ESE_LANE_COLLECTIONS, else this working tree)."""
    base = os.environ.get(SOURCE_VAR)
    return os.path.join(base, "ansible_collections", "ese", "backup") if base else REPO


def scratch_collection(name, edit):
    """build/lane-defects/<name>: a copy of the collection, edited by ``edit``."""
    return scratch.scratch_collection(os.path.join(REPO, "build", "lane-defects", name), edit, collection_source())


def full_type_name(dest):
    replace_in(os.path.join(dest, "plugins", "module_utils", "EseEngine.cs"), ACCELERATOR, FULL_ACCELERATOR)


def unguarded_privilege(dest):
    path = os.path.join(dest, "plugins", "modules", "run.ps1")
    replace_in(path, "#AnsibleRequires -CSharpUtil Ansible.Basic\n",
               "#AnsibleRequires -CSharpUtil Ansible.Basic\n#AnsibleRequires -CSharpUtil Ansible.Privilege\n")
    replace_in(path, ENTRY, UNGUARDED + ENTRY)


@pytest.fixture(scope="module")
def outcomes(lane):
    """Three copies, run at the same time, each on a host of its own."""
    def host(name, **extra):
        base = lane.add_host(name)
        return {name: dict(lane.hosts[name], sru=os.path.join(base, "sru"), dest=os.path.join(base, "backups"),
                           **extra)}

    runs = {}
    for name, edit in (("unmodified", None), ("full_type_name", full_type_name),
                       ("unguarded_privilege", unguarded_privilege)):
        hosts = host(name)
        runs[name] = lane.start(PLAY, {"all": {"hosts": hosts}}, collections=scratch_collection(name, edit),
                                name=name)[0]
    done = {}
    for name, proc in runs.items():
        res = lane.collect(proc)
        for host_name in set(r["host"] for r in res.records):
            done[host_name] = (res, lane.host_root(host_name))
    return done


def test_the_unmodified_copy_backs_up(outcomes):
    res, base = outcomes["unmodified"]
    rec = res.task("unmodified", "backup")
    assert rec["status"] == "ok" and rec["result"]["changed"] is True, res.explain()
    assert os.path.isfile(os.path.join(base, "backups", "nightly", "manifest.json"))


@pytest.mark.parametrize("defect, message", [
    ("full_type_name", "Failed to find compiled class"),
    ("unguarded_privilege", "Exception calling \"GetCurrentProcess\""),
])
def test_a_reintroduced_defect_fails_the_task(outcomes, defect, message):
    res, base = outcomes[defect]
    rec = res.task(defect, "backup")
    result = rec["result"]
    assert rec["status"] == "failed", res.explain()
    assert "failed before the engine returned its facts" in result["msg"], result["msg"]
    assert message in result["msg"] + str(result.get("exception", "")), result
    assert not os.path.exists(os.path.join(base, "backups", "nightly"))
