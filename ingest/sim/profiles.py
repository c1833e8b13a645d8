"""Charging profiles as a charger obeys them: parse, store, compose, and actuate. Pure.

1.6 and 2.0.1 profiles are parsed into one :class:`Profile` shape. The limit a connector obeys is
the minimum of the station maximum (connector 0) and the transaction limit, where a TxProfile
for the running transaction beats any TxDefaultProfile; within a purpose the highest stack level
that is active at the moment wins (OCPP 1.6 §3.13.2, 2.0.1 K01). The :class:`Actuator` models the
hardware: a new limit takes effect after a reaction delay and is then ramped at a fixed rate.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from control.contract import RateUnit
from ingest.sim.clock import parse_ts, seconds_between

MAX_STACK_LEVEL = 8
DEFAULT_AC_PHASES = 3  # OCPP: numberPhases absent means 3 on AC


class Purpose(StrEnum):
    STATION_MAX = "ChargePointMaxProfile"  # 2.0.1: ChargingStationMaxProfile
    TX_DEFAULT = "TxDefaultProfile"
    TX = "TxProfile"
    # 2.0.1: a limit from an external system (grid operator, EMS) talking to the station directly.
    # Only the station installs it (the CSMS may neither set nor clear it): not in _PURPOSES.
    EXTERNAL = "ChargingStationExternalConstraints"


_PURPOSES = {"ChargePointMaxProfile": Purpose.STATION_MAX, "ChargingStationMaxProfile": Purpose.STATION_MAX,
             "TxDefaultProfile": Purpose.TX_DEFAULT, "TxProfile": Purpose.TX}


def parse_purpose(raw: str) -> Purpose:
    try:
        return _PURPOSES[raw]
    except KeyError:
        raise ProfileError(f"unknown charging profile purpose {raw!r}") from None


class ProfileError(ValueError):
    """A profile the charger cannot use; the dialect answers Rejected."""


@dataclass(frozen=True, slots=True)
class Period:
    start_s: float
    limit: float
    phases: int | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    id: int
    connector_id: int  # 0 = the whole station
    purpose: Purpose
    stack_level: int
    kind: str  # Absolute | Recurring | Relative
    unit: RateUnit
    periods: tuple[Period, ...]
    received_at: datetime
    start_schedule: datetime | None = None
    duration_s: float | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    recurrency: str | None = None  # Daily | Weekly
    transaction_id: str | None = None


@dataclass(frozen=True, slots=True)
class Constraint:
    """One active schedule period, in the profile's own unit."""

    profile_id: int
    purpose: Purpose
    limit: float
    unit: RateUnit
    phases: int | None


def parse_profile(raw: Mapping[str, Any], *, connector_id: int, received_at: datetime) -> Profile:
    """Build a profile from the snake_case dict the ocpp library hands to a handler.

    Accepts both the 1.6 shape (``charging_profile_id``, one ``charging_schedule``) and the 2.0.1
    shape (``id``, a list of schedules of which the first is used).
    """
    try:
        schedule = raw["charging_schedule"]
        if isinstance(schedule, list):
            if not schedule:
                raise ProfileError("empty charging_schedule list")
            schedule = schedule[0]
        periods = tuple(
            Period(float(p["start_period"]), float(p["limit"]),
                   int(p["number_phases"]) if p.get("number_phases") is not None else None)
            for p in schedule["charging_schedule_period"])
        tx_id = raw.get("transaction_id")
        profile = Profile(
            id=int(raw["charging_profile_id"] if "charging_profile_id" in raw else raw["id"]),
            connector_id=connector_id,
            purpose=parse_purpose(str(raw["charging_profile_purpose"])),
            stack_level=int(raw["stack_level"]),
            kind=str(raw["charging_profile_kind"]),
            unit=RateUnit(str(schedule["charging_rate_unit"])),
            periods=tuple(sorted(periods, key=lambda p: p.start_s)),
            received_at=received_at,
            start_schedule=_opt_ts(schedule.get("start_schedule")),
            duration_s=float(schedule["duration"]) if schedule.get("duration") is not None else None,
            valid_from=_opt_ts(raw.get("valid_from")),
            valid_to=_opt_ts(raw.get("valid_to")),
            recurrency=raw.get("recurrency_kind"),
            transaction_id=str(tx_id) if tx_id is not None else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ProfileError):
            raise
        raise ProfileError(f"unusable charging profile: {exc!r}") from exc
    if not profile.periods or any(p.limit < 0 or not math.isfinite(p.limit) for p in profile.periods):
        raise ProfileError("charging profile needs periods with finite limits >= 0")
    if not 0 <= profile.stack_level <= MAX_STACK_LEVEL:
        raise ProfileError(f"stack level {profile.stack_level} outside 0..{MAX_STACK_LEVEL}")
    return profile


