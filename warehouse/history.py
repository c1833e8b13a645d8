"""Charging history for owners and fleets: the session list with filters, a session's detail,
monthly/yearly summaries, top chargers, daily energy and the excluded (corrupted) sessions.

Scope. Every function takes ``scope``: the charger ids the caller may see, decided above this
module (the dashboards' service layer). Nothing here ever widens it: an empty scope sees
nothing, and a session on a charger outside it is "not found".

Periods. Energy totals come from ``session_day_energy`` (split at UTC midnight from the meter
curve), costs from ``session_costs`` (split the same way), so a session across midnight or a
month end counts in the right periods, and the list, the summaries, the CSV, the PDF and
DuckDB's ``monthly_energy``/``monthly_cost`` add up to the same numbers. Excluded sessions
(corrupted: an excluding quality flag) are listed apart with their reasons and left out of every
total. Money: sums of ``net_nano``/``vat_nano`` rounded half up once (:func:`warehouse.costing.money`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final, Literal

import polars as pl
import psycopg

from control.records import FLAG_DESCRIPTIONS, QualityFlag
from control.tariffs import ADD_TARIFF_MESSAGE, MINOR_UNITS
from warehouse.costing import money
from warehouse.queries import Connection, NotFoundError, QueryError, WarehouseUnavailableError, _fetch
from warehouse.tariff_store import allocation_sql, copy_frame

# OCPP 1.6 / 2.0.1 stop reasons that mean the session ended because something went wrong.
ERROR_STOP_REASONS: Final = frozenset({
    "EmergencyStop", "PowerLoss", "Reboot", "HardReset", "SoftReset", "DeAuthorized", "GroundFault",
    "OvercurrentFault", "PowerQuality", "ImmediateReset", "Timeout", "EnergyLimitReached_Error", "Other",
})
Outcome = Literal["success", "error"]
_UTC_US: Final = pl.Datetime("us", "UTC")


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """What the screen's filter bar selects. ``first_day``..``last_day`` are UTC days (inclusive);
    a session is listed when it overlaps them. Empty tuples mean "any"."""

    first_day: date
    last_day: date
    charger_ids: tuple[str, ...] = ()
    site_ids: tuple[str, ...] = ()
    modes: tuple[str, ...] = ()
    outcome: Outcome | None = None
    user_ids: tuple[str, ...] = ()
    cost_centres: tuple[str, ...] = ()
    vehicle_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.last_day < self.first_day:
            raise ValueError("last_day is before first_day")

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, time(), UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last_day + timedelta(days=1), time(), UTC)


def _base(conn: Connection, scope: Sequence[str], flt: HistoryFilter) -> tuple[str, dict[str, Any]]:
    """``with base as (...)``: the filtered sessions of the scope with their allocation."""
    joins, alloc = allocation_sql(conn)
    errors = sorted(ERROR_STOP_REASONS)
    sql = f"""
