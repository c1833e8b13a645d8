"""Charging-profile obedience: parsing, composition, unit conversion, reaction delay and ramp."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from control.contract import RateUnit
from ingest.sim.profiles import (
    Actuator,
    Constraint,
    Profile,
    ProfileError,
    ProfileStore,
    Purpose,
    active_period,
    native_limit,
    parse_profile,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def p16(pid: int, purpose: str, limit: float, *, stack: int = 0, unit: str = "A", kind: str = "Absolute",
        duration: int | None = None, periods: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    schedule: dict[str, Any] = {"charging_rate_unit": unit,
                                "charging_schedule_period": periods or [{"start_period": 0, "limit": limit}]}
    if duration is not None:
        schedule["duration"] = duration
    return {"charging_profile_id": pid, "stack_level": stack, "charging_profile_purpose": purpose,
            "charging_profile_kind": kind, "charging_schedule": schedule, **extra}


def limits(store: ProfileStore, at: datetime, *, connector: int = 1, tx_id: str | None = "7",
           tx_start: datetime | None = T0) -> list[tuple[Purpose, float]]:
    return [(c.purpose, c.limit) for c in store.constraints(connector, at, tx_id=tx_id, tx_start=tx_start)]


def limit_at(profile: Profile, at: datetime, tx_start: datetime | None) -> float | None:
    period = active_period(profile, at, tx_start)
    return period.limit if period else None


def test_parse_16_with_decimals_and_201_shapes() -> None:
    raw16 = p16(3, "TxDefaultProfile", 0, periods=[{"start_period": 0, "limit": Decimal("16.5"), "number_phases": 1}])
    profile = parse_profile(raw16, connector_id=0, received_at=T0)
    assert (profile.id, profile.purpose, profile.unit, profile.periods[0].limit) == (
        3, Purpose.TX_DEFAULT, RateUnit.AMPS, 16.5)
    assert profile.periods[0].phases == 1
    raw201 = {"id": 9, "stack_level": 2, "charging_profile_purpose": "ChargingStationMaxProfile",
              "charging_profile_kind": "Absolute", "charging_schedule": [
                  {"id": 1, "charging_rate_unit": "W", "start_schedule": "2026-03-01T12:00:00Z",
                   "charging_schedule_period": [{"start_period": 0, "limit": 11000.0}]}]}
    profile = parse_profile(raw201, connector_id=0, received_at=T0)
    assert (profile.id, profile.purpose, profile.unit, profile.start_schedule) == (9, Purpose.STATION_MAX,
                                                                                   RateUnit.WATTS, T0)


@pytest.mark.parametrize("raw", [
    p16(1, "ChargingStationExternalConstraints", 10),
    p16(1, "TxProfile", -1),
    p16(1, "TxProfile", 10, stack=99),
    {"charging_profile_id": 1},
])
def test_unusable_profiles_are_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ProfileError):
        parse_profile(raw, connector_id=1, received_at=T0)


def test_station_max_and_tx_default_both_apply() -> None:
    store = ProfileStore()
    store.install(parse_profile(p16(1, "ChargePointMaxProfile", 16), connector_id=0, received_at=T0))
    store.install(parse_profile(p16(2, "TxDefaultProfile", 10), connector_id=0, received_at=T0))
    assert limits(store, T0) == [(Purpose.STATION_MAX, 16.0), (Purpose.TX_DEFAULT, 10.0)]


def test_tx_profile_beats_tx_default_only_for_its_transaction() -> None:
    store = ProfileStore()
    store.install(parse_profile(p16(2, "TxDefaultProfile", 10), connector_id=0, received_at=T0))
    store.install(parse_profile(p16(3, "TxProfile", 20, transaction_id=7), connector_id=1, received_at=T0))
    assert limits(store, T0, tx_id="7") == [(Purpose.TX, 20.0)]
    assert limits(store, T0, tx_id="8") == [(Purpose.TX_DEFAULT, 10.0)]
    assert limits(store, T0, tx_id=None) == [(Purpose.TX_DEFAULT, 10.0)]
    store.end_transaction(1)
    assert limits(store, T0, tx_id="7") == [(Purpose.TX_DEFAULT, 10.0)]


def test_highest_active_stack_level_wins_and_expiry_falls_back() -> None:
    store = ProfileStore()
    store.install(parse_profile(p16(1, "TxDefaultProfile", 32, stack=0), connector_id=0, received_at=T0))
    store.install(parse_profile(p16(2, "TxDefaultProfile", 8, stack=1, duration=600), connector_id=0,
                                received_at=T0))
    assert limits(store, T0 + timedelta(seconds=599)) == [(Purpose.TX_DEFAULT, 8.0)]
    assert limits(store, T0 + timedelta(seconds=600)) == [(Purpose.TX_DEFAULT, 32.0)]


def test_connector_default_outranks_station_wide_default_at_same_level() -> None:
    store = ProfileStore()
    store.install(parse_profile(p16(1, "TxDefaultProfile", 32), connector_id=0, received_at=T0))
    store.install(parse_profile(p16(2, "TxDefaultProfile", 12), connector_id=2, received_at=T0))
    assert limits(store, T0, connector=2) == [(Purpose.TX_DEFAULT, 12.0)]
    assert limits(store, T0, connector=1) == [(Purpose.TX_DEFAULT, 32.0)]


def test_schedule_periods_relative_and_recurring() -> None:
    periods = [{"start_period": 0, "limit": 6}, {"start_period": 3600, "limit": 16}]
    relative = parse_profile(p16(1, "TxProfile", 0, kind="Relative", periods=periods), connector_id=1,
                             received_at=T0)
    tx_start = T0 + timedelta(minutes=30)
    assert limit_at(relative, tx_start + timedelta(minutes=59), tx_start) == 6
    assert limit_at(relative, tx_start + timedelta(minutes=61), tx_start) == 16
    assert active_period(relative, T0, None) is None  # no transaction, no schedule
    night = [{"start_period": 0, "limit": 32}, {"start_period": 6 * 3600, "limit": 10}]
    daily = parse_profile({**p16(2, "TxDefaultProfile", 0, kind="Recurring", periods=night),
                           "recurrency_kind": "Daily"}, connector_id=0, received_at=T0)
    assert limit_at(daily, T0 + timedelta(days=3, hours=1), None) == 32
    assert limit_at(daily, T0 + timedelta(days=3, hours=7), None) == 10


def test_clear_by_id_or_by_criteria() -> None:
    store = ProfileStore()
    store.install(parse_profile(p16(1, "TxDefaultProfile", 10), connector_id=0, received_at=T0))
    store.install(parse_profile(p16(2, "TxDefaultProfile", 12, stack=1), connector_id=1, received_at=T0))
    store.install(parse_profile(p16(3, "ChargePointMaxProfile", 30), connector_id=0, received_at=T0))
    assert store.clear(profile_id=99) == 0
    assert store.clear(purpose=Purpose.TX_DEFAULT, connector_id=1) == 1
    assert store.clear(profile_id=3) == 1
    assert [p.id for p in store.profiles] == [1]


def test_same_purpose_and_stack_level_replaces() -> None:
    store = ProfileStore()
    store.install(parse_profile(p16(1, "TxDefaultProfile", 10), connector_id=0, received_at=T0))
    store.install(parse_profile(p16(2, "TxDefaultProfile", 12), connector_id=0, received_at=T0))
    assert [p.id for p in store.profiles] == [2]


@pytest.mark.parametrize(("limit", "unit", "phases", "dc", "expected"), [
    (16.0, RateUnit.AMPS, None, False, 16.0),
    (11_040.0, RateUnit.WATTS, None, False, 16.0),  # numberPhases absent: 3 phases
    (3_680.0, RateUnit.WATTS, 1, False, 16.0),
    (50_000.0, RateUnit.WATTS, None, True, 50_000.0),
    (100.0, RateUnit.AMPS, None, True, 40_000.0),  # DC amps at 400 V
])
def test_native_limit_conversion(limit: float, unit: RateUnit, phases: int | None, dc: bool,
                                 expected: float) -> None:
    constraint = Constraint(1, Purpose.TX_DEFAULT, limit, unit, phases)
    assert native_limit(constraint, dc=dc, phases=3, voltage_v=400.0 if dc else 230.0) == pytest.approx(expected)


def test_single_phase_connector_spreads_watts_over_one_phase() -> None:
    constraint = Constraint(1, Purpose.TX_DEFAULT, 3_680.0, RateUnit.WATTS, None)
    assert native_limit(constraint, dc=False, phases=1, voltage_v=230.0) == pytest.approx(16.0)


def test_actuator_waits_for_the_reaction_delay_then_ramps() -> None:
    act = Actuator(32.0, T0, reaction_delay_s=1.5, ramp_per_s=10.0)
    act.command(16.0, T0)
    at = [act.value_at(T0 + timedelta(seconds=s)) for s in (0.0, 1.0, 1.5, 2.3, 3.1, 10.0)]
    assert at == pytest.approx([32.0, 32.0, 32.0, 24.0, 16.0, 16.0])
    act.settle(T0 + timedelta(seconds=2.0))
    assert act.value_at(T0 + timedelta(seconds=2.3)) == pytest.approx(24.0)  # settling changes nothing
    act.command(16.0, T0 + timedelta(seconds=5))  # same command again: ignored
    assert act.pending == []


def test_actuator_follows_a_sequence_of_commands() -> None:
    act = Actuator(10.0, T0, reaction_delay_s=1.0, ramp_per_s=4.0)
    act.command(20.0, T0)  # effective at 1 s, ramps up 4 A/s
    act.command(6.0, T0 + timedelta(seconds=2))  # effective at 3 s: from 18 A down to 6 A in 3 s
    values = [act.value_at(T0 + timedelta(seconds=s)) for s in (1.0, 2.0, 3.0, 4.0, 6.0)]
    assert values == pytest.approx([10.0, 14.0, 18.0, 14.0, 6.0])
    act.settle(T0 + timedelta(seconds=4))
    assert act.value_at(T0 + timedelta(seconds=6)) == pytest.approx(6.0)
