"""Schedules & rules of a site: read them with their week timeline and conflicts, change them.

Who may change a rule: whoever may change the settings (``CHANGE_SETTINGS``) of every charger the
rule affects (its charger scope on the site, or every charger of the site when it names none). So
an owner of a home site edits all its rules; an owner with two bays on a shared depot may only
add or change rules scoped to their own bays; a member changes nothing. Reads need a visible
charger on the site. Every change is validated by ``control.rules_config`` before it is stored,
and logged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from control.access import Decision, Permission
from control.rules import Rule, RuleConflict, active_intervals, find_conflicts
from control.rules_config import rules_from_mapping, rules_to_mapping
from control.schedules import occurrences, skip_once
from dashboards.access import Access, AccessDenied, Principal
from warehouse import charging_store, control_store

WEEK: Final = timedelta(days=7)

# Presets for the "add a rule" form: (label, a function of the site's zone -> rule mapping without id).
PRESETS: Final[Mapping[str, Mapping[str, Any]]] = {
    "Limit to 10 A after 18:00": {
        "name": "Limit to 10 A after 18:00", "action": {"kind": "cap_current", "current_a": 10},
        "condition": {"schedule": {"start": "18:00", "end": "24:00"}}},
    "Charge only off-peak (23:00-06:00)": {
        "name": "Charge only off-peak", "action": {"kind": "pause"},
        "condition": {"outside": True, "schedule": {"start": "23:00", "end": "06:00"}}},
    "Eco on workdays 07:00-19:00": {
        "name": "Eco on workdays", "action": {"kind": "force_mode", "mode": "eco"},
        "condition": {"schedule": {"start": "07:00", "end": "19:00", "weekdays": "workdays"}}},
}


@dataclass(frozen=True, slots=True)
class TimelineBar:
    rule_id: str
    rule_name: str
    action: str
    start: datetime
    end: datetime
    skipped: bool


@dataclass(frozen=True, slots=True)
class SiteRules:
    site_id: str
    site_name: str
    timezone: str
    rules: tuple[Rule, ...]
    conflicts: tuple[RuleConflict, ...]
    timeline: tuple[TimelineBar, ...]
    editable_rule_ids: frozenset[str]   # the rules this user may change
    may_add: bool                        # may add a rule (scoped to manageable_chargers)
    manageable_chargers: tuple[str, ...]  # chargers of the site whose settings the user may change
    site_chargers: tuple[str, ...]
    updated_at: datetime
    updated_by: str | None


# --------------------------------------------------------------------------- pure helpers


def affected_chargers(rule: Rule, site_id: str, site_chargers: Sequence[str]) -> list[str]:
    """The chargers of the site a rule can act on."""
    if rule.scope.site_id not in (None, site_id):
        return []
    return [c for c in site_chargers if not rule.scope.charger_ids or c in rule.scope.charger_ids]


def week_timeline(rules: Sequence[Rule], start: datetime, end: datetime) -> tuple[TimelineBar, ...]:
    """When each enabled rule's time condition holds in ``[start, end)`` (skipped occurrences too, flagged)."""
    bars: list[TimelineBar] = []
    for rule in rules:
        if not rule.enabled:
            continue
        action = rule.action.describe()
        for iv in active_intervals(rule.condition, start, end):
            bars.append(TimelineBar(rule.rule_id, rule.name, action, iv.start, iv.end, False))
        schedule = rule.condition.schedule
        if schedule is not None and not rule.condition.outside:
            for occ in occurrences(schedule, start, end, include_skipped=True):
                if occ.skipped:
                    bars.append(TimelineBar(rule.rule_id, rule.name, action, max(occ.start, start),
                                            min(occ.end, end), True))
    return tuple(bars)


def rule_mapping(*, rule_id: str, name: str, zone: str, action: Mapping[str, Any], start: str | None = None,
                 end: str | None = None, weekdays: str | Sequence[str] = "every_day", outside: bool = False,
                 modes: Sequence[str] = (), chargers: Sequence[str] = (), enabled: bool = True) -> dict[str, Any]:
    """A rule as ``control.rules_config`` reads it, from the editor's fields (no schedule when no start)."""
    condition: dict[str, Any] = {"modes": list(modes)}
    if start is not None and end is not None:
        condition["schedule"] = {"zone": zone, "start": start, "end": end,
                                 "weekdays": weekdays if isinstance(weekdays, str) else list(weekdays)}
        condition["outside"] = outside
    return {"id": rule_id, "name": name, "enabled": enabled, "action": dict(action),
            "scope": {"chargers": list(chargers)}, "condition": condition}


def preset_mapping(preset: str, *, rule_id: str, zone: str, chargers: Sequence[str] = ()) -> dict[str, Any]:
    base = PRESETS[preset]
    condition = dict(base["condition"])
    schedule = dict(condition.get("schedule", {}))
    return rule_mapping(rule_id=rule_id, name=base["name"], zone=zone, action=base["action"],
                        start=schedule.get("start"), end=schedule.get("end"),
                        weekdays=schedule.get("weekdays", "every_day"), outside=bool(condition.get("outside")),
                        chargers=chargers)


# --------------------------------------------------------------------------- access


def _site_chargers(access: Access, site_id: str) -> list[str]:
    with access.connection() as conn:
        return charging_store.site_charger_ids(conn, site_id)


