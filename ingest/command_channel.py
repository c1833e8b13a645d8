"""The command channel: MQTT -> PG ``command_queue`` -> the session that holds the charger.

Every bridge process subscribes to ``flowbank/v1/cmd/+`` with its own paho client (QoS1,
persistent session named after ``bridge_id``: ``clean_start=False`` and a session expiry, so
commands published while it was down are delivered when it returns). Each command is stored
(first insert wins) and only then acknowledged (``manual_ack``), so a crash between the two
means redelivery, not loss. Commands for chargers missing from the registry are not stored and
get no result: the registry defines the deployment, and on a shared broker (test sessions, a
developer's bridge) they belong to someone else. Then the local session of that charger, if any, is woken; it claims
from the queue. A sweep, safe to run on every bridge, closes expired commands as OFFLINE (no
bridge holds the charger) or EXPIRED (one does, but the deadline passed first), closes commands
whose claiming bridge died as TIMED_OUT, and wakes local sessions that have claimable commands.

paho runs its own thread; ``on_message`` only hands the message to the asyncio loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from control.contract import Command, CommandResult, ContractError, DeadLetter, Event, decode
from control.settings import MqttEndpoint
from control.topics import COMMANDS_ALL, charger_from_topic
from ingest.cancellation import cancel_requested, stop_tasks
from warehouse.command_queue import CommandQueue, Enqueued

log = logging.getLogger(__name__)

SESSION_EXPIRY_S: Final = 24 * 3600  # outlives restarts and outages; bounds what a retired id leaves
_Inbound = tuple[int, int, str, bytes]
_RECEIVE_BATCH: Final = 256  # messages stored concurrently at most (bounded by the pool's connections too)


class Wakeable(Protocol):
    def wake(self) -> None: ...


class Publisher(Protocol):
    def publish(self, event: Event) -> None: ...


class CommandChannel:
    def __init__(self, mqtt: MqttEndpoint, *, bridge_id: str, queue: CommandQueue, publisher: Publisher,
                 sessions: Mapping[str, Wakeable], clock: Callable[[], datetime], sweep_interval_s: float,
                 abandoned_after_s: float, session_expiry_s: int = SESSION_EXPIRY_S) -> None:
        self._endpoint = mqtt
        self._bridge_id = bridge_id
        self._queue = queue
        self._publisher = publisher
        self._sessions = sessions
        self._clock = clock
        self._sweep_interval_s = sweep_interval_s
        self._abandoned_after = timedelta(seconds=abandoned_after_s)
        self._session_expiry_s = session_expiry_s
        self._inbox: asyncio.Queue[_Inbound] = asyncio.Queue()
        self._subscribed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._client: paho.Client | None = None
        self._unknown: set[str] = set()  # charger ids already logged as unknown

    @property
    def client_id(self) -> str:
        return f"flowbank-bridge-{self._bridge_id}-cmd"

    async def start(self, *, subscribe_timeout_s: float = 10.0) -> None:
        """Connect and subscribe; wait (bounded) for the SUBACK. A broker that is down is logged,
        not fatal: chargers are still served, and paho keeps reconnecting."""
        loop = asyncio.get_running_loop()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv5,
                             manual_ack=True)
        if self._endpoint.username:
            client.username_pw_set(self._endpoint.username, self._endpoint.password.reveal() or None)
        if self._endpoint.tls:
            client.tls_set()

        def on_connect(c: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if reason.is_failure:
                log.error("command channel: broker refused the connection: %s", reason)
                return
            c.subscribe(COMMANDS_ALL, qos=1)  # again on every connect: harmless with a kept session

        def hand_over(callback: Callable[..., object], *args: object) -> None:
            try:
                loop.call_soon_threadsafe(callback, *args)
            except RuntimeError:  # the loop has closed under us: unacknowledged, so the broker keeps it
                log.warning("command channel: the event loop is closed; leaving the message to the broker")

        def on_subscribe(c: paho.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
            if all(not r.is_failure for r in reasons):
                hand_over(self._subscribed.set)
            else:
                log.error("command channel: subscription to %s refused: %s", COMMANDS_ALL, reasons)

        def on_message(c: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
            hand_over(self._inbox.put_nowait, (msg.mid, msg.qos, msg.topic, bytes(msg.payload)))

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.reconnect_delay_set(1, 30)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._session_expiry_s
        client.connect_async(self._endpoint.host, self._endpoint.port, keepalive=30, clean_start=False,
                             properties=props)
        client.loop_start()
        self._client = client
        self._tasks = [asyncio.create_task(self._receive(), name="command-inbox"),
                       asyncio.create_task(self._sweep_forever(), name="command-sweep")]
        try:
            await asyncio.wait_for(self._subscribed.wait(), subscribe_timeout_s)
        except TimeoutError:
            log.error("command channel: not subscribed after %.0f s (broker %s); commands wait until it is",
                      subscribe_timeout_s, self._endpoint.url)

    async def stop(self) -> None:
        await stop_tasks(self._tasks)  # a cancellation the pool loses is sent again
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)

    # ----------------------------------------------------------------------- receiving

    async def _receive(self) -> None:
        """Store what has arrived: chargers concurrently (a decision's ten setpoints are ten
        chargers: one after the other they cost ~4 ms each), each charger's commands in arrival
        order (their queue order). Acknowledged in arrival order once the whole batch is stored."""
        while not cancel_requested():
            batch = [await self._inbox.get()]
            while len(batch) < _RECEIVE_BATCH and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            by_charger: dict[str, list[_Inbound]] = {}
            for item in batch:
                by_charger.setdefault(charger_from_topic(item[2]) or "", []).append(item)
            await asyncio.gather(*(self._accept_in_order(items) for items in by_charger.values()))
            if cancel_requested():  # stopping: what was not stored must not be acknowledged
                return
            if self._client is not None:
                for mid, qos, _, _ in batch:
                    self._client.ack(mid, qos)

    async def _accept_in_order(self, items: list[_Inbound]) -> None:
        for _, _, topic, payload in items:
            try:
                await self._accept(topic, payload)
            except Exception:
                log.exception("command channel: dropping a message on %s after an unexpected error", topic)

    def _reject(self, topic: str, payload: bytes, reason: str) -> None:
        log.warning("command channel: unusable message on %s: %s", topic, reason)
        self._publisher.publish(DeadLetter(ts=self._clock(), source="bridge", reason=f"command: {reason}",
                                           raw=payload.decode("utf-8", "replace")[:65_536],
                                           charger_id=charger_from_topic(topic), topic=topic))

    async def _accept(self, topic: str, payload: bytes) -> None:
        try:
            command = decode(payload)
        except ContractError as exc:
            self._reject(topic, payload, str(exc))
            return
        if not isinstance(command, Command):
            self._reject(topic, payload, f"expected a command, got {command.TYPE}")
            return
        if charger_from_topic(topic) != command.charger_id:
            self._reject(topic, payload, f"topic is not the one of charger {command.charger_id}")
            return
        delay = 0.5
        while True:  # not acknowledged until stored: the broker keeps it for us meanwhile
            if cancel_requested():
                return
            try:
                stored = await self._queue.enqueue(command, payload.decode())
                break
            except Exception:
                log.exception("command channel: cannot store command %s; retrying in %.0f s",
                              command.command_id, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        if stored is Enqueued.UNKNOWN_CHARGER:
            if command.charger_id not in self._unknown:
                log.info("command channel: ignoring commands for %s, which is not in the registry",
                         command.charger_id)
                self._unknown.add(command.charger_id)
                if len(self._unknown) > 10_000:
                    self._unknown.clear()
            return
        session = self._sessions.get(command.charger_id)
        if session is not None:
            session.wake()

    # ----------------------------------------------------------------------- sweeping

    async def sweep_once(self) -> None:
        now = self._clock()
        closed = await self._queue.sweep_expired(now)
        closed += await self._queue.sweep_abandoned(now - self._abandoned_after, now)
        for item in closed:
            self._publisher.publish(CommandResult(item.command_id, item.charger_id, now, item.outcome,
                                                  detail=item.detail))
        for charger_id in await self._queue.waiting_for(list(self._sessions), now):
            session = self._sessions.get(charger_id)
            if session is not None:
                session.wake()

    async def _sweep_forever(self) -> None:
        while not cancel_requested():
            await asyncio.sleep(self._sweep_interval_s)
            try:
                await self.sweep_once()
            except Exception:
                log.exception("command sweep failed; trying again in %.1f s", self._sweep_interval_s)
