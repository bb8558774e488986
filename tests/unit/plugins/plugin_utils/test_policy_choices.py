# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible.Basic hands a choice on in the case the user wrote it (``mode: ABORT``, ``type: FULL``): the policy
tables compare choices without regard to case."""
import pytest

from ansible_collections.ese.backup.plugins.plugin_utils import _jet_policy as jp

END = "JetEndExternalBackupInstance2"


def end_facts(err, mode, journal=None):
    facts = {"trace": [{"call": END, "err": err}], "invalid": None, "mode": mode, "end_call": {"call": END, "err": err},
             "proof": {"sequence_complete": True, "header_recorded": True, "missing": []}}
    if journal is not None:
        facts["journal"] = {"ended": journal, "stop_seen": False, "incomplete_files": []}
    return facts


@pytest.mark.parametrize("mode", ["normal", "NORMAL", "Normal", " normal "])
def test_end_mode_normal_in_any_case(mode):
    result = jp.apply("end", end_facts(0, mode, None), False)
    assert result["policy_row"] == "end.ended_complete" and result["backup_valid"] is True, result


@pytest.mark.parametrize("mode", ["abort", "ABORT", "Abort"])
def test_end_mode_abort_in_any_case(mode):
    result = jp.apply("end", end_facts(0, mode, None), False)
    assert result["policy_row"] == "end.ended_abort", result
    gone = jp.apply("end", end_facts(-520, mode, "host_crash"), False)
    assert gone["policy_row"] == "end.gone_abort" and "(mode abort)" not in gone["msg"], gone


@pytest.mark.parametrize("written", ["FULL", "Copy", "incremental", "DIFFERENTIAL"])
def test_type_in_any_case_renders_as_the_choice(written):
    facts = {"trace": [], "failed_call": None, "invalid": None, "check": {"would_create": "D:\\b\\s", "type": written}}
    result = jp.apply("run", facts, True)
    assert result["policy_row"] == "run.check_create"
    assert "a %s backup would create" % written.lower() in result["msg"], result["msg"]


def test_check_end_message_uses_the_choice():
    facts = dict(end_facts(0, "ABORT"), check={"would_end": True}, end_call=None, trace=[])
    result = jp.apply("end", facts, True)
    assert result["policy_row"] == "end.check_end" and "(mode abort)" in result["msg"], result
