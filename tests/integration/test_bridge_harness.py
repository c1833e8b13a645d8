"""Harness for the bridge's integration tests (imported by the other test_bridge_* modules), plus
the handshake tests: subprotocol negotiation, paths, and a clean shutdown.

Everything is real: the bridge's websockets server, PostgreSQL (the session's migrated database)
and Mosquitto. Chargers are raw websockets clients speaking OCPP-J frames, so malformed input can
be sent exactly. Each test runs its own event loop (``asyncio.run``) and its own bridge id and
charger ids, so tests do not see each other's events.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import queue
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from control.contract import (
    Command,
    CommandKind,
    ConnectionEvent,
    ConnectionKind,
    ContractError,
    Event,
    decode,
    encode,
)
from control.settings import MqttEndpoint, Settings
from control.topics import command_topic
from ingest.server import Bridge, BridgeOptions
from warehouse import registry

pytestmark = pytest.mark.integration

PASSWORD = "integration-test-password-1"
FAST = BridgeOptions(sweep_interval_s=0.2, close_timeout_s=2.0, publisher_stop_timeout_s=5.0,
                     command_session_expiry_s=60)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


# --------------------------------------------------------------------------- MQTT observer


class Observer:
    """Collects every FlowBankOS message from the broker (paho thread -> a queue)."""

    def __init__(self, endpoint: MqttEndpoint) -> None:
        self.items: list[tuple[str, Event | bytes]] = []
        self._inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique("observer"), protocol=mqtt.MQTTv5)
        self._client.on_connect = lambda c, u, f, rc, p: c.subscribe("flowbank/v1/#", qos=1)
        self._client.on_subscribe = lambda c, u, mid, rc, p: self._subscribed.set()
        self._client.on_message = lambda c, u, msg: self._inbox.put((msg.topic, bytes(msg.payload)))
        self._client.connect(endpoint.host, endpoint.port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("observer could not subscribe")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _drain(self) -> None:
        while True:
            try:
                topic, payload = self._inbox.get_nowait()
            except queue.Empty:
                return
            try:
                self.items.append((topic, decode(payload)))
            except ContractError:
                self.items.append((topic, payload))

    def events(self, cls: type[Any] | None = None, **match: Any) -> list[Any]:
        self._drain()
        out = []
        for _topic, event in self.items:
            if isinstance(event, bytes) or (cls is not None and not isinstance(event, cls)):
                continue
            if all(getattr(event, k, None) == v for k, v in match.items()):
                out.append(event)
        return out

    async def expect(self, cls: type[Any], *, count: int = 1, timeout: float = 10.0, **match: Any) -> list[Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(cls, **match)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout} s for {count} {cls.__name__} {match}; got {found}")
            await asyncio.sleep(0.02)

    def publish(self, topic: str, payload: bytes) -> None:
        self._client.publish(topic, payload, qos=1).wait_for_publish(5)

    def send_command(self, charger_id: str, kind: CommandKind, *, params: dict[str, Any] | None = None,
                     connector_id: int | None = None, ttl_s: float = 30.0, command_id: str | None = None) -> str:
        now = datetime.now(UTC)
        command = Command(command_id or unique("cmd"), charger_id, kind, now, now + timedelta(seconds=ttl_s),
                          connector_id=connector_id, params=params or {})
        self.publish(command_topic(charger_id), encode(command))
        return command.command_id


# --------------------------------------------------------------------------- charger client

Responder = Callable[[str, dict[str, Any]], Awaitable[list[Any] | None]]


async def accept_all(action: str, payload: dict[str, Any]) -> list[Any] | None:
    return ["result", {"status": "Accepted"}]


@dataclass
class Charger:
    """A raw OCPP-J client. Answers the bridge's CALLs with ``responder`` (None: no answer)."""

    ws: ClientConnection
    responder: Responder = accept_all
    received_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    frames: asyncio.Queue[list[Any]] = field(default_factory=asyncio.Queue)
    unparsed: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _reader: asyncio.Task[None] | None = None

    def start(self) -> Charger:
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                try:
                    frame = orjson.loads(message)
                except orjson.JSONDecodeError:
                    self.unparsed.append(str(message))
                    continue
                if frame[0] == 2:
                    self.received_calls.append((frame[2], frame[3]))
                    answer = await self.responder(frame[2], frame[3])
                    if answer is not None and answer[0] == "result":
                        await self.ws.send(orjson.dumps([3, frame[1], answer[1]]).decode())
                    elif answer is not None:
                        await self.ws.send(orjson.dumps([4, frame[1], answer[1], "refused by test", {}]).decode())
                else:
                    await self.frames.put(frame)

    async def next_frame(self, timeout: float = 5.0) -> list[Any]:
        return await asyncio.wait_for(self.frames.get(), timeout)

    async def send_raw(self, text: str | bytes) -> None:
        await self.ws.send(text)

    async def call(self, action: str, payload: dict[str, Any], timeout: float = 5.0) -> list[Any]:
        message_id = f"m{next(self._ids)}"
        await self.ws.send(orjson.dumps([2, message_id, action, payload]).decode())
        frame = await self.next_frame(timeout)
        assert frame[1] == message_id, frame
        return frame

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await self._reader


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@contextlib.asynccontextmanager
async def charger(bridge: Bridge, charger_id: str, *, version: str | None = "ocpp1.6", password: str = PASSWORD,
                  responder: Responder = accept_all) -> AsyncIterator[Charger]:
    url = f"ws://127.0.0.1:{bridge.port}/ocpp/{charger_id}"
    ws = await connect(url, subprotocols=[version] if version else None,  # type: ignore[list-item]
                       additional_headers=basic(charger_id, password), open_timeout=10)
    client = Charger(ws, responder).start()
    try:
        yield client
    finally:
        await client.close()


