"""`flowbank maintain` drops raw samples past the retention period and keeps the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from flowbank.cli import main

pytestmark = pytest.mark.integration


def test_old_raw_sample_chunks_are_dropped(pg_dsn: str, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC)
    rows = [(now - timedelta(days=90), "CP-RET", 1, "Sample.Periodic", 1.0),
            (now - timedelta(days=1), "CP-RET", 1, "Sample.Periodic", 2.0)]
    with psycopg.connect(pg_dsn) as conn:
        conn.cursor().executemany(
            "insert into meter_samples (ts, charger_id, connector_id, context, energy_wh) values (%s, %s, %s, %s, %s)",
            rows)
    monkeypatch.setenv("FLOWBANK_PG_DSN", pg_dsn)
    assert main(["maintain", "--raw-keep-days", "30"]) == 0
    assert "chunk(s) dropped" in capsys.readouterr().out
    with psycopg.connect(pg_dsn) as conn:
        left = conn.execute("select energy_wh from meter_samples where charger_id = 'CP-RET'").fetchall()
    assert left == [(2.0,)]


def test_a_bad_period_is_refused(monkeypatch: pytest.MonkeyPatch, pg_dsn: str) -> None:
    monkeypatch.setenv("FLOWBANK_PG_DSN", pg_dsn)
    assert main(["maintain", "--raw-keep-days", "0"]) == 2
