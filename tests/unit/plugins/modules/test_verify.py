# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ese.backup.verify as Ansible runs it: the module process, AnsiballZ packaging, check mode, options."""
import json
import os
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("ansible", reason="ansible-core is not installed for this Python (use .venv)")

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
COLL = os.path.join(REPO, "build", "collections")
TESTDATA = os.environ.get("ESE_TESTDATA") or os.path.abspath(os.path.join(REPO, "tests", "data", "ese"))
DIRTY = os.path.join(TESTDATA, "sets", "srum-win11-dirty")
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))


def run_module(args, tmp_path, extra_path=None):
    argfile = tmp_path / "args.json"
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(([extra_path] if extra_path else []) + [COLL])
    cmd = [sys.executable, "-m", "ansible_collections.ese.backup.plugins.modules.verify", str(argfile)]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=120)
    return json.loads(proc.stdout)


@pytest.fixture
def dirty_copy(tmp_path):
    if not os.path.isdir(DIRTY):
        pytest.skip("sample set not found")
    d = tmp_path / "sru"
    shutil.copytree(DIRTY, str(d))
    for f in d.iterdir():
        os.chmod(str(f), 0o644)
    return str(d)


def test_valid_folder(tmp_path, dirty_copy):
    r = run_module({"path": dirty_copy}, tmp_path)
    assert r["valid"] is True and r["changed"] is False and not r.get("failed")
    assert r["databases"][0]["state_name"] == "DirtyShutdown" and r["logs"][0]["gen_high"] == 92


def test_check_mode_changes_nothing(tmp_path, dirty_copy):
    before = dict((f, os.stat(os.path.join(dirty_copy, f)).st_mtime_ns) for f in os.listdir(dirty_copy))
    r = run_module({"path": dirty_copy, "_ansible_check_mode": True}, tmp_path)
    assert r["valid"] is True and r["changed"] is False
    after = dict((f, os.stat(os.path.join(dirty_copy, f)).st_mtime_ns) for f in os.listdir(dirty_copy))
    assert before == after


def test_invalid_is_a_result_not_a_failure(tmp_path, dirty_copy):
    os.remove(os.path.join(dirty_copy, "SRU0005A.log"))
    r = run_module({"path": dirty_copy}, tmp_path)
    assert r["valid"] is False and not r.get("failed") and r["changed"] is False
    assert [p["code"] for p in r["problems"]] == ["LOG_GAP"]


def test_fail_on_invalid(tmp_path, dirty_copy):
    os.remove(os.path.join(dirty_copy, "SRU0005A.log"))
    r = run_module({"path": dirty_copy, "fail_on_invalid": True}, tmp_path)
    assert r["failed"] is True and "LOG_GAP" in r["msg"] and r["valid"] is False and r["problems"]


def test_missing_path_fails(tmp_path):
    r = run_module({"path": str(tmp_path / "nope")}, tmp_path)
    assert r["failed"] is True and "does not exist" in r["msg"]


@pytest.mark.parametrize("path", ["", " "])
def test_empty_path_fails_naming_the_option(tmp_path, path):
    """An empty path is not the working directory."""
    r = run_module({"path": path}, tmp_path)
    assert r["failed"] is True and r["msg"].startswith("path:") and "empty" in r["msg"]
    assert "valid" not in r


def test_temp_database_is_a_warning_and_not_valid(tmp_path):
    import ese_synth
    p = str(tmp_path / "temp.edb")
    ese_synth.make_database(p, 8192, pages=4, state=1)
    r = run_module({"path": p}, tmp_path)
    assert r["valid"] is False and not r.get("failed")
    assert [x["code"] for x in r["problems"]] == ["DB_NOT_BACKUP_TARGET"]
    assert "not a backup target" in json.dumps(r.get("warnings"))   # a string in older ansible-core, an event in 2.19+


