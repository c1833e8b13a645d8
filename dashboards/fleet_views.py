"""The fleet pages' read models, computed from rows already loaded: totals, the grid's filters, the
map's pins and the Gantt rows of the departure schedule. Pure (no IO), so the pages and the tests
share them; :mod:`dashboards.fleet_service` loads the rows (scoped) and calls these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from warehouse import fleet_store
from warehouse.fleet_store import FleetRow

# Pin colours of the maps (User Story 5): green available, blue charging, red error, grey offline.
PIN_COLOURS: Final[Mapping[str, str]] = {
    "available": "#2e9e4f", "charging": "#1f6fd1", "error": "#d62728", "offline": "#8c8c8c",
}
_PIN_OF_STATUS: Final = {"Idle": "available", "Waiting for vehicle": "available", "Charging": "charging",
                         "Paused": "charging", "Error": "error", "Offline": "offline"}


def pin_of(status: str) -> str:
    return _PIN_OF_STATUS.get(status, "offline")


# --------------------------------------------------------------------------- read models


@dataclass(frozen=True, slots=True)
class FleetTotals:
    sites: int
    chargers: int
    by_status: dict[str, int]
    active_sessions: int
    power_kw: float
    energy_today_kwh: float


@dataclass(frozen=True, slots=True)
class FleetOverview:
    rows: list[FleetRow]
    totals: FleetTotals


@dataclass(frozen=True, slots=True)
class SitePin:
    site_id: str
    name: str
    address: str | None
    latitude: float
    longitude: float
    status: str            # the worst status of its chargers
    pin: str               # available | charging | error | offline
    chargers: int
    summary: str           # "4 idle, 1 charging, 1 error"


@dataclass(frozen=True, slots=True)
class GridFilter:
    site_ids: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()
    cost_centres: frozenset[str] = frozenset()
    text: str = ""


NO_COST_CENTRE: Final = "(none)"


def totals_of(rows: Sequence[FleetRow]) -> FleetTotals:
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    return FleetTotals(sites=len({r.site_id for r in rows if r.site_id is not None}), chargers=len(rows),
                       by_status=by_status, active_sessions=sum(r.active_sessions for r in rows),
                       power_kw=sum(r.power_w for r in rows) / 1000.0,
                       energy_today_kwh=sum(r.energy_today_wh for r in rows) / 1000.0)


def filter_rows(rows: Iterable[FleetRow], f: GridFilter) -> list[FleetRow]:
    """The grid's filters (an empty set means "any"); the text matches id, name, site, model, cost centre."""
    needle = f.text.strip().casefold()
    out = []
    for r in rows:
        if f.site_ids and (r.site_id or "") not in f.site_ids:
            continue
        if f.statuses and r.status not in f.statuses:
            continue
        if f.models and (r.model or "") not in f.models:
            continue
        if f.cost_centres and (r.cost_centre or NO_COST_CENTRE) not in f.cost_centres:
            continue
        if needle:
            hay = " ".join(x or "" for x in (r.charger_id, r.name, r.site_name, r.vendor, r.model, r.cost_centre))
            if needle not in hay.casefold():
                continue
        out.append(r)
    return out


def site_pins(rows: Iterable[FleetRow]) -> tuple[list[SitePin], list[str]]:
    """One pin per site with coordinates, coloured by its worst charger; and the sites without coordinates."""
    groups: dict[str, list[FleetRow]] = {}
    for r in rows:
        if r.site_id is not None:
            groups.setdefault(r.site_id, []).append(r)
    pins, unplaced = [], []
    for site_id, members in groups.items():
        first = members[0]
        name = first.site_name or site_id
        if first.latitude is None or first.longitude is None:
            unplaced.append(name)
            continue
        status = fleet_store.worst_status([m.status for m in members])
        counts: dict[str, int] = {}
        for m in members:
            counts[m.status] = counts.get(m.status, 0) + 1
        summary = ", ".join(f"{n} {s.lower()}" for s, n in
                            sorted(counts.items(), key=lambda kv: fleet_store.STATUS_RANK.get(kv[0], 9)))
        pins.append(SitePin(site_id, name, first.address, first.latitude, first.longitude, status, pin_of(status),
                            len(members), summary))
    return sorted(pins, key=lambda p: p.name.lower()), sorted(unplaced)


# --------------------------------------------------------------------------- schedule


@dataclass(frozen=True, slots=True)
class ScheduleBar:
    row: str               # "Bay 1 #1 · CC-North"
    charger_id: str
    connector_id: int
    kind: str              # "session" | "planned"
    starts_at: datetime
    ends_at: datetime
    label: str
    cost_centre: str | None


@dataclass(frozen=True, slots=True)
class DepartureMarker:
    row: str
    charger_id: str
    connector_id: int
    departure_at: datetime
    label: str


@dataclass(frozen=True, slots=True)
class Schedule:
    bars: list[ScheduleBar] = field(default_factory=list)
    departures: list[DepartureMarker] = field(default_factory=list)


def _row_label(name: str, connector_id: int, cost_centre: str | None) -> str:
    return f"{name} #{connector_id}" + (f" · {cost_centre}" if cost_centre else "")


def build_schedule(rows: Sequence[FleetRow], sessions: Sequence[fleet_store.SessionSpan],
                   departures: Sequence[fleet_store.DepartureRow], decisions: Sequence[fleet_store.LatestDecision],
                   *, now: datetime, start: datetime, end: datetime) -> Schedule:
    """Gantt rows per connector: past and running sessions, planned charging until each departure."""
    info = {r.charger_id: r for r in rows}
    decided = {(d.charger_id, d.connector_id): d for d in decisions}
    out = Schedule()
    for s in sessions:
        r = info.get(s.charger_id)
        if r is None:
            continue
        until = min(s.ended_at or now, end)
        since = max(s.started_at, start)
        if until <= since:
            continue
        state = "running" if s.ended_at is None else "ended"
        out.bars.append(ScheduleBar(_row_label(r.name, s.connector_id, r.cost_centre), s.charger_id, s.connector_id,
                                    "session", since, until,
                                    f"session {state}, {s.energy_wh / 1000:.1f} kWh"
                                    + (f", tag {s.id_tag}" if s.id_tag else ""), r.cost_centre))
    for d in departures:
        r = info.get(d.charger_id)
        if r is None or d.departure_at < start or d.departure_at > end:
            continue
        row = _row_label(r.name, d.connector_id, r.cost_centre)
        want = (f"{d.target_soc_pct:.0f} % SoC" if d.target_soc_pct is not None else
                f"{(d.energy_wh or 0) / 1000:.1f} kWh")
        out.departures.append(DepartureMarker(row, d.charger_id, d.connector_id, d.departure_at,
                                              f"departs {d.departure_at:%a %H:%M} UTC with {want}"))
        if d.departure_at > now:
            dec = decided.get((d.charger_id, d.connector_id))
            plan = ("no load-management decision yet" if dec is None else
                    "paused" if dec.paused else f"{dec.new_limit_a:.0f} A ({dec.reason})")
            out.bars.append(ScheduleBar(row, d.charger_id, d.connector_id, "planned", max(now, start),
                                        d.departure_at, f"planned until departure: {plan}", r.cost_centre))
    return out
