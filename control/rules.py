"""The rule engine: an ordered list of named rules; the first that matches decides. Pure.

The order is the policy. :func:`evaluate` walks the rules in list order for one connector at
``now``; the first enabled rule whose scope and condition match decides the outcome, and its
name is the reason that lands in the audit log and the UI ("Limit to 10 A after 18:00"). Later
rules that also match are not applied; when their action differs, the outcome carries a warning
naming both rules. No match means no rule limit (``cap_a=None``, ``pause=False``, reason None).

A rule is ``name + enabled + scope + condition + action``:

* scope: a site, a set of chargers, or both (both empty: everywhere);
* condition: an optional :class:`~control.schedules.Schedule` window (``outside=True`` matches
  when the window is *not* open, for "charge only off-peak"), a set of charging modes, and
  optional id tags or user ids; empty sets mean "any";
* action: cap current (A), cap power (kW), pause, allow (charge, stop looking), force a mode.

Schedules inside rules. A disabled schedule makes its rule inert (neither inside nor outside
matches), so switching a schedule off never turns an "outside" rule into "always". Outside the
schedule's date range an ``outside`` rule is inert as well. A skipped occurrence ("Skip once")
means that window does not happen: a rule that applies *inside* the window does not match then
(if nothing else matches, the reason is ``"Skip once: <rule name>"``), and a rule that applies
*outside* it keeps applying through the skipped night.

Power caps become currents as ``cap_a = power_w / (phases * voltage_v)``: the per-phase current
of a balanced load on the phases the connector uses, phase-to-neutral voltage (230 V by
default), rounded *down* to 0.1 A so the cap is never exceeded (11 kW on 3 x 230 V = 15.9 A).

:func:`find_conflicts` lists pairs of rules that can apply to the same connector at the same time
(within a horizon) with different actions, each naming both rules and the winner: the earlier one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import StrEnum
from itertools import pairwise
from typing import Final

from control.contract import ChargingMode, utc
from control.schedules import Interval, Schedule, active_occurrence, is_skipped_now, local_to_utc, occurrences

SKIP_ONCE_REASON: Final = "Skip once"
DEFAULT_VOLTAGE_V: Final = 230.0
CONFLICT_HORIZON: Final = timedelta(days=14)


class RuleError(ValueError):
    """A rule that cannot be valid (no name, a negative cap, a mode missing for force_mode...)."""


class ActionKind(StrEnum):
    CAP_CURRENT = "cap_current"
    CAP_POWER = "cap_power"
    PAUSE = "pause"
    ALLOW = "allow"
    FORCE_MODE = "force_mode"


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    current_a: float | None = None  # CAP_CURRENT
    power_kw: float | None = None  # CAP_POWER
    mode: ChargingMode | None = None  # FORCE_MODE

    def __post_init__(self) -> None:
        needs = {
            ActionKind.CAP_CURRENT: "current_a",
            ActionKind.CAP_POWER: "power_kw",
            ActionKind.FORCE_MODE: "mode",
        }.get(self.kind)
        for name in ("current_a", "power_kw", "mode"):
            if (getattr(self, name) is not None) != (name == needs):
                raise RuleError(f"action {self.kind.value} {'needs' if name == needs else 'takes no'} {name}")
        for name in ("current_a", "power_kw"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise RuleError(f"{name} must be a finite number >= 0, got {value}")

    @classmethod
    def cap_current(cls, current_a: float) -> Action:
        return cls(ActionKind.CAP_CURRENT, current_a=current_a)

    @classmethod
    def cap_power(cls, power_kw: float) -> Action:
        return cls(ActionKind.CAP_POWER, power_kw=power_kw)

    @classmethod
    def pause(cls) -> Action:
        return cls(ActionKind.PAUSE)

    @classmethod
    def allow(cls) -> Action:
        return cls(ActionKind.ALLOW)

    @classmethod
    def force_mode(cls, mode: ChargingMode) -> Action:
        return cls(ActionKind.FORCE_MODE, mode=mode)

    def describe(self) -> str:
        match self.kind:
            case ActionKind.CAP_CURRENT:
                return f"cap at {self.current_a:g} A"
            case ActionKind.CAP_POWER:
                return f"cap at {self.power_kw:g} kW"
            case ActionKind.FORCE_MODE:
                return f"force {self.mode}"
        return self.kind.value


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a rule applies: a site and/or some chargers; empty means any."""

    site_id: str | None = None
    charger_ids: frozenset[str] = frozenset()

    def matches(self, site_id: str, charger_id: str) -> bool:
        return (self.site_id is None or self.site_id == site_id) and (
            not self.charger_ids or charger_id in self.charger_ids
        )

    def overlaps(self, other: Scope) -> bool:
        return (self.site_id is None or other.site_id is None or self.site_id == other.site_id) and (
            not self.charger_ids or not other.charger_ids or bool(self.charger_ids & other.charger_ids)
        )


