"""Dynamic load management: ``decide(snapshot, now) -> Allocation``, stateless per cycle.

Standard library only, no IO, no clock reads. The :class:`Snapshot` carries the whole state of
one site (its model, building-load readings, every connector's demand, live operator limits and
the parameters); the pipeline keeps it up to date and calls :func:`decide` on every relevant
event. The same snapshot and ``now`` always give the same :class:`Allocation`: inputs are sorted
by id before use, and all arithmetic is in integer tenths of an ampere, rounded *down* for
limits and *up* for loads, so rounding can never push a sum over a limit.

The policy, in the order it is applied:

1. **Inputs.** Operator limits that have ended are ignored. The newest building-load reading per
   circuit counts; a circuit carries ``max(own reading, sum of its children)`` (a reading is the
   non-EV load *through* that circuit). A reading older than ``site.meter_timeout_s`` (or
   missing for a circuit with ``has_meter``, or dated too far ahead) is **stale**: the site goes
   to ``SiteControlState.SAFE_FALLBACK`` and its total EV current is capped at
   ``site.safe_fallback_a`` per phase on top of every other limit (stale readings still count).
   :class:`Reservation` s (connectors outside the allocation that may still draw, e.g. an
   offline charger's installed limit) are taken off every constraint their charger draws through.
2. **Constraints.** Every circuit, from the charger's up to the main breaker, on every phase:
   ``building load + EV current <= limit - safety margin`` (margin: ``safety_margin_a`` or
   ``safety_margin_pct`` of the limit, whichever is larger). EV-only caps: the site's and a
   charger's operator limits, a charger's shared supply, the safe fallback, an external limit on
   the whole charger (:class:`ExternalCap` on connector 0). Per connector: external (its own,
   and its charger's), hardware, cable, operator, rule and mode (Eco) caps. A car on fewer
   phases than its charger is wired for draws on the charger's first wired phases (phase
   rotation).
3. **Who charges.** Not connected, not requesting energy, paused by the user or by a rule, or
   capped below the minimum current: paused with that reason. A car paused for capacity stays
   paused until ``hysteresis_s`` after its pause was sent. The others are admitted at the minimum
   current (6 A for AC) in priority order (Boost > deadline at risk > Standard > Eco, then
   earliest arrival); one that does not fit is paused: "Paused: not enough capacity". No car
   ever gets a limit between 0 and the minimum.
4. **Fair share.** Class by class, highest first, the admitted cars are raised together
   (water-filling, max-min fair in amps) until each hits its own cap or a saturated constraint;
   leftover tenths go one by one in arrival order. A lower class only gets what the higher
   classes could not use.
5. **Deadband.** If the new limit differs from the last one sent by less than ``deadband_a``,
   the old limit is kept when it is still safe (fits every constraint and cap) and does not take
   capacity from a higher class that is below its cap. Pausing and resuming are never held back
   by the deadband.

Every :class:`ConnectorAllocation` names its binding constraint and a plain-English reason;
:class:`CircuitUsage` gives building load, EV current and headroom per phase for the load bar;
:attr:`Allocation.inputs` lists the inputs with their ages for the audit log.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final

from control.contract import ChargingMode, RateUnit, Setpoint
from control.modes import ModePolicy, PriorityClass, priority_class
from control.site import (
    ALL_PHASES,
    BuildingLoadReading,
    Charger,
    LimitScope,
    OperatorLimit,
    Phase,
    Site,
    SiteModelError,
    require_utc,
)


class SnapshotError(SiteModelError):
    """A snapshot that is not self-consistent (duplicate demands, bad parameters)."""


class SiteControlState(StrEnum):
    NORMAL = "normal"
    SAFE_FALLBACK = "safe_fallback"  # an input is stale: the site runs on its safe cap; raise an alert


class Binding(StrEnum):
    """What set a connector's limit."""

    HARDWARE = "hardware"
    CABLE = "cable"
    MODE = "mode"  # Eco's cap
    RULE = "rule"
    OPERATOR = "operator"  # an operator cap on the connector or its charger
    EXTERNAL = "external"  # an external system's limit the charger reported (grid operator, EMS, ...)
    CHARGER_SUPPLY = "charger_supply"
    CIRCUIT = "circuit"
    MAIN_BREAKER = "main_breaker"
    OPERATOR_SITE = "operator_site"
    SAFE_FALLBACK = "safe_fallback"
    HYSTERESIS = "hysteresis"  # paused for capacity, waiting before a retry
    USER = "user"
    NO_DEMAND = "no_demand"  # no car, or the car does not want energy
    NOT_CONFIGURED = "not_configured"  # the charger or connector is not in the site model


