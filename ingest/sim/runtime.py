"""Drives one simulated station: ticks, the websocket connection, the outbox pump, heartbeats.

The station keeps operating while disconnected (sessions go on, transaction messages queue up);
the connection loop reconnects with back-off, boots when needed (first start, after a reset or
a firmware update) and then replays the queue in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from ingest.sim.clock import Clock
from ingest.sim.dialect import Dialect
from ingest.sim.events import GoOfflineEvent, MalformedEvent, RebootEvent, StopReason
from ingest.sim.faults import FaultCode, ReplyFault, duplicate_mode, malformed_frame, reply_fault
from ingest.sim.link import CallErrorReply, Link, LinkClosed, open_connection
from ingest.sim.outbox import Outbox, Outgoing, Result
from ingest.sim.station import Station

log = logging.getLogger(__name__)

REBOOT_DOWNTIME_S = 15.0  # simulated


@dataclass(frozen=True, slots=True)
class LinkSettings:
    url: str  # base URL; the charger id is appended
    password: str | None = field(default=None, repr=False)  # shared by every charger
    password_prefix: str | None = field(default=None, repr=False)  # else: password = prefix + charger id
    validate: bool = True
    response_timeout_s: float = 30.0  # real
    tick_s: float = 0.25  # real seconds between ticks (at most)
    max_backoff_s: float = 30.0  # real

    def password_for(self, charger_id: str) -> str | None:
        if self.password_prefix is not None:
            return self.password_prefix + charger_id
        return self.password


@dataclass
class Stats:
    connects: int = 0
    connect_failures: int = 0
    boots: int = 0
    calls_acked: int = 0
    call_errors: int = 0
    timeouts: int = 0
    samples_acked: int = 0
    samples_skipped: int = 0
    first_sample_at: float | None = None  # loop time
    last_sample_at: float | None = None


class StationRuntime:
    def __init__(self, station: Station, dialect: Dialect, clock: Clock, settings: LinkSettings, *,
                 msg_rng: random.Random, flood_rate: float | None = None) -> None:
        self.station = station
        self.dialect = dialect
        self.clock = clock
        self.settings = settings
        self.outbox = Outbox()
        self.stats = Stats()
        self._rng = msg_rng
        self._flood_rate = flood_rate  # benchmark: samples per real second from this charger
        self._sample_acked = asyncio.Event()
        self._link: Link | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._disconnect = asyncio.Event()
        self._offline_until: datetime | None = None
        self._boot_reason: str | None = "PowerUp"  # None once the current boot was accepted
        self._abort = False
        self.ever_booted = False

    # ------------------------------------------------------------------ Host protocol (for the ChargePoints)

    @property
    def link(self) -> Link | None:
        return self._link

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: background task failed", self.station.id, exc_info=task.exception())

    def reply_fault(self, action: str) -> ReplyFault | None:
        fault = reply_fault(self._rng, self.station.faults)
        if fault is not None:
            code = FaultCode.NO_REPLY if fault[0] == "drop" else FaultCode.SLOW_REPLY
            self.station.record_fault(code, self.clock.now(), sessions=[], detail=action)
        return fault

    def dispatch(self) -> None:
        """Turn queued station events into outgoing calls (or connection actions)."""
        for event in self.station.drain():
            if isinstance(event, GoOfflineEvent):
                self._go_offline(event.ts + timedelta(seconds=event.seconds), abort=True)
            elif isinstance(event, RebootEvent):
                self.spawn(self._reboot(event))
            elif isinstance(event, MalformedEvent):
                self.spawn(self._send_malformed(event.kind))
            else:
                for item in self.dialect.translate(event):
                    self.outbox.push(item)

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        ticker = asyncio.create_task(self._tick_loop())
        try:
            await self._connection_loop(stop)
        finally:
            pending = [ticker, *self._tasks]
            for task in pending:
                task.cancel()
            await _finish(pending)

    async def shutdown(self, drain_timeout_s: float) -> None:
        """Stop running sessions and give the CSMS a moment to take the queue (before ``run`` is halted)."""
        self.station.closing = True
        self.station.stop_all(self.clock.now(), StopReason.SHUTDOWN)
        self.dispatch()
        await self._drain(drain_timeout_s)

    async def _reboot(self, event: RebootEvent) -> None:
        """Let the queued stops go out first (a few real seconds at most), then restart."""
        await self._drain(5.0)
        self._boot_reason = event.reason
        self._go_offline(self.clock.now() + timedelta(seconds=REBOOT_DOWNTIME_S), abort=False)

    async def _drain(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.outbox.online and any(i.durable for i in self.outbox.items()) and loop.time() < deadline:
            await asyncio.sleep(0.02)

    def _go_offline(self, until: datetime, *, abort: bool) -> None:
        self._offline_until = until
        self._abort = abort
        self._disconnect.set()

    async def _tick_loop(self) -> None:
        while True:
            self.station.tick(self.clock.now())
            self.dispatch()
            await asyncio.sleep(self._tick_period())

    def _tick_period(self) -> float:
        sample_real = self.station.sample_interval_s / self.clock.speed
        return max(0.005, min(self.settings.tick_s, sample_real / 2))  # faster sampling catches up per tick

    async def _connection_loop(self, stop: asyncio.Event) -> None:
        backoff = 1.0
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                if self._offline_until is not None and self.clock.now() < self._offline_until:
                    wait_real = (self._offline_until - self.clock.now()).total_seconds() / self.clock.speed
                    await asyncio.wait([stopper], timeout=max(0.0, wait_real))
                    continue
                self._offline_until = None
                try:
                    ws = await open_connection(self.settings.url, self.station.id,
                                               subprotocol=self.dialect.subprotocol,
                                               password=self.settings.password_for(self.station.id))
                except (OSError, InvalidHandshake, TimeoutError, ConnectionError) as exc:
                    self.stats.connect_failures += 1
                    log.warning("%s: cannot connect (%s); retrying in %.0f s", self.station.id, exc, backoff)
                    await asyncio.wait([stopper], timeout=backoff)
                    backoff = min(backoff * 2, self.settings.max_backoff_s)
                    continue
                self.stats.connects += 1
                began = asyncio.get_running_loop().time()
                await self._connected(ws, stopper)
                lasted = asyncio.get_running_loop().time() - began
                if lasted < 5.0 and not self._disconnect.is_set() and not stop.is_set():
                    # the CSMS hung up at once: do not hammer it with reconnects
                    await asyncio.wait([stopper], timeout=backoff)
                    backoff = min(backoff * 2, self.settings.max_backoff_s)
                else:
                    backoff = 1.0
        finally:
            stopper.cancel()

    async def _connected(self, ws: ClientConnection, stopper: asyncio.Task[Any]) -> None:
        self._disconnect.clear()
        self._abort = False
        link = Link(ws, ocpp_version=self.station.version.value, new_id=self._new_id,
                    validate=self.settings.validate, response_timeout_s=self.settings.response_timeout_s)
        self._link = link
        self.dialect.on_connected()
        reader = asyncio.create_task(self.dialect.make_charge_point(ws, self).start())

        def close_link(_: object) -> None:  # a lost connection or a stop fails the CALL waiting for its answer
            link.close()

        reader.add_done_callback(close_link)
        stopper.add_done_callback(close_link)
        helpers: list[asyncio.Task[Any]] = []
        try:
            if not await self._boot(link, reader, stopper):
                return
            self.station.online = True
            self.outbox.set_online(True)
            self.station.all_statuses(self.clock.now())
            self.dispatch()
            helpers = [asyncio.create_task(self._pump(link)), asyncio.create_task(self._heartbeats())]
            if self._flood_rate:
                helpers.append(asyncio.create_task(self._flood(self._flood_rate)))
            disconnect = asyncio.create_task(self._disconnect.wait())
            helpers.append(disconnect)
            await asyncio.wait([reader, disconnect, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.remove_done_callback(close_link)
            self.station.online = False
            self.outbox.set_online(False)
            self._link = None
            link.close()
            for task in [*helpers, reader]:
                task.cancel()
            await _finish([*helpers, reader])
            if self._abort:  # a network failure: no closing handshake
                ws.transport.abort()
            else:
                with contextlib.suppress(Exception):
                    await ws.close()

    async def _boot(self, link: Link, reader: asyncio.Task[None], stopper: asyncio.Task[Any]) -> bool:
        """Send BootNotification until Accepted (the CSMS may answer Pending first)."""
        while self._boot_reason is not None:
            item = self.dialect.boot(self._boot_reason)
            try:
                result: Result = await link.call(item.action, item.payload)
            except (CallErrorReply, TimeoutError) as exc:
                log.warning("%s: boot failed: %s", self.station.id, exc)
                result = None
            except (ConnectionClosed, LinkClosed):
                return False
            accepted, interval = self.dialect.boot_accepted(result)
            if accepted:
                self.stats.boots += 1
                self.ever_booted = True
                self._boot_reason = None
                if interval > 0:
                    self.station.variables.set("HeartbeatInterval", str(interval))
                return True
            retry_real = (interval or 10) / self.clock.speed
            waiter = asyncio.create_task(self._disconnect.wait())
            try:
                done, _ = await asyncio.wait([reader, waiter, stopper], timeout=max(0.05, retry_real))
            finally:
                waiter.cancel()
            if done:
                return False
        return True

    async def _heartbeats(self) -> None:
        while True:
            interval = self.station.variables.number("HeartbeatInterval", 300.0)
            await self.clock.sleep(interval if interval > 0 else 300.0)
            if interval > 0:
                self.outbox.push(self.dialect.heartbeat())

    async def _pump(self, link: Link) -> None:
        """Send the outbox head, wait for the answer, repeat (one CALL in flight)."""
        attempts = int(self.station.variables.number("TransactionMessageAttempts", 3))
        while True:
            item = await self.outbox.next()
            payload = self.dialect.prepare(item)
            if payload is None:
                self.outbox.pop(item, None)
                self.dispatch()
                continue
            dup = duplicate_mode(self._rng, self.station.faults.duplicate_probability)
            if dup is not None:
                self.station.record_fault(FaultCode.DUPLICATE, self.clock.now(),
                                          sessions=[item.session] if item.session else [],
                                          detail=f"{item.action} {dup}")
            try:
                result: Result = await link.call(item.action, payload, duplicate=dup)
            except (ConnectionClosed, LinkClosed):
                return  # the item stays queued for the next connection
            except CallErrorReply as exc:
                log.warning("%s: %s", self.station.id, exc)
                self.stats.call_errors += 1
                result = None
            except TimeoutError:
                self.stats.timeouts += 1
                item.attempts += 1
                if item.durable and item.attempts < attempts:
                    continue
                result = None
            except Exception:  # our own payload broke the schema: a simulator bug, keep going
                log.exception("%s: cannot send %s", self.station.id, item.action)
                result = None
            self._account(item, result)
            self.outbox.pop(item, result)
            self.dispatch()

    def _account(self, item: Outgoing, result: Result) -> None:
        if result is None:
            return
        self.stats.calls_acked += 1
        if item.sample:
            self._sample_acked.set()
            now = asyncio.get_running_loop().time()
            self.stats.samples_acked += 1
            self.stats.last_sample_at = now
            if self.stats.first_sample_at is None:
                self.stats.first_sample_at = now

    async def _flood(self, rate: float) -> None:
        """Benchmark: periodic samples at ``rate`` per real second, round robin over the sessions.

        At most two samples wait in the outbox; when the CSMS answers more slowly than the rate,
        the missed slots are counted as skipped instead of piling up.
        """
        loop = asyncio.get_running_loop()
        interval = 1.0 / rate
        due = loop.time()
        turn = 0
        while True:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:  # more than a second behind: drop the backlog of slots
                missed = int(-delay / interval)
                self.stats.samples_skipped += missed
                due += missed * interval
            due += interval
            while self.outbox.pending_samples >= 2:
                self._sample_acked.clear()
                await self._sample_acked.wait()
            active = [c for c in self.station.connectors.values() if c.session is not None]
            if active:
                turn = (turn + 1) % len(active)
                self.station.sample_now(active[turn], self.clock.now())
                self.dispatch()

    async def _send_malformed(self, kind: str) -> None:
        link = self._link
        if link is None:
            return
        message_id = self._new_id()
        text, expects_reply = malformed_frame(kind, self.station.version.value, message_id)
        with contextlib.suppress(ConnectionClosed, LinkClosed):
            reply = await link.send_raw(text, reply_id=message_id if expects_reply else None)
            log.info("%s: malformed %s -> %s", self.station.id, kind, reply)

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


async def _finish(tasks: list[asyncio.Task[Any]], timeout_s: float = 5.0) -> None:
    """Wait for cancelled tasks to end, without hanging on one that ignores its cancellation."""
    if not tasks:
        return
    _, stuck = await asyncio.wait(tasks, timeout=timeout_s)
    for task in stuck:
        log.error("task %s did not stop within %.0f s", task.get_name(), timeout_s)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" noise
