"""The bridge's bounded per-charger log of raw OCPP frames, for the support console's timeline.

Every frame in and out of a charger's socket is handed to :meth:`FrameLog.record`, which only
appends to an in-memory queue (the hot path never waits on PostgreSQL). A background task writes
the queue in batches to ``ocpp_frames`` (warehouse/support_store.py) and trims each charger it
wrote to its newest ``keep`` frames, so several bridge processes share one bounded log. When
PostgreSQL is slow or down the queue is capped (``max_pending``): the oldest unwritten frames are
dropped and counted, since this is a troubleshooting aid, not a record of truth (the events are
on MQTT and the dead letters have their raw frames).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from datetime import datetime
from typing import Final

import psycopg
from psycopg_pool import AsyncConnectionPool

from ingest.cancellation import cancel_requested, stop_tasks
from warehouse.support_store import FrameRow, record_frames_async

log = logging.getLogger(__name__)

MAX_FRAME_CHARS: Final = 8_000


class FrameLog:
    def __init__(self, pool: AsyncConnectionPool, *, bridge_id: str, keep: int = 200, max_pending: int = 20_000,
                 flush_interval_s: float = 1.0, batch_size: int = 2_000) -> None:
        if keep < 1:
            raise ValueError("keep at least one frame per charger (or do not create a FrameLog)")
        self._pool, self._bridge_id, self.keep = pool, bridge_id, keep
        self._pending: deque[FrameRow] = deque()
        self._max_pending, self._interval, self._batch = max_pending, flush_interval_s, batch_size
        self.dropped = 0
        self.written = 0
        self._task: asyncio.Task[None] | None = None

    def record(self, charger_id: str, ts: datetime, direction: str, raw: bytes | str) -> None:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if len(text) > MAX_FRAME_CHARS:
            text = text[:MAX_FRAME_CHARS] + f"… ({len(text)} characters)"
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append((charger_id, ts, direction, text))

    async def flush(self) -> int:
        """Write what is queued (in batches); frames that could not be written are dropped and counted."""
        done = 0
        while self._pending:
            batch = [self._pending.popleft() for _ in range(min(self._batch, len(self._pending)))]
            try:
                async with self._pool.connection() as conn:
                    await record_frames_async(conn, batch, bridge_id=self._bridge_id, keep=self.keep)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                self.dropped += len(batch)
                log.warning("frame log: %d frames not stored: %s", len(batch), exc)
                return done
            done += len(batch)
        self.written += done
        return done

    async def _run(self) -> None:
        while not cancel_requested():
            await asyncio.sleep(self._interval)
            await self.flush()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="frame-log")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the loop and write what is left (within ``timeout_s``)."""
        if self._task is not None:
            await stop_tasks([self._task], grace_s=timeout_s)
            self._task = None
        try:
            async with asyncio.timeout(timeout_s):
                await self.flush()
        except TimeoutError:
            log.warning("frame log: the last %d frames were not stored in time", len(self._pending))
