"""One frozen settings object per process.

Built once in ``main()`` from ``FLOWBANK_*`` environment variables (and optionally a TOML file
named by ``FLOWBANK_CONFIG``), then passed down. This module does no IO itself: the caller hands
in the environment mapping and the parsed TOML table, so the parsing is testable and pure.

A bad value raises :class:`SettingsError` whose message is one line naming the variable.
Secrets are :class:`Secret` values: their ``repr``/``str`` never show the content.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import SplitResult, quote, unquote, urlsplit

ENV_PREFIX: Final = "FLOWBANK_"

# Defaults match what scripts/services.sh provisions on a developer machine: a dedicated
# PostgreSQL 15 cluster with TimescaleDB and a dedicated Mosquitto, both on loopback only.
DEFAULT_PG_PORT: Final = 5434
DEFAULT_MQTT_PORT: Final = 1884
DEFAULT_PG_DSN: Final = f"postgresql://flowbank:flowbank@127.0.0.1:{DEFAULT_PG_PORT}/flowbank"
DEFAULT_MQTT_URL: Final = f"mqtt://127.0.0.1:{DEFAULT_MQTT_PORT}"


class SettingsError(ValueError):
    """A setting with a bad value; the message names the variable."""


class Secret:
    """A string that is never shown in logs, reprs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(repr(self), spec)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


