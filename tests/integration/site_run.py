"""A load-managed site, end to end, and the checks that it kept its limits (used by
``tests/integration/test_e2e_control.py`` and ``bench/site_run.py``).

Everything is real: ``flowbank simulate`` chargers (EVs that follow charging profiles after a
reaction delay) -> ``flowbank bridge`` -> Mosquitto -> ``flowbank pipeline`` (load management
on) -> commands -> bridge -> SetChargingProfile -> the simulated chargers. The scenario writes
the site to PostgreSQL, swings the building load over MQTT (a HEMS), flips charging modes and
an operator limit while the run lasts, then :func:`check_site_run` reads what was stored.

What "never exceeds a limit" is checked as, from the stored rows only:

* **the controller**: at every decision, the limits in force for the connectors then plugged in
  (each connector's newest setpoint), plus the newest building-load reading per phase, stay at or
  under the main breaker minus the safety margin, and under an operator limit in force (the
  allocation's guarantee, checked on what was actually sent);
* **the chargers**: no setpoint was violated or refused (``setpoint_compliance``);
* **the audit log**: every decision has a reason, a binding constraint, its inputs and its
  command's outcome (accepted).

Times: decisions and commands carry the platform's clock, charger events the bridge's arrival
stamp (``bridge_received_at``), so an accelerated simulator clock does not matter here.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from control.contract import BuildingLoad, encode
from control.settings import MqttEndpoint
from control.topics import load_topic
from warehouse import control_store

MARGIN_A = 1.0  # AllocationParams' default safety margin
CONNECTED = ("Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Occupied", "Finishing")


def site_mapping(site_id: str, charger_ids: list[str], *, main_a: float, meter_timeout_s: float = 20.0,
                 safe_fallback_a: float = 6.0) -> dict[str, Any]:
    return {
        "site_id": site_id, "name": f"Site {site_id}", "meter_timeout_s": meter_timeout_s,
        "safe_fallback_a": safe_fallback_a,
        "circuits": [{"id": "main", "limit_a": main_a, "has_meter": True}],
        "chargers": [{"id": cid, "circuit": "main", "max_current_a": 32} for cid in charger_ids],
    }


class LoadSwinger:
    """Publishes a building load (a HEMS) every ``period_s``: a random walk between ``low_a`` and
    ``high_a`` per phase, with a step every ``swing_every_s``."""

    def __init__(self, endpoint: MqttEndpoint, site_id: str, *, low_a: float, high_a: float, period_s: float = 1.0,
                 swing_every_s: float = 5.0, seed: int = 7) -> None:
        self._site, self._low, self._high = site_id, low_a, high_a
        self._period, self._swing_every = period_s, swing_every_s
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self.published: list[BuildingLoad] = []
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"hems-{site_id}", protocol=mqtt.MQTTv5)
        self._client.connect(endpoint.host, endpoint.port)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="hems", daemon=True)

    def start(self) -> LoadSwinger:
        self._thread.start()
        return self

    def publish(self, amps: tuple[float, float, float]) -> None:
        event = BuildingLoad(self._site, datetime.now(UTC), power_w=sum(amps) * 230.0, current_l1_a=amps[0],
                             current_l2_a=amps[1], current_l3_a=amps[2], source="test-hems")
        self._client.publish(load_topic(self._site), encode(event), qos=1).wait_for_publish(5)
        self.published.append(event)

    def _run(self) -> None:
        level = self._low
        next_swing = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() >= next_swing:
                level = self._random.uniform(self._low, self._high)
                next_swing += self._swing_every
            self.publish((round(level, 1), round(level * 0.6, 1), round(level * 0.3, 1)))
            self._stop.wait(self._period)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self._client.disconnect()
        self._client.loop_stop()


@dataclass
class SiteRunReport:
    decisions: int = 0
    decision_times: int = 0
    commands_accepted: int = 0
    commands_other: collections.Counter[str] = field(default_factory=collections.Counter)
    compliance: collections.Counter[str] = field(default_factory=collections.Counter)
    worst_headroom_a: float = float("inf")  # smallest (limit - margin - building - EV limits) seen
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.decisions} decisions at {self.decision_times} instants; commands accepted "
                f"{self.commands_accepted}, other {dict(self.commands_other)}; compliance {dict(self.compliance)}; "
                f"smallest headroom {self.worst_headroom_a:.1f} A; reasons {dict(self.reasons.most_common(6))}")


def _rows(conn: psycopg.Connection[Any], query: str, *params: Any) -> list[tuple[Any, ...]]:
    return conn.execute(query, params).fetchall()


def check_site_run(dsn: str, site_id: str, *, main_a: float,
                   operator_limits: Sequence[tuple[datetime, datetime, float]] = ()) -> SiteRunReport:
    """Read the run back and check it (see the module docstring); ``problems`` lists what failed."""
    report = SiteRunReport()
    with psycopg.connect(dsn) as conn:
        decisions = _rows(conn, "select ts, decision_id, charger_id, connector_id, new_limit_a, reason, binding,"
                                " inputs, command_outcome from control_audit where site_id = %s order by ts", site_id)
        statuses = _rows(conn, "select bridge_received_at, charger_id, connector_id, status from status_events"
                               " where charger_id in (select c->>'id' from sites,"
                               " jsonb_array_elements(config->'chargers') c where site_id = %s)"
                               " order by bridge_received_at", site_id)
        loads = _rows(conn, "select ts, current_l1_a, current_l2_a, current_l3_a from building_loads"
                            " where site_id = %s order by ts", site_id)
        for verdict, count in _rows(conn, "select verdict, count(*) from setpoint_compliance where site_id = %s"
                                          " group by 1", site_id):
            report.compliance[verdict] = count
    report.decisions = len(decisions)
    by_time: dict[datetime, list[tuple[Any, ...]]] = collections.defaultdict(list)
    for row in decisions:
        by_time[row[0]].append(row)
        *_, reason, binding, inputs, outcome = row
        report.reasons[reason] += 1
        if not reason or not binding or not inputs:
            report.problems.append(f"decision without its explanation: {row}")
        if outcome == "accepted":
            report.commands_accepted += 1
        else:
            report.commands_other[str(outcome)] += 1
    report.decision_times = len(by_time)
    limit_now: dict[tuple[str, int], float] = {}
    status_i = load_i = 0
    plugged: dict[tuple[str, int], bool] = {}
    building = (0.0, 0.0, 0.0)
    for ts in sorted(by_time):
        while status_i < len(statuses) and statuses[status_i][0] is not None and statuses[status_i][0] <= ts:
            _, charger, connector, status = statuses[status_i]
            plugged[(charger, connector)] = status in CONNECTED
            status_i += 1
        while load_i < len(loads) and loads[load_i][0] <= ts:
            building = tuple(float(v or 0.0) for v in loads[load_i][1:])  # type: ignore[assignment]
            load_i += 1
        for row in by_time[ts]:
            limit_now[(row[2], row[3])] = float(row[4])
        ev = sum(limit for key, limit in limit_now.items() if plugged.get(key, True))
        headroom = main_a - MARGIN_A - max(building) - ev
        for start, end, amps in operator_limits:
            if start <= ts < end:
                headroom = min(headroom, amps - ev)  # an operator limit caps the EV current only
        report.worst_headroom_a = min(report.worst_headroom_a, headroom)
        if headroom < -1e-6:
            report.problems.append(f"at {ts:%H:%M:%S.%f} EV limits {ev:.1f} A with building {max(building):.1f} A"
                                   f" are {-headroom:.1f} A over: {limit_now}")
    for bad in ("violated", "rejected"):
        if report.compliance[bad]:
            report.problems.append(f"{report.compliance[bad]} setpoint(s) {bad}")
    return report


def save_site(dsn: str, mapping: dict[str, Any], rules: list[dict[str, Any]] | None = None) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        control_store.save_site(conn, mapping, rules=rules or [], updated_by="site-run")


def iter_chargers(prefix: str, count: int) -> Iterator[str]:
    return (f"{prefix}{i:04d}" for i in range(1, count + 1))
