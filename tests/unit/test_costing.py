"""warehouse.costing: the vectorized cost agrees with control.tariffs.cost_of_curve, splits by UTC day
and at price edges, and never prices a session without a tariff."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import polars as pl
import pytest

from control.schedules import Weekday, WeeklyWindow
from control.tariffs import PriceWindow, Tariff, TariffVersion, cost_of_curve, flat_tariff
from warehouse.costing import NANO, cost_sessions, money, price_table

T0 = datetime(2024, 3, 31, 20, 0, tzinfo=UTC)
EVERY = frozenset(Weekday)
TOU = Tariff("tou", "EUR", "Europe/Berlin", (
    TariffVersion(datetime(2024, 1, 1, tzinfo=UTC), Decimal("0.35"), Decimal("0.19"),
                  (PriceWindow(WeeklyWindow(time(22, 0), time(6, 0), EVERY), Decimal("0.22"), "night"),)),
    TariffVersion(datetime(2024, 4, 1, 3, 30, tzinfo=UTC), Decimal("0.40"), Decimal("0.19"),
                  (PriceWindow(WeeklyWindow(time(22, 0), time(6, 0), EVERY), Decimal("0.25"), "night"),)),
))


def _curve(start: datetime, minutes: int, step_min: int, power_w: float) -> list[tuple[datetime, float]]:
    return [(start + timedelta(minutes=m), 1000.0 + power_w * m / 60) for m in range(0, minutes + 1, step_min)]


def _frames(curves: dict[str, tuple[str | None, list[tuple[datetime, float]]]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    samples = pl.DataFrame([(sid, ts, wh) for sid, (_, c) in curves.items() for ts, wh in c],
                           schema={"session_id": pl.String, "ts": pl.Datetime("us", "UTC"), "energy_wh": pl.Float64},
                           orient="row")
    sessions = pl.DataFrame([(sid, t, c[0][0], c[-1][0], c[-1][1] - c[0][1]) for sid, (t, c) in curves.items()],
                            schema={"session_id": pl.String, "tariff_id": pl.String,
                                    "started_at": pl.Datetime("us", "UTC"), "ended_at": pl.Datetime("us", "UTC"),
                                    "energy_wh": pl.Float64}, orient="row")
    return samples, sessions


def test_matches_cost_of_curve_across_window_version_and_midnight() -> None:
    curve = _curve(T0, 10 * 60, 7, 11_000.0)  # 20:00 to 06:00 UTC, crosses 22:00 local, midnight, the new version
    samples, sessions = _frames({"s1": ("tou", curve)})
    prices = price_table({"tou": TOU}, T0 - timedelta(days=1), T0 + timedelta(days=2))
    out = cost_sessions(samples, sessions, prices)
    assert out["day"].to_list() == [T0.date(), (T0 + timedelta(days=1)).date()]
    assert set(out["status"]) == {"costed"}
    exact = cost_of_curve(TOU, curve)
    net_exact = sum((line.net for line in exact.lines), Decimal(0))
    # µWh rounding of the pieces
    assert abs(Decimal(int(out["net_nano"].sum())) / NANO - net_exact) < Decimal("0.0000001")
    assert money(int(out["net_nano"].sum()), "EUR") == exact.net
    assert out["energy_wh"].sum() == pytest.approx(float(exact.energy_wh), abs=1e-6)
    # the day split follows the curve: 4 h before midnight at 11 kW
    assert out["energy_wh"][0] == pytest.approx(44_000.0, abs=1e-6)


def test_no_tariff_and_before_first_version() -> None:
    late = flat_tariff("late", "EUR", "UTC", Decimal("0.30"), Decimal("0.2"), T0 + timedelta(hours=1))
    samples, sessions = _frames({"none": (None, _curve(T0, 120, 15, 7000.0)),
                                 "part": ("late", _curve(T0, 120, 15, 7000.0))})
    out = cost_sessions(samples, sessions, price_table({"late": late}, T0, T0 + timedelta(days=1)))
    none = out.filter(pl.col("session_id") == "none").row(0, named=True)
    assert none["status"] == "no_tariff" and none["net_nano"] is None and none["energy_wh"] == pytest.approx(14_000)
    part = out.filter(pl.col("session_id") == "part").row(0, named=True)
    assert part["status"] == "partial"
    assert part["costed_energy_wh"] == pytest.approx(7000.0)
    assert money(part["net_nano"], "EUR") == Decimal("2.10") and money(part["vat_nano"], "EUR") == Decimal("0.42")


def test_sparse_session_uses_stored_energy_and_reset_counts_new_register() -> None:
    flat = flat_tariff("flat", "EUR", "UTC", Decimal("0.5"), Decimal("0"), T0 - timedelta(days=1))
    reset = [(T0, 5000.0), (T0 + timedelta(hours=1), 6000.0), (T0 + timedelta(hours=2), 300.0)]
    samples, sessions = _frames({"r": ("flat", reset)})
    sessions = pl.concat([sessions, pl.DataFrame({
        "session_id": ["sparse"], "tariff_id": ["flat"], "started_at": [T0], "ended_at": [T0 + timedelta(hours=6)],
        "energy_wh": [12_000.0]}, schema=sessions.schema)])
    out = cost_sessions(samples, sessions, price_table({"flat": flat}, T0, T0 + timedelta(days=1)))
    by_id = {r["session_id"]: r for r in out.iter_rows(named=True) if r["day"] == T0.date()}
    assert by_id["r"]["energy_wh"] == pytest.approx(1300.0)
    assert by_id["sparse"]["energy_wh"] == pytest.approx(8000.0)  # 4 of 6 hours before midnight
    assert money(int(out.filter(pl.col("session_id") == "sparse")["net_nano"].sum()), "EUR") == Decimal("6.00")


def test_money_rounds_half_up_per_currency() -> None:
    assert money(5_000_000, "EUR") == Decimal("0.01")
    assert money(4_999_999, "EUR") == Decimal("0.00")
    assert money(1_500_000_000, "JPY") == Decimal("2")
    with pytest.raises(ValueError):
        money(-1, "EUR")
