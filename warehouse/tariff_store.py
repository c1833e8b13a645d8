"""Tariffs, their assignment to chargers and sites, fleet vehicles, and the stored session costs.

Tariffs are validated by :mod:`control.tariffs` before they are stored. :func:`compute_costs`
costs the closed, non-excluded sessions that started in a period with :mod:`warehouse.costing`
(vectorized: a year of a 1,000-charger fleet in one call) and replaces their rows of
``session_costs`` (and, with a lake, appends them to the lake's ``session_costs`` table for
DuckDB). Costs are computed in batch, not when a report is made, so reports only read sums.

Allocation at costing time: a session's user is the owner of its id_tag (``user_tokens``), its
cost centre the vehicle's (``vehicles``), else the charger's (``chargers.cost_centre``). Those
tables come from ``0008_access.sql``; without them the columns stay null. Re-run the costing
after changing tariffs, cost centres or tokens.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final

import polars as pl
import psycopg
from psycopg import sql

from control.schedules import Weekday, WeeklyWindow
from control.tariffs import PriceWindow, Tariff, TariffVersion
from warehouse.costing import cost_sessions, price_table
from warehouse.queries import Connection, QueryError, WarehouseUnavailableError

LAKE_TABLE: Final = "session_costs"
_UTC_US: Final = pl.Datetime("us", "UTC")


def save_tariff(conn: Connection, tariff: Tariff, *, name: str, updated_by: str | None = None) -> None:
    """Store ``tariff`` (replacing its versions and windows) in one transaction."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "insert into tariffs (tariff_id, name, currency, timezone, updated_by) values (%s, %s, %s, %s, %s) "
            "on conflict (tariff_id) do update set name = excluded.name, currency = excluded.currency, "
            "timezone = excluded.timezone, updated_by = excluded.updated_by, updated_at = now()",
            (tariff.tariff_id, name, tariff.currency, tariff.zone, updated_by))
        cur.execute("delete from tariff_versions where tariff_id = %s", (tariff.tariff_id,))
        for version in tariff.versions:
            cur.execute("insert into tariff_versions (tariff_id, effective_from, base_price_per_kwh, vat_rate, "
                        "base_label) values (%s, %s, %s, %s, %s)",
                        (tariff.tariff_id, version.effective_from, version.base_price_per_kwh, version.vat_rate,
                         version.base_label))
            for position, pw in enumerate(version.windows):
                cur.execute("insert into tariff_windows (tariff_id, effective_from, position, label, weekdays, "
                            "start_local, end_local, price_per_kwh) values (%s, %s, %s, %s, %s, %s, %s, %s)",
                            (tariff.tariff_id, version.effective_from, position, pw.label,
                             sorted(d.value for d in pw.window.weekdays), pw.window.start_local,
                             pw.window.end_local, pw.price_per_kwh))


def assign_tariff(conn: Connection, tariff_id: str, *, charger_id: str | None = None, site_id: str | None = None,
                  updated_by: str | None = None) -> None:
    """Price ``charger_id`` (or every charger of ``site_id`` without its own) with ``tariff_id``."""
    if (charger_id is None) == (site_id is None):
        raise ValueError("assign a tariff to exactly one of charger_id or site_id")
    kind, scope = ("charger", charger_id) if charger_id is not None else ("site", site_id)
    with conn.transaction():
        conn.execute("insert into tariff_assignments (scope_kind, scope_id, tariff_id, updated_by) "
                     "values (%s, %s, %s, %s) on conflict (scope_kind, scope_id) do update set "
                     "tariff_id = excluded.tariff_id, updated_by = excluded.updated_by, updated_at = now()",
                     (kind, scope, tariff_id, updated_by))


def save_vehicle(conn: Connection, id_tag: str, vehicle_id: str, name: str, *, cost_centre: str | None = None,
                 org_id: str | None = None) -> None:
    with conn.transaction():
        conn.execute("insert into vehicles (id_tag, vehicle_id, name, cost_centre, org_id) values (%s, %s, %s, %s, %s) "
                     "on conflict (id_tag) do update set vehicle_id = excluded.vehicle_id, name = excluded.name, "
                     "cost_centre = excluded.cost_centre, org_id = excluded.org_id, updated_at = now()",
                     (id_tag, vehicle_id, name, cost_centre, org_id))


