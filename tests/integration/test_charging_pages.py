"""The owner-facing charging pages (Chargers, Schedules & rules, Load, Device & V2G) under AppTest."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

pytestmark = pytest.mark.integration

LIVE = "views/live.py"


def _text(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "success", "subheader", "title")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("role", ["owner", "member", "fleet_manager", "support", "operator"])
def test_the_chargers_page_draws_for_every_role_that_sees_it(run_app: Callable[..., AppTest], role: str) -> None:
    at = run_app(role, page=LIVE)
    assert not at.exception, at.exception
    assert at.title[0].value == "Chargers"
    assert "Bay 1 · connector 1" in _text(at)


@pytest.mark.parametrize(("role", "page"), [(r, p) for p in ("views/schedules.py", "views/load.py", "views/device.py")
                                            for r in ("owner", "fleet_manager", "operator")]
                         + [("support", "views/load.py"), ("support", "views/device.py"),
                            ("installer", "views/device.py")])
def test_each_page_draws_for_the_roles_that_see_it(run_app: Callable[..., AppTest], role: str, page: str) -> None:
    at = run_app(role, page=page)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def test_a_member_sees_only_bay_1_and_no_lock_button(run_app: Callable[..., AppTest]) -> None:
    at = run_app("member", page=LIVE)
    assert not at.exception, at.exception
    text = _text(at)
    assert "Bay 1 · connector 1" in text and "Bay 2" not in text
    keys = {b.key for b in at.button}
    assert "stop_SIM-0001-1" in keys and "lock_SIM-0001-1" not in keys
    assert [m.value for m in at.metric if m.label == "Power"] == ["7.4 kW"]


def test_stop_shows_the_commands_reply(run_app: Callable[..., AppTest]) -> None:
    at = run_app("owner", page=LIVE)
    at.button(key="stop_SIM-0001-1").click().run(timeout=30)
    assert not at.exception, at.exception
    replies = [e.value for kind in ("success", "warning", "error") for e in getattr(at, kind)]
    assert any(str(r).startswith("stop: ") for r in replies), replies


def test_boost_asks_for_confirmation_first(run_app: Callable[..., AppTest]) -> None:
    at = run_app("owner", page=LIVE)
    at.segmented_control(key="mode_SIM-0001-1").set_value("boost").run()
    assert any("peak" in str(w.value) for w in at.warning)
    assert at.button(key="apply_mode_SIM-0001-1").disabled
    at.checkbox(key="confirm_SIM-0001-1").check().run()
    at.button(key="apply_mode_SIM-0001-1").click().run()
    assert "Switched to Boost." in [i.value for i in at.info]
    at.segmented_control(key="mode_SIM-0001-1").set_value("standard").run()
    at.button(key="apply_mode_SIM-0001-1").click().run()
    assert "Switched to Standard." in [i.value for i in at.info]


def test_rules_page_adds_a_rule_for_the_fleet_manager(run_app: Callable[..., AppTest]) -> None:
    at = run_app("fleet_manager", page="views/schedules.py")
    assert any("no rules" in str(i.value) for i in at.info)
    at.selectbox(key="rule_preset").select("Limit to 10 A after 18:00").run()
    at.button(key="FormSubmitter:rule_form-Add rule").click().run()
    assert not at.exception, at.exception
    assert any("Added 'Limit to 10 A after 18:00'" in str(s.value) for s in at.success)
    assert at.get("vega_lite_chart") or at.get("arrow_vega_lite_chart")
    rule_toggles = [t for t in at.toggle if t.key and t.key.startswith("enabled_")]
    assert len(rule_toggles) == 1 and rule_toggles[0].value is True
    owner = run_app("owner", page="views/schedules.py")
    assert [t.disabled for t in owner.toggle if t.key and t.key.startswith("enabled_")] == [True]


def test_device_page_shows_the_badge_and_locks_v2g(run_app: Callable[..., AppTest]) -> None:
    at = run_app("owner", page="views/device.py")
    text = _text(at)
    assert "Not Supported" in text and "not in our device catalogue" in text
    assert at.button(key="FormSubmitter:v2g_settings-Save V2G settings").disabled
    assert any("Estimate only" in str(c.value) for c in at.caption)
