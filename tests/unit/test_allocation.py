"""decide(snapshot, now): readable cases of the load-management policy, one table row each."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from control.allocation import (
    PAUSED_NO_CAPACITY,
    Allocation,
    AllocationParams,
    Binding,
    ConnectorDemand,
    PauseCause,
    SiteControlState,
    Snapshot,
    SnapshotError,
    decide,
    preview_mode_limits,
)
from control.contract import ChargingMode, RateUnit
from control.modes import ModePolicy, PriorityClass
from control.site import (
    BuildingLoadReading,
    Charger,
    Circuit,
    Connector,
    LimitScope,
    OperatorLimit,
    Phase,
    PhaseCurrents,
    Site,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ECO, BOOST, STANDARD = ChargingMode.ECO, ChargingMode.BOOST, ChargingMode.STANDARD
NO_MARGIN = AllocationParams(safety_margin_a=0, deadband_a=0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def main(limit_a: float, **kwargs: object) -> Circuit:
    return Circuit("main", PhaseCurrents.uniform(limit_a), **kwargs)  # type: ignore[arg-type]


def sub(circuit_id: str, limit_a: float, parent: str = "main") -> Circuit:
    return Circuit(circuit_id, PhaseCurrents.uniform(limit_a), parent_id=parent, name=circuit_id.title())


def charger(charger_id: str, circuit: str = "main", max_a: float = 32, **kwargs: object) -> Charger:
    return Charger(charger_id, circuit, max_a, **kwargs)  # type: ignore[arg-type]


def ev(charger_id: str, arrived_s: float = 0, mode: ChargingMode = STANDARD, **kwargs: object) -> ConnectorDemand:
    return ConnectorDemand(charger_id, 1, at(arrived_s), mode=mode, **kwargs)  # type: ignore[arg-type]


def load(l1: float, l2: float, l3: float, age_s: float = 0, circuit: str | None = None) -> BuildingLoadReading:
    return BuildingLoadReading(at(-age_s), PhaseCurrents(l1, l2, l3), circuit_id=circuit)


@dataclass(frozen=True)
class Case:
    name: str
    circuits: tuple[Circuit, ...]
    chargers: tuple[Charger, ...]
    demands: tuple[ConnectorDemand, ...]
    expected: dict[str, tuple[float, str]]  # charger id -> (limit A, reason)
    loads: tuple[BuildingLoadReading, ...] = ()
    params: AllocationParams = NO_MARGIN
    now: datetime = T0
    limits: tuple[OperatorLimit, ...] = ()
    site: dict[str, object] = field(default_factory=dict)
    state: SiteControlState = SiteControlState.NORMAL


CASES = [
    Case(
        "single charger under the main breaker: hardware binds",
        (main(32),),
        (charger("A", max_a=16),),
        (ev("A"),),
        {"A": (16, "Hardware cap is 16 A")},
        params=AllocationParams(),
    ),
    Case(
        "single charger: main breaker minus margin minus building load binds",
        (main(25),),
        (charger("A"),),
        (ev("A"),),
        {"A": (14, "Limited by site")},
        loads=(load(10, 10, 10),),
        params=AllocationParams(safety_margin_a=1),
    ),
    Case(
        "safety margin in percent when larger than the amps margin",
        (main(40),),
        (charger("A"),),
        (ev("A"),),
        {"A": (30, "Limited by site")},
        params=AllocationParams(safety_margin_a=1, safety_margin_pct=25),
    ),
    Case(
        "two chargers share fairly",
        (main(32),),
        (charger("A"), charger("B")),
        (ev("A"), ev("B", arrived_s=60)),
        {"A": (15.5, "Limited by site"), "B": (15.5, "Limited by site")},
        params=AllocationParams(),
    ),
    Case(
        "fair share is max-min: a small cap leaves the rest to the other",
        (main(30),),
        (charger("A", max_a=10), charger("B")),
        (ev("A"), ev("B")),
        {"A": (10, "Hardware cap is 10 A"), "B": (20, "Limited by site")},
    ),
    Case(
        "fair share rounds down to 0.1 A, leftover tenths go in arrival order",
        (main(20),),
        (charger("A"), charger("B"), charger("C")),
        (ev("C", 0), ev("A", 5), ev("B", 9)),
        {"C": (6.7, "Limited by site"), "A": (6.7, "Limited by site"), "B": (6.6, "Limited by site")},
    ),
    Case(
        "Boost takes what is left after everyone's minimum; Eco keeps its minimum",
        (main(32),),
        (charger("A"), charger("B")),
        (ev("A", mode=BOOST), ev("B", mode=ECO)),
        {"A": (26, "Limited by site"), "B": (6, "Limited by site")},
    ),
    Case(
        "Boost at the hardware maximum says Boost, Eco at its cap says Eco mode",
        (main(100),),
        (charger("A"), charger("B")),
        (ev("A", mode=BOOST), ev("B", mode=ECO)),
        {"A": (32, "Boost"), "B": (16, "Eco mode")},
    ),
    Case(
        "a deadline at risk comes before Standard and lifts the Eco cap",
        (main(40),),
        (charger("A"), charger("B")),
        (ev("A", mode=STANDARD), ev("B", mode=ECO, deadline_at_risk=True)),
        {"A": (8, "Limited by site"), "B": (32, "Hardware cap is 32 A")},
    ),
    Case(
        "minimum current: the latest arrival is paused rather than given less than 6 A",
        (main(16),),
        (charger("A"), charger("B"), charger("C")),
        (ev("A", 0), ev("B", 10), ev("C", 20)),
        {"A": (7.5, "Limited by site"), "B": (7.5, "Limited by site"), "C": (0, PAUSED_NO_CAPACITY)},
        params=AllocationParams(deadband_a=0),
    ),
    Case(
        "a higher class pre-empts the minimum of a lower one",
        (main(11),),
        (charger("A"), charger("B")),
        (ev("A", 0, mode=ECO), ev("B", 60, mode=BOOST)),
        {"A": (0, PAUSED_NO_CAPACITY), "B": (11, "Limited by site")},
    ),
    Case(
        "nested circuits: the sub-circuit binds its chargers, the rest goes to the main one",
        (main(40), sub("garage", 20)),
        (charger("A", "garage"), charger("B", "garage"), charger("C")),
        (ev("A"), ev("B"), ev("C")),
        {"A": (10, "Limited by circuit Garage"), "B": (10, "Limited by circuit Garage"), "C": (20, "Limited by site")},
    ),
    Case(
        "three levels: the innermost full circuit is named",
        (main(63), sub("hall", 40), sub("bay", 16, parent="hall")),
        (charger("A", "bay"), charger("B", "hall")),
        (ev("A"), ev("B")),
        {"A": (16, "Limited by circuit Bay"), "B": (24, "Limited by circuit Hall")},
    ),
    Case(
        "a building load on a sub-circuit counts up to the main breaker",
        (main(30), sub("garage", 30)),
        (charger("A", "garage"), charger("B")),
        (ev("A"), ev("B")),
        {"A": (10, "Limited by site"), "B": (10, "Limited by site")},
        loads=(load(10, 10, 10, circuit="garage"),),
    ),
    Case(
        "single-phase charger on L2 against a three-phase building load",
        (main(25),),
        (charger("A", phases=(Phase.L2,)),),
        (ev("A"),),
        {"A": (9, "Limited by site")},
        loads=(load(5, 15, 5),),
        params=AllocationParams(safety_margin_a=1, deadband_a=0),
    ),
    Case(
        "phase rotation: a one-phase car on a charger wired L2-L3-L1 draws on L2",
        (main(25),),
        (charger("A", phases=(Phase.L2, Phase.L3, Phase.L1)), charger("B")),
        (ev("A", phases_in_use=1), ev("B", 5, phases_in_use=1)),
        {"A": (9, "Limited by site"), "B": (19, "Limited by site")},
        loads=(load(5, 15, 5),),
        params=AllocationParams(safety_margin_a=1, deadband_a=0),
    ),
    Case(
        "operator site limit applies before its end",
        (main(63),),
        (charger("A"),),
        (ev("A"),),
        {"A": (10, "Limited by site")},
        limits=(OperatorLimit(LimitScope.SITE, 10, ends_at=at(600)),),
    ),
    Case(
        "operator site limit that has ended no longer applies",
        (main(63),),
        (charger("A"),),
        (ev("A"),),
        {"A": (32, "Hardware cap is 32 A")},
        limits=(OperatorLimit(LimitScope.SITE, 10, ends_at=at(600)),),
        now=at(600),
    ),
    Case(
        "operator charger limit caps the sum of its connectors",
        (main(63),),
        (charger("A"), charger("B")),
        (ev("A"), ev("B")),
        {"A": (12, "Limited by operator"), "B": (32, "Hardware cap is 32 A")},
        limits=(OperatorLimit(LimitScope.CHARGER, 12, target_id="A"),),
    ),
    Case(
        "stale building meter: the site drops to its safe cap",
        (main(63, has_meter=True),),
        (charger("A"),),
        (ev("A"),),
        {"A": (8, "Safe fallback: building meter stale for 45 s")},
        loads=(load(1, 1, 1, age_s=45),),
        site={"meter_timeout_s": 30, "safe_fallback_a": 8},
        state=SiteControlState.SAFE_FALLBACK,
    ),
    Case(
        "missing reading for a metered circuit is stale too",
        (main(63, has_meter=True),),
        (charger("A"),),
        (ev("A"),),
        {"A": (6, "Safe fallback: no building meter reading for main")},
        site={"safe_fallback_a": 6},
        state=SiteControlState.SAFE_FALLBACK,
    ),
    Case(
        "fresh meter: no fallback",
        (main(63, has_meter=True),),
        (charger("A"),),
        (ev("A"),),
        {"A": (32, "Hardware cap is 32 A")},
        loads=(load(1, 1, 1, age_s=20),),
        site={"meter_timeout_s": 30, "safe_fallback_a": 8},
    ),
    Case(
        "rule cap names the rule",
        (main(63),),
        (charger("A"),),
        (ev("A", rule_cap_a=10, rule_reason="Limit to 10 A after 18:00"),),
        {"A": (10, "Limit to 10 A after 18:00")},
    ),
    Case(
        "rule cap below the minimum pauses with the rule's name",
        (main(63),),
        (charger("A"),),
        (ev("A", rule_cap_a=4, rule_reason="Cap demand at 2 kW"),),
        {"A": (0, "Paused: Cap demand at 2 kW (below the 6 A minimum)")},
    ),
    Case(
        "rule pause, user pause, no car, not requesting",
        (main(63),),
        (charger("A"), charger("B"), charger("C"), charger("D")),
        (
            ev("A", rule_pause_reason="Off-peak window 23:00-06:00 for Eco"),
            ev("B", user_paused=True),
            ev("C", ev_connected=False),
            ev("D", wants_energy=False),
        ),
        {
            "A": (0, "Off-peak window 23:00-06:00 for Eco"),
            "B": (0, "Paused by user"),
            "C": (0, "No vehicle connected"),
            "D": (0, "Vehicle is not requesting energy"),
        },
    ),
    Case(
        "cable cap and shared charger supply",
        (main(63),),
        (Charger("A", "main", 32, connectors=(Connector(1, cable_max_a=20), Connector(2)), supply_max_a=30),),
        (ev("A"), ConnectorDemand("A", 2, at(0))),
        {"A": (15, "Limited by the charger's shared supply")},
    ),
    Case(
        "a charger not in the site model gets nothing",
        (main(63),),
        (charger("A"),),
        (ev("Z"),),
        {"Z": (0, "Charger is not in the site model")},
    ),
]


def run(case: Case) -> Allocation:
    site = Site("s1", case.circuits, case.chargers, **case.site)  # type: ignore[arg-type]
    return decide(Snapshot(site, case.demands, case.loads, case.limits, case.params), case.now)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_policy(case: Case) -> None:
    allocation = run(case)
    got = {}
    for c in allocation.connectors:
        if c.connector_id == 1:
            got[c.charger_id] = (c.limit_a, c.reason)
    assert got == case.expected
    assert allocation.state is case.state
    assert all(c.paused == (c.limit_a == 0) for c in allocation.connectors)


def test_cable_cap_reason_when_it_binds_alone() -> None:
    site = Site("s1", (main(63),), (Charger("A", "main", 32, connectors=(Connector(1, cable_max_a=20),)),))
    (result,) = decide(Snapshot(site, (ev("A"),)), T0).connectors
    assert (result.limit_a, result.reason, result.binding_constraint) == (20, "Cable cap is 20 A", Binding.CABLE)


def test_eco_policy_is_configurable_and_never_below_the_minimum() -> None:
    site = Site("s1", (main(63),), (charger("A", max_a=32), charger("B", max_a=10)))
    params = AllocationParams(mode_policy=ModePolicy(eco_fraction=0.5, eco_max_a=12))
    allocation = decide(Snapshot(site, (ev("A", mode=ECO), ev("B", mode=ECO)), params=params), T0)
    assert [c.limit_a for c in allocation.connectors] == [12, 6]  # min(16, 12); max(5, 6)


# --------------------------------------------------------------------------- stale inputs


def test_stale_meter_is_listed_for_the_alert_and_the_audit() -> None:
    site = Site("s1", (main(63, has_meter=True),), (charger("A"),), meter_timeout_s=30, safe_fallback_a=8)
    allocation = decide(Snapshot(site, (ev("A"),), (load(2, 2, 2, age_s=45),)), T0)
    (stale,) = allocation.stale_inputs
    assert (stale.circuit_id, stale.age_s, stale.timeout_s, stale.ts) == ("main", 45, 30, at(-45))
    assert allocation.banner == "Safe fallback: building meter stale for 45 s"
    assert allocation.connector("A", 1).binding_constraint is Binding.SAFE_FALLBACK


def test_fallback_still_respects_the_last_known_load() -> None:
    site = Site("s1", (main(20, has_meter=True),), (charger("A"),), meter_timeout_s=30, safe_fallback_a=16)
    allocation = decide(Snapshot(site, (ev("A"),), (load(12, 12, 12, age_s=45),), params=NO_MARGIN), T0)
    assert allocation.connector("A", 1).limit_a == 8  # 20 - 12 < 16


def test_a_reading_from_the_future_beyond_the_timeout_is_stale() -> None:
    site = Site("s1", (main(63, has_meter=True),), (charger("A"),), meter_timeout_s=30, safe_fallback_a=6)
    allocation = decide(Snapshot(site, (ev("A"),), (load(0, 0, 0, age_s=-120),)), T0)
    assert allocation.state is SiteControlState.SAFE_FALLBACK
    assert allocation.banner == "Safe fallback: building meter clock is 120 s ahead"


def test_newest_reading_wins_and_unknown_circuits_are_ignored_but_audited() -> None:
    site = Site("s1", (main(30),), (charger("A"),))
    loads = (load(20, 20, 20, age_s=10), load(4, 4, 4, age_s=2), load(9, 9, 9, circuit="nowhere"))
    allocation = decide(Snapshot(site, (ev("A"),), loads, params=NO_MARGIN), T0)
    assert allocation.connector("A", 1).limit_a == 26
    assert [(i.kind, i.subject, i.age_s) for i in allocation.inputs if i.kind == "building_load"] == [
        ("building_load", "nowhere", 0.0),
        ("building_load", "main", 2.0),
    ]


# --------------------------------------------------------------------------- deadband and hysteresis


def two_evs(last_a: float, load_a: float = 0) -> Allocation:
    site = Site("s1", (main(32),), (charger("A"), charger("B")))
    demands = (ev("A", last_limit_a=last_a, last_limit_at=at(-60)), ev("B", 5, last_limit_a=15.5))
    params = AllocationParams(safety_margin_a=1, deadband_a=0.5)
    return decide(Snapshot(site, demands, (load(load_a, load_a, load_a),), params=params), T0)


def test_deadband_keeps_the_old_value() -> None:
    allocation = two_evs(last_a=15.3, load_a=0)  # new fair share 15.5: +0.2 is inside the deadband
    a = allocation.connector("A", 1)
    assert (a.limit_a, a.changed, a.held_by_deadband, a.previous_limit_a) == (15.3, False, True, 15.3)
    assert allocation.connector("B", 1).changed is False


def test_deadband_cannot_keep_an_unsafe_value() -> None:
    # The building load rose: the fair share is 15.3; keeping 15.5 would break the main breaker.
    allocation = two_evs(last_a=15.5, load_a=0.4)
    assert [(c.limit_a, c.changed) for c in allocation.connectors] == [(15.3, True), (15.3, True)]


def test_deadband_does_not_hold_a_change_of_a_deadband_or_more() -> None:
    allocation = two_evs(last_a=15.0, load_a=0)
    assert allocation.connector("A", 1).limit_a == 15.5


def test_deadband_does_not_keep_capacity_a_higher_class_waits_for() -> None:
    site = Site("s1", (main(32),), (charger("A"), charger("B"), charger("C")))
    demands = (ev("A", mode=BOOST), ev("B", mode=ECO, last_limit_a=6.3), ev("C", mode=ECO, last_limit_a=5.9))
    allocation = decide(Snapshot(site, demands, params=AllocationParams(safety_margin_a=0, deadband_a=0.5)), T0)
    assert [c.limit_a for c in allocation.connectors] == [20, 6, 6]


def paused_at(last_at: datetime, cause: PauseCause) -> ConnectorDemand:
    return ev("A", last_limit_a=0, last_limit_at=last_at, last_pause_cause=cause)


@pytest.mark.parametrize(
    ("cause", "waited_s", "expected", "reason"),
    [
        (PauseCause.CAPACITY, 30, 0, "Paused: not enough capacity (next try in 30 s)"),
        (PauseCause.CAPACITY, 60, 32, "Hardware cap is 32 A"),
        (PauseCause.RULE, 1, 32, "Hardware cap is 32 A"),
        (PauseCause.USER, 1, 32, "Hardware cap is 32 A"),
    ],
)
def test_hysteresis_on_resume(cause: PauseCause, waited_s: float, expected: float, reason: str) -> None:
    site = Site("s1", (main(63),), (charger("A"),))
    allocation = decide(Snapshot(site, (paused_at(T0, cause),), params=AllocationParams(hysteresis_s=60)), at(waited_s))
    a = allocation.connector("A", 1)
    assert (a.limit_a, a.reason, a.changed) == (expected, reason, expected != 0)
    if expected == 0:
        assert (a.pause_cause, a.binding_constraint) == (PauseCause.CAPACITY, Binding.HYSTERESIS)


def test_pausing_is_never_delayed() -> None:
    site = Site("s1", (main(10),), (charger("A"),))
    demand = ev("A", last_limit_a=16, last_limit_at=at(-1))
    a = decide(Snapshot(site, (demand,), (load(5, 5, 5),), params=AllocationParams()), T0).connector("A", 1)
    assert (a.limit_a, a.paused, a.pause_cause, a.changed) == (0, True, PauseCause.CAPACITY, True)


# --------------------------------------------------------------------------- outputs


def test_circuit_usage_for_the_load_bar() -> None:
    site = Site("s1", (main(40), sub("garage", 20)), (charger("A", "garage", phases=(Phase.L2,)),))
    allocation = decide(Snapshot(site, (ev("A"),), (load(10, 5, 0),), params=AllocationParams()), T0)
    top, garage = allocation.circuits
    assert (top.circuit_id, garage.circuit_id, garage.parent_id, garage.label) == ("main", "garage", "main", "Garage")
    l2 = garage.phases[1]
    assert (l2.phase, l2.limit_a, l2.margin_a, l2.building_load_a, l2.ev_current_a, l2.headroom_a) == (
        Phase.L2,
        20,
        1,
        0,
        19,
        0,
    )
    main_l1, main_l2 = top.phases[0], top.phases[1]
    assert (main_l1.building_load_a, main_l1.ev_current_a, main_l1.utilisation_pct) == (10, 0, 25.0)
    assert (main_l2.ev_current_a, main_l2.headroom_a) == (19, 15)
    assert [(s.charger_id, s.current_a, s.phases) for s in top.shares] == [("A", 19, (Phase.L2,))]


def test_inputs_carry_their_ages_for_the_audit_log() -> None:
    site = Site(
        "s1",
        (main(40),),
        (charger("A"),),
        operator_limits=(OperatorLimit(LimitScope.SITE, 20, ends_at=at(-5), source="DSO"),),
    )
    demand = ev("A", measured_current_a=15.8, last_limit_a=16, last_limit_at=at(-12), phases_in_use=3)
    allocation = decide(Snapshot(site, (demand,), (load(3, 3, 3, age_s=4),)), T0)
    by_kind = {i.kind: i for i in allocation.inputs}
    assert by_kind["building_load"].age_s == 4
    assert by_kind["demand"].age_s == 12 and "measured 15.8 A" in by_kind["demand"].detail
    assert "ended" in by_kind["operator_limit"].detail and "DSO" in by_kind["operator_limit"].detail


def test_to_setpoint() -> None:
    site = Site("s1", (main(40),), (charger("A", phases=(Phase.L3,)),))
    a = decide(Snapshot(site, (ev("A", last_limit_a=10),)), T0).connector("A", 1)
    setpoint = a.to_setpoint(site_id="s1", decision_id="d-1", ts=T0)
    assert (setpoint.limit, setpoint.unit, setpoint.phases, setpoint.previous_limit, setpoint.reason) == (
        32,
        RateUnit.AMPS,
        1,
        10,
        "Hardware cap is 32 A",
    )


def test_preview_mode_limits_for_the_eta_chip() -> None:
    site = Site("s1", (main(32),), (charger("A"), charger("B")))
    snapshot = Snapshot(site, (ev("A"), ev("B", 5)), params=NO_MARGIN)
    assert preview_mode_limits(snapshot, T0, "A", 1) == {STANDARD: 16, ECO: 6, BOOST: 26}
    with pytest.raises(SnapshotError):
        preview_mode_limits(snapshot, T0, "Z", 1)


def test_priority_is_reported() -> None:
    site = Site("s1", (main(63),), (charger("A"),))
    a = decide(Snapshot(site, (ev("A", deadline_at_risk=True),)), T0).connector("A", 1)
    assert a.priority is PriorityClass.DEADLINE


# --------------------------------------------------------------------------- contract of the inputs


def test_duplicate_demands_are_refused() -> None:
    site = Site("s1", (main(63),), (charger("A"),))
    with pytest.raises(SnapshotError, match=r"duplicate demands for \['A/1'\]"):
        Snapshot(site, (ev("A"), ev("A", 5)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_current_a": 0}, "min_current_a must be > 0"),
        ({"deadband_a": -1}, "deadband_a must be a finite number >= 0"),
        ({"safety_margin_pct": 100}, "safety_margin_pct < 100"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        AllocationParams(**kwargs)  # type: ignore[arg-type]


def test_now_must_be_utc() -> None:
    site = Site("s1", (main(63),), (charger("A"),))
    with pytest.raises(ValueError, match="UTC"):
        decide(Snapshot(site), datetime(2024, 5, 1, 12, 0))  # noqa: DTZ001 - the point of the test


def test_same_snapshot_same_result_whatever_the_input_order() -> None:
    site = Site("s1", (main(40), sub("garage", 20)), (charger("A", "garage"), charger("B", "garage"), charger("C")))
    demands = (ev("A", 3), ev("B", 3, mode=ECO), ev("C", 1, mode=BOOST))
    loads = (load(3, 4, 5), load(1, 1, 1, circuit="garage"))
    first = decide(Snapshot(site, demands, loads), T0)
    again = decide(Snapshot(dataclasses.replace(site, chargers=site.chargers[::-1]), demands[::-1], loads[::-1]), T0)
    assert first == again
