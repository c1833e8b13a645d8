"""`flowbank services`: provision (via scripts/services.sh), migrate, and check what runs where."""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from control.settings import MqttEndpoint, Settings
from flowbank.config import PROJECT_ROOT
from warehouse.migrate import MigrationError, apply_migrations, pending_migrations


@dataclass(frozen=True, slots=True)
class Health:
    service: str
    where: str
    ok: bool
    detail: str


def provision(settings: Settings) -> None:
    """Run the OS-level provisioning script unless the user brought their own services."""
    if not settings.provision_services:
        return
    script = PROJECT_ROOT / "scripts" / "services.sh"
    result = subprocess.run(["bash", str(script)], check=False)  # noqa: S603, S607 - our own script
    if result.returncode != 0:
        raise SystemExit(f"flowbank services: {script.name} failed (exit {result.returncode})")


def check_postgres(settings: Settings) -> Health:
    where = settings.pg_dsn_display
    try:
        with psycopg.connect(settings.pg_dsn.reveal(), connect_timeout=5) as conn:
            row = conn.execute(
                "select extversion, current_setting('timescaledb.license', true)"
                " from pg_extension where extname = 'timescaledb'"
            ).fetchone()
            server = conn.execute("show server_version").fetchone()
    except psycopg.Error as exc:
        return Health("postgresql", where, False, f"cannot connect: {str(exc).strip().splitlines()[0]}")
    if row is None:
        return Health("postgresql", where, False, "timescaledb extension is not installed in this database")
    version = server[0] if server else "?"
    return Health("postgresql", where, True, f"PostgreSQL {version}, TimescaleDB {row[0]} ({row[1]} license)")


def check_mqtt(endpoint: MqttEndpoint, timeout_s: float = 5.0) -> Health:
    connected = threading.Event()
    outcome: list[str] = []

    def on_connect(client: mqtt.Client, userdata: object, flags: object, reason_code: object,
                   properties: object) -> None:
        outcome.append(str(reason_code))
        connected.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    if endpoint.username:
        client.username_pw_set(endpoint.username, endpoint.password.reveal() or None)
    if endpoint.tls:
        client.tls_set()
    client.on_connect = on_connect
    try:
        client.connect(endpoint.host, endpoint.port, keepalive=10)
    except OSError as exc:
        return Health("mqtt", endpoint.url, False, f"cannot connect: {exc.strerror or exc}")
    client.loop_start()
    try:
        if not connected.wait(timeout_s):
            return Health("mqtt", endpoint.url, False, "no CONNACK within the timeout")
        if outcome and outcome[0] != "Success":
            return Health("mqtt", endpoint.url, False, f"refused: {outcome[0]}")
        return Health("mqtt", endpoint.url, True, "MQTT v5 broker accepting connections")
    finally:
        client.disconnect()
        client.loop_stop()


def migrate(settings: Settings) -> list[str]:
    return apply_migrations(settings.pg_dsn.reveal())


def run_services(settings: Settings, *, check_only: bool) -> int:
    """Provision (unless only checking), migrate, then print one line per service."""
    if not check_only:
        provision(settings)
    health = [check_postgres(settings), check_mqtt(settings.mqtt)]
    if health[0].ok:
        try:
            if check_only:
                waiting = pending_migrations(settings.pg_dsn.reveal())
                ok, detail = not waiting, f"pending: {', '.join(waiting)}" if waiting else "up to date"
            else:
                applied = migrate(settings)
                ok, detail = True, f"{len(applied)} applied now" if applied else "up to date"
            health.append(Health("schema", settings.pg_dsn_display, ok, f"migrations {detail}"))
        except (MigrationError, psycopg.Error) as exc:
            health.append(Health("schema", settings.pg_dsn_display, False, str(exc).strip()))
    width = max(len(h.where) for h in health)
    for h in health:
        print(f"{'ok  ' if h.ok else 'FAIL'} {h.service:<11} {h.where:<{width}}  {h.detail}")
    return 0 if all(h.ok for h in health) else 1
