"""The dashboards in a real browser against a running stack: simulated chargers, the bridge,
Mosquitto, the pipeline and PostgreSQL, with Streamlit and the local OpenID Connect provider.

The owner signs in through the provider's form, stops a session with the Stop button and
switches a connector to Eco; the charger really stops and the pipeline really lowers its limit.
The fleet manager and support staff open their pages. Screenshots go to
``FLOWBANK_SCREENSHOT_DIR`` when it is set (``docs/screenshots`` is made that way, see
docs/dashboards.md), else to the test's temporary directory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from browser import Browser, sign_in, wait_streamlit_idle
from dashboard_fixtures import DashboardStack, run_dashboard_stack
from dbutil import fresh_database
from e2e_harness import Platform, PrivateBroker, mqtt_url, register_chargers, wait_until

from control.settings import Settings
from dashboards.oidc import demo_user
from warehouse import control_store
from warehouse.demo_seed import seed_demo_access

pytestmark = [pytest.mark.integration, pytest.mark.browser]

PASSWORD = "browser-e2e-password-1"
SITE = "web-site"
PREFIX = "WEB-"
CHARGERS = [f"{PREFIX}{i:04d}" for i in (1, 2)]
FAULTY = f"{PREFIX}0003"  # a third charger with hardware faults: the support pages have live alerts


@pytest.fixture(scope="module")
def stack(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, DashboardStack]]:
    """The platform with two charging EVs, and the dashboards pointed at it."""
    workdir = tmp_path_factory.mktemp("browser-e2e")
    with fresh_database(base_settings.pg_dsn.reveal(), "flowbank_web") as dsn, \
            PrivateBroker(workdir / "broker") as broker:
        register_chargers(dsn, [*CHARGERS, FAULTY], PASSWORD, site_id=SITE, scrypt_n=2**11)
        with psycopg.connect(dsn, autocommit=True) as conn:
            control_store.save_site(conn, {
                "site_id": SITE, "name": "Home and driveway",
                "circuits": [{"id": "main", "limit_a": 63, "name": "Main breaker"}],
                "chargers": [{"id": cid, "circuit": "main", "max_current_a": 32} for cid in [*CHARGERS, FAULTY]],
            }, updated_by="test")
            seed_demo_access(conn, charger_ids=CHARGERS, site_id=SITE, now=datetime.now(UTC))
        with Platform(dsn, broker.endpoint, workdir / "platform", PREFIX, broker=broker) as platform:
            platform.start_pipeline()
            platform.start_bridge()
            platform.start_simulator("sim", [
                "--chargers", "2", "--id-prefix", PREFIX, "--dc", "0", "--single-phase-fraction", "0",
                "--two-connector-fraction", "0", "--v201-fraction", "0", "--seed", "3", "--speed", "1",
                "--meter-interval", "1", "--first-arrival-max", "2", "--dwell-min", "900", "--dwell-max", "1200",
                "--sessions", "1", "--reaction-delay", "0.3", "--ramp", "5", "--duration", "400",
            ], password=PASSWORD)
            platform.start_simulator("faulty", [
                "--chargers", "1", "--id-prefix", PREFIX, "--first-index", "3", "--dc", "0", "--v201-fraction", "0",
                "--two-connector-fraction", "0", "--seed", "4", "--speed", "1", "--first-arrival-max", "1000",
                "--error-rate", "240", "--error-mean", "900", "--error-codes", "GroundFailure,HighTemperature",
                "--duration", "400",
            ], password=PASSWORD)
            wait_until(lambda: _statuses(dsn) == {"Charging"}, timeout=90, what="both EVs charging")
            env = {**os.environ, "FLOWBANK_PG_DSN": dsn, "FLOWBANK_MQTT_URL": mqtt_url(broker.endpoint),
                   "FLOWBANK_DATA_DIR": str(workdir / "dashboard-data")}
            with run_dashboard_stack(Path(__file__).resolve().parents[2] / "dashboards" / "app.py",
                                     workdir / "dashboard", env=env) as dashboards:
                yield dsn, dashboards


def _statuses(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("select status from live_state where charger_id = any(%s) and connector_id > 0",
                            (CHARGERS,)).fetchall()
    return {r[0] for r in rows} if len(rows) == len(CHARGERS) else set()


def _one(dsn: str, query: str, *params: Any) -> Any:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def _shots() -> Path | None:
    where = os.environ.get("FLOWBANK_SCREENSHOT_DIR")
    return Path(where) if where else None


_DRAWN = ("Array.from(document.querySelectorAll('[data-testid=\"stDataFrame\"]'))"
          ".every(d => d.querySelector('canvas, table'))"
          " && Array.from(document.querySelectorAll('.vega-embed')).every(v => v.querySelector('canvas, svg'))")


def _shot(browser: Browser, name: str, tmp_path: Path) -> None:
    browser.wait_until(_DRAWN, timeout_s=30, what="grids and charts drawn")
    time.sleep(1.0)  # the grid paints its cells a moment after its canvas appears
    target = (_shots() or tmp_path) / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    browser.screenshot(target)


def _open(browser: Browser, app_url: str, path: str, text: str) -> None:
    browser.navigate(f"{app_url}/{path}")
    wait_streamlit_idle(browser)
    browser.wait_for_text(text, timeout_s=60)


@pytest.mark.timeout(420)
def test_the_owner_stops_a_session_and_switches_to_eco_in_the_browser(
        stack: tuple[str, DashboardStack], browser: Browser, tmp_path: Path) -> None:
    dsn, dashboards = stack
    sign_in(browser, dashboards.app_url, demo_user("owner").sub)
    _open(browser, dashboards.app_url, "", "Olivia Owner")  # the owner's first page: Chargers
    browser.wait_for_selector(f".st-key-stop_{CHARGERS[1]}-1 button", timeout_s=60)
    _shot(browser, "owner-chargers", tmp_path)

    # Stop the second charger's session: the reply is shown, and the session really ends.
    browser.click(f".st-key-stop_{CHARGERS[1]}-1 button")
    browser.wait_for_text("stop: accepted by the charger", timeout_s=30)
    wait_until(lambda: _one(dsn, "select ended_at from sessions where charger_id = %s order by started_at desc"
                                 " limit 1", CHARGERS[1]), timeout=60, what="the stopped session closed")

    # Switch the first charger (the active one: its mode panel is open) to Eco.
    switched_at = datetime.now(UTC)
    browser.click_text("Eco", selector=f".st-key-mode_{CHARGERS[0]}-1 button")
    browser.click(f".st-key-apply_mode_{CHARGERS[0]}-1 button")
    wait_until(lambda: _one(dsn, "select mode from connector_modes where charger_id = %s", CHARGERS[0]) == "eco",
               timeout=30, what="the Eco mode stored")
    limit = wait_until(lambda: _one(dsn, "select new_limit_a from control_decisions where charger_id = %s"
                                         " and ts > %s order by ts desc limit 1", CHARGERS[0], switched_at),
                       timeout=30, what="a new limit after the switch to Eco")
    assert float(limit) < 32.0  # Eco charges below the hardware's 32 A
    _shot(browser, "owner-chargers-after", tmp_path)

    for path, text, name in (("load", "Load", "owner-load"), ("schedules", "Schedules", "owner-schedules"),
                             ("device", "V2G", "owner-device")):
        _open(browser, dashboards.app_url, path, text)
        _shot(browser, name, tmp_path)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("role", "pages"), [
    ("owner", ["history", "analytics", "sharing", "notifications"]),
    ("fleet_manager", ["fleet", "bulk", "fleet-schedule", "locations"]),
    ("support", ["alerts", "timeline", "troubleshoot", "sql"]),
])
def test_every_main_page_renders_in_the_browser(stack: tuple[str, DashboardStack], browser: Browser,
                                                tmp_path: Path, role: str, pages: list[str]) -> None:
    _, dashboards = stack
    sign_in(browser, dashboards.app_url, demo_user(role).sub)
    for path in pages:
        browser.navigate(f"{dashboards.app_url}/{path}")
        wait_streamlit_idle(browser)
        browser.wait_until("document.querySelectorAll('[data-testid=\"stHeading\"] h1').length > 0",
                           timeout_s=60, what=f"the {path} page's heading")
        wait_streamlit_idle(browser)
        text = browser.text()
        assert browser.count('[data-testid="stException"]') == 0, f"{path}: {text[:2000]}"
        assert "Page not found" not in text, path
        assert "Could not load" not in text, f"{path}: {text[:2000]}"
        _shot(browser, f"{role.replace('_', '-')}-{path}", tmp_path)
