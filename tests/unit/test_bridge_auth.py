"""Password hashing, the verified-credentials cache and the handshake decisions (a loopback
websockets server with an in-memory credential store: no services needed)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidStatus

from ingest.auth import Authenticator, VerifiedCache, charger_id_from_path
from warehouse.registry import (
    PasswordError,
    StoredCredentials,
    check_password_rules,
    generate_password,
    hash_password,
    verify_password,
)

FAST_SCRYPT = {"n": 2**10, "r": 8, "p": 1}


def test_hash_is_self_describing_and_salted() -> None:
    first, second = hash_password("correct horse 1", **FAST_SCRYPT), hash_password("correct horse 1", **FAST_SCRYPT)
    assert first != second  # per-password salt
    scheme, n, r, p, salt, digest = first.split("$")
    assert (scheme, n, r, p) == ("scrypt", "1024", "8", "1") and salt and digest
    assert verify_password("correct horse 1", first)
    assert not verify_password("correct horse 2", first)


@pytest.mark.parametrize("stored", ["", "plain", "scrypt$1$8$1$AA$AA", "bcrypt$1024$8$1$AAAA$AAAA",
                                    "scrypt$1024$8$1$!!$AAAA", "scrypt$4194304$8$1$AAAAAAAA$" + "A" * 43])
def test_malformed_hashes_never_verify(stored: str) -> None:
    assert not verify_password("anything", stored)


def test_password_rules_and_generation() -> None:
    generated = generate_password()
    assert len(generated) == 32 and generated.isalnum()
    check_password_rules(generated)
    for bad in ("short", "x" * 41, "tab\there-is-bad", "ünïcödé-passw0rd"):
        with pytest.raises(PasswordError):
            check_password_rules(bad)


def test_cache_needs_same_hash_and_password() -> None:
    cache = VerifiedCache(max_entries=2)
    cache.remember("A", "h1", "pw")
    assert cache.hit("A", "h1", "pw")
    assert not cache.hit("A", "h1", "other")
    assert not cache.hit("A", "h2", "pw")  # the password was changed in the registry
    cache.remember("B", "h", "pw")
    cache.remember("C", "h", "pw")
    assert not cache.hit("A", "h1", "pw")  # evicted: least recently used


@pytest.mark.parametrize(("path", "expected"), [
    ("/ocpp/CP-1", "CP-1"), ("/ocpp/CP%201", "CP 1"), ("/ocpp/CP-1?x=1", "CP-1"), ("/ocpp/", None),
    ("/other/CP-1", None), ("/ocpp/a%2Fb", None), ("/ocpp/a+b", None), ("/ocpp/" + "x" * 65, None),
    ("/ocpp/%20x", None),
])
def test_charger_id_from_path(path: str, expected: str | None) -> None:
    assert charger_id_from_path(path) == expected


class MemoryStore:
    def __init__(self, rows: dict[str, StoredCredentials]) -> None:
        self.rows = rows
        self.registered: list[tuple[str, str | None]] = []
        self.down = False

    async def fetch(self, charger_id: str) -> StoredCredentials | None:
        if self.down:
            raise OSError("registry down")
        return self.rows.get(charger_id)

    async def auto_register(self, charger_id: str, password_hash: str | None) -> None:
        self.registered.append((charger_id, password_hash))
        self.rows[charger_id] = StoredCredentials(password_hash, True)


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def _status(port: int, charger_id: str, headers: dict[str, str]) -> int:
    try:
        ws = await connect(f"ws://127.0.0.1:{port}/ocpp/{charger_id}", additional_headers=headers)
    except InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    return 101


def test_authenticator_decisions() -> None:
    verified: list[str] = []

    def counting_verify(password: str, stored: str) -> bool:
        verified.append(password)
        return verify_password(password, stored)

    store = MemoryStore({
        "CP-1": StoredCredentials(hash_password("secret-password-1", **FAST_SCRYPT), True),
        "CP-OFF": StoredCredentials(hash_password("secret-password-1", **FAST_SCRYPT), False),
        "CP-NOPW": StoredCredentials(None, True),
    })
    seen: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        seen.append(ws.username)

    async def scenario() -> None:
        auth = Authenticator(store, auto_register=False, verify=counting_verify)
        async with serve(handler, "127.0.0.1", 0, process_request=auth) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            ok = _basic("CP-1", "secret-password-1")
            assert await _status(port, "CP-1", ok) == 101
            assert await _status(port, "CP-1", ok) == 101
            assert verified == ["secret-password-1"]  # the second time came from the cache
            assert await _status(port, "CP-1", _basic("CP-1", "nope")) == 401
            assert await _status(port, "CP-1", {}) == 401
            assert await _status(port, "CP-1", _basic("CP-2", "secret-password-1")) == 403
            assert await _status(port, "CP-OFF", _basic("CP-OFF", "secret-password-1")) == 403
            assert await _status(port, "CP-NOPW", {}) == 401
            assert await _status(port, "CP-NEW", _basic("CP-NEW", "x")) == 401
            raw = base64.b64encode(b"CP-1:\xff\xfe binary").decode()
            assert await _status(port, "CP-1", {"Authorization": f"Basic {raw}"}) == 401
            store.down = True
            assert await _status(port, "CP-1", ok) == 503
        assert seen == ["CP-1", "CP-1"]

    asyncio.run(scenario())


def test_auto_register_stores_the_presented_password() -> None:
    store = MemoryStore({})

    async def handler(ws: ServerConnection) -> None:
        return None

    async def scenario() -> Any:
        auth = Authenticator(store, auto_register=True)
        async with serve(handler, "127.0.0.1", 0, process_request=auth) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            assert await _status(port, "CP-DEV", _basic("CP-DEV", "dev-password-123")) == 101
            assert await _status(port, "CP-DEV", _basic("CP-DEV", "another-one-1234")) == 401
            assert await _status(port, "CP-BARE", {}) == 101  # dev mode: no credentials at all

    asyncio.run(scenario())
    assert store.registered[0][0] == "CP-DEV" and verify_password("dev-password-123", str(store.registered[0][1]))
    assert store.registered[1] == ("CP-BARE", None)
