"""A calendar year's summaries from rollups: the analytics page of a 1,000-charger fleet.

:func:`summaries` answers what :func:`warehouse.history.summaries_sql` answers (the same numbers:
totals per month or year and for the whole period, top chargers, excluded and uncosted sessions)
but, for a filter of one whole calendar year and chargers only, from the rollup tables of
migration 0018 instead of every session-day: about a dozen rows per charger instead of ~400.
Any other filter (other dates, sites, users, modes...) goes to ``summaries_sql`` unchanged.

Never stale. Triggers mark every (charger, day) cell a write to ``sessions``,
``session_day_energy`` or ``session_costs`` may change, in the writer's transaction. A read
takes the refresh lock, then one REPEATABLE READ snapshot in which it recomputes the marked cells
of its chargers from the raw tables, consumes those marks and reads: the figures are the raw
tables' at that snapshot, re-costing and late flags included. ``flowbank maintain`` refreshes
every marked cell after costing, so a page usually finds only the last minutes' marks.

What is counted where (the same as ``summarize_sql`` for that filter): a day row of a session
that is not excluded and overlaps the row's year, on the session's charger; a session counts once
per month (and once in the year) it has a day row in; excluded and uncosted sessions are counted
in the month they started, for every year they overlap.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any, Final, Literal

import psycopg
from psycopg import pq

from warehouse.history import (
    HistoryFilter,
    PeriodTotal,
    Summaries,
    add_start_counts,
    excluded_frame,
    period_totals,
    summaries_sql,
    top_frame,
)
from warehouse.queries import Connection, QueryError, WarehouseUnavailableError, fetch_dicts

EXCLUDED_LIMIT: Final = 300  # excluded sessions listed (all are counted)
TOP_LIMIT: Final = 10

# A refresh works in steps over temporary tables (dropped at commit), each analyzed so that a page's
# few hundred marked cells are looked up by index and a year of marks is joined in bulk.
_COUNTING: Final = """
    join sessions s on s.session_id = r.session_id and s.charger_id = r.charger_id
    where not s.excluded
      and s.started_at < make_timestamptz(extract(year from r.day)::int + 1, 1, 1, 0, 0, 0, 'UTC')
      and coalesce(s.ended_at, s.last_sample_at, s.started_at)
          >= make_timestamptz(extract(year from r.day)::int, 1, 1, 0, 0, 0, 'UTC')"""

# The day rows (energy) and cost rows of the marked cells that count.
_CELL_ROWS: Final = ("""
create temporary table rollup_energy on commit drop as
select r.session_id, r.charger_id, r.day, r.energy_wh
from pg_temp.rollup_cells x join session_day_energy r on r.day = x.day and r.charger_id = x.charger_id""" + _COUNTING,
                     """
create temporary table rollup_costs on commit drop as
select r.session_id, r.charger_id, r.day, coalesce(r.currency, '') as currency, r.status, r.net_nano, r.vat_nano
from pg_temp.rollup_cells x join session_costs r on r.day = x.day and r.charger_id = x.charger_id""" + _COUNTING)

# Where each of their sessions has its first row of each month (the first of a year is the first
# of its months: same session, same year, so the same rows count); cost rows: those without a tariff.
_ENERGY_CELLS: Final = """
insert into history_rollup_day (charger_id, day, currency, energy_wh, sessions_first_in_month, sessions_first_in_year)
with m as (
    select p.session_id, date_trunc('month', p.day::timestamp)::date as month, min(p.day) as first_day
    from session_day_energy p join (select distinct session_id, charger_id from pg_temp.rollup_energy) q
      on q.session_id = p.session_id and q.charger_id = p.charger_id
    group by 1, 2),
f as (select m.*, min(first_day) over (partition by session_id, date_trunc('year', month::timestamp)) as year_first
      from m)
select e.charger_id, e.day, '', sum(e.energy_wh), count(*) filter (where f.first_day = e.day),
       count(*) filter (where f.year_first = e.day)
from pg_temp.rollup_energy e
join f on f.session_id = e.session_id and f.month = date_trunc('month', e.day::timestamp)::date
group by 1, 2"""

_COST_CELLS: Final = """
insert into history_rollup_day as d (charger_id, day, currency, cost_rows, net_nano, vat_nano, no_tariff_first_in_month,
                                     no_tariff_first_in_year)
with m as (
    select p.session_id, coalesce(p.currency, '') as currency, date_trunc('month', p.day::timestamp)::date as month,
           min(p.day) as first_day
    from session_costs p
    join (select distinct session_id, charger_id from pg_temp.rollup_costs where status = 'no_tariff') q
      on q.session_id = p.session_id and q.charger_id = p.charger_id
    where p.status = 'no_tariff'
    group by 1, 2, 3),
