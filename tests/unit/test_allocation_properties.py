"""Properties of decide() for any site tree, any building loads and any mix of sessions.

The checks recompute the limits from the snapshot here, independently of control.allocation:
the sum on every circuit and phase, every EV-only cap and every per-connector cap.
"""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.allocation import (
    Allocation,
    AllocationParams,
    ConnectorAllocation,
    ConnectorDemand,
    PauseCause,
    SiteControlState,
    Snapshot,
    decide,
)
from control.contract import ChargingMode
from control.modes import priority_class
from control.site import (
    ALL_PHASES,
    BuildingLoadReading,
    Charger,
    Circuit,
    Connector,
    LimitScope,
    OperatorLimit,
    Phase,
    PhaseCurrents,
    Site,
)

T = TypeVar("T")
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
WIRINGS = [
    ALL_PHASES,
    (Phase.L2, Phase.L3, Phase.L1),
    (Phase.L3, Phase.L1, Phase.L2),
    (Phase.L1,),
    (Phase.L2,),
    (Phase.L3,),
    (Phase.L1, Phase.L2),
]
# decide() works in tenths of an ampere and snaps float noise within 1e-7 A of a tenth (so 15.99999999
# A of a limit is 16 A, and a building load of 4e-9 A is 0): the guarantees hold to that resolution.
EPS = 1e-6
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

amps = st.integers(min_value=0, max_value=1000).map(lambda tenths: tenths / 10)
maybe_amps = st.none() | amps
some_amps = st.floats(min_value=0, max_value=100, allow_nan=False, allow_infinity=False)
three_amps = st.builds(PhaseCurrents, amps, amps, amps)
three_loads = st.builds(PhaseCurrents, some_amps, some_amps, some_amps)
maybe_end = st.none() | st.integers(min_value=-200, max_value=200).map(lambda s: _at(s))
charger_fields = st.tuples(
    st.sampled_from([4, 6, 10, 13, 16, 20, 32, 40.5]),
    st.sampled_from(WIRINGS),
    st.lists(maybe_amps, min_size=1, max_size=2),
    maybe_amps,
)
# One integer of flags per demand keeps generation fast: 1 in 8 not connected, 1 in 8 not
# requesting, 1 in 16 paused by the user, 1 in 16 paused by a rule, half with a deadline at risk.
demand_fields = st.tuples(
    st.sampled_from(ChargingMode), st.integers(0, 2**16 - 1), st.sampled_from([None, 1, 2, 3]), maybe_amps, maybe_amps
)


def _demand_kwargs(fields: tuple[ChargingMode, int, int | None, float | None, float | None]) -> dict[str, Any]:
    mode, flags, phases, rule_cap, operator_cap = fields
    return {
        "mode": mode,
        "ev_connected": flags & 0b111 != 0,
        "wants_energy": (flags >> 3) & 0b111 != 0,
        "user_paused": (flags >> 6) & 0b1111 == 0,
        "rule_pause_reason": "Skip once" if (flags >> 10) & 0b1111 == 0 else None,
        "deadline_at_risk": bool(flags >> 14 & 1),
        "rule_reason": "Limit after 18:00" if flags >> 15 else None,
        "phases_in_use": phases,
        "rule_cap_a": rule_cap,
        "operator_cap_a": operator_cap,
    }


last_fields = st.one_of(
    st.just((None, None, None)),
    st.tuples(amps, st.integers(-120, 0).map(lambda s: _at(s)), st.none()),
    st.tuples(st.just(0.0), st.integers(-120, 0).map(lambda s: _at(s)), st.none() | st.sampled_from(PauseCause)),
)
params_strategy = st.builds(
    AllocationParams,
    safety_margin_a=st.sampled_from([0, 0.5, 1, 2.3]),
    safety_margin_pct=st.sampled_from([0, 5, 10]),
    min_current_a=st.sampled_from([6, 6, 5.5, 8]),
    deadband_a=st.sampled_from([0, 0.5, 1.2]),
    hysteresis_s=st.sampled_from([0, 60]),
)


