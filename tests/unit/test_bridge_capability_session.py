"""When a live session asks for capabilities (once per boot, after a grace without a boot, never
for the charger's own messages) and how it uses and keeps them, with in-memory fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from control.contract import Command, CommandKind, CommandOutcome, Event, OcppVersion, encode
from ingest.capability_session import CapabilityPolicy
from ingest.csms import BridgeContext, ChargerSession, TransactionIds
from ingest.replies import AcceptAnyToken
from tests.fake_ws import CLOSED, FakeWs
from warehouse.capability_store import ChargerCapabilities, MaxProfileWrite
from warehouse.command_queue import ClaimedCommand

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
BOOT16 = {"chargePointVendor": "V", "chargePointModel": "M", "firmwareVersion": "1.0"}
POWER_ONLY_1P = {"configurationKey": [
    {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Power"},
    {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "2"},
    {"key": "ConnectorPhaseRotation", "readonly": True, "value": "1.NotApplicable"}]}


class Keeper:
    def __init__(self, stored: ChargerCapabilities | None = None, write: MaxProfileWrite | None = None) -> None:
        self.stored, self.write = stored, write
        self.saved: list[ChargerCapabilities] = []
        self.writes: list[MaxProfileWrite] = []

    async def load(self, charger_id: str) -> tuple[ChargerCapabilities | None, MaxProfileWrite | None]:
        return self.stored, self.write

    async def save(self, caps: ChargerCapabilities) -> None:
        self.saved.append(caps)

    async def record_max_profile(self, charger_id: str, write: MaxProfileWrite) -> None:
        self.writes.append(write)


class Charger(FakeWs):
    """The websocket seen from the bridge; answers the bridge's CALLs with ``answers[action]``
    (None: never answers)."""

    def __init__(self, answers: dict[str, list[Any] | None]) -> None:
        super().__init__()
        self.answers = answers
        self.session: ChargerSession | None = None
        self.on_call = self._answer

    def _answer(self, frame: list[Any]) -> None:
        answer = self.answers.get(frame[2], [3, {"status": "Accepted"}])
        if answer is not None:
            self.inbox.put_nowait(orjson.dumps([answer[0], frame[1], *answer[1:]]))

    def calls(self) -> list[str]:
        return [f[2] for f in self.sent if f[0] == 2]

    def call(self, message_id: str, action: str, payload: dict[str, Any]) -> None:
        self.inbox.put_nowait(orjson.dumps([2, message_id, action, payload]))


class Queue:
    def __init__(self, claims: Sequence[ClaimedCommand] = ()) -> None:
        self.claims = list(claims)
        self.finished: list[tuple[str, CommandOutcome, str | None, str | None]] = []

    async def claim_next(self, charger_id: str, now: datetime) -> ClaimedCommand | None:
        return self.claims.pop(0) if self.claims else None

    async def finish(self, command_id: str, outcome: CommandOutcome, status: str | None, detail: str | None,
                     now: datetime) -> bool:
        self.finished.append((command_id, outcome, status, detail))
        return True


class Registry:
    async def record_boot(self, *args: Any, **kwargs: Any) -> None:
        return None


def session(charger: Charger, keeper: Keeper | None, queue: Queue, *, version: OcppVersion = OcppVersion.V16,
            policy: CapabilityPolicy | None = None, clock: Callable[[], datetime] = lambda: T0) -> ChargerSession:
    published: list[Event] = []

    async def allocate(count: int) -> Sequence[int]:
        return list(range(1, count + 1))

    def spawn(work: Any, what: str) -> None:
        work.close()

    ctx = BridgeContext(
        bridge_id="b", publisher=type("P", (), {"publish": lambda self, e: published.append(e)})(),
        registry=Registry(), queue=queue, tx_ids=TransactionIds(allocate), clock=clock,
        new_message_id=iter(f"out-{i}" for i in range(100)).__next__, heartbeat_interval_s=60,
        response_timeout_s=0.3, authorization=AcceptAnyToken(), spawn=spawn, capability_keeper=keeper,
        capability_policy=policy or CapabilityPolicy(grace_s=0.05, timeout_s=0.2),
    )
    return ChargerSession(ctx, charger, "CP-1", version)  # type: ignore[arg-type]


def set_limit(command_id: str = "c-1", **params: Any) -> ClaimedCommand:
    command = Command(command_id, "CP-1", CommandKind.SET_LIMIT, T0 - timedelta(seconds=1), T0 + timedelta(minutes=1),
                      connector_id=1 if "purpose" not in params else None, params={"limit": 16.0, **params})
    return ClaimedCommand(command_id, "CP-1", encode(command).decode())


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def stored(**values: Any) -> ChargerCapabilities:
    return ChargerCapabilities("CP-1", "1.6", T0 - timedelta(days=1), True, **values)


def test_asked_once_per_boot_after_its_answer_and_used_for_the_next_profile() -> None:
    async def scenario() -> None:
        charger, keeper, queue = Charger({"GetConfiguration": [3, POWER_ONLY_1P]}), Keeper(), Queue()
        s = session(charger, keeper, queue)
        task = asyncio.create_task(s.run())
        charger.call("b1", "BootNotification", BOOT16)
        await until(lambda: len(keeper.saved) == 1)
        assert [f[0:2] for f in charger.sent[:2]] == [[3, "b1"], [2, "out-0"]]  # the boot answered first
        assert charger.calls() == ["GetConfiguration"]
        learned = keeper.saved[0]
        assert (learned.rate_units, learned.phases, learned.max_stack_level, learned.firmware_version) == (
            ("W",), 1, 2, "1.0")
        charger.call("b2", "BootNotification", BOOT16)  # triggered or duplicated: same firmware, not again
        charger.call("h", "Heartbeat", {})
        queue.claims.append(set_limit(stack_level=5))
        s.wake()
        await until(lambda: len(queue.finished) == 1)
        assert charger.calls() == ["GetConfiguration", "SetChargingProfile"]
        profile = charger.sent[-1][3]["csChargingProfiles"]
        assert profile["stackLevel"] == 2 and profile["chargingSchedule"]["chargingRateUnit"] == "W"
        assert profile["chargingSchedule"]["chargingSchedulePeriod"] == [
            {"startPeriod": 0, "limit": 3680.0, "numberPhases": 1}]
        charger.call("b3", "BootNotification", {**BOOT16, "firmwareVersion": "2.0"})  # updated: ask again
        await until(lambda: len(keeper.saved) == 2)
        assert keeper.saved[1].firmware_version == "2.0"
        charger.inbox.put_nowait(CLOSED)
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())


def test_stored_capabilities_are_used_without_asking() -> None:
    async def scenario() -> None:
        charger, queue = Charger({}), Queue([set_limit()])
        keeper = Keeper(stored(rate_units=("W",), phases=3))
        s = session(charger, keeper, queue)
        task = asyncio.create_task(s.run())
        await until(lambda: len(queue.finished) == 1)
        charger.call("h", "Heartbeat", {})
        await asyncio.sleep(0.15)  # past the grace: what is stored is fresh, nothing is asked
        assert charger.calls() == ["SetChargingProfile"] and keeper.saved == []
        assert charger.sent[0][3]["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"] == [
            {"startPeriod": 0, "limit": 11040.0}]
        charger.inbox.put_nowait(CLOSED)
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())


def test_without_a_boot_unknown_or_old_capabilities_are_asked_after_the_grace() -> None:
    async def scenario(keeper: Keeper, *, now: datetime = T0) -> list[str]:
        charger = Charger({"GetConfiguration": [3, POWER_ONLY_1P]})
        s = session(charger, keeper, Queue(), clock=lambda: now)
        task = asyncio.create_task(s.run())
        charger.call("h", "Heartbeat", {})
        await asyncio.sleep(0.2)
        charger.inbox.put_nowait(CLOSED)
        await asyncio.wait_for(task, 5)
        return charger.calls()

    assert asyncio.run(scenario(Keeper())) == ["GetConfiguration"]
    assert asyncio.run(scenario(Keeper(stored()))) == []
    assert asyncio.run(scenario(Keeper(stored()), now=T0 + timedelta(days=7))) == ["GetConfiguration"]


def test_no_answer_or_an_error_gives_defaults_and_commands_still_go() -> None:
    async def scenario(answer: list[Any] | None) -> tuple[ChargerCapabilities, list[Any]]:
        charger, keeper, queue = Charger({"GetConfiguration": answer}), Keeper(), Queue()
        s = session(charger, keeper, queue)
        task = asyncio.create_task(s.run())
        charger.call("b", "BootNotification", BOOT16)
        queue.claims.append(set_limit(limit=10.0))
        await until(lambda: len(queue.finished) == 1)
        charger.inbox.put_nowait(CLOSED)
        await asyncio.wait_for(task, 5)
        return keeper.saved[0], charger.sent[-1]

    caps, frame = asyncio.run(scenario(None))
    assert not caps.answered and caps.notes[0].startswith("no answer to GetConfiguration within 0.2 s")
    assert frame[2] == "SetChargingProfile" and frame[3]["csChargingProfiles"]["chargingSchedule"][
        "chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 10.0}]
    caps, _ = asyncio.run(scenario([4, "NotSupported", "no", {}]))
    assert caps.raw == {"error": "GetConfiguration answered with CALLERROR NotSupported: no"}
    caps, _ = asyncio.run(scenario([3, {"status": "Accepted"}]))
    assert "breaks the schema" in caps.notes[0] and caps.raw["answer"] == {"status": "Accepted"}


def test_without_a_keeper_nothing_is_asked() -> None:
    async def scenario() -> list[str]:
        charger, queue = Charger({}), Queue()
        s = session(charger, None, queue)
        task = asyncio.create_task(s.run())
        charger.call("b", "BootNotification", BOOT16)
        await asyncio.sleep(0.15)
        charger.inbox.put_nowait(CLOSED)
        await asyncio.wait_for(task, 5)
        return charger.calls()

    assert asyncio.run(scenario()) == []


def test_accepted_charge_point_wide_writes_are_recorded_and_rate_limit_the_next() -> None:
    async def scenario() -> tuple[Keeper, Queue]:
        charger, keeper = Charger({}), Keeper(stored())
        queue = Queue([set_limit("m-1", limit=32.0, purpose="ChargePointMaxProfile"),
                       set_limit("m-2", limit=40.0, purpose="ChargePointMaxProfile")])
        s = session(charger, keeper, queue, policy=CapabilityPolicy(grace_s=60, station_max_interval_s=600))
        task = asyncio.create_task(s.run())
        await until(lambda: len(queue.finished) == 2)
        charger.inbox.put_nowait(CLOSED)
        await asyncio.wait_for(task, 5)
        assert charger.calls() == ["SetChargingProfile"]
        return keeper, queue

    keeper, queue = asyncio.run(scenario())
    assert keeper.writes == [MaxProfileWrite(T0, 32.0, "A", "m-1")]
    assert queue.finished[0][:2] == ("m-1", CommandOutcome.ACCEPTED)
    assert queue.finished[1][1] is CommandOutcome.FAILED and "at most once every 600 s" in (queue.finished[1][3] or "")
