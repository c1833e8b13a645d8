"""Read queries over the streaming side's tables, for dashboards, reports and the CLI.

Every function takes an open ``psycopg`` connection (the caller owns it: a pool, or
``st.cache_resource``), runs parametrized SQL and returns plain dataclasses or polars DataFrames
with a fixed schema (an empty result still has its columns). Times are UTC ``datetime``.

A database failure is never an empty result. Errors::

    QueryError                  a query failed (the message says which)
    ├── WarehouseUnavailableError   connection lost, server down, timeout: try again later
    └── NotFoundError           the thing asked about does not exist (also a LookupError)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import polars as pl
import psycopg
from psycopg.rows import dict_row

from control.contract import ChargingMode
from control.records import FLAG_DESCRIPTIONS, LiveState, LiveStatus, QualityFlag, SessionRecord, SessionState


class QueryError(RuntimeError):
    """A read query failed."""


class WarehouseUnavailableError(QueryError):
    """The database could not be reached or did not answer in time."""


class NotFoundError(QueryError, LookupError):
    """The session (or other object) asked about is not stored."""


Connection = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A stored session: the newest revision, plus what the warehouse says about it."""

    record: SessionRecord
    excluded: bool  # the stored (generated) column: left out of energy totals and costs
    reasons: tuple[str, ...]  # one plain sentence per quality flag
    written_at: datetime


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    id: int
    ts: datetime
    source: str
    reason: str
    raw: str  # U+0000 shown as U+FFFD; raw_bytes has the exact payload then
    raw_bytes: bytes | None
    charger_id: str | None
    topic: str | None
    received_at: datetime


def fetch_dicts(conn: Connection, what: str, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        # A transaction (or a savepoint inside the caller's): a failed query leaves a long-lived
        # connection usable instead of stuck in "current transaction is aborted".
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query.encode(), params)
            return cur.fetchall()
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise WarehouseUnavailableError(f"reading {what}: the warehouse is unavailable: {exc}") from exc
    except psycopg.Error as exc:
        raise QueryError(f"reading {what} failed: {exc}") from exc


_fetch = fetch_dicts  # the module's own short name


def _flag(value: str) -> QualityFlag:
    try:
        return QualityFlag(value)
    except ValueError:
        raise QueryError(f"a stored session carries the unknown quality flag {value!r}"
                         " (the reader is older than the writer)") from None


_SESSIONS = """
select session_id, charger_id, connector_id, transaction_id, site_id, state, revision, started_at, ended_at,
       energy_wh, id_tag, meter_start_wh, meter_stop_wh, peak_power_w, avg_power_w, duration_s, charging_s, idle_s,
       stop_reason, mode, flags, sample_count, last_sample_at, excluded, written_at
from sessions
where charger_id = %(charger)s and started_at < %(end)s and (ended_at is null or ended_at >= %(start)s)
order by started_at, session_id
"""


def sessions_for_charger(conn: Connection, charger_id: str, start: datetime, end: datetime) -> list[SessionRow]:
    """Sessions of one charger that overlap ``[start, end)`` (open ones included), oldest first."""
    rows = _fetch(conn, f"sessions of {charger_id}", _SESSIONS, {"charger": charger_id, "start": start, "end": end})
    out = []
    for row in rows:
        excluded, written_at = row.pop("excluded"), row.pop("written_at")
        flags = tuple(_flag(f) for f in row.pop("flags"))
        mode, state = row.pop("mode"), SessionState(row.pop("state"))
        record = SessionRecord(**row, flags=flags, state=state, mode=None if mode is None else ChargingMode(mode))
        out.append(SessionRow(record, excluded, tuple(FLAG_DESCRIPTIONS[f] for f in flags), written_at))
    return out


_LIVE = """
select charger_id, connector_id, status, updated_at, last_seen_at, connector_status, power_w, current_a, session_id,
       session_started_at, session_energy_wh, soc_pct, error_code, online
from live_state
where %(all)s or charger_id = any(%(chargers)s)
order by charger_id, connector_id
"""


def live_state(conn: Connection, charger_ids: Sequence[str] | None = None) -> list[LiveState]:
    """The live state of every connector of ``charger_ids`` (all chargers when None)."""
    rows = _fetch(conn, "live state", _LIVE, {"all": charger_ids is None, "chargers": list(charger_ids or [])})
    return [LiveState(**{**row, "status": LiveStatus(row["status"])}) for row in rows]


