"""External charging limits at the bridge: OCPP 2.0.1 NotifyChargingLimit / ClearedChargingLimit
answered, validated and normalised into the contract's ChargingLimit (and back through the
pipeline's decoder)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_bridge_session import Harness

from control.contract import (
    ChargingLimit,
    ChargingLimitSource,
    ContractError,
    DeadLetter,
    OcppVersion,
    RateUnit,
    decode,
    encode,
)
from control.topics import topic_for
from ingest import replies
from ingest.encoding import encode_event
from ingest.normalize import NormalizeError, normalize_call_detailed
from ingest.validation import CallFrame, FrameError, check_payload, validate_call
from pipelines.decode import decode_message

V201 = OcppVersion.V201
RECEIVED = datetime(2026, 11, 20, 10, 0, 5, tzinfo=UTC)
SO = ChargingLimitSource.SO


def notify(**over: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "chargingLimit": {"chargingLimitSource": "SO", "isGridCritical": True},
        "evseId": 1,
        "chargingSchedule": [{"id": 7, "startSchedule": "2026-11-20T10:00:00Z", "duration": 900,
                              "chargingRateUnit": "A",
                              "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0},
                                                         {"startPeriod": 300, "limit": 6.5, "numberPhases": 1}]}],
    }
    payload.update(over)
    return payload


def normalize(action: str, payload: dict[str, Any]) -> tuple[ChargingLimit, tuple[str, ...]]:
    result = normalize_call_detailed(V201, "CP-1", action, payload, received_at=RECEIVED)
    (event,) = result.events
    assert isinstance(event, ChargingLimit)
    assert decode(encode(event)) == event and encode_event(event) == encode(event)
    return event, result.quirks


def test_notify_with_a_schedule_becomes_one_charging_limit() -> None:
    assert check_payload(V201, "NotifyChargingLimit", notify()) is None
    event, quirks = normalize("NotifyChargingLimit", notify())
    assert event == ChargingLimit(
        charger_id="CP-1", ts=RECEIVED, source=SO, connector_id=1, grid_critical=True, unit=RateUnit.AMPS,
        starts_at=datetime(2026, 11, 20, 10, tzinfo=UTC), duration_s=900, period_starts_s=(0, 300),
        period_limits=(10.0, 6.5), period_phases=(None, 1))
    assert quirks == ()


def test_notify_without_evse_or_schedule_is_a_whole_charger_limit_of_unknown_value() -> None:
    payload = {"chargingLimit": {"chargingLimitSource": "EMS"}}
    assert check_payload(V201, "NotifyChargingLimit", payload) is None
    event, _ = normalize("NotifyChargingLimit", payload)
    assert (event.connector_id, event.source, event.grid_critical, event.unit, event.period_limits) == (
        0, ChargingLimitSource.EMS, False, None, ())


def test_a_relative_schedule_starts_on_arrival_and_only_the_first_schedule_is_used() -> None:
    first = {"id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000}]}
    second = {"id": 2, "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6}]}
    event, quirks = normalize("NotifyChargingLimit", notify(chargingSchedule=[first, second]))
    assert (event.starts_at, event.duration_s, event.unit, event.period_limits) == (
        RECEIVED, None, RateUnit.WATTS, (11000.0,))
    assert quirks == ("charging_schedule_ignored:1",)


def test_odd_periods_are_read_leniently_and_named() -> None:
    periods = [{"startPeriod": 60, "limit": 12}, {"startPeriod": 0, "limit": 16, "numberPhases": 5},
               {"startPeriod": 60, "limit": 9}, {"startPeriod": 120, "limit": -1}, {"limit": 3}]
    schedule = {"id": 1, "chargingRateUnit": "a", "duration": -5, "chargingSchedulePeriod": periods}
    event, quirks = normalize("NotifyChargingLimit", notify(chargingSchedule=[schedule]))
    assert (event.unit, event.period_starts_s, event.period_limits, event.period_phases, event.duration_s) == (
        RateUnit.AMPS, (0, 60), (16.0, 9.0), (None, None), None)  # of two at 60 s the lower limit is kept
    assert set(quirks) == {"charging_rate_unit_normalized:a", "number_phases_invalid:5", "charging_period_duplicate:60",
                           "charging_period_negative", "charging_period_malformed", "duration_invalid:-5"}


@pytest.mark.parametrize(("action", "payload", "reason"), [
    ("NotifyChargingLimit", {"evseId": 1}, "chargingLimit is missing"),
    ("NotifyChargingLimit", {"chargingLimit": {"chargingLimitSource": "DSO"}}, "chargingLimitSource"),
    ("NotifyChargingLimit", notify(chargingSchedule=[{"id": 1, "chargingRateUnit": "kW", "chargingSchedulePeriod": [
        {"startPeriod": 0, "limit": 11}]}]), "chargingRateUnit"),
    ("NotifyChargingLimit", notify(chargingSchedule=[{"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [
        {"startPeriod": 0, "limit": "lots"}]}]), "no usable period"),
    ("ClearedChargingLimit", {"chargingLimitSource": "SO", "evseId": -1}, "evseId"),
    ("ClearedChargingLimit", {}, "chargingLimitSource"),
])
def test_unusable_limits_raise_normalize_error(action: str, payload: dict[str, Any], reason: str) -> None:
    with pytest.raises(NormalizeError, match=reason):
        normalize_call_detailed(V201, "CP-1", action, payload, received_at=RECEIVED)


def test_cleared_with_and_without_evse() -> None:
    event, _ = normalize("ClearedChargingLimit", {"chargingLimitSource": "CSO", "evseId": 2})
    assert event == ChargingLimit("CP-1", RECEIVED, ChargingLimitSource.CSO, cleared=True, connector_id=2)
    event, _ = normalize("ClearedChargingLimit", {"chargingLimitSource": "SO"})
    assert (event.cleared, event.connector_id) == (True, 0)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"period_starts_s": (0, 0), "period_limits": (1.0, 2.0), "period_phases": (None, None), "unit": RateUnit.AMPS},
     "strictly increasing"),
    ({"period_starts_s": (0,), "period_limits": (), "period_phases": ()}, "same length"),
    ({"period_starts_s": (0,), "period_limits": (-1.0,), "period_phases": (None,), "unit": RateUnit.AMPS},
     "period_limits[] must be >= 0"),
    ({"period_starts_s": (0,), "period_limits": (1.0,), "period_phases": (4,), "unit": RateUnit.AMPS},
     "period_phases[] must be 1, 2, 3"),
    ({"period_starts_s": (0,), "period_limits": (1.0,), "period_phases": (None,)}, "needs its unit"),
    ({"cleared": True, "period_starts_s": (0,), "period_limits": (1.0,), "period_phases": (None,),
      "unit": RateUnit.AMPS}, "carries no schedule"),
    ({"grid_critical": 1}, "grid_critical must be true or false"),
    ({"source": "DSO"}, "source: 'DSO' is not one of"),
])
def test_the_contract_refuses_inconsistent_limits(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ContractError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ChargingLimit(**{"charger_id": "CP-1", "ts": RECEIVED, "source": SO, **kwargs})


def test_published_on_the_chargers_events_topic_and_decoded_by_the_pipeline() -> None:
    event, _ = normalize("NotifyChargingLimit", notify())
    topic = topic_for(event)
    assert topic == "flowbank/v1/ev/CP-1/charging_limit"
    decoded = decode_message(topic, encode(event), RECEIVED)
    assert decoded.event == event and decoded.error is None
    wrong = decode_message("flowbank/v1/ev/CP-2/charging_limit", encode(event), RECEIVED)
    assert wrong.event is None and wrong.error is not None and "does not match" in wrong.error.reason


def test_the_bridge_answers_both_calls_and_publishes_them() -> None:
    async def scenario() -> None:
        h = Harness(V201)
        assert await h.call("n1", "NotifyChargingLimit", notify()) == [3, "n1", {}]
        assert await h.call("c1", "ClearedChargingLimit", {"chargingLimitSource": "SO", "evseId": 1}) == [3, "c1", {}]
        for frame in h.ws.sent:
            assert check_payload(V201, "NotifyChargingLimit", frame[2], response=True) is None
        limits = h.of(ChargingLimit)
        assert [(e.cleared, e.connector_id, e.source) for e in limits] == [(False, 1, SO), (True, 1, SO)]
        assert not h.of(DeadLetter)

    asyncio.run(scenario())


@pytest.mark.parametrize(("payload", "code"), [
    ({"evseId": 1}, "OccurrenceConstraintViolation"),  # chargingLimit missing
    ({"chargingLimit": {"chargingLimitSource": "DSO"}}, "PropertyConstraintViolation"),
    ({"chargingLimit": {"chargingLimitSource": "SO"}, "evseId": "1"}, "TypeConstraintViolation"),
    ({"chargingLimit": {"chargingLimitSource": "SO"}, "chargingSchedule": []}, "OccurrenceConstraintViolation"),
    ({"chargingLimit": {"chargingLimitSource": "SO"}, "limit": 16}, "FormatViolation"),
])
def test_a_malformed_notify_gets_a_call_error_and_a_dead_letter(payload: dict[str, Any], code: str) -> None:
    with pytest.raises(FrameError) as caught:
        validate_call(V201, CallFrame("m", "NotifyChargingLimit", payload), frozenset(replies.handlers(V201)))
    assert caught.value.code == code

    async def scenario() -> None:
        h = Harness(V201)
        answer = await h.call("bad", "NotifyChargingLimit", payload)
        assert answer[:3] == [4, "bad", code]
        assert not h.of(ChargingLimit) and len(h.of(DeadLetter)) == 1

    asyncio.run(scenario())


def test_a_malformed_cleared_gets_a_call_error() -> None:
    async def scenario() -> None:
        h = Harness(V201)
        answer = await h.call("bad", "ClearedChargingLimit", {"evseId": 1})
        assert answer[:3] == [4, "bad", "OccurrenceConstraintViolation"]
        assert not h.of(ChargingLimit) and h.of(DeadLetter)

    asyncio.run(scenario())


def test_1_6_does_not_know_these_actions() -> None:
    async def scenario() -> None:
        h = Harness(OcppVersion.V16)
        answer = await h.call("x", "NotifyChargingLimit", notify())
        assert answer[:3] == [4, "x", "NotImplemented"]

    asyncio.run(scenario())


def test_received_time_is_the_bridges_clock() -> None:
    later = RECEIVED + timedelta(hours=1)
    result = normalize_call_detailed(V201, "CP-1", "ClearedChargingLimit", {"chargingLimitSource": "SO"},
                                     received_at=later)
    assert result.events[0].ts == later
