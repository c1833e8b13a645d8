"""Alerts in PostgreSQL: the dataflow's writer, the support console's reads and actions.

* :class:`AlertWriter` stores the dataflow's :class:`~control.alerts.AlertChange` records, each in
  order, in one transaction per batch: the ``alerts`` row is upserted with the same rule as
  ``warehouse/tsdb_writer`` (the later ``(ts, count, state)`` wins; a tie never rewrites), and
  every change of the *stored* state is written to ``alert_transitions`` (actor ``pipeline``).
  Replaying a batch changes nothing. A still-open alert re-emitted by the dataflow does not undo
  a user's acknowledgement (a trigger of migration 0010 keeps it; the count still grows).
* :func:`list_alerts`, :func:`transitions`: reads for the console, scoped by the charger ids the
  caller may see.
* :func:`acknowledge`, :func:`resolve`: a user's action with a note, stored with its transition.

Functions take an open ``psycopg`` connection; times are passed in. Errors are those of
:mod:`warehouse.queries` (``QueryError``, ``WarehouseUnavailableError``, ``NotFoundError``), plus
:class:`AlertStateError` for an action the alert's state does not allow; the writer raises the
:mod:`warehouse.tsdb_writer` errors (retryable or permanent), so the sink retries the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from control.alerts import PIPELINE_ACTOR, AlertChange
from control.contract import AlertState, Severity
from warehouse.queries import NotFoundError, QueryError, WarehouseUnavailableError, fetch_dicts
from warehouse.tsdb_writer import PermanentWriteError, RetryableWriteError

Connection = psycopg.Connection[Any]


class AlertStateError(QueryError, ValueError):
    """The action is not allowed in the alert's current state (e.g. acknowledging a resolved one)."""


# --------------------------------------------------------------------------- the dataflow's writer

_UPSERT = """
insert into alerts as a (alert_id, kind, severity, ts, message, state, charger_id, site_id, count, dedupe_key,
                         connector_id)
values (%(alert_id)s, %(kind)s, %(severity)s, %(ts)s, %(message)s, %(state)s, %(charger_id)s, %(site_id)s,
        %(count)s, %(dedupe_key)s, %(connector_id)s)
on conflict (alert_id) do update set kind = excluded.kind, severity = excluded.severity, ts = excluded.ts,
    message = excluded.message, state = excluded.state, charger_id = excluded.charger_id,
    site_id = excluded.site_id, count = excluded.count, updated_at = now(),
    dedupe_key = coalesce(excluded.dedupe_key, a.dedupe_key), connector_id = coalesce(excluded.connector_id,
                                                                                      a.connector_id)
where (excluded.ts, excluded.count, array_position(array['open','acknowledged','resolved'], excluded.state))
      >= (a.ts, a.count, array_position(array['open','acknowledged','resolved'], a.state))
  and (excluded.kind, excluded.severity, excluded.ts, excluded.message, excluded.state, excluded.charger_id,
       excluded.site_id, excluded.count) is distinct from
      (a.kind, a.severity, a.ts, a.message, a.state, a.charger_id, a.site_id, a.count)
"""
_TRANSITION = """
insert into alert_transitions (alert_id, ts, from_state, to_state, actor, note)
values (%s, %s, %s, %s, %s, %s) on conflict do nothing
"""


class AlertWriter:
    """One connection, opened on the first write and re-opened after a failure. Not thread-safe."""

    def __init__(self, dsn: str, *, connect_timeout_s: int = 10) -> None:
        self._dsn = dsn
        self._connect_timeout_s = connect_timeout_s
        self._conn: Connection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> Connection:
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self.close()
        if self._conn is None:
            self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=self._connect_timeout_s)
        return self._conn

    def write(self, changes: Sequence[AlertChange]) -> int:
        """Store ``changes`` in order, in one transaction; returns the number of transitions stored."""
        if not changes:
            return 0
        stored = 0
        try:
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                for change in changes:
                    stored += _write_one(cur, change)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if self._conn is not None and (self._conn.closed or self._conn.broken):
                self.close()
            raise RetryableWriteError(f"alert write failed (retry the batch): {exc}") from exc
        except (psycopg.Error, ValueError, TypeError) as exc:
            raise PermanentWriteError(f"alert write failed: {exc}") from exc
        return stored


