"""The delivery channels of ``flowbank notify``: signed webhooks, e-mail over SMTP, push via Apprise.

Each sender turns one claimed outbox row into one attempt and says how it went
(:class:`SendResult`): sent, failed and worth retrying, or failed for good (a receiver's 4xx, a
refused recipient, a push URL Apprise does not understand). Senders never raise for a delivery
problem; the notifier records the result and the policy picks the next attempt.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Protocol

from control.notify_policy import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ChannelKind,
    http_status_is_permanent,
    sign_webhook,
)
from control.settings import Settings
from warehouse.notification_outbox import OutboxItem

USER_AGENT = "FlowBankOS-notifier/1"


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    error: str | None = None
    permanent: bool = False


SENT = SendResult(ok=True)


class Sender(Protocol):
    def send(self, item: OutboxItem, now: datetime) -> SendResult: ...


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def payload_of(item: OutboxItem, now: datetime) -> dict[str, Any]:
    """The JSON document a webhook receives (documented in docs/notifications.md)."""
    alert = None if item.alert_id is None else {
        "alert_id": item.alert_id, "kind": item.alert_kind, "severity": item.severity, "state": item.alert_state,
        "charger_id": item.charger_id, "site_id": item.site_id, "ts": _iso(item.alert_ts), "count": item.alert_count,
    }
    return {
        "delivery_id": item.outbox_id, "notification_id": item.notification_id, "user_id": item.user_id,
        "event": item.event, "severity": item.severity, "title": item.title, "message": item.body,
        "alert": alert, "sent_at": _iso(now), "attempt": item.attempts + 1,
    }


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is an answer, not a delivery: urllib then raises HTTPError(3xx)


class WebhookSender:
    """HMAC-signed JSON POST; a 2xx answer is a delivery."""

    def __init__(self, *, timeout_s: float = 10.0) -> None:
        self._timeout_s = timeout_s
        self._opener = urllib.request.build_opener(_NoRedirect())

    def send(self, item: OutboxItem, now: datetime) -> SendResult:
        if not item.target.startswith(("http://", "https://")):
            return SendResult(False, "not an http(s) URL", permanent=True)
        if not item.secret:
            return SendResult(False, "the webhook has no signing secret", permanent=True)
        body = json.dumps(payload_of(item, now), separators=(",", ":"), sort_keys=True).encode()
        timestamp = int(now.timestamp())
        request = urllib.request.Request(item.target, data=body, method="POST", headers={  # noqa: S310 - scheme checked
            "Content-Type": "application/json", "User-Agent": USER_AGENT,
            TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign_webhook(item.secret, timestamp, body),
            DELIVERY_HEADER: str(item.outbox_id), EVENT_HEADER: item.event,
        })
        try:
            with self._opener.open(request, timeout=self._timeout_s) as response:
                response.read(65536)
        except urllib.error.HTTPError as exc:
            permanent = 300 <= exc.code < 400 or http_status_is_permanent(exc.code)
            return SendResult(False, f"HTTP {exc.code} {exc.reason}", permanent=permanent)
        except (urllib.error.URLError, OSError) as exc:  # refused, DNS, TLS, timeout
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            return SendResult(False, f"{type(exc).__name__}: {reason}")
        return SENT


class EmailSender:
    """Plain-text e-mail through the configured SMTP server (``FLOWBANK_SMTP_*``)."""

    def __init__(self, settings: Settings, *, timeout_s: float = 30.0) -> None:
        self._settings = settings
        self._timeout_s = timeout_s

    def message_of(self, item: OutboxItem) -> EmailMessage:
        s = self._settings
        msg = EmailMessage()
        msg["From"] = s.smtp_from
        msg["To"] = item.target
        msg["Subject"] = item.title
        domain = s.smtp_from.rpartition("@")[2] or "flowbank.invalid"
        # The same id on a redelivery, so mail clients can fold duplicates of at-least-once delivery.
        msg["Message-ID"] = f"<notification-{item.notification_id}.{item.channel_id}@{domain}>"
        msg[DELIVERY_HEADER] = str(item.outbox_id)
        msg.set_content(item.body + "\n\n-- \nFlowBankOS notifications: change what you receive in your settings.\n")
        return msg

    def send(self, item: OutboxItem, now: datetime) -> SendResult:
        s = self._settings
        if not s.smtp_host:
            return SendResult(False, "e-mail is not configured (FLOWBANK_SMTP_HOST is unset)")
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=self._timeout_s) as smtp:
                if s.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if s.smtp_username:
                    smtp.login(s.smtp_username, s.smtp_password.reveal())
                smtp.send_message(self.message_of(item))
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            return SendResult(False, f"recipient refused: {codes}", permanent=all(c >= 500 for c in codes))
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            return SendResult(False, f"SMTP {exc.smtp_code}: {text}")
        except (smtplib.SMTPException, OSError) as exc:
            return SendResult(False, f"{type(exc).__name__}: {exc}")
        return SENT


_NOTIFY_TYPES = {"critical": "failure", "error": "failure", "warning": "warning", "info": "info"}


def _load_apprise_plugins() -> None:
    """Load Apprise's plugins once, up front (not lazily in a delivery thread). Its e-mail plugin
    imports the standard library's deprecated ``imghdr`` module; that warning is Apprise's, and
    filtering it here (before any thread runs) keeps warnings-as-errors test runs meaningful."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'imghdr' is deprecated", category=DeprecationWarning)
        from apprise.manager_plugins import NotificationManager

        NotificationManager().load_modules()  # type: ignore[no-untyped-call]


class PushSender:
    """Any service Apprise knows (ntfy://, pover://, tgram://, json://, ...), by the user's URL."""

    def __init__(self, *, timeout_s: float = 15.0) -> None:
        self._timeout_s = timeout_s
        _load_apprise_plugins()

    def send(self, item: OutboxItem, now: datetime) -> SendResult:
        import apprise

        client = apprise.Apprise(asset=apprise.AppriseAsset(storage_mode="memory"))
        if not client.add(item.target):
            return SendResult(False, "not a push URL Apprise understands", permanent=True)
        problems: list[str] = []

        def collect(entry: Any, _plugin: Any) -> None:
            if str(entry.level).upper() in ("WARNING", "ERROR", "CRITICAL"):
                problems.append(str(entry.message))

        notify_type = "success" if item.event == "resolved" else _NOTIFY_TYPES.get(item.severity, "info")
        result = client.notify(body=item.body, title=item.title, notify_type=notify_type, timeout=self._timeout_s,
                               log_callback=collect)
        if result:
            return SENT
        return SendResult(False, "; ".join(problems[-3:]) or "the push service did not accept the notification")


def default_senders(settings: Settings) -> dict[ChannelKind, Sender]:
    return {ChannelKind.WEBHOOK: WebhookSender(), ChannelKind.EMAIL: EmailSender(settings),
            ChannelKind.PUSH: PushSender()}
