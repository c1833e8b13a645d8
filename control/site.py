"""The site model of load management: site -> circuits -> chargers -> connectors, and its limits.

Standard library only, no IO. A :class:`Site` is validated on construction (duplicate ids,
unknown parents, cycles, negative limits, ...) and raises :class:`SiteModelError` whose message
names the offending element, so a bad configuration is refused before it can steer a charger.

Shape of the model:

- **Circuits** form one tree per site. Exactly one circuit has no parent: the main breaker.
  Every circuit has a limit per phase in A (``PhaseCurrents``); a single-phase sub-circuit on
  L2 is ``PhaseCurrents(0, 32, 0)``. A circuit with ``has_meter`` expects building-load
  readings: without a fresh one the site falls back to its safe cap (see ``control.allocation``).
- **Chargers** hang off one circuit. ``max_current_a`` is the hardware maximum per connector;
  ``phases`` lists the grid phases the charger's own L1, L2, L3 terminals are wired to, in that
  order (phase rotation): ``(L2, L3, L1)`` is a rotated three-phase charger, ``(L2,)`` a
  single-phase charger on L2. An EV charging on one phase draws on the *first* listed phase.
  ``supply_max_a`` optionally caps the sum of the charger's connectors (a shared supply).
- **Connectors** have an optional cable maximum (``cable_max_a``).
- **Operator limits** cap the EV current of the whole site or one charger (sum of its
  connectors) until ``ends_at``; a limit that has ended no longer applies. They cap EV current
  only: the building load is not counted against them (a grid operator's request to curtail
  controllable load, not a breaker).
- **Building load** (non-EV) readings are :class:`BuildingLoadReading`: the load flowing
  through a circuit (``circuit_id``; ``None`` = the main breaker), per phase, with its timestamp.

Currents are in A, per phase; timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from control.contract import BuildingLoad


class SiteModelError(ValueError):
    """A site model (or its configuration mapping) that is not valid; the message says where and why."""


class Phase(StrEnum):
    L1 = "L1"
    L2 = "L2"
    L3 = "L3"


ALL_PHASES: Final = (Phase.L1, Phase.L2, Phase.L3)


def require_utc(name: str, value: datetime | None) -> None:
    """Refuse a naive or non-UTC datetime (a programming error, not a user error)."""
    if value is None:
        return
    if not isinstance(value, datetime) or value.utcoffset() is None or value.utcoffset() != UTC.utcoffset(None):
        raise SiteModelError(f"{name} must be a timezone-aware UTC datetime, got {value!r}")


def _require_id(name: str, value: object) -> None:
    if not isinstance(value, str) or not value or value != value.strip() or len(value) > 64:
        raise SiteModelError(f"{name} must be a non-empty id of at most 64 characters, got {value!r}")


def _require_amps(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise SiteModelError(f"{name} must be a finite number >= 0 A, got {value!r}")


@dataclass(frozen=True, slots=True)
class PhaseCurrents:
    """A current per grid phase, in A (limits, loads)."""

    l1_a: float = 0.0
    l2_a: float = 0.0
    l3_a: float = 0.0

    def __post_init__(self) -> None:
        for phase, value in zip(ALL_PHASES, (self.l1_a, self.l2_a, self.l3_a), strict=True):
            _require_amps(f"current on {phase}", value)

    @classmethod
    def uniform(cls, current_a: float) -> PhaseCurrents:
        return cls(current_a, current_a, current_a)

    def of(self, phase: Phase) -> float:
        return self.l1_a if phase is Phase.L1 else self.l2_a if phase is Phase.L2 else self.l3_a

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.l1_a, self.l2_a, self.l3_a)


@dataclass(frozen=True, slots=True)
class Circuit:
    """A breaker-protected circuit; ``parent_id`` is None only for the site's main breaker."""

    circuit_id: str
    limit_a: PhaseCurrents
    parent_id: str | None = None
    name: str = ""
    has_meter: bool = False

    def __post_init__(self) -> None:
        _require_id("circuit_id", self.circuit_id)
        if self.parent_id is not None:
            _require_id(f"circuit {self.circuit_id}: parent_id", self.parent_id)
        if not isinstance(self.limit_a, PhaseCurrents):
            raise SiteModelError(f"circuit {self.circuit_id}: limit_a must be PhaseCurrents")
        if self.parent_id == self.circuit_id:
            raise SiteModelError(f"circuit {self.circuit_id} is its own parent (a cycle)")

    @property
    def label(self) -> str:
        return self.name or self.circuit_id


