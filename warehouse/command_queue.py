"""The shared command queue (``command_queue``) and charger presence (``charger_presence``).

Several bridge processes may serve one port; a charger is connected to exactly one of them. Every
bridge receives every command from MQTT and stores it with :meth:`CommandQueue.enqueue` (the
first insert wins; commands for chargers missing from the registry are not ours and are not
stored). Only the bridge holding the charger claims it (:meth:`CommandQueue.claim_next`, atomic,
oldest first), and a row is finished exactly once (:meth:`CommandQueue.finish` and the sweeps
update only rows with ``finished_at is null``), so each command gets exactly one result however
many bridges run, crash or race.

Times are passed in by the caller (the bridge's injected clock), never read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from psycopg_pool import AsyncConnectionPool

from control.contract import Command, CommandOutcome


@dataclass(frozen=True, slots=True)
class ClaimedCommand:
    command_id: str
    charger_id: str
    envelope: str  # the contract envelope, as stored


@dataclass(frozen=True, slots=True)
class ClosedCommand:
    """A command the sweep finished without the charger: it expired, or its bridge vanished."""

    command_id: str
    charger_id: str
    outcome: CommandOutcome
    detail: str


class Enqueued(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"  # another bridge stored it first, or the broker redelivered it
    UNKNOWN_CHARGER = "unknown_charger"


_ENQUEUE = """
with known as (select exists (select 1 from chargers where charger_id = %(charger)s) as ok),
stored as (
    insert into command_queue (command_id, charger_id, kind, payload, issued_at, expires_at)
    select %(id)s, %(charger)s, %(kind)s, %(payload)s::jsonb, %(issued)s, %(expires)s from known where ok
    on conflict (command_id) do nothing
    returning 1)
select (select ok from known), exists (select 1 from stored)
"""

_CLAIM = """
update command_queue set claimed_by = %(bridge)s, claimed_at = %(now)s
where claimed_by is null and command_id = (
    select command_id from command_queue
    where charger_id = %(charger)s and claimed_by is null and expires_at > %(now)s
    order by issued_at, seq
    limit 1
    for update skip locked)
returning command_id, charger_id, payload::text
"""

_SWEEP_EXPIRED = """
with due as (
    select command_id from command_queue
    where claimed_by is null and expires_at <= %(now)s
    order by expires_at
    limit %(limit)s
    for update skip locked)
update command_queue q
set claimed_by = %(bridge)s, claimed_at = %(now)s, finished_at = %(now)s,
    outcome = case when exists (select 1 from charger_presence p where p.charger_id = q.charger_id)
                   then %(expired)s else %(offline)s end
from due
where q.command_id = due.command_id and q.claimed_by is null
returning q.command_id, q.charger_id, q.outcome
"""

_SWEEP_ABANDONED = """
with lost as (
    select command_id from command_queue
    where claimed_by is not null and finished_at is null and claimed_at < %(cutoff)s
    limit %(limit)s
    for update skip locked)
update command_queue q
set finished_at = %(now)s, outcome = %(outcome)s, detail = %(detail)s
from lost
where q.command_id = lost.command_id and q.finished_at is null
returning q.command_id, q.charger_id
"""

ABANDONED_DETAIL = "the bridge that sent it stopped before the charger answered"


class CommandQueue:
    def __init__(self, pool: AsyncConnectionPool, bridge_id: str) -> None:
        self._pool = pool
        self._bridge_id = bridge_id

    async def enqueue(self, command: Command, envelope: str) -> Enqueued:
        """Store a command for a registered charger (the registry defines the deployment: on a
        shared broker, commands for chargers we do not know are someone else's)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(_ENQUEUE, {
                "id": command.command_id, "charger": command.charger_id, "kind": command.kind.value,
                "payload": envelope, "issued": command.issued_at, "expires": command.expires_at,
            })
            row = await cur.fetchone()
        if row is None or not row[0]:
            return Enqueued.UNKNOWN_CHARGER
        return Enqueued.NEW if row[1] else Enqueued.DUPLICATE

    async def claim_next(self, charger_id: str, now: datetime) -> ClaimedCommand | None:
        """Atomically take the oldest unexpired, unclaimed command of a charger."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(_CLAIM, {"bridge": self._bridge_id, "charger": charger_id, "now": now})
            row = await cur.fetchone()
        return None if row is None else ClaimedCommand(row[0], row[1], row[2])

    async def finish(self, command_id: str, outcome: CommandOutcome, status: str | None, detail: str | None,
                     now: datetime) -> bool:
        """Record the result; False when the command was already finished (publish nothing then)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "update command_queue set outcome = %s, status = %s, detail = %s, finished_at = %s"
                " where command_id = %s and finished_at is null",
                (outcome.value, status, detail, now, command_id),
            )
            return cur.rowcount == 1

    async def sweep_expired(self, now: datetime, limit: int = 200) -> list[ClosedCommand]:
        """Finish commands whose deadline passed before any bridge could send them."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(_SWEEP_EXPIRED, {
                "bridge": self._bridge_id, "now": now, "limit": limit,
                "expired": CommandOutcome.EXPIRED.value, "offline": CommandOutcome.OFFLINE.value,
            })
            rows = await cur.fetchall()
        closed = []
        for command_id, charger_id, outcome in rows:
            kind = CommandOutcome(outcome)
            detail = ("the charger was not connected before the command expired" if kind is CommandOutcome.OFFLINE
                      else "the command expired before it could be sent")
            closed.append(ClosedCommand(command_id, charger_id, kind, detail))
        return closed

    async def sweep_abandoned(self, cutoff: datetime, now: datetime, limit: int = 200) -> list[ClosedCommand]:
        """Finish commands claimed before ``cutoff`` and never finished: their bridge died."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(_SWEEP_ABANDONED, {
                "cutoff": cutoff, "now": now, "limit": limit,
                "outcome": CommandOutcome.TIMED_OUT.value, "detail": ABANDONED_DETAIL,
            })
            rows = await cur.fetchall()
        return [ClosedCommand(r[0], r[1], CommandOutcome.TIMED_OUT, ABANDONED_DETAIL) for r in rows]

    async def waiting_for(self, charger_ids: Sequence[str], now: datetime) -> list[str]:
        """Which of these chargers have claimable commands."""
        if not charger_ids:
            return []
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "select distinct charger_id from command_queue"
                " where claimed_by is null and expires_at > %s and charger_id = any(%s)",
                (now, list(charger_ids)),
            )
            rows = await cur.fetchall()
        return [row[0] for row in rows]

    # ----------------------------------------------------------------------- presence

    async def mark_connected(self, charger_id: str, now: datetime) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "insert into charger_presence (charger_id, bridge_id, connected_at) values (%s, %s, %s)"
                " on conflict (charger_id) do update"
                " set bridge_id = excluded.bridge_id, connected_at = excluded.connected_at",
                (charger_id, self._bridge_id, now),
            )

    async def mark_disconnected(self, charger_id: str, connected_at: datetime) -> None:
        """Forget this connection (not a newer one of the same charger, here or elsewhere)."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "delete from charger_presence where charger_id = %s and bridge_id = %s and connected_at = %s",
                (charger_id, self._bridge_id, connected_at),
            )

    async def forget_presence(self) -> None:
        """Drop every presence row of this bridge id (at start-up, and when stopping)."""
        async with self._pool.connection() as conn:
            await conn.execute("delete from charger_presence where bridge_id = %s", (self._bridge_id,))
