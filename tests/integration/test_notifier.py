"""The notifier against real PostgreSQL, a local webhook receiver, a local SMTP server (aiosmtpd)
and Apprise's json:// push: fan-out, signed delivery, retries, failure, quiet hours, the services."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from urllib.parse import urlsplit

import psycopg
import pytest
from dbutil import fresh_database
from notifier_harness import (
    Conn,
    SmtpInbox,
    WebhookReceiver,
    add_charger,
    add_site,
    add_user,
    grant,
    reset,
    upsert_alert,
    wait_until,
)

from control.notify_policy import ChannelKind, Recipient, RetryPolicy, verify_webhook, zone_of
from control.settings import Settings
from pipelines.notifier import Notifier
from pipelines.notify_channels import EmailSender, PushSender, Sender, WebhookSender, default_senders
from warehouse import notification_outbox as outbox_store
from warehouse import notification_store as store

pytestmark = pytest.mark.integration


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def notify_dsn(base_settings: Settings) -> Iterator[str]:
    """A database of this module's own: the tests truncate people and alerts freely."""
    with fresh_database(base_settings.pg_dsn.reveal(), "flowbank_notify") as dsn:
        yield dsn


@pytest.fixture()
def conn(notify_dsn: str) -> Iterator[Conn]:
    with psycopg.connect(notify_dsn, autocommit=True) as c:
        reset(c)
        yield c


@pytest.fixture()
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.stop()


@pytest.fixture()
def inbox() -> Iterator[SmtpInbox]:
    box = SmtpInbox()
    yield box
    box.stop()


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


def notifier(dsn: str, clock: FakeClock, senders: dict[ChannelKind, Sender] | None = None) -> Notifier:
    policy = RetryPolicy(max_attempts=3, base_s=10.0, jitter_ratio=0.0)
    return Notifier(dsn, senders or {ChannelKind.WEBHOOK: WebhookSender(timeout_s=30)},
                    retry=policy, clock=clock, jitter=lambda: 0.5)


def people(conn: Conn) -> None:
    """CP1 on site S1 of organisation ORG; owner, member, fleet manager, support, and bystanders."""
    add_site(conn, "S1", "ORG")
    add_site(conn, "S2", "OTHER")
    add_charger(conn, "CP1", "S1")
    add_charger(conn, "CP2", "S2")
    for user in ("owner", "member", "fleet", "support", "installer", "stranger", "other-fleet", "gone"):
        add_user(conn, user, disabled=user == "gone")
    grant(conn, "owner", "owner", "CP1")
    grant(conn, "member", "member", "CP1")
    grant(conn, "fleet", "fleet_manager", "ORG")
    grant(conn, "other-fleet", "fleet_manager", "OTHER")
    grant(conn, "support", "support")
    grant(conn, "gone", "support")
    grant(conn, "installer", "installer")
    grant(conn, "stranger", "owner", "CP2")


def centre(conn: Conn) -> dict[str, list[str]]:
    rows = conn.execute("select user_id, event from notifications order by notification_id").fetchall()
    out: dict[str, list[str]] = {}
    for user_id, event in rows:
        out.setdefault(user_id, []).append(event)
    return out


def outbox(conn: Conn) -> list[tuple[str, str, int, str | None]]:
    return conn.execute("select kind, state, attempts, last_error from notification_outbox order by outbox_id"
                        ).fetchall()