class PauseCause(StrEnum):
    CAPACITY = "capacity"  # resumes only after the hysteresis time
    RULE = "rule"
    USER = "user"
    LIMIT = "limit"  # a cap (hardware, cable, operator) below the minimum current
    NO_DEMAND = "no_demand"
    NOT_CONFIGURED = "not_configured"


PAUSED_NO_CAPACITY: Final = "Paused: not enough capacity"


@dataclass(frozen=True, slots=True)
class AllocationParams:
    safety_margin_a: float = 1.0
    safety_margin_pct: float = 0.0  # of each circuit's limit; the larger margin wins
    min_current_a: float = 6.0  # IEC 61851 AC minimum
    deadband_a: float = 0.5
    hysteresis_s: float = 60.0
    mode_policy: ModePolicy = field(default_factory=ModePolicy)

    def __post_init__(self) -> None:
        for name in ("safety_margin_a", "safety_margin_pct", "min_current_a", "deadband_a", "hysteresis_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise SnapshotError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.min_current_a <= 0 or self.safety_margin_pct >= 100:
            raise SnapshotError("min_current_a must be > 0 and safety_margin_pct < 100")


@dataclass(frozen=True, slots=True)
class ConnectorDemand:
    """One connector's state as the pipeline knows it; ``last_*`` echo the previous decision.

    ``last_limit_at`` is when the last limit took effect (the decision that *changed* it, not a
    re-send); ``last_pause_cause`` is the previous allocation's ``pause_cause``. ``rule_*`` come
    from the rules engine (the rule's name is the reason), ``deadline_at_risk`` from the planner.
    """

    charger_id: str
    connector_id: int
    arrived_at: datetime  # session start: the deterministic tie-break (earlier first)
    mode: ChargingMode = ChargingMode.STANDARD
    ev_connected: bool = True
    wants_energy: bool = True
    phases_in_use: int | None = None  # None: every phase the charger is wired for
    measured_current_a: float | None = None
    last_limit_a: float | None = None
    last_limit_at: datetime | None = None
    last_pause_cause: PauseCause | None = None
    rule_cap_a: float | None = None
    rule_reason: str | None = None
    rule_pause_reason: str | None = None
    user_paused: bool = False
    deadline_at_risk: bool = False
    operator_cap_a: float | None = None

    def __post_init__(self) -> None:
        require_utc("arrived_at", self.arrived_at)
        require_utc("last_limit_at", self.last_limit_at)
        if self.phases_in_use is not None and self.phases_in_use not in (1, 2, 3):
            raise SnapshotError(f"{self.charger_id}/{self.connector_id}: phases_in_use must be 1, 2 or 3")
        for name in ("last_limit_a", "rule_cap_a", "operator_cap_a", "measured_current_a"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise SnapshotError(f"{self.charger_id}/{self.connector_id}: {name} must be >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class Reservation:
    """Current a connector outside the allocation may still draw, per phase on its first
    ``phases_in_use`` wired phases: an offline charger keeps the limit it last installed. It is
    taken off every constraint the charger draws through before anyone is admitted."""

    charger_id: str
    connector_id: int
    current_a: float
    phases_in_use: int | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if not math.isfinite(self.current_a) or self.current_a < 0:
            raise SnapshotError(f"{self.charger_id}/{self.connector_id}: reserved current must be >= 0")


@dataclass(frozen=True, slots=True)
class ExternalCap:
    """A cap in A per phase that an external system put on a charger (``connector_id`` 0: the sum
    of its connectors, and so each of them) or on one connector, in force for this decision.
    ``reason`` names its source for people ("Limited by grid operator (SO)"); ``detail`` goes to
    the audit log's inputs."""

    charger_id: str
    connector_id: int
    limit_a: float
    reason: str
    detail: str = ""

    def __post_init__(self) -> None:
        if not math.isfinite(self.limit_a) or self.limit_a < 0:
            raise SnapshotError(f"{self.charger_id}/{self.connector_id}: external cap must be >= 0 A")
        if not self.reason:
            raise SnapshotError(f"{self.charger_id}/{self.connector_id}: external cap needs a reason")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole state of one site for one decision. ``operator_limits`` add to the site's own."""

    site: Site
    demands: tuple[ConnectorDemand, ...] = ()
    building_loads: tuple[BuildingLoadReading, ...] = ()
    operator_limits: tuple[OperatorLimit, ...] = ()
    params: AllocationParams = AllocationParams()
    reservations: tuple[Reservation, ...] = ()
    external_caps: tuple[ExternalCap, ...] = ()

    def __post_init__(self) -> None:
        keys = sorted((d.charger_id, d.connector_id) for d in self.demands)
        duplicates = sorted({k for a, k in itertools.pairwise(keys) if a == k})
        if duplicates:
            raise SnapshotError(f"duplicate demands for {[f'{c}/{n}' for c, n in duplicates]}")


@dataclass(frozen=True, slots=True)
class ConnectorAllocation:
    charger_id: str
    connector_id: int
    limit_a: float  # 0 when paused; otherwise >= the minimum current
    paused: bool
    reason: str  # plain English for the UI and the audit log
    binding_constraint: Binding
    changed: bool  # differs from last_limit_a (or there was none): send it
    binding_id: str | None = None  # the circuit or charger id of the binding constraint
    pause_cause: PauseCause | None = None
    previous_limit_a: float | None = None
    phases: tuple[Phase, ...] = ()  # the grid phases the limit applies to
    priority: PriorityClass | None = None
    held_by_deadband: bool = False

    def to_setpoint(self, *, site_id: str, decision_id: str, ts: datetime) -> Setpoint:
        return Setpoint(
            decision_id=decision_id,
            site_id=site_id,
            charger_id=self.charger_id,
            connector_id=self.connector_id,
            ts=ts,
            limit=self.limit_a,
            unit=RateUnit.AMPS,
            reason=self.reason,
            phases=len(self.phases) or None,
            previous_limit=self.previous_limit_a,
        )


@dataclass(frozen=True, slots=True)
class PhaseUsage:
    phase: Phase
    limit_a: float
    margin_a: float
    building_load_a: float
    ev_current_a: float
    headroom_a: float  # limit - margin - building - EV; negative when the building alone is over
    utilisation_pct: float | None  # (building + EV) / limit; None for a zero limit


@dataclass(frozen=True, slots=True)
class ConnectorShare:
    charger_id: str
    connector_id: int
    current_a: float
    phases: tuple[Phase, ...]


@dataclass(frozen=True, slots=True)
class CircuitUsage:
    circuit_id: str
    label: str
    parent_id: str | None
    phases: tuple[PhaseUsage, ...]
    shares: tuple[ConnectorShare, ...]  # the chargers' share of this circuit


@dataclass(frozen=True, slots=True)
class StaleInput:
    kind: str  # "building_load"
    circuit_id: str
    ts: datetime | None  # None: no reading at all
    age_s: float | None
    timeout_s: float
    message: str  # e.g. "Safe fallback: building meter stale for 45 s"


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One input of the decision, for the audit log."""

    kind: str  # building_load, operator_limit, demand
    subject: str
    detail: str
    ts: datetime | None
    age_s: float | None


@dataclass(frozen=True, slots=True)
class Allocation:
    site_id: str
    decided_at: datetime
    state: SiteControlState
    connectors: tuple[ConnectorAllocation, ...]
    circuits: tuple[CircuitUsage, ...]
    stale_inputs: tuple[StaleInput, ...] = ()
    inputs: tuple[InputRecord, ...] = ()
    banner: str | None = None  # a site-wide notice, e.g. the safe fallback

    def connector(self, charger_id: str, connector_id: int) -> ConnectorAllocation:
        return next(c for c in self.connectors if (c.charger_id, c.connector_id) == (charger_id, connector_id))

    @property
    def changes(self) -> tuple[ConnectorAllocation, ...]:
        return tuple(c for c in self.connectors if c.changed)


# --------------------------------------------------------------------------- arithmetic in tenths of an ampere


# Rounding to 6 decimals of a tenth first snaps float noise (16.000000000000004 A is 16 A): the
# guarantees hold to 1e-7 A, far below any meter's resolution.
def _floor_d(amps: float) -> int:
    return math.floor(round(amps * 10, 6))


def _ceil_d(amps: float) -> int:
    return math.ceil(round(amps * 10, 6))


def _amps(tenths: int) -> float:
    return tenths / 10


def _fmt(amps: float) -> str:
    return f"{amps:g}"


@dataclass(slots=True)
class _Constraint:
    kind: Binding
    ref_id: str | None
    reason: str
    room: list[int]  # per phase index, tenths of A, never negative


@dataclass(slots=True)
class _Entry:
    demand: ConnectorDemand
    charger: Charger | None
    phases: tuple[int, ...] = ()
    cls: PriorityClass | None = None
    cap: int = 0
    cap_binding: Binding = Binding.HARDWARE
    cap_reason: str = ""
    path: tuple[int, ...] = ()
    limit: int = 0
    cause: PauseCause | None = None
    binding: Binding = Binding.HARDWARE
    binding_id: str | None = None
    reason: str = ""
    frozen_by: int | None = None
    held: bool = False

    @property
    def order(self) -> tuple[int, datetime, str, int]:
        rank = self.cls.rank if self.cls is not None else 99
        return (rank, self.demand.arrived_at, self.demand.charger_id, self.demand.connector_id)

    def pause(self, cause: PauseCause, binding: Binding, reason: str, binding_id: str | None = None) -> None:
        self.limit, self.cause, self.binding, self.reason, self.binding_id = 0, cause, binding, reason, binding_id

    def draws_on(self, index: int, phase: int) -> bool:
        return index in self.path and phase in self.phases


# --------------------------------------------------------------------------- decide


def decide(snapshot: Snapshot, now: datetime) -> Allocation:
    """Every connector's limit for this instant; see the module docstring for the policy."""
    require_utc("now", now)
    site, params = snapshot.site, snapshot.params
    own_loads, inputs = _latest_readings(site, snapshot.building_loads, now)
    stale = _stale_inputs(site, own_loads, now)
    loads = _effective_loads(
        site, {cid: tuple(_ceil_d(r.currents.of(p)) for p in ALL_PHASES) for cid, r in own_loads.items()}
    )
    limits = sorted(
        (lim for lim in (*site.operator_limits, *snapshot.operator_limits) if lim.applies_at(now)),
        key=lambda lim: (lim.scope, lim.target_id or "", lim.limit_a),
    )
    banner = stale[0].message if stale else None
    external = sorted(snapshot.external_caps, key=lambda x: (x.charger_id, x.connector_id, x.limit_a, x.reason))
    constraints, by_charger = _constraints(site, params, loads, limits, banner, external)
    inputs.extend(_reserve(site, snapshot.reservations, constraints, by_charger))
    min_d = _ceil_d(params.min_current_a)

    entries = [
        _Entry(d, site.charger(d.charger_id))
        for d in sorted(snapshot.demands, key=lambda d: (d.charger_id, d.connector_id))
    ]
    external_by_connector = _external_by_connector(external)
    candidates = [e for e in entries if _prepare(e, site, params, now, min_d, by_charger, external_by_connector)]
    candidates.sort(key=lambda e: e.order)
    admitted: list[_Entry] = []
    for entry in candidates:
        blocked = next((i for i in entry.path for p in entry.phases if constraints[i].room[p] < min_d), None)
        if blocked is not None:
            c = constraints[blocked]
            entry.pause(PauseCause.CAPACITY, c.kind, PAUSED_NO_CAPACITY, c.ref_id)
            continue
        _take(entry, min_d, constraints)
        admitted.append(entry)
    for cls in PriorityClass:
        _fill([e for e in admitted if e.cls is cls], constraints)
    for entry in admitted:
        _explain(entry, constraints)
    _apply_deadband(admitted, constraints, params, min_d)

    inputs.extend(_limit_inputs((*site.operator_limits, *snapshot.operator_limits), now))
    inputs.extend(InputRecord("external_limit", f"{x.charger_id}/{x.connector_id}",
                              f"{_fmt(x.limit_a)} A: {x.reason}" + (f" ({x.detail})" if x.detail else ""), None, None)
                  for x in external)
    inputs.extend(_demand_input(e.demand, now) for e in entries)
    return Allocation(
        site_id=site.site_id,
        decided_at=now,
        state=SiteControlState.SAFE_FALLBACK if stale else SiteControlState.NORMAL,
        connectors=tuple(_result(e) for e in entries),
        circuits=_usage(site, params, loads, entries),
        stale_inputs=tuple(stale),
        inputs=tuple(inputs),
        banner=banner,
    )


def preview_mode_limits(
    snapshot: Snapshot, now: datetime, charger_id: str, connector_id: int
) -> Mapping[ChargingMode, float]:
    """The limit one connector would get in each mode, everything else unchanged (for ETA chips)."""
    target = next((d for d in snapshot.demands if (d.charger_id, d.connector_id) == (charger_id, connector_id)), None)
    if target is None:
        raise SnapshotError(f"no demand for {charger_id}/{connector_id} in the snapshot")
    result: dict[ChargingMode, float] = {}
    for mode in ChargingMode:
        demands = tuple(dataclasses.replace(d, mode=mode) if d is target else d for d in snapshot.demands)
        result[mode] = (
            decide(dataclasses.replace(snapshot, demands=demands), now).connector(charger_id, connector_id).limit_a
        )
    return result


# --------------------------------------------------------------------------- inputs


def _latest_readings(
    site: Site, readings: tuple[BuildingLoadReading, ...], now: datetime
) -> tuple[dict[str, BuildingLoadReading], list[InputRecord]]:
    main = site.main_breaker.circuit_id
    latest: dict[str, BuildingLoadReading] = {}
    ignored: list[InputRecord] = []
    for reading in readings:
        circuit_id = reading.circuit_id or main
        if site.circuit(circuit_id) is None:
            ignored.append(
                InputRecord(
                    "building_load",
                    circuit_id,
                    "ignored: not a circuit of this site",
                    reading.ts,
                    _age(now, reading.ts),
                )
            )
            continue
        known = latest.get(circuit_id)
        # Newest first; at the same instant the higher reading wins (fail safe and order-independent).
        if known is None or (reading.ts, reading.currents.as_tuple(), reading.source or "") > (
            known.ts,
            known.currents.as_tuple(),
            known.source or "",
        ):
            latest[circuit_id] = reading
    records = [
        InputRecord(
            "building_load",
            cid,
            ", ".join(f"{p} {r.currents.of(p):.1f} A" for p in ALL_PHASES) + (f" ({r.source})" if r.source else ""),
            r.ts,
            _age(now, r.ts),
        )
        for cid, r in sorted(latest.items())
    ]
    return latest, sorted(ignored, key=lambda r: (r.subject, r.ts or now)) + records


def _stale_inputs(site: Site, latest: Mapping[str, BuildingLoadReading], now: datetime) -> list[StaleInput]:
    timeout = site.meter_timeout_s
    stale: list[StaleInput] = []
    for circuit in sorted(site.circuits, key=lambda c: c.circuit_id):
        reading = latest.get(circuit.circuit_id)
        age = None if reading is None else (now - reading.ts).total_seconds()
        if age is None:
            message = f"Safe fallback: no building meter reading for {circuit.label}" if circuit.has_meter else None
        elif age > timeout:
            message = f"Safe fallback: building meter stale for {age:.0f} s"
        else:
            message = f"Safe fallback: building meter clock is {-age:.0f} s ahead" if -age > timeout else None
        if message is not None:
            ts = None if reading is None else reading.ts
            stale.append(StaleInput("building_load", circuit.circuit_id, ts, age, timeout, message))
    # The most telling message first: a missing reading, then the oldest.
    stale.sort(key=lambda s: (s.age_s is not None, -(s.age_s or 0.0), s.circuit_id))
    return stale


def _effective_loads(site: Site, own: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Load through each circuit: its own reading or the sum of its children's, whichever is higher."""
    loads: dict[str, tuple[int, ...]] = {}
    for circuit in sorted(site.circuits, key=lambda c: (-len(site.path_to_main(c.circuit_id)), c.circuit_id)):
        children = [loads[c.circuit_id] for c in site.circuits if c.parent_id == circuit.circuit_id]
        summed = tuple(sum(child[p] for child in children) for p in range(3))
        reading = own.get(circuit.circuit_id, (0, 0, 0))
        loads[circuit.circuit_id] = tuple(max(reading[p], summed[p]) for p in range(3))
    return loads


def _margin_d(limit_a: float, params: AllocationParams) -> int:
    return _ceil_d(max(params.safety_margin_a, limit_a * params.safety_margin_pct / 100))


def _constraints(
    site: Site,
    params: AllocationParams,
    loads: Mapping[str, tuple[int, ...]],
    limits: list[OperatorLimit],
    fallback: str | None,
    external: list[ExternalCap],
) -> tuple[list[_Constraint], dict[str, list[int]]]:
    """All shared constraints, and for each charger the indices of those it draws through.

    A charger's list runs from the most specific (its own caps) to the site-wide ones, which is
    the order in which a binding constraint is named.
    """
    constraints: list[_Constraint] = []

    def add(kind: Binding, ref_id: str | None, reason: str, room: list[int]) -> int:
        constraints.append(_Constraint(kind, ref_id, reason, [max(r, 0) for r in room]))
        return len(constraints) - 1

    circuit_index: dict[str, int] = {}
    for circuit in sorted(site.circuits, key=lambda c: c.circuit_id):
        main = circuit.parent_id is None
        room = [
            _floor_d(circuit.limit_a.of(p)) - _margin_d(circuit.limit_a.of(p), params) - loads[circuit.circuit_id][i]
            for i, p in enumerate(ALL_PHASES)
        ]
        circuit_index[circuit.circuit_id] = add(
            Binding.MAIN_BREAKER if main else Binding.CIRCUIT,
            circuit.circuit_id,
            "Limited by site" if main else f"Limited by circuit {circuit.label}",
            room,
        )
    site_wide: list[int] = []
    site_caps = [lim.limit_a for lim in limits if lim.scope is LimitScope.SITE]
    if site_caps:
        site_wide.append(add(Binding.OPERATOR_SITE, site.site_id, "Limited by site", [_floor_d(min(site_caps))] * 3))
    if fallback is not None:
        site_wide.append(add(Binding.SAFE_FALLBACK, site.site_id, fallback, [_floor_d(site.safe_fallback_a)] * 3))
    by_charger: dict[str, list[int]] = {}
    for charger in sorted(site.chargers, key=lambda c: c.charger_id):
        own: list[int] = []
        outside = [x for x in external if x.charger_id == charger.charger_id and x.connector_id == 0]
        if outside:
            lowest = min(outside, key=lambda x: x.limit_a)  # sorted input: ties go the same way every time
            own.append(add(Binding.EXTERNAL, charger.charger_id, lowest.reason, [_floor_d(lowest.limit_a)] * 3))
        mine = [lim for lim in limits if lim.scope is LimitScope.CHARGER and lim.target_id == charger.charger_id]
        caps = [lim.limit_a for lim in mine]
        if caps:
            own.append(add(Binding.OPERATOR, charger.charger_id, "Limited by operator", [_floor_d(min(caps))] * 3))
        if charger.supply_max_a is not None:
            own.append(
                add(
                    Binding.CHARGER_SUPPLY,
                    charger.charger_id,
                    "Limited by the charger's shared supply",
                    [_floor_d(charger.supply_max_a)] * 3,
                )
            )
        circuits = [circuit_index[cid] for cid in site.path_to_main(charger.circuit_id)]
        by_charger[charger.charger_id] = [*own, *circuits, *site_wide]
    return constraints, by_charger


def _reserve(
    site: Site,
    reservations: tuple[Reservation, ...],
    constraints: list[_Constraint],
    by_charger: Mapping[str, list[int]],
) -> list[InputRecord]:
    records = []
    for r in sorted(reservations, key=lambda r: (r.charger_id, r.connector_id)):
        charger = site.charger(r.charger_id)
        tenths = _ceil_d(r.current_a)
        if charger is not None and tenths > 0:
            wired = len(charger.phases)
            phases = [ALL_PHASES.index(p) for p in charger.phases[: min(r.phases_in_use or wired, wired)]]
            for i in by_charger[charger.charger_id]:
                for p in phases:
                    constraints[i].room[p] = max(0, constraints[i].room[p] - tenths)
        records.append(InputRecord("reserved", f"{r.charger_id}/{r.connector_id}",
                                   f"{_fmt(r.current_a)} A reserved{': ' + r.reason if r.reason else ''}", None, None))
    return records


# --------------------------------------------------------------------------- the steps


def _external_by_connector(external: list[ExternalCap]) -> dict[tuple[str, int], ExternalCap]:
    """The lowest external cap per (charger, connector); connector 0 stands for the whole charger."""
    lowest: dict[tuple[str, int], ExternalCap] = {}
    for cap in external:  # sorted: ties go the same way every time
        known = lowest.get((cap.charger_id, cap.connector_id))
        if known is None or cap.limit_a < known.limit_a:
            lowest[(cap.charger_id, cap.connector_id)] = cap
    return lowest


def _prepare(
    entry: _Entry,
    site: Site,
    params: AllocationParams,
    now: datetime,
    min_d: int,
    by_charger: Mapping[str, list[int]],
    external: Mapping[tuple[str, int], ExternalCap],
) -> bool:
    """Fill in the entry's caps and path; pause it (and return False) when it cannot be a candidate."""
    demand, charger = entry.demand, entry.charger
    connector = charger.connector(demand.connector_id) if charger is not None else None
    if charger is None or connector is None:
        entry.pause(PauseCause.NOT_CONFIGURED, Binding.NOT_CONFIGURED, "Charger is not in the site model")
        return False
    wired = len(charger.phases)
    entry.phases = tuple(ALL_PHASES.index(p) for p in charger.phases[: min(demand.phases_in_use or wired, wired)])
    entry.cls = priority_class(demand.mode, demand.deadline_at_risk)
    entry.path = tuple(by_charger[charger.charger_id])
    if not demand.ev_connected:
        entry.pause(PauseCause.NO_DEMAND, Binding.NO_DEMAND, "No vehicle connected")
        return False
    if not demand.wants_energy:
        entry.pause(PauseCause.NO_DEMAND, Binding.NO_DEMAND, "Vehicle is not requesting energy")
        return False
    if demand.user_paused:
        entry.pause(PauseCause.USER, Binding.USER, "Paused by user")
        return False
    if demand.rule_pause_reason:
        entry.pause(PauseCause.RULE, Binding.RULE, demand.rule_pause_reason)
        return False
    # Ties go to the earlier entry: an external system's cap (the charger's before the connector's),
    # then the caps someone here chose (rule, operator, mode), then the fixed ones.
    caps: list[tuple[float, Binding, str]] = [
        (cap.limit_a, Binding.EXTERNAL, cap.reason)
        for cap in (external.get((charger.charger_id, 0)), external.get((charger.charger_id, demand.connector_id)))
        if cap is not None
    ]
    if demand.rule_cap_a is not None:
        caps.append((demand.rule_cap_a, Binding.RULE, demand.rule_reason or f"Rule limit {_fmt(demand.rule_cap_a)} A"))
    if demand.operator_cap_a is not None:
        caps.append((demand.operator_cap_a, Binding.OPERATOR, "Limited by operator"))
    mode_cap = params.mode_policy.mode_cap_a(
        demand.mode, charger.max_current_a, params.min_current_a, demand.deadline_at_risk
    )
    if mode_cap is not None:
        caps.append((mode_cap, Binding.MODE, "Eco mode"))
    if connector.cable_max_a is not None:
        caps.append((connector.cable_max_a, Binding.CABLE, f"Cable cap is {_fmt(connector.cable_max_a)} A"))
    caps.append((charger.max_current_a, Binding.HARDWARE, f"Hardware cap is {_fmt(charger.max_current_a)} A"))
    cap_a, entry.cap_binding, entry.cap_reason = min(caps, key=lambda c: c[0])
    entry.cap = _floor_d(cap_a)
    if entry.cap < min_d:
        cause = PauseCause.RULE if entry.cap_binding is Binding.RULE else PauseCause.LIMIT
        entry.pause(
            cause, entry.cap_binding, f"Paused: {entry.cap_reason} (below the {_fmt(params.min_current_a)} A minimum)"
        )
        return False
    last = demand.last_limit_a
    if (
        demand.last_pause_cause is PauseCause.CAPACITY
        and (last is None or last == 0)
        and demand.last_limit_at is not None
    ):
        waited = (now - demand.last_limit_at).total_seconds()
        if waited < params.hysteresis_s:
            entry.pause(
                PauseCause.CAPACITY,
                Binding.HYSTERESIS,
                f"{PAUSED_NO_CAPACITY} (next try in {math.ceil(params.hysteresis_s - waited)} s)",
            )
            return False
    return True


def _take(entry: _Entry, tenths: int, constraints: list[_Constraint]) -> None:
    entry.limit += tenths
    for i in entry.path:
        for p in entry.phases:
            constraints[i].room[p] -= tenths


def _fill(group: list[_Entry], constraints: list[_Constraint]) -> None:
    """Water-filling: raise the group together until each member hits its cap or a full constraint."""
    growing = [e for e in group if e.limit < e.cap]
    while growing:
        sharing: dict[tuple[int, int], int] = {}
        for entry in growing:
            for i in entry.path:
                for p in entry.phases:
                    sharing[i, p] = sharing.get((i, p), 0) + 1
        step = min(e.cap - e.limit for e in growing)
        for (i, p), count in sorted(sharing.items()):
            step = min(step, constraints[i].room[p] // count)
        if step > 0:
            for entry in growing:
                _take(entry, step, constraints)
        else:  # less than a tenth each is left somewhere: hand it out one tenth at a time, in order
            for entry in growing:
                if all(constraints[i].room[p] >= 1 for i in entry.path for p in entry.phases):
                    _take(entry, 1, constraints)
        still: list[_Entry] = []
        for entry in growing:
            full = next((i for i in entry.path if any(constraints[i].room[p] == 0 for p in entry.phases)), None)
            if entry.limit >= entry.cap:
                entry.frozen_by = None
            elif full is not None:
                entry.frozen_by = full
            else:
                still.append(entry)
        growing = still


def _explain(entry: _Entry, constraints: list[_Constraint]) -> None:
    if entry.frozen_by is None or entry.limit >= entry.cap:
        entry.binding, entry.binding_id = entry.cap_binding, None
        boost = entry.demand.mode is ChargingMode.BOOST and entry.cap_binding in (Binding.HARDWARE, Binding.CABLE)
        entry.reason = "Boost" if boost else entry.cap_reason
    else:
        c = constraints[entry.frozen_by]
        entry.binding, entry.binding_id, entry.reason = c.kind, c.ref_id, c.reason


def _apply_deadband(
    admitted: list[_Entry], constraints: list[_Constraint], params: AllocationParams, min_d: int
) -> None:
    band = _floor_d(params.deadband_a)
    if band <= 0:
        return
    for entry in sorted(admitted, key=lambda e: e.order):
        last = entry.demand.last_limit_a
        if last is None:
            continue
        last_d = _floor_d(last)
        delta = last_d - entry.limit
        if last_d <= 0 or delta == 0 or abs(delta) >= band or last_d < min_d or last_d > entry.cap:
            continue
        if delta > 0:
            rank = entry.order[0]
            cells = [(i, p) for i in entry.path for p in entry.phases]
            if any(constraints[i].room[p] < delta for i, p in cells):
                continue  # the old value would break a limit now
            if any(o.order[0] < rank and o.limit < o.cap and o.draws_on(i, p) for o in admitted for i, p in cells):
                continue  # it would keep capacity a higher class is waiting for
        _take(entry, delta, constraints)
        entry.held = True


# --------------------------------------------------------------------------- output


def _result(entry: _Entry) -> ConnectorAllocation:
    demand = entry.demand
    last = demand.last_limit_a
    phases = tuple(ALL_PHASES[p] for p in entry.phases)
    return ConnectorAllocation(
        charger_id=demand.charger_id,
        connector_id=demand.connector_id,
        limit_a=_amps(entry.limit),
        paused=entry.limit == 0,
        reason=entry.reason,
        binding_constraint=entry.binding,
        changed=last is None or _floor_d(last) != entry.limit,
        binding_id=entry.binding_id,
        pause_cause=entry.cause if entry.limit == 0 else None,
        previous_limit_a=last,
        phases=phases,
        priority=entry.cls,
        held_by_deadband=entry.held,
    )


def _usage(
    site: Site, params: AllocationParams, loads: Mapping[str, tuple[int, ...]], entries: list[_Entry]
) -> tuple[CircuitUsage, ...]:
    result: list[CircuitUsage] = []
    for circuit in sorted(site.circuits, key=lambda c: (len(site.path_to_main(c.circuit_id)), c.circuit_id)):
        members = [
            e
            for e in entries
            if e.limit > 0 and e.charger is not None and circuit.circuit_id in site.path_to_main(e.charger.circuit_id)
        ]
        phases: list[PhaseUsage] = []
        for i, phase in enumerate(ALL_PHASES):
            limit_a = circuit.limit_a.of(phase)
            limit_d, margin_d, load_d = _floor_d(limit_a), _margin_d(limit_a, params), loads[circuit.circuit_id][i]
            ev_d = sum(e.limit for e in members if i in e.phases)
            phases.append(
                PhaseUsage(
                    phase,
                    limit_a,
                    _amps(margin_d),
                    _amps(load_d),
                    _amps(ev_d),
                    _amps(limit_d - margin_d - load_d - ev_d),
                    round((load_d + ev_d) * 100 / limit_d, 1) if limit_d > 0 else None,
                )
            )
        shares = tuple(
            ConnectorShare(
                e.demand.charger_id, e.demand.connector_id, _amps(e.limit), tuple(ALL_PHASES[p] for p in e.phases)
            )
            for e in members
        )
        result.append(CircuitUsage(circuit.circuit_id, circuit.label, circuit.parent_id, tuple(phases), shares))
    return tuple(result)


def _age(now: datetime, ts: datetime) -> float:
    return round((now - ts).total_seconds(), 1)


def _limit_inputs(limits: tuple[OperatorLimit, ...], now: datetime) -> list[InputRecord]:
    records = []
    for lim in limits:
        state = "active" if lim.applies_at(now) else "ended"
        until = f" until {lim.ends_at.isoformat()}" if lim.ends_at is not None else ""
        records.append(
            InputRecord(
                "operator_limit",
                lim.target_id or lim.scope.value,
                f"{_fmt(lim.limit_a)} A {state}{until} ({lim.source})",
                lim.ends_at,
                None,
            )
        )
    return sorted(records, key=lambda r: (r.subject, r.detail))


def _demand_input(demand: ConnectorDemand, now: datetime) -> InputRecord:
    parts = [
        f"mode {demand.mode.value}",
        "connected" if demand.ev_connected else "not connected",
        "wants energy" if demand.wants_energy else "not requesting",
    ]
    if demand.phases_in_use is not None:
        parts.append(f"{demand.phases_in_use} phase(s)")
    if demand.measured_current_a is not None:
        parts.append(f"measured {demand.measured_current_a:.1f} A")
    if demand.last_limit_a is not None:
        parts.append(f"last limit {demand.last_limit_a:.1f} A")
    if demand.rule_cap_a is not None or demand.rule_pause_reason:
        parts.append(f"rule {demand.rule_pause_reason or demand.rule_reason or ''} {demand.rule_cap_a or ''}".strip())
    if demand.deadline_at_risk:
        parts.append("deadline at risk")
    ts = demand.last_limit_at
    return InputRecord(
        "demand",
        f"{demand.charger_id}/{demand.connector_id}",
        ", ".join(parts),
        ts,
        None if ts is None else _age(now, ts),
    )
