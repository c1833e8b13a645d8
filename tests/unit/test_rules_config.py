"""control.rules_config: rules from and to a JSON array / TOML ``[[rules]]`` tables, strictly."""

from __future__ import annotations

import json
import textwrap
import tomllib
from datetime import UTC, date, datetime, time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import control.rules_config
from control.contract import ChargingMode
from control.rules import Action, ActionKind, Condition, Rule, RuleContext, RuleError, RuleOutcome, Scope, evaluate
from control.rules_config import RulesConfigError, rules_from_mapping, rules_to_mapping
from control.schedules import EVERY_DAY, WEEKEND, WORKDAYS, Schedule, Weekday, WeeklyWindow

BERLIN = "Europe/Berlin"


def rule(**overrides: Any) -> dict[str, Any]:
    """A minimal valid rule mapping with some keys replaced."""
    return {"id": "r1", "name": "Rule", "action": {"kind": "pause"}} | overrides


def scheduled(**schedule: Any) -> dict[str, Any]:
    """A rule whose schedule is 18:00-24:00 in Berlin, with some schedule keys replaced (None drops a key)."""
    table = {"zone": BERLIN, "start": "18:00", "end": "24:00"} | schedule
    return rule(condition={"schedule": {k: v for k, v in table.items() if v is not None}})


def berlin(start: time, end: time, days: frozenset[Weekday] = EVERY_DAY, **kwargs: Any) -> Schedule:
    return Schedule("r1", BERLIN, WeeklyWindow(start, end, days), **kwargs)


def with_schedule(schedule: Schedule, **kwargs: Any) -> Rule:
    return Rule("r1", "Rule", Action.pause(), condition=Condition(schedule, **kwargs))


