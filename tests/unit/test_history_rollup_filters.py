"""Which history filters the analytics rollups answer (a whole calendar year, chargers only)."""

from __future__ import annotations

from datetime import date

from warehouse.history import HistoryFilter
from warehouse.history_rollup import calendar_year


def test_a_calendar_year_filtered_by_chargers_uses_the_rollups() -> None:
    assert calendar_year(HistoryFilter(date(2026, 1, 1), date(2026, 12, 31), charger_ids=("a", "b"))) == 2026
    assert calendar_year(HistoryFilter(date(2024, 1, 1), date(2024, 12, 31))) == 2024


def test_any_other_filter_uses_the_raw_sums() -> None:
    for other in (HistoryFilter(date(2026, 1, 1), date(2026, 12, 30)),
                  HistoryFilter(date(2026, 2, 1), date(2026, 12, 31)),
                  HistoryFilter(date(2025, 1, 1), date(2026, 12, 31)),
                  HistoryFilter(date(2026, 1, 1), date(2026, 12, 31), user_ids=("u",)),
                  HistoryFilter(date(2026, 1, 1), date(2026, 12, 31), site_ids=("s",)),
                  HistoryFilter(date(2026, 1, 1), date(2026, 12, 31), modes=("eco",)),
                  HistoryFilter(date(2026, 1, 1), date(2026, 12, 31), outcome="error"),
                  HistoryFilter(date(2026, 1, 1), date(2026, 12, 31), cost_centres=("c",)),
                  HistoryFilter(date(2026, 1, 1), date(2026, 12, 31), vehicle_ids=("v",))):
        assert calendar_year(other) is None, other
