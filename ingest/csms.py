"""One charger's connection: inbound CALLs on the hot path, outbound commands one at a time.

Inbound CALLs never touch the ``ocpp`` library: the frame is parsed and schema-checked by
:mod:`ingest.validation`, answered from the raw camelCase payload, normalized into contract
events and published (the publisher never blocks). Events are queued *before* the CALLRESULT
goes out, so a charger that hangs up right after sending loses nothing it was told we have.

Outbound CALLs (commands) are written here too, in ~40 lines, rather than borrowed from the
``ocpp`` library's ``ChargePoint``: its ``call()`` re-validates with jsonschema in a thread,
converts keys with regexes that mangle some names (``associated`` -> ``asSoCiated``) and raises
on CALLERROR codes it does not know. One command task per connection sends at most one CALL at
a time (OCPP-J) and takes its commands from the shared PG queue, so the order holds across
processes.

Capabilities (rate unit, stack levels, phases, periods) are asked once per boot by the same
command task, ahead of the next command, and kept on the session for shaping every
SetChargingProfile without a round trip of its own (:mod:`ingest.capability_session`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from control.contract import (
    Command,
    CommandOutcome,
    CommandResult,
    ConnectionEvent,
    ConnectionKind,
    ContractError,
    DeadLetter,
    Event,
    OcppVersion,
    decode,
)
from ingest import replies
from ingest.capability_session import CapabilityKeeper, CapabilityPolicy, SessionCapabilities
from ingest.commands import ChargerState, CommandBuildError, Interpretation, build_call, interpret
from ingest.normalize import NormalizeError, normalize_call
from ingest.validation import (
    MAX_FRAME_BYTES,
    CallErrorFrame,
    CallFrame,
    CallResultFrame,
    FrameError,
    Problem,
    call_error,
    check_payload,
    encode_call,
    encode_result,
    parse_frame,
    validate_call,
)
from warehouse.command_queue import ClaimedCommand

log = logging.getLogger(__name__)

MAX_DEAD_LETTER_RAW: Final = 65_536
_LOG_FIRST_PROBLEMS: Final = 10
_FINISH_ATTEMPTS: Final = 30


class Publisher(Protocol):
    def publish(self, event: Event) -> None: ...


class Registry(Protocol):
    async def record_boot(self, charger_id: str, *, vendor: str, model: str, serial_number: str | None,
                          firmware_version: str | None, ocpp_version: OcppVersion, heartbeat_interval_s: int,
                          boot_at: datetime) -> None: ...


class FrameRecorder(Protocol):
    """Keeps raw frames for troubleshooting (``ingest.frame_log.FrameLog``); must not block."""

    def record(self, charger_id: str, ts: datetime, direction: str, raw: bytes | str) -> None: ...


class Queue(Protocol):
    async def claim_next(self, charger_id: str, now: datetime) -> ClaimedCommand | None: ...

    async def finish(self, command_id: str, outcome: CommandOutcome, status: str | None, detail: str | None,
                     now: datetime) -> bool: ...


class TransactionIds:
    """OCPP 1.6 transaction ids, fetched from the PG sequence a block at a time.

    A StartTransaction that comes again (a duplicated frame, or a retransmission after our
    answer was lost) is the same transaction, not a new one: :meth:`for_start` gives it the id
    the first one got, as long as it is among the last ``remember`` starts of this process.
    Otherwise the charger keeps using one id while the platform holds a second, empty session
    that closes the real one early."""

    def __init__(self, allocate: Callable[[int], Awaitable[Sequence[int]]], block: int = 20, *,
                 remember: int = 10_000) -> None:
        self._allocate = allocate
        self._block = block
        self._free: deque[int] = deque()
        self._lock = asyncio.Lock()
        self._given: OrderedDict[Hashable, int] = OrderedDict()
        self._remember = remember

    async def for_start(self, start: Hashable) -> int:
        """The id of the transaction ``start`` identifies (charger, connector, id tag, meter
        start and timestamp: two real transactions never share all of them)."""
        known = self._given.get(start)
        if known is None:
            transaction_id = await self.next()
            known = self._given.setdefault(start, transaction_id)  # a twin may have won the race
            while len(self._given) > self._remember:
                self._given.popitem(last=False)
        return known

    async def next(self) -> int:
        while not self._free:
            async with self._lock:
                if not self._free:
                    self._free.extend(await self._allocate(self._block))
        return self._free.popleft()


@dataclass(frozen=True, slots=True)
class BridgeContext:
    """What every session of one bridge process shares."""

    bridge_id: str
    publisher: Publisher
    registry: Registry
    queue: Queue
    tx_ids: TransactionIds
    clock: Callable[[], datetime]
    new_message_id: Callable[[], str]
    heartbeat_interval_s: int
    response_timeout_s: float
    authorization: replies.AuthorizationPolicy
    spawn: Callable[[Awaitable[None], str], None]  # background work, logged if it fails
    max_frame_bytes: int = MAX_FRAME_BYTES
    # Publishes an event made from a frame, with the frame's time.monotonic_ns() arrival (for the
    # frame-to-PUBACK latency, see EventPublisher.publish); None: publisher.publish(event).
    publish_at: Callable[[Event, int], None] | None = None
    frame_log: FrameRecorder | None = None  # None: raw frames are not kept
    # Where capabilities are kept for every bridge; None: never asked, profiles go as commanded.
    capability_keeper: CapabilityKeeper | None = None
    capability_policy: CapabilityPolicy = field(default_factory=CapabilityPolicy)


class ChargerSession:
    def __init__(self, ctx: BridgeContext, ws: ServerConnection, charger_id: str, version: OcppVersion) -> None:
        self.ctx = ctx
        self.ws = ws
        self.charger_id = charger_id
        self.version = version
        self.connected_at = ctx.clock()
        self.transactions: dict[int, str] = {}  # connector / EVSE -> running transaction id
        self._handlers = replies.handlers(version)
        self._handled = frozenset(self._handlers)
        self._pending: tuple[str, asyncio.Future[CallResultFrame | CallErrorFrame]] | None = None
        self._wake = asyncio.Event()
        self._closed = False
        self._problems = 0
        self.close_reason: str | None = None  # set by whoever closes the socket on purpose
        publisher = ctx.publisher
        self._publish_at: Callable[[Event, int], None] = ctx.publish_at or (lambda event, _ns: publisher.publish(event))
        self._frame_log = ctx.frame_log
        self.capabilities = SessionCapabilities(charger_id, version, ctx.capability_keeper, ctx.capability_policy,
                                                ctx.clock, self._wake.set)

    # ----------------------------------------------------------------------- lifecycle

    def wake(self) -> None:
        """There may be commands for this charger in the queue."""
        self._wake.set()

    def retire(self, reason: str) -> None:
        """Claim no more commands: a newer connection of the charger takes over."""
        self.close_reason = reason
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        self._connection_event(ConnectionKind.CONNECTED)
        worker = asyncio.create_task(self._command_loop(), name=f"commands-{self.charger_id}")
        reason = "closed"
        try:
            while True:
                raw = await self.ws.recv(decode=False)
                if self._frame_log is not None:
                    self._frame_log.record(self.charger_id, self.ctx.clock(), "in", raw)
                try:
                    await self._on_frame(raw, time.monotonic_ns())
                except ConnectionClosed:
                    raise
                except Exception as exc:  # a bug must not cost the charger its connection
                    log.exception("%s: unexpected error on a frame", self.charger_id)
                    self.dead_letter(f"bridge error: {exc!r}", raw)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else (exc.sent.code if exc.sent else 1006)
            why = (exc.rcvd.reason if exc.rcvd else "") or (exc.sent.reason if exc.sent else "")
            by_peer = f"close code {code}" + (f": {why}" if why else "")
            reason = by_peer if exc.rcvd_then_sent or not self.close_reason else self.close_reason
        finally:
            self._closed = True
            self.capabilities.close()
            self._wake.set()
            if self._pending is not None and not self._pending[1].done():
                self._pending[1].set_exception(ConnectionClosed(None, None))
            self._connection_event(ConnectionKind.DISCONNECTED, reason=reason[:200])
            try:  # let the command task record the result of a call cut short
                await asyncio.wait({worker}, timeout=5.0)
            finally:
                if not worker.done():
                    worker.cancel()

    def _connection_event(self, kind: ConnectionKind, *, reason: str | None = None) -> None:
        self.ctx.publisher.publish(ConnectionEvent(
            self.charger_id, self.ctx.clock(), kind, ocpp_version=self.version, reason=reason,
            bridge_id=self.ctx.bridge_id,
        ))

    # ----------------------------------------------------------------------- inbound

    async def _on_frame(self, raw: bytes, received_ns: int | None = None) -> None:
        if received_ns is None:
            received_ns = time.monotonic_ns()
        try:
            frame = parse_frame(raw, self.version, max_bytes=self.ctx.max_frame_bytes)
            if type(frame) is CallFrame:
                validate_call(self.version, frame, self._handled)
        except FrameError as err:
            self.dead_letter(err.reason, raw)
            if err.reply is not None:
                await self._send(err.reply)
            return
        if isinstance(frame, CallFrame):
            await self._on_call(frame, raw, received_ns)
        else:
            self._on_response(frame, raw)

    async def _on_call(self, frame: CallFrame, raw: bytes, received_ns: int) -> None:
        received_at = self.ctx.clock()
        try:
            reply, transaction_id = await self._handlers[frame.action](self, frame.payload, received_at)
        except Exception as exc:  # a bug or an outage (PG for transaction ids): tell the charger to retry
            log.exception("%s: handling %s failed", self.charger_id, frame.action)
            err = call_error(self.version, frame.message_id, Problem.INTERNAL, f"{frame.action} failed: {exc}")
            self.dead_letter(f"bridge could not handle {frame.action}: {exc}", raw)
            if err.reply is not None:
                await self._send(err.reply)
            return
        self._publish_events(frame, raw, received_at, transaction_id, received_ns)
        await self._send(encode_result(frame.message_id, reply))
        if frame.action == "BootNotification" and reply.get("status") == "Accepted":
            self.capabilities.booted(frame.payload)  # asked from the command task, after this answer

    def _publish_events(self, frame: CallFrame, raw: bytes, received_at: datetime,
                        transaction_id: str | None, received_ns: int) -> None:
        try:
            events = normalize_call(self.version, self.charger_id, frame.action, frame.payload,
                                    received_at=received_at, transaction_id=transaction_id)
        except NormalizeError as exc:
            self.dead_letter(str(exc), raw)
            return
        except (ValueError, TypeError) as exc:  # our mistake, not the charger's: keep the frame
            log.exception("%s: normalizing %s failed", self.charger_id, frame.action)
            self.dead_letter(f"bridge could not normalize {frame.action}: {exc}", raw)
            return
        publish = self._publish_at
        for event in events:
            if type(event) is ConnectionEvent:
                event = dataclasses.replace(
                    event, bridge_id=self.ctx.bridge_id,
                    heartbeat_interval_s=self.ctx.heartbeat_interval_s
                    if event.kind is ConnectionKind.BOOTED else event.heartbeat_interval_s,
                )
            publish(event, received_ns)

    def dead_letter(self, reason: str, raw: bytes | str) -> None:
        self._problems += 1
        if self._problems <= _LOG_FIRST_PROBLEMS or self._problems % 1000 == 0:
            log.warning("%s: unusable input (#%d): %s", self.charger_id, self._problems, reason[:300])
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        try:
            letter = DeadLetter(ts=self.ctx.clock(), source="bridge", reason=reason[:2000],
                                raw=text[:MAX_DEAD_LETTER_RAW], charger_id=self.charger_id)
        except ContractError:  # pragma: no cover - defensive: reason/raw are always strings here
            log.exception("%s: could not build a dead letter", self.charger_id)
            return
        self.ctx.publisher.publish(letter)

    # ----------------------------------------------------------------------- outbound

    async def _send(self, frame: bytes) -> None:
        if self._frame_log is not None:
            self._frame_log.record(self.charger_id, self.ctx.clock(), "out", frame)
        await self.ws.send(frame, text=True)

    def _on_response(self, frame: CallResultFrame | CallErrorFrame, raw: bytes) -> None:
        pending = self._pending
        if pending is None or pending[0] != frame.message_id or pending[1].done():
            self.dead_letter("an answer to no call of ours that is waiting (late or unknown message id)", raw)
            return
        pending[1].set_result(frame)

    async def call(self, action: str, payload: Mapping[str, Any],
                   timeout: float) -> CallResultFrame | CallErrorFrame:
        """Send one CALL and wait for its answer. TimeoutError, or ConnectionClosed."""
        if self._closed:
            raise ConnectionClosed(None, None)
        message_id = self.ctx.new_message_id()
        future: asyncio.Future[CallResultFrame | CallErrorFrame] = asyncio.get_running_loop().create_future()
        self._pending = (message_id, future)
        try:
            await self._send(encode_call(message_id, action, payload))
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._pending = None

    async def _command_loop(self) -> None:
        await self.capabilities.start()
        self._wake.set()  # commands queued while the charger was away
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            while not self._closed:
                if self.capabilities.due:
                    try:
                        await self.capabilities.learn(self.call)
                    except Exception:  # a bug must not stop the commands
                        log.exception("%s: asking for the capabilities failed", self.charger_id)
                    continue
                try:
                    claimed = await self.ctx.queue.claim_next(self.charger_id, self.ctx.clock())
                except Exception:
                    log.exception("%s: cannot claim commands; retrying", self.charger_id)
                    await asyncio.sleep(2.0)
                    self._wake.set()
                    break
                if claimed is None:
                    break
                await self._finish(claimed, await self._execute(claimed))

    async def _execute(self, claimed: ClaimedCommand) -> Interpretation:
        try:
            command = decode(claimed.envelope)
        except ContractError as exc:
            return Interpretation(CommandOutcome.FAILED, detail=f"stored command is unreadable: {exc}")
        if not isinstance(command, Command):
            return Interpretation(CommandOutcome.FAILED, detail=f"stored {command.TYPE} is not a command")
        now = self.ctx.clock()
        if command.expires_at <= now:
            return Interpretation(CommandOutcome.EXPIRED, detail="the command expired before it could be sent")
        caps = self.capabilities
        state = ChargerState(dict(self.transactions), caps.current, caps.station_max,
                             caps.policy.station_max_interval)
        try:
            call = build_call(command, self.version, state, now)
        except CommandBuildError as exc:
            return Interpretation(CommandOutcome.FAILED, detail=str(exc))
        problem = check_payload(self.version, call.action, call.payload)
        if problem is not None:
            return Interpretation(CommandOutcome.FAILED, detail=f"{call.action} would be invalid: {problem}")
        timeout = self.ctx.response_timeout_s
        try:
            answer = await self.call(call.action, call.payload, timeout)
        except TimeoutError:
            return Interpretation(CommandOutcome.TIMED_OUT, detail=f"no answer to {call.action} within {timeout:g} s")
        except ConnectionClosed:
            return Interpretation(CommandOutcome.TIMED_OUT,
                                  detail=f"the connection closed before the charger answered {call.action}")
        if isinstance(answer, CallErrorFrame):
            return Interpretation(CommandOutcome.FAILED, status=answer.code[:100], detail=answer.description[:2000])
        problem = check_payload(self.version, call.action, answer.payload, response=True)
        if problem is not None:
            self.dead_letter(f"{call.action} answer breaks the schema: {problem}", str(answer.payload))
            return Interpretation(CommandOutcome.FAILED, detail=f"invalid {call.action} answer: {problem}")
        result = interpret(command, self.version, call, answer.payload)
        if result.outcome is CommandOutcome.ACCEPTED and call.station_max is not None:
            await caps.record(call, command.command_id, now)
        return result

    async def _finish(self, claimed: ClaimedCommand, result: Interpretation) -> None:
        """Record the outcome, then publish it: only the process that records it publishes."""
        for attempt in range(_FINISH_ATTEMPTS):
            now = self.ctx.clock()
            try:
                recorded = await self.ctx.queue.finish(claimed.command_id, result.outcome, result.status,
                                                       result.detail, now)
            except Exception:
                log.exception("%s: cannot record the result of %s (attempt %d)", self.charger_id,
                              claimed.command_id, attempt + 1)
                await asyncio.sleep(1.0)
                continue
            if recorded:
                self.ctx.publisher.publish(CommandResult(
                    claimed.command_id, claimed.charger_id, now, result.outcome, status=result.status,
                    detail=result.detail, payload=result.payload,
                ))
            return
        log.error("%s: gave up recording %s (%s); the sweep will report it as timed out",
                  self.charger_id, claimed.command_id, result.outcome.value)


def utc_now() -> datetime:
    return datetime.now(UTC)
