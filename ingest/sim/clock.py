"""Simulated time.

Everything the simulator decides (EV physics, profile schedules, sample intervals, heartbeats,
timestamps on the wire) runs on a :class:`Clock`, never on ``datetime.now()``. The scaled clock
runs ``speed`` simulated seconds per real second; the manual clock only moves when a test
advances it, so the logic can be tested without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    @property
    def speed(self) -> float:
        """Simulated seconds per real second."""
        ...

    def now(self) -> datetime:
        """The simulated time, timezone-aware UTC."""
        ...

    async def sleep(self, sim_seconds: float) -> None:
        """Wait until ``sim_seconds`` of simulated time have passed."""
        ...


class ScaledClock:
    """Wall-clock driven: ``now = start + (monotonic elapsed) * speed``."""

    def __init__(self, start: datetime, speed: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self._start = as_utc(start)
        self._speed = float(speed)
        self._monotonic = monotonic
        self._t0 = monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(self._monotonic() - self._t0) * self._speed)

    async def sleep(self, sim_seconds: float) -> None:
        await asyncio.sleep(max(0.0, sim_seconds / self._speed))


class ManualClock:
    """A clock for tests: ``sleep`` advances it instead of waiting."""

    def __init__(self, start: datetime, speed: float = 1.0) -> None:
        self._now = as_utc(start)
        self._speed = speed

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now

    async def sleep(self, sim_seconds: float) -> None:
        self.advance(max(0.0, sim_seconds))
        await asyncio.sleep(0)


def as_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: the simulator works in UTC only")
    return value.astimezone(UTC)


def iso_z(value: datetime) -> str:
    """UTC ISO 8601 with millisecond precision and a ``Z`` suffix, as OCPP expects."""
    return as_utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_ts(raw: str) -> datetime:
    """Parse an ISO 8601 timestamp from the CSMS; a missing zone is taken as UTC."""
    value = datetime.fromisoformat(raw)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def seconds_between(earlier: datetime, later: datetime) -> float:
    return (later - earlier).total_seconds()
