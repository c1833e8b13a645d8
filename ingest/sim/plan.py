"""Seeded plans: which chargers exist and what each EV does. Pure and deterministic.

Every random choice comes from a :class:`random.Random` seeded with a string derived from the run
seed, the charger id and the connector, so a run is reproducible and adding a charger does not
change the plans of the others.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from control.contract import OcppVersion
from ingest.sim.ev import CATALOGUE, EvModel
from ingest.sim.events import StopReason
from ingest.sim.model import ChargerKind, Hardware

SOAK_DWELL_S = 365 * 86_400.0


def rng_for(seed: int, *parts: object) -> random.Random:
    """An independent, reproducible stream (string seeds are hashed with SHA-512, not ``hash()``)."""
    return random.Random("/".join([str(seed), *map(str, parts)]))  # noqa: S311 - simulation, not crypto


@dataclass(frozen=True, slots=True)
class ChargerSpec:
    charger_id: str
    ocpp_version: OcppVersion
    hardware: Hardware
    connectors: int
    initial_register_wh: tuple[float, ...]
    vendor: str = "FlowBankSim"
    model: str = "SIM-AC"
    serial: str = ""
    firmware: str = "sim-1.0.0"


@dataclass(frozen=True, slots=True)
class FleetMix:
    chargers: int = 4
    v201_fraction: float = 0.5
    two_connector_fraction: float = 0.5
    single_phase_fraction: float = 0.25
    dc_chargers: int = 1
    id_prefix: str = "SIM-"
    first_index: int = 1


def spread(index: int, fraction: float) -> bool:
    """Pick ``fraction`` of the indexes, evenly spread (index 1 of 2 for 0.5, not a random one)."""
    return math.floor((index + 1) * fraction + 1e-9) > math.floor(index * fraction + 1e-9)


def build_fleet(mix: FleetMix, seed: int) -> list[ChargerSpec]:
    specs = []
    for index in range(mix.chargers):
        charger_id = f"{mix.id_prefix}{mix.first_index + index:04d}"
        rng = rng_for(seed, charger_id, "hardware")
        version = OcppVersion.V201 if spread(index, mix.v201_fraction) else OcppVersion.V16
        if index >= mix.chargers - mix.dc_chargers:
            hardware, connectors, model = Hardware(ChargerKind.DC, max_power_w=50_000.0), 1, "SIM-DC50"
        elif spread(index, mix.single_phase_fraction):
            hardware, model = Hardware(ChargerKind.AC1, max_current_a=32.0), "SIM-AC7"
            connectors = 2 if spread(index, mix.two_connector_fraction) else 1
        else:
            amps = rng.choice((16.0, 32.0))
            hardware, model = Hardware(ChargerKind.AC3, max_current_a=amps), f"SIM-AC{int(amps * 0.69)}"
            connectors = 2 if spread(index, mix.two_connector_fraction) else 1
        registers = tuple(float(rng.randrange(100_000, 5_000_000)) for _ in range(connectors))
        specs.append(ChargerSpec(charger_id, version, hardware, connectors, registers, model=model,
                                 serial=f"SN{rng.randrange(10**8):08d}"))
    return specs


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How drivers behave; times are simulated seconds."""

    arrival_mean_s: float = 1800.0  # mean idle gap before the next EV (exponential)
    first_arrival_max_s: float = 300.0
    dwell_min_s: float = 1200.0  # transaction start to the driver stopping
    dwell_max_s: float = 4 * 3600.0
    pause_probability: float = 0.1  # the car suspends charging for a while
    register_reset_probability: float = 0.0  # fault: the register restarts at 0 mid-session
    id_tags: tuple[str, ...] = tuple(f"SIMTAG{n:04d}" for n in range(1, 21))
    sessions_per_connector: int | None = None  # None = keep going
    soak: bool = False  # benchmark: the EV arrives at once and never leaves


@dataclass(frozen=True, slots=True)
class SessionPlan:
    arrive_after_s: float
    id_tag: str
    ev: EvModel
    soc_start: float
    soc_target: float  # the car stops accepting here (SuspendedEV)
    dwell_s: float
    auth_delay_s: float
    unplug_delay_s: float
    stop_mode: StopReason  # LOCAL (badge, then unplug) or EV_DISCONNECTED (just unplug)
    pause_at_s: float | None = None
    pause_s: float = 0.0
    register_reset_at_s: float | None = None


def draw_session(rng: random.Random, hardware: Hardware, behaviour: Behaviour, *, first: bool) -> SessionPlan:
    cars = [ev for ev in CATALOGUE if ev.dc_max_power_w > 0] if hardware.dc else list(CATALOGUE)
    ev = rng.choice(cars)
    if behaviour.soak:
        return SessionPlan(arrive_after_s=rng.uniform(0.0, 2.0), id_tag=rng.choice(behaviour.id_tags),
                           ev=ev, soc_start=5.0, soc_target=100.0, dwell_s=SOAK_DWELL_S, auth_delay_s=1.0,
                           unplug_delay_s=5.0, stop_mode=StopReason.LOCAL)
    if first:
        arrive = rng.uniform(0.0, behaviour.first_arrival_max_s)
    else:
        arrive = rng.expovariate(1.0 / behaviour.arrival_mean_s) if behaviour.arrival_mean_s > 0 else 0.0
    dwell = rng.uniform(behaviour.dwell_min_s, max(behaviour.dwell_min_s, behaviour.dwell_max_s))
    pause_at = rng.uniform(0.1, 0.6) * dwell if rng.random() < behaviour.pause_probability else None
    reset_at = rng.uniform(0.2, 0.8) * dwell if rng.random() < behaviour.register_reset_probability else None
    return SessionPlan(
        arrive_after_s=arrive,
        id_tag=rng.choice(behaviour.id_tags),
        ev=ev,
        soc_start=round(rng.uniform(10.0, 70.0), 1),
        soc_target=rng.choice((80.0, 90.0, 100.0, 100.0)),
        dwell_s=dwell,
        auth_delay_s=rng.uniform(5.0, 30.0),
        unplug_delay_s=rng.uniform(30.0, 300.0),
        stop_mode=StopReason.LOCAL if rng.random() < 0.7 else StopReason.EV_DISCONNECTED,
        pause_at_s=pause_at,
        pause_s=rng.uniform(60.0, 600.0) if pause_at is not None else 0.0,
        register_reset_at_s=reset_at,
    )