def _opt_ts(raw: Any) -> datetime | None:
    return parse_ts(str(raw)) if raw is not None else None


def schedule_start(profile: Profile, at: datetime, tx_start: datetime | None) -> datetime | None:
    if profile.kind == "Relative":
        return tx_start
    if profile.kind == "Recurring":
        anchor = profile.start_schedule or profile.received_at
        period = timedelta(days=7 if profile.recurrency == "Weekly" else 1)
        return anchor + period * math.floor((at - anchor) / period)
    return profile.start_schedule or profile.received_at


def active_period(profile: Profile, at: datetime, tx_start: datetime | None) -> Period | None:
    """The schedule period in force at ``at``, or None when the profile does not apply then."""
    if profile.valid_from is not None and at < profile.valid_from:
        return None
    if profile.valid_to is not None and at >= profile.valid_to:
        return None
    start = schedule_start(profile, at, tx_start)
    if start is None:
        return None
    elapsed = seconds_between(start, at)
    if elapsed < 0 or (profile.duration_s is not None and elapsed >= profile.duration_s):
        return None
    index = bisect.bisect_right([p.start_s for p in profile.periods], elapsed) - 1
    return profile.periods[index] if index >= 0 else None


@dataclass
class ProfileStore:
    profiles: list[Profile] = field(default_factory=list)

    def install(self, profile: Profile) -> None:
        """Add a profile, replacing one with the same id or the same connector/purpose/stack level."""
        self.profiles = [
            p for p in self.profiles
            if p.id != profile.id and not (p.connector_id == profile.connector_id
                                           and p.purpose == profile.purpose
                                           and p.stack_level == profile.stack_level)]
        self.profiles.append(profile)

    def clear(self, *, profile_id: int | None = None, connector_id: int | None = None,
              purpose: Purpose | None = None, stack_level: int | None = None) -> int:
        """Remove matching profiles (by id, or else by every criterion given); return how many.
        External constraints go only when ``purpose`` names them."""
        def matches(p: Profile) -> bool:
            if p.purpose == Purpose.EXTERNAL and purpose != Purpose.EXTERNAL:
                return False
            if profile_id is not None:
                return p.id == profile_id
            return ((connector_id is None or p.connector_id == connector_id)
                    and (purpose is None or p.purpose == purpose)
                    and (stack_level is None or p.stack_level == stack_level))
        kept = [p for p in self.profiles if not matches(p)]
        removed = len(self.profiles) - len(kept)
        self.profiles = kept
        return removed

    def end_transaction(self, connector_id: int) -> None:
        """A TxProfile lives only as long as its transaction."""
        self.clear(connector_id=connector_id, purpose=Purpose.TX)

    def constraints(self, connector_id: int, at: datetime, *, tx_id: str | None,
                    tx_start: datetime | None) -> list[Constraint]:
        """The constraints a connector must obey at ``at`` (all of them apply: take the minimum)."""
        out: list[Constraint] = []
        station = self._top([p for p in self.profiles if p.purpose == Purpose.STATION_MAX], at, tx_start)
        if station is not None:
            out.append(station)
        tx_profiles = [p for p in self.profiles
                       if p.purpose == Purpose.TX and p.connector_id == connector_id and tx_id is not None
                       and p.transaction_id in (None, tx_id)]
        tx = self._top(tx_profiles, at, tx_start)
        if tx is None:
            defaults = [p for p in self.profiles
                        if p.purpose == Purpose.TX_DEFAULT and p.connector_id in (0, connector_id)]
            # A connector-specific default outranks a station-wide one at the same stack level.
            defaults.sort(key=lambda p: (p.stack_level, p.connector_id != 0), reverse=True)
            tx = self._first_active(defaults, at, tx_start)
        if tx is not None:
            out.append(tx)
        for profile in sorted(self.profiles, key=lambda p: (p.connector_id, p.stack_level)):
            if profile.purpose == Purpose.EXTERNAL and profile.connector_id in (0, connector_id):
                external = self._first_active([profile], at, tx_start)
                if external is not None:  # every external source's limit applies
                    out.append(external)
        return out

    def _top(self, candidates: list[Profile], at: datetime, tx_start: datetime | None) -> Constraint | None:
        return self._first_active(sorted(candidates, key=lambda p: p.stack_level, reverse=True), at, tx_start)

    @staticmethod
    def _first_active(ordered: list[Profile], at: datetime, tx_start: datetime | None) -> Constraint | None:
        for profile in ordered:
            period = active_period(profile, at, tx_start)
            if period is not None:
                return Constraint(profile.id, profile.purpose, period.limit, profile.unit, period.phases)
        return None


