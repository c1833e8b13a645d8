"""control.rules: ordered named rules, first match wins, conflicts name both rules."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control.contract import ChargingMode
from control.rules import (
    NO_RULE,
    Action,
    Condition,
    Rule,
    RuleContext,
    RuleError,
    RuleOutcome,
    Scope,
    evaluate,
    find_conflicts,
    power_cap_to_current_a,
    rule_timeline,
)
from control.schedules import Schedule, WeeklyWindow, skip_once

BERLIN = "Europe/Berlin"
MONDAY = date(2024, 6, 3)  # Berlin is UTC+2


def at(hour: int, minute: int = 0, day: date = MONDAY) -> datetime:
    """Local Berlin summer time as UTC."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - timedelta(hours=2)


def window(rule_id: str, start: str, end: str, **kwargs: object) -> Schedule:
    return Schedule(rule_id, BERLIN, WeeklyWindow(time.fromisoformat(start), time.fromisoformat(end)), **kwargs)  # type: ignore[arg-type]


def ctx(charger: str = "c1", mode: ChargingMode = ChargingMode.STANDARD, **kwargs: object) -> RuleContext:
    return RuleContext("site-a", charger, 1, mode, **kwargs)  # type: ignore[arg-type]


AFTER_18 = Rule(
    "r10a", "Limit to 10 A after 18:00", Action.cap_current(10), condition=Condition(window("w18", "18:00", "00:00"))
)
CAP_11KW = Rule("r11kw", "Cap demand at 11 kW", Action.cap_power(11), scope=Scope(site_id="site-a"))
OFF_PEAK_ECO = Rule(
    "roff",
    "Off-peak window 23:00-06:00 for Eco",
    Action.pause(),
    condition=Condition(window("woff", "23:00", "06:00"), outside=True, modes=frozenset({ChargingMode.ECO})),
)
RULES = (OFF_PEAK_ECO, AFTER_18, CAP_11KW)


@pytest.mark.parametrize(
    ("context", "now", "expected"),
    [
        # Eco outside the off-peak window: paused, whatever comes later
        (
            ctx(mode=ChargingMode.ECO),
            at(12),
            RuleOutcome(
                pause=True,
                reason="Off-peak window 23:00-06:00 for Eco",
                rule_id="roff",
                warnings=(
                    "Rules 'Off-peak window 23:00-06:00 for Eco' (pause) and 'Cap demand at 11 kW' (cap at 11 kW) "
                    "both apply; "
                    "'Off-peak window 23:00-06:00 for Eco' wins because it comes first",
                ),
            ),
        ),
        # Eco inside the window: the next matching rule decides
        (
            ctx(mode=ChargingMode.ECO),
            at(23, 30),
            RuleOutcome(
                cap_a=10,
                reason="Limit to 10 A after 18:00",
                rule_id="r10a",
                warnings=(
                    "Rules 'Limit to 10 A after 18:00' (cap at 10 A) and 'Cap demand at 11 kW' (cap at 11 kW) "
                    "both apply; "
                    "'Limit to 10 A after 18:00' wins because it comes first",
                ),
            ),
        ),
        # Standard in the afternoon: 11 kW on 3 x 230 V, rounded down to 15.9 A
        (ctx(), at(12), RuleOutcome(cap_a=15.9, reason="Cap demand at 11 kW", rule_id="r11kw")),
        # on one phase the same 11 kW allows 47.8 A
        (ctx(phases=1), at(12), RuleOutcome(cap_a=47.8, reason="Cap demand at 11 kW", rule_id="r11kw")),
        # another site: nothing matches
        (RuleContext("site-b", "c1", 1, ChargingMode.STANDARD), at(12), NO_RULE),
    ],
)
def test_first_match_wins_and_its_name_is_the_reason(
    context: RuleContext, now: datetime, expected: RuleOutcome
) -> None:
    assert evaluate(RULES, context, now) == expected


