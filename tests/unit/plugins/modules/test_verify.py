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