def test_fan_out_reaches_the_right_people_once_per_change(conn: Conn, notify_dsn: str, clock: FakeClock) -> None:
    people(conn)
    n = notifier(notify_dsn, clock)
    upsert_alert(conn, "a1", severity="error")
    assert n.fanout_once(conn) == 1
    expected = {"owner", "member", "fleet", "support"}
    assert set(centre(conn)) == expected
    # The same condition flapping: the count grows, nobody is told again; a replayed row is no event.
    upsert_alert(conn, "a1", severity="error", count=5)
    upsert_alert(conn, "a1", severity="error", count=5)
    assert n.fanout_once(conn) == 0
    upsert_alert(conn, "a1", severity="critical", count=6)
    upsert_alert(conn, "a1", severity="critical", count=6, state="acknowledged")
    upsert_alert(conn, "a1", severity="critical", count=6, state="resolved")
    assert n.fanout_once(conn) == 3
    assert centre(conn) == {u: ["opened", "escalated", "resolved"] for u in sorted(expected)} | centre(conn)
    assert all(events == ["opened", "escalated", "resolved"] for events in centre(conn).values())
    # A re-scan (events marked unprocessed again, as after a crash before commit) duplicates nothing.
    before = conn.execute("select count(*) from notifications").fetchone()
    conn.execute("update alert_events set fanned_out_at = null")
    assert n.fanout_once(conn) == 4
    assert conn.execute("select count(*) from notifications").fetchone() == before
    # A site-level alert (no charger): the organisation's fleet managers and support.
    upsert_alert(conn, "spike", kind="error_spike", charger_id=None, site_id="S2", severity="error")
    n.fanout_once(conn)
    spike = conn.execute("select user_id from notifications where alert_id = 'spike' order by user_id").fetchall()
    assert [r[0] for r in spike] == ["other-fleet", "support"]
    # Without thresholds of their own: "charging completed" (info) reaches the charger's people only,
    # a warning reaches the fleet managers too, support hears from error up.
    for alert_id, severity in (("done", "info"), ("warn", "warning")):
        upsert_alert(conn, alert_id, kind="session_completed", severity=severity)
    n.fanout_once(conn)
    heard = dict(conn.execute("select alert_id, array_agg(user_id order by user_id) from notifications"
                              " where alert_id in ('done', 'warn') group by alert_id").fetchall())
    assert heard == {"done": ["member", "owner"], "warn": ["fleet", "member", "owner"]}


def test_webhook_is_signed_and_delivered_once(conn: Conn, notify_dsn: str, clock: FakeClock,
                                              receiver: WebhookReceiver) -> None:
    people(conn)
    channel = store.add_channel(conn, "owner", "webhook", receiver.url())
    assert channel.secret
    n = notifier(notify_dsn, clock)
    upsert_alert(conn, "a1")
    assert n.drain(conn) == (1, 1)
    [got] = receiver.received
    assert verify_webhook(channel.secret, got.headers, got.body, now_unix=clock.now.timestamp())
    assert not verify_webhook("wrong-secret", got.headers, got.body, now_unix=clock.now.timestamp())
    body = got.json
    assert body["event"] == "opened" and body["user_id"] == "owner" and body["attempt"] == 1
    assert body["alert"]["alert_id"] == "a1" and body["alert"]["charger_id"] == "CP1"
    assert body["alert"]["kind"] == "charger_offline" and body["alert"]["severity"] == "error"
    assert got.headers["x-flowbank-delivery"] == str(body["delivery_id"])
    [note] = store.list_notifications(conn, "owner")
    assert note.delivery == "sent"
    [status] = store.delivery_status(conn, "owner", note.notification_id)
    assert (status.state, status.attempts, status.last_error) == ("sent", 1, None)
    assert status.target == f"http://127.0.0.1:{urlsplit(receiver.url()).port}/..."
    assert store.delivery_status(conn, "member", note.notification_id) == []  # not theirs


def test_webhook_is_retried_after_a_receiver_failure(conn: Conn, notify_dsn: str, clock: FakeClock,
                                                     receiver: WebhookReceiver) -> None:
    people(conn)
    secret = store.add_channel(conn, "owner", "webhook", receiver.url()).secret
    assert secret is not None
    receiver.statuses = [500]
    n = notifier(notify_dsn, clock)
    upsert_alert(conn, "a1")
    n.fanout_once(conn)
    assert n.deliver_once(conn)
    assert outbox(conn) == [("webhook", "pending", 1, "HTTP 500 Internal Server Error")]
    assert not n.deliver_once(conn)  # not due before its backoff
    clock.advance(10)
    assert n.deliver_once(conn)
    assert outbox(conn) == [("webhook", "sent", 2, None)]
    first, second = receiver.received
    assert first.headers["x-flowbank-delivery"] == second.headers["x-flowbank-delivery"]
    assert second.json["attempt"] == 2
    assert len(receiver.verified(secret)) == 2


