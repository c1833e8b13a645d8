"""EventPublisher against real Mosquitto: nothing lost while the broker is slow, down or restarting.

Case 1 uses the project's broker (``mqtt_endpoint``). The others start private ``mosquitto``
processes on free ports, so a broker can be absent, frozen (SIGSTOP: TCP still accepts, PUBACKs
never come) or restarted without touching anyone else's. Subscribers that must not miss what
is published while they or the broker are away use a persistent session on a broker with
persistence on, exactly what production relies on.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from control.contract import MeterSample, decode
from control.settings import MqttEndpoint, Secret
from ingest.publisher import EventPublisher

pytestmark = pytest.mark.integration

MOSQUITTO = "/usr/sbin/mosquitto"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
CHARGERS = 10


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def _wait_for_all(subscriber: _Subscriber, publisher: EventPublisher, n: int, timeout: float, what: str) -> None:
    try:
        _wait_until(lambda: len(subscriber.distinct()) == n, timeout, what)
    except AssertionError as exc:
        stats = publisher.stats()
        raise AssertionError(
            f"{exc}: the subscriber has {len(subscriber.distinct())} of {n}; the publisher holds "
            f"{stats.pending} unacked ({stats}). If nothing is pending, the broker dropped them: Mosquitto's "
            "default max_queued_messages (1000) discards QoS1 messages for a slow subscriber") from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _local(port: int) -> MqttEndpoint:
    return MqttEndpoint(host="127.0.0.1", port=port, username=None, password=Secret(""), tls=False)


def _events(prefix: str, n: int) -> list[MeterSample]:
    """n readings spread over CHARGERS chargers; (charger_id, energy_wh) is the natural key."""
    return [MeterSample(charger_id=f"{prefix}-{i % CHARGERS}", connector_id=1, ts=T0 + timedelta(seconds=i),
                        energy_wh=float(i)) for i in range(n)]


class _Broker:
    """A private Mosquitto configured like scripts/services.sh (no silent drops, persistence)."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.port = port
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n"
            f"persistence true\npersistence_location {workdir}/\n"
            f"log_dest file {workdir}/mosquitto.log\n"
            "max_queued_messages 0\nmax_inflight_messages 1000\nset_tcp_nodelay true\n")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)])
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"mosquitto did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves sessions and queued messages to its persistence file."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)


