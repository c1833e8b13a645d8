"""Charging modes: Standard, Eco and Boost, as words, as policy and as an ETA.

Standard library only, no IO, no clock reads (``now`` is a parameter).

- **Words** (:data:`MODE_DESCRIPTIONS`): the title, short subtext, long text and Boost's
  peak-demand warning every front end shows, so the app, the dashboards and the CLI say the same.
- **Policy** (:class:`ModePolicy`, :func:`priority_class`): who gets capacity first and how much.
  Allocation serves priority classes in the order Boost > deadline at risk > Standard > Eco and
  shares fairly within a class. Eco is capped at a fraction of the charger's hardware maximum
  (and optionally an absolute cap), never below the minimum charging current. Standard has no
  mode cap: a fair share of what the site allows. Boost has no mode cap and the highest
  priority: the most hardware and site allow. A session whose departure deadline is at risk
  (the planner says so) is served right after Boost, and its Eco cap is lifted: the owner's
  deadline wins over saving.
- **Requests** (:func:`validate_mode_change`): switching to Boost needs ``confirmed=True``
  carried with the request (the user saw the warning); without it the result says so and
  nothing changes. A user error returns a result, it never raises. Every request yields a
  :class:`ModeChangeRecord` for the audit log, refused ones included.
- **ETA** (:func:`estimate_eta`): from SoC, target SoC, battery size (if known) and the current
  the mode would get, with a linear power taper above 80 % SoC. Without a battery size there is
  no honest estimate: the result says "unknown" and why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from control.contract import ChargingMode
from control.site import SiteModelError, require_utc

# --------------------------------------------------------------------------- words


@dataclass(frozen=True, slots=True)
class ModeDescription:
    mode: ChargingMode
    title: str
    subtext: str  # one line under the segmented control
    description: str  # the long plain-English text
    warning: str | None = None  # shown in a confirmation dialog before the mode is applied

    @property
    def requires_confirmation(self) -> bool:
        return self.warning is not None


BOOST_WARNING: Final = (
    "Boost charges at the highest current your charger and site allow. This can raise your peak "
    "demand, which some tariffs charge extra for, and it leaves less capacity for other chargers "
    "on the site. Boost stays on until the session ends or you choose another mode."
)

MODE_DESCRIPTIONS: Final[Mapping[ChargingMode, ModeDescription]] = MappingProxyType(
    {
        ChargingMode.STANDARD: ModeDescription(
            ChargingMode.STANDARD,
            "Standard",
            "Balanced everyday charging",
            "Charges at a steady current shared fairly with the other cars on the site, within the limits "
            "of your charger, your cable and your building's breakers.",
        ),
        ChargingMode.ECO: ModeDescription(
            ChargingMode.ECO,
            "Eco",
            "Lower current, lower demand and cost",
            "Charges at a reduced current and gives way to other cars when capacity is short. This keeps "
            "your peak demand and cost down; charging takes longer.",
        ),
        ChargingMode.BOOST: ModeDescription(
            ChargingMode.BOOST,
            "Boost",
            "Fastest charging for urgent needs",
            "Charges at the highest current your charger and site allow, ahead of the other cars. Use it "
            "when you need the car soon.",
            warning=BOOST_WARNING,
        ),
    }
)


def describe(mode: ChargingMode) -> ModeDescription:
    return MODE_DESCRIPTIONS[mode]


# --------------------------------------------------------------------------- policy


class PriorityClass(StrEnum):
    """Allocation classes, highest first; see :attr:`rank`."""

    BOOST = "boost"
    DEADLINE = "deadline"  # a departure deadline is at risk (the planner says so)
    STANDARD = "standard"
    ECO = "eco"

    @property
    def rank(self) -> int:
        """0 is served first."""
        return _RANKS[self]


_RANKS: Final = {PriorityClass.BOOST: 0, PriorityClass.DEADLINE: 1, PriorityClass.STANDARD: 2, PriorityClass.ECO: 3}


def priority_class(mode: ChargingMode, deadline_at_risk: bool = False) -> PriorityClass:
    if mode is ChargingMode.BOOST:
        return PriorityClass.BOOST
    if deadline_at_risk:
        return PriorityClass.DEADLINE
    return PriorityClass.ECO if mode is ChargingMode.ECO else PriorityClass.STANDARD


@dataclass(frozen=True, slots=True)
class ModePolicy:
    """How much current a mode may take at most: Eco's cap (Standard and Boost have none)."""

    eco_fraction: float = 0.5  # of the charger's hardware maximum
    eco_max_a: float | None = None  # an absolute cap on top, if set

    def __post_init__(self) -> None:
        if not (isinstance(self.eco_fraction, int | float) and 0 < self.eco_fraction <= 1):
            raise SiteModelError(f"eco_fraction must be in (0, 1], got {self.eco_fraction!r}")
        if self.eco_max_a is not None and not (isinstance(self.eco_max_a, int | float) and self.eco_max_a >= 0):
            raise SiteModelError(f"eco_max_a must be >= 0, got {self.eco_max_a!r}")

    def mode_cap_a(
        self, mode: ChargingMode, hardware_max_a: float, min_current_a: float, deadline_at_risk: bool = False
    ) -> float | None:
        """The mode's own cap in A, or None when the mode adds none.

        Eco never goes below the minimum charging current: a mode must not pause a car by itself.
        """
        if mode is not ChargingMode.ECO or deadline_at_risk:
            return None
        cap = hardware_max_a * self.eco_fraction
        if self.eco_max_a is not None:
            cap = min(cap, self.eco_max_a)
        return max(cap, min_current_a)