def _require_site_visible(who: Principal, access: Access, site_id: str) -> list[str]:
    chargers = _site_chargers(access, site_id)
    visible = set(access.visible_ids(who, site_id=site_id))
    if not chargers or not visible & set(chargers):
        access.log(who, "view_rules", None, allowed=False, detail=f"site {site_id}")
        raise AccessDenied(Decision(False, f"you have no access to site {site_id}"), Permission.VIEW, None)
    return chargers


def _manageable(who: Principal, access: Access, chargers: Sequence[str]) -> list[str]:
    return [c for c in chargers if access.check(who, Permission.CHANGE_SETTINGS, c).allowed]


def _require_may_change(who: Principal, access: Access, site_id: str, rule: Rule, chargers: Sequence[str]) -> None:
    affected = affected_chargers(rule, site_id, chargers)
    if not affected:
        raise AccessDenied(Decision(False, f"rule '{rule.name}' names no charger of site {site_id}"),
                           Permission.CHANGE_SETTINGS, None)
    access.require_all(who, Permission.CHANGE_SETTINGS, affected)


# --------------------------------------------------------------------------- reads


def site_rules(who: Principal, access: Access, site_id: str, *, now: datetime) -> SiteRules:
    chargers = _require_site_visible(who, access, site_id)
    with access.connection() as conn:
        stored = charging_store.site_row(conn, site_id)
    if stored is None:
        raise LookupError(f"site {site_id} has no load-management configuration")
    rules = rules_from_mapping(stored.rules)
    manageable = _manageable(who, access, chargers)
    editable = frozenset(r.rule_id for r in rules
                         if (aff := affected_chargers(r, site_id, chargers)) and set(aff) <= set(manageable))
    return SiteRules(site_id, stored.name, stored.timezone, rules, find_conflicts(rules, now),
                     week_timeline(rules, now, now + WEEK), editable, bool(manageable), tuple(manageable),
                     tuple(chargers), stored.updated_at, stored.updated_by)


# --------------------------------------------------------------------------- changes


def _change(who: Principal, access: Access, site_id: str, action: str,
            edit: Any) -> tuple[Rule, ...]:
    """Lock the site, apply ``edit(rules, chargers) -> rules`` (which checks), validate, store, log."""
    chargers = _require_site_visible(who, access, site_id)
    with access.connection() as conn, conn.transaction():
        stored = charging_store.site_row(conn, site_id, for_update=True)
        if stored is None:
            raise LookupError(f"site {site_id} has no load-management configuration")
        before = rules_from_mapping(stored.rules)
        after: tuple[Rule, ...] = edit(before, chargers)
        try:
            control_store.save_site(conn, stored.config, rules=rules_to_mapping(after), timezone=stored.timezone,
                                    enabled=stored.enabled, updated_by=who.user_id)
        except control_store.ControlConfigError as exc:
            raise ValueError(str(exc)) from exc
    access.log(who, action, None, allowed=True, detail=f"site {site_id}")
    return after


def _find(rules: Sequence[Rule], rule_id: str) -> Rule:
    for rule in rules:
        if rule.rule_id == rule_id:
            return rule
    raise LookupError(f"no rule {rule_id!r} on this site")


def set_rule_enabled(who: Principal, access: Access, site_id: str, rule_id: str, enabled: bool) -> Rule:
    def edit(rules: tuple[Rule, ...], chargers: list[str]) -> tuple[Rule, ...]:
        _require_may_change(who, access, site_id, _find(rules, rule_id), chargers)
        return tuple(replace(r, enabled=enabled) if r.rule_id == rule_id else r for r in rules)

    return _find(_change(who, access, site_id, "enable_rule" if enabled else "disable_rule", edit), rule_id)


def skip_rule_once(who: Principal, access: Access, site_id: str, rule_id: str, *, now: datetime) -> Rule:
    """Skip the running (or else the next) occurrence of the rule's schedule."""
    def edit(rules: tuple[Rule, ...], chargers: list[str]) -> tuple[Rule, ...]:
        rule = _find(rules, rule_id)
        _require_may_change(who, access, site_id, rule, chargers)
        schedule = rule.condition.schedule
        if schedule is None:
            raise ValueError(f"'{rule.name}' has no schedule, so there is no occurrence to skip")
        skipped = replace(rule, condition=replace(rule.condition, schedule=skip_once(schedule, now)))
        return tuple(skipped if r.rule_id == rule_id else r for r in rules)

    return _find(_change(who, access, site_id, "skip_rule_once", edit), rule_id)


def save_rule(who: Principal, access: Access, site_id: str, mapping: Mapping[str, Any]) -> Rule:
    """Add a rule (new id, appended: existing rules keep precedence) or replace the one with its id."""
    (new,) = rules_from_mapping([mapping])

    def edit(rules: tuple[Rule, ...], chargers: list[str]) -> tuple[Rule, ...]:
        _require_may_change(who, access, site_id, new, chargers)
        if any(r.rule_id == new.rule_id for r in rules):
            _require_may_change(who, access, site_id, _find(rules, new.rule_id), chargers)
            return tuple(new if r.rule_id == new.rule_id else r for r in rules)
        return (*rules, new)

    _change(who, access, site_id, "save_rule", edit)
    return new


def delete_rule(who: Principal, access: Access, site_id: str, rule_id: str) -> None:
    def edit(rules: tuple[Rule, ...], chargers: list[str]) -> tuple[Rule, ...]:
        _require_may_change(who, access, site_id, _find(rules, rule_id), chargers)
        return tuple(r for r in rules if r.rule_id != rule_id)

    _change(who, access, site_id, "delete_rule", edit)
