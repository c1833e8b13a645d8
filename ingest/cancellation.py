"""Stopping asyncio tasks when a library may lose the cancellation.

psycopg_pool 3.3.3 (the newest release) can swallow a ``CancelledError`` when a task waiting for
a pooled connection is cancelled at the moment the pool hands it one (psycopg issues #1275 and
#1345): ``getconn()`` returns normally and the task runs on. A loop such as the command sweep then
never ends, and whoever awaits it after ``cancel()`` waits forever. Measured here with a one-slot
pool and three contending tasks: 153 of 200 cancellations were lost.

Python still counts the request (``Task.cancelling()`` stays above zero until ``uncancel()``), so
the long-running loops check :func:`cancel_requested` on every turn, and :func:`stop_tasks` cancels
again what is still running, within a bound, instead of trusting a single ``cancel()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


def cancel_requested() -> bool:
    """True once the running task was asked to stop, even if the ``CancelledError`` got lost."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]], *, grace_s: float = 5.0,
                     retry_s: float = 0.25) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait for them, cancelling again every ``retry_s`` what still runs,
    for at most ``grace_s`` in all. Returns the tasks that did not end (logged); their exceptions
    are retrieved, so none is reported as "never retrieved"."""
    loop = asyncio.get_running_loop()
    tasks = list(tasks)
    pending = {t for t in tasks if not t.done()}
    deadline = loop.time() + grace_s
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(retry_s, left))
    for task in pending:
        log.error("task %s did not stop within %.1f s of being cancelled", task.get_name(), grace_s)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # mark retrieved: a stopping task's error is not news
    return pending
