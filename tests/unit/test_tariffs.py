"""control.tariffs: flat and time-of-use prices, effective-dated versions, the cost of a meter curve."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control.schedules import WORKDAYS, WeeklyWindow
from control.tariffs import (
    ADD_TARIFF_MESSAGE,
    CostStatus,
    PriceWindow,
    Tariff,
    TariffError,
    TariffVersion,
    cost_of_curve,
    flat_tariff,
    price_at,
    price_intervals,
)

D = Decimal
V1 = datetime(2024, 1, 1, tzinfo=UTC)
V2 = datetime(2024, 7, 1, 12, tzinfo=UTC)  # a mid-day price change (14:00 in Berlin)


def utc(mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(2024, mo, d, h, mi, tzinfo=UTC)


OFF_PEAK = PriceWindow(WeeklyWindow(time(23), time(6)), D("0.20"), "off-peak")
PEAK = PriceWindow(WeeklyWindow(time(17), time(20), WORKDAYS), D("0.45"), "peak")
TOU = Tariff(
    "t1",
    "EUR",
    "Europe/Berlin",
    (
        TariffVersion(V1, D("0.30"), D("0.19"), (OFF_PEAK, PEAK)),
        TariffVersion(V2, D("0.35"), D("0.19"), (OFF_PEAK,)),
    ),
)
FLAT = flat_tariff("f", "EUR", "Europe/Berlin", D("0.30"), D("0.19"), V1)


@pytest.mark.parametrize(
    ("instant", "price", "label"),
    [
        (utc(6, 3, 10), D("0.30"), "standard"),  # Monday 12:00 local
        (utc(6, 3, 15), D("0.45"), "peak"),  # Monday 17:00 local
        (utc(6, 8, 15), D("0.30"), "standard"),  # Saturday 17:00: no peak at weekends
        (utc(6, 3, 21), D("0.20"), "off-peak"),  # 23:00 local
        (utc(6, 4, 3, 59), D("0.20"), "off-peak"),  # 05:59 local the next morning
        (utc(7, 1, 11, 59), D("0.30"), "standard"),  # the last minute of version 1
        (utc(7, 1, 12), D("0.35"), "standard"),  # version 2
        (utc(1, 15, 22), D("0.20"), "off-peak"),  # winter: 23:00 CET
    ],
)
def test_price_at(instant: datetime, price: Decimal, label: str) -> None:
    found = price_at(TOU, instant)
    assert found is not None and (found.price_per_kwh, found.label, found.currency) == (price, label, "EUR")


def test_no_price_before_the_first_version() -> None:
    assert price_at(TOU, utc(1, 1) - timedelta(seconds=1)) is None
    assert price_intervals(TOU, datetime(2023, 12, 31, 23, tzinfo=UTC), utc(1, 1, 1))[0].start == utc(1, 1)


def test_price_intervals_split_at_windows_and_versions() -> None:
    found = price_intervals(TOU, utc(7, 1, 2), utc(7, 2, 2))  # Monday 04:00 local to Tuesday 04:00
    assert [(i.start, i.end, i.price.price_per_kwh) for i in found] == [
        (utc(7, 1, 2), utc(7, 1, 4), D("0.20")),  # off-peak until 06:00 local
        (utc(7, 1, 4), utc(7, 1, 12), D("0.30")),  # version 1 standard
        (utc(7, 1, 12), utc(7, 1, 21), D("0.35")),  # version 2 from 14:00 local: no peak any more
        (utc(7, 1, 21), utc(7, 2, 2), D("0.20")),
    ]


def test_dst_night_off_peak_is_an_hour_shorter() -> None:
    found = price_intervals(TOU, datetime(2024, 3, 30, 12, tzinfo=UTC), datetime(2024, 3, 31, 12, tzinfo=UTC))
    (off_peak,) = [i for i in found if i.price.label == "off-peak"]
    assert off_peak.end - off_peak.start == timedelta(hours=6)


# --------------------------------------------------------------------------- cost of a curve


def test_flat_cost_with_vat_and_rounding() -> None:
    cost = cost_of_curve(FLAT, [(utc(6, 3, 10), 1000.0), (utc(6, 3, 11), 11_000.0)])
    assert cost.status is CostStatus.COSTED
    assert (cost.net, cost.vat, cost.gross, cost.currency) == (D("3.00"), D("0.57"), D("3.57"), "EUR")
    assert cost.energy_wh == D("10000.0")
    half_cent = cost_of_curve(FLAT, [(utc(6, 3, 10), 0.0), (utc(6, 3, 11), 15.0)])  # 0.0045 EUR net
    assert (half_cent.net, half_cent.vat, half_cent.gross) == (D("0.00"), D("0.00"), D("0.00"))
    rounds_up = cost_of_curve(FLAT, [(utc(6, 3, 10), 0.0), (utc(6, 3, 11), 50.0)])  # 0.015 -> 0.02 half-up
    assert rounds_up.net == D("0.02")


def test_a_session_across_a_price_change_is_split_linearly() -> None:
    # 22:00-00:00 local at a steady 11 kW: one hour standard, one hour off-peak
    cost = cost_of_curve(TOU, [(utc(6, 3, 20), 0.0), (utc(6, 3, 22), 22_000.0)])
    assert [(ln.price.label, ln.energy_wh, ln.net) for ln in cost.lines] == [
        ("standard", D("11000"), D("3.30")),
        ("off-peak", D("11000"), D("2.20")),
    ]
    assert (cost.net, cost.vat, cost.gross) == (D("5.50"), D("1.05"), D("6.55"))


def test_a_session_across_a_tariff_version_is_costed_at_each_price() -> None:
    cost = cost_of_curve(TOU, [(utc(7, 1, 11), 0.0), (utc(7, 1, 11, 30), 3000.0), (utc(7, 1, 13), 9000.0)])
    assert [(ln.price.price_per_kwh, ln.energy_wh) for ln in cost.lines] == [(D("0.30"), D(5000)), (D("0.35"), D(4000))]
    assert cost.net == D("2.90")


def test_a_session_across_midnight_and_a_month_end() -> None:
    cost = cost_of_curve(FLAT, [(utc(5, 31, 21), 0.0), (utc(6, 1, 1), 8000.0)])
    assert cost.net == D("2.40") and cost.status is CostStatus.COSTED


def test_no_tariff_is_said_explicitly_never_a_zero() -> None:
    cost = cost_of_curve(None, [(utc(6, 3, 10), 0.0), (utc(6, 3, 11), 5000.0)])
    assert cost.status is CostStatus.NO_TARIFF
    assert (cost.net, cost.vat, cost.gross, cost.currency) == (None, None, None, None)
    assert cost.message == ADD_TARIFF_MESSAGE and cost.uncosted_energy_wh == D("5000.0")


def test_energy_before_the_first_version_is_uncosted() -> None:
    cost = cost_of_curve(FLAT, [(datetime(2023, 12, 31, 23, tzinfo=UTC), 0.0), (utc(1, 1, 1), 2000.0)])
    assert cost.status is CostStatus.PARTIAL
    assert (cost.uncosted_energy_wh, cost.net) == (D("1000"), D("0.30"))
    assert cost.message is not None and "first version" in cost.message


def test_vat_rate_change_is_rounded_per_rate() -> None:
    tariff = Tariff(
        "v", "EUR", "Europe/Berlin", (TariffVersion(V1, D("0.30"), D("0.19")), TariffVersion(V2, D("0.30"), D("0.16")))
    )
    cost = cost_of_curve(tariff, [(V2 - timedelta(hours=1), 0.0), (V2 + timedelta(hours=1), 20_000.0)])
    assert (cost.net, cost.vat, cost.gross) == (D("6.00"), D("0.57") + D("0.48"), D("7.05"))


@pytest.mark.parametrize(
    "curve",
    [
        [(utc(6, 3, 11), 0.0), (utc(6, 3, 10), 10.0)],  # time goes backwards
        [(utc(6, 3, 10), 10.0), (utc(6, 3, 11), 5.0)],  # the register goes backwards
        [(utc(6, 3, 10), 10.0), (utc(6, 3, 10), 12.0)],  # two readings at one instant
    ],
)
def test_bad_curves_are_refused(curve: list[tuple[datetime, float]]) -> None:
    with pytest.raises(TariffError):
        cost_of_curve(FLAT, curve)


def test_short_curves_cost_nothing_explicitly() -> None:
    for curve in ([], [(utc(6, 3, 10), 5.0)]):
        cost = cost_of_curve(FLAT, curve)
        assert (cost.status, cost.net, cost.lines) == (CostStatus.COSTED, D("0.00"), ())


def test_invalid_tariffs_are_refused() -> None:
    with pytest.raises(TariffError, match="increasing"):
        Tariff("t", "EUR", "Europe/Berlin", (TariffVersion(V2, D(1), D(0)), TariffVersion(V1, D(1), D(0))))
    with pytest.raises(TariffError, match="vat_rate"):
        TariffVersion(V1, D(1), D(19))
    with pytest.raises(TariffError, match="ISO 4217"):
        flat_tariff("t", "euro", "Europe/Berlin", D(1), D(0), V1)


# --------------------------------------------------------------------------- properties

START = utc(6, 28, 18)  # a month end, a weekend, windows and the version change within 4 days


@st.composite
def curves(draw: st.DrawFn) -> list[tuple[datetime, float]]:
    steps = draw(st.lists(st.tuples(st.integers(1, 600), st.floats(0, 5000)), min_size=1, max_size=30))
    t, wh = START, draw(st.floats(0, 1e6))
    curve = [(t, wh)]
    for minutes, delta in steps:
        t, wh = t + timedelta(minutes=minutes), wh + delta
        curve.append((t, wh))
    return curve


@settings(max_examples=150, deadline=None)
@given(curve=curves(), cut=st.integers(0, 29))
def test_the_cost_of_a_curve_is_the_sum_of_its_parts(curve: list[tuple[datetime, float]], cut: int) -> None:
    whole = cost_of_curve(TOU, curve)
    assert sum(ln.energy_wh for ln in whole.lines) == whole.energy_wh  # exact, not within a tolerance
    cut = min(cut, len(curve) - 1)
    first, second = cost_of_curve(TOU, curve[: cut + 1]), cost_of_curve(TOU, curve[cut:])
    assert sum(ln.net for ln in first.lines + second.lines) == sum(ln.net for ln in whole.lines)
    assert whole.net is not None and first.net is not None and second.net is not None
    assert abs(whole.net - first.net - second.net) <= D("0.01")  # each part rounds once
    assert whole.gross == (whole.net or 0) + (whole.vat or 0)
