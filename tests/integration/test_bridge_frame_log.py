"""The bridge keeps the last raw OCPP frames of each charger in PostgreSQL (for the support timeline)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import psycopg
import pytest
from test_bridge_harness import FAST, bridge_settings, charger, register, running_bridge, unique

from control.settings import Settings

pytestmark = pytest.mark.integration


def _frames(dsn: str, charger_id: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("select direction, frame from ocpp_frames where charger_id = %s order by frame_id",
                            (charger_id,)).fetchall()
    return [(d, f) for d, f in rows]


def test_frames_in_and_out_are_kept_and_bounded(test_settings: Settings, pg_dsn: str) -> None:
    cid = unique("FRM")
    register(pg_dsn, cid)
    options = replace(FAST, frame_log_keep=4)

    async def scenario() -> None:
        async with running_bridge(bridge_settings(test_settings), options) as bridge, charger(bridge, cid) as cp:
            for _ in range(3):
                await cp.call("Heartbeat", {})
            deadline = time.monotonic() + 20
            while len(_frames(pg_dsn, cid)) < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)

    asyncio.run(scenario())
    frames = _frames(pg_dsn, cid)
    assert len(frames) == 4  # 3 calls and 3 answers, trimmed to the newest 4
    assert [d for d, _ in frames] == ["in", "out", "in", "out"]
    assert '"Heartbeat"' in frames[2][1] and "currentTime" in frames[3][1]


def test_no_frames_are_kept_when_switched_off(test_settings: Settings, pg_dsn: str) -> None:
    cid = unique("FRM")
    register(pg_dsn, cid)

    async def scenario() -> None:
        async with running_bridge(bridge_settings(test_settings), replace(FAST, frame_log_keep=0)) as bridge, \
                charger(bridge, cid) as cp:
            await cp.call("Heartbeat", {})

    asyncio.run(scenario())  # the bridge's stop flushes a frame log; with none, nothing is written
    assert _frames(pg_dsn, cid) == []
