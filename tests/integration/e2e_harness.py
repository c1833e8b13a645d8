"""Process management for the end-to-end tests (and ``bench/pipeline_bench.py``): the real
``flowbank bridge``, ``flowbank pipeline`` and ``flowbank simulate`` as child processes.

Each child is ``python -m flowbank.cli <command>`` with an environment built here (never the
caller's ``FLOWBANK_*`` variables, except the short MQTT session expiry tests/conftest.py sets),
its stdout and stderr in a log file, in its own session so a Ctrl-C of pytest does not reach it.
Readiness is polled (a log line, an open port) with a bounded timeout; stopping is SIGTERM, then
SIGKILL after a grace period, always by PID.

:class:`Platform` holds one test's processes and what makes them private: a unique bridge id and
pipeline id, a charger id prefix, a free port, a temporary data directory, and usually a
:class:`PrivateBroker`. Leaving it (a ``with`` block) stops every child and prints the tail of
every log (pytest shows it when the test failed). On a shared broker it also removes the MQTT
state the run left there: the persistent sessions of its client ids and the retained
live-state messages of its chargers.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import paho.mqtt.client as mqtt
import psycopg
import pytest
from dbutil import fresh_database
from mqtt_sessions import bridge_client_ids, end_sessions, pipeline_client_ids
from paho.mqtt.enums import CallbackAPIVersion

from control.settings import MqttEndpoint, Settings
from control.topics import live_topic
from warehouse.registry import SCRYPT_N, hash_password

REPO = Path(__file__).resolve().parents[2]
STOP_GRACE_S = 20.0  # SIGTERM -> SIGKILL
T = TypeVar("T")


class HarnessError(AssertionError):
    """A child did not become ready, died, or a wait ran out; the message has the log tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.25,
               on_timeout: Callable[[], str] | None = None) -> T:
    """Poll ``predicate`` until it returns something truthy (returned); HarnessError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{on_timeout()}" if on_timeout is not None else ""
            raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


def mqtt_url(endpoint: MqttEndpoint) -> str:
    """The endpoint as a FLOWBANK_MQTT_URL, password included (for a child's environment only)."""
    scheme = "mqtts" if endpoint.tls else "mqtt"
    password = endpoint.password.reveal()
    user = ""
    if endpoint.username:
        user = quote(endpoint.username, safe="") + (f":{quote(password, safe='')}" if password else "") + "@"
    return f"{scheme}://{user}{endpoint.host}:{endpoint.port}"


# --------------------------------------------------------------------------- one child process


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    returncode: int | None = None

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"=== {' '.join(self.argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(self.argv, env=self.env, cwd=REPO, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.returncode = None
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def running(self) -> bool:
        if self.process is None:
            return False
        code = self.process.poll()
        if code is not None:
            self.returncode = code
        return code is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        text = self.log_text().splitlines()[-lines:]
        return f"--- {self.name} (pid {self.process.pid if self.process else '-'}, exit {self.returncode}), " \
               f"last {len(text)} lines of {self.log_path}:\n" + "\n".join(text)

    def wait_for_log(self, pattern: str, *, timeout: float, after: int = 0) -> re.Match[str]:
        """The first match of ``pattern`` in the log after offset ``after``; fails if the child exits first."""
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            match = regex.search(self.log_text(), after)
            if match is None and not self.running():
                raise HarnessError(f"{self.name} exited ({self.returncode}) before logging {pattern!r}\n"
                                   f"{self.tail()}")
            return match

        return wait_until(found, timeout=timeout, what=f"{self.name} to log {pattern!r}", on_timeout=self.tail)

    def log_size(self) -> int:
        return len(self.log_text())

    def wait(self, timeout: float) -> int:
        """Wait for the child to exit on its own; HarnessError (it keeps running) after ``timeout``."""
        assert self.process is not None
        try:
            self.returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"{self.name} still runs after {timeout:.0f} s\n{self.tail()}") from None
        return self.returncode

    def signal(self, signum: int) -> None:
        if self.running():
            os.kill(self.pid, signum)

    def stop(self, grace: float = STOP_GRACE_S) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds. The exit code (negative: killed by a signal)."""
        if self.process is None:
            return None
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.returncode = self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.returncode = self.process.wait(timeout=10)
                with open(self.log_path, "a", encoding="utf-8") as log:
                    log.write(f"=== harness: no exit {grace:.0f} s after SIGTERM; killed\n")
        return self.returncode

    def kill(self) -> int | None:
        """SIGKILL at once (a crash)."""
        if self.process is None:
            return None
        if self.running():
            self.process.kill()
        self.returncode = self.process.wait(timeout=10)
        return self.returncode


# --------------------------------------------------------------------------- chargers and ground truth


def register_chargers(dsn: str, charger_ids: Iterable[str], password: str, *, site_id: str = "e2e",
                      scrypt_n: int = SCRYPT_N) -> None:
    """Register chargers that share one password. One scrypt hash serves them all (the hash is
    self-describing and salted once), so 100 chargers cost one hash here, not 100. The bridge
    still verifies it once per charger at the handshake (``scrypt_n`` sets that cost)."""
    password_hash = hash_password(password, n=scrypt_n)
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "insert into chargers (charger_id, password_hash, site_id, display_name) values (%s, %s, %s, %s)"
            " on conflict (charger_id) do update set password_hash = excluded.password_hash, enabled = true",
            [(cid, password_hash, site_id, f"e2e {cid}") for cid in charger_ids])


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


# --------------------------------------------------------------------------- a private broker

MOSQUITTO = "/usr/sbin/mosquitto"
# scripts/services.sh's settings (persistence, no silent drops of queued QoS1 messages, unlimited
# in flight for the pipeline's held acks), on a free loopback port.
MOSQUITTO_CONF = """per_listener_settings false
listener {port} 127.0.0.1
allow_anonymous true
user root
log_dest file {workdir}/mosquitto.log
log_type error
log_type warning
log_type notice
connection_messages false
persistence true
persistence_location {workdir}/
autosave_interval 10
max_queued_messages 0
max_queued_bytes 4294967296
max_inflight_messages 0
set_tcp_nodelay true
"""


class PrivateBroker:
    """A Mosquitto of our own, configured like the development broker.

    The pipeline subscribes to every charger's events (``flowbank/v1/ev/#``): on the shared
    broker it would also ingest whatever load other people generate there, and our waits would
    depend on it (a neighbour's benchmark once put a test's pipeline minutes behind)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> MqttEndpoint:
        from control.settings import Secret

        return MqttEndpoint(host="127.0.0.1", port=self.port, username=None, password=Secret(""), tls=False)

    def start(self, timeout: float = 15.0) -> PrivateBroker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(MOSQUITTO_CONF.format(port=self.port, workdir=self.workdir))
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise HarnessError(f"mosquitto exited ({self.process.returncode}); see {self.workdir}/mosquitto.log")
            return port_open(self.port)

        wait_until(up, timeout=timeout, what=f"mosquitto on port {self.port}", interval=0.05)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> PrivateBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- broker hygiene


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A private Mosquitto for one test (the end-to-end tests restart or inspect it)."""
    with PrivateBroker(tmp_path / "broker") as b:
        yield b


@pytest.fixture(scope="module", name="pg_dsn")
def own_database(base_settings: Settings) -> Iterator[str]:
    """``pg_dsn`` for one module, a database of its own (import it into the module).

    For the end-to-end modules, which run first on their worker (marker ``slow``): what they store
    (chargers, sessions, limits, decisions, alerts) would otherwise be in the database of every
    test that follows on that worker. And for modules that list everything stored."""
    with fresh_database(base_settings.pg_dsn.reveal(), "flowbank_mod") as dsn:
        yield dsn


def clear_retained(endpoint: MqttEndpoint, topics: Iterable[str]) -> None:
    """Delete retained messages (an empty retained payload deletes the topic's message)."""
    topics = list(topics)
    if not topics:
        return
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"e2e-cleaner-{secrets.token_hex(4)}",
                         protocol=mqtt.MQTTv5)
    if endpoint.username:
        client.username_pw_set(endpoint.username, endpoint.password.reveal() or None)
    try:
        client.connect(endpoint.host, endpoint.port, keepalive=10)
        client.loop_start()
        infos = [client.publish(topic, b"", qos=1, retain=True) for topic in topics]
        for info in infos:
            info.wait_for_publish(10)
        client.disconnect()
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"[harness] could not clear retained live state: {exc}")
    finally:
        client.loop_stop()