def test_kept_logs_folder_is_a_warning_to_keep_it(tmp_path):
    import ese_synth
    root = tmp_path / "sets"
    root.mkdir()
    ese_synth.make_backup_set(str(root), "a-full", "full", 10, 12)
    ese_synth.make_kept_logs(str(root), "b-inc", "incremental", gen_low=13, gen_high=14)
    r = run_module({"path": str(root)}, tmp_path)
    assert r["valid"] is True and [x["code"] for x in r["problems"]] == ["SET_KEPT_LOGS"]
    assert ".b-inc.partial" in json.dumps(r.get("warnings")) and "keep it" in json.dumps(r.get("warnings"))


def test_unknown_option_fails(tmp_path, dirty_copy):
    r = run_module({"path": dirty_copy, "bogus": 1}, tmp_path)
    assert r["failed"] is True


def test_without_numpy(tmp_path, dirty_copy):
    block = tmp_path / "block"
    (block / "numpy").mkdir(parents=True)
    (block / "numpy" / "__init__.py").write_text("raise ImportError('numpy blocked for this test')\n")
    ese_synth = __import__("ese_synth")
    ese_synth.corrupt(os.path.join(dirty_copy, "SRUDB.dat"), (300 + 1) * 4096 + 999, 0)
    r = run_module({"path": dirty_copy}, tmp_path, extra_path=str(block))
    assert r["numpy"] is False and any("numpy" in n for n in r["notes"])
    assert [p["code"] for p in r["problems"]] == ["DB_PAGE_CORRECTABLE"] and r["databases"][0]["bad_pages"] == [300]


@pytest.mark.slow
def test_through_ansible_with_delegation(tmp_path, dirty_copy):
    """The real AnsiballZ path: the module_utils package must travel with the module."""
    exe = os.path.join(os.path.dirname(sys.executable), "ansible")
    if not os.path.exists(exe):
        pytest.skip("ansible not installed next to this Python")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLL, ANSIBLE_NOCOLOR="1", ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_HOME=str(tmp_path / "home"))
    cmd = [exe, "localhost", "-c", "local", "-m", "ese.backup.verify", "-a", "path=%s" % dirty_copy, "--check"]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "localhost | SUCCESS =>" in proc.stdout, proc.stdout
    res = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert res["valid"] is True and res["changed"] is False


def test_docs_list_every_code():
    sys.path.insert(0, COLL)
    from ansible_collections.ese.backup.plugins.module_utils.ese_format.problems import CODES, markdown_table
    with open(os.path.join(REPO, "plugins", "modules", "verify.py")) as f:
        mod = f.read()
    with open(os.path.join(REPO, "docs", "verify.md")) as f:
        md = f.read()
    assert markdown_table() in md, "docs/verify.md: paste problems.markdown_table() into 'Problem codes'"
    for code in CODES:
        assert "C(%s)" % code in mod, code
        assert "`%s`" % code in md, code


@pytest.fixture
def fleet(tmp_path):
    """A share with one folder per host: web01 and web02 valid, web03 with a damaged database page."""
    import ese_synth
    root = tmp_path / "share"
    for i, host in enumerate(("web01", "web02", "web03")):
        (root / host).mkdir(parents=True)
        s = ese_synth.make_backup_set(str(root / host), "full-1", "full", 10, 12, seed=i + 1)
        if host == "web03":
            db = os.path.join(s, "databases", "test.edb")
            ese_synth.corrupt(db, 9 * 4096 + 10, 1)
            ese_synth.corrupt(db, 9 * 4096 + 3000, 6)
    return str(root)


def test_paths_in_one_task_equal_one_task_per_path(tmp_path, fleet):
    hosts = ["web01", "web02", "web03"]
    paths = [os.path.join(fleet, h) for h in hosts]
    r = run_module({"paths": paths, "names": hosts, "processes": 2}, tmp_path)
    assert not r.get("failed") and r["changed"] is False and r["valid"] is False and r["processes"] == 2
    assert [x["name"] for x in r["results"]] == hosts and [x["valid"] for x in r["results"]] == [True, True, False]
    for host, path, res in zip(hosts, paths, r["results"]):
        alone = run_module({"path": path}, tmp_path)
        for key in ("valid", "kind", "problems", "databases", "logs", "sets", "chains", "restorable", "error_count"):
            assert res[key] == alone[key], (host, key)
    assert set(p["name"] for p in r["problems"] if p["severity"] == "error") == {"web03"}
    assert r["error_count"] == r["results"][2]["error_count"] > 0


