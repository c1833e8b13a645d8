"""EV and battery physics: what a car accepts at a given state of charge. Pure functions.

The car side of a charging session: an AC on-board charger limited in current and phases, a DC
inlet limited in power, both tapering above a state of charge (the constant-voltage phase of a
lithium battery). The meter in the charger measures grid-side energy; the battery receives that
energy times ``efficiency``.
"""

from __future__ import annotations

from dataclasses import dataclass

FULL_SOC = 100.0


@dataclass(frozen=True, slots=True)
class EvModel:
    name: str
    battery_wh: float
    ac_phases: int  # phases the on-board charger uses (1 or 3)
    ac_max_current_a: float  # per phase
    dc_max_power_w: float  # 0 when the car has no DC inlet
    ac_taper_start_soc: float = 80.0
    dc_taper_start_soc: float = 55.0
    taper_end_fraction: float = 0.08  # acceptance just below 100 %, relative to the maximum
    efficiency: float = 0.92

    def __post_init__(self) -> None:
        if self.battery_wh <= 0 or self.ac_phases not in (1, 2, 3) or self.ac_max_current_a <= 0:
            raise ValueError(f"implausible EV model {self.name!r}")


CATALOGUE: tuple[EvModel, ...] = (
    EvModel("compact-1ph", battery_wh=40_000, ac_phases=1, ac_max_current_a=32, dc_max_power_w=50_000),
    EvModel("midsize-3ph-11kW", battery_wh=64_000, ac_phases=3, ac_max_current_a=16, dc_max_power_w=100_000),
    EvModel("large-3ph-22kW", battery_wh=77_000, ac_phases=3, ac_max_current_a=32, dc_max_power_w=150_000),
    EvModel("phev-1ph", battery_wh=13_000, ac_phases=1, ac_max_current_a=16, dc_max_power_w=0,
            ac_taper_start_soc=90.0),
)


def taper_fraction(soc: float, taper_start_soc: float, end_fraction: float) -> float:
    """1.0 up to ``taper_start_soc``, then linearly down to ``end_fraction`` near 100 %, 0 when full."""
    if soc >= FULL_SOC:
        return 0.0
    if soc <= taper_start_soc:
        return 1.0
    progress = (soc - taper_start_soc) / (FULL_SOC - taper_start_soc)
    return 1.0 - (1.0 - end_fraction) * progress


def ac_current_limit_a(ev: EvModel, soc: float) -> float:
    """Per-phase current the car draws at most on AC."""
    return ev.ac_max_current_a * taper_fraction(soc, ev.ac_taper_start_soc, ev.taper_end_fraction)


def dc_power_limit_w(ev: EvModel, soc: float) -> float:
    return ev.dc_max_power_w * taper_fraction(soc, ev.dc_taper_start_soc, ev.taper_end_fraction)


def dc_voltage_v(soc: float) -> float:
    """Pack voltage of a nominal 400 V battery, rising with the state of charge."""
    return 340.0 + 0.8 * min(max(soc, 0.0), FULL_SOC)


def soc_after(ev: EvModel, soc: float, grid_energy_wh: float) -> float:
    """State of charge after ``grid_energy_wh`` measured at the charger went into the car."""
    return min(FULL_SOC, soc + grid_energy_wh * ev.efficiency / ev.battery_wh * 100.0)