EVENING = berlin(time(18), time(0))


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        pytest.param(rule(), Rule("r1", "Rule", Action.pause()), id="minimal"),
        pytest.param(
            rule(action={"kind": "cap_current", "current_a": 10}, condition=scheduled()["condition"]),
            Rule("r1", "Rule", Action.cap_current(10), condition=Condition(EVENING)),
            id="cap-current-18-24",
        ),
        pytest.param(
            rule(action={"kind": "cap_power", "power_kw": 11.5}, scope={"site": "depot-1"}),
            Rule("r1", "Rule", Action.cap_power(11.5), scope=Scope(site_id="depot-1")),
            id="cap-power-site",
        ),
        pytest.param(
            rule(action={"kind": "force_mode", "mode": "boost"}),
            Rule("r1", "Rule", Action.force_mode(ChargingMode.BOOST)),
            id="force-mode",
        ),
        pytest.param(rule(action={"kind": "allow"}), Rule("r1", "Rule", Action.allow()), id="allow"),
        pytest.param(
            rule(scope={"chargers": ["CP-2", "CP-1"]}, enabled=False),
            Rule("r1", "Rule", Action.pause(), scope=Scope(charger_ids=frozenset({"CP-1", "CP-2"})), enabled=False),
            id="chargers-disabled",
        ),
        pytest.param(
            rule(condition={"modes": ["eco"], "id_tags": ["TAG1"], "users": ["ann"]}),
            Rule(
                "r1",
                "Rule",
                Action.pause(),
                condition=Condition(
                    modes=frozenset({ChargingMode.ECO}), id_tags=frozenset({"TAG1"}), user_ids=frozenset({"ann"})
                ),
            ),
            id="modes-tags-users",
        ),
        pytest.param(
            rule(
                condition={
                    "outside": True,
                    "modes": ["eco"],
                    "schedule": {"zone": BERLIN, "start": "23:00", "end": "06:00"},
                }
            ),
            with_schedule(berlin(time(23), time(6)), outside=True, modes=frozenset({ChargingMode.ECO})),
            id="outside-off-peak",
        ),
        pytest.param(scheduled(end="00:00"), with_schedule(EVENING), id="end-00:00-is-24:00"),
        pytest.param(scheduled(start=time(18), end=time(0)), with_schedule(EVENING), id="toml-times"),
        pytest.param(
            scheduled(start="06:30:15", end="09:00"), with_schedule(berlin(time(6, 30, 15), time(9))), id="seconds"
        ),
        pytest.param(scheduled(weekdays="workdays"), with_schedule(berlin(time(18), time(0), WORKDAYS)), id="workdays"),
        pytest.param(scheduled(weekdays="Weekend"), with_schedule(berlin(time(18), time(0), WEEKEND)), id="weekend"),
        pytest.param(scheduled(weekdays="every_day"), with_schedule(EVENING), id="every-day"),
        pytest.param(
            scheduled(weekdays=["mon", "Wed"]),
            with_schedule(berlin(time(18), time(0), frozenset({Weekday.MON, Weekday.WED}))),
            id="weekday-list",
        ),
        pytest.param(
            scheduled(
                id="winter",
                enabled=False,
                valid_from="2024-11-01",
                valid_until=date(2025, 3, 31),
                skipped_dates=["2024-12-24", date(2024, 12, 31)],
            ),
            with_schedule(
                Schedule(
                    "winter",
                    BERLIN,
                    WeeklyWindow(time(18), time(0)),
                    enabled=False,
                    valid_from=date(2024, 11, 1),
                    valid_until=date(2025, 3, 31),
                    skipped_dates=frozenset({date(2024, 12, 24), date(2024, 12, 31)}),
                )
            ),
            id="date-range-and-skips",
        ),
        pytest.param(
            rule(enabled=None, scope=None, condition={"schedule": None, "modes": None}),
            Rule("r1", "Rule", Action.pause()),
            id="json-nulls-are-absent",
        ),
    ],
)
def test_good_rules_parse(item: dict[str, Any], expected: Rule) -> None:
    assert rules_from_mapping([item]) == (expected,)
    assert rules_from_mapping(rules_to_mapping([expected])) == (expected,)


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ({"id": "r1"}, "rules: expected a list, got dict"),
        (["pause"], "rules[0]: expected a table/object, got str"),
        (
            [rule(when="18:00")],
            "rules[0]: unknown keys ['when'] (allowed: ['action', 'condition', 'enabled', 'id', 'name', 'scope'])",
        ),
        ([rule(id=None)], "rules[0].id: required"),
        ([rule(id=" r1")], "rules[0].id: expected a non-empty id of at most 64 characters, got ' r1'"),
        ([rule(name="  ")], "rules[0].name: must not be blank"),
        ([rule(name=3)], "rules[0].name: expected a string, got 3"),
        ([rule(enabled="yes")], "rules[0].enabled: expected true or false, got 'yes'"),
        ([rule(), rule(id="r2"), rule()], "rules[2].id: duplicate rule id 'r1' (also rules[0])"),
        ([rule(action=None)], "rules[0].action: required"),
        (
            [rule(action={})],
            "rules[0].action.kind: required (one of: cap_current, cap_power, pause, allow, force_mode)",
        ),
        (
            [rule(action={"kind": "limit"})],
            "rules[0].action.kind: unknown action kind 'limit' "
            "(valid: cap_current, cap_power, pause, allow, force_mode)",
        ),
        ([rule(action={"kind": "cap_current"})], "rules[0].action.current_a: required for kind 'cap_current'"),
        (
            [rule(action={"kind": "cap_current", "current_a": 10, "power_kw": 11})],
            "rules[0].action: unknown keys ['power_kw'] for kind 'cap_current' (it takes only current_a)",
        ),
        (
            [rule(action={"kind": "pause", "mode": "eco"})],
            "rules[0].action: unknown keys ['mode'] for kind 'pause' (it takes no arguments)",
        ),
        (
            [rule(action={"kind": "cap_current", "current_a": "10"})],
            "rules[0].action.current_a: expected a finite number, got '10'",
        ),
        (
            [rule(action={"kind": "cap_power", "power_kw": True})],
            "rules[0].action.power_kw: expected a finite number, got True",
        ),
        (
            [rule(action={"kind": "cap_power", "power_kw": float("inf")})],
            "rules[0].action.power_kw: expected a finite number, got inf",
        ),
        ([rule(action={"kind": "cap_current", "current_a": -1})], "rules[0].action.current_a: must be >= 0, got -1"),
        (
            [rule(action={"kind": "force_mode", "mode": "turbo"})],
            "rules[0].action.mode: unknown charging mode 'turbo' (valid: standard, eco, boost)",
        ),
        ([rule(scope="CP-1")], "rules[0].scope: expected a table/object, got str"),
        (
            [rule(scope={"charger": ["CP-1"]})],
            "rules[0].scope: unknown keys ['charger'] (allowed: ['chargers', 'site'])",
        ),
        ([rule(scope={"chargers": "CP-1"})], "rules[0].scope.chargers: expected a list, got str"),
        (
            [rule(scope={"chargers": ["CP-1", ""]})],
            "rules[0].scope.chargers[1]: expected a non-empty id of at most 64 characters, got ''",
        ),
        ([rule(scope={"chargers": ["CP-1", "CP-1"]})], "rules[0].scope.chargers[1]: 'CP-1' is listed twice"),
        (
            [rule(condition={"modes": ["eco", "fast"]})],
            "rules[0].condition.modes[1]: unknown charging mode 'fast' (valid: standard, eco, boost)",
        ),
        ([rule(condition={"id_tags": [""]})], "rules[0].condition.id_tags[0]: must not be empty"),
        ([rule(condition={"users": [7]})], "rules[0].condition.users[0]: expected a string, got 7"),
        (
            [rule(condition={"outside": True})],
            "rules[0].condition.outside: needs a schedule (outside of which window?)",
        ),
        ([rule(condition={"outside": 1})], "rules[0].condition.outside: expected true or false, got 1"),
        (
            [rule(), rule(id="r2"), scheduled(start="6pm")],
            "rules[2].condition.schedule.start: expected a time as 'HH:MM', got '6pm'",
        ),
        ([scheduled(start="7:00")], "rules[0].condition.schedule.start: expected a time as 'HH:MM', got '7:00'"),
        (
            [scheduled(start="24:00")],
            "rules[0].condition.schedule.start: expected a time as 'HH:MM', got '24:00' "
            "('24:00' is only valid as an end)",
        ),
        ([scheduled(end="18:60")], "rules[0].condition.schedule.end: expected a time as 'HH:MM', got '18:60'"),
        ([scheduled(end=1800)], "rules[0].condition.schedule.end: expected a string, got 1800"),
        (
            [scheduled(start=time(18, 0, 0, 500))],
            "rules[0].condition.schedule.start: expected a local time in whole seconds, got '18:00:00.000500'",
        ),
        ([scheduled(start=None)], "rules[0].condition.schedule.start: required"),
        ([scheduled(zone=None)], "rules[0].condition.schedule.zone: required (the site's IANA time zone)"),
        (
            [scheduled(zone="Europe/Berln")],
            "rules[0].condition.schedule.zone: unknown time zone 'Europe/Berln' "
            "(expected an IANA name such as 'Europe/Berlin')",
        ),
        (
            [scheduled(zone="../etc/passwd")],
            "rules[0].condition.schedule.zone: unknown time zone '../etc/passwd' "
            "(expected an IANA name such as 'Europe/Berlin')",
        ),
        (
            [scheduled(tz=BERLIN)],
            "rules[0].condition.schedule: unknown keys ['tz'] (allowed: ['enabled', 'end', 'id', 'skipped_dates', "
            "'start', 'valid_from', 'valid_until', 'weekdays', 'zone'])",
        ),
        (
            [scheduled(weekdays="weekdays")],
            "rules[0].condition.schedule.weekdays: unknown preset 'weekdays' "
            "(presets: every_day, workdays, weekend; or a list of days)",
        ),
        (
            [scheduled(weekdays=["mon", "monday"])],
            "rules[0].condition.schedule.weekdays[1]: unknown day 'monday' (days: mon, tue, wed, thu, fri, sat, sun)",
        ),
        ([scheduled(weekdays=[])], "rules[0].condition.schedule.weekdays: needs at least one day"),
        ([scheduled(weekdays=["mon", "Mon"])], "rules[0].condition.schedule.weekdays[1]: 'Mon' is listed twice"),
        (
            [scheduled(valid_from="01.11.2024")],
            "rules[0].condition.schedule.valid_from: expected an ISO date 'YYYY-MM-DD', got '01.11.2024'",
        ),
        (
            [scheduled(valid_until="2025-02-30")],
            "rules[0].condition.schedule.valid_until: not a valid date '2025-02-30' (day is out of range for month)",
        ),
        (
            [scheduled(valid_from=datetime(2024, 11, 1, tzinfo=UTC))],
            "rules[0].condition.schedule.valid_from: expected a string, got "
            "datetime.datetime(2024, 11, 1, 0, 0, tzinfo=datetime.timezone.utc)",
        ),
        (
            [scheduled(valid_from="2025-01-01", valid_until="2024-12-31")],
            "rules[0].condition.schedule.valid_until: 2024-12-31 is before valid_from 2025-01-01",
        ),
        (
            [scheduled(skipped_dates=["2024-12-24", "2024-12-24"])],
            "rules[0].condition.schedule.skipped_dates[1]: '2024-12-24' is listed twice",
        ),
        ([scheduled(enabled="no")], "rules[0].condition.schedule.enabled: expected true or false, got 'no'"),
        (
            [scheduled(id="")],
            "rules[0].condition.schedule.id: expected a non-empty id of at most 64 characters, got ''",
        ),
    ],
)
def test_bad_rules_are_refused_naming_the_path(items: Any, message: str) -> None:
    with pytest.raises(RulesConfigError) as caught:
        rules_from_mapping(items)
    assert str(caught.value) == message
    assert isinstance(caught.value, RuleError) and isinstance(caught.value, ValueError)  # callers catch RuleError


