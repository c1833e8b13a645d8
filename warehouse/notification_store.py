"""Notifications in PostgreSQL: preferences and channels, the notification centre, delivery status.

Schema: ``migrations/0011_notifications.sql``; rules: ``control/notify_policy.py``; the
notifier's claims and attempts: :mod:`warehouse.notification_outbox`.

Front ends call the user-scoped service functions: every one takes the user id and touches only
that user's rows (another user's notification id simply matches nothing).
:func:`list_notifications` (unread first), :func:`mark_read`, :func:`get_preferences` /
:func:`set_preferences`, channels (:func:`add_channel`, :func:`list_channels`, ...) and
per-charger overrides, :func:`send_test_notification` (queued; the notifier sends it) and
:func:`delivery_status`.

Functions take an open ``psycopg`` connection; the caller owns transactions. Times are passed in.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

import psycopg
from psycopg.rows import dict_row

from control.contract import Severity
from control.notify_policy import (
    AlertEvent,
    AlertEventKind,
    Channel,
    ChannelKind,
    ChargerOverride,
    NotifyPolicyError,
    PlannedNotification,
    Preferences,
    QuietHours,
    plan_test,
    redact_target,
    validate_target,
    zone_of,
)

log = logging.getLogger(__name__)

Connection = psycopg.Connection[Any]


class NotificationError(ValueError):
    """A request the store refuses (unknown channel, nothing to send to); the message says why."""


# --------------------------------------------------------------------------- preferences


def _severity(raw: str | None) -> Severity | None:
    return None if raw is None else Severity(raw)


def load_preferences(conn: Connection, user_ids: Collection[str]) -> dict[str, Preferences]:
    """Every listed (enabled) user's preferences with channels and overrides; defaults where unset."""
    ids = sorted(set(user_ids))
    channels: dict[str, list[Channel]] = {u: [] for u in ids}
    overrides: dict[str, dict[str, ChargerOverride]] = {u: {} for u in ids}
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute("select * from notification_channels where user_id = any(%s) order by channel_id",
                               (ids,)):
            channels[row["user_id"]].append(Channel(row["channel_id"], ChannelKind(row["kind"]), row["target"],
                                                    row["enabled"], _severity(row["min_severity"])))
        for row in cur.execute("select * from notification_charger_overrides where user_id = any(%s)", (ids,)):
            ids_set = None if row["channel_ids"] is None else frozenset(int(c) for c in row["channel_ids"])
            overrides[row["user_id"]][row["charger_id"]] = ChargerOverride(
                row["charger_id"], row["muted"], _severity(row["min_severity"]), ids_set)
        out: dict[str, Preferences] = {}
        for row in cur.execute(
                "select u.user_id, u.time_zone, p.user_id is not null as has_prefs, p.timezone, p.min_severity,"
                " p.quiet_start, p.quiet_end, p.quiet_bypass from users u"
                " left join notification_preferences p on p.user_id = u.user_id"
                " where u.user_id = any(%s) and not u.disabled", (ids,)):
            user_id = row["user_id"]
            timezone = row["timezone"] if row["has_prefs"] else (row["time_zone"] or "UTC")
            try:
                zone_of(timezone)
            except NotifyPolicyError:
                log.warning("user %s has an unknown time zone %r: quiet hours in UTC", user_id, timezone)
                timezone = "UTC"
            base = Preferences(user_id=user_id, timezone=timezone, channels=tuple(channels[user_id]),
                               overrides=overrides[user_id])
            if row["has_prefs"]:
                quiet = (QuietHours(row["quiet_start"], row["quiet_end"])
                         if row["quiet_start"] is not None else None)
                base = Preferences(user_id, timezone, _severity(row["min_severity"]), quiet,
                                   _severity(row["quiet_bypass"]), base.channels, base.overrides)
            out[user_id] = base
    return out


def get_preferences(conn: Connection, user_id: str) -> Preferences:
    prefs = load_preferences(conn, [user_id]).get(user_id)
    if prefs is None:
        raise NotificationError(f"no such (enabled) user {user_id!r}")
    return prefs