@dataclass(frozen=True, slots=True)
class Condition:
    """When a rule applies; every part must hold, an empty set means any."""

    schedule: Schedule | None = None  # None: at any time
    outside: bool = False  # match when the schedule's window is not open
    modes: frozenset[ChargingMode] = frozenset()
    id_tags: frozenset[str] = frozenset()
    user_ids: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.outside and self.schedule is None:
            raise RuleError("outside=True needs a schedule")


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: str
    name: str  # the reason shown and audited
    action: Action
    scope: Scope = field(default_factory=Scope)
    condition: Condition = field(default_factory=Condition)
    enabled: bool = True

    def __post_init__(self) -> None:
        if not self.rule_id or not self.name.strip():
            raise RuleError("a rule needs a rule_id and a name")


@dataclass(frozen=True, slots=True)
class RuleContext:
    """The connector a rule is evaluated for."""

    site_id: str
    charger_id: str
    connector_id: int
    mode: ChargingMode
    phases: int = 3  # phases the connector charges on (1 or 3), for kW -> A
    voltage_v: float = DEFAULT_VOLTAGE_V  # phase to neutral
    id_tag: str | None = None
    user_id: str | None = None

    def __post_init__(self) -> None:
        if self.phases not in (1, 2, 3):
            raise RuleError(f"phases must be 1, 2 or 3, got {self.phases}")
        if not math.isfinite(self.voltage_v) or self.voltage_v <= 0:
            raise RuleError(f"voltage_v must be > 0, got {self.voltage_v}")


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    cap_a: float | None = None
    pause: bool = False
    reason: str | None = None  # the deciding rule's name ("Skip once: <name>" when a skip left no rule)
    rule_id: str | None = None
    mode_override: ChargingMode | None = None
    warnings: tuple[str, ...] = ()


NO_RULE: Final = RuleOutcome()


def power_cap_to_current_a(power_kw: float, phases: int, voltage_v: float = DEFAULT_VOLTAGE_V) -> float:
    """Per-phase current for ``power_kw`` on ``phases`` x ``voltage_v``, rounded down to 0.1 A."""
    return math.floor(power_kw * 1000.0 / (phases * voltage_v) * 10 + 1e-9) / 10


def _static_match(rule: Rule, context: RuleContext) -> bool:
    """Everything but time: enabled, scope, mode, id tag, user."""
    cond = rule.condition
    return (
        rule.enabled
        and rule.scope.matches(context.site_id, context.charger_id)
        and (not cond.modes or context.mode in cond.modes)
        and (not cond.id_tags or context.id_tag in cond.id_tags)
        and (not cond.user_ids or context.user_id in cond.user_ids)
    )


def _time_match(cond: Condition, now: datetime) -> bool:
    if cond.schedule is None:
        return True
    if cond.outside:
        return cond.schedule.in_force(now) and active_occurrence(cond.schedule, now) is None
    return active_occurrence(cond.schedule, now) is not None


