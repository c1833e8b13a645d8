"""A charging profile shaped to what the charger takes, and the rate limit of charge-point-wide
profiles. Pure: no IO, no clock.

With capabilities learned (:mod:`ingest.capabilities`), :func:`shape_limit` sends

* the limit in a unit the charger allows: one that takes only W gets an A limit converted with
  its phases at a nominal 230 V (and the other way round); the phases are the command's, else the
  learned ones, else 3 (OCPP's default on AC; a DC charger's supply is taken as three-phase);
* our stack level, capped at the charger's maximum;
* ``numberPhases`` of the learned phases when the charger has fewer than 3 (a command's own
  ``phases`` never exceeds them);

and :func:`fit_periods` keeps a schedule within the charger's period count. Whatever is not
known is sent as the command says, exactly as before capabilities were learned. Limits are
floored to 0.1 (never rounded up; OCPP 1.6 takes one decimal).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from control.rules import DEFAULT_VOLTAGE_V  # the voltage the rules' kW caps use too
from warehouse.capability_store import ChargerCapabilities, MaxProfileWrite

DEFAULT_AC_PHASES: Final = 3  # OCPP: a period without numberPhases means three phases on AC
DEFAULT_STATION_MAX_INTERVAL: Final = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class ShapedLimit:
    limit: float
    unit: str  # "A" | "W"
    stack_level: int
    number_phases: int | None  # None: not sent


def floor_tenth(value: float) -> float:
    return math.floor(value * 10 + 1e-9) / 10


def shape_limit(limit: float, unit: str, *, stack_level: int, phases: int | None,
                caps: ChargerCapabilities | None) -> ShapedLimit:
    """``limit`` in ``unit`` (A or W), as the charger described by ``caps`` takes it."""
    if caps is None:
        return ShapedLimit(floor_tenth(limit), unit, stack_level, phases)
    ac_phases = caps.phases if caps.phases in (1, 2, 3) else None
    number_phases = phases
    if ac_phases is not None:
        if number_phases is None:
            number_phases = ac_phases if ac_phases < DEFAULT_AC_PHASES else None
        else:
            number_phases = min(number_phases, ac_phases)
    value, sent_unit = limit, unit
    if caps.rate_units and unit not in caps.rate_units:
        sent_unit = caps.rate_units[0]
        watts_per_amp = DEFAULT_VOLTAGE_V * (number_phases or ac_phases or DEFAULT_AC_PHASES)
        value = limit * watts_per_amp if sent_unit == "W" else limit / watts_per_amp
    if caps.max_stack_level is not None:
        stack_level = min(stack_level, caps.max_stack_level)
    return ShapedLimit(floor_tenth(value), sent_unit, stack_level, number_phases)


def fit_periods(periods: Sequence[Mapping[str, Any]], max_periods: int | None) -> list[dict[str, Any]]:
    """At most ``max_periods`` periods (ordered by startPeriod): the first ones, the last of them
    carrying the lowest limit of those dropped, so a schedule cut short never allows more than
    the whole one would have."""
    kept = [dict(p) for p in periods]
    if max_periods is None or len(kept) <= max(1, max_periods):
        return kept
    cut = max(1, max_periods)
    lowest = min(float(p["limit"]) for p in kept[cut - 1:])
    kept = kept[:cut]
    kept[-1]["limit"] = lowest
    return kept


def station_max_refusal(last: MaxProfileWrite | None, interval: timedelta, now: datetime,
                        limit: float | None, unit: str | None) -> str | None:
    """Why a charge-point-wide profile write (``limit`` None: a clear) must wait, or None.

    Such profiles live in the charger's flash: at most one write per ``interval`` per charger,
    except a lower limit in the same unit, which goes at once (safety beats flash wear)."""
    if last is None:
        return None
    next_at = last.written_at + interval
    if now >= next_at:
        return None
    lowering = limit is not None and last.limit is not None and unit == last.unit and limit < last.limit
    if lowering:
        return None
    stamp = next_at.isoformat(timespec="seconds").replace("+00:00", "Z")
    return (f"charge-point-wide profiles are written at most once every {interval.total_seconds():g} s per charger"
            f" (flash wear); the last went at {last.written_at.isoformat(timespec='seconds').replace('+00:00', 'Z')},"
            f" the next may go at {stamp} (a lower limit goes at once)")
