"""Test support for the notifier: a private database, people and alerts, a local webhook receiver
and a local SMTP inbox (aiosmtpd)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg

from control.notify_policy import verify_webhook

Conn = psycopg.Connection[Any]

TABLES = ("notification_outbox", "notifications", "alert_events", "notification_charger_overrides",
          "notification_channels", "notification_preferences", "alerts", "memberships", "org_memberships",
          "user_roles", "users", "chargers", "sites", "organisations")


def reset(conn: Conn) -> None:
    conn.execute("truncate " + ", ".join(TABLES) + " cascade")


def wait_until(check: Callable[[], Any], *, timeout_s: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def add_user(conn: Conn, user_id: str, *, time_zone: str = "UTC", disabled: bool = False) -> None:
    conn.execute("insert into users (user_id, email, display_name, time_zone, disabled) values (%s, %s, %s, %s, %s)",
                 (user_id, f"{user_id}@example.test", user_id, time_zone, disabled))


def add_site(conn: Conn, site_id: str, org_id: str | None = None) -> None:
    if org_id is not None:
        conn.execute("insert into organisations (org_id, name) values (%s, %s) on conflict do nothing",
                     (org_id, org_id))
    conn.execute("insert into sites (site_id, name, config, org_id) values (%s, %s, '{}', %s)",
                 (site_id, site_id, org_id))


def add_charger(conn: Conn, charger_id: str, site_id: str | None = None) -> None:
    conn.execute("insert into chargers (charger_id, site_id) values (%s, %s)", (charger_id, site_id))


def grant(conn: Conn, user_id: str, role: str, scope: str | None = None) -> None:
    if role in ("owner", "member"):
        conn.execute("insert into memberships (user_id, charger_id, role) values (%s, %s, %s)", (user_id, scope, role))
    elif role == "fleet_manager":
        conn.execute("insert into org_memberships (user_id, org_id, role) values (%s, %s, %s)", (user_id, scope, role))
    else:
        conn.execute("insert into user_roles (user_id, role) values (%s, %s)", (user_id, role))


def upsert_alert(conn: Conn, alert_id: str, *, kind: str = "charger_offline", severity: str = "error",
                 state: str = "open", charger_id: str | None = "CP1", site_id: str | None = None,
                 count: int = 1, message: str = "CP1 has been silent for 3 heartbeat intervals",
                 ts: datetime = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)) -> None:
    """As the pipeline writes alerts: one row per alert, updated in place."""
    conn.execute(
        """insert into alerts (alert_id, kind, severity, ts, message, state, charger_id, site_id, count, updated_at)
           values (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())
           on conflict (alert_id) do update set severity = excluded.severity, message = excluded.message,
               state = excluded.state, count = excluded.count, updated_at = now()""",
        (alert_id, kind, severity, ts, message, state, charger_id, site_id, count))


# --------------------------------------------------------------------------- webhook receiver


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.time)  # unix seconds, when the request was read

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """A local HTTP server recording every POST. ``statuses`` are answered in order, then 200;
    while ``hold`` is clear, requests wait (after being recorded) before they are answered."""

    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.hold.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.received.append(Received(self.path, headers, body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.hold.wait(120)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender was killed while we held its request

            def log_message(self, format: str, *args: Any) -> None:
                pass

        lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def stop(self) -> None:
        self.hold.set()
        self._server.shutdown()
        self._server.server_close()

    def verified(self, secret: str) -> list[Received]:
        return [r for r in self.received if verify_webhook(secret, r.headers, r.body, now_unix=time.time())]


@dataclass
class SmtpInbox:
    messages: list[Message] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        from aiosmtpd.controller import Controller

        inbox = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                inbox.recipients.append(list(envelope.rcpt_tos))
                inbox.messages.append(message_from_bytes(envelope.original_content or envelope.content))
                return "250 OK"

            async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                                  rcpt_options: Any) -> str:
                if address.startswith("nobody@"):
                    return "550 no such user here"
                envelope.rcpt_tos.append(address)
                return "250 OK"

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


def smtp_inbox() -> Iterator[SmtpInbox]:
    inbox = SmtpInbox()
    try:
        yield inbox
    finally:
        inbox.stop()
