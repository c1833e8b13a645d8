"""Loopback: simulated 1.6 and 2.0.1 chargers against a tiny CSMS built on the ocpp library.

The CSMS validates every frame against the OCPP schemas, answers like a permissive backend and
records what it received; the tests compare that with the simulator's ground truth.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import ocpp.messages
import pytest
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from ingest.sim.cli import add_arguments, run
from ingest.sim.events import GoOfflineEvent
from ingest.sim.fleet import make_runtimes
from ingest.sim.truth import MemorySink, read_truth

PASSWORD = "loopback-secret"
ACCEPTED = {"status": "Accepted"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Received:
    frames: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (charger, action, payload)
    tx16: dict[int, dict[str, Any]] = field(default_factory=dict)
    tx201: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tx_ids: Any = field(default_factory=lambda: itertools.count(1001))
    profile_status: dict[str, str] = field(default_factory=dict)
    push_profile: bool = False

    def of(self, charger: str, action: str) -> list[dict[str, Any]]:
        return [p for c, a, p in self.frames if c == charger and a == action]


class Csms16(ChargePoint16):
    def __init__(self, charger_id: str, ws: ServerConnection, rx: Received) -> None:
        super().__init__(charger_id, ws)
        self.rx = rx

    def _got(self, action: str, payload: dict[str, Any]) -> None:
        self.rx.frames.append((self.id, action, payload))

    @on(Action16.boot_notification)
    def csms16_boot(self, **kw: Any) -> Any:
        self._got("BootNotification", kw)
        return result16.BootNotification(current_time=_now(), interval=60, status="Accepted")

    @after(Action16.boot_notification)
    async def csms16_after_boot(self, **_: Any) -> None:
        if self.rx.push_profile:
            answer = await self.call(call16.SetChargingProfile(connector_id=0, cs_charging_profiles={
                "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Absolute", "chargingSchedule": {
                    "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}]}}))
            self.rx.profile_status[self.id] = answer.status

    @on(Action16.heartbeat)
    def csms16_heartbeat(self, **kw: Any) -> Any:
        self._got("Heartbeat", kw)
        return result16.Heartbeat(current_time=_now())

    @on(Action16.status_notification)
    def csms16_status(self, **kw: Any) -> Any:
        self._got("StatusNotification", kw)
        return result16.StatusNotification()

    @on(Action16.authorize)
    def csms16_authorize(self, **kw: Any) -> Any:
        self._got("Authorize", kw)
        return result16.Authorize(id_tag_info=ACCEPTED)

    @on(Action16.start_transaction)
    def csms16_start(self, **kw: Any) -> Any:
        self._got("StartTransaction", kw)
        tx = next(self.rx.tx_ids)
        self.rx.tx16[tx] = {"charger": self.id, "start": kw}
        return result16.StartTransaction(transaction_id=tx, id_tag_info=ACCEPTED)

    @on(Action16.stop_transaction)
    def csms16_stop(self, **kw: Any) -> Any:
        self._got("StopTransaction", kw)
        self.rx.tx16[kw["transaction_id"]]["stop"] = kw
        return result16.StopTransaction()

    @on(Action16.meter_values)
    def csms16_meter_values(self, **kw: Any) -> Any:
        self._got("MeterValues", kw)
        return result16.MeterValues()


class Csms201(ChargePoint201):
    def __init__(self, charger_id: str, ws: ServerConnection, rx: Received) -> None:
        super().__init__(charger_id, ws)
        self.rx = rx

    def _got(self, action: str, payload: dict[str, Any]) -> None:
        self.rx.frames.append((self.id, action, payload))

    @on(Action201.boot_notification)
    def csms201_boot(self, **kw: Any) -> Any:
        self._got("BootNotification", kw)
        return result201.BootNotification(current_time=_now(), interval=60, status="Accepted")

    @after(Action201.boot_notification)
    async def csms201_after_boot(self, **_: Any) -> None:
        if self.rx.push_profile:
            answer = await self.call(call201.SetChargingProfile(evse_id=0, charging_profile={
                "id": 2, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Absolute", "chargingSchedule": [{
                    "id": 1, "chargingRateUnit": "W",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6900.0}]}]}))  # 10 A on 3 phases
            self.rx.profile_status[self.id] = answer.status

    @on(Action201.heartbeat)
    def csms201_heartbeat(self, **kw: Any) -> Any:
        self._got("Heartbeat", kw)
        return result201.Heartbeat(current_time=_now())

    @on(Action201.status_notification)
    def csms201_status(self, **kw: Any) -> Any:
        self._got("StatusNotification", kw)
        return result201.StatusNotification()

    @on(Action201.authorize)
    def csms201_authorize(self, **kw: Any) -> Any:
        self._got("Authorize", kw)
        return result201.Authorize(id_token_info=ACCEPTED)

    @on(Action201.transaction_event)
    def csms201_transaction_event(self, **kw: Any) -> Any:
        self._got("TransactionEvent", kw)
        self.rx.tx201.setdefault(kw["transaction_info"]["transaction_id"], []).append(kw)
        return result201.TransactionEvent()

    @on(Action201.meter_values)
    def csms201_meter_values(self, **kw: Any) -> Any:
        self._got("MeterValues", kw)
        return result201.MeterValues()


async def start_csms(rx: Received) -> tuple[Server, str]:
    async def handler(ws: ServerConnection) -> None:
        charger_id = ws.request.path.strip("/").split("/")[-1] if ws.request else "?"
        cp = (Csms16 if ws.subprotocol == "ocpp1.6" else Csms201)(charger_id, ws, rx)
        try:
            await cp.start()
        except Exception:  # the charger went away (or dropped the connection on purpose)
            return

    def process_request(conn: ServerConnection, request: Request) -> Response | None:
        charger_id = request.path.rstrip("/").split("/")[-1]
        token = base64.b64encode(f"{charger_id}:{PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {token}":
            return conn.respond(HTTPStatus.UNAUTHORIZED, "bad credentials\n")
        return None

    server = await serve(handler, "127.0.0.1", 0, subprotocols=["ocpp2.0.1", "ocpp1.6"],  # type: ignore[list-item]
                         process_request=process_request)
    port = next(iter(server.sockets)).getsockname()[1]
    return server, f"ws://127.0.0.1:{port}/ocpp"


def sim_args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args([
        "--chargers", "2", "--dc", "0", "--two-connector-fraction", "0", "--v201-fraction", "0.5",
        "--speed", "300", "--seed", "3", "--sessions", "1", "--first-arrival-max", "60", "--arrival-mean", "60",
        "--dwell-min", "900", "--dwell-max", "1200", "--meter-interval", "60", "--pause-probability", "0",
        "--password", PASSWORD, "--truth", str(tmp_path / "truth.jsonl"), *extra])


def energy_register(meter_value: list[dict[str, Any]]) -> float:
    for sample in meter_value[0]["sampled_value"]:
        if sample["measurand"] == "Energy.Active.Import.Register":
            return float(sample["value"])
    raise AssertionError("no Energy.Active.Import.Register")


def csms_view(rx: Received) -> dict[str, dict[str, Any]]:
    """transaction id -> what the CSMS saw: the registers at start and stop, the id tag, the samples."""
    view: dict[str, dict[str, Any]] = {}
    for tx, seen in rx.tx16.items():
        samples = [energy_register(p["meter_value"]) for c, a, p in rx.frames
                   if a == "MeterValues" and p.get("transaction_id") == tx]
        view[str(tx)] = {"start": float(seen["start"]["meter_start"]), "id_tag": seen["start"]["id_tag"],
                         "stop": float(seen["stop"]["meter_stop"]) if "stop" in seen else None, "samples": samples}
    for tx, events in rx.tx201.items():
        kinds = {e["event_type"]: e for e in events}
        view[tx] = {"start": energy_register(kinds["Started"]["meter_value"]),
                    "id_tag": kinds["Started"]["id_token"]["id_token"],
                    "stop": energy_register(kinds["Ended"]["meter_value"]) if "Ended" in kinds else None,
                    "samples": [energy_register(e["meter_value"]) for e in events
                                if e["event_type"] == "Updated" and e.get("meter_value")],
                    "seq": [e["seq_no"] for e in events], "offline": [e.get("offline", False) for e in events]}
    return view


def assert_truth_matches(truth: list[dict[str, Any]], view: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    sessions = [r for r in truth if r["kind"] == "session"]
    assert {(r["charger_id"], r["ocpp_version"]) for r in sessions} == {("SIM-0001", "1.6"), ("SIM-0002", "2.0.1")}
    for record in sessions:
        seen = view[record["transaction_id"]]
        assert record["confirmed"]
        assert (seen["start"], seen["stop"], seen["id_tag"]) == (
            record["meter_start_wh"], record["meter_stop_wh"], record["id_tag"])
        resolution = 1.0 if record["ocpp_version"] == "1.6" else 0.1
        assert abs((seen["stop"] - seen["start"]) - record["energy_wh"]) <= resolution
        assert record["energy_wh"] > 100
        assert seen["samples"] == sorted(seen["samples"])
        assert all(seen["start"] <= s <= seen["stop"] for s in seen["samples"])
    return sessions


@pytest.fixture(autouse=True)
def _sync_schema_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CSMS validates in the event loop: the library's thread hop per frame costs milliseconds.
    monkeypatch.setattr(ocpp.messages, "ASYNC_VALIDATION", False)


@pytest.mark.timeout(20)
def test_ground_truth_matches_what_the_csms_received(tmp_path: Path) -> None:
    rx = Received(push_profile=True)

    async def scenario() -> int:
        server, url = await start_csms(rx)
        try:
            return await asyncio.wait_for(run(sim_args(tmp_path), url=url, stop=asyncio.Event()), 15)
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(scenario()) == 0
    truth = read_truth(tmp_path / "truth.jsonl")
    sessions = assert_truth_matches(truth, csms_view(rx))
    assert [r for r in truth if r["kind"] == "fault"] == []
    assert rx.profile_status == {"SIM-0001": "Accepted", "SIM-0002": "Accepted"}
    statuses16 = [p["status"] for p in rx.of("SIM-0001", "StatusNotification") if p["connector_id"] == 1]
    assert statuses16[:3] == ["Available", "Preparing", "Charging"]
    assert statuses16[-1] == "Available"
    assert "Occupied" in [p["connector_status"] for p in rx.of("SIM-0002", "StatusNotification")]
    for charger in ("SIM-0001", "SIM-0002"):
        assert len(rx.of(charger, "BootNotification")) == 1
        assert rx.of(charger, "Heartbeat") and rx.of(charger, "Authorize")
    # The TxDefaultProfile of 10 A (1.6) / 6900 W on 3 phases (2.0.1) is what the chargers offer.
    for tx, events in rx.tx201.items():
        offered = [s["value"] for e in events if e.get("meter_value") and e["event_type"] == "Updated"
                   for s in e["meter_value"][0]["sampled_value"] if s["measurand"] == "Current.Offered"]
        assert offered and offered[-1] == pytest.approx(10.0), tx
    offered16 = [float(s["value"]) for p in rx.of("SIM-0001", "MeterValues")
                 for s in p["meter_value"][0]["sampled_value"] if s["measurand"] == "Current.Offered"]
    assert offered16 and offered16[-1] == pytest.approx(10.0)
    assert {r["stop_reason"] for r in sessions} <= {"Local", "EVDisconnected"}


@pytest.mark.timeout(20)
def test_offline_session_is_queued_and_replayed_in_order(tmp_path: Path) -> None:
    """The chargers start without network; the whole session is queued and replayed on connection."""
    rx = Received()
    args = sim_args(tmp_path, "--dwell-min", "600", "--dwell-max", "700")

    async def scenario() -> list[dict[str, Any]]:
        from ingest.sim.cli import config_from_args
        from ingest.sim.clock import ScaledClock

        server, url = await start_csms(rx)
        sink = MemorySink()
        config = config_from_args(args, url=url, password=PASSWORD)
        clock = ScaledClock(datetime(2026, 3, 1, 8, 0, tzinfo=UTC), args.speed)
        runtimes = make_runtimes(config, clock, sink)
        for rt in runtimes:  # no network for the first 15 simulated minutes (3 s real)
            rt.station.emit(GoOfflineEvent(900.0, clock.now()))
            rt.dispatch()
        halt = asyncio.Event()
        tasks = [asyncio.create_task(rt.run(halt)) for rt in runtimes]
        try:
            async with asyncio.timeout(15):
                while not all(rt.station.done for rt in runtimes):
                    await asyncio.sleep(0.02)
        finally:
            for rt in runtimes:
                await rt.shutdown(2.0)
            halt.set()
            await asyncio.gather(*tasks)
            server.close()
            await server.wait_closed()
        return sink.records

    truth = asyncio.run(scenario())
    view = csms_view(rx)
    sessions = assert_truth_matches(truth, view)
    assert not any(a == "Authorize" for _, a, _ in rx.frames)  # authorised locally while offline
    assert all(r["stop_ts"] < "2026-03-01T08:15:00Z" for r in sessions)  # both ended before the network came back
    [record201] = [r for r in sessions if r["ocpp_version"] == "2.0.1"]
    seen = view[record201["transaction_id"]]
    assert all(seen["offline"]), "every event of a session run offline says so"
    assert seen["seq"] == list(range(len(seen["seq"])))
    # 1.6: Start, then the MeterValues and the Stop carrying the id the replayed Start got, in order.
    actions = [a for c, a, _ in rx.frames if c == "SIM-0001" and a in ("StartTransaction", "MeterValues",
                                                                        "StopTransaction")]
    assert actions[0] == "StartTransaction" and actions[-1] == "StopTransaction"
    assert Counter(actions)["MeterValues"] >= 5
    [tx] = rx.tx16
    assert {p["transaction_id"] for p in rx.of("SIM-0001", "MeterValues")} == {tx}
    assert [r for r in truth if r["kind"] == "fault"] == []  # injected by the test, not by the fault schedule


@pytest.mark.timeout(20)
def test_wrong_password_is_refused_and_reported(tmp_path: Path) -> None:
    rx = Received()
    args = sim_args(tmp_path, "--password", "wrong", "--duration", "1.5")

    async def scenario() -> int:
        server, url = await start_csms(rx)
        try:
            return await run(args, url=url, stop=asyncio.Event())
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(scenario()) == 1  # no charger could boot
    assert rx.frames == []
