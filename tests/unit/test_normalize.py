"""ingest.normalize: the facade and OCPP 1.6J frames (2.0.1 in test_normalize_v201.py)."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.contract import (
    MAX_ID_LENGTH,
    MAX_TEXT_LENGTH,
    ChargerInfo,
    ChargerNotice,
    ConnectionEvent,
    ConnectionKind,
    ConnectorState,
    Event,
    MeterSample,
    NoticeKind,
    OcppVersion,
    SampleContext,
    Severity,
    StatusChanged,
    TransactionEvent,
    TransactionKind,
    decode,
    encode,
)
from ingest.normalize import SUPPORTED_ACTIONS, NormalizeError, normalize_call, normalize_call_detailed

V16 = OcppVersion.V16
RECEIVED = datetime(2024, 5, 1, 12, 0, 5, tzinfo=UTC)
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
CP = "CP-0042"


def call(action: str, payload: dict[str, Any], **kw: Any) -> list[Event]:
    return unstamped(normalize_call(V16, CP, action, payload, received_at=RECEIVED, **kw))


def unstamped(events: list[Event]) -> list[Event]:
    """The events with the bridge's arrival stamp removed, after checking it is RECEIVED."""
    out: list[Event] = []
    for e in events:
        if isinstance(e, MeterSample | StatusChanged | TransactionEvent):
            assert e.received_at == RECEIVED
            e = dataclasses.replace(e, received_at=None)
        out.append(e)
    return out


def quirks_of(action: str, payload: dict[str, Any], **kw: Any) -> tuple[str, ...]:
    return normalize_call_detailed(V16, CP, action, payload, received_at=RECEIVED, **kw).quirks


def samples(events: list[Event]) -> list[MeterSample]:
    return [e for e in events if isinstance(e, MeterSample)]


def only_sample(action: str, payload: dict[str, Any]) -> MeterSample:
    (sample,) = samples(call(action, payload))
    return sample


def sv(value: str, measurand: str | None = None, unit: str | None = None, **extra: str) -> dict[str, str]:
    item = {"value": value, **extra}
    if measurand is not None:
        item["measurand"] = measurand
    if unit is not None:
        item["unit"] = unit
    return item


def meter_values(*sampled: dict[str, str], ts: str = "2024-05-01T12:00:00Z", **extra: Any) -> dict[str, Any]:
    return {"connectorId": 1, "meterValue": [{"timestamp": ts, "sampledValue": list(sampled)}], **extra}


# --------------------------------------------------------------------------- real-shaped frames

# A three-phase AC wallbox, every value as the 1.6 spec shows them (strings, explicit units).
THREE_PHASE = {
    "connectorId": 1,
    "transactionId": 1707,
    "meterValue": [{
        "timestamp": "2024-05-01T12:00:00.000Z",
        "sampledValue": [
            {"value": "15303.5", "context": "Sample.Periodic", "format": "Raw",
             "measurand": "Energy.Active.Import.Register", "location": "Outlet", "unit": "Wh"},
            {"value": "10.98", "context": "Sample.Periodic", "measurand": "Power.Active.Import", "unit": "kW"},
            {"value": "15.9", "context": "Sample.Periodic", "measurand": "Current.Import", "phase": "L1",
             "unit": "A"},
            {"value": "15.8", "context": "Sample.Periodic", "measurand": "Current.Import", "phase": "L2",
             "unit": "A"},
            {"value": "16.0", "context": "Sample.Periodic", "measurand": "Current.Import", "phase": "L3",
             "unit": "A"},
            {"value": "16", "context": "Sample.Periodic", "measurand": "Current.Offered", "unit": "A"},
            {"value": "231.2", "context": "Sample.Periodic", "measurand": "Voltage", "phase": "L1-N", "unit": "V"},
            {"value": "229.8", "context": "Sample.Periodic", "measurand": "Voltage", "phase": "L2-N", "unit": "V"},
            {"value": "230.4", "context": "Sample.Periodic", "measurand": "Voltage", "phase": "L3-N", "unit": "V"},
            {"value": "38.5", "context": "Sample.Periodic", "measurand": "Temperature", "location": "Body",
             "unit": "Celsius"},
        ],
    }],
}

# Keba P30 style: no measurand and no unit on the energy register, power in W without unit.
KEBA = {
    "connectorId": 1,
    "transactionId": 12,
    "meterValue": [{
        "timestamp": "2024-05-01T12:00:00Z",
        "sampledValue": [
            {"value": "123456", "context": "Sample.Periodic"},
            {"value": "3680", "context": "Sample.Periodic", "measurand": "Power.Active.Import"},
            {"value": "16.01", "context": "Sample.Periodic", "measurand": "Current.Import", "phase": "L1"},
        ],
    }],
}