def test_a_failing_channel_ends_failed_and_visible(conn: Conn, notify_dsn: str, clock: FakeClock,
                                                   receiver: WebhookReceiver) -> None:
    people(conn)
    store.add_channel(conn, "owner", "webhook", receiver.url())
    receiver.statuses = [503, 503, 503]
    n = notifier(notify_dsn, clock)
    upsert_alert(conn, "a1")
    n.fanout_once(conn)
    for _ in range(3):
        while n.deliver_once(conn):
            pass
        clock.advance(3600)
    [(_, state, attempts, error)] = outbox(conn)
    assert (state, attempts) == ("failed", 3) and "gave up after 3 attempts" in (error or "")
    assert len(receiver.received) == 3
    [note] = store.list_notifications(conn, "owner")
    assert note.delivery == "failed"
    [status] = store.delivery_status(conn, "owner", note.notification_id)
    assert status.state == "failed" and status.next_attempt_at is None and "HTTP 503" in (status.last_error or "")
    # The user fixed the receiver and asks again: queued as new, delivered.
    assert not store.retry_delivery(conn, "member", status.outbox_id, now=clock.now)
    assert store.retry_delivery(conn, "owner", status.outbox_id, now=clock.now)
    n.drain(conn)
    assert outbox(conn) == [("webhook", "sent", 1, None)]


def test_a_permanent_refusal_fails_at_once(conn: Conn, notify_dsn: str, clock: FakeClock,
                                           receiver: WebhookReceiver) -> None:
    people(conn)
    store.add_channel(conn, "owner", "webhook", receiver.url())
    receiver.statuses = [410]
    n = notifier(notify_dsn, clock)
    upsert_alert(conn, "a1")
    n.drain(conn)
    [(_, state, attempts, error)] = outbox(conn)
    assert (state, attempts) == ("failed", 1) and "410" in (error or "") and "permanent" in (error or "")


def test_email_over_smtp(conn: Conn, notify_dsn: str, clock: FakeClock, inbox: SmtpInbox,
                         test_settings: Settings) -> None:
    people(conn)
    settings = replace(test_settings, smtp_host="127.0.0.1", smtp_port=inbox.port, smtp_starttls=False,
                       smtp_from="alerts@flowbank.test")
    store.add_channel(conn, "owner", "email", "owner@example.test")
    store.add_channel(conn, "support", "email", "nobody@example.test")
    n = notifier(notify_dsn, clock, {ChannelKind.EMAIL: EmailSender(settings)})
    upsert_alert(conn, "a1", severity="critical")
    n.drain(conn)
    assert inbox.recipients == [["owner@example.test"]]
    [msg] = inbox.messages
    assert msg["Subject"] == "[CRITICAL] charger offline - charger CP1"
    assert msg["From"] == "alerts@flowbank.test"
    assert "CP1 has been silent" in msg.get_payload(decode=True).decode()  # type: ignore[union-attr]
    states = dict(conn.execute("select user_id, state from notification_outbox").fetchall())
    assert states == {"owner": "sent", "support": "failed"}  # 550 for nobody@: permanent


def test_email_without_a_server_is_retried_not_dropped(conn: Conn, notify_dsn: str, clock: FakeClock,
                                                       test_settings: Settings) -> None:
    people(conn)
    store.add_channel(conn, "owner", "email", "owner@example.test")
    n = notifier(notify_dsn, clock, {ChannelKind.EMAIL: EmailSender(replace(test_settings, smtp_host=None))})
    upsert_alert(conn, "a1")
    n.drain(conn)
    [(_, state, attempts, error)] = outbox(conn)
    assert (state, attempts) == ("pending", 1) and "FLOWBANK_SMTP_HOST" in (error or "")


