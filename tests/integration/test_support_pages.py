"""The support console's pages (AppTest) as support, operator and the roles that must not act."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from streamlit.testing.v1 import AppTest
from support_fixtures import seed_support

from control.support import UPLOADS_SUBDIR, TicketStatus
from dashboards import runtime
from warehouse import support_store

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _seeded(portal_dsn: str) -> None:
    seed_support(portal_dsn)


@pytest.fixture(autouse=True)
def _close_pool(run_app: Callable[..., AppTest]) -> Iterator[None]:
    """run_app clears Streamlit's resource cache without closing the app's pool; close it, or the
    module's database cannot be dropped (its connections stay open)."""
    yield
    runtime.pool().close()


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    parts += [w.value for w in at.warning] + [s.value for s in at.success] + [e.value for e in at.error]
    return "\n".join(str(p) for p in parts)


def _frame(at: AppTest, column: str) -> Any:
    """The first table with this column (AppTest finds dataframes by position only)."""
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with a {column!r} column")


# --------------------------------------------------------------------------- alert feed


@pytest.mark.parametrize("role", ["support", "operator"])
def test_the_alert_feed_lists_open_alerts_with_guided_steps(run_app: Callable[..., AppTest], role: str) -> None:
    at = run_app(role, page="views/alerts.py")
    assert not at.exception, at.exception
    assert at.title[0].value == "Alert feed"
    table = _frame(at, "id")
    assert set(table["id"]) >= {"al-ground", "al-waiting"}
    assert "al-done" not in set(table["id"])  # resolved: filtered out by default
    at.selectbox(key="alert_pick").set_value("al-ground").run()
    assert not at.exception, at.exception
    assert "Guided steps" in _texts(at) and "GroundFailure" in _texts(at)
    assert not at.button(key="alert_ack").disabled


def test_support_acknowledges_an_alert_with_a_note(run_app: Callable[..., AppTest], portal_dsn: str) -> None:
    at = run_app("support", page="views/alerts.py")
    at.selectbox(key="alert_pick").set_value("al-ground").run()
    at.text_area(key="alert_note").set_value("customer informed").run()
    at.button(key="alert_ack").click().run()
    assert not at.exception, at.exception
    assert "is now acknowledged" in _texts(at)
    with psycopg.connect(portal_dsn) as conn:
        row = conn.execute("select to_state, actor, note from alert_transitions where alert_id = 'al-ground'"
                           " order by recorded_at desc limit 1").fetchone()
    assert row == ("acknowledged", "demo-support", "customer informed")


def test_filters_apply_to_the_feed(run_app: Callable[..., AppTest]) -> None:
    at = run_app("support", page="views/alerts.py")
    at.multiselect(key="alert_f_kind").set_value(["charger_offline"]).run()
    assert not at.exception, at.exception
    assert set(_frame(at, "id")["id"]) == {"al-offline"}


def test_a_fleet_manager_sees_the_feed_and_may_acknowledge(run_app: Callable[..., AppTest]) -> None:
    at = run_app("fleet_manager", page="views/alerts.py")
    assert not at.exception, at.exception
    assert "al-waiting" in set(_frame(at, "id")["id"])


# --------------------------------------------------------------------------- troubleshooting


@pytest.mark.parametrize("role", ["support", "operator"])
def test_the_troubleshooting_page_offers_every_action(run_app: Callable[..., AppTest], role: str) -> None:
    at = run_app(role, page="views/troubleshoot.py")
    assert not at.exception, at.exception
    assert at.title[0].value == "Troubleshooting"
    for key in ("ts_soft_reset", "ts_unlock", "ts_trigger", "ts_availability", "ts_diagnostics", "ts_config_check"):
        assert not at.button(key=key).disabled, key
    assert at.button(key="ts_hard_reset").disabled  # until the confirmation is ticked
    at.checkbox(key="ts_hard_confirm").check().run()
    assert not at.button(key="ts_hard_reset").disabled
    assert "Knowledge base" in [h.value for h in at.subheader]


def test_a_faulted_charger_shows_its_guided_steps(run_app: Callable[..., AppTest]) -> None:
    at = run_app("support", page="views/troubleshoot.py")
    at.selectbox(key="ts_charger").set_value("SIM-0005").run()
    assert not at.exception, at.exception
    assert "Ground fault" in _texts(at)


def test_an_action_without_a_bridge_says_no_answer_came(run_app: Callable[..., AppTest]) -> None:
    at = run_app("support", page="views/troubleshoot.py")
    at.button(key="ts_soft_reset").click().run(timeout=60)
    assert not at.exception, at.exception
    assert any("no answer from the charger" in w.value or "not sent" in w.value for w in at.warning), _texts(at)
    assert "soft reset" in str(_frame(at, "action")["action"].str.lower().tolist())


