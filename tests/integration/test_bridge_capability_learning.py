"""Charger capabilities through the real bridge (PostgreSQL, Mosquitto) with simulated OCPP 1.6 and
2.0.1 chargers: asked once per boot, stored for every bridge process, and used in the
SetChargingProfile frames the chargers receive."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
import pytest
from test_bridge_harness import (
    FAST,
    PASSWORD,
    Observer,
    bridge_settings,
    observing,
    register,
    running_bridge,
    unique,
)

from control.contract import CommandKind, CommandOutcome, CommandResult, OcppVersion
from control.settings import MqttEndpoint, Settings
from ingest.capability_session import CapabilityPolicy
from ingest.sim.charger16 import Dialect16
from ingest.sim.charger201 import Dialect201
from ingest.sim.clock import ScaledClock
from ingest.sim.model import ChargerKind, Hardware
from ingest.sim.plan import Behaviour, ChargerSpec
from ingest.sim.profiles import Profile
from ingest.sim.runtime import LinkSettings, StationRuntime
from ingest.sim.station import Station
from ingest.sim.truth import MemorySink
from warehouse.capability_store import ChargerCapabilities, charger_capabilities

pytestmark = pytest.mark.integration

SPEED = 30.0  # a reboot's 15 simulated seconds of downtime take half a real second


@pytest.fixture()
def observer(mqtt_endpoint: MqttEndpoint) -> Iterator[Observer]:
    yield from observing(mqtt_endpoint)


def simulated(charger_id: str, version: OcppVersion, kind: ChargerKind, clock: ScaledClock, url: str,
              **variables: str) -> StationRuntime:
    spec = ChargerSpec(charger_id, version, Hardware(kind, max_current_a=32.0), 1, (1_000.0,))
    station = Station(spec, seed=1, start=clock.now(), truth=MemorySink(),
                      behaviour=Behaviour(sessions_per_connector=0))
    station.variables.values.update(variables)  # what this model answers (the simulator does not enforce it)
    dialect = (Dialect16 if version is OcppVersion.V16 else Dialect201)(station, clock)
    return StationRuntime(station, dialect, clock, LinkSettings(url=url, password=PASSWORD, response_timeout_s=5.0),
                          msg_rng=random.Random(1))


def stored(dsn: str, charger_id: str) -> ChargerCapabilities | None:
    with psycopg.connect(dsn) as conn:
        return charger_capabilities(conn, charger_id)


def calls_sent(dsn: str, charger_id: str, *actions: str) -> list[list[Any]]:
    """The bridge's CALLs to the charger in its frame log (flushed about once a second)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("select frame from ocpp_frames where charger_id = %s and direction = 'out'"
                            " order by frame_id", (charger_id,)).fetchall()
    frames = [orjson.loads(r[0]) for r in rows]
    return [f for f in frames if f[0] == 2 and f[2] in actions]


def asked(dsn: str, charger_id: str) -> list[str]:
    return [f[2] for f in calls_sent(dsn, charger_id, "GetConfiguration", "GetVariables")]


async def until(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    try:
        async with asyncio.timeout(timeout):
            while not (value := await asyncio.to_thread(check)):
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"waited {timeout:g} s for {what}") from None
    return value


def installed(runtime: StationRuntime) -> Profile:
    [profile] = [p for p in runtime.station.profiles.profiles if p.connector_id == 1]
    return profile


