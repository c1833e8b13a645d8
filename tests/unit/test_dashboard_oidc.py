"""Sign-in plumbing without processes: the cookie-secret setting, Streamlit's [auth] secrets file,
the kept cookie secret, the demo users and the command lines."""

from __future__ import annotations

import dataclasses
import sys
import tomllib
from pathlib import Path

import pytest

from control.settings import MIN_COOKIE_SECRET_LEN, Secret, Settings, SettingsError, describe, load_settings
from dashboards.oidc import (
    DEMO_USERS,
    AuthSecrets,
    demo_user,
    dev_auth_secrets,
    loopback_without_proxy,
    render_secrets_toml,
    write_secrets_file,
)
from flowbank.dashboard_cmd import browser_host, resolve_cookie_secret, sign_in_help, streamlit_argv

COOKIE = "c" * MIN_COOKIE_SECRET_LEN


def settings(tmp_path: Path, **env: str) -> Settings:
    return load_settings({f"FLOWBANK_{k.upper()}": v for k, v in env.items()}, default_data_dir=tmp_path)


def test_cookie_secret_setting_from_environment_and_toml(tmp_path: Path) -> None:
    assert not settings(tmp_path).dashboard_cookie_secret
    assert not settings(tmp_path, dashboard_cookie_secret="  ").dashboard_cookie_secret
    assert settings(tmp_path, dashboard_cookie_secret=COOKIE).dashboard_cookie_secret == Secret(COOKIE)
    from_toml = load_settings({}, {"dashboard_cookie_secret": COOKIE}, default_data_dir=tmp_path)
    assert from_toml.dashboard_cookie_secret.reveal() == COOKIE
    assert COOKIE not in repr(from_toml) and COOKIE not in "".join(describe(from_toml).values())


def test_a_short_cookie_secret_is_refused_without_showing_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        settings(tmp_path, dashboard_cookie_secret="short-secret-123")
    assert str(caught.value) == "FLOWBANK_DASHBOARD_COOKIE_SECRET: must be at least 32 characters, got 16"


def test_secrets_file_is_the_auth_table_streamlit_reads(tmp_path: Path) -> None:
    auth = dev_auth_secrets(app_url="http://127.0.0.1:8600/", provider_url="http://127.0.0.1:9400",
                            cookie_secret=Secret('q"uo\\te' + COOKIE))
    path = write_secrets_file(tmp_path / "nested" / "secrets.toml", auth)
    assert path.stat().st_mode & 0o777 == 0o600
    table = tomllib.loads(path.read_text("utf-8"))["auth"]
    assert table == {
        "redirect_uri": "http://127.0.0.1:8600/oauth2callback",
        "cookie_secret": 'q"uo\\te' + COOKIE,
        "client_id": "flowbank-dashboard",
        "client_secret": auth.client_secret.reveal(),
        "server_metadata_url": "http://127.0.0.1:9400/.well-known/openid-configuration",
    }
    assert COOKIE not in repr(auth)
    rewritten = write_secrets_file(path, dataclasses.replace(auth, client_id="other"))
    assert tomllib.loads(rewritten.read_text("utf-8"))["auth"]["client_id"] == "other"
    assert [p.name for p in path.parent.iterdir()] == ["secrets.toml"]  # no temporary file left


def test_render_escapes_every_field() -> None:
    auth = AuthSecrets(redirect_uri="http://h/cb\n[evil]", cookie_secret=Secret("x\u00e9"), client_id="a\tb",
                       client_secret=Secret("s"), server_metadata_url="http://h/.well-known/openid-configuration")
    assert tomllib.loads(render_secrets_toml(auth)) == {"auth": {
        "redirect_uri": "http://h/cb\n[evil]", "cookie_secret": "x\u00e9", "client_id": "a\tb",
        "client_secret": "s", "server_metadata_url": "http://h/.well-known/openid-configuration"}}


def test_cookie_secret_is_created_once_then_kept(tmp_path: Path) -> None:
    s = settings(tmp_path)
    first = resolve_cookie_secret(s)
    kept = tmp_path / "dashboard" / "cookie_secret"
    assert len(first.reveal()) >= MIN_COOKIE_SECRET_LEN
    assert kept.stat().st_mode & 0o777 == 0o600
    assert resolve_cookie_secret(s) == first
    assert resolve_cookie_secret(settings(tmp_path, dashboard_cookie_secret=COOKIE)) == Secret(COOKIE)
    kept.write_text("too short\n", "utf-8")
    replaced = resolve_cookie_secret(s)
    assert replaced != first and len(replaced.reveal()) >= MIN_COOKIE_SECRET_LEN


def test_one_demo_user_per_role_with_the_seeded_emails() -> None:
    assert [u.role for u in DEMO_USERS] == ["owner", "member", "fleet_manager", "support", "installer", "operator"]
    assert demo_user("fleet_manager").email == "fleet@flowbank.demo"
    assert all(u.email.endswith("@flowbank.demo") and u.sub == u.email for u in DEMO_USERS)
    assert demo_user("owner").claims() == {"sub": "owner@flowbank.demo", "email": "owner@flowbank.demo",
                                           "email_verified": True, "name": "Olivia Owner"}
    with pytest.raises(KeyError):
        demo_user("nobody")
    help_text = sign_in_help("http://127.0.0.1:8501", DEMO_USERS)
    assert "http://127.0.0.1:8501" in help_text
    for user in DEMO_USERS:
        assert user.email in help_text and user.name in help_text


def test_streamlit_command_line(tmp_path: Path) -> None:
    argv = streamlit_argv(tmp_path / "app.py", host="127.0.0.1", port=8600, secrets_file=tmp_path / "s.toml")
    assert argv[:5] == [sys.executable, "-m", "streamlit", "run", str(tmp_path / "app.py")]
    flags = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert flags == {"--server.headless": "true", "--server.port": "8600", "--server.address": "127.0.0.1",
                     "--browser.gatherUsageStats": "false", "--client.toolbarMode": "viewer",
                     "--secrets.files": str(tmp_path / "s.toml")}
    assert "--secrets.files" not in streamlit_argv(tmp_path / "app.py", host="h", port=1, secrets_file=None)
    assert browser_host("::") == "127.0.0.1" and browser_host("dash.example") == "dash.example"


def test_children_reach_loopback_without_a_proxy() -> None:
    env = loopback_without_proxy({"no_proxy": "corp.example,localhost", "http_proxy": "http://proxy:3128"})
    assert env["no_proxy"] == "corp.example,localhost,127.0.0.1"
    assert env["NO_PROXY"] == "127.0.0.1,localhost"
    assert env["http_proxy"] == "http://proxy:3128"
