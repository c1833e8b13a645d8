"""The OCPP bridge's MQTT publisher: QoS1, bounded, never blocking, never losing an event.

Delivery is **at least once**. An event counts as delivered only when its PUBACK arrives, and
what is not acknowledged is sent again (after a reconnect, or by the next process from the
spool), so consumers see an occasional duplicate and dedupe on natural keys (charger, connector,
``ts`` and type; ``transaction_id``/``seq_no``; ``command_id``), as the warehouse's ``ON CONFLICT
DO NOTHING`` writes do. QoS2 would not buy exactly-once across a bridge restart anyway.

Where a message waits, oldest first (FIFO overall, hence per charger; only re-sends after a
reconnect may overtake newer messages): **in flight** with paho, awaiting PUBACK -- at most
``max_inflight`` and the broker's Receive Maximum, since paho fails past 65,535 unacked; **memory**
-- at most ``memory_limit``; the **spool** (:class:`ingest.spool.Spool`, at most
``spool_max_bytes``; beyond that new events are dropped, counted and logged as errors); and
**overflow** -- published while the spool is in use, on its way to the spool's end.

``publish()`` only appends to memory or overflow under a lock, so the asyncio loop never waits on
the broker or the disk. One *pump* thread moves overflow to disk, refills memory from it and hands
messages to paho while the window has room; paho's own thread (``loop_start``) does the network.

Re-sending after a lost connection is left to paho on purpose: paho 2.2 keeps each unacked QoS1
message and re-sends it (DUP, same packet id) after every reconnect, session or not
(``_messages_reconnect_reset_out``, ``_handle_connack``); re-queuing them ourselves too would send
each twice and confuse packet ids. We still hold every message until its PUBACK: ``stop()`` puts
the unacked ones back at the *head* of the spool, and ``start()`` drains the spool first.

``on_acked(topic, enqueued_ns)`` is called per successful PUBACK on paho's thread (rarely the
pump's) with the ``time.monotonic_ns()`` of the ``publish()`` call, so ``time.monotonic_ns() -
enqueued_ns`` in the hook is the publish-to-PUBACK latency. Keep the hook quick.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from control.contract import Event, encode
from control.settings import MqttEndpoint
from control.topics import topic_for
from ingest.spool import Spool

log = logging.getLogger(__name__)

_SEND_BATCH: Final = 256  # messages handed to paho per pump pass
_IDLE_WAKE_S: Final = 1.0  # the pump re-checks its state at least this often
_RETRY_PAUSE_S: Final = 1.0  # sending pauses this long after a retryable refusal
_LOG_EVERY_S: Final = 10.0  # at most one drop/refusal error line per this many seconds
_MAX_PAYLOAD_BYTES: Final = (256 << 20) - 1 - 65_535 - 16  # MQTT's remaining-length ceiling
_RETRYABLE: Final = frozenset({0x80, 0x83, 0x91, 0x97})  # PUBACK codes worth retrying (quota, ...)
_RECORD: Final = struct.Struct("<BBqH")  # spool record: version, flags, enqueued_ns, topic length


class PublisherStopped(RuntimeError):
    """publish() after stop(): a programming error, not broker trouble."""


@dataclass(frozen=True, slots=True)
class PublisherStats:
    queued_memory: int  # waiting in memory
    spooled: int  # on disk or on the way there
    inflight: int  # with paho, awaiting PUBACK
    published_acked: int  # PUBACKs since start()
    connected: bool
    spool_bytes: int
    dropped: int = 0  # refused: spool full or unwritable
    rejected: int = 0  # refused for good by the broker (PUBACK reason code) or unpublishable

    @property
    def pending(self) -> int:
        """Accepted, not yet acknowledged."""
        return self.queued_memory + self.spooled + self.inflight


class _Message(NamedTuple):
    topic: str
    payload: bytes
    retain: bool
    enqueued_ns: int


def _to_record(m: _Message) -> bytes:
    topic = m.topic.encode()
    return _RECORD.pack(1, int(m.retain), m.enqueued_ns, len(topic)) + topic + m.payload


def _from_record(record: bytes, now_ns: int) -> _Message:
    version, flags, enqueued_ns, topic_len = _RECORD.unpack_from(record)
    if version != 1 or len(record) < _RECORD.size + topic_len:
        raise ValueError(f"unknown spool record (version {version}, {len(record)} bytes)")
    end = _RECORD.size + topic_len
    # Monotonic time survives a process restart, not a reboot: never report a future enqueue.
    return _Message(record[_RECORD.size:end].decode(), record[end:], bool(flags & 1), min(enqueued_ns, now_ns))


class EventPublisher:
    """See the module docstring. Thread-safe; ``start()`` once, ``stop()`` once."""

    def __init__(self, mqtt: MqttEndpoint, *, client_id: str, spool_dir: Path, memory_limit: int = 50_000,
                 max_inflight: int = 1_000, spool_max_bytes: int = 1 << 30,
                 on_acked: Callable[[str, int], None] | None = None, keepalive_s: int = 30,
                 respect_receive_maximum: bool = True) -> None:
        if memory_limit < 1 or not 1 <= max_inflight <= 65_000:
            raise ValueError("memory_limit must be >= 1 and max_inflight between 1 and 65,000")
        self._endpoint, self._client_id, self._spool_dir = mqtt, client_id, spool_dir
        self._memory_limit, self._max_inflight, self._spool_max_bytes = memory_limit, max_inflight, spool_max_bytes
        self._on_acked, self._keepalive_s = on_acked, keepalive_s
        self._respect_receive_maximum = respect_receive_maximum
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # wakes the pump
        self._progress = threading.Condition(self._lock)  # wakes stop() while it flushes
        self._memory: deque[_Message] = deque()
        self._overflow: list[_Message] = []
        self._to_disk = 0  # overflow messages the pump is writing right now
        self._inflight: dict[int, _Message] = {}  # packet id -> message, in send order
        self._sending = 0  # handed to paho, packet id not recorded yet
        self._early_acks: dict[int, Any] = {}  # PUBACKs that beat that recording
        self._window = max_inflight
        self._connected = self._halt = self._down_logged = False
        self._retry_after = 0.0
        self._acked = self._dropped = self._rejected = self._spool_records = self._spool_bytes = 0
        self._state = "new"  # -> running -> flushing -> stopped
        self._last_error_log = -_LOG_EVERY_S
        self._spool: Spool | None = None
        self._client: paho.Client | None = None
        self._pump: threading.Thread | None = None

    # ------------------------------------------------------------------ public API

    def start(self) -> None:
        """Open the spool, connect in the background; returns at once even if the broker is down."""
        with self._lock:
            if self._state != "new":
                raise RuntimeError("an EventPublisher starts once")
        spool = Spool(self._spool_dir, max_bytes=self._spool_max_bytes)
        with self._lock:
            self._spool, self._state = spool, "running"
            self._spool_records, self._spool_bytes = spool.records, spool.size_bytes
            if spool.records:  # the last run's messages go first
                self._overflow[:0] = self._memory
                self._memory.clear()
        self._client = self._make_client()
        self._client.connect_async(self._endpoint.host, self._endpoint.port, keepalive=self._keepalive_s)
        self._client.loop_start()
        self._pump = threading.Thread(target=self._run_pump, args=(spool, self._client),
                                      name=f"mqtt-pump-{self._client_id}", daemon=True)
        self._pump.start()
        log.info("publisher %s: connecting to %s (spool %s holds %d messages)",
                 self._client_id, self._endpoint.url, self._spool_dir, spool.records)

    def publish(self, event: Event) -> None:
        """Queue an event (contract encoding, contract topic). Never blocks."""
        self._enqueue(topic_for(event), encode(event), False)

    def publish_raw(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Queue a ready-made message. ValueError for a topic or payload MQTT cannot carry."""
        if not topic or any(c in topic for c in "+#\0") or len(topic.encode()) > 65_535:
            raise ValueError(f"not a publishable MQTT topic: {topic[:80]!r}")
        if len(payload) > _MAX_PAYLOAD_BYTES:
            raise ValueError(f"a payload of {len(payload)} bytes is larger than MQTT allows")
        self._enqueue(topic, bytes(payload), retain)

    def stop(self, timeout: float = 10.0) -> None:
        """Flush for up to ``timeout`` s, disconnect, and spool whatever is still unacknowledged."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._state in ("flushing", "stopped"):
                return
            started, self._state = self._state == "running", "flushing"
            if started:
                self._progress.wait_for(self._drained, timeout=max(0.0, deadline - time.monotonic()))
            self._halt = True
            self._work.notify()
        if self._pump is not None:
            self._pump.join()
        self._shutdown_client(deadline)
        with self._lock:
            self._state, self._connected = "stopped", False
            unacked, late = [*self._inflight.values(), *self._memory], self._overflow
            self._inflight, self._memory, self._overflow = {}, deque(), []
        spool = self._spool
        if spool is None:  # never started: what the last run left is older than all of these
            spool = Spool(self._spool_dir, max_bytes=self._spool_max_bytes)
            unacked, late = [], unacked + late
        spool.prepend([_to_record(m) for m in unacked])
        kept = spool.append([_to_record(m) for m in late])
        spool.close()
        with self._lock:
            self._dropped += len(late) - kept
            self._spool_records, self._spool_bytes = spool.records, spool.size_bytes
        log.info("publisher %s stopped: %d acked, %d left in the spool for the next start, %d dropped",
                 self._client_id, self._acked, spool.records, self._dropped)

    def stats(self) -> PublisherStats:
        with self._lock:
            return PublisherStats(
                queued_memory=len(self._memory), spooled=self._spool_records + len(self._overflow) + self._to_disk,
                inflight=len(self._inflight) + self._sending, published_acked=self._acked,
                connected=self._connected, spool_bytes=self._spool_bytes, dropped=self._dropped,
                rejected=self._rejected)

    # ------------------------------------------------------------------ intake

    def _enqueue(self, topic: str, payload: bytes, retain: bool) -> None:
        message = _Message(topic, payload, retain, time.monotonic_ns())
        with self._lock:
            if self._state == "stopped":
                raise PublisherStopped("publish() after stop()")
            if self._spool_records or self._overflow or self._to_disk or len(self._memory) >= self._memory_limit:
                self._overflow.append(message)  # older messages are on disk: keep FIFO
            else:
                self._memory.append(message)
            self._work.notify()

    def _drained(self) -> bool:
        return not (self._memory or self._overflow or self._to_disk or self._spool_records
                    or self._inflight or self._sending)

    # ------------------------------------------------------------------ pump thread

    def _window_has_room(self) -> bool:
        # Wait for an eighth of the window to free up rather than waking the pump for every PUBACK:
        # one pass then hands paho a batch (it cut the pump's CPU per message roughly in half).
        return len(self._inflight) <= self._window - max(1, self._window // 8)

    def _has_work(self) -> bool:
        return (self._halt or bool(self._overflow)
                or (self._spool_records > 0 and len(self._memory) <= self._memory_limit // 2)
                or (self._connected and bool(self._memory) and self._window_has_room()
                    and time.monotonic() >= self._retry_after))

    def _run_pump(self, spool: Spool, client: paho.Client) -> None:
        while True:
            due = spool.sync_due_in()
            with self._lock:
                self._work.wait_for(self._has_work, _IDLE_WAKE_S if due is None else min(_IDLE_WAKE_S, max(due, 0)))
                if self._halt:
                    return
            try:
                self._spill(spool)
                self._refill(spool)
                self._send(client)
                spool.sync_if_due()
            except Exception:  # the pump must outlive any one failure, or everything stalls
                log.exception("publisher %s: pump pass failed; retrying", self._client_id)
                time.sleep(_RETRY_PAUSE_S)

    def _spill(self, spool: Spool) -> None:
        """Overflow goes to memory while nothing older is on disk and memory has room, else to disk."""
        with self._lock:
            if not self._spool_records:
                room = self._memory_limit - len(self._memory)
                self._memory.extend(self._overflow[:room])
                del self._overflow[:room]
            batch, self._overflow = self._overflow, []
            self._to_disk = len(batch)
        if not batch:
            return
        kept = 0
        try:
            kept = spool.append([_to_record(m) for m in batch])
        except OSError:
            log.exception("publisher %s: cannot write the spool in %s", self._client_id, self._spool_dir)
        with self._lock:
            self._to_disk = 0
            self._spool_records, self._spool_bytes = spool.records, spool.size_bytes
            self._dropped += len(batch) - kept
            self._progress.notify_all()
        if kept < len(batch):
            self._error_throttled("publisher %s: spool full (%d of %d bytes) or unwritable: dropped %d events, "
                                  "%d so far", self._client_id, spool.size_bytes, self._spool_max_bytes,
                                  len(batch) - kept, self._dropped)

    def _refill(self, spool: Spool) -> None:
        with self._lock:
            if not self._spool_records or len(self._memory) > self._memory_limit // 2:
                return
            want = self._memory_limit - len(self._memory)
        now_ns, messages, unreadable = time.monotonic_ns(), [], 0
        for record in spool.pop(want):
            try:
                messages.append(_from_record(record, now_ns))
            except (ValueError, UnicodeDecodeError, struct.error):
                unreadable += 1
        with self._lock:
            self._memory.extend(messages)
            self._rejected += unreadable
            self._spool_records, self._spool_bytes = spool.records, spool.size_bytes
            self._progress.notify_all()
        if unreadable:
            log.error("publisher %s: skipped %d unreadable spool records", self._client_id, unreadable)

    def _send(self, client: paho.Client) -> None:
        with self._lock:
            if not self._connected or time.monotonic() < self._retry_after:
                return
            n = min(self._window - len(self._inflight), len(self._memory), _SEND_BATCH)
            batch = [self._memory.popleft() for _ in range(max(n, 0))]
            self._sending = len(batch)
        sent: list[tuple[int, _Message]] = []
        unsent: list[_Message] = []
        for m in batch:
            try:
                info = client.publish(m.topic, m.payload, qos=1, retain=m.retain)
            except ValueError:  # publish_raw checks first, so only a spooled oddity gets here
                log.exception("publisher %s: cannot publish on %r; dropped", self._client_id, m.topic)
                with self._lock:
                    self._rejected += 1
                continue
            # NO_CONN leaves the message with paho too, which sends it after reconnecting.
            if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                sent.append((info.mid, m))
            else:
                unsent.append(m)
        settled: list[tuple[_Message, Any]] = []
        with self._lock:
            self._sending = 0
            for mid, m in sent:
                reason = self._early_acks.pop(mid, None)
                if reason is None:
                    self._inflight[mid] = m
                else:
                    self._settle(m, reason)
                    settled.append((m, reason))
            self._early_acks.clear()
            if unsent:  # paho's queue refused them (a packet id still in use): try again shortly
                self._memory.extendleft(reversed(unsent))
                self._retry_after = time.monotonic() + _RETRY_PAUSE_S
        self._after_acks(settled)

    # ------------------------------------------------------------------ acknowledgements

    def _settle(self, m: _Message, reason: Any) -> None:
        """Account for a PUBACK; the lock is held."""
        if not reason.is_failure:
            self._acked += 1
        elif reason.value in _RETRYABLE:
            self._memory.appendleft(m)
            self._retry_after = time.monotonic() + _RETRY_PAUSE_S
        else:
            self._rejected += 1
        if self._state == "flushing":
            self._progress.notify_all()

    def _after_acks(self, settled: list[tuple[_Message, Any]]) -> None:
        """Outside the lock: log refusals, call the hook (whose failure must not break paho's thread)."""
        for m, reason in settled:
            if reason.is_failure:
                self._error_throttled("publisher %s: the broker refused a message on %r: %s (%s)", self._client_id,
                                      m.topic, reason, "will retry" if reason.value in _RETRYABLE else "dropped")
            elif self._on_acked is not None:
                try:
                    self._on_acked(m.topic, m.enqueued_ns)
                except Exception:
                    log.exception("publisher %s: the on_acked hook failed", self._client_id)

    def _on_publish(self, client: paho.Client, userdata: object, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            if self._state == "stopped":
                return
            m = self._inflight.pop(mid, None)
            if m is None:
                if self._sending:
                    self._early_acks[mid] = reason
                return
            self._settle(m, reason)
            if self._memory and self._window_has_room():
                self._work.notify()
        self._after_acks([(m, reason)])

    # ------------------------------------------------------------------ connection

    def _make_client(self) -> paho.Client:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=paho.MQTTv5)
        if self._endpoint.username is not None:
            client.username_pw_set(self._endpoint.username, self._endpoint.password.reveal() or None)
        if self._endpoint.tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_inflight_messages_set(self._max_inflight)  # = our window, so paho never queues
        client.max_queued_messages_set(0)
        client.on_connect, client.on_publish = self._on_connect, self._on_publish
        client.on_connect_fail = lambda c, u: self._note_down("cannot reach")
        client.on_disconnect = lambda c, u, f, reason, p: self._note_down(f"lost ({reason})")
        client.on_socket_open = self._on_socket_open
        return client

    @staticmethod
    def _on_socket_open(client: paho.Client, userdata: object, sock: Any) -> None:
        # Nagle holds small PUBLISHes back for the peer's delayed ACK: p50 19 ms -> 0.45 ms here.
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            log.debug("TCP_NODELAY not available on %r", sock)

    def _on_connect(self, client: paho.Client, userdata: object, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("publisher %s: %s refused the connection: %s", self._client_id, self._endpoint.url, reason)
            return
        window = self._max_inflight
        receive_maximum = getattr(props, "ReceiveMaximum", None)
        if self._respect_receive_maximum and receive_maximum:
            window = min(window, int(receive_maximum))
        with self._lock:
            self._connected, self._window, self._down_logged = True, window, False
            resending = len(self._inflight)
            self._work.notify()
        log.info("publisher %s: connected to %s (window %d, %d to re-send)",
                 self._client_id, self._endpoint.url, window, resending)

    def _note_down(self, what: str) -> None:
        with self._lock:
            self._connected = False
            quiet = self._down_logged or self._state != "running"  # once per outage, not per retry
            self._down_logged = True
        (log.debug if quiet else log.warning)("publisher %s: %s %s; buffering and retrying",
                                              self._client_id, what, self._endpoint.url)

    def _shutdown_client(self, deadline: float) -> None:
        """End paho's thread about a second past ``deadline`` at the latest. loop_stop() alone never
        returns while messages are unacked and the socket is up, and a frozen broker may not even
        take the DISCONNECT; so disconnect (again, should a reconnect race it), then cut the socket."""
        client = self._client
        if client is None:
            return
        client.disconnect()
        stopper = threading.Thread(target=client.loop_stop, name=f"mqtt-stop-{self._client_id}", daemon=True)
        stopper.start()
        cut_at = max(deadline, time.monotonic()) + 1.0
        while stopper.is_alive() and time.monotonic() < cut_at + 2.0:
            stopper.join(0.1)
            client.disconnect()
            sock = client.socket()
            if isinstance(sock, socket.socket) and time.monotonic() >= cut_at:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        if stopper.is_alive():
            log.warning("publisher %s: paho's thread did not stop; the unacked messages are spooled anyway "
                        "(and may be sent twice)", self._client_id)

    def _error_throttled(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= _LOG_EVERY_S:
            self._last_error_log = now
            log.error(msg, *args)