def _outcome(rule: Rule, context: RuleContext) -> RuleOutcome:
    action = rule.action
    if action.kind is ActionKind.CAP_CURRENT:
        return RuleOutcome(cap_a=action.current_a, reason=rule.name, rule_id=rule.rule_id)
    if action.kind is ActionKind.CAP_POWER and action.power_kw is not None:
        cap = power_cap_to_current_a(action.power_kw, context.phases, context.voltage_v)
        return RuleOutcome(cap_a=cap, reason=rule.name, rule_id=rule.rule_id)
    if action.kind is ActionKind.PAUSE:
        return RuleOutcome(pause=True, reason=rule.name, rule_id=rule.rule_id)
    if action.kind is ActionKind.FORCE_MODE:
        return RuleOutcome(mode_override=action.mode, reason=rule.name, rule_id=rule.rule_id)
    return RuleOutcome(reason=rule.name, rule_id=rule.rule_id)  # ALLOW: charge, and look no further


def _shadow_warning(winner: Rule, loser: Rule) -> str:
    return (
        f"Rules '{winner.name}' ({winner.action.describe()}) and '{loser.name}' ({loser.action.describe()}) "
        f"both apply; '{winner.name}' wins because it comes first"
    )


def evaluate(rules: Sequence[Rule], context: RuleContext, now: datetime) -> RuleOutcome:
    """The outcome of the first matching rule for ``context`` at ``now`` (see the module docstring)."""
    now = utc(now)
    winner: Rule | None = None
    skipped: Rule | None = None
    warnings: list[str] = []
    for rule in rules:
        if not _static_match(rule, context):
            continue
        cond = rule.condition
        if not _time_match(cond, now):
            inside_skipped = cond.schedule is not None and not cond.outside and is_skipped_now(cond.schedule, now)
            if skipped is None and inside_skipped:
                skipped = rule
            continue
        if winner is None:
            winner = rule
        elif rule.action != winner.action:
            warnings.append(_shadow_warning(winner, rule))
    if winner is None:
        if skipped is not None:
            return RuleOutcome(reason=f"{SKIP_ONCE_REASON}: {skipped.name}", rule_id=skipped.rule_id)
        return NO_RULE
    outcome = _outcome(winner, context)
    return RuleOutcome(
        outcome.cap_a, outcome.pause, outcome.reason, outcome.rule_id, outcome.mode_override, tuple(warnings)
    )


# --------------------------------------------------------------------------- conflicts and timelines


@dataclass(frozen=True, slots=True)
class RuleConflict:
    winner_rule_id: str
    winner_name: str
    loser_rule_id: str
    loser_name: str
    first_overlap: Interval  # the first stretch of the horizon where both apply
    message: str


def _merge(intervals: list[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for item in sorted(intervals, key=lambda i: i.start):
        if merged and item.start <= merged[-1].end:
            if item.end > merged[-1].end:
                merged[-1] = Interval(merged[-1].start, item.end)
        else:
            merged.append(item)
    return merged


def _in_force_span(schedule: Schedule, start: datetime, end: datetime) -> Interval | None:
    lo, hi = start, end
    if schedule.valid_from is not None:
        lo = max(lo, local_to_utc(schedule.valid_from, time(0), schedule.tz))
    if schedule.valid_until is not None:
        hi = min(hi, local_to_utc(schedule.valid_until + timedelta(days=1), time(0), schedule.tz))
    return Interval(lo, hi) if schedule.enabled and lo < hi else None


def active_intervals(cond: Condition, start: datetime, end: datetime) -> list[Interval]:
    """Where the time part of ``cond`` holds within ``[start, end)``: sorted, disjoint, clipped."""
    start, end = utc(start), utc(end)
    if cond.schedule is None:
        return [Interval(start, end)] if start < end else []
    windows = _merge([Interval(max(o.start, start), min(o.end, end)) for o in occurrences(cond.schedule, start, end)])
    if not cond.outside:
        return windows
    span = _in_force_span(cond.schedule, start, end)
    if span is None:
        return []
    gaps, cursor = [], span.start
    for window in windows:
        if window.start > cursor:
            gaps.append(Interval(cursor, min(window.start, span.end)))
        cursor = max(cursor, window.end)
    if cursor < span.end:
        gaps.append(Interval(cursor, span.end))
    return [gap for gap in gaps if gap.start < gap.end]


def _first_overlap(a: list[Interval], b: list[Interval]) -> Interval | None:
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i].start, b[j].start), min(a[i].end, b[j].end)
        if lo < hi:
            return Interval(lo, hi)
        if a[i].end <= b[j].end:
            i += 1
        else:
            j += 1
    return None


