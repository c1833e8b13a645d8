"""The building meter reader against pymodbus's own TCP server and the real Mosquitto.

The Modbus server (``pymodbus.server.ModbusTcpServer`` over a ``SimDevice`` datastore, separate
holding and input register blocks) runs in a thread with its own event loop on a free loopback
port, so it can be stopped and started again under a running reader, and serve a ``flowbank
meter`` subprocess. Readings go through the project's broker (``mqtt_endpoint``) on a site id of
their own; a subscriber checks what arrives.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from control.contract import BuildingLoad, decode
from control.settings import MqttEndpoint, Settings
from control.topics import load_topic
from flowbank.config import PROJECT_ROOT
from ingest.building_meter import MeterReader, MeterReadError, parse_config
from ingest.publisher import EventPublisher

pytestmark = pytest.mark.integration

UNIT = 3
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
READ_INPUT, READ_HOLDING = 4, 3  # function codes: which register block a write goes to
_T = TypeVar("_T")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _float32(value: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", value)))


def _int32_low_word_first(value: int) -> list[int]:
    high, low = struct.unpack(">HH", struct.pack(">i", value))
    return [low, high]


class ModbusServer:
    """A meter: pymodbus's TCP server with 128 input and 128 holding registers, in its own thread."""

    def __init__(self) -> None:
        self.port = _free_port()
        self._registers = {READ_INPUT: [0] * 128, READ_HOLDING: [0] * 128}  # survive a restart
        self._server: ModbusTcpServer | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="modbus-server", daemon=True)
        self._thread.start()

    def _call(self, work: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=10)

    def start(self) -> None:
        async def start() -> ModbusTcpServer:
            bits = [SimData(0, values=False, datatype=DataType.BITS)]
            holding = [SimData(0, values=list(self._registers[READ_HOLDING]), datatype=DataType.REGISTERS)]
            inputs = [SimData(0, values=list(self._registers[READ_INPUT]), datatype=DataType.REGISTERS)]
            device = SimDevice(id=UNIT, simdata=(bits, bits, holding, inputs))
            server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
            await server.serve_forever(background=True)
            return server

        self._server = self._call(start())

    def set(self, function_code: int, address: int, words: list[int]) -> None:
        self._registers[function_code][address : address + len(words)] = words
        if self._server is not None:
            self._call(self._server.async_setValues(UNIT, function_code, address, words))

    def stop(self) -> None:
        if self._server is not None:
            self._call(self._server.shutdown())  # type: ignore[no-untyped-call]
            self._server = None

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture()
def meter() -> Iterator[ModbusServer]:
    server = ModbusServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


class Subscriber:
    """Collects the BuildingLoad events published for one site (QoS1)."""

    def __init__(self, endpoint: MqttEndpoint, site_id: str) -> None:
        self.events: list[BuildingLoad] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{site_id}", protocol=paho.MQTTv5)
        if endpoint.username:
            self._client.username_pw_set(endpoint.username, endpoint.password.reveal() or None)
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *args: subscribed.set()
        self._client.connect(endpoint.host, endpoint.port)
        self._client.subscribe(load_topic(site_id), qos=1)
        self._client.loop_start()
        if not subscribed.wait(10):
            raise AssertionError("no SUBACK")

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        event = decode(bytes(msg.payload))
        assert isinstance(event, BuildingLoad)
        with self._lock:
            self.events.append(event)

    def snapshot(self) -> list[BuildingLoad]:
        with self._lock:
            return list(self.events)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _site() -> str:
    return f"meter-test-{secrets.token_hex(4)}"


async def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    asyncio.run(_until(predicate, timeout, what))