# ABB Terra AC style: the register in kWh, power in kW.
ABB = {
    "connectorId": 1,
    "meterValue": [{
        "timestamp": "2024-05-01T12:00:00Z",
        "sampledValue": [
            {"value": "1234.567", "measurand": "Energy.Active.Import.Register", "unit": "kWh"},
            {"value": "7.36", "measurand": "Power.Active.Import", "unit": "kW"},
            {"value": "32.0", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
            {"value": "32.1", "measurand": "Current.Import", "phase": "L2", "unit": "A"},
            {"value": "31.9", "measurand": "Current.Import", "phase": "L3", "unit": "A"},
        ],
    }],
}

BOOT = {"chargePointVendor": "Wallbox", "chargePointModel": "PulsarPlus", "chargePointSerialNumber": "WB-0001",
        "chargeBoxSerialNumber": "BOX-9", "firmwareVersion": "5.17.11", "iccid": "", "imsi": "",
        "meterType": "MID", "meterSerialNumber": "M-1"}
START = {"connectorId": 2, "idTag": "04A2C3D2E1", "meterStart": 1500, "timestamp": "2024-05-01T12:00:00Z"}
STOP = {
    "transactionId": 1707,
    "idTag": "04A2C3D2E1",
    "meterStop": 9800,
    "timestamp": "2024-05-01T13:30:00Z",
    "reason": "EVDisconnected",
    "transactionData": [
        {"timestamp": "2024-05-01T12:00:00Z", "sampledValue": [
            {"value": "1500", "context": "Transaction.Begin", "measurand": "Energy.Active.Import.Register",
             "unit": "Wh"}]},
        {"timestamp": "2024-05-01T13:30:00Z", "sampledValue": [
            {"value": "9800", "context": "Transaction.End", "measurand": "Energy.Active.Import.Register",
             "unit": "Wh"},
            {"value": "80", "context": "Transaction.End", "measurand": "SoC", "location": "EV",
             "unit": "Percent"}]},
    ],
}
STATUS = {"connectorId": 1, "errorCode": "NoError", "status": "Charging", "timestamp": "2024-05-01T12:00:00Z"}

FRAMES_16: dict[str, dict[str, Any]] = {
    "BootNotification": BOOT,
    "Heartbeat": {},
    "StatusNotification": STATUS,
    "Authorize": {"idTag": "04A2C3D2E1"},
    "StartTransaction": START,
    "StopTransaction": STOP,
    "MeterValues": THREE_PHASE,
    "DataTransfer": {"vendorId": "com.keba", "messageId": "RFID", "data": "{\"uid\":\"01\"}"},
    "FirmwareStatusNotification": {"status": "InstallationFailed"},
    "DiagnosticsStatusNotification": {"status": "Uploaded"},
    "SecurityEventNotification": {"type": "TamperDetectionActivated", "timestamp": "2024-05-01T12:00:00Z"},
    "LogStatusNotification": {"status": "Uploading", "requestId": 3},
    "SignedFirmwareStatusNotification": {"status": "InvalidSignature", "requestId": 4},
}


# --------------------------------------------------------------------------- facade


def test_every_supported_16_action_has_a_frame_here() -> None:
    assert set(FRAMES_16) == SUPPORTED_ACTIONS[V16]


@pytest.mark.parametrize("action", sorted(FRAMES_16))
def test_every_event_survives_the_wire_codec(action: str) -> None:
    events = call(action, FRAMES_16[action], transaction_id="1707")
    assert events
    for event in events:
        assert decode(encode(event)) == event


@pytest.mark.parametrize(
    ("version", "action", "payload", "reason"),
    [
        (V16, "NotifyEvent", {}, "is not translated"),  # a 2.0.1 action on a 1.6 connection
        (V16, "GetConfiguration", {}, "is not translated"),  # CSMS-to-charger action
        ("2.1", "Heartbeat", {}, "unsupported OCPP version"),
        (V16, "Heartbeat", ["not", "an", "object"], "payload is not a JSON object"),
        (V16, "StatusNotification", {"errorCode": "NoError", "status": "Available"}, "connectorId is missing"),
        (V16, "StatusNotification", {"connectorId": -1, "errorCode": "NoError", "status": "Available"},
         "connectorId is missing"),
        (V16, "StatusNotification", {"connectorId": 1, "errorCode": "NoError"}, "status is missing"),
        (V16, "StopTransaction", {"meterStop": 1, "timestamp": "2024-05-01T12:00:00Z"}, "transactionId"),
        (V16, "MeterValues", {"connectorId": 1, "meterValue": "12"}, "meterValue is missing"),
        (V16, "MeterValues", {"meterValue": []}, "connectorId is missing"),
        (V16, "Authorize", {}, "no id token"),
        (V16, "FirmwareStatusNotification", {}, "status is missing"),
        (V16, "SecurityEventNotification", {"timestamp": "2024-05-01T12:00:00Z"}, "type is missing"),
    ],
)
def test_unusable_payloads_raise_normalize_error_with_a_reason(
    version: Any, action: str, payload: Any, reason: str
) -> None:
    with pytest.raises(NormalizeError, match=reason):
        normalize_call(version, CP, action, payload, received_at=RECEIVED)


@pytest.mark.parametrize("charger_id", ["", "site/cp1", "x" * (MAX_ID_LENGTH + 1)])
def test_a_charger_id_the_contract_refuses_is_a_normalize_error(charger_id: str) -> None:
    with pytest.raises(NormalizeError, match="charger_id"):
        normalize_call(V16, charger_id, "Heartbeat", {}, received_at=RECEIVED)


def test_caller_mistakes_are_not_filed_as_the_chargers_fault() -> None:
    with pytest.raises(ValueError, match="naive") as naive:
        normalize_call(V16, CP, "Heartbeat", {}, received_at=datetime(2024, 5, 1))  # noqa: DTZ001
    assert not isinstance(naive.value, NormalizeError)
    with pytest.raises(ValueError, match="transaction_id the bridge assigned") as no_id:
        normalize_call(V16, CP, "StartTransaction", START, received_at=RECEIVED)
    assert not isinstance(no_id.value, NormalizeError)
    with pytest.raises(TypeError):
        normalize_call(V16, CP, "Heartbeat", {}, received_at="2024-05-01T12:00:00Z")  # type: ignore[arg-type]


def test_received_at_in_another_zone_is_converted_to_utc() -> None:
    cest = RECEIVED.astimezone(timezone(timedelta(hours=2)))
    (event,) = normalize_call(V16, CP, "Heartbeat", {}, received_at=cest)
    assert event.ts == RECEIVED and event.ts.utcoffset() == timedelta(0)


# --------------------------------------------------------------------------- boot, heartbeat, status


def test_boot_notification_gives_charger_info_and_booted() -> None:
    info, booted = call("BootNotification", BOOT)
    assert info == ChargerInfo(CP, RECEIVED, "Wallbox", "PulsarPlus", serial_number="WB-0001",
                               firmware_version="5.17.11", ocpp_version=V16)
    assert booted == ConnectionEvent(CP, RECEIVED, ConnectionKind.BOOTED, ocpp_version=V16)


def test_boot_serial_falls_back_to_the_deprecated_charge_box_serial() -> None:
    payload = {"chargePointVendor": "EVBox", "chargePointModel": "Elvi", "chargeBoxSerialNumber": "EVB-P1"}
    info, _ = call("BootNotification", payload)
    assert isinstance(info, ChargerInfo) and info.serial_number == "EVB-P1" and info.firmware_version is None


def test_heartbeat_uses_the_bridge_clock() -> None:
    assert call("Heartbeat", {}) == [ConnectionEvent(CP, RECEIVED, ConnectionKind.HEARTBEAT, ocpp_version=V16)]


@pytest.mark.parametrize(
    ("payload", "expected", "quirk"),
    [
        pytest.param(STATUS, StatusChanged(CP, 1, T0, ConnectorState.CHARGING), None, id="charging"),
        pytest.param({"connectorId": 0, "errorCode": "NoError", "status": "Available"},
                     StatusChanged(CP, 0, RECEIVED, ConnectorState.AVAILABLE), None, id="whole-charger-no-ts"),
        pytest.param({"connectorId": 2, "errorCode": "GroundFailure", "status": "Faulted", "info": "RCD tripped",
                      "vendorId": "com.alfen", "vendorErrorCode": "E-104", "timestamp": "2024-05-01T14:00:00+02:00"},
                     StatusChanged(CP, 2, T0, ConnectorState.FAULTED, error_code="GroundFailure",
                                   vendor_error_code="E-104", info="RCD tripped"), None, id="faulted-offset-ts"),
        pytest.param({"connectorId": 1, "errorCode": "HighTemperature", "status": "SuspendedEVSE"},
                     StatusChanged(CP, 1, RECEIVED, ConnectorState.SUSPENDED_EVSE, error_code="HighTemperature"),
                     None, id="warning-while-suspended"),
        pytest.param({"connectorId": 1, "errorCode": "NoError", "status": "SUSPENDED_EV"},
                     StatusChanged(CP, 1, RECEIVED, ConnectorState.SUSPENDED_EV), "status_normalized:SUSPENDED_EV",
                     id="status-spelling"),
        pytest.param({"connectorId": 1, "errorCode": "NoError", "status": "Occupied"},
                     StatusChanged(CP, 1, RECEIVED, ConnectorState.OCCUPIED), "status_from_other_version:Occupied",
                     id="ocpp15-occupied"),
        pytest.param({"connectorId": 1, "errorCode": "NoError", "status": "Blocked", "info": "door open"},
                     StatusChanged(CP, 1, RECEIVED, ConnectorState.UNAVAILABLE,
                                   info="unknown status 'Blocked'; door open"),
                     "status_unknown:Blocked", id="unknown-status"),
        pytest.param({"connectorId": 1, "errorCode": "Err_042", "status": "Faulted"},
                     StatusChanged(CP, 1, RECEIVED, ConnectorState.FAULTED, error_code="Err_042"),
                     "error_code_unknown:Err_042", id="unknown-error-code-kept"),
        pytest.param({"connectorId": 1, "errorCode": "noerror", "status": "Available"},
                     StatusChanged(CP, 1, RECEIVED, ConnectorState.AVAILABLE), "error_code_normalized:noerror",
                     id="noerror-lowercase"),
        pytest.param({"connectorId": "1", "errorCode": "NoError", "status": "Preparing",
                      "timestamp": "2024-05-01T12:00:00"},
                     StatusChanged(CP, 1, T0, ConnectorState.PREPARING), "timestamp_naive_assumed_utc",
                     id="naive-ts-string-connector"),
        pytest.param({"connectorId": 1, "errorCode": "NoError", "status": "Finishing", "timestamp": "yesterday"},
                     StatusChanged(CP, 1, RECEIVED, ConnectorState.FINISHING),
                     "timestamp_unparseable_used_received_at", id="garbage-ts"),
        pytest.param({"connectorId": 1, "errorCode": "NoError", "status": "Available",
                      "timestamp": "1970-01-01T00:00:12Z"},
                     StatusChanged(CP, 1, RECEIVED, ConnectorState.AVAILABLE),
                     "timestamp_implausible_used_received_at", id="no-rtc-1970"),
    ],
)
def test_status_notification(payload: dict[str, Any], expected: StatusChanged, quirk: str | None) -> None:
    assert call("StatusNotification", payload) == [expected]
    quirks = quirks_of("StatusNotification", payload)
    assert (quirk in quirks) if quirk else quirks == ()


def test_status_info_longer_than_the_contract_allows_is_truncated() -> None:
    payload = {"connectorId": 1, "errorCode": "OtherError", "status": "Faulted", "info": "x" * 5000}
    (event,) = call("StatusNotification", payload)
    assert isinstance(event, StatusChanged) and event.info is not None
    assert len(event.info) == MAX_TEXT_LENGTH and event.info.endswith("…")
    assert "string_truncated:info" in quirks_of("StatusNotification", payload)


# --------------------------------------------------------------------------- transactions


def test_start_transaction() -> None:
    assert call("StartTransaction", START, transaction_id="1707") == [
        TransactionEvent(CP, 2, T0, TransactionKind.STARTED, "1707", id_tag="04A2C3D2E1", meter_wh=1500.0)
    ]


def test_start_transaction_negative_meter_start_is_dropped() -> None:
    payload = {**START, "meterStart": -5}
    (event,) = call("StartTransaction", payload, transaction_id="9")
    assert isinstance(event, TransactionEvent) and event.meter_wh is None
    assert "value_negative:meterStart" in quirks_of("StartTransaction", payload, transaction_id="9")


def test_stop_transaction_gives_samples_first_then_ended() -> None:
    events = call("StopTransaction", STOP)
    begin, end, ended = events
    assert ended == TransactionEvent(CP, 0, T0 + timedelta(minutes=90), TransactionKind.ENDED, "1707",
                                     id_tag="04A2C3D2E1", meter_wh=9800.0, stop_reason="EVDisconnected")
    assert isinstance(begin, MeterSample) and isinstance(end, MeterSample)
    assert (begin.context, begin.energy_wh, begin.transaction_id) == (SampleContext.TRANSACTION_BEGIN, 1500.0, "1707")
    assert (end.context, end.energy_wh, end.soc_pct) == (SampleContext.TRANSACTION_END, 9800.0, 80.0)
    assert begin.quirks == end.quirks == ("connector_unknown_used_0",)


def test_stop_transaction_without_reason_means_local() -> None:
    payload = {"transactionId": 5, "meterStop": 20, "timestamp": "2024-05-01T12:00:00Z"}
    assert call("StopTransaction", payload) == [
        TransactionEvent(CP, 0, T0, TransactionKind.ENDED, "5", meter_wh=20.0, stop_reason="Local")
    ]


@pytest.mark.parametrize(
    ("raw", "expected", "quirk"),
    [
        ("  77 ", "77", "id_whitespace:transaction_id"),
        ("site/77#a", "site_77_a", "id_sanitized:transaction_id"),
        ("T" * 100, None, "id_shortened:transaction_id"),
    ],
)
def test_transaction_ids_are_made_safe_deterministically(raw: str, expected: str | None, quirk: str) -> None:
    payload = {"transactionId": raw, "meterStop": 20, "timestamp": "2024-05-01T12:00:00Z"}
    (first,) = call("StopTransaction", payload)
    (again,) = call("StopTransaction", copy.deepcopy(payload))
    assert isinstance(first, TransactionEvent) and first == again
    assert len(first.transaction_id) <= MAX_ID_LENGTH
    if expected is not None:
        assert first.transaction_id == expected
    assert quirk in quirks_of("StopTransaction", payload)


def test_shortened_ids_of_different_transactions_do_not_collide() -> None:
    a = call("StopTransaction", {"transactionId": "T" * 80 + "a", "meterStop": 1, "timestamp": "2024-05-01T12:00Z"})
    b = call("StopTransaction", {"transactionId": "T" * 80 + "b", "meterStop": 1, "timestamp": "2024-05-01T12:00Z"})
    assert isinstance(a[0], TransactionEvent) and isinstance(b[0], TransactionEvent)
    assert a[0].transaction_id != b[0].transaction_id


def test_a_transaction_id_that_is_no_scalar_cannot_end_a_transaction() -> None:
    payload = {"transactionId": {"id": 5}, "meterStop": 20, "timestamp": "2024-05-01T12:00:00Z"}
    with pytest.raises(NormalizeError, match="transactionId is missing"):
        call("StopTransaction", payload)


def test_the_assigned_transaction_id_only_matters_for_start_transaction() -> None:
    payload = meter_values(sv("5", unit="Wh"))
    assert call("MeterValues", payload, transaction_id="999") == call("MeterValues", payload)
    assert only_sample("MeterValues", payload).transaction_id is None


# --------------------------------------------------------------------------- meter values


def test_three_phase_frame() -> None:
    sample = only_sample("MeterValues", THREE_PHASE)
    assert sample == MeterSample(
        CP, 1, T0, SampleContext.PERIODIC, transaction_id="1707", energy_wh=15303.5, power_w=10980.0,
        current_l1_a=15.9, current_l2_a=15.8, current_l3_a=16.0, current_offered_a=16.0, voltage_v=231.2,
        temperature_c=38.5,
    )


def test_keba_style_frame_without_units_or_measurand() -> None:
    sample = only_sample("MeterValues", KEBA)
    assert (sample.energy_wh, sample.power_w, sample.current_l1_a, sample.current_a) == (
        123456.0, 3680.0, 16.01, 16.01)
    assert sample.transaction_id == "12"
    assert sample.quirks == ("unit_missing_assumed_wh", "unit_missing_assumed_w", "unit_missing_assumed_a",
                             "phase_on_single_phase")


def test_abb_style_frame_in_kwh_and_kw() -> None:
    sample = only_sample("MeterValues", ABB)
    assert (sample.energy_wh, sample.power_w) == (1234567.0, 7360.0)
    assert (sample.current_l1_a, sample.current_l2_a, sample.current_l3_a, sample.current_a) == (
        32.0, 32.1, 31.9, None)
    assert sample.quirks == ()


# One row per lenient reading: the sampled values, the fields expected, the quirks expected.
METER_CASES: list[Any] = [
    pytest.param([sv("12.5", "Energy.Active.Import.Register", "kwh"), sv("7400", "Power.Active.Import", "w")],
                 {"energy_wh": 12500.0, "power_w": 7400.0}, ["unit_lowercase"], id="lowercase-units"),
    pytest.param([sv("7.4", "Power.Active.Import", "KW")], {"power_w": 7400.0}, ["unit_case_mismatch"],
                 id="uppercase-unit"),
    pytest.param([sv("1,5", "Energy.Active.Import.Register", "kWh")], {"energy_wh": 1500.0},
                 ["value_decimal_comma:Energy.Active.Import.Register"], id="decimal-comma"),
    pytest.param([sv("1,234,567.5", "Energy.Active.Import.Register", "Wh")], {"energy_wh": 1234567.5},
                 ["value_thousands_separator:Energy.Active.Import.Register"], id="thousands-commas"),
    pytest.param([sv(" 16.0 ", "Current.Import", "A"), sv("1 234", "Energy.Active.Import.Register", "Wh")],
                 {"current_a": 16.0, "energy_wh": 1234.0},
                 ["value_whitespace:Current.Import", "value_whitespace:Energy.Active.Import.Register"],
                 id="spaces"),
    pytest.param([sv("-230", "Power.Active.Import", "W"), sv("16", "Current.Import", "A")], {"current_a": 16.0},
                 ["value_negative:Power.Active.Import"], id="negative-dropped"),
    pytest.param([sv("NaN", "Voltage", "V"), sv("inf", "Current.Import", "A"), sv("5", "Current.Offered", "A")],
                 {"current_offered_a": 5.0}, ["value_not_finite:Voltage", "value_not_finite:Current.Import"],
                 id="nan-inf-dropped"),
    pytest.param([sv("n/a", "Voltage", "V"), sv("230", "Voltage", "V")], {"voltage_v": 230.0},
                 ["value_not_numeric:Voltage"], id="not-numeric"),
    pytest.param([sv("1e308", "Energy.Active.Import.Register", "kWh"), sv("230", "Voltage", "V")],
                 {"voltage_v": 230.0}, ["value_not_finite:Energy.Active.Import.Register"], id="overflow"),
    pytest.param([sv("-12.5", "Temperature", "Celsius"), sv("104", "Temperature", "Fahrenheit", location="Cable")],
                 {"temperature_c": -12.5}, [], id="negative-temperature-kept-body-wins"),
    pytest.param([sv("313.15", "Temperature", "K")], {"temperature_c": 40.0}, [], id="kelvin"),
    pytest.param([sv("55", "SoC", "Percent", location="EV"), sv("101", "SoC", "Percent")], {"soc_pct": 55.0},
                 ["value_out_of_range:SoC"], id="soc-over-100"),
    pytest.param([sv("55", "SoC", "%")], {"soc_pct": 55.0}, ["unit_alias:%"], id="soc-percent-sign"),
    pytest.param([sv("3.2", "Power.Active.Import", "kWh")], {"power_w": 3200.0}, ["unit_energy_for_power:kWh"],
                 id="power-in-kwh"),
    pytest.param([sv("16", "Current.Import", "V"), sv("5", "Current.Offered", "A")], {"current_offered_a": 5.0},
                 ["unit_unexpected:V"], id="wrong-unit-dropped"),
    pytest.param([sv("50.0", "Frequency", "Hertz"), sv("0.98", "Power.Factor"),
                  sv("1", "Energy.Active.Import.Register", "Wh")],
                 {"energy_wh": 1.0}, ["measurand_ignored:Frequency", "measurand_ignored:Power.Factor"],
                 id="standard-measurands-ignored"),
    pytest.param([sv("7", "Vendor.Relay.Cycles"), sv("1", "Energy.Active.Import.Register", "Wh")],
                 {"energy_wh": 1.0}, ["unknown_measurand:Vendor.Relay.Cycles"], id="vendor-measurand"),
    pytest.param([sv("9", "current.import", "A")], {"current_a": 9.0}, ["measurand_normalized:current.import"],
                 id="measurand-spelling"),
    pytest.param([sv("1000", "Power.Active.Import", "W", phase="L1"),
                  sv("1100", "Power.Active.Import", "W", phase="L2"),
                  sv("900", "Power.Active.Import", "W", phase="L3")],
                 {"power_w": 3000.0}, ["power_summed_from_phases"], id="power-per-phase-summed"),
    pytest.param([sv("3000", "Power.Active.Import", "W"), sv("1000", "Power.Active.Import", "W", phase="L1")],
                 {"power_w": 3000.0}, [], id="power-total-wins-over-phases"),
    pytest.param([sv("100", "Energy.Active.Import.Register", "Wh", location="Inlet"),
                  sv("99", "Energy.Active.Import.Register", "Wh", location="Outlet")],
                 {"energy_wh": 99.0}, [], id="outlet-wins-over-inlet"),
    pytest.param([sv("100", "Energy.Active.Import.Register", "Wh"),
                  sv("101", "Energy.Active.Import.Register", "Wh")],
                 {"energy_wh": 100.0}, ["duplicate_measurand:Energy.Active.Import.Register"],
                 id="duplicate-first-wins"),
    pytest.param([sv("400", "Voltage", "V", phase="L1-L2"), sv("231", "Voltage", "V", phase="L2-N")],
                 {"voltage_v": 231.0}, ["phase_ignored:L1-L2"], id="line-to-line-voltage-ignored"),
    pytest.param([sv("6", "Current.Import", "A", phase="L2")], {"current_l2_a": 6.0, "current_a": 6.0},
                 ["phase_on_single_phase"], id="single-phase-on-l2"),
    pytest.param([sv("0.4", "Current.Import", "A", phase="N"), sv("6", "Current.Import", "A", phase="l1")],
                 {"current_l1_a": 6.0, "current_a": 6.0},
                 ["phase_ignored:N", "phase_normalized:l1", "phase_on_single_phase"], id="neutral-and-lowercase-phase"),
    pytest.param([sv("AB12CD==", "Energy.Active.Import.Register", "Wh", format="SignedData"),
                  sv("10", "Energy.Active.Import.Register", "Wh")],
                 {"energy_wh": 10.0}, ["signed_data_ignored:Energy.Active.Import.Register"], id="signed-data"),
]


@pytest.mark.parametrize(("sampled", "fields", "quirks"), METER_CASES)
def test_meter_value_quirks(sampled: list[dict[str, str]], fields: dict[str, float], quirks: list[str]) -> None:
    sample = only_sample("MeterValues", meter_values(*sampled))
    numbers = ("energy_wh", "power_w", "current_a", "current_l1_a", "current_l2_a", "current_l3_a",
               "current_offered_a", "voltage_v", "soc_pct", "temperature_c")
    assert {name: getattr(sample, name) for name in numbers if getattr(sample, name) is not None} == fields
    assert list(sample.quirks) == quirks


def test_a_group_with_nothing_usable_gives_no_sample_but_keeps_its_quirks() -> None:
    payload = meter_values(sv("22", "Power.Offered", "kW"))
    assert call("MeterValues", payload) == []
    assert quirks_of("MeterValues", payload) == ("measurand_ignored:Power.Offered",)


@pytest.mark.parametrize(
    ("ts", "expected", "quirk"),
    [
        ("2024-05-01T14:00:00+02:00", T0, None),
        ("2024-05-01T12:00:00.123456789Z", T0.replace(microsecond=123456), None),
        ("2024-05-01t12:00:00z", T0, None),
        ("2024-05-01 12:00:00", T0, "timestamp_naive_assumed_utc"),
        ("01.05.2024 12:00", RECEIVED, "timestamp_unparseable_used_received_at"),
        ("", RECEIVED, "timestamp_missing_used_received_at"),
        ("2030-01-01T00:00:00Z", RECEIVED, "timestamp_implausible_used_received_at"),
    ],
)
def test_sample_timestamps(ts: str, expected: datetime, quirk: str | None) -> None:
    sample = only_sample("MeterValues", meter_values(sv("1", unit="Wh"), ts=ts))
    assert sample.ts == expected and sample.ts.utcoffset() == timedelta(0)
    assert sample.quirks == ((quirk,) if quirk else ())


def test_values_are_grouped_by_timestamp_and_context() -> None:
    payload = {
        "connectorId": 1,
        "meterValue": [
            {"timestamp": "2024-05-01T12:00:00Z", "sampledValue": [
                sv("100", "Energy.Active.Import.Register", "Wh", context="Sample.Clock"),
                sv("7000", "Power.Active.Import", "W", context="Sample.Periodic"),
            ]},
            {"timestamp": "2024-05-01T14:00:00+02:00", "sampledValue": [  # the same instant
                sv("10", "Current.Import", "A", context="Sample.Periodic"),
            ]},
            {"timestamp": "2024-05-01T12:00:10Z", "sampledValue": [
                sv("7100", "Power.Active.Import", "W"),
                sv("7", "Current.Import", "A", context="Vendor.Special"),
            ]},
        ],
    }
    clock, periodic, later, other = samples(call("MeterValues", payload))
    assert (clock.context, clock.energy_wh, clock.power_w) == (SampleContext.CLOCK, 100.0, None)
    assert (periodic.context, periodic.power_w, periodic.current_a) == (SampleContext.PERIODIC, 7000.0, 10.0)
    assert (later.ts, later.power_w) == (T0 + timedelta(seconds=10), 7100.0)
    assert (other.context, other.current_a) == (SampleContext.OTHER, 7.0)
    assert other.quirks == ("context_unknown:Vendor.Special",)


def test_malformed_meter_value_entries_are_skipped() -> None:
    payload = {"connectorId": 1, "meterValue": [
        "junk",
        {"timestamp": "2024-05-01T12:00:00Z"},
        {"timestamp": "2024-05-01T12:00:00Z", "sampledValue": [7, sv("5", unit="Wh")]},
    ]}
    assert only_sample("MeterValues", payload).energy_wh == 5.0
    assert quirks_of("MeterValues", payload) == ("meter_value_malformed", "sampled_value_malformed")


# --------------------------------------------------------------------------- notices


@pytest.mark.parametrize(
    ("action", "payload", "expected"),
    [
        ("Authorize", {"idTag": "04A2C3D2E1"}, ChargerNotice(CP, RECEIVED, NoticeKind.AUTHORIZE, "04A2C3D2E1")),
        ("DataTransfer", {"vendorId": "com.keba", "messageId": "RFID", "data": "{\"uid\":\"01\"}"},
         ChargerNotice(CP, RECEIVED, NoticeKind.DATA_TRANSFER, "com.keba",
                       detail='{"data":"{\\"uid\\":\\"01\\"}","messageId":"RFID"}')),
        ("DataTransfer", {"vendorId": "com.alfen"}, ChargerNotice(CP, RECEIVED, NoticeKind.DATA_TRANSFER, "com.alfen")),
        ("FirmwareStatusNotification", {"status": "Installed"},
         ChargerNotice(CP, RECEIVED, NoticeKind.FIRMWARE_STATUS, "Installed")),
        ("FirmwareStatusNotification", {"status": "DownloadFailed"},
         ChargerNotice(CP, RECEIVED, NoticeKind.FIRMWARE_STATUS, "DownloadFailed", severity=Severity.ERROR)),
        ("SignedFirmwareStatusNotification", {"status": "InvalidSignature", "requestId": 4},
         ChargerNotice(CP, RECEIVED, NoticeKind.FIRMWARE_STATUS, "InvalidSignature", severity=Severity.ERROR,
                       detail="requestId=4")),
        ("DiagnosticsStatusNotification", {"status": "UploadFailed"},
         ChargerNotice(CP, RECEIVED, NoticeKind.DIAGNOSTICS_STATUS, "UploadFailed", severity=Severity.WARNING)),
        ("DiagnosticsStatusNotification", {"status": "Uploaded"},
         ChargerNotice(CP, RECEIVED, NoticeKind.DIAGNOSTICS_STATUS, "Uploaded")),
        ("LogStatusNotification", {"status": "PermissionDenied", "requestId": 3},
         ChargerNotice(CP, RECEIVED, NoticeKind.LOG_STATUS, "PermissionDenied", severity=Severity.WARNING,
                       detail="requestId=3")),
        ("SecurityEventNotification", {"type": "TamperDetectionActivated", "timestamp": "2024-05-01T12:00:00Z",
                                       "techInfo": "housing opened"},
         ChargerNotice(CP, T0, NoticeKind.SECURITY_EVENT, "TamperDetectionActivated", severity=Severity.CRITICAL,
                       detail="housing opened")),
        ("SecurityEventNotification", {"type": "InvalidCentralSystemCertificate", "timestamp": "2024-05-01T12:00:00Z"},
         ChargerNotice(CP, T0, NoticeKind.SECURITY_EVENT, "InvalidCentralSystemCertificate", severity=Severity.ERROR)),
    ],
)
def test_notices(action: str, payload: dict[str, Any], expected: ChargerNotice) -> None:
    assert call(action, payload) == [expected]


def test_data_transfer_longer_than_the_contract_allows_is_truncated() -> None:
    payload = {"vendorId": "com.vendor", "messageId": "Log", "data": "A" * 10_000}
    (notice,) = call("DataTransfer", payload)
    assert isinstance(notice, ChargerNotice) and notice.detail is not None
    assert len(notice.detail) == MAX_TEXT_LENGTH and notice.detail.endswith("…")
    assert quirks_of("DataTransfer", payload) == ("string_truncated:detail",)


# --------------------------------------------------------------------------- robustness

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_real_frames_never_break_the_contract(data: st.DataObject) -> None:
    """Replace any one field of a real frame with arbitrary JSON: either a NormalizeError, or
    events that pass the contract and its wire codec."""
    action = data.draw(st.sampled_from(sorted(FRAMES_16)))
    payload = copy.deepcopy(FRAMES_16[action])
    paths = _paths(payload)
    if paths:
        *parents, last = data.draw(st.sampled_from(paths))
        target: Any = payload
        for key in parents:
            target = target[key]
        target[last] = data.draw(JSON)
    try:
        events = call(action, payload, transaction_id="1707")
    except NormalizeError:
        return
    for event in events:
        assert decode(encode(event)) == event
