"""`flowbank maintain`: the periodic housekeeping TimescaleDB's Apache build has no scheduler for.

Drops raw meter-sample chunks older than the retention period (``drop_chunks``), or installs
the equivalent policy where the Timescale license allows; re-costs the recent sessions; brings the
analytics rollups up to date (``warehouse.history_rollup.refresh``). ``--every`` repeats it until SIGTERM
or SIGINT; ``flowbank run`` starts it that way.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from datetime import UTC, datetime, timedelta
from types import FrameType

import psycopg

from control.settings import Settings
from warehouse import history_rollup
from warehouse.queries import QueryError
from warehouse.retention import RetentionError, apply_retention
from warehouse.sql_cli import one_line
from warehouse.tariff_store import compute_costs

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw-keep-days", type=int, default=400,
                        help="days of raw meter samples to keep (sessions and daily energy are kept for good)")
    parser.add_argument("--cost-days", type=int, default=3,
                        help="cost the sessions started in the last DAYS (tariffs; 0 = do not cost)")
    parser.add_argument("--every", type=float, metavar="SECONDS",
                        help="repeat every SECONDS until stopped (default: run once)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.raw_keep_days < 1:
        print("flowbank maintain: --raw-keep-days must be at least 1")
        return 2
    keep = timedelta(days=args.raw_keep_days)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if args.every:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    while True:
        try:
            result = apply_retention(settings.pg_dsn.reveal(), keep, datetime.now(UTC))
            print(f"retention ({result.license} license, {result.method}): "
                  f"{len(result.dropped_chunks)} chunk(s) dropped", flush=True)
        except RetentionError as exc:
            # Transient in a loop (the database may be restarting); final when run once.
            print(f"flowbank maintain: {exc}", flush=True)
            if not args.every:
                return 1
        if args.cost_days > 0:
            try:
                costed = _cost_recent(settings, timedelta(days=args.cost_days), datetime.now(UTC))
                print(f"costs: {costed} session(s) costed", flush=True)
            except psycopg.Error as exc:
                print(f"flowbank maintain: costing failed: {one_line(exc)}", flush=True)
                if not args.every:
                    return 1
        try:  # after costing: the analytics page then finds only the changes since
            with psycopg.connect(settings.pg_dsn.reveal(), connect_timeout=10) as conn:
                summed = history_rollup.refresh(conn)
            print(f"history rollups: {summed} change mark(s) summed", flush=True)
        except (psycopg.Error, QueryError) as exc:
            print(f"flowbank maintain: refreshing the history rollups failed: {one_line(exc)}", flush=True)
            if not args.every:
                return 1
        if not args.every or stop.wait(args.every):
            return 0


def _cost_recent(settings: Settings, window: timedelta, now: datetime) -> int:
    """Cost (again) the closed sessions started within ``window``: a session closes after it
    started, and a tariff may change, so the window is re-costed each time. The analytics lake
    is the pipeline's to write; its cost views catch up on ``flowbank report costs``."""
    with psycopg.connect(settings.pg_dsn.reveal(), connect_timeout=10) as conn:
        run = compute_costs(conn, now - window, now, now=now)
    return run.sessions
