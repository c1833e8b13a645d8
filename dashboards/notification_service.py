"""The signed-in user's notification centre and delivery preferences.

Everything is the user's own: every function works on ``who.user_id`` only, so nobody can read
or change another person's notifications or channels. A per-charger override needs the charger
to be visible to the user (``Permission.VIEW``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import time

from control.access import Permission
from control.notify_policy import Preferences
from dashboards.access import Access, Principal
from warehouse import notification_store as store
from warehouse.notification_store import ChannelInfo, DeliveryStatus, NewChannel, Notification, NotificationError

__all__ = ["NotificationError", "NotificationService"]


class NotificationService:
    def __init__(self, access: Access) -> None:
        self._access = access

    def inbox(self, who: Principal, *, limit: int = 50, unread_only: bool = False) -> list[Notification]:
        with self._access.connection() as conn:
            return store.list_notifications(conn, who.user_id, limit=limit, unread_only=unread_only)

    def unread(self, who: Principal) -> int:
        with self._access.connection() as conn:
            return store.unread_count(conn, who.user_id)

    def mark_read(self, who: Principal, ids: Sequence[int] | None) -> int:
        with self._access.connection() as conn:
            return store.mark_read(conn, who.user_id, ids, now=self._access.now())

    def deliveries(self, who: Principal, notification_id: int) -> list[DeliveryStatus]:
        with self._access.connection() as conn:
            return store.delivery_status(conn, who.user_id, notification_id)

    def retry(self, who: Principal, outbox_id: int) -> bool:
        with self._access.connection() as conn:
            return store.retry_delivery(conn, who.user_id, outbox_id, now=self._access.now())

    def preferences(self, who: Principal) -> Preferences:
        with self._access.connection() as conn:
            return store.get_preferences(conn, who.user_id)

    def save_preferences(self, who: Principal, *, timezone: str, min_severity: str | None,
                         quiet_hours: tuple[time, time] | None, quiet_bypass: str | None) -> Preferences:
        with self._access.connection() as conn:
            prefs = store.set_preferences(conn, who.user_id, timezone=timezone, min_severity=min_severity,
                                          quiet_hours=quiet_hours, quiet_bypass=quiet_bypass, now=self._access.now())
        self._access.log(who, "notification_preferences", None)
        return prefs

    def channels(self, who: Principal) -> list[ChannelInfo]:
        with self._access.connection() as conn:
            return store.list_channels(conn, who.user_id)

    def add_channel(self, who: Principal, kind: str, target: str, *, label: str | None = None,
                    min_severity: str | None = None) -> NewChannel:
        with self._access.connection() as conn:
            added = store.add_channel(conn, who.user_id, kind, target, label=label, min_severity=min_severity)
        self._access.log(who, "add_notification_channel", None, detail=kind)
        return added

    def set_channel_enabled(self, who: Principal, channel_id: int, enabled: bool) -> bool:
        with self._access.connection() as conn:
            return store.set_channel_enabled(conn, who.user_id, channel_id, enabled)

    def remove_channel(self, who: Principal, channel_id: int) -> bool:
        with self._access.connection() as conn:
            return store.remove_channel(conn, who.user_id, channel_id)

    def mute_charger(self, who: Principal, charger_id: str, *, muted: bool, min_severity: str | None) -> None:
        self._access.require(who, Permission.VIEW, charger_id)
        with self._access.connection() as conn:
            if not muted and min_severity is None:
                store.clear_charger_override(conn, who.user_id, charger_id)
            else:
                store.set_charger_override(conn, who.user_id, charger_id, muted=muted, min_severity=min_severity,
                                           channel_ids=None, now=self._access.now())

    def send_test(self, who: Principal) -> int:
        """Queue a test notification on every enabled channel; its notification id (see deliveries)."""
        with self._access.connection() as conn:
            notification_id = store.send_test_notification(conn, who.user_id, now=self._access.now())
        self._access.log(who, "send_test_notification", None, detail=f"notification {notification_id}")
        return notification_id
