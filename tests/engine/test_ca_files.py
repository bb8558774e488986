# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ese.backup.ca_files in the engine (CaFiles.HostTask, _EseCaFiles.cs) off Windows: the CertSvc\\Configuration
registry key from its JSON stand-in (ESE_BACKUP_TEST_CA_REGISTRY) as .reg text, CAPolicy.inf from the Windows
directory's stand-in, the CA key from a folder of PFX files (ESE_BACKUP_TEST_CA_CERTS) as a PFX with the password,
and cleanup."""
import datetime
import json
import os
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from engine_host import run_host

CA = "Contoso Issuing CA"
PASSWORD = "S3cret-pfx-Pa55word!"
REGISTRY = {
    "values": [{"name": "Active", "type": "REG_SZ", "data": CA},
               {"name": "DBDirectory", "type": "REG_SZ", "data": "C:\\Windows\\system32\\CertLog"},
               {"name": "Version", "type": "REG_DWORD", "data": 0x10000},
               {"name": "DBLastFullBackup", "type": "REG_BINARY", "data": "0102a0ff"}],
    "keys": {CA: {"values": [{"name": "CommonName", "type": "REG_SZ", "data": CA},
                             {"name": "CRLPublicationURLs", "type": "REG_MULTI_SZ",
                              "data": ["65:C:\\Windows\\system32\\CertSrv\\CertEnroll\\%3%8%9.crl", "0:http://pki"]},
                             {"name": "CACertFileName", "type": "REG_EXPAND_SZ", "data": "%windir%\\ca.crt"},
                             {"name": "CRLPeriodUnits", "type": "REG_QWORD", "data": 7}],
                  "keys": {}}}}


def pfx(cn, days=365):
    """A certificate with its key, and the PFX (no password) of both as the Windows store stands in for them off
    Windows (3DES and SHA-1, as Mono's PKCS#12 reader reads)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days)).sign(key, hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM)
    proc = subprocess.run(["openssl", "pkcs12", "-export", "-passout", "pass:", "-keypbe", "PBE-SHA1-3DES",
                           "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1"], input=pem, capture_output=True,
                          check=True)
    return cert, proc.stdout


@pytest.fixture
def host(tmp_path):
    """A CA host's stand-ins: the Windows directory, the registry key (relative: under it) and the certificate
    store folder; returns (env, windows dir, store folder)."""
    windows = tmp_path / "Windows"
    store = tmp_path / "store"
    windows.mkdir()
    store.mkdir()
    (windows / "registry.json").write_text(json.dumps(REGISTRY))
    env = {"ESE_BACKUP_TEST_WINDOWS_DIR": str(windows), "ESE_BACKUP_TEST_CA_REGISTRY": "registry.json",
           "ESE_BACKUP_TEST_CA_CERTS": str(store), "TMPDIR": str(tmp_path)}
    return env, windows, store


def collect(env, tmp_path, **args):
    a = {"mode": "collect", "temp_path": str(tmp_path)}
    a.update(args)
    return run_host("CaFiles.HostTask", a, env=env)


def roles(res):
    return {f["role"]: f for f in res["files"]}


def test_registry_exported_and_policy_kept_when_present(host, tmp_path):
    env, windows, _store = host
    (windows / "CAPolicy.inf").write_text("[Version]\r\nSignature=\"$Windows NT$\"\r\n")
    res = collect(env, tmp_path)
    assert res["invalid"] is None and not res.get("failed"), res
    assert res["ca_name"] == CA and res["changed"] is True and res["key"] is None
    folder = res["path"]
    assert os.path.dirname(folder) == str(tmp_path) and os.path.basename(folder).startswith("ese-ca-files-")
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    got = roles(res)
    assert sorted(got) == ["ca_policy", "ca_registry"]
    with open(got["ca_policy"]["path"], "rb") as f:
        assert f.read() == (windows / "CAPolicy.inf").read_bytes()
    with open(got["ca_registry"]["path"], "rb") as f:
        raw = f.read()
    assert raw[:2] == b"\xff\xfe" and got["ca_registry"]["bytes"] == len(raw)
    text = raw[2:].decode("utf-16-le")
    key = "HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Services\\CertSvc\\Configuration"
    assert text.startswith("Windows Registry Editor Version 5.00\r\n\r\n[%s]\r\n" % key)
    assert '"Active"="%s"\r\n' % CA in text
    assert '"DBDirectory"="C:\\\\Windows\\\\system32\\\\CertLog"\r\n' in text
    assert '"Version"=dword:00010000\r\n' in text
    assert '"DBLastFullBackup"=hex:01,02,a0,ff\r\n' in text
    assert "\r\n[%s\\%s]\r\n" % (key, CA) in text
    assert '"CRLPeriodUnits"=hex(b):07,00,00,00,00,00,00,00\r\n' in text
    expand = ",".join("%02x" % b for b in "%windir%\\ca.crt\0".encode("utf-16-le"))
    assert '"CACertFileName"=hex(2):%s\r\n' % expand in text
    multi = "65:C:\\Windows\\system32\\CertSrv\\CertEnroll\\%3%8%9.crl\0" + "0:http://pki\0\0"
    assert '"CRLPublicationURLs"=hex(7):%s\r\n' % ",".join("%02x" % b for b in multi.encode("utf-16-le")) in text
    # cleanup deletes the folder; a second cleanup finds nothing to do
    gone = run_host("CaFiles.HostTask", {"mode": "cleanup", "path": folder}, env=env)
    assert gone["removed"] is True and not os.path.exists(folder), gone
    again = run_host("CaFiles.HostTask", {"mode": "cleanup", "path": folder}, env=env)
    assert again["removed"] is False and again["changed"] is False and not again.get("failed")


def test_no_policy_file_is_a_note_not_a_file(host, tmp_path):
    env, _windows, _store = host
    res = collect(env, tmp_path)
    assert not res.get("failed"), res
    assert sorted(roles(res)) == ["ca_registry"]
    assert any("no CAPolicy.inf" in n for n in res["notes"]), res["notes"]


def test_key_exported_with_the_password_and_reimportable(host, tmp_path):
    env, _windows, store = host
    cert, data = pfx(CA)
    (store / "ca.pfx").write_bytes(data)
    (store / "other.pfx").write_bytes(pfx("Another CA")[1])
    res = collect(env, tmp_path, key=True, key_password=PASSWORD)
    assert not res.get("failed") and res["key"]["exported"] is True, res
    k = roles(res)["ca_key"]
    assert k["name"] == CA + ".pfx"
    with open(k["path"], "rb") as f:
        blob = f.read()
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(blob, b"wrong password")
    key, back, _more = pkcs12.load_key_and_certificates(blob, PASSWORD.encode())
    assert key is not None and back.fingerprint(hashes.SHA1()) == cert.fingerprint(hashes.SHA1())
    assert [c["thumbprint"] for c in res["key"]["certificates"]] == [cert.fingerprint(hashes.SHA1()).hex().upper()]
    assert PASSWORD not in json.dumps(res)


def test_key_not_exportable_or_in_an_hsm_is_skipped_with_a_note(host, tmp_path):
    env, _windows, store = host
    (store / "ca.pfx").write_bytes(pfx(CA)[1])
    (store / "ca.pfx.json").write_text(json.dumps({"exportable": False}))
    res = collect(env, tmp_path, key=True, key_password=PASSWORD)
    assert not res.get("failed") and res["key"]["exported"] is False and res["key"]["path"] is None, res
    assert sorted(roles(res)) == ["ca_registry"]
    assert any("not exportable" in n for n in res["notes"]), res["notes"]
    assert PASSWORD not in json.dumps(res)
    (store / "ca.pfx.json").write_text(json.dumps({"provider": "SafeNet Key Storage Provider"}))
    res = collect(env, tmp_path, key=True, key_password=PASSWORD)
    assert res["key"]["exported"] is False and "SafeNet Key Storage Provider" in res["key"]["note"], res
    assert res["key"]["certificates"][0]["skipped"].startswith("its key is held by the key storage provider")
    assert PASSWORD not in json.dumps(res)


def test_password_never_in_the_result_even_when_the_export_fails(host, tmp_path):
    env, _windows, store = host
    (store / "ca.pfx").write_bytes(b"not a pfx at all")
    res = collect(env, tmp_path, key=True, key_password=PASSWORD)
    assert res.get("failed") is True, res
    assert PASSWORD not in json.dumps(res)


def test_bad_input_names_the_option(host, tmp_path):
    env, _windows, _store = host
    res = collect(env, tmp_path, key=True)
    assert res["failed"] and res["invalid"]["option"] == "key_password", res
    res = collect(env, tmp_path, temp_path=str(tmp_path / "missing"))
    assert res["invalid"]["option"] == "temp_path", res
    res = run_host("CaFiles.HostTask", {"mode": "cleanup", "path": str(tmp_path)}, env=env)
    assert res["invalid"]["option"] == "path" and os.path.isdir(str(tmp_path)), res
    env = dict(env, ESE_BACKUP_TEST_CA_REGISTRY="nothing.json")
    res = collect(env, tmp_path)
    assert res["failed"] and "does not exist" in res["msg"], res


def test_check_mode_writes_nothing(host, tmp_path):
    env, _windows, _store = host
    before = sorted(os.listdir(str(tmp_path)))
    res = run_host("CaFiles.HostTask", {"mode": "collect", "temp_path": str(tmp_path)}, check_mode=True, env=env)
    assert res["path"] is None and res["files"] == [] and res["ca_name"] == CA, res
    assert sorted(os.listdir(str(tmp_path))) == before
