"""Command -> OCPP call mapping for 1.6 and 2.0.1, and CALLRESULT -> outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from control.contract import Command, CommandKind, CommandOutcome, JsonScalar, OcppVersion
from ingest.commands import (
    ChargerState,
    CommandBuildError,
    OutboundCall,
    build_call,
    derived_int_id,
    interpret,
    profile_id,
)
from ingest.validation import check_payload

V16, V201 = OcppVersion.V16, OcppVersion.V201
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
IDLE = ChargerState()
CHARGING = ChargerState({1: "42"})


def cmd(kind: CommandKind, connector_id: int | None = None, **params: JsonScalar) -> Command:
    return Command("c-1", "CP-1", kind, NOW, NOW + timedelta(minutes=5), connector_id=connector_id, params=params)


# One representative command per kind; each must become a schema-valid call in both versions.
REPRESENTATIVE = [
    cmd(CommandKind.SET_LIMIT, 1, limit=16.0),
    cmd(CommandKind.CLEAR_LIMIT, 1),
    cmd(CommandKind.START, 1, id_tag="TAG"),
    cmd(CommandKind.STOP, 1),
    cmd(CommandKind.UNLOCK, 1),
    cmd(CommandKind.RESET, type="hard"),
    cmd(CommandKind.TRIGGER, 1, message="StatusNotification"),
    cmd(CommandKind.SET_CONFIG, key="OCPPCommCtrlr.HeartbeatInterval", value=300),
    cmd(CommandKind.GET_CONFIG, key="OCPPCommCtrlr.HeartbeatInterval"),
    cmd(CommandKind.CHANGE_AVAILABILITY, 1, available=False),
    cmd(CommandKind.GET_DIAGNOSTICS, location="https://logs.example/upload", start_time="2026-11-19T00:00:00Z"),
    cmd(CommandKind.UPDATE_FIRMWARE, location="https://fw.example/1.bin"),
    cmd(CommandKind.RESERVE, 1, id_tag="TAG", expiry="2026-11-20T11:00:00+00:00"),
    cmd(CommandKind.CANCEL_RESERVATION, reservation_id=7),
]


def test_every_kind_is_covered() -> None:
    assert {c.kind for c in REPRESENTATIVE} == set(CommandKind)


@pytest.mark.parametrize("version", [V16, V201])
@pytest.mark.parametrize("command", REPRESENTATIVE, ids=lambda c: c.kind.value)
def test_calls_are_schema_valid(command: Command, version: OcppVersion) -> None:
    call = build_call(command, version, CHARGING, NOW)
    assert check_payload(version, call.action, call.payload) is None, call


@pytest.mark.parametrize(("kind", "v16", "v201"), [
    (CommandKind.SET_LIMIT, "SetChargingProfile", "SetChargingProfile"),
    (CommandKind.CLEAR_LIMIT, "ClearChargingProfile", "ClearChargingProfile"),
    (CommandKind.START, "RemoteStartTransaction", "RequestStartTransaction"),
    (CommandKind.STOP, "RemoteStopTransaction", "RequestStopTransaction"),
    (CommandKind.SET_CONFIG, "ChangeConfiguration", "SetVariables"),
    (CommandKind.GET_CONFIG, "GetConfiguration", "GetVariables"),
    (CommandKind.GET_DIAGNOSTICS, "GetDiagnostics", "GetLog"),
    (CommandKind.RESERVE, "ReserveNow", "ReserveNow"),
])
def test_actions_per_version(kind: CommandKind, v16: str, v201: str) -> None:
    command = next(c for c in REPRESENTATIVE if c.kind is kind)
    assert build_call(command, V16, CHARGING, NOW).action == v16
    assert build_call(command, V201, CHARGING, NOW).action == v201


def test_set_limit_purpose_follows_the_transaction() -> None:
    idle = build_call(cmd(CommandKind.SET_LIMIT, 1, limit=16.29, unit="A"), V16, IDLE, NOW).payload
    assert idle == {"connectorId": 1, "csChargingProfiles": {
        "chargingProfileId": profile_id(1, "TxDefaultProfile"), "stackLevel": 1,
        "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute",
        "chargingSchedule": {"chargingRateUnit": "A", "startSchedule": "2026-11-20T10:00:00Z",
                             "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.2}]}}}
    busy = build_call(cmd(CommandKind.SET_LIMIT, 1, limit=11000, unit="W", phases=3), V201, CHARGING, NOW).payload
    profile = busy["chargingProfile"]
    assert busy["evseId"] == 1 and profile["chargingProfilePurpose"] == "TxProfile"
    assert profile["transactionId"] == "42" and profile["id"] == profile_id(1, "TxProfile")
    assert profile["chargingSchedule"][0]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 11000.0, "numberPhases": 3}]
    tx16 = build_call(cmd(CommandKind.SET_LIMIT, 1, limit=6), V16, CHARGING, NOW).payload["csChargingProfiles"]
    assert tx16["transactionId"] == 42  # 1.6 transaction ids are integers
    whole = build_call(cmd(CommandKind.SET_LIMIT, None, limit=32), V16, CHARGING, NOW).payload
    assert whole["connectorId"] == 0 and whole["csChargingProfiles"]["chargingProfilePurpose"] == "TxDefaultProfile"


def test_one_decimal_never_rounds_up() -> None:
    for raw, floored in ((16.0, 16.0), (16.25, 16.2), (0.09, 0.0), (7.3, 7.3), (32, 32.0)):
        call = build_call(cmd(CommandKind.SET_LIMIT, 1, limit=raw), V16, IDLE, NOW)
        period = call.payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]
        assert period["limit"] == floored
        assert check_payload(V16, call.action, call.payload) is None  # multipleOf 0.1 holds


def test_clear_limit_targets_our_profile_only() -> None:
    assert build_call(cmd(CommandKind.CLEAR_LIMIT, 1), V16, IDLE, NOW).payload == {
        "id": profile_id(1, "TxDefaultProfile")}
    assert build_call(cmd(CommandKind.CLEAR_LIMIT, 1), V201, CHARGING, NOW).payload == {
        "chargingProfileId": profile_id(1, "TxProfile")}


def test_stop_finds_the_running_transaction() -> None:
    assert build_call(cmd(CommandKind.STOP, 1), V16, CHARGING, NOW).payload == {"transactionId": 42}
    assert build_call(cmd(CommandKind.STOP), V201, CHARGING, NOW).payload == {"transactionId": "42"}
    assert build_call(cmd(CommandKind.STOP, transaction_id="tx-9"), V201, IDLE, NOW).payload == {
        "transactionId": "tx-9"}
    with pytest.raises(CommandBuildError, match="no transaction"):
        build_call(cmd(CommandKind.STOP, 2), V16, CHARGING, NOW)
    with pytest.raises(CommandBuildError, match="integer"):
        build_call(cmd(CommandKind.STOP, transaction_id="tx-9"), V16, IDLE, NOW)


def test_start_and_reset_per_version() -> None:
    start = build_call(cmd(CommandKind.START, 2), V201, IDLE, NOW).payload
    assert start == {"idToken": {"idToken": "FLOWBANK", "type": "Central"},
                     "remoteStartId": derived_int_id("c-1"), "evseId": 2}
    assert build_call(cmd(CommandKind.RESET), V201, IDLE, NOW).payload == {"type": "OnIdle"}
    assert build_call(cmd(CommandKind.RESET, type="hard"), V16, IDLE, NOW).payload == {"type": "Hard"}


@pytest.mark.parametrize(("command", "message"), [
    (cmd(CommandKind.SET_LIMIT, 1), "params.limit"),
    (cmd(CommandKind.SET_LIMIT, 1, limit=-1), ">= 0"),
    (cmd(CommandKind.SET_LIMIT, 1, limit=10, unit="kW"), "unit"),
    (cmd(CommandKind.SET_LIMIT, 1, limit="ten"), "params.limit"),
    (cmd(CommandKind.SET_LIMIT, 2, limit=10, purpose="TxProfile"), "no transaction"),
    (cmd(CommandKind.UNLOCK), "connector_id"),
    (cmd(CommandKind.RESET, type="warm"), "soft"),
    (cmd(CommandKind.SET_CONFIG, key="HeartbeatInterval"), "params.value"),
    (cmd(CommandKind.GET_DIAGNOSTICS), "params.location"),
    (cmd(CommandKind.RESERVE, 1, id_tag="T", expiry="tomorrow"), "ISO 8601"),
    (cmd(CommandKind.RESERVE, 1, id_tag="T", expiry="2026-11-20T11:00:00"), "time zone"),
    (cmd(CommandKind.CANCEL_RESERVATION), "reservation_id"),
    (cmd(CommandKind.CHANGE_AVAILABILITY), "available"),
])
def test_unbuildable_commands_say_why(command: Command, message: str) -> None:
    with pytest.raises(CommandBuildError, match=message):
        build_call(command, V16, CHARGING, NOW)


def test_2_0_1_config_needs_a_component() -> None:
    with pytest.raises(CommandBuildError, match="component"):
        build_call(cmd(CommandKind.GET_CONFIG, key="HeartbeatInterval"), V201, IDLE, NOW)
    with pytest.raises(CommandBuildError, match="component"):
        build_call(cmd(CommandKind.GET_CONFIG), V201, IDLE, NOW)
    assert build_call(cmd(CommandKind.GET_CONFIG), V16, IDLE, NOW).payload == {}  # 1.6: every key


def _outcome(command: Command, version: OcppVersion, response: dict[str, Any]) -> tuple[Any, ...]:
    call: OutboundCall = build_call(command, version, CHARGING, NOW)
    result = interpret(command, version, call, response)
    return result.outcome, result.status, result.payload


def test_interpretation() -> None:
    A, R = CommandOutcome.ACCEPTED, CommandOutcome.REJECTED
    reset = cmd(CommandKind.RESET)
    assert _outcome(reset, V16, {"status": "Accepted"}) == (A, "Accepted", {})
    assert _outcome(reset, V201, {"status": "Scheduled"}) == (A, "Scheduled", {})
    assert _outcome(reset, V16, {"status": "Rejected"}) == (R, "Rejected", {})
    unlock = cmd(CommandKind.UNLOCK, 1)
    assert _outcome(unlock, V16, {"status": "UnlockFailed"})[:2] == (R, "UnlockFailed")
    assert _outcome(unlock, V201, {"status": "Unlocked"})[:2] == (A, "Unlocked")
    assert _outcome(cmd(CommandKind.CLEAR_LIMIT, 1), V16, {"status": "Unknown"})[:2] == (A, "Unknown")
    assert _outcome(cmd(CommandKind.UPDATE_FIRMWARE, location="x"), V16, {}) == (A, None, {})
    diag = cmd(CommandKind.GET_DIAGNOSTICS, location="x")
    assert _outcome(diag, V16, {"fileName": "d.zip"}) == (A, None, {"file_name": "d.zip"})
    assert _outcome(diag, V16, {})[0] is R
    get16 = cmd(CommandKind.GET_CONFIG, key="A")
    assert _outcome(get16, V16, {"configurationKey": [{"key": "A", "readonly": True, "value": "1"}]}) == (
        A, None, {"A": "1"})
    assert _outcome(get16, V16, {"unknownKey": ["A"]})[:2] == (R, "UnknownKey")
    get201 = cmd(CommandKind.GET_CONFIG, key="C.V")
    assert _outcome(get201, V201, {"getVariableResult": [{"attributeStatus": "Accepted", "attributeValue": "5",
                                                          "component": {"name": "C"}, "variable": {"name": "V"}}]}
                    ) == (A, "Accepted", {"C.V": "5"})
    set201 = cmd(CommandKind.SET_CONFIG, key="C.V", value=True)
    assert build_call(set201, V201, IDLE, NOW).payload["setVariableData"][0]["attributeValue"] == "true"
    assert _outcome(set201, V201, {"setVariableResult": [{"attributeStatus": "RebootRequired",
                                                          "component": {"name": "C"}, "variable": {"name": "V"}}]}
                    )[:2] == (A, "RebootRequired")
    start = cmd(CommandKind.START, 1)
    assert _outcome(start, V201, {"status": "Accepted", "transactionId": "t-7"}) == (
        A, "Accepted", {"transaction_id": "t-7"})
    reserve = cmd(CommandKind.RESERVE, 1, id_tag="T", expiry="2026-11-20T11:00:00Z", reservation_id=9)
    assert _outcome(reserve, V16, {"status": "Occupied"}) == (R, "Occupied", {"reservation_id": 9})
