"""CSV of the session history: valid UTF-8 (optionally with a byte-order mark for spreadsheet
programs), one row per session, the columns documented in :data:`COLUMNS` (and in
``docs/reports.md``). The rows are exactly those of :func:`warehouse.history.history_list` for
the same filters as the screen; amounts and energies are the parts inside the period, so the sums
of the non-excluded rows equal the period's summary."""

from __future__ import annotations

from typing import Final

import polars as pl

from control.tariffs import ADD_TARIFF_MESSAGE
from warehouse.history import money_expr

BOM: Final = "\ufeff".encode()

# (column, meaning): the CSV's header and its legend.
COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("session_id", "Stable session id (charger, connector, transaction)."),
    ("charger_id", "Charger id."),
    ("charger_name", "Charger name (location)."),
    ("site_id", "Site of the charger."),
    ("connector_id", "Connector number."),
    ("started_at", "Start, UTC, ISO 8601."),
    ("ended_at", "End, UTC, ISO 8601; empty while open."),
    ("duration_min", "Plugged-in time, minutes."),
    ("energy_kwh", "Energy of the whole session, kWh."),
    ("energy_in_period_kwh", "Of which inside the report period (split at UTC midnight), kWh."),
    ("energy_in_period_wh", "The same in Wh, unrounded: sums exactly."),
    ("peak_power_kw", "Highest power, kW."),
    ("avg_power_kw", "Average power while plugged in, kW."),
    ("mode", "Charging mode: standard, eco or boost."),
    ("user_id", "User whose token started the session."),
    ("user_name", "That user's name."),
    ("id_tag", "The token (RFID card or app) that started it."),
    ("vehicle", "Vehicle of the token, if registered."),
    ("cost_centre", "Cost centre: the vehicle's, else the charger's."),
    ("outcome", "success, or error (a fault ended it, or it was abandoned)."),
    ("stop_reason", "Why it stopped (OCPP)."),
    ("quality", "ok, flagged (informational flags) or excluded (corrupted: left out of totals)."),
    ("quality_flags", "Data-quality flags, separated by ';'."),
    ("currency", "Currency of the amounts."),
    ("net_in_period", "Estimated net cost (VAT excluded) inside the period."),
    ("vat_in_period", "VAT on it."),
    ("gross_in_period", "net + VAT."),
    ("net_in_period_nano", "Net inside the period in 1e-9 currency units, exact: sum these, then round once."),
    ("vat_in_period_nano", "VAT in 1e-9 currency units, exact."),
    ("cost_status", "costed, partial, no_tariff, uncosted (not computed yet); empty when excluded."),
    ("cost_note", f"'{ADD_TARIFF_MESSAGE}' when no tariff applies."),
)


def session_rows(history: pl.DataFrame) -> pl.DataFrame:
    """The history list shaped as the CSV's columns (all strings or numbers)."""
    iso = "%Y-%m-%dT%H:%M:%SZ"
    frame = history.with_columns(
        money_expr("net_in_period_nano", "currency").alias("net_in_period"),
        money_expr("vat_in_period_nano", "currency").alias("vat_in_period"),
        money_expr("net_in_period_nano", "currency", plus="vat_in_period_nano").alias("gross_in_period"))
    flagged = pl.col("flags").list.len() > 0
    return frame.select(
        "session_id", "charger_id", "charger_name", "site_id", "connector_id",
        pl.col("started_at").dt.strftime(iso), pl.col("ended_at").dt.strftime(iso),
        (pl.col("duration_s") / 60).round(1).alias("duration_min"),
        (pl.col("energy_wh") / 1000).round(3).alias("energy_kwh"),
        (pl.col("energy_in_period_wh") / 1000).round(3).alias("energy_in_period_kwh"),
        "energy_in_period_wh",
        (pl.col("peak_power_w") / 1000).round(2).alias("peak_power_kw"),
        (pl.col("avg_power_w") / 1000).round(2).alias("avg_power_kw"),
        "mode", "user_id", "user_name", "id_tag", pl.col("vehicle_name").alias("vehicle"), "cost_centre", "outcome",
        "stop_reason",
        pl.when(pl.col("excluded")).then(pl.lit("excluded")).when(flagged).then(pl.lit("flagged"))
        .otherwise(pl.lit("ok")).alias("quality"),
        pl.col("flags").list.join(";").alias("quality_flags"),
        "currency", "net_in_period", "vat_in_period",
        "gross_in_period", "net_in_period_nano", "vat_in_period_nano",
        "cost_status",
        pl.when(pl.col("cost_status") == "no_tariff").then(pl.lit(ADD_TARIFF_MESSAGE)).alias("cost_note"),
    )


def sessions_csv(history: pl.DataFrame, *, bom: bool = False) -> bytes:
    """The CSV bytes (UTF-8; ``bom``: prefixed with U+FEFF for spreadsheet programs)."""
    rows = session_rows(history)
    assert tuple(rows.columns) == tuple(name for name, _ in COLUMNS)  # noqa: S101 - the documented order
    data = rows.write_csv(null_value="").encode("utf-8")
    return BOM + data if bom else data
