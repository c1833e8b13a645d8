"""Vehicle-to-grid readiness and a revenue estimate. Pure (standard library only).

- **Readiness** (:func:`readiness`): the badge (V2G Ready / Not Supported / Coming Soon) from the
  device model's ``bidirectional`` value; a model we do not know is *Not Supported*, with the
  reason, because promising a feature the hardware may lack is worse than under-promising.
- **Prerequisites** (:func:`prerequisites`): everything that must hold before discharge settings
  may be changed, each with whether it is met and what to do when it is not. The page keeps the
  controls disabled until :func:`all_met`.
- **Estimate** (:func:`estimate_revenue`): what arbitrage could earn a month from the stated
  assumptions. It is an estimate, not an offer: the result carries its assumptions and a label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

MIN_OCPP_VERSION: Final = "2.0.1"  # ISO 15118-20 bidirectional power transfer needs OCPP 2.0.1
ESTIMATE_LABEL: Final = "Estimate only: actual revenue depends on your tariff, your grid operator and your car."


class V2GReadiness(StrEnum):
    READY = "ready"
    NOT_SUPPORTED = "not_supported"
    COMING_SOON = "coming_soon"

    @property
    def label(self) -> str:
        return {"ready": "V2G Ready", "not_supported": "Not Supported", "coming_soon": "Coming Soon"}[self.value]


@dataclass(frozen=True, slots=True)
class ReadinessBadge:
    readiness: V2GReadiness
    explanation: str


def readiness(bidirectional: str | None, vendor: str | None, model: str | None) -> ReadinessBadge:
    """The badge for a charger whose device model says ``bidirectional`` (None: model unknown)."""
    name = " ".join(p for p in (vendor, model) if p) or "this charger"
    if bidirectional is None:
        return ReadinessBadge(V2GReadiness.NOT_SUPPORTED,
                              f"{name} is not in our device catalogue, so we cannot confirm it can discharge; "
                              "treated as not supported until its model is known.")
    try:
        value = V2GReadiness(bidirectional)
    except ValueError:
        return ReadinessBadge(V2GReadiness.NOT_SUPPORTED, f"Unknown readiness value {bidirectional!r} for {name}.")
    text = {
        V2GReadiness.READY: f"{name} supports bidirectional charging.",
        V2GReadiness.NOT_SUPPORTED: f"{name} cannot discharge a car into the grid.",
        V2GReadiness.COMING_SOON: f"{name} is expected to support bidirectional charging with a future firmware.",
    }[value]
    return ReadinessBadge(value, text)


@dataclass(frozen=True, slots=True)
class Prerequisite:
    name: str
    met: bool
    hint: str  # what to do when it is not met


def _version_at_least(version: str | None, minimum: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        out = []
        for p in v.strip().split("."):
            digits = "".join(ch for ch in p if ch.isdigit())
            out.append(int(digits) if digits else 0)
        return tuple(out)

    return version is not None and bool(version.strip()) and parts(version) >= parts(minimum)


def prerequisites(badge: ReadinessBadge, *, ocpp_version: str | None, vehicle_bidirectional: bool,
                  grid_approved: bool) -> tuple[Prerequisite, ...]:
    return (
        Prerequisite("Charger hardware supports V2G", badge.readiness is V2GReadiness.READY, badge.explanation),
        Prerequisite(f"Charger speaks OCPP {MIN_OCPP_VERSION} or newer",
                     _version_at_least(ocpp_version, MIN_OCPP_VERSION),
                     f"The charger reports OCPP {ocpp_version or 'unknown'}; a firmware update may add 2.0.1."),
        Prerequisite("Your car supports bidirectional charging", vehicle_bidirectional,
                     "Check your car's documentation, then confirm it here."),
        Prerequisite("Your grid operator approved feeding in", grid_approved,
                     "Register the charger with your grid operator, then confirm the approval here."),
    )


def all_met(items: tuple[Prerequisite, ...]) -> bool:
    return all(p.met for p in items)


# --------------------------------------------------------------------------- revenue estimate


class EstimateError(ValueError):
    """An assumption out of range (the message names it)."""


@dataclass(frozen=True, slots=True)
class RevenueAssumptions:
    battery_kwh: float = 60.0          # usable battery capacity
    cycles_per_month: float = 8.0      # discharge cycles offered to the grid
    depth_pct: float = 50.0            # share of the battery cycled (kept above the reserve)
    spread_eur_kwh: float = 0.12       # sell price minus buy price
    round_trip_efficiency: float = 0.85

    def __post_init__(self) -> None:
        checks = (("battery_kwh", self.battery_kwh, 0.0, 300.0), ("cycles_per_month", self.cycles_per_month, 0.0, 62.0),
                  ("depth_pct", self.depth_pct, 0.0, 100.0), ("spread_eur_kwh", self.spread_eur_kwh, -5.0, 5.0),
                  ("round_trip_efficiency", self.round_trip_efficiency, 0.0, 1.0))
        for name, value, lo, hi in checks:
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) \
                    or not lo <= value <= hi:
                raise EstimateError(f"{name} must be between {lo:g} and {hi:g}, got {value!r}")


@dataclass(frozen=True, slots=True)
class RevenueEstimate:
    assumptions: RevenueAssumptions
    energy_out_kwh_month: float        # delivered to the grid a month
    revenue_eur_month: float           # after losses; negative when the spread is
    revenue_eur_year: float
    label: str = ESTIMATE_LABEL


def estimate_revenue(a: RevenueAssumptions) -> RevenueEstimate:
    """Arbitrage a month: ``battery * depth * cycles`` kWh cycled, of which ``efficiency`` comes
    back out to the grid, each delivered kWh earning the spread (sell minus buy price per kWh
    delivered). A first-order estimate: no battery wear, fees or taxes."""
    cycled_kwh = a.battery_kwh * a.depth_pct / 100 * a.cycles_per_month
    energy_out = cycled_kwh * a.round_trip_efficiency
    revenue = energy_out * a.spread_eur_kwh
    return RevenueEstimate(a, round(energy_out, 3), round(revenue, 2), round(revenue * 12, 2))