def test_subfolders_in_one_task(tmp_path, fleet):
    r = run_module({"path": fleet, "subfolders": True}, tmp_path)
    assert not r.get("failed") and [x["name"] for x in r["results"]] == ["web01", "web02", "web03"]
    assert [x["valid"] for x in r["results"]] == [True, True, False]
    r = run_module({"path": fleet, "subfolders": True, "fail_on_invalid": True}, tmp_path)
    assert r["failed"] is True and r["msg"].startswith("1 of 3 not valid: web03 (") and "DB_PAGE_CHECKSUM" in r["msg"]


def test_a_missing_path_fails_the_task_after_the_others(tmp_path, fleet):
    paths = [os.path.join(fleet, "web01"), os.path.join(fleet, "gone"), os.path.join(fleet, "web02")]
    r = run_module({"paths": paths}, tmp_path)
    assert r["failed"] is True and r["msg"].startswith("1 of 3 paths could not be verified: cannot verify")
    assert "does not exist" in r["msg"] and [x.get("valid") for x in r["results"]] == [True, None, True]


@pytest.mark.parametrize("args,start", [
    ({"paths": []}, "paths: the list is empty"),
    ({"paths": ["/a", " "]}, "paths: item 2 is empty"),
    ({"paths": ["/a", "/b/../a"]}, "paths: /b/../a is given twice (items 1 and 2)"),
    ({"paths": ["/a"], "processes": 0}, "processes: must be from 1 to 256"),
    ({"paths": ["/a"], "processes": -3}, "processes: must be from 1 to 256"),
    ({"paths": ["/a"], "processes": 1000}, "processes: must be from 1 to 256"),
    ({"path": "/a", "processes": 0}, "processes: must be from 1 to 256"),
    ({"paths": ["/a", "/b"], "names": ["a"]}, "names: 1 names for 2 paths"),
    ({"paths": ["/a", "/b"], "names": ["a", "a"]}, "names: a is given twice"),
    ({"paths": ["/a"], "names": [""]}, "names: item 1 is empty"),
    ({"path": "/a", "names": ["a"]}, "names: only with paths"),
    ({"paths": ["/a"], "subfolders": True}, "subfolders: only with path"),
    ({"path": "/a", "paths": ["/b"]}, "parameters are mutually exclusive: path|paths"),
    ({}, "one of the following is required: path, paths"),
])
def test_bad_many_path_options_fail_naming_the_option(tmp_path, args, start):
    r = run_module(args, tmp_path)
    assert r["failed"] is True and r["msg"].startswith(start), r["msg"]
    assert "results" not in r and "valid" not in r


def test_processes_must_be_a_number(tmp_path, fleet):
    r = run_module({"path": fleet, "subfolders": True, "processes": "many"}, tmp_path)
    assert r["failed"] is True and "processes" in r["msg"] and "int" in r["msg"]


@pytest.mark.parametrize("where,text", [("set", "is a backup set itself"),
                                        ("sets", "is a folder of backup sets itself"), ("empty", "holds no folder")])
def test_subfolders_of_a_set_or_an_empty_folder_fail(tmp_path, fleet, where, text):
    path = {"set": os.path.join(fleet, "web01", "full-1"), "sets": os.path.join(fleet, "web01"),
            "empty": str(tmp_path / "empty")}[where]
    if where == "empty":
        os.mkdir(path)
    r = run_module({"path": path, "subfolders": True}, tmp_path)
    assert r["failed"] is True and r["msg"].startswith("subfolders: cannot verify: ") and text in r["msg"]