@st.composite
def snapshots(draw: st.DrawFn, deadband: bool = True) -> Snapshot:
    circuits = [Circuit("c0", draw(three_amps), has_meter=draw(st.booleans()))]
    depth = {"c0": 1}
    for i in range(1, draw(st.integers(min_value=0, max_value=5)) + 1):
        parent = draw(st.sampled_from([c.circuit_id for c in circuits if depth[c.circuit_id] < 4]))
        circuits.append(Circuit(f"c{i}", draw(three_amps), parent_id=parent, has_meter=draw(st.booleans())))
        depth[f"c{i}"] = depth[parent] + 1
    circuit_ids = st.sampled_from([c.circuit_id for c in circuits])
    chargers = []
    for i in range(draw(st.integers(min_value=1, max_value=6))):
        max_a, wiring, cables, supply = draw(charger_fields)
        connectors = tuple(Connector(n, cable) for n, cable in enumerate(cables, start=1))
        chargers.append(Charger(f"cp{i}", draw(circuit_ids), max_a, wiring, connectors, supply))
    limits = []
    if draw(st.booleans()):
        limits.append(OperatorLimit(LimitScope.SITE, draw(amps), ends_at=draw(maybe_end)))
    for charger in chargers:
        if draw(st.integers(0, 4)) == 0:
            limits.append(OperatorLimit(LimitScope.CHARGER, draw(amps), charger.charger_id, ends_at=draw(maybe_end)))
    site = Site(
        "s",
        tuple(circuits),
        tuple(chargers),
        name="site",
        meter_timeout_s=draw(st.sampled_from([30, 60])),
        safe_fallback_a=draw(amps),
    )
    loads = []
    for circuit in circuits:
        for _ in range(draw(st.integers(0, 2))):
            main_by_none = circuit.parent_id is None and draw(st.booleans())
            loads.append(
                BuildingLoadReading(
                    _at(draw(st.integers(-90, 5))),
                    draw(three_loads),
                    circuit_id=None if main_by_none else circuit.circuit_id,
                )
            )
    demands = []
    for charger in chargers:
        for connector in charger.connectors:
            if draw(st.integers(0, 5)) == 0:
                continue
            last_a, last_at, last_cause = draw(last_fields)
            demands.append(
                ConnectorDemand(
                    charger.charger_id,
                    connector.connector_id,
                    _at(draw(st.integers(-3, 0)) * 600),
                    last_limit_a=last_a,
                    last_limit_at=last_at,
                    last_pause_cause=last_cause,
                    **_demand_kwargs(draw(demand_fields)),
                )
            )
    params = draw(params_strategy)
    if not deadband:
        params = dataclasses.replace(params, deadband_a=0)
    return Snapshot(site, tuple(demands), tuple(loads), tuple(limits), params)


def _at(offset_s: int) -> datetime:
    return NOW + timedelta(seconds=offset_s)


# --------------------------------------------------------------------------- the limits, recomputed


def _tenths_down(value: float) -> int:
    return math.floor(round(value * 10, 6))


def _tenths_up(value: float) -> int:
    return math.ceil(round(value * 10, 6))


def _draw_phases(snapshot: Snapshot, result: ConnectorAllocation) -> tuple[Phase, ...]:
    charger = snapshot.site.charger(result.charger_id)
    assert charger is not None
    demand = _demand(snapshot, result)
    wired = len(charger.phases)
    return charger.phases[: min(demand.phases_in_use or wired, wired)]


def _path(snapshot: Snapshot, result: ConnectorAllocation) -> tuple[str, ...]:
    charger = snapshot.site.charger(result.charger_id)
    assert charger is not None
    return snapshot.site.path_to_main(charger.circuit_id)


def _demand(snapshot: Snapshot, result: ConnectorAllocation) -> ConnectorDemand:
    return next(
        d for d in snapshot.demands if (d.charger_id, d.connector_id) == (result.charger_id, result.connector_id)
    )


def _latest(snapshot: Snapshot) -> dict[str, BuildingLoadReading]:
    latest: dict[str, BuildingLoadReading] = {}
    for r in snapshot.building_loads:
        cid = r.circuit_id or snapshot.site.main_breaker.circuit_id
        if cid not in latest or (r.ts, r.currents.as_tuple()) > (latest[cid].ts, latest[cid].currents.as_tuple()):
            latest[cid] = r
    return latest


