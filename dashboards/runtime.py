"""What every page shares: cached connections, the services, and the signed-in user.

Connections are process-wide (``st.cache_resource``): one PostgreSQL pool and one MQTT command
client serve every browser session of this Streamlit server. The user is resolved on every run
from ``st.user`` (set by Streamlit's own OpenID Connect sign-in, ``st.login``); their roles are
reloaded on every run so a revoked membership takes effect on the next click.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import streamlit as st
from psycopg_pool import ConnectionPool

from control.settings import Settings
from dashboards.access import Access, AccessDenied, Principal
from warehouse.analytics import lake_paths
from warehouse.analytics_views import AnalyticsReader, ensure_views_db
from warehouse.command_api import CommandService
from warehouse.config import read_settings

log = logging.getLogger(__name__)

_PRINCIPAL_KEY = "_flowbank_user_id"
_OPENED: list[ConnectionPool | CommandService] = []  # what close_resources() must close
_IDENTITY_KEY = "_flowbank_identity"


@st.cache_resource(show_spinner=False)
def settings() -> Settings:
    return read_settings()


@st.cache_resource(show_spinner=False)
def pool() -> ConnectionPool:
    """A small pool: page runs are short, and Streamlit runs one script per browser session at a time."""
    p = ConnectionPool(settings().pg_dsn.reveal(), min_size=1, max_size=8, open=False,
                       kwargs={"connect_timeout": 5}, name="dashboards")
    p.open(wait=False)
    _OPENED.append(p)
    return p


@st.cache_resource(show_spinner=False)
def access() -> Access:
    return Access(pool())


@st.cache_resource(show_spinner=False)
def commands() -> CommandService:
    """The MQTT command channel (remote start/stop, lock, pause); replies within 5 s."""
    service = CommandService(settings().mqtt, client_id=None)
    service.start(wait_s=3.0)
    _OPENED.append(service)
    return service


def close_resources() -> None:
    """Close every connection this process opened and forget the cached resources (tests, shutdown)."""
    while _OPENED:
        _OPENED.pop().close()
    st.cache_resource.clear()


@st.cache_resource(show_spinner=False)
def analytics() -> AnalyticsReader:
    """The read-only DuckDB views over the Parquet lake (never the pipeline's writing file)."""
    lake_root, db_path = lake_paths(settings())
    if not db_path.exists():
        try:
            ensure_views_db(lake_root, db_path)
        except (OSError, duckdb.Error) as exc:  # a reader without write access waits for the pipeline's file
            log.warning("cannot create the analytics views database %s: %s", db_path, exc)
    return AnalyticsReader(db_path)


@dataclass(frozen=True, slots=True)
class Identity:
    email: str
    name: str
    issuer: str | None
    subject: str | None


def _identity() -> Identity | None:
    user: Any = st.user
    if not user.get("is_logged_in"):
        return None
    email = str(user.get("email") or "")
    return Identity(email=email, name=str(user.get("name") or email), issuer=user.get("iss"),
                    subject=str(user["sub"]) if user.get("sub") else None)


def auth_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all (StreamlitSecretNotFoundError and kin)
        return False


def signed_in() -> Principal | None:
    """The FlowBankOS user behind ``st.user``, or None when nobody is signed in."""
    identity = _identity()
    if identity is None:
        return None
    acc = access()
    if st.session_state.get(_IDENTITY_KEY) != identity:
        principal = acc.sign_in(email=identity.email, display_name=identity.name, issuer=identity.issuer,
                                subject=identity.subject)
        st.session_state[_IDENTITY_KEY] = identity
        st.session_state[_PRINCIPAL_KEY] = principal.user_id
        return principal
    return acc.principal(str(st.session_state[_PRINCIPAL_KEY]))


def sign_in_screen(notice: Callable[[], None] | None = None) -> None:
    """The signed-out screen; ``notice`` draws above the button (an opened invitation, say)."""
    st.title("FlowBankOS")
    st.caption("EV charging, managed.")
    if auth_configured():
        st.write("Sign in to see your chargers, sessions and sites.")
        if notice is not None:
            notice()
        st.button("Sign in", type="primary", on_click=st.login, key="sign_in")
    else:
        st.error("Sign-in is not configured on this server. Start the dashboards with `flowbank dashboard`, "
                 "which runs a local OpenID Connect provider for the demo, or add an `[auth]` section to "
                 "`.streamlit/secrets.toml` for your identity provider.")


def current_user(*, sign_in_notice: Callable[[], None] | None = None) -> Principal:
    """The signed-in user, or stop the page with the sign-in screen (or a clear refusal)."""
    try:
        principal = signed_in()
    except AccessDenied as exc:
        st.error(f"Signed in, but {exc}.")
        st.button("Sign out", on_click=st.logout, key="sign_out_refused")
        st.stop()
    if principal is None:
        sign_in_screen(sign_in_notice)
        st.stop()
    return principal
