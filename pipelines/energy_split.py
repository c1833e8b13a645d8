"""The meter curve of one session: a few register readings, the energy they prove and its split
per UTC day. Pure; no clock.

Energy comes only from the cumulative register (``Energy.Active.Import.Register``), never from
summed deltas, so a duplicated or replayed reading cannot count twice: the energy is the walk
over the readings in time order, ``b - a`` for each step, or ``b`` across a meter reset (the
meter restarted from zero and counted ``b`` since).

State stays small whatever the session length: :class:`MeterCurve` keeps, per UTC day and per
monotonic segment, only the first and the last reading. A reading strictly between two kept
readings of the same day with values in between changes nothing (energy telescopes), so it is
dropped at once; what is kept is exactly what the energy, the resets and the midnight
interpolation need. Readings may arrive in any order: the kept set is the same as if they had
arrived sorted (for a monotonic register), which is what makes replays and reordering harmless.

Exact sums: every energy this module returns is a multiple of :data:`QUANTUM_WH` (2**-10 Wh,
about a milliwatt-hour). Sums of such values are exact in binary floating point (below 2**43
Wh), in Python and in SQL ``double precision`` alike, in any order; so the day rows of a
session add up to its energy exactly, not within a tolerance.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from itertools import pairwise
from typing import Final, NamedTuple

from control.records import QualityFlag, SessionDayEnergy

QUANTUM_WH: Final = 2.0**-10
MAX_POINTS: Final = 256  # a session open for months; beyond this the day split degrades, not the energy
MAX_RESETS: Final = 16  # more "resets" than this in one session are treated as a broken register
POWER_MARGIN: Final = 1.1  # a register may outrun the charger's rating by 10 % (meter class, rounding)


class Point(NamedTuple):
    """One register reading."""

    ts: datetime
    wh: float


def quantize(wh: float) -> float:
    return round(wh / QUANTUM_WH) * QUANTUM_WH


@dataclass(frozen=True, slots=True)
class CurveLimits:
    """What a plausible register does: the charger's rating and what a reset looks like."""

    max_power_w: float
    reset_max_wh: float  # a drop to at most this, by at least this, is a meter reset
    slack_wh: float  # register resolution allowed on top of the rated energy per step

    def is_reset(self, before_wh: float, after_wh: float) -> bool:
        return after_wh <= self.reset_max_wh and before_wh - after_wh >= self.reset_max_wh

    def implausible(self, a: Point, b: Point) -> bool:
        seconds = (b.ts - a.ts).total_seconds()
        return step_energy(a.wh, b.wh) > self.max_power_w * POWER_MARGIN * seconds / 3600.0 + self.slack_wh


def step_energy(before: float, after: float) -> float:
    """Energy between two readings in time order: the rise, or the new count after a reset."""
    return after - before if after >= before else after


@dataclass(frozen=True, slots=True)
class InsertResult:
    accepted: bool  # False: a duplicate instant, or rejected as non-monotonic
    kept: bool  # the reading changed the curve (it is one of the kept readings now)
    flags: frozenset[QualityFlag] = frozenset()


@dataclass(slots=True)
class MeterCurve:
    points: list[Point] = field(default_factory=list)

    def find(self, ts: datetime) -> int | None:
        i = bisect.bisect_left(self.points, ts, key=lambda p: p.ts)
        return i if i < len(self.points) and self.points[i].ts == ts else None

    def resets(self) -> int:
        return sum(1 for a, b in pairwise(self.points) if b.wh < a.wh)

    def insert(self, point: Point, limits: CurveLimits) -> InsertResult:
        pts = self.points
        i = bisect.bisect_left(pts, point.ts, key=lambda p: p.ts)
        if i < len(pts) and pts[i].ts == point.ts:
            return InsertResult(False, False, frozenset({QualityFlag.DUPLICATE}))
        prev = pts[i - 1] if i > 0 else None
        nxt = pts[i] if i < len(pts) else None
        if not _fits(prev, point, nxt, limits, may_reset=self.resets() < MAX_RESETS):
            return InsertResult(False, False, frozenset({QualityFlag.NON_MONOTONIC_REGISTER}))
        pts.insert(i, point)
        self._prune()
        if self.find(point.ts) is None:
            return InsertResult(True, False)
        flags: set[QualityFlag] = set()
        if prev is not None and point.wh < prev.wh:
            flags.add(QualityFlag.REGISTER_RESET)
        # Only a kept reading is checked against its neighbours: a dropped one changes nothing,
        # and checking it would make a replay judge differently from the first delivery.
        if (prev is not None and limits.implausible(prev, point)) or (
                nxt is not None and limits.implausible(point, nxt)):
            flags.add(QualityFlag.IMPLAUSIBLE_POWER)
        return InsertResult(True, True, frozenset(flags))

    def _prune(self) -> None:
        pts = self.points
        if len(pts) > 2:
            kept = [pts[0]]
            for b, c in pairwise(pts[1:]):
                a = kept[-1]
                if not (a.wh <= b.wh <= c.wh and a.ts.date() == b.ts.date() == c.ts.date()):
                    kept.append(b)
            kept.append(pts[-1])
            pts[:] = kept
        while len(pts) > MAX_POINTS:  # degrade the oldest day split, keep the energy exact
            for k in range(1, len(pts) - 1):
                if pts[k - 1].wh <= pts[k].wh <= pts[k + 1].wh:
                    del pts[k]
                    break
            else:
                break


