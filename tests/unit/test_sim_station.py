"""The station core on a manual clock: sessions, ground truth, profiles, faults, determinism."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from control.contract import ConnectorState, OcppVersion
from ingest.sim import commands
from ingest.sim.clock import ManualClock
from ingest.sim.events import AuthorizeEvent, SimEvent, StatusEvent, TxSampleEvent, TxStartEvent, TxStopEvent
from ingest.sim.faults import FaultConfig
from ingest.sim.model import ChargerKind, Hardware
from ingest.sim.plan import Behaviour, ChargerSpec, FleetMix, build_fleet
from ingest.sim.station import Station, StationOptions
from ingest.sim.truth import MemorySink

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
QUICK = Behaviour(first_arrival_max_s=120, dwell_min_s=1800, dwell_max_s=2400, pause_probability=0.0,
                  sessions_per_connector=1)


def spec(version: OcppVersion = OcppVersion.V16, kind: ChargerKind = ChargerKind.AC3, connectors: int = 1,
         amps: float = 32.0) -> ChargerSpec:
    return ChargerSpec("SIM-0001", version, Hardware(kind, max_current_a=amps), connectors,
                       tuple(1_000_000.0 + 1000 * i for i in range(connectors)))


class Csms:
    """Answers like an accepting CSMS, synchronously (no network)."""

    def __init__(self, station: Station, *, accept: bool = True) -> None:
        self.station = station
        self.accept = accept
        self.tx_ids = itertools.count(100)
        self.events: list[SimEvent] = []

    def handle(self, now: datetime) -> None:
        while self.station.events:
            for event in self.station.drain():
                self.events.append(event)
                if isinstance(event, AuthorizeEvent):
                    self.station.authorize_result(event.connector_id, self.accept, now)
                elif isinstance(event, TxStartEvent):
                    if self.station.version == OcppVersion.V16:
                        event.session.tx_id = str(next(self.tx_ids))
                    event.session.start_acked = True
                elif isinstance(event, TxStopEvent):
                    event.session.stop_acked = True
        self.station.write_settled()


def make(spec_: ChargerSpec | None = None, *, seed: int = 1, behaviour: Behaviour = QUICK,
         faults: FaultConfig | None = None, options: StationOptions | None = None,
         online: bool = True) -> tuple[Station, ManualClock, MemorySink, Csms]:
    clock, sink = ManualClock(T0), MemorySink()
    station = Station(spec_ or spec(), seed=seed, start=T0, truth=sink, behaviour=behaviour, faults=faults,
                      options=options)
    station.online = online
    return station, clock, sink, Csms(station)


def run(station: Station, clock: ManualClock, csms: Csms, seconds: float, step: float = 5.0) -> None:
    for _ in range(int(seconds / step)):
        now = clock.advance(step)
        station.tick(now)
        csms.handle(now)


def sessions(sink: MemorySink) -> list[dict[str, Any]]:
    return [r for r in sink.records if r["kind"] == "session"]


@pytest.mark.parametrize("version", [OcppVersion.V16, OcppVersion.V201])
def test_ground_truth_energy_is_the_register_delta(version: OcppVersion) -> None:
    station, clock, sink, csms = make(spec(version))
    run(station, clock, csms, 3 * 3600)
    assert station.done
    [record] = sessions(sink)
    assert record["confirmed"] and record["faults"] == []
    assert record["energy_wh"] > 1000  # a real session, not an empty one
    resolution = 1.0 if version == OcppVersion.V16 else 0.1
    assert abs((record["meter_stop_wh"] - record["meter_start_wh"]) - record["energy_wh"]) <= resolution
    assert record["start_ts"] < record["stop_ts"] and record["start_ts"].endswith("Z")
    samples = [e for e in csms.events if isinstance(e, TxSampleEvent)]
    registers = [s.reading.register_wh for s in samples]
    assert registers == sorted(registers)  # the register only grows
    assert record["meter_start_wh"] <= registers[0] and registers[-1] <= record["meter_stop_wh"]
    if version == OcppVersion.V16:
        assert record["transaction_id"] == "100"
    else:
        assert len(record["transaction_id"]) == 36  # the charger's own uuid


def test_register_reset_keeps_exact_energy_and_is_logged() -> None:
    station, clock, sink, csms = make(behaviour=replace(QUICK, register_reset_probability=1.0))
    run(station, clock, csms, 3 * 3600)
    [record] = sessions(sink)
    [fault] = [r for r in sink.records if r["kind"] == "fault"]
    assert fault["code"] == "EnergyRegisterReset" and fault["session_refs"] == [record["session_ref"]]
    assert record["faults"] == ["EnergyRegisterReset"]
    before_reset = float(fault["detail"].split()[1])
    assert record["meter_stop_wh"] < record["meter_start_wh"]
    delivered = (before_reset - record["meter_start_wh"]) + record["meter_stop_wh"]
    assert delivered == pytest.approx(record["energy_wh"], abs=1.0)


def test_same_seed_same_run_and_another_seed_differs() -> None:
    def one(seed: int) -> tuple[list[dict[str, Any]], list[str]]:
        records, kinds = [], []
        for charger in build_fleet(FleetMix(chargers=3, dc_chargers=1), seed):
            station, clock, sink, csms = make(charger, seed=seed, behaviour=replace(QUICK, sessions_per_connector=2),
                                              faults=FaultConfig(error_per_hour=0.5))
            run(station, clock, csms, 6 * 3600, step=7.0)
            records += sink.records
            kinds += [type(e).__name__ for e in csms.events]
        return records, kinds

    first, again, other = one(42), one(42), one(43)
    assert first == again
    assert sum(1 for r in first[0] if r["kind"] == "session") >= 4
    assert first[0] != other[0]


def test_profile_is_obeyed_after_the_reaction_delay_and_ramp() -> None:
    station, clock, _, csms = make(options=StationOptions(reaction_delay_s=2.0, ramp_a_per_s=10.0))
    c = station.connectors[1]
    while c.session is None or not c.flow.flowing:
        run(station, clock, csms, 5)
    assert c.flow.offered_a == 32.0  # no profile: the hardware maximum
    assert commands.set_profile(station, clock.now(), {
        "charging_profile_id": 1, "stack_level": 0, "charging_profile_purpose": "TxDefaultProfile",
        "charging_profile_kind": "Absolute", "charging_schedule": {
            "charging_rate_unit": "A", "charging_schedule_period": [{"start_period": 0, "limit": 8.0}]}}, 0)
    run(station, clock, csms, 1, step=1.0)
    assert c.flow.offered_a == 32.0  # not yet: hardware reaction delay
    run(station, clock, csms, 2, step=1.0)
    assert c.flow.offered_a == pytest.approx(22.0)  # 1 s into a 10 A/s ramp
    run(station, clock, csms, 2, step=1.0)
    assert c.flow.offered_a == pytest.approx(8.0)
    assert max(c.flow.currents_a) == pytest.approx(8.0)
    assert commands.set_profile(station, clock.now(), {
        "charging_profile_id": 2, "stack_level": 0, "charging_profile_purpose": "ChargePointMaxProfile",
        "charging_profile_kind": "Absolute", "charging_schedule": {
            "charging_rate_unit": "W", "charging_schedule_period": [{"start_period": 0, "limit": 0.0}]}}, 0)
    assert not commands.set_profile(station, clock.now(), {
        "charging_profile_id": 3, "stack_level": 0, "charging_profile_purpose": "ChargePointMaxProfile",
        "charging_profile_kind": "Absolute", "charging_schedule": {
            "charging_rate_unit": "W", "charging_schedule_period": [{"start_period": 0, "limit": 0.0}]}}, 1)
    run(station, clock, csms, 10, step=1.0)
    statuses = [e.status for e in csms.events if isinstance(e, StatusEvent) and e.connector_id == 1]
    assert statuses[-1] == ConnectorState.SUSPENDED_EVSE
    assert commands.clear_profiles(station, clock.now(), purpose="ChargePointMaxProfile")
    assert not commands.clear_profiles(station, clock.now(), profile_id=99)
    run(station, clock, csms, 10, step=1.0)
    assert max(c.flow.currents_a) == pytest.approx(8.0)
    assert [e.status for e in csms.events if isinstance(e, StatusEvent)][-1] == ConnectorState.CHARGING


def test_full_car_suspends_itself() -> None:
    station, clock, _, csms = make()
    c = station.connectors[1]
    while c.session is None:
        run(station, clock, csms, 5)
    run(station, clock, csms, 30)
    assert c.plan is not None
    c.soc = c.plan.soc_target
    run(station, clock, csms, 10)
    statuses = [e.status for e in csms.events if isinstance(e, StatusEvent) and e.connector_id == 1]
    assert statuses[-2:] == [ConnectorState.CHARGING, ConnectorState.SUSPENDED_EV]


def test_hardware_error_faults_the_connector_and_stops_the_session() -> None:
    station, clock, sink, csms = make(faults=FaultConfig(error_per_hour=2.0, error_codes=("GroundFailure",)),
                                      behaviour=replace(QUICK, dwell_min_s=6 * 3600, dwell_max_s=6 * 3600))
    run(station, clock, csms, 4 * 3600)
    faulted = [e for e in csms.events if isinstance(e, StatusEvent) and e.status == ConnectorState.FAULTED]
    assert faulted and faulted[0].error_code == "GroundFailure"
    [record] = sessions(sink)
    assert record["stop_reason"] == "GroundFault" and record["faults"] == ["GroundFailure"]


def test_offline_station_authorizes_locally() -> None:
    station, clock, _, csms = make(online=False)
    run(station, clock, csms, 600)
    assert not any(isinstance(e, AuthorizeEvent) for e in csms.events)
    assert any(isinstance(e, TxStartEvent) for e in csms.events)


def test_rejected_tag_never_starts() -> None:
    station, clock, sink, csms = make()
    csms.accept = False
    run(station, clock, csms, 3 * 3600)
    assert any(isinstance(e, AuthorizeEvent) for e in csms.events)
    assert not any(isinstance(e, TxStartEvent) for e in csms.events)
    assert sessions(sink) == [] and station.done


def test_remote_start_skips_authorize_and_remote_stop_ends_it() -> None:
    station, clock, sink, csms = make(behaviour=replace(QUICK, first_arrival_max_s=10 * 3600))
    assert commands.remote_start(station, clock.now(), id_tag="APP-1", connector_id=1, remote_start_id=5)
    assert not commands.remote_start(station, clock.now(), id_tag="APP-2", connector_id=1)  # busy
    run(station, clock, csms, 10)
    [start] = [e for e in csms.events if isinstance(e, TxStartEvent)]
    assert start.remote and start.session.id_tag == "APP-1" and start.session.remote_start_id == 5
    assert not any(isinstance(e, AuthorizeEvent) for e in csms.events)
    assert not commands.remote_stop(station, clock.now(), "nope")
    assert commands.remote_stop(station, clock.now(), start.session.tx_id or "")
    csms.handle(clock.now())
    [record] = sessions(sink)
    assert record["stop_reason"] == "Remote" and record["remote_start_id"] == 5
    assert commands.unlock(station, clock.now(), 1, refuse_in_tx=False) == "Unlocked"


def test_reservation_brings_the_reserving_driver() -> None:
    station, clock, _, csms = make(behaviour=replace(QUICK, first_arrival_max_s=10 * 3600))
    expiry = clock.now() + timedelta(hours=1)
    assert commands.reserve(station, clock.now(), reservation_id=9, connector_id=1, id_tag="RSV",
                            expiry=expiry) == "Accepted"
    run(station, clock, csms, 10)
    assert station.connectors[1].reported in (ConnectorState.RESERVED, ConnectorState.PREPARING)
    run(station, clock, csms, 3600)
    starts = [e for e in csms.events if isinstance(e, TxStartEvent)]
    assert starts and starts[0].session.id_tag == "RSV" and starts[0].session.reservation_id == 9


def test_change_availability_is_scheduled_during_a_transaction() -> None:
    station, clock, _, csms = make()
    c = station.connectors[1]
    while c.session is None:
        run(station, clock, csms, 5)
    assert commands.change_availability(station, clock.now(), 0, operative=False) == "Scheduled"
    run(station, clock, csms, 3 * 3600)
    assert c.reported == ConnectorState.UNAVAILABLE
    assert commands.change_availability(station, clock.now(), 1, operative=True) == "Accepted"
    run(station, clock, csms, 10)
    assert c.reported == ConnectorState.AVAILABLE
