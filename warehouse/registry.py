"""The charger registry (table ``chargers``), charger passwords and OCPP 1.6 transaction ids.

Synchronous functions serve the ``flowbank chargers`` CLI and ``flowbank run``;
:class:`ChargerRegistry` is the asyncio face the bridge uses (credentials at the handshake,
boots, transaction ids).

Passwords are stored as self-describing scrypt strings ``scrypt$n$r$p$salt$hash`` (salt and
hash in unpadded base64), so the cost can be raised later without breaking stored hashes.

Errors::

    RegistryError               a registry operation failed (the message says which and why)
    ├── ChargerExistsError      add: the id is taken
    └── ChargerNotFoundError    remove / enable: no such charger
    PasswordError               a password that breaks the rules (ValueError)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import psycopg
from psycopg_pool import AsyncConnectionPool

from control.contract import OcppVersion

log = logging.getLogger(__name__)

SCRYPT_N: Final = 2**14  # ~80 ms and 16 MiB per hash on the reference machine
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
PASSWORD_MIN: Final = 8
PASSWORD_MAX: Final = 40  # OCPP 2.0.1 BasicAuthPassword; the 1.6 security whitepaper says 16..40
OCPP_PASSWORD_MIN: Final = 16
_PASSWORD_ALPHABET: Final = string.ascii_letters + string.digits


class RegistryError(RuntimeError):
    """A registry operation failed."""


class ChargerExistsError(RegistryError):
    pass


class ChargerNotFoundError(RegistryError):
    pass


class PasswordError(ValueError):
    """A password that cannot be used; the message says why."""


# --------------------------------------------------------------------------- passwords


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def check_password_rules(password: str) -> None:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise PasswordError(f"a charger password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long")
    if not password.isascii() or not password.isprintable():
        raise PasswordError("a charger password must be printable ASCII")


def generate_password(length: int = 32) -> str:
    """A random password within the OCPP limits (letters and digits: easy to type into a
    charger's web UI; 32 of them carry ~190 bits)."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=2**26)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches the stored hash; False for a mismatch or a malformed hash."""
    try:
        scheme, n_text, r_text, p_text, salt_text, digest_text = stored.split("$")
        n, r, p = int(n_text), int(r_text), int(p_text)
        salt, expected = _unb64(salt_text), _unb64(digest_text)
    except ValueError:
        log.error("a stored password hash is malformed; the charger cannot log in until it is reset")
        return False
    # Bounds keep a tampered row from making us allocate gigabytes.
    if scheme != "scrypt" or not (2 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 16):
        log.error("a stored password hash uses unsupported scrypt parameters")
        return False
    if not 16 <= len(expected) <= 64:
        log.error("a stored password hash has an unsupported length")
        return False
    actual = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=2**27)
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True, slots=True)
class ChargerRecord:
    charger_id: str
    site_id: str | None
    display_name: str | None
    enabled: bool
    auto_registered: bool
    has_password: bool
    vendor: str | None
    model: str | None
    firmware_version: str | None
    ocpp_version: str | None
    last_boot_at: datetime | None


@dataclass(frozen=True, slots=True)
class StoredCredentials:
    password_hash: str | None
    enabled: bool


# --------------------------------------------------------------------------- CLI (sync)


def add_charger(conn: psycopg.Connection[tuple[object, ...]], charger_id: str, *, password_hash: str,
                site_id: str | None = None, display_name: str | None = None) -> None:
    try:
        with conn.transaction():
            cur = conn.execute(
                "insert into chargers (charger_id, password_hash, site_id, display_name)"
                " values (%s, %s, %s, %s) on conflict (charger_id) do nothing",
                (charger_id, password_hash, site_id, display_name),
            )
    except psycopg.errors.CheckViolation:
        raise RegistryError(f"{charger_id!r} is not a valid charger id (no '/', '+' or '#')") from None
    if cur.rowcount == 0:
        raise ChargerExistsError(f"charger {charger_id} already exists")