def load_tariffs(conn: Connection, tariff_ids: Sequence[str] | None = None) -> dict[str, Tariff]:
    """The stored tariffs (all, or those named), validated by :class:`control.tariffs.Tariff`."""
    every = tariff_ids is None
    ids = list(tariff_ids or [])
    with conn.transaction(), conn.cursor() as cur:
        heads = cur.execute("select tariff_id, currency, timezone from tariffs where %s or tariff_id = any(%s)",
                            (every, ids)).fetchall()
        versions = cur.execute(
            "select tariff_id, effective_from, base_price_per_kwh, vat_rate, base_label from tariff_versions "
            "where %s or tariff_id = any(%s) order by tariff_id, effective_from", (every, ids)).fetchall()
        windows = cur.execute(
            "select tariff_id, effective_from, label, weekdays, start_local, end_local, price_per_kwh "
            "from tariff_windows where %s or tariff_id = any(%s) order by tariff_id, effective_from, position",
            (every, ids)).fetchall()
    by_version: dict[tuple[str, datetime], list[PriceWindow]] = {}
    for tid, eff, label, days, start, end, price in windows:
        window = WeeklyWindow(start, end, frozenset(Weekday(d) for d in days))
        by_version.setdefault((tid, eff), []).append(PriceWindow(window, Decimal(price), label))
    out: dict[str, Tariff] = {}
    for tid, currency, zone in heads:
        vs = tuple(TariffVersion(eff.astimezone(UTC), Decimal(base), Decimal(vat),
                                 tuple(by_version.get((t, eff), ())), label)
                   for t, eff, base, vat, label in versions if t == tid)
        if vs:
            out[tid] = Tariff(tid, currency, zone, vs)
    return out


def _has(conn: Connection, table: str, column: str | None = None) -> bool:
    query = ("select 1 from information_schema.columns where table_schema = current_schema() and table_name = %s "
             "and (%s::text is null or column_name = %s) limit 1")
    return conn.execute(query, (table, column, column)).fetchone() is not None


def allocation_sql(conn: Connection) -> tuple[str, str]:
    """(joins, select list) resolving a session ``s``'s tariff, user and cost centre; 0008's tables
    are used when present."""
    users = _has(conn, "user_tokens")
    centres = _has(conn, "chargers", "cost_centre")
    joins = ("left join chargers c on c.charger_id = s.charger_id "
             "left join tariff_assignments ta_c on ta_c.scope_kind = 'charger' and ta_c.scope_id = s.charger_id "
             "left join tariff_assignments ta_s on ta_s.scope_kind = 'site' "
             "  and ta_s.scope_id = coalesce(s.site_id, c.site_id) "
             "left join vehicles v on v.id_tag = s.id_tag "
             + ("left join user_tokens ut on ut.id_tag = s.id_tag left join users u on u.user_id = ut.user_id "
                if users else ""))
    select = ("coalesce(ta_c.tariff_id, ta_s.tariff_id) as tariff_id, "
              + ("ut.user_id as user_id, u.display_name as user_name, " if users
                 else "null::text as user_id, null::text as user_name, ")
              + ("coalesce(v.cost_centre, c.cost_centre)" if centres else "v.cost_centre") + " as cost_centre, "
              "v.vehicle_id, v.name as vehicle_name")
    return joins, select


def copy_frame(conn: Connection, query: str, params: dict[str, Any] | Sequence[Any],
               schema: pl.Schema) -> pl.DataFrame:
    """Run ``query`` through COPY ... TO STDOUT (CSV) into a polars frame of ``schema``.
    Timestamp columns must be selected as microseconds since the epoch (bigint)."""
    buffer = io.BytesIO()
    try:
        with conn.transaction(), conn.cursor() as cur:
            statement = sql.SQL("copy ({}) to stdout (format csv, header true)").format(sql.SQL(query))
            with cur.copy(statement, params) as copy:
                for chunk in copy:
                    buffer.write(chunk)
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise WarehouseUnavailableError(f"reading: the warehouse is unavailable: {exc}") from exc
    except psycopg.Error as exc:
        raise QueryError(f"reading failed: {exc}") from exc
    buffer.seek(0)
    read_schema = {k: (pl.Int64() if v == _UTC_US else v) for k, v in schema.items()}
    if buffer.getbuffer().nbytes == 0:
        frame = pl.DataFrame(schema=read_schema)
    else:
        frame = pl.read_csv(buffer, schema=read_schema)
    return frame.with_columns([pl.from_epoch(k, "us").dt.replace_time_zone("UTC") for k, v in schema.items()
                               if v == _UTC_US])


def _us(column: str) -> str:
    return f"(extract(epoch from {column}) * 1000000)::bigint as {column.split('.')[-1]}"


@dataclass(frozen=True, slots=True)
class CostRun:
    sessions: int
    rows: int
    no_tariff_sessions: int
    cost_revision: int