def _building_tenths(snapshot: Snapshot, circuit_id: str, phase: Phase) -> int:
    """The load through a circuit: its own reading, or its children's sum when that is higher."""
    reading = _latest(snapshot).get(circuit_id)
    own = _tenths_up(reading.currents.of(phase)) if reading else 0
    children = [c.circuit_id for c in snapshot.site.circuits if c.parent_id == circuit_id]
    return max(own, sum(_building_tenths(snapshot, c, phase) for c in children))


def _is_stale(snapshot: Snapshot) -> bool:
    latest, timeout = _latest(snapshot), snapshot.site.meter_timeout_s
    return any(
        (c.has_meter and c.circuit_id not in latest)
        or (c.circuit_id in latest and abs((NOW - latest[c.circuit_id].ts).total_seconds()) > timeout)
        for c in snapshot.site.circuits
    )


def _cells(snapshot: Snapshot, allocation: Allocation) -> dict[tuple[str, Phase], tuple[int, set[tuple[str, int]]]]:
    """Every shared constraint and phase: (room left in tenths of A, the connectors drawing on it)."""
    site, params = snapshot.site, snapshot.params
    active = [c for c in allocation.connectors if c.limit_a > 0]
    cells: dict[tuple[str, Phase], tuple[int, set[tuple[str, int]]]] = {}

    def add(name: str, phase: Phase, capacity: int, members: list[ConnectorAllocation]) -> None:
        drawing = [m for m in members if phase in _draw_phases(snapshot, m)]
        used = sum(round(m.limit_a * 10) for m in drawing)
        cells[name, phase] = (capacity - used, {(m.charger_id, m.connector_id) for m in drawing})

    for circuit in site.circuits:
        members = [c for c in active if circuit.circuit_id in _path(snapshot, c)]
        for phase in ALL_PHASES:
            limit = circuit.limit_a.of(phase)
            margin = _tenths_up(max(params.safety_margin_a, limit * params.safety_margin_pct / 100))
            add(
                circuit.circuit_id,
                phase,
                max(0, _tenths_down(limit) - margin - _building_tenths(snapshot, circuit.circuit_id, phase)),
                members,
            )
    live = [lim for lim in (*site.operator_limits, *snapshot.operator_limits) if lim.applies_at(NOW)]
    for phase in ALL_PHASES:
        for lim in live:
            members = [c for c in active if lim.scope is LimitScope.SITE or c.charger_id == lim.target_id]
            add(f"operator {lim.scope} {lim.target_id} {lim.limit_a}", phase, _tenths_down(lim.limit_a), members)
        for charger in site.chargers:
            if charger.supply_max_a is not None:
                add(
                    f"supply {charger.charger_id}",
                    phase,
                    _tenths_down(charger.supply_max_a),
                    [c for c in active if c.charger_id == charger.charger_id],
                )
        if _is_stale(snapshot):
            add("fallback", phase, _tenths_down(site.safe_fallback_a), active)
    return cells


def _cap(snapshot: Snapshot, result: ConnectorAllocation) -> float:
    demand, charger = _demand(snapshot, result), snapshot.site.charger(result.charger_id)
    assert charger is not None
    connector = charger.connector(result.connector_id)
    assert connector is not None
    caps = [
        charger.max_current_a,
        connector.cable_max_a,
        demand.rule_cap_a,
        demand.operator_cap_a,
        snapshot.params.mode_policy.mode_cap_a(
            demand.mode, charger.max_current_a, snapshot.params.min_current_a, demand.deadline_at_risk
        ),
    ]
    return _tenths_down(min(c for c in caps if c is not None)) / 10


# --------------------------------------------------------------------------- properties


