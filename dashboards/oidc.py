"""Sign-in plumbing around the dashboard: Streamlit's ``[auth]`` secrets and a local OIDC provider.

``st.login()`` reads the provider from the ``[auth]`` table of Streamlit's secrets
(:func:`render_secrets_toml`, :func:`write_secrets_file`). For the demo and the tests,
:func:`start_oidc_provider` runs ``oidc-provider-mock`` (PyPI) as a child process on loopback with
one predefined user per role (:data:`DEMO_USERS`): its sign-in page asks for a subject ("sub"),
and a predefined subject signs in with that user's claims (e-mail, name). Any other subject
signs in too, with only ``email = sub``: the app must refuse e-mails it does not know.

The mock is for development only: it accepts any client id and secret, and it runs Werkzeug's
debugger. It is bound to 127.0.0.1 and nothing here lets it listen elsewhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from control.settings import Secret
from warehouse import demo_seed

LOOPBACK: Final = "127.0.0.1"
DEV_CLIENT_ID: Final = "flowbank-dashboard"
DEV_CLIENT_SECRET: Final = Secret("flowbank-dev-client-secret")  # the mock accepts any secret
CALLBACK_PATH: Final = "/oauth2callback"  # Streamlit's fixed callback route
DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
STOP_GRACE_S: Final = 10.0


class OidcError(RuntimeError):
    """A local process (OIDC provider, dashboard) did not start or answer; the message says why."""


@dataclass(frozen=True, slots=True)
class DemoUser:
    """A demo sign-in: type ``sub`` into the mock's form (here the e-mail itself)."""

    role: str
    email: str
    name: str

    @property
    def sub(self) -> str:
        return self.email

    def claims(self) -> dict[str, object]:
        return {"sub": self.sub, "email": self.email, "email_verified": True, "name": self.name}


# One per role: the people the demo seed puts into PostgreSQL (warehouse/demo_seed.py).
DEMO_USERS: Final[tuple[DemoUser, ...]] = tuple(
    DemoUser(u.role.value, u.email, u.display_name) for u in demo_seed.DEMO_USERS)


def demo_user(role: str) -> DemoUser:
    for user in DEMO_USERS:
        if user.role == role:
            return user
    raise KeyError(f"no demo user with role {role!r}")


# --------------------------------------------------------------------------- Streamlit's [auth] secrets


@dataclass(frozen=True, slots=True)
class AuthSecrets:
    """The ``[auth]`` table ``st.login()`` reads (one default provider)."""

    redirect_uri: str
    cookie_secret: Secret
    client_id: str
    client_secret: Secret
    server_metadata_url: str


def dev_auth_secrets(*, app_url: str, provider_url: str, cookie_secret: Secret) -> AuthSecrets:
    """The secrets for a dashboard at ``app_url`` signing in through the local provider."""
    return AuthSecrets(
        redirect_uri=app_url.rstrip("/") + CALLBACK_PATH,
        cookie_secret=cookie_secret,
        client_id=DEV_CLIENT_ID,
        client_secret=DEV_CLIENT_SECRET,
        server_metadata_url=provider_url.rstrip("/") + DISCOVERY_PATH,
    )


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes, \\uXXXX included).
    return json.dumps(value, ensure_ascii=True)


def render_secrets_toml(auth: AuthSecrets) -> str:
    """The secrets file's text. It holds secrets: write it only with :func:`write_secrets_file`."""
    lines = [
        "# Written by `flowbank dashboard`; holds secrets: never commit it.",
        "[auth]",
        f"redirect_uri = {_toml_string(auth.redirect_uri)}",
        f"cookie_secret = {_toml_string(auth.cookie_secret.reveal())}",
        f"client_id = {_toml_string(auth.client_id)}",
        f"client_secret = {_toml_string(auth.client_secret.reveal())}",
        f"server_metadata_url = {_toml_string(auth.server_metadata_url)}",
    ]
    return "\n".join(lines) + "\n"


def write_private_file(path: Path, text: str) -> Path:
    """Write ``text`` readable by the owner only (0600), replacing the file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_secrets_file(path: Path, auth: AuthSecrets) -> Path:
    """Write Streamlit's secrets file (0600); start Streamlit with ``--secrets.files <path>``."""
    return write_private_file(path, render_secrets_toml(auth))


