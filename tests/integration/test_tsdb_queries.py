"""warehouse.queries over rows stored by the writer; failures are errors, never empty results."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import polars as pl
import psycopg
import pytest

from control.contract import DeadLetter, MeterSample, SampleContext
from control.records import (
    FLAG_DESCRIPTIONS,
    LiveState,
    LiveStatus,
    QualityFlag,
    SessionDayEnergy,
    SessionRecord,
    SessionState,
)
from warehouse import queries
from warehouse.tsdb_writer import TimescaleWriter

pytestmark = pytest.mark.integration

T0 = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)
D1, D2 = date(2026, 4, 1), date(2026, 4, 2)


@pytest.fixture()
def cp() -> str:
    return f"CP-{secrets.token_hex(4)}"


@pytest.fixture()
def conn(pg_dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        yield connection


def write(dsn: str, batch: list[object]) -> None:
    with TimescaleWriter(dsn) as writer:
        writer.write(batch)


def record(cp: str, n: int, start: datetime, *, end: datetime | None, energy: float,
           flags: tuple[QualityFlag, ...] = ()) -> SessionRecord:
    return SessionRecord(f"{cp}-{n}", cp, 1, f"tx{n}", start, SessionState.CLOSED if end else SessionState.OPEN,
                         revision=1, energy_wh=energy, ended_at=end, flags=flags, site_id="SITE-Q")


def test_sessions_for_a_charger_carry_excluded_and_reasons(conn: psycopg.Connection[tuple[object, ...]],
                                                           pg_dsn: str, cp: str) -> None:
    early = record(cp, 1, T0 - timedelta(days=2), end=T0 - timedelta(days=2, hours=-1), energy=5.0)
    bad = record(cp, 2, T0, end=T0 + timedelta(hours=1), energy=9.0,
                 flags=(QualityFlag.NON_MONOTONIC_REGISTER, QualityFlag.GAP))
    running = record(cp, 3, T0 + timedelta(hours=2), end=None, energy=1.0)
    write(pg_dsn, [early, bad, running, record(cp + "x", 9, T0, end=None, energy=1.0)])

    found = queries.sessions_for_charger(conn, cp, T0 - timedelta(hours=1), T0 + timedelta(days=1))
    assert [row.record for row in found] == [bad, running]
    assert [row.excluded for row in found] == [True, False]
    assert found[0].reasons == (FLAG_DESCRIPTIONS[QualityFlag.NON_MONOTONIC_REGISTER],
                                FLAG_DESCRIPTIONS[QualityFlag.GAP])
    assert found[1].reasons == ()
    # An open session overlaps every later window.
    assert [r.record.session_id for r in queries.sessions_for_charger(
        conn, cp, T0 + timedelta(days=5), T0 + timedelta(days=6))] == [running.session_id]


def test_live_state_for_some_or_all_chargers(conn: psycopg.Connection[tuple[object, ...]], pg_dsn: str,
                                             cp: str) -> None:
    states = [LiveState(cp, 1, LiveStatus.CHARGING, T0, power_w=7000.0, session_id="S"),
              LiveState(cp, 2, LiveStatus.OFFLINE, T0, online=False),
              LiveState(cp + "b", 1, LiveStatus.IDLE, T0)]
    write(pg_dsn, list(states))
    assert queries.live_state(conn, [cp]) == states[:2]
    everything = queries.live_state(conn)
    assert set(states) <= set(everything)
    assert queries.live_state(conn, []) == []


def test_recent_dead_letters_newest_first(conn: psycopg.Connection[tuple[object, ...]], pg_dsn: str,
                                          cp: str) -> None:
    letters = [DeadLetter(T0 + timedelta(minutes=i), "pipeline", f"reason {i}", f"raw {i}", charger_id=cp)
               for i in range(3)]
    write(pg_dsn, list(letters))
    found = queries.recent_dead_letters(conn, T0 + timedelta(minutes=1), charger_id=cp)
    assert [(d.reason, d.raw, d.ts) for d in found] == [("reason 2", "raw 2", letters[2].ts),
                                                        ("reason 1", "raw 1", letters[1].ts)]
    assert len(queries.recent_dead_letters(conn, T0, charger_id=cp, limit=1)) == 1


def test_daily_energy_leaves_out_excluded_sessions(conn: psycopg.Connection[tuple[object, ...]], pg_dsn: str,
                                                   cp: str) -> None:
    good = record(cp, 1, T0, end=T0 + timedelta(hours=20), energy=30.0)
    bad = record(cp, 2, T0, end=T0 + timedelta(hours=1), energy=99.0, flags=(QualityFlag.IMPLAUSIBLE_POWER,))
    write(pg_dsn, [good, bad,
                   SessionDayEnergy(good.session_id, cp, D1, 10.0, 1),
                   SessionDayEnergy(good.session_id, cp, D2, 20.0, 1),
                   SessionDayEnergy(bad.session_id, cp, D1, 99.0, 1),
                   SessionDayEnergy(f"{cp}-unknown", cp, D1, 1000.0, 1)])  # no session row: flags unknown
    frame = queries.daily_energy(conn, D1, D2, charger_ids=[cp])
    assert frame.to_dicts() == [{"day": D1, "charger_id": cp, "energy_wh": 10.0, "sessions": 1},
                                {"day": D2, "charger_id": cp, "energy_wh": 20.0, "sessions": 1}]
    assert queries.daily_energy(conn, D1, D1, site_id="SITE-Q", charger_ids=[cp])["energy_wh"].to_list() == [10.0]
    empty = queries.daily_energy(conn, date(2001, 1, 1), date(2001, 1, 2))
    assert empty.is_empty() and empty.schema == queries.DAILY_ENERGY_SCHEMA


def test_meter_samples_for_a_session(conn: psycopg.Connection[tuple[object, ...]], pg_dsn: str, cp: str) -> None:
    closed = record(cp, 1, T0, end=T0 + timedelta(minutes=2), energy=20.0)
    samples = [MeterSample(cp, 1, T0 + timedelta(minutes=m), energy_wh=10.0 * m) for m in range(-1, 4)]
    write(pg_dsn, [closed, *samples, MeterSample(cp, 2, T0, energy_wh=1.0),
                   MeterSample(cp, 1, T0 + timedelta(minutes=2), SampleContext.TRANSACTION_END, energy_wh=20.0)])
    frame = queries.meter_samples_for_session(conn, closed.session_id)
    assert frame.schema == queries.SAMPLES_SCHEMA
    assert frame.select("energy_wh", "context").rows() == [
        (0.0, "Sample.Periodic"), (10.0, "Sample.Periodic"), (20.0, "Sample.Periodic"), (20.0, "Transaction.End")]
    assert frame["ts"].min() == T0
    with pytest.raises(queries.NotFoundError, match="no session"):
        queries.meter_samples_for_session(conn, f"{cp}-missing")
    open_session = record(cp, 2, T0 + timedelta(minutes=3), end=None, energy=0.0)
    write(pg_dsn, [open_session])
    assert queries.meter_samples_for_session(conn, open_session.session_id).height == 1
    assert isinstance(frame, pl.DataFrame)


def test_a_database_error_is_never_an_empty_result(pg_dsn: str, cp: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as broken_schema:
        broken_schema.execute("set search_path = nowhere")
        with pytest.raises(queries.QueryError, match="sessions of"):
            queries.sessions_for_charger(broken_schema, cp, T0, T0)
        with pytest.raises(queries.QueryError, match="daily energy"):
            queries.daily_energy(broken_schema, D1, D2)
    with psycopg.connect(pg_dsn) as in_transaction:  # not autocommit: the failure must not poison it
        with pytest.raises(queries.QueryError):
            queries.live_state(in_transaction.execute("set search_path = nowhere").connection)
        in_transaction.execute("reset search_path")
        assert queries.live_state(in_transaction, [cp]) == []
    closed = psycopg.connect(pg_dsn, autocommit=True)
    closed.close()
    with pytest.raises(queries.WarehouseUnavailableError, match="unavailable"):
        queries.live_state(closed)
    with pytest.raises(queries.WarehouseUnavailableError):
        queries.recent_dead_letters(closed, T0)
