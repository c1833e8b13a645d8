"""Limits an external system (the grid operator, an EMS, ...) puts on a charger, as the charger
reports them (contract ``ChargingLimit``: OCPP 2.0.1 NotifyChargingLimit / ClearedChargingLimit).

Standard library only, no IO, no clock reads. The pipeline keeps the limits in force per site
(:func:`apply_event`, :func:`expire`) and turns them into the allocation's
:class:`~control.allocation.ExternalCap` s at every decision (:func:`caps`).

The policy:

- A limit is kept per (charger, EVSE, source): a new notification from the same source for the
  same EVSE replaces the previous one; different sources add up (the lowest cap wins). EVSE 0 is
  the whole charger: it caps the sum of its connectors.
- It lasts until a ClearedChargingLimit of the same source, or until its schedule's end
  (``duration_s`` after the start) if it has one. A Cleared for one EVSE ends that EVSE's limit
  from that source; a Cleared without an EVSE ends every limit of that source on the charger
  (the source stopped limiting the station). A charger that reboots keeps its limits here: the
  grid operator's limit does not end because the charger restarted.
- The schedule's period in force is the cap; before the first period starts there is none. A
  limit in W becomes A per phase as the rules' power caps do
  (:func:`control.rules.power_cap_to_current_a`, rounded down): over the period's
  ``numberPhases`` if given (never more than the charger is wired for), else over the phases the
  connector's car draws on, else those the charger is wired for; for the whole charger, over the
  phases it is wired for (the most it can spread over, so the total stays within the limit).
- A limit without a schedule (its value was not reported) caps nothing here: the charger
  enforces it itself. It is still listed in the audit and alerted when grid critical.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from control.allocation import ExternalCap
from control.contract import ChargingLimit, ChargingLimitSource, RateUnit
from control.rules import power_cap_to_current_a
from control.site import Site

LimitKey = tuple[str, int, str]  # (charger id, EVSE id: 0 = the whole charger, source)
# Above any charger's current: a larger cap never binds, and the allocation's arithmetic stays finite.
MAX_CAP_A: Final = 10_000.0

SOURCE_NAMES: Final[Mapping[ChargingLimitSource, str]] = {
    ChargingLimitSource.SO: "grid operator (SO)",
    ChargingLimitSource.EMS: "energy management system (EMS)",
    ChargingLimitSource.CSO: "charging station operator (CSO)",
    ChargingLimitSource.OTHER: "external system (Other)",
}


def limit_reason(source: ChargingLimitSource) -> str:
    """The reason a person reads for a connector this source limits."""
    return f"Limited by {SOURCE_NAMES[source]}"


@dataclass(frozen=True, slots=True)
class LimitPeriod:
    start: datetime
    limit: float  # in the limit's unit
    phases: int | None = None


@dataclass(frozen=True, slots=True)
class ExternalLimit:
    """One limit in force: a source's cap on a charger (``connector_id`` 0) or one EVSE."""

    charger_id: str
    connector_id: int
    source: ChargingLimitSource
    received_at: datetime
    grid_critical: bool = False
    unit: RateUnit | None = None  # None: no schedule (the value was not reported)
    periods: tuple[LimitPeriod, ...] = ()
    ends_at: datetime | None = None

    @property
    def key(self) -> LimitKey:
        return (self.charger_id, self.connector_id, self.source.value)

    @property
    def where(self) -> str:
        return self.charger_id if self.connector_id == 0 else f"{self.charger_id} EVSE {self.connector_id}"

    def in_force(self, now: datetime) -> bool:
        return self.ends_at is None or now < self.ends_at

    def period_at(self, now: datetime) -> LimitPeriod | None:
        if not self.in_force(now):
            return None
        current = None
        for period in self.periods:
            if period.start > now:
                break
            current = period
        return current

    def next_change(self, now: datetime) -> datetime | None:
        """The next instant the cap changes by itself (a period starts, the schedule ends)."""
        edges = [p.start for p in self.periods if p.start > now]
        if self.ends_at is not None and self.ends_at > now:
            edges.append(self.ends_at)
        return min(edges, default=None)

    def describe(self, now: datetime) -> str:
        """One line for the audit log and alerts, e.g. "SO: 11000 W, until 2026-11-26T18:00:00Z, grid critical"."""
        period = self.period_at(now)
        if self.unit is None:
            value = "value not reported"
        elif period is None:
            upcoming = next((p for p in self.periods if p.start > now), None)
            value = (f"{upcoming.limit:g} {self.unit.value} from {_z(upcoming.start)}" if upcoming is not None
                     else "not in force")
        else:
            value = f"{period.limit:g} {self.unit.value}" + (f" on {period.phases} phase(s)" if period.phases else "")
        until = f", until {_z(self.ends_at)}" if self.ends_at is not None else ""
        critical = ", grid critical" if self.grid_critical else ""
        return f"{self.source.value}: {value}{until}{critical}"


