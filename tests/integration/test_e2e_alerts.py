"""Alerts end to end: the simulator injects hardware faults, a departure is missed, the chargers
go silent and come back; bridge, dataflow, PostgreSQL and MQTT are all real.

Two chargers (OCPP 1.6 and 2.0.1) on one site, one EV each, connector errors at a high rate.
Checked against the simulator's ground truth: every injected fault has its fault alert on the
right charger and connector at the fault's time, resolved iff the connector reported healthy
again; every confirmed session has one completed / interrupted alert at its stop time (an
interruption iff a fault hit it); the missed departure fires at the departure time; the site's
error spike fires; both chargers go offline when the simulator stops and are back online (the
offline alert resolved, a back-online notice) when it restarts; every stored alert was
published on ``flowbank/v1/alert/<site>/<charger>`` with its latest state; every alert has its
creation transition. Waiting for vehicle must NOT fire (the EVs draw at once), nor data quality.

Not covered here (unit and flow tests only): waiting for vehicle firing, data-quality
anomalies, security events, a 2.0.1 NotifyEvent from a real charger model other than the
simulator's, acknowledgement through the console (see test_alert_store.py).
About 2 minutes.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from e2e_harness import (
    Child,
    Platform,
    PrivateBroker,
    own_database,  # noqa: F401 - pg_dsn: a database of its own
    read_jsonl,
    register_chargers,
    wait_until,
)
from paho.mqtt.enums import CallbackAPIVersion
from site_run import save_site

from control import contract as c
from control.alerts import AlertKind
from control.settings import MqttEndpoint
from control.site_config import Departure
from control.topics import ALERTS_ALL, alert_topic
from ingest.sim.faults import ERROR_CODES
from warehouse import alert_store, control_store

pytestmark = [pytest.mark.integration, pytest.mark.slow(seconds=60)]  # measured: scripts/test.sh runs it first

PASSWORD = "e2e-alerts-password-1"
SITE = "alert-site"
PREFIX = "ALR-"
CHARGERS = [f"{PREFIX}0001", f"{PREFIX}0002"]  # 0001: OCPP 1.6, 0002: OCPP 2.0.1 (simulator order)
TUNABLES = {"disconnect_grace_s": 5, "offline_factor": 3.0, "hold_down_s": 5, "waiting_after_s": 600,
            "spike_faults": 2, "spike_window_s": 300}
SIM_S = 50
SEED = os.environ.get("FLOWBANK_E2E_ALERT_SEED", "11")  # its faults must come in 2 episodes (5 s apart)


class AlertListener:
    """Every alert published on the broker, in arrival order."""

    def __init__(self, endpoint: MqttEndpoint) -> None:
        self.messages: list[tuple[str, c.Alert]] = []
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="e2e-alert-listener", protocol=mqtt.MQTTv5)
        self._client.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe(ALERTS_ALL, qos=1)
        self._client.on_message = self._on_message
        self._client.connect(endpoint.host, endpoint.port)
        self._client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        alert = c.decode(bytes(msg.payload))
        assert isinstance(alert, c.Alert)
        with self._lock:
            self.messages.append((msg.topic, alert))

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _site(charger_ids: list[str]) -> dict[str, Any]:
    return {"site_id": SITE, "name": "Alert site", "circuits": [{"id": "main", "limit_a": 200, "has_meter": False}],
            "chargers": [{"id": cid, "circuit": "main", "max_current_a": 32} for cid in charger_ids]}


def _alerts(dsn: str) -> list[alert_store.AlertRow]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return alert_store.list_alerts(conn, charger_ids=CHARGERS, limit=10_000)


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _sim(platform: Platform, name: str, index: int, args: list[str]) -> Child:
    """One simulated charger: index 1 speaks OCPP 1.6, index 2 OCPP 2.0.1."""
    return platform.start_simulator(name, [
        "--chargers", "1", "--first-index", str(index), "--id-prefix", PREFIX, "--v201-fraction", str(index - 1),
        "--dc", "0", "--two-connector-fraction", "0", "--single-phase-fraction", "0", "--speed", "1",
        "--drain-timeout", "5", "--response-timeout", "10", *args], password=PASSWORD)


def test_each_alert_type_fires_on_the_right_charger_at_the_right_time(
        pg_dsn: str, broker: PrivateBroker, tmp_path: Path) -> None:
    register_chargers(pg_dsn, CHARGERS, PASSWORD, site_id=SITE, scrypt_n=2**11)
    save_site(pg_dsn, _site(CHARGERS))
    start = datetime.now(UTC)
    departure_at = (start + timedelta(seconds=25)).replace(microsecond=0)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # unreachable: 500 kWh in a minute
        control_store.set_departure(conn, CHARGERS[0], 1, Departure(departure_at, energy_wh=500_000.0))
    listener = AlertListener(broker.endpoint)
    try:
        with Platform(pg_dsn, broker.endpoint, tmp_path / "platform", PREFIX, broker=broker,
                      extra_env={"FLOWBANK_HEARTBEAT_INTERVAL_S": "5"}) as platform:
            pipeline = platform._child("pipeline", [sys.executable, str(Path(__file__).with_name("alerts_pipeline.py")),
                                                    json.dumps(TUNABLES)])
            pipeline.wait_for_log(r"MQTT source connected", timeout=90)
            platform.start_bridge()
            # 0001 charges once, uneventfully (completed, missed departure); 0002 has no EV and faults.
            sims = [
                _sim(platform, "sim16", 1, ["--seed", "3", "--sessions", "1", "--first-arrival-max", "3",
                                            "--dwell-min", "30", "--dwell-max", "35", "--meter-interval", "2",
                                            "--duration", str(SIM_S), "--truth", str(tmp_path / "truth16.jsonl")]),
                _sim(platform, "sim201", 2, ["--seed", SEED, "--first-arrival-max", "1000", "--error-rate", "80",
                                             "--error-mean", "3", "--error-codes", "GroundFailure,HighTemperature",
                                             "--duration", str(SIM_S), "--truth", str(tmp_path / "truth201.jsonl")]),
            ]
            for sim in sims:
                assert sim.wait(timeout=SIM_S + 60) == 0, sim.tail()
            stopped_at = datetime.now(UTC)
            # The simulator is gone: both chargers go offline (closed connection + 5 s grace).
            wait_until(lambda: _state_of(pg_dsn, AlertKind.CHARGER_OFFLINE) == {cid: "open" for cid in CHARGERS},
                       timeout=60, what="both chargers offline",
                       on_timeout=lambda: f"{_state_of(pg_dsn, AlertKind.CHARGER_OFFLINE)}\n{platform.tails()}")
            restarted_at = datetime.now(UTC)
            again = [_sim(platform, f"again{i}", i, ["--seed", "12", "--first-arrival-max", "1000", "--duration", "40",
                                                     "--truth", str(tmp_path / f"again{i}.jsonl")]) for i in (1, 2)]
            wait_until(lambda: _state_of(pg_dsn, AlertKind.CHARGER_OFFLINE) == {cid: "resolved" for cid in CHARGERS},
                       timeout=60, what="both chargers back online",
                       on_timeout=lambda: f"{_state_of(pg_dsn, AlertKind.CHARGER_OFFLINE)}\n{platform.tails()}")
            # Looked at while the chargers are still back (their second stop would be a second offline).
            wait_until(lambda: _published_all(pg_dsn, listener), timeout=30, what="every alert published",
                       on_timeout=lambda: f"{len(listener.messages)} messages")
            alerts = _alerts(pg_dsn)
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                statuses = conn.execute("select charger_id, connector_id, ts, status from status_events"
                                        " where starts_with(charger_id, %s) order by ts", (PREFIX,)).fetchall()
                transitions = {a.alert_id: alert_store.transitions(conn, a.alert_id) for a in alerts}
            assert all(sim.running() for sim in again), "the restarted simulators stopped too early"
            for sim in again:
                sim.stop()
    finally:
        listener.stop()

    records = read_jsonl(tmp_path / "truth16.jsonl") + read_jsonl(tmp_path / "truth201.jsonl")
    faults = [f for f in records if f["kind"] == "fault" and f["code"] in ERROR_CODES]
    sessions = [s for s in records if s["kind"] == "session" and s["confirmed"]]
    assert len({f["ts"] for f in faults}) >= 2 and {f["charger_id"] for f in faults} == {CHARGERS[1]}, records
    assert len(sessions) == 1 and sessions[0]["charger_id"] == CHARGERS[0], records
    by_kind: dict[str, list[alert_store.AlertRow]] = {}
    for a in alerts:
        by_kind.setdefault(a.kind, []).append(a)
    summary = {k: len(v) for k, v in by_kind.items()}

    # Faults: each injected fault opens (or reopens) the connector's fault alert at its time, or
    # falls while it is open (a 2.0.1 problem comes twice: NotifyEvent and a Faulted status);
    # nothing else opens one. The last alert is resolved iff the connector is healthy at the end.
    fault_alerts = sorted(by_kind[AlertKind.FAULT], key=lambda a: a.ts)
    assert {(a.charger_id, a.connector_id, a.site_id) for a in fault_alerts} == {(CHARGERS[1], 1, SITE)}
    spans: list[tuple[datetime, datetime | None]] = []  # (opened, resolved) of every episode
    for a in fault_alerts:
        for t in transitions[a.alert_id]:
            if t.to_state is c.AlertState.OPEN:
                spans.append((t.ts, None))
            elif t.to_state is c.AlertState.RESOLVED and spans:
                spans[-1] = (spans[-1][0], t.ts)
    second = timedelta(seconds=1)
    for f in faults:
        at = _ts(f["ts"])
        assert any(abs(opened - at) < second or (opened <= at and (resolved is None or at <= resolved))
                   for opened, resolved in spans), (f, spans)
    assert all(any(abs(opened - _ts(f["ts"])) < second for f in faults) for opened, _ in spans), (spans, faults)
    assert len(spans) >= 2, spans
    last_status = [st for st in statuses if (st[0], st[1]) == (CHARGERS[1], 1)][-1][3]
    assert (fault_alerts[-1].state is c.AlertState.RESOLVED) == (last_status != "Faulted"), (fault_alerts, statuses)

    # Sessions: one alert each at the stop time; interrupted iff a hardware fault hit it.
    ended = by_kind.get(AlertKind.SESSION_COMPLETED, []) + by_kind.get(AlertKind.SESSION_INTERRUPTED, [])
    for s in sessions:
        mine = [a for a in ended if a.charger_id == s["charger_id"] and a.ts == _ts(s["stop_ts"])]
        assert len(mine) == 1, (s, ended)
        hit = any(code in ERROR_CODES for code in s["faults"])
        assert mine[0].kind == (AlertKind.SESSION_INTERRUPTED if hit else AlertKind.SESSION_COMPLETED), (s, mine)
        assert s["transaction_id"] in mine[0].message
    assert len(ended) == len(sessions)

    # The departure: missed iff an EV was plugged in at the departure time (by the charger's statuses).
    before = [st[3] for st in statuses if (st[0], st[1]) == (CHARGERS[0], 1) and st[2] <= departure_at]
    plugged = bool(before) and before[-1] in ("Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Occupied")
    missed = by_kind.get(AlertKind.MISSED_CHARGE, [])
    if plugged:
        assert [(a.charger_id, a.connector_id, a.ts) for a in missed] == [(CHARGERS[0], 1, departure_at)], missed
        assert "0.5 kWh" not in missed[0].message and "500.0 kWh requested" in missed[0].message
    else:
        assert missed == []

    # The site's error spike (2 fault episodes within 5 minutes).
    spikes = by_kind[AlertKind.ERROR_SPIKE]
    assert [(a.site_id, a.charger_id) for a in spikes if a.site_id == SITE] == [(SITE, None)], spikes

    # Offline while the simulator was stopped, back online when it came back.
    for cid in CHARGERS:
        (offline,) = [a for a in by_kind[AlertKind.CHARGER_OFFLINE] if a.charger_id == cid]
        # Raised at the deadline (its last message + the grace); its ts moved on to the resolution.
        assert offline.first_seen is not None and stopped_at - timedelta(seconds=SIM_S) < offline.first_seen \
            < restarted_at, (offline, stopped_at, restarted_at)
        assert offline.resolved_at is not None and restarted_at <= offline.resolved_at == offline.ts, offline
        (notice,) = [a for a in by_kind[AlertKind.CHARGER_BACK_ONLINE] if a.charger_id == cid]
        assert notice.state is c.AlertState.RESOLVED and notice.ts == offline.resolved_at, (notice, offline)

    assert AlertKind.WAITING_FOR_VEHICLE not in by_kind and AlertKind.DATA_QUALITY not in by_kind, summary

    # Every alert's lifecycle starts with its creation, by the pipeline.
    latencies = []
    for a in alerts:
        steps = transitions[a.alert_id]
        assert steps and steps[0].from_state is None and steps[0].actor == "pipeline", (a, steps)
        assert steps[-1].to_state is a.state, (a, steps)
        latencies += [t.latency_s for t in steps]
    latencies.sort()
    print(f"[e2e alerts] {summary}; event (or deadline) -> stored: median {latencies[len(latencies) // 2]:.2f} s,"
          f" max {latencies[-1]:.2f} s over {len(latencies)} transitions")


def _state_of(dsn: str, kind: str) -> dict[str, str]:
    return {a.charger_id or "-": a.state.value for a in _alerts(dsn) if a.kind == kind}


def _published_all(dsn: str, listener: AlertListener) -> bool:
    """Every stored alert was published, its latest state last, on its site's and charger's topic."""
    latest: dict[str, tuple[str, c.Alert]] = {}
    for topic, alert in list(listener.messages):
        latest[alert.alert_id] = (topic, alert)
    for row in _alerts(dsn):
        seen = latest.get(row.alert_id)
        if seen is None or seen[1].state is not row.state or seen[1].count != row.count \
                or seen[0] != alert_topic(row.site_id, row.charger_id):
            return False
    return True
