"""The Locations, Fleet overview, Bulk actions, Departure schedule and Installer mode pages through
AppTest, as each role that sees them (role scoping included)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from portal_fixtures import CHARGERS
from streamlit.testing.v1 import AppTest

pytestmark = pytest.mark.integration

Run = Callable[..., AppTest]


def _chart_values(at: AppTest, index: int = 0) -> list[dict[str, Any]]:
    """Every row of every data set of a chart: inline in the spec, or as Arrow IPC beside it."""
    proto = at.get("vega_lite_chart")[index].proto
    blobs = [proto.data.data] if proto.HasField("data") else []
    blobs += [d.data.data for d in proto.datasets]
    spec = json.loads(proto.spec)
    rows: list[dict[str, Any]] = [v for layer in spec.get("layer", [spec]) for v in
                                  layer.get("data", {}).get("values", [])]
    for blob in blobs:
        rows += pa.ipc.open_stream(blob).read_all().to_pylist()
    return rows


def _texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "success", "error", "warning", "info")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


# --------------------------------------------------------------------------- locations


def test_locations_as_the_fleet_manager_shows_a_red_depot_pin_cards_and_scoped_settings(run_app: Run) -> None:
    at = run_app("fleet_manager", page="views/locations.py")
    assert not at.exception, at.exception
    assert {(v["site"], v["pin"]) for v in _chart_values(at)} == {("Demo depot", "error")}  # SIM-0005 in error
    assert all(not at.button(key=f"start_{cid}").disabled for cid in CHARGERS)
    headings = [h.value for h in at.subheader]
    assert "Settings — Demo depot / Bay 1" in headings
    assert "Address and map position — Demo depot" in headings
    assert "last activity" in _texts(at)


def test_locations_refuses_a_duplicate_name_with_a_prompt(run_app: Run) -> None:
    at = run_app("fleet_manager", page="views/locations.py", session={"ctx_charger": "SIM-0003"})
    assert "Settings — Demo depot / Bay 3" in [h.value for h in at.subheader]
    at.text_input(key="set_name").input("Bay 1")
    submit = next(b for b in at.button if b.label == "Save settings")
    submit.click().run()
    assert not at.exception, at.exception
    assert "Bay 1 already exists at Demo depot: choose a different name, e.g. 'Bay 1 (2)'." in [
        w.value for w in at.warning]


def test_locations_as_an_owner_shows_only_their_chargers_and_cannot_move_the_shared_depot(run_app: Run) -> None:
    at = run_app("owner", page="views/locations.py")
    assert not at.exception, at.exception
    starts = {b.key for b in at.button if b.key and b.key.startswith("start_")}
    assert starts == {"start_SIM-0001", "start_SIM-0002"}
    at.number_input(key="loc_lat").set_value(10.0)
    at.number_input(key="loc_lon").set_value(10.0)
    next(b for b in at.button if b.label == "Save address and position").click().run()
    assert any("SIM-0003" in e.value for e in at.error), [e.value for e in at.error]


def test_a_quick_stop_reports_the_outcome_within_seconds(run_app: Run) -> None:
    at = run_app("operator", page="views/locations.py")
    at.button(key="stop_SIM-0004").click().run()
    assert not at.exception, at.exception
    # No bridge holds SIM-0004 in this test, so the command goes out and the answer does not come back.
    messages = [e.value for e in at.error] + [s.value for s in at.success]
    assert any(m.startswith("Bay 4: stop:") for m in messages), messages


# --------------------------------------------------------------------------- fleet overview


def test_the_fleet_overview_aggregates_and_filters_the_grid(run_app: Run) -> None:
    at = run_app("fleet_manager", page="views/fleet.py")
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Chargers"] == "6" and metrics["Errors"] == "1" and metrics["Active sessions"] == "2"
    assert metrics["Power now"] == "7.4 kW"
    assert len(at.dataframe[0].value) == 6
    at.multiselect(key="fleet_statuses").select("Error").run()
    assert list(at.dataframe[0].value["Charger"]) == ["SIM-0005"]
    at.text_input(key="fleet_search").input("no such charger").run()
    assert "No chargers match these filters." in [i.value for i in at.info]
    assert _chart_values(at)  # the sites map


def test_the_fleet_overview_as_the_operator_shows_every_charger(run_app: Run) -> None:
    at = run_app("operator", page="views/fleet.py")
    assert not at.exception, at.exception
    assert int(next(m.value for m in at.metric if m.label == "Chargers")) >= len(CHARGERS)


# --------------------------------------------------------------------------- bulk


def test_bulk_eco_on_every_charger_gives_a_result_per_charger(run_app: Run) -> None:
    at = run_app("fleet_manager", page="views/bulk.py")
    assert not at.exception, at.exception
    at.button(key="bulk_all").click().run()
    assert len(at.multiselect(key="bulk_chargers").value) == 6
    at.selectbox(key="bulk_action").select("set_mode").run()
    at.selectbox(key="bulk_mode").select("eco").run()
    at.button(key="bulk_run").click().run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["Charger"]) == CHARGERS
    assert set(table["Result"]) == {"✅ done"}
    assert "6 succeeded, 0 failed, 0 refused (not permitted) of 6" in [s.value for s in at.success]


def test_bulk_boost_without_confirmation_fails_per_charger_and_offers_a_retry(run_app: Run) -> None:
    at = run_app("operator", page="views/bulk.py")
    at.multiselect(key="bulk_chargers").select("SIM-0001").select("SIM-0002").run()
    at.selectbox(key="bulk_action").select("set_mode").run()
    at.selectbox(key="bulk_mode").select("boost").run()
    at.button(key="bulk_run").click().run()
    assert not at.exception, at.exception
    assert set(at.dataframe[0].value["Result"]) == {"❌ failed"}
    assert at.button(key="bulk_retry").label == "Retry the 2 failed"


# --------------------------------------------------------------------------- schedule


def test_the_departure_schedule_draws_sessions_plans_and_departures(run_app: Run, portal_dsn: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(portal_dsn, autocommit=True) as conn:
        conn.execute(
            "insert into sessions (session_id, charger_id, connector_id, transaction_id, site_id, state, revision,"
            " started_at, ended_at, energy_wh) values ('pg-1', 'SIM-0003', 1, 't', 'demo', 'completed', 1, %s, %s,"
            " 4000) on conflict do nothing", (now - timedelta(hours=5), now - timedelta(hours=3)))
        conn.execute("insert into departures (charger_id, connector_id, departure_at, energy_wh) values"
                     " ('SIM-0003', 1, %s, 10000) on conflict (charger_id, connector_id) do update"
                     " set departure_at = excluded.departure_at", (now + timedelta(hours=6),))
    at = run_app("fleet_manager", page="views/fleet_schedule.py")
    assert not at.exception, at.exception
    kinds = {v.get("kind") for v in _chart_values(at) if "kind" in v}
    assert kinds == {"session", "planned"}
    assert any(v.get("label", "").startswith("departs") for v in _chart_values(at))
    assert len(at.dataframe[0].value) == 1


# --------------------------------------------------------------------------- installer


def test_an_installer_sees_only_the_code_entry_until_a_valid_code(run_app: Run, portal_dsn: str) -> None:
    at = run_app("installer", page="views/installer.py")
    assert not at.exception, at.exception
    assert [h.value for h in at.subheader] == ["🔒 Locked"]
    assert not at.metric  # no device data before the code
    at.text_input(key="installer_code").input("ABCD-EFGH")
    next(b for b in at.button if b.label == "Enter installer mode").click().run()
    assert "That code is not valid. Check it with the person who issued it." in [e.value for e in at.error]

    from control.installer import code_hash

    with psycopg.connect(portal_dsn, autocommit=True) as conn:
        conn.execute("insert into installer_codes (code_sha256, site_id, issued_by, issued_at, expires_at)"
                     " values (%s, null, 'demo-support', now(), now() + interval '1 hour')", (code_hash("WXYZ-2345"),))
    at.text_input(key="installer_code").input("wxyz 2345")
    next(b for b in at.button if b.label == "Enter installer mode").click().run()
    assert not at.exception, at.exception
    assert any("Installer mode for every location" in s.value for s in at.success)
    assert "Device — Demo depot / Bay 1" in [h.value for h in at.subheader]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Serial number"] == "FS-1001" and metrics["Firmware"] == "1.4.2"
    assert metrics["Power"] == "7.40 kW" and metrics["Voltage"] == "—"
    assert "Voltage and temperature: not reported by this charger in the last hour." in _texts(at)


def test_the_operator_issues_a_code_shown_once(run_app: Run) -> None:
    at = run_app("operator", page="views/installer.py")
    assert not at.exception, at.exception
    at.button(key="issue_code").click().run()
    assert not at.exception, at.exception
    code = at.code[0].value
    assert len(code) == 9 and code[4] == "-"
    assert [h.value for h in at.subheader] == ["🔒 Locked"]  # issuing does not unlock


def test_the_departure_schedule_as_the_operator_renders(run_app: Run) -> None:
    at = run_app("operator", page="views/fleet_schedule.py")
    assert not at.exception, at.exception
    assert at.title[0].value == "Departure schedule"
    assert at.get("vega_lite_chart") or "No sessions or departures in this period." in [i.value for i in at.info]