NO_SECRET: Final = Secret("")


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    host: str
    port: int
    username: str | None
    password: Secret
    tls: bool

    @property
    def url(self) -> str:
        """The URL without the password (safe to print)."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{quote(self.username)}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        return f"{scheme}://{user}{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Settings:
    pg_dsn: Secret
    mqtt: MqttEndpoint
    data_dir: Path
    log_level: str = "INFO"
    bridge_host: str = "127.0.0.1"
    bridge_port: int = 9000
    bridge_id: str = "bridge-1"
    pipeline_id: str = "pipeline"  # names the pipeline's MQTT sessions; one per independent deployment
    # How long the broker keeps a consumer's persistent session (and queues for it) while it is
    # away: the pipeline's and the bridge's command channel's. Longer outages lose messages.
    mqtt_session_expiry_s: int = 7 * 24 * 3600
    # The pipeline's MQTT source holds messages until the oldest has waited this long (or 2,000
    # are waiting), so downstream batches (and TimescaleDB transactions) are not tiny. 0 = hand
    # over whatever has arrived.
    pipeline_batch_ms: int = 100
    bridge_tls_cert: Path | None = None
    bridge_tls_key: Path | None = None
    bridge_auto_register: bool = False
    heartbeat_interval_s: int = 60
    ocpp_response_timeout_s: float = 10.0
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8501
    # The address people reach the dashboards at, for links sent to them (invitation e-mails and
    # QR codes): behind a proxy it is not host:port. Empty: http://<dashboard_host>:<dashboard_port>.
    dashboard_public_url: str = ""
    # Diagnostics/log uploads from chargers (GetDiagnostics / GetLog): the receiver's port, and the
    # URL chargers are told to upload to (empty: http://<bridge_host>:<upload_port>/upload).
    upload_port: int = 8090
    upload_url: str = ""
    # Signs Streamlit's sign-in cookies (the [auth] cookie_secret). Empty = not configured:
    # `flowbank dashboard` then uses a random one it keeps in the data dir.
    dashboard_cookie_secret: Secret = NO_SECRET
    provision_services: bool = True  # False when the user points us at their own PG/MQTT
    # E-mail notifications (`flowbank notify`): no host = the e-mail channel is off.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: Secret = NO_SECRET
    smtp_from: str = "flowbank@localhost"
    smtp_starttls: bool = True

    @property
    def upload_base_url(self) -> str:
        """Where chargers upload diagnostics (``<this>/<charger_id>``)."""
        return (self.upload_url or f"http://{self.bridge_host}:{self.upload_port}/upload").rstrip("/")

    @property
    def pg_dsn_display(self) -> str:
        return redact_dsn(self.pg_dsn.reveal())


_REDACTED: Final = "********"
_QUERY_PASSWORD: Final = re.compile(r"(?i)([?&]password=)[^&#]*")
_KV_PASSWORD: Final = re.compile(r"(?i)\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)")


def redact_dsn(dsn: str) -> str:
    """A DSN with any password replaced, fit for logs.

    Covers the URL's user info, a ``password=`` query parameter and the libpq key/value form.
    Works on the text rather than re-assembling a parsed URL, which would turn ``scheme:///db``
    into ``scheme:/db`` and fail on a malformed host.
    """
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        return _KV_PASSWORD.sub(rf"\g<1>{_REDACTED}", dsn)
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:{_REDACTED}@{hostport}"
    tail = _QUERY_PASSWORD.sub(rf"\g<1>{_REDACTED}", tail)
    return f"{scheme}://{netloc}{tail}"


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name}: expected true or false, got {raw!r}")


def _parse_int(name: str, raw: str, *, minimum: int, maximum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"{name}: must be between {minimum} and {maximum}, got {value}")
    return value


def _parse_float(name: str, raw: str, *, minimum: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected a number, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise SettingsError(f"{name}: must be a finite number of at least {minimum}, got {raw!r}")
    return value


def _split_url(name: str, raw: str) -> SplitResult:
    try:
        return urlsplit(raw)
    except ValueError:  # an unclosed IPv6 bracket, NFKC-unsafe characters, ...
        # urllib's own message may quote the user info, password included: never repeat it.
        raise SettingsError(f"{name}: not a valid URL (malformed host part)") from None


def _url_port(name: str, parts: SplitResult) -> int | None:
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise SettingsError(f"{name}: the port must be a number between 1 and 65535")
    return port


def parse_mqtt_url(name: str, raw: str) -> MqttEndpoint:
    parts = _split_url(name, raw)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise SettingsError(
            f"{name}: expected mqtt://host:port or mqtts://host:port, got scheme {parts.scheme!r}")
    if not parts.hostname:
        raise SettingsError(f"{name}: no host in the URL")
    tls = parts.scheme in ("mqtts", "ssl")
    port = _url_port(name, parts)
    return MqttEndpoint(
        host=parts.hostname,
        port=port if port is not None else (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=Secret(unquote(parts.password) if parts.password else ""),
        tls=tls,
    )


def _check_dsn(name: str, raw: str) -> Secret:
    parts = _split_url(name, raw)
    if parts.scheme not in ("postgresql", "postgres") or (not parts.hostname and "host=" not in raw):
        raise SettingsError(f"{name}: expected postgresql://user:password@host:port/database")
    _url_port(name, parts)
    return Secret(raw)


def _check_public_url(name: str, raw: str) -> str:
    """An http(s) URL without credentials, query or fragment; returned without a trailing slash."""
    value = raw.strip()
    parts = _split_url(name, value)
    if parts.username is not None or parts.password is not None:
        # Never echo it: the user info may hold a password.
        raise SettingsError(f"{name}: must not contain a user name or password (the URL is sent to people)")
    if parts.scheme not in ("http", "https"):
        raise SettingsError(f"{name}: expected an http:// or https:// URL such as https://charging.example.com,"
                            f" got {value!r}")
    if not parts.hostname:
        raise SettingsError(f"{name}: no host in the URL, got {value!r}")
    if any(c.isspace() for c in value):
        raise SettingsError(f"{name}: must not contain spaces, got {value!r}")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise SettingsError(f"{name}: must not have a query (?...) or fragment (#...), got {value!r}")
    _url_port(name, parts)
    return value.rstrip("/")


MIN_COOKIE_SECRET_LEN: Final = 32


def _check_cookie_secret(name: str, raw: str) -> Secret:
    value = raw.strip()
    if len(value) < MIN_COOKIE_SECRET_LEN:
        # The length only: never echo a secret, even a bad one.
        raise SettingsError(f"{name}: must be at least {MIN_COOKIE_SECRET_LEN} characters, got {len(value)}")
    return Secret(value)


_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def load_settings(environ: Mapping[str, str], toml: Mapping[str, Any] | None = None,
                  *, default_data_dir: Path) -> Settings:
    """Build the settings from the environment, falling back to a TOML table, then defaults.

    TOML keys are the variable names without the prefix, in lower case (``pg_dsn = "..."``).
    """
    table = {str(k).lower(): v for k, v in (toml or {}).items()}

    def get(key: str) -> tuple[str, str | None]:
        env_name = ENV_PREFIX + key.upper()
        if env_name in environ:
            return env_name, environ[env_name]
        if key in table:
            value = table[key]
            return f"{key} (TOML)", str(value).lower() if isinstance(value, bool) else str(value)
        return env_name, None

    values: dict[str, Any] = {}
    name, raw = get("pg_dsn")
    provision = True
    if raw is not None:
        values["pg_dsn"] = _check_dsn(name, raw)
        provision = False
    else:
        values["pg_dsn"] = Secret(DEFAULT_PG_DSN)
    name, raw = get("mqtt_url")
    if raw is not None:
        values["mqtt"] = parse_mqtt_url(name, raw)
        provision = False
    else:
        values["mqtt"] = parse_mqtt_url("default", DEFAULT_MQTT_URL)
    name, raw = get("provision_services")
    values["provision_services"] = _parse_bool(name, raw) if raw is not None else provision

    name, raw = get("data_dir")
    values["data_dir"] = Path(raw) if raw else default_data_dir
    name, raw = get("log_level")
    if raw is not None:
        if raw.upper() not in _LOG_LEVELS:
            raise SettingsError(f"{name}: expected one of {', '.join(_LOG_LEVELS)}, got {raw!r}")
        values["log_level"] = raw.upper()

    for key in ("bridge_host", "bridge_id", "pipeline_id", "dashboard_host", "upload_url"):
        name, raw = get(key)
        if raw is not None:
            if not raw.strip():
                raise SettingsError(f"{name}: must not be empty")
            values[key] = raw.strip()
    for key in ("bridge_port", "dashboard_port", "upload_port"):
        name, raw = get(key)
        if raw is not None:
            values[key] = _parse_int(name, raw, minimum=1, maximum=65535)
    name, raw = get("dashboard_public_url")
    if raw is not None and raw.strip():  # empty: derived from dashboard_host and dashboard_port
        values["dashboard_public_url"] = _check_public_url(name, raw)
    name, raw = get("dashboard_cookie_secret")
    if raw is not None and raw.strip():  # empty: not configured
        values["dashboard_cookie_secret"] = _check_cookie_secret(name, raw)
    name, raw = get("mqtt_session_expiry_s")
    if raw is not None:
        values["mqtt_session_expiry_s"] = _parse_int(name, raw, minimum=60, maximum=2**32 - 1)
    name, raw = get("pipeline_batch_ms")
    if raw is not None:
        values["pipeline_batch_ms"] = _parse_int(name, raw, minimum=0, maximum=10_000)
    name, raw = get("heartbeat_interval_s")
    if raw is not None:
        values["heartbeat_interval_s"] = _parse_int(name, raw, minimum=1, maximum=86_400)
    name, raw = get("ocpp_response_timeout_s")
    if raw is not None:
        values["ocpp_response_timeout_s"] = _parse_float(name, raw, minimum=0.1)
    name, raw = get("bridge_auto_register")
    if raw is not None:
        values["bridge_auto_register"] = _parse_bool(name, raw)
    for key in ("smtp_host", "smtp_username", "smtp_from"):
        name, raw = get(key)
        if raw is not None and raw.strip():
            values[key] = raw.strip()
    name, raw = get("smtp_port")
    if raw is not None:
        values["smtp_port"] = _parse_int(name, raw, minimum=1, maximum=65535)
    name, raw = get("smtp_password")
    if raw is not None:
        values["smtp_password"] = Secret(raw)
    name, raw = get("smtp_starttls")
    if raw is not None:
        values["smtp_starttls"] = _parse_bool(name, raw)
    for key in ("bridge_tls_cert", "bridge_tls_key"):
        name, raw = get(key)
        if raw:
            values[key] = Path(raw)
    if bool(values.get("bridge_tls_cert")) != bool(values.get("bridge_tls_key")):
        raise SettingsError("FLOWBANK_BRIDGE_TLS_CERT and FLOWBANK_BRIDGE_TLS_KEY must be set together")
    return Settings(**values)


def describe(settings: Settings) -> dict[str, str]:
    """Every setting as display text, secrets redacted."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name == "pg_dsn":
            out[f.name] = settings.pg_dsn_display
        elif isinstance(value, MqttEndpoint):
            out["mqtt_url"] = value.url
        else:
            out[f.name] = str(value)
    return out
