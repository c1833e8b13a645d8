"""Fixtures shared by the integration tests (the root conftest.py has the services' fixtures)."""

from dashboard_fixtures import browser, dashboard_app, dashboard_env, dashboard_stack
from e2e_harness import broker
from portal_fixtures import portal_dsn, run_app

__all__ = ["broker", "browser", "dashboard_app", "dashboard_env", "dashboard_stack", "portal_dsn", "run_app"]
