"""A seeded database and AppTest runs of the dashboards as each demo user.

Import the fixtures into a test module: ``from portal_fixtures import portal_dsn, run_app  # noqa: F401``.

The database (one per test module) holds six demo chargers on the demo site, the demo users of
``warehouse.demo_seed`` and a live state per connector, as the pipeline would have written it:
SIM-0001 charging at 7.4 kW, SIM-0002 waiting for a vehicle, SIM-0005 in error, the rest idle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dbutil import fresh_database
from streamlit.testing.v1 import AppTest

from control.settings import Settings
from dashboards import runtime
from flowbank.config import PROJECT_ROOT
from warehouse import control_store
from warehouse.demo_seed import DEMO_USERS, seed_demo_access

APP = str(PROJECT_ROOT / "dashboards" / "app.py")
CHARGERS = [f"SIM-{i:04d}" for i in range(1, 7)]
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
EMAIL = {u.role.value: u.email for u in DEMO_USERS}


def seed_portal(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i, cid in enumerate(CHARGERS, start=1):
            conn.execute("insert into chargers (charger_id, site_id, display_name, vendor, model, serial_number,"
                         " firmware_version, ocpp_version) values (%s, 'demo', %s, 'FlowSim', %s, %s, '1.4.2', %s)",
                         (cid, f"Bay {i}", "AC22" if i % 2 else "AC7", f"FS-{1000 + i}",
                          "1.6" if i % 3 else "2.0.1"))
        control_store.save_site(conn, {
            "site_id": "demo", "name": "Demo depot",
            "circuits": [{"id": "main", "limit_a": 63, "name": "Main breaker"}],
            "chargers": [{"id": cid, "circuit": "main", "max_current_a": 32 if i % 2 else 16, "phases": ["L1"],
                          "connectors": [{"id": 1}]} for i, cid in enumerate(CHARGERS, start=1)],
        }, updated_by="test")
        seed_demo_access(conn, charger_ids=CHARGERS, site_id="demo", now=NOW)
        live: dict[str, tuple[str, float | None, float | None, float | None]] = {
            "SIM-0001": ("Charging", 7400.0, 32.2, 5230.0),
            "SIM-0002": ("Waiting for vehicle", 0.0, 0.0, 120.0),
            "SIM-0005": ("Error", None, None, None),
        }
        for cid in CHARGERS:
            status, power_w, current_a, energy_wh = live.get(cid, ("Idle", None, None, None))
            in_session = energy_wh is not None
            conn.execute(
                "insert into live_state (charger_id, connector_id, status, updated_at, last_seen_at, connector_status,"
                " power_w, current_a, session_id, session_started_at, session_energy_wh, soc_pct, error_code, online)"
                " values (%s, 1, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, true)",
                (cid, status, NOW, NOW, "Faulted" if status == "Error" else None, power_w, current_a,
                 f"{cid}-1-tx1" if in_session else None, NOW - timedelta(minutes=42) if in_session else None,
                 energy_wh, 48.0 if status == "Charging" else None,
                 "GroundFailure" if status == "Error" else None))


@pytest.fixture(scope="module")
def portal_dsn(base_settings: Settings) -> Iterator[str]:
    """A fresh, migrated and seeded database for one test module."""
    with fresh_database(base_settings.pg_dsn.reveal(), "flowbank_portal") as dsn:
        seed_portal(dsn)
        try:
            yield dsn
        finally:
            runtime.close_resources()


@pytest.fixture()
def run_app(portal_dsn: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[..., AppTest]]:
    """``run_app("owner", page="views/live.py")``: the app run once as that demo user (or ``None``)."""
    monkeypatch.setenv("FLOWBANK_PG_DSN", portal_dsn)
    monkeypatch.setenv("FLOWBANK_DATA_DIR", str(tmp_path / "data"))
    runtime.close_resources()

    def run(role: str | None, *, page: str | None = None, timeout: float = 30,
            session: dict[str, Any] | None = None) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=timeout)
        if role is not None:
            email = EMAIL[role]
            at.user = {"is_logged_in": True, "email": email, "name": email.split("@")[0].title(),
                       "sub": f"sub-{role}", "iss": "http://oidc.test"}
        for key, value in (session or {}).items():
            at.session_state[key] = value
        at.run()
        if page is not None:
            at.switch_page(page).run()
        return at

    yield run
    runtime.close_resources()
