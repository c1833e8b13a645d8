"""A Bytewax input that reads MQTT at QoS1 with persistent sessions, at least once.

Bytewax has no MQTT connector, so this is ours. Each partition is one MQTT 5 session with a fixed
client id and a persistent session (``clean_start=False`` from the very first connect, a long
session expiry), so what is published while the pipeline is down is queued by the broker and
delivered when it comes back. With more than one partition the partitions join an MQTT shared
subscription (``$share/<group>/<filter>``) and the broker spreads messages between them.

Acknowledgements are manual and lag one snapshot behind: a message is acked (PUBACK) only at
the second ``snapshot()`` after it was handed to the dataflow, by which time the epoch it
belonged to has been processed and its state snapshot committed. A crash before that makes the
broker deliver it again, so processing is at least once and every consumer downstream is
idempotent (energy from cumulative registers, upserts by natural keys and revisions).

``next_batch`` never blocks: the session's thread puts messages on a queue, the partition
drains it and hands messages over in batches of up to ``max_batch``, and holds them back until
the oldest has waited ``batch_window`` (or a batch is full). Bytewax is slow with unbatched
sources, and every batch costs a TimescaleDB transaction downstream: measured in process with the
real sinks, 10-message batches cost ~2 ms of CPU per message, 100-message batches ~0.9 ms. At
1,000 messages/s a 100 ms window makes ~100-message batches for at most 100 ms of latency.

The session is :class:`ingest.mqtt_link.MqttLink` driven by one thread of ours, not paho: at
1,000 messages/s paho's network threads took about half of the pipeline's CPU samples (py-spy),
reading each PUBLISH with several ``recv`` calls and waking for each PUBACK sent. Here one
``recv`` brings every PUBLISH that arrived, parsed in one pass, and a snapshot's PUBACKs go out
in one ``send``.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from control.settings import MqttEndpoint
from ingest.mqtt_link import LinkError, MqttLink, Refused

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
RECEIVE_MAXIMUM = 65_535  # MQTT v5: how many unacked QoS1 messages the broker may send us
RECONNECT_MIN_S, RECONNECT_MAX_S = 1.0, 30.0


@dataclass(frozen=True, slots=True)
class MqttMessage:
    topic: str
    payload: bytes
    received_at: datetime


class Batcher:
    """Groups queued messages into batches for ``next_batch`` (no IO; time is passed in).

    Drains the queue into a pending list and hands it over once it holds ``max_batch`` messages
    or its oldest message (by ``received_at``) has waited ``window``, or a message whose topic