def test_push_through_apprise(conn: Conn, notify_dsn: str, clock: FakeClock, receiver: WebhookReceiver) -> None:
    people(conn)
    port = urlsplit(receiver.url()).port
    store.add_channel(conn, "owner", "push", f"json://127.0.0.1:{port}/push")
    n = notifier(notify_dsn, clock, {ChannelKind.PUSH: PushSender(timeout_s=30)})
    upsert_alert(conn, "a1", severity="error")
    n.drain(conn)
    [got] = receiver.received
    assert got.path == "/push"
    assert got.json["title"] == "[ERROR] charger offline - charger CP1"
    assert "CP1 has been silent" in got.json["message"]
    assert outbox(conn) == [("push", "sent", 1, None)]
    receiver.statuses = [500]
    upsert_alert(conn, "a1", state="resolved")
    n.drain(conn)
    assert [r[1] for r in outbox(conn)] == ["sent", "pending"]


def test_quiet_hours_keep_the_centre_and_let_critical_through(conn: Conn, notify_dsn: str, clock: FakeClock,
                                                              receiver: WebhookReceiver) -> None:
    people(conn)
    store.add_channel(conn, "owner", "webhook", receiver.url())
    local = clock.now.astimezone(zone_of("Asia/Tokyo"))
    start, end = (local - timedelta(hours=1)).time(), (local + timedelta(hours=1)).time()
    store.set_preferences(conn, "owner", timezone="Asia/Tokyo", min_severity="info",
                          quiet_hours=(start.replace(microsecond=0), end.replace(microsecond=0)), now=clock.now)
    n = notifier(notify_dsn, clock)
    upsert_alert(conn, "a1", severity="error")
    n.drain(conn)
    assert receiver.received == []
    assert outbox(conn) == [("webhook", "skipped", 0, "quiet hours")]
    assert [x.delivery for x in store.list_notifications(conn, "owner")] == ["skipped"]
    upsert_alert(conn, "a2", severity="critical")
    n.drain(conn)
    assert len(receiver.received) == 1 and receiver.received[0].json["alert"]["alert_id"] == "a2"


