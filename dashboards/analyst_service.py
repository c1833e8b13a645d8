"""Read-only SQL over the analytics lake for permitted users (support and operators).

The lake is the whole platform's history, so it cannot be scoped per charger: the permission is
platform-wide (``Permission.RUN_SQL``), not something a charger role grants. The connection is
DuckDB's read-only one over the views database (``warehouse.analytics_views``), and every
statement is checked to be a read before any runs, as in ``flowbank sql``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from control.access import Permission
from dashboards.access import Access, Principal
from warehouse.analytics_views import AnalyticsReader, ViewsDatabaseError, view_columns
from warehouse.sql_cli import ReadOnlyRefused, one_line, query_last

MAX_ROWS = 5_000


class QueryRefused(ValueError):
    """The statement is not a read, or DuckDB refused it; the message is one line."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    frame: pl.DataFrame
    truncated: bool
    elapsed_s: float


class AnalystService:
    def __init__(self, access: Access, reader: Callable[[], AnalyticsReader],
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._access, self._reader, self._monotonic = access, reader, monotonic

    def views(self, who: Principal) -> dict[str, list[tuple[str, str, str | None]]]:
        """Every analyst view with its columns (name, type, description)."""
        self._access.require(who, Permission.RUN_SQL)
        con = self._cursor()
        try:
            return view_columns(con)
        finally:
            con.close()

    def run(self, who: Principal, sql_text: str, *, max_rows: int = MAX_ROWS) -> QueryResult:
        self._access.require(who, Permission.RUN_SQL)
        if not sql_text.strip():
            raise QueryRefused("write a query first")
        started = self._monotonic()
        con = self._cursor()
        try:
            names, rows, truncated = query_last(con, sql_text, max_rows=max_rows)
        except (duckdb.Error, ReadOnlyRefused) as exc:
            self._access.log(who, "run_sql", None, allowed=False, detail=one_line(exc)[:500])
            raise QueryRefused(one_line(exc)) from None
        finally:
            con.close()
        self._access.log(who, "run_sql", None, detail=sql_text[:500])
        columns: dict[str, list[Any]] = {name: [row[i] for row in rows] for i, name in enumerate(names)}
        frame = pl.DataFrame(columns, strict=False) if names else pl.DataFrame()
        return QueryResult(frame, truncated, self._monotonic() - started)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        try:
            return self._reader().cursor()
        except ViewsDatabaseError as exc:
            raise QueryRefused(str(exc)) from None