class ChangeKind(StrEnum):
    SET = "set"  # a new limit, or one replacing the same source's on the same EVSE
    CLEARED = "cleared"  # the charger said the source withdrew it
    ENDED = "ended"  # its schedule ran out


@dataclass(frozen=True, slots=True)
class LimitChange:
    """What an event or the clock did: for the audit log and the alerts."""

    kind: ChangeKind
    limit: ExternalLimit  # the new limit (SET), or the one that went (CLEARED, ENDED)
    previous: ExternalLimit | None = None  # SET: the limit it replaced


def from_event(event: ChargingLimit) -> ExternalLimit | None:
    """The limit a notification puts in force (None for a Cleared)."""
    if event.cleared:
        return None
    start = event.starts_at or event.ts
    periods = tuple(LimitPeriod(at, limit, phases) for offset, limit, phases
                    in zip(event.period_starts_s, event.period_limits, event.period_phases, strict=True)
                    if (at := _after(start, offset)) is not None)  # past the calendar's end: never starts
    # No end, or one past the calendar's end: in force until cleared.
    ends_at = _after(start, event.duration_s) if event.duration_s is not None and periods else None
    return ExternalLimit(event.charger_id, event.connector_id, event.source, event.ts, event.grid_critical,
                         event.unit if periods else None, periods, ends_at)


def apply_event(limits: Mapping[LimitKey, ExternalLimit],
                event: ChargingLimit) -> tuple[dict[LimitKey, ExternalLimit], list[LimitChange]]:
    """(the limits after ``event``, what it changed)."""
    kept = dict(limits)
    new = from_event(event)
    if new is not None:
        previous = kept.get(new.key)
        kept[new.key] = new
        return kept, [LimitChange(ChangeKind.SET, new, previous)]
    gone = sorted(key for key in kept if key[0] == event.charger_id and key[2] == event.source.value
                  and (event.connector_id == 0 or key[1] == event.connector_id))
    return kept, [LimitChange(ChangeKind.CLEARED, kept.pop(key)) for key in gone]


def expire(limits: Mapping[LimitKey, ExternalLimit],
           now: datetime) -> tuple[dict[LimitKey, ExternalLimit], list[LimitChange]]:
    """(the limits still in force at ``now``, those whose schedule ended)."""
    ended = sorted(key for key, limit in limits.items() if not limit.in_force(now))
    kept = {key: limit for key, limit in limits.items() if key not in ended}
    return kept, [LimitChange(ChangeKind.ENDED, limits[key]) for key in ended]


def caps(limits: Mapping[LimitKey, ExternalLimit], now: datetime, site: Site,
         phases_in_use: Mapping[tuple[str, int], int]) -> tuple[ExternalCap, ...]:
    """The allocation's caps for ``now``: one per limit with a period in force on a charger of the site."""
    out = []
    for key in sorted(limits):
        limit = limits[key]
        period = limit.period_at(now)
        charger = site.charger(limit.charger_id)
        if period is None or limit.unit is None or charger is None:
            continue
        wired = len(charger.phases)
        if limit.unit is RateUnit.AMPS:
            amps = period.limit
        else:
            drawing = wired if limit.connector_id == 0 else phases_in_use.get((limit.charger_id, limit.connector_id))
            phases = min(period.phases or drawing or wired, wired)
            amps = power_cap_to_current_a(period.limit / 1000.0, phases, site.voltage_v)
        out.append(ExternalCap(limit.charger_id, limit.connector_id, min(max(amps, 0.0), MAX_CAP_A),
                               limit_reason(limit.source), limit.describe(now)))
    return tuple(out)


def next_change(limits: Mapping[LimitKey, ExternalLimit], now: datetime) -> datetime | None:
    return min((edge for limit in limits.values() if (edge := limit.next_change(now)) is not None), default=None)


def _after(start: datetime, seconds: int) -> datetime | None:
    try:
        return start + timedelta(seconds=seconds)
    except OverflowError:
        return None


def _z(ts: datetime) -> str:
    return ts.isoformat(timespec="seconds").replace("+00:00", "Z")
