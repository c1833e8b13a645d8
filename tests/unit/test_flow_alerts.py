"""The alert wiring of the dataflow with bytewax.testing sources and sinks (no services).

The offline alert comes from a Bytewax timer (``notify_at``) while the source pauses: no input
arrives then, which is the point. The clock is the real one (Bytewax's timers are), the waits
are generous and nothing asserts how long anything took.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.testing import TestingSink, TestingSource, run_main

from control import contract as c
from control.alerts import AlertChange, AlertConfig, AlertKind
from control.topics import topic_for
from pipelines.flow import FlowParts, build_dataflow
from pipelines.mqtt_source import MqttMessage

CP = "CP-ALERT-1"


def _message(event: c.Event) -> MqttMessage:
    return MqttMessage(topic_for(event), c.encode(event), datetime.now(UTC))


def test_alerts_are_detected_in_the_flow_and_reach_the_alert_sink_only() -> None:
    t0 = datetime.now(UTC).replace(microsecond=0)
    events: list[Any] = [
        c.ConnectionEvent(CP, t0, c.ConnectionKind.BOOTED, heartbeat_interval_s=1),
        c.StatusChanged(CP, 1, t0, c.ConnectorState.FAULTED, error_code="GroundFailure"),
        c.StatusChanged(CP, 1, t0 + timedelta(milliseconds=10), c.ConnectorState.AVAILABLE, error_code="NoError"),
        c.TransactionEvent(CP, 1, t0 - timedelta(hours=1), c.TransactionKind.STARTED, "77", meter_wh=100.0),
        c.TransactionEvent(CP, 1, t0 + timedelta(milliseconds=20), c.TransactionKind.ENDED, "77", meter_wh=2100.0,
                           stop_reason="Local"),
    ]
    items: list[Any] = [_message(e) for e in events]
    # Silence: 1 s heartbeat x factor 2 -> offline after 2 s; the source says nothing for 6 s.
    items.append(TestingSource.PAUSE(timedelta(seconds=6)))
    items.append(MqttMessage(topic_for(events[0]), c.encode(c.ConnectionEvent(
        CP, datetime.now(UTC) + timedelta(seconds=6), c.ConnectionKind.HEARTBEAT)), datetime.now(UTC)))
    stored: list[Any] = []
    alerts: list[AlertChange] = []
    parts = FlowParts(source=TestingSource(items, batch_size=10), timescale=TestingSink(stored), lake=None, live=None,
                      alerts=TestingSink(alerts),
                      alert_config=AlertConfig(offline_factor=2.0, disconnect_grace=timedelta(seconds=2)))
    run_main(build_dataflow(parts), epoch_interval=timedelta(milliseconds=200))

    seen = [(a.alert.kind, a.alert.state) for a in alerts]
    assert seen == [
        (AlertKind.FAULT, c.AlertState.OPEN),
        (AlertKind.FAULT, c.AlertState.RESOLVED),
        (AlertKind.SESSION_COMPLETED, c.AlertState.RESOLVED),
        (AlertKind.CHARGER_OFFLINE, c.AlertState.OPEN),
        (AlertKind.CHARGER_OFFLINE, c.AlertState.RESOLVED),
        (AlertKind.CHARGER_BACK_ONLINE, c.AlertState.RESOLVED),
    ], seen
    assert all(a.alert.charger_id == CP for a in alerts)
    assert alerts[0].alert.ts == t0 and alerts[0].connector_id == 1
    offline = alerts[3].alert
    assert t0 + timedelta(seconds=2) <= offline.ts < t0 + timedelta(seconds=6)  # last seen + 2 s, in event terms
    assert "2.00 kWh delivered" in alerts[2].alert.message
    # The alert sink stores them; the generic TimescaleDB path does not get them twice.
    assert not any(isinstance(x, c.Alert) for x in stored)
    assert any(isinstance(x, c.StatusChanged) for x in stored)


def test_without_an_alert_sink_the_flow_has_no_alert_steps() -> None:
    parts = FlowParts(source=TestingSource([]), timescale=TestingSink([]), lake=None, live=None)
    flow = build_dataflow(parts)
    assert not any("alert" in step.step_id for step in flow.substeps)