def test_readings_arrive_outage_publishes_nothing_and_reading_resumes(
    meter: ModbusServer, mqtt_endpoint: MqttEndpoint, test_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingest.building_meter")
    site = _site()
    for address, value in ((52, 2300.5), (6, 3.5), (8, 4.25), (10, -0.5)):  # SDM630: float32 input registers
        meter.set(READ_INPUT, address, _float32(value))
    config = parse_config(
        {
            "site_id": site,
            "circuit_id": "hall-b",
            "host": "127.0.0.1",
            "port": meter.port,
            "unit": UNIT,
            "preset": "sdm630",
            "poll_interval_s": 0.1,
            "timeout_s": 0.5,
            "max_backoff_s": 0.4,
        }
    )
    ticks = itertools.count()
    reader = MeterReader(config, clock=lambda: T0 + timedelta(seconds=next(ticks)))
    subscriber = Subscriber(mqtt_endpoint, site)
    publisher = EventPublisher(
        mqtt_endpoint, client_id=f"flowbank-meter-{site}", spool_dir=test_settings.data_dir / "spool"
    )

    def records(level: int) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "ingest.building_meter" and r.levelno == level]

    async def scenario() -> None:
        stop = asyncio.Event()
        polling = asyncio.create_task(reader.run(publisher.publish, stop))
        await _until(lambda: len(subscriber.snapshot()) >= 3, 10, "three readings")
        first = subscriber.snapshot()[0]
        assert first == BuildingLoad(
            site_id=site,
            ts=T0,
            power_w=2300.5,
            circuit_id="hall-b",
            current_l1_a=3.5,
            current_l2_a=4.25,
            current_l3_a=-0.5,
            source=f"modbus:127.0.0.1:{meter.port}/3",
        )

        await asyncio.to_thread(meter.stop)
        await _until(lambda: bool(records(logging.WARNING)), 5, "the outage in the log")
        await asyncio.sleep(0.5)  # readings taken before the outage may still be on their way
        before = len(subscriber.snapshot())
        await asyncio.sleep(1.5)  # several failed polls (backoff 0.1, 0.2, 0.4, 0.4 ... s)
        assert len(subscriber.snapshot()) == before, "published something while the meter was unreachable"
        outage = records(logging.WARNING)
        assert len(outage) == 1, outage  # once per change of state, not per failed poll
        assert "cannot connect" in outage[0] or "connection lost" in outage[0]
        assert "Publishing nothing" in outage[0]

        meter.set(READ_INPUT, 52, _float32(4100.0))
        await asyncio.to_thread(meter.start)
        await _until(lambda: any(e.power_w == 4100.0 for e in subscriber.snapshot()), 10, "readings after the outage")
        stop.set()
        await polling

    try:
        publisher.start()
        asyncio.run(scenario())
        _wait(lambda: publisher.stats().pending == 0, 5, "every PUBACK")
    finally:
        publisher.stop(timeout=5)
        subscriber.close()
    events = subscriber.snapshot()
    assert {e.power_w for e in events} == {2300.5, 4100.0}  # no zero (or any other made-up) reading
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert len(records(logging.WARNING)) == 1
    recovered = [m for m in records(logging.INFO) if "answering again" in m]
    assert len(recovered) == 1, recovered
    failed_polls = int(re.search(r"after (\d+) failed polls", recovered[0]).group(1))  # type: ignore[union-attr]
    assert failed_polls >= 4


def test_modbus_exception_response_is_a_failure_not_a_reading(meter: ModbusServer) -> None:
    config = parse_config(
        {
            "site_id": _site(),
            "host": "127.0.0.1",
            "port": meter.port,
            "unit": UNIT,
            "registers": {"power_w": {"address": 500, "data_type": "int16"}},
        }
    )  # no such register
    reader = MeterReader(config)

    async def read() -> str:
        try:
            await reader.read()
        except Exception as exc:
            return f"{type(exc).__name__}/{getattr(exc, 'kind', '')}: {exc}"
        finally:
            reader.close()
        return "a reading"

    outcome = asyncio.run(read())
    assert outcome.startswith("MeterReadError/modbus_exception: ")
    assert "Modbus exception 2 (illegal_address)" in outcome and "input register 500" in outcome


