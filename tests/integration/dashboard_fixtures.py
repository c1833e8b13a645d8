"""The dashboard stack for browser tests: the local OIDC provider and a Streamlit app, on free ports.

:func:`run_dashboard_stack` starts ``oidc-provider-mock`` (the demo users) and ``streamlit run``
with ``[auth]`` secrets pointing at it, both as child processes with logs under ``workdir``, and
stops them on exit (their log tails are printed, so pytest shows them when a test failed).

Fixtures (registered by tests/integration/conftest.py):

- ``dashboard_app`` (module): the Streamlit script, ``dashboards/app.py`` unless a test module
  overrides it with its own module-scoped fixture;
- ``dashboard_env`` (module): the app's environment, ``os.environ`` by default; override it to
  point the app at a test database (``{**os.environ, "FLOWBANK_PG_DSN": ...}``);
- ``dashboard_stack`` (module): a running :class:`DashboardStack` for ``dashboard_app``;
- ``browser`` (function): a fresh headless Chromium (no cookies) from tests/browser.py.
  A missing chromium fails the test (scripts/browser.sh installs it); deselect with ``-m "not browser"``.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from browser import Browser

from control.settings import Secret
from dashboards.oidc import (
    DEMO_USERS,
    DemoUser,
    LocalProcess,
    dev_auth_secrets,
    start_oidc_provider,
    write_secrets_file,
)
from flowbank.dashboard_cmd import DEFAULT_APP, start_streamlit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class DashboardStack:
    app_url: str  # e.g. http://127.0.0.1:41234 (no trailing slash)
    provider_url: str  # the OIDC issuer, e.g. http://127.0.0.1:41235
    secrets_file: Path
    users: tuple[DemoUser, ...]
    provider: LocalProcess
    streamlit: LocalProcess

    def user(self, role: str) -> DemoUser:
        for user in self.users:
            if user.role == role:
                return user
        raise KeyError(f"no demo user with role {role!r}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} log ({p.log_path}):\n{p.log_tail()}" for p in (self.provider, self.streamlit))


@contextmanager
def run_dashboard_stack(app: Path, workdir: Path, *, env: Mapping[str, str] | None = None,
                        users: Sequence[DemoUser] = DEMO_USERS,
                        streamlit_args: Sequence[str] = ()) -> Iterator[DashboardStack]:
    """Start the OIDC provider and the Streamlit ``app`` on free loopback ports; stop both on exit."""
    with ExitStack() as stack:
        provider = start_oidc_provider(free_port(), users=users, log_path=workdir / "oidc-provider.log")
        stack.callback(provider.stop)
        app_port = free_port()
        app_url = f"http://127.0.0.1:{app_port}"
        auth = dev_auth_secrets(app_url=app_url, provider_url=provider.url,
                                cookie_secret=Secret(secrets.token_urlsafe(48)))
        secrets_file = write_secrets_file(workdir / "secrets.toml", auth)
        app_env = dict(os.environ if env is None else env)
        app_env.setdefault("FLOWBANK_DATA_DIR", str(workdir / "data"))
        streamlit = start_streamlit(app, host="127.0.0.1", port=app_port, secrets_file=secrets_file,
                                    log_path=workdir / "streamlit.log", env=app_env,
                                    extra=["--server.fileWatcherType", "none", *streamlit_args])
        stack.callback(streamlit.stop)
        running = DashboardStack(app_url=app_url, provider_url=provider.url, secrets_file=secrets_file,
                                 users=tuple(users), provider=provider, streamlit=streamlit)
        try:
            yield running
        finally:
            print(running.logs())


@pytest.fixture(scope="module")
def dashboard_app() -> Path:
    return DEFAULT_APP


@pytest.fixture(scope="module")
def dashboard_env() -> dict[str, str]:
    return dict(os.environ)


@pytest.fixture(scope="module")
def dashboard_stack(dashboard_app: Path, dashboard_env: dict[str, str],
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardStack]:
    with run_dashboard_stack(dashboard_app, tmp_path_factory.mktemp("dashboard"), env=dashboard_env) as stack:
        yield stack


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Browser]:
    with Browser.launch(tmp_path / "chromium") as launched:
        yield launched