# --------------------------------------------------------------------------- requests


class ModeChangeStatus(StrEnum):
    ACCEPTED = "accepted"
    UNCHANGED = "unchanged"  # already in that mode
    CONFIRMATION_REQUIRED = "confirmation_required"  # Boost without confirmed=True
    REJECTED = "rejected"  # not a mode we know


@dataclass(frozen=True, slots=True)
class ModeChange:
    """A user's request to switch a connector's mode; ``mode`` is the raw value from the front end."""

    charger_id: str
    connector_id: int
    mode: str
    requested_by: str
    requested_at: datetime
    current_mode: ChargingMode = ChargingMode.STANDARD
    confirmed: bool = False  # the user confirmed Boost's warning
    session_id: str | None = None

    def __post_init__(self) -> None:
        require_utc("requested_at", self.requested_at)


@dataclass(frozen=True, slots=True)
class ModeChangeRecord:
    """What the audit log keeps of a mode request, whatever its outcome."""

    ts: datetime
    charger_id: str
    connector_id: int
    session_id: str | None
    requested_by: str
    requested_mode: str
    from_mode: ChargingMode
    to_mode: ChargingMode  # the mode in force after the request
    status: ModeChangeStatus
    confirmed: bool
    warning_shown: str | None  # the warning the user confirmed (Boost), for the record


@dataclass(frozen=True, slots=True)
class ModeChangeResult:
    status: ModeChangeStatus
    mode: ChargingMode  # the mode in force after the request
    message: str  # plain English for the user
    record: ModeChangeRecord

    @property
    def accepted(self) -> bool:
        return self.status in (ModeChangeStatus.ACCEPTED, ModeChangeStatus.UNCHANGED)


def validate_mode_change(request: ModeChange) -> ModeChangeResult:
    """Decide whether a mode switch goes ahead; refusals are results, not exceptions."""
    try:
        target = ChargingMode(str(request.mode).strip().lower())
    except ValueError:
        known = ", ".join(d.title for d in MODE_DESCRIPTIONS.values())
        return _result(
            request,
            ModeChangeStatus.REJECTED,
            request.current_mode,
            f"{str(request.mode)[:40]!r} is not a charging mode; choose {known}.",
        )
    if target is request.current_mode:
        return _result(request, ModeChangeStatus.UNCHANGED, target, f"Already charging in {describe(target).title}.")
    warning = describe(target).warning
    if warning is not None and request.confirmed is not True:
        return _result(
            request,
            ModeChangeStatus.CONFIRMATION_REQUIRED,
            request.current_mode,
            f"{describe(target).title} needs your confirmation: {warning}",
        )
    return _result(
        request, ModeChangeStatus.ACCEPTED, target, f"Switched to {describe(target).title}.", warning_shown=warning
    )


def _result(
    request: ModeChange, status: ModeChangeStatus, mode: ChargingMode, message: str, warning_shown: str | None = None
) -> ModeChangeResult:
    record = ModeChangeRecord(
        ts=request.requested_at,
        charger_id=request.charger_id,
        connector_id=request.connector_id,
        session_id=request.session_id,
        requested_by=request.requested_by,
        requested_mode=str(request.mode)[:40],
        from_mode=request.current_mode,
        to_mode=mode,
        status=status,
        confirmed=request.confirmed is True,
        warning_shown=warning_shown,
    )
    return ModeChangeResult(status=status, mode=mode, message=message, record=record)