def test_support_edits_a_guide_on_the_page(run_app: Callable[..., AppTest], portal_dsn: str) -> None:
    at = run_app("support", page="views/troubleshoot.py")
    at.selectbox(key="kb_code").set_value("WeakSignal").run()
    at.text_area(key="kb_steps_WeakSignal").set_value("Check the antenna.\nMove the router.")
    at.button(key="kb_save").click().run()
    assert not at.exception, at.exception
    with psycopg.connect(portal_dsn) as conn:
        steps = conn.execute("select steps, updated_by from fault_guides where code = 'WeakSignal'").fetchone()
    assert steps == (["Check the antenna.", "Move the router."], "demo-support")


# --------------------------------------------------------------------------- timeline


@pytest.fixture()
def recent_events(portal_dsn: str) -> None:
    """Events of SIM-0006 relative to the real clock (the timeline page looks back from now)."""
    now = datetime.now(UTC)
    with psycopg.connect(portal_dsn, autocommit=True) as conn:
        for ago, status, error in ((50, "Available", "NoError"), (20, "Faulted", "HighTemperature")):
            conn.execute("insert into status_events (ts, charger_id, connector_id, status, error_code) values"
                         " (%s, 'SIM-0006', 1, %s, %s) on conflict do nothing", (now - timedelta(minutes=ago), status,
                                                                                 error))
        support_store.record_frames(conn, [("SIM-0006", now - timedelta(minutes=20), "in",
                                            '[2,"42","StatusNotification",{"errorCode":"HighTemperature"}]')],
                                    bridge_id="test")


@pytest.mark.parametrize("role", ["support", "operator"])
def test_the_timeline_draws_a_chargers_history(run_app: Callable[..., AppTest], role: str,
                                               recent_events: None) -> None:
    at = run_app(role, page="views/timeline.py")
    at.selectbox(key="tl_charger").set_value("SIM-0006").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Charger timeline"
    table = _frame(at, "lane")
    assert {"Status", "Errors", "OCPP frames"} <= set(table["lane"])
    assert "HighTemperature" in set(table["what"])
    assert "HighTemperature" in " ".join(_frame(at, "frame")["frame"])


def test_an_empty_period_says_so(run_app: Callable[..., AppTest]) -> None:
    at = run_app("support", page="views/timeline.py")
    at.selectbox(key="tl_charger").set_value("SIM-0004").run()
    at.selectbox(key="tl_hours").set_value(1).run()
    assert not at.exception, at.exception
    assert "Nothing recorded for this charger in this period." in [i.value for i in at.info]


# --------------------------------------------------------------------------- tickets


@pytest.mark.parametrize("role", ["support", "operator"])
def test_tickets_open_move_and_export(run_app: Callable[..., AppTest], role: str) -> None:
    at = run_app(role, page="views/tickets.py")
    assert not at.exception, at.exception
    at.selectbox(key="tk_charger").set_value("SIM-0005").run()
    at.text_input(key="tk_title").set_value(f"Ground fault ({role})")
    at.multiselect(key="tk_alerts").set_value(["al-ground"])
    at.button(key="tk_open").click().run()
    assert not at.exception, at.exception
    assert any("opened" in s.value for s in at.success), _texts(at)
    assert f"Ground fault ({role})" in set(_frame(at, "ticket")["title"])
    at.radio(key=f"tk_target_{at.session_state['tk_pick']}").set_value(TicketStatus.WAITING)
    at.button(key="tk_move").click().run()
    assert not at.exception, at.exception
    assert any("is now waiting" in s.value for s in at.success), _texts(at)
    at.button(key="tk_bundle").click().run()
    assert not at.exception, at.exception
    assert at.get("download_button")


def test_uploaded_diagnostics_are_listed_and_downloadable(run_app: Callable[..., AppTest], portal_dsn: str,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBANK_DATA_DIR", str(tmp_path))
    (tmp_path / UPLOADS_SUBDIR / "SIM-0004").mkdir(parents=True)
    (tmp_path / UPLOADS_SUBDIR / "SIM-0004" / "diag.log").write_text("report\n")
    with psycopg.connect(portal_dsn) as conn:
        support_store.record_upload(conn, charger_id="SIM-0004", file_name="diag.log", path="SIM-0004/diag.log",
                                    size_bytes=7, sha256="cd", content_type="text/plain",
                                    received_at=datetime.now(UTC))
    at = run_app("support", page="views/troubleshoot.py")
    at.selectbox(key="ts_charger").set_value("SIM-0004").run()
    assert not at.exception, at.exception
    assert list(_frame(at, "file")["file"]) == ["diag.log"]
    assert at.get("download_button")


def test_the_troubleshoot_button_opens_the_alerts_charger(run_app: Callable[..., AppTest]) -> None:
    at = run_app("support", page="views/alerts.py")
    at.selectbox(key="alert_pick").set_value("al-waiting").run()
    at.button(key="alert_troubleshoot").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Troubleshooting"
    assert at.selectbox(key="ts_charger").value == "SIM-0002"


def test_a_fleet_manager_has_no_troubleshoot_button(run_app: Callable[..., AppTest]) -> None:
    at = run_app("fleet_manager", page="views/alerts.py")
    at.selectbox(key="alert_pick").set_value("al-waiting").run()
    assert not at.exception, at.exception
    assert "alert_troubleshoot" not in [b.key for b in at.button]