def _write_one(cur: psycopg.Cursor[Any], change: AlertChange) -> int:
    alert = change.alert
    row = cur.execute("select state from alerts where alert_id = %s for update", (alert.alert_id,)).fetchone()
    before = row[0] if row else None
    cur.execute(_UPSERT, {
        "alert_id": alert.alert_id, "kind": alert.kind, "severity": alert.severity.value, "ts": alert.ts,
        "message": alert.message.replace("\x00", "\ufffd"), "state": alert.state.value,
        "charger_id": alert.charger_id, "site_id": alert.site_id, "count": alert.count,
        "dedupe_key": change.dedupe_key, "connector_id": change.connector_id})
    after_row = cur.execute("select state from alerts where alert_id = %s", (alert.alert_id,)).fetchone()
    after = after_row[0] if after_row else None
    if after is None or after == before:
        return 0  # a replay, a repeat, or an acknowledgement kept
    note = change.transition.note if change.transition is not None else None
    cur.execute(_TRANSITION, (alert.alert_id, alert.ts, before, after, PIPELINE_ACTOR, note))
    return cur.rowcount


# --------------------------------------------------------------------------- reads


@dataclass(frozen=True, slots=True)
class AlertRow:
    alert_id: str
    kind: str
    severity: Severity
    state: AlertState
    ts: datetime
    message: str
    count: int
    charger_id: str | None
    connector_id: int | None
    site_id: str | None
    model: str | None  # the charger's model, from the registry
    dedupe_key: str | None
    first_seen: datetime | None
    last_seen: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    stored_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class TransitionRow:
    alert_id: str
    ts: datetime
    from_state: AlertState | None
    to_state: AlertState
    actor: str
    note: str | None
    recorded_at: datetime

    @property
    def latency_s(self) -> float:
        """From the event (or deadline) behind it to the moment it was stored."""
        return (self.recorded_at - self.ts).total_seconds()


_LIST = """
select a.alert_id, a.kind, a.severity, a.state, a.ts, a.message, a.count, a.charger_id, a.connector_id,
a.site_id, ch.model, a.dedupe_key, a.first_seen, a.last_seen, a.acknowledged_at, a.acknowledged_by, a.resolved_at,
a.resolved_by, a.stored_at, a.updated_at
from alerts a left join chargers ch on ch.charger_id = a.charger_id
where (%(all)s or a.charger_id = any(%(chargers)s)
       or (a.charger_id is null and a.site_id in (select site_id from chargers where charger_id = any(%(chargers)s))))
  and (%(severities)s::text[] is null or a.severity = any(%(severities)s))
  and (%(kinds)s::text[] is null or a.kind = any(%(kinds)s))
  and (%(sites)s::text[] is null or a.site_id = any(%(sites)s))
  and (%(models)s::text[] is null or ch.model = any(%(models)s))
  and (%(states)s::text[] is null or a.state = any(%(states)s))
  and (%(since)s::timestamptz is null or a.last_seen >= %(since)s or a.ts >= %(since)s)
order by a.ts desc, a.alert_id
limit %(limit)s
"""
_GET = """
select a.alert_id, a.kind, a.severity, a.state, a.ts, a.message, a.count, a.charger_id, a.connector_id,
a.site_id, ch.model, a.dedupe_key, a.first_seen, a.last_seen, a.acknowledged_at, a.acknowledged_by, a.resolved_at,
a.resolved_by, a.stored_at, a.updated_at
from alerts a left join chargers ch on ch.charger_id = a.charger_id
where a.alert_id = %(id)s
"""


def list_alerts(conn: Connection, *, charger_ids: Sequence[str] | None, severities: Sequence[Severity] = (),
                kinds: Sequence[str] = (), site_ids: Sequence[str] = (), models: Sequence[str] = (),
                states: Sequence[AlertState] = (), since: datetime | None = None, limit: int = 500) -> list[AlertRow]:
    """Alerts newest first. ``charger_ids`` is the caller's scope: their chargers' alerts and the
    site-wide ones (error spikes, stale building load) of the sites those chargers are on; None
    means every alert (an operator). An empty filter means "any"."""
    params = {"all": charger_ids is None, "chargers": list(charger_ids or ()),
              "severities": [s.value for s in severities] or None, "kinds": list(kinds) or None,
              "sites": list(site_ids) or None, "models": list(models) or None,
              "states": [s.value for s in states] or None, "since": since, "limit": limit}
    return [_alert_row(r) for r in _fetch(conn, "alerts", _LIST, params)]


