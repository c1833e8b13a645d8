"""Departure planning: charge in the cheapest allowed time that still meets the deadline. Pure.

Input: ``now``, the departure, the energy needed (see :func:`energy_needed_wh`), the vehicle's
maximum power (see :func:`max_power_w`), the tariff's :class:`~control.tariffs.PriceInterval` s
and the allowed windows (from schedules via :func:`windows_from_intervals`, or from the rule
engine via :func:`windows_from_rules`, which also carries current caps). ``allowed=None`` means
charging is allowed at any time.

Policy (:func:`plan_charging`):

1. ``[now, departure)`` is cut into slots on a UTC grid of ``slot`` (15 minutes by default; the
   first and last slots are partial), and further at every price and window edge, so each slot
   has one price and one power limit. A slot's limit is the vehicle's maximum, lowered by the
   window's cap; where windows overlap, the highest cap applies. Slots outside every allowed
   window, and slots whose limit is below ``min_power_w`` (the EV's minimum charging current),
   are never used.
2. Slots are ranked by net price, then by start time (on equal prices the earlier slot wins, so
   plans are deterministic and charge early when it costs nothing). A slot without a known price
   ranks after every priced slot.
3. Slots are taken in that order at full power until the energy is covered; the last one runs
   at the lower power that completes the energy (never below ``min_power_w``).
4. If even every usable slot at full power cannot deliver the energy, the plan is *all* usable
   slots at full power, which charges as much as possible as early as possible, and says so:
   ``deadline_at_risk=True`` with the ``shortfall_wh``.

The plan is recomputed on every cycle from the latest SoC (stateless, like allocation);
:func:`power_now_w` / :func:`current_now_a` say what the plan wants at an instant, and
:func:`departure_advice` turns the plan into what the control loop does now: charge (inside a
planned slot) or hold until the next one, with the plan named in the reason
("Off-peak plan: charging 23:00–05:00 at 0.21 EUR/kWh").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal, localcontext
from itertools import pairwise
from typing import Final

from control.contract import utc
from control.rules import RuleSpan
from control.schedules import Interval
from control.tariffs import PriceInterval

DEFAULT_SLOT: Final = timedelta(minutes=15)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR_S: Final = 3600.0
_ENERGY_EPSILON_WH: Final = 1e-6


class PlanningError(ValueError):
    """Planning inputs that make no sense (negative energy or power, a zero slot length...)."""


def energy_needed_wh(
    current_soc_pct: float, target_soc_pct: float, battery_capacity_wh: float, *, charge_efficiency: float = 1.0
) -> float:
    """Energy to draw from the grid to go from the current to the target SoC (0 if already there).

    ``charge_efficiency`` (0 < e <= 1) accounts for losses between the meter and the battery.
    """
    if not 0 < charge_efficiency <= 1:
        raise PlanningError(f"charge_efficiency must be in (0, 1], got {charge_efficiency}")
    if battery_capacity_wh < 0 or not (0 <= current_soc_pct <= 100 and 0 <= target_soc_pct <= 100):
        raise PlanningError("SoC must be within 0-100 % and the battery capacity >= 0")
    return max(0.0, (target_soc_pct - current_soc_pct) / 100 * battery_capacity_wh / charge_efficiency)


def max_power_w(current_a: float, phases: int, voltage_v: float = 230.0) -> float:
    """AC power of ``current_a`` per phase on ``phases`` phases at ``voltage_v`` phase to neutral."""
    return current_a * phases * voltage_v


@dataclass(frozen=True, slots=True)
class PowerWindow:
    """A stretch where charging is allowed, optionally at a lower power than the vehicle's maximum."""

    start: datetime
    end: datetime
    max_power_w: float | None = None  # None: the vehicle's maximum


def windows_from_intervals(intervals: Sequence[Interval]) -> tuple[PowerWindow, ...]:
    """Allowed windows from plain intervals (e.g. schedule occurrences), without a power cap."""
    return tuple(PowerWindow(i.start, i.end) for i in intervals)


