"""The data-quality side of the session dataflow: frame timing (late delivery, clock skew), the
coverage of a session by its samples (repeats, holes, gaps) and :class:`Readings`, everything a
session learns from its meter readings and the verdict on each. Pure; time is passed in.

Late or skewed? A frame's *lateness* is ``received_at - ts`` (bridge clock minus charger
clock). It is the charger's clock offset plus the delivery delay, and a single frame cannot
tell the two apart. :class:`ClockEstimate` separates them the way NTP does: the delivery delay
is never negative, so the smallest lateness over a few minutes of frames is the clock offset.
What is left after removing it is the delivery delay: beyond ``replay_threshold`` the frame was
replayed from the charger's offline queue. A frame delivered live whose lateness is beyond
``clock_skew_tolerance`` (either way) shows a skewed clock; a timestamp in the future beyond the
tolerance is skew whatever else is true.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from control.contract import MeterSample, SampleContext
from control.records import QualityFlag
from pipelines.energy_split import Begin, CurveLimits, Energy, InsertResult, MeterCurve, Point, session_energy

MIN_FRAMES_FOR_OFFSET: Final = 3
MAX_HOLES: Final = 16


@dataclass(slots=True)
class ClockEstimate:
    """The charger's clock offset (``received_at - ts`` of its most promptly delivered frames).

    Frames are grouped in windows of processing time; a window that saw at least three frames
    over at least half its length settles the offset to its minimum lateness. A burst of
    replayed frames does not span the window, so it cannot pass its delay off as an offset.
    """

    window_start: datetime | None = None
    window_last: datetime | None = None
    window_min: timedelta | None = None
    window_frames: int = 0
    offset: timedelta | None = None

    def observe(self, lateness: timedelta, now: datetime, window: timedelta) -> None:
        if self.window_start is None or self.window_min is None or now - self.window_start >= window:
            self._settle(window)
            self.window_start, self.window_last, self.window_min, self.window_frames = now, now, lateness, 1
            return
        self.window_min = min(self.window_min, lateness)
        self.window_last = max(self.window_last or now, now)
        self.window_frames += 1

    def _settle(self, window: timedelta) -> None:
        if (self.window_start is not None and self.window_last is not None and self.window_min is not None
                and self.window_frames >= MIN_FRAMES_FOR_OFFSET and self.window_last - self.window_start >= window / 2):
            self.offset = self.window_min


def timing_flags(ts: datetime, received_at: datetime | None, *, offline: bool, offset: timedelta | None,
                 replay_threshold: timedelta, skew_tolerance: timedelta) -> frozenset[QualityFlag]:
    """REPLAYED_OFFLINE and/or CLOCK_SKEW for one frame (see the module docstring)."""
    if received_at is None:
        return frozenset({QualityFlag.REPLAYED_OFFLINE}) if offline else frozenset()
    lateness = received_at - ts
    delay = lateness - offset if offset is not None else lateness
    replayed = offline or delay > replay_threshold
    flags: set[QualityFlag] = {QualityFlag.REPLAYED_OFFLINE} if replayed else set()
    if lateness < -skew_tolerance or (not replayed and lateness > skew_tolerance):
        flags.add(QualityFlag.CLOCK_SKEW)
    return frozenset(flags)


@dataclass(slots=True)
class SampleCoverage:
    """Which instants of a session have samples, to within the sampling interval, in O(1) space:
    the first and last sample time and the holes between them (stretches longer than 1.5
    sampling intervals without a sample; at most :data:`MAX_HOLES`, the smallest go first).

    It tells a late sample that fills a hole (new data: an offline backlog, reordering) from one
    that falls where samples already were (a repeat: the 1.6 Stop's transactionData, a replay of
    the stream), and it shows the GAPs. A backlog that fills a gap clears it."""

    first: datetime | None = None
    last: datetime | None = None
    holes: list[tuple[datetime, datetime]] = field(default_factory=list)
    intervals: tuple[float, ...] = ()  # the last in-order sampling intervals, seconds
    lost_gap: bool = False  # a hole longer than the gap threshold had to be dropped for room

    def has_gap(self, threshold: timedelta) -> bool:
        return self.lost_gap or any(end - start > threshold for start, end in self.holes)

    def _hole_min(self) -> timedelta:
        if not self.intervals:
            return timedelta(0)
        return timedelta(seconds=1.5 * min(self.intervals))  # a repeat is never inside a hole: erring small is safe

    def add(self, ts: datetime, gap_threshold: timedelta) -> tuple[bool, bool]:
        """Record a sample time: (it was not covered yet, it is the first sample after a GAP)."""
        if self.first is None or self.last is None:
            self.first = self.last = ts
            return True, False
        hole_min = min(self._hole_min(), gap_threshold)  # a GAP is always kept
        if ts > self.last:
            hole = (self.last, ts)
            self.intervals = (*self.intervals, (ts - self.last).total_seconds())[-3:]
            self.last = ts
        elif ts < self.first:
            hole, self.first = (ts, self.first), ts
        else:
            i = bisect.bisect_left(self.holes, ts, key=lambda h: h[1])
            if not (i < len(self.holes) and self.holes[i][0] < ts < self.holes[i][1]):
                return False, False  # where samples already are
            start, end = self.holes.pop(i)
            for part in ((ts, end), (start, ts)):
                if part[1] - part[0] > hole_min:
                    self.holes.insert(i, part)
            return True, False
        if hole[1] - hole[0] > hole_min:
            bisect.insort(self.holes, hole)
            while len(self.holes) > MAX_HOLES:
                smallest = min(self.holes, key=lambda h: h[1] - h[0])
                self.holes.remove(smallest)
                self.lost_gap |= smallest[1] - smallest[0] > gap_threshold
        return True, hole[1] == ts and hole[1] - hole[0] > gap_threshold


# --------------------------------------------------------------------------- a session's readings


_STICKY: Final = frozenset({QualityFlag.NON_MONOTONIC_REGISTER, QualityFlag.IMPLAUSIBLE_POWER})


@dataclass(frozen=True, slots=True)
class ReadingRules:
    """The thresholds a charger's readings are judged by (see SessionConfig)."""

    curve: CurveLimits
    gap_threshold: timedelta
    waiting_power_threshold_w: float
    min_rate_interval: timedelta
    lifetime_register_min_wh: float