with base as (
  select * from (
    select s.session_id, s.charger_id, s.connector_id, s.transaction_id, coalesce(s.site_id, c.site_id) as site_id,
           c.display_name as charger_name, s.state, s.started_at, s.ended_at, s.duration_s, s.charging_s,
           s.energy_wh, s.peak_power_w, s.avg_power_w, s.id_tag, s.mode, s.stop_reason, s.flags, s.excluded,
           case when s.state = 'abandoned' or s.stop_reason = any(%(errors)s) then 'error' else 'success' end
             as outcome,
           {alloc}
    from sessions s {joins}
    where s.charger_id = any(%(scope)s) and s.started_at < %(end)s
      and coalesce(s.ended_at, s.last_sample_at, s.started_at) >= %(start)s
  ) x
  where (%(any_charger)s or charger_id = any(%(chargers)s))
    and (%(any_site)s or site_id = any(%(sites)s))
    and (%(any_mode)s or mode = any(%(modes)s))
    and (%(outcome)s::text is null or outcome = %(outcome)s)
    and (%(any_user)s or user_id = any(%(users)s))
    and (%(any_centre)s or cost_centre = any(%(centres)s))
    and (%(any_vehicle)s or vehicle_id = any(%(vehicles)s))
)"""  # noqa: S608 - the joins and select list are fixed text from allocation_sql
    params: dict[str, Any] = {
        "errors": errors, "scope": list(scope), "start": flt.start, "end": flt.end,
        "first": flt.first_day, "last": flt.last_day,
        "any_charger": not flt.charger_ids, "chargers": list(flt.charger_ids),
        "any_site": not flt.site_ids, "sites": list(flt.site_ids), "any_mode": not flt.modes, "modes": list(flt.modes),
        "outcome": flt.outcome, "any_user": not flt.user_ids, "users": list(flt.user_ids),
        "any_centre": not flt.cost_centres, "centres": list(flt.cost_centres),
        "any_vehicle": not flt.vehicle_ids, "vehicles": list(flt.vehicle_ids),
    }
    return sql, params


def money_expr(nano: str, currency: str, *, plus: str | None = None) -> pl.Expr:
    """``nano`` rounded half up to ``currency``'s minor unit, as a decimal string ("12.34"); null
    stays null. ``plus``: add that column, rounded the same way first (gross = net + VAT)."""
    expr: Any = None
    for digits in sorted({2, *MINOR_UNITS.values()}):
        unit = 10 ** (9 - digits)
        whole = (pl.col(nano) + unit // 2) // unit
        if plus is not None:
            whole = whole + (pl.col(plus) + unit // 2) // unit
        text = ((whole // 10**digits).cast(pl.String()) + "." + (whole % 10**digits).cast(pl.String()).str.zfill(digits)
                if digits else whole.cast(pl.String()))
        others = [c for c, d in MINOR_UNITS.items() if d != digits]
        cond = (~pl.col(currency).is_in(others) if digits == 2
                else pl.col(currency).is_in([c for c, d in MINOR_UNITS.items() if d == digits]))
        expr = pl.when(cond).then(text) if expr is None else expr.when(cond).then(text)
    return expr.otherwise(None)  # type: ignore[no-any-return]


LIST_SCHEMA: Final = pl.Schema({
    "session_id": pl.String(), "charger_id": pl.String(), "charger_name": pl.String(), "site_id": pl.String(),
    "connector_id": pl.Int32(), "started_at": _UTC_US, "ended_at": _UTC_US, "duration_s": pl.Float64(),
    "energy_wh": pl.Float64(), "energy_in_period_wh": pl.Float64(), "peak_power_w": pl.Float64(),
    "avg_power_w": pl.Float64(), "mode": pl.String(), "id_tag": pl.String(), "user_id": pl.String(),
    "user_name": pl.String(), "vehicle_id": pl.String(), "vehicle_name": pl.String(), "cost_centre": pl.String(),
    "outcome": pl.String(),
    "stop_reason": pl.String(), "state": pl.String(), "flags": pl.List(pl.String()), "excluded": pl.Boolean(),
    "tariff_id": pl.String(), "currency": pl.String(), "cost_status": pl.String(), "net_in_period_nano": pl.Int64(),
    "vat_in_period_nano": pl.Int64(),
})


_LIST_QUERY: Final = """
select b.session_id, b.charger_id, b.charger_name, b.site_id, b.connector_id, b.started_at, b.ended_at, b.duration_s,
       b.energy_wh, coalesce(e.energy_wh, 0) as energy_in_period_wh, b.peak_power_w, b.avg_power_w, b.mode, b.id_tag,
       b.user_id, b.user_name, b.vehicle_id, b.vehicle_name, b.cost_centre, b.outcome, b.stop_reason, b.state,
       b.flags, b.excluded,
       k.tariff_id, k.currency,
       case when b.excluded then null when k.session_id is null then 'uncosted' else k.status end as cost_status,
       k.net_nano::bigint as net_in_period_nano, k.vat_nano::bigint as vat_in_period_nano
from base b
left join (select session_id, sum(energy_wh) as energy_wh from session_day_energy
           where day between %(first)s and %(last)s and charger_id = any(%(scope)s)
           group by session_id) e using (session_id)