def test_user_services(conn: Conn, notify_dsn: str, clock: FakeClock, receiver: WebhookReceiver) -> None:
    people(conn)
    n = notifier(notify_dsn, clock)
    with pytest.raises(store.NotificationError):
        store.send_test_notification(conn, "owner", now=clock.now)  # no channel yet
    with pytest.raises(store.NotificationError):
        store.set_preferences(conn, "owner", timezone="Nowhere/City", min_severity="info", now=clock.now)
    with pytest.raises(store.NotificationError):
        store.add_channel(conn, "owner", "webhook", "gopher://x")
    prefs = store.set_preferences(conn, "owner", timezone="Europe/Paris", min_severity="info",
                                  quiet_hours=(time(22), time(6, 30)), quiet_bypass=None, now=clock.now)
    assert prefs == store.get_preferences(conn, "owner")
    assert (prefs.timezone, prefs.min_severity, prefs.quiet_bypass) == ("Europe/Paris", "info", None)
    hook = store.add_channel(conn, "owner", "webhook", receiver.url())
    for i, severity in enumerate(("info", "warning", "error")):
        upsert_alert(conn, f"a{i}", severity=severity)
        clock.advance(1)
        n.fanout_once(conn)
    notes = store.list_notifications(conn, "owner")
    assert [x.alert_id for x in notes] == ["a2", "a1", "a0"]
    assert store.mark_read(conn, "member", [notes[0].notification_id], now=clock.now) == 0  # not the member's
    assert store.mark_read(conn, "owner", [notes[0].notification_id], now=clock.now) == 1
    assert [x.alert_id for x in store.list_notifications(conn, "owner")] == ["a1", "a0", "a2"]  # unread first
    assert store.unread_count(conn, "owner") == 2
    assert [x.alert_id for x in store.list_notifications(conn, "owner", unread_only=True)] == ["a1", "a0"]
    assert store.mark_read(conn, "owner", None, now=clock.now) == 2
    # A muted charger: nothing at all; the mute lifted: back.
    store.set_charger_override(conn, "owner", "CP1", muted=True, now=clock.now)
    upsert_alert(conn, "muted", severity="critical")
    n.fanout_once(conn)
    assert store.unread_count(conn, "owner") == 0
    assert store.clear_charger_override(conn, "owner", "CP1")
    with pytest.raises(store.NotificationError):
        store.set_charger_override(conn, "owner", "CP1", channel_ids=[hook.channel_id + 999], now=clock.now)
    # The test notification goes out through the same outbox, regardless of thresholds.
    receiver.received.clear()
    conn.execute("delete from notification_outbox")
    test_id = store.send_test_notification(conn, "owner", now=clock.now)
    n.drain(conn)
    [got] = receiver.received
    assert got.json["event"] == "test" and got.json["alert"] is None
    assert [s.state for s in store.delivery_status(conn, "owner", test_id)] == ["sent"]
    [info] = store.list_channels(conn, "owner")
    assert (info.channel_id, info.kind, info.target, info.enabled) == (hook.channel_id, "webhook", receiver.url(), True)
    assert store.list_channels(conn, "member") == []
    with pytest.raises(store.NotificationError):
        store.rotate_webhook_secret(conn, "member", hook.channel_id)
    new_secret = store.rotate_webhook_secret(conn, "owner", hook.channel_id)
    store.send_test_notification(conn, "owner", now=clock.now)
    n.drain(conn)
    assert len(receiver.verified(new_secret)) == 1 and len(receiver.received) == 2
    assert store.set_channel_enabled(conn, "owner", hook.channel_id, False)
    with pytest.raises(store.NotificationError):
        store.send_test_notification(conn, "owner", now=clock.now)
    assert not store.remove_channel(conn, "member", hook.channel_id)
    assert store.remove_channel(conn, "owner", hook.channel_id)


def test_two_notifiers_share_the_outbox_without_duplicates(conn: Conn, notify_dsn: str,
                                                          receiver: WebhookReceiver, test_settings: Settings) -> None:
    people(conn)
    for user in ("owner", "member", "fleet", "support"):
        store.add_channel(conn, user, "webhook", receiver.url(f"/{user}"))
    for i in range(10):
        upsert_alert(conn, f"a{i}")
    stop = threading.Event()
    senders = default_senders(test_settings)
    workers = [Notifier(notify_dsn, senders, poll_s=0.1) for _ in range(2)]
    threads = [threading.Thread(target=w.run, args=(stop,), kwargs={"workers": 2}) for w in workers]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: conn.execute("select count(*) = 40 and bool_and(state = 'sent') from notification_outbox"
                                        ).fetchone()[0], what="40 deliveries sent")  # type: ignore[index]
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    ids = [r.headers["x-flowbank-delivery"] for r in receiver.received]
    assert len(ids) == 40 and len(set(ids)) == 40
    assert conn.execute("select count(*) from alert_events where fanned_out_at is null").fetchone() == (0,)


def test_settings_reach_the_email_sender() -> None:
    from pathlib import Path

    from control.settings import load_settings

    s = load_settings({"FLOWBANK_SMTP_HOST": "mail.test", "FLOWBANK_SMTP_PORT": "2525",
                       "FLOWBANK_SMTP_STARTTLS": "false", "FLOWBANK_SMTP_PASSWORD": "pw"},
                      default_data_dir=Path(os.devnull))
    assert (s.smtp_host, s.smtp_port, s.smtp_starttls, s.smtp_password.reveal()) == ("mail.test", 2525, False, "pw")
    assert "pw" not in repr(s)


