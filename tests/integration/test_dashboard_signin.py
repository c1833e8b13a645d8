"""The real sign-in flow: Chromium -> Streamlit's st.login -> oidc-provider-mock -> back signed in.

A minimal app of our own (written to a temporary directory) stands in for the dashboard, so this
proves the infrastructure: provider, secrets, cookie, browser driving, sign-out. The pages'
own browser tests use the same fixtures with ``dashboards/app.py``. ``flowbank dashboard`` itself
is run as a process and stopped with SIGTERM, as Ctrl-C would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser import AUTH_COOKIE, Browser, BrowserError, sign_in, sign_out, wait_streamlit_idle
from dashboard_fixtures import DashboardStack, free_port

from dashboards.oidc import DEMO_USERS, http_get

APP = '''
import streamlit as st

if not st.user.is_logged_in:
    st.title("FlowBankOS demo sign-in")
    if st.button("Sign in"):
        st.login()
    st.stop()
st.title(f"Hello {st.user.get('name')}")
st.write(f"Signed in as {st.user.get('email')}")
nickname = st.text_input("Nickname", key="nickname")
st.write(f"Nickname is {nickname or 'unset'}")
if st.button("Sign out"):
    st.logout()
'''


@pytest.fixture(scope="module")
def dashboard_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("signin_app") / "app.py"
    path.write_text(APP, "utf-8")
    return path


def has_auth_cookie(browser: Browser) -> bool:
    return any(c["name"].startswith(AUTH_COOKIE) for c in browser.cookies())


@pytest.mark.browser
def test_signed_out_visitor_sees_only_the_sign_in_button(dashboard_stack: DashboardStack, browser: Browser) -> None:
    browser.navigate(dashboard_stack.app_url)
    wait_streamlit_idle(browser)
    browser.find("button", text="Sign in")
    assert "Hello" not in browser.text()
    assert not has_auth_cookie(browser)


@pytest.mark.browser
@pytest.mark.parametrize("role", ["owner", "fleet_manager"])
def test_sign_in_through_the_provider_then_sign_out(dashboard_stack: DashboardStack, browser: Browser,
                                                    role: str, tmp_path: Path) -> None:
    user = dashboard_stack.user(role)
    sign_in(browser, dashboard_stack.app_url, user.sub)
    browser.wait_for_text(f"Hello {user.name}")
    browser.wait_for_text(f"Signed in as {user.email}")
    assert has_auth_cookie(browser)
    shot = browser.screenshot(tmp_path / f"signed-in-{role}.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Typing reaches React's controlled inputs; Enter commits the widget and reruns the script.
    browser.type_into('input[aria-label="Nickname"]', f"{role} nick")
    browser.press("Enter")
    browser.wait_for_text(f"Nickname is {role} nick")
    assert not [m for m in browser.console if m.startswith("exception")], browser.console

    # Streamlit clears its cookies, then sends the browser to the provider's end-session page
    # (the mock advertises one), which leads back to the app.
    assert sign_out(browser, dashboard_stack.app_url) == "provider"
    browser.find("button", text="Sign in")
    assert user.name not in browser.text()
    assert not has_auth_cookie(browser)
    browser.navigate(dashboard_stack.app_url)  # a reload stays signed out
    wait_streamlit_idle(browser)
    browser.find("button", text="Sign in")
    assert user.name not in browser.text()


@pytest.mark.browser
def test_the_provider_offers_every_demo_user(dashboard_stack: DashboardStack, browser: Browser) -> None:
    browser.navigate(dashboard_stack.app_url)
    wait_streamlit_idle(browser)
    browser.click_text("Sign in", selector="button")
    browser.wait_for_selector('input[name="sub"]')
    offered = browser.evaluate("[...document.querySelectorAll('button[name=sub]')].map(b => b.value)")
    assert offered == [u.sub for u in DEMO_USERS]


@pytest.mark.browser
def test_a_wait_that_cannot_succeed_fails_with_the_page_text(dashboard_stack: DashboardStack,
                                                             browser: Browser) -> None:
    browser.navigate(dashboard_stack.app_url)
    wait_streamlit_idle(browser)
    with pytest.raises(BrowserError, match=r"(?s)timed out after 1 s waiting for text 'No such text'.*Sign in"):
        browser.wait_for_text("No such text", timeout_s=1)


def test_flowbank_dashboard_command_starts_both_and_stops_on_sigterm(dashboard_app: Path, tmp_path: Path) -> None:
    port, oidc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBANK_DASHBOARD_")}
    env |= {"FLOWBANK_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "dashboard.out"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "flowbank.cli", "dashboard", "--app", str(dashboard_app),
             "--port", str(port), "--oidc-port", str(oidc_port)],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "Ctrl-C stops" not in log.read_text("utf-8"):
            assert process.poll() is None, log.read_text("utf-8")
            assert time.monotonic() < deadline, log.read_text("utf-8")
            time.sleep(0.2)
        printed = log.read_text("utf-8")
        assert f"http://127.0.0.1:{port}" in printed
        for user in DEMO_USERS:
            assert user.email in printed
        assert http_get(f"http://127.0.0.1:{port}/_stcore/health") == (200, b"ok")
        discovery = http_get(f"http://127.0.0.1:{oidc_port}/.well-known/openid-configuration")
        assert discovery is not None
        assert json.loads(discovery[1])["issuer"] == f"http://127.0.0.1:{oidc_port}"
        secrets_file = tmp_path / "data" / "dashboard" / "secrets.toml"
        assert secrets_file.stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "data" / "dashboard" / "cookie_secret").stat().st_mode & 0o777 == 0o600

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text("utf-8")
        assert http_get(f"http://127.0.0.1:{port}/_stcore/health", timeout_s=1) is None
        assert http_get(f"http://127.0.0.1:{oidc_port}/.well-known/openid-configuration", timeout_s=1) is None
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
