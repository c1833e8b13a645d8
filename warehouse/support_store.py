"""The support console's tables (migration 0013) and its reads over the streaming side's tables.

* troubleshooting actions (``support_actions``) with the reply each got, and the final result
  from ``command_results`` when it came later;
* diagnostic files uploaded by chargers (``diagnostic_files``; the bytes live under the data dir);
* the fault-code knowledge base (``fault_guides``), editable;
* tickets (``support_tickets`` and their alerts and status changes);
* the charger timeline: status changes, connections, commands with results, dead letters and
  the OCPP frame log (``ocpp_frames``, kept to the newest frames per charger by
  :func:`record_frames`).

Functions take an open ``psycopg`` connection; times are passed in. A failure raises the
:mod:`warehouse.queries` errors (``QueryError``, ``WarehouseUnavailableError``, ``NotFoundError``),
never an empty result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from control.contract import JsonScalar
from control.support import TicketStatus
from warehouse.queries import NotFoundError, QueryError, WarehouseUnavailableError

Connection = psycopg.Connection[Any]

DEFAULT_FRAMES_KEPT: Final = 500


def _fetch(conn: Connection, what: str, query: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query.encode(), params)
            return cur.fetchall() if cur.description else []
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise WarehouseUnavailableError(f"{what}: the warehouse is unavailable: {exc}") from exc
    except psycopg.Error as exc:
        raise QueryError(f"{what} failed: {exc}") from exc


# --------------------------------------------------------------------------- troubleshooting actions


@dataclass(frozen=True, slots=True)
class ActionRecord:
    ts: datetime
    user_id: str
    charger_id: str
    connector_id: int | None
    action: str
    params: Mapping[str, JsonScalar]
    command_id: str | None
    reply_state: str
    outcome: str | None
    status: str | None
    detail: str | None
    payload: Mapping[str, JsonScalar]
    summary: str


@dataclass(frozen=True, slots=True)
class ActionRow:
    action_id: int
    record: ActionRecord
    final_outcome: str | None   # from command_results, when the charger answered after the reply
    final_status: str | None
    final_detail: str | None
    final_payload: Mapping[str, JsonScalar]


def record_action(conn: Connection, rec: ActionRecord) -> int:
    rows = _fetch(conn, "storing a troubleshooting action", """
        insert into support_actions (ts, user_id, charger_id, connector_id, action, params, command_id, reply_state,
                                     outcome, status, detail, payload, summary)
        values (%(ts)s, %(user_id)s, %(charger_id)s, %(connector_id)s, %(action)s, %(params)s, %(command_id)s,
                %(reply_state)s, %(outcome)s, %(status)s, %(detail)s, %(payload)s, %(summary)s)
        returning action_id""", {
        "ts": rec.ts, "user_id": rec.user_id, "charger_id": rec.charger_id, "connector_id": rec.connector_id,
        "action": rec.action, "params": Jsonb(dict(rec.params)), "command_id": rec.command_id,
        "reply_state": rec.reply_state, "outcome": rec.outcome, "status": rec.status, "detail": rec.detail,
        "payload": Jsonb(dict(rec.payload)), "summary": rec.summary})
    return int(rows[0]["action_id"])


_ACTIONS = """
select a.*, r.outcome as final_outcome, r.status as final_status, r.detail as final_detail,
       r.payload as final_payload
from support_actions a
left join lateral (select outcome, status, detail, payload from command_results r
                   where r.command_id = a.command_id order by ts desc limit 1) r on true