class _LossyLink:
    """A TCP relay to a broker that can swallow what the client sends and then cut the line:
    the PUBLISH packets in flight never reach the broker, so only a re-send can save them."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.swallow = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._upstream_port))
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._relay, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._relay, args=(upstream, client, False), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65_536):
                if not (from_client and self.swallow.is_set()):
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                sock.close()

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self._listener.close()
        self.cut()


@pytest.fixture()
def private_broker(tmp_path: Path) -> Iterator[_Broker]:
    broker = _Broker(tmp_path / "broker", _free_port())
    try:
        yield broker
    finally:
        broker.kill()


class _Subscriber:
    """Collects decoded meter readings for chargers named ``prefix-*`` (QoS1)."""

    def __init__(self, endpoint: MqttEndpoint, prefix: str, *, persistent_id: str | None = None) -> None:
        self.prefix = prefix
        self.keys: list[tuple[str, float]] = []  # in arrival order, duplicates included
        self._subscribed = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=persistent_id or f"sub-{prefix}",
                                   protocol=paho.MQTTv5)
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        properties = None
        if persistent_id:  # survive our own absence and a broker restart
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 600
        self._client.connect(endpoint.host, endpoint.port, clean_start=persistent_id is None, properties=properties)
        self._client.subscribe("flowbank/v1/ev/+/meter_sample", qos=1)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise AssertionError("no SUBACK")

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        if not msg.topic.startswith(f"flowbank/v1/ev/{self.prefix}-"):
            return  # someone else's traffic on the shared broker
        event = decode(msg.payload)
        assert isinstance(event, MeterSample) and event.energy_wh is not None
        self.keys.append((event.charger_id, event.energy_wh))

    def distinct(self) -> set[tuple[str, float]]:
        return set(self.keys)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _keys(events: list[MeterSample]) -> set[tuple[str, float | None]]:
    return {(e.charger_id, e.energy_wh) for e in events}


def _in_order_per_charger(keys: list[tuple[str, float]]) -> bool:
    """First arrivals per charger come in publish order (re-sent duplicates are ignored)."""
    seen: set[tuple[str, float]] = set()
    last: dict[str, float] = {}
    for charger, energy in keys:
        if (charger, energy) in seen:
            continue
        seen.add((charger, energy))
        if energy < last.get(charger, -1.0):
            return False
        last[charger] = energy
    return True


def test_5000_events_all_arrive(mqtt_endpoint: MqttEndpoint, tmp_path: Path) -> None:
    prefix = f"pub{uuid.uuid4().hex[:8]}"
    events = _events(prefix, 5_000)
    subscriber = _Subscriber(mqtt_endpoint, prefix)
    publisher = EventPublisher(mqtt_endpoint, client_id=f"{prefix}-bridge", spool_dir=tmp_path / "spool")
    try:
        publisher.start()
        for event in events:
            publisher.publish(event)
        _wait_for_all(subscriber, publisher, len(events), 15, "every event at the subscriber")
        _wait_until(lambda: publisher.stats().pending == 0, 5, "every PUBACK")
    finally:
        publisher.stop(timeout=5)
        subscriber.close()
    assert subscriber.distinct() == _keys(events)
    assert _in_order_per_charger(subscriber.keys)
    stats = publisher.stats()
    assert stats.published_acked == len(events)
    assert (stats.spooled, stats.dropped, stats.rejected) == (0, 0, 0)


def test_broker_down_at_start_spools_to_disk_then_delivers_everything(
        private_broker: _Broker, tmp_path: Path) -> None:
    prefix = f"down{uuid.uuid4().hex[:8]}"
    endpoint = _local(private_broker.port)
    # Register a persistent subscription, then take the broker away before the bridge starts.
    private_broker.start()
    _Subscriber(endpoint, prefix, persistent_id=f"{prefix}-sub").close()
    private_broker.stop()

    spool_dir = tmp_path / "spool"
    publisher = EventPublisher(endpoint, client_id=f"{prefix}-bridge", spool_dir=spool_dir, memory_limit=500)
    events = _events(prefix, 3_000)
    subscriber = None
    try:
        publisher.start()
        for event in events:
            publisher.publish(event)  # returns at once although nothing is listening
        _wait_until(lambda: publisher.stats().spooled == len(events) - 500 and publisher.stats().spool_bytes > 0,
                    5, "the overflow on disk")  # the byte count follows the record count a moment later
        stats = publisher.stats()
        assert not stats.connected and stats.queued_memory == 500 and stats.spool_bytes > 0
        assert list(spool_dir.glob("*.seg")), "the memory bound was passed, so segments exist on disk"

        private_broker.start()
        subscriber = _Subscriber(endpoint, prefix, persistent_id=f"{prefix}-sub")
        _wait_for_all(subscriber, publisher, len(events), 18, "every event after the outage")
        _wait_until(lambda: publisher.stats().pending == 0, 5, "every PUBACK")
    finally:
        publisher.stop(timeout=2)
        if subscriber is not None:
            subscriber.close()
    assert subscriber.distinct() == _keys(events)
    assert _in_order_per_charger(subscriber.keys)
    assert publisher.stats().published_acked >= len(events)
    assert not list(spool_dir.glob("*.seg")), "a drained spool leaves no segments behind"


def test_stop_spools_unacked_and_the_next_publisher_resends_them(
        private_broker: _Broker, mqtt_endpoint: MqttEndpoint, tmp_path: Path) -> None:
    prefix = f"stop{uuid.uuid4().hex[:8]}"
    spool_dir = tmp_path / "spool"
    events = _events(prefix, 2_000)
    private_broker.start()
    first = EventPublisher(_local(private_broker.port), client_id=f"{prefix}-a", spool_dir=spool_dir,
                           memory_limit=400)
    first.start()
    _wait_until(lambda: first.stats().connected, 10, "the first connection")
    private_broker.freeze()  # accepts bytes, never answers: every publish stays unacked
    for event in events:
        first.publish(event)
    _wait_until(lambda: first.stats().inflight == 1_000, 5, "a full in-flight window")
    first.stop(timeout=0.5)
    private_broker.kill()
    stats = first.stats()
    assert stats.published_acked == 0
    assert stats.spooled == len(events), "in flight, memory and overflow all went to the spool"

    subscriber = _Subscriber(mqtt_endpoint, prefix)
    second = EventPublisher(mqtt_endpoint, client_id=f"{prefix}-b", spool_dir=spool_dir)
    try:
        second.start()
        assert second.stats().spooled == len(events)
        _wait_for_all(subscriber, second, len(events), 15, "the re-sent events")
        _wait_until(lambda: second.stats().pending == 0, 5, "every PUBACK")
    finally:
        second.stop(timeout=5)
        subscriber.close()
    assert subscriber.distinct() == _keys(events)
    assert _in_order_per_charger(subscriber.keys), "unacked messages go back ahead of the newer ones"
    assert second.stats().published_acked == len(events)


def test_broker_restart_mid_stream_loses_nothing(private_broker: _Broker, tmp_path: Path) -> None:
    """Messages in flight when the connection drops are re-sent by paho after reconnecting."""
    prefix = f"rst{uuid.uuid4().hex[:8]}"
    endpoint = _local(private_broker.port)
    # Enough that the restart lands while many are still unacknowledged, even for a fast publisher.
    events = _events(prefix, 25_000)
    private_broker.start()
    subscriber = _Subscriber(endpoint, prefix, persistent_id=f"{prefix}-sub")  # reconnects by itself
    publisher = EventPublisher(endpoint, client_id=f"{prefix}-bridge", spool_dir=tmp_path / "spool")
    try:
        publisher.start()
        _wait_until(lambda: publisher.stats().connected, 10, "the first connection")
        for event in events:
            publisher.publish(event)
        _wait_until(lambda: publisher.stats().published_acked >= 500, 10, "the stream to be under way")
        private_broker.stop()
        assert publisher.stats().pending > 0, "the restart must hit messages still on their way"
        private_broker.start()
        _wait_until(lambda: publisher.stats().pending == 0, 60, "every PUBACK after the restart")
        _wait_for_all(subscriber, publisher, len(events), 60, "every event at the subscriber")
    finally:
        publisher.stop(timeout=2)
        subscriber.close()
    assert subscriber.distinct() == _keys(events)


def test_connection_lost_with_a_full_window_resends_what_was_in_flight(
        private_broker: _Broker, tmp_path: Path) -> None:
    prefix = f"cut{uuid.uuid4().hex[:8]}"
    events = _events(prefix, 3_000)
    private_broker.start()
    link = _LossyLink(private_broker.port)
    subscriber = _Subscriber(_local(private_broker.port), prefix)
    publisher = EventPublisher(_local(link.port), client_id=f"{prefix}-bridge", spool_dir=tmp_path / "spool")
    try:
        publisher.start()
        _wait_until(lambda: publisher.stats().connected, 10, "the first connection")
        for event in events[:500]:
            publisher.publish(event)
        _wait_until(lambda: publisher.stats().published_acked == 500, 10, "the first 500 PUBACKs")
        link.swallow.set()  # from here on, PUBLISH packets vanish on the way
        for event in events[500:]:
            publisher.publish(event)
        _wait_until(lambda: publisher.stats().inflight == 1_000, 10, "a full window of lost messages")
        _wait_until(lambda: len(subscriber.distinct()) == 500, 10, "the first 500 at the subscriber")
        link.swallow.clear()
        link.cut()
        _wait_until(lambda: publisher.stats().pending == 0, 15, "every PUBACK after reconnecting")
        _wait_for_all(subscriber, publisher, len(events), 10, "every event at the subscriber")
    finally:
        publisher.stop(timeout=2)
        subscriber.close()
        link.close()
    assert subscriber.distinct() == _keys(events)
    assert publisher.stats().published_acked == len(events)