def native_limit(constraint: Constraint, *, dc: bool, phases: int, voltage_v: float) -> float:
    """A constraint in the connector's own control unit: per-phase amps on AC, watts on DC.

    On AC a limit in W is spread over the phases in use (the period's ``numberPhases``, default 3,
    never more than the connector has); on DC a limit in A is DC current at the pack voltage.
    """
    if dc:
        return constraint.limit * voltage_v if constraint.unit == RateUnit.AMPS else constraint.limit
    if constraint.unit == RateUnit.AMPS:
        return constraint.limit
    used = min(phases, constraint.phases or DEFAULT_AC_PHASES)
    return constraint.limit / (voltage_v * used)


@dataclass
class Actuator:
    """The power electronics: commands apply after ``reaction_delay_s``, then ramp at ``ramp_per_s``.

    ``value_at`` is a pure read; ``command`` records a new target when it differs from the last one.
    """

    value: float
    since: datetime
    reaction_delay_s: float = 1.5
    ramp_per_s: float = 10.0
    target: float = field(init=False)
    pending: list[tuple[datetime, float]] = field(default_factory=list)
    last_command: float | None = None

    def __post_init__(self) -> None:
        self.target = self.value

    def command(self, limit: float, at: datetime) -> None:
        if limit == self.last_command:
            return
        self.last_command = limit
        self.pending.append((at + timedelta(seconds=self.reaction_delay_s), limit))

    def value_at(self, at: datetime) -> float:
        value, since, target = self.value, self.since, self.target
        for effective, new_target in self.pending:
            if effective > at:
                break
            if effective > since:
                value, since = self._ramp(value, target, seconds_between(since, effective)), effective
            target = new_target
        return self._ramp(value, target, max(0.0, seconds_between(since, at)))

    def settle(self, at: datetime) -> None:
        """Fold every command that took effect by ``at`` into the state (keeps ``pending`` short)."""
        due = [item for item in self.pending if item[0] <= at]
        if not due:
            return
        last_effective = due[-1][0]
        value = self.value_at(last_effective)
        self.pending = self.pending[len(due):]
        self.value, self.since, self.target = value, max(self.since, last_effective), due[-1][1]

    def _ramp(self, value: float, target: float, seconds: float) -> float:
        if self.ramp_per_s <= 0:
            return target
        step = self.ramp_per_s * seconds
        return min(target, value + step) if target >= value else max(target, value - step)
