"""Throw-away PostgreSQL databases for tests (the root conftest.py and module fixtures use it)."""

from __future__ import annotations

import time

import psycopg
from psycopg import sql


def drop_database(admin_dsn: str, name: str) -> None:
    """Drop a test database. TimescaleDB's per-database scheduler (owned by postgres) may still be
    attached for a moment, and WITH (FORCE) may not terminate it for a non-superuser: retry."""
    statement = sql.SQL("drop database if exists {}").format(sql.Identifier(name))
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        for _ in range(50):
            try:
                conn.execute(statement)
                return
            except psycopg.errors.ObjectInUse:
                time.sleep(0.2)
        conn.execute(statement)  # the last try reports the error