where a.charger_id = %(charger)s and (%(action)s::text is null or a.action = %(action)s)
order by a.ts desc, a.action_id desc
limit %(limit)s
"""


def recent_actions(conn: Connection, charger_id: str, *, action: str | None = None, limit: int = 50) -> list[ActionRow]:
    rows = _fetch(conn, f"troubleshooting actions of {charger_id}", _ACTIONS,
                  {"charger": charger_id, "action": action, "limit": limit})
    return [ActionRow(
        r["action_id"],
        ActionRecord(r["ts"], r["user_id"], r["charger_id"], r["connector_id"], r["action"], r["params"],
                     r["command_id"], r["reply_state"], r["outcome"], r["status"], r["detail"], r["payload"],
                     r["summary"]),
        r["final_outcome"], r["final_status"], r["final_detail"], r["final_payload"] or {}) for r in rows]


# --------------------------------------------------------------------------- diagnostic files


@dataclass(frozen=True, slots=True)
class DiagnosticFile:
    file_id: int
    charger_id: str
    file_name: str
    path: str            # relative to the uploads directory
    size_bytes: int
    sha256: str
    content_type: str | None
    received_at: datetime


def record_upload(conn: Connection, *, charger_id: str, file_name: str, path: str, size_bytes: int, sha256: str,
                  content_type: str | None, received_at: datetime) -> DiagnosticFile:
    rows = _fetch(conn, f"storing the upload {file_name} of {charger_id}", """
        insert into diagnostic_files (charger_id, file_name, path, size_bytes, sha256, content_type, received_at)
        values (%(charger_id)s, %(file_name)s, %(path)s, %(size)s, %(sha)s, %(ctype)s, %(at)s)
        on conflict (path) do update set size_bytes = excluded.size_bytes, sha256 = excluded.sha256,
            content_type = excluded.content_type, received_at = excluded.received_at
        returning *""", {"charger_id": charger_id, "file_name": file_name, "path": path, "size": size_bytes,
                         "sha": sha256, "ctype": content_type, "at": received_at})
    return DiagnosticFile(**rows[0])


def diagnostic_files(conn: Connection, charger_ids: Sequence[str], *, limit: int = 100) -> list[DiagnosticFile]:
    rows = _fetch(conn, "diagnostic files", """
        select * from diagnostic_files where charger_id = any(%(chargers)s)
        order by received_at desc, file_id desc limit %(limit)s""", {"chargers": list(charger_ids), "limit": limit})
    return [DiagnosticFile(**r) for r in rows]


def diagnostic_file(conn: Connection, file_id: int) -> DiagnosticFile:
    rows = _fetch(conn, f"diagnostic file {file_id}", "select * from diagnostic_files where file_id = %(id)s",
                  {"id": file_id})
    if not rows:
        raise NotFoundError(f"no diagnostic file {file_id}")
    return DiagnosticFile(**rows[0])


# --------------------------------------------------------------------------- knowledge base


@dataclass(frozen=True, slots=True)
class Guide:
    code: str
    title: str
    steps: tuple[str, ...]
    remote_fixable: bool
    updated_by: str
    updated_at: datetime


def guides(conn: Connection) -> list[Guide]:
    rows = _fetch(conn, "the fault guides", "select * from fault_guides order by code", {})
    return [Guide(r["code"], r["title"], tuple(r["steps"]), r["remote_fixable"], r["updated_by"], r["updated_at"])
            for r in rows]


def save_guide(conn: Connection, *, code: str, title: str, steps: Sequence[str], remote_fixable: bool,
               user_id: str, now: datetime) -> None:
    _fetch(conn, f"saving the guide for {code}", """
        insert into fault_guides (code, title, steps, remote_fixable, updated_by, updated_at)
        values (%(code)s, %(title)s, %(steps)s, %(fixable)s, %(user)s, %(now)s)
        on conflict (code) do update set title = excluded.title, steps = excluded.steps,
            remote_fixable = excluded.remote_fixable, updated_by = excluded.updated_by,
            updated_at = excluded.updated_at""",
           {"code": code, "title": title, "steps": list(steps), "fixable": remote_fixable, "user": user_id,
            "now": now})


# --------------------------------------------------------------------------- tickets


@dataclass(frozen=True, slots=True)
class Ticket:
    ticket_id: str
    charger_id: str
    title: str
    status: TicketStatus
    created_by: str
    created_at: datetime
    updated_at: datetime
    notes: str
    alert_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TicketEvent:
    ticket_id: str
    ts: datetime
    user_id: str
    from_status: TicketStatus | None
    to_status: TicketStatus
    note: str | None


_TICKETS = """
select t.*, coalesce(array_agg(a.alert_id order by a.alert_id) filter (where a.alert_id is not null), '{}')
       as alert_ids