def test_written_mapping_is_json_with_times_dates_and_presets_as_strings() -> None:
    schedule = Schedule(
        "winter",
        BERLIN,
        WeeklyWindow(time(18), time(0), WORKDAYS),
        valid_from=date(2024, 11, 1),
        skipped_dates=frozenset({date(2024, 12, 31), date(2024, 12, 24)}),
    )
    item = rules_to_mapping(
        [Rule("r1", "Limit to 10 A after 18:00", Action.cap_current(10), condition=Condition(schedule))]
    )
    assert item == [
        {
            "id": "r1",
            "name": "Limit to 10 A after 18:00",
            "enabled": True,
            "action": {"kind": "cap_current", "current_a": 10},
            "scope": {"chargers": []},
            "condition": {
                "schedule": {
                    "id": "winter",
                    "zone": BERLIN,
                    "start": "18:00",
                    "end": "24:00",
                    "weekdays": "workdays",
                    "enabled": True,
                    "valid_from": "2024-11-01",
                    "skipped_dates": ["2024-12-24", "2024-12-31"],
                },
                "outside": False,
                "modes": [],
                "id_tags": [],
                "users": [],
            },
        }
    ]
    assert json.loads(json.dumps(item)) == item


def test_a_time_with_fractions_of_a_second_cannot_be_written() -> None:
    rules = [with_schedule(berlin(time(18, 0, 0, 1), time(0)))]
    with pytest.raises(RulesConfigError, match=r"^rules\[0\]\.condition\.schedule\.start: 18:00:00\.000001 has"):
        rules_to_mapping(rules)


