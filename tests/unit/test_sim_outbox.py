"""The offline queue: what survives, in which order, and how 1.6 transaction ids are bound on replay."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from control.contract import OcppVersion
from ingest.sim.charger16 import Dialect16
from ingest.sim.charger201 import Dialect201
from ingest.sim.clock import ManualClock
from ingest.sim.dialect import Dialect
from ingest.sim.model import ChargerKind, Hardware
from ingest.sim.outbox import Outbox, Outgoing
from ingest.sim.plan import Behaviour, ChargerSpec
from ingest.sim.station import Station
from ingest.sim.truth import MemorySink

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def test_offline_keeps_only_durable_items_in_order() -> None:
    box = Outbox()
    results: list[tuple[str, Any]] = []
    box.set_online(True)
    for action, durable in [("StartTransaction", True), ("StatusNotification", False), ("MeterValues", True),
                            ("Heartbeat", False)]:
        box.push(Outgoing(action, {}, durable=durable, on_result=lambda r, a=action: results.append((a, r))))
    box.set_online(False)  # the connection dropped: volatile messages are gone (answered None)
    assert [i.action for i in box.items()] == ["StartTransaction", "MeterValues"]
    assert results == [("StatusNotification", None), ("Heartbeat", None)]
    assert not box.push(Outgoing("StatusNotification", {}))
    assert box.push(Outgoing("StopTransaction", {}, durable=True))
    assert box.head() is None  # nothing is sent while offline
    box.set_online(True)
    sent = []
    while (item := box.head()) is not None:
        sent.append((item.action, item.queued_offline))
        box.pop(item, {})
    assert sent == [("StartTransaction", False), ("MeterValues", False), ("StopTransaction", True)]
    assert box.dropped == 3


def offline_session(version: OcppVersion) -> tuple[Station, Dialect, Outbox, MemorySink]:
    """A whole session while the charger is offline, translated into the (offline) outbox."""
    spec = ChargerSpec("SIM-0009", version, Hardware(ChargerKind.AC3), 1, (5_000.0,))
    clock = ManualClock(T0)
    sink = MemorySink()
    station = Station(spec, seed=3, start=T0, truth=sink,
                      behaviour=Behaviour(first_arrival_max_s=60, dwell_min_s=600, dwell_max_s=600,
                                          pause_probability=0, sessions_per_connector=1))
    dialect: Dialect = (Dialect16 if version == OcppVersion.V16 else Dialect201)(station, clock)
    box = Outbox()
    for _ in range(400):
        station.tick(clock.advance(5))
        for event in station.drain():
            for item in dialect.translate(event):
                box.push(item)
    return station, dialect, box, sink


def test_16_replay_binds_the_transaction_id_from_the_replayed_start() -> None:
    station, dialect, box, sink = offline_session(OcppVersion.V16)
    actions = [i.action for i in box.items()]
    assert actions[0] == "StartTransaction" and actions[-1] == "StopTransaction"
    assert set(actions[1:-1]) == {"MeterValues"} and len(actions) > 10
    box.set_online(True)
    sent: list[dict[str, Any]] = []
    while (item := box.head()) is not None:
        payload = dialect.prepare(item)
        assert payload is not None
        sent.append(payload)
        started = item.action == "StartTransaction"
        box.pop(item, {"transactionId": 4711, "idTagInfo": {"status": "Accepted"}} if started else {})
    assert "transactionId" not in sent[0]
    assert {p["transactionId"] for p in sent[1:]} == {4711}
    station.write_settled()
    [record] = sink.records
    assert record["transaction_id"] == "4711" and record["confirmed"]
    assert record["meter_stop_wh"] == sent[-1]["meterStop"] and record["meter_start_wh"] == sent[0]["meterStart"]


def test_16_messages_of_a_refused_start_are_dropped() -> None:
    station, dialect, box, sink = offline_session(OcppVersion.V16)
    box.set_online(True)
    first = box.head()
    assert first is not None and first.action == "StartTransaction"
    box.pop(first, None)  # CALLERROR: the CSMS never assigned an id
    while (item := box.head()) is not None:
        assert dialect.prepare(item) is None
        box.pop(item, None)
    station.write_settled()
    [record] = sink.records
    assert record["transaction_id"] is None and not record["confirmed"]


def test_201_events_queued_offline_say_so_and_keep_their_sequence() -> None:
    _, dialect, box, _ = offline_session(OcppVersion.V201)
    events = [i.payload for i in box.items()]
    assert all(i.action == "TransactionEvent" for i in box.items())
    assert [e["eventType"] for e in (events[0], events[-1])] == ["Started", "Ended"]
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert all(e["offline"] is True for e in events)
    assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1
    assert dialect.prepare(box.items()[0]) == events[0]  # 2.0.1 needs no rewriting


def test_a_full_queue_sheds_the_oldest_samples_not_the_transaction_messages() -> None:
    box = Outbox(max_items=3)
    box.push(Outgoing("StartTransaction", {}, durable=True))
    for n in range(4):
        box.push(Outgoing("MeterValues", {"n": n}, durable=True, sample=True))
    box.push(Outgoing("StopTransaction", {}, durable=True))
    assert [(i.action, i.payload.get("n")) for i in box.items()] == [
        ("StartTransaction", None), ("MeterValues", 3), ("StopTransaction", None)]
    assert box.dropped == 3
