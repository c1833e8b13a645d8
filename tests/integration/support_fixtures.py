"""Support console test data: alerts, status events, a session, commands and frames on the portal's chargers,
plus a command sender that answers like a charger would (no MQTT, no bridge)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import psycopg
from dbutil import Db
from portal_fixtures import NOW
from psycopg.types.json import Jsonb

from control.contract import CommandOutcome, JsonScalar
from dashboards.access import Access
from warehouse.command_api import DEFAULT_TIMEOUT_S, Action, CommandReply, ReplyState, Target

ALERTS = (
    # alert_id, kind, severity, minutes ago, message, state, charger, dedupe key
    ("al-ground", "fault", "error", 30, "Bay 5: GroundFailure on connector 1", "open", "SIM-0005",
     "fault|SIM-0005|1|status|GroundFailure"),
    ("al-offline", "charger_offline", "error", 20, "Bay 3 is offline: no heartbeat for 12 min", "open", "SIM-0003",
     "charger_offline|SIM-0003"),
    ("al-waiting", "waiting_for_vehicle", "info", 10, "Bay 2: connected but not drawing for 15 min", "open",
     "SIM-0002", "waiting_for_vehicle|SIM-0002|1"),
    ("al-done", "session_completed", "info", 90, "Bay 1: session completed, 12.4 kWh", "resolved", "SIM-0001",
     "session_completed|SIM-0001|1"),
)


def make_access(dsn: str) -> Access:
    counter = itertools.count(1)
    return Access(Db(dsn), clock=lambda: NOW, new_id=lambda: f"u-test-{next(counter)}")


def seed_support(dsn: str) -> None:
    """Idempotent: alerts, status events, a session, a command with its result and a few frames."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for alert_id, kind, severity, ago, message, state, charger, key in ALERTS:
            conn.execute("insert into alerts (alert_id, kind, severity, ts, message, state, charger_id, site_id, count,"
                         " dedupe_key, connector_id) values (%s, %s, %s, %s, %s, %s, %s, 'demo', 1, %s, 1)"
                         " on conflict do nothing",
                         (alert_id, kind, severity, NOW - timedelta(minutes=ago), message, state, charger, key))
        for ago, status, error in ((120, "Available", "NoError"), (60, "Charging", "NoError"),
                                   (31, "Faulted", "GroundFailure")):
            conn.execute("insert into status_events (ts, charger_id, connector_id, status, error_code) values"
                         " (%s, 'SIM-0005', 1, %s, %s) on conflict do nothing",
                         (NOW - timedelta(minutes=ago), status, error))
        conn.execute("insert into sessions (session_id, charger_id, connector_id, transaction_id, site_id, state,"
                     " revision, started_at, ended_at, energy_wh) values ('SIM-0005-1-tx9', 'SIM-0005', 1, '9', 'demo',"
                     " 'closed', 3, %s, %s, 8200) on conflict do nothing",
                     (NOW - timedelta(minutes=60), NOW - timedelta(minutes=31)))
        envelope = {"v": 1, "type": "command", "data": {"command_id": "cmd-seed-1", "charger_id": "SIM-0005",
                                                         "kind": "reset", "requested_by": "demo-support",
                                                         "params": {"type": "soft"}}}
        conn.execute("insert into command_queue (command_id, charger_id, kind, payload, issued_at, expires_at,"
                     " outcome, status, finished_at) values ('cmd-seed-1', 'SIM-0005', 'reset', %s, %s, %s,"
                     " 'accepted', 'Accepted', %s) on conflict do nothing",
                     (Jsonb(envelope), NOW - timedelta(minutes=25), NOW - timedelta(minutes=23),
                      NOW - timedelta(minutes=25)))
        conn.execute("insert into command_results (ts, command_id, charger_id, outcome, status) values"
                     " (%s, 'cmd-seed-1', 'SIM-0005', 'accepted', 'Accepted') on conflict do nothing",
                     (NOW - timedelta(minutes=25),))


class FakeCharger:
    """Answers every command at once, as an online OCPP 1.6 charger of the simulator would."""

    def __init__(self, config: Mapping[str, JsonScalar] | None = None, *, online: bool = True) -> None:
        self.sent: list[tuple[Action, Target, str | None, dict[str, Any]]] = []
        self.config = dict(config or {"HeartbeatInterval": "60", "MeterValueSampleInterval": "30",
                                      "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import",
                                      "LocalAuthorizeOffline": "true", "StopTransactionOnEVSideDisconnect": "false",
                                      "ChargeProfileMaxStackLevel": "8",
                                      "SupportedFeatureProfiles": "Core,SmartCharging,RemoteTrigger",
                                      "NumberOfConnectors": "1"})
        self.online = online
        self._ids = itertools.count(1)

    def send(self, action: Action, target: Target, *, requested_by: str | None,
             params: Mapping[str, JsonScalar] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> CommandReply:
        extra = dict(params or {})
        self.sent.append((action, target, requested_by, extra))
        command_id = f"fake-{next(self._ids)}"
        if not self.online:
            return CommandReply(target.charger_id, target.connector_id, command_id, action, ReplyState.NO_RESULT_YET,
                                elapsed_s=timeout_s)
        payload: dict[str, JsonScalar] = {}
        if action is Action.GET_CONFIG:
            key = extra.get("key")
            payload = dict(self.config) if key is None else {str(key): self.config.get(str(key).split(".")[-1])}
        elif action is Action.GET_DIAGNOSTICS:
            payload = {"file_name": f"diagnostics-{target.charger_id}.log"}
        return CommandReply(target.charger_id, target.connector_id, command_id, action, ReplyState.DONE,
                            outcome=CommandOutcome.ACCEPTED, status="Accepted", payload=payload, elapsed_s=0.01)
