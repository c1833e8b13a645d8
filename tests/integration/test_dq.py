"""``flowbank dq``: the Great Expectations suites against the real TimescaleDB.

Every test validates its own past window (days in February 2004, which no other test writes), so
the rows other test modules store in the session database never land in a batch asserted on.
Great Expectations is imported and its context built once for the module (seconds).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from flowbank.cli import main
from warehouse.dq import (
    ASSETS,
    DEFAULT_LOOKBACK,
    SETTLE_LAG,
    AssetSpec,
    DqRunError,
    DqUnavailableError,
    Validator,
    run_dq,
    stored_results,
)

pytestmark = pytest.mark.integration

CLEAN_DAY = datetime(2004, 2, 10, tzinfo=UTC)
BAD_DAY = datetime(2004, 2, 12, tzinfo=UTC)
TOTAL_CHECKS = sum(len(spec.checks) for spec in ASSETS)
PASSWORD = "not-the-real-pw"

# (asset, expectation id) -> unexpected count, for the rows seeded on BAD_DAY.
EXPECTED_FAILURES = {
    ("meter_samples", "context_known"): 1,
    ("meter_samples", "energy_wh_non_negative"): 1,
    ("meter_samples", "power_w_range"): 1,
    ("meter_samples", "soc_pct_range"): 1,
    ("meter_samples", "voltage_v_plausible"): 1,
    ("meter_samples", "ts_not_in_future"): 1,
    ("meter_samples", "quality_flags_known"): 1,
    ("sessions", "state_known"): 1,
    ("sessions", "duration_s_non_negative"): 1,
    ("sessions", "flags_known"): 1,
    ("sessions", "one_open_session_per_connector"): 2,
    ("session_day_energy", "day_sum_matches_session"): 1,
    ("session_day_energy", "one_revision_per_session"): 1,
    ("session_day_energy", "day_energy_non_negative"): 1,
    ("status_events", "status_known"): 1,
    ("status_events", "ts_not_in_future"): 1,
    ("dead_letters", "reason_not_empty"): 1,
}


def _sample(conn: psycopg.Connection[Any], cp: str, ts: datetime, *, context: str = "Sample.Periodic",
            energy_wh: float = 1000.0, power_w: float = 7000.0, soc_pct: float = 50.0, voltage_v: float = 230.0,
            flags: tuple[str, ...] = (), ahead: timedelta = timedelta(0)) -> None:
    conn.execute(
        "insert into meter_samples (ts, charger_id, connector_id, context, energy_wh, power_w, soc_pct, voltage_v,"
        " quality_flags, received_at) values (%s, %s, 1, %s, %s, %s, %s, %s, %s, %s)",
        (ts, cp, context, energy_wh, power_w, soc_pct, voltage_v, list(flags), ts - ahead + timedelta(seconds=2)))


def _session(conn: psycopg.Connection[Any], session_id: str, started_at: datetime, *, state: str = "closed",
             energy_wh: float = 0.0, duration_s: float = 3600.0, flags: tuple[str, ...] = (),
             days: tuple[tuple[date, float, int], ...] = ()) -> None:
    charger_id, connector_id, transaction_id = session_id.split(":")
    ended_at = started_at + timedelta(hours=1) if state != "open" else None
    conn.execute(
        "insert into sessions (session_id, charger_id, connector_id, transaction_id, state, revision, started_at,"
        " ended_at, energy_wh, duration_s, flags) values (%s, %s, %s, %s, %s, 3, %s, %s, %s, %s, %s)",
        (session_id, charger_id, int(connector_id), transaction_id, state, started_at, ended_at, energy_wh,
         duration_s, list(flags)))
    for day, energy, revision in days:
        conn.execute("insert into session_day_energy (session_id, charger_id, day, energy_wh, revision)"
                     " values (%s, %s, %s, %s, %s)", (session_id, charger_id, day, energy, revision))


def _status(conn: psycopg.Connection[Any], cp: str, ts: datetime, status: str,
            ahead: timedelta = timedelta(0)) -> None:
    conn.execute("insert into status_events (ts, charger_id, connector_id, status, received_at)"
                 " values (%s, %s, 1, %s, %s)", (ts, cp, status, ts - ahead + timedelta(seconds=1)))


def _dead_letter(conn: psycopg.Connection[Any], received_at: datetime, reason: str) -> None:
    conn.execute("insert into dead_letters (ts, source, reason, raw, received_at) values (%s, 'bridge', %s, %s, %s)",
                 (received_at, reason, '{"not": "ocpp"}', received_at))


@pytest.fixture(scope="module")
def seeded(pg_dsn: str) -> str:
    d, h = CLEAN_DAY, timedelta(hours=1)
    with psycopg.connect(pg_dsn) as conn:
        cp = "DQ-CLEAN"
        _sample(conn, cp, d + 10 * h, energy_wh=1000)
        _sample(conn, cp, d + 10 * h + timedelta(minutes=1), energy_wh=1100, flags=("gap",))
        # Ahead of storage time, but the stream flagged it: known, not counted.
        _sample(conn, cp, d + 10 * h + timedelta(minutes=2), energy_wh=1200, flags=("clock_skew",), ahead=h)
        _session(conn, f"{cp}:1:t1", d + 10 * h, energy_wh=1500, flags=("gap",), days=((d.date(), 1500, 3),))
        _session(conn, f"{cp}:1:t2", d + 23 * h, energy_wh=1500,
                 days=((d.date(), 700, 3), (d.date() + timedelta(days=1), 800, 3)))
        _session(conn, f"{cp}:2:t3", d + 12 * h, state="open", flags=("no_energy_data",))
        _status(conn, cp, d + 10 * h, "Charging")
        _status(conn, cp, d + 11 * h, "Available")
        _dead_letter(conn, d + 9 * h, "not valid JSON")

        d, cp = BAD_DAY, "DQ-BAD"
        minute = timedelta(minutes=1)
        _sample(conn, cp, d + 8 * h)
        _sample(conn, cp, d + 8 * h + 1 * minute, energy_wh=-5)
        _sample(conn, cp, d + 8 * h + 2 * minute, soc_pct=120)
        _sample(conn, cp, d + 8 * h + 3 * minute, power_w=500_000)
        _sample(conn, cp, d + 8 * h + 4 * minute, voltage_v=230_000)  # millivolts stored as volts
        _sample(conn, cp, d + 8 * h + 5 * minute, flags=("bogus_flag",))
        _sample(conn, cp, d + 8 * h + 6 * minute, ahead=h)
        _sample(conn, cp, d + 8 * h + 7 * minute, ahead=h, flags=("clock_skew",))
        _sample(conn, cp, d + 8 * h + 8 * minute, context="Weird.Context")
        _session(conn, f"{cp}:1:sum", d + 8 * h, energy_wh=10_000,
                 days=((d.date(), 4000, 3), (d.date() + timedelta(days=1), 5000, 3)))
        _session(conn, f"{cp}:2:a", d + 9 * h, state="open")
        _session(conn, f"{cp}:2:b", d + 10 * h, state="open")
        _session(conn, f"{cp}:3:x", d + 11 * h, state="finished", duration_s=-5, flags=("bogus_flag",))
        _session(conn, f"{cp}:4:y", d + 12 * h, energy_wh=1000,
                 days=((d.date(), 1100, 2), (d.date() + timedelta(days=1), -100, 1)))
        _status(conn, cp, d + 8 * h, "Exploded")
        _status(conn, cp, d + 9 * h, "Available", ahead=h)
        _dead_letter(conn, d + 9 * h, "")
    return pg_dsn


@pytest.fixture(scope="module")
def validator(pg_dsn: str) -> Iterator[Validator]:
    with Validator(pg_dsn) as v:
        yield v


def _day(start: datetime) -> dict[str, datetime]:
    return {"since": start, "until": start + timedelta(days=1)}


def _stored(dsn: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def test_a_clean_batch_passes_and_every_result_is_stored(seeded: str, validator: Validator) -> None:
    now = CLEAN_DAY + timedelta(days=3)
    run = run_dq(seeded, **_day(CLEAN_DAY), now=now, validator=validator)

    assert run.success, [(o.asset, o.expectation_id, o.observed) for o in run.outcomes if not o.success]
    assert {a.asset: a.rows for a in run.assets} == {
        "meter_samples": 3, "sessions": 3, "session_day_energy": 3, "status_events": 2, "dead_letters": 1}
    assert all(a.failed == 0 and a.passed == len(a.outcomes) and a.worst is None for a in run.assets)
    assert len(run.outcomes) == TOTAL_CHECKS

    rows = _stored(seeded, "select asset, expectation_id, expectation_type, suite, success, ran_at, kwargs, observed"
                           " from data_quality_results where run_id = %s", run.run_id)
    assert len(rows) == TOTAL_CHECKS
    assert all(success and ran_at == now for _, _, _, _, success, ran_at, _, _ in rows)
    soc = next(r for r in rows if r[:2] == ("meter_samples", "soc_pct_range"))
    assert soc[2:4] == ("expect_column_values_to_be_between", "warehouse.meter_samples")
    assert soc[6] == {"column": "soc_pct", "min_value": 0, "max_value": 100}
    assert soc[7]["unexpected_count"] == 0 and soc[7]["element_count"] == 3
    windows = _stored(seeded, "select asset, since, until, row_count, failed, incremental from data_quality_runs"
                              " where run_id = %s", run.run_id)
    assert {w[0] for w in windows} == {spec.name for spec in ASSETS}
    assert all(w[1:3] == (CLEAN_DAY, CLEAN_DAY + timedelta(days=1)) and w[4] == 0 and not w[5] for w in windows)


def test_storing_is_idempotent_per_run_id(seeded: str, validator: Validator) -> None:
    now = CLEAN_DAY + timedelta(days=3)
    first = run_dq(seeded, **_day(CLEAN_DAY), now=now, run_id="fixed-run-id", validator=validator)
    again = run_dq(seeded, **_day(CLEAN_DAY), now=now + timedelta(hours=1), run_id="fixed-run-id",
                   validator=validator)
    assert first.run_id == again.run_id == "fixed-run-id"
    rows = _stored(seeded, "select count(*), min(ran_at), max(ran_at) from data_quality_results where run_id = %s",
                   "fixed-run-id")
    assert rows == [(TOTAL_CHECKS, now, now)]  # the second store changed nothing
    assert _stored(seeded, "select count(*) from data_quality_runs where run_id = %s", "fixed-run-id") == [(5,)]


def test_seeded_bad_rows_fail_the_right_expectations_with_the_right_counts(seeded: str,
                                                                           validator: Validator) -> None:
    run = run_dq(seeded, **_day(BAD_DAY), now=BAD_DAY + timedelta(days=3), validator=validator)

    failures = {(o.asset, o.expectation_id): o.unexpected_count for o in run.outcomes if not o.success}
    assert failures == EXPECTED_FAILURES
    assert not run.success and run.failed == len(EXPECTED_FAILURES)
    by_id = {(o.asset, o.expectation_id): o for o in run.outcomes}
    assert by_id["meter_samples", "soc_pct_range"].observed["partial_unexpected_list"] == [120.0]
    assert by_id["meter_samples", "energy_wh_non_negative"].observed["partial_unexpected_list"] == [-5.0]
    assert by_id["meter_samples", "quality_flags_known"].observed["partial_unexpected_list"] == ["bogus_flag"]
    assert by_id["meter_samples", "ts_not_in_future"].observed["partial_unexpected_list"] == [3598.0]
    assert by_id["session_day_energy", "day_sum_matches_session"].observed["partial_unexpected_list"] == [-1000.0]
    assert by_id["sessions", "state_known"].observed["partial_unexpected_list"] == ["finished"]
    assert by_id["status_events", "status_known"].observed["partial_unexpected_list"] == ["Exploded"]
    sessions = next(a for a in run.assets if a.asset == "sessions")
    assert sessions.worst is not None and sessions.worst.expectation_id == "one_open_session_per_connector"

    # Queryable: plain SQL over the stored results, and the read function the CLI uses.
    failed = _stored(seeded, "select asset, expectation_id, (observed->>'unexpected_count')::int"
                             " from data_quality_results where run_id = %s and not success", run.run_id)
    assert {(a, e): n for a, e, n in failed} == EXPECTED_FAILURES
    latest = stored_results(seeded, last=1, asset="status_events", failed_only=True)
    assert {(r.run_id, r.outcome.expectation_id) for r in latest} == {
        (run.run_id, "status_known"), (run.run_id, "ts_not_in_future")}


def test_default_window_continues_where_the_last_incremental_run_ended(seeded: str, validator: Validator) -> None:
    # A "present" in the seeded month, after the seeded days, so the batches hold no test's rows.
    now = datetime(2004, 2, 20, 12, tzinfo=UTC)
    first = run_dq(seeded, since=None, until=None, now=now, validator=validator)
    assert {(a.since, a.until) for a in first.assets} == {(now - SETTLE_LAG - DEFAULT_LOOKBACK, now - SETTLE_LAG)}

    # An ad-hoc re-check of a past window does not move where the next incremental batch starts.
    run_dq(seeded, since=now - timedelta(days=5), until=now - timedelta(days=4), now=now, validator=validator)
    later = now + timedelta(minutes=30)
    second = run_dq(seeded, since=None, until=None, now=later, validator=validator)
    assert {(a.since, a.until) for a in second.assets} == {(now - SETTLE_LAG, later - SETTLE_LAG)}


def test_a_suite_that_cannot_be_evaluated_is_an_error_not_a_pass(seeded: str, validator: Validator) -> None:
    broken = AssetSpec("meter_samples", "ts", sql.SQL(
        "select ts from meter_samples where ts >= {since} and ts < {until}"), ASSETS[0].checks)
    with pytest.raises(DqRunError, match=r"meter_samples.*could not be evaluated"):
        validator.validate(broken, CLEAN_DAY, CLEAN_DAY + timedelta(days=1))


def test_an_unreachable_database_is_an_error(seeded: str) -> None:
    with pytest.raises(DqUnavailableError, match="unavailable"):
        run_dq(f"postgresql://flowbank:{PASSWORD}@127.0.0.1:1/flowbank", since=None, until=None,
               now=datetime.now(UTC))


# ----------------------------------------------------------------------------------------- CLI


@pytest.fixture()
def cli_env(monkeypatch: pytest.MonkeyPatch, seeded: str) -> str:
    for name in list(os.environ):
        if name.startswith("FLOWBANK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FLOWBANK_PG_DSN", seeded)
    monkeypatch.setattr(logging.Formatter, "converter", logging.Formatter.converter)
    return seeded


def _window_args(day: datetime) -> list[str]:
    return ["--since", day.isoformat(), "--until", (day + timedelta(days=1)).isoformat()]


def test_cli_prints_a_table_and_exits_0_when_everything_passed(cli_env: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dq", *_window_args(CLEAN_DAY)]) == 0
    out = capsys.readouterr().out
    assert "batch 2004-02-10 00:00:00Z .. 2004-02-11 00:00:00Z" in out
    assert re.search(r"^meter_samples +3 +11 +11 +0 +-$", out, re.MULTILINE), out
    assert out.rstrip().endswith(f"OK: {TOTAL_CHECKS} expectations passed")


def test_cli_exits_1_naming_the_worst_failure_then_lists_the_results(cli_env: str,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dq", "--since", "2004-02-12", "--until", "2004-02-13T00:00:00+00:00"]) == 1
    out = capsys.readouterr().out
    assert f"FAILED: {len(EXPECTED_FAILURES)} of {TOTAL_CHECKS} expectations" in out
    assert re.search(r"^sessions .* one_open_session_per_connector: 2 of 2 rows \(100\.0%\)", out, re.MULTILINE), out
    assert re.search(r"^dead_letters .* reason_not_empty: 1 of 1 rows \(100\.0%\), e\.g\. 0$", out, re.MULTILINE), out

    assert main(["dq", "--results", "--last", "1", "--failed"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ran_at", "run", "asset", "expectation", "column", "result", "observed"]
    assert len(lines) == 1 + len(EXPECTED_FAILURES) and all(" FAIL " in line for line in lines[1:])
    assert any("soc_pct_range" in line and "e.g. 120.0" in line for line in lines)


def test_cli_reports_an_unreachable_database_in_one_line(cli_env: str, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FLOWBANK_PG_DSN", f"postgresql://flowbank:{PASSWORD}@127.0.0.1:1/flowbank")
    for argv in (["dq"], ["dq", "--results"]):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and err.startswith("flowbank dq: ")
        assert "unavailable" in err and PASSWORD not in err


def test_cli_refuses_contradictory_options(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dq", "--every", "60", "--until", "2004-02-13"]) == 2
    assert main(["dq", "--results", "--since", "2004-02-13"]) == 2
    assert main(["dq", "--since", "2004-02-13", "--until", "2004-02-12"]) == 2
    assert capsys.readouterr().err.count("flowbank dq: ") == 3


def test_cli_every_validates_consecutive_batches_until_sigterm(cli_env: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    started = datetime.now(UTC)
    handler_before = signal.getsignal(signal.SIGTERM)
    with psycopg.connect(cli_env, autocommit=True) as conn:
        def incremental_runs() -> list[tuple[datetime, datetime]]:
            return conn.execute("select since, until from data_quality_runs where asset = 'meter_samples'"
                                " and incremental and ran_at >= %s order by until", (started,)).fetchall()

        def stop_after_two_runs() -> None:
            deadline = time.monotonic() + 120
            while len(incremental_runs()) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGTERM)

        stopper = threading.Thread(target=stop_after_two_runs, daemon=True)
        stopper.start()
        since = started - timedelta(hours=1)
        assert main(["dq", "--every", "0.2", "--since", since.isoformat()]) == 0
        stopper.join()
        runs = incremental_runs()
    assert signal.getsignal(signal.SIGTERM) == handler_before  # the handler was put back
    assert len(runs) >= 2
    assert runs[0][0] == since
    assert all(later[0] == earlier[1] for earlier, later in itertools.pairwise(runs))
    assert capsys.readouterr().out.count("data quality run ") == len(runs)
