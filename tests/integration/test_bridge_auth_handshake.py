"""Security profile 1 at the handshake: who gets in, who gets 401/403, and auto-registration."""

from __future__ import annotations

import asyncio
import logging
import ssl
import subprocess
from pathlib import Path

import psycopg
import pytest
from test_bridge_harness import (
    PASSWORD,
    basic,
    bridge_settings,
    charger,
    handshake_status,
    register,
    running_bridge,
    unique,
)
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage

from control.settings import Settings
from warehouse.registry import verify_password

pytestmark = pytest.mark.integration


def test_handshake_decisions(test_settings: Settings, pg_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    good, disabled, unknown = unique("AU"), unique("AUD"), unique("AUX")
    register(pg_dsn, good)
    register(pg_dsn, disabled, enabled=False)
    caplog.set_level(logging.WARNING, logger="ingest.auth")

    async def scenario() -> None:
        async with running_bridge(bridge_settings(test_settings)) as bridge:
            assert await handshake_status(bridge, f"/ocpp/{good}", basic(good, PASSWORD)) == 101
            assert await handshake_status(bridge, f"/ocpp/{good}", basic(good, PASSWORD)) == 101  # cached
            assert await handshake_status(bridge, f"/ocpp/{good}", basic(good, "wrong-password-123")) == 401
            assert await handshake_status(bridge, f"/ocpp/{good}", {}) == 401
            assert await handshake_status(bridge, f"/ocpp/{good}", {"Authorization": "Bearer abc"}) == 401
            assert await handshake_status(bridge, f"/ocpp/{good}", basic("someone-else", PASSWORD)) == 403
            assert await handshake_status(bridge, f"/ocpp/{unknown}", basic(unknown, PASSWORD)) == 401
            assert await handshake_status(bridge, f"/ocpp/{disabled}", basic(disabled, PASSWORD)) == 403
            assert await handshake_status(bridge, "/ocpp/", basic("", PASSWORD)) == 404
            assert await handshake_status(bridge, "/ocpp/a%2Fb", basic("a/b", PASSWORD)) == 404
            # Disabling takes effect at once, cache or not.
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                conn.execute("update chargers set enabled = false where charger_id = %s", (good,))
            assert await handshake_status(bridge, f"/ocpp/{good}", basic(good, PASSWORD)) == 403

    asyncio.run(scenario())
    assert "wrong password" in caplog.text and good in caplog.text
    assert PASSWORD not in caplog.text and "wrong-password-123" not in caplog.text


def test_auto_register_is_opt_in(test_settings: Settings, pg_dsn: str) -> None:
    newcomer = unique("AUTO")

    async def scenario() -> None:
        async with running_bridge(bridge_settings(test_settings, bridge_auto_register=True)) as bridge:
            async with charger(bridge, newcomer, password="first-use-password-1") as cp:
                assert (await cp.call("Heartbeat", {}))[0] == 3
            # Trust on first use: the password it came with is now its password.
            assert await handshake_status(bridge, f"/ocpp/{newcomer}", basic(newcomer, "another-password-12")) == 401

    asyncio.run(scenario())
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("select auto_registered, enabled, password_hash from chargers where charger_id = %s",
                           (newcomer,)).fetchone()
    assert row is not None and row[0] is True and row[1] is True
    assert verify_password("first-use-password-1", row[2])


def test_security_profile_2_tls(test_settings: Settings, pg_dsn: str, tmp_path: Path) -> None:
    cid = unique("TLS")
    register(pg_dsn, cid)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    client_tls = ssl.create_default_context(cafile=str(cert))

    async def scenario() -> None:
        settings = bridge_settings(test_settings, bridge_tls_cert=cert, bridge_tls_key=key)
        async with running_bridge(settings) as bridge:
            ws = await connect(f"wss://127.0.0.1:{bridge.port}/ocpp/{cid}", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                               additional_headers=basic(cid, PASSWORD), ssl=client_tls)
            await ws.send('[2,"1","Heartbeat",{}]')
            assert (await asyncio.wait_for(ws.recv(decode=True), 5)).startswith('[3,"1"')
            await ws.close()
            with pytest.raises(InvalidMessage):  # plain ws is not served
                plain = await connect(f"ws://127.0.0.1:{bridge.port}/ocpp/{cid}", open_timeout=3,
                                      additional_headers=basic(cid, PASSWORD))
                await plain.close()

    asyncio.run(scenario())