left join (select session_id, min(tariff_id) as tariff_id, min(currency) as currency, min(status) as status,
                  sum(net_nano) filter (where day between %(first)s and %(last)s) as net_nano,
                  sum(vat_nano) filter (where day between %(first)s and %(last)s) as vat_nano
           from session_costs
           where charger_id = any(%(scope)s) and day between %(first)s - 31 and %(last)s + 31
           group by session_id) k
  using (session_id)
"""


def history_list(conn: Connection, scope: Sequence[str], flt: HistoryFilter) -> pl.DataFrame:
    """The sessions overlapping the period, oldest first (:data:`LIST_SCHEMA`).

    ``energy_in_period_wh`` and ``*_in_period_nano`` are the parts inside the period (a session
    across its edge counts only that part); ``cost_status`` is null for excluded sessions (not
    costed) and ``no_tariff`` when no tariff applies (show :data:`ADD_TARIFF_MESSAGE`), and
    ``uncosted`` when the costing has not run for the session yet.
    """
    return _list_frame(conn, *_base(conn, scope, flt))


def _list_frame(conn: Connection, base: str, params: dict[str, Any]) -> pl.DataFrame:
    """:data:`_LIST_QUERY` over ``with base as (...)`` into a frame of :data:`LIST_SCHEMA`."""
    # COPY into polars: a year of a 1,000-charger fleet is 300,000 rows (Python rows would take 20 s).
    outer = []
    for name, dtype in LIST_SCHEMA.items():
        if dtype == _UTC_US:
            outer.append(f"(extract(epoch from {name}) * 1000000)::bigint as {name}")
        elif name == "flags":
            outer.append("array_to_string(flags, ',') as flags")
        elif name == "excluded":
            outer.append("excluded::int as excluded")
        else:
            outer.append(name)
    query = f"select {', '.join(outer)} from ({base}{_LIST_QUERY}) q order by started_at, session_id"  # noqa: S608
    read = pl.Schema({k: (pl.String() if k == "flags" else pl.Int64() if k == "excluded" else v)
                      for k, v in LIST_SCHEMA.items()})
    frame = copy_frame(conn, query, params, read)
    return frame.with_columns(
        pl.when(pl.col("flags").fill_null("") == "").then(pl.lit([], pl.List(pl.String())))
        .otherwise(pl.col("flags").str.split(",")).alias("flags"),
        (pl.col("excluded") == 1).alias("excluded")).cast(LIST_SCHEMA)


def excluded_sessions(history: pl.DataFrame) -> pl.DataFrame:
    """The corrupted sessions of a :func:`history_list` result, with their reasons (plain sentences)."""
    known = {flag.value: text for flag, text in FLAG_DESCRIPTIONS.items()}
    excl = history.filter(pl.col("excluded"))
    return excl.select("session_id", "charger_id", "started_at", "energy_wh", "flags").with_columns(
        pl.col("flags").list.eval(pl.element().replace_strict(known, default=pl.element())).alias("reasons"))


@dataclass(frozen=True, slots=True)
class PeriodTotal:
    """One month or year (or the whole period: ``period`` None) of the clean sessions."""

    period: date | None
    energy_wh: float
    sessions: int
    excluded_sessions: int
    costs: dict[str, tuple[int, int]] = field(default_factory=dict)  # currency -> (net_nano, vat_nano)
    no_tariff_sessions: int = 0
    uncosted_sessions: int = 0  # not costed yet (run `flowbank report costs`)

    @property
    def energy_kwh(self) -> float:
        return self.energy_wh / 1000.0

    @property
    def avg_kwh_per_session(self) -> float | None:
        return self.energy_kwh / self.sessions if self.sessions else None

    def amounts(self, currency: str) -> tuple[Decimal, Decimal, Decimal]:
        """(net, vat, gross) rounded to the minor unit."""
        net_nano, vat_nano = self.costs[currency]
        net, vat = money(net_nano, currency), money(vat_nano, currency)
        return net, vat, net + vat

    @property
    def cost_message(self) -> str | None:
        return ADD_TARIFF_MESSAGE if self.no_tariff_sessions else None


def period_totals(energy: list[dict[str, Any]], costs: list[dict[str, Any]]) -> dict[date | None, PeriodTotal]:
    """PeriodTotals from rows of (period, energy_wh, sessions) and (period, currency, net_nano,
    vat_nano, no_tariff), as both summaries query them."""
    out: dict[date | None, PeriodTotal] = {}
    for row in energy:
        out[row["period"]] = PeriodTotal(row["period"], float(row["energy_wh"]), int(row["sessions"]), 0)
    for row in costs:
        total = out.get(row["period"]) or PeriodTotal(row["period"], 0.0, 0, 0)
        money_by = dict(total.costs)
        if row["currency"] is not None:
            money_by[row["currency"]] = (int(row["net_nano"] or 0), int(row["vat_nano"] or 0))
        out[row["period"]] = PeriodTotal(total.period, total.energy_wh, total.sessions, 0, money_by,
                                         total.no_tariff_sessions + int(row["no_tariff"]))
    return out


def summarize(history: pl.DataFrame, flt: HistoryFilter, by: Literal["month", "year", "all"],
              conn: Connection) -> list[PeriodTotal]:
    """Totals per month/year (or one for everything) of a :func:`history_list` result, from the
    day splits of its clean sessions, so they agree with DuckDB's ``monthly_energy``."""
    ids = history.filter(~pl.col("excluded"))["session_id"].to_list()
    params = {"ids": ids, "first": flt.first_day, "last": flt.last_day}
    return _summarize(conn, history, by, "%s where session_id = any(%%(ids)s) and", params)


