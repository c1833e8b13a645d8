"""The site model: validation with clear messages, the tree, and the TOML/JSON mapping."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from control.contract import BuildingLoad
from control.site import (
    ALL_PHASES,
    Charger,
    Circuit,
    Connector,
    LimitScope,
    OperatorLimit,
    Phase,
    PhaseCurrents,
    Site,
    SiteModelError,
    reading_from_event,
    site_from_mapping,
    site_to_mapping,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def circuit(circuit_id: str, parent: str | None = None, limit_a: float = 32) -> Circuit:
    return Circuit(circuit_id, PhaseCurrents.uniform(limit_a), parent_id=parent)


def test_tree_paths_run_from_the_circuit_up_to_the_main_breaker() -> None:
    site = Site("s1", (circuit("bay", "hall"), circuit("main"), circuit("hall", "main")), (Charger("A", "bay", 16),))
    assert site.main_breaker.circuit_id == "main"
    assert site.path_to_main("bay") == ("bay", "hall", "main")
    assert site.path_to_main("main") == ("main",)
    assert site.charger("A") is not None and site.charger("Z") is None
    assert site.circuit("hall") is not None and site.circuit("nope") is None


@pytest.mark.parametrize(
    ("circuits", "chargers", "limits", "message"),
    [
        ((circuit("main"), circuit("main")), (), (), "duplicate circuit id main"),
        ((circuit("main"), circuit("a", "ghost")), (), (), "circuit a has unknown parent ghost"),
        ((circuit("main"), circuit("a", "b"), circuit("b", "a")), (), (), r"circuit cycle a -> b -> a"),
        ((circuit("a", "b"), circuit("b", "a")), (), (), r"exactly one main breaker .* found none"),
        ((circuit("m1"), circuit("m2")), (), (), r"exactly one main breaker .* found \['m1', 'm2'\]"),
        ((circuit("main"),), (Charger("A", "main", 16), Charger("A", "main", 16)), (), "duplicate charger id A"),
        ((circuit("main"),), (Charger("A", "garage", 16),), (), "charger A is on unknown circuit garage"),
        (
            (circuit("main"),),
            (),
            (OperatorLimit(LimitScope.CHARGER, 10, target_id="Z"),),
            "operator limit for unknown charger Z",
        ),
    ],
)
def test_invalid_sites_are_refused_with_a_clear_message(
    circuits: tuple[Circuit, ...], chargers: tuple[Charger, ...], limits: tuple[OperatorLimit, ...], message: str
) -> None:
    with pytest.raises(SiteModelError, match=message):
        Site("s1", circuits, chargers, limits)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: PhaseCurrents(10, -1, 10), r"current on L2 must be a finite number >= 0 A, got -1"),
        (lambda: PhaseCurrents(float("nan"), 1, 1), "current on L1 must be a finite number"),
        (lambda: Circuit("a", PhaseCurrents(), parent_id="a"), "circuit a is its own parent"),
        (lambda: Charger("A", "main", -16), r"charger A: max_current_a must be a finite number >= 0 A"),
        (lambda: Charger("A", "main", 16, phases=(Phase.L1, Phase.L1)), "phases must be 1 to 3 distinct phases"),
        (lambda: Charger("A", "main", 16, phases=()), "phases must be 1 to 3 distinct phases"),
        (lambda: Charger("A", "main", 16, connectors=(Connector(1), Connector(1))), "duplicate connector ids"),
        (lambda: Charger("A", "main", 16, connectors=()), "has no connectors"),
        (lambda: Connector(0), "connector_id must be an integer >= 1"),
        (lambda: Connector(1, cable_max_a=-2), "cable_max_a must be a finite number >= 0"),
        (lambda: OperatorLimit(LimitScope.SITE, -1), "operator limit_a must be a finite number >= 0"),
        (lambda: OperatorLimit(LimitScope.CHARGER, 10), "target_id"),
        (lambda: OperatorLimit(LimitScope.SITE, 10, target_id="A"), "has no target_id"),
        (
            lambda: OperatorLimit(LimitScope.SITE, 10, ends_at=datetime(2024, 5, 1)),  # noqa: DTZ001
            "ends_at must be a timezone-aware UTC datetime",
        ),
        (lambda: Site("", (circuit("main"),)), "site_id must be a non-empty id"),
        (lambda: Site("s1", (circuit("main"),), meter_timeout_s=0), "meter_timeout_s must be > 0"),
        (lambda: Site("s1", (circuit("main"),), safe_fallback_a=-1), "safe_fallback_a must be a finite number"),
    ],
)
def test_invalid_elements_are_refused(build: Any, message: str) -> None:
    with pytest.raises(SiteModelError, match=message):
        build()


def test_site_model_error_is_a_value_error() -> None:
    assert issubclass(SiteModelError, ValueError)


def test_an_operator_limit_no_longer_applies_once_it_has_ended() -> None:
    limit = OperatorLimit(LimitScope.SITE, 10, ends_at=T0)
    assert limit.applies_at(T0 - timedelta(seconds=1))
    assert not limit.applies_at(T0)
    assert OperatorLimit(LimitScope.SITE, 10).applies_at(T0 + timedelta(days=999))


@pytest.mark.parametrize(
    ("currents", "power_w", "expected"),
    [
        ((10.0, 5.0, 0.0), 3450.0, (10.0, 5.0, 0.0)),
        ((None, None, None), 2300.0, (10.0, 10.0, 10.0)),  # unknown split: the worst case on each phase
        ((4.0, None, -3.0), 1150.0, (4.0, 5.0, 0.0)),  # export is not headroom
    ],
)
def test_reading_from_a_building_load_event(
    currents: tuple[float | None, ...], power_w: float, expected: tuple[float, ...]
) -> None:
    event = BuildingLoad(
        site_id="s1",
        ts=T0,
        power_w=power_w,
        circuit_id="garage",
        current_l1_a=currents[0],
        current_l2_a=currents[1],
        current_l3_a=currents[2],
        source="hems",
    )
    reading = reading_from_event(event)
    assert reading.currents.as_tuple() == pytest.approx(expected)
    assert (reading.ts, reading.circuit_id, reading.source) == (T0, "garage", "hems")


SITE_TOML = """
site_id = "depot-1"
name = "Depot"
meter_timeout_s = 30
safe_fallback_a = 6

