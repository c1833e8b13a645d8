"""The foundation talks to the real services: TimescaleDB and Mosquitto."""

from __future__ import annotations

import queue
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from control.settings import MqttEndpoint, Secret, Settings
from flowbank.config import PROJECT_ROOT
from flowbank.services import check_mqtt, check_postgres
from warehouse.migrate import apply_migrations, pending_migrations

pytestmark = pytest.mark.integration


def test_timescaledb_extension_is_2x(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("select extversion from pg_extension where extname = 'timescaledb'").fetchone()
    assert row is not None and row[0].startswith("2.")


def test_hypertable_insert_and_time_bucket(pg_dsn: str) -> None:
    start = datetime(2026, 3, 1, 23, 50, tzinfo=UTC)
    rows = [(start + timedelta(minutes=5 * i), "CP-1", 1, "Sample.Periodic", 1000.0 * i) for i in range(6)]
    with psycopg.connect(pg_dsn) as conn:
        hypertables = {r[0] for r in conn.execute("select hypertable_name from timescaledb_information.hypertables")}
        assert "meter_samples" in hypertables
        with conn.cursor() as cur, cur.copy(
            "copy meter_samples (ts, charger_id, connector_id, context, energy_wh) from stdin (format binary)"
        ) as copy:
            copy.set_types(["timestamptz", "text", "int4", "text", "float8"])
            for row in rows:
                copy.write_row(row)
        buckets = conn.execute(
            "select time_bucket('1 day', ts) as day, max(energy_wh) - min(energy_wh), count(*)"
            " from meter_samples where charger_id = 'CP-1' group by day order by day"
        ).fetchall()
        conn.rollback()
    assert [(b[0].date().isoformat(), b[1], b[2]) for b in buckets] == [
        ("2026-03-01", 1000.0, 2),  # 23:50 and 23:55
        ("2026-03-02", 3000.0, 4),  # 00:00 .. 00:15
    ]


def test_license_is_detected(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("select current_setting('timescaledb.license', true)").fetchone()
    assert row is not None and row[0] in ("apache", "timescale")


def test_migrations_are_recorded_and_idempotent(pg_dsn: str) -> None:
    assert pending_migrations(pg_dsn) == []
    assert apply_migrations(pg_dsn) == []


def test_health_checks_report_real_services(test_settings: Settings) -> None:
    pg = check_postgres(test_settings)
    broker = check_mqtt(test_settings.mqtt)
    assert pg.ok, pg.detail
    assert "TimescaleDB 2." in pg.detail
    assert broker.ok, broker.detail
    assert "flowbank:" not in pg.where or "********" in pg.where  # the password is never printed


# ----------------------------------------------------------------------------- MQTT


def _client(endpoint: MqttEndpoint, client_id: str, *, clean_start: bool = True) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if endpoint.username:
        client.username_pw_set(endpoint.username, endpoint.password.reveal() or None)
    return client


def _connect(client: mqtt.Client, endpoint: MqttEndpoint, *, clean_start: bool,
             session_expiry_s: int = 0) -> None:
    props = Properties(PacketTypes.CONNECT)
    if session_expiry_s:
        props.SessionExpiryInterval = session_expiry_s
    connected = queue.Queue[object]()
    client.on_connect = lambda c, u, f, rc, p: connected.put(rc)
    client.connect(endpoint.host, endpoint.port, keepalive=30, clean_start=clean_start, properties=props)
    client.loop_start()
    rc = connected.get(timeout=10)
    assert str(rc) == "Success", rc


def _subscribe(client: mqtt.Client, topic: str) -> None:
    done = queue.Queue[object]()
    client.on_subscribe = lambda c, u, mid, codes, p: done.put(codes)
    client.subscribe(topic, qos=1)
    codes = done.get(timeout=10)
    assert all(not code.is_failure for code in codes), codes  # type: ignore[attr-defined]


def _publish_all(endpoint: MqttEndpoint, topic: str, payloads: list[bytes]) -> None:
    publisher = _client(endpoint, f"pub-{secrets.token_hex(4)}")
    _connect(publisher, endpoint, clean_start=True)
    try:
        infos = [publisher.publish(topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(timeout=20)
            assert info.is_published()
    finally:
        publisher.disconnect()
        publisher.loop_stop()


def _drain(received: queue.Queue[bytes], count: int, timeout_s: float) -> list[bytes]:
    out: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < count and time.monotonic() < deadline:
        try:
            out.append(received.get(timeout=max(0.05, deadline - time.monotonic())))
        except queue.Empty:
            break
    return out


def test_qos1_publish_is_received(mqtt_endpoint: MqttEndpoint) -> None:
    topic = f"flowbank/test/{secrets.token_hex(4)}"
    received: queue.Queue[bytes] = queue.Queue()
    sub = _client(mqtt_endpoint, f"sub-{secrets.token_hex(4)}")
    sub.on_message = lambda c, u, msg: received.put(msg.payload)
    _connect(sub, mqtt_endpoint, clean_start=True)
    try:
        _subscribe(sub, topic)
        _publish_all(mqtt_endpoint, topic, [b"hello"])
        assert _drain(received, 1, 10) == [b"hello"]
    finally:
        sub.disconnect()
        sub.loop_stop()


def test_offline_persistent_subscriber_gets_everything_published_meanwhile(mqtt_endpoint: MqttEndpoint) -> None:
    """More than Mosquitto's default queue limit (1000) is published while the subscriber is away."""
    topic = f"flowbank/test/{secrets.token_hex(4)}"
    client_id = f"persistent-{secrets.token_hex(4)}"
    sub = _client(mqtt_endpoint, client_id)
    _connect(sub, mqtt_endpoint, clean_start=True, session_expiry_s=300)
    _subscribe(sub, topic)
    sub.disconnect()
    sub.loop_stop()

    payloads = [str(i).encode() for i in range(3000)]
    _publish_all(mqtt_endpoint, topic, payloads)

    received: queue.Queue[bytes] = queue.Queue()
    back = _client(mqtt_endpoint, client_id)
    back.on_message = lambda c, u, msg: received.put(msg.payload)
    _connect(back, mqtt_endpoint, clean_start=False, session_expiry_s=300)
    try:
        got = _drain(received, len(payloads), 30)
    finally:
        back.disconnect()
        back.loop_stop()
    assert sorted(got, key=int) == payloads
    # Clean up the session so the broker does not keep it around.
    cleanup = _client(mqtt_endpoint, client_id)
    _connect(cleanup, mqtt_endpoint, clean_start=True)
    cleanup.disconnect()
    cleanup.loop_stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def private_broker(tmp_path: Path) -> Iterator[tuple[MqttEndpoint, Path]]:
    """A Mosquitto started from the production config (deploy/mosquitto/mosquitto.conf),
    on a free port and a private persistence directory, so a test may restart it."""
    port = _free_port()
    conf = (PROJECT_ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    # The broker drops root for the "mosquitto" user, which cannot enter pytest's private
    # tmp_path; its persistence directory lives directly under /tmp instead.
    data = Path(tempfile.mkdtemp(prefix="flowbank-mosquitto-"))
    shutil.chown(data, "mosquitto", "mosquitto")
    lines = []
    for line in conf.splitlines():
        key = line.split(" ", 1)[0]
        if key in ("listener", "persistence_location", "log_dest", "password_file", "allow_anonymous"):
            continue
        lines.append(line)
    lines += [f"listener {port} 127.0.0.1", "allow_anonymous true", f"persistence_location {data}/",
              "log_dest stderr"]
    conf_path = tmp_path / "mosquitto.conf"
    conf_path.write_text("\n".join(lines) + "\n")
    yield MqttEndpoint("127.0.0.1", port, None, Secret(""), False), conf_path
    shutil.rmtree(data, ignore_errors=True)


def _start_broker(conf_path: Path, endpoint: MqttEndpoint) -> subprocess.Popen[bytes]:
    with (conf_path.parent / "mosquitto.log").open("ab") as log:
        proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf_path)], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((endpoint.host, endpoint.port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("private mosquitto did not start")


def test_queued_messages_survive_a_broker_restart(private_broker: tuple[MqttEndpoint, Path]) -> None:
    endpoint, conf_path = private_broker
    broker = _start_broker(conf_path, endpoint)
    try:
        topic = "flowbank/test/restart"
        client_id = "persistent-restart"
        sub = _client(endpoint, client_id)
        # clean_start=False from the very first connect, as our consumers do: Mosquitto 2.0.11
        # does not restore, after a restart, a session that was opened with clean_start=True
        # (found while writing this test).
        _connect(sub, endpoint, clean_start=False, session_expiry_s=600)
        _subscribe(sub, topic)
        sub.disconnect()
        sub.loop_stop()
        payloads = [str(i).encode() for i in range(1500)]
        _publish_all(endpoint, topic, payloads)
    finally:
        broker.terminate()  # a clean stop writes the persistence file
        broker.wait(timeout=10)
    broker = _start_broker(conf_path, endpoint)
    try:
        received: queue.Queue[bytes] = queue.Queue()
        back = _client(endpoint, client_id)
        back.on_message = lambda c, u, msg: received.put(msg.payload)
        _connect(back, endpoint, clean_start=False, session_expiry_s=600)
        got = _drain(received, len(payloads), 30)
        back.disconnect()
        back.loop_stop()
        assert sorted(got, key=int) == payloads
    finally:
        broker.terminate()
        broker.wait(timeout=10)
