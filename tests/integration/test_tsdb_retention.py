"""warehouse.retention on the Apache build: drop_chunks drops whole old chunks only."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from control.contract import MeterSample
from warehouse.retention import (
    APACHE,
    TIMESCALE,
    RetentionError,
    apply_retention,
    detect_license,
    features,
)
from warehouse.tsdb_writer import TimescaleWriter

pytestmark = pytest.mark.integration

# Far before every other test's data: drop_chunks works on the whole hypertable.
DAY0 = datetime(2001, 1, 1, tzinfo=UTC)


def test_license_is_detected_and_maps_to_features(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        license = detect_license(conn)
    assert license == APACHE  # this Debian build has no TSL library
    apache = features(license)
    assert not (apache.retention_policy or apache.compression or apache.continuous_aggregates or apache.jobs
                or apache.gapfill)
    full = features(TIMESCALE)
    assert full.retention_policy and full.compression and full.continuous_aggregates and full.jobs and full.gapfill
    assert not features("something-else").retention_policy


def test_drop_chunks_removes_only_whole_chunks_before_the_cutoff(pg_dsn: str) -> None:
    cp = f"CP-{secrets.token_hex(4)}"
    samples = [MeterSample(cp, 1, DAY0 + timedelta(hours=h), energy_wh=float(h)) for h in range(5 * 24)]
    recent = MeterSample(cp, 1, datetime(2026, 5, 1, tzinfo=UTC), energy_wh=1.0)
    with TimescaleWriter(pg_dsn) as writer:
        writer.write([*samples, recent])

    now = DAY0 + timedelta(days=10)
    # Cutoff 2001-01-03 12:00, inside the third day's chunk: that chunk must stay whole.
    result = apply_retention(pg_dsn, timedelta(days=7, hours=12), now)
    assert result.license == APACHE and result.method == "drop_chunks"
    assert result.cutoff == DAY0 + timedelta(days=2, hours=12)
    assert len(result.dropped_chunks) == 2

    with psycopg.connect(pg_dsn) as conn:
        first, count = conn.execute("select min(ts), count(*) from meter_samples where charger_id = %s",
                                    (cp,)).fetchone() or (None, None)
        ranges = conn.execute("select range_start, range_end from timescaledb_information.chunks"
                              " where hypertable_name = 'meter_samples' and range_start < %s order by range_start",
                              (DAY0 + timedelta(days=5),)).fetchall()
    assert first == DAY0 + timedelta(days=2)
    assert count == 3 * 24 + 1
    assert ranges[0][0] == DAY0 + timedelta(days=2) and all(end > result.cutoff for _, end in ranges)

    # Idempotent: nothing more to drop until the cutoff passes a chunk's end.
    assert apply_retention(pg_dsn, timedelta(days=7, hours=12), now).dropped_chunks == ()


def test_the_timescale_path_reaches_the_server_and_is_refused_under_apache(pg_dsn: str) -> None:
    # The policy path cannot run here; this proves its SQL resolves (a wrong signature would
    # say "function does not exist") and that the failure is an error, not a silent no-op.
    with pytest.raises(RetentionError, match=r"add_retention_policy.* license"):
        apply_retention(pg_dsn, timedelta(days=30), datetime(2026, 1, 1, tzinfo=UTC), license=TIMESCALE)


def test_nonsense_retention_is_refused(pg_dsn: str) -> None:
    with pytest.raises(ValueError, match="positive"):
        apply_retention(pg_dsn, timedelta(0), datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="aware"):
        apply_retention(pg_dsn, timedelta(days=1), datetime(2026, 1, 1))  # noqa: DTZ001
