"""``flowbank report ...``: history exports from the command line (an operator's tool: the scope
is named on the command line, ``--user``, ``--org``, ``--charger`` or ``--all``).

    flowbank report costs --from 2025-01-01 --to 2025-12-31        # (re)compute session costs
    flowbank report csv --user u-1 --from 2025-01-01 --to 2025-01-31 -o jan.csv [--bom]
    flowbank report pdf --user u-1 --from ... --to ... -o jan.pdf
    flowbank report fleet --org acme --from ... --to ... --by site,vehicle,cost_centre -o fleet.pdf [--csv f.csv]
    flowbank report cost-sharing --all --from ... --to ... -o share.pdf
    flowbank report reimbursement --user u-1 --month 2025-01 -o statement.pdf
    flowbank report parquet --table daily_energy --from ... --to ... -o daily.parquet [--charger ...]
    flowbank report scheduled add --id monthly-u1 --kind owner --user u-1 --every month --out-dir reports/
    flowbank report scheduled list | run
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg

from control.settings import Settings

_SCOPED = ("csv", "pdf", "fleet", "cost-sharing", "reimbursement", "parquet")


def _scope_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--user", help="a user's chargers (memberships)")
    g.add_argument("--org", help="an organisation's chargers (sites.org_id)")
    g.add_argument("--charger", action="append", help="these chargers (repeat)")
    g.add_argument("--all", action="store_true", help="every charger")


def _period_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="first", required=True, type=date.fromisoformat, help="first UTC day")
    p.add_argument("--to", dest="last", required=True, type=date.fromisoformat, help="last UTC day (inclusive)")


def _filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--site", action="append", default=[], help="only this site (repeat)")
    p.add_argument("--mode", action="append", default=[], choices=("standard", "eco", "boost"))
    p.add_argument("--outcome", choices=("success", "error"))
    p.add_argument("--cost-centre", action="append", default=[])
    p.add_argument("--of-user", action="append", default=[], help="only sessions of this user (repeat)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="report_command", metavar="REPORT", required=True)
    p = sub.add_parser("costs", help="compute the cost of the sessions started in a period (tariffs x meter curves)")
    _period_args(p)
    p.add_argument("--charger", action="append", help="only these chargers")
    p.add_argument("--no-lake", action="store_true", help="store in TimescaleDB only (the pipeline holds the lake)")
    for name, text in (("csv", "session history as CSV (UTF-8)"), ("pdf", "history report as PDF"),
                       ("fleet", "fleet report (PDF) by site / vehicle / cost centre"),
                       ("cost-sharing", "per-user shares of shared chargers (PDF)")):
        p = sub.add_parser(name, help=text)
        _scope_args(p)
        _period_args(p)
        _filter_args(p)
        p.add_argument("-o", "--output", type=Path, required=True)
        if name == "csv":
            p.add_argument("--bom", action="store_true", help="start with a byte-order mark (for spreadsheet programs)")
        if name == "fleet":
            p.add_argument("--by", default="site,vehicle,cost_centre",
                           help="breakdowns, comma-separated: site, vehicle, cost_centre, user, charger, month")
            p.add_argument("--csv", type=Path, help="also write the sessions as CSV here")
    p = sub.add_parser("reimbursement", help="a user's statement for one month (PDF, and --csv)")
    _scope_args(p)
    p.add_argument("--month", required=True, help="YYYY-MM")
    p.add_argument("--for-user", help="whose sessions (default: --user)")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--csv", type=Path)
    p = sub.add_parser("parquet", help="export an analyst table (DuckDB) for a period as Parquet")
    _scope_args(p)
    _period_args(p)
    p.add_argument("--table", required=True)
    p.add_argument("-o", "--output", type=Path, required=True)
    p = sub.add_parser("scheduled", help="recurring reports written to a folder")
    ssub = p.add_subparsers(dest="schedule_command", required=True)
    a = ssub.add_parser("add", help="add or replace a schedule")
    a.add_argument("--id", required=True)
    a.add_argument("--kind", choices=("owner", "fleet", "cost-sharing", "reimbursement"), default="owner")
    owner = a.add_mutually_exclusive_group(required=True)
    owner.add_argument("--user")
    owner.add_argument("--org")
    a.add_argument("--every", choices=("month", "week"), default="month")
    a.add_argument("--formats", default="pdf,csv")
    a.add_argument("--by", default="", help="fleet breakdowns, comma-separated")
    a.add_argument("--out-dir", type=Path, required=True)
    a.add_argument("--email", help="kept with the schedule; e-mail delivery is not implemented")
    ssub.add_parser("list", help="list the schedules")
    ssub.add_parser("run", help="write every finished period not written yet")


def _scope(conn: psycopg.Connection[Any], args: argparse.Namespace) -> tuple[list[str], str]:
    from reports.build import all_chargers, chargers_of_org, chargers_of_user

    if args.user:
        scope = chargers_of_user(conn, args.user)
        return scope, f"User {args.user} ({len(scope)} chargers)"
    if args.org:
        scope = chargers_of_org(conn, args.org)
        return scope, f"Organisation {args.org} ({len(scope)} chargers)"
    if args.charger:
        return list(args.charger), f"Chargers {', '.join(args.charger)}"
    scope = all_chargers(conn)
    return scope, f"All chargers ({len(scope)})"


def _user_label(conn: psycopg.Connection[Any], user_id: str) -> str:
    """``Name (user_id)`` when the user is known (0008's users table), else the id."""
    try:
        with conn.transaction():
            row = conn.execute("select display_name from users where user_id = %s", (user_id,)).fetchone()
    except psycopg.errors.UndefinedTable:
        row = None
    return f"{row[0]} ({user_id})" if row and row[0] else user_id


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(data)
    tmp.replace(path)
    print(f"wrote {path} ({len(data)} bytes)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    from reports.build import build_report, reimbursement_statement
    from warehouse.history import HistoryFilter

    now = datetime.now(UTC)
    cmd = args.report_command
    with psycopg.connect(settings.pg_dsn.reveal()) as conn:
        if cmd == "costs":
            return _costs(settings, conn, args, now)
        if cmd == "scheduled":
            return _scheduled(conn, args, now)
        scope, label = _scope(conn, args)
        if cmd == "parquet":
            from reports.parquet_export import export_parquet
            from warehouse.analytics import ensure_views_db, lake_paths

            lake_root, db = lake_paths(settings)
            ensure_views_db(lake_root, db)
            n = export_parquet(db, args.table, args.first, args.last, args.output,
                               charger_ids=None if args.all else scope)
            print(f"wrote {args.output} ({n} rows)")
            return 0
        if cmd == "reimbursement":
            whose = args.for_user or args.user
            if not whose:
                print("name the user: --user or --for-user", file=sys.stderr)
                return 2
            month = date.fromisoformat(f"{args.month}-01")
            report = reimbursement_statement(conn, scope, whose, month, user_label=_user_label(conn, whose), now=now)
            _write(args.output, report.pdf())
            if args.csv:
                _write(args.csv, report.csv(bom=True))
            return 0
        flt = HistoryFilter(args.first, args.last, site_ids=tuple(args.site), modes=tuple(args.mode),
                            outcome=args.outcome, cost_centres=tuple(args.cost_centre),
                            user_ids=tuple(args.of_user))
        kind = {"csv": "owner", "pdf": "owner", "fleet": "fleet", "cost-sharing": "cost-sharing"}[cmd]
        group_by = [g for g in args.by.split(",") if g] if cmd == "fleet" else []
        report = build_report(conn, scope, flt, kind=kind, scope_label=label, now=now,  # type: ignore[arg-type]
                              group_by=group_by, charts=cmd != "csv")
        if cmd == "csv":
            _write(args.output, report.csv(bom=args.bom))
        else:
            _write(args.output, report.pdf())
            if getattr(args, "csv", None):
                _write(args.csv, report.csv(bom=True))
        total = report.content.total
        print(f"{total.sessions} sessions, {total.energy_kwh:,.3f} kWh, {total.excluded_sessions} excluded")
    return 0


def _costs(settings: Settings, conn: psycopg.Connection[Any], args: argparse.Namespace, now: datetime) -> int:
    from warehouse.analytics import LakeLockedError, ParquetLake, lake_paths
    from warehouse.tariff_store import compute_costs, costs_period

    start, end = costs_period(args.first, args.last)
    if args.no_lake:
        run = compute_costs(conn, start, end, now=now, charger_ids=args.charger)
    else:
        lake_root, views_db = lake_paths(settings)
        try:
            with ParquetLake(lake_root, views_db=views_db) as lake:
                run = compute_costs(conn, start, end, now=now, charger_ids=args.charger, lake=lake)
        except LakeLockedError:
            print("the pipeline is writing the lake: stop it or pass --no-lake (DuckDB's monthly_cost then lags)",
                  file=sys.stderr)
            return 1
    print(f"costed {run.sessions} sessions ({run.rows} day rows); {run.no_tariff_sessions} without a tariff")
    return 0


def _scheduled(conn: psycopg.Connection[Any], args: argparse.Namespace, now: datetime) -> int:
    from reports.scheduled import Schedule, load_schedules, run_due, save_schedule

    if args.schedule_command == "add":
        owner_kind, owner_id = ("user", args.user) if args.user else ("org", args.org)
        save_schedule(conn, Schedule(args.id, args.kind, owner_kind, owner_id, args.every,
                                     tuple(f for f in args.formats.split(",") if f),
                                     tuple(b for b in args.by.split(",") if b), args.out_dir.resolve()),
                      email=args.email)
        print(f"schedule {args.id} saved")
        return 0
    if args.schedule_command == "list":
        for s in load_schedules(conn):
            print(f"{s.schedule_id}: {s.kind} of {s.owner_kind} {s.owner_id} every {s.every} -> {s.out_dir} "
                  f"({','.join(s.formats)}); last period {s.last_period_start or '-'}")
        return 0
    for path in run_due(conn, now):
        print(f"wrote {path}")
    return 0


def add_history_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="history_command", metavar="HISTORY", required=True)
    p = sub.add_parser("generate", help="write a simulated history fast (not real time) into TimescaleDB and the lake")
    p.add_argument("--chargers", type=int, default=100)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--start", help="first UTC day (default: --days before today)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sample-interval-s", type=int, default=900, help="meter sample period while charging")
    p.add_argument("--no-lake", action="store_true")
