"""Versioned schema migrations for TimescaleDB.

Files ``warehouse/migrations/NNNN_name.sql`` are applied in order, each in its own transaction,
and recorded in ``schema_migrations``. A file already applied is never run again; changing an
applied file is refused (its checksum is stored), so history stays honest.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources

import psycopg

log = logging.getLogger(__name__)

_LOCK_KEY = 0x466C6F77  # advisory lock: concurrent starters apply migrations one at a time


class MigrationError(RuntimeError):
    """A migration failed or an applied migration was edited afterwards."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    found = []
    for entry in resources.files("warehouse").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a version number: {versions}")
    return found


def apply_migrations(dsn: str) -> list[str]:
    """Apply what is missing; return the names applied now."""
    applied_now: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("create extension if not exists timescaledb")
        conn.execute("select pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "create table if not exists schema_migrations (version integer primary key, name text not null,"
                " checksum text not null, applied_at timestamptz not null default now())"
            )
            done = {row[0]: row[1] for row in conn.execute("select version, checksum from schema_migrations")}
            for migration in available():
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version:04d}_{migration.name} was edited after it was applied;"
                            " add a new migration instead"
                        )
                    continue
                log.info("applying migration %04d_%s", migration.version, migration.name)
                try:
                    with conn.transaction():
                        conn.execute(migration.sql.encode())
                        conn.execute(
                            "insert into schema_migrations (version, name, checksum) values (%s, %s, %s)",
                            (migration.version, migration.name, migration.checksum),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {migration.version:04d}_{migration.name} failed: {exc}") from exc
                applied_now.append(f"{migration.version:04d}_{migration.name}")
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def pending_migrations(dsn: str) -> list[str]:
    """Names of the migrations not applied yet (reads only)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute("select to_regclass('schema_migrations') is not null").fetchone()
        done = set()
        if exists and exists[0]:
            done = {row[0] for row in conn.execute("select version from schema_migrations")}
    return [f"{m.version:04d}_{m.name}" for m in available() if m.version not in done]