def set_preferences(conn: Connection, user_id: str, *, timezone: str, min_severity: str | None,
                    quiet_hours: tuple[time, time] | None = None, quiet_bypass: str | None = "critical",
                    now: datetime) -> Preferences:
    """Store the user's preferences (validated by the policy first); returns them as now in force.
    ``min_severity=None`` means the default of each role (owners: everything, support: error+)."""
    try:
        zone_of(timezone)
        severity = None if min_severity is None else Severity(min_severity)
        bypass = None if quiet_bypass is None else Severity(quiet_bypass)
        quiet = QuietHours(*quiet_hours) if quiet_hours is not None else None
    except ValueError as exc:  # NotifyPolicyError is one
        raise NotificationError(str(exc)) from exc
    conn.execute(
        """insert into notification_preferences (user_id, timezone, min_severity, quiet_start, quiet_end,
               quiet_bypass, updated_at) values (%s, %s, %s, %s, %s, %s, %s)
           on conflict (user_id) do update set timezone = excluded.timezone, min_severity = excluded.min_severity,
               quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end,
               quiet_bypass = excluded.quiet_bypass, updated_at = excluded.updated_at""",
        (user_id, timezone, None if severity is None else severity.value,
         quiet.start if quiet else None, quiet.end if quiet else None,
         None if bypass is None else bypass.value, now))
    return get_preferences(conn, user_id)


@dataclass(frozen=True, slots=True)
class NewChannel:
    channel_id: int
    secret: str | None  # the webhook's signing key: shown once, to give to the receiver


def add_channel(conn: Connection, user_id: str, kind: str, target: str, *, secret: str | None = None,
                label: str | None = None, min_severity: str | None = None) -> NewChannel:
    """Add (or re-enable) a channel. A webhook without a secret gets a fresh random one."""
    try:
        channel_kind = ChannelKind(kind)
        value = validate_target(channel_kind, target)
        severity = None if min_severity is None else Severity(min_severity)
    except ValueError as exc:
        raise NotificationError(str(exc)) from exc
    if channel_kind is ChannelKind.WEBHOOK:
        secret = secret or secrets.token_urlsafe(32)
    else:
        secret = None
    row = conn.execute(
        """insert into notification_channels (user_id, kind, target, secret, label, min_severity)
           values (%s, %s, %s, %s, %s, %s)
           on conflict (user_id, kind, target) do update set secret = excluded.secret, label = excluded.label,
               min_severity = excluded.min_severity, enabled = true
           returning channel_id""",
        (user_id, channel_kind.value, value, secret, label, None if severity is None else severity.value)).fetchone()
    assert row is not None  # noqa: S101 - insert ... returning always returns the row
    return NewChannel(int(row[0]), secret)


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    channel_id: int
    kind: str
    target: str  # the user's own: shown in full to them (never the webhook secret)
    label: str | None
    enabled: bool
    min_severity: str | None
    created_at: datetime


def list_channels(conn: Connection, user_id: str) -> list[ChannelInfo]:
    rows = conn.execute("select channel_id, kind, target, label, enabled, min_severity, created_at"
                        " from notification_channels where user_id = %s order by channel_id", (user_id,)).fetchall()
    return [ChannelInfo(*r) for r in rows]


def rotate_webhook_secret(conn: Connection, user_id: str, channel_id: int) -> str:
    """A new signing key for one of the user's webhooks (returned once); the old one stops working."""
    secret = secrets.token_urlsafe(32)
    updated = conn.execute("update notification_channels set secret = %s where user_id = %s and channel_id = %s"
                           " and kind = 'webhook'", (secret, user_id, channel_id)).rowcount
    if not updated:
        raise NotificationError(f"no webhook {channel_id} of {user_id}")
    return secret


