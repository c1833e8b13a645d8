"""control.schedules: recurring local-time windows, midnight crossing, DST nights, skip once."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control.contract import ContractError
from control.schedules import (
    EVERY_DAY,
    WORKDAYS,
    Schedule,
    ScheduleError,
    Weekday,
    WeeklyWindow,
    active_occurrence,
    is_active,
    next_occurrence,
    occurrences,
    prune_skips,
    skip_once,
)

BERLIN = "Europe/Berlin"


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def sched(start: str, end: str, weekdays: frozenset[Weekday] = EVERY_DAY, **kwargs: object) -> Schedule:
    window = WeeklyWindow(time.fromisoformat(start), time.fromisoformat(end), weekdays)
    return Schedule("s1", BERLIN, window, **kwargs)  # type: ignore[arg-type]


OFF_PEAK = sched("23:00", "06:00")  # crosses midnight
EVENING = sched("18:00", "23:59", WORKDAYS)


# 2024-06-03 is a Monday; Berlin is UTC+2 in summer, UTC+1 in winter.
@pytest.mark.parametrize(
    ("schedule", "now", "active"),
    [
        (OFF_PEAK, utc(2024, 6, 3, 21, 0), True),  # 23:00 local: the start is inclusive
        (OFF_PEAK, utc(2024, 6, 3, 20, 59), False),
        (OFF_PEAK, utc(2024, 6, 4, 3, 59), True),  # 05:59 local, the next morning
        (OFF_PEAK, utc(2024, 6, 4, 4, 0), False),  # 06:00 local: the end is exclusive
        (OFF_PEAK, utc(2024, 1, 15, 22, 0), True),  # winter: 23:00 CET
        (EVENING, utc(2024, 6, 3, 16, 0), True),  # Monday 18:00
        (EVENING, utc(2024, 6, 8, 16, 0), False),  # Saturday
        (sched("00:00", "00:00"), utc(2024, 6, 8, 12, 0), True),  # start == end: the whole day
        (sched("23:00", "06:00", enabled=False), utc(2024, 6, 3, 22, 0), False),
        (sched("23:00", "06:00", valid_from=date(2024, 6, 4)), utc(2024, 6, 3, 22, 0), False),
        (sched("23:00", "06:00", valid_until=date(2024, 6, 3)), utc(2024, 6, 4, 2, 0), True),  # dated the 3rd
        (sched("23:00", "06:00", valid_until=date(2024, 6, 3)), utc(2024, 6, 4, 22, 0), False),
    ],
)
def test_is_active(schedule: Schedule, now: datetime, active: bool) -> None:
    assert is_active(schedule, now) is active


def test_a_workday_night_window_runs_friday_night_but_not_sunday_night() -> None:
    schedule = sched("23:00", "06:00", WORKDAYS)
    assert is_active(schedule, utc(2024, 6, 8, 2, 0))  # Saturday 04:00: Friday's occurrence
    assert not is_active(schedule, utc(2024, 6, 9, 22, 0))  # Sunday 23:00
    assert is_active(schedule, utc(2024, 6, 10, 2, 0)) is False  # Monday 04:00: Sunday had none


def test_occurrences_are_utc_unclipped_and_span_a_month_end() -> None:
    found = occurrences(OFF_PEAK, utc(2024, 5, 31, 0, 0), utc(2024, 6, 1, 12, 0))
    assert [(o.occurrence_date, o.start, o.end) for o in found] == [
        (date(2024, 5, 30), utc(2024, 5, 30, 21), utc(2024, 5, 31, 4)),  # sticks out of the range: kept whole
        (date(2024, 5, 31), utc(2024, 5, 31, 21), utc(2024, 6, 1, 4)),  # across the month end
    ]
    assert all(o.start.tzinfo is UTC for o in found)


def test_next_occurrence() -> None:
    now = utc(2024, 6, 3, 22, 0)  # Tuesday 00:00 local, inside Monday night's window
    nxt = next_occurrence(OFF_PEAK, now)
    assert nxt is not None and (nxt.start, nxt.end) == (utc(2024, 6, 4, 21), utc(2024, 6, 5, 4))
    running = active_occurrence(OFF_PEAK, now)
    assert running is not None and running.occurrence_date == date(2024, 6, 3)
    weekly = sched("08:00", "09:00", frozenset({Weekday.WED}))
    nxt = next_occurrence(weekly, utc(2024, 6, 5, 7, 0))  # Wednesday 09:00 local: just over
    assert nxt is not None and nxt.occurrence_date == date(2024, 6, 12)
    assert next_occurrence(sched("08:00", "09:00", valid_until=date(2024, 6, 1)), utc(2024, 6, 3)) is None
    far = next_occurrence(sched("08:00", "09:00", valid_from=date(2025, 3, 1)), utc(2024, 6, 3))
    assert far is not None and far.occurrence_date == date(2025, 3, 1)
    assert next_occurrence(sched("08:00", "09:00", enabled=False), utc(2024, 6, 3)) is None


# --------------------------------------------------------------------------- DST, Europe/Berlin


SPRING = date(2024, 3, 31)  # 02:00 CET -> 03:00 CEST
FALL = date(2024, 10, 27)  # 03:00 CEST -> 02:00 CET


@pytest.mark.parametrize(
    ("start", "end", "day", "expected"),
    [
        # spring forward: the night is an hour shorter
        ("23:00", "06:00", SPRING - timedelta(days=1), (utc(2024, 3, 30, 22), utc(2024, 3, 31, 4))),
        # a start inside the missing hour moves forward by the gap: 02:30 -> 03:30 CEST
        ("02:30", "04:00", SPRING, (utc(2024, 3, 31, 1, 30), utc(2024, 3, 31, 2))),
        # a window wholly inside the missing hour does not happen
        ("02:00", "03:00", SPRING, None),
        # fall back: the night is an hour longer
        ("23:00", "06:00", FALL - timedelta(days=1), (utc(2024, 10, 26, 21), utc(2024, 10, 27, 5))),
        # an ambiguous time is its first occurrence (summer time): 02:00 CEST -> 03:00 CET, 2 real hours
        ("02:00", "03:00", FALL, (utc(2024, 10, 27, 0), utc(2024, 10, 27, 2))),
        ("02:15", "02:45", FALL, (utc(2024, 10, 27, 0, 15), utc(2024, 10, 27, 0, 45))),
    ],
)
def test_dst_nights(start: str, end: str, day: date, expected: tuple[datetime, datetime] | None) -> None:
    schedule = sched(start, end)
    day_start = datetime.combine(day, time(12), tzinfo=UTC) - timedelta(hours=12)
    found = [o for o in occurrences(schedule, day_start, day_start + timedelta(days=2)) if o.occurrence_date == day]
    assert [(o.start, o.end) for o in found] == ([expected] if expected else [])


def test_spring_forward_night_window_lasts_six_hours_and_fall_back_eight() -> None:
    (spring,) = occurrences(OFF_PEAK, utc(2024, 3, 31, 0), utc(2024, 3, 31, 1))
    (fall,) = occurrences(OFF_PEAK, utc(2024, 10, 27, 0), utc(2024, 10, 27, 1))
    assert spring.end - spring.start == timedelta(hours=6)
    assert fall.end - fall.start == timedelta(hours=8)
    assert is_active(OFF_PEAK, utc(2024, 10, 27, 4, 59))  # 05:59 CET
    assert not is_active(OFF_PEAK, utc(2024, 10, 27, 5, 0))


# --------------------------------------------------------------------------- skip once


def test_skip_once_skips_the_next_occurrence_and_expires_by_itself() -> None:
    now = utc(2024, 6, 3, 12, 0)  # Monday afternoon, before tonight's window
    skipped = skip_once(OFF_PEAK, now)
    assert skipped.skipped_dates == frozenset({date(2024, 6, 3)})
    assert not is_active(skipped, utc(2024, 6, 3, 22, 0))
    assert is_active(skipped, utc(2024, 6, 4, 22, 0))  # the following night runs again
    nxt = next_occurrence(skipped, now)
    assert nxt is not None and nxt.occurrence_date == date(2024, 6, 4)
    shown = occurrences(skipped, now, now + timedelta(days=2), include_skipped=True)
    assert [o.skipped for o in shown] == [True, False]
    assert prune_skips(skipped, utc(2024, 6, 4, 3, 0)).skipped_dates == skipped.skipped_dates  # still running
    assert prune_skips(skipped, utc(2024, 6, 4, 4, 0)).skipped_dates == frozenset()  # over: dropped


def test_skip_once_while_running_skips_the_running_occurrence() -> None:
    skipped = skip_once(OFF_PEAK, utc(2024, 6, 4, 1, 0))  # 03:00 local, inside Monday's window
    assert skipped.skipped_dates == frozenset({date(2024, 6, 3)})
    assert not is_active(skipped, utc(2024, 6, 4, 1, 0))
    twice = skip_once(skipped, utc(2024, 6, 4, 1, 0))
    assert twice.skipped_dates == frozenset({date(2024, 6, 3), date(2024, 6, 4)})
    assert skip_once(sched("23:00", "06:00", enabled=False), utc(2024, 6, 4)).skipped_dates == frozenset()


# --------------------------------------------------------------------------- validation


def test_invalid_schedules_are_refused() -> None:
    with pytest.raises(ScheduleError, match="unknown time zone"):
        Schedule("s", "Mars/Olympus", WeeklyWindow(time(1), time(2)))
    with pytest.raises(ScheduleError, match="weekday"):
        WeeklyWindow(time(1), time(2), frozenset())
    with pytest.raises(ScheduleError, match="naive"):
        WeeklyWindow(time(1, tzinfo=UTC), time(2))
    with pytest.raises(ScheduleError, match="before valid_from"):
        sched("01:00", "02:00", valid_from=date(2024, 2, 1), valid_until=date(2024, 1, 1))
    with pytest.raises(ContractError, match="naive"):
        is_active(OFF_PEAK, datetime(2024, 1, 1, 12))  # noqa: DTZ001 - the point of the test


# --------------------------------------------------------------------------- properties

times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))
instants = st.datetimes(
    min_value=datetime(2023, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive; the zone is set below
    max_value=datetime(2026, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@settings(max_examples=200, deadline=None)
@given(
    start=times,
    end=times,
    days=st.frozensets(st.sampled_from(list(Weekday)), min_size=1),
    now=instants,
    zone=st.sampled_from([BERLIN, "America/New_York", "UTC", "Australia/Lord_Howe"]),
)
def test_is_active_agrees_with_occurrences(
    start: time, end: time, days: frozenset[Weekday], now: datetime, zone: str
) -> None:
    schedule = Schedule("p", zone, WeeklyWindow(start, end, days))
    found = occurrences(schedule, now - timedelta(days=2), now + timedelta(days=9))
    assert is_active(schedule, now) == any(o.start <= now < o.end for o in found)
    assert all(a.end <= b.start for a, b in itertools.pairwise(found))  # disjoint, ordered
    nxt = next_occurrence(schedule, now)
    later = [o for o in found if o.start > now]
    assert (nxt is None and not later) or (nxt is not None and later and nxt == later[0])
