"""Recurring time windows in a site's local time zone, as UTC intervals. Pure; ``now`` is a parameter.

A :class:`WeeklyWindow` is "on these weekdays, from ``start_local`` to ``end_local``" in local
wall-clock time. An ``end_local`` at or before ``start_local`` crosses midnight (``23:00-06:00``
ends the next morning); ``start_local == end_local`` is a whole day. A :class:`Schedule` is such a
window in a named IANA zone, with an enabled flag, an optional date range and skipped
occurrences. Every datetime in and out is timezone-aware; results are always UTC.

Occurrences. Each occurrence is identified by its *occurrence date*: the local date on which it
starts. Weekdays, ``valid_from`` and ``valid_until`` (both inclusive) are tested against that date,
so a Monday-to-Friday ``23:00-06:00`` window runs Friday night into Saturday morning, and not
Sunday night. An occurrence is the half-open UTC interval ``[start, end)``.

Skip once. :func:`skip_once` adds the occurrence date of the running (or else the next)
occurrence to ``skipped_dates``. A skip is a date, not a flag, so it is deterministic on replay
and expires by itself: once that occurrence is over the date matches nothing in the future
(:func:`prune_skips` drops such stale dates for tidiness; keeping them changes no result).

Daylight saving time follows RFC 5545 (iCalendar) and Python's ``fold=0``:

* A local time that does not exist (spring forward, Europe/Berlin 2024-03-31 02:00-03:00) is read
  with the offset in force before the gap, which moves it forward by the gap: ``02:30`` becomes
  ``03:30`` CEST. A window lying wholly inside the gap (``02:00-03:00``) has no occurrence that
  night; ``23:00-06:00`` lasts 6 real hours instead of 7.
* A local time that happens twice (fall back, 2024-10-27 02:00-03:00) means its first occurrence
  (still summer time). ``23:00-06:00`` lasts 8 real hours that night; ``02:00-03:00`` runs from
  02:00 CEST to 03:00 CET, 2 real hours, covering both passes through 02:xx.

A disabled schedule has no occurrences at all and is never active.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from control.contract import utc


class ScheduleError(ValueError):
    """A schedule or window that cannot be valid (unknown zone, empty weekdays, reversed range)."""


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @classmethod
    def of(cls, day: date) -> Weekday:
        return _WEEKDAYS[day.weekday()]


_WEEKDAYS: Final = tuple(Weekday)
EVERY_DAY: Final = frozenset(Weekday)
WORKDAYS: Final = frozenset({Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI})
WEEKEND: Final = frozenset({Weekday.SAT, Weekday.SUN})
_DAY: Final = timedelta(days=1)


def zone_of(name: str) -> ZoneInfo:
    """The IANA zone ``name``; :class:`ScheduleError` if it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown time zone {name!r}") from exc


def local_to_utc(day: date, at: time, zone: ZoneInfo) -> datetime:
    """Local wall-clock ``day at`` in ``zone`` as UTC, by the DST policy in the module docstring."""
    return datetime.combine(day, at.replace(fold=0), tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Interval:
    """A half-open UTC interval ``[start, end)``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        utc(self.start)
        utc(self.end)
        if self.end < self.start:
            raise ScheduleError(f"interval ends ({self.end}) before it starts ({self.start})")

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class WeeklyWindow:
    """On ``weekdays`` (of the starting date), from ``start_local`` to ``end_local`` wall-clock time."""

    start_local: time
    end_local: time
    weekdays: frozenset[Weekday] = EVERY_DAY

    def __post_init__(self) -> None:
        for name, value in (("start_local", self.start_local), ("end_local", self.end_local)):
            if not isinstance(value, time) or value.tzinfo is not None:
                raise ScheduleError(f"{name} must be a naive local time (the zone is the site's)")
        if not self.weekdays:
            raise ScheduleError("a window needs at least one weekday")
        if not isinstance(self.weekdays, frozenset) or not all(isinstance(d, Weekday) for d in self.weekdays):
            raise ScheduleError("weekdays must be a frozenset of Weekday")

    @property
    def crosses_midnight(self) -> bool:
        return self.end_local <= self.start_local

    def interval_on(self, day: date, zone: ZoneInfo) -> Interval | None:
        """The occurrence starting on local date ``day`` (weekday ignored); None if DST erases it."""
        start = local_to_utc(day, self.start_local, zone)
        end = local_to_utc(day + _DAY if self.crosses_midnight else day, self.end_local, zone)
        return Interval(start, end) if end > start else None

    def label(self) -> str:
        return f"{self.start_local:%H:%M}-{self.end_local:%H:%M}"


def _local_dates(zone: ZoneInfo, start: datetime, end: datetime) -> Iterator[date]:
    """Every local date whose occurrence of any window may overlap ``[start, end)``."""
    day = start.astimezone(zone).date() - _DAY  # the previous evening's window may reach into start
    last = end.astimezone(zone).date()
    while day <= last:
        yield day
        day += _DAY


def window_occurrences(
    window: WeeklyWindow, zone: ZoneInfo, start: datetime, end: datetime
) -> list[tuple[date, Interval]]:
    """Occurrences of ``window`` (with their occurrence dates) overlapping ``[start, end)``, in order."""
    start, end = utc(start), utc(end)
    found = []
    for day in _local_dates(zone, start, end):
        if Weekday.of(day) in window.weekdays:
            interval = window.interval_on(day, zone)
            if interval is not None and interval.start < end and interval.end > start:
                found.append((day, interval))
    return found


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One occurrence of a schedule: its occurrence date (local) and UTC interval, not clipped."""

    schedule_id: str
    occurrence_date: date
    start: datetime
    end: datetime
    skipped: bool = False

    @property
    def interval(self) -> Interval:
        return Interval(self.start, self.end)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A recurring window in a site's time zone; see the module docstring for the policy."""

    schedule_id: str
    zone: str  # IANA name, e.g. "Europe/Berlin"
    window: WeeklyWindow
    enabled: bool = True
    valid_from: date | None = None  # first occurrence date, inclusive
    valid_until: date | None = None  # last occurrence date, inclusive
    skipped_dates: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        if not self.schedule_id:
            raise ScheduleError("schedule_id must be a non-empty string")
        zone_of(self.zone)
        if self.valid_from is not None and self.valid_until is not None and self.valid_until < self.valid_from:
            raise ScheduleError(f"valid_until {self.valid_until} is before valid_from {self.valid_from}")
        if not isinstance(self.skipped_dates, frozenset):
            raise ScheduleError("skipped_dates must be a frozenset of dates")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)  # ZoneInfo caches instances per key

    def in_range(self, day: date) -> bool:
        """Whether ``day`` lies within the optional date range (both ends inclusive)."""
        return (self.valid_from is None or day >= self.valid_from) and (
            self.valid_until is None or day <= self.valid_until
        )

    def in_force(self, now: datetime) -> bool:
        """Enabled and today's local date within the date range (the window need not be open)."""
        return self.enabled and self.in_range(utc(now).astimezone(self.tz).date())

    def label(self) -> str:
        days = (
            "daily"
            if self.window.weekdays == EVERY_DAY
            else ",".join(d.value for d in _WEEKDAYS if d in self.window.weekdays)
        )
        return f"{self.window.label()} {days}"