def _fits(prev: Point | None, p: Point, nxt: Point | None, limits: CurveLimits, *, may_reset: bool) -> bool:
    """Whether a reading is consistent with its neighbours: rising, or a reset to near zero.

    A late reading must not create a reset its neighbours did not already show (a low glitch
    between two rising readings is not a reset)."""
    if prev is not None and p.wh < prev.wh and not (may_reset and limits.is_reset(prev.wh, p.wh)):
        return False
    if nxt is not None and nxt.wh < p.wh and not (may_reset and limits.is_reset(p.wh, nxt.wh)):
        return False
    if prev is not None and nxt is not None:
        was_reset = nxt.wh < prev.wh
        return (p.wh < prev.wh) + (nxt.wh < p.wh) == int(was_reset)
    return True


# --------------------------------------------------------------------------- energy and days


class Begin(StrEnum):
    """Where the session's energy starts from."""

    REGISTER = "register"  # a non-zero Transaction.Begin register
    ZERO = "zero"  # a zero begin register, and the meter really is near zero
    FIRST_READING = "first_reading"  # begin missing or implausible: the first reading is the base
    ASSUMED_ZERO = "assumed_zero"  # only the stop register is known: counted from zero
    NONE = "none"  # no register reading at all


@dataclass(frozen=True, slots=True)
class Energy:
    energy_wh: float  # a multiple of QUANTUM_WH
    days: dict[date, float]  # multiples of QUANTUM_WH summing to energy_wh exactly
    begin: Begin
    first_wh: float | None
    last_wh: float | None
    resets: int


def session_energy(points: list[Point], *, started_at: datetime, meter_start_wh: float | None,
                   stop_only: bool, reset_max_wh: float) -> Energy:
    """The energy of a session from its kept readings and its begin register.

    ``stop_only``: the only reading is the Transaction.End register (nothing else was seen).
    A zero begin register is believed when the meter is near zero anyway (a new meter, or one
    that counts per session); otherwise it is a missing value and the first reading is the base.
    """
    curve = [(p.ts, p.wh) for p in points]
    if meter_start_wh is not None and meter_start_wh > 0:
        begin = Begin.REGISTER
    elif not curve:
        begin = Begin.NONE
    elif meter_start_wh == 0 and curve[0][1] <= reset_max_wh:
        begin = Begin.ZERO
    elif stop_only:
        begin = Begin.ASSUMED_ZERO
    else:
        begin = Begin.FIRST_READING
    if begin in (Begin.ZERO, Begin.ASSUMED_ZERO):
        curve.insert(0, (min(started_at, curve[0][0]), 0.0))
    total, days = split_by_day(curve)
    return Energy(
        energy_wh=total,
        days=days,
        begin=begin,
        first_wh=curve[0][1] if curve else None,
        last_wh=curve[-1][1] if curve else None,
        resets=sum(1 for a, b in pairwise(curve) if b[1] < a[1]),
    )


def _next_midnight(ts: datetime) -> datetime:
    return datetime.combine(ts.date() + timedelta(days=1), time(0), tzinfo=UTC)


def split_by_day(curve: list[tuple[datetime, float]]) -> tuple[float, dict[date, float]]:
    """Total energy and its share per UTC day, interpolating linearly at each midnight.

    Cumulative energy is quantized at each midnight and each day gets the difference, so the
    shares telescope to the quantized total exactly. A reading exactly at midnight closes the
    day before."""
    if not curve:
        return 0.0, {}
    cumulative = 0.0
    ends: list[float] = []  # cumulative energy at the end of each day but the last
    for a, b in pairwise(curve):
        energy = step_energy(a[1], b[1])
        midnight = _next_midnight(a[0])
        while midnight <= b[0]:
            ends.append(cumulative + energy * ((midnight - a[0]) / (b[0] - a[0])))
            midnight += timedelta(days=1)
        cumulative += energy
    total = quantize(cumulative)
    days: dict[date, float] = {}
    first_day = curve[0][0].date()
    below = 0.0
    for k, end in enumerate([*ends, cumulative]):
        upto = quantize(end) if k < len(ends) else total
        days[first_day + timedelta(days=k)] = upto - below
        below = upto
    return total, days


def day_rows(session_id: str, charger_id: str, days: dict[date, float], published: tuple[date, date] | None,
             revision: int) -> tuple[list[SessionDayEnergy], tuple[date, date] | None]:
    """The rows of one revision: every day of ``days``, and zero for each day published before
    that the session no longer touches (so a store keeping the newest revision per day is right).
    Returns the rows and the range of days published so far."""
    span = [*days, *(published or ())]
    if not span:
        return [], None
    first, last = min(span), max(span)
    rows = [SessionDayEnergy(session_id, charger_id, first + timedelta(days=k),
                             days.get(first + timedelta(days=k), 0.0), revision)
            for k in range((last - first).days + 1)]
    return rows, (first, last)
