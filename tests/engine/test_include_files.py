# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""include_files of ese.backup.run and ese.backup.copy: files of the host copied into the set under
files/<role>/<name>, hashed and listed in the manifest, checked by ese.backup.verify; a missing file fails
before anything is published, naming the option; the content of a file never appears in a result."""
import hashlib
import json
import os

from engine_host import clean_set, dest, run_host, srum_args  # noqa: F401 pylint: disable=unused-import
from test_engine_session_sources import ServiceSessions, ca, ca_set, jet, lib, services, svc_dir  # noqa: F401 pylint: disable=unused-import

from ansible_collections.ese.backup.plugins.module_utils.ese_format.verify import verify

# pytest fixtures are arguments named like the fixtures
# pylint: disable=redefined-outer-name,unused-argument

SECRET = b"-----PFX-SECRET-CONTENT-1234567890-----"


def extras(tmp_path):
    d = tmp_path / "ca-files"
    d.mkdir()
    files = {"ca_dynamic": ("Sim CA.crl", b"\x30\x82crl" * 100), "ca_registry": ("config.reg", b"REGEDIT4\r\n"),
             "ca_policy": ("CAPolicy.inf", b"[Version]\r\n"), "ca_key": ("ca.pfx", SECRET)}
    out = []
    for role, (name, data) in files.items():
        (d / name).write_bytes(data)
        out.append({"path": str(d / name), "role": role})
    return out, {role: hashlib.sha256(data).hexdigest() for role, (name, data) in files.items()}


def check_listed(set_dir, entries, hashes):
    with open(os.path.join(set_dir, "manifest.json"), encoding="utf-8") as f:
        m = json.load(f)
    listed = {e["name"]: e for e in m["files"]}
    for e in entries:
        rel = "files/%s/%s" % (e["role"], os.path.basename(e["path"]))
        assert listed[rel]["role"] == e["role"] and listed[rel]["sha256"] == hashes[e["role"]], listed.get(rel)
        assert listed[rel]["size"] == os.path.getsize(e["path"]) == os.path.getsize(os.path.join(set_dir, *rel.split("/")))
    report = verify(set_dir)
    assert report["valid"] is True, report
    return m


def test_run_copies_the_files_into_the_set_and_verify_checks_them(clean_set, dest, tmp_path):
    entries, hashes = extras(tmp_path)
    res = run_host("Run", srum_args(clean_set, dest, set_name="full", include_files=entries))
    assert res["failed_call"] is None and res["invalid"] is None, (res["failed_call"], res["invalid"])
    assert SECRET.decode() not in json.dumps(res)
    set_dir = res["backup_set"]
    check_listed(set_dir, entries, hashes)
    assert oct(os.stat(set_dir).st_mode & 0o077) == "0o0"                    # restricted like the rest of the set
    # a changed file is caught by verify (size and SHA-256)
    with open(os.path.join(set_dir, "files", "ca_key", "ca.pfx"), "r+b") as f:
        f.write(b"X")
    report = verify(set_dir)
    assert report["valid"] is False
    assert "FILE_HASH_MISMATCH" in json.dumps(report)


def test_a_missing_file_fails_before_anything_is_published(clean_set, dest, tmp_path):
    entries, _hashes = extras(tmp_path)
    entries.append({"path": str(tmp_path / "absent.pfx"), "role": "ca_key"})
    res = run_host("Run", srum_args(clean_set, dest, include_files=entries))
    assert res["invalid"]["option"] == "include_files" and "absent.pfx" in res["invalid"]["msg"], res["invalid"]
    assert res["backup_started"] is False and os.listdir(dest) == []
    bad = run_host("Run", srum_args(clean_set, dest, include_files=[{"path": entries[0]["path"], "role": "other"}]))
    assert bad["invalid"]["option"] == "include_files" and "ca_key" in bad["invalid"]["msg"]
    twice = run_host("Run", srum_args(clean_set, dest, include_files=[entries[0], dict(entries[0])]))
    assert twice["invalid"]["option"] == "include_files" and "file name" in twice["invalid"]["msg"]
    assert os.listdir(dest) == []


def test_run_with_source_adcs_and_a_session_copy_include_the_files(ca, ca_set, dest, tmp_path):
    entries, hashes = extras(tmp_path)
    res = run_host("Run", {"source": "adcs", "dest": dest, "set_name": "ca", "include_files": entries})
    assert res["backup_valid"] is True, (res["failed_call"], res["invalid"])
    check_listed(res["backup_set"], entries, hashes)
    assert "CertSrvBackupTruncateLogs" in [t["call"] for t in res["trace"]]

    sessions = ServiceSessions(tmp_path)
    try:
        _proc, w = sessions.begin()
        assert w["started"] is True, w
        missing = sessions.call("Session.Copy", {"session": "s", "dest": dest, "set_name": "x",
                                                 "include_files": [{"path": str(tmp_path / "nope"), "role": "ca_policy"}]})
        assert missing["invalid"]["option"] == "include_files" and missing["session"]["state"] == "open"
        assert "x" not in os.listdir(dest)
        copy = sessions.call("Session.Copy", {"session": "s", "dest": dest, "set_name": "sess", "include_files": entries})
        assert copy["failed_call"] is None and copy["invalid"] is None, (copy["failed_call"], copy["invalid"])
        assert SECRET.decode() not in json.dumps(copy)
        check_listed(copy["backup_set"], entries, hashes)
        sessions.call("Session.Truncate", {"session": "s"})
        end = sessions.call("Session.End", {"session": "s"})
        assert end["backup_valid"] is True, end["proof"]
    finally:
        sessions.close()