def _may_meet(a: Condition, b: Condition) -> bool:
    """Whether some connector can satisfy both conditions' mode, id tag and user parts."""
    return all(
        not x or not y or bool(x & y) for x, y in ((a.modes, b.modes), (a.id_tags, b.id_tags), (a.user_ids, b.user_ids))
    )


def find_conflicts(
    rules: Sequence[Rule], now: datetime, *, horizon: timedelta = CONFLICT_HORIZON
) -> tuple[RuleConflict, ...]:
    """Pairs of enabled rules that can apply together within ``[now, now + horizon)`` with different actions.

    Two rules conflict when their scopes overlap, their mode/id-tag/user conditions can hold for
    the same session, their time conditions overlap in the horizon, and their actions differ.
    The earlier rule in the list wins; the message names both. Pairs come in list order.
    Duplicate rule ids raise :class:`RuleError`.
    """
    now = utc(now)
    ids = [rule.rule_id for rule in rules]
    if len(set(ids)) != len(ids):
        raise RuleError(f"duplicate rule ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    enabled = [rule for rule in rules if rule.enabled]
    active = {rule.rule_id: active_intervals(rule.condition, now, now + horizon) for rule in enabled}
    conflicts = []
    for index, winner in enumerate(enabled):
        for loser in enabled[index + 1 :]:
            if winner.action == loser.action or not winner.scope.overlaps(loser.scope):
                continue
            if not _may_meet(winner.condition, loser.condition):
                continue
            overlap = _first_overlap(active[winner.rule_id], active[loser.rule_id])
            if overlap is None:
                continue
            message = (
                f"'{winner.name}' ({winner.action.describe()}) and '{loser.name}' "
                f"({loser.action.describe()}) overlap, first from {overlap.start:%Y-%m-%d %H:%M} UTC; "
                f"'{winner.name}' wins because it comes first"
            )
            conflicts.append(RuleConflict(winner.rule_id, winner.name, loser.rule_id, loser.name, overlap, message))
    return tuple(conflicts)


@dataclass(frozen=True, slots=True)
class RuleSpan:
    """A stretch of time over which the rule outcome for one connector stays the same."""

    start: datetime
    end: datetime
    outcome: RuleOutcome


def rule_timeline(rules: Sequence[Rule], context: RuleContext, start: datetime, end: datetime) -> tuple[RuleSpan, ...]:
    """The outcome of :func:`evaluate` over ``[start, end)`` as piecewise-constant spans.

    Outcomes can only change at an edge of some rule's time condition, so evaluating once per
    stretch between edges is exact. Adjacent spans with equal outcomes are merged.
    """
    start, end = utc(start), utc(end)
    if end <= start:
        return ()
    cuts = {start, end}
    for rule in rules:
        schedule = rule.condition.schedule
        if schedule is None or not _static_match(rule, context):
            continue
        for occurrence in occurrences(schedule, start, end, include_skipped=True):
            cuts.update(t for t in (occurrence.start, occurrence.end) if start < t < end)
        span = _in_force_span(schedule, start, end)
        if span is not None:
            cuts.update(t for t in (span.start, span.end) if start < t < end)
    spans: list[RuleSpan] = []
    for lo, hi in pairwise(sorted(cuts)):
        outcome = evaluate(rules, context, lo)
        if spans and spans[-1].outcome == outcome:
            spans[-1] = RuleSpan(spans[-1].start, hi, outcome)
        else:
            spans.append(RuleSpan(lo, hi, outcome))
    return tuple(spans)