@pytest.mark.parametrize(
    ("rule", "context", "now", "matches"),
    [
        (AFTER_18, ctx(), at(17, 59), False),
        (AFTER_18, ctx(), at(18), True),
        (AFTER_18, ctx(), at(23, 59), True),
        (Rule("d", "Disabled", Action.pause(), enabled=False), ctx(), at(12), False),
        (Rule("c", "Only c2", Action.pause(), scope=Scope(charger_ids=frozenset({"c2"}))), ctx("c1"), at(12), False),
        (Rule("c", "Only c2", Action.pause(), scope=Scope(charger_ids=frozenset({"c2"}))), ctx("c2"), at(12), True),
        (Rule("t", "Tag", Action.pause(), condition=Condition(id_tags=frozenset({"TAG1"}))), ctx(), at(12), False),
        (
            Rule("t", "Tag", Action.pause(), condition=Condition(id_tags=frozenset({"TAG1"}))),
            ctx(id_tag="TAG1"),
            at(12),
            True,
        ),
        (
            Rule("u", "User", Action.pause(), condition=Condition(user_ids=frozenset({"ann"}))),
            ctx(user_id="bob"),
            at(12),
            False,
        ),
        # a disabled schedule makes an "outside" rule inert, not "always"
        (
            Rule(
                "o",
                "Off",
                Action.pause(),
                condition=Condition(window("x", "23:00", "06:00", enabled=False), outside=True),
            ),
            ctx(),
            at(12),
            False,
        ),
        # outside its date range an "outside" rule is inert too
        (
            Rule(
                "o",
                "Off",
                Action.pause(),
                condition=Condition(window("x", "23:00", "06:00", valid_from=date(2024, 7, 1)), outside=True),
            ),
            ctx(),
            at(12),
            False,
        ),
    ],
)
def test_which_rules_match(rule: Rule, context: RuleContext, now: datetime, matches: bool) -> None:
    assert (evaluate([rule], context, now).rule_id == rule.rule_id) is matches


def test_actions() -> None:
    boost = Rule("f", "Fleet boost", Action.force_mode(ChargingMode.BOOST))
    assert evaluate([boost], ctx(), at(12)) == RuleOutcome(
        reason="Fleet boost", rule_id="f", mode_override=ChargingMode.BOOST
    )
    allow = Rule("a", "Always charge c1", Action.allow(), scope=Scope(charger_ids=frozenset({"c1"})))
    outcome = evaluate([allow, CAP_11KW], ctx(), at(12))
    assert (outcome.cap_a, outcome.pause, outcome.reason) == (None, False, "Always charge c1")
    assert len(outcome.warnings) == 1 and "'Always charge c1' wins" in outcome.warnings[0]


def test_skip_once_skips_tonight_only() -> None:
    skipped = Rule(
        AFTER_18.rule_id,
        AFTER_18.name,
        AFTER_18.action,
        condition=Condition(skip_once(window("w18", "18:00", "00:00"), at(12))),
    )
    assert evaluate([skipped], ctx(), at(19)) == RuleOutcome(
        reason="Skip once: Limit to 10 A after 18:00", rule_id="r10a"
    )
    assert evaluate([skipped, CAP_11KW], ctx(), at(19)).reason == "Cap demand at 11 kW"  # the next rule decides
    assert evaluate([skipped], ctx(), at(19, day=date(2024, 6, 4))).cap_a == 10  # Tuesday: back


def test_power_cap_conversion_rounds_down() -> None:
    assert power_cap_to_current_a(11, 3) == 15.9
    assert power_cap_to_current_a(6.9, 3) == 10.0  # exact values stay exact
    assert power_cap_to_current_a(3.7, 1, 230) == 16.0
    assert power_cap_to_current_a(0, 3) == 0.0


def test_invalid_rules_are_refused() -> None:
    with pytest.raises(RuleError, match="needs current_a"):
        Action(kind=Action.pause().kind.CAP_CURRENT)
    with pytest.raises(RuleError, match=">= 0"):
        Action.cap_current(-1)
    with pytest.raises(RuleError, match="name"):
        Rule("x", " ", Action.pause())
    with pytest.raises(RuleError, match="needs a schedule"):
        Condition(outside=True)
    with pytest.raises(RuleError, match="phases"):
        ctx(phases=4)


# --------------------------------------------------------------------------- conflicts

OFF_PEAK_ONLY = Rule("off", "Off-peak only", Action.pause(), condition=Condition(window("p", "06:00", "23:00")))
BOOST_MORNINGS = Rule("boost", "Boost mornings", Action.allow(), condition=Condition(window("b", "07:00", "09:00")))


