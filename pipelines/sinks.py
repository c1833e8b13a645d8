"""Bytewax sinks: TimescaleDB (every worker), the Parquet lake (one writer), retained live state.

Each is a thin adapter over a warehouse writer; the delivery guarantee is at least once and the
writers are idempotent (natural keys, revisions), so a replay after a crash is harmless.
A TimescaleDB outage blocks the worker and retries (back-pressure reaches the broker, which
keeps the messages); nothing is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import paho.mqtt.client as mqtt
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, FixedPartitionedSink, StatefulSinkPartition, StatelessSinkPartition
from paho.mqtt.enums import CallbackAPIVersion

from control import contract as c
from control import records as r
from control.settings import MqttEndpoint
from control.topics import command_topic, live_topic
from ingest.publisher import EventPublisher
from warehouse.analytics import LakeBuffer, ParquetLake
from warehouse.tsdb_writer import PermanentWriteError, RetryableWriteError, TimescaleWriter

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _TimescalePartition(StatelessSinkPartition[Any]):
    def __init__(self, dsn: str, max_backoff_s: float) -> None:
        self._writer = TimescaleWriter(dsn)
        self._max_backoff_s = max_backoff_s

    def write_batch(self, items: list[Any]) -> None:
        backoff = 0.5
        while True:
            try:
                self._writer.write(items)
                return
            except RetryableWriteError as exc:
                log.warning("TimescaleDB unavailable (%s); retrying in %.1f s", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
            except PermanentWriteError:
                if len(items) == 1:
                    raise
                # Find the culprit without losing the rest: write one by one.
                for item in items:
                    self.write_batch([item])
                return

    def close(self) -> None:
        self._writer.close()


class TimescaleSink(DynamicSink[Any]):
    def __init__(self, dsn: str, *, max_backoff_s: float = 10.0) -> None:
        self._dsn = dsn
        self._max_backoff_s = max_backoff_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _TimescalePartition:
        return _TimescalePartition(self._dsn, self._max_backoff_s)


LAKE_TABLES: dict[type[Any], str] = {
    c.MeterSample: "meter_samples",
    c.StatusChanged: "status_events",
    c.ConnectionEvent: "connection_events",
    c.DeadLetter: "dead_letters",
    c.Setpoint: "setpoints",
    c.Alert: "alerts",
    r.SessionRecord: "sessions",
    r.SessionDayEnergy: "session_day_energy",
}


class Tick:
    """Wakes the lake writer up when no data flows, so buffered rows still meet the 60 s bound."""

    __slots__ = ()


class _TickPartition(StatefulSourcePartition[Tick, None]):
    def __init__(self, interval: timedelta, nap: timedelta, clock: Clock) -> None:
        self._interval, self._nap, self._clock = interval, nap, clock
        self._due = clock() + interval

    def next_batch(self) -> list[Tick]:
        now = self._clock()
        if now < self._due:
            return []
        self._due = now + self._interval
        return [Tick()]

    def next_awake(self) -> datetime:
        return min(self._due, self._clock() + self._nap)

    def snapshot(self) -> None:
        return None


class TickSource(FixedPartitionedSource[Tick, None]):
    """A Tick every ``interval``: keeps the lake's freshness bound while no data flows.

    It wakes up every ``nap`` (keep it well below the epoch interval) and says nothing until a
    tick is due. Bytewax 0.21 runs a worker at 100 % CPU for as long as any input of the flow
    sleeps longer than the epoch interval: with ``SimplePollingSource(10 s)`` and 1 s epochs an
    idle pipeline kept a core busy (measured: 99 % of a core; 4 % with naps). Naps of a large
    part of the epoch still make it spin: 200 ms naps with 0.5 s epochs cost 98 % of a core, 50 ms
    naps 10 %."""

    def __init__(self, interval: timedelta, *, nap: timedelta = timedelta(milliseconds=50),
                 clock: Clock = _utc_now) -> None:
        self._interval, self._nap, self._clock = interval, nap, clock

    def list_parts(self) -> list[str]:
        return ["tick"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _TickPartition:
        return _TickPartition(self._interval, self._nap, self._clock)


class _LakePartition(StatefulSinkPartition[Any, None]):
    """The lake's one writer.

    Bytewax 0.21 builds this partition twice in a process that resumes from a recovery snapshot
    (seen in the SIGKILL test: 0.5 s apart, the first instance never closed). The first one
    still holds the lake's writer lock until the garbage collector happens to free it, so the
    second one failed with LakeLockedError whenever that came late. A process keeps one open
    partition per lake: a newer one closes the abandoned one first (flushing its buffer, which
    the journal also holds: the lake's writes are idempotent)."""

    _open: ClassVar[dict[Path, weakref.ref[_LakePartition]]] = {}
    _open_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, root: Path, views_db: Path, clock: Clock, maintenance_every: timedelta,
                 journal_dir: Path | None) -> None:
        key = root.resolve()
        with self._open_lock:
            earlier = self._open.pop(key, None)
            abandoned = earlier() if earlier is not None else None
            if abandoned is not None:
                log.info("lake %s: an earlier partition of this process is still open; closing it first", root)
                abandoned.close()
        self._closed = False
        self._lake = ParquetLake(root, views_db=views_db)
        # The journal keeps the buffered rows across a crash: their messages are acknowledged to
        # the broker (at the snapshot after next) long before the buffer is written (up to 30 s).
        self._buffer = LakeBuffer(self._lake, journal_dir=journal_dir, now=clock())
        self._clock = clock
        self._maintenance_every = maintenance_every
        self._next_maintenance = clock() + timedelta(minutes=1)
        with self._open_lock:
            self._open[key] = weakref.ref(self)

    def _maintain(self, now: datetime) -> None:
        """Merge each finished day's small files (one writer: this one) and delete replaced files
        whose grace period is over."""
        today = now.date()
        for table in LAKE_TABLES.values():
            for day in self._lake.days(table):
                if day < today:
                    self._lake.compact(table, day)
        self._lake.purge(now)
        self._next_maintenance = now + self._maintenance_every

    def write_batch(self, values: list[Any]) -> None:
        if self._closed:
            raise RuntimeError("a closed lake partition was given rows (a newer one of this process replaced it)")
        now = self._clock()
        grouped: dict[str, list[Any]] = {}
        for value in values:
            if isinstance(value, Tick):
                continue
            if value.__class__.__name__ == "SampleVerdict":
                grouped.setdefault("data_quality", []).append(value)
                continue
            table = LAKE_TABLES.get(type(value))
            if table is not None:
                grouped.setdefault(table, []).append(value)
        for table, items in grouped.items():
            self._buffer.add(table, items, now)
        self._buffer.maybe_flush(now)
        if now >= self._next_maintenance:
            self._maintain(now)

    def snapshot(self) -> None:
        if self._closed:
            raise RuntimeError("a closed lake partition was asked for a snapshot (a newer one replaced it)")
        self._buffer.sync()  # before the source acknowledges this epoch's messages
        return None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._buffer.flush()
        finally:
            self._buffer.close()
            self._lake.close()


