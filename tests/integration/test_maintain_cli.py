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


def test_recent_closed_sessions_are_costed_from_their_tariff(pg_dsn: str, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from decimal import Decimal

    from control.tariffs import flat_tariff
    from warehouse.tariff_store import assign_tariff, save_tariff

    started = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("insert into chargers (charger_id, site_id) values ('CP-COST', 'cost-site')")
        save_tariff(conn, flat_tariff("t-maint", "EUR", "UTC", Decimal("0.30"), Decimal("0.21"),
                                      started - timedelta(days=30)), name="flat")
        assign_tariff(conn, "t-maint", charger_id="CP-COST")
        conn.execute(
            "insert into sessions (session_id, charger_id, connector_id, transaction_id, site_id, state, revision,"
            " started_at, ended_at, energy_wh) values ('CP-COST-1-1', 'CP-COST', 1, '1', 'cost-site', 'closed', 1,"
            " %s, %s, 10000)", (started, started + timedelta(hours=1)))
    monkeypatch.setenv("FLOWBANK_PG_DSN", pg_dsn)
    assert main(["maintain", "--cost-days", "1"]) == 0
    assert "session(s) costed" in capsys.readouterr().out
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("select sum(net_nano), min(status) from session_costs where session_id = 'CP-COST-1-1'"
                           ).fetchone()
    assert row is not None and row[1] == "costed"
    assert row[0] == 3_000_000_000  # 10 kWh at 0.30 EUR net, in nano-euros
