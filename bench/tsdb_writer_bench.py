"""Throughput of warehouse.tsdb_writer for meter samples (binary COPY -> staging -> merge).

    .venv/bin/python bench/tsdb_writer_bench.py [--rows 200000] [--batch 5000] [--dsn postgresql://...]

Creates a throw-away database on the server of FLOWBANK_PG_DSN (or --dsn), migrates it, and
measures, for ``--rows`` samples (200 connectors, 15 s apart, across a chunk boundary):

1. fresh inserts in batches of ``--batch`` (the sink's steady state);
2. the same batches again (a replay: every row conflicts, nothing changes);
3. sample verdicts for every stored sample (set-based UPDATE of quality flags);
4. samples and their verdicts in the same batches (the insert carries the flags; new chargers);
5. all rows as a single batch (new chargers).

Prints figures only; nothing is asserted (timings depend on the machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from control.contract import MeterSample, SampleContext
from control.records import QualityFlag
from control.settings import redact_dsn
from flowbank.config import read_settings
from warehouse.migrate import apply_migrations
from warehouse.tsdb_writer import TimescaleWriter

START = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)  # crosses midnight: two daily chunks


@dataclass(frozen=True, slots=True)
class Verdict:
    charger_id: str
    connector_id: int
    ts: datetime
    context: SampleContext
    session_id: str | None
    flags: tuple[QualityFlag, ...]


def make_samples(rows: int, prefix: str) -> list[MeterSample]:
    series = 200
    per_series = -(-rows // series)
    out = []
    for i in range(per_series):
        ts = START + timedelta(seconds=15 * i)
        for s in range(series):
            out.append(MeterSample(f"{prefix}-{s // 2:03d}", 1 + s % 2, ts, SampleContext.PERIODIC, f"tx{s}",
                                   energy_wh=1000.0 + 30.0 * i, power_w=7200.0, current_a=31.3,
                                   current_l1_a=10.4, current_l2_a=10.5, current_l3_a=10.4, voltage_v=230.1,
                                   soc_pct=min(100.0, 20 + i * 0.05)))
    return out[:rows]


def timed(label: str, writer: TimescaleWriter, items: Sequence[object], batch: int) -> None:
    changed = 0
    began = time.perf_counter()
    for start in range(0, len(items), batch):
        changed += writer.write(items[start:start + batch]).total_changed
    seconds = time.perf_counter() - began
    print(f"{label:<42} {len(items):>8} rows  {seconds:7.2f} s  {len(items) / seconds:>9,.0f} rows/s"
          f"  (changed {changed})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--dsn", help="admin DSN (default: FLOWBANK_PG_DSN or the local services)")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k.startswith("FLOWBANK_")}
    admin = args.dsn or read_settings(env).pg_dsn.reveal()
    name = f"flowbank_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        server = conn.execute("select version(), (select extversion from pg_extension"
                              " where extname = 'timescaledb')").fetchone()
    dsn = urlunsplit(urlsplit(admin)._replace(path=f"/{name}"))
    try:
        apply_migrations(dsn)
        affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"server      {redact_dsn(admin)}  ({server[0].split(',')[0] if server else '?'},"
              f" timescaledb {server[1] if server else '?'})")
        print(f"client      Python {platform.python_version()}, psycopg {psycopg.__version__}"
              f" ({psycopg.pq.__impl__}), {os.cpu_count()} cores ({affinity} usable), {platform.machine()}")
        print(f"workload    {args.rows} meter samples, batches of {args.batch}, one transaction per batch\n")
        began = time.perf_counter()
        samples = make_samples(args.rows, "BENCH")
        print(f"{'building the MeterSample objects (not timed)':<42} {len(samples):>8} rows"
              f"  {time.perf_counter() - began:7.2f} s")
        verdicts = [Verdict(s.charger_id, s.connector_id, s.ts, s.context, "S", (QualityFlag.GAP,)) for s in samples]
        with TimescaleWriter(dsn) as writer:
            timed(f"insert, batches of {args.batch}", writer, samples, args.batch)
            timed(f"replay (all conflicts), batches of {args.batch}", writer, samples, args.batch)
            timed(f"verdicts (update flags), batches of {args.batch}", writer, verdicts, args.batch)
            paired = make_samples(args.rows, "PAIRED")
            mixed: list[object] = []
            for sample in paired:
                mixed += [sample, Verdict(sample.charger_id, sample.connector_id, sample.ts, sample.context, "S", ())]
            timed(f"samples + verdicts, batches of {args.batch}+{args.batch}", writer, mixed, 2 * args.batch)
            single = make_samples(args.rows, "SINGLE")
            timed("insert, one batch", writer, single, len(single))
    finally:
        drop_database(admin, name)


def drop_database(admin: str, name: str) -> None:
    # A plain DROP lets TimescaleDB stop its per-database scheduler first; WITH (FORCE) would try
    # to terminate that postgres-owned process itself and fail for a non-superuser.
    statements = [sql.SQL("drop database if exists {}"), sql.SQL("drop database if exists {} with (force)")]
    with psycopg.connect(admin, autocommit=True) as conn:
        for attempt in range(6):
            try:
                conn.execute(statements[attempt % 2].format(sql.Identifier(name)))
                return
            except (psycopg.errors.ObjectInUse, psycopg.errors.InsufficientPrivilege):
                time.sleep(1)
    print(f"could not drop the database {name}; drop it by hand", file=sys.stderr)


if __name__ == "__main__":
    main()