def test_off_peak_only_against_boost_mornings_names_both_and_the_winner() -> None:
    (conflict,) = find_conflicts([OFF_PEAK_ONLY, BOOST_MORNINGS], at(0))
    assert (conflict.winner_name, conflict.loser_name) == ("Off-peak only", "Boost mornings")
    assert (conflict.first_overlap.start, conflict.first_overlap.end) == (at(7), at(9))
    assert conflict.message == (
        "'Off-peak only' (pause) and 'Boost mornings' (allow) overlap, first from 2024-06-03 05:00 UTC; "
        "'Off-peak only' wins because it comes first"
    )
    # reversed order, reversed winner; the engine agrees at 08:00
    (conflict,) = find_conflicts([BOOST_MORNINGS, OFF_PEAK_ONLY], at(0))
    assert conflict.winner_name == "Boost mornings"
    assert evaluate([OFF_PEAK_ONLY, BOOST_MORNINGS], ctx(), at(8)).pause is True
    assert evaluate([BOOST_MORNINGS, OFF_PEAK_ONLY], ctx(), at(8)).pause is False


def test_off_peak_as_an_outside_window_conflicts_the_same_way() -> None:
    outside = Rule(
        "off", "Off-peak only", Action.pause(), condition=Condition(window("p", "23:00", "06:00"), outside=True)
    )
    (conflict,) = find_conflicts([outside, BOOST_MORNINGS], at(0))
    assert (conflict.first_overlap.start, conflict.first_overlap.end) == (at(7), at(9))


@pytest.mark.parametrize(
    ("second", "conflicts"),
    [
        (Rule("b", "Evening", Action.allow(), condition=Condition(window("e", "23:00", "23:30"))), False),  # no overlap
        (Rule("b", "Same", Action.pause(), condition=Condition(window("e", "07:00", "09:00"))), False),  # same action
        (Rule("b", "Other charger", Action.allow(), scope=Scope(charger_ids=frozenset({"c9"}))), True),  # all vs c9
        (Rule("b", "Disabled", Action.allow(), enabled=False), False),
        (Rule("b", "Cap", Action.cap_current(16)), True),
    ],
)
def test_what_counts_as_a_conflict(second: Rule, conflicts: bool) -> None:
    assert bool(find_conflicts([OFF_PEAK_ONLY, second], at(0))) is conflicts


def test_disjoint_scopes_and_modes_do_not_conflict() -> None:
    a = Rule("a", "c1 paused", Action.pause(), scope=Scope(charger_ids=frozenset({"c1"})))
    b = Rule("b", "c2 capped", Action.cap_current(10), scope=Scope(charger_ids=frozenset({"c2"})))
    c = Rule(
        "c",
        "Eco capped",
        Action.cap_current(8),
        scope=a.scope,
        condition=Condition(modes=frozenset({ChargingMode.ECO})),
    )
    d = Rule(
        "d", "Boost allowed", Action.allow(), scope=a.scope, condition=Condition(modes=frozenset({ChargingMode.BOOST}))
    )
    assert find_conflicts([a, b], at(0)) == ()
    assert find_conflicts([c, d], at(0)) == ()
    with pytest.raises(RuleError, match="duplicate"):
        find_conflicts([a, a], at(0))


def test_rule_timeline_for_a_gantt_view() -> None:
    spans = rule_timeline(RULES, ctx(mode=ChargingMode.ECO), at(12), at(12, day=date(2024, 6, 4)))
    assert [(s.start, s.end, s.outcome.reason) for s in spans] == [
        (at(12), at(18), "Off-peak window 23:00-06:00 for Eco"),
        (at(18), at(23), "Off-peak window 23:00-06:00 for Eco"),  # same winner, one more shadowed rule warned about
        (at(23), at(0, day=date(2024, 6, 4)), "Limit to 10 A after 18:00"),
        (at(0, day=date(2024, 6, 4)), at(6, day=date(2024, 6, 4)), "Cap demand at 11 kW"),
        (at(6, day=date(2024, 6, 4)), at(12, day=date(2024, 6, 4)), "Off-peak window 23:00-06:00 for Eco"),
    ]


@settings(max_examples=100, deadline=None)
@given(
    order=st.permutations([*RULES, OFF_PEAK_ONLY, BOOST_MORNINGS]),
    minutes=st.integers(0, 7 * 24 * 60 - 1),
    mode=st.sampled_from(list(ChargingMode)),
)
def test_timeline_agrees_with_evaluate(order: list[Rule], minutes: int, mode: ChargingMode) -> None:
    start = at(0)
    now = start + timedelta(minutes=minutes)
    spans = rule_timeline(order, ctx(mode=mode), start, start + timedelta(days=7))
    (span,) = [s for s in spans if s.start <= now < s.end]
    assert span.outcome == evaluate(order, ctx(mode=mode), now)