[[circuits]]
id = "main"
limit_a = 63
has_meter = true

[[circuits]]
id = "garage"
parent = "main"
name = "Garage sub-panel"
limit_a = [32, 32, 20]

[[chargers]]
id = "CP-1"
circuit = "garage"
max_current_a = 32
phases = ["L2", "L3", "L1"]
supply_max_a = 32
connectors = [{ id = 1, cable_max_a = 20 }, { id = 2 }]

[[chargers]]
id = "CP-2"
circuit = "main"
max_current_a = 16
phases = "l2"

[[operator_limits]]
scope = "charger"
target = "CP-1"
limit_a = 16
ends_at = 2024-05-01T20:00:00+02:00
source = "back office"

[[operator_limits]]
scope = "site"
limit_a = 40
"""


def test_site_from_toml() -> None:
    site = site_from_mapping(tomllib.loads(SITE_TOML))
    assert (site.site_id, site.name, site.meter_timeout_s, site.safe_fallback_a, site.voltage_v) == (
        "depot-1",
        "Depot",
        30,
        6,
        230,
    )
    garage = site.circuit("garage")
    assert garage is not None and garage.limit_a == PhaseCurrents(32, 32, 20) and garage.label == "Garage sub-panel"
    cp1, cp2 = site.chargers
    assert cp1.phases == (Phase.L2, Phase.L3, Phase.L1) and cp1.supply_max_a == 32
    assert cp1.connectors == (Connector(1, 20), Connector(2))
    assert cp2.phases == (Phase.L2,) and cp2.connectors == (Connector(1),)
    charger_limit, site_limit = site.operator_limits
    assert charger_limit.ends_at == datetime(2024, 5, 1, 18, 0, tzinfo=UTC)
    assert charger_limit.ends_at.tzinfo is UTC
    assert (site_limit.scope, site_limit.target_id, site_limit.ends_at) == (LimitScope.SITE, None, None)


def test_mapping_round_trip_through_json_shapes() -> None:
    site = site_from_mapping(tomllib.loads(SITE_TOML))
    assert site_from_mapping(site_to_mapping(site)) == site


def test_defaults_of_a_minimal_mapping() -> None:
    site = site_from_mapping(
        {
            "site_id": "s",
            "circuits": [{"id": "main", "limit_a": 25}],
            "chargers": [{"id": "A", "circuit": "main", "max_current_a": 16}],
        }
    )
    assert site.chargers[0].phases == ALL_PHASES
    assert (site.meter_timeout_s, site.safe_fallback_a) == (60, 0)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"limt_a": 5}, r"site: unknown keys \['limt_a'\]"),
        ({"circuits": [{"id": "main", "limit_a": "63"}]}, r"circuits\[0\].limit_a: expected a number, got .63."),
        ({"circuits": [{"id": "main", "limit_a": [1, 2]}]}, r"circuits\[0\].limit_a: expected 3 values"),
        ({"circuits": [{"id": "main", "limit_a": -5}]}, r"circuits\[0\]: current on L1 must be a finite number >= 0"),
        ({"circuits": [{"limit_a": 5}]}, r"circuits\[0\]: circuit_id must be a non-empty id"),
        ({"circuits": "main"}, "circuits: expected a list"),
        (
            {"chargers": [{"id": "A", "circuit": "main", "max_current_a": 16, "phases": "L4"}]},
            r"chargers\[0\]: phases: phases must be among L1, L2, L3",
        ),
        (
            {"chargers": [{"id": "A", "circuit": "main", "max_current_a": 16, "connectors": [{"id": 1, "max": 3}]}]},
            r"chargers\[0\].connectors\[0\]: unknown keys \['max'\]",
        ),
        ({"operator_limits": [{"scope": "planet", "limit_a": 5}]}, r"operator_limits\[0\].scope: expected 'site'"),
        (
            {"operator_limits": [{"scope": "site", "limit_a": 5, "ends_at": "2024-05-01T20:00:00"}]},
            "expected a timestamp with a UTC offset",
        ),
        ({"operator_limits": [{"scope": "site", "limit_a": 5, "ends_at": "tomorrow"}]}, "not an ISO 8601 timestamp"),
    ],
)
def test_bad_mappings_name_the_path(patch: dict[str, Any], message: str) -> None:
    data: dict[str, Any] = {"site_id": "s", "circuits": [{"id": "main", "limit_a": 25}], **patch}
    with pytest.raises(SiteModelError, match=message):
        site_from_mapping(data)


def test_iso_string_end_time_is_converted_to_utc() -> None:
    site = site_from_mapping(
        {
            "site_id": "s",
            "circuits": [{"id": "main", "limit_a": 25}],
            "operator_limits": [{"scope": "site", "limit_a": 5, "ends_at": "2024-05-01T20:00:00+02:00"}],
        }
    )
    ends_at = site.operator_limits[0].ends_at
    assert ends_at == datetime(2024, 5, 1, 20, 0, tzinfo=timezone(timedelta(hours=2)))
    assert ends_at is not None and ends_at.tzinfo is UTC