# The clean sessions' rows of session_day_energy / session_costs ("{}": the table), where the
# period filter follows: by the ids passed, or (history_overview) joined with the listed sessions.
_LISTED_ROWS: Final = "%s join pg_temp.history_listed b using (session_id) where not b.excluded and"


def _summarize(conn: Connection, history: pl.DataFrame, by: Literal["month", "year", "all"], rows: str,
               params: dict[str, Any]) -> list[PeriodTotal]:
    excluded = history.filter(pl.col("excluded"))
    trunc = {"month": "date_trunc('month', day)::date", "year": "date_trunc('year', day)::date",
             "all": "null::date"}[by]
    energy = _fetch(conn, "period energy", f"""
        select {trunc} as period, sum(energy_wh) as energy_wh, count(distinct session_id) as sessions
        from {rows % "session_day_energy"} day between %(first)s and %(last)s
        group by 1 order by 1""", params)  # noqa: S608 - fixed text
    costs = _fetch(conn, "period costs", f"""
        select {trunc} as period, currency, sum(net_nano)::bigint as net_nano, sum(vat_nano)::bigint as vat_nano,
               count(distinct session_id) filter (where status = 'no_tariff') as no_tariff
        from {rows % "session_costs"} day between %(first)s and %(last)s
        group by 1, 2""", params)  # noqa: S608 - fixed text
    uncosted_ids = history.filter(~pl.col("excluded") & (pl.col("cost_status") == "uncosted"))
    out = period_totals(energy, costs)

    def period_of(day: date) -> date | None:
        return None if by == "all" else (day.replace(day=1) if by == "month" else day.replace(month=1, day=1))

    for started in excluded["started_at"].to_list():
        key = period_of(started.date())
        total = out.get(key) or PeriodTotal(key, 0.0, 0, 0)
        out[key] = PeriodTotal(total.period, total.energy_wh, total.sessions, total.excluded_sessions + 1,
                               total.costs, total.no_tariff_sessions, total.uncosted_sessions)
    for started in uncosted_ids["started_at"].to_list():
        key = period_of(started.date())
        total = out.get(key) or PeriodTotal(key, 0.0, 0, 0)
        out[key] = PeriodTotal(total.period, total.energy_wh, total.sessions, total.excluded_sessions,
                               total.costs, total.no_tariff_sessions, total.uncosted_sessions + 1)
    return [out[k] for k in sorted(out, key=lambda d: d or date.min)]