def set_channel_enabled(conn: Connection, user_id: str, channel_id: int, enabled: bool) -> bool:
    return bool(conn.execute("update notification_channels set enabled = %s where user_id = %s and channel_id = %s",
                             (enabled, user_id, channel_id)).rowcount)


def remove_channel(conn: Connection, user_id: str, channel_id: int) -> bool:
    """Delete a channel and its queued deliveries (the centre keeps the notifications)."""
    return bool(conn.execute("delete from notification_channels where user_id = %s and channel_id = %s",
                             (user_id, channel_id)).rowcount)


def set_charger_override(conn: Connection, user_id: str, charger_id: str, *, muted: bool = False,
                         min_severity: str | None = None, channel_ids: Sequence[int] | None = None,
                         now: datetime) -> None:
    try:
        severity = None if min_severity is None else Severity(min_severity)
    except ValueError as exc:
        raise NotificationError(str(exc)) from exc
    if channel_ids is not None:
        own = {c.channel_id for c in get_preferences(conn, user_id).channels}
        if not set(channel_ids) <= own:
            raise NotificationError(f"channels {sorted(set(channel_ids) - own)} are not {user_id}'s")
    conn.execute(
        """insert into notification_charger_overrides (user_id, charger_id, muted, min_severity, channel_ids,
               updated_at) values (%s, %s, %s, %s, %s, %s)
           on conflict (user_id, charger_id) do update set muted = excluded.muted,
               min_severity = excluded.min_severity, channel_ids = excluded.channel_ids,
               updated_at = excluded.updated_at""",
        (user_id, charger_id, muted, None if severity is None else severity.value,
         None if channel_ids is None else list(channel_ids), now))


def clear_charger_override(conn: Connection, user_id: str, charger_id: str) -> bool:
    return bool(conn.execute("delete from notification_charger_overrides where user_id = %s and charger_id = %s",
                             (user_id, charger_id)).rowcount)


# --------------------------------------------------------------------------- notification centre


@dataclass(frozen=True, slots=True)
class Notification:
    notification_id: int
    event: str
    alert_id: str | None
    charger_id: str | None
    site_id: str | None
    severity: str
    title: str
    body: str
    roles: tuple[str, ...]
    created_at: datetime
    read_at: datetime | None
    delivery: str  # summary of its deliveries: failed > pending > sent > skipped > none

    @property
    def unread(self) -> bool:
        return self.read_at is None


_SUMMARY = """coalesce((select case when bool_or(o.state = 'failed') then 'failed'
                                    when bool_or(o.state = 'pending') then 'pending'
                                    when bool_or(o.state = 'sent') then 'sent' else 'skipped' end
                         from notification_outbox o where o.notification_id = n.notification_id), 'none')"""


def list_notifications(conn: Connection, user_id: str, *, limit: int = 50,
                       unread_only: bool = False) -> list[Notification]:
    """The user's notifications, unread first, newest first within each group."""
    with conn.cursor() as cur:
        rows = cur.execute(
            f"""select n.notification_id, n.event, n.alert_id, n.charger_id, n.site_id, n.severity, n.title, n.body,
                       n.roles, n.created_at, n.read_at, {_SUMMARY}
                from notifications n where n.user_id = %s and (not %s or n.read_at is null)
                order by (n.read_at is null) desc, n.created_at desc, n.notification_id desc
                limit %s""",  # noqa: S608 - _SUMMARY is a constant
            (user_id, unread_only, limit)).fetchall()
    return [Notification(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], tuple(r[8]), r[9], r[10], r[11])
            for r in rows]


def unread_count(conn: Connection, user_id: str) -> int:
    row = conn.execute("select count(*) from notifications where user_id = %s and read_at is null",
                       (user_id,)).fetchone()
    return int(row[0]) if row else 0


def mark_read(conn: Connection, user_id: str, notification_ids: Sequence[int] | None, *, now: datetime) -> int:
    """Mark the given notifications (``None``: all) of this user read; returns how many changed."""
    if notification_ids is None:
        return conn.execute("update notifications set read_at = %s where user_id = %s and read_at is null",
                            (now, user_id)).rowcount
    return conn.execute("update notifications set read_at = %s where user_id = %s and read_at is null"
                        " and notification_id = any(%s)", (now, user_id, list(notification_ids))).rowcount


