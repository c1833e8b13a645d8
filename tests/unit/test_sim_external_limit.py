"""The simulated stations and external limits (ingest/sim/external.py): obeyed at once, told to
the CSMS in schema-valid 2.0.1 messages, withdrawn, and driven through the control file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_sim_station import make, run, spec

from control.contract import OcppVersion
from ingest.sim import commands
from ingest.sim.charger16 import Dialect16
from ingest.sim.charger201 import Dialect201
from ingest.sim.clock import ManualClock
from ingest.sim.events import ExternalLimitEvent
from ingest.sim.external import ControlError, ControlFile, LimitCommand, clear_limit, parse_command, set_limit
from ingest.sim.profiles import Purpose
from ingest.validation import check_payload

V201 = OcppVersion.V201


def charging_station(connectors: int = 1) -> Any:
    station, clock, _, csms = make(spec(V201, connectors=connectors))
    c = station.connectors[1]
    while c.session is None or not c.flow.flowing:
        run(station, clock, csms, 5)
    run(station, clock, csms, 30)  # ramped up to the hardware maximum
    assert c.flow.offered_a == 32.0
    return station, clock, csms


def sent(station: Any, clock: ManualClock) -> list[tuple[str, dict[str, Any]]]:
    dialect = Dialect201(station, clock)
    return [(item.action, item.payload) for event in station.drain() for item in dialect.translate(event)]


def test_a_limit_is_obeyed_at_once_and_told_in_a_valid_notify_charging_limit() -> None:
    station, clock, csms = charging_station()
    command = LimitCommand("SO", evse=1, limit=8.0, duration_s=600, grid_critical=True)
    assert set_limit(station, clock.now(), command)
    ((action, payload),) = [m for m in sent(station, clock) if m[0] == "NotifyChargingLimit"]
    assert check_payload(V201, action, payload) is None
    assert payload["chargingLimit"] == {"chargingLimitSource": "SO", "isGridCritical": True}
    assert payload["evseId"] == 1
    (schedule,) = payload["chargingSchedule"]
    assert (schedule["chargingRateUnit"], schedule["duration"], schedule["chargingSchedulePeriod"]) == (
        "A", 600, [{"startPeriod": 0, "limit": 8.0}])
    run(station, clock, csms, 30)
    assert station.connectors[1].flow.offered_a == 8.0


def test_cleared_lifts_it_and_a_csms_clear_cannot() -> None:
    station, clock, csms = charging_station()
    set_limit(station, clock.now(), LimitCommand("EMS", evse=0, limit=11040.0, unit="W"))
    assert not commands.clear_profiles(station, clock.now())  # ClearChargingProfile without criteria: none of its
    assert [p.purpose for p in station.profiles.profiles] == [Purpose.EXTERNAL]
    run(station, clock, csms, 30)
    assert station.connectors[1].flow.offered_a == 16.0  # 11040 W over 3 x 230 V
    station.drain()
    assert clear_limit(station, clock.now(), LimitCommand("EMS", cleared=True))
    ((action, payload),) = sent(station, clock)
    assert (action, payload) == ("ClearedChargingLimit", {"chargingLimitSource": "EMS"})
    assert check_payload(V201, action, payload) is None
    run(station, clock, csms, 30)
    assert station.connectors[1].flow.offered_a == 32.0


def test_a_limit_without_a_value_and_an_unknown_evse() -> None:
    station, clock, _ = charging_station()
    assert set_limit(station, clock.now(), LimitCommand("CSO"))
    ((action, payload),) = [m for m in sent(station, clock) if m[0] == "NotifyChargingLimit"]
    assert payload == {"chargingLimit": {"chargingLimitSource": "CSO", "isGridCritical": False}}
    assert check_payload(V201, action, payload) is None
    assert not set_limit(station, clock.now(), LimitCommand("SO", evse=3, limit=6.0))


def test_a_1_6_station_obeys_but_has_no_message_for_it() -> None:
    station, clock, _, _ = make(spec(OcppVersion.V16))
    set_limit(station, clock.now(), LimitCommand("SO", limit=10.0))
    events = station.drain()
    assert any(isinstance(e, ExternalLimitEvent) for e in events)
    assert all(Dialect16(station, clock).translate(e) == [] for e in events if isinstance(e, ExternalLimitEvent))


@pytest.mark.parametrize(("line", "message"), [
    ("{", "not JSON"),
    ('["a"]', "JSON object"),
    ('{"action": "notify_charging_limit", "source": "DSO"}', "source must be"),
    ('{"action": "limit", "source": "SO"}', "action must be"),
    ('{"action": "notify_charging_limit", "source": "SO", "limit": -1}', "limit must be"),
    ('{"action": "notify_charging_limit", "source": "SO", "unit": "kW"}', "unit must be"),
    ('{"action": "notify_charging_limit", "source": "SO", "phases": 4}', "phases must be"),
    ('{"action": "notify_charging_limit", "source": "SO", "evse": true}', "evse must be"),
    ('{"action": "cleared_charging_limit", "source": "SO", "limit": 6}', "a cleared limit has no limit"),
    ('{"action": "notify_charging_limit", "source": "SO", "amps": 6}', "unknown keys"),
])
def test_bad_control_lines_are_refused_with_a_reason(line: str, message: str) -> None:
    with pytest.raises(ControlError, match=message):
        parse_command(line)


def test_the_control_file_gives_each_complete_line_once(tmp_path: Path) -> None:
    path = tmp_path / "control.jsonl"
    control = ControlFile(path)
    assert control.poll() == []  # no file yet
    path.write_text('{"action": "notify_charging_limit", "charger": "SIM-0001", "source": "SO", "evse": 1, '
                    '"limit": 8, "grid_critical": true}\nnot json\n{"action": "cleared_charging_limit", "source": "SO"',
                    encoding="utf-8")
    assert control.poll() == [LimitCommand("SO", "SIM-0001", 1, limit=8.0, grid_critical=True)]
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("}\n")
    assert control.poll() == [LimitCommand("SO", cleared=True)]
    assert control.poll() == []