def top_chargers(history: pl.DataFrame, *, limit: int = 10) -> pl.DataFrame:
    """Chargers by energy in the period (clean sessions), with sessions and net cost per currency."""
    clean = history.filter(~pl.col("excluded"))
    return (clean.group_by("charger_id", "currency")
            .agg(pl.col("charger_name").first(), pl.col("energy_in_period_wh").sum().alias("energy_wh"),
                 pl.len().alias("sessions"), pl.col("net_in_period_nano").sum().alias("net_nano"))
            .with_columns((pl.col("energy_wh") / 1000).alias("energy_kwh"), money_expr("net_nano", "currency")
                          .alias("net"))
            .sort("energy_wh", "charger_id", descending=[True, False]).head(limit))


def daily_energy(conn: Connection, history: pl.DataFrame, flt: HistoryFilter) -> pl.DataFrame:
    """Energy per UTC day of the clean sessions of a :func:`history_list` result (the calendar)."""
    ids = history.filter(~pl.col("excluded"))["session_id"].to_list()
    return _daily(conn, "%s where session_id = any(%%(ids)s) and",
                  {"ids": ids, "first": flt.first_day, "last": flt.last_day})


def _daily(conn: Connection, rows: str, params: dict[str, Any]) -> pl.DataFrame:
    query = f"""
        select day, sum(energy_wh) as energy_wh, count(distinct session_id) as sessions
        from {rows % "session_day_energy"} day between %(first)s and %(last)s group by day order by day"""  # noqa: S608
    found = _fetch(conn, "daily energy", query, params)
    schema = pl.Schema({"day": pl.Date(), "energy_wh": pl.Float64(), "sessions": pl.Int64()})
    frame = pl.DataFrame(found, schema=schema, orient="row") if found else pl.DataFrame(schema=schema)
    return frame.with_columns((pl.col("energy_wh") / 1000).alias("energy_kwh"))


@dataclass(frozen=True, slots=True)
class Listing:
    """:func:`history_overview`: the list and the figures the history page shows."""

    history: pl.DataFrame  # as history_list, oldest first
    periods: list[PeriodTotal]  # summarize(history, flt, by, conn); empty when ``by`` is None
    total: list[PeriodTotal]  # summarize(history, flt, "all", conn)
    daily: pl.DataFrame | None  # daily_energy(conn, history, flt) when asked


def history_overview(conn: Connection, parts: Sequence[tuple[Sequence[str], HistoryFilter]], flt: HistoryFilter,
                     by: Literal["month", "year"] | None = None, *, daily: bool = False) -> Listing:
    """The sessions of every (scope, filter) of ``parts`` (their :func:`history_list` results,
    concatenated and sorted by start and id) and the :func:`summarize` / :func:`daily_energy`
    figures of that list for ``flt``'s days: the same rows and numbers, in one transaction.

    Why not those functions in turn: each summary passed the list's ids back (30,000 for a
    fleet's month: ~0.25 s a query to plan and probe), and the list's plan sorted its cost rows
    on disk. Here the filtered sessions are selected once into a temporary table that the list
    and the summaries join, with the memory for in-memory hashing (one fleet page: ~5 MB)."""
    try:
        return _history_overview(conn, parts, flt, by, daily=daily)
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise WarehouseUnavailableError(f"the history: the warehouse is unavailable: {exc}") from exc
    except psycopg.Error as exc:
        raise QueryError(f"the history failed: {exc}") from exc