@dataclass(frozen=True, slots=True)
class Connector:
    connector_id: int
    cable_max_a: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.connector_id, bool) or not isinstance(self.connector_id, int) or self.connector_id < 1:
            raise SiteModelError(f"connector_id must be an integer >= 1, got {self.connector_id!r}")
        _require_amps(f"connector {self.connector_id}: cable_max_a", self.cable_max_a, optional=True)


@dataclass(frozen=True, slots=True)
class Charger:
    """A charger on one circuit; ``phases`` is its wiring to the grid phases, in terminal order."""

    charger_id: str
    circuit_id: str
    max_current_a: float
    phases: tuple[Phase, ...] = ALL_PHASES
    connectors: tuple[Connector, ...] = (Connector(1),)
    supply_max_a: float | None = None

    def __post_init__(self) -> None:
        _require_id("charger_id", self.charger_id)
        where = f"charger {self.charger_id}"
        _require_id(f"{where}: circuit_id", self.circuit_id)
        _require_amps(f"{where}: max_current_a", self.max_current_a)
        _require_amps(f"{where}: supply_max_a", self.supply_max_a, optional=True)
        if (
            not self.phases
            or len(self.phases) > 3
            or len(set(self.phases)) != len(self.phases)
            or not all(isinstance(p, Phase) for p in self.phases)
        ):
            raise SiteModelError(f"{where}: phases must be 1 to 3 distinct phases (L1, L2, L3), got {self.phases!r}")
        if not self.connectors:
            raise SiteModelError(f"{where}: has no connectors")
        ids = [c.connector_id for c in self.connectors]
        if len(set(ids)) != len(ids):
            raise SiteModelError(f"{where}: duplicate connector ids {sorted(ids)}")

    def connector(self, connector_id: int) -> Connector | None:
        return next((c for c in self.connectors if c.connector_id == connector_id), None)


class LimitScope(StrEnum):
    SITE = "site"
    CHARGER = "charger"


@dataclass(frozen=True, slots=True)
class OperatorLimit:
    """An operator's cap on EV current (per phase) for the site or one charger, until ``ends_at``."""

    scope: LimitScope
    limit_a: float
    target_id: str | None = None  # the charger id when scope is CHARGER
    ends_at: datetime | None = None
    source: str = "operator"

    def __post_init__(self) -> None:
        if not isinstance(self.scope, LimitScope):
            raise SiteModelError(f"operator limit scope must be one of {[s.value for s in LimitScope]}")
        _require_amps("operator limit_a", self.limit_a)
        require_utc("operator limit ends_at", self.ends_at)
        if self.scope is LimitScope.CHARGER:
            _require_id("operator limit target_id (a charger id)", self.target_id)
        elif self.target_id is not None:
            raise SiteModelError("a site-wide operator limit has no target_id")

    def applies_at(self, now: datetime) -> bool:
        """A limit applies until its end time; at and after ``ends_at`` it no longer does."""
        return self.ends_at is None or now < self.ends_at


@dataclass(frozen=True, slots=True)
class BuildingLoadReading:
    """Non-EV current flowing through a circuit (``None``: the main breaker), per phase, at ``ts``."""

    ts: datetime
    currents: PhaseCurrents
    circuit_id: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        require_utc("building load ts", self.ts)
        if not isinstance(self.currents, PhaseCurrents):
            raise SiteModelError("building load currents must be PhaseCurrents")
        if self.circuit_id is not None:
            _require_id("building load circuit_id", self.circuit_id)


def reading_from_event(event: BuildingLoad, *, voltage_v: float = 230.0) -> BuildingLoadReading:
    """Turn a contract ``BuildingLoad`` into a reading, failing safe on what it lacks.

    A phase without a current gets ``power_w / voltage_v``: the whole power on that phase, the
    worst case when the split is unknown. Negative currents (export, e.g. PV) count as 0: export
    is never treated as extra headroom, since it can vanish faster than the next reading.
    """
    worst = max(event.power_w, 0.0) / voltage_v
    values = [worst if v is None else max(v, 0.0) for v in (event.current_l1_a, event.current_l2_a, event.current_l3_a)]
    return BuildingLoadReading(
        ts=event.ts, currents=PhaseCurrents(*values), circuit_id=event.circuit_id, source=event.source
    )


