"""Throw-away PostgreSQL databases for tests (the root conftest.py and module fixtures use it)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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


@contextmanager
def fresh_database(admin_dsn: str, prefix: str = "flowbank_test") -> Iterator[str]:
    """A new, migrated database on the server of ``admin_dsn``; dropped on exit."""
    from warehouse.migrate import apply_migrations

    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    dsn = urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{name}"))
    try:
        apply_migrations(dsn)
        yield dsn
    finally:
        drop_database(admin_dsn, name)


class Db:
    """``dashboards.access.Database`` for tests: a new connection per block, committed at its end."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(self.dsn) as conn:
            yield conn
