"""Pure parts of the reports: money formatting per currency, the CSV's shape and encoding, the
periods of scheduled reports."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from control.tariffs import ADD_TARIFF_MESSAGE
from reports.csv_export import BOM, COLUMNS, sessions_csv
from reports.scheduled import Schedule, due_periods, period_of
from warehouse.history import LIST_SCHEMA, money_expr


def _history() -> pl.DataFrame:
    t = datetime(2025, 1, 31, 22, 0, tzinfo=UTC)
    rows = [
        {"session_id": "s1", "charger_id": "CP-1", "charger_name": "Garage Müller", "started_at": t,
         "ended_at": datetime(2025, 2, 1, 2, 0, tzinfo=UTC), "duration_s": 14400.0, "energy_wh": 20000.0,
         "energy_in_period_wh": 10000.0, "excluded": False, "flags": ["gap"], "currency": "EUR",
         "cost_status": "costed", "net_in_period_nano": 3_004_999_999, "vat_in_period_nano": 570_950_000,
         "user_name": "Zoë Ångström"},
        {"session_id": "s2", "charger_id": "CP-2", "charger_name": "Depot Süd", "started_at": t, "ended_at": t,
         "duration_s": 0.0, "energy_wh": 5000.0, "energy_in_period_wh": 5000.0, "excluded": False, "flags": [],
         "currency": None, "cost_status": "no_tariff", "net_in_period_nano": None, "vat_in_period_nano": None},
        {"session_id": "s3", "charger_id": "CP-2", "charger_name": "Depot Süd", "started_at": t, "ended_at": t,
         "duration_s": 0.0, "energy_wh": 1e9, "energy_in_period_wh": 1e9, "excluded": True,
         "flags": ["implausible_power"], "currency": None, "cost_status": None, "net_in_period_nano": None,
         "vat_in_period_nano": None},
    ]
    return pl.DataFrame(rows, schema=LIST_SCHEMA)


def test_money_expr_rounds_half_up_per_minor_unit_and_adds_rounded_parts() -> None:
    frame = pl.DataFrame({"n": [5_000_000, 4_999_999, 1_500_000_000, 12_345_678_901, None],
                          "v": [5_000_000, 5_000_000, 0, 1, 1], "c": ["EUR", "EUR", "JPY", "KWD", "EUR"]})
    out = frame.select(money_expr("n", "c").alias("m"), money_expr("n", "c", plus="v").alias("g"))
    assert out["m"].to_list() == ["0.01", "0.00", "2", "12.346", None]
    assert out["g"].to_list() == ["0.02", "0.01", "2", "12.346", None]


def test_csv_is_utf8_with_bom_documented_columns_and_call_to_action() -> None:
    raw = sessions_csv(_history(), bom=True)
    assert raw.startswith(BOM)
    rows = list(csv.DictReader(io.StringIO(raw[len(BOM):].decode("utf-8"))))
    assert list(rows[0]) == [name for name, _ in COLUMNS]
    first, no_tariff, corrupted = rows
    assert first["charger_name"] == "Garage Müller" and first["user_name"] == "Zoë Ångström"
    assert first["started_at"] == "2025-01-31T22:00:00Z" and first["energy_in_period_kwh"] == "10.0"
    assert (first["net_in_period"], first["vat_in_period"], first["gross_in_period"]) == ("3.00", "0.57", "3.57")
    assert first["quality"] == "flagged" and first["quality_flags"] == "gap"
    assert no_tariff["cost_note"] == ADD_TARIFF_MESSAGE and no_tariff["net_in_period"] == ""
    assert corrupted["quality"] == "excluded" and corrupted["cost_status"] == ""
    assert not sessions_csv(_history()).startswith(BOM)


def test_periods_of_scheduled_reports() -> None:
    assert period_of("month", date(2024, 2, 14)) == (date(2024, 2, 1), date(2024, 2, 29))
    assert period_of("week", date(2025, 1, 1)) == (date(2024, 12, 30), date(2025, 1, 5))
    s = Schedule("x", "owner", "user", "u", "month", ("pdf",), (), Path("/tmp"))
    assert due_periods(s, date(2025, 3, 2), created=date(2025, 1, 20)) == [
        (date(2024, 12, 1), date(2024, 12, 31)), (date(2025, 1, 1), date(2025, 1, 31)),
        (date(2025, 2, 1), date(2025, 2, 28))]
    done = Schedule("x", "owner", "user", "u", "month", ("pdf",), (), Path("/tmp"), date(2025, 2, 1))
    assert due_periods(done, date(2025, 3, 31), created=date(2025, 1, 20)) == []
    assert due_periods(done, date(2025, 4, 1), created=date(2025, 1, 20)) == [(date(2025, 3, 1), date(2025, 3, 31))]
