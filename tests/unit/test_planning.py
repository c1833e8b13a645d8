"""control.planning: cheapest allowed slots before departure, deadline at risk, deterministic ties."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control.contract import ChargingMode
from control.planning import (
    PlanningError,
    PowerWindow,
    current_now_a,
    energy_needed_wh,
    max_power_w,
    plan_charging,
    power_now_w,
    should_charge_now,
    windows_from_intervals,
    windows_from_rules,
)
from control.rules import Action, Condition, Rule, RuleContext, rule_timeline
from control.schedules import Schedule, WeeklyWindow, occurrences
from control.tariffs import PriceWindow, Tariff, TariffVersion, price_intervals

D = Decimal
NOW = datetime(2024, 6, 3, 16, 0, tzinfo=UTC)  # Monday 18:00 in Berlin
DEPART = NOW + timedelta(hours=14)  # Tuesday 08:00 in Berlin
KW11 = max_power_w(16, 3)  # 11,040 W

TOU = Tariff(
    "t",
    "EUR",
    "Europe/Berlin",
    (
        TariffVersion(
            datetime(2024, 1, 1, tzinfo=UTC),
            D("0.30"),
            D("0.19"),
            (PriceWindow(WeeklyWindow(time(23), time(6)), D("0.20"), "off-peak"),),
        ),
    ),
)
PRICES = price_intervals(TOU, NOW, DEPART)


def h(hours: float) -> datetime:
    return NOW + timedelta(hours=hours)


def test_helpers() -> None:
    assert energy_needed_wh(20, 80, 60_000) == pytest.approx(36_000)
    assert energy_needed_wh(20, 80, 60_000, charge_efficiency=0.9) == pytest.approx(40_000)
    assert energy_needed_wh(90, 80, 60_000) == 0
    assert max_power_w(16, 3) == 11_040
    with pytest.raises(PlanningError):
        energy_needed_wh(20, 120, 60_000)


def test_the_cheapest_window_is_used_first() -> None:
    plan = plan_charging(NOW, DEPART, 22_080, KW11, prices=PRICES)  # exactly two hours at 11 kW
    assert [(s.start, s.end, s.power_w, s.price_per_kwh) for s in plan.slots] == [(h(5), h(7), KW11, D("0.20"))]
    assert not plan.deadline_at_risk and plan.planned_energy_wh == pytest.approx(22_080)
    assert plan.estimated_cost_net == pytest.approx(D("4.416")) and plan.currency == "EUR"
    assert not should_charge_now(plan, NOW) and should_charge_now(plan, h(5))
    assert power_now_w(plan, h(6.99)) == KW11 and power_now_w(plan, h(7)) == 0
    assert current_now_a(plan, h(6), 3) == pytest.approx(16)


def test_more_than_the_cheap_window_spills_into_the_earliest_dearer_slots() -> None:
    plan = plan_charging(NOW, DEPART, 8 * KW11, KW11, prices=PRICES)  # 7 h off-peak + 1 h more
    assert [(s.start, s.end, s.price_per_kwh) for s in plan.slots] == [
        (h(0), h(1), D("0.30")),  # equal price: the earlier slot wins
        (h(5), h(12), D("0.20")),
    ]


def test_the_last_slot_runs_at_reduced_power_but_not_below_the_minimum() -> None:
    plan = plan_charging(NOW, DEPART, KW11 / 8, KW11, prices=PRICES)  # half a 15-min slot of energy
    (slot,) = plan.slots
    assert (slot.start, slot.end) == (h(5), h(5.25)) and slot.power_w == pytest.approx(KW11 / 2)
    floor = plan_charging(NOW, DEPART, 100, KW11, prices=PRICES, min_power_w=max_power_w(6, 3))
    assert floor.slots[0].power_w == max_power_w(6, 3) and floor.planned_energy_wh >= 100


def test_deadline_at_risk_charges_everything_as_early_as_possible() -> None:
    window = PowerWindow(h(2), h(4))  # 2 h allowed, 10 h worth needed
    plan = plan_charging(NOW, DEPART, 10 * KW11, KW11, prices=PRICES, allowed=[window])
    assert plan.deadline_at_risk
    assert [(s.start, s.end, s.power_w) for s in plan.slots] == [(h(2), h(4), KW11)]
    assert plan.shortfall_wh == pytest.approx(8 * KW11)
    assert plan.message.startswith("Deadline at risk")
    late = plan_charging(DEPART, DEPART, 1000, KW11)
    assert late.deadline_at_risk and late.slots == () and late.shortfall_wh == 1000


def test_nothing_to_do() -> None:
    plan = plan_charging(NOW, DEPART, 0, KW11, prices=PRICES)
    assert plan.slots == () and not plan.deadline_at_risk and "nothing to charge" in plan.message


def test_without_prices_charge_as_early_as_possible_and_say_no_cost() -> None:
    plan = plan_charging(h(0.1), DEPART, KW11, KW11)  # the first slot is partial: 6 min to the grid
    assert [(s.start, s.end) for s in plan.slots] == [(h(0.1), h(1)), (h(1), h(1.25))]
    assert [s.power_w for s in plan.slots] == pytest.approx([KW11, KW11 * 0.4])  # 6 minutes' energy over 15
    assert plan.estimated_cost_net is None and plan.currency is None


def test_windows_from_schedules_and_rules() -> None:
    off_peak = Schedule("w", "Europe/Berlin", WeeklyWindow(time(0), time(4)))
    allowed = windows_from_intervals([o.interval for o in occurrences(off_peak, NOW, DEPART)])
    plan = plan_charging(NOW, DEPART, 3 * KW11, KW11, allowed=allowed)
    assert (plan.slots[0].start, plan.slots[-1].end) == (h(6), h(9))

    rules = [
        Rule("p", "Off-peak only", Action.pause(), condition=Condition(off_peak, outside=True)),
        Rule("c", "Limit to 10 A", Action.cap_current(10)),
    ]
    spans = rule_timeline(rules, RuleContext("s", "c1", 1, ChargingMode.ECO), NOW, DEPART)
    allowed = windows_from_rules(spans, phases=3)
    plan = plan_charging(NOW, DEPART, 4 * KW11, KW11, allowed=allowed)
    assert plan.deadline_at_risk  # 4 h at 6.9 kW is less than 4 h at 11 kW
    assert [(s.start, s.end, s.power_w) for s in plan.slots] == [(h(6), h(10), max_power_w(10, 3))]


def test_invalid_inputs() -> None:
    with pytest.raises(PlanningError):
        plan_charging(NOW, DEPART, -1, KW11)
    with pytest.raises(PlanningError):
        plan_charging(NOW, DEPART, 1, KW11, slot=timedelta(0))


# --------------------------------------------------------------------------- properties


@st.composite
def windows(draw: st.DrawFn) -> list[PowerWindow]:
    found = []
    for start_min, length_min, cap in draw(
        st.lists(st.tuples(st.integers(-60, 900), st.integers(1, 300), st.none() | st.floats(1000, 22_000)), max_size=5)
    ):
        found.append(
            PowerWindow(NOW + timedelta(minutes=start_min), NOW + timedelta(minutes=start_min + length_min), cap)
        )
    return found


@settings(max_examples=150, deadline=None)
@given(
    allowed=st.none() | windows(),
    needed=st.floats(0, 200_000),
    offset_s=st.integers(0, 3600),
    hours=st.integers(0, 16),
)
def test_plans_stay_in_allowed_windows_before_departure_and_meet_feasible_targets(
    allowed: list[PowerWindow] | None, needed: float, offset_s: int, hours: int
) -> None:
    now = NOW + timedelta(seconds=offset_s)
    departure = NOW + timedelta(hours=hours)
    prices = price_intervals(TOU, now, departure) if now < departure else ()
    plan = plan_charging(now, departure, needed, KW11, prices=prices, allowed=allowed)
    for slot in plan.slots:
        assert now <= slot.start < slot.end <= departure
        assert 0 < slot.power_w <= KW11 + 1e-9
        if allowed is not None:  # inside the windows and within their caps at every edge the slot spans
            edges = {slot.start} | {t for w in allowed for t in (w.start, w.end) if slot.start < t < slot.end}
            for edge in edges:
                caps = [w.max_power_w or KW11 for w in allowed if w.start <= edge < w.end]
                assert caps and slot.power_w <= max(caps) + 1e-9
    assert all(a.end <= b.start for a, b in zip(plan.slots, plan.slots[1:], strict=False))
    if not plan.deadline_at_risk:
        assert plan.planned_energy_wh >= needed - 1e-6
    else:
        assert plan.planned_energy_wh < needed
    assert plan == plan_charging(now, departure, needed, KW11, prices=prices, allowed=allowed)  # deterministic