def _history_overview(conn: Connection, parts: Sequence[tuple[Sequence[str], HistoryFilter]], flt: HistoryFilter,
                      by: Literal["month", "year"] | None, *, daily: bool) -> Listing:
    frames = []
    params: dict[str, Any] = {"first": flt.first_day, "last": flt.last_day}
    with conn.transaction():
        for query, args in (("set local work_mem = '64MB'", None), ("set local jit = off", None),
                            ("drop table if exists pg_temp.history_listed", None),
                            ("create temporary table history_listed (session_id text not null,"
                             " excluded boolean not null) on commit drop", None)):
            conn.execute(query, args)
        for scope, part in parts:
            base_sql, base_params = _base(conn, scope, part)
            conn.execute("drop table if exists pg_temp.history_base")
            conn.execute(f"create temporary table history_base on commit drop as {base_sql} "  # noqa: S608
                         "select * from base", base_params)
            frames.append(_list_frame(conn, "with base as (select * from pg_temp.history_base)", base_params))
            conn.execute("insert into history_listed select session_id, excluded from pg_temp.history_base")
            conn.execute("drop table pg_temp.history_base")
        history = pl.concat(frames).sort("started_at", "session_id") if frames else pl.DataFrame(schema=LIST_SCHEMA)
        periods = _summarize(conn, history, by, _LISTED_ROWS, params) if by else []
        total = _summarize(conn, history, "all", _LISTED_ROWS, params)
        days = _daily(conn, _LISTED_ROWS, params) if daily else None
    return Listing(history, periods, total, days)


@dataclass(frozen=True, slots=True)
class SessionDetail:
    session: dict[str, Any]  # the session's row with its allocation (user, vehicle, cost centre, outcome)
    samples: pl.DataFrame  # ts, power_w, current_a, current_offered_a, energy_wh, soc_pct: the chart
    setpoints: list[dict[str, Any]]  # control_decisions applied to its connector during the session
    error_codes: list[dict[str, Any]]  # status notifications with an error code during the session
    quality_reasons: tuple[str, ...]  # one sentence per flag
    costs: dict[str, tuple[int, int]]  # currency -> (net_nano, vat_nano) of the whole session
    cost_status: str | None  # costed / partial / no_tariff; None: excluded or not costed yet
    cost_message: str | None


def session_detail(conn: Connection, scope: Sequence[str], session_id: str) -> SessionDetail:
    """Everything about one session on a charger in ``scope``; :class:`NotFoundError` otherwise."""
    joins, alloc = allocation_sql(conn)
    found = _fetch(conn, f"session {session_id}", f"""
        select s.*, coalesce(s.site_id, c.site_id) as site, c.display_name as charger_name,
               case when s.state = 'abandoned' or s.stop_reason = any(%(errors)s) then 'error' else 'success' end
                 as outcome, {alloc}
        from sessions s {joins} where s.session_id = %(id)s and s.charger_id = any(%(scope)s)""",  # noqa: S608
                   {"id": session_id, "scope": list(scope), "errors": sorted(ERROR_STOP_REASONS)})
    if not found:
        raise NotFoundError(f"no session {session_id!r} is stored on a charger you may see")
    row = found[0]
    window = {"charger": row["charger_id"], "connector": row["connector_id"], "start": row["started_at"],
              "end": row["ended_at"] or row["last_sample_at"] or row["started_at"]}
    samples = _fetch(conn, "session samples", """
        select ts, power_w, current_a, current_offered_a, energy_wh, soc_pct from meter_samples
        where charger_id = %(charger)s and connector_id = %(connector)s and ts >= %(start)s and ts <= %(end)s
        order by ts""", window)
    schema = pl.Schema({"ts": _UTC_US, "power_w": pl.Float64(), "current_a": pl.Float64(),
                        "current_offered_a": pl.Float64(), "energy_wh": pl.Float64(), "soc_pct": pl.Float64()})
    setpoints = _fetch(conn, "setpoints", """
        select ts, old_limit_a, new_limit_a, paused, reason, binding, decision_id from control_decisions
        where charger_id = %(charger)s and connector_id in (0, %(connector)s) and ts >= %(start)s and ts <= %(end)s
        order by ts""", window)
    errors = _fetch(conn, "error codes", """
        select ts, status, error_code, vendor_error_code, info from status_events
        where charger_id = %(charger)s and connector_id in (0, %(connector)s) and ts >= %(start)s and ts <= %(end)s
          and error_code is not null and error_code <> 'NoError' order by ts""", window)
    costs = _fetch(conn, "session cost", """
        select currency, min(status) as status, sum(net_nano)::bigint as net_nano, sum(vat_nano)::bigint as vat_nano
        from session_costs where session_id = %(id)s group by currency""", {"id": session_id})
    status = costs[0]["status"] if costs else None
    flags = tuple(QualityFlag(f) for f in row["flags"])
    return SessionDetail(
        session=row,
        samples=pl.DataFrame(samples, schema=schema, orient="row") if samples else pl.DataFrame(schema=schema),
        setpoints=setpoints, error_codes=errors, quality_reasons=tuple(FLAG_DESCRIPTIONS[f] for f in flags),
        costs={c["currency"]: (int(c["net_nano"]), int(c["vat_nano"])) for c in costs if c["currency"]},
        cost_status=status, cost_message=ADD_TARIFF_MESSAGE if status == "no_tariff" else None)


