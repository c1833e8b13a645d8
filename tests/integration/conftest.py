"""Fixtures shared by the integration tests (the root conftest.py has the services' fixtures)."""

from dashboard_fixtures import browser, dashboard_app, dashboard_env, dashboard_stack
from portal_fixtures import portal_dsn, run_app

__all__ = ["browser", "dashboard_app", "dashboard_env", "dashboard_stack", "portal_dsn", "run_app"]
