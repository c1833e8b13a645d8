"""The support console's pure parts: the configuration check, fault codes behind alerts, ticket moves."""

from __future__ import annotations

import pytest

from control.support import (
    BASE_PROFILE,
    Expected,
    Match,
    TicketStatus,
    Verdict,
    config_check,
    config_summary,
    expected_profile,
    fault_code,
    matches,
    ticket_move_allowed,
)

KB = ("GroundFailure", "OverVoltage", "charger_offline", "ReaderFailure")


def test_a_model_profile_overrides_and_extends_the_base() -> None:
    base_keys = [e.key for e in BASE_PROFILE]
    dc = expected_profile("SIM-DC50")
    assert [e.key for e in dc] == [*base_keys, "NumberOfConnectors"]
    sampled = next(e for e in dc if e.key == "MeterValuesSampledData")
    assert "SoC" in sampled.value
    assert expected_profile("unknown model") == BASE_PROFILE
    assert expected_profile(None) == BASE_PROFILE


@pytest.mark.parametrize(("expected", "actual", "ok"), [
    (Expected("K", "true"), "TRUE", True),
    (Expected("K", "true"), "false", False),
    (Expected("K", "1"), "1", True),
    (Expected("K", "900", Match.AT_MOST), "60", True),
    (Expected("K", "900", Match.AT_MOST), "3600", False),
    (Expected("K", "900", Match.AT_MOST), "soon", False),
    (Expected("K", "1", Match.AT_LEAST), "8", True),
    (Expected("K", "a,b", Match.INCLUDES), "c, b ,a", True),
    (Expected("K", "a,b", Match.INCLUDES), "a,c", False),
])
def test_matching(expected: Expected, actual: str, ok: bool) -> None:
    assert matches(expected, actual) is ok


def test_config_check_reports_ok_different_and_missing_in_profile_order() -> None:
    profile = (Expected("HeartbeatInterval", "900", Match.AT_MOST, "why"), Expected("LocalAuthorizeOffline", "true"),
               Expected("NumberOfConnectors", "1"))
    result = config_check(profile, {"HeartbeatInterval": "3600", "LocalAuthorizeOffline": True, "Other": "x"})
    assert [(d.key, d.actual, d.verdict) for d in result] == [
        ("HeartbeatInterval", "3600", Verdict.DIFFERENT), ("LocalAuthorizeOffline", "true", Verdict.OK),
        ("NumberOfConnectors", None, Verdict.MISSING)]
    assert result[0].expected == "<= 900" and result[0].why == "why"
    assert config_summary(result) == ("2 of 3 settings differ from the expected profile: HeartbeatInterval, "
                                      "NumberOfConnectors.")


def test_config_check_reads_2_0_1_variable_names() -> None:
    result = config_check((Expected("HeartbeatInterval", "900", Match.AT_MOST),),
                          {"OCPPCommCtrlr.HeartbeatInterval": "300"})
    assert result[0].verdict is Verdict.OK
    assert config_summary(result) == "All 1 checked settings match the expected profile."
    assert "no expected profile" in config_summary([])


def test_the_fault_code_comes_from_the_dedupe_key_then_the_message_then_the_kind() -> None:
    assert fault_code("fault", "fault|CP-1|1|status|GroundFailure", "whatever", KB) == "GroundFailure"
    assert fault_code("fault", "fault|CP-1|1|status|Weird", "Bay 2: OverVoltage on L1", KB) == "OverVoltage"
    assert fault_code("charger_offline", "charger_offline|CP-1", "Bay 3 is offline", KB) == "charger_offline"
    assert fault_code("waiting_for_vehicle", None, "Bay 2 waits", KB) is None


@pytest.mark.parametrize(("current", "target", "ok"), [
    (TicketStatus.OPEN, TicketStatus.WAITING, True),
    (TicketStatus.WAITING, TicketStatus.CLOSED, True),
    (TicketStatus.CLOSED, TicketStatus.OPEN, True),
    (TicketStatus.CLOSED, TicketStatus.WAITING, False),
    (TicketStatus.OPEN, TicketStatus.OPEN, False),
])
def test_ticket_moves(current: TicketStatus, target: TicketStatus, ok: bool) -> None:
    assert ticket_move_allowed(current, target) is ok
