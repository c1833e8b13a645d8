"""Runs a fleet of simulated chargers until stopped, out of time, or out of planned sessions."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from control.contract import OcppVersion
from ingest.sim.charger16 import Dialect16
from ingest.sim.charger201 import Dialect201
from ingest.sim.clock import Clock
from ingest.sim.dialect import Dialect
from ingest.sim.external import ControlFile, LimitCommand, set_limit
from ingest.sim.faults import FaultConfig
from ingest.sim.plan import Behaviour, FleetMix, build_fleet, rng_for
from ingest.sim.runtime import LinkSettings, StationRuntime
from ingest.sim.station import Station, StationOptions
from ingest.sim.truth import TruthSink

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FleetConfig:
    link: LinkSettings
    mix: FleetMix = field(default_factory=FleetMix)
    behaviour: Behaviour = field(default_factory=Behaviour)
    faults: FaultConfig = field(default_factory=FaultConfig)
    options: StationOptions = field(default_factory=StationOptions)
    seed: int = 1
    duration_s: float | None = None  # real seconds
    drain_timeout_s: float = 5.0  # real seconds to flush queues at the end
    bench_rate: float | None = None  # target aggregate periodic samples per real second
    control_file: str | None = None  # JSON lines done as they are appended (ingest.sim.external)


@dataclass
class FleetReport:
    chargers: int
    booted: int
    sessions: int
    faults: int = 0
    bench: dict[str, Any] = field(default_factory=dict)


def make_runtimes(config: FleetConfig, clock: Clock, truth: TruthSink) -> list[StationRuntime]:
    specs = build_fleet(config.mix, config.seed)
    options, behaviour, link = config.options, config.behaviour, config.link
    flood = config.bench_rate / len(specs) if config.bench_rate and specs else None
    if flood:
        options = dataclasses.replace(options, periodic_samples=False)
        behaviour = dataclasses.replace(behaviour, soak=True)
        link = dataclasses.replace(link, validate=False)
    runtimes = []
    for spec in specs:
        station = Station(spec, seed=config.seed, start=clock.now(), truth=truth, behaviour=behaviour,
                          faults=config.faults, options=options)
        dialect: Dialect = (Dialect16 if spec.ocpp_version == OcppVersion.V16 else Dialect201)(station, clock)
        runtimes.append(StationRuntime(station, dialect, clock, link, msg_rng=rng_for(config.seed, spec.charger_id,
                                                                                       "messages"),
                                       flood_rate=flood))
    return runtimes


async def run_fleet(config: FleetConfig, *, clock: Clock, truth: TruthSink, stop: asyncio.Event) -> FleetReport:
    runtimes = make_runtimes(config, clock, truth)
    loop = asyncio.get_running_loop()
    halt = asyncio.Event()
    tasks = [asyncio.create_task(rt.run(halt), name=f"sim-{rt.station.id}") for rt in runtimes]
    started = loop.time()
    limited = config.behaviour.sessions_per_connector is not None and not config.bench_rate
    control = ControlFile(config.control_file) if config.control_file else None
    waiter = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            if control is not None:
                for command in control.poll():
                    apply_command(runtimes, command, clock)
            if config.duration_s is not None and loop.time() - started >= config.duration_s:
                break
            if limited and all(rt.station.done for rt in runtimes):
                break
            if all(task.done() for task in tasks):
                break
            await asyncio.wait([waiter], timeout=0.05)
    finally:
        waiter.cancel()
        await asyncio.gather(*(rt.shutdown(config.drain_timeout_s) for rt in runtimes), return_exceptions=True)
        halt.set()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, BaseException):
                log.error("simulated charger crashed", exc_info=result)
        for rt in runtimes:
            rt.station.write_settled(force=True)
    report = FleetReport(chargers=len(runtimes), booted=sum(rt.ever_booted for rt in runtimes),
                         sessions=sum(rt.station.session_count for rt in runtimes))
    if config.bench_rate:
        report.bench = bench_summary(runtimes, config.bench_rate)
    return report


def apply_command(runtimes: list[StationRuntime], command: LimitCommand, clock: Clock) -> int:
    """Do a control-file command on its charger (or on every one); how many took it."""
    done = 0
    for rt in runtimes:
        if command.charger in (None, rt.station.id) and set_limit(rt.station, clock.now(), command):
            rt.dispatch()
            done += 1
    log.info("control: %s %s limit on %s (evse %d): %d charger(s)", command.source,
             "cleared" if command.cleared else "notified", command.charger or "every charger", command.evse, done)
    return done


def bench_summary(runtimes: list[StationRuntime], target: float) -> dict[str, Any]:
    firsts = [rt.stats.first_sample_at for rt in runtimes if rt.stats.first_sample_at is not None]
    lasts = [rt.stats.last_sample_at for rt in runtimes if rt.stats.last_sample_at is not None]
    acked = sum(rt.stats.samples_acked for rt in runtimes)
    elapsed = (max(lasts) - min(firsts)) if firsts and lasts else 0.0
    return {
        "kind": "bench",
        "target_rate": target,
        "achieved_rate": round(acked / elapsed, 1) if elapsed > 0 else 0.0,
        "samples_acked": acked,
        "samples_skipped": sum(rt.stats.samples_skipped for rt in runtimes),
        "call_errors": sum(rt.stats.call_errors for rt in runtimes),
        "timeouts": sum(rt.stats.timeouts for rt in runtimes),
        "elapsed_s": round(elapsed, 3),
        "chargers": len(runtimes),
        "connectors": sum(len(rt.station.connectors) for rt in runtimes),
    }
