"""Bad input: each kind gets the OCPP-correct CALLERROR (or, where the spec allows none, silence),
is dead-lettered with its reason, the connection stays open, and another charger notices
nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from test_bridge_harness import (
    Charger,
    Observer,
    bridge_settings,
    charger,
    observing,
    register,
    running_bridge,
    unique,
)

from control.contract import ConnectionEvent, ConnectionKind, DeadLetter
from control.settings import MqttEndpoint, Settings

pytestmark = pytest.mark.integration


@pytest.fixture()
def observer(mqtt_endpoint: MqttEndpoint) -> Iterator[Observer]:
    yield from observing(mqtt_endpoint)

BIG = '[2,"big","DataTransfer",{"vendorId":"v","data":"' + "x" * 70_000 + '"}]'

# (raw frame, expected CALLERROR [id, code] or None for silence, a word of the dead-letter reason)
CASES_16: list[tuple[str, tuple[str, str] | None, str]] = [
    ("not json {", None, "not JSON"),
    ('{"a": 1}', None, "OCPP-J frame"),
    ('[2, 123, "Heartbeat", {}]', None, "message id"),
    ('[7, "t1", "Heartbeat", {}]', None, "message type"),
    ('[2, "a1", "Heartbeat"]', ("a1", "FormationViolation"), "CALL must be"),
    ('[2, "a2", "Heartbeat", []]', ("a2", "FormationViolation"), "payload"),
    ('[2, "a3", "FooBar", {}]', ("a3", "NotImplemented"), "FooBar"),
    ('[2, "a4", "Reset", {"type": "Hard"}]', ("a4", "NotSupported"), "Reset"),
    ('[2, "a5", "StatusNotification", {"connectorId": 1, "errorCode": "NoError"}]', ("a5", "ProtocolError"),
     "status"),
    ('[2, "a6", "StatusNotification", {"connectorId": "1", "errorCode": "NoError", "status": "Available"}]',
     ("a6", "TypeConstraintViolation"), "connectorId"),
    ('[2, "a7", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Bogus"}]',
     ("a7", "PropertyConstraintViolation"), "status"),
    ('[2, "a8", "Heartbeat", {"extra": 1}]', ("a8", "FormationViolation"), "Heartbeat"),
    (BIG, ("big", "FormationViolation"), "exceeds"),
    ('[3, "nobody-asked", {}]', None, "no call of ours"),
]

CASES_201: list[tuple[str, tuple[str, str] | None, str]] = [
    ("not json {", ("-1", "FormatViolation"), "not JSON"),
    ('{"a": 1}', ("-1", "RpcFrameworkError"), "OCPP-J frame"),
    ('[7, "t1", "Heartbeat", {}]', ("t1", "MessageTypeNotSupported"), "message type"),
    ('[2, "b1", "Heartbeat"]', ("b1", "RpcFrameworkError"), "CALL must be"),
    ('[2, "b2", "FooBar", {}]', ("b2", "NotImplemented"), "FooBar"),
    ('[2, "b3", "StatusNotification", {"timestamp": "2026-11-20T10:00:00Z", "evseId": 1, "connectorId": 1}]',
     ("b3", "OccurrenceConstraintViolation"), "connectorStatus"),
    ('[2, "b4", "Heartbeat", {"extra": 1}]', ("b4", "FormatViolation"), "Heartbeat"),
    ('[2, "b5", "StatusNotification", {"timestamp": "2026-11-20T10:00:00Z", "connectorStatus": "Nope",'
     ' "evseId": 1, "connectorId": 1}]', ("b5", "PropertyConstraintViolation"), "connectorStatus"),
    (BIG, ("big", "FormatViolation"), "exceeds"),
]


async def _bystander(cp: Charger, stop: asyncio.Event, latencies: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        reply = await cp.call("Heartbeat", {})
        latencies.append(time.perf_counter() - started)
        assert reply[0] == 3
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(("version", "cases"), [("ocpp1.6", CASES_16), ("ocpp2.0.1", CASES_201)])
def test_bad_frames_are_answered_and_dead_lettered(test_settings: Settings, pg_dsn: str, observer: Observer,
                                                   version: str,
                                                   cases: list[tuple[str, tuple[str, str] | None, str]]) -> None:
    bad, good = unique("BAD"), unique("GOOD")
    register(pg_dsn, bad)
    register(pg_dsn, good)

    async def scenario() -> None:
        async with running_bridge(bridge_settings(test_settings)) as bridge, \
                charger(bridge, bad, version=version) as cp, charger(bridge, good, version=version) as other:
            stop, latencies = asyncio.Event(), list[float]()
            bystander = asyncio.create_task(_bystander(other, stop, latencies))
            for raw, expected, _ in cases:
                await cp.send_raw(raw)
                if expected is not None:
                    frame = await cp.next_frame()
                    assert frame[0] == 4 and (frame[1], frame[2]) == expected, (raw[:80], frame)
                    assert isinstance(frame[3], str) and frame[3] and isinstance(frame[4], dict)
                reply = await cp.call("Heartbeat", {})  # still connected, and nothing else was sent back
                assert reply[0] == 3, (raw[:80], reply)
            letters = await observer.expect(DeadLetter, charger_id=bad, count=len(cases))
            for (raw, _, word), letter in zip(cases, letters, strict=True):
                assert letter.source == "bridge" and word in letter.reason, (raw[:80], letter.reason)
                assert letter.raw == raw[:65_536]
            stop.set()
            await bystander
            assert latencies and max(latencies) < 1.0
            assert not observer.events(DeadLetter, charger_id=good)
            assert not observer.events(ConnectionEvent, charger_id=good, kind=ConnectionKind.DISCONNECTED)
            assert not observer.events(ConnectionEvent, charger_id=bad, kind=ConnectionKind.DISCONNECTED)

    asyncio.run(scenario())
