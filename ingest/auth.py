"""Charger authentication: OCPP security profile 1 (HTTP Basic) over ws, or profile 2 over wss.

Password hashing lives in :mod:`warehouse.registry` (``scrypt$n$r$p$salt$hash`` strings).

The handshake decision, in order:

1. the path must be ``/ocpp/{charge_point_id}`` with a valid id, else 404;
2. Basic credentials whose user is not the path id: 403 (a charger may not speak for another);
3. unknown charger: 401, unless ``bridge_auto_register`` (a development setting) registers it;
4. disabled charger: 403;
5. missing or wrong password: 401 (logged with the charger id, never the password).

Verified credentials are remembered per process as a keyed digest next to the stored hash. The
registry row is still read on every connection, so a disabled charger or a changed password takes
effect at once; the cache only saves the ~80 ms scrypt run during reconnect storms.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http
import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Final, Protocol
from urllib.parse import unquote

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHeader
from websockets.headers import build_www_authenticate_basic, parse_authorization_basic
from websockets.http11 import Request, Response

from control.contract import MAX_ID_LENGTH
from warehouse.registry import StoredCredentials, hash_password, verify_password

log = logging.getLogger(__name__)

PATH_PREFIX: Final = "/ocpp/"
REALM: Final = "FlowBankOS OCPP"


# --------------------------------------------------------------------------- the handshake


class CredentialStore(Protocol):
    """Implemented by :class:`warehouse.registry.ChargerRegistry`."""

    async def fetch(self, charger_id: str) -> StoredCredentials | None: ...

    async def auto_register(self, charger_id: str, password_hash: str | None) -> None: ...


class VerifiedCache:
    """charger id -> (stored hash, keyed digest of the password that matched it)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._max = max_entries

    def _digest(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode(), hashlib.sha256).digest()

    def hit(self, charger_id: str, stored_hash: str, password: str) -> bool:
        entry = self._entries.get(charger_id)
        if entry is None or entry[0] != stored_hash:
            return False
        if not hmac.compare_digest(entry[1], self._digest(password)):
            return False
        self._entries.move_to_end(charger_id)
        return True

    def remember(self, charger_id: str, stored_hash: str, password: str) -> None:
        self._entries[charger_id] = (stored_hash, self._digest(password))
        self._entries.move_to_end(charger_id)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


def charger_id_from_path(path: str) -> str | None:
    """The charge point id of ``/ocpp/{id}`` (percent-decoded), or None."""
    raw = path.split("?", 1)[0]
    if not raw.startswith(PATH_PREFIX):
        return None
    candidate = unquote(raw[len(PATH_PREFIX):])
    if not candidate or len(candidate) > MAX_ID_LENGTH or candidate != candidate.strip():
        return None
    if not candidate.isprintable() or any(c in candidate for c in "/+#"):
        return None
    return candidate


def _reject(connection: ServerConnection, status: http.HTTPStatus, text: str, *,
            challenge: bool = False) -> Response:
    response = connection.respond(status, text + "\n")
    if challenge:
        response.headers["WWW-Authenticate"] = build_www_authenticate_basic(REALM)
    return response


def _basic(headers: Headers) -> tuple[str, str] | Exception | None:
    header = headers.get("Authorization")
    if header is None:
        return None
    try:
        return parse_authorization_basic(header)
    except (InvalidHeader, UnicodeDecodeError) as exc:  # websockets lets non-UTF-8 passwords through
        return exc


class Authenticator:
    """``process_request`` for websockets: decides the handshake; on success the charger id is
    left in ``connection.username`` (as websockets' own ``basic_auth`` does)."""

    def __init__(self, store: CredentialStore, *, auto_register: bool, max_parallel_hashes: int = 2,
                 cache: VerifiedCache | None = None,
                 verify: Callable[[str, str], bool] = verify_password) -> None:
        self._store = store
        self._auto_register = auto_register
        self._cache = cache or VerifiedCache()
        self._hashing = asyncio.Semaphore(max_parallel_hashes)  # scrypt uses 16 MiB and a core each
        self._verify = verify
        self._checks: set[asyncio.Task[bool]] = set()

    def __call__(self, connection: ServerConnection, request: Request) -> Awaitable[Response | None]:
        return self.process_request(connection, request)

    async def _verified(self, charger_id: str, password: str, stored: str) -> bool:
        if self._cache.hit(charger_id, stored, password):
            return True

        async def check() -> bool:
            async with self._hashing:
                ok = await asyncio.to_thread(self._verify, password, stored)
            if ok:
                self._cache.remember(charger_id, stored, password)
            return ok

        # Shielded: when a reconnect storm makes the handshake time out, the hash still finishes,
        # holds its slot until then, and lands in the cache, so the charger's retry is cheap.
        task = asyncio.create_task(check())
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)
        return await asyncio.shield(task)

    async def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        peer = connection.remote_address
        charger_id = charger_id_from_path(request.path)
        if charger_id is None:
            log.warning("handshake refused from %s: path is not /ocpp/{charge_point_id}", peer)
            return _reject(connection, http.HTTPStatus.NOT_FOUND, "expected /ocpp/{charge_point_id}")
        basic = _basic(request.headers)
        if isinstance(basic, Exception):
            log.warning("handshake refused for %s from %s: unreadable Authorization header", charger_id, peer)
            return _reject(connection, http.HTTPStatus.UNAUTHORIZED, "unsupported credentials",
                           challenge=True)
        if basic is not None and basic[0] != charger_id:
            log.warning("handshake refused for %s from %s: Basic user %r is not the charger id",
                        charger_id, peer, basic[0][:64])
            return _reject(connection, http.HTTPStatus.FORBIDDEN, "the user name must be the charge point id")
        try:
            credentials = await self._store.fetch(charger_id)
            if credentials is None and self._auto_register:
                password_hash = None
                if basic is not None:
                    async with self._hashing:
                        password_hash = await asyncio.to_thread(hash_password, basic[1])
                await self._store.auto_register(charger_id, password_hash)
                log.warning("auto-registered unknown charger %s from %s (bridge_auto_register is on)",
                            charger_id, peer)
                credentials = await self._store.fetch(charger_id)
        except Exception:  # the registry is down: say so, the charger will retry
            log.exception("handshake for %s: the charger registry is unavailable", charger_id)
            return _reject(connection, http.HTTPStatus.SERVICE_UNAVAILABLE,
                           "registry unavailable, retry later")
        if credentials is None:
            log.warning("handshake refused for unknown charger %s from %s", charger_id, peer)
            return _reject(connection, http.HTTPStatus.UNAUTHORIZED, "unknown charger", challenge=True)
        if not credentials.enabled:
            log.warning("handshake refused for disabled charger %s from %s", charger_id, peer)
            return _reject(connection, http.HTTPStatus.FORBIDDEN, "charger disabled")
        if credentials.password_hash is None:
            if not self._auto_register:
                log.warning("handshake refused for %s: no password is set for it", charger_id)
                return _reject(connection, http.HTTPStatus.UNAUTHORIZED, "no password set", challenge=True)
        elif basic is None:
            log.warning("handshake refused for %s from %s: no credentials", charger_id, peer)
            return _reject(connection, http.HTTPStatus.UNAUTHORIZED, "missing credentials", challenge=True)
        elif not await self._verified(charger_id, basic[1], credentials.password_hash):
            log.warning("handshake refused for %s from %s: wrong password", charger_id, peer)
            return _reject(connection, http.HTTPStatus.UNAUTHORIZED, "invalid credentials", challenge=True)
        connection.username = charger_id  # read back by the connection handler
        return None
