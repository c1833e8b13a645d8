"""Breakdowns of a history list: by site, vehicle, cost centre, user, charger or month; the
cost-sharing of shared chargers per user; and the reimbursement statement of one user and month.

All of them group the rows of :func:`warehouse.history.history_list` (clean sessions, the parts
inside the period), so their sums equal the period's summary, the CSV and DuckDB.
"""

from __future__ import annotations

from typing import Final, Literal

import polars as pl

from control.tariffs import ADD_TARIFF_MESSAGE
from warehouse.history import money_expr

GroupBy = Literal["site", "vehicle", "cost_centre", "user", "charger", "month"]
_KEYS: Final[dict[str, list[str]]] = {
    "site": ["site_id"], "vehicle": ["vehicle_id", "vehicle_name"], "cost_centre": ["cost_centre"],
    "user": ["user_id", "user_name"], "charger": ["charger_id", "charger_name"], "month": ["month"],
}


def group_totals(history: pl.DataFrame, by: GroupBy) -> pl.DataFrame:
    """Per group and currency: sessions, kWh, net/VAT/gross (rounded once per group); clean sessions only."""
    clean = history.filter(~pl.col("excluded")).with_columns(
        pl.col("started_at").dt.strftime("%Y-%m").alias("month"))
    keys = _KEYS[by]
    return (clean.group_by([*keys, "currency"])
            .agg(pl.len().alias("sessions"), pl.col("energy_in_period_wh").sum().alias("energy_wh"),
                 pl.col("net_in_period_nano").sum().alias("net_nano"),
                 pl.col("vat_in_period_nano").sum().alias("vat_nano"),
                 (pl.col("cost_status") == "no_tariff").sum().alias("no_tariff_sessions"))
            .with_columns((pl.col("energy_wh") / 1000).alias("energy_kwh"),
                          money_expr("net_nano", "currency").alias("net"),
                          money_expr("vat_nano", "currency").alias("vat"),
                          money_expr("net_nano", "currency", plus="vat_nano").alias("gross"))
            .sort([*keys, "currency"], nulls_last=True))


def cost_sharing(history: pl.DataFrame) -> pl.DataFrame:
    """For chargers used by more than one user in the period: each user's sessions, kWh, share of
    the charger's kWh (%) and cost."""
    clean = history.filter(~pl.col("excluded"))
    shared = clean.group_by("charger_id").agg(pl.col("user_id").n_unique().alias("users")).filter(
        pl.col("users") > 1)
    rows = clean.join(shared.select("charger_id"), on="charger_id")
    per_user = (rows.group_by("charger_id", "charger_name", "user_id", "user_name", "currency")
                .agg(pl.len().alias("sessions"), pl.col("energy_in_period_wh").sum().alias("energy_wh"),
                     pl.col("net_in_period_nano").sum().alias("net_nano"),
                     pl.col("vat_in_period_nano").sum().alias("vat_nano")))
    return (per_user.with_columns(
        (pl.col("energy_wh") / 1000).alias("energy_kwh"),
        (100 * pl.col("energy_wh") / pl.col("energy_wh").sum().over("charger_id")).round(1).alias("share_pct"),
        money_expr("net_nano", "currency").alias("net"), money_expr("vat_nano", "currency").alias("vat"),
        money_expr("net_nano", "currency", plus="vat_nano").alias("gross"))
        .sort("charger_id", "user_id", nulls_last=True))


def section_rows(frame: pl.DataFrame, label_columns: list[str], headings: list[str]) -> list[list[str]]:
    """A breakdown as PDF table rows: labels, sessions, kWh, net, VAT, gross."""
    rows = [[*headings, "Sessions", "kWh", "Net", "VAT", "Gross"]]
    for r in frame.iter_rows(named=True):
        cur = r.get("currency") or ""
        blank = ADD_TARIFF_MESSAGE if r["currency"] is None else "—"
        money = [f"{r[k]} {cur}" if r[k] is not None else blank for k in ("net", "vat", "gross")]
        rows.append([*("—" if r[c] is None else str(r[c]) for c in label_columns), str(r["sessions"]),
                     f"{r['energy_kwh']:,.3f}", *money])
    return rows
