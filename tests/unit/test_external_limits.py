"""control.external_limits and the allocation's external caps: what a grid operator's or an EMS's
limit (reported by the charger) does to a site's decision. Pure: no services."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control import contract as c
from control import external_limits as ext
from control.allocation import (
    Binding,
    ConnectorDemand,
    ExternalCap,
    PauseCause,
    Snapshot,
    SnapshotError,
    decide,
)
from control.site import site_from_mapping

T0 = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
SO, EMS = c.ChargingLimitSource.SO, c.ChargingLimitSource.EMS

SITE = site_from_mapping({
    "site_id": "s", "circuits": [{"id": "main", "limit_a": 33}],
    "chargers": [{"id": "A", "circuit": "main", "max_current_a": 32},
                 {"id": "B", "circuit": "main", "max_current_a": 32},
                 {"id": "D", "circuit": "main", "max_current_a": 32, "connectors": [{"id": 1}, {"id": 2}]},
                 {"id": "S", "circuit": "main", "max_current_a": 32, "phases": "L2"}],
})


def limit_event(charger: str = "A", *, source: c.ChargingLimitSource = SO, evse: int = 1, unit: str = "A",
                limits: tuple[float, ...] = (8.0,), starts: tuple[int, ...] | None = None,
                phases: tuple[int | None, ...] | None = None, duration_s: int | None = None, at: datetime = T0,
                starts_at: datetime | None = None, critical: bool = False) -> c.ChargingLimit:
    return c.ChargingLimit(
        charger, at, source, connector_id=evse, grid_critical=critical, unit=c.RateUnit(unit), starts_at=starts_at,
        duration_s=duration_s, period_starts_s=starts or tuple(range(0, 60 * len(limits), 60)),
        period_limits=limits, period_phases=phases or (None,) * len(limits))


def cleared(charger: str = "A", *, source: c.ChargingLimitSource = SO, evse: int = 0) -> c.ChargingLimit:
    return c.ChargingLimit(charger, T0, source, cleared=True, connector_id=evse)


def demands(*keys: tuple[str, int], **kw: Any) -> tuple[ConnectorDemand, ...]:
    return tuple(ConnectorDemand(ch, n, T0 + timedelta(seconds=i), **kw) for i, (ch, n) in enumerate(keys))


def allocate(limits: dict[ext.LimitKey, ext.ExternalLimit], *keys: tuple[str, int], at: datetime = T0,
             phases: dict[tuple[str, int], int] | None = None) -> dict[tuple[str, int], Any]:
    snapshot = Snapshot(SITE, demands(*keys), external_caps=ext.caps(limits, at, SITE, phases or {}))
    allocation = decide(snapshot, at)
    return {(a.charger_id, a.connector_id): a for a in allocation.connectors}


def with_limits(*events: c.ChargingLimit) -> dict[ext.LimitKey, ext.ExternalLimit]:
    limits: dict[ext.LimitKey, ext.ExternalLimit] = {}
    for event in events:
        limits, _ = ext.apply_event(limits, event)
    return limits


# --------------------------------------------------------------------------- the limits kept


def test_a_schedule_becomes_periods_in_utc_and_ends_after_its_duration() -> None:
    limit = ext.from_event(limit_event(limits=(10.0, 6.0), starts=(0, 300), duration_s=900,
                                       starts_at=T0 + timedelta(seconds=60)))
    assert limit is not None
    start = T0 + timedelta(seconds=60)
    assert [p.start for p in limit.periods] == [start, start + timedelta(seconds=300)]
    assert limit.ends_at == start + timedelta(seconds=900)
    assert limit.period_at(T0) is None  # not started yet: no cap
    assert limit.period_at(start).limit == 10.0  # type: ignore[union-attr]
    assert limit.period_at(start + timedelta(seconds=899)).limit == 6.0  # type: ignore[union-attr]
    assert limit.period_at(start + timedelta(seconds=900)) is None
    assert limit.next_change(T0) == start
    assert limit.next_change(start) == start + timedelta(seconds=300)
    assert limit.next_change(start + timedelta(seconds=300)) == limit.ends_at
    assert limit.next_change(limit.ends_at) is None  # type: ignore[arg-type]


def test_same_source_replaces_other_sources_add_up_and_cleared_removes() -> None:
    limits, changes = ext.apply_event({}, limit_event(limits=(10.0,)))
    assert [ch.kind for ch in changes] == [ext.ChangeKind.SET] and changes[0].previous is None
    limits, changes = ext.apply_event(limits, limit_event(limits=(8.0,)))
    assert changes[0].previous is not None and changes[0].previous.periods[0].limit == 10.0
    limits, _ = ext.apply_event(limits, limit_event(source=EMS, limits=(12.0,)))
    limits, _ = ext.apply_event(limits, limit_event(evse=0, limits=(20.0,)))
    assert sorted(limits) == [("A", 0, "SO"), ("A", 1, "EMS"), ("A", 1, "SO")]
    # A Cleared for EVSE 1 ends that EVSE's limit from that source only.
    after, changes = ext.apply_event(limits, cleared(evse=1))
    assert sorted(after) == [("A", 0, "SO"), ("A", 1, "EMS")]
    assert [ch.limit.key for ch in changes] == [("A", 1, "SO")]
    # Without an EVSE: every limit of that source on the charger.
    after, changes = ext.apply_event(limits, cleared())
    assert sorted(after) == [("A", 1, "EMS")]
    assert {ch.kind for ch in changes} == {ext.ChangeKind.CLEARED} and len(changes) == 2
    # Another charger's or source's Cleared changes nothing.
    assert ext.apply_event(limits, cleared("B"))[0] == limits
    assert ext.apply_event(limits, cleared(source=c.ChargingLimitSource.CSO))[1] == []


def test_expire_removes_what_ran_out() -> None:
    limits = with_limits(limit_event(duration_s=30), limit_event("B"))
    kept, ended = ext.expire(limits, T0 + timedelta(seconds=29))
    assert kept == limits and ended == []
    kept, ended = ext.expire(limits, T0 + timedelta(seconds=30))
    assert list(kept) == [("B", 1, "SO")] and [ch.limit.key for ch in ended] == [("A", 1, "SO")]
    assert ended[0].kind is ext.ChangeKind.ENDED


@pytest.mark.parametrize(("watts", "evse", "phases_in_use", "period_phases", "charger", "expected_a"), [
    (11_040, 1, None, None, "A", 16.0),  # 3 x 230 V: 11040 W is 16 A per phase
    (11_000, 1, None, None, "A", 15.9),  # rounded down, never up
    (7_360, 1, 1, None, "A", 32.0),  # the car draws on one phase: all of it on that phase
    (7_360, 1, None, 1, "A", 32.0),  # the period says one phase
    (11_040, 0, 1, None, "A", 16.0),  # the whole charger: over every phase it is wired for
    (3_680, 1, None, 3, "S", 16.0),  # never more phases than the charger has (single phase on L2)
])
def test_a_limit_in_watts_becomes_amps_per_phase(watts: float, evse: int, phases_in_use: int | None,
                                                 period_phases: int | None, charger: str, expected_a: float) -> None:
    limits = with_limits(limit_event(charger, evse=evse, unit="W", limits=(watts,), phases=(period_phases,)))
    in_use = {(charger, 1): phases_in_use} if phases_in_use else {}
    (cap,) = ext.caps(limits, T0, SITE, in_use)
    assert cap.limit_a == expected_a
    assert cap.reason == "Limited by grid operator (SO)"
    assert f"SO: {watts:g} W" in cap.detail


def test_no_cap_without_a_value_before_the_start_or_for_an_unknown_charger() -> None:
    unknown_value = c.ChargingLimit("A", T0, SO, connector_id=1, grid_critical=True)
    later = limit_event("B", starts_at=T0 + timedelta(minutes=5))
    elsewhere = limit_event("Z")
    limits = with_limits(unknown_value, later, elsewhere)
    assert ext.caps(limits, T0, SITE, {}) == ()
    assert limits[("A", 1, "SO")].describe(T0) == "SO: value not reported, grid critical"
    assert [cap.charger_id for cap in ext.caps(limits, T0 + timedelta(minutes=5), SITE, {})] == ["B"]  # Z: not here


def test_absurd_values_neither_crash_nor_bind() -> None:
    far = c.ChargingLimit("A", T0, SO, connector_id=1, unit=c.RateUnit.AMPS, duration_s=10**15,
                          period_starts_s=(0, 10**15), period_limits=(1e308, 6.0), period_phases=(None, None))
    limit = ext.from_event(far)
    assert limit is not None and len(limit.periods) == 1 and limit.ends_at is None  # beyond year 9999: never
    (cap,) = ext.caps({limit.key: limit}, T0, SITE, {})
    assert cap.limit_a == ext.MAX_CAP_A
    assert allocate({limit.key: limit}, ("A", 1))[("A", 1)].reason == "Hardware cap is 32 A"


# --------------------------------------------------------------------------- what the allocation makes of them


def test_the_capped_connector_never_gets_more_and_the_others_get_what_it_cannot_use() -> None:
    assert {k: a.limit_a for k, a in allocate({}, ("A", 1), ("B", 1)).items()} == {("A", 1): 16.0, ("B", 1): 16.0}
    result = allocate(with_limits(limit_event(limits=(8.0,))), ("A", 1), ("B", 1))
    capped, other = result[("A", 1)], result[("B", 1)]
    assert (capped.limit_a, capped.reason, capped.binding_constraint) == (
        8.0, "Limited by grid operator (SO)", Binding.EXTERNAL)
    assert (other.limit_a, other.reason) == (24.0, "Limited by site")  # 32 A of room minus A's 8 A


def test_a_whole_charger_limit_caps_the_sum_of_its_connectors() -> None:
    result = allocate(with_limits(limit_event("D", evse=0, source=EMS, limits=(20.0,))), ("D", 1), ("D", 2), ("A", 1))
    assert result[("D", 1)].limit_a + result[("D", 2)].limit_a == 20.0
    assert result[("D", 1)].reason == "Limited by energy management system (EMS)"
    assert result[("D", 1)].binding_id == "D"
    assert result[("A", 1)].limit_a == 12.0  # the rest of the 32 A


def test_the_lowest_of_several_sources_binds_and_names_itself() -> None:
    limits = with_limits(limit_event(limits=(12.0,)), limit_event(source=EMS, limits=(10.0,)),
                         limit_event(evse=0, source=c.ChargingLimitSource.CSO, limits=(14.0,)))
    result = allocate(limits, ("A", 1))
    assert (result[("A", 1)].limit_a, result[("A", 1)].reason) == (10.0, "Limited by energy management system (EMS)")


def test_below_the_minimum_current_pauses_with_the_sources_name() -> None:
    result = allocate(with_limits(limit_event(limits=(4.0,))), ("A", 1), ("B", 1))
    paused = result[("A", 1)]
    assert (paused.limit_a, paused.paused, paused.pause_cause) == (0.0, True, PauseCause.LIMIT)
    assert paused.reason == "Paused: Limited by grid operator (SO) (below the 6 A minimum)"
    assert result[("B", 1)].limit_a == 32.0  # everything goes to the other car
    whole = allocate(with_limits(limit_event("D", evse=0, limits=(0.0,))), ("D", 1), ("D", 2))
    assert all(a.paused and "grid operator (SO)" in a.reason for a in whole.values())


def test_a_schedule_steps_and_ends_and_the_cap_follows() -> None:
    limits = with_limits(limit_event(limits=(10.0, 6.0), starts=(0, 300), duration_s=600))
    at = [T0, T0 + timedelta(seconds=300), T0 + timedelta(seconds=600)]
    assert [allocate(limits, ("A", 1), at=t)[("A", 1)].limit_a for t in at] == [10.0, 6.0, 32.0]


def test_cleared_gives_the_capacity_back() -> None:
    limits = with_limits(limit_event(limits=(8.0,)))
    limits, _ = ext.apply_event(limits, cleared(evse=1))
    assert {k: a.limit_a for k, a in allocate(limits, ("A", 1), ("B", 1)).items()} == {("A", 1): 16.0,
                                                                                     ("B", 1): 16.0}


def test_the_audit_inputs_list_every_cap() -> None:
    snapshot = Snapshot(SITE, demands(("A", 1)), external_caps=ext.caps(
        with_limits(limit_event(unit="W", limits=(5520.0,), critical=True)), T0, SITE, {}))
    records = [r for r in decide(snapshot, T0).inputs if r.kind == "external_limit"]
    assert [(r.subject, r.detail) for r in records] == [
        ("A/1", "8 A: Limited by grid operator (SO) (SO: 5520 W, grid critical)")]


def test_external_caps_are_checked() -> None:
    with pytest.raises(SnapshotError, match="must be >= 0 A"):
        ExternalCap("A", 1, -1.0, "Limited by grid operator (SO)")
    with pytest.raises(SnapshotError, match="needs a reason"):
        ExternalCap("A", 1, 1.0, "")


caps_strategy = st.lists(st.tuples(st.sampled_from(["A", "B", "D", "S"]), st.integers(0, 2),
                                   st.floats(0, 40, allow_nan=False), st.sampled_from(list(c.ChargingLimitSource))),
                         max_size=6)


@settings(max_examples=150, deadline=None)
@given(raw=caps_strategy, seed=st.integers(0, 1000))
def test_no_connector_ever_exceeds_an_external_cap_and_the_order_of_inputs_does_not_matter(
        raw: list[tuple[str, int, float, c.ChargingLimitSource]], seed: int) -> None:
    caps = [ExternalCap(ch, n, round(limit, 1), ext.limit_reason(src)) for ch, n, limit, src in raw]
    keys = [("A", 1), ("B", 1), ("D", 1), ("D", 2), ("S", 1)]
    allocation = decide(Snapshot(SITE, demands(*keys), external_caps=tuple(caps)), T0)
    shuffled = caps[:]
    random.Random(seed).shuffle(shuffled)
    again = decide(Snapshot(SITE, demands(*keys), external_caps=tuple(shuffled)), T0)
    assert again.connectors == allocation.connectors
    by_key = {(a.charger_id, a.connector_id): a.limit_a for a in allocation.connectors}
    for cap in caps:
        if cap.connector_id == 0:
            assert sum(v for k, v in by_key.items() if k[0] == cap.charger_id) <= cap.limit_a + 1e-9
        elif (cap.charger_id, cap.connector_id) in by_key:
            assert by_key[(cap.charger_id, cap.connector_id)] <= cap.limit_a + 1e-9
    assert sum(by_key.values()) <= 32.0 + 1e-9  # and the breaker holds as ever
