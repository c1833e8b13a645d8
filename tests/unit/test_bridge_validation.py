"""Frame parsing and schema validation: every kind of bad frame maps to the spec's CALLERROR."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from control.contract import OcppVersion
from ingest import replies
from ingest.normalize import SUPPORTED_ACTIONS
from ingest.validation import (
    CallErrorFrame,
    CallFrame,
    CallResultFrame,
    FrameError,
    check_payload,
    known_actions,
    parse_frame,
    validate_call,
)

V16, V201 = OcppVersion.V16, OcppVersion.V201


def _reply(err: FrameError) -> list[Any] | None:
    return None if err.reply is None else orjson.loads(err.reply)


@pytest.mark.parametrize(("raw", "version", "expected"), [
    (b"not json", V16, None),
    (b"not json", V201, ["-1", "FormatViolation"]),
    (b'{"a":1}', V16, None),
    (b'{"a":1}', V201, ["-1", "RpcFrameworkError"]),
    (b"[]", V201, ["-1", "RpcFrameworkError"]),
    (b'[2, 5, "Heartbeat", {}]', V16, None),
    (b'[2, "", "Heartbeat", {}]', V201, ["-1", "RpcFrameworkError"]),
    (b'[9, "i", "Heartbeat", {}]', V16, None),  # 1.6: unknown message types are ignored
    (b'[9, "i", "Heartbeat", {}]', V201, ["i", "MessageTypeNotSupported"]),
    (b'[true, "i", "Heartbeat", {}]', V201, ["i", "MessageTypeNotSupported"]),
    (b'[2, "i", "Heartbeat"]', V16, ["i", "FormationViolation"]),
    (b'[2, "i", "Heartbeat"]', V201, ["i", "RpcFrameworkError"]),
    (b'[2, "i", 7, {}]', V201, ["i", "RpcFrameworkError"]),
    (b'[2, "i", "Heartbeat", "x"]', V16, ["i", "FormationViolation"]),
    (b'[2, "i", "Heartbeat", "x"]', V201, ["i", "FormatViolation"]),
    (b'[3, "i"]', V16, None),  # a broken answer: nothing may be sent back
    (b'[4, "i", 5]', V201, None),
])
def test_unusable_frames(raw: bytes, version: OcppVersion, expected: list[str] | None) -> None:
    with pytest.raises(FrameError) as caught:
        parse_frame(raw, version)
    reply = _reply(caught.value)
    if expected is None:
        assert reply is None
    else:
        assert reply is not None and reply[0] == 4 and reply[1:3] == expected
        assert isinstance(reply[3], str) and reply[3] and reply[4] == {}
    assert caught.value.reason


def test_good_frames() -> None:
    assert parse_frame(b'[2,"1","Heartbeat",{}]', V16) == CallFrame("1", "Heartbeat", {})
    assert parse_frame('[3,"1",{"a":1}]', V201) == CallResultFrame("1", {"a": 1})
    assert parse_frame(b'[4,"1","NotSupported","no",{}]', V16) == CallErrorFrame("1", "NotSupported", "no", {})
    assert parse_frame(b'[4,"1","GenericError",{"x":1}]', V16).description == '{"x": 1}'  # type: ignore[union-attr]


def test_oversize_frames_keep_the_id_when_readable() -> None:
    big = b'[2, "abc", "DataTransfer", {"vendorId": "v", "data": "' + b"x" * 100 + b'"}]'
    with pytest.raises(FrameError) as caught:
        parse_frame(big, V16, max_bytes=64)
    assert _reply(caught.value)[:3] == [4, "abc", "FormationViolation"]  # type: ignore[index]
    with pytest.raises(FrameError) as caught:
        parse_frame(b"x" * 100, V201, max_bytes=64)
    assert _reply(caught.value)[:3] == [4, "-1", "FormatViolation"]  # type: ignore[index]
    with pytest.raises(FrameError) as caught:
        parse_frame(b"x" * 100, V16, max_bytes=64)
    assert caught.value.reply is None


SN16 = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
SN201 = {"timestamp": "2026-01-01T00:00:00Z", "connectorStatus": "Available", "evseId": 1, "connectorId": 1}


@pytest.mark.parametrize(("version", "action", "payload", "code"), [
    (V16, "StatusNotification", {"connectorId": 1, "errorCode": "NoError"}, "ProtocolError"),
    (V201, "StatusNotification", {k: v for k, v in SN201.items() if k != "evseId"}, "OccurrenceConstraintViolation"),
    (V16, "StatusNotification", {**SN16, "connectorId": "1"}, "TypeConstraintViolation"),
    (V201, "StatusNotification", {**SN201, "evseId": "1"}, "TypeConstraintViolation"),
    (V16, "StatusNotification", {**SN16, "status": "Sleepy"}, "PropertyConstraintViolation"),
    (V201, "StatusNotification", {**SN201, "connectorStatus": "Sleepy"}, "PropertyConstraintViolation"),
    (V16, "Authorize", {"idTag": "x" * 21}, "PropertyConstraintViolation"),
    (V16, "MeterValues", {"connectorId": 1, "meterValue": []}, "OccurenceConstraintViolation"),
    (V201, "MeterValues", {"evseId": 1, "meterValue": []}, "OccurrenceConstraintViolation"),
    (V16, "StatusNotification", {**SN16, "surprise": True}, "FormationViolation"),
    (V201, "StatusNotification", {**SN201, "surprise": True}, "FormatViolation"),
    (V16, "Frobnicate", {}, "NotImplemented"),
    (V201, "Frobnicate", {}, "NotImplemented"),
    (V16, "GetConfiguration", {}, "NotSupported"),  # an OCPP action, but one a CSMS sends
    (V201, "GetVariables", {}, "NotSupported"),
])
def test_schema_violations(version: OcppVersion, action: str, payload: dict[str, Any], code: str) -> None:
    with pytest.raises(FrameError) as caught:
        validate_call(version, CallFrame("m", action, payload), frozenset(replies.handlers(version)))
    assert _reply(caught.value)[:3] == [4, "m", code]  # type: ignore[index]
    validate_call(V16, CallFrame("m", "StatusNotification", SN16), frozenset(replies.handlers(V16)))
    validate_call(V201, CallFrame("m", "StatusNotification", SN201), frozenset(replies.handlers(V201)))


def test_lenient_timestamps_pass_schema() -> None:
    # Chargers send offset-less or space-separated times; normalize decides, not the schema.
    for ts in ("2026-01-01T00:00:00", "2026-01-01 00:00:00Z", "2026-01-01T00:00:00.123+01:00"):
        assert check_payload(V201, "StatusNotification", {**SN201, "timestamp": ts}) is None
    assert check_payload(V201, "StatusNotification", {**SN201, "timestamp": "yesterday"}) is not None


def test_handled_actions_are_what_normalize_translates() -> None:
    for version in (V16, V201):
        assert set(replies.handlers(version)) == set(SUPPORTED_ACTIONS[version])
        assert set(replies.handlers(version)) <= known_actions(version)


def test_known_actions_come_from_the_shipped_schemas() -> None:
    assert {"BootNotification", "SetChargingProfile", "GetDiagnostics"} <= known_actions(V16)
    assert {"TransactionEvent", "RequestStartTransaction", "GetLog"} <= known_actions(V201)
    assert "GetDiagnostics" not in known_actions(V201)