SESSIONS_SCHEMA: Final = pl.Schema({
    "session_id": pl.String(), "charger_id": pl.String(), "site_id": pl.String(), "revision": pl.Int64(),
    "started_at": _UTC_US, "ended_at": _UTC_US, "energy_wh": pl.Float64(), "tariff_id": pl.String(),
    "user_id": pl.String(), "user_name": pl.String(), "cost_centre": pl.String(), "vehicle_id": pl.String(),
    "vehicle_name": pl.String(),
})
_SAMPLE_SCHEMA: Final = pl.Schema({"session_id": pl.String(), "ts": _UTC_US, "energy_wh": pl.Float64()})
_COST_COLUMNS: Final = ("session_id", "day", "charger_id", "site_id", "user_id", "cost_centre", "session_revision",
                        "cost_revision", "tariff_id", "currency", "status", "energy_wh", "costed_energy_wh",
                        "net_nano", "vat_nano", "computed_at")


def compute_costs(conn: Connection, start: datetime, end: datetime, *, now: datetime,
                  charger_ids: Sequence[str] | None = None, lake: Any = None) -> CostRun:
    """Cost the closed, non-excluded sessions started in ``[start, end)`` (of ``charger_ids``, or
    all) and replace their ``session_costs`` rows; ``lake``: a ``ParquetLake`` to append them to."""
    joins, alloc = allocation_sql(conn)
    params = {"start": start, "end": end, "all": charger_ids is None, "chargers": list(charger_ids or [])}
    where = ("s.started_at >= %(start)s and s.started_at < %(end)s and s.state = 'closed' and not s.excluded "
             "and (%(all)s or s.charger_id = any(%(chargers)s))")
    sessions = copy_frame(conn, (
        f"select s.session_id, s.charger_id, coalesce(s.site_id, c.site_id) as site_id, s.revision, "  # noqa: S608
        f"{_us('s.started_at')}, {_us('s.ended_at')}, s.energy_wh, {alloc} from sessions s {joins} where {where}"),
        params, SESSIONS_SCHEMA)
    revision = int(now.timestamp() * 1_000_000)
    if sessions.is_empty():
        return CostRun(0, 0, 0, revision)
    # The quality gate stamps each sample with its session (meter_samples.session_id): one range
    # scan of the period's chunks, then a semi-join in polars. (A join on the session window per
    # session is minutes for a year of a large fleet.)
    span = {"lo": sessions["started_at"].min(), "hi": sessions["ended_at"].max()}
    samples = copy_frame(conn, (
        f"select m.session_id, {_us('m.ts')}, m.energy_wh from meter_samples m "  # noqa: S608
        f"where m.ts >= %(lo)s and m.ts <= %(hi)s and m.session_id is not null and m.energy_wh is not null"),
        span, _SAMPLE_SCHEMA).join(sessions.select("session_id"), on="session_id", how="semi")
    used = [t for t in sessions["tariff_id"].unique().to_list() if t is not None]
    tariffs = load_tariffs(conn, used)
    sessions = sessions.with_columns(pl.when(pl.col("tariff_id").is_in(list(tariffs))).then(pl.col("tariff_id")))
    lo = datetime.combine(sessions["started_at"].min(), time(), UTC)  # type: ignore[arg-type]
    hi_ts = sessions["ended_at"].max()
    hi = datetime.combine(hi_ts.date(), time(), UTC) + timedelta(days=1)  # type: ignore[union-attr]
    costs = cost_sessions(samples, sessions, price_table(tariffs, lo, hi))
    rows = (costs.join(sessions.select("session_id", "charger_id", "site_id", "user_id", "cost_centre",
                                       pl.col("revision").alias("session_revision")), on="session_id")
            .with_columns(pl.lit(revision, pl.Int64()).alias("cost_revision"),
                          pl.lit(now.astimezone(UTC), _UTC_US).alias("computed_at"))
            .select(_COST_COLUMNS))
    _replace_rows(conn, sessions["session_id"].to_list(), rows)
    if lake is not None and rows.height:
        lake.append(LAKE_TABLE, rows.with_columns(pl.col("computed_at").dt.replace_time_zone(None)))
    no_tariff = sessions.filter(pl.col("tariff_id").is_null()).height
    return CostRun(sessions.height, rows.height, no_tariff, revision)


def _replace_rows(conn: Connection, session_ids: list[str], rows: pl.DataFrame) -> None:
    data = rows.with_columns(pl.col("computed_at").dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ"),
                             pl.col("day").dt.to_string("%Y-%m-%d")).write_csv(include_header=False, null_value="")
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in _COST_COLUMNS)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("delete from session_costs where session_id = any(%s)", (session_ids,))
        with cur.copy(sql.SQL("copy session_costs ({}) from stdin (format csv)").format(columns)) as copy:
            copy.write(data.encode())


def costs_period(first_day: date, last_day: date) -> tuple[datetime, datetime]:
    """``[first_day 00:00, last_day + 1 00:00)`` in UTC."""
    return (datetime.combine(first_day, time(), UTC), datetime.combine(last_day + timedelta(days=1), time(), UTC))
