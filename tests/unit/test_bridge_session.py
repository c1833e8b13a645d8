"""One charger session with in-memory fakes: replies, events, dead letters, and command execution
(every outcome, and "publish only what we recorded")."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from control.contract import (
    ChargerInfo,
    Command,
    CommandKind,
    CommandOutcome,
    CommandResult,
    ConnectionEvent,
    ConnectionKind,
    DeadLetter,
    Event,
    MeterSample,
    OcppVersion,
    TransactionEvent,
    encode,
)
from ingest.csms import BridgeContext, ChargerSession, TransactionIds
from ingest.replies import AcceptAnyToken
from tests.fake_ws import CLOSED, FakeWs
from warehouse.command_queue import ClaimedCommand

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
class FakeQueue:
    def __init__(self, claims: Sequence[ClaimedCommand] = (), *, finish_ok: bool = True) -> None:
        self.claims = list(claims)
        self.finished: list[tuple[str, CommandOutcome, str | None]] = []
        self.finish_ok = finish_ok

    async def claim_next(self, charger_id: str, now: datetime) -> ClaimedCommand | None:
        return self.claims.pop(0) if self.claims else None

    async def finish(self, command_id: str, outcome: CommandOutcome, status: str | None, detail: str | None,
                     now: datetime) -> bool:
        self.finished.append((command_id, outcome, status))
        return self.finish_ok


class Harness:
    def __init__(self, version: OcppVersion = OcppVersion.V16, *, claims: Sequence[ClaimedCommand] = (),
                 finish_ok: bool = True, allocate: Callable[[int], Awaitable[Sequence[int]]] | None = None) -> None:
        self.published: list[Event] = []
        self.spawned: list[str] = []
        self.allocations = 0
        self.queue = FakeQueue(claims, finish_ok=finish_ok)
        self.ws = FakeWs()

        async def default_allocate(count: int) -> Sequence[int]:
            self.allocations += 1
            start = 100 * self.allocations
            return list(range(start, start + count))

        def spawn(work: Awaitable[None], what: str) -> None:
            self.spawned.append(what)
            work.close()  # type: ignore[attr-defined]

        class Registry:
            async def record_boot(self, *args: Any, **kwargs: Any) -> None:
                return None

        ctx = BridgeContext(
            bridge_id="bridge-x", publisher=self, registry=Registry(), queue=self.queue,
            tx_ids=TransactionIds(allocate or default_allocate, block=2), clock=lambda: T0,
            new_message_id=iter(f"out-{i}" for i in range(100)).__next__, heartbeat_interval_s=90,
            response_timeout_s=0.2, authorization=AcceptAnyToken(), spawn=spawn,
        )
        self.session = ChargerSession(ctx, self.ws, "CP-1", version)  # type: ignore[arg-type]

    def publish(self, event: Event) -> None:
        self.published.append(event)

    def of(self, cls: type[Any]) -> list[Any]:
        return [e for e in self.published if isinstance(e, cls)]

    async def call(self, message_id: str, action: str, payload: dict[str, Any]) -> list[Any]:
        await self.session._on_frame(orjson.dumps([2, message_id, action, payload]))
        return self.ws.sent[-1]


def test_replies_and_events() -> None:
    async def scenario() -> None:
        h = Harness()
        boot = await h.call("1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        assert boot == [3, "1", {"status": "Accepted", "currentTime": "2026-11-20T10:00:00.000Z", "interval": 90}]
        assert h.spawned == ["record the boot of CP-1"]
        info, booted = h.of(ChargerInfo)[0], h.of(ConnectionEvent)[0]
        assert info.vendor == "V" and booted.kind is ConnectionKind.BOOTED
        assert (booted.bridge_id, booted.heartbeat_interval_s) == ("bridge-x", 90)
        ids = [(await h.call(f"s{i}", "StartTransaction", {"connectorId": i, "idTag": "T", "meterStart": 0,
                                                           "timestamp": "2026-11-20T10:00:00Z"}))[2]["transactionId"]
               for i in (1, 2, 3)]
        assert ids == [100, 101, 200] and h.allocations == 2  # blocks of two
        assert h.session.transactions == {1: "100", 2: "101", 3: "200"}
        await h.call("st", "StopTransaction", {"transactionId": 101, "meterStop": 5,
                                               "timestamp": "2026-11-20T10:00:00Z"})
        assert h.session.transactions == {1: "100", 3: "200"}
        meter = await h.call("m", "MeterValues", {"connectorId": 1, "meterValue": [{
            "timestamp": "2026-11-20T10:00:00Z", "sampledValue": [{"value": "12.5", "unit": "kWh"}]}]})
        assert meter == [3, "m", {}]
        assert h.of(MeterSample)[0].energy_wh == 12_500
        assert not h.of(DeadLetter)

    asyncio.run(scenario())


def test_a_repeated_start_transaction_keeps_its_transaction_id() -> None:
    """A duplicated StartTransaction (same message id, or sent again with a new one because the
    answer got lost) is one transaction: a second id would leave an empty phantom session behind
    and close the real one early."""
    async def scenario() -> None:
        h = Harness()
        start = {"connectorId": 1, "idTag": "T", "meterStart": 1_000, "timestamp": "2026-11-20T10:00:00Z"}
        first = (await h.call("a", "StartTransaction", start))[2]["transactionId"]
        same_id = (await h.call("a", "StartTransaction", start))[2]["transactionId"]
        new_id = (await h.call("b", "StartTransaction", start))[2]["transactionId"]
        later = (await h.call("c", "StartTransaction", {**start, "timestamp": "2026-11-20T11:00:00Z"}))[2]
        assert first == same_id == new_id != later["transactionId"]
        assert {e.transaction_id for e in h.of(TransactionEvent)} == {str(first), str(later["transactionId"])}

    asyncio.run(scenario())


def test_unusable_payloads_still_get_answered() -> None:
    async def scenario() -> None:
        h = Harness(OcppVersion.V201)
        ended = await h.call("e", "TransactionEvent", {
            "eventType": "Ended", "timestamp": "2026-11-20T10:00:00Z", "triggerReason": "EVDeparted", "seqNo": 3,
            "transactionInfo": {"transactionId": ""}})
        assert ended == [3, "e", {}]  # schema-valid, so answered; but no event can be made of it
        letter = h.of(DeadLetter)[0]
        assert "transactionId" in letter.reason and letter.charger_id == "CP-1" and '"e"' in letter.raw

    asyncio.run(scenario())


def test_internal_failure_is_a_call_error() -> None:
    async def broken(count: int) -> Sequence[int]:
        raise OSError("PG is down")

    async def scenario() -> None:
        h = Harness(allocate=broken)
        reply = await h.call("s", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0,
                                                      "timestamp": "2026-11-20T10:00:00Z"})
        assert reply[:3] == [4, "s", "InternalError"]
        assert "PG is down" in h.of(DeadLetter)[0].reason

    asyncio.run(scenario())


def _claimed(kind: CommandKind, *, expires_in: float = 60.0, connector_id: int | None = 1,
             **params: Any) -> ClaimedCommand:
    command = Command(f"c-{kind.value}", "CP-1", kind, T0 - timedelta(seconds=1),
                      T0 + timedelta(seconds=expires_in), connector_id=connector_id, params=params)
    return ClaimedCommand(command.command_id, "CP-1", encode(command).decode())


def _answer(h: Harness, reply: Callable[[list[Any]], list[Any] | None]) -> None:
    def on_call(frame: list[Any]) -> None:
        answer = reply(frame)
        if answer is not None:
            asyncio.get_running_loop().call_soon(
                lambda: asyncio.ensure_future(h.session._on_frame(orjson.dumps(answer))))

    h.ws.on_call = on_call


async def _run_until_finished(h: Harness, expected: int) -> None:
    task = asyncio.create_task(h.session.run())
    for _ in range(200):
        if len(h.queue.finished) >= expected:
            break
        await asyncio.sleep(0.01)
    h.ws.inbox.put_nowait(CLOSED)
    await asyncio.wait_for(task, 5)


def test_command_outcomes() -> None:
    async def scenario() -> None:
        h = Harness(claims=[
            _claimed(CommandKind.RESET),  # Accepted
            _claimed(CommandKind.UNLOCK),  # CALLERROR
            _claimed(CommandKind.TRIGGER, message="MeterValues"),  # no answer: timeout
            _claimed(CommandKind.CHANGE_AVAILABILITY, expires_in=-0.5, available=True),  # expired on claim
            _claimed(CommandKind.STOP, connector_id=5),  # cannot be built
            _claimed(CommandKind.CANCEL_RESERVATION, reservation_id=3),  # answer breaks the schema
        ])

        def reply(frame: list[Any]) -> list[Any] | None:
            action = frame[2]
            if action == "Reset":
                return [3, frame[1], {"status": "Accepted"}]
            if action == "UnlockConnector":
                return [4, frame[1], "NotSupported", "no lock here", {}]
            if action == "CancelReservation":
                return [3, frame[1], {"status": "Maybe"}]
            return None

        _answer(h, reply)
        await _run_until_finished(h, 6)
        outcomes = [(cid, outcome, status) for cid, outcome, status in h.queue.finished]
        assert outcomes == [
            ("c-reset", CommandOutcome.ACCEPTED, "Accepted"),
            ("c-unlock", CommandOutcome.FAILED, "NotSupported"),
            ("c-trigger", CommandOutcome.TIMED_OUT, None),
            ("c-change_availability", CommandOutcome.EXPIRED, None),
            ("c-stop", CommandOutcome.FAILED, None),
            ("c-cancel_reservation", CommandOutcome.FAILED, None),
        ]
        results = h.of(CommandResult)
        assert [r.command_id for r in results] == [o[0] for o in outcomes]
        assert [f[2] for f in h.ws.sent if f[0] == 2] == ["Reset", "UnlockConnector", "TriggerMessage",
                                                          "CancelReservation"]
        assert any("breaks the schema" in d.reason for d in h.of(DeadLetter))

    asyncio.run(scenario())


def test_late_answers_are_dead_lettered_and_lost_races_publish_nothing() -> None:
    async def scenario() -> None:
        h = Harness(claims=[_claimed(CommandKind.RESET)], finish_ok=False)
        sent_calls: list[list[Any]] = []
        _answer(h, lambda frame: sent_calls.append(frame) or None)  # type: ignore[func-returns-value]
        await _run_until_finished(h, 1)
        assert h.queue.finished[0][1] is CommandOutcome.TIMED_OUT
        assert not h.of(CommandResult)  # someone else had finished it: we publish nothing
        await h.session._on_frame(orjson.dumps([3, sent_calls[0][1], {"status": "Accepted"}]))
        assert "no call of ours" in h.of(DeadLetter)[-1].reason

    asyncio.run(scenario())


def test_connection_lost_mid_call() -> None:
    async def scenario() -> None:
        h = Harness(claims=[_claimed(CommandKind.RESET)])
        _answer(h, lambda frame: h.ws.inbox.put_nowait(CLOSED))
        await _run_until_finished(h, 1)
        assert h.queue.finished == [("c-reset", CommandOutcome.TIMED_OUT, None)]
        result = h.of(CommandResult)[0]
        assert "connection closed" in (result.detail or "")
        kinds = [e.kind for e in h.of(ConnectionEvent)]
        assert kinds == [ConnectionKind.CONNECTED, ConnectionKind.DISCONNECTED]
        assert h.of(ConnectionEvent)[-1].reason == "close code 1000: bye"

    asyncio.run(scenario())