# --------------------------------------------------------------------------- ETA

TAPER_START_PCT: Final = 80.0
TAPER_END_FRACTION: Final = 0.3  # power at 100 % SoC as a fraction of the untapered power
CHARGING_EFFICIENCY: Final = 0.9  # grid to battery, typical for AC charging


class EtaStatus(StrEnum):
    ESTIMATED = "estimated"
    REACHED = "reached"  # already at or above the target
    UNKNOWN_BATTERY = "unknown_battery"
    UNKNOWN_SOC = "unknown_soc"
    NOT_CHARGING = "not_charging"  # no current (paused, or the mode would get none)


@dataclass(frozen=True, slots=True)
class EtaEstimate:
    status: EtaStatus
    finish_at: datetime | None
    duration_s: float | None
    text: str  # plain English for the ETA chip
    power_w: float  # untapered charging power the estimate assumes (grid side)
    energy_wh: float | None  # energy into the battery still needed

    @property
    def known(self) -> bool:
        return self.finish_at is not None


def estimate_eta(
    soc_pct: float | None,
    target_soc_pct: float,
    battery_wh: float | None,
    current_a: float,
    phases: int,
    voltage_v: float = 230.0,
    *,
    now: datetime,
) -> EtaEstimate:
    """When the battery reaches ``target_soc_pct`` at ``current_a`` on ``phases`` phases.

    Power is ``current_a * phases * voltage_v * 0.9`` (efficiency) up to 80 % SoC, then falls
    linearly to 30 % of that at 100 % SoC (cars taper as they fill); the time in the taper is the
    exact integral of that curve. No battery size, no SoC or no current: ``finish_at`` is None
    and ``text`` says why. ``now`` must be UTC; the result is rounded to whole seconds.
    """
    require_utc("now", now)
    if not 1 <= phases <= 3:
        raise SiteModelError(f"phases must be 1, 2 or 3, got {phases}")
    power_w = max(current_a, 0.0) * phases * voltage_v
    if soc_pct is None:
        return EtaEstimate(
            EtaStatus.UNKNOWN_SOC, None, None, "ETA unknown: the car does not report its charge level", power_w, None
        )
    soc, target = min(max(soc_pct, 0.0), 100.0), min(max(target_soc_pct, 0.0), 100.0)
    if soc >= target:
        return EtaEstimate(EtaStatus.REACHED, now, 0.0, f"Reached {target:.0f} %", power_w, 0.0)
    if battery_wh is None or battery_wh <= 0:
        return EtaEstimate(EtaStatus.UNKNOWN_BATTERY, None, None, "ETA unknown: battery size not known", power_w, None)
    energy_wh = battery_wh * (target - soc) / 100
    if power_w <= 0:
        return EtaEstimate(
            EtaStatus.NOT_CHARGING, None, None, "ETA unknown: not charging at the moment", power_w, energy_wh
        )
    battery_w = power_w * CHARGING_EFFICIENCY
    hours = _hours(soc, min(target, TAPER_START_PCT), battery_wh, battery_w)
    if target > TAPER_START_PCT:
        hours += _taper_hours(max(soc, TAPER_START_PCT), target, battery_wh, battery_w)
    seconds = round(hours * 3600)
    return EtaEstimate(
        EtaStatus.ESTIMATED,
        now + timedelta(seconds=seconds),
        float(seconds),
        f"About {_duration_text(seconds)} to {target:.0f} %",
        power_w,
        energy_wh,
    )


def _hours(from_pct: float, to_pct: float, battery_wh: float, battery_w: float) -> float:
    return max(to_pct - from_pct, 0.0) / 100 * battery_wh / battery_w


def _taper_hours(from_pct: float, to_pct: float, battery_wh: float, battery_w: float) -> float:
    # Power p(x) = P * (1 - k x) over x = (soc - 80) / 20 in [0, 1]; time = integral of dE / p.
    k = 1 - TAPER_END_FRACTION
    span = 100 - TAPER_START_PCT
    x1, x2 = (from_pct - TAPER_START_PCT) / span, (to_pct - TAPER_START_PCT) / span
    return battery_wh * span / 100 / (battery_w * k) * math.log((1 - k * x1) / (1 - k * x2))


def _duration_text(seconds: int) -> str:
    minutes = max(1, round(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    if hours == 0:
        return f"{minutes} min"
    return f"{hours} h" if minutes == 0 else f"{hours} h {minutes} min"