def test_a_meter_that_never_answers_times_out_and_its_connection_is_dropped() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        config = parse_config(
            {"site_id": _site(), "host": "127.0.0.1", "port": port, "unit": UNIT, "preset": "sdm630", "timeout_s": 0.3}
        )
        reader = MeterReader(config)

        async def read() -> MeterReadError:
            with pytest.raises(MeterReadError) as info:
                await reader.read()
            return info.value

        started = time.monotonic()
        error = asyncio.run(read())
        assert time.monotonic() - started < 2
        assert (error.kind, str(error)) == ("unreachable", "no valid answer within 0.3 s")
        connection, _ = silent.accept()
        with connection:
            connection.settimeout(5)
            request = connection.recv(100)
            assert request[6:] == bytes([UNIT, 4, 0, 52, 0, 2])  # unit, read input registers, address 52, count 2
            assert connection.recv(100) == b""  # closed by the reader: a late answer cannot be misread


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowbank.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT_ROOT,
        env=env or dict(os.environ),
        check=False,
    )


def _em24_config(tmp_path: Path, site: str, port: int) -> Path:
    path = tmp_path / "meter.toml"
    path.write_text(
        f'site_id = "{site}"\nhost = "127.0.0.1"\nport = {port}\nunit = {UNIT}\npreset = "em24"\n'
        "poll_interval_s = 0.2\n",
        encoding="utf-8",
    )
    return path


def test_meter_command_publishes_until_sigterm(
    meter: ModbusServer, mqtt_endpoint: MqttEndpoint, tmp_path: Path
) -> None:
    site = _site()
    meter.set(READ_HOLDING, 0x28, _int32_low_word_first(-12345))  # EM24: W x 10, exporting 1234.5 W
    meter.set(READ_HOLDING, 0x0C, _int32_low_word_first(6500))  # A x 1000
    config = _em24_config(tmp_path, site, meter.port)

    once = _cli("meter", "--config", str(config), "--once")
    assert once.returncode == 0, once.stderr
    assert "power_w = -1234.5" in once.stdout.splitlines()
    assert "current_l1_a = 6.5" in once.stdout.splitlines()
    assert f"topic = flowbank/v1/load/{site}" in once.stdout.splitlines()

    subscriber = Subscriber(mqtt_endpoint, site)
    env = {**os.environ, "FLOWBANK_DATA_DIR": str(tmp_path / "data")}
    process = subprocess.Popen(
        [sys.executable, "-m", "flowbank.cli", "meter", "--config", str(config)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait(lambda: len(subscriber.snapshot()) >= 2, 20, "readings from `flowbank meter`")
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        subscriber.close()
    assert process.returncode == 0, err
    assert "stopped after" in err
    assert "Traceback" not in err
    reading = subscriber.snapshot()[0]
    assert (reading.power_w, reading.current_l1_a, reading.current_l2_a) == (-1234.5, 6.5, 0.0)
    assert reading.source == f"modbus:127.0.0.1:{meter.port}/{UNIT}"


def test_once_against_an_unreachable_meter_exits_1_with_one_readable_line(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    result = _cli("meter", "--config", str(_em24_config(tmp_path, _site(), port)), "--once")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"flowbank meter: cannot read the meter at 127.0.0.1:{port} unit {UNIT}: cannot connect "
        "(connection refused, or no route to the host)\n"
    )


def test_load_publish_by_hand(mqtt_endpoint: MqttEndpoint) -> None:
    site = _site()
    subscriber = Subscriber(mqtt_endpoint, site)
    try:
        result = _cli("load", "publish", "--site", site, "--power-w", "5400", "--l1-a", "8.1", "--circuit", "hall-b")
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"published 5400 W for site {site} on flowbank/v1/load/{site}\n"
        _wait(lambda: len(subscriber.snapshot()) == 1, 10, "the reading")
    finally:
        subscriber.close()
    reading = subscriber.snapshot()[0]
    assert (reading.power_w, reading.current_l1_a, reading.current_l2_a, reading.circuit_id, reading.source) == (
        5400.0,
        8.1,
        None,
        "hall-b",
        "manual",
    )
    assert abs((datetime.now(UTC) - reading.ts).total_seconds()) < 30


def test_load_publish_without_a_broker_exits_1() -> None:
    env = {**os.environ, "FLOWBANK_MQTT_URL": f"mqtt://127.0.0.1:{_free_port()}"}
    result = _cli("load", "publish", "--site", _site(), "--power-w", "100", "--timeout", "1", env=env)
    assert result.returncode == 1
    assert "did not acknowledge the reading within 1 s; it was not published" in result.stderr