# --------------------------------------------------------------------------- local child processes


@dataclass
class LocalProcess:
    """A child process serving HTTP on loopback; :meth:`stop` ends it (SIGTERM, then SIGKILL)."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, max_chars: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text("utf-8", errors="replace")[-max_chars:]

    def stop(self, grace_s: float = STOP_GRACE_S) -> int:
        """Stop the child and its process group (it runs in its own session); the exit code."""
        if self.process.poll() is None:
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, signal.SIGKILL)
                self.process.wait()
        return int(self.process.returncode)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)  # the child leads its own session (start_new_session=True)
    except ProcessLookupError:
        pass


def loopback_without_proxy(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with loopback added to ``no_proxy``: the app fetches the provider's metadata and
    tokens over loopback, which must not go through an http_proxy the environment names."""
    out = dict(env)
    for name in ("no_proxy", "NO_PROXY"):
        hosts = [h for h in out.get(name, "").split(",") if h.strip()]
        out[name] = ",".join([*hosts, *(h for h in (LOOPBACK, "localhost") if h not in hosts)])
    return out


def spawn(name: str, argv: Sequence[str], *, url: str, log_path: Path | None,
          env: Mapping[str, str] | None = None, cwd: Path | None = None) -> LocalProcess:
    """Start ``argv`` in its own session (a terminal's Ctrl-C reaches only the parent), output to
    ``log_path`` (or inherited when None)."""
    env = loopback_without_proxy(os.environ if env is None else env)
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            log.write(f"=== {' '.join(argv)}\n".encode())
            log.flush()
            process = subprocess.Popen(list(argv), env=env, cwd=cwd,  # noqa: S603
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
    else:
        process = subprocess.Popen(list(argv), env=env, cwd=cwd,  # noqa: S603
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    return LocalProcess(name=name, url=url, process=process, log_path=log_path)


# Loopback only: never through an http_proxy from the environment.
_DIRECT: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout_s: float = 2.0) -> tuple[int, bytes] | None:
    """Status and body of a GET on loopback; None when nothing answers."""
    try:
        with _DIRECT.open(url, timeout=timeout_s) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (urllib.error.URLError, OSError):
        return None


def wait_ready(child: LocalProcess, check: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    """Poll ``check`` until true; stop the child and raise :class:`OidcError` (with its log) on
    timeout or if it exits."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if not child.alive():
            code = child.process.returncode
            raise OidcError(f"{child.name} exited with code {code} before {what}\n{child.log_tail()}")
        if time.monotonic() > deadline:
            child.stop()
            raise OidcError(f"{child.name}: timed out after {timeout_s:.0f} s waiting for {what}\n{child.log_tail()}")
        time.sleep(0.2)


def start_oidc_provider(port: int, *, users: Sequence[DemoUser] = DEMO_USERS, log_path: Path | None = None,
                        timeout_s: float = 60.0) -> LocalProcess:
    """Run ``oidc-provider-mock`` on 127.0.0.1:``port`` with ``users`` predefined, and wait until
    its discovery document answers. ``.url`` is the issuer, e.g. ``http://127.0.0.1:9400``."""
    url = f"http://{LOOPBACK}:{port}"
    argv = [sys.executable, "-m", "oidc_provider_mock", "--host", LOOPBACK, "--port", str(port)]
    for user in users:
        argv += ["--user-claims", json.dumps(user.claims())]
    env = dict(os.environ, NO_COLOR="1", PYTHONWARNINGS="ignore::DeprecationWarning")
    child = spawn("oidc-provider", argv, url=url, log_path=log_path, env=env)

    def discovery_answers() -> bool:
        answer = http_get(url + DISCOVERY_PATH)
        if answer is None or answer[0] != 200:
            return False
        try:
            return "authorization_endpoint" in json.loads(answer[1])
        except ValueError:
            return False

    wait_ready(child, discovery_answers, timeout_s=timeout_s, what=f"{url}{DISCOVERY_PATH} to answer")
    return child