# --------------------------------------------------------------------------- summaries in SQL
# The same figures as summarize() / top_chargers() / excluded_sessions() over history_list(), but
# aggregated by PostgreSQL from the same filtered sessions (the `base` of _base), so a year of a
# 1,000-charger fleet is summed where it lies instead of listed into Python first.

_TRUNC: Final = {"month": "date_trunc('month', {c})::date", "year": "date_trunc('year', {c})::date",
                 "all": "null::date"}


def summarize_sql(conn: Connection, scope: Sequence[str], flt: HistoryFilter,
                  by: Literal["month", "year", "all"], *, base: tuple[str, dict[str, Any]] | None = None
                  ) -> list[PeriodTotal]:
    """:func:`summarize` of :func:`history_list` ``(conn, scope, flt)``, computed in the database."""
    base_sql, params = base or _base(conn, scope, flt)
    day, start = _TRUNC[by].format(c="d.day"), _TRUNC[by].format(c="(b.started_at at time zone 'UTC')::date")
    energy = _fetch(conn, "period energy", f"""{base_sql}
        select {day} as period, sum(d.energy_wh) as energy_wh, count(distinct d.session_id) as sessions
        from session_day_energy d join base b using (session_id)
        where not b.excluded and d.day between %(first)s and %(last)s and d.charger_id = any(%(scope)s)
        group by 1 order by 1""", params)  # noqa: S608 - fixed text
    costs = _fetch(conn, "period costs", f"""{base_sql}
        select {day} as period, d.currency, sum(d.net_nano)::bigint as net_nano, sum(d.vat_nano)::bigint as vat_nano,
               count(distinct d.session_id) filter (where d.status = 'no_tariff') as no_tariff
        from session_costs d join base b using (session_id)
        where not b.excluded and d.day between %(first)s and %(last)s and d.charger_id = any(%(scope)s)
        group by 1, 2""", params)  # noqa: S608 - fixed text
    counts = _fetch(conn, "excluded and uncosted sessions", f"""{base_sql}
        select {start} as period, count(*) filter (where b.excluded) as excluded,
               count(*) filter (where not b.excluded and not exists (
                   select 1 from session_costs k where k.session_id = b.session_id
                     and k.day between %(first)s::date - 31 and %(last)s::date + 31)) as uncosted
        from base b group by 1""", params)  # noqa: S608 - fixed text
    out = period_totals(energy, costs)
    add_start_counts(out, counts)
    return [out[k] for k in sorted(out, key=lambda d: d or date.min)]


def add_start_counts(out: dict[date | None, PeriodTotal], counts: Iterable[dict[str, Any]]) -> None:
    """Add rows of (period, excluded, uncosted), sessions counted in the period they started, to ``out``."""
    for row in counts:
        if not (row["excluded"] or row["uncosted"]):
            continue
        total = out.get(row["period"]) or PeriodTotal(row["period"], 0.0, 0, 0)
        out[row["period"]] = PeriodTotal(total.period, total.energy_wh, total.sessions,
                                         total.excluded_sessions + int(row["excluded"]), total.costs,
                                         total.no_tariff_sessions, total.uncosted_sessions + int(row["uncosted"]))