@dataclass(frozen=True, slots=True)
class Figures:
    """What the readings say about a session."""

    energy: Energy
    flags: frozenset[QualityFlag]
    peak_power_w: float | None
    charging_s: float


@dataclass(slots=True)
class Readings:
    """All a session learned from its meter readings, in bounded space: the register curve, its
    coverage by samples, the sticky data flags and running statistics (no list of samples)."""

    curve: MeterCurve = field(default_factory=MeterCurve)
    coverage: SampleCoverage = field(default_factory=SampleCoverage)
    flags: set[QualityFlag] = field(default_factory=set)
    sample_count: int = 0  # distinct sample instants
    last_sample_ts: datetime | None = None
    last_sample_power_w: float | None = None
    rate_base: tuple[datetime, float] | None = None  # register reading the next power estimate starts from
    max_received_at: datetime | None = None
    peak_reported_w: float | None = None
    peak_register_w: float | None = None
    charging_s: float = 0.0  # over the in-order intervals between samples
    begin_sample: bool = False  # a Transaction.Begin sample gave the base register

    def add_register(self, point: Point, rules: ReadingRules) -> InsertResult:
        result = self.curve.insert(point, rules.curve)
        self.flags |= result.flags & _STICKY
        return result

    def add_sample(self, ev: MeterSample, rules: ReadingRules, *,
                   started_at: datetime) -> tuple[set[QualityFlag], bool]:
        """Take one sample; returns its own flags and whether it was new (not a repeat)."""
        flags: set[QualityFlag] = set()
        new, after_gap = self.coverage.add(ev.ts, rules.gap_threshold)
        if after_gap:
            flags.add(QualityFlag.GAP)
        kept = register_ok = False
        if ev.energy_wh is not None:  # always offered: the curve ignores what it already knows
            result = self.add_register(Point(ev.ts, ev.energy_wh), rules)
            flags |= result.flags - {QualityFlag.DUPLICATE}
            kept, register_ok = result.kept, QualityFlag.NON_MONOTONIC_REGISTER not in result.flags
            self.begin_sample |= ev.context is SampleContext.TRANSACTION_BEGIN and register_ok
        received = ev.received_at
        fresh = received is not None and (self.max_received_at is None or received > self.max_received_at)
        if received is not None:
            self.max_received_at = received if self.max_received_at is None else max(self.max_received_at, received)
        if not new and not kept:  # an instant already covered: a repeat, ignored
            flags.add(QualityFlag.DUPLICATE)
            if fresh:  # the charger really sent it again (a replay of the stream is not fresh)
                self.flags.add(QualityFlag.DUPLICATE)
            return flags, False
        self.sample_count += 1
        if ev.power_w is not None and (self.peak_reported_w is None or ev.power_w > self.peak_reported_w):
            self.peak_reported_w = ev.power_w
        if self.last_sample_ts is not None and ev.ts < self.last_sample_ts:
            flags.add(QualityFlag.OUT_OF_ORDER)
            self.flags.add(QualityFlag.OUT_OF_ORDER)
        else:
            self._advance(ev, ev.energy_wh if register_ok else None, rules, started_at)
        return flags, True

    def _advance(self, ev: MeterSample, energy: float | None, rules: ReadingRules, started_at: datetime) -> None:
        """An in-order sample: charging time of the interval it closes, register-based peak power."""
        rate = None
        if energy is not None and self.rate_base is not None and ev.ts > self.rate_base[0]:
            rate = max(energy - self.rate_base[1], 0.0) * 3600.0 / (ev.ts - self.rate_base[0]).total_seconds()
        threshold = rules.waiting_power_threshold_w
        if self.last_sample_ts is not None:  # the interval since the previous sample, at that sample's power
            power = self.last_sample_power_w if self.last_sample_power_w is not None else rate
            if power is not None and power > threshold:
                self.charging_s += (ev.ts - self.last_sample_ts).total_seconds()
        elif ev.ts > started_at and ev.power_w is not None and ev.power_w > threshold:
            self.charging_s += (ev.ts - started_at).total_seconds()  # from the start to the first sample
        if energy is not None:
            if self.rate_base is None or energy < self.rate_base[1]:
                self.rate_base = (ev.ts, energy)
            elif ev.ts - self.rate_base[0] >= rules.min_rate_interval and rate is not None:
                self.peak_register_w = rate if self.peak_register_w is None else max(self.peak_register_w, rate)
                self.rate_base = (ev.ts, energy)
        self.last_sample_ts, self.last_sample_power_w = ev.ts, ev.power_w

    def figures(self, rules: ReadingRules, *, started_at: datetime, ended_at: datetime | None, end: datetime,
                meter_start_wh: float | None, stop_ts: datetime | None) -> Figures:
        """Energy, data flags, peak power and charging time of a session from ``started_at`` to
        ``end`` (``ended_at`` is None while it is open)."""
        points = self.curve.points
        energy = session_energy(points, started_at=started_at, meter_start_wh=meter_start_wh,
                                stop_only=len(points) == 1 and points[0].ts == stop_ts,
                                reset_max_wh=rules.curve.reset_max_wh)
        first, last, gap = self.coverage.first, self.coverage.last, rules.gap_threshold
        derived = {
            QualityFlag.REGISTER_RESET: energy.resets > 0,
            QualityFlag.MISSING_BEGIN_REGISTER: energy.begin in (Begin.FIRST_READING, Begin.ASSUMED_ZERO)
            and not self.begin_sample,
            QualityFlag.LIFETIME_REGISTER_AS_SESSION: energy.begin is Begin.ASSUMED_ZERO
            and energy.energy_wh > rules.lifetime_register_min_wh,
            QualityFlag.NO_ENERGY_DATA: energy.begin is Begin.NONE,
            QualityFlag.GAP: self.coverage.has_gap(gap) or (first is not None and last is not None and (
                first - started_at > gap or (ended_at is not None and ended_at - last > gap))),
        }
        charging = self.charging_s
        if ended_at is not None and self.last_sample_ts is not None and ended_at > self.last_sample_ts \
                and (self.last_sample_power_w or 0.0) > rules.waiting_power_threshold_w:
            charging += (ended_at - self.last_sample_ts).total_seconds()  # from the last sample to the end
        return Figures(
            energy=energy,
            flags=frozenset(self.flags | {flag for flag, holds in derived.items() if holds}),
            peak_power_w=self.peak_reported_w if self.peak_reported_w is not None else self.peak_register_w,
            charging_s=min(charging, max((end - started_at).total_seconds(), 0.0)),
        )