class LakeSink(FixedPartitionedSink[Any, None]):
    """One partition: DuckDB-side files have exactly one writer, whatever the worker count."""

    def __init__(self, root: Path, views_db: Path, clock: Clock = _utc_now,
                 maintenance_every: timedelta = timedelta(hours=1), journal_dir: Path | None = None) -> None:
        self._root = root
        self._views_db = views_db
        self._clock = clock
        self._maintenance_every = maintenance_every
        self._journal_dir = journal_dir

    def list_parts(self) -> list[str]:
        return ["lake"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _LakePartition:
        return _LakePartition(self._root, self._views_db, self._clock, self._maintenance_every, self._journal_dir)


def _publishing_client(endpoint: MqttEndpoint, client_id: str) -> mqtt.Client:
    """A paho client of a sink partition, connecting in the background (paho queues meanwhile:
    ``max_queued_messages`` 0 is its default, without bound) and reconnecting by itself."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if endpoint.username:
        client.username_pw_set(endpoint.username, endpoint.password.reveal() or None)
    if endpoint.tls:
        client.tls_set()
    client.reconnect_delay_set(1, 30)
    client.connect_async(endpoint.host, endpoint.port, keepalive=30)
    client.loop_start()
    return client


class _LivePartition(StatelessSinkPartition[r.LiveState]):
    """QoS1 and retained: a dashboard that subscribes later gets the latest state at once.

    Published by the bridge's publisher (:class:`ingest.publisher.EventPublisher`: one thread of
    its own writes a pass's PUBLISHes in one ``send`` and reads the PUBACKs in bulk; paho woke its
    network thread per message and per PUBACK). It never blocks the worker; while the broker is
    away states wait in memory, then in a bounded spool, and go out oldest first, so the newest
    state of each connector is the one left retained."""

    def __init__(self, endpoint: MqttEndpoint, client_id: str, spool_dir: Path) -> None:
        self._publisher = EventPublisher(endpoint, client_id=client_id, spool_dir=spool_dir,
                                         spool_max_bytes=LIVE_SPOOL_MAX_BYTES)
        self._publisher.start()

    def write_batch(self, items: Sequence[r.LiveState]) -> None:
        # Only the newest state of a connector in a batch matters (the topic is retained; the
        # states of one connector come in order, from the one worker that owns its charger).
        newest = {(live.charger_id, live.connector_id): live for live in items}
        for (charger_id, connector_id), live in newest.items():
            self._publisher.publish_raw(live_topic(charger_id, connector_id), r.encode_live_state(live), retain=True)

    def close(self) -> None:
        self._publisher.stop(timeout=5.0)


LIVE_SPOOL_MAX_BYTES = 64 << 20  # live states waiting for the broker beyond memory (50,000 states)


class LiveStateSink(DynamicSink[r.LiveState]):
    def __init__(self, endpoint: MqttEndpoint, client_prefix: str, spool_root: Path) -> None:
        self._endpoint = endpoint
        self._prefix = client_prefix
        self._spool_root = spool_root

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _LivePartition:
        return _LivePartition(self._endpoint, f"{self._prefix}-live-{worker_index}",
                              self._spool_root / str(worker_index))


class _CommandPartition(StatelessSinkPartition[c.Command]):
    """Publishes the dataflow's commands (setpoints) for the bridge, QoS1.

    At least once: a command replayed after a crash has the same derived id, and the bridge's
    command queue stores a command id once."""

    def __init__(self, endpoint: MqttEndpoint, client_id: str) -> None:
        self._client = _publishing_client(endpoint, client_id)  # queues while disconnected: none dropped

    def write_batch(self, items: Sequence[c.Command]) -> None:
        for command in items:
            self._client.publish(command_topic(command.charger_id), c.encode(command), qos=1)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class CommandSink(DynamicSink[c.Command]):
    def __init__(self, endpoint: MqttEndpoint, client_prefix: str) -> None:
        self._endpoint = endpoint
        self._prefix = client_prefix

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CommandPartition:
        return _CommandPartition(self._endpoint, f"{self._prefix}-commands-{worker_index}")
