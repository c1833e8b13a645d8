"""warehouse.tsdb_writer against the real TimescaleDB: round trips, replay, revisions, failures."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from control.contract import (
    Alert,
    AlertState,
    BuildingLoad,
    ChargerInfo,
    ChargingMode,
    CommandOutcome,
    CommandResult,
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
    TransactionEvent,
)
from control.records import (
    EXCLUDING_FLAGS,
    ComplianceCheck,
    ComplianceVerdict,
    ControlDecision,
    LiveState,
    LiveStatus,
    QualityFlag,
    SessionDayEnergy,
    SessionRecord,
    SessionState,
)
from warehouse.tsdb_writer import (
    PermanentWriteError,
    RetryableWriteError,
    TimescaleWriter,
    UnsupportedRecordError,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Verdict:  # the shape of pipelines' SampleVerdict, without importing pipelines
    charger_id: str
    connector_id: int
    ts: datetime
    context: SampleContext
    session_id: str | None
    flags: tuple[QualityFlag, ...]


@pytest.fixture()
def writer(pg_dsn: str) -> Iterator[TimescaleWriter]:
    with TimescaleWriter(pg_dsn) as w:
        yield w


@pytest.fixture()
def cp() -> str:
    return f"CP-{secrets.token_hex(4)}"


def rows(dsn: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query.encode(), params).fetchall()


def session(cp: str, revision: int, **changes: Any) -> SessionRecord:
    base = SessionRecord(
        session_id=f"{cp}-1-tx1", charger_id=cp, connector_id=1, transaction_id="tx1", started_at=T0,
        state=SessionState.OPEN, revision=revision, energy_wh=1000.0 * revision, id_tag="TAG", meter_start_wh=5.0,
        peak_power_w=11000.0, avg_power_w=7000.0, duration_s=600.0, charging_s=500.0, idle_s=100.0,
        mode=ChargingMode.ECO, flags=(QualityFlag.GAP,), sample_count=10, last_sample_at=T0 + timedelta(minutes=10),
        site_id="SITE-1")
    return replace(base, **changes)


def full_batch(cp: str) -> list[object]:
    sample = MeterSample(cp, 1, T0, SampleContext.PERIODIC, "tx1", energy_wh=1500, power_w=7000.5,
                         current_l1_a=10.0, soc_pct=55.0, quirks=("unit_missing_assumed_wh",),
                         received_at=T0 + timedelta(seconds=2))
    return [
        ChargerInfo(cp, T0, "Vendor\x00X", "Model", "SN-1", "1.2.3", OcppVersion.V201),
        sample,
        replace(sample, ts=T0 + timedelta(minutes=1), energy_wh=1600.0),
        Verdict(cp, 1, T0, SampleContext.PERIODIC, f"{cp}-1-tx1", (QualityFlag.CLOCK_SKEW,)),
        StatusChanged(cp, 1, T0, ConnectorState.CHARGING, error_code="NoError", info="nul\x00info", received_at=T0),
        ConnectionEvent(cp, T0, ConnectionKind.BOOTED, OcppVersion.V16, heartbeat_interval_s=300, bridge_id="b1"),
        Setpoint("dec-1", "SITE-1", cp, 1, T0, 16.0, RateUnit.AMPS, "site limit", phases=3, previous_limit=32),
        Setpoint("dec-2", "SITE-1", cp, 0, T0, 11000, RateUnit.WATTS, "eco"),
        CommandResult("cmd-" + cp, cp, T0, CommandOutcome.ACCEPTED, "Accepted", payload={"k": "v", "n": 1.5}),
        Alert("al-" + cp, "offline", Severity.WARNING, T0, "went offline", charger_id=cp, site_id="SITE-1"),
        DeadLetter(T0, "bridge", "not JSON", "raw\x00payload {", charger_id=cp, topic=f"flowbank/v1/{cp}/x"),
        session(cp, 2),
        SessionDayEnergy(f"{cp}-1-tx1", cp, date(2026, 3, 1), 1500.0, 2),
        SessionDayEnergy(f"{cp}-1-tx1", cp, date(2026, 3, 2), 500.0, 2),
        LiveState(cp, 1, LiveStatus.CHARGING, T0, last_seen_at=T0, connector_status="Charging", power_w=7000.0,
                  session_id=f"{cp}-1-tx1", session_started_at=T0, session_energy_wh=2000.0, soc_pct=55.0),
    ]


SNAPSHOTS = {
    "chargers": "select vendor, model, serial_number, firmware_version, ocpp_version, last_boot_at, updated_at"
                " from chargers where charger_id = %s",
    "meter_samples": "select * from meter_samples where charger_id = %s order by ts, context",
    "status_events": "select * from status_events where charger_id = %s order by ts",
    "connection_events": "select * from connection_events where charger_id = %s order by ts",
    "setpoints": "select * from setpoints where charger_id = %s order by ts",
    "command_results": "select * from command_results where charger_id = %s order by ts",
    "alerts": "select * from alerts where charger_id = %s",
    "dead_letters": "select * from dead_letters where charger_id = %s order by id",
    "sessions": "select * from sessions where charger_id = %s",
    "session_day_energy": "select * from session_day_energy where charger_id = %s order by day",
    "live_state": "select * from live_state where charger_id = %s",
}


def snapshot(dsn: str, cp: str) -> dict[str, list[tuple[Any, ...]]]:
    return {table: rows(dsn, query, cp) for table, query in SNAPSHOTS.items()}


def register(dsn: str, cp: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("insert into chargers (charger_id) values (%s)", (cp,))


def test_every_type_round_trips(writer: TimescaleWriter, pg_dsn: str, cp: str) -> None:
    register(pg_dsn, cp)
    stats = writer.write(full_batch(cp))
    assert stats.received == {"chargers": 1, "meter_samples": 2, "sample_verdicts": 1, "status_events": 1,
                              "connection_events": 1, "setpoints": 2, "command_results": 1, "alerts": 1,
                              "dead_letters": 1, "sessions": 1, "session_day_energy": 2, "live_state": 1}
    assert stats.unmatched == {"chargers": 0, "sample_verdicts": 0}
    # The verdict's sample is in the same batch: the insert carries its flags, no update is needed.
    assert stats.changed == {**stats.received, "sample_verdicts": 0}

    assert rows(pg_dsn, "select vendor, model, serial_number, firmware_version, ocpp_version, last_boot_at"
                " from chargers where charger_id = %s", cp) == [
        ("Vendor\ufffdX", "Model", "SN-1", "1.2.3", "2.0.1", T0)]
    assert rows(pg_dsn, "select ts, context, transaction_id, energy_wh, power_w, current_l1_a, soc_pct, quirks,"
                " quality_flags, session_id, bridge_received_at from meter_samples where charger_id = %s order by ts",
                cp) == [
        (T0, "Sample.Periodic", "tx1", 1500.0, 7000.5, 10.0, 55.0, ["unit_missing_assumed_wh"], ["clock_skew"],
         f"{cp}-1-tx1", T0 + timedelta(seconds=2)),
        (T0 + timedelta(minutes=1), "Sample.Periodic", "tx1", 1600.0, 7000.5, 10.0, 55.0,
         ["unit_missing_assumed_wh"], [], None, T0 + timedelta(seconds=2)),
    ]
    assert rows(pg_dsn, "select status, error_code, info, bridge_received_at from status_events"
                " where charger_id = %s", cp) == [("Charging", "NoError", "nul\ufffdinfo", T0)]
    assert rows(pg_dsn, "select kind, ocpp_version, heartbeat_interval_s, bridge_id from connection_events"
                " where charger_id = %s", cp) == [("booted", "1.6", 300, "b1")]
    assert rows(pg_dsn, "select decision_id, site_id, connector_id, limit_a, limit_w, previous_limit_a,"
                " previous_limit_w, phases, reason from setpoints where charger_id = %s order by decision_id", cp) == [
        ("dec-1", "SITE-1", 1, 16.0, None, 32.0, None, 3, "site limit"),
        ("dec-2", "SITE-1", 0, None, 11000.0, None, None, None, "eco")]
    assert rows(pg_dsn, "select command_id, outcome, status, payload from command_results where charger_id = %s",
                cp) == [("cmd-" + cp, "accepted", "Accepted", {"k": "v", "n": 1.5})]
    assert rows(pg_dsn, "select alert_id, kind, severity, ts, message, state, site_id, count from alerts"
                " where charger_id = %s", cp) == [
        ("al-" + cp, "offline", "warning", T0, "went offline", "open", "SITE-1", 1)]
    # The raw payload is kept whole: NUL cannot live in text, so raw_bytes carries the exact bytes.
    assert rows(pg_dsn, "select source, reason, raw, raw_bytes, topic from dead_letters where charger_id = %s",
                cp) == [("bridge", "not JSON", "raw\ufffdpayload {", b"raw\x00payload {", f"flowbank/v1/{cp}/x")]
    stored = rows(pg_dsn, "select session_id, state, revision, energy_wh, mode, flags, excluded, site_id,"
                  " last_sample_at from sessions where charger_id = %s", cp)
    assert stored == [(f"{cp}-1-tx1", "open", 2, 2000.0, "eco", ["gap"], False, "SITE-1", T0 + timedelta(minutes=10))]
    assert rows(pg_dsn, "select day, energy_wh, revision from session_day_energy where charger_id = %s order by day",
                cp) == [(date(2026, 3, 1), 1500.0, 2), (date(2026, 3, 2), 500.0, 2)]
    assert rows(pg_dsn, "select status, updated_at, power_w, session_energy_wh, online from live_state"
                " where charger_id = %s", cp) == [("Charging", T0, 7000.0, 2000.0, True)]


def test_replaying_a_batch_changes_nothing(writer: TimescaleWriter, pg_dsn: str, cp: str) -> None:
    register(pg_dsn, cp)
    batch = full_batch(cp)
    writer.write(batch)
    before = snapshot(pg_dsn, cp)
    again = writer.write(batch)
    assert again.total_changed == 0, again.changed
    assert snapshot(pg_dsn, cp) == before
    assert all(before[table] for table in SNAPSHOTS), "every table got its rows"
    # ... and in a fresh writer (a restarted sink), with the batch doubled inside itself.
    with TimescaleWriter(pg_dsn) as other:
        assert other.write(batch + batch).total_changed == 0
    assert snapshot(pg_dsn, cp) == before


def test_a_lower_revision_never_overwrites_a_higher_one(writer: TimescaleWriter, pg_dsn: str, cp: str) -> None:
    query = "select revision, energy_wh, state from sessions where charger_id = %s"
    writer.write([session(cp, 3, state=SessionState.CLOSED, ended_at=T0 + timedelta(hours=1))])
    assert writer.write([session(cp, 2)]).changed == {"sessions": 0}
    assert rows(pg_dsn, query, cp) == [(3, 3000.0, "closed")]
    # Several revisions in one batch, in any order: the highest is stored.
    writer.write([session(cp, 5), session(cp, 7), session(cp, 4)])
    assert rows(pg_dsn, query, cp) == [(7, 7000.0, "open")]
    # The same revision again with other content is a replay, not an update.
    writer.write([session(cp, 7, energy_wh=1.0)])
    assert rows(pg_dsn, query, cp) == [(7, 7000.0, "open")]


def test_day_energy_is_replaced_by_a_new_revision(writer: TimescaleWriter, pg_dsn: str, cp: str) -> None:
    sid = f"{cp}-1-tx1"
    d1, d2, d3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)
    query = "select day, energy_wh, revision from session_day_energy where session_id = %s order by day"
    writer.write([SessionDayEnergy(sid, cp, d1, 100.0, 1), SessionDayEnergy(sid, cp, d2, 50.0, 1)])
    writer.write([SessionDayEnergy(sid, cp, d2, 80.0, 2), SessionDayEnergy(sid, cp, d3, 20.0, 2)])
    assert rows(pg_dsn, query, sid) == [(d2, 80.0, 2), (d3, 20.0, 2)]  # d1 belonged to revision 1 only
    writer.write([SessionDayEnergy(sid, cp, d1, 100.0, 1)])  # a late replay of the old revision
    assert rows(pg_dsn, query, sid) == [(d2, 80.0, 2), (d3, 20.0, 2)]
    # Two revisions in one batch: only the newer set is kept.
    writer.write([SessionDayEnergy(sid, cp, d1, 1.0, 4), SessionDayEnergy(sid, cp, d1, 9.0, 3),
                  SessionDayEnergy(sid, cp, d2, 9.0, 3)])
    assert rows(pg_dsn, query, sid) == [(d1, 1.0, 4)]


def test_live_state_keeps_the_newest_update(writer: TimescaleWriter, pg_dsn: str, cp: str) -> None:
    newer = LiveState(cp, 1, LiveStatus.IDLE, T0 + timedelta(seconds=30))
    older = LiveState(cp, 1, LiveStatus.CHARGING, T0)
    writer.write([newer, older])
    writer.write([older])
    assert rows(pg_dsn, "select status, updated_at from live_state where charger_id = %s", cp) == [
        ("Idle", T0 + timedelta(seconds=30))]


def test_alerts_move_forward_only(writer: TimescaleWriter, pg_dsn: str, cp: str) -> None:
    opened = Alert("al-" + cp, "offline", Severity.WARNING, T0, "offline", charger_id=cp)
    acked = replace(opened, state=AlertState.ACKNOWLEDGED)
    refired = replace(opened, ts=T0 + timedelta(hours=1), count=2)
    query = "select state, count, ts from alerts where alert_id = %s"
    writer.write([opened])
    writer.write([acked])
    assert rows(pg_dsn, query, "al-" + cp) == [("acknowledged", 1, T0)]
    writer.write([opened])  # a replay of the older update
    assert rows(pg_dsn, query, "al-" + cp) == [("acknowledged", 1, T0)]
    writer.write([refired])
    assert rows(pg_dsn, query, "al-" + cp) == [("open", 2, T0 + timedelta(hours=1))]


def test_verdicts_without_their_sample_are_counted_not_lost_silently(
        writer: TimescaleWriter, pg_dsn: str, cp: str) -> None:
    samples = [MeterSample(cp, 1, T0 + timedelta(seconds=i), energy_wh=float(i)) for i in range(500)]
    writer.write(samples)
    verdicts = [Verdict(cp, 1, s.ts, s.context, "S1", (QualityFlag.OUT_OF_ORDER,) if i % 2 else ())
                for i, s in enumerate(samples)]
    orphan = Verdict(cp, 2, T0, SampleContext.PERIODIC, "S1", (QualityFlag.GAP,))
    stats = writer.write([*verdicts, orphan])
    assert stats.changed["sample_verdicts"] == 500 and stats.unmatched["sample_verdicts"] == 1
    assert rows(pg_dsn, "select count(*) filter (where quality_flags = '{out_of_order}'), count(*)"
                " filter (where session_id = 'S1') from meter_samples where charger_id = %s", cp) == [(250, 500)]
    assert writer.write(verdicts).changed["sample_verdicts"] == 0  # replay: no row rewritten


def test_charger_info_updates_known_chargers_only(writer: TimescaleWriter, pg_dsn: str, cp: str) -> None:
    register(pg_dsn, cp)
    stranger = cp + "-unknown"
    newer = ChargerInfo(cp, T0 + timedelta(days=1), "V", "M", firmware_version="2.0")
    stats = writer.write([newer, ChargerInfo(cp, T0, "V", "M", firmware_version="1.0"),
                          ChargerInfo(stranger, T0, "V", "M")])
    assert stats.unmatched["chargers"] == 1
    writer.write([ChargerInfo(cp, T0, "V", "M", firmware_version="1.0")])  # an older boot, replayed late
    assert rows(pg_dsn, "select firmware_version, last_boot_at from chargers where charger_id = %s", cp) == [
        ("2.0", T0 + timedelta(days=1))]
    assert rows(pg_dsn, "select count(*) from chargers where charger_id = %s", stranger) == [(0,)]


@pytest.mark.parametrize("flag", list(QualityFlag))
def test_excluded_column_agrees_with_the_python_rule(writer: TimescaleWriter, pg_dsn: str, cp: str,
                                                     flag: QualityFlag) -> None:
    record = session(cp, 1, flags=(flag,))
    writer.write([record])
    assert rows(pg_dsn, "select excluded from sessions where charger_id = %s", cp) == [(record.excluded,)]
    assert record.excluded == (flag in EXCLUDING_FLAGS)


def test_a_failing_group_rolls_back_the_whole_batch(writer: TimescaleWriter, pg_dsn: str, cp: str) -> None:
    good = MeterSample(cp, 1, T0, energy_wh=1.0)
    bad = MeterSample(cp, 2**31, T0, energy_wh=1.0)  # valid in the contract, too big for int4
    with pytest.raises(PermanentWriteError, match="meter_samples"):
        writer.write([session(cp, 1), good, bad])
    assert rows(pg_dsn, "select count(*) from meter_samples where charger_id = %s", cp) == [(0,)]
    assert rows(pg_dsn, "select count(*) from sessions where charger_id = %s", cp) == [(0,)]
    assert writer.write([good]).changed == {"meter_samples": 1}  # the connection is still usable


def test_unsupported_objects_are_refused_before_anything_is_written(
        writer: TimescaleWriter, pg_dsn: str, cp: str) -> None:
    event = TransactionEvent(cp, 1, T0, kind="started", transaction_id="tx")  # type: ignore[arg-type]
    with pytest.raises(UnsupportedRecordError, match="TransactionEvent"):
        writer.write([MeterSample(cp, 1, T0), event])
    assert rows(pg_dsn, "select count(*) from meter_samples where charger_id = %s", cp) == [(0,)]
    assert writer.write([]).received == {}


def test_a_lost_connection_is_retryable_and_the_writer_reconnects(pg_dsn: str, cp: str) -> None:
    name = f"tsdb-writer-{secrets.token_hex(3)}"
    sep = "&" if "?" in pg_dsn else "?"
    with TimescaleWriter(f"{pg_dsn}{sep}application_name={name}") as writer:
        writer.write([MeterSample(cp, 1, T0)])
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute("select pg_terminate_backend(pid) from pg_stat_activity where application_name = %s",
                          (name,))
        batch = [MeterSample(cp, 1, T0 + timedelta(seconds=1))]
        with pytest.raises(RetryableWriteError, match="retry"):
            writer.write(batch)
        assert writer.write(batch).changed == {"meter_samples": 1}
    assert rows(pg_dsn, "select count(*) from meter_samples where charger_id = %s", cp) == [(2,)]


def test_an_unreachable_server_is_retryable(cp: str) -> None:
    with TimescaleWriter("postgresql://nobody@127.0.0.1:1/none", connect_timeout_s=2) as writer:
        with pytest.raises(RetryableWriteError, match="connecting"):
            writer.write([MeterSample(cp, 1, T0)])


def test_control_records_round_trip_replay_and_read_as_the_audit_log(writer: TimescaleWriter, pg_dsn: str,
                                                                     cp: str) -> None:
    site = "SITE-" + cp
    batch = [
        BuildingLoad(site, T0, 4200.0, current_l1_a=6.0, current_l2_a=6.5, current_l3_a=5.8, source="modbus:x"),
        BuildingLoad(site, T0, 1000.0, circuit_id="garage"),  # same instant, another circuit: its own row
        ControlDecision(T0, "dec-9", site, cp, 1, 10.0, "Limited by site", "normal", old_limit_a=16.0,
                        binding="circuit:main", inputs={"building_load": {"value": 4200.0, "age_s": 0.4}},
                        command_id="cmd-9-" + cp),
        ComplianceCheck(T0 + timedelta(seconds=8), "dec-9", site, cp, 1, 10.0, ComplianceVerdict.COMPLIANT,
                        measured_a=9.8, reaction_s=3.2, command_id="cmd-9-" + cp),
        CommandResult("cmd-9-" + cp, cp, T0 + timedelta(seconds=1), CommandOutcome.ACCEPTED, "Accepted"),
    ]
    stats = writer.write(batch)
    assert stats.changed == {"building_loads": 2, "control_decisions": 1, "setpoint_compliance": 1,
                             "command_results": 1}
    assert writer.write(batch).total_changed == 0  # a replay changes nothing
    assert rows(pg_dsn, "select circuit_id, power_w, current_l2_a, source from building_loads where site_id = %s"
                " order by circuit_id nulls first", site) == [(None, 4200.0, 6.5, "modbus:x"),
                                                              ("garage", 1000.0, None, None)]
    assert rows(pg_dsn, "select old_limit_a, new_limit_a, paused, reason, binding, inputs, command_outcome,"
                " command_status from control_audit where charger_id = %s", cp) == [
        (16.0, 10.0, False, "Limited by site", "circuit:main", {"building_load": {"value": 4200.0, "age_s": 0.4}},
         "accepted", "Accepted")]
    assert rows(pg_dsn, "select verdict, measured_a, reaction_s from setpoint_compliance where charger_id = %s",
                cp) == [("compliant", 9.8, 3.2)]
