"""Invitation links carry the dashboards' public address (FLOWBANK_DASHBOARD_PUBLIC_URL), and the
cookie that remembers a link across sign-in holds only a nonce. No services needed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from control.settings import Settings, SettingsError, describe, load_settings
from control.sharing import invite_link
from dashboards.invite_flow import COOKIE, cookie_script
from dashboards.invite_mail import dashboard_base_url
from flowbank.config import PROJECT_ROOT

VAR = "FLOWBANK_DASHBOARD_PUBLIC_URL"
NONCE = "n" * 43


def load(environ: dict[str, str] | None = None, toml: dict[str, Any] | None = None) -> Settings:
    return load_settings(environ or {}, toml, default_data_dir=Path("/srv/flowbank-test-data"))


def test_without_a_public_url_links_go_to_the_dashboards_own_address() -> None:
    assert load().dashboard_public_url == ""
    assert dashboard_base_url(load()) == "http://127.0.0.1:8501"
    assert dashboard_base_url(load({"FLOWBANK_DASHBOARD_HOST": "0.0.0.0"})) == "http://localhost:8501"  # noqa: S104
    assert dashboard_base_url(load({"FLOWBANK_DASHBOARD_HOST": "::1", "FLOWBANK_DASHBOARD_PORT": "8600"})) \
        == "http://[::1]:8600"
    assert dashboard_base_url(load({VAR: "   "})) == "http://127.0.0.1:8501"  # blank: not configured


@pytest.mark.parametrize(("raw", "expected"), [
    ("https://charging.example.com", "https://charging.example.com"),
    ("https://charging.example.com/", "https://charging.example.com"),
    (" http://10.0.0.5:8080/flowbank/ ", "http://10.0.0.5:8080/flowbank"),
    ("http://[2001:db8::1]:8501", "http://[2001:db8::1]:8501"),
])
def test_a_public_url_is_used_for_invitation_links(raw: str, expected: str) -> None:
    settings = load({VAR: raw, "FLOWBANK_DASHBOARD_HOST": "0.0.0.0"})  # noqa: S104 - behind a proxy
    assert settings.dashboard_public_url == expected
    assert dashboard_base_url(settings) == expected
    assert invite_link(dashboard_base_url(settings), "T" * 43) == f"{expected}/invite?token={'T' * 43}"
    assert describe(settings)["dashboard_public_url"] == expected


def test_the_public_url_can_come_from_the_toml_file() -> None:
    assert load(toml={"dashboard_public_url": "https://ev.example.org"}).dashboard_public_url == "https://ev.example.org"


@pytest.mark.parametrize(("raw", "message"), [
    ("charging.example.com", r"expected an http:// or https:// URL .*got 'charging.example.com'"),
    ("ftp://charging.example.com", r"expected an http:// or https:// URL"),
    ("https://", r"no host in the URL"),
    ("https://charging.example.com/?from=mail", r"must not have a query \(\?\.\.\.\) or fragment"),
    ("https://charging.example.com/#top", r"must not have a query"),
    ("https://charging.example.com:0", r"the port must be a number between 1 and 65535"),
    ("https://charging.example.com:99999", r"the port must be a number between 1 and 65535"),
    ("https://charging example.com", r"must not contain spaces"),
])
def test_a_bad_public_url_stops_with_a_line_naming_the_variable(raw: str, message: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{VAR}: {message}"):
        load({VAR: raw})


def test_credentials_in_the_public_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(SettingsError) as caught:
        load({VAR: "https://admin:hunter2@charging.example.com"})
    assert str(caught.value) == f"{VAR}: must not contain a user name or password (the URL is sent to people)"
    assert "hunter2" not in str(caught.value)


def test_compose_gives_the_dashboard_a_valid_public_url_by_default() -> None:
    compose = YAML(typ="safe").load((PROJECT_ROOT / "docker-compose.yml").read_text())
    raw = compose["services"]["dashboard"]["environment"][VAR]
    match = re.fullmatch(r"\$\{" + VAR + r":-(?P<default>[^}]+)\}", raw)
    assert match is not None, raw  # overridable from the host's environment
    assert load({VAR: match["default"]}).dashboard_public_url == "http://localhost:8501"


def test_the_documentation_names_the_setting() -> None:
    assert f"`{VAR}`" in (PROJECT_ROOT / "README.md").read_text()
    assert VAR in (PROJECT_ROOT / "docs" / "dashboards.md").read_text()


def test_the_cookie_holds_only_a_nonce_for_this_browser_session() -> None:
    script = cookie_script("set", NONCE)
    assert f'"{COOKIE}={NONCE}; Path=/; SameSite=Strict"' in script
    assert "Max-Age" not in script and "Expires" not in script  # a session cookie
    assert "location.protocol === 'https:' ? '; Secure'" in script
    assert f'"{COOKIE}=; Path=/; Max-Age=0; SameSite=Strict"' in cookie_script("clear")
    for bad in ("x" * 42, "n" * 42 + '"', "</script><script>alert(1)"):
        with pytest.raises(ValueError, match="not a nonce"):
            cookie_script("set", bad)
    with pytest.raises(ValueError, match="unknown cookie action"):
        cookie_script("keep")
