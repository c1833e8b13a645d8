"""Benchmark of the history reports (issue 8): a fleet of N chargers with a year of sessions.

What runs (all real, all local): a throw-away PostgreSQL database (created on
``FLOWBANK_PG_DSN``'s server like ``tests/conftest.py``, migrated, dropped at the end) and a
temporary Parquet lake; ``flowbank.history_gen.generate`` writes the year (COPY into TimescaleDB,
Parquet into the lake) and costs every session (``warehouse.tariff_store.compute_costs``); then,
each timed on its own:

* the fleet report: history list of every charger for the year, monthly summaries, top chargers,
  breakdowns by site, vehicle and cost centre, the chart, the PDF, and the CSV of every session;
* an owner's report (3 chargers, one month): PDF with the session table, and CSV;
* the same month's totals from DuckDB (``monthly_energy`` and ``monthly_cost``), checked equal to the
  owner's summary;
* a re-costing of one month of the whole fleet.

Usage::

    .venv/bin/python bench/report_bench.py                          # 1,000 chargers x 365 days
    .venv/bin/python bench/report_bench.py --chargers 100 --days 60 --keep /tmp/reports

Results: docs/benchmarks.md, "Reports".
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from flowbank.history_gen import generate
from reports.build import build_report
from warehouse.analytics import ParquetLake, open_readonly
from warehouse.history import HistoryFilter
from warehouse.migrate import apply_migrations
from warehouse.tariff_store import compute_costs, costs_period


class Timer:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, str]] = []

    def run(self, label: str, fn: Any, note: Any = None) -> Any:
        t = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t
        self.rows.append((label, seconds, note(result) if note else ""))
        print(f"{label:<58} {seconds:8.2f} s  {self.rows[-1][2]}", flush=True)
        return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chargers", type=int, default=1000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--keep", type=Path, help="write the reports here and keep them")
    args = ap.parse_args()
    admin = os.environ.get("FLOWBANK_PG_DSN", "postgresql://flowbank:flowbank@127.0.0.1:5434/flowbank")
    name = f"flowbank_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    dsn = admin.rsplit("/", 1)[0] + "/" + name
    work = Path(tempfile.mkdtemp(prefix="report-bench-"))
    out = args.keep or work / "out"
    out.mkdir(parents=True, exist_ok=True)
    timer = Timer()
    first = date(2025, 1, 1)
    try:
        apply_migrations(dsn)
        with psycopg.connect(dsn) as conn:
            with ParquetLake(work / "lake", views_db=work / "analytics.duckdb") as lake:
                made = timer.run(f"generate {args.chargers} chargers x {args.days} days (COPY + lake + costs)",
                                 lambda: generate(conn, chargers=args.chargers, days=args.days, first_day=first,
                                                  lake=lake, now=datetime.now(UTC)),
                                 lambda g: f"{g.sessions} sessions, {g.samples} samples")
                month = (first + timedelta(days=min(args.days, 60) - 31)).replace(day=1)
                start, end = costs_period(month, (month + timedelta(days=32)).replace(day=1) - timedelta(days=1))
                timer.run("re-cost one month of the fleet", lambda: compute_costs(
                    conn, start, end, now=datetime.now(UTC), lake=lake), lambda r: f"{r.sessions} sessions")
            scope = [r[0] for r in conn.execute("select charger_id from chargers order by 1").fetchall()]
            year = HistoryFilter(made.first_day, made.last_day)
            fleet = timer.run("fleet report: read + summaries + breakdowns + chart", lambda: build_report(
                conn, scope, year, kind="fleet", scope_label=f"Fleet ({len(scope)} chargers)", now=datetime.now(UTC),
                group_by=["site", "vehicle", "cost_centre"]), lambda r: f"{r.content.history.height} sessions")
            pdf = timer.run("fleet report: PDF", fleet.pdf, lambda b: f"{len(b) / 1e6:.1f} MB")
            (out / "fleet.pdf").write_bytes(pdf)
            csv = timer.run("fleet report: CSV of every session", fleet.csv, lambda b: f"{len(b) / 1e6:.1f} MB")
            (out / "fleet.csv").write_bytes(csv)
            owner_month = HistoryFilter(month, (month + timedelta(days=32)).replace(day=1) - timedelta(days=1))
            owner = timer.run("owner report (3 chargers, 1 month): read", lambda: build_report(
                conn, scope[:3], owner_month, scope_label="Owner", now=datetime.now(UTC)),
                lambda r: f"{r.content.history.height} sessions")
            (out / "owner.pdf").write_bytes(timer.run("owner report: PDF", owner.pdf, lambda b: f"{len(b)} B"))
            (out / "owner.csv").write_bytes(owner.csv())
        with open_readonly(work / "analytics.duckdb") as con:
            row = timer.run("DuckDB: owner's month (monthly_energy + monthly_cost)", lambda: con.execute(
                "SELECT (SELECT sum(energy_wh) FROM monthly_energy WHERE month = $m AND charger_id IN "
                "(SELECT unnest($c))), (SELECT sum(net_nano) FROM monthly_cost WHERE month = $m AND charger_id IN "
                "(SELECT unnest($c)))", {"m": month, "c": scope[:3]}).fetchone())
        total = owner.content.total
        assert row is not None and row[0] == total.energy_wh, (row, total.energy_wh)
        assert row[1] == total.costs["EUR"][0], (row, total.costs)
        print(f"owner month {month:%Y-%m}: {total.energy_wh / 1000:.3f} kWh, net {total.amounts('EUR')[0]} EUR "
              "(PostgreSQL summary == DuckDB)")
        print(f"machine: {os.cpu_count()} CPUs; reports in {out}")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
