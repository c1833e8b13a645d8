"""An invitation link opened signed out survives the real sign-in (headless Chromium, Streamlit's
st.login, oidc-provider-mock) and ends with the invited person sharing the charger.

The dashboards run ``dashboards/app.py`` against the seeded portal database. The provider signs
in any subject with ``email = sub``, so the invitee is a brand-new user without roles.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime
from urllib.parse import urlsplit

import psycopg
import pytest
from browser import Browser, _origin, wait_streamlit_idle
from dashboard_fixtures import DashboardStack
from dbutil import Db

from dashboards.access import Access
from dashboards.invite_flow import COOKIE
from dashboards.sharing_service import SharingService

pytestmark = [pytest.mark.integration, pytest.mark.browser]

INVITEE = "new.driver@example.com"


@pytest.fixture(scope="module")
def dashboard_env(portal_dsn: str) -> dict[str, str]:
    return {**os.environ, "FLOWBANK_PG_DSN": portal_dsn}


def _service(dsn: str) -> tuple[Access, SharingService]:
    counter = itertools.count(1)
    access = Access(Db(dsn), clock=lambda: datetime.now(UTC), new_id=lambda: f"u-browser-{next(counter)}")
    return access, SharingService(access, base_url="http://dash.test:8501")


def _invite_cookie(browser: Browser) -> dict[str, object] | None:
    return next((c for c in browser.cookies() if c["name"] == COOKIE), None)


def _sign_in_at_provider(browser: Browser, app_url: str, sub: str) -> None:
    browser.click_text("Sign in", selector="button")
    browser.wait_until("location.pathname.startsWith('/oauth2/authorize') && document.readyState === 'complete'",
                       what="the provider's sign-in page")
    browser.type_into('input[name="sub"]', sub)
    browser.click_text("Authorize", selector='button[type="submit"]')
    browser.wait_for_url(_origin(app_url))
    wait_streamlit_idle(browser)


def test_a_link_opened_signed_out_leads_through_sign_in_to_the_shared_charger(
        dashboard_stack: DashboardStack, browser: Browser, portal_dsn: str) -> None:
    access, service = _service(portal_dsn)
    sent = service.invite(access.principal("demo-owner"), "SIM-0002", INVITEE)
    token = sent.link.split("token=", 1)[1]
    link = f"{dashboard_stack.app_url}/invite?token={token}"

    browser.navigate(link)
    wait_streamlit_idle(browser)
    browser.wait_for_text("You opened an invitation")
    browser.wait_until(f"document.cookie.includes('{COOKIE}=')", what="the invitation cookie")
    cookie = _invite_cookie(browser)
    assert cookie is not None
    assert token not in str(cookie["value"]) and cookie["session"] and cookie["sameSite"] == "Strict"
    assert token not in browser.url()  # off the address bar before leaving for the provider

    _sign_in_at_provider(browser, dashboard_stack.app_url, INVITEE)
    assert urlsplit(browser.url()).path == "/"  # Streamlit comes back to the root, without the token
    browser.wait_for_text("Olivia Owner invited you to share the charger Bay 2 on FlowBankOS.")
    browser.click_text("Accept invitation", selector="button")

    browser.wait_for_text("You now share as member Bay 2. It is in your charger list")
    browser.wait_for_text("Demo depot / Bay 2")  # the Chargers page, on the charger just shared
    wait_streamlit_idle(browser)
    assert urlsplit(browser.url()).path in ("/", "/chargers")
    assert "Invitation" not in browser.text()
    browser.wait_until(f"!document.cookie.includes('{COOKIE}=')", what="the invitation cookie to be cleared")
    with psycopg.connect(portal_dsn) as conn:
        remembered = conn.execute("select count(*) from pending_invite_links").fetchone()
        role = conn.execute("select m.role from memberships m join users u using (user_id)"
                            " where u.email = %s and m.charger_id = 'SIM-0002'", (INVITEE,)).fetchone()
    assert remembered == (0,) and role == ("member",)

    # The same link again: used, said plainly; a reload of the app shows no invitation any more.
    browser.navigate(link)
    wait_streamlit_idle(browser)
    browser.wait_for_text("This invitation has already been used. Each invitation link works once.")
    browser.navigate(dashboard_stack.app_url)
    wait_streamlit_idle(browser)
    browser.wait_for_text("Demo depot / Bay 2")
    assert "Invitation" not in browser.text()
    assert not [m for m in browser.console if m.startswith("exception")], browser.console
    assert token not in dashboard_stack.logs()  # the token is never logged