starts with one of ``urgent_prefixes`` is among them. Until then it asks to be
    called again at the deadline, or after ``idle_wait`` to keep draining the queue. Messages not
    handed over are not acknowledged, so holding them back is safe across a crash.
    """

    def __init__(self, *, max_batch: int, window: timedelta, idle_wait: timedelta,
                 urgent_prefixes: tuple[str, ...] = ()) -> None:
        self._pending: list[tuple[MqttMessage, int]] = []
        self._max_batch, self._window, self._idle_wait = max_batch, window, idle_wait
        self._urgent = urgent_prefixes
        self._has_urgent = False

    def take(self, source: queue.SimpleQueue[tuple[MqttMessage, int]],
             now: datetime) -> tuple[list[tuple[MqttMessage, int]], datetime | None]:
        """(the batch to hand over, possibly empty; when to be called next, None = at once)."""
        pending = self._pending
        urgent = self._urgent
        try:
            while len(pending) < self._max_batch:
                item = source.get_nowait()
                pending.append(item)
                if urgent and item[0].topic.startswith(urgent):
                    self._has_urgent = True
        except queue.Empty:
            pass
        if not pending:
            return [], now + self._idle_wait
        due = pending[0][0].received_at + self._window
        if len(pending) < self._max_batch and now < due and not self._has_urgent:
            return [], min(due, now + self._idle_wait)
        self._pending = []
        self._has_urgent = False
        return pending, None


class _Subscriber:
    """One MQTT session, owned by one thread: connects (and reconnects, 1 s doubling to 30 s, the
    session resumed), reads every PUBLISH that arrived in one pass onto ``queue`` as
    ``(message, ack token)``, and sends the PUBACKs :meth:`ack` is given in one ``send``.

    An ack token is ``connection << 16 | packet id``. Acks held for an earlier connection are sent
    when the broker resumed the session (it re-sends unacknowledged messages with their packet ids,
    so the id still names the same message) and dropped when it did not (the id may name a new
    message that was not handed over yet)."""

    def __init__(self, endpoint: MqttEndpoint, client_id: str, filters: Sequence[str], *, session_expiry_s: int,
                 keepalive_s: int = 30) -> None:
        self.queue: queue.SimpleQueue[tuple[MqttMessage, int]] = queue.SimpleQueue()
        self.connected = threading.Event()
        self._endpoint, self._client_id, self._filters = endpoint, client_id, list(filters)
        self._session_expiry_s, self._keepalive_s = session_expiry_s, keepalive_s
        self._lock = threading.Lock()
        self._acks: list[int] = []
        self._halt = False
        self._connection = 0
        self._valid_from = 1  # acks of connections before this one are dropped (see the class docstring)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._run, name=f"mqtt-source-{client_id}", daemon=True)
        self._thread.start()

    def ack(self, tokens: list[int]) -> None:
        """Acknowledge these messages (any thread); sent by the session's thread."""
        if tokens:
            with self._lock:
                self._acks.extend(tokens)
            self._wake()

    def close(self, timeout: float = 5.0) -> None:
        """Send the acks given so far, DISCONNECT (the session stays with the broker), stop."""
        with self._lock:
            self._halt = True
        self._wake()
        self._thread.join(timeout)
        if not self._thread.is_alive():  # a thread still connecting keeps its pipe (daemon: ends with us)
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\x00")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (the thread wakes anyway) or closed (stopping)

    def _run(self) -> None:
        link: MqttLink | None = None
        delay = RECONNECT_MIN_S
        try:
            while True:
                with self._lock:
                    halt = self._halt
                if link is None:
                    if halt:
                        return
                    link = self._connect()
                    if link is None:
                        self._sleep(delay)
                        delay = min(2 * delay, RECONNECT_MAX_S)
                        continue
                    delay = RECONNECT_MIN_S
                try:
                    self._send_acks(link)
                    if halt:
                        return
                    self._wait(link)
                except LinkError as exc:
                    link.close(polite=False)
                    link = None
                    self.connected.clear()
                    log.warning("MQTT source %s: connection lost (%s); reconnecting", self._client_id, exc)
                except Exception:  # the thread must outlive any one failure, or the pipeline starves
                    log.exception("MQTT source %s: read pass failed; reconnecting", self._client_id)
                    if link is not None:
                        link.close(polite=False)
                    link = None
                    self.connected.clear()
                    self._sleep(delay)
        finally:
            if link is not None:
                link.close()
            self.connected.clear()

    def _sleep(self, seconds: float) -> None:
        """Wait, but wake up for close()."""
        select.select([self._wake_r], [], [], seconds)
        self._drain_wake()

    def _drain_wake(self) -> None:
        try:
            os.read(self._wake_r, 4096)
        except (BlockingIOError, OSError):
            pass

    def _connect(self) -> MqttLink | None:
        try:
            link = MqttLink.connect(self._endpoint, self._client_id, keepalive_s=self._keepalive_s,
                                    clean_start=False, session_expiry_s=self._session_expiry_s,
                                    receive_maximum=RECEIVE_MAXIMUM)
        except Refused as exc:
            log.error("MQTT source %s: %s refused the connection: %s", self._client_id, self._endpoint.url, exc)
            return None
        except OSError as exc:
            log.warning("MQTT source %s: cannot reach %s (%s)", self._client_id, self._endpoint.url, exc)
            return None
        self._connection += 1
        if not link.session_present:  # acks of earlier connections mean something only in a resumed session
            self._valid_from = self._connection
        try:
            # Subscribing again on every connect is harmless with a resumed session and necessary
            # with a new one (SUBACK failures are logged when they arrive).
            link.subscribe(self._filters, packet_id=1)
        except LinkError:
            link.close(polite=False)
            return None
        self.connected.set()
        log.info("MQTT source connected (session present: %s; client id %s)", link.session_present, self._client_id)
        return link

    def _send_acks(self, link: MqttLink) -> None:
        with self._lock:
            tokens, self._acks = self._acks, []
        valid_from = self._valid_from << 16
        ids = [t & 0xFFFF for t in tokens if t >= valid_from]
        if ids:
            link.ack(ids)

    def _wait(self, link: MqttLink) -> None:
        timeout = 0.0 if link.pending() else link.keepalive(time.monotonic())
        sock = link.sock.fileno()
        readable, writable, _ = select.select([self._wake_r, sock], [sock] if link.want_write() else [], [],
                                              timeout)
        if self._wake_r in readable:
            self._drain_wake()
        if writable:
            link.flush()
        if sock in readable or link.pending():
            link.read_acks()
            if link.messages:
                now, token = datetime.now(UTC), self._connection << 16
                put = self.queue.put
                for topic, payload, packet_id in link.messages:
                    # QoS 0 needs no ack: token 0 is never sent (connection numbers start at 1).
                    put((MqttMessage(topic, payload, now), token | packet_id if packet_id is not None else 0))
                link.messages.clear()
            if link.subacks:
                for codes in link.subacks.values():
                    refused = [f for f, code in zip(self._filters, codes, strict=False) if code >= 0x80]
                    if refused:
                        log.error("MQTT source %s: the broker refused the subscription to %s",
                                  self._client_id, ", ".join(refused))
                link.subacks.clear()


