"""pipelines.energy_split: the bounded meter curve, session energy and the exact per-day split."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control.records import QualityFlag
from pipelines.energy_split import (
    MAX_POINTS,
    QUANTUM_WH,
    Begin,
    CurveLimits,
    MeterCurve,
    Point,
    day_rows,
    session_energy,
    split_by_day,
)

T = datetime(2024, 12, 31, 20, 0, tzinfo=UTC)  # a year end
LIMITS = CurveLimits(max_power_w=22_000.0, reset_max_wh=1_000.0, slack_wh=50.0)


def p(minutes: float, wh: float) -> Point:
    return Point(T + timedelta(minutes=minutes), wh)


def curve_of(*points: Point) -> MeterCurve:
    curve = MeterCurve()
    for point in points:
        curve.insert(point, LIMITS)
    return curve


# --------------------------------------------------------------------------- the curve


def test_only_the_first_and_last_reading_of_each_day_are_kept() -> None:
    curve = curve_of(*[p(m, 1_000.0 + 100 * m) for m in range(0, 600, 10)])  # 20:00 to 05:50
    assert [pt.ts for pt in curve.points] == [T, T + timedelta(minutes=230), T + timedelta(minutes=240),
                                              T + timedelta(minutes=590)]


@pytest.mark.parametrize(("existing", "late", "accepted", "flags"), [
    pytest.param([p(0, 5_000), p(2, 5_200)], p(1, 5_100), True, set(), id="rising-between"),
    pytest.param([p(0, 5_000), p(2, 5_200)], p(1, 5_300), False, {QualityFlag.NON_MONOTONIC_REGISTER},
                 id="spike-between"),
    pytest.param([p(0, 5_000), p(2, 5_200)], p(1, 20), False, {QualityFlag.NON_MONOTONIC_REGISTER},
                 id="low-glitch-is-no-reset"),
    pytest.param([p(0, 5_000)], p(1, 20), True, {QualityFlag.REGISTER_RESET}, id="reset-appended"),
    pytest.param([p(0, 5_000)], p(1, 4_990), False, {QualityFlag.NON_MONOTONIC_REGISTER}, id="small-step-back"),
    pytest.param([p(0, 5_000), p(2, 30)], p(1, 10), True, {QualityFlag.REGISTER_RESET}, id="late-after-reset"),
    pytest.param([p(0, 5_000), p(2, 30)], p(1, 5_050), True, set(), id="late-before-reset"),
    pytest.param([p(0, 5_000), p(2, 30)], p(1, 40), False, {QualityFlag.NON_MONOTONIC_REGISTER},
                 id="late-making-a-second-reset"),
    pytest.param([p(0, 5_000)], p(1, 8_000), True, {QualityFlag.IMPLAUSIBLE_POWER}, id="180-kW-on-22-kW"),
    pytest.param([p(0, 5_000)], p(0, 5_000), False, {QualityFlag.DUPLICATE}, id="same-instant"),
])
def test_a_reading_is_judged_against_its_neighbours(existing: list[Point], late: Point, accepted: bool,
                                                    flags: set[QualityFlag]) -> None:
    curve = curve_of(*existing)
    result = curve.insert(late, LIMITS)
    assert (result.accepted, set(result.flags)) == (accepted, flags)


def test_the_curve_is_capped_but_the_energy_stays_exact() -> None:
    curve = curve_of(*[p(m * 24 * 60 + k, 1_000.0 * m + k) for m in range(200) for k in (0, 10)])
    assert len(curve.points) == MAX_POINTS
    total, _ = split_by_day([(pt.ts, pt.wh) for pt in curve.points])
    assert total == 1_000.0 * 199 + 10


@settings(max_examples=200, deadline=None)
@given(st.permutations(list(range(40))))
def test_the_kept_readings_do_not_depend_on_the_arrival_order(order: list[int]) -> None:
    readings = [p(45 * k, 10_000.0 + 700 * k) for k in range(40)]  # 30 hours, across two midnights
    assert curve_of(*[readings[k] for k in order]).points == curve_of(*readings).points


# --------------------------------------------------------------------------- energy and days


@pytest.mark.parametrize(("points", "meter_start", "stop_only", "begin", "energy"), [
    pytest.param([p(0, 5_000), p(60, 12_000)], 5_000.0, False, Begin.REGISTER, 7_000.0, id="register"),
    pytest.param([p(5, 200), p(60, 7_000)], 0.0, False, Begin.ZERO, 7_000.0, id="zero-of-a-fresh-meter"),
    pytest.param([p(5, 900_000), p(60, 907_000)], 0.0, False, Begin.FIRST_READING, 7_000.0, id="zero-is-missing"),
    pytest.param([p(5, 900_000), p(60, 907_000)], None, False, Begin.FIRST_READING, 7_000.0, id="missing"),
    pytest.param([p(60, 4_000_000)], None, True, Begin.ASSUMED_ZERO, 4_000_000.0, id="stop-only"),
    pytest.param([], None, False, Begin.NONE, 0.0, id="nothing"),
    pytest.param([p(0, 5_000), p(30, 8_000), p(31, 10), p(60, 1_000)], 5_000.0, False, Begin.REGISTER, 4_000.0,
                 id="reset-bridged"),
])
def test_session_energy(points: list[Point], meter_start: float | None, stop_only: bool, begin: Begin,
                        energy: float) -> None:
    result = session_energy(points, started_at=T, meter_start_wh=meter_start, stop_only=stop_only,
                            reset_max_wh=1_000.0)
    assert (result.begin, result.energy_wh) == (begin, energy)
    assert sum(result.days.values()) == result.energy_wh


def test_midnight_is_interpolated_between_the_readings_around_it() -> None:
    total, days = split_by_day([(T, 0.0), (T + timedelta(hours=3), 3_000.0), (T + timedelta(hours=5), 7_000.0)])
    assert total == 7_000.0
    assert days == {date(2024, 12, 31): 5_000.0, date(2025, 1, 1): 2_000.0}  # 4 h -> midnight at 03:00 + 1 h


def test_a_reading_exactly_at_midnight_closes_the_day_before() -> None:
    _, days = split_by_day([(T, 0.0), (T + timedelta(hours=4), 4_000.0)])
    assert days == {date(2024, 12, 31): 4_000.0, date(2025, 1, 1): 0.0}


def test_a_long_silence_spreads_over_the_days_it_spans() -> None:
    _, days = split_by_day([(T, 0.0), (T + timedelta(hours=52), 5_200.0)])  # to Jan 2nd 24:00
    assert days == {date(2024, 12, 31): 400.0, date(2025, 1, 1): 2_400.0, date(2025, 1, 2): 2_400.0,
                    date(2025, 1, 3): 0.0}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 36 * 3600), st.floats(0, 50_000, allow_nan=False)), min_size=1,
                max_size=30))
def test_day_shares_add_up_to_the_energy_exactly(steps: list[tuple[int, float]]) -> None:
    curve, ts, wh = [(T, 123.456)], T, 123.456
    for seconds, rise in steps:
        ts += timedelta(seconds=seconds)
        wh = rise if rise < 500 else wh + rise  # now and then a reset to near zero
        curve.append((ts, wh))
    total, days = split_by_day(curve)
    assert sum(days.values()) == total and sum(reversed(days.values())) == total
    assert all(share >= 0 and share / QUANTUM_WH == int(share / QUANTUM_WH) for share in days.values())
    assert list(days) == [T.date() + timedelta(days=k) for k in range(len(days))]


def test_day_rows_resend_days_no_longer_touched_as_zero() -> None:
    rows, span = day_rows("s", "cp", {date(2025, 1, 1): 5.0}, (date(2024, 12, 30), date(2024, 12, 31)), 7)
    assert [(r.day, r.energy_wh, r.revision) for r in rows] == [
        (date(2024, 12, 30), 0.0, 7), (date(2024, 12, 31), 0.0, 7), (date(2025, 1, 1), 5.0, 7)]
    assert span == (date(2024, 12, 30), date(2025, 1, 1))
