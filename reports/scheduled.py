"""Scheduled reports: a recurring report of a user or an organisation, written to a folder.

``flowbank report scheduled run`` (from cron or a systemd timer, e.g. daily) writes, for each
schedule, every finished period not written yet: ``<out_dir>/<schedule_id>/<period>.pdf`` and
``.csv``. A period is a UTC calendar month, or an ISO week (Monday to Sunday). The scope is the
owner's: a user's memberships, or the chargers at an organisation's sites. E-mail delivery is
not implemented (the ``email`` column is kept for it); a mail relay would send the written files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from reports.build import Kind, build_report, chargers_of_org, chargers_of_user, reimbursement_statement
from warehouse.history import HistoryFilter
from warehouse.queries import Connection


@dataclass(frozen=True, slots=True)
class Schedule:
    schedule_id: str
    kind: Kind
    owner_kind: str  # user | org
    owner_id: str
    every: str  # month | week
    formats: tuple[str, ...]
    group_by: tuple[str, ...]
    out_dir: Path
    last_period_start: date | None = None


def save_schedule(conn: Connection, s: Schedule, *, email: str | None = None) -> None:
    with conn.transaction():
        conn.execute(
            "insert into report_schedules (schedule_id, kind, owner_kind, owner_id, every, formats, group_by, out_dir, "
            "email) values (%s, %s, %s, %s, %s, %s, %s, %s, %s) on conflict (schedule_id) do update set "
            "kind = excluded.kind, owner_kind = excluded.owner_kind, owner_id = excluded.owner_id, "
            "every = excluded.every, formats = excluded.formats, group_by = excluded.group_by, "
            "out_dir = excluded.out_dir, email = excluded.email",
            (s.schedule_id, s.kind, s.owner_kind, s.owner_id, s.every, list(s.formats), list(s.group_by),
             str(s.out_dir), email))


def load_schedules(conn: Connection) -> list[Schedule]:
    rows = conn.execute("select schedule_id, kind, owner_kind, owner_id, every, formats, group_by, out_dir, "
                        "last_period_start from report_schedules order by schedule_id").fetchall()
    return [Schedule(r[0], r[1], r[2], r[3], r[4], tuple(r[5]), tuple(r[6]), Path(r[7]), r[8]) for r in rows]


def period_of(every: str, day: date) -> tuple[date, date]:
    """The month or ISO week containing ``day``: (first, last) days."""
    if every == "week":
        first = day - timedelta(days=day.weekday())
        return first, first + timedelta(days=6)
    first = day.replace(day=1)
    return first, (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)


def due_periods(s: Schedule, today: date, *, created: date) -> list[tuple[date, date]]:
    """Finished periods after the last one written (the first: the one before ``created``'s period)."""
    last_done = s.last_period_start
    first, _ = period_of(s.every, created)
    start = period_of(s.every, first - timedelta(days=1))[0] if last_done is None else \
        period_of(s.every, period_of(s.every, last_done)[1] + timedelta(days=1))[0]
    out: list[tuple[date, date]] = []
    while True:
        lo, hi = period_of(s.every, start)
        if hi >= today:
            return out
        out.append((lo, hi))
        start = hi + timedelta(days=1)


def run_due(conn: Connection, now: datetime) -> list[Path]:
    """Write every due period of every schedule; returns the files written."""
    written: list[Path] = []
    rows: list[Any] = conn.execute("select schedule_id, created_at from report_schedules").fetchall()
    created = {r[0]: r[1].date() for r in rows}
    for s in load_schedules(conn):
        scope = chargers_of_user(conn, s.owner_id) if s.owner_kind == "user" else chargers_of_org(conn, s.owner_id)
        label = f"{'User' if s.owner_kind == 'user' else 'Organisation'} {s.owner_id} ({len(scope)} chargers)"
        for lo, hi in due_periods(s, now.date(), created=created[s.schedule_id]):
            if s.kind == "reimbursement":
                report = reimbursement_statement(conn, scope, s.owner_id, lo, user_label=s.owner_id, now=now)
            else:
                report = build_report(conn, scope, HistoryFilter(lo, hi), kind=s.kind, scope_label=label, now=now,
                                      group_by=s.group_by)  # type: ignore[arg-type]
            folder = s.out_dir / s.schedule_id
            folder.mkdir(parents=True, exist_ok=True)
            stem = lo.strftime("%Y-%m") if s.every == "month" else f"{lo.isocalendar()[0]}-W{lo.isocalendar()[1]:02d}"
            for fmt in s.formats:
                path = folder / f"{stem}.{fmt}"
                tmp = path.with_name(f".{path.name}.partial")
                tmp.write_bytes(report.pdf() if fmt == "pdf" else report.csv(bom=True))
                tmp.replace(path)
                written.append(path)
            with conn.transaction():
                conn.execute("update report_schedules set last_period_start = %s where schedule_id = %s",
                             (lo, s.schedule_id))
    return written
