"""The Parquet lake and its DuckDB views (warehouse.analytics*): schemas and round trips,
one row per key, empty tables, compaction, the flush policy and read-only connections."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from control.contract import (
    Alert,
    AlertState,
    ConnectionEvent,
    ConnectionKind,
    ConnectorState,
    DeadLetter,
    MeterSample,
    OcppVersion,
    RateUnit,
    SampleContext,
    Setpoint,
    Severity,
    StatusChanged,
)
from control.records import ChargingMode, QualityFlag, SessionDayEnergy, SessionRecord, SessionState
from warehouse.analytics import (
    AnalyticsError,
    AnalyticsReader,
    LakeBuffer,
    LakeLockedError,
    ParquetLake,
    SchemaMismatchError,
    ViewsDatabaseError,
    build_views_db,
    ensure_views_db,
    open_readonly,
    to_arrow,
)
from warehouse.analytics_schema import LAKE_SEQ, TABLES, UnknownTableError

T0 = datetime(2024, 5, 1, 23, 59, 30, tzinfo=UTC)


def wall(*fields: int) -> datetime:
    """The plain TIMESTAMP DuckDB returns for a UTC instant: UTC wall time, no zone."""
    return datetime(*fields, tzinfo=UTC).replace(tzinfo=None)  # type: ignore[misc]


class Clock:
    def __init__(self, start: datetime = datetime(2024, 6, 1, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture()
def paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "lake", tmp_path / "analytics.duckdb"


@pytest.fixture()
def lake(paths: tuple[Path, Path]) -> Iterator[ParquetLake]:
    # Without views_db: query() brings the views up to date once, where the pipeline's writer
    # would rebuild them at start and at each table's first file (~0.4 s per build).
    with ParquetLake(paths[0]) as writer:
        yield writer


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    ensure_views_db(db.parent / "lake", db)
    with open_readonly(db) as con:
        return con.execute(sql).fetchall()


def _session(revision: int, energy: float, **kw: Any) -> SessionRecord:
    base: dict[str, Any] = {"session_id": "s1", "charger_id": "CP1", "connector_id": 1, "transaction_id": "t1",
                            "started_at": T0, "state": SessionState.OPEN, "revision": revision, "energy_wh": energy}
    return SessionRecord(**(base | kw))


# One full object per table, with every optional field set, and the row the view must show.
BERLIN = timezone(timedelta(hours=2))
EXAMPLES: dict[str, tuple[Any, dict[str, Any]]] = {
    "meter_samples": (
        MeterSample("CP1", 2, T0, SampleContext.TRANSACTION_END, "tx9", 1234.5, 7400.0, 32.0, 10.0, 11.0, 11.0, 32.0,
                    231.5, 81.0, 35.5, ("unit_missing_assumed_wh",), received_at=T0 + timedelta(seconds=1)),
        {"ts": wall(2024, 5, 1, 23, 59, 30), "context": "Transaction.End", "quirks": ["unit_missing_assumed_wh"],
         "bridge_received_at": wall(2024, 5, 1, 23, 59, 31), "quality_flags": [], "session_id": None,
         "day": date(2024, 5, 1), "soc_pct": 81.0, "current_l3_a": 11.0}),
    "status_events": (
        StatusChanged("CP1", 1, T0, ConnectorState.FAULTED, "GroundFailure", "E42", "hot"),
        {"status": "Faulted", "error_code": "GroundFailure", "vendor_error_code": "E42", "info": "hot"}),
    "connection_events": (
        ConnectionEvent("CP1", T0, ConnectionKind.BOOTED, OcppVersion.V201, "power on", 60, "bridge-1"),
        {"kind": "booted", "ocpp_version": "2.0.1", "heartbeat_interval_s": 60, "bridge_id": "bridge-1"}),
    "dead_letters": (
        DeadLetter(T0, "bridge", "not JSON", "{\x00 oops", "CP1", "flowbank/v1/ev/CP1/x"),
        {"raw": "{\x00 oops", "topic": "flowbank/v1/ev/CP1/x"}),
    "setpoints": (
        Setpoint("d1", "S1", "CP1", 1, T0, 11000.0, RateUnit.WATTS, "site limit", 3, 22000.0),
        {"limit_w": 11000.0, "limit_a": None, "previous_limit_w": 22000.0, "previous_limit_a": None, "phases": 3}),
    "alerts": (
        Alert("a1", "charger_offline", Severity.ERROR, T0, "gone", AlertState.ACKNOWLEDGED, "CP1", "S1", 3),
        {"severity": "error", "state": "acknowledged", "count": 3}),
    "sessions": (
        _session(4, 5000.0, ended_at=T0 + timedelta(hours=1), id_tag="TAG", meter_start_wh=10.0, meter_stop_wh=5010.0,
                 peak_power_w=7000.0, avg_power_w=5000.0, duration_s=3600.0, charging_s=3000.0, idle_s=600.0,
                 stop_reason="EVDisconnected", mode=ChargingMode.ECO, flags=(QualityFlag.ABANDONED, QualityFlag.GAP),
                 sample_count=60, last_sample_at=T0 + timedelta(minutes=59), site_id="S1", state=SessionState.CLOSED),
        {"state": "closed", "mode": "eco", "flags": ["abandoned", "gap"], "excluded": True, "energy_kwh": 5.0,
         "ended_at": wall(2024, 5, 2, 0, 59, 30)}),
    "session_day_energy": (
        SessionDayEnergy("s1", "CP1", date(2024, 5, 2), 1500.0, 4),
        {"day": date(2024, 5, 2), "energy_wh": 1500.0, "revision": 4}),
    "data_quality": (
        SimpleNamespace(charger_id="CP1", connector_id=1, ts=T0, context="Sample.Periodic", session_id="s1",
                        flags=(QualityFlag.CLOCK_SKEW,)),
        {"quality_flags": ["clock_skew"], "session_id": "s1"}),
    "data_quality_results": (
        {"ran_at": T0, "run_id": "r1", "asset": "meter_samples", "expectation_id": "e1",
         "expectation_type": "expect_column_values_to_not_be_null", "suite": "samples", "column_name": "power_w",
         "kwargs": {"column": "power_w"}, "success": False, "observed": {"unexpected_count": 2}},
        {"kwargs": '{"column": "power_w"}', "observed": '{"unexpected_count": 2}', "success": False}),
    "session_costs": (
        {"session_id": "CP1:1:tx9", "charger_id": "CP1", "day": T0.date(), "site_id": "S1", "user_id": "u1",
         "cost_centre": "CC-1", "session_revision": 3, "cost_revision": 7, "tariff_id": "t1", "currency": "EUR",
         "status": "costed", "energy_wh": 7000.0, "costed_energy_wh": 7000.0, "net_nano": 2_170_000_000,
         "vat_nano": 412_300_000, "computed_at": T0},
        {"net_nano": 2_170_000_000, "status": "costed", "cost_revision": 7}),
}


def test_every_table_has_an_example() -> None:
    assert sorted(EXAMPLES) == sorted(TABLES)


@pytest.mark.parametrize("table", sorted(EXAMPLES))
def test_round_trip_through_a_parquet_file_and_the_view(lake: ParquetLake, paths: tuple[Path, Path],
                                                        table: str) -> None:
    obj, expected = EXAMPLES[table]
    rows = to_arrow(table, [obj])
    assert rows.schema == TABLES[table].schema
    written = lake.append(table, rows)
    assert len(written) == 1 and written[0].parent.parent == paths[0] / table
    ensure_views_db(*paths)
    with open_readonly(paths[1]) as con:
        cursor = con.execute(f"select * from {table}")  # noqa: S608 - table names from TABLES
        names = [d[0] for d in cursor.description or []]
        (row,) = cursor.fetchall()
    got = dict(zip(names, row, strict=True))
    assert {k: got[k] for k in expected} == expected
    for column in ("ts", "started_at", "ran_at"):
        if column in got:
            assert got[column] == wall(2024, 5, 1, 23, 59, 30)  # UTC wall time, no zone


def test_aware_datetimes_in_any_offset_are_stored_as_utc(lake: ParquetLake, paths: tuple[Path, Path]) -> None:
    lake.append("dead_letters", to_arrow("dead_letters", [{"ts": T0.astimezone(BERLIN), "source": "x",
                                                           "reason": "r", "raw": ""}]))
    assert query(paths[1], "select ts, day from dead_letters") == [(wall(2024, 5, 1, 23, 59, 30),
                                                                    date(2024, 5, 1))]


@pytest.mark.parametrize(("rows", "message"), [
    ([{"ts": wall(2024, 5, 1), "source": "x", "reason": "r", "raw": ""}], "naive datetime"),
    ([{"ts": T0, "source": "x", "reason": "r"}], "dead_letters.raw: required"),
    ([{"ts": T0, "source": "x", "reason": "r", "raw": "", "extra": 1}], "unknown columns"),
    ([{"ts": "yesterday", "source": "x", "reason": "r", "raw": ""}], "dead_letters.ts"),
    ([MeterSample("CP1", 1, T0)], "cannot store a MeterSample"),
])
def test_bad_rows_are_refused_with_the_column_named(rows: list[Any], message: str) -> None:
    with pytest.raises(SchemaMismatchError, match=message):
        to_arrow("dead_letters", rows)


def test_unknown_tables_are_refused(lake: ParquetLake) -> None:
    with pytest.raises(UnknownTableError, match="unknown lake table 'nope'"):
        to_arrow("nope", [])
    with pytest.raises(UnknownTableError):
        lake.append("nope", pa.table({"a": [1]}))


def test_polars_frames_are_cast_to_the_schema_and_zones_converted(lake: ParquetLake, paths: tuple[Path, Path]) -> None:
    frame = pl.DataFrame({"ts": [T0.astimezone(BERLIN)], "source": ["x"], "reason": ["r"], "raw": ["{}"],
                          "charger_id": [None], "topic": [None]})
    frame = frame.with_columns(pl.col("ts").dt.convert_time_zone("Europe/Berlin"))
    lake.append("dead_letters", frame)
    assert query(paths[1], "select ts, charger_id from dead_letters") == [(wall(2024, 5, 1, 23, 59, 30), None)]
    with pytest.raises(SchemaMismatchError, match=r"missing \['topic'\], extra \['oops'\]"):
        lake.append("dead_letters", frame.drop("topic").with_columns(oops=pl.lit(1)))
    with pytest.raises(SchemaMismatchError, match="source"):
        lake.append("dead_letters", frame.with_columns(source=pl.lit(None, pl.String)))


def test_files_are_immutable_day_partitions_with_growing_ids(paths: tuple[Path, Path]) -> None:
    clock = Clock()
    with ParquetLake(paths[0], clock=clock) as lake:
        samples = [MeterSample("CP1", 1, T0 + timedelta(seconds=20 * i), power_w=1.0) for i in range(4)]
        first = lake.append("meter_samples", to_arrow("meter_samples", samples))
        clock.now -= timedelta(hours=1)  # the clock stepping back must not reorder the ids
        second = lake.append("meter_samples", to_arrow("meter_samples", samples[:1]))
    assert [p.parent.name for p in first] == ["day=2024-05-01", "day=2024-05-02"]
    ids = [int(p.stem.removeprefix("part-")) for p in [*first, *second]]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert ids[0] == int(datetime(2024, 6, 1, tzinfo=UTC).timestamp() * 1_000_000)
    stored = pq.read_table(first[0])
    assert "day" not in stored.column_names and stored.column(LAKE_SEQ).to_pylist() == [ids[0]] * 2
    assert not list(paths[0].rglob("*.partial"))
    with ParquetLake(paths[0], clock=Clock(datetime(2020, 1, 1, tzinfo=UTC))) as reopened:  # ids survive a restart
        (third,) = reopened.append("meter_samples", to_arrow("meter_samples", samples[:1]))
    assert int(third.stem.removeprefix("part-")) == ids[-1] + 1


def test_one_writer_only(paths: tuple[Path, Path]) -> None:
    with ParquetLake(paths[0]), pytest.raises(LakeLockedError, match="one writer only"):
        ParquetLake(paths[0])
    writer = ParquetLake(paths[0])  # free again once the first one closed
    writer.close()
    with pytest.raises(AnalyticsError, match="closed"):
        writer.append("meter_samples", to_arrow("meter_samples", []))


def test_a_crash_mid_write_leaves_nothing_visible(paths: tuple[Path, Path]) -> None:
    directory = paths[0] / "meter_samples" / "day=2024-05-01"
    directory.mkdir(parents=True)
    (directory / ".part-00000000000000000001.parquet.partial").write_bytes(b"PAR1 half a file")
    build_views_db(paths[0], paths[1])
    assert query(paths[1], "select count(*) from meter_samples") == [(0,)]
    with ParquetLake(paths[0]):
        assert not list(directory.iterdir())  # the writer cleans up after a crash


# ---------------------------------------------------------------- one row per key


def test_the_newest_session_revision_wins_whatever_the_arrival_order(lake: ParquetLake,
                                                                     paths: tuple[Path, Path]) -> None:
    for revision, energy in ((1, 100.0), (3, 300.0), (2, 200.0), (3, 999.0)):  # late rev 2, then a rev-3 replay
        lake.append("sessions", to_arrow("sessions", [_session(revision, energy)]))
    assert query(paths[1], "select revision, energy_wh from sessions") == [(3, 300.0)]
    assert query(paths[1], "select revision from session_revisions order by 1") == [(1,), (2,), (3,)]  # once each


def test_replayed_events_count_once_and_the_first_copy_stays(lake: ParquetLake, paths: tuple[Path, Path]) -> None:
    samples = [MeterSample("CP1", 1, T0 + timedelta(seconds=i), power_w=float(i)) for i in range(10)]
    lake.append("meter_samples", to_arrow("meter_samples", samples))
    lake.append("meter_samples", to_arrow("meter_samples", samples[5:]))  # at-least-once replay
    changed = MeterSample("CP1", 1, T0, power_w=-1.0)  # same key, other value: like ON CONFLICT DO NOTHING
    lake.append("meter_samples", to_arrow("meter_samples", [changed]))
    assert query(paths[1], "select count(*), sum(power_w) from meter_samples") == [(10, 45.0)]


def test_the_alert_view_follows_ts_count_then_state(lake: ParquetLake, paths: tuple[Path, Path]) -> None:
    def alert(state: AlertState, count: int, ts: datetime = T0) -> Alert:
        return Alert("a1", "offline", Severity.WARNING, ts, "m", state, count=count)

    for item in (alert(AlertState.RESOLVED, 1), alert(AlertState.OPEN, 1), alert(AlertState.ACKNOWLEDGED, 1)):
        lake.append("alerts", to_arrow("alerts", [item]))
    assert query(paths[1], "select state, count from alerts") == [("resolved", 1)]
    lake.append("alerts", to_arrow("alerts", [alert(AlertState.OPEN, 2)]))  # fired again
    assert query(paths[1], "select state, count from alerts") == [("open", 2)]


def test_a_newer_day_split_replaces_the_whole_set(lake: ParquetLake, paths: tuple[Path, Path]) -> None:
    lake.append("session_day_energy", to_arrow("session_day_energy", [
        SessionDayEnergy("s1", "CP1", date(2024, 5, 1), 100.0, 1),
        SessionDayEnergy("s1", "CP1", date(2024, 5, 2), 50.0, 1)]))
    lake.append("session_day_energy", to_arrow("session_day_energy", [  # corrected start: one day only
        SessionDayEnergy("s1", "CP1", date(2024, 5, 2), 150.0, 2)]))
    assert query(paths[1], "select day, energy_wh from session_day_energy") == [(date(2024, 5, 2), 150.0)]


# ---------------------------------------------------------------- the views database


def test_an_empty_lake_answers_every_view_with_typed_empty_results(paths: tuple[Path, Path]) -> None:
    build_views_db(paths[0], paths[1])  # the lake directory does not even exist yet
    with open_readonly(paths[1]) as con:
        views = [r[0] for r in con.execute("select view_name from duckdb_views() where not internal "
                                           "and not starts_with(view_name, '_')").fetchall()]
        assert len(views) == len(TABLES) + 15
        for view in views:
            assert con.execute(f"select * from {view}").fetchall() == [] or view in ("quality_flags",  # noqa: S608
                                                                                    "lake_freshness")
        types = dict(con.execute("select column_name, data_type from duckdb_columns() "
                                 "where table_name = 'sessions'").fetchall())
    assert types["started_at"] == "TIMESTAMP" and types["flags"] == "VARCHAR[]" and types["energy_kwh"] == "DOUBLE"


def test_new_files_show_up_without_rebuilding_the_views(paths: tuple[Path, Path]) -> None:
    _, db = paths
    with ParquetLake(paths[0], views_db=db) as lake:  # the pipeline's way: the writer keeps the views current
        identity = db.stat().st_ino
        with open_readonly(db) as con:  # a reader that stays open ...
            for revision in (1, 2):
                lake.append("sessions", to_arrow("sessions", [_session(revision, 1.0)]))
                # ... sees each new file at once, and the views file was never replaced
                assert con.execute("select revision from sessions").fetchall() == [(revision,)]
        assert db.stat().st_ino == identity
        assert ensure_views_db(paths[0], db) is False


def test_every_table_has_an_empty_anchor_file_sorting_first(paths: tuple[Path, Path]) -> None:
    with ParquetLake(paths[0]):
        pass
    for name, spec in TABLES.items():
        (first, *_rest) = sorted((paths[0] / name).glob("day=*/*.parquet"))
        assert first.relative_to(paths[0]).as_posix() == f"{name}/day=0001-01-01/part-{0:020d}.parquet"
        assert pq.read_metadata(first).num_rows == 0
        assert pq.read_schema(first).remove_metadata().equals(spec.file_schema)
    with ParquetLake(paths[0]) as lake:
        assert lake.days("sessions") == []
        with pytest.raises(SchemaMismatchError, match="reserved for the anchor"):
            lake.append("session_day_energy", to_arrow("session_day_energy", [
                SessionDayEnergy("s", "CP1", date(1, 1, 1), 1.0, 1)]))


def test_a_reader_keeps_working_while_the_views_file_is_replaced(paths: tuple[Path, Path]) -> None:
    build_views_db(paths[0], paths[1])
    reader = AnalyticsReader(paths[1])
    old = open_readonly(paths[1])
    with ParquetLake(paths[0], views_db=paths[1]) as lake:
        lake.append("sessions", to_arrow("sessions", [_session(1, 1.0)]))
    assert old.execute("select count(*) from sessions").fetchall() == [(0,)]  # the old file: still consistent
    cursor = reader.cursor()
    assert cursor.execute("select count(*) from sessions").fetchall() == [(1,)]  # reopened on change
    assert cursor.execute("select current_setting('TimeZone')").fetchall() == [("UTC",)]
    with pytest.raises(duckdb.Error):
        cursor.execute("set enable_external_access = true")
    old.close()
    reader.close()


def test_a_release_that_adds_a_column_rewrites_the_old_files(paths: tuple[Path, Path]) -> None:
    with ParquetLake(paths[0]) as lake:
        (path,) = lake.append("status_events", to_arrow("status_events", [EXAMPLES["status_events"][0]]))
    anchor = paths[0] / "status_events" / "day=0001-01-01" / f"part-{0:020d}.parquet"
    for file in (path, anchor):  # as written by the release before bridge_received_at existed
        pq.write_table(pq.read_table(file).drop_columns(["bridge_received_at"]), file)
    with ParquetLake(paths[0]) as lake:
        assert [p.name for p in lake.purge(datetime(2100, 1, 1, tzinfo=UTC))] == [path.name]
    (rewritten,) = (paths[0] / "status_events" / "day=2024-05-01").glob("*.parquet")
    assert "bridge_received_at" in pq.read_schema(rewritten).names
    assert query(paths[1], "select status, bridge_received_at from status_events") == [("Faulted", None)]


def test_replaced_files_are_never_opened_by_new_queries(lake: ParquetLake, paths: tuple[Path, Path]) -> None:
    for i in range(2):
        lake.append("sessions", to_arrow("sessions", [_session(i + 1, float(i))]))
    result = lake.compact("sessions", date(2024, 5, 1))
    assert result is not None
    for replaced in result.replaced:  # still listed by the glob, but pruned by name before opening
        replaced.write_bytes(b"not parquet any more")
    assert query(paths[1], "select revision from sessions") == [(2,)]
    assert query(paths[1], "select count(*) from session_revisions") == [(2,)]


def test_the_views_file_is_not_replaced_when_nothing_changed(paths: tuple[Path, Path]) -> None:
    assert ensure_views_db(paths[0], paths[1]) is True
    stamp = paths[1].stat().st_mtime_ns
    assert ensure_views_db(paths[0], paths[1]) is False
    assert paths[1].stat().st_mtime_ns == stamp
    paths[1].write_bytes(b"not a duckdb file")
    assert ensure_views_db(paths[0], paths[1]) is True
    assert not [p for p in paths[1].parent.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_readers_cannot_write_or_read_outside_the_lake(lake: ParquetLake, paths: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("a\n1\n")
    ensure_views_db(*paths)
    with open_readonly(paths[1]) as con:
        for statement in ("create table t (a int)", "create or replace view sessions as select 1",
                          f"copy (select 1) to '{tmp_path}/out.csv'",
                          f"select * from read_csv('{outside}')",  # noqa: S608 - a test of the lock-down
                          "set enable_external_access = true", f"attach '{tmp_path}/other.duckdb'"):
            with pytest.raises(duckdb.Error):
                con.execute(statement)
        assert con.execute("select current_setting('TimeZone')").fetchone() == ("UTC",)
    assert not (tmp_path / "out.csv").exists()


def test_opening_a_missing_or_foreign_views_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ViewsDatabaseError, match="does not exist: start the pipeline"):
        open_readonly(tmp_path / "missing.duckdb")
    duckdb.connect(str(tmp_path / "foreign.duckdb")).close()
    with pytest.raises(ViewsDatabaseError, match="not a FlowBankOS views database"):
        open_readonly(tmp_path / "foreign.duckdb")


def test_lake_freshness_shows_when_each_table_was_last_written(paths: tuple[Path, Path]) -> None:
    with ParquetLake(paths[0], views_db=paths[1], clock=Clock(datetime(2024, 6, 1, 12, tzinfo=UTC))) as lake:
        lake.append("sessions", to_arrow("sessions", [_session(1, 1.0), _session(2, 2.0)]))
    rows = query(paths[1], "select table_name, last_written_at, stored_rows from lake_freshness "
                           "where stored_rows > 0")
    assert rows == [("sessions", wall(2024, 6, 1, 12), 2)]


# ---------------------------------------------------------------- compaction


def _snapshot(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    with open_readonly(db) as con:
        views = [r[0] for r in con.execute("select view_name from duckdb_views() where not internal and "
                                           "not starts_with(view_name, '_') and view_name <> 'lake_freshness'"
                                           ).fetchall()]
        return {v: sorted(con.execute(f"select * from {v}").fetchall(), key=repr) for v in views}  # noqa: S608


def test_compaction_keeps_every_query_result_identical(paths: tuple[Path, Path]) -> None:
    clock = Clock()
    with ParquetLake(paths[0], views_db=paths[1], clock=clock, grace=timedelta(minutes=15)) as lake:
        samples = [MeterSample("CP1", 1, T0 + timedelta(seconds=10 * i), power_w=float(i)) for i in range(30)]
        for start in range(0, len(samples), 4):
            lake.append("meter_samples", to_arrow("meter_samples", samples[start:start + 4]))
        lake.append("meter_samples", to_arrow("meter_samples", samples[:8]))  # a replay
        lake.append("data_quality", to_arrow("data_quality", [EXAMPLES["data_quality"][0]]))
        for revision in (1, 2, 3):
            lake.append("sessions", to_arrow("sessions", [_session(revision, revision * 10.0)]))
        for revision, energy in ((1, 5.0), (2, 7.0)):
            lake.append("session_day_energy", to_arrow("session_day_energy", [
                SessionDayEnergy("s1", "CP1", date(2024, 5, 1), energy, revision)]))
        before = _snapshot(paths[1])
        old_files = sorted(str(p) for p in (paths[0] / "meter_samples" / "day=2024-05-01").glob("*.parquet"))

        result = lake.compact("meter_samples", date(2024, 5, 1))
        assert result is not None and (result.rows_in, result.rows_out) == (6, 3)  # the replay merged away
        assert [str(p) for p in result.replaced] == old_files
        for table, day in (("sessions", date(2024, 5, 1)), ("session_day_energy", date(2024, 5, 1))):
            assert lake.compact(table, day) is not None
        assert _snapshot(paths[1]) == before  # old and merged files side by side: the dedupe hides it
        with duckdb.connect() as con:  # a query that listed the old files a moment ago can still read them
            assert con.execute("select count(*) from read_parquet($1)", [old_files]).fetchone() == (6,)
        assert lake.compact("meter_samples", date(2024, 5, 1)) is None  # already one file (plus scheduled ones)

        assert lake.purge() == []  # the grace period has not passed
        clock.now += timedelta(minutes=16)
        deleted = lake.purge()
        assert sorted(str(p) for p in deleted if "meter_samples" in str(p)) == old_files
        assert _snapshot(paths[1]) == before
        for table in ("meter_samples", "sessions", "session_day_energy"):
            assert len(list((paths[0] / table / "day=2024-05-01").glob("*.parquet"))) == 1
        assert lake.days("meter_samples") == [date(2024, 5, 1), date(2024, 5, 2)]


def test_a_crash_between_compaction_and_rebuild_is_finished_at_start(paths: tuple[Path, Path]) -> None:
    clock = Clock()
    with ParquetLake(paths[0], views_db=paths[1], clock=clock) as lake:
        for revision in (1, 2):
            lake.append("sessions", to_arrow("sessions", [_session(revision, 1.0)]))
        result = lake.compact("sessions", date(2024, 5, 1))
    assert result is not None
    (tombstone,) = (paths[0] / "_pending_delete").glob("*.json")
    entry = json.loads(tombstone.read_text())
    tombstone.write_text(json.dumps({**entry, "delete_after": datetime.max.replace(tzinfo=UTC).isoformat()}))
    clock.now += timedelta(hours=1)
    with ParquetLake(paths[0], views_db=paths[1], clock=clock, grace=timedelta(minutes=5)) as lake:
        assert json.loads(tombstone.read_text())["delete_after"] == (clock.now + timedelta(minutes=5)).isoformat()
        assert lake.purge(clock.now + timedelta(minutes=5)) == list(result.replaced)
    assert query(paths[1], "select revision from sessions") == [(2,)]


# ---------------------------------------------------------------- the flush policy


def test_the_buffer_flushes_a_table_at_max_rows_or_max_age(lake: ParquetLake, paths: tuple[Path, Path]) -> None:
    buffer = LakeBuffer(lake, max_rows=5, max_age=timedelta(seconds=30))
    now = T0
    buffer.add("meter_samples", [MeterSample("CP1", 1, T0 + timedelta(seconds=i)) for i in range(3)], now)
    buffer.add("dead_letters", [DeadLetter(T0, "bridge", "r", "x")], now)
    assert buffer.maybe_flush(now + timedelta(seconds=29)) == []
    buffer.add("meter_samples", [MeterSample("CP1", 1, T0 + timedelta(seconds=i)) for i in range(3, 6)], now)
    assert [p.parts[-3] for p in buffer.maybe_flush(now + timedelta(seconds=29))] == ["meter_samples"]  # 6 >= 5
    assert buffer.pending_rows("meter_samples") == 0 and buffer.pending_rows("dead_letters") == 1
    assert [p.parts[-3] for p in buffer.maybe_flush(now + timedelta(seconds=30))] == ["dead_letters"]  # 30 s old
    assert query(paths[1], "select count(*) from meter_samples union all select count(*) from dead_letters") == [
        (6,), (1,)]
    buffer.add("sessions", pl.from_arrow(to_arrow("sessions", [_session(1, 1.0)])), now)
    assert len(buffer.flush()) == 1 and buffer.due(now + timedelta(days=1)) == []


def test_a_failed_flush_keeps_the_rows_for_the_next_try(paths: tuple[Path, Path],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with ParquetLake(paths[0], views_db=paths[1]) as lake:
        buffer = LakeBuffer(lake, max_rows=1)
        buffer.add("dead_letters", [DeadLetter(T0, "bridge", "r", "x")], T0)
        real_replace: Callable[..., None] = os.replace

        def disk_full(*args: Any) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", disk_full)
        with pytest.raises(OSError, match="No space left"):
            buffer.maybe_flush(T0)
        monkeypatch.setattr(os, "replace", real_replace)
        assert buffer.pending_rows("dead_letters") == 1
        assert len(buffer.maybe_flush(T0)) == 1
    assert query(paths[1], "select count(*) from dead_letters") == [(1,)]


def test_the_journal_gives_a_crashed_buffers_rows_to_the_next_one(lake: ParquetLake, paths: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    """The pipeline acknowledges its input long before the buffer is written: a SIGKILL must not
    take the buffered rows with it."""
    journal = tmp_path / "journal"
    crashed = LakeBuffer(lake, journal_dir=journal, now=T0)
    crashed.add("meter_samples", [MeterSample("CP1", 1, T0 + timedelta(seconds=i)) for i in range(3)], T0)
    crashed.add("dead_letters", [DeadLetter(T0, "bridge", "r", "x")], T0)
    crashed.add("meter_samples", [MeterSample("CP1", 1, T0 + timedelta(seconds=3))], T0)
    crashed.sync()
    assert len(list(journal.glob("*.arrows"))) == 2
    # killed here: nothing flushed, nothing closed; a torn write at the end of one journal
    with open(sorted(journal.glob("meter_samples.*"))[0], "ab") as torn:
        torn.write(b"\xff\xff\xff\xff\x10\x00")
    successor = LakeBuffer(lake, journal_dir=journal, now=T0 + timedelta(minutes=1))
    assert successor.pending_rows("meter_samples") == 4 and successor.pending_rows("dead_letters") == 1
    assert len(list(journal.glob("*.arrows"))) == 2  # the rows now live in the successor's journal
    assert successor.maybe_flush(T0 + timedelta(minutes=1, seconds=29)) == []  # their age counts from the replay
    assert len(successor.flush()) == 2 and not list(journal.glob("*.arrows"))
    successor.close()
    assert query(paths[1], "select count(*) from meter_samples union all select count(*) from dead_letters") == [
        (4,), (1,)]
    assert LakeBuffer(lake, journal_dir=journal).pending_rows("meter_samples") == 0
    crashed.close()  # the "killed" process's file handles (their files are gone by now)


def test_bad_rows_are_refused_before_they_are_buffered(lake: ParquetLake) -> None:
    buffer = LakeBuffer(lake)
    with pytest.raises(SchemaMismatchError):
        buffer.add("dead_letters", [{"ts": T0}], T0)
    assert buffer.pending_rows("dead_letters") == 0
    with pytest.raises(ValueError, match="max_rows"):
        LakeBuffer(lake, max_rows=0)
