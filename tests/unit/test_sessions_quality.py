"""pipelines.quality: frame timing (replays, clock skew), sample coverage (repeats, holes, gaps)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from test_sessions import F, Run, at, ended, ramp, started

from control.records import QualityFlag
from pipelines.quality import MAX_HOLES, ClockEstimate, SampleCoverage, timing_flags

T = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def _flags(lateness_min: float, *, offset_min: float | None = None, offline: bool = False) -> set[QualityFlag]:
    offset = None if offset_min is None else timedelta(minutes=offset_min)
    return set(timing_flags(T, T + timedelta(minutes=lateness_min), offline=offline, offset=offset,
                            replay_threshold=2 * MIN, skew_tolerance=5 * MIN))


@pytest.mark.parametrize(("lateness", "offset", "offline", "expected"), [
    pytest.param(0.1, None, False, set(), id="live"),
    pytest.param(1.9, None, False, set(), id="slow-but-live"),
    pytest.param(30, None, False, {F.REPLAYED_OFFLINE}, id="late-delivery"),
    pytest.param(0, None, True, {F.REPLAYED_OFFLINE}, id="offline-flag"),
    pytest.param(-6, None, False, {F.CLOCK_SKEW}, id="clock-ahead"),
    pytest.param(10.2, 10, False, {F.CLOCK_SKEW}, id="clock-behind-known-live"),
    pytest.param(180, 10, False, {F.REPLAYED_OFFLINE}, id="clock-behind-known-replayed"),
    pytest.param(-9.5, -10, True, {F.REPLAYED_OFFLINE, F.CLOCK_SKEW}, id="ahead-and-offline"),
])
def test_timing_flags(lateness: float, offset: float | None, offline: bool, expected: set[QualityFlag]) -> None:
    assert _flags(lateness, offset_min=offset, offline=offline) == expected


def test_no_received_at_means_no_timing_flags_but_the_offline_mark() -> None:
    for offline, expected in ((False, set()), (True, {F.REPLAYED_OFFLINE})):
        assert timing_flags(T, None, offline=offline, offset=None, replay_threshold=2 * MIN,
                            skew_tolerance=5 * MIN) == expected


def test_the_clock_offset_is_the_smallest_lateness_over_a_window() -> None:
    clock = ClockEstimate()
    for k in range(12):  # one frame a minute, each 10 minutes late plus 0..3 s of network
        clock.observe(timedelta(minutes=10, seconds=k % 4), T + k * MIN, 10 * MIN)
    assert clock.offset == timedelta(minutes=10)


def test_a_burst_of_replayed_frames_does_not_make_an_offset() -> None:
    clock = ClockEstimate()
    for k in range(200):  # a backlog drained within a second
        clock.observe(timedelta(hours=3) - k * MIN, T + timedelta(milliseconds=k), 10 * MIN)
    clock.observe(timedelta(0), T + 11 * MIN, 10 * MIN)
    assert clock.offset is None


def test_a_lagging_charger_clock_is_skew_once_known_not_a_replay() -> None:
    """Every frame 10 minutes 'late' because the charger's clock is 10 minutes behind."""
    lag = timedelta(minutes=10)
    frames = [dataclasses.replace(e, received_at=e.ts + lag) for e in
              [started(0, 10_000.0), *ramp(1, 59), ended(60, 17_200.0)]]
    run = Run().feed(frames)
    verdicts = run.verdicts()
    assert F.REPLAYED_OFFLINE in verdicts[0].flags  # before the offset is known it looks like a replay
    assert all(v.flags == (F.CLOCK_SKEW,) for v in verdicts[20:])
    assert F.CLOCK_SKEW in run.final().flags


# --------------------------------------------------------------------------- coverage


def test_coverage_tells_repeats_from_samples_filling_a_hole() -> None:
    cover = SampleCoverage()
    gap = timedelta(minutes=15)
    assert [cover.add(T + k * MIN, gap) for k in (0, 1, 2)] == [(True, False)] * 3
    assert cover.add(T + 40 * MIN, gap) == (True, True)  # the first sample after a GAP
    assert cover.has_gap(gap)
    assert cover.add(T + 1 * MIN, gap) == (False, False)  # a repeat
    for k in range(3, 40):  # a backlog fills the hole
        assert cover.add(T + k * MIN, gap) == (True, False)
    assert not cover.has_gap(gap) and cover.holes == [(T, T + MIN)]  # before the interval was known: kept
    assert cover.add(T - 5 * MIN, gap) == (True, False)  # before the first: new


def test_coverage_stays_bounded() -> None:
    cover = SampleCoverage()
    gap = timedelta(minutes=15)
    for k in range(200):  # every other hour: a GAP each time
        cover.add(T + k * 120 * MIN, gap)
    assert len(cover.holes) == MAX_HOLES and cover.has_gap(gap)
    small = SampleCoverage()
    for k in range(200):  # irregular but dense: holes smaller than the gap are dropped first
        small.add(T + k * MIN + (30 * MIN if k % 7 == 0 else timedelta(0)), gap)
    assert len(small.holes) <= MAX_HOLES


def test_gap_flags_the_sample_after_the_hole() -> None:
    run = Run().feed([started(0, 10_000.0), *ramp(1, 10), *ramp(40, 50), ended(51, 10_000.0 + 7_200.0 * 51 / 60)])
    assert [v.ts for v in run.verdicts() if F.GAP in v.flags] == [at(40)]