from support_tickets t left join support_ticket_alerts a using (ticket_id)
where t.charger_id = any(%(chargers)s) and (%(statuses)s::text[] is null or t.status = any(%(statuses)s))
  and (%(id)s::text is null or t.ticket_id = %(id)s)
group by t.ticket_id
order by t.updated_at desc, t.ticket_id
limit %(limit)s
"""


def _ticket(r: dict[str, Any]) -> Ticket:
    return Ticket(r["ticket_id"], r["charger_id"], r["title"], TicketStatus(r["status"]), r["created_by"],
                  r["created_at"], r["updated_at"], r["notes"], tuple(r["alert_ids"]))


def create_ticket(conn: Connection, *, ticket_id: str, charger_id: str, title: str, notes: str,
                  alert_ids: Sequence[str], user_id: str, now: datetime) -> Ticket:
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("insert into support_tickets (ticket_id, charger_id, title, status, created_by, created_at,"
                        " updated_at, notes) values (%s, %s, %s, 'open', %s, %s, %s, %s)",
                        (ticket_id, charger_id, title, user_id, now, now, notes))
            for alert_id in alert_ids:
                cur.execute("insert into support_ticket_alerts (ticket_id, alert_id) values (%s, %s)"
                            " on conflict do nothing", (ticket_id, alert_id))
            cur.execute("insert into support_ticket_events (ticket_id, ts, user_id, from_status, to_status, note)"
                        " values (%s, %s, %s, null, 'open', %s)", (ticket_id, now, user_id, notes or None))
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise WarehouseUnavailableError(f"creating ticket {ticket_id}: the warehouse is unavailable: {exc}") from exc
    except psycopg.Error as exc:
        raise QueryError(f"creating ticket {ticket_id} failed: {exc}") from exc
    return get_ticket(conn, ticket_id)


def list_tickets(conn: Connection, charger_ids: Sequence[str], *, statuses: Sequence[TicketStatus] = (),
                 limit: int = 200) -> list[Ticket]:
    rows = _fetch(conn, "tickets", _TICKETS, {"chargers": list(charger_ids), "statuses": [s.value for s in statuses]
                                              or None, "id": None, "limit": limit})
    return [_ticket(r) for r in rows]


def get_ticket(conn: Connection, ticket_id: str) -> Ticket:
    rows = _fetch(conn, f"ticket {ticket_id}", """
        select t.*, coalesce(array_agg(a.alert_id order by a.alert_id) filter (where a.alert_id is not null), '{}')
               as alert_ids
        from support_tickets t left join support_ticket_alerts a using (ticket_id)
        where t.ticket_id = %(id)s group by t.ticket_id""", {"id": ticket_id})
    if not rows:
        raise NotFoundError(f"no ticket {ticket_id!r}")
    return _ticket(rows[0])


def set_ticket_status(conn: Connection, ticket_id: str, *, current: TicketStatus, target: TicketStatus,
                      user_id: str, note: str | None, now: datetime) -> Ticket:
    """Move the ticket from ``current`` to ``target`` (refused as a QueryError when another user moved it first)."""
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("update support_tickets set status = %s, updated_at = %s,"
                        " notes = case when %s::text is null then notes else notes || %s end"
                        " where ticket_id = %s and status = %s",
                        (target.value, now, note, f"\n[{now:%Y-%m-%d %H:%M}Z {user_id}] {note}", ticket_id,
                         current.value))
            if cur.rowcount != 1:
                raise QueryError(f"ticket {ticket_id} is no longer {current.value}; reload it")
            cur.execute("insert into support_ticket_events (ticket_id, ts, user_id, from_status, to_status, note)"
                        " values (%s, %s, %s, %s, %s, %s)", (ticket_id, now, user_id, current.value, target.value,
                                                            note))
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise WarehouseUnavailableError(f"updating ticket {ticket_id}: the warehouse is unavailable: {exc}") from exc
    except psycopg.Error as exc:
        raise QueryError(f"updating ticket {ticket_id} failed: {exc}") from exc
    return get_ticket(conn, ticket_id)


def ticket_events(conn: Connection, ticket_id: str) -> list[TicketEvent]:
    rows = _fetch(conn, f"history of ticket {ticket_id}", "select * from support_ticket_events where ticket_id ="
                  " %(id)s order by event_id", {"id": ticket_id})
    return [TicketEvent(r["ticket_id"], r["ts"], r["user_id"],
                        TicketStatus(r["from_status"]) if r["from_status"] else None, TicketStatus(r["to_status"]),
                        r["note"]) for r in rows]


# --------------------------------------------------------------------------- timeline reads


@dataclass(frozen=True, slots=True)
class StatusChange:
    ts: datetime
    connector_id: int
    status: str
    error_code: str | None
    vendor_error_code: str | None
    info: str | None


@dataclass(frozen=True, slots=True)
class ConnectionChange:
    ts: datetime
    kind: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class CommandEntry:
    command_id: str
    kind: str
    issued_at: datetime
    requested_by: str | None
    params: Mapping[str, Any]
    finished_at: datetime | None
    outcome: str | None
    status: str | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class Frame:
    ts: datetime
    direction: str
    frame: str


def status_changes(conn: Connection, charger_id: str, start: datetime, end: datetime,
                   limit: int = 2000) -> list[StatusChange]:
    rows = _fetch(conn, f"status changes of {charger_id}", """
        select ts, connector_id, status, error_code, vendor_error_code, info from status_events
        where charger_id = %(c)s and ts >= %(s)s and ts < %(e)s order by ts desc limit %(n)s""",
                  {"c": charger_id, "s": start, "e": end, "n": limit})
    return [StatusChange(**r) for r in reversed(rows)]


def connection_changes(conn: Connection, charger_id: str, start: datetime, end: datetime,
                       limit: int = 1000) -> list[ConnectionChange]:
    """Connects, disconnects and boots (heartbeats left out: they would drown the rest)."""
    rows = _fetch(conn, f"connections of {charger_id}", """
        select ts, kind, reason from connection_events
        where charger_id = %(c)s and ts >= %(s)s and ts < %(e)s and kind <> 'heartbeat'
        order by ts desc limit %(n)s""",
                  {"c": charger_id, "s": start, "e": end, "n": limit})
    return [ConnectionChange(**r) for r in reversed(rows)]


_COMMANDS = """
select q.command_id, q.kind, q.issued_at, q.payload->'data'->>'requested_by' as requested_by,
       coalesce(q.payload->'data'->'params', '{}'::jsonb) as params, coalesce(r.ts, q.finished_at) as finished_at,
       coalesce(r.outcome, q.outcome) as outcome, coalesce(r.status, q.status) as status,
       coalesce(r.detail, q.detail) as detail
