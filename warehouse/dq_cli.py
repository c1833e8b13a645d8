"""``flowbank dq``: validate the warehouse's latest batches with Great Expectations.

``flowbank dq`` validates one batch per table (see warehouse/dq.py), stores the results, prints a
table and exits 1 when an expectation failed (0 when all passed, 2 when the run itself failed:
database unreachable, a suite that could not be evaluated, bad arguments). ``--every SECONDS``
keeps validating, each batch starting where the previous ended, until SIGTERM or Ctrl-C (exit 0);
a failed iteration is reported and retried on the next tick, since its window was not stored.
``flowbank dq --results`` lists stored results. Errors are one line, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType
from typing import TextIO

from control.settings import Settings
from warehouse.dq import ASSETS, DqError, DqRun, Validator, describe_observed, run_dq, stored_results

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 10**7:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=_instant, metavar="ISO",
                        help="start of the batch (UTC unless an offset is given; default: where the last run ended,"
                             " else 24 h ago)")
    parser.add_argument("--until", type=_instant, metavar="ISO", help="end of the batch (default: 2 minutes ago)")
    parser.add_argument("--every", type=_seconds, metavar="SECONDS",
                        help="validate again every SECONDS, each batch since the previous one, until stopped")
    parser.add_argument("--results", action="store_true", help="list stored results instead of validating")
    parser.add_argument("--last", type=int, default=1, metavar="N", help="with --results: the last N runs (default 1)")
    parser.add_argument("--asset", choices=[spec.name for spec in ASSETS], help="with --results: only this table")
    parser.add_argument("--failed", action="store_true", help="with --results: only failed expectations")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int], out: TextIO) -> None:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out.write(line(header) + "\n")
    for row in rows:
        out.write(line(row) + "\n")


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def print_run(run: DqRun, out: TextIO) -> None:
    windows = {(a.since, a.until) for a in run.assets}
    per_asset = len(windows) > 1  # the batches differ when some asset had no run before
    out.write(f"data quality run {run.run_id} at {_when(run.ran_at)}\n")
    if not per_asset:
        since, until = windows.pop()
        out.write(f"batch {_when(since)} .. {_when(until)}\n")
    rows = []
    for a in run.assets:
        worst = f"{a.worst.expectation_id}: {describe_observed(a.worst)}" if a.worst else "-"
        batch = [f"{_when(a.since)} .. {_when(a.until)}"] if per_asset else []
        rows.append([a.asset, *batch, str(a.rows), str(len(a.outcomes)), str(a.passed), str(a.failed), worst])
    header = ["asset", *(["batch"] if per_asset else []), "rows", "expectations", "passed", "failed", "worst failure"]
    first_count = 2 if per_asset else 1
    _table(header, rows, set(range(first_count, first_count + 4)), out)
    total = len(run.outcomes)
    out.write(f"FAILED: {run.failed} of {total} expectations\n" if run.failed else f"OK: {total} expectations passed\n")


def _print_results(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    results = stored_results(settings.pg_dsn.reveal(), last=args.last, asset=args.asset, failed_only=args.failed)
    if not results:
        out.write("no stored data-quality results match\n")
        return 0
    rows = [[_when(r.ran_at), r.run_id[:8], r.outcome.asset, r.outcome.expectation_id, r.outcome.column or "-",
             "pass" if r.outcome.success else "FAIL", describe_observed(r.outcome)] for r in results]
    _table(["ran_at", "run", "asset", "expectation", "column", "result", "observed"], rows, set(), out)
    return 0


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(settings: Settings, args: argparse.Namespace, *, clock: Clock = _utc_now, out: TextIO | None = None,
        stop: threading.Event | None = None) -> int:
    out = out or sys.stdout
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("great_expectations").setLevel(logging.WARNING)  # INFO on every batch
    if args.results and (args.since or args.until or args.every):
        return _fail("--results lists stored results; it takes no --since, --until or --every")
    if args.every and args.until:
        return _fail("--every validates up to the present each time; it takes no --until")
    if args.last < 1:
        return _fail("--last must be at least 1")
    try:
        if args.results:
            return _print_results(settings, args, out)
        if not args.every:
            return _validate_once(settings, args.since, args.until, clock, out, None)
        return _validate_every(settings, args, clock, out, stop or threading.Event())
    except (DqError, ValueError) as exc:
        return _fail(str(exc))


def _fail(message: str) -> int:
    print(f"flowbank dq: {message}", file=sys.stderr)
    return 2


def _validate_once(settings: Settings, since: datetime | None, until: datetime | None, clock: Clock, out: TextIO,
                   validator: Validator | None) -> int:
    result = run_dq(settings.pg_dsn.reveal(), since=since, until=until, now=clock(), validator=validator)
    print_run(result, out)
    out.flush()
    return 1 if result.failed else 0


def _validate_every(settings: Settings, args: argparse.Namespace, clock: Clock, out: TextIO,
                    stop: threading.Event) -> int:
    since: datetime | None = args.since  # the first batch only; then each starts where the last ended
    validator: Validator | None = None
    with _stop_on_signals(stop):
        try:
            while not stop.is_set():
                try:
                    validator = validator or Validator(settings.pg_dsn.reveal())
                    _validate_once(settings, since, None, clock, out, validator)
                    since = None
                except (DqError, ValueError) as exc:  # reported; the same batch is tried again next time
                    _fail(str(exc))
                stop.wait(args.every)
        finally:
            if validator is not None:
                validator.close()
    return 0
