"""Parquet export of any analyst table or view (DuckDB over the lake) for a period.

The period filters the view's ``day`` column (UTC days), or ``month`` for the monthly views;
``charger_ids`` (the caller's scope) filters ``charger_id`` when the view has one. A view with
neither period column is refused: exports are for a period.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq  # type: ignore[import-untyped]

from warehouse.analytics import open_readonly
from warehouse.analytics_views import view_columns


class ExportError(ValueError):
    """An unknown table, or one that cannot be cut by period or scope."""


def export_parquet(db_path: Path, table: str, first_day: date, last_day: date, out: Path, *,
                   charger_ids: Sequence[str] | None = None) -> int:
    """Write ``table``'s rows of ``[first_day, last_day]`` to ``out`` (zstd Parquet); returns the row count."""
    with open_readonly(db_path) as con:
        columns = {name for name, _type, _comment in view_columns(con).get(table, [])}
        if not columns:
            raise ExportError(f"unknown table {table!r}: see `flowbank sql` .tables")
        period = "day" if "day" in columns else "month" if "month" in columns else None
        if period is None:
            raise ExportError(f"{table} has no day or month column to cut a period by")
        where = f'"{period}" BETWEEN $first AND $last'
        params: dict[str, object] = {"first": first_day.replace(day=1) if period == "month" else first_day,
                                     "last": last_day}
        if charger_ids is not None:
            if "charger_id" not in columns:
                raise ExportError(f"{table} has no charger_id: it cannot be limited to a scope")
            where += " AND charger_id IN (SELECT unnest($chargers))"
            params["chargers"] = list(charger_ids)
        rows = con.sql(f'SELECT * FROM "{table}" WHERE {where}', params=params).to_arrow_table()  # noqa: S608
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    pq.write_table(rows, tmp, compression="zstd")
    tmp.replace(out)
    return int(rows.num_rows)