from command_queue q
left join lateral (select ts, outcome, status, detail from command_results r
                   where r.command_id = q.command_id order by ts desc limit 1) r on true
where q.charger_id = %(c)s and q.issued_at >= %(s)s and q.issued_at < %(e)s
order by q.issued_at desc limit %(n)s
"""


def commands(conn: Connection, charger_id: str, start: datetime, end: datetime, limit: int = 500) -> list[CommandEntry]:
    """Commands the bridges received for the charger, with their final result."""
    rows = _fetch(conn, f"commands of {charger_id}", _COMMANDS, {"c": charger_id, "s": start, "e": end, "n": limit})
    return [CommandEntry(**r) for r in reversed(rows)]


# --------------------------------------------------------------------------- frame log


_INSERT_FRAME: Final = ("insert into ocpp_frames (charger_id, ts, direction, frame, bridge_id)"
                        " values (%s, %s, %s, %s, %s)")
# Keep the newest ``keep`` frames of one charger: delete below the keep-th newest frame id.
_TRIM_FRAMES: Final = ("delete from ocpp_frames where charger_id = %s and frame_id < coalesce(("
                       " select frame_id from ocpp_frames where charger_id = %s"
                       " order by frame_id desc offset %s limit 1), 0)")

FrameRow = tuple[str, datetime, str, str]  # charger_id, ts, direction ('in' | 'out'), frame text


def _frame_rows(frames: Sequence[FrameRow], bridge_id: str | None) -> list[tuple[Any, ...]]:
    return [(c, ts, d, f.replace("\x00", "\ufffd"), bridge_id) for c, ts, d, f in frames]


def record_frames(conn: Connection, frames: Sequence[FrameRow], *, bridge_id: str | None,
                  keep: int = DEFAULT_FRAMES_KEPT) -> None:
    """Store ``(charger_id, ts, direction, frame)`` rows, then keep only the newest ``keep`` per charger written."""
    if not frames:
        return
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(_INSERT_FRAME, _frame_rows(frames, bridge_id))
            for charger_id in sorted({f[0] for f in frames}):
                cur.execute(_TRIM_FRAMES, (charger_id, charger_id, keep - 1))
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise WarehouseUnavailableError(f"storing OCPP frames: the warehouse is unavailable: {exc}") from exc
    except psycopg.Error as exc:
        raise QueryError(f"storing OCPP frames failed: {exc}") from exc


async def record_frames_async(conn: psycopg.AsyncConnection[Any], frames: Sequence[FrameRow], *,
                              bridge_id: str | None, keep: int = DEFAULT_FRAMES_KEPT) -> None:
    """:func:`record_frames` for the bridge's asyncio pool (the caller handles psycopg errors)."""
    if not frames:
        return
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(_INSERT_FRAME, _frame_rows(frames, bridge_id))
        for charger_id in sorted({f[0] for f in frames}):
            await cur.execute(_TRIM_FRAMES, (charger_id, charger_id, keep - 1))


