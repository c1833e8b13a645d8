"""Retention of raw meter samples, under either TimescaleDB license.

The Apache build (what we run) has no job scheduler: :func:`apply_retention` calls
``drop_chunks`` and must be run periodically by our own code (the app, or a polling tick in the
dataflow). ``drop_chunks`` removes only chunks that lie entirely before the cutoff, so a sample
may live up to one chunk interval (1 day for meter_samples) longer than ``raw_samples_keep``.
Under the Timescale (community) license the same call installs an ``add_retention_policy`` job
instead, which the server's scheduler runs.

Errors::

    RetentionError          retention could not be applied (the message says why)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

log = logging.getLogger(__name__)

RAW_SAMPLES_TABLE: Final = "meter_samples"
APACHE: Final = "apache"
TIMESCALE: Final = "timescale"


class RetentionError(RuntimeError):
    """Retention could not be applied."""


@dataclass(frozen=True, slots=True)
class Features:
    """Which TimescaleDB features a license allows (hypertables, time_bucket, drop_chunks: all)."""

    license: str
    retention_policy: bool  # add_retention_policy
    compression: bool  # ALTER TABLE .. SET (timescaledb.compress), add_compression_policy
    continuous_aggregates: bool
    jobs: bool  # add_job: the background scheduler
    gapfill: bool  # time_bucket_gapfill, locf, interpolate (fail only once rows match!)


def features(license: str) -> Features:
    """The features ``license`` (from :func:`detect_license`) unlocks; unknown means none."""
    full = license == TIMESCALE
    return Features(license, retention_policy=full, compression=full, continuous_aggregates=full, jobs=full,
                    gapfill=full)


def detect_license(conn: psycopg.Connection[Any]) -> str:
    """``'apache'`` or ``'timescale'`` (``timescaledb.license``; set only in the server config)."""
    row = conn.execute("select current_setting('timescaledb.license', true)").fetchone()
    if row is None or not row[0]:
        raise RetentionError("timescaledb.license is not set: is the timescaledb extension loaded?")
    return str(row[0])


@dataclass(frozen=True, slots=True)
class RetentionResult:
    license: str
    method: str  # "drop_chunks" or "retention_policy"
    cutoff: datetime | None  # drop_chunks: samples before this may be gone (None for a policy)
    dropped_chunks: tuple[str, ...]  # drop_chunks only


def apply_retention(dsn: str, raw_samples_keep: timedelta, now: datetime, *,
                    license: str | None = None) -> RetentionResult:
    """Keep ``raw_samples_keep`` of raw meter samples. ``now`` (UTC, injected) sets the cutoff for
    ``drop_chunks``; a retention policy uses the server's clock instead. ``license`` overrides
    detection (tests)."""
    if raw_samples_keep <= timedelta(0):
        raise ValueError("raw_samples_keep must be positive (zero would drop every sample)")
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            found = license or detect_license(conn)
            if features(found).retention_policy:
                return _install_policy(conn, found, raw_samples_keep)
            return _drop_chunks(conn, found, now - raw_samples_keep)
    except psycopg.Error as exc:
        raise RetentionError(f"retention of {RAW_SAMPLES_TABLE} failed: {exc}") from exc


def _drop_chunks(conn: psycopg.Connection[Any], license: str, cutoff: datetime) -> RetentionResult:
    rows = conn.execute("select drop_chunks(%s::regclass, older_than => %s::timestamptz)",
                        (RAW_SAMPLES_TABLE, cutoff)).fetchall()
    dropped = tuple(str(row[0]) for row in rows)
    log.info("retention: dropped %d chunk(s) of %s older than %s", len(dropped), RAW_SAMPLES_TABLE, cutoff)
    return RetentionResult(license, "drop_chunks", cutoff, dropped)


def _install_policy(conn: psycopg.Connection[Any], license: str, keep: timedelta) -> RetentionResult:
    # "if_not_exists" alone would keep an existing policy with another interval: replace that one.
    with conn.transaction():
        row = conn.execute(
            "select (config->>'drop_after')::interval = %s::interval from timescaledb_information.jobs"
            " where proc_name = 'policy_retention' and hypertable_name = %s", (keep, RAW_SAMPLES_TABLE)).fetchone()
        if row is None or not row[0]:
            if row is not None:
                conn.execute("select remove_retention_policy(%s::regclass)", (RAW_SAMPLES_TABLE,))
            conn.execute("select add_retention_policy(%s::regclass, drop_after => %s::interval)",
                         (RAW_SAMPLES_TABLE, keep))
            log.info("retention: policy on %s now drops chunks older than %s", RAW_SAMPLES_TABLE, keep)
    return RetentionResult(license, "retention_policy", None, ())
