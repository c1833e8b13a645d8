"""The whole dataflow wired with bytewax.testing sources and sinks (no services)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.testing import TestingSink, TestingSource, run_main

from control import contract as c
from control.records import LiveState, SessionRecord, SessionState
from control.topics import topic_for
from pipelines.flow import FlowParts, build_dataflow
from pipelines.mqtt_source import MqttMessage

T0 = datetime(2026, 3, 31, 23, 0, tzinfo=UTC)
CP = "CP-FLOW-1"


def _message(event: c.Event, received_at: datetime | None = None) -> MqttMessage:
    return MqttMessage(topic_for(event), c.encode(event), received_at or T0)


def _session_events() -> list[c.Event]:
    events: list[c.Event] = [
        c.ConnectionEvent(CP, T0, c.ConnectionKind.CONNECTED, c.OcppVersion.V16),
        c.StatusChanged(CP, 1, T0, c.ConnectorState.PREPARING, received_at=T0),
        c.TransactionEvent(CP, 1, T0 + timedelta(seconds=5), c.TransactionKind.STARTED, "42", id_tag="TAG",
                           meter_wh=10_000.0, received_at=T0 + timedelta(seconds=5)),
        c.StatusChanged(CP, 1, T0 + timedelta(seconds=6), c.ConnectorState.CHARGING,
                        received_at=T0 + timedelta(seconds=6)),
    ]
    # 7.2 kW for two hours, across midnight and a month end.
    for minute in range(1, 121):
        ts = T0 + timedelta(seconds=5, minutes=minute)
        events.append(c.MeterSample(CP, 1, ts, transaction_id="42", energy_wh=10_000.0 + 120.0 * minute,
                                    power_w=7_200.0, current_a=31.3, received_at=ts))
    end = T0 + timedelta(seconds=5, minutes=121)
    events.append(c.TransactionEvent(CP, 1, end, c.TransactionKind.ENDED, "42", meter_wh=10_000.0 + 120.0 * 121,
                                     stop_reason="EVDisconnected", received_at=end))
    return events


def _run(messages: list[MqttMessage]) -> tuple[list[Any], list[LiveState]]:
    stored: list[Any] = []
    live: list[LiveState] = []
    clock_now = T0 + timedelta(hours=3)
    parts = FlowParts(source=TestingSource(messages, batch_size=50), timescale=TestingSink(stored), lake=None,
                      live=TestingSink(live), clock=lambda: clock_now)
    run_main(build_dataflow(parts))
    return stored, live


def test_a_session_flows_from_mqtt_messages_to_the_stores() -> None:
    stored, live = _run([_message(e) for e in _session_events()])
    sessions = [x for x in stored if isinstance(x, SessionRecord)]
    assert sessions, "no session record reached the store"
    final = max(sessions, key=lambda s: s.revision)
    assert final.state is SessionState.CLOSED
    assert final.session_id == f"{CP}:1:42"
    assert final.energy_wh == 120.0 * 121
    assert final.started_at == T0 + timedelta(seconds=5)
    assert final.stop_reason == "EVDisconnected"
    assert not final.excluded
    days = {}
    for row in stored:
        if type(row).__name__ == "SessionDayEnergy" and row.revision == final.revision:
            days[row.day.isoformat()] = row.energy_wh
    assert set(days) == {"2026-03-31", "2026-04-01"}
    assert sum(days.values()) == final.energy_wh
    # The raw samples are stored too, and the live state was published.
    assert sum(isinstance(x, c.MeterSample) for x in stored) == 120
    assert any(s.status.value == "Charging" for s in live)


def test_replaying_the_same_messages_adds_no_energy() -> None:
    once = [_message(e) for e in _session_events()]
    stored, _ = _run(once + once)
    final = max((x for x in stored if isinstance(x, SessionRecord)), key=lambda s: s.revision)
    assert final.energy_wh == 120.0 * 121


def test_bad_payloads_become_dead_letters_with_the_raw_bytes() -> None:
    good = _session_events()[0]
    mismatched = MqttMessage(f"flowbank/v1/ev/OTHER/{good.TYPE}", c.encode(good), T0)
    garbage = MqttMessage(f"flowbank/v1/ev/{CP}/meter_sample", b"{not json", T0)
    stored, _ = _run([garbage, mismatched])
    letters = [x for x in stored if isinstance(x, c.DeadLetter)]
    assert len(letters) == 2
    by_topic = {d.topic: d for d in letters}
    assert "not JSON" in by_topic[garbage.topic].reason
    assert by_topic[garbage.topic].raw == "{not json"
    assert "does not match" in by_topic[mismatched.topic].reason
    assert all(d.source == "pipeline" for d in letters)


def test_bridge_dead_letters_and_command_results_are_stored_as_they_are() -> None:
    letter = c.DeadLetter(T0, "bridge", "schema violation", '[2,"1","MeterValues",{}]', charger_id=CP)
    result = c.CommandResult("cmd-1", CP, T0, c.CommandOutcome.ACCEPTED, status="Accepted")
    stored, _ = _run([_message(letter), _message(result)])
    assert letter in stored
    assert result in stored
