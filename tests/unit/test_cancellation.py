"""Stopping tasks whose cancellation a library lost (ingest.cancellation)."""

from __future__ import annotations

import asyncio

from ingest.cancellation import cancel_requested, stop_tasks


async def _swallows(times: int, ran: list[int]) -> None:
    """Loses the first ``times`` cancellations, as psycopg_pool's getconn() can."""
    lost = 0
    while True:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if lost == times:
                raise
            lost += 1
        ran.append(lost)


def test_a_lost_cancellation_is_sent_again() -> None:
    async def scenario() -> tuple[set[asyncio.Task[None]], bool, list[int]]:
        ran: list[int] = []
        task = asyncio.create_task(_swallows(2, ran))
        await asyncio.sleep(0.03)
        left = await stop_tasks([task], grace_s=2.0, retry_s=0.05)
        return left, task.cancelled(), ran

    left, cancelled, ran = asyncio.run(scenario())
    assert left == set() and cancelled
    assert max(ran) == 2  # it did run on after each lost cancellation


def test_a_task_that_never_stops_is_returned_after_the_grace() -> None:
    async def stubborn(release: asyncio.Event) -> None:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if release.is_set():
                    raise

    async def scenario() -> tuple[int, bool]:
        release = asyncio.Event()
        task = asyncio.create_task(stubborn(release), name="stubborn")
        await asyncio.sleep(0.02)  # inside its loop
        left = await stop_tasks([task], grace_s=0.2, retry_s=0.05)
        outcome = len(left), task.done()
        release.set()  # now let it go, so the loop can close
        await stop_tasks([task])
        return outcome

    assert asyncio.run(scenario()) == (1, False)


def test_the_request_outlives_a_lost_cancellation() -> None:
    async def loop(turns: list[int]) -> None:
        while not cancel_requested():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                pass  # lost, as in the pool
            turns.append(1)

    async def scenario() -> tuple[bool, int]:
        turns: list[int] = []
        task = asyncio.create_task(loop(turns))
        await asyncio.sleep(0.03)
        task.cancel()
        await asyncio.wait_for(task, 1.0)  # ends by itself, once, without a second cancel()
        return task.cancelled(), len(turns)

    cancelled, turns = asyncio.run(scenario())
    assert not cancelled and turns >= 1


def test_finished_and_failed_tasks_are_fine() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    async def scenario() -> set[asyncio.Task[None]]:
        tasks = [asyncio.create_task(fails()), asyncio.create_task(asyncio.sleep(0))]
        await asyncio.sleep(0.01)
        return await stop_tasks(tasks)

    assert asyncio.run(scenario()) == set()
