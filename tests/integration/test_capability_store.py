"""Charger capabilities and charge-point-wide profile writes in PostgreSQL (migration 0017): the
bridge's async store and the pages' read, shared by every bridge process."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from test_bridge_harness import register, unique

from warehouse.capability_store import (
    CapabilityStore,
    ChargerCapabilities,
    MaxProfileWrite,
    charger_capabilities,
    last_max_profile_write,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def test_saved_loaded_and_read_by_every_bridge(pg_dsn: str) -> None:
    cid = unique("CAPS")
    register(pg_dsn, cid)
    first = ChargerCapabilities(cid, "1.6", T0, True, rate_units=("W",), max_stack_level=3, max_periods=24,
                                max_profiles=16, phases=1, connectors=2, smart_charging=True, firmware_version="1.0",
                                notes=("NumberOfConnectors: not given; unknown",),
                                raw={"configurationKey": {"ChargeProfileMaxStackLevel": "3"}, "unknownKey": []})
    newer = ChargerCapabilities(cid, "1.6", T0 + timedelta(days=1), False, firmware_version="1.1",
                                notes=("no answer to GetConfiguration within 10 s; safe defaults used for everything",),
                                raw={"error": "no answer to GetConfiguration within 10 s"})

    async def scenario() -> None:
        async with AsyncConnectionPool(pg_dsn, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
            bridge_a, bridge_b = CapabilityStore(pool, "bridge-a"), CapabilityStore(pool, "bridge-b")
            assert await bridge_a.load(cid) == (None, None)
            assert await bridge_a.load(unique("NOBODY")) == (None, None)
            await bridge_a.save(first)
            assert await bridge_b.load(cid) == (first, None)
            await bridge_b.save(newer)
            await bridge_a.save(first)  # an older answer arriving late loses
            write = MaxProfileWrite(T0, 32.0, "A", "cmd-1")
            await bridge_a.record_max_profile(cid, write)
            await bridge_a.record_max_profile(cid, MaxProfileWrite(T0 - timedelta(hours=1), 40.0, "A", "cmd-0"))
            assert await bridge_b.load(cid) == (newer, write)
            cleared = MaxProfileWrite(T0 + timedelta(hours=1), None, None, "cmd-2")
            await bridge_b.record_max_profile(cid, cleared)
            assert (await bridge_a.load(cid))[1] == cleared

    asyncio.run(scenario())
    with psycopg.connect(pg_dsn) as conn:
        assert charger_capabilities(conn, cid) == newer
        assert last_max_profile_write(conn, cid) == MaxProfileWrite(T0 + timedelta(hours=1), None, None, "cmd-2")
        assert charger_capabilities(conn, unique("NOBODY")) is None
        assert conn.execute("select bridge_id from charger_capabilities where charger_id = %s",
                            (cid,)).fetchone() == ("bridge-b",)
        conn.execute("delete from chargers where charger_id = %s", (cid,))
        assert charger_capabilities(conn, cid) is None and last_max_profile_write(conn, cid) is None
