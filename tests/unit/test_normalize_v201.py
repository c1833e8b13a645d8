"""ingest.normalize with OCPP 2.0.1 frames (shapes as in the 2.0.1 JSON schemas and Part 2 examples)."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.contract import (
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

V201 = OcppVersion.V201
RECEIVED = datetime(2024, 5, 1, 12, 0, 5, tzinfo=UTC)
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
CP = "CS-0815"
TX = "b7d2e3a4-5f60-4c1b-9d0e-7f8a9b0c1d2e"


def call(action: str, payload: dict[str, Any]) -> list[Event]:
    return unstamped(normalize_call(V201, CP, action, payload, received_at=RECEIVED))


def unstamped(events: list[Event]) -> list[Event]:
    """The events with the bridge's arrival stamp removed, after checking it is RECEIVED."""
    out: list[Event] = []
    for e in events:
        if isinstance(e, MeterSample | StatusChanged | TransactionEvent):
            assert e.received_at == RECEIVED
            e = dataclasses.replace(e, received_at=None)
        out.append(e)
    return out


def quirks_of(action: str, payload: dict[str, Any]) -> tuple[str, ...]:
    return normalize_call_detailed(V201, CP, action, payload, received_at=RECEIVED).quirks


def energy(value: float, context: str, unit: str = "Wh", multiplier: int | None = None) -> dict[str, Any]:
    uom: dict[str, Any] = {"unit": unit}
    if multiplier is not None:
        uom["multiplier"] = multiplier
    return {"value": value, "context": context, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": uom}


# --------------------------------------------------------------------------- real-shaped frames

BOOT = {"reason": "PowerUp", "chargingStation": {"model": "SingleSocketCharger", "vendorName": "VendorX",
                                                 "serialNumber": "SN-20240501", "firmwareVersion": "1.8.2",
                                                 "modem": {"iccid": "8931", "imsi": "2040"}}}
STARTED = {
    "eventType": "Started",
    "timestamp": "2024-05-01T12:00:00.000Z",
    "triggerReason": "CablePluggedIn",
    "seqNo": 0,
    "transactionInfo": {"transactionId": TX, "chargingState": "EVConnected"},
    "evse": {"id": 1, "connectorId": 1},
    "meterValue": [{"timestamp": "2024-05-01T12:00:00.000Z",
                    "sampledValue": [energy(1500, "Transaction.Begin")]}],
}
UPDATED = {
    "eventType": "Updated",
    "timestamp": "2024-05-01T12:15:00Z",
    "triggerReason": "MeterValuePeriodic",
    "seqNo": 3,
    "transactionInfo": {"transactionId": TX},
    "meterValue": [{"timestamp": "2024-05-01T12:15:00Z", "sampledValue": [
        {"value": 2.65, "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register",
         "unitOfMeasure": {"unit": "kWh"}},
        {"value": 11.04, "context": "Sample.Periodic", "measurand": "Power.Active.Import",
         "unitOfMeasure": {"unit": "W", "multiplier": 3}},
        {"value": 16.0, "context": "Sample.Periodic", "measurand": "Current.Import", "phase": "L1",
         "unitOfMeasure": {"unit": "A"}},
        {"value": 15.9, "context": "Sample.Periodic", "measurand": "Current.Import", "phase": "L2",
         "unitOfMeasure": {"unit": "A"}},
        {"value": 16.1, "context": "Sample.Periodic", "measurand": "Current.Import", "phase": "L3",
         "unitOfMeasure": {"unit": "A"}},
        {"value": 42, "context": "Sample.Periodic", "measurand": "SoC", "location": "EV",
         "unitOfMeasure": {"unit": "Percent"}},
    ]}],
}
ENDED = {
    "eventType": "Ended",
    "timestamp": "2024-05-01T13:30:00Z",
    "triggerReason": "EVCommunicationLost",
    "seqNo": 7,
    "offline": False,
    "transactionInfo": {"transactionId": TX, "chargingState": "Idle", "stoppedReason": "EVDisconnected",
                        "timeSpentCharging": 5100},
    "idToken": {"idToken": "DEADBEEF01", "type": "ISO14443"},
    "evse": {"id": 1},
    "meterValue": [
        {"timestamp": "2024-05-01T13:20:00Z", "sampledValue": [energy(9500, "Sample.Periodic")]},
        {"timestamp": "2024-05-01T13:30:00Z", "sampledValue": [energy(9.8, "Transaction.End", "kWh")]},
    ],
}
NOTIFY = {
    "generatedAt": "2024-05-01T12:00:01Z",
    "seqNo": 0,
    "tbc": False,
    "eventData": [{
        "eventId": 17, "timestamp": "2024-05-01T12:00:00Z", "trigger": "Delta", "actualValue": "Faulted",
        "techCode": "GF-01", "eventNotificationType": "HardWiredNotification",
        "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
        "variable": {"name": "AvailabilityState"},
    }],
}

FRAMES_201: dict[str, dict[str, Any]] = {
    "BootNotification": BOOT,
    "Heartbeat": {},
    "StatusNotification": {"timestamp": "2024-05-01T12:00:00Z", "connectorStatus": "Occupied", "evseId": 1,
                           "connectorId": 1},
    "Authorize": {"idToken": {"idToken": "DEADBEEF01", "type": "ISO14443"}},
    "TransactionEvent": ENDED,
    "MeterValues": {"evseId": 2, "meterValue": UPDATED["meterValue"]},
    "DataTransfer": {"vendorId": "org.openchargealliance", "messageId": "Pricing", "data": {"price": 0.39}},
    "FirmwareStatusNotification": {"status": "InstallVerificationFailed", "requestId": 11},
    "LogStatusNotification": {"status": "UploadFailure", "requestId": 12},
    "SecurityEventNotification": {"type": "FirmwareUpdated", "timestamp": "2024-05-01T12:00:00Z"},
    "NotifyEvent": NOTIFY,
    "NotifyChargingLimit": {
        "chargingLimit": {"chargingLimitSource": "SO", "isGridCritical": True}, "evseId": 1,
        "chargingSchedule": [{"id": 1, "startSchedule": "2024-05-01T12:00:00Z", "duration": 3600,
                              "chargingRateUnit": "W", "chargingSchedulePeriod": [
                                  {"startPeriod": 0, "limit": 11000.0},
                                  {"startPeriod": 1800, "limit": 7400.0, "numberPhases": 1}]}],
    },
    "ClearedChargingLimit": {"chargingLimitSource": "SO", "evseId": 1},
}


def test_every_supported_201_action_has_a_frame_here() -> None:
    assert set(FRAMES_201) == SUPPORTED_ACTIONS[V201]


@pytest.mark.parametrize("action", sorted(FRAMES_201))
def test_every_event_survives_the_wire_codec(action: str) -> None:
    events = call(action, FRAMES_201[action])
    assert events
    for event in events:
        assert decode(encode(event)) == event


@pytest.mark.parametrize(
    ("action", "payload", "reason"),
    [
        ("StartTransaction", {"connectorId": 1}, "is not translated"),  # a 1.6 action
        ("TransactionEvent", {**STARTED, "transactionInfo": {"chargingState": "Charging"}}, "transactionId"),
        ("StatusNotification", {"timestamp": "2024-05-01T12:00:00Z", "connectorStatus": "Available"}, "evseId"),
        ("MeterValues", {"evseId": 1}, "meterValue is missing"),
        ("NotifyEvent", {"generatedAt": "2024-05-01T12:00:00Z", "seqNo": 0, "eventData": {}}, "eventData"),
    ],
)
def test_unusable_payloads_raise_normalize_error(action: str, payload: dict[str, Any], reason: str) -> None:
    with pytest.raises(NormalizeError, match=reason):
        call(action, payload)


# --------------------------------------------------------------------------- boot, status, authorize


def test_boot_notification() -> None:
    assert call("BootNotification", BOOT) == [
        ChargerInfo(CP, RECEIVED, "VendorX", "SingleSocketCharger", serial_number="SN-20240501",
                    firmware_version="1.8.2", ocpp_version=V201),
        ConnectionEvent(CP, RECEIVED, ConnectionKind.BOOTED, ocpp_version=V201, reason="PowerUp"),
    ]


def test_heartbeat() -> None:
    assert call("Heartbeat", {}) == [ConnectionEvent(CP, RECEIVED, ConnectionKind.HEARTBEAT, ocpp_version=V201)]


@pytest.mark.parametrize(
    ("payload", "expected", "quirk"),
    [
        ({"timestamp": "2024-05-01T12:00:00Z", "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
         StatusChanged(CP, 1, T0, ConnectorState.OCCUPIED), None),
        ({"timestamp": "2024-05-01T12:00:00Z", "connectorStatus": "Faulted", "evseId": 2, "connectorId": 1},
         StatusChanged(CP, 2, T0, ConnectorState.FAULTED), None),
        ({"timestamp": "2024-05-01T12:00:00Z", "connectorStatus": "Unavailable", "evseId": 1, "connectorId": 2},
         StatusChanged(CP, 1, T0, ConnectorState.UNAVAILABLE, info="evse connector 2"), None),
        ({"timestamp": "2024-05-01T12:00:00Z", "connectorStatus": "Charging", "evseId": 1, "connectorId": 1},
         StatusChanged(CP, 1, T0, ConnectorState.CHARGING), "status_from_other_version:Charging"),
        ({"timestamp": "2024-05-01T12:00:00Z", "connectorStatus": "Maintenance", "evseId": 1, "connectorId": 1},
         StatusChanged(CP, 1, T0, ConnectorState.UNAVAILABLE, info="unknown status 'Maintenance'"),
         "status_unknown:Maintenance"),
        ({"connectorStatus": "Available", "evseId": 1, "connectorId": 1},
         StatusChanged(CP, 1, RECEIVED, ConnectorState.AVAILABLE), "timestamp_missing_used_received_at"),
    ],
)
def test_status_notification(payload: dict[str, Any], expected: StatusChanged, quirk: str | None) -> None:
    assert call("StatusNotification", payload) == [expected]
    quirks = quirks_of("StatusNotification", payload)
    assert (quirk in quirks) if quirk else quirks == ()


def test_authorize() -> None:
    assert call("Authorize", {"idToken": {"idToken": "DEADBEEF01", "type": "ISO14443"}}) == [
        ChargerNotice(CP, RECEIVED, NoticeKind.AUTHORIZE, "DEADBEEF01", detail="type=ISO14443")
    ]


# --------------------------------------------------------------------------- transactions


def test_started_with_evse_gives_transaction_then_preparing_then_begin_sample() -> None:
    started, status, begin = call("TransactionEvent", STARTED)
    assert started == TransactionEvent(CP, 1, T0, TransactionKind.STARTED, TX, meter_wh=1500.0, seq_no=0)
    assert status == StatusChanged(CP, 1, T0, ConnectorState.PREPARING, info="chargingState=EVConnected")
    assert begin == MeterSample(CP, 1, T0, SampleContext.TRANSACTION_BEGIN, transaction_id=TX, energy_wh=1500.0)


def test_updated_without_evse_uses_connector_0_and_marks_the_samples() -> None:
    updated, sample = call("TransactionEvent", UPDATED)
    assert updated == TransactionEvent(CP, 0, T0 + timedelta(minutes=15), TransactionKind.UPDATED, TX, seq_no=3)
    assert isinstance(sample, MeterSample)
    assert (sample.connector_id, sample.transaction_id, sample.energy_wh, sample.power_w, sample.soc_pct) == (
        0, TX, 2650.0, 11040.0, 42.0)
    assert (sample.current_l1_a, sample.current_l2_a, sample.current_l3_a) == (16.0, 15.9, 16.1)
    assert sample.quirks == ("connector_unknown_used_0",)


def test_charging_state_without_evse_gives_no_status() -> None:
    payload = {**UPDATED, "transactionInfo": {"transactionId": TX, "chargingState": "Charging"}}
    assert not [e for e in call("TransactionEvent", payload) if isinstance(e, StatusChanged)]


def test_ended_gives_samples_first_and_the_register_at_transaction_end() -> None:
    periodic, end, ended = call("TransactionEvent", ENDED)
    assert isinstance(periodic, MeterSample) and isinstance(end, MeterSample)
    assert (periodic.energy_wh, end.energy_wh, end.context) == (9500.0, 9800.0, SampleContext.TRANSACTION_END)
    assert ended == TransactionEvent(CP, 1, T0 + timedelta(minutes=90), TransactionKind.ENDED, TX,
                                     id_tag="DEADBEEF01", meter_wh=9800.0, stop_reason="EVDisconnected", seq_no=7)


@pytest.mark.parametrize(
    ("event_type", "charging_state", "expected"),
    [
        ("Started", "EVConnected", ConnectorState.PREPARING),
        ("Updated", "EVConnected", ConnectorState.OCCUPIED),
        ("Ended", "EVConnected", ConnectorState.FINISHING),
        ("Updated", "Charging", ConnectorState.CHARGING),
        ("Updated", "SuspendedEV", ConnectorState.SUSPENDED_EV),
        ("Updated", "SuspendedEVSE", ConnectorState.SUSPENDED_EVSE),
        ("Updated", "Idle", None),
        ("Updated", "Dancing", None),
    ],
)
def test_charging_state_to_status(event_type: str, charging_state: str, expected: ConnectorState | None) -> None:
    payload = {"eventType": event_type, "timestamp": "2024-05-01T12:00:00Z", "triggerReason": "ChargingStateChanged",
               "seqNo": 1, "transactionInfo": {"transactionId": TX, "chargingState": charging_state},
               "evse": {"id": 2}}
    statuses = [e.status for e in call("TransactionEvent", payload) if isinstance(e, StatusChanged)]
    assert statuses == ([expected] if expected else [])


def test_ended_without_stopped_reason_means_local_and_offline_is_kept() -> None:
    payload = {"eventType": "Ended", "timestamp": "2024-05-01T12:00:00Z", "triggerReason": "StopAuthorized",
               "seqNo": 9, "offline": True, "transactionInfo": {"transactionId": TX}}
    (ended,) = call("TransactionEvent", payload)
    assert ended == TransactionEvent(CP, 0, T0, TransactionKind.ENDED, TX, stop_reason="Local", offline=True,
                                     seq_no=9)


def test_ended_without_a_transaction_end_reading_takes_the_last_register() -> None:
    payload = copy.deepcopy(ENDED)
    payload["meterValue"][1]["sampledValue"][0]["context"] = "Sample.Periodic"
    payload["meterValue"].reverse()
    ended = call("TransactionEvent", payload)[-1]
    assert isinstance(ended, TransactionEvent) and ended.meter_wh == 9800.0


def test_unknown_event_type_is_read_as_updated() -> None:
    payload = {**STARTED, "eventType": "Paused"}
    assert isinstance(event := call("TransactionEvent", payload)[0], TransactionEvent)
    assert (event.kind, event.meter_wh) == (TransactionKind.UPDATED, None)
    assert "event_type_unknown:Paused" in quirks_of("TransactionEvent", payload)


def test_evse_zero_in_a_transaction_is_treated_as_unknown() -> None:
    payload = {**STARTED, "evse": {"id": 0}}
    started, begin = call("TransactionEvent", payload)  # no status: the EVSE is unknown
    assert isinstance(started, TransactionEvent) and isinstance(begin, MeterSample)
    assert (started.connector_id, begin.connector_id, begin.quirks) == (0, 0, ("connector_unknown_used_0",))
    assert quirks_of("TransactionEvent", payload) == ("evse_zero_in_transaction", "connector_unknown_used_0")


def test_detailed_result_collects_the_quirks_of_every_event() -> None:
    payload = copy.deepcopy(UPDATED)
    payload["meterValue"][0]["sampledValue"].append({"value": 50, "measurand": "Frequency"})
    payload["seqNo"] = "3"
    result = normalize_call_detailed(V201, CP, "TransactionEvent", payload, received_at=RECEIVED)
    assert set(result.quirks) == {"int_as_string:seq_no", "connector_unknown_used_0", "measurand_ignored:Frequency"}
    sample = result.events[1]
    assert isinstance(sample, MeterSample)
    assert sample.quirks == ("connector_unknown_used_0", "measurand_ignored:Frequency")


# --------------------------------------------------------------------------- meter values


@pytest.mark.parametrize(
    ("sampled", "fields", "quirks"),
    [
        pytest.param({"value": 12.345, "unitOfMeasure": {"unit": "Wh", "multiplier": 3}}, {"energy_wh": 12345.0},
                     [], id="multiplier-3"),
        pytest.param({"value": 2301, "measurand": "Voltage", "unitOfMeasure": {"unit": "V", "multiplier": -1}},
                     {"voltage_v": 230.1}, [], id="multiplier-minus-1"),
        pytest.param({"value": 5}, {"energy_wh": 5.0}, ["unit_missing_assumed_wh"], id="no-unit-of-measure"),
        pytest.param({"value": 5, "unitOfMeasure": {"multiplier": 3}}, {"energy_wh": 5000.0},
                     ["unit_missing_assumed_wh"], id="multiplier-without-unit"),
        pytest.param({"value": "7.2", "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "kW"}},
                     {"power_w": 7200.0}, ["value_as_string:Power.Active.Import"], id="value-as-string"),
        pytest.param({"value": 7, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "kW",
                                                                                           "multiplier": 99}},
                     {}, ["multiplier_invalid:Power.Active.Import"], id="absurd-multiplier"),
        pytest.param({"value": True, "measurand": "Current.Offered", "unitOfMeasure": {"unit": "A"}}, {},
                     ["value_not_numeric:Current.Offered"], id="boolean-value"),
        pytest.param({"value": 21.5, "measurand": "Temperature", "unitOfMeasure": {"unit": "Celsius"}},
                     {"temperature_c": 21.5}, [], id="temperature-not-in-201-enum-still-read"),
    ],
)
def test_meter_values(sampled: dict[str, Any], fields: dict[str, float], quirks: list[str]) -> None:
    payload = {"evseId": 1, "meterValue": [{"timestamp": "2024-05-01T12:00:00Z", "sampledValue": [sampled]}]}
    found = [e for e in call("MeterValues", payload) if isinstance(e, MeterSample)]
    numbers = ("energy_wh", "power_w", "current_a", "current_offered_a", "voltage_v", "soc_pct", "temperature_c")
    got = {n: getattr(found[0], n) for n in numbers if getattr(found[0], n) is not None} if found else {}
    assert got == fields
    assert list(quirks_of("MeterValues", payload)) == quirks
    if found:
        assert (found[0].connector_id, found[0].transaction_id, found[0].quirks) == (1, None, tuple(quirks))


# --------------------------------------------------------------------------- notices


def _event(variable: str, actual: str, trigger: str = "Delta", component: str = "ChargingStation",
           **extra: Any) -> dict[str, Any]:
    return {"eventId": 1, "timestamp": "2024-05-01T12:00:00Z", "trigger": trigger, "actualValue": actual,
            "eventNotificationType": "HardWiredNotification", "component": {"name": component},
            "variable": {"name": variable}, **extra}


@pytest.mark.parametrize(
    ("item", "code", "severity"),
    [
        pytest.param(NOTIFY["eventData"][0], "Connector.AvailabilityState", Severity.ERROR, id="connector-faulted"),
        pytest.param(_event("Problem", "true"), "ChargingStation.Problem", Severity.ERROR, id="problem-true"),
        pytest.param(_event("Problem", "false"), "ChargingStation.Problem", Severity.INFO, id="problem-false"),
        pytest.param(_event("Problem", "true", cleared=True), "ChargingStation.Problem", Severity.INFO, id="cleared"),
        pytest.param(_event("Tripped", "true", component="RCD"), "RCD.Tripped", Severity.ERROR, id="rcd-tripped"),
        pytest.param(_event("Temperature", "78.5", trigger="Alerting", component="TemperatureSensor",
                            eventNotificationType="PreconfiguredMonitor"),
                     "TemperatureSensor.Temperature", Severity.WARNING, id="monitor-alert"),
        pytest.param(_event("AvailabilityState", "Unavailable", component="EVSE"), "EVSE.AvailabilityState",
                     Severity.WARNING, id="evse-unavailable"),
        pytest.param(_event("AvailabilityState", "Available", component="EVSE"), "EVSE.AvailabilityState",
                     Severity.INFO, id="evse-available"),
        pytest.param(_event("Power", "11000", trigger="Periodic", component="EVSE"), "EVSE.Power", Severity.INFO,
                     id="periodic"),
        pytest.param(_event("Status", "CP_LOST", techCode="0x1F"), "ChargingStation.Status", Severity.WARNING,
                     id="tech-code"),
    ],
)
def test_notify_event_severity(item: dict[str, Any], code: str, severity: Severity) -> None:
    payload = {"generatedAt": "2024-05-01T12:00:01Z", "seqNo": 0, "eventData": [item]}
    (notice,) = call("NotifyEvent", payload)
    assert isinstance(notice, ChargerNotice)
    assert (notice.kind, notice.code, notice.severity, notice.ts) == (NoticeKind.NOTIFY_EVENT, code, severity, T0)


def test_notify_event_detail_instances_and_evse() -> None:
    item = {**_event("Temperature", "81", trigger="Alerting", techInfo="above 80"),
            "component": {"name": "TemperatureSensor", "instance": "Body", "evse": {"id": 2, "connectorId": 1}},
            "variable": {"name": "Temperature", "instance": "Max"}}
    payload = {"generatedAt": "2024-05-01T12:00:01Z", "seqNo": 4, "eventData": [item, "junk"]}
    (notice,) = call("NotifyEvent", payload)
    assert notice == ChargerNotice(
        CP, T0, NoticeKind.NOTIFY_EVENT, "TemperatureSensor[Body].Temperature[Max]", severity=Severity.WARNING,
        detail="actualValue=81; trigger=Alerting; eventNotificationType=HardWiredNotification; techInfo=above 80; "
               "eventId=1; evseConnectorId=1",
        connector_id=2,
    )
    assert quirks_of("NotifyEvent", payload) == ("notify_event_malformed",)


@pytest.mark.parametrize(
    ("event_type", "severity"),
    [
        ("TamperDetectionActivated", Severity.CRITICAL),
        ("InvalidFirmwareSignature", Severity.ERROR),
        ("InvalidTLSVersion", Severity.ERROR),
        ("SecurityLogWasCleared", Severity.WARNING),
        ("SettingSystemTime", Severity.WARNING),
        ("StartupOfTheDevice", Severity.INFO),
        ("VendorSpecificThing", Severity.WARNING),
    ],
)
def test_security_event_severity(event_type: str, severity: Severity) -> None:
    payload = {"type": event_type, "timestamp": "2024-05-01T12:00:00Z", "techInfo": "detail"}
    assert call("SecurityEventNotification", payload) == [
        ChargerNotice(CP, T0, NoticeKind.SECURITY_EVENT, event_type, severity=severity, detail="detail")
    ]


@pytest.mark.parametrize(
    ("action", "status", "kind", "severity"),
    [
        ("FirmwareStatusNotification", "Installed", NoticeKind.FIRMWARE_STATUS, Severity.INFO),
        ("FirmwareStatusNotification", "InstallVerificationFailed", NoticeKind.FIRMWARE_STATUS, Severity.ERROR),
        ("FirmwareStatusNotification", "InvalidSignature", NoticeKind.FIRMWARE_STATUS, Severity.ERROR),
        ("FirmwareStatusNotification", "DownloadScheduled", NoticeKind.FIRMWARE_STATUS, Severity.INFO),
        ("LogStatusNotification", "Uploaded", NoticeKind.LOG_STATUS, Severity.INFO),
        ("LogStatusNotification", "BadMessage", NoticeKind.LOG_STATUS, Severity.WARNING),
        ("LogStatusNotification", "AcceptedCanceled", NoticeKind.LOG_STATUS, Severity.INFO),
    ],
)
def test_status_notices(action: str, status: str, kind: NoticeKind, severity: Severity) -> None:
    assert call(action, {"status": status, "requestId": 11}) == [
        ChargerNotice(CP, RECEIVED, kind, status, severity=severity, detail="requestId=11")
    ]


def test_data_transfer_with_structured_data() -> None:
    payload = {"vendorId": "org.openchargealliance", "messageId": "Pricing", "data": {"price": 0.39, "cur": "EUR"}}
    assert call("DataTransfer", payload) == [
        ChargerNotice(CP, RECEIVED, NoticeKind.DATA_TRANSFER, "org.openchargealliance",
                      detail='{"data":{"cur":"EUR","price":0.39},"messageId":"Pricing"}')
    ]


# --------------------------------------------------------------------------- robustness

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
ALL_FRAMES = {**FRAMES_201, "TransactionEvent:Started": STARTED, "TransactionEvent:Updated": UPDATED}


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
    name = data.draw(st.sampled_from(sorted(ALL_FRAMES)))
    payload = copy.deepcopy(ALL_FRAMES[name])
    paths = _paths(payload)
    if paths:
        *parents, last = data.draw(st.sampled_from(paths))
        target: Any = payload
        for key in parents:
            target = target[key]
        target[last] = data.draw(JSON)
    try:
        events = call(name.split(":")[0], payload)
    except NormalizeError:
        return
    for event in events:
        assert decode(encode(event)) == event
