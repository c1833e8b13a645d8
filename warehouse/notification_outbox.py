"""The notifier's side of the notification tables: alert events in, outbox rows out.

``pipelines/notifier.py`` calls these inside its own transactions: it claims alert events and due
outbox rows with ``FOR UPDATE SKIP LOCKED`` (so several notifiers share the work), writes the
fan-out, and records each delivery attempt in the transaction that claimed the row. The
user-facing functions and the tables' description are in :mod:`warehouse.notification_store`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from control.access import Role
from control.contract import Severity
from control.notify_policy import AlertEvent, AlertEventKind, ChannelKind, PlannedNotification, Recipient
from warehouse.notification_store import insert_deliveries, insert_notification, load_preferences

log = logging.getLogger(__name__)

Connection = psycopg.Connection[Any]


def claim_events(conn: Connection, *, limit: int = 100) -> list[tuple[int, AlertEvent | None]]:
    """Lock up to ``limit`` events not fanned out yet (others' locks skipped). Call inside a
    transaction. An event the policy cannot read (an unknown state) comes as ``(id, None)``."""
    out: list[tuple[int, AlertEvent | None]] = []
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute("select * from alert_events where fanned_out_at is null order by event_id"
                               " limit %s for update skip locked", (limit,)):
            try:
                event = AlertEventKind(row["event"])
            except ValueError:
                out.append((row["event_id"], None))
                continue
            try:
                severity = Severity(row["severity"])
            except ValueError:
                log.warning("alert %s has an unknown severity %r: treated as error", row["alert_id"], row["severity"])
                severity = Severity.ERROR
            out.append((row["event_id"], AlertEvent(
                row["event_id"], event, row["alert_id"], row["kind"], severity, row["state"], row["message"],
                row["charger_id"], row["site_id"], row["alert_ts"], row["count"])))
    return out


def find_recipients(conn: Connection, charger_id: str | None, site_id: str | None) -> list[Recipient]:
    """The enabled users who should hear of an alert on this charger/site, with their roles and
    preferences: the charger's owners and members, the fleet managers of its site's organisation,
    and support."""
    rows = conn.execute(
        """with target as (
               select %(charger)s::text as charger_id, coalesce(%(site)s::text,
                   (select site_id from chargers where charger_id = %(charger)s)) as site_id)
           select m.user_id, m.role from memberships m join target t on m.charger_id = t.charger_id
           union all
           select om.user_id, om.role from org_memberships om join sites s on s.org_id = om.org_id
               join target t on s.site_id = t.site_id where om.role = 'fleet_manager'
           union all
           select ur.user_id, ur.role from user_roles ur where ur.role = 'support'""",
        {"charger": charger_id, "site": site_id}).fetchall()
    roles: dict[str, set[Role]] = {}
    for user_id, role in rows:
        roles.setdefault(user_id, set()).add(Role(role))
    prefs = load_preferences(conn, roles)
    return [Recipient(prefs[u], frozenset(r)) for u, r in sorted(roles.items()) if u in prefs]


def store_fanout(conn: Connection, event: AlertEvent, planned: Sequence[PlannedNotification], *,
                 now: datetime) -> int:
    """Write an event's notifications and deliveries (a repeat is a no-op); returns how many were new."""
    new = 0
    for p in planned:
        notification_id = insert_notification(conn, event, event.event, event.severity, p, now)
        if notification_id is not None:
            insert_deliveries(conn, notification_id, p, now)
            new += 1
    return new


def mark_events_done(conn: Connection, event_ids: Sequence[int], *, now: datetime) -> None:
    conn.execute("update alert_events set fanned_out_at = %s where event_id = any(%s)", (now, list(event_ids)))


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A claimed delivery with everything a sender needs."""

    outbox_id: int
    notification_id: int
    user_id: str
    channel_id: int
    kind: ChannelKind
    target: str
    secret: str | None
    channel_enabled: bool
    attempts: int  # before this one
    created_at: datetime
    event: str
    severity: str
    title: str
    body: str
    alert_id: str | None
    charger_id: str | None
    site_id: str | None
    alert_kind: str | None
    alert_state: str | None
    alert_ts: datetime | None
    alert_count: int | None


def claim_delivery(conn: Connection, *, now: datetime) -> OutboxItem | None:
    """Lock the most overdue pending delivery nobody else holds. Call inside a transaction and record
    the outcome in it: if the process dies first, the lock goes and the row is still pending."""
    row = conn.execute(
        """select o.outbox_id, o.notification_id, o.user_id, o.channel_id, o.kind, c.target, c.secret, c.enabled,
                  o.attempts, o.created_at, n.event, n.severity, n.title, n.body, n.alert_id, n.charger_id,
                  n.site_id, e.kind, e.state, e.alert_ts, e.count
           from notification_outbox o
           join notification_channels c on c.channel_id = o.channel_id
           join notifications n on n.notification_id = o.notification_id
           left join alert_events e on e.event_id = n.event_id
           where o.state = 'pending' and o.next_attempt_at <= %s
           order by o.next_attempt_at, o.outbox_id limit 1
           for update of o skip locked""", (now,)).fetchone()
    if row is None:
        return None
    return OutboxItem(row[0], row[1], row[2], row[3], ChannelKind(row[4]), *row[5:])


def record_attempt(conn: Connection, outbox_id: int, *, now: datetime, state: str, error: str | None = None,
                   next_attempt_at: datetime | None = None) -> None:
    """One attempt's outcome: ``sent``, ``pending`` (retry at ``next_attempt_at``), ``failed`` or
    ``skipped`` (the channel was disabled meanwhile)."""
    if state not in ("sent", "pending", "failed", "skipped") or (state == "pending") != (next_attempt_at is not None):
        raise ValueError(f"bad outcome {state!r} (next attempt {next_attempt_at})")
    conn.execute(
        """update notification_outbox set state = %s, attempts = attempts + %s, last_error = %s,
               last_attempt_at = case when %s then %s else last_attempt_at end,
               next_attempt_at = coalesce(%s, next_attempt_at),
               sent_at = case when %s = 'sent' then %s else sent_at end
           where outbox_id = %s""",
        (state, 0 if state == "skipped" else 1, error, state != "skipped", now, next_attempt_at, state, now,
         outbox_id))


@dataclass(frozen=True, slots=True)
class Pruned:
    events: int
    notifications: int


def prune(conn: Connection, *, before: datetime) -> Pruned:
    """Forget what is finished and older than ``before``: fanned-out alert events, and read
    notifications whose deliveries are all done (their outbox rows go with them). Unread
    notifications and anything still pending stay, whatever their age."""
    with conn.transaction():
        notifications = conn.execute(
            """delete from notifications n where n.created_at < %s and n.read_at is not null
                 and not exists (select 1 from notification_outbox o
                                 where o.notification_id = n.notification_id and o.state = 'pending')""",
            (before,)).rowcount
        events = conn.execute(
            """delete from alert_events e where e.fanned_out_at is not null and e.occurred_at < %s
                 and not exists (select 1 from notifications n where n.event_id = e.event_id)""",
            (before,)).rowcount
    return Pruned(events, notifications)
