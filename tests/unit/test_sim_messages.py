"""Every CALL the simulated chargers build is valid against the OCPP 1.6 / 2.0.1 JSON schemas."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from ocpp.messages import MessageType, get_validator

from control.contract import OcppVersion
from ingest.sim import commands
from ingest.sim.charger16 import Dialect16
from ingest.sim.charger201 import Dialect201
from ingest.sim.clock import ManualClock
from ingest.sim.dialect import Dialect
from ingest.sim.faults import FaultConfig, malformed_frame
from ingest.sim.model import ChargerKind, Hardware
from ingest.sim.outbox import Outbox
from ingest.sim.plan import Behaviour, ChargerSpec
from ingest.sim.station import Station, StationOptions
from ingest.sim.truth import MemorySink

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("version", [OcppVersion.V16, OcppVersion.V201])
@pytest.mark.parametrize("kind", [ChargerKind.AC3, ChargerKind.AC1, ChargerKind.DC])
def test_all_outgoing_payloads_match_the_schema(version: OcppVersion, kind: ChargerKind) -> None:
    spec = ChargerSpec("SIM-0042", version, Hardware(kind), 2, (10_000.0, 20_000.0), serial="SN1")
    clock = ManualClock(T0)
    station = Station(spec, seed=5, start=T0, truth=MemorySink(),
                      behaviour=Behaviour(first_arrival_max_s=60, dwell_min_s=900, dwell_max_s=1800,
                                          pause_probability=0.5, sessions_per_connector=3),
                      faults=FaultConfig(error_per_hour=1.0), options=StationOptions(ac_soc=True))
    station.online = True
    dialect: Dialect = (Dialect16 if version == OcppVersion.V16 else Dialect201)(station, clock)
    items = [dialect.boot("PowerUp"), dialect.heartbeat()]
    commands.upload(station, T0, kind="diagnostics" if version == OcppVersion.V16 else "log", request_id=1)
    commands.update_firmware(station, T0, retrieve_at=T0, request_id=2)
    accepted = {"status": "Accepted"}
    answers = {"Authorize": {"idTagInfo": accepted, "idTokenInfo": accepted},
               "StartTransaction": {"transactionId": 7, "idTagInfo": accepted}}
    for step in range(400):
        now = clock.advance(20)
        station.tick(now)
        if step % 97 == 0:
            for message in sorted(commands.TRIGGERABLE):
                commands.trigger(station, now, message, None)
        while station.events:
            for event in station.drain():
                for item in dialect.translate(event):
                    items.append(item)
                    Outbox.finish(item, answers.get(item.action, {}))  # as the runtime does with a reply
    actions = {item.action for item in items}
    expected = {"BootNotification", "Heartbeat", "StatusNotification", "MeterValues", "FirmwareStatusNotification"}
    expected |= ({"StartTransaction", "StopTransaction", "DiagnosticsStatusNotification"}
                 if version == OcppVersion.V16 else {"TransactionEvent", "NotifyEvent", "LogStatusNotification"})
    assert expected <= actions
    seen: set[str] = set()
    for item in items:
        payload = dialect.prepare(item)
        assert payload is not None
        shape = item.action + re.sub(r"\d", "0", json.dumps(payload, sort_keys=True))
        if shape not in seen:  # the schema check is slow; validate each distinct shape once
            seen.add(shape)
            get_validator(MessageType.Call, item.action, version.value).validate(payload)
    assert len(seen) > 20


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_broken_frames_are_broken_the_intended_way(version: str) -> None:
    text, reply = malformed_frame("not_json", version, "m1")
    with pytest.raises(ValueError):
        json.loads(text)
    assert not reply
    text, reply = malformed_frame("wrong_shape", version, "m2")
    assert isinstance(json.loads(text), dict) and not reply
    text, reply = malformed_frame("schema_violation", version, "m3")
    frame = json.loads(text)
    assert reply and frame[:3] == [2, "m3", "StatusNotification"]
    with pytest.raises(Exception, match="is not of type"):
        get_validator(MessageType.Call, "StatusNotification", version).validate(frame[3])
    text, reply = malformed_frame("unknown_action", version, "m4")
    assert reply and json.loads(text)[2] == "FlyToTheMoon"


def test_timestamps_are_utc_with_z() -> None:
    from ingest.sim.clock import iso_z, parse_ts

    assert iso_z(T0 + timedelta(microseconds=1500)) == "2026-03-01T08:00:00.001Z"
    assert parse_ts("2026-03-01T09:00:00+01:00") == T0
    assert parse_ts("2026-03-01T08:00:00") == T0  # a CSMS without a zone means UTC
