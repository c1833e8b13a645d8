"""The troubleshooting actions map to commands the bridge can send on both OCPP versions (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from control.contract import CommandKind, JsonScalar, OcppVersion
from ingest.commands import ChargerState, build_call
from warehouse.command_api import Action, Target, command_for

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CASES: list[tuple[Action, int | None, dict[str, JsonScalar], CommandKind, str, str, dict[str, Any], dict[str, Any]]] = [
    (Action.SOFT_RESET, None, {}, CommandKind.RESET, "Reset", "Reset", {"type": "Soft"}, {"type": "OnIdle"}),
    (Action.HARD_RESET, None, {}, CommandKind.RESET, "Reset", "Reset", {"type": "Hard"}, {"type": "Immediate"}),
    (Action.TRIGGER, 1, {"message": "StatusNotification"}, CommandKind.TRIGGER, "TriggerMessage", "TriggerMessage",
     {"requestedMessage": "StatusNotification", "connectorId": 1},
     {"requestedMessage": "StatusNotification", "evse": {"id": 1}}),
    (Action.CHANGE_AVAILABILITY, None, {"type": "Inoperative"}, CommandKind.CHANGE_AVAILABILITY,
     "ChangeAvailability", "ChangeAvailability", {"connectorId": 0, "type": "Inoperative"},
     {"operationalStatus": "Inoperative"}),
    (Action.GET_CONFIG, None, {"key": "OCPPCommCtrlr.HeartbeatInterval"}, CommandKind.GET_CONFIG,
     "GetConfiguration", "GetVariables", {"key": ["OCPPCommCtrlr.HeartbeatInterval"]},
     {"getVariableData": [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}),
    (Action.GET_DIAGNOSTICS, None, {"location": "http://h:8090/upload/CP-1"}, CommandKind.GET_DIAGNOSTICS,
     "GetDiagnostics", "GetLog", {"location": "http://h:8090/upload/CP-1"}, {"logType": "DiagnosticsLog"}),
]


@pytest.mark.parametrize(("action", "connector", "params", "kind", "call16", "call201", "has16", "has201"), CASES)
def test_troubleshooting_actions_build_ocpp_calls(action: Action, connector: int | None,
                                                  params: dict[str, JsonScalar], kind: CommandKind, call16: str,
                                                  call201: str, has16: dict[str, Any], has201: dict[str, Any]) -> None:
    command = command_for(action, Target("CP-1", connector), command_id="c-1", now=NOW, requested_by="u",
                          params=params)
    assert command.kind is kind
    one = build_call(command, OcppVersion.V16, ChargerState(), NOW)
    two = build_call(command, OcppVersion.V201, ChargerState(), NOW)
    assert one.action == call16 and has16.items() <= one.payload.items()
    assert two.action == call201 and has201.items() <= two.payload.items()


def test_the_reset_type_cannot_be_overridden_by_params() -> None:
    command = command_for(Action.SOFT_RESET, Target("CP-1"), command_id="c", now=NOW, requested_by=None,
                          params={"type": "hard"})
    assert command.params["type"] == "soft"