def test_alerts_written_by_the_dataflow_writer_and_support_actions(conn: Conn, notify_dsn: str,
                                                                   clock: FakeClock) -> None:
    """The contract with warehouse/alert_store: its upserts and support's acknowledgement."""
    from control.alerts import AlertChange
    from control.contract import Alert, AlertState, Severity
    from warehouse import alert_store

    people(conn)
    n = notifier(notify_dsn, clock)
    writer = alert_store.AlertWriter(notify_dsn)
    t0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

    def write(count: int, state: AlertState, minutes: int) -> None:
        alert = Alert("off-CP1", "charger_offline", Severity.ERROR, t0 + timedelta(minutes=minutes),
                      "CP1 is offline", state, "CP1", "S1", count)
        writer.write([AlertChange(alert, dedupe_key="charger_offline:CP1")])

    try:
        write(1, AlertState.OPEN, 0)
        write(1, AlertState.OPEN, 0)  # a replayed batch
        write(2, AlertState.OPEN, 1)  # the condition again: only the count grows
        n.fanout_once(conn)
        assert centre(conn)["owner"] == ["opened"]
        alert_store.acknowledge(conn, "off-CP1", "support", "looking", now=clock.now)
        write(3, AlertState.OPEN, 2)  # the pipeline re-emits it: the acknowledgement stands, nobody is told
        n.fanout_once(conn)
        assert centre(conn)["owner"] == ["opened"]
        write(3, AlertState.RESOLVED, 3)
        n.fanout_once(conn)
        assert centre(conn)["owner"] == ["opened", "resolved"]
        events = [r[0] for r in conn.execute("select event from alert_events order by event_id")]
        assert events == ["opened", "acknowledged", "resolved"]
    finally:
        writer.close()


def test_one_bad_event_does_not_hold_up_the_others(conn: Conn, notify_dsn: str, clock: FakeClock,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    people(conn)
    real = outbox_store.find_recipients

    def find(c: Conn, charger_id: str | None, site_id: str | None) -> list[Recipient]:
        if charger_id == "CP2":
            raise ValueError("a broken row")
        return real(c, charger_id, site_id)

    monkeypatch.setattr(outbox_store, "find_recipients", find)
    upsert_alert(conn, "bad", charger_id="CP2")
    upsert_alert(conn, "good", charger_id="CP1")
    n = notifier(notify_dsn, clock)
    assert n.fanout_once(conn) == 1
    assert conn.execute("select alert_id from alert_events where fanned_out_at is null").fetchall() == [("bad",)]
    assert set(centre(conn)) == {"owner", "member", "fleet", "support"}
    monkeypatch.setattr(outbox_store, "find_recipients", real)
    assert n.fanout_once(conn) == 1  # retried with the next batch
    assert "stranger" in centre(conn)


def test_prune_keeps_unread_and_pending(conn: Conn, notify_dsn: str, clock: FakeClock,
                                        receiver: WebhookReceiver) -> None:
    people(conn)
    store.add_channel(conn, "owner", "webhook", receiver.url())
    receiver.statuses = [500]
    n = notifier(notify_dsn, clock)
    upsert_alert(conn, "a1")
    n.drain(conn)  # owner's webhook: pending (retry); member, fleet, support: centre only
    store.mark_read(conn, "owner", None, now=clock.now)
    store.mark_read(conn, "member", None, now=clock.now)
    later = clock.now + timedelta(days=30)
    conn.execute("update alert_events set occurred_at = occurred_at - interval '30 days'")
    pruned = outbox_store.prune(conn, before=later)
    assert pruned == outbox_store.Pruned(events=0, notifications=1)  # member's; the owner's is still pending
    assert set(centre(conn)) == {"owner", "fleet", "support"}
    clock.advance(10)
    n.drain(conn)
    store.mark_read(conn, "fleet", None, now=clock.now)
    store.mark_read(conn, "support", None, now=clock.now)
    clock.advance(30 * 86400)
    keeper = Notifier(notify_dsn, {}, clock=clock, retention=timedelta(days=7))
    assert keeper.prune_if_due(conn) == outbox_store.Pruned(events=1, notifications=3)
    assert keeper.prune_if_due(conn) is None  # not again within the hour
    assert centre(conn) == {} and outbox(conn) == []