_DEAD_LETTERS = """
select id, ts, source, reason, raw, raw_bytes, charger_id, topic, received_at
from dead_letters
where ts >= %(since)s and (%(charger)s::text is null or charger_id = %(charger)s)
order by ts desc, id desc
limit %(limit)s
"""


def recent_dead_letters(conn: Connection, since: datetime, *, charger_id: str | None = None,
                        limit: int = 100) -> list[StoredDeadLetter]:
    """Dead letters since ``since``, newest first (at most ``limit``)."""
    rows = _fetch(conn, "dead letters", _DEAD_LETTERS, {"since": since, "charger": charger_id, "limit": limit})
    return [StoredDeadLetter(**row) for row in rows]


DAILY_ENERGY_SCHEMA = pl.Schema({
    "day": pl.Date, "charger_id": pl.String, "energy_wh": pl.Float64, "sessions": pl.Int64,
})

_DAILY_ENERGY = """
select d.day, d.charger_id, sum(d.energy_wh) as energy_wh, count(distinct d.session_id) as sessions
from session_day_energy d
join sessions s on s.session_id = d.session_id and not s.excluded
where d.day >= %(first)s and d.day <= %(last)s
  and (%(all)s or d.charger_id = any(%(chargers)s))
  and (%(site)s::text is null or s.site_id = %(site)s)
group by d.day, d.charger_id
order by d.day, d.charger_id
"""


def daily_energy(conn: Connection, first_day: date, last_day: date, *, charger_ids: Sequence[str] | None = None,
                 site_id: str | None = None) -> pl.DataFrame:
    """Energy per charger and UTC day (``first_day`` to ``last_day`` inclusive) of the sessions that
    are not excluded. Days come from session_day_energy; a day row whose session is not stored
    yet is left out (its flags are unknown)."""
    rows = _fetch(conn, "daily energy", _DAILY_ENERGY, {
        "first": first_day, "last": last_day, "all": charger_ids is None, "chargers": list(charger_ids or []),
        "site": site_id})
    return pl.DataFrame(rows, schema=DAILY_ENERGY_SCHEMA)


_UTC = pl.Datetime("us", "UTC")
_F64 = pl.Float64
SAMPLES_SCHEMA = pl.Schema({
    "ts": _UTC, "context": pl.String(), "transaction_id": pl.String(), "energy_wh": _F64(), "power_w": _F64(),
    "current_a": _F64(), "current_l1_a": _F64(), "current_l2_a": _F64(), "current_l3_a": _F64(),
    "current_offered_a": _F64(), "voltage_v": _F64(), "soc_pct": _F64(), "temperature_c": _F64(),
    "quirks": pl.List(pl.String), "quality_flags": pl.List(pl.String), "session_id": pl.String(),
    "bridge_received_at": _UTC, "received_at": _UTC,
})

_SESSION_WINDOW = "select charger_id, connector_id, started_at, ended_at from sessions where session_id = %(id)s"
_SAMPLES = """
select ts, context, transaction_id, energy_wh, power_w, current_a, current_l1_a, current_l2_a, current_l3_a,
       current_offered_a, voltage_v, soc_pct, temperature_c, quirks, quality_flags, session_id,
       bridge_received_at, received_at
from meter_samples
where charger_id = %(charger)s and connector_id = %(connector)s
  and ts >= %(start)s and (%(end)s::timestamptz is null or ts <= %(end)s)
order by ts, context
"""


def meter_samples_for_session(conn: Connection, session_id: str) -> pl.DataFrame:
    """The raw samples of a session's connector between its start and end (to now while open),
    in time order, with their quality flags. Raises :class:`NotFoundError` for an unknown session."""
    found = _fetch(conn, f"session {session_id}", _SESSION_WINDOW, {"id": session_id})
    if not found:
        raise NotFoundError(f"no session {session_id!r} is stored")
    window = found[0]
    rows = _fetch(conn, f"meter samples of session {session_id}", _SAMPLES, {
        "charger": window["charger_id"], "connector": window["connector_id"], "start": window["started_at"],
        "end": window["ended_at"]})
    return pl.DataFrame(rows, schema=SAMPLES_SCHEMA)