def list_chargers(conn: psycopg.Connection[tuple[object, ...]]) -> list[ChargerRecord]:
    rows = conn.execute(
        "select charger_id, site_id, display_name, enabled, auto_registered, password_hash is not null,"
        " vendor, model, firmware_version, ocpp_version, last_boot_at from chargers order by charger_id"
    ).fetchall()
    return [ChargerRecord(*row) for row in rows]  # type: ignore[arg-type]


def remove_charger(conn: psycopg.Connection[tuple[object, ...]], charger_id: str) -> None:
    with conn.transaction():
        cur = conn.execute("delete from chargers where charger_id = %s", (charger_id,))
    if cur.rowcount == 0:
        raise ChargerNotFoundError(f"charger {charger_id} does not exist")


def set_enabled(conn: psycopg.Connection[tuple[object, ...]], charger_id: str, enabled: bool) -> None:
    with conn.transaction():
        cur = conn.execute(
            "update chargers set enabled = %s, updated_at = now() where charger_id = %s",
            (enabled, charger_id),
        )
    if cur.rowcount == 0:
        raise ChargerNotFoundError(f"charger {charger_id} does not exist")


def ensure_demo_chargers(dsn: str, charger_ids: Iterable[str], password: str) -> None:
    """Register (or re-enable and re-key) the simulated chargers of ``flowbank run``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for charger_id in charger_ids:
            row = conn.execute(
                "select password_hash from chargers where charger_id = %s", (charger_id,)
            ).fetchone()
            if row is None:
                conn.execute(
                    "insert into chargers (charger_id, password_hash, site_id, display_name)"
                    " values (%s, %s, 'demo', %s) on conflict (charger_id) do nothing",
                    (charger_id, hash_password(password), f"simulated {charger_id}"),
                )
                continue
            if row[0] is None or not verify_password(password, str(row[0])):
                set_password(conn, charger_id, hash_password(password))
            conn.execute("update chargers set enabled = true where charger_id = %s and not enabled",
                         (charger_id,))


def set_password(conn: psycopg.Connection[tuple[object, ...]], charger_id: str, password_hash: str) -> None:
    with conn.transaction():
        cur = conn.execute(
            "update chargers set password_hash = %s, updated_at = now() where charger_id = %s",
            (password_hash, charger_id),
        )
    if cur.rowcount == 0:
        raise ChargerNotFoundError(f"charger {charger_id} does not exist")


# --------------------------------------------------------------------------- bridge (async)


class ChargerRegistry:
    """What the bridge reads and writes in the registry, over a shared async pool."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def fetch(self, charger_id: str) -> StoredCredentials | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "select password_hash, enabled from chargers where charger_id = %s", (charger_id,)
            )
            row = await cur.fetchone()
        return None if row is None else StoredCredentials(row[0], row[1])

    async def auto_register(self, charger_id: str, password_hash: str | None) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "insert into chargers (charger_id, password_hash, auto_registered) values (%s, %s, true)"
                " on conflict (charger_id) do nothing",
                (charger_id, password_hash),
            )

    async def record_boot(self, charger_id: str, *, vendor: str, model: str, serial_number: str | None,
                          firmware_version: str | None, ocpp_version: OcppVersion, heartbeat_interval_s: int,
                          boot_at: datetime) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "update chargers set vendor = %s, model = %s, serial_number = %s, firmware_version = %s,"
                " ocpp_version = %s, heartbeat_interval_s = %s, last_boot_at = %s, updated_at = now()"
                " where charger_id = %s",
                (vendor, model, serial_number, firmware_version, ocpp_version.value, heartbeat_interval_s,
                 boot_at, charger_id),
            )

    async def allocate_transaction_ids(self, count: int) -> Sequence[int]:
        """``count`` fresh OCPP 1.6 transaction ids. A sequence never hands out a value twice, even
        across restarts and processes; ids allocated but unused are simply skipped."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "select nextval('ocpp16_transaction_id_seq') from generate_series(1, %s)", (count,)
            )
            rows = await cur.fetchall()
        return [int(row[0]) for row in rows]