# --------------------------------------------------------------------------- round trip

IDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:", min_size=1, max_size=20)
TEXTS = st.text(min_size=1, max_size=30)
AMOUNTS = st.one_of(st.integers(0, 1000), st.floats(0, 1000, allow_nan=False, allow_infinity=False))
TIMES = st.builds(time, st.integers(0, 23), st.integers(0, 59), st.sampled_from([0, 0, 0, 30, 59]))
DATES = st.dates(date(2020, 1, 1), date(2035, 12, 31))
ACTIONS = st.one_of(
    st.builds(Action.cap_current, AMOUNTS),
    st.builds(Action.cap_power, AMOUNTS),
    st.builds(Action.force_mode, st.sampled_from(ChargingMode)),
    st.sampled_from([Action.pause(), Action.allow()]),
)


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    bounds = sorted(draw(st.lists(DATES, min_size=2, max_size=2)))
    valid_from, valid_until = draw(st.sampled_from([(None, None), (bounds[0], None), (None, bounds[1]), tuple(bounds)]))
    return Schedule(
        schedule_id=draw(IDS),
        zone=draw(st.sampled_from([BERLIN, "UTC", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"])),
        window=WeeklyWindow(draw(TIMES), draw(TIMES), draw(st.frozensets(st.sampled_from(Weekday), min_size=1))),
        enabled=draw(st.booleans()),
        valid_from=valid_from,
        valid_until=valid_until,
        skipped_dates=draw(st.frozensets(DATES, max_size=4)),
    )


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    schedule = draw(st.none() | schedules())
    return Rule(
        rule_id=draw(IDS),
        name=draw(TEXTS.filter(str.strip)),
        action=draw(ACTIONS),
        scope=Scope(draw(st.none() | IDS), draw(st.frozensets(IDS, max_size=3))),
        condition=Condition(
            schedule=schedule,
            outside=schedule is not None and draw(st.booleans()),
            modes=draw(st.frozensets(st.sampled_from(ChargingMode))),
            id_tags=draw(st.frozensets(TEXTS, max_size=3)),
            user_ids=draw(st.frozensets(TEXTS, max_size=3)),
        ),
        enabled=draw(st.booleans()),
    )


def _unique_ids(items: list[Rule]) -> bool:
    return len({r.rule_id for r in items}) == len(items)


@settings(max_examples=150, deadline=None)
@given(st.lists(rules(), max_size=4).filter(_unique_ids))
def test_round_trip_through_json(original: list[Rule]) -> None:
    stored = json.loads(json.dumps(rules_to_mapping(original)))  # as the jsonb column gives it back
    assert rules_from_mapping(stored) == tuple(original)


# --------------------------------------------------------------------------- TOML, evaluated

SITE_TOML = """
[[rules]]
id = "holiday"
name = "Pause on public holidays"
enabled = false
action = { kind = "pause" }

[[rules]]
id = "off-peak-eco"
name = "Off-peak window 23:00-06:00 for Eco"
action = { kind = "pause" }
[rules.condition]
modes = ["eco"]
outside = true
schedule = { zone = "Europe/Berlin", start = 23:00:00, end = "06:00" }

[[rules]]
id = "boost-mornings"
name = "Boost mornings"
action = { kind = "force_mode", mode = "boost" }
[rules.condition.schedule]
zone = "Europe/Berlin"
start = "06:30"
end = "09:00"
weekdays = ["mon", "tue", "wed", "thu", "fri"]
valid_from = 2024-01-01
valid_until = "2024-12-31"
skipped_dates = [2024-06-04, "2024-12-24"]

[[rules]]
id = "evening-10a"
name = "Limit to 10 A after 18:00"
action = { kind = "cap_current", current_a = 10 }
condition.schedule = { zone = "Europe/Berlin", start = "18:00", end = "24:00", weekdays = "every_day" }

[[rules]]
id = "guests-16a"
name = "Guest chargers at 16 A"
scope = { chargers = ["CP-7", "CP-8"] }
action = { kind = "cap_current", current_a = 16 }

[[rules]]
id = "cap-11kw"
name = "Cap demand at 11 kW"
scope = { site = "depot-1" }
action = { kind = "cap_power", power_kw = 11 }
"""


def test_a_site_toml_file_parses_and_evaluates() -> None:
    parsed = rules_from_mapping(tomllib.loads(SITE_TOML)["rules"])
    assert [r.rule_id for r in parsed] == [
        "holiday",
        "off-peak-eco",
        "boost-mornings",
        "evening-10a",
        "guests-16a",
        "cap-11kw",
    ]
    assert rules_from_mapping(rules_to_mapping(parsed)) == parsed
    standard = RuleContext("depot-1", "CP-1", 1, ChargingMode.STANDARD)
    monday_19h_berlin = datetime(2024, 6, 3, 17, 0, tzinfo=UTC)
    outcome = evaluate(parsed, standard, monday_19h_berlin)
    assert (outcome.cap_a, outcome.reason, outcome.rule_id) == (10, "Limit to 10 A after 18:00", "evening-10a")
    # Tuesday 07:00 Berlin is a skipped morning: no boost, the 11 kW cap decides (3 x 230 V)
    skipped_morning = datetime(2024, 6, 4, 5, 0, tzinfo=UTC)
    assert evaluate(parsed, standard, skipped_morning) == RuleOutcome(
        cap_a=15.9, reason="Cap demand at 11 kW", rule_id="cap-11kw"
    )
    assert evaluate(parsed, standard, datetime(2024, 6, 5, 5, 0, tzinfo=UTC)).mode_override is ChargingMode.BOOST


def test_the_documented_example_parses() -> None:
    doc = control.rules_config.__doc__ or ""
    example = doc.split("Shape::\n", 1)[1].split("\nAs JSON", 1)[0]
    parsed = rules_from_mapping(tomllib.loads(textwrap.dedent(example))["rules"])
    names = {r.name: r for r in parsed}
    assert names["Pause on public holidays"].enabled is False
    assert names["Limit to 10 A after 18:00"].action == Action(ActionKind.CAP_CURRENT, current_a=10)
    assert names["Off-peak window 23:00-06:00 for Eco"].condition.outside
    assert names["Boost mornings"].condition.schedule == Schedule(
        "mornings",
        BERLIN,
        WeeklyWindow(time(6, 30), time(9), WORKDAYS),
        valid_from=date(2024, 11, 1),
        valid_until=date(2025, 3, 31),
        skipped_dates=frozenset({date(2024, 12, 24), date(2024, 12, 31)}),
    )
