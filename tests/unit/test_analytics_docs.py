"""docs/analyst-schema.md cannot rot: every ```sql block in it runs (and returns rows) against a
lake built from small generated data, and every view and column it documents exists with the
documented type. The generated data also pins the analyst views' numbers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest

from control.contract import (
    Alert,
    AlertState,
    ConnectionEvent,
    ConnectionKind,
    DeadLetter,
    MeterSample,
    RateUnit,
    Setpoint,
    Severity,
    StatusChanged,
)
from control.contract import ConnectorState as CS
from control.records import QualityFlag, SessionDayEnergy, SessionRecord, SessionState
from flowbank.config import PROJECT_ROOT
from warehouse.analytics import ParquetLake, build_views_db, open_readonly, to_arrow
from warehouse.analytics_views import view_columns

DOC = PROJECT_ROOT / "docs" / "analyst-schema.md"
T0 = datetime(2024, 4, 30, 22, 0, tzinfo=UTC)


def _session(sid: str, cp: str, connector: int, start: datetime, hours: float, energy: float, revision: int, *,
             site: str, flags: tuple[QualityFlag, ...] = (), closed: bool = True) -> SessionRecord:
    end = start + timedelta(hours=hours)
    return SessionRecord(sid, cp, connector, f"tx-{sid}", start, SessionState.CLOSED if closed else SessionState.OPEN,
                         revision, energy, ended_at=end if closed else None, site_id=site, flags=flags,
                         duration_s=hours * 3600, charging_s=hours * 3600, peak_power_w=energy / hours,
                         avg_power_w=energy / hours, sample_count=int(hours * 120), last_sample_at=end)


def _samples(cp: str, connector: int, start: datetime, hours: float, power_w: float) -> Iterator[MeterSample]:
    for i in range(int(hours * 120)):  # every 30 s
        yield MeterSample(cp, connector, start + timedelta(seconds=30 * i), power_w=power_w,
                          energy_wh=power_w * i / 120, current_a=power_w / 690, received_at=start)


def build_demo_lake(root: Path, db_path: Path) -> None:
    """Two sites, three chargers, four sessions over three UTC days and two months.

    s1 CP-A 2024-04-30 22:00 to 05-01 02:00, 11 kW, 44 kWh (rev 1 open, rev 2 closed; split 22/22)
    s2 CP-B 2024-05-01 01:00 to 03:00, 7 kW, 14 kWh: overlaps s1, so site S1 peaks at 18 kW
    s3 CP-C 2024-05-02 08:00 to 09:00, 7 kW, 7 kWh, site S2
    s4 CP-A 2024-05-02 13:00 to 14:00, implausible power: excluded
    """
    s1_open = _session("s1", "CP-A", 1, T0, 4, 10_000, 1, site="S1", closed=False)
    s1 = _session("s1", "CP-A", 1, T0, 4, 44_000, 2, site="S1")
    s2 = _session("s2", "CP-B", 1, T0 + timedelta(hours=3), 2, 14_000, 1, site="S1")
    s3 = _session("s3", "CP-C", 1, datetime(2024, 5, 2, 8, tzinfo=UTC), 1, 7_000, 1, site="S2")
    s4 = _session("s4", "CP-A", 2, datetime(2024, 5, 2, 13, tzinfo=UTC), 1, 50_000, 1, site="S1",
                  flags=(QualityFlag.IMPLAUSIBLE_POWER, QualityFlag.GAP))
    days = [SessionDayEnergy("s1", "CP-A", date(2024, 4, 30), 5_000, 1),
            SessionDayEnergy("s1", "CP-A", date(2024, 4, 30), 22_000, 2),
            SessionDayEnergy("s1", "CP-A", date(2024, 5, 1), 22_000, 2),
            SessionDayEnergy("s2", "CP-B", date(2024, 5, 1), 14_000, 1),
            SessionDayEnergy("s3", "CP-C", date(2024, 5, 2), 7_000, 1),
            SessionDayEnergy("s4", "CP-A", date(2024, 5, 2), 50_000, 1)]
    samples = [*_samples("CP-A", 1, T0, 4, 11_000), *_samples("CP-B", 1, T0 + timedelta(hours=3), 2, 7_000),
               *_samples("CP-C", 1, s3.started_at, 1, 7_000), *_samples("CP-A", 2, s4.started_at, 1, 9_000)]
    alert_open = Alert("al-1", "charger_offline", Severity.WARNING, T0, "CP-C is offline", charger_id="CP-C",
                       site_id="S2")
    verdict = SimpleNamespace(charger_id="CP-A", connector_id=2, ts=s4.started_at, context="Sample.Periodic",
                              session_id="s4", flags=(QualityFlag.IMPLAUSIBLE_POWER,))
    with ParquetLake(root) as lake:  # views built once at the end: each build binds every view (~0.4 s)
        lake.append("meter_samples", to_arrow("meter_samples", samples[: len(samples) // 2]))
        lake.append("meter_samples", to_arrow("meter_samples", samples[len(samples) // 2:]))
        lake.append("sessions", to_arrow("sessions", [s1_open, s3]))
        lake.append("sessions", to_arrow("sessions", [s1, s2, s4]))
        lake.append("session_day_energy", to_arrow("session_day_energy", days))
        lake.append("status_events", to_arrow("status_events", [
            StatusChanged("CP-A", 1, T0, CS.CHARGING),
            StatusChanged("CP-C", 1, T0 + timedelta(days=1), CS.FAULTED, error_code="GroundFailure")]))
        lake.append("connection_events", to_arrow("connection_events", [
            ConnectionEvent("CP-C", T0 + timedelta(days=1), ConnectionKind.DISCONNECTED, reason="timeout")]))
        lake.append("setpoints", to_arrow("setpoints", [
            Setpoint("d-1", "S2", "CP-C", 1, s3.started_at, 16, RateUnit.AMPS, "site limit", phases=3)]))
        lake.append("alerts", to_arrow("alerts", [alert_open]))
        lake.append("alerts", to_arrow("alerts", [Alert("al-1", "charger_offline", Severity.WARNING, T0,
                                                        "CP-C is offline", state=AlertState.RESOLVED,
                                                        charger_id="CP-C", site_id="S2")]))
        lake.append("data_quality", to_arrow("data_quality", [verdict]))
        lake.append("data_quality_results", to_arrow("data_quality_results", [{
            "ran_at": T0, "run_id": "run-1", "asset": "meter_samples", "expectation_id": "e-1",
            "expectation_type": "expect_column_values_to_be_between", "column_name": "power_w",
            "kwargs": {"min_value": 0, "max_value": 350_000}, "success": True, "observed": {"unexpected_count": 0}}]))
        lake.append("dead_letters", to_arrow("dead_letters", [
            DeadLetter(T0, "bridge", "not JSON: Expecting value", "{oops", charger_id="CP-B")]))
    build_views_db(root, db_path)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    base = tmp_path_factory.mktemp("demo")
    build_demo_lake(base / "lake", base / "analytics.duckdb")
    con = open_readonly(base / "analytics.duckdb")
    yield con
    con.close()


def _sql_blocks() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text("utf-8"), flags=re.S)


def test_the_doc_has_example_queries() -> None:
    assert len(_sql_blocks()) >= 6


@pytest.mark.parametrize("query", _sql_blocks(), ids=lambda q: q.strip().splitlines()[0][:60])
def test_every_example_query_in_the_doc_runs_and_returns_rows(demo: duckdb.DuckDBPyConnection, query: str) -> None:
    rows = demo.execute(query).fetchall()
    assert rows, f"the example returned no rows on the demo lake:\n{query}"


def _documented() -> dict[str, list[tuple[str, str]]]:
    """``### `view` `` headings, each followed by a table of ``| `column` | TYPE | meaning |`` (or by
    "Columns: the same as `other`")."""
    out: dict[str, list[tuple[str, str]]] = {}
    current: str | None = None
    for line in DOC.read_text("utf-8").splitlines():
        if heading := re.match(r"^###\s+`(\w+)`", line):
            current = heading.group(1)
            out[current] = []
        elif line.startswith("## "):
            current = None
        elif current and (same := re.match(r"^Columns: the same as `(\w+)`", line)):
            out[current] = list(out[same.group(1)])
        elif current and (row := re.match(r"^\|\s*`(\w+)`\s*\|\s*([A-Z][A-Z0-9\[\](),]*)\s*\|", line)):
            out[current].append((row.group(1), row.group(2)))
    return out


def test_every_view_and_column_is_documented_with_its_type(demo: duckdb.DuckDBPyConnection) -> None:
    actual = {view: [(c, t) for c, t, _ in columns] for view, columns in view_columns(demo).items()}
    documented = _documented()
    assert sorted(documented) == sorted(actual)
    for view, columns in actual.items():
        assert documented[view] == columns, view


def test_every_column_carries_a_description(demo: duckdb.DuckDBPyConnection) -> None:
    missing = [f"{view}.{name}" for view, columns in view_columns(demo).items()
               for name, _type, comment in columns if not comment]
    assert missing == []


# ---------------------------------------------------------------- the analyst views' numbers


def test_daily_energy_splits_at_midnight_and_leaves_out_excluded_sessions(demo: duckdb.DuckDBPyConnection) -> None:
    rows = demo.execute("select day, charger_id, site_id, energy_kwh, sessions from daily_energy "
                        "order by day, charger_id").fetchall()
    assert rows == [(date(2024, 4, 30), "CP-A", "S1", 22.0, 1), (date(2024, 5, 1), "CP-A", "S1", 22.0, 1),
                    (date(2024, 5, 1), "CP-B", "S1", 14.0, 1), (date(2024, 5, 2), "CP-C", "S2", 7.0, 1)]


def test_monthly_energy_counts_a_session_once_per_month(demo: duckdb.DuckDBPyConnection) -> None:
    rows = demo.execute("select month, charger_id, energy_kwh, sessions from monthly_energy "
                        "order by month, charger_id").fetchall()
    assert rows == [(date(2024, 4, 1), "CP-A", 22.0, 1), (date(2024, 5, 1), "CP-A", 22.0, 1),
                    (date(2024, 5, 1), "CP-B", 14.0, 1), (date(2024, 5, 1), "CP-C", 7.0, 1)]


def test_peak_demand_sums_the_chargers_of_a_site_per_minute(demo: duckdb.DuckDBPyConnection) -> None:
    site = demo.execute("select day, site_id, peak_power_kw, chargers_at_peak from site_peak_demand_daily "
                        "order by day, site_id").fetchall()
    assert site == [(date(2024, 4, 30), "S1", 11.0, 1), (date(2024, 5, 1), "S1", 18.0, 2),
                    (date(2024, 5, 2), "S1", 9.0, 1), (date(2024, 5, 2), "S2", 7.0, 1)]
    charger = demo.execute("select day, charger_id, peak_power_w from peak_demand_daily "
                           "where day = date '2024-05-01' order by charger_id").fetchall()
    assert charger == [(date(2024, 5, 1), "CP-A", 11_000.0), (date(2024, 5, 1), "CP-B", 7_000.0)]


def test_sessions_keep_the_newest_revision_and_list_exclusion_reasons(demo: duckdb.DuckDBPyConnection) -> None:
    assert demo.execute("select revision, state, energy_kwh from sessions where session_id = 's1'").fetchall() == [
        (2, "closed", 44.0)]
    assert demo.execute("select count(*) from session_revisions where session_id = 's1'").fetchone() == (2,)
    excluded = demo.execute("select session_id, flags, exclusion_reasons from excluded_sessions").fetchall()
    assert excluded == [("s4", ["implausible_power", "gap"], ["Energy grew faster than the charger's rated power "
                                                                 "allows."])]
    assert demo.execute("select site_id, sum(sessions), sum(excluded_sessions) from sessions_per_site "
                        "group by site_id order by site_id").fetchall() == [("S1", 3, 1), ("S2", 1, 0)]


def test_the_alert_view_shows_the_newest_state(demo: duckdb.DuckDBPyConnection) -> None:
    assert demo.execute("select state from alerts").fetchall() == [("resolved",)]


def test_sample_verdicts_are_joined_back_onto_meter_samples(demo: duckdb.DuckDBPyConnection) -> None:
    rows = demo.execute("select quality_flags, session_id from meter_samples where charger_id = 'CP-A' "
                        "and connector_id = 2 order by ts limit 2").fetchall()
    assert rows == [(["implausible_power"], "s4"), ([], None)]

