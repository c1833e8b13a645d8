"""control.v2g: readiness badge, prerequisites and the revenue estimate."""

from __future__ import annotations

import pytest

from control.v2g import (
    EstimateError,
    RevenueAssumptions,
    V2GReadiness,
    all_met,
    estimate_revenue,
    prerequisites,
    readiness,
)


def test_an_unknown_model_is_not_supported_and_says_why() -> None:
    badge = readiness(None, "Acme", "X1")
    assert badge.readiness is V2GReadiness.NOT_SUPPORTED
    assert "Acme X1 is not in our device catalogue" in badge.explanation
    assert readiness("ready", "A", "B").readiness.label == "V2G Ready"
    assert readiness("coming_soon", "A", "B").readiness.label == "Coming Soon"
    assert readiness("bogus", "A", "B").readiness is V2GReadiness.NOT_SUPPORTED


def test_every_prerequisite_must_hold() -> None:
    ready = readiness("ready", "A", "B")
    items = prerequisites(ready, ocpp_version="2.0.1", vehicle_bidirectional=True, grid_approved=True)
    assert all_met(items)
    for kwargs, unmet in [
        ({"ocpp_version": "1.6", "vehicle_bidirectional": True, "grid_approved": True}, "OCPP"),
        ({"ocpp_version": None, "vehicle_bidirectional": True, "grid_approved": True}, "OCPP"),
        ({"ocpp_version": "2.1", "vehicle_bidirectional": False, "grid_approved": True}, "car"),
        ({"ocpp_version": "2.0.1", "vehicle_bidirectional": True, "grid_approved": False}, "grid operator"),
    ]:
        items = prerequisites(ready, **kwargs)  # type: ignore[arg-type]
        assert not all_met(items)
        assert [p.name for p in items if not p.met] == [p.name for p in items if unmet in p.name]
    soon = prerequisites(readiness("coming_soon", "A", "B"), ocpp_version="2.0.1", vehicle_bidirectional=True,
                         grid_approved=True)
    assert [p.met for p in soon] == [False, True, True, True]


def test_revenue_is_delivered_energy_times_the_spread() -> None:
    est = estimate_revenue(RevenueAssumptions(battery_kwh=60, cycles_per_month=10, depth_pct=50, spread_eur_kwh=0.2,
                                              round_trip_efficiency=0.8))
    assert est.energy_out_kwh_month == pytest.approx(240.0)  # 60 * 0.5 * 10 * 0.8
    assert est.revenue_eur_month == pytest.approx(48.0)
    assert est.revenue_eur_year == pytest.approx(576.0)
    assert est.label.startswith("Estimate only")
    assert estimate_revenue(RevenueAssumptions(cycles_per_month=0)).revenue_eur_month == 0


@pytest.mark.parametrize("field", ["battery_kwh", "cycles_per_month", "depth_pct", "round_trip_efficiency"])
def test_assumptions_out_of_range_are_refused_by_name(field: str) -> None:
    with pytest.raises(EstimateError, match=field):
        RevenueAssumptions(**{field: -1.0})
    with pytest.raises(EstimateError, match=field):
        RevenueAssumptions(**{field: float("nan")})
