"""`flowbank dashboard`: the Streamlit app, with sign-in working out of the box.

By default it starts the local OIDC provider (``oidc-provider-mock``, one demo user per role),
writes Streamlit's ``[auth]`` secrets for it into the data directory (0600, outside the repo) and
runs ``streamlit run dashboards/app.py`` with ``--secrets.files`` pointing there. It prints the
URL and how to sign in as each demo user, and on Ctrl-C or SIGTERM stops both children.

For a real provider (Google, Apple, any OIDC), give ``--secrets-file`` with your own ``[auth]``
table, or ``--no-dev-oidc`` to let Streamlit find its secrets where it usually looks
(``dashboards/.streamlit/secrets.toml``, ``./.streamlit/secrets.toml``, ``~/.streamlit/secrets.toml``).

The cookie secret comes from ``FLOWBANK_DASHBOARD_COOKIE_SECRET``; when unset, a random one is
created once and kept in ``<data dir>/dashboard/cookie_secret`` (0600), so sign-ins survive a
restart and no secret is shared between machines.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Final

from control.settings import MIN_COOKIE_SECRET_LEN, Secret, Settings
from dashboards.oidc import (
    DEMO_USERS,
    LOOPBACK,
    DemoUser,
    LocalProcess,
    OidcError,
    dev_auth_secrets,
    http_get,
    spawn,
    start_oidc_provider,
    wait_ready,
    write_private_file,
    write_secrets_file,
)
from warehouse.config import PROJECT_ROOT

DEFAULT_APP: Final = PROJECT_ROOT / "dashboards" / "app.py"
DEFAULT_OIDC_PORT: Final = 9400
HEALTH_PATH: Final = "/_stcore/health"


def dashboard_dir(settings: Settings) -> Path:
    return settings.data_dir / "dashboard"


def resolve_cookie_secret(settings: Settings) -> Secret:
    """The configured cookie secret, else the one kept in the data dir (created on first use)."""
    if settings.dashboard_cookie_secret:
        return settings.dashboard_cookie_secret
    path = dashboard_dir(settings) / "cookie_secret"
    try:
        kept = path.read_text("utf-8").strip()
    except FileNotFoundError:
        kept = ""
    if len(kept) >= MIN_COOKIE_SECRET_LEN:
        return Secret(kept)
    fresh = secrets.token_urlsafe(48)
    write_private_file(path, fresh + "\n")
    return Secret(fresh)


def browser_host(host: str) -> str:
    """The host a browser uses for a server bound to ``host`` (a wildcard bind is reached on loopback)."""
    return LOOPBACK if host in ("", "0.0.0.0", "::", "[::]") else host  # noqa: S104 - compared, not bound


def streamlit_argv(app: Path, *, host: str, port: int, secrets_file: Path | None,
                   extra: Sequence[str] = ()) -> list[str]:
    argv = [sys.executable, "-m", "streamlit", "run", str(app),
            "--server.headless", "true", "--server.port", str(port), "--server.address", host,
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer"]
    if secrets_file is not None:
        argv += ["--secrets.files", str(secrets_file)]
    return argv + list(extra)


def start_streamlit(app: Path, *, host: str, port: int, secrets_file: Path | None, log_path: Path | None,
                    env: Mapping[str, str] | None = None, extra: Sequence[str] = (),
                    timeout_s: float = 90.0) -> LocalProcess:
    """Run the Streamlit app and wait until ``/_stcore/health`` answers ``ok``."""
    if not app.is_file():
        raise OidcError(f"no Streamlit app at {app}")
    url = f"http://{browser_host(host)}:{port}"
    child = spawn("streamlit", streamlit_argv(app, host=host, port=port, secrets_file=secrets_file, extra=extra),
                  url=url, log_path=log_path, env=env, cwd=PROJECT_ROOT)

    def healthy() -> bool:
        answer = http_get(url + HEALTH_PATH)
        return answer is not None and answer == (200, b"ok")

    wait_ready(child, healthy, timeout_s=timeout_s, what=f"{url}{HEALTH_PATH} to answer ok")
    return child


def sign_in_help(app_url: str, users: Sequence[DemoUser]) -> str:
    width = max(len(u.role) for u in users)
    lines = [f"Open {app_url} and click \"Sign in\". On the provider's page type one of these e-mails into",
             "the \"sub\" field and press Authorize (or click it under \"Authenticate predefined users\"):"]
    lines += [f"  {u.role:<{width}}  {u.email:<26} {u.name}" for u in users]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, help="the dashboard's port (default: FLOWBANK_DASHBOARD_PORT, 8501)")
    parser.add_argument("--app", type=Path, default=DEFAULT_APP, help="the Streamlit script (default: %(default)s)")
    parser.add_argument("--oidc-port", type=int, default=DEFAULT_OIDC_PORT,
                        help="port of the local OIDC provider (default: %(default)s)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--secrets-file", type=Path,
                       help="your Streamlit secrets file with an [auth] table (real provider); no local provider")
    group.add_argument("--no-dev-oidc", action="store_true",
                       help="no local provider; Streamlit reads its secrets from its usual places")


def run(settings: Settings, args: argparse.Namespace) -> int:
    port = int(args.port or settings.dashboard_port)
    host = settings.dashboard_host
    app_url = f"http://{browser_host(host)}:{port}"
    workdir = dashboard_dir(settings)
    children: list[LocalProcess] = []
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        secrets_file: Path | None = args.secrets_file
        dev = secrets_file is None and not args.no_dev_oidc
        if dev:
            provider = start_oidc_provider(args.oidc_port, log_path=workdir / "oidc-provider.log")
            children.append(provider)
            auth = dev_auth_secrets(app_url=app_url, provider_url=provider.url,
                                    cookie_secret=resolve_cookie_secret(settings))
            secrets_file = write_secrets_file(workdir / "secrets.toml", auth)
        children.append(start_streamlit(args.app, host=host, port=port, secrets_file=secrets_file,
                                        log_path=workdir / "streamlit.log"))
        print(f"\n[dashboard] {app_url}", flush=True)
        if dev:
            print(f"[dashboard] local OIDC provider: {children[0].url} (development only)")
            print(sign_in_help(app_url, DEMO_USERS))
        elif secrets_file is not None:
            print(f"[dashboard] sign-in configured by {secrets_file}")
        print(f"[dashboard] logs in {workdir}; Ctrl-C stops.\n", flush=True)
        exit_code = 0
        while not stopping.wait(0.5):
            dead = next((c for c in children if not c.alive()), None)
            if dead is not None:
                print(f"[dashboard] {dead.name} exited with code {dead.process.returncode}; stopping\n"
                      f"{dead.log_tail()}", file=sys.stderr)
                exit_code = 1
                break
        return exit_code
    except OidcError as exc:
        print(f"[dashboard] {exc}", file=sys.stderr)
        return 1
    finally:
        for child in reversed(children):
            child.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