@dataclass(frozen=True, slots=True)
class Site:
    """One site: its circuit tree, chargers, standing operator limits and fail-safe settings.

    ``meter_timeout_s``: a building-load reading older than this is stale. ``safe_fallback_a``:
    while a reading is stale or a metered circuit has none, the EV current of the whole site is
    capped at this per phase (0 pauses charging).
    """

    site_id: str
    circuits: tuple[Circuit, ...]
    chargers: tuple[Charger, ...] = ()
    operator_limits: tuple[OperatorLimit, ...] = ()
    name: str = ""
    voltage_v: float = 230.0
    meter_timeout_s: float = 60.0
    safe_fallback_a: float = 0.0
    _paths: Mapping[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _require_id("site_id", self.site_id)
        where = f"site {self.site_id}"
        if not isinstance(self.voltage_v, int | float) or not math.isfinite(self.voltage_v) or self.voltage_v <= 0:
            raise SiteModelError(f"{where}: voltage_v must be > 0")
        if (
            isinstance(self.meter_timeout_s, bool)
            or not isinstance(self.meter_timeout_s, int | float)
            or not math.isfinite(self.meter_timeout_s)
            or self.meter_timeout_s <= 0
        ):
            raise SiteModelError(f"{where}: meter_timeout_s must be > 0")
        _require_amps(f"{where}: safe_fallback_a", self.safe_fallback_a)
        by_id = _unique(where, "circuit", [c.circuit_id for c in self.circuits], self.circuits)
        roots = sorted(c.circuit_id for c in self.circuits if c.parent_id is None)
        if len(roots) != 1:
            raise SiteModelError(
                f"{where}: needs exactly one main breaker (a circuit without parent), found {roots or 'none'}"
            )
        for circuit in self.circuits:
            if circuit.parent_id is not None and circuit.parent_id not in by_id:
                raise SiteModelError(f"{where}: circuit {circuit.circuit_id} has unknown parent {circuit.parent_id}")
        paths: dict[str, tuple[str, ...]] = {}
        for circuit in sorted(self.circuits, key=lambda c: c.circuit_id):
            path = [circuit.circuit_id]
            parent = circuit.parent_id
            while parent is not None:
                if parent in path:
                    cycle = " -> ".join([*path[path.index(parent) :], parent])
                    raise SiteModelError(f"{where}: circuit cycle {cycle}")
                path.append(parent)
                parent = by_id[parent].parent_id
            paths[circuit.circuit_id] = tuple(path)
        chargers = _unique(where, "charger", [c.charger_id for c in self.chargers], self.chargers)
        for charger in self.chargers:
            if charger.circuit_id not in by_id:
                raise SiteModelError(
                    f"{where}: charger {charger.charger_id} is on unknown circuit {charger.circuit_id}"
                )
        for limit in self.operator_limits:
            if limit.scope is LimitScope.CHARGER and limit.target_id not in chargers:
                raise SiteModelError(f"{where}: operator limit for unknown charger {limit.target_id}")
        object.__setattr__(self, "_paths", paths)

    @property
    def main_breaker(self) -> Circuit:
        return next(c for c in self.circuits if c.parent_id is None)

    def circuit(self, circuit_id: str) -> Circuit | None:
        return next((c for c in self.circuits if c.circuit_id == circuit_id), None)

    def charger(self, charger_id: str) -> Charger | None:
        return next((c for c in self.chargers if c.charger_id == charger_id), None)

    def path_to_main(self, circuit_id: str) -> tuple[str, ...]:
        """The circuit and every ancestor up to the main breaker, innermost first."""
        return self._paths[circuit_id]


def _unique(where: str, kind: str, ids: Sequence[str], items: Sequence[Any]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for item_id, item in zip(ids, items, strict=True):
        if item_id in seen:
            raise SiteModelError(f"{where}: duplicate {kind} id {item_id}")
        seen[item_id] = item
    return seen


# --------------------------------------------------------------------------- configuration mappings


def site_from_mapping(data: Mapping[str, Any]) -> Site:
    """Build a :class:`Site` from a TOML table or a JSON object (e.g. a PostgreSQL ``jsonb`` column).

    Shape (unknown keys are refused, so a typo never silently drops a limit)::

        site_id = "depot-1"            # required
        name = "Depot"                 # optional
        voltage_v = 230                # optional, default 230
        meter_timeout_s = 60           # optional, default 60
        safe_fallback_a = 6            # optional, default 0 (pause while the meter is stale)

        [[circuits]]
        id = "main"                    # required; exactly one circuit has no parent
        limit_a = 63                   # the same on every phase, or [l1, l2, l3]
        has_meter = true               # optional: expects building-load readings
        [[circuits]]
        id = "garage"
        parent = "main"
        name = "Garage sub-panel"
        limit_a = [32, 32, 32]

        [[chargers]]
        id = "CP-1"
        circuit = "garage"
        max_current_a = 32
        phases = ["L2", "L3", "L1"]    # or "L2" for single phase; default all three in order
        supply_max_a = 32              # optional cap on the sum of its connectors
        connectors = [{ id = 1, cable_max_a = 20 }, { id = 2 }]   # optional, default one connector 1

        [[operator_limits]]
        scope = "charger"              # or "site" (then no target)
        target = "CP-1"
        limit_a = 16
        ends_at = 2024-05-01T18:00:00Z # TOML datetime or an ISO 8601 string with offset; optional
        source = "back office"         # optional

    Raises :class:`SiteModelError` naming the path of the bad value (``circuits[1].limit_a``).
    """
    _keys(
        "site",
        data,
        {
            "site_id",
            "name",
            "voltage_v",
            "meter_timeout_s",
            "safe_fallback_a",
            "circuits",
            "chargers",
            "operator_limits",
        },
    )
    circuits = tuple(_circuit(f"circuits[{i}]", c) for i, c in enumerate(_list("circuits", data.get("circuits"))))
    chargers = tuple(_charger(f"chargers[{i}]", c) for i, c in enumerate(_list("chargers", data.get("chargers", []))))
    limits = tuple(
        _limit(f"operator_limits[{i}]", c)
        for i, c in enumerate(_list("operator_limits", data.get("operator_limits", [])))
    )
    return Site(
        site_id=data.get("site_id"),  # type: ignore[arg-type]  # checked by Site
        circuits=circuits,
        chargers=chargers,
        operator_limits=limits,
        name=_str("name", data.get("name", "")),
        voltage_v=_num("voltage_v", data.get("voltage_v", 230.0)),
        meter_timeout_s=_num("meter_timeout_s", data.get("meter_timeout_s", 60.0)),
        safe_fallback_a=_num("safe_fallback_a", data.get("safe_fallback_a", 0.0)),
    )


def site_to_mapping(site: Site) -> dict[str, Any]:
    """The inverse of :func:`site_from_mapping` (JSON-ready: datetimes as ISO 8601 strings)."""
    return {
        "site_id": site.site_id,
        "name": site.name,
        "voltage_v": site.voltage_v,
        "meter_timeout_s": site.meter_timeout_s,
        "safe_fallback_a": site.safe_fallback_a,
        "circuits": [
            {
                "id": c.circuit_id,
                "parent": c.parent_id,
                "name": c.name,
                "has_meter": c.has_meter,
                "limit_a": list(c.limit_a.as_tuple()),
            }
            for c in site.circuits
        ],
        "chargers": [
            {
                "id": c.charger_id,
                "circuit": c.circuit_id,
                "max_current_a": c.max_current_a,
                "phases": [p.value for p in c.phases],
                "supply_max_a": c.supply_max_a,
                "connectors": [{"id": k.connector_id, "cable_max_a": k.cable_max_a} for k in c.connectors],
            }
            for c in site.chargers
        ],
        "operator_limits": [
            {
                "scope": lim.scope.value,
                "target": lim.target_id,
                "limit_a": lim.limit_a,
                "ends_at": lim.ends_at.isoformat() if lim.ends_at else None,
                "source": lim.source,
            }
            for lim in site.operator_limits
        ],
    }


@contextmanager
def _located(where: str) -> Iterator[None]:
    """Prefix a model error raised while building one element with that element's path."""
    try:
        yield
    except SiteModelError as exc:
        raise SiteModelError(f"{where}: {exc}") from None


def _keys(where: str, data: object, allowed: set[str]) -> None:
    if not isinstance(data, Mapping):
        raise SiteModelError(f"{where}: expected a table/object, got {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SiteModelError(f"{where}: unknown keys {unknown} (allowed: {sorted(allowed)})")


def _list(where: str, value: object) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise SiteModelError(f"{where}: expected a list, got {type(value).__name__}")
    return list(value)


def _num(where: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SiteModelError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _opt_num(where: str, value: object) -> float | None:
    return None if value is None else _num(where, value)


def _str(where: str, value: object) -> str:
    if not isinstance(value, str):
        raise SiteModelError(f"{where}: expected a string, got {value!r}")
    return value


def _opt_str(where: str, value: object) -> str | None:
    return None if value is None else _str(where, value)


def _circuit(where: str, data: Any) -> Circuit:
    _keys(where, data, {"id", "parent", "name", "limit_a", "has_meter"})
    raw = data.get("limit_a")
    if isinstance(raw, list | tuple):
        if len(raw) != 3:
            raise SiteModelError(f"{where}.limit_a: expected 3 values (L1, L2, L3), got {len(raw)}")
        values = [_num(f"{where}.limit_a[{i}]", v) for i, v in enumerate(raw)]
    else:
        values = [_num(f"{where}.limit_a", raw)] * 3
    has_meter = data.get("has_meter", False)
    if not isinstance(has_meter, bool):
        raise SiteModelError(f"{where}.has_meter: expected true or false")
    with _located(where):
        return Circuit(
            circuit_id=data.get("id"),
            limit_a=PhaseCurrents(*values),
            parent_id=_opt_str("parent", data.get("parent")),
            name=_str("name", data.get("name", "")),
            has_meter=has_meter,
        )


def _phases(where: str, raw: object) -> tuple[Phase, ...]:
    items = [raw] if isinstance(raw, str) else _list(where, raw)
    try:
        return tuple(Phase(_str(where, p).upper()) for p in items)
    except ValueError:
        raise SiteModelError(f"{where}: phases must be among L1, L2, L3, got {raw!r}") from None


def _charger(where: str, data: Any) -> Charger:
    _keys(where, data, {"id", "circuit", "max_current_a", "phases", "supply_max_a", "connectors"})
    connectors = []
    for i, raw in enumerate(_list(f"{where}.connectors", data.get("connectors", [{"id": 1}]))):
        _keys(f"{where}.connectors[{i}]", raw, {"id", "cable_max_a"})
        with _located(f"{where}.connectors[{i}]"):
            connectors.append(
                Connector(connector_id=raw.get("id"), cable_max_a=_opt_num("cable_max_a", raw.get("cable_max_a")))
            )
    with _located(where):
        return Charger(
            charger_id=data.get("id"),
            circuit_id=data.get("circuit"),
            max_current_a=_num("max_current_a", data.get("max_current_a")),
            phases=_phases("phases", data.get("phases", [p.value for p in ALL_PHASES])),
            connectors=tuple(connectors),
            supply_max_a=_opt_num("supply_max_a", data.get("supply_max_a")),
        )


def _limit(where: str, data: Any) -> OperatorLimit:
    _keys(where, data, {"scope", "target", "limit_a", "ends_at", "source"})
    try:
        scope = LimitScope(data.get("scope"))
    except ValueError:
        raise SiteModelError(f"{where}.scope: expected 'site' or 'charger', got {data.get('scope')!r}") from None
    ends_at = data.get("ends_at")
    if isinstance(ends_at, str):
        try:
            ends_at = datetime.fromisoformat(ends_at)
        except ValueError:
            raise SiteModelError(f"{where}.ends_at: not an ISO 8601 timestamp: {ends_at!r}") from None
    if ends_at is not None:
        if not isinstance(ends_at, datetime) or ends_at.tzinfo is None:
            raise SiteModelError(f"{where}.ends_at: expected a timestamp with a UTC offset, got {ends_at!r}")
        ends_at = ends_at.astimezone(UTC)
    with _located(where):
        return OperatorLimit(
            scope=scope,
            limit_a=_num("limit_a", data.get("limit_a")),
            target_id=_opt_str("target", data.get("target")),
            ends_at=ends_at,
            source=_str("source", data.get("source", "operator")),
        )