def get_alert(conn: Connection, alert_id: str) -> AlertRow:
    rows = _fetch(conn, f"alert {alert_id}", _GET, {"id": alert_id})
    if not rows:
        raise NotFoundError(f"no alert {alert_id!r}")
    return _alert_row(rows[0])


def transitions(conn: Connection, alert_id: str) -> list[TransitionRow]:
    """An alert's lifecycle, oldest first (pipeline and user steps)."""
    rows = _fetch(conn, f"transitions of {alert_id}",
                  "select alert_id, ts, from_state, to_state, actor, note, recorded_at from alert_transitions"
                  " where alert_id = %(id)s order by recorded_at, ts", {"id": alert_id})
    return [TransitionRow(r["alert_id"], r["ts"], AlertState(r["from_state"]) if r["from_state"] else None,
                          AlertState(r["to_state"]), r["actor"], r["note"], r["recorded_at"]) for r in rows]


# --------------------------------------------------------------------------- user actions


def acknowledge(conn: Connection, alert_id: str, user: str, note: str | None, *, now: datetime) -> AlertRow:
    """``user`` has seen the alert. Acknowledging an acknowledged alert changes nothing; a
    resolved one cannot be acknowledged (:class:`AlertStateError`)."""
    return _act(conn, alert_id, user, note, now, AlertState.ACKNOWLEDGED)


def resolve(conn: Connection, alert_id: str, user: str, note: str | None, *, now: datetime) -> AlertRow:
    """``user`` closes the alert. If its condition fires again the dataflow reopens it (a new
    count) or raises a new one."""
    return _act(conn, alert_id, user, note, now, AlertState.RESOLVED)


_ACKNOWLEDGE = ("update alerts set state = %s, acknowledged_at = %s, acknowledged_by = %s, updated_at = now()"
                " where alert_id = %s")
_RESOLVE = "update alerts set state = %s, resolved_at = %s, resolved_by = %s, updated_at = now() where alert_id = %s"


def _act(conn: Connection, alert_id: str, user: str, note: str | None, now: datetime, target: AlertState) -> AlertRow:
    if not user or user == PIPELINE_ACTOR:
        raise AlertStateError(f"{user!r} cannot act on alerts as a user")
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("select set_config('flowbank.alert_actor', %s, true)", (user,))
            row = cur.execute("select state from alerts where alert_id = %s for update", (alert_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no alert {alert_id!r}")
            current = AlertState(row[0])
            if current is AlertState.RESOLVED:
                raise AlertStateError(f"alert {alert_id} is already resolved")
            if current is not target:
                cur.execute(_ACKNOWLEDGE if target is AlertState.ACKNOWLEDGED else _RESOLVE,
                            (target.value, now, user, alert_id))
                cur.execute(_TRANSITION, (alert_id, now, current.value, target.value, user, note))
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise WarehouseUnavailableError(f"updating alert {alert_id}: the warehouse is unavailable: {exc}") from exc
    except psycopg.Error as exc:
        raise QueryError(f"updating alert {alert_id} failed: {exc}") from exc
    return get_alert(conn, alert_id)


# --------------------------------------------------------------------------- helpers


_fetch = fetch_dicts


def _alert_row(r: dict[str, Any]) -> AlertRow:
    return AlertRow(
        alert_id=r["alert_id"], kind=r["kind"], severity=Severity(r["severity"]), state=AlertState(r["state"]),
        ts=r["ts"], message=r["message"], count=r["count"], charger_id=r["charger_id"],
        connector_id=r["connector_id"], site_id=r["site_id"], model=r["model"], dedupe_key=r["dedupe_key"],
        first_seen=r["first_seen"], last_seen=r["last_seen"], acknowledged_at=r["acknowledged_at"],
        acknowledged_by=r["acknowledged_by"], resolved_at=r["resolved_at"], resolved_by=r["resolved_by"],
        stored_at=r["stored_at"], updated_at=r["updated_at"])