def occurrences(
    schedule: Schedule, start: datetime, end: datetime, *, include_skipped: bool = False
) -> tuple[Occurrence, ...]:
    """The schedule's occurrences overlapping ``[start, end)``, in time order, as UTC and unclipped.

    Occurrences keep their true start and end even where they stick out of the range, so a
    timeline can draw them whole. Skipped ones are left out unless ``include_skipped`` (then
    they carry ``skipped=True``, for drawing them greyed out). A disabled schedule has none.
    """
    if not schedule.enabled:
        return ()
    found = []
    for day, interval in window_occurrences(schedule.window, schedule.tz, start, end):
        if not schedule.in_range(day):
            continue
        skipped = day in schedule.skipped_dates
        if skipped and not include_skipped:
            continue
        found.append(Occurrence(schedule.schedule_id, day, interval.start, interval.end, skipped))
    return tuple(found)


def active_occurrence(schedule: Schedule, now: datetime, *, include_skipped: bool = False) -> Occurrence | None:
    """The occurrence running at ``now`` (``start <= now < end``), if any."""
    now = utc(now)
    for occurrence in occurrences(schedule, now, now + timedelta(microseconds=1), include_skipped=include_skipped):
        if occurrence.start <= now < occurrence.end:
            return occurrence
    return None


def is_active(schedule: Schedule, now: datetime) -> bool:
    """Whether a (not skipped) occurrence of an enabled schedule is running at ``now``."""
    return active_occurrence(schedule, now) is not None


def is_skipped_now(schedule: Schedule, now: datetime) -> bool:
    """Whether the occurrence that would be running at ``now`` has been skipped."""
    found = active_occurrence(schedule, now, include_skipped=True)
    return found is not None and found.skipped


def _search_days(schedule: Schedule) -> int:
    # A weekly window recurs within 7 days; every skip and a DST-erased night can push it a week.
    return 7 * (len(schedule.skipped_dates) + 3)


def next_occurrence(schedule: Schedule, now: datetime) -> Occurrence | None:
    """The first non-skipped occurrence starting strictly after ``now``; None if there is none.

    The running occurrence (see :func:`active_occurrence`) is not "next". A schedule whose date
    range has ended, or that is disabled, has no next occurrence.
    """
    now = utc(now)
    cursor = now
    if schedule.valid_from is not None:
        cursor = max(cursor, local_to_utc(schedule.valid_from, time(0), schedule.tz) - _DAY)
    horizon = cursor + timedelta(days=_search_days(schedule))
    for occurrence in occurrences(schedule, cursor, horizon):
        if occurrence.start > now:
            return occurrence
    return None


def skip_once(schedule: Schedule, now: datetime) -> Schedule:
    """The schedule with the running occurrence, or else the next one, skipped.

    Returns the schedule unchanged when there is nothing to skip (disabled, or no occurrence
    ahead). Skipping twice in a row skips the following occurrence as well.
    """
    target = active_occurrence(schedule, now) or next_occurrence(schedule, now)
    if target is None:
        return schedule
    return replace(schedule, skipped_dates=schedule.skipped_dates | {target.occurrence_date})


def prune_skips(schedule: Schedule, now: datetime) -> Schedule:
    """Drop skipped dates whose occurrence has ended before ``now`` (they can never match again)."""
    now = utc(now)
    zone = schedule.tz
    keep = set()
    for day in schedule.skipped_dates:
        interval = schedule.window.interval_on(day, zone)
        if interval is not None and interval.end > now:
            keep.add(day)
    return replace(schedule, skipped_dates=frozenset(keep))