def windows_from_rules(spans: Sequence[RuleSpan], phases: int, voltage_v: float = 230.0) -> tuple[PowerWindow, ...]:
    """Allowed windows from :func:`control.rules.rule_timeline`: paused spans are left out, caps kept."""
    return tuple(
        PowerWindow(
            span.start,
            span.end,
            None if span.outcome.cap_a is None else max_power_w(span.outcome.cap_a, phases, voltage_v),
        )
        for span in spans
        if not span.outcome.pause
    )


@dataclass(frozen=True, slots=True)
class PlannedSlot:
    start: datetime
    end: datetime
    power_w: float
    energy_wh: float
    price_per_kwh: Decimal | None  # net; None where no price was known


@dataclass(frozen=True, slots=True)
class ChargePlan:
    created_at: datetime
    departure: datetime
    energy_needed_wh: float
    planned_energy_wh: float
    slots: tuple[PlannedSlot, ...]  # in time order, disjoint
    deadline_at_risk: bool
    shortfall_wh: float  # energy_needed_wh the plan cannot deliver (0 unless at risk)
    estimated_cost_net: Decimal | None  # None when a planned slot has no price
    currency: str | None
    message: str


@dataclass(frozen=True, slots=True)
class _Slot:
    start: datetime
    end: datetime
    limit_w: float
    price: Decimal | None

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / _HOUR_S


