"""The support console's records: a charger's timeline on one time axis, and tickets (RMA path)
bundling the timeline, the alerts, the troubleshooting done and the diagnostics files.

Same rules as :mod:`dashboards.support_service`: Principal first, Access second, checked before
reading or acting, actions logged, no Streamlit. Both need ``TROUBLESHOOT`` (support and
operators): the timeline shows raw OCPP frames and every user's sessions.
:func:`timeline_items` is pure (unit-tested).
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from control.access import Permission
from control.contract import AlertState
from control.support import TicketStatus, ticket_move_allowed
from dashboards.access import Access, Principal
from warehouse import alert_store, queries, support_store
from warehouse.alert_store import AlertRow
from warehouse.queries import QueryError, SessionRow, StoredDeadLetter
from warehouse.support_store import (
    ChargerFacts,
    CommandEntry,
    ConnectionChange,
    Frame,
    StatusChange,
    Ticket,
    TicketEvent,
)

MAX_TITLE_CHARS: Final = 200


class Lane(StrEnum):
    STATUS = "Status"
    ERRORS = "Errors"
    SESSIONS = "Sessions"
    COMMANDS = "Commands"
    CONNECTION = "Connection"
    ALERTS = "Alerts"
    DEAD_LETTERS = "Dead letters"
    FRAMES = "OCPP frames"


class Tone(StrEnum):
    OK = "ok"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class TimelineItem:
    start: datetime
    end: datetime | None   # None: an instant
    lane: Lane
    label: str
    detail: str
    tone: Tone


@dataclass(frozen=True, slots=True)
class Timeline:
    charger: ChargerFacts
    start: datetime
    end: datetime
    items: list[TimelineItem]
    frames: list[Frame]
    dead_letters: list[StoredDeadLetter]


_STATUS_TONE: Final = {"Available": Tone.OK, "Charging": Tone.OK, "Preparing": Tone.INFO, "SuspendedEV": Tone.INFO,
                       "SuspendedEVSE": Tone.WARN, "Finishing": Tone.INFO, "Reserved": Tone.INFO,
                       "Occupied": Tone.INFO, "Unavailable": Tone.WARN, "Faulted": Tone.ERROR}
_OUTCOME_TONE: Final = {"accepted": Tone.OK, "rejected": Tone.WARN, None: Tone.INFO}


def timeline_items(*, end: datetime, status: Sequence[StatusChange] = (), connections: Sequence[ConnectionChange] = (),
                   sessions: Sequence[SessionRow] = (), commands: Sequence[CommandEntry] = (),
                   alerts: Sequence[AlertRow] = (), dead_letters: Sequence[StoredDeadLetter] = (),
                   frames: Sequence[Frame] = ()) -> list[TimelineItem]:
    """Every record as an item on one time axis (status changes last until the next one on the
    same connector, or ``end``), sorted by start."""
    out: list[TimelineItem] = []
    by_connector: dict[int, list[StatusChange]] = {}
    for change in status:
        by_connector.setdefault(change.connector_id, []).append(change)
    for connector_id, changes in by_connector.items():
        ordered = sorted(changes, key=lambda c: c.ts)
        for this, following in zip(ordered, [*ordered[1:], None], strict=True):
            detail = f"connector {connector_id}" + (f" · {this.info}" if this.info else "")
            out.append(TimelineItem(this.ts, following.ts if following else end, Lane.STATUS, this.status, detail,
                                    _STATUS_TONE.get(this.status, Tone.INFO)))
            if this.error_code and this.error_code != "NoError":
                vendor = f" (vendor {this.vendor_error_code})" if this.vendor_error_code else ""
                out.append(TimelineItem(this.ts, None, Lane.ERRORS, this.error_code,
                                        f"connector {connector_id}{vendor}", Tone.ERROR))
    for conn in connections:
        tone = Tone.OK if conn.kind in ("connected", "booted") else Tone.WARN
        out.append(TimelineItem(conn.ts, None, Lane.CONNECTION, conn.kind, conn.reason or "", tone))
    for s in sessions:
        r = s.record
        out.append(TimelineItem(r.started_at, r.ended_at or end, Lane.SESSIONS, f"{r.energy_wh / 1000:.2f} kWh",
                                f"{r.session_id} · {r.state.value}" + (f" · {r.stop_reason}" if r.stop_reason else ""),
                                Tone.WARN if s.excluded else Tone.OK))
    for c in commands:
        result = c.outcome or "no result yet"
        detail = f"{result}" + (f" ({c.status})" if c.status else "") + (f" · {c.detail}" if c.detail else "")
        detail += f" · by {c.requested_by}" if c.requested_by else ""
        out.append(TimelineItem(c.issued_at, c.finished_at, Lane.COMMANDS, c.kind, detail,
                                _OUTCOME_TONE.get(c.outcome, Tone.ERROR)))
    for a in alerts:
        tone = Tone.ERROR if a.severity.value in ("error", "critical") else Tone.WARN if a.severity.value == "warning" \
            else Tone.INFO
        out.append(TimelineItem(a.first_seen or a.ts, a.resolved_at, Lane.ALERTS, a.kind.replace("_", " "),
                                f"{a.message} · {a.state.value}", tone))
    for d in dead_letters:
        out.append(TimelineItem(d.ts, None, Lane.DEAD_LETTERS, d.reason[:60], d.raw[:200], Tone.ERROR))
    for f in frames:
        out.append(TimelineItem(f.ts, None, Lane.FRAMES, f.direction, f.frame[:200], Tone.INFO))
    return sorted(out, key=lambda i: (i.start, i.lane.value))


def charger_timeline(who: Principal, access: Access, charger_id: str, *, start: datetime,
                     end: datetime) -> Timeline:
    access.require(who, Permission.TROUBLESHOOT, charger_id)
    with access.connection() as conn:
        facts = support_store.charger_facts(conn, charger_id)
        status = support_store.status_changes(conn, charger_id, start, end)
        connections = support_store.connection_changes(conn, charger_id, start, end)
        sessions = queries.sessions_for_charger(conn, charger_id, start, end)
        commands = support_store.commands(conn, charger_id, start, end)
        alerts = [a for a in alert_store.list_alerts(conn, charger_ids=[charger_id], since=start, limit=500)
                  if a.charger_id == charger_id and (a.first_seen or a.ts) < end]
        letters = [d for d in queries.recent_dead_letters(conn, start, charger_id=charger_id, limit=200) if d.ts < end]
        frames = support_store.frames(conn, charger_id, start, end)
    items = timeline_items(end=end, status=status, connections=connections, sessions=sessions, commands=commands,
                           alerts=alerts, dead_letters=letters, frames=frames)
    return Timeline(facts, start, end, items, frames, letters)


# --------------------------------------------------------------------------- tickets


@dataclass(frozen=True, slots=True)
class TicketView:
    ticket: Ticket
    events: list[TicketEvent]
    alerts: list[AlertRow]


def _new_ticket_id() -> str:
    return f"T-{uuid.uuid4().hex[:10].upper()}"


def open_ticket(who: Principal, access: Access, charger_id: str, *, title: str, notes: str = "",
                alert_ids: Sequence[str] = (), new_id: Callable[[], str] = _new_ticket_id) -> Ticket:
    access.require(who, Permission.TROUBLESHOOT, charger_id)
    clean = title.strip()
    if not clean or len(clean) > MAX_TITLE_CHARS:
        raise ValueError(f"a ticket needs a title of 1 to {MAX_TITLE_CHARS} characters")
    with access.connection() as conn:
        for alert_id in alert_ids:
            alert = alert_store.get_alert(conn, alert_id)
            if alert.charger_id not in (None, charger_id):
                raise ValueError(f"alert {alert_id} is about charger {alert.charger_id}, not {charger_id}")
        ticket = support_store.create_ticket(conn, ticket_id=new_id(), charger_id=charger_id, title=clean,
                                             notes=notes.strip(), alert_ids=list(alert_ids), user_id=who.user_id,
                                             now=access.now())
    access.log(who, "open_ticket", charger_id, detail=f"{ticket.ticket_id}: {clean}"[:500])
    return ticket


def tickets(who: Principal, access: Access, *, statuses: Sequence[TicketStatus] = (),
            charger_ids: Sequence[str] | None = None) -> list[Ticket]:
    """Tickets of the chargers the user may troubleshoot (support and operators: all)."""
    scope = access.visible_ids(who) if charger_ids is None else list(charger_ids)
    allowed = [c for c in scope if access.check(who, Permission.TROUBLESHOOT, c).allowed] if scope else []
    if not allowed:
        access.require(who, Permission.TROUBLESHOOT)  # raises a clear refusal for non-support users
        return []
    with access.connection() as conn:
        return support_store.list_tickets(conn, allowed, statuses=statuses)


def ticket_view(who: Principal, access: Access, ticket_id: str) -> TicketView:
    with access.connection() as conn:
        ticket = support_store.get_ticket(conn, ticket_id)
    access.require(who, Permission.TROUBLESHOOT, ticket.charger_id)
    with access.connection() as conn:
        events = support_store.ticket_events(conn, ticket_id)
        alerts = []
        for alert_id in ticket.alert_ids:
            try:
                alerts.append(alert_store.get_alert(conn, alert_id))
            except queries.NotFoundError:
                continue  # an alert removed by retention: the ticket keeps its id
    return TicketView(ticket, events, alerts)


def move_ticket(who: Principal, access: Access, ticket_id: str, target: TicketStatus, note: str | None) -> Ticket:
    view = ticket_view(who, access, ticket_id)
    current = view.ticket.status
    if not ticket_move_allowed(current, target):
        raise ValueError(f"a {current.value} ticket cannot become {target.value}")
    with access.connection() as conn:
        ticket = support_store.set_ticket_status(conn, ticket_id, current=current, target=target,
                                                 user_id=who.user_id, note=(note or "").strip() or None,
                                                 now=access.now())
    access.log(who, "ticket_status", ticket.charger_id, detail=f"{ticket_id}: {current.value} -> {target.value}")
    return ticket


def open_alerts_of(who: Principal, access: Access, charger_id: str) -> list[AlertRow]:
    """Alerts a new ticket may bundle: the charger's unresolved ones and those seen in the last 7 days."""
    access.require(who, Permission.TROUBLESHOOT, charger_id)
    with access.connection() as conn:
        recent = alert_store.list_alerts(conn, charger_ids=[charger_id], since=access.now() - timedelta(days=7),
                                         limit=100)
        unresolved = alert_store.list_alerts(conn, charger_ids=[charger_id],
                                             states=(AlertState.OPEN, AlertState.ACKNOWLEDGED), limit=100)
    seen: dict[str, AlertRow] = {a.alert_id: a for a in [*unresolved, *recent]
                                 if a.charger_id == charger_id and a.kind != "session_completed"}
    return sorted(seen.values(), key=lambda a: a.ts, reverse=True)


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def ticket_bundle(who: Principal, access: Access, ticket_id: str, uploads_dir: Path, *,
                  days: int = 7) -> tuple[str, bytes]:
    """The RMA bundle: a zip with the ticket and its history, the alerts with their transitions,
    the charger's timeline of the last ``days`` (and its OCPP frames), the troubleshooting done
    and every diagnostics file. Returns (file name, bytes); logged."""
    view = ticket_view(who, access, ticket_id)
    charger_id = view.ticket.charger_id
    end = access.now()
    timeline = charger_timeline(who, access, charger_id, start=end - timedelta(days=days), end=end)
    with access.connection() as conn:
        transitions = {a.alert_id: alert_store.transitions(conn, a.alert_id) for a in view.alerts}
        actions = support_store.recent_actions(conn, charger_id, limit=500)
        files = support_store.diagnostic_files(conn, [charger_id], limit=50)
    buffer = io.BytesIO()
    missing = []
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as z:
        def put(name: str, value: Any) -> None:
            z.writestr(name, json.dumps(_jsonable(value), indent=2, ensure_ascii=False))

        put("ticket.json", {"ticket": view.ticket, "events": view.events, "charger": timeline.charger,
                            "exported_at": end, "exported_by": who.user_id})
        put("alerts.json", [{"alert": a, "transitions": transitions[a.alert_id]} for a in view.alerts])
        put("timeline.json", {"start": timeline.start, "end": timeline.end, "items": timeline.items})
        put("dead_letters.json", timeline.dead_letters)
        z.writestr("ocpp_frames.jsonl", "".join(json.dumps(_jsonable(f)) + "\n" for f in timeline.frames))
        put("troubleshooting.json", actions)
        root = uploads_dir.resolve()
        for f in files:
            path = (root / f.path).resolve()
            if root in path.parents and path.is_file():
                z.write(path, f"diagnostics/{f.file_id}-{f.file_name}")
            else:
                missing.append(f.file_name)
        put("diagnostics.json", {"files": files, "missing_on_disk": missing})
    access.log(who, "export_ticket", charger_id, detail=ticket_id)
    return f"{ticket_id}-{charger_id}.zip", buffer.getvalue()


__all__ = ["Lane", "QueryError", "Timeline", "TimelineItem", "Tone", "charger_timeline", "move_ticket", "open_ticket",
           "ticket_bundle", "ticket_view", "tickets", "timeline_items"]
