"""pipelines.live: the status chip (the order is the policy) and change detection."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from control.contract import ConnectorState as S
from control.records import LiveStatus
from pipelines.live import ConnectorView, chip, fingerprint, live_state

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BASE = ConnectorView(charger_id="cp-1", connector_id=1, online=True)


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param({}, LiveStatus.IDLE, id="nothing-known"),
    pytest.param({"status": S.AVAILABLE}, LiveStatus.IDLE, id="available"),
    pytest.param({"status": S.RESERVED}, LiveStatus.IDLE, id="reserved"),
    pytest.param({"status": S.PREPARING}, LiveStatus.WAITING_FOR_VEHICLE, id="preparing"),
    pytest.param({"status": S.OCCUPIED}, LiveStatus.WAITING_FOR_VEHICLE, id="occupied-201"),
    pytest.param({"status": S.SUSPENDED_EV}, LiveStatus.WAITING_FOR_VEHICLE, id="suspended-ev-before-energy"),
    pytest.param({"status": S.SUSPENDED_EV, "session_drew_energy": True}, LiveStatus.PAUSED, id="suspended-ev"),
    pytest.param({"status": S.SUSPENDED_EVSE}, LiveStatus.PAUSED, id="suspended-evse"),
    pytest.param({"status": S.CHARGING}, LiveStatus.CHARGING, id="charging-status"),
    pytest.param({"status": S.CHARGING, "power_w": 0.0}, LiveStatus.CHARGING, id="charging-status-no-power"),
    pytest.param({"status": S.PREPARING, "power_w": 7_000.0}, LiveStatus.CHARGING, id="drawing-power"),
    pytest.param({"status": S.PREPARING, "power_w": 30.0}, LiveStatus.WAITING_FOR_VEHICLE, id="trickle"),
    pytest.param({"session_id": "cp-1:1:42"}, LiveStatus.WAITING_FOR_VEHICLE, id="session-no-status"),
    pytest.param({"status": S.FAULTED}, LiveStatus.ERROR, id="faulted"),
    pytest.param({"status": S.CHARGING, "error_code": "GroundFailure"}, LiveStatus.ERROR, id="error-code"),
    pytest.param({"status": S.AVAILABLE, "charger_error": True}, LiveStatus.ERROR, id="charger-faulted"),
    pytest.param({"status": S.CHARGING, "power_w": 7_000.0, "online": False}, LiveStatus.OFFLINE, id="offline"),
])
def test_chip(changes: dict[str, Any], expected: LiveStatus) -> None:
    view = dataclasses.replace(BASE, **changes)
    assert chip(view, waiting_power_threshold_w=50.0) is expected


def test_live_state_carries_the_figures() -> None:
    view = dataclasses.replace(BASE, status=S.CHARGING, power_w=7_000.0, current_a=30.4, soc_pct=55.0,
                               session_id="cp-1:1:42", session_started_at=NOW - timedelta(hours=1),
                               session_energy_wh=6_900.0)
    state = live_state(view, now=NOW, last_seen_at=NOW, waiting_power_threshold_w=50.0)
    assert (state.status, state.connector_status, state.power_w, state.current_a, state.session_energy_wh) == (
        LiveStatus.CHARGING, "Charging", 7_000.0, 30.4, 6_900.0)


def test_the_fingerprint_tells_views_apart() -> None:
    assert fingerprint(BASE) == fingerprint(dataclasses.replace(BASE))
    assert fingerprint(dataclasses.replace(BASE, power_w=1.0)) != fingerprint(BASE)
    assert len(fingerprint(BASE)) == 8
