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
from pipelines.sinks import Tick, TickSource

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


def test_samples_that_name_no_connector_are_stored_on_their_sessions_connector() -> None:
    """2.0.1 TransactionEvents after the first and a 1.6 Stop's transactionData say connector 0;
    the stored rows (and their verdicts, which key on the connector) are on the session's one."""
    start = T0 + timedelta(seconds=5)
    events: list[c.Event] = [
        c.TransactionEvent(CP, 2, start, c.TransactionKind.STARTED, "tx-2", meter_wh=5_000.0, received_at=start),
        *(c.MeterSample(CP, 0, start + timedelta(minutes=m), transaction_id="tx-2", energy_wh=5_000.0 + 100.0 * m,
                        received_at=start + timedelta(minutes=m)) for m in (1, 2)),
        c.MeterSample(CP, 0, start + timedelta(minutes=3), context=c.SampleContext.TRANSACTION_END,
                      transaction_id="tx-2", energy_wh=5_300.0, received_at=start + timedelta(minutes=3)),
        c.TransactionEvent(CP, 0, start + timedelta(minutes=3), c.TransactionKind.ENDED, "tx-2", meter_wh=5_300.0,
                           received_at=start + timedelta(minutes=3)),
    ]
    stored, _ = _run([_message(e) for e in events])
    samples = [x for x in stored if isinstance(x, c.MeterSample)]
    verdicts = [x for x in stored if type(x).__name__ == "SampleVerdict"]
    assert len(samples) == 3 and {s.connector_id for s in samples} == {2}
    assert {(v.connector_id, v.ts, v.session_id) for v in verdicts} == {
        (2, s.ts, f"{CP}:2:tx-2") for s in samples}
    final = max((x for x in stored if isinstance(x, SessionRecord)), key=lambda s: s.revision)
    assert (final.session_id, final.energy_wh, final.state) == (f"{CP}:2:tx-2", 300.0, SessionState.CLOSED)


def test_the_lake_tick_says_nothing_until_due_and_never_sleeps_past_a_nap() -> None:
    now = [T0]
    part = TickSource(timedelta(seconds=10), nap=timedelta(milliseconds=200), clock=lambda: now[0]).build_part(
        "tick", "tick", None)
    assert part.next_batch() == [] and part.next_awake() == T0 + timedelta(milliseconds=200)
    now[0] = T0 + timedelta(seconds=10)
    assert [type(t) for t in part.next_batch()] == [Tick] and part.next_batch() == []
    assert part.next_awake() == now[0] + timedelta(milliseconds=200)


IDLE_FLOW = """
import sys
from datetime import UTC, datetime, timedelta
import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import run_main
from pipelines.sinks import TickSource

class Idle(StatefulSourcePartition):  # like the MQTT source with nothing to read
    def next_batch(self): return []
    def next_awake(self): return datetime.now(UTC) + timedelta(milliseconds=10)
    def snapshot(self): return None

class IdleSource(FixedPartitionedSource):
    def list_parts(self): return ["0"]
    def build_part(self, step_id, for_part, resume_state): return Idle()

flow = Dataflow("idle")
items = op.merge("m", op.input("mqtt", flow, IdleSource()), op.input("tick", flow, TickSource(timedelta(seconds=10))))
op.inspect("out", items, lambda *a: None)
print("running", flush=True)
run_main(flow, epoch_interval=timedelta(seconds=1))
"""


def test_an_idle_flow_with_the_lake_tick_does_not_spin() -> None:
    """Bytewax 0.21 keeps a worker at 100 % CPU while an input sleeps past the epoch interval;
    an idle pipeline with a 10 s tick and 1 s epochs burned a whole core."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    child = subprocess.Popen([sys.executable, "-c", IDLE_FLOW], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "running"
        time.sleep(1.0)  # past the start-up

        def cpu_s() -> float:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        before, start = cpu_s(), time.monotonic()
        time.sleep(3.0)
        share = (cpu_s() - before) / (time.monotonic() - start)
    finally:
        child.kill()
        child.communicate(timeout=10)
    assert share < 0.5, f"an idle flow used {share:.0%} of a core"