def top_chargers_sql(conn: Connection, scope: Sequence[str], flt: HistoryFilter, *, limit: int = 10,
                     base: tuple[str, dict[str, Any]] | None = None) -> pl.DataFrame:
    """:func:`top_chargers` of the filtered sessions, computed in the database."""
    base_sql, params = base or _base(conn, scope, flt)
    rows = _fetch(conn, "top chargers", f"""{base_sql},
        energy as (select d.charger_id, sum(d.energy_wh) as energy_wh, count(distinct d.session_id) as sessions
                   from session_day_energy d join base b using (session_id)
                   where not b.excluded and d.day between %(first)s and %(last)s and d.charger_id = any(%(scope)s)
                   group by 1),
        money as (select d.charger_id, d.currency, sum(d.net_nano)::bigint as net_nano
                  from session_costs d join base b using (session_id)
                  where not b.excluded and d.day between %(first)s and %(last)s and d.charger_id = any(%(scope)s)
                  group by 1, 2)
        select e.charger_id, m.currency, c.display_name as charger_name, e.energy_wh, e.sessions, m.net_nano
        from energy e left join money m using (charger_id) left join chargers c using (charger_id)
        order by e.energy_wh desc, e.charger_id limit %(limit)s""", {**params, "limit": limit})  # noqa: S608
    return top_frame(rows)


def top_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows of (charger_id, currency, charger_name, energy_wh, sessions, net_nano) as the top chargers."""
    schema = pl.Schema({"charger_id": pl.String(), "currency": pl.String(), "charger_name": pl.String(),
                        "energy_wh": pl.Float64(), "sessions": pl.Int64(), "net_nano": pl.Int64()})
    frame = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    return frame.with_columns((pl.col("energy_wh") / 1000).alias("energy_kwh"),
                              money_expr("net_nano", "currency").alias("net"))


def excluded_sql(conn: Connection, scope: Sequence[str], flt: HistoryFilter, *, limit: int = 300,
                 base: tuple[str, dict[str, Any]] | None = None) -> pl.DataFrame:
    """:func:`excluded_sessions` of the filtered sessions (the first ``limit``), from the database."""
    base_sql, params = base or _base(conn, scope, flt)
    rows = _fetch(conn, "excluded sessions", f"""{base_sql}
        select session_id, charger_id, started_at, energy_wh, flags from base where excluded
        order by started_at, session_id limit %(limit)s""", {**params, "limit": limit})  # noqa: S608
    return excluded_frame(rows)


def excluded_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows of (session_id, charger_id, started_at, energy_wh, flags), with their reasons (sentences)."""
    schema = pl.Schema({"session_id": pl.String(), "charger_id": pl.String(), "started_at": _UTC_US,
                        "energy_wh": pl.Float64(), "flags": pl.List(pl.String())})
    frame = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    known = {flag.value: text for flag, text in FLAG_DESCRIPTIONS.items()}
    return frame.with_columns(
        pl.col("flags").list.eval(pl.element().replace_strict(known, default=pl.element())).alias("reasons"))


@dataclass(frozen=True, slots=True)
class Summaries:
    periods: list[PeriodTotal]
    total: PeriodTotal
    top: pl.DataFrame
    excluded: pl.DataFrame


def summaries_sql(conn: Connection, scope: Sequence[str], flt: HistoryFilter,
                  by: Literal["month", "year"] = "month") -> Summaries:
    """Everything the analytics page shows, with the filtered sessions selected once (into a
    temporary table) and summed by the queries of :func:`summarize_sql` and its neighbours."""
    base_sql, params = _base(conn, scope, flt)
    with conn.transaction():
        conn.execute("drop table if exists pg_temp.history_base")
        conn.execute(f"create temporary table history_base as {base_sql} select * from base",  # noqa: S608
                     params)
        try:
            pre = ("with base as (select * from pg_temp.history_base)", params)
            periods = summarize_sql(conn, scope, flt, by, base=pre)
            totals = summarize_sql(conn, scope, flt, "all", base=pre)
            top = top_chargers_sql(conn, scope, flt, base=pre)
            excluded = excluded_sql(conn, scope, flt, base=pre)
        finally:
            conn.execute("drop table if exists pg_temp.history_base")
    return Summaries(periods, totals[0] if totals else PeriodTotal(None, 0.0, 0, 0), top, excluded)
