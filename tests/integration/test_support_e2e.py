"""Troubleshooting through the real command channel: service -> MQTT -> bridge -> OCPP charger and back,
with what the charger answered (the configuration read back, the diagnostics file name) in the result."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from support_fixtures import Db
from test_bridge_harness import bridge_settings, charger, register, running_bridge, unique

from control.access import Grants, Role
from control.settings import Settings
from control.support import Verdict
from dashboards import support_service as svc
from dashboards.access import Access, Principal
from warehouse.command_api import Action, CommandService

pytestmark = pytest.mark.integration

CONFIG = [{"key": "HeartbeatInterval", "readonly": False, "value": "3600"},
          {"key": "LocalAuthorizeOffline", "readonly": False, "value": "true"},
          {"key": "MeterValuesSampledData", "readonly": False, "value": "Energy.Active.Import.Register"}]


async def _charger_answers(action: str, payload: dict[str, Any]) -> list[Any] | None:
    if action == "GetConfiguration":
        return ["result", {"configurationKey": CONFIG}]
    if action == "GetDiagnostics":
        return ["result", {"fileName": "diag-42.log"}]
    return ["result", {"status": "Accepted"}]


def test_support_reads_the_configuration_and_requests_diagnostics(test_settings: Settings, pg_dsn: str) -> None:
    cid = unique("SUP")
    register(pg_dsn, cid)
    counter = itertools.count(1)
    access = Access(Db(pg_dsn), new_id=lambda: f"u-e2e-{next(counter)}")
    support = Principal("u-support-e2e", "s@example.com", "Support", Grants("u-support-e2e",
                                                                           platform_roles=frozenset({Role.SUPPORT})))
    settings = bridge_settings(test_settings)
    service = CommandService(settings.mqtt)
    assert service.start(wait_s=10)

    async def scenario() -> tuple[svc.ConfigCheck, svc.ActionResult, svc.ActionResult, list[str]]:
        async with running_bridge(settings) as bridge, charger(bridge, cid, responder=_charger_answers) as cp:
            # The service blocks while it waits for the reply: run it off the event loop.
            check = await asyncio.to_thread(svc.check_configuration, support, access, service, cid, timeout_s=15)
            diag = await asyncio.to_thread(svc.request_diagnostics, support, access, service, cid,
                                           upload_base_url="http://files.test:8090/upload", timeout_s=15)
            reset = await asyncio.to_thread(svc.run_action, support, access, service, cid, Action.SOFT_RESET,
                                            timeout_s=15)
            return check, diag, reset, [a for a, _ in cp.received_calls]

    try:
        check, diag, reset, calls = asyncio.run(scenario())
    finally:
        service.close()
    assert calls == ["GetConfiguration", "GetDiagnostics", "Reset"]
    by_key = {d.key: d for d in check.differences}
    assert by_key["HeartbeatInterval"].verdict is Verdict.DIFFERENT and by_key["HeartbeatInterval"].actual == "3600"
    assert by_key["LocalAuthorizeOffline"].verdict is Verdict.OK
    assert by_key["MeterValuesSampledData"].verdict is Verdict.DIFFERENT  # Power.Active.Import missing
    assert by_key["SupportedFeatureProfiles"].verdict is Verdict.MISSING
    assert diag.ok and diag.payload["file_name"] == "diag-42.log" and "diag-42.log" in diag.summary
    assert reset.ok and reset.summary == "soft reset: accepted by the charger"
    history = svc.action_history(support, access, cid)
    assert [h.record.action for h in history] == ["soft_reset", "get_diagnostics", "get_config"]
    assert history[1].record.params["location"] == f"http://files.test:8090/upload/{cid}"