# --------------------------------------------------------------------------- the platform of one test


def flowbank(*args: str) -> list[str]:
    return [sys.executable, "-m", "flowbank.cli", *args]


@dataclass
class Platform:
    """Bridge, pipeline and simulators of one test, private to it. Use as a context manager."""

    pg_dsn: str
    mqtt: MqttEndpoint
    workdir: Path
    prefix: str  # charger ids start with it
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    bridge_port: int = field(default_factory=free_port)
    broker: PrivateBroker | None = None  # ours: stopped on exit (else our MQTT state is purged)
    children: list[Child] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    quiet: bool = False  # print the log tails on exit only after an error

    @property
    def bridge_id(self) -> str:
        return f"e2e-bridge-{self.tag}"

    @property
    def pipeline_id(self) -> str:
        return f"e2e-pipeline-{self.tag}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def bridge_url(self) -> str:
        return f"ws://127.0.0.1:{self.bridge_port}/ocpp"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBANK_")}
        # tests/conftest.py: short-lived sessions; benchmarks: the pipeline's batching window.
        for name in ("FLOWBANK_MQTT_SESSION_EXPIRY_S", "FLOWBANK_PIPELINE_BATCH_MS"):
            if name in os.environ:
                env[name] = os.environ[name]
        env.update({
            "FLOWBANK_PG_DSN": self.pg_dsn,
            "FLOWBANK_MQTT_URL": mqtt_url(self.mqtt),
            "FLOWBANK_DATA_DIR": str(self.data_dir),
            "FLOWBANK_LOG_LEVEL": "INFO",
            "FLOWBANK_BRIDGE_HOST": "127.0.0.1",
            "FLOWBANK_BRIDGE_PORT": str(self.bridge_port),
            "FLOWBANK_BRIDGE_ID": self.bridge_id,
            "FLOWBANK_PIPELINE_ID": self.pipeline_id,
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
            **extra,
        })
        return env

    def _child(self, name: str, argv: list[str], **env: str) -> Child:
        child = Child(name, argv, self.env(**env), self.workdir / "logs" / f"{name}.log")
        self.children.append(child)
        return child.start()

    def start_bridge(self, *, timeout: float = 60.0) -> Child:
        bridge = self._child("bridge", flowbank("bridge"))
        bridge.wait_for_log(r"bridge \S+ listening on", timeout=timeout)  # logged once the port is bound
        return bridge

    def start_pipeline(self, *args: str, timeout: float = 90.0, name: str = "pipeline") -> Child:
        """Start ``flowbank pipeline`` and wait until its MQTT source has connected and subscribed."""
        existing = next((c for c in self.children if c.name == name), None)
        if existing is not None and existing.running():
            raise HarnessError(f"{name} is already running")
        if existing is not None:
            existing.start()  # the same log file, appended: a restart
            pipeline = existing
        else:
            pipeline = self._child(name, flowbank("pipeline", *args))
        start = pipeline.log_size()
        pipeline.wait_for_log(r"MQTT source connected", timeout=timeout, after=start)
        time.sleep(0.5)  # the SUBSCRIBE went out with the CONNACK; give the SUBACK a moment
        return pipeline

    def start_simulator(self, name: str, args: Sequence[str], *, password: str) -> Child:
        """``flowbank simulate`` against this platform's bridge (the password via its environment)."""
        return self._child(name, flowbank("simulate", "--url", self.bridge_url, *args),
                           FLOWBANK_SIM_PASSWORD=password)

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def tails(self, lines: int = 40) -> str:
        return "\n".join(c.tail(lines) for c in self.children)

    def stop_all(self) -> None:
        """Simulators first, then the bridge, then the pipeline (it drains what the bridge sent)."""
        order = {"bridge": 1, "pipeline": 2}
        for child in sorted(self.children, key=lambda c: order.get(c.name, 0)):
            child.stop()

    def purge_broker(self, charger_ids: Iterable[str] = ()) -> None:
        try:
            end_sessions(self.mqtt, [*pipeline_client_ids(self.pipeline_id), *bridge_client_ids(self.bridge_id)])
        except OSError as exc:
            print(f"[harness] could not end our MQTT sessions: {exc}")
        try:
            with psycopg.connect(self.pg_dsn, connect_timeout=10) as conn:
                rows = conn.execute("select charger_id, connector_id from live_state where starts_with(charger_id, %s)",
                                    (self.prefix,)).fetchall()
        except psycopg.Error as exc:
            print(f"[harness] could not list live state to clear: {exc}")
            rows = []
        known = {(str(cid), int(conn_id)) for cid, conn_id in rows}
        known |= {(cid, n) for cid in charger_ids for n in (0, 1, 2)}
        clear_retained(self.mqtt, (live_topic(cid, n) for cid, n in sorted(known)))

    def __enter__(self) -> Platform:
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.stop_all()
        finally:
            if self.broker is not None:
                self.broker.stop()
            else:
                self.purge_broker()
            if exc is not None or not self.quiet:
                print(self.tails())  # pytest shows captured output for failed tests only