def frames(conn: Connection, charger_id: str, start: datetime, end: datetime, limit: int = 500) -> list[Frame]:
    rows = _fetch(conn, f"OCPP frames of {charger_id}", """
        select ts, direction, frame from ocpp_frames where charger_id = %(c)s and ts >= %(s)s and ts < %(e)s
        order by ts desc, frame_id desc limit %(n)s""", {"c": charger_id, "s": start, "e": end, "n": limit})
    return [Frame(**r) for r in reversed(rows)]


# --------------------------------------------------------------------------- charger facts


@dataclass(frozen=True, slots=True)
class ChargerFacts:
    charger_id: str
    display_name: str | None
    site_id: str | None
    vendor: str | None
    model: str | None
    firmware_version: str | None
    ocpp_version: str | None
    connectors: tuple[int, ...]


def charger_facts(conn: Connection, charger_id: str) -> ChargerFacts:
    rows = _fetch(conn, f"charger {charger_id}", """
        select c.charger_id, c.display_name, c.site_id, c.vendor, c.model, c.firmware_version, c.ocpp_version,
               coalesce((select array_agg(l.connector_id order by l.connector_id) from live_state l
                         where l.charger_id = c.charger_id and l.connector_id > 0), '{}') as connectors
        from chargers c where c.charger_id = %(c)s""", {"c": charger_id})
    if not rows:
        raise NotFoundError(f"no charger {charger_id!r}")
    r = rows[0]
    return ChargerFacts(r["charger_id"], r["display_name"], r["site_id"], r["vendor"], r["model"],
                        r["firmware_version"], r["ocpp_version"], tuple(r["connectors"]) or (1,))