def mark_unread(conn: Connection, user_id: str, notification_ids: Sequence[int]) -> int:
    return conn.execute("update notifications set read_at = null where user_id = %s and notification_id = any(%s)",
                        (user_id, list(notification_ids))).rowcount


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    outbox_id: int
    channel_id: int
    kind: str
    target: str  # redacted
    state: str  # pending, sent, failed, skipped
    attempts: int
    next_attempt_at: datetime | None  # while pending
    last_error: str | None
    last_attempt_at: datetime | None
    sent_at: datetime | None


def delivery_status(conn: Connection, user_id: str, notification_id: int) -> list[DeliveryStatus]:
    """Each channel's delivery of one of the user's notifications (empty: centre only, or not theirs)."""
    rows = conn.execute(
        """select o.outbox_id, o.channel_id, o.kind, c.target, o.state, o.attempts, o.next_attempt_at,
                  o.last_error, o.last_attempt_at, o.sent_at
           from notification_outbox o join notification_channels c on c.channel_id = o.channel_id
           where o.user_id = %s and o.notification_id = %s order by o.outbox_id""",
        (user_id, notification_id)).fetchall()
    return [DeliveryStatus(r[0], r[1], r[2], redact_target(ChannelKind(r[2]), r[3]), r[4], r[5],
                           r[6] if r[4] == "pending" else None, *r[7:]) for r in rows]


def retry_delivery(conn: Connection, user_id: str, outbox_id: int, *, now: datetime) -> bool:
    """Queue one of the user's failed deliveries again, as new (after they fixed the receiver)."""
    return bool(conn.execute(
        "update notification_outbox set state = 'pending', attempts = 0, next_attempt_at = %s, created_at = %s"
        " where outbox_id = %s and user_id = %s and state = 'failed'", (now, now, outbox_id, user_id)).rowcount)


def send_test_notification(conn: Connection, user_id: str, *, now: datetime) -> int:
    """Queue a test notification on every enabled channel of the user; returns its notification id."""
    planned = plan_test(get_preferences(conn, user_id))
    if not planned.deliveries:
        raise NotificationError("no enabled channel to test: add a webhook, e-mail address or push URL first")
    with conn.transaction():
        notification_id = insert_notification(conn, None, AlertEventKind.TEST, None, planned, now)
        assert notification_id is not None  # noqa: S101 - no unique conflict without an event id
        insert_deliveries(conn, notification_id, planned, now)
    return notification_id


def insert_notification(conn: Connection, event: AlertEvent | None, kind: AlertEventKind, severity: Severity | None,
                         planned: PlannedNotification, now: datetime) -> int | None:
    row = conn.execute(
        """insert into notifications (user_id, event_id, event, alert_id, charger_id, site_id, severity, title, body,
               roles, created_at) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           on conflict (user_id, event_id) do nothing returning notification_id""",
        (planned.user_id, event.event_id if event else None, kind.value, event.alert_id if event else None,
         event.charger_id if event else None, event.site_id if event else None, (severity or Severity.INFO).value,
         planned.title, planned.body, sorted(r.value for r in planned.roles), now)).fetchone()
    return None if row is None else int(row[0])


def insert_deliveries(conn: Connection, notification_id: int, planned: PlannedNotification, now: datetime) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            """insert into notification_outbox (notification_id, user_id, channel_id, kind, state, next_attempt_at,
                   last_error, created_at) values (%s, %s, %s, %s, %s, %s, %s, %s)
               on conflict (notification_id, channel_id) do nothing""",
            [(notification_id, planned.user_id, d.channel_id, d.kind.value,
              "skipped" if d.skipped_reason else "pending", now, d.skipped_reason, now) for d in planned.deliveries])