f as (select m.*, min(first_day) over (partition by session_id, currency, date_trunc('year', month::timestamp))
                  as year_first
      from m)
select k.charger_id, k.day, k.currency, count(*), sum(k.net_nano)::bigint, sum(k.vat_nano)::bigint,
       count(*) filter (where f.first_day = k.day), count(*) filter (where f.year_first = k.day)
from pg_temp.rollup_costs k
left join f on k.status = 'no_tariff' and f.session_id = k.session_id and f.currency = k.currency
           and f.month = date_trunc('month', k.day::timestamp)::date
group by 1, 2, 3
on conflict (charger_id, day, currency) do update set
    cost_rows = excluded.cost_rows, net_nano = excluded.net_nano, vat_nano = excluded.vat_nano,
    no_tariff_first_in_month = excluded.no_tariff_first_in_month,
    no_tariff_first_in_year = excluded.no_tariff_first_in_year"""

_MONTHS_OF_MARKS: Final = """
create temporary table rollup_months on commit drop as
select distinct charger_id, date_trunc('month', day::timestamp)::date as month from pg_temp.rollup_marks
where kind = %s"""

# A lateral aggregate per month: an index range scan each (a join would scan every day cell).
_MONTH_CELLS: Final = """
insert into history_rollup_month (charger_id, month, currency, energy_wh, sessions, sessions_first_in_year, cost_rows,
                                  net_nano, vat_nano, no_tariff, no_tariff_first_in_year)
select m.charger_id, m.month, d.*
from pg_temp.rollup_months m
cross join lateral (
    select currency, sum(energy_wh), sum(sessions_first_in_month), sum(sessions_first_in_year), sum(cost_rows),
           sum(net_nano)::bigint, sum(vat_nano)::bigint, sum(no_tariff_first_in_month), sum(no_tariff_first_in_year)
    from history_rollup_day d
    where d.charger_id = m.charger_id and d.day >= m.month and d.day < (m.month + interval '1 month')::date
    group by currency) d"""

_UNCOSTED_CELLS: Final = """
insert into history_rollup_uncosted (charger_id, month, year, sessions)
select s.charger_id, m.month, y.year, count(*)
from pg_temp.rollup_months m
join sessions s on s.charger_id = m.charger_id and s.started_at >= m.month::timestamp at time zone 'UTC'
               and s.started_at < (m.month + interval '1 month')::timestamp at time zone 'UTC'
cross join lateral generate_series(
    extract(year from s.started_at at time zone 'UTC')::int,
    extract(year from coalesce(s.ended_at, s.last_sample_at, s.started_at) at time zone 'UTC')::int) y(year)
