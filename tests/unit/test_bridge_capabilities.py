"""Charger capabilities: the question, the parsing of 1.6 and 2.0.1 answers (defaults and notes
for what is missing), and SetChargingProfile shaped by them (W-only and single-phase chargers,
stack level and period caps), plus the rate limit of charge-point-wide profiles."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from control.contract import Command, CommandKind, JsonScalar, OcppVersion
from ingest.capabilities import V16_KEYS, capability_request, learned, unanswered
from ingest.commands import ChargerState, CommandBuildError, build_call, profile_id
from ingest.profile_shaping import fit_periods, shape_limit
from ingest.sim.variables import Variables, key_for
from ingest.validation import check_payload
from warehouse.capability_store import ChargerCapabilities, MaxProfileWrite

V16, V201 = OcppVersion.V16, OcppVersion.V201
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def cmd(kind: CommandKind = CommandKind.SET_LIMIT, connector_id: int | None = 1, **params: JsonScalar) -> Command:
    return Command("c-1", "CP-1", kind, NOW, NOW + timedelta(minutes=5), connector_id=connector_id, params=params)


def caps(**values: Any) -> ChargerCapabilities:
    return ChargerCapabilities("CP-1", "1.6", NOW - timedelta(hours=1), True, **values)


def config_answer(values: dict[str, str], unknown: tuple[str, ...] = ()) -> dict[str, Any]:
    """A 1.6 GetConfiguration.conf as a charger sends it."""
    answer: dict[str, Any] = {"configurationKey": [{"key": k, "readonly": True, "value": v} for k, v in values.items()]}
    if unknown:
        answer["unknownKey"] = list(unknown)
    return answer


def variables_answer(values: dict[tuple[str, str], str | None]) -> dict[str, Any]:
    """A 2.0.1 GetVariablesResponse: value None means UnknownVariable."""
    results = []
    for (component, variable), value in values.items():
        name = {"name": variable, "instance": "ChargingProfiles"} if variable == "Entries" else {"name": variable}
        item: dict[str, Any] = {"component": {"name": component}, "variable": name}
        item.update({"attributeStatus": "Accepted", "attributeValue": value} if value is not None
                    else {"attributeStatus": "UnknownVariable"})
        results.append(item)
    return {"getVariableResult": results}


def period(call_payload: dict[str, Any], version: OcppVersion) -> tuple[str, list[dict[str, Any]], int]:
    if version is V16:
        profile = call_payload["csChargingProfiles"]
        schedule = profile["chargingSchedule"]
    else:
        profile = call_payload["chargingProfile"]
        schedule = profile["chargingSchedule"][0]
    return schedule["chargingRateUnit"], schedule["chargingSchedulePeriod"], profile["stackLevel"]


# --------------------------------------------------------------------------- the question


@pytest.mark.parametrize("version", [V16, V201])
def test_the_question_is_one_schema_valid_call(version: OcppVersion) -> None:
    action, payload = capability_request(version)
    assert check_payload(version, action, payload) is None
    if version is V16:
        assert action == "GetConfiguration" and payload["key"] == list(V16_KEYS)
    else:
        names = {(i["component"]["name"], i["variable"]["name"]) for i in payload["getVariableData"]}
        assert {("SmartChargingCtrlr", "RateUnit"), ("SmartChargingCtrlr", "ProfileStackLevel"),
                ("SmartChargingCtrlr", "PeriodsPerSchedule"), ("ChargingStation", "SupplyPhases")} <= names


# --------------------------------------------------------------------------- parsing


def test_a_full_16_answer() -> None:
    answer = config_answer({
        "ChargingScheduleAllowedChargingRateUnit": "Current,Power", "ChargeProfileMaxStackLevel": "8",
        "ChargingScheduleMaxPeriods": "24", "MaxChargingProfilesInstalled": "16",
        "ConnectorPhaseRotation": "0.RST,1.RST,2.RTS", "NumberOfConnectors": "2",
        "SupportedFeatureProfiles": "Core,SmartCharging"})
    got = learned("CP-1", V16, answer, NOW, firmware_version="1.2")
    assert (got.rate_units, got.max_stack_level, got.max_periods, got.max_profiles, got.phases, got.connectors,
            got.smart_charging) == (("A", "W"), 8, 24, 16, 3, 2, True)
    assert got.answered and got.notes == () and got.firmware_version == "1.2" and got.learned_at == NOW
    assert got.raw["configurationKey"]["ChargeProfileMaxStackLevel"] == "8"


def test_a_16_power_only_single_phase_charger() -> None:
    answer = config_answer({"ChargingScheduleAllowedChargingRateUnit": "Power",
                            "ConnectorPhaseRotation": "1.NotApplicable,2.NotApplicable",
                            "SupportedFeatureProfiles": "Core"})
    got = learned("CP-1", V16, answer, NOW)
    assert (got.rate_units, got.phases, got.smart_charging) == (("W",), 1, False)


def test_missing_and_broken_16_keys_give_defaults_and_notes() -> None:
    answer = config_answer({"ChargeProfileMaxStackLevel": "lots", "ChargingScheduleAllowedChargingRateUnit": "Amps",
                            "ConnectorPhaseRotation": "1.Unknown"},
                           unknown=("ChargingScheduleMaxPeriods", "MaxChargingProfilesInstalled"))
    got = learned("CP-1", V16, answer, NOW)
    assert (got.rate_units, got.max_stack_level, got.max_periods, got.phases) == (None, None, None, None)
    notes = " | ".join(got.notes)
    assert "ChargeProfileMaxStackLevel = 'lots': not a number; our stack level goes uncapped" in notes
    assert "ChargingScheduleMaxPeriods: not given; one period per schedule" in notes
    assert "ChargingScheduleAllowedChargingRateUnit = 'Amps': unknown unit(s) Amps" in notes
    assert "ConnectorPhaseRotation = '1.Unknown': phase rotation unknown" in notes
    assert got.raw["unknownKey"] == ["ChargingScheduleMaxPeriods", "MaxChargingProfilesInstalled"]


def test_a_201_answer_case_insensitive_and_with_gaps() -> None:
    answer = variables_answer({
        ("SmartChargingCtrlr", "rateunit"): "W", ("SmartChargingCtrlr", "ProfileStackLevel"): "3",
        ("SmartChargingCtrlr", "PeriodsPerSchedule"): "5", ("SmartChargingCtrlr", "Entries"): None,
        ("SmartChargingCtrlr", "Available"): "true", ("SmartChargingCtrlr", "Enabled"): "false",
        ("ChargingStation", "SupplyPhases"): "1"})
    got = learned("CS-1", V201, answer, NOW)
    assert (got.ocpp_version, got.rate_units, got.max_stack_level, got.max_periods, got.phases,
            got.smart_charging, got.max_profiles) == ("2.0.1", ("W",), 3, 5, 1, False, None)
    assert got.notes == ("SmartChargingCtrlr.Entries[ChargingProfiles]: UnknownVariable",)
    assert got.raw["SmartChargingCtrlr.rateunit"] == {"status": "Accepted", "value": "W"}


def test_a_201_dc_station_and_an_empty_answer() -> None:
    dc = learned("CS-1", V201, variables_answer({("ChargingStation", "SupplyPhases"): "0",
                                                 ("SmartChargingCtrlr", "RateUnit"): "A,W"}), NOW)
    assert (dc.phases, dc.rate_units) == (0, ("A", "W"))
    empty = learned("CS-1", V201, {"getVariableResult": []}, NOW)
    assert empty.answered and empty.rate_units is None and len(empty.notes) == 6


def test_no_answer_is_every_default() -> None:
    got = unanswered("CP-1", V16, NOW, "no answer to GetConfiguration within 10 s", firmware_version="9")
    assert not got.answered and got.rate_units is None and got.max_stack_level is None
    assert got.notes == ("no answer to GetConfiguration within 10 s; safe defaults used for everything",)
    assert got.raw == {"error": "no answer to GetConfiguration within 10 s"}


@pytest.mark.parametrize("version", [V16, V201])
def test_the_simulator_answers_every_key_it_should(version: OcppVersion) -> None:
    sim = Variables.defaults(connectors=2, heartbeat_s=60, sample_interval_s=10, phases=1, version=version)
    _, payload = capability_request(version)
    if version is V16:
        got = learned("SIM", version, config_answer({k: sim.values[k] for k in payload["key"]}), NOW)
    else:
        wanted = [(i["component"]["name"], i["variable"]["name"]) for i in payload["getVariableData"]]
        got = learned("SIM", version, variables_answer({
            (c, v): sim.get(k) if (k := key_for(c, v)) else None for c, v in wanted}), NOW)
    assert (got.rate_units, got.max_stack_level, got.max_periods, got.phases) == (("A", "W"), 8, 24, 1)
    assert got.notes == (() if version is V16 else ("SmartChargingCtrlr.Entries[ChargingProfiles]: UnknownVariable",))


# --------------------------------------------------------------------------- shaping


def test_unknown_capabilities_change_nothing() -> None:
    for version in (V16, V201):
        command = cmd(limit=16.27, stack_level=3, phases=2)
        before = build_call(command, version, ChargerState(), NOW)
        for known in (caps(), unanswered("CP-1", version, NOW, "timeout")):
            assert build_call(command, version, ChargerState(capabilities=known), NOW) == before


@pytest.mark.parametrize("version", [V16, V201])
def test_a_watts_only_single_phase_charger_gets_watts_and_one_phase(version: OcppVersion) -> None:
    state = ChargerState(capabilities=caps(rate_units=("W",), phases=1))
    call = build_call(cmd(limit=16.0, unit="A"), version, state, NOW)
    assert check_payload(version, call.action, call.payload) is None
    assert period(call.payload, version)[:2] == ("W", [{"startPeriod": 0, "limit": 3680.0, "numberPhases": 1}])


def test_a_watts_only_three_phase_charger_and_an_amps_only_one() -> None:
    three = build_call(cmd(limit=16.0), V201, ChargerState(capabilities=caps(rate_units=("W",), phases=3)), NOW)
    assert period(three.payload, V201)[:2] == ("W", [{"startPeriod": 0, "limit": 11040.0}])
    unknown_phases = build_call(cmd(limit=10.0), V16, ChargerState(capabilities=caps(rate_units=("W",))), NOW)
    assert period(unknown_phases.payload, V16)[1] == [{"startPeriod": 0, "limit": 6900.0}]  # OCPP's 3 phases
    amps = build_call(cmd(limit=11_000, unit="W"), V16, ChargerState(capabilities=caps(rate_units=("A",))), NOW)
    assert period(amps.payload, V16)[:2] == ("A", [{"startPeriod": 0, "limit": 15.9}])  # 15.94: floored
    both = build_call(cmd(limit=11_000, unit="W"), V16, ChargerState(capabilities=caps(rate_units=("A", "W"))), NOW)
    assert period(both.payload, V16)[:2] == ("W", [{"startPeriod": 0, "limit": 11000.0}])


def test_single_phase_amps_and_a_command_asking_for_more_phases() -> None:
    single = ChargerState(capabilities=caps(rate_units=("A",), phases=1))
    assert period(build_call(cmd(limit=20.0), V16, single, NOW).payload, V16)[1] == [
        {"startPeriod": 0, "limit": 20.0, "numberPhases": 1}]
    assert period(build_call(cmd(limit=20.0, phases=3), V201, single, NOW).payload, V201)[1] == [
        {"startPeriod": 0, "limit": 20.0, "numberPhases": 1}]
    three = ChargerState(capabilities=caps(phases=3))
    assert period(build_call(cmd(limit=20.0, phases=1), V16, three, NOW).payload, V16)[1] == [
        {"startPeriod": 0, "limit": 20.0, "numberPhases": 1}]  # phase switching asked for: kept
    dc = ChargerState(capabilities=caps(phases=0, rate_units=("W",)))
    assert period(build_call(cmd(limit=10.0), V201, dc, NOW).payload, V201)[1] == [
        {"startPeriod": 0, "limit": 6900.0}]  # DC: no numberPhases, a three-phase supply


@pytest.mark.parametrize(("asked", "maximum", "sent"), [(None, None, 1), (5, None, 5), (5, 2, 2), (None, 0, 0),
                                                         (1, 8, 1)])
def test_the_stack_level_stays_within_the_chargers_maximum(asked: int | None, maximum: int | None,
                                                           sent: int) -> None:
    params: dict[str, JsonScalar] = {"limit": 10.0} if asked is None else {"limit": 10.0, "stack_level": asked}
    state = ChargerState(capabilities=caps(max_stack_level=maximum))
    for version in (V16, V201):
        assert period(build_call(cmd(**params), version, state, NOW).payload, version)[2] == sent


def test_periods_fit_the_chargers_count_without_allowing_more() -> None:
    periods = [{"startPeriod": 0, "limit": 16.0}, {"startPeriod": 600, "limit": 20.0},
               {"startPeriod": 1200, "limit": 6.0}, {"startPeriod": 1800, "limit": 32.0}]
    assert fit_periods(periods, None) == periods and fit_periods(periods, 4) == periods
    assert fit_periods(periods, 2) == [{"startPeriod": 0, "limit": 16.0}, {"startPeriod": 600, "limit": 6.0}]
    assert fit_periods(periods, 1) == [{"startPeriod": 0, "limit": 6.0}]
    assert fit_periods(periods[:1], 1) == periods[:1]
    one = build_call(cmd(limit=16.0), V16, ChargerState(capabilities=caps(max_periods=1)), NOW)
    assert len(period(one.payload, V16)[1]) == 1


def test_shape_limit_never_rounds_up() -> None:
    shaped = shape_limit(7.0, "A", stack_level=1, phases=None, caps=caps(rate_units=("W",), phases=1))
    assert (shaped.limit, shaped.unit) == (1610.0, "W")
    shaped = shape_limit(3679.0, "W", stack_level=1, phases=None, caps=caps(rate_units=("A",), phases=1))
    assert (shaped.limit, shaped.unit) == (15.9, "A")  # 15.996 A


# --------------------------------------------------------------------------- charge-point-wide profiles


def station_max(limit: float = 32.0, **params: JsonScalar) -> Command:
    return cmd(connector_id=None, limit=limit, purpose="ChargePointMaxProfile", **params)


@pytest.mark.parametrize("version", [V16, V201])
def test_a_charge_point_wide_profile_is_spelled_per_version_and_goes_to_connector_0(version: OcppVersion) -> None:
    call = build_call(replace(station_max(), params={"limit": 32.0, "purpose": "ChargingStationMaxProfile"}),
                      version, ChargerState(), NOW)
    assert check_payload(version, call.action, call.payload) is None
    profile = call.payload["csChargingProfiles"] if version is V16 else call.payload["chargingProfile"]
    purpose = "ChargePointMaxProfile" if version is V16 else "ChargingStationMaxProfile"
    assert profile["chargingProfilePurpose"] == purpose
    assert call.payload.get("connectorId", call.payload.get("evseId")) == 0
    pid = profile.get("chargingProfileId", profile.get("id"))
    assert pid == profile_id(0, purpose) != profile_id(0, "TxDefaultProfile")
    assert call.station_max == (32.0, "A")
    with pytest.raises(CommandBuildError, match="without a connector_id"):
        build_call(cmd(connector_id=2, limit=32.0, purpose="ChargePointMaxProfile"), version, ChargerState(), NOW)
    assert build_call(cmd(limit=16.0), version, ChargerState(), NOW).station_max is None


def test_charge_point_wide_writes_are_rate_limited_per_charger() -> None:
    last = MaxProfileWrite(NOW - timedelta(minutes=5), 32.0, "A", "c-0")
    state = ChargerState(station_max=last, station_max_interval=timedelta(minutes=15))
    with pytest.raises(CommandBuildError, match=r"at most once every 900 s .* next may go at 2026-11-20T10:10:00Z"):
        build_call(station_max(40.0), V16, state, NOW)
    with pytest.raises(CommandBuildError, match="at most once"):
        build_call(station_max(32.0), V201, state, NOW)  # the same again is a write too
    with pytest.raises(CommandBuildError, match="at most once"):
        build_call(cmd(CommandKind.CLEAR_LIMIT, None, purpose="ChargePointMaxProfile"), V16, state, NOW)
    lower = build_call(station_max(20.0), V16, state, NOW)  # safety first: a lower limit goes at once
    assert lower.station_max == (20.0, "A")
    with pytest.raises(CommandBuildError, match="at most once"):
        build_call(station_max(20_000.0, unit="W"), V16, state, NOW)  # not comparable: waits
    later = build_call(station_max(40.0), V16, state, NOW + timedelta(minutes=10))
    assert later.station_max == (40.0, "A")
    cleared = build_call(cmd(CommandKind.CLEAR_LIMIT, None, purpose="ChargePointMaxProfile"), V16,
                         replace(state, station_max=None), NOW)
    assert cleared.payload == {"id": profile_id(0, "ChargePointMaxProfile")} and cleared.station_max == (None, None)
    assert build_call(cmd(limit=40.0), V16, state, NOW).station_max is None  # connector profiles: no limit