def test_capabilities_are_learned_once_per_boot_and_shape_the_profiles(test_settings: Settings, pg_dsn: str,
                                                                      observer: Observer) -> None:
    c16, c201 = unique("CAP16"), unique("CAP201")
    for charger_id in (c16, c201):
        register(pg_dsn, charger_id)
    options = replace(FAST, capabilities=CapabilityPolicy(grace_s=60.0))

    async def set_limit(charger_id: str) -> CommandResult:
        sent = observer.send_command(charger_id, CommandKind.SET_LIMIT, connector_id=1,
                                     params={"limit": 16.0, "unit": "A", "stack_level": 5})
        [result] = await observer.expect(CommandResult, command_id=sent, timeout=15)
        return result  # type: ignore[no-any-return]

    async def scenario() -> None:
        async with running_bridge(bridge_settings(test_settings), options) as bridge:
            clock = ScaledClock(datetime.now(UTC), SPEED)
            url = f"ws://127.0.0.1:{bridge.port}/ocpp"
            runtimes = [  # a single-phase 1.6 wallbox that takes W only; a three-phase 2.0.1 one, 2 stack levels
                simulated(c16, OcppVersion.V16, ChargerKind.AC1, clock, url,
                          ChargingScheduleAllowedChargingRateUnit="Power", ChargeProfileMaxStackLevel="3"),
                simulated(c201, OcppVersion.V201, ChargerKind.AC3, clock, url, ChargeProfileMaxStackLevel="2"),
            ]
            halt = asyncio.Event()
            tasks = [asyncio.create_task(rt.run(halt)) for rt in runtimes]
            try:
                caps16 = await until(lambda: stored(pg_dsn, c16), "1.6 capabilities")
                caps201 = await until(lambda: stored(pg_dsn, c201), "2.0.1 capabilities")
                assert (caps16.rate_units, caps16.max_stack_level, caps16.max_periods, caps16.phases,
                        caps16.max_profiles, caps16.smart_charging, caps16.notes) == (
                    ("W",), 3, 24, 1, 16, True, ())
                assert (caps201.rate_units, caps201.max_stack_level, caps201.max_periods, caps201.phases,
                        caps201.smart_charging) == (("A", "W"), 2, 24, 3, True)
                assert caps201.notes == ("SmartChargingCtrlr.Entries[ChargingProfiles]: UnknownVariable",)

                for charger_id in (c16, c201):
                    assert (await set_limit(charger_id)).outcome is CommandOutcome.ACCEPTED
                w16, a201 = installed(runtimes[0]), installed(runtimes[1])
                assert (w16.unit, w16.stack_level, [(p.limit, p.phases) for p in w16.periods]) == (
                    "W", 3, [(3680.0, 1)])  # 16 A x 1 phase x 230 V
                assert (a201.unit, a201.stack_level, [(p.limit, p.phases) for p in a201.periods]) == (
                    "A", 2, [(16.0, None)])
                assert await until(lambda: asked(pg_dsn, c16) == ["GetConfiguration"], "one question")
                assert await until(lambda: asked(pg_dsn, c201) == ["GetVariables"], "one question")
                [frame] = calls_sent(pg_dsn, c16, "SetChargingProfile")
                schedule = frame[3]["csChargingProfiles"]["chargingSchedule"]
                assert schedule["chargingRateUnit"] == "W" and schedule["chargingSchedulePeriod"] == [
                    {"startPeriod": 0, "limit": 3680.0, "numberPhases": 1}]

                # Charge-point-wide profiles: the second within the interval waits (flash wear).
                sent = [observer.send_command(c201, CommandKind.SET_LIMIT, params={
                    "limit": limit, "purpose": "ChargePointMaxProfile"}) for limit in (32.0, 40.0)]
                first, second = [(await observer.expect(CommandResult, command_id=c))[0] for c in sent]
                assert first.outcome is CommandOutcome.ACCEPTED and second.outcome is CommandOutcome.FAILED
                assert "at most once every 900 s" in (second.detail or "")
                [station_max] = [p for p in runtimes[1].station.profiles.profiles if p.connector_id == 0]
                assert (station_max.purpose.value, station_max.periods[0].limit) == ("ChargePointMaxProfile", 32.0)

                # A reboot is a new boot: asked again, once, and the next profile still fits.
                reset = observer.send_command(c16, CommandKind.RESET, params={"type": "soft"})
                assert (await observer.expect(CommandResult, command_id=reset))[0].outcome is CommandOutcome.ACCEPTED
                assert await until(lambda: asked(pg_dsn, c16) == ["GetConfiguration"] * 2, "asked after the reboot")
                again = await until(lambda: (s := stored(pg_dsn, c16)) and s.learned_at > caps16.learned_at and s,
                                    "stored again")
                assert again.rate_units == ("W",)
                assert (await set_limit(c16)).outcome is CommandOutcome.ACCEPTED
                assert installed(runtimes[0]).unit == "W"
                await asyncio.sleep(1.2)  # a frame log flush later: still two questions, one per boot
                assert asked(pg_dsn, c16) == ["GetConfiguration"] * 2 and asked(pg_dsn, c201) == ["GetVariables"]
            finally:
                for rt in runtimes:
                    await rt.shutdown(1.0)
                halt.set()
                await asyncio.gather(*tasks)

    asyncio.run(scenario())