def _grid(now: datetime, departure: datetime, slot: timedelta) -> set[datetime]:
    first = _EPOCH + ((now - _EPOCH) // slot + 1) * slot
    cuts = set()
    while first < departure:
        cuts.add(first)
        first += slot
    return cuts


def _limit_at(instant: datetime, windows: Sequence[PowerWindow] | None, vehicle_w: float) -> float | None:
    if windows is None:
        return vehicle_w
    caps = [
        vehicle_w if w.max_power_w is None else min(vehicle_w, w.max_power_w)
        for w in windows
        if w.start <= instant < w.end
    ]
    return max(caps) if caps else None


def _price_at(instant: datetime, prices: Sequence[PriceInterval]) -> Decimal | None:
    for interval in prices:
        if interval.start <= instant < interval.end:
            return interval.price.price_per_kwh
    return None


def _slots(
    now: datetime,
    departure: datetime,
    vehicle_w: float,
    prices: Sequence[PriceInterval],
    allowed: Sequence[PowerWindow] | None,
    slot: timedelta,
    min_power_w: float,
) -> list[_Slot]:
    cuts = {now, departure} | _grid(now, departure, slot)
    edges = [t for p in prices for t in (p.start, p.end)]
    edges += [utc(t) for w in allowed or () for t in (w.start, w.end)]
    cuts.update(t for t in edges if now < t < departure)
    result = []
    for lo, hi in pairwise(sorted(cuts)):
        limit = _limit_at(lo, allowed, vehicle_w)
        if limit is not None and limit > 0 and limit >= min_power_w:
            result.append(_Slot(lo, hi, limit, _price_at(lo, prices)))
    return result


def _merged(chosen: list[PlannedSlot]) -> tuple[PlannedSlot, ...]:
    out: list[PlannedSlot] = []
    for item in sorted(chosen, key=lambda s: s.start):
        last = out[-1] if out else None
        if last and (last.end, last.power_w, last.price_per_kwh) == (item.start, item.power_w, item.price_per_kwh):
            out[-1] = PlannedSlot(
                last.start, item.end, last.power_w, last.energy_wh + item.energy_wh, item.price_per_kwh
            )
        else:
            out.append(item)
    return tuple(out)


def plan_charging(
    now: datetime,
    departure: datetime,
    energy_needed_wh: float,
    vehicle_max_power_w: float,
    *,
    prices: Sequence[PriceInterval] = (),
    allowed: Sequence[PowerWindow] | None = None,
    slot: timedelta = DEFAULT_SLOT,
    min_power_w: float = 0.0,
) -> ChargePlan:
    """The cheapest plan that delivers ``energy_needed_wh`` before ``departure``; see the module docstring."""
    now, departure = utc(now), utc(departure)
    if slot <= timedelta(0) or energy_needed_wh < 0 or vehicle_max_power_w < 0 or min_power_w < 0:
        raise PlanningError("slot must be positive; energy and powers must be >= 0")
    currency = prices[0].price.currency if prices else None
    slots = _slots(now, departure, vehicle_max_power_w, prices, allowed, slot, min_power_w) if now < departure else []
    capacity_wh = sum(s.limit_w * s.hours for s in slots)
    at_risk = capacity_wh + _ENERGY_EPSILON_WH < energy_needed_wh
    chosen: list[PlannedSlot] = []
    if energy_needed_wh > 0:
        ranked = slots if at_risk else sorted(slots, key=lambda s: (s.price is None, s.price or Decimal(0), s.start))
        remaining = energy_needed_wh
        for item in ranked:
            if remaining <= _ENERGY_EPSILON_WH:
                break
            full_wh = item.limit_w * item.hours
            power = item.limit_w if full_wh <= remaining else max(remaining / item.hours, min_power_w)
            energy = power * item.hours
            chosen.append(PlannedSlot(item.start, item.end, power, energy, item.price))
            remaining -= energy
    planned = sum(s.energy_wh for s in chosen)
    shortfall = max(0.0, energy_needed_wh - planned) if at_risk else 0.0
    cost = None
    if all(s.price_per_kwh is not None for s in chosen):
        with localcontext() as ctx:
            ctx.prec = 50
            cost = sum(
                (Decimal(repr(s.energy_wh)) / 1000 * (s.price_per_kwh or Decimal(0)) for s in chosen), Decimal(0)
            )
    if energy_needed_wh <= 0:
        message = "Target already reached: nothing to charge"
    elif at_risk:
        message = (
            f"Deadline at risk: at most {planned / 1000:.1f} of {energy_needed_wh / 1000:.1f} kWh can be "
            f"delivered before departure in the allowed windows; charging as early as possible"
        )
    else:
        message = f"{energy_needed_wh / 1000:.1f} kWh planned in the cheapest allowed slots before departure"
    return ChargePlan(
        now, departure, energy_needed_wh, planned, _merged(chosen), at_risk, shortfall, cost, currency, message
    )


def planned_slot_at(plan: ChargePlan, now: datetime) -> PlannedSlot | None:
    now = utc(now)
    for item in plan.slots:
        if item.start <= now < item.end:
            return item
    return None


def power_now_w(plan: ChargePlan, now: datetime) -> float:
    """The power the plan wants at ``now`` (0 between slots)."""
    item = planned_slot_at(plan, now)
    return 0.0 if item is None else item.power_w


def should_charge_now(plan: ChargePlan, now: datetime) -> bool:
    return power_now_w(plan, now) > 0


def current_now_a(plan: ChargePlan, now: datetime, phases: int, voltage_v: float = 230.0) -> float:
    """The per-phase current the plan wants at ``now`` (power / (phases x voltage))."""
    return power_now_w(plan, now) / (phases * voltage_v)


# --------------------------------------------------------------------------- the plan in the control loop

OFF_PEAK_PLAN: Final = "Off-peak plan"


@dataclass(frozen=True, slots=True)
class PlanAdvice:
    """What a departure's cheapest-window plan wants from the allocation at one instant.

    ``charge_now``: inside a planned slot (charge, at most ``cap_a``); otherwise hold (pause) until
    the next slot. ``at_risk``: even every remaining slot at full power cannot meet the deadline,
    so the plan does not hold anything and the allocation's "deadline at risk" class takes over.
    ``next_change``: the next slot edge, when the advice changes by the clock alone.
    """

    charge_now: bool
    at_risk: bool
    reason: str
    cap_a: float | None = None
    slot: PlannedSlot | None = None  # the current slot, else the next one
    next_change: datetime | None = None
    plan: ChargePlan | None = None


def _local(instant: datetime, zone: tzinfo) -> str:
    return instant.astimezone(zone).strftime("%H:%M")


def _price_text(price: Decimal | None, currency: str | None) -> str:
    if price is None:
        return "at an unknown price"
    shown = price.quantize(Decimal("0.01")) if price == price.quantize(Decimal("0.01")) else price.normalize()
    return f"at {shown} {currency or ''}/kWh".replace(" /kWh", "/kWh")


def plan_reason(slot: PlannedSlot, zone: tzinfo, currency: str | None) -> str:
    """E.g. "Off-peak plan: charging 23:00–05:00 at 0.21 EUR/kWh" (local times of ``zone``)."""
    return (f"{OFF_PEAK_PLAN}: charging {_local(slot.start, zone)}–{_local(slot.end, zone)} "
            f"{_price_text(slot.price_per_kwh, currency)}")


def _span(plan: ChargePlan, first: PlannedSlot | None) -> PlannedSlot | None:
    """``first`` extended over the planned slots that follow it without a gap at the same price (a
    last slot at lower power is the same stretch of charging to a person reading the reason)."""
    if first is None:
        return None
    span = first
    for item in plan.slots:
        if item.start == span.end and item.price_per_kwh == span.price_per_kwh:
            span = PlannedSlot(span.start, item.end, span.power_w, span.energy_wh + item.energy_wh,
                               span.price_per_kwh)
    return span


def departure_advice(
    now: datetime,
    departure: datetime,
    energy_needed_wh: float,
    *,
    max_current_a: float,
    min_current_a: float,
    phases: int,
    prices: Sequence[PriceInterval],
    zone: tzinfo,
    voltage_v: float = 230.0,
    slot: timedelta = DEFAULT_SLOT,
) -> PlanAdvice | None:
    """The plan's advice for a vehicle that may charge at up to ``max_current_a`` (its mode's cap)
    on ``phases``; None when a plan has nothing to say: nothing to charge, the departure passed,
    or one price (or none) over the whole time left, where waiting cannot save anything.

    The plan is recomputed from scratch at every call (stateless, like the allocation): what the
    vehicle got less than planned shows up in ``energy_needed_wh`` and moves the plan.
    """
    now, departure = utc(now), utc(departure)
    if energy_needed_wh <= 0 or departure <= now:
        return None
    ahead = [p for p in prices if p.end > now and p.start < departure]
    if len({p.price.price_per_kwh for p in ahead}) < 2:
        return None
    plan = plan_charging(now, departure, energy_needed_wh, max_power_w(max_current_a, phases, voltage_v),
                         prices=ahead, slot=slot, min_power_w=max_power_w(min_current_a, phases, voltage_v))
    if plan.deadline_at_risk:
        return PlanAdvice(True, True, plan.message, plan=plan)
    current = _span(plan, planned_slot_at(plan, now))
    if current is not None:
        # The slot's power, rounded up to a tenth of an ampere, never under the minimum current.
        amps = math.ceil(current.power_w / (phases * voltage_v) * 10 - 1e-6) / 10
        return PlanAdvice(True, False, plan_reason(current, zone, plan.currency),
                          min(max_current_a, max(min_current_a, amps)), current, current.end, plan)
    upcoming = _span(plan, next((s for s in plan.slots if s.start > now), None))
    if upcoming is None:  # (cannot happen: a plan that is not at risk covers the energy in slots)
        return None
    return PlanAdvice(False, False, plan_reason(upcoming, zone, plan.currency), None, upcoming, upcoming.start, plan)