where not s.excluded  -- a subquery per session (its key's index), never a scan of every cost row
  and (select 1 from session_costs k where k.session_id = s.session_id
       and k.day between make_date(y.year, 1, 1) - 31 and make_date(y.year, 12, 31) + 31 limit 1) is null
group by 1, 2, 3"""


def _run(conn: Connection, what: str, statements: Sequence[tuple[str, Any]]) -> list[int]:
    """Execute ``statements`` (query, params); their row counts. Errors as :mod:`warehouse.queries`'."""
    counts = []
    try:
        with conn.cursor() as cur:
            for query, params in statements:
                cur.execute(query.encode(), params)
                counts.append(cur.rowcount)
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise WarehouseUnavailableError(f"{what}: the warehouse is unavailable: {exc}") from exc
    except psycopg.Error as exc:
        raise QueryError(f"{what} failed: {exc}") from exc
    return counts


@contextmanager
def _locked_snapshot(conn: Connection) -> Iterator[None]:
    """A transaction holding the refresh lock: REPEATABLE READ (one snapshot, taken after the lock)
    when the connection has no transaction open, else a savepoint in the caller's."""
    idle = conn.info.transaction_status == pq.TransactionStatus.IDLE
    try:
        with conn.transaction():
            # Refreshers exclude each other; readers and the raw tables' writers are not blocked.
            _run(conn, "locking the history rollups",
                 [*([("set transaction isolation level repeatable read", None)] if idle else []),
                  ("lock table history_rollup_day in share row exclusive mode", None),
                  # JIT compiles for ~0.1-0.3 s when the planner overestimates (it does, for the
                  # years of a session); the sorts of a large refresh fit in memory.
                  ("set local jit = off", None), ("set local work_mem = '32MB'", None)])
            yield
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise WarehouseUnavailableError(f"the history rollups: the warehouse is unavailable: {exc}") from exc


def _refresh_locked(conn: Connection, charger_ids: Sequence[str] | None) -> int:
    """Recompute the cells marked for ``charger_ids`` (None: all) and consume their marks."""
    scope = {"all": charger_ids is None, "chargers": list(charger_ids or [])}
    count = _run(conn, "reading the rollup marks", [
        ("drop table if exists pg_temp.rollup_marks", None),
        ("create temporary table rollup_marks on commit drop as select charger_id, day, kind, xid"
         " from history_rollup_marks where %(all)s or charger_id = any(%(chargers)s)", scope)])[1]
    if not count:
        return 0
    temporary = ("rollup_cells", "rollup_energy", "rollup_costs", "rollup_months")
    analyze = [("analyze pg_temp." + name, None) for name in temporary]
    _run(conn, "refreshing the history rollups", [
        *[(f"drop table if exists pg_temp.{name}", None) for name in temporary],
        ("create temporary table rollup_cells on commit drop as select distinct charger_id, day"
         " from pg_temp.rollup_marks where kind = 'd'", None), analyze[0],
        ("delete from history_rollup_day r using pg_temp.rollup_cells m"
         " where r.charger_id = m.charger_id and r.day = m.day", None),
        (_CELL_ROWS[0], None), analyze[1], (_ENERGY_CELLS, None),
        (_CELL_ROWS[1], None), analyze[2], (_COST_CELLS, None),
        (_MONTHS_OF_MARKS, ("d",)), analyze[3],
        ("delete from history_rollup_month r using pg_temp.rollup_months m"
         " where r.charger_id = m.charger_id and r.month = m.month", None),
        (_MONTH_CELLS, None),
        ("drop table pg_temp.rollup_months", None), (_MONTHS_OF_MARKS, ("s",)), analyze[3],
        ("delete from history_rollup_uncosted r using pg_temp.rollup_months m"
         " where r.charger_id = m.charger_id and r.month = m.month", None),
        (_UNCOSTED_CELLS, None),
        # Only the marks read above: those of transactions committed since stay for the next reader.
        ("delete from history_rollup_marks k using pg_temp.rollup_marks m where k.charger_id = m.charger_id"
         " and k.day = m.day and k.kind = m.kind and k.xid = m.xid", None),
        *[(f"drop table pg_temp.{name}", None) for name in (*temporary, "rollup_marks")]])
    return count


def refresh(conn: Connection, charger_ids: Sequence[str] | None = None) -> int:
    """Bring the rollups of ``charger_ids`` (None: every charger) up to date; the marks consumed.
    ``flowbank maintain`` runs it; a read refreshes its own chargers anyway."""
    with _locked_snapshot(conn):
        return _refresh_locked(conn, charger_ids)


def calendar_year(flt: HistoryFilter) -> int | None:
    """The year, when ``flt`` is one whole calendar year filtered by chargers only (rollups apply)."""
    if (flt.first_day != date(flt.first_day.year, 1, 1) or flt.last_day != date(flt.first_day.year, 12, 31)
            or flt.site_ids or flt.modes or flt.outcome or flt.user_ids or flt.cost_centres or flt.vehicle_ids):
        return None
    return flt.first_day.year


def summaries(conn: Connection, scope: Sequence[str], flt: HistoryFilter,
              by: Literal["month", "year"] = "month") -> Summaries:
    """:func:`warehouse.history.summaries_sql`'s figures; from the rollups when ``flt`` allows."""
    year = calendar_year(flt)
    if year is None:
        return summaries_sql(conn, scope, flt, by)
    wanted = set(flt.charger_ids)
    return year_summaries(conn, sorted({c for c in scope if not wanted or c in wanted}), year, by)


_MONTH_ROWS: Final = """
select month, currency, sum(energy_wh) as energy_wh, sum(sessions) as sessions,
       sum(sessions_first_in_year) as sessions_in_year, sum(cost_rows) as cost_rows,
       sum(net_nano)::bigint as net_nano, sum(vat_nano)::bigint as vat_nano, sum(no_tariff) as no_tariff,
       sum(no_tariff_first_in_year) as no_tariff_in_year
from history_rollup_month where charger_id = any(%(chargers)s) and month between %(first)s and %(last)s
group by month, currency"""

_TOP: Final = """
with m as (select charger_id, currency, sum(energy_wh) as energy_wh, sum(sessions_first_in_year) as sessions,
                  sum(sessions) as month_sessions, sum(cost_rows) as cost_rows, sum(net_nano)::bigint as net_nano
           from history_rollup_month where charger_id = any(%(chargers)s) and month between %(first)s and %(last)s
           group by 1, 2),
energy as (select charger_id, energy_wh, sessions from m where currency = '' and month_sessions > 0),
money as (select charger_id, nullif(currency, '') as currency, net_nano from m where cost_rows > 0)
select e.charger_id, mo.currency, c.display_name as charger_name, e.energy_wh, e.sessions, mo.net_nano
from energy e left join money mo using (charger_id) left join chargers c using (charger_id)
order by e.energy_wh desc, e.charger_id limit %(limit)s"""

# Excluded sessions are few: read from sessions (index sessions_excluded_started), listed and counted.
_EXCLUDED: Final = """
select session_id, charger_id, started_at, energy_wh, flags from sessions
where excluded and charger_id = any(%(chargers)s) and started_at < %(end)s
  and coalesce(ended_at, last_sample_at, started_at) >= %(start)s
order by started_at, session_id limit %(excluded_limit)s"""

_EXCLUDED_BY_MONTH: Final = """
select date_trunc('month', started_at at time zone 'UTC')::date as month, count(*) as sessions from sessions
where excluded and charger_id = any(%(chargers)s) and started_at < %(end)s
  and coalesce(ended_at, last_sample_at, started_at) >= %(start)s
group by 1"""

_UNCOSTED: Final = """
select month, sum(sessions) as sessions from history_rollup_uncosted
where charger_id = any(%(chargers)s) and year = %(year)s group by month"""


def year_summaries(conn: Connection, chargers: Sequence[str], year: int,
                   by: Literal["month", "year"] = "month") -> Summaries:
    """The summaries of ``chargers``' sessions in ``year`` (UTC), refreshed and read in one snapshot."""
    flt = HistoryFilter(date(year, 1, 1), date(year, 12, 31))
    params = {"chargers": list(chargers), "first": flt.first_day, "last": flt.last_day, "start": flt.start,
              "end": flt.end, "year": year, "limit": TOP_LIMIT, "excluded_limit": EXCLUDED_LIMIT}
    if not chargers:
        return _summaries(by, [], [], [], [], [])
    with _locked_snapshot(conn):
        _refresh_locked(conn, chargers)
        months = fetch_dicts(conn, "monthly totals", _MONTH_ROWS, params)
        top = fetch_dicts(conn, "top chargers", _TOP, params)
        excluded = fetch_dicts(conn, "excluded sessions", _EXCLUDED, params)
        excluded_by_month = fetch_dicts(conn, "excluded sessions per month", _EXCLUDED_BY_MONTH, params)
        uncosted = fetch_dicts(conn, "uncosted sessions", _UNCOSTED, params)
    return _summaries(by, months, top, excluded, excluded_by_month, uncosted)


def _summaries(by: Literal["month", "year"], months: list[dict[str, Any]], top: list[dict[str, Any]],
               excluded: list[dict[str, Any]], excluded_by_month: list[dict[str, Any]],
               uncosted: list[dict[str, Any]]) -> Summaries:
    """The figures from the rows read, per month (or year) and for the year, as summarize_sql builds them."""
    def key(month: date, unit: Literal["month", "year", "all"]) -> date | None:
        return None if unit == "all" else month if unit == "month" else month.replace(month=1)

    def totals(unit: Literal["month", "year", "all"]) -> list[PeriodTotal]:
        # Within a month a session's first day row there counts it; within the year, its first of the year.
        per_year = unit != "month"
        energy: dict[date | None, dict[str, Any]] = {}
        money: dict[tuple[date | None, str], dict[str, Any]] = {}
        for row in months:
            period = key(row["month"], unit)
            if row["currency"] == "" and row["sessions"]:  # the month has day rows
                e = energy.setdefault(period, {"period": period, "energy_wh": 0.0, "sessions": 0})
                e["energy_wh"] += row["energy_wh"]
                e["sessions"] += int(row["sessions_in_year" if per_year else "sessions"])
            if row["cost_rows"]:
                m = money.setdefault((period, row["currency"]), {
                    "period": period, "currency": row["currency"] or None, "net_nano": None, "vat_nano": None,
                    "no_tariff": 0})
                for amount in ("net_nano", "vat_nano"):
                    if row[amount] is not None:
                        m[amount] = (m[amount] or 0) + int(row[amount])
                m["no_tariff"] += int(row["no_tariff_in_year" if per_year else "no_tariff"])
        out = period_totals(sorted(energy.values(), key=lambda r: r["period"] or date.min), list(money.values()))
        counts: dict[date | None, dict[str, Any]] = {}
        for name, rows in (("excluded", excluded_by_month), ("uncosted", uncosted)):
            for row in rows:
                c = counts.setdefault(key(row["month"], unit), {"period": key(row["month"], unit), "excluded": 0,
                                                                "uncosted": 0})
                c[name] += int(row["sessions"])
        add_start_counts(out, counts.values())
        return [out[k] for k in sorted(out, key=lambda d: d or date.min)]

    everything = totals("all")
    return Summaries(totals(by), everything[0] if everything else PeriodTotal(None, 0.0, 0, 0), top_frame(top),
                     excluded_frame(excluded))

