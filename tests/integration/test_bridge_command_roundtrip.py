"""Commands round-trip: MQTT -> bridge -> OCPP CALL -> charger -> exactly one CommandResult, for
every outcome, across reconnects and with two bridge processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from test_bridge_harness import (
    FAST,
    Observer,
    bridge_settings,
    charger,
    observing,
    register,
    running_bridge,
    unique,
)

from control.contract import CommandKind, CommandOutcome, CommandResult
from control.settings import MqttEndpoint, Settings

pytestmark = pytest.mark.integration


@pytest.fixture()
def observer(mqtt_endpoint: MqttEndpoint) -> Iterator[Observer]:
    yield from observing(mqtt_endpoint)


def scripted(answers: dict[str, list[Any] | None]) -> Any:
    async def responder(action: str, payload: dict[str, Any]) -> list[Any] | None:
        return answers.get(action, ["result", {"status": "Accepted"}])

    return responder


async def one_result(observer: Observer, command_id: str, timeout: float = 10.0) -> CommandResult:
    results = await observer.expect(CommandResult, command_id=command_id, timeout=timeout)
    await asyncio.sleep(0.8)  # several sweeps later, still exactly one
    results = observer.events(CommandResult, command_id=command_id)
    assert len(results) == 1, results
    return results[0]  # type: ignore[no-any-return]


def test_outcomes_on_ocpp16(test_settings: Settings, pg_dsn: str, observer: Observer) -> None:
    cid = unique("CMD")
    register(pg_dsn, cid)
    settings = bridge_settings(test_settings, ocpp_response_timeout_s=0.5)
    answers: dict[str, list[Any] | None] = {
        "SetChargingProfile": ["result", {"status": "Accepted"}],
        "RemoteStartTransaction": ["result", {"status": "Rejected"}],
        "Reset": ["error", "NotSupported"],
        "UnlockConnector": None,  # never answers
        "GetConfiguration": ["result", {"configurationKey": [
            {"key": "HeartbeatInterval", "readonly": False, "value": "60"}]}],
    }

    async def scenario() -> None:
        async with running_bridge(settings) as bridge, charger(bridge, cid, responder=scripted(answers)) as cp:
            sent = observer.send_command(cid, CommandKind.SET_LIMIT, params={"limit": 16.27, "unit": "A"},
                                         connector_id=1)
            result = await one_result(observer, sent)
            assert (result.outcome, result.status) == (CommandOutcome.ACCEPTED, "Accepted")
            action, payload = cp.received_calls[-1]
            profile = payload["csChargingProfiles"]
            assert action == "SetChargingProfile" and payload["connectorId"] == 1
            assert profile["chargingProfilePurpose"] == "TxDefaultProfile"
            assert profile["chargingSchedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 16.2}]

            start = await cp.call("StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0,
                                                       "timestamp": "2026-11-20T10:00:00Z"})
            sent = observer.send_command(cid, CommandKind.SET_LIMIT, params={"limit": 10}, connector_id=1)
            assert (await one_result(observer, sent)).outcome is CommandOutcome.ACCEPTED
            profile = cp.received_calls[-1][1]["csChargingProfiles"]
            assert profile["chargingProfilePurpose"] == "TxProfile"
            assert profile["transactionId"] == start[2]["transactionId"]

            sent = observer.send_command(cid, CommandKind.START, params={"id_tag": "TAG"}, connector_id=2)
            result = await one_result(observer, sent)
            assert (result.outcome, result.status) == (CommandOutcome.REJECTED, "Rejected")

            sent = observer.send_command(cid, CommandKind.RESET, params={"type": "hard"})
            result = await one_result(observer, sent)
            assert (result.outcome, result.status) == (CommandOutcome.FAILED, "NotSupported")
            assert cp.received_calls[-1] == ("Reset", {"type": "Hard"})

            sent = observer.send_command(cid, CommandKind.UNLOCK, connector_id=1)
            result = await one_result(observer, sent)
            assert result.outcome is CommandOutcome.TIMED_OUT

            sent = observer.send_command(cid, CommandKind.GET_CONFIG, params={"key": "HeartbeatInterval"})
            result = await one_result(observer, sent)
            assert result.outcome is CommandOutcome.ACCEPTED and result.payload == {"HeartbeatInterval": "60"}

            sent = observer.send_command(cid, CommandKind.STOP, connector_id=2)  # nothing runs there
            result = await one_result(observer, sent)
            assert result.outcome is CommandOutcome.FAILED and "no transaction" in (result.detail or "")

    asyncio.run(scenario())


def test_offline_expiry_and_delivery_on_reconnect(test_settings: Settings, pg_dsn: str, observer: Observer) -> None:
    cid = unique("OFF")
    register(pg_dsn, cid)
    settings = bridge_settings(test_settings)

    async def scenario() -> None:
        async with running_bridge(settings) as bridge:
            doomed = observer.send_command(cid, CommandKind.TRIGGER, params={"message": "Heartbeat"}, ttl_s=0.5)
            stranger = observer.send_command(unique("NOT-OURS"), CommandKind.RESET, ttl_s=0.3)
            result = await one_result(observer, doomed)
            assert result.outcome is CommandOutcome.OFFLINE
            assert not observer.events(CommandResult, command_id=stranger)  # not in our registry: not ours
            queued = [observer.send_command(cid, CommandKind.TRIGGER, params={"message": m}, ttl_s=30)
                      for m in ("StatusNotification", "MeterValues", "Heartbeat")]
            await asyncio.sleep(0.5)
            assert not any(observer.events(CommandResult, command_id=c) for c in queued)
            async with charger(bridge, cid) as cp:
                for command_id in queued:
                    assert (await one_result(observer, command_id)).outcome is CommandOutcome.ACCEPTED
                assert [p["requestedMessage"] for a, p in cp.received_calls] == [
                    "StatusNotification", "MeterValues", "Heartbeat"]

    asyncio.run(scenario())


def test_two_bridges_one_result(test_settings: Settings, pg_dsn: str, observer: Observer) -> None:
    cid = unique("TWO")
    register(pg_dsn, cid)
    answers: dict[str, list[Any] | None] = {"GetVariables": ["result", {"getVariableResult": [{
        "attributeStatus": "Accepted", "attributeValue": "300",
        "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}]}

    async def scenario() -> None:
        shared = replace(FAST, reuse_port=True)
        async with running_bridge(bridge_settings(test_settings), shared) as first, \
                running_bridge(replace(bridge_settings(test_settings), bridge_port=first.port), shared) as second:
            assert first.port == second.port  # SO_REUSEPORT: the kernel picks the process per connection
            async with charger(second, cid, version="ocpp2.0.1", responder=scripted(answers)) as cp:
                holders = [b for b in (first, second) if cid in b.sessions]
                assert len(holders) == 1
                commands = [observer.send_command(cid, CommandKind.GET_CONFIG,
                                                  params={"key": "OCPPCommCtrlr.HeartbeatInterval"})
                            for _ in range(5)]
                for command_id in commands:
                    result = await one_result(observer, command_id)
                    assert result.outcome is CommandOutcome.ACCEPTED
                    assert result.payload == {"OCPPCommCtrlr.HeartbeatInterval": "300"}
                assert len(cp.received_calls) == 5
                assert cp.received_calls[0] == ("GetVariables", {"getVariableData": [
                    {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]})
            for _ in range(250):  # the server side notices the close a moment later
                if not first.sessions and not second.sessions:
                    break
                await asyncio.sleep(0.02)
            assert first.sessions == {} and second.sessions == {}

    asyncio.run(scenario())