async def handshake_status(bridge: Bridge, path: str, headers: dict[str, str]) -> int:
    try:
        ws = await connect(f"ws://127.0.0.1:{bridge.port}{path}", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                           additional_headers=headers, open_timeout=10)
    except InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    return 101


# --------------------------------------------------------------------------- the bridge


def register(dsn: str, charger_id: str, *, password: str = PASSWORD, enabled: bool = True) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        registry.add_charger(conn, charger_id, password_hash=registry.hash_password(password), site_id="test")
        if not enabled:
            registry.set_enabled(conn, charger_id, False)


def bridge_settings(test_settings: Settings, **changes: Any) -> Settings:
    return replace(test_settings, bridge_port=0, bridge_id=unique("bridge"), **changes)


@contextlib.asynccontextmanager
async def running_bridge(settings: Settings, options: BridgeOptions = FAST) -> AsyncIterator[Bridge]:
    bridge = Bridge(settings, options=options)
    await bridge.start()
    try:
        yield bridge
    finally:
        await bridge.stop()


def observing(endpoint: MqttEndpoint) -> Iterator[Observer]:
    """Body of each test module's ``observer`` fixture."""
    obs = Observer(endpoint)
    yield obs
    obs.close()


@pytest.fixture()
def observer(mqtt_endpoint: MqttEndpoint) -> Iterator[Observer]:
    yield from observing(mqtt_endpoint)


# --------------------------------------------------------------------------- handshake tests


def test_subprotocols_and_paths(test_settings: Settings, pg_dsn: str, observer: Observer) -> None:
    ids = [unique("HS") for _ in range(3)]
    for charger_id in ids:
        register(pg_dsn, charger_id)

    async def scenario() -> None:
        async with running_bridge(bridge_settings(test_settings)) as bridge:
            async with charger(bridge, ids[0], version="ocpp2.0.1") as cp:
                assert cp.ws.subprotocol == "ocpp2.0.1"
                reply = await cp.call("Heartbeat", {})
                assert reply[0] == 3 and "currentTime" in reply[2]
            async with charger(bridge, ids[1], version=None) as cp:  # no subprotocol offered: OCPP 1.6
                assert cp.ws.subprotocol is None
                reply = await cp.call("Authorize", {"idTag": "TAG1"})  # a 1.6 payload
                assert reply == [3, reply[1], {"idTagInfo": {"status": "Accepted"}}]
            ws = await connect(f"ws://127.0.0.1:{bridge.port}/ocpp/{ids[2]}", subprotocols=["ocpp2.1"],  # type: ignore[list-item]
                               additional_headers=basic(ids[2], PASSWORD))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1002
            assert await handshake_status(bridge, "/elsewhere/x", basic("x", PASSWORD)) == 404
            connected = await observer.expect(ConnectionEvent, charger_id=ids[0], kind=ConnectionKind.CONNECTED)
            assert connected[0].bridge_id == bridge.settings.bridge_id
            assert connected[0].ocpp_version is not None and connected[0].ocpp_version.value == "2.0.1"

    asyncio.run(scenario())


def test_shutdown_closes_chargers_with_1001(test_settings: Settings, pg_dsn: str, observer: Observer) -> None:
    charger_id = unique("SD")
    register(pg_dsn, charger_id)

    async def scenario() -> None:
        bridge = Bridge(bridge_settings(test_settings), options=FAST)
        await bridge.start()
        url = f"ws://127.0.0.1:{bridge.port}/ocpp/{charger_id}"
        ws = await connect(url, subprotocols=["ocpp1.6"], additional_headers=basic(charger_id, PASSWORD))  # type: ignore[list-item]
        await ws.send(orjson.dumps([2, "1", "Heartbeat", {}]).decode())
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 5))[0] == 3
        await bridge.stop()
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        gone = await observer.expect(ConnectionEvent, charger_id=charger_id, kind=ConnectionKind.DISCONNECTED)
        assert gone[0].reason == "bridge shutting down"
        with psycopg.connect(pg_dsn) as conn:
            row = conn.execute("select count(*) from charger_presence where charger_id = %s", (charger_id,)).fetchone()
        assert row == (0,)

    asyncio.run(scenario())


def test_a_second_connection_replaces_the_first(test_settings: Settings, pg_dsn: str, observer: Observer) -> None:
    charger_id = unique("RE")
    register(pg_dsn, charger_id)

    async def scenario() -> None:
        async with running_bridge(bridge_settings(test_settings)) as bridge, charger(bridge, charger_id) as old:
            async with charger(bridge, charger_id) as new:
                await asyncio.wait_for(old.ws.wait_closed(), 5)
                assert old.ws.close_code == 1000
                assert (await new.call("Heartbeat", {}))[0] == 3
                gone = await observer.expect(ConnectionEvent, charger_id=charger_id,
                                             kind=ConnectionKind.DISCONNECTED)
                assert gone[0].reason == "replaced by a newer connection"
                with psycopg.connect(pg_dsn) as conn:  # the newer connection's presence survived
                    row = conn.execute("select bridge_id from charger_presence where charger_id = %s",
                                       (charger_id,)).fetchone()
                assert row == (bridge.settings.bridge_id,)

    asyncio.run(scenario())