class _MqttPartition(StatefulSourcePartition[MqttMessage, None]):
    def __init__(self, endpoint: MqttEndpoint, client_id: str, filters: Sequence[str], *, max_batch: int,
                 idle_wait: timedelta, session_expiry_s: int, batch_window: timedelta,
                 urgent_prefixes: tuple[str, ...]) -> None:
        self._batcher = Batcher(max_batch=max_batch, window=batch_window, idle_wait=idle_wait,
                                urgent_prefixes=urgent_prefixes)
        self._handed: list[int] = []  # ack tokens of messages handed to the dataflow since the last snapshot
        self._to_ack: list[int] = []  # handed before the last snapshot: acked at the next one
        self._next_awake: datetime | None = None
        self._session = _Subscriber(endpoint, client_id, filters, session_expiry_s=session_expiry_s)

    # Bytewax's worker thread -------------------------------------------------------------

    def next_batch(self) -> list[MqttMessage]:
        batch, self._next_awake = self._batcher.take(self._session.queue, datetime.now(UTC))
        self._handed.extend(token for _, token in batch if token)
        return [message for message, _ in batch]

    def next_awake(self) -> datetime | None:
        return self._next_awake

    def snapshot(self) -> None:
        self._session.ack(self._to_ack)
        self._to_ack = self._handed
        self._handed = []
        return None

    def close(self) -> None:
        # Unacked messages stay with the broker's session and come again on the next start.
        self._session.close()


class MqttSource(FixedPartitionedSource[MqttMessage, None]):
    """``partitions`` MQTT clients named ``{client_prefix}-{n}``; shared subscription when > 1."""

    def __init__(self, endpoint: MqttEndpoint, filters: Sequence[str], *, client_prefix: str,
                 partitions: int = 1, share_group: str = "flowbank-pipeline", max_batch: int = 2_000,
                 idle_wait: timedelta = timedelta(milliseconds=10), session_expiry_s: int = SESSION_EXPIRY_S,
                 batch_window: timedelta = timedelta(milliseconds=100), urgent_prefixes: tuple[str, ...] = ()) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self._endpoint = endpoint
        self._filters = list(filters) if partitions == 1 else [f"$share/{share_group}/{f}" for f in filters]
        self._prefix = client_prefix
        self._partitions = partitions
        self._max_batch = max_batch
        self._idle_wait = idle_wait
        self._session_expiry_s = session_expiry_s
        self._batch_window = batch_window
        self._urgent_prefixes = urgent_prefixes

    def list_parts(self) -> list[str]:
        return [str(n) for n in range(self._partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _MqttPartition:
        return _MqttPartition(self._endpoint, f"{self._prefix}-{for_part}", self._filters,
                              max_batch=self._max_batch, idle_wait=self._idle_wait,
                              session_expiry_s=self._session_expiry_s, batch_window=self._batch_window,
                              urgent_prefixes=self._urgent_prefixes)
