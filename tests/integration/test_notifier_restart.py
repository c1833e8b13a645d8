"""Nothing is lost across a notifier restart: `flowbank notify` killed (SIGKILL) while it holds a
claimed delivery; the next process delivers the same row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dbutil import fresh_database
from notifier_harness import WebhookReceiver, add_charger, add_user, grant, upsert_alert, wait_until

from control.settings import Settings
from warehouse import notification_store as store

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def dsn(base_settings: Settings) -> Iterator[str]:
    with fresh_database(base_settings.pg_dsn.reveal(), "flowbank_notify_restart") as url:
        yield url


def start_notifier(dsn: str, tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBANK_")}
    env.update(FLOWBANK_PG_DSN=dsn, FLOWBANK_PROVISION_SERVICES="false", FLOWBANK_DATA_DIR=str(tmp_path / "data"),
               FLOWBANK_MQTT_URL=os.environ.get("FLOWBANK_MQTT_URL", "mqtt://127.0.0.1:1884"))
    with (tmp_path / f"{name}.log").open("wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "flowbank.cli", "notify", "--workers", "1", "--poll-s", "0.2"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def test_a_delivery_claimed_by_a_killed_notifier_is_redelivered(dsn: str, tmp_path: Path) -> None:
    receiver = WebhookReceiver()
    first: subprocess.Popen[bytes] | None = None
    second: subprocess.Popen[bytes] | None = None
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            add_charger(conn, "CP1")
            add_user(conn, "owner")
            grant(conn, "owner", "owner", "CP1")
            secret = store.add_channel(conn, "owner", "webhook", receiver.url()).secret
            assert secret is not None
            receiver.hold.clear()  # the receiver takes the request and does not answer yet
            upsert_alert(conn, "a1")
            first = start_notifier(dsn, tmp_path, "first")
            wait_until(lambda: receiver.received, what="the first notifier to send")
            # Mid-send: the row is claimed (locked) and still pending.
            assert conn.execute("select state, attempts from notification_outbox").fetchall() == [("pending", 0)]
            with pytest.raises(psycopg.errors.LockNotAvailable), conn.transaction():
                conn.execute("select 1 from notification_outbox for update nowait")
            first.send_signal(signal.SIGKILL)
            first.wait(60)
            receiver.hold.set()
            second = start_notifier(dsn, tmp_path, "second")
            wait_until(lambda: conn.execute("select state = 'sent' from notification_outbox").fetchone()[0],  # type: ignore[index]
                       what="the second notifier to deliver")
            assert conn.execute("select attempts from notification_outbox").fetchone() == (1,)
        ids = {r.headers["x-flowbank-delivery"] for r in receiver.verified(secret)}
        assert len(receiver.received) == 2 and len(ids) == 1  # at least once: the same delivery, twice
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0  # a clean stop on SIGTERM
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(60)
        receiver.stop()
