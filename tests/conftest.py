"""Shared fixtures.

Integration tests (``@pytest.mark.integration``) talk to the real PostgreSQL/TimescaleDB and
Mosquitto that ``scripts/services.sh`` provisions (or the ones named by ``FLOWBANK_PG_DSN`` /
``FLOWBANK_MQTT_URL``). They never skip when a service is missing: a missing service is a
failure, because CI must prove the real thing works. Each test session gets its own
throw-away database, created from template1 (which carries the timescaledb extension).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from dbutil import drop_database
from psycopg import sql

from control.settings import MqttEndpoint, Settings
from flowbank.config import read_settings
from warehouse.migrate import apply_migrations

# Consumers started by tests (pipelines, bridges under unique ids) leave persistent MQTT
# sessions behind; let the broker forget them within minutes instead of days. Subprocesses
# inherit this.
os.environ.setdefault("FLOWBANK_MQTT_SESSION_EXPIRY_S", "300")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow(seconds=N)`` first, longest first, the rest in file order: on two
    workers (scripts/test.sh) the longest start at once, on different workers, and the short ones
    fill in around them. Every worker sorts the same way, as pytest-xdist requires."""

    def seconds(item: pytest.Item) -> float:
        mark = item.get_closest_marker("slow")
        return float(mark.kwargs.get("seconds", 60)) if mark is not None else 0.0

    items.sort(key=lambda item: -seconds(item))


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return read_settings({k: v for k, v in os.environ.items() if k.startswith("FLOWBANK_")})


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def pg_dsn(base_settings: Settings) -> Iterator[str]:
    """DSN of a fresh, migrated database for this test session (dropped afterwards)."""
    admin_dsn = base_settings.pg_dsn.reveal()
    name = f"flowbank_test_{secrets.token_hex(4)}"
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    dsn = _with_database(admin_dsn, name)
    try:
        apply_migrations(dsn)
        yield dsn
    finally:
        drop_database(admin_dsn, name)


@pytest.fixture(scope="session")
def mqtt_endpoint(base_settings: Settings) -> MqttEndpoint:
    return base_settings.mqtt


@pytest.fixture()
def test_settings(base_settings: Settings, pg_dsn: str, tmp_path: Path) -> Settings:
    """Settings pointing at the session's database, with a private data directory."""
    from dataclasses import replace

    from control.settings import Secret

    return replace(base_settings, pg_dsn=Secret(pg_dsn), data_dir=tmp_path / "data", provision_services=False)
