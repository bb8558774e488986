# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The JET error catalog: completeness against jet-errors.tsv, lookups, HRESULT decoding, advice."""
import csv
import os
import subprocess
import sys

import pytest

from ansible_collections.ese.backup.plugins.plugin_utils import _jet_errors as je

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
TSV = os.path.join(ROOT, "tools", "data", "jet-errors.tsv")
needs_tsv = pytest.mark.skipif(not os.path.exists(TSV), reason="tools/data/jet-errors.tsv is missing")


def tsv_rows():
    with open(TSV, encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@needs_tsv
def test_committed_catalog_matches_tsv():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_jet_errors.py"), "--check", "--tsv", TSV],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, "_jet_errors.py is stale, run tools/gen_jet_errors.py:\n" + proc.stdout[-3000:]


@needs_tsv
def test_every_tsv_row_resolves():
    rows = tsv_rows()
    assert len(rows) == len(je._ROWS) > 400
    for row in rows:
        entry = je.lookup_name(row["name"])
        assert entry is not None, row["name"]
        assert entry.value == int(row["value"])
        if row["status"].startswith("alias:"):
            target = row["status"].split(":", 1)[1]
            assert entry.name == target and row["name"] in entry.aliases
        else:
            assert entry.name == row["name"]
            assert (entry.kind, entry.category, entry.public, entry.status) == (
                row["kind"], row["category"], row["public"] == "yes", row["status"])


def test_canonical_entries_are_unique_by_value():
    values = [entry.value for entry in je.CATALOG]
    assert len(values) == len(set(values))
    for entry in je.CATALOG:
        assert je.lookup_value(entry.value) is entry
        assert je.describe(entry.value) == "%s (%d)" % (entry.name, entry.value)


@pytest.mark.parametrize("code, expected", [
    (-1018, "JET_errReadVerifyFailure (-1018)"),
    ("-1018", "JET_errReadVerifyFailure (-1018)"),
    (" -1018 ", "JET_errReadVerifyFailure (-1018)"),
    (0, "JET_errSuccess (0)"),
    (1004, "JET_wrnColumnNull (1004)"),
    ("JET_errReadVerifyFailure", "JET_errReadVerifyFailure (-1018)"),
    ("errReadVerifyFailure", "JET_errReadVerifyFailure (-1018)"),
    ("jet_errreadverifyfailure", "JET_errReadVerifyFailure (-1018)"),
    ("JET_errDatabaseInconsistent", "JET_errDatabaseDirtyShutdown (-550)"),
    ("JET_wrnRecordFoundLess", "JET_wrnSeekNotEqual (1039)"),
    ("JET_errBackupAbortByCaller", "errBackupAbortByCaller (-800)"),
    (-801, "JET_errBackupAbortByServer (-801)"),
    # facility 0x800 (certadm.dll, ntdsbcli.dll)
    (0xC80003FA, "JET_errReadVerifyFailure (-1018, HRESULT 0xC80003FA)"),
    ("0xc8000230", "JET_errMissingFullBackup (-560, HRESULT 0xC8000230)"),
    ("0xC8000209", "JET_errInvalidBackupSequence (-521, HRESULT 0xC8000209)"),
    (0x880003EC, "JET_wrnColumnNull (1004, HRESULT 0x880003EC)"),
    (-939523078, "JET_errReadVerifyFailure (-1018, HRESULT 0xC80003FA)"),  # signed form of 0xC80003FA
    # FACILITY_JET_ERR 0xE5E
    ("0x8E5E03FA", "JET_errReadVerifyFailure (-1018, HRESULT 0x8E5E03FA)"),
    (0x0E5E03EC, "JET_wrnColumnNull (1004, HRESULT 0x0E5E03EC)"),
    # sign-extended JET value written as 32 bits
    ("0xFFFFFC06", "JET_errReadVerifyFailure (-1018)"),
    # backup-client layer
    (0xC7FF0007, "hrCouldNotConnect (0xC7FF0007)"),
    ("0xC7FF000B", "hrCircularLogging (0xC7FF000B)"),
    # unknown
    (-4242, "unknown JET error -4242"),
    (0xC800FFFF, "unknown JET error -65535, HRESULT 0xC800FFFF"),
    (0x80070005, "unknown code 0x80070005"),
])
def test_describe(code, expected):
    assert je.describe(code) == expected


def test_decode_sources():
    assert je.decode(-1018).source == "jet"
    assert je.decode(0xC80003FA).source == "hresult_ntdsb"
    assert je.decode(0x8E5E03FA).source == "hresult_jet"
    client = je.decode(0xC7FF0001)
    assert (client.value, client.name, client.source) == (None, "hrInvalidParam", "backup_client")
    assert je.decode(0x88000000 | 1039).entry.name == "JET_wrnSeekNotEqual"
    assert je.decode(0).kind == "success"


@pytest.mark.parametrize("bad", ["JET_errNoSuchThing", "", "0xZZ", True, None])
def test_decode_rejects(bad):
    with pytest.raises(ValueError):
        je.decode(bad)
    assert je.name_of(bad) is None


def test_every_advice_code_is_in_the_catalog():
    for code in je.ADVICE:
        assert je.lookup_value(code) is not None, code


@pytest.mark.parametrize("code", [-505, -520, -521, -526, -529, -560, -569, -612, -616, -801, -1003, -1018, -1022,
                                  -1029, -1032, -1090, -1329, -1808])
def test_backup_path_errors_have_specific_advice(code):
    assert je.advice(code) == je.ADVICE[code]
    assert je.advice(je.describe(code).split()[0]) == je.ADVICE[code]


def test_read_verify_advice():
    text = je.advice(0xC80003FA)
    assert "esentutl /k" in text and "last good backup" in text


def test_generic_advice():
    assert "esentutl /k" in je.advice(-1206 if je.lookup_value(-1206).category == "Corruption" else -1018)
    assert "certutil" in je.advice(-4242)
    assert "certutil" in je.advice("not a code")


def test_lookup_any_form():
    assert je.lookup(-1018).name == "JET_errReadVerifyFailure"
    assert je.lookup("0xC80003FA").name == "JET_errReadVerifyFailure"
    assert je.lookup("JET_errColumnIllegalNull").name == "JET_errNullInvalid"
    assert je.lookup(-4242) is None and je.lookup("nonsense") is None and je.lookup(0xC7FF0007) is None
