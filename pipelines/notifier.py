"""`flowbank notify`: alert events into notification centres and out through each user's channels.

Two loops over PostgreSQL, both safe to run in several processes at once:

- **Fan-out** (one thread): claims unprocessed ``alert_events`` (``FOR UPDATE SKIP LOCKED``),
  finds the recipients (charger owners and members, the site organisation's fleet managers,
  support), lets :func:`control.notify_policy.plan_fanout` decide, and writes notifications and
  outbox rows and stamps the events in one transaction. It wakes on the trigger's
  ``pg_notify`` and polls as a fallback.
- **Delivery** (``--workers`` threads, each with its own connection): claims one due outbox row
  (``FOR UPDATE SKIP LOCKED``), sends it and records the outcome *in the same transaction*. A
  process killed mid-send rolls back, releasing the row, which the next claim sends again: at
  least once, never lost. Failures are retried on the policy's backoff, then marked failed.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import signal
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import psycopg

from control.notify_policy import ChannelKind, GiveUp, RetryPolicy, after_failure, plan_fanout
from control.settings import Settings
from pipelines.notify_channels import Sender, SendResult, default_senders
from warehouse import notification_outbox as outbox
from warehouse import notification_store as store

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
CHANNEL = "flowbank_alert_events"
_PRUNE_EVERY = timedelta(hours=1)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Notifier:
    """The fan-out and delivery steps; :meth:`run` drives them with threads until stopped."""

    def __init__(self, dsn: str, senders: Mapping[ChannelKind, Sender], *, retry: RetryPolicy | None = None,
                 clock: Clock = utc_now, jitter: Callable[[], float] | None = None, poll_s: float = 1.0,
                 batch: int = 100, retention: timedelta | None = timedelta(days=90)) -> None:
        self._dsn = dsn
        self._senders = dict(senders)
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._jitter = jitter or secrets.SystemRandom().random
        self._poll_s = poll_s
        self._batch = batch
        self._work = threading.Condition()
        self._retention = retention
        self._pruned_at: datetime | None = None

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self._dsn, autocommit=True, connect_timeout=10)

    # ----------------------------------------------------------------- steps (one transaction each)

    def fanout_once(self, conn: psycopg.Connection[Any]) -> int:
        """Fan out one batch of events; returns how many events were handled."""
        now = self._clock()
        with conn.transaction():
            claimed = outbox.claim_events(conn, limit=self._batch)
            done = []
            for event_id, event in claimed:
                if event is None:
                    done.append(event_id)  # a state the policy does not know: recorded, nobody told
                    continue
                try:
                    with conn.transaction():  # a savepoint: one bad event must not hold up the others
                        recipients = outbox.find_recipients(conn, event.charger_id, event.site_id)
                        outbox.store_fanout(conn, event, plan_fanout(event, recipients, now), now=now)
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    raise  # the connection is gone: the whole batch rolls back and is claimed again
                except (psycopg.Error, ValueError) as exc:
                    log.exception("fan-out of alert event %s failed (retried with the next batch): %s", event_id, exc)
                    continue
                done.append(event_id)
            outbox.mark_events_done(conn, done, now=now)
        return len(done)

    def deliver_once(self, conn: psycopg.Connection[Any]) -> bool:
        """Claim, send and record one due delivery; ``False`` when none is due."""
        now = self._clock()
        with conn.transaction():
            item = outbox.claim_delivery(conn, now=now)
            if item is None:
                return False
            if not item.channel_enabled:
                outbox.record_attempt(conn, item.outbox_id, now=now, state="skipped", error="channel disabled")
                return True
            sender = self._senders.get(item.kind)
            try:
                result = (sender.send(item, now) if sender is not None
                          else SendResult(False, f"no sender for {item.kind} in this notifier"))
            except Exception as exc:  # a sender's bug must not stop delivery of everything else
                log.exception("sender %s raised on delivery %s", item.kind, item.outbox_id)
                result = SendResult(False, f"{type(exc).__name__}: {exc}")
            done_at = self._clock()
            if result.ok:
                outbox.record_attempt(conn, item.outbox_id, now=done_at, state="sent")
                log.info("delivery %s (%s, user %s) sent", item.outbox_id, item.kind, item.user_id)
                return True
            decision = after_failure(self._retry, attempts_done=item.attempts + 1, created_at=item.created_at,
                                     now=done_at, permanent=result.permanent, jitter=self._jitter())
            if isinstance(decision, GiveUp):
                outbox.record_attempt(conn, item.outbox_id, now=done_at, state="failed",
                                      error=f"{result.error} ({decision.reason})")
                log.warning("delivery %s (%s, user %s) failed: %s (%s)", item.outbox_id, item.kind, item.user_id,
                            result.error, decision.reason)
            else:
                outbox.record_attempt(conn, item.outbox_id, now=done_at, state="pending", error=result.error,
                                      next_attempt_at=decision.next_attempt_at)
                log.info("delivery %s (%s) attempt %d failed, next at %s: %s", item.outbox_id, item.kind,
                         item.attempts + 1, decision.next_attempt_at.isoformat(), result.error)
        return True

    def prune_if_due(self, conn: psycopg.Connection[Any]) -> outbox.Pruned | None:
        """Once an hour: forget read, finished notifications older than the retention."""
        now = self._clock()
        if self._retention is None or (self._pruned_at is not None and now - self._pruned_at < _PRUNE_EVERY):
            return None
        self._pruned_at = now
        pruned = outbox.prune(conn, before=now - self._retention)
        if pruned.events or pruned.notifications:
            log.info("pruned %d notifications and %d alert events older than %s", pruned.notifications,
                     pruned.events, self._retention)
        return pruned

    def drain(self, conn: psycopg.Connection[Any]) -> tuple[int, int]:
        """Fan out and deliver until nothing is due (for ``--once`` and tests): (events, deliveries)."""
        events = deliveries = 0
        while (n := self.fanout_once(conn)) > 0:
            events += n
        while self.deliver_once(conn):
            deliveries += 1
        return events, deliveries

    # ----------------------------------------------------------------- loops

    def _fanout_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with self.connect() as conn:
                    conn.execute(f"listen {CHANNEL}")
                    while not stop.is_set():
                        self.prune_if_due(conn)
                        if self.fanout_once(conn) > 0:
                            with self._work:
                                self._work.notify_all()
                            continue
                        for _ in conn.notifies(timeout=self._poll_s, stop_after=1):
                            pass
            except Exception:  # the loop must outlive any one failure (the database restarting, a bug)
                log.exception("fan-out failed; starting again shortly")
                stop.wait(min(5.0, self._poll_s * 5))

    def _delivery_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with self.connect() as conn:
                    while not stop.is_set():
                        if not self.deliver_once(conn):
                            with self._work:
                                self._work.wait(self._poll_s)
            except Exception:
                log.exception("delivery failed; starting again shortly")
                stop.wait(min(5.0, self._poll_s * 5))

    def run(self, stop: threading.Event, *, workers: int = 2) -> None:
        """Run the loops until ``stop`` is set (a delivery in flight is finished first)."""
        threads = [threading.Thread(target=self._fanout_loop, args=(stop,), name="notify-fanout", daemon=True)]
        threads += [threading.Thread(target=self._delivery_loop, args=(stop,), name=f"notify-deliver-{i}",
                                     daemon=True) for i in range(max(1, workers))]
        for t in threads:
            t.start()
        stop.wait()
        with self._work:
            self._work.notify_all()
        for t in threads:
            t.join()


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=2, help="delivery threads in this process")
    parser.add_argument("--poll-s", type=float, default=1.0, help="how often to look for work without a wake-up")
    parser.add_argument("--retention-days", type=float, default=90.0,
                        help="forget read, delivered notifications after this many days (0: keep forever)")
    parser.add_argument("--once", action="store_true", help="fan out and deliver what is due now, then exit")
    parser.add_argument("--test", metavar="USER_ID",
                        help="queue a test notification on every channel of this user, then exit")


def run(settings: Settings, args: argparse.Namespace) -> int:
    dsn = settings.pg_dsn.reveal()
    if args.test:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            try:
                notification_id = store.send_test_notification(conn, args.test, now=utc_now())
            except store.NotificationError as exc:
                print(f"flowbank notify: {exc}", flush=True)
                return 1
        print(f"test notification {notification_id} queued for {args.test}", flush=True)
        return 0
    retention = timedelta(days=args.retention_days) if args.retention_days > 0 else None
    notifier = Notifier(dsn, default_senders(settings), poll_s=args.poll_s, retention=retention)
    if args.once:
        with notifier.connect() as conn:
            events, deliveries = notifier.drain(conn)
        print(f"{events} alert events fanned out, {deliveries} deliveries attempted", flush=True)
        return 0
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the deliveries in flight", signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    log.info("notifier running on %s with %d delivery threads", settings.pg_dsn_display, args.workers)
    notifier.run(stop, workers=args.workers)
    return 0