@PROPERTY_SETTINGS
@given(snapshots())
def test_every_limit_holds_and_no_car_gets_less_than_the_minimum(snapshot: Snapshot) -> None:
    """No circuit or phase over its limit minus margin, no EV-only or per-connector cap exceeded,
    nothing strictly between 0 and the minimum current, the fallback exactly when an input is stale."""
    allocation = decide(snapshot, NOW)
    site, params = snapshot.site, snapshot.params
    latest = _latest(snapshot)
    for circuit in site.circuits:
        subtree = [c for c in site.circuits if circuit.circuit_id in site.path_to_main(c.circuit_id)]
        for phase in ALL_PHASES:
            ev = math.fsum(
                r.limit_a
                for r in allocation.connectors
                if r.limit_a > 0 and circuit.circuit_id in _path(snapshot, r) and phase in _draw_phases(snapshot, r)
            )
            # Every meter in the subtree is a lower bound of the non-EV load through this circuit.
            building = max(
                [latest[c.circuit_id].currents.of(phase) for c in subtree if c.circuit_id in latest], default=0.0
            )
            limit = circuit.limit_a.of(phase)
            allowed = limit - max(params.safety_margin_a, limit * params.safety_margin_pct / 100)
            assert ev == 0 or building + ev <= allowed + EPS, (circuit.circuit_id, phase, building, ev, allowed)
    for (name, phase), (room, _) in _cells(snapshot, allocation).items():
        assert room >= 0, (name, phase, room)
    for result in allocation.connectors:
        if result.limit_a > 0:
            assert result.limit_a <= _cap(snapshot, result) + EPS
            assert round(result.limit_a * 10) == result.limit_a * 10  # whole tenths of an ampere
        assert result.limit_a == 0 or result.limit_a >= params.min_current_a  # never between 0 and the minimum
        assert result.paused == (result.limit_a == 0) and (result.pause_cause is not None) == result.paused
        assert result.reason
    assert len(allocation.connectors) == len(snapshot.demands)
    if allocation.state is SiteControlState.SAFE_FALLBACK:
        for phase in ALL_PHASES:
            ev = math.fsum(r.limit_a for r in allocation.connectors if r.limit_a > 0 and phase in r.phases)
            assert ev <= site.safe_fallback_a + EPS
    assert (allocation.state is SiteControlState.SAFE_FALLBACK) == _is_stale(snapshot) == bool(allocation.stale_inputs)


@PROPERTY_SETTINGS
@given(snapshots(), st.randoms(use_true_random=False))
def test_deterministic_whatever_the_order_of_the_inputs(snapshot: Snapshot, rnd: random.Random) -> None:
    first = decide(snapshot, NOW)
    assert decide(snapshot, NOW) == first

    def shuffled(items: tuple[T, ...]) -> tuple[T, ...]:
        copy = list(items)
        rnd.shuffle(copy)
        return tuple(copy)

    site = dataclasses.replace(
        snapshot.site,
        circuits=shuffled(snapshot.site.circuits),
        chargers=shuffled(snapshot.site.chargers),
        operator_limits=shuffled(snapshot.site.operator_limits),
    )
    again = Snapshot(
        site,
        shuffled(snapshot.demands),
        shuffled(snapshot.building_loads),
        shuffled(snapshot.operator_limits),
        snapshot.params,
    )
    assert decide(again, NOW) == first


@PROPERTY_SETTINGS
@given(snapshots(deadband=False))
def test_priority_and_fair_use_of_capacity(snapshot: Snapshot) -> None:
    """Without a deadband: nobody is below its cap while its constraints have room (work
    conserving), and a lower class is above its minimum only where a starved higher class does
    not need the capacity: every starved higher-class car is blocked by a full constraint the
    lower-class car does not draw on."""
    allocation = decide(snapshot, NOW)
    cells = _cells(snapshot, allocation)
    minimum = snapshot.params.min_current_a
    active = [c for c in allocation.connectors if c.limit_a > 0]

    def full_cells(result: ConnectorAllocation) -> set[tuple[str, Phase]]:
        key = (result.charger_id, result.connector_id)
        return {cell for cell, (room, members) in cells.items() if key in members and room == 0}

    def rank(result: ConnectorAllocation) -> int:
        demand = _demand(snapshot, result)
        return priority_class(demand.mode, demand.deadline_at_risk).rank

    for high in active:
        if high.limit_a >= _cap(snapshot, high) - EPS:
            continue
        blocked_by = full_cells(high)
        assert blocked_by, f"{high.charger_id}/{high.connector_id} is below its cap with room everywhere"
        for low in active:
            if rank(low) > rank(high) and low.limit_a > minimum + EPS:
                key = (low.charger_id, low.connector_id)
                assert any(key not in cells[cell][1] for cell in blocked_by), (high, low)
