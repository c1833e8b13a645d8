"""Tasks contending for a real psycopg pool stop when asked, although the pool can lose a
cancellation (psycopg issues #1275, #1345): the bridge's loops rely on ingest.cancellation."""

from __future__ import annotations

import asyncio
import random

import pytest
from psycopg_pool import AsyncConnectionPool

from ingest.cancellation import cancel_requested, stop_tasks

pytestmark = pytest.mark.integration


def test_contending_loops_all_stop(pg_dsn: str) -> None:
    async def scenario() -> int:
        pool = AsyncConnectionPool(pg_dsn, min_size=1, max_size=1, open=False, kwargs={"autocommit": True})
        await pool.open(wait=True, timeout=15)
        stuck = 0

        async def worker() -> None:  # the shape of the command sweep: a query per turn, errors logged
            while not cancel_requested():
                try:
                    async with pool.connection() as conn:
                        await conn.execute("select 1")
                except Exception:  # noqa: S110 - the loop under test survives query errors by design
                    pass
                await asyncio.sleep(0)

        try:
            rng = random.Random(7)
            for _ in range(60):
                tasks = [asyncio.create_task(worker()) for _ in range(3)]
                await asyncio.sleep(rng.random() * 0.005)
                stuck += len(await stop_tasks(tasks, grace_s=3.0))
            return stuck
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == 0
