"""Rules as configuration: a JSON array (``sites.rules jsonb``) or ``[[rules]]`` tables in a site's TOML file.

Standard library only, no IO. :func:`rules_from_mapping` parses strictly: unknown keys are
refused (a typo never silently drops a limit), and every error is a :class:`RulesConfigError`
(a :class:`~control.rules.RuleError`) whose message starts with the path of the bad value,
``rules[2].condition.schedule.start``. :func:`rules_to_mapping` is its inverse and JSON-ready
(times and dates as strings): ``rules_from_mapping(rules_to_mapping(rules)) == rules``. Store
what it returns, so a hand-written TOML file (whose time and date values JSON cannot hold)
is normalised before it reaches the database.

The order of the list is the policy: the first enabled rule that matches decides, and its
``name`` is the reason in the audit log (see :mod:`control.rules`). Shape::

    [[rules]]                                     # a disabled rule is kept but never matches
    id = "holiday-pause"                          # required: unique among the site's rules
    name = "Pause on public holidays"             # required: the reason shown and audited
    enabled = false                               # optional, default true
    action = { kind = "pause" }                   # required: cap_current, cap_power, pause, allow, force_mode

    [[rules]]
    id = "off-peak-eco"
    name = "Off-peak window 23:00-06:00 for Eco"
    action = { kind = "pause" }
    [rules.condition]                             # optional; every part must hold
    modes = ["eco"]                               # optional: standard, eco, boost (empty: any mode)
    outside = true                                # match when the window is NOT open (needs a schedule)
    [rules.condition.schedule]
    zone = "Europe/Berlin"                        # required: the site's IANA time zone
    start = "23:00"                               # "HH:MM" (or "HH:MM:SS") local time, or a TOML time
    end = "06:00"                                 # at or before start: ends the next morning

    [[rules]]
    id = "boost-mornings"
    name = "Boost mornings"
    action = { kind = "force_mode", mode = "boost" }
    [rules.condition.schedule]
    id = "mornings"                               # optional, default the rule's id
    zone = "Europe/Berlin"
    start = 06:30:00                              # a TOML time works too
    end = "09:00"
    weekdays = "workdays"                         # "every_day" (default), "workdays", "weekend" or a list
    valid_from = 2024-11-01                       # optional first and last occurrence dates, inclusive:
    valid_until = "2025-03-31"                    #   a TOML date or an ISO date string
    skipped_dates = ["2024-12-24", 2024-12-31]    # optional "skip once" dates (occurrence start dates)

    [[rules]]
    id = "evening-10a"
    name = "Limit to 10 A after 18:00"
    action = { kind = "cap_current", current_a = 10 }
    condition.schedule = { zone = "Europe/Berlin", start = "18:00", end = "24:00" }  # "24:00": midnight

    [[rules]]
    id = "guests-16a"
    name = "Guest chargers at 16 A on weekends"
    action = { kind = "cap_current", current_a = 16 }
    scope = { chargers = ["CP-7", "CP-8"] }       # optional: site and/or chargers (empty: everywhere)
    [rules.condition]
    id_tags = []                                  # optional: OCPP id tags (empty: any)
    users = []                                    # optional: user ids (empty: any)
    schedule = { zone = "Europe/Berlin", start = "00:00", end = "00:00", weekdays = ["sat", "sun"] }

    [[rules]]
    id = "cap-11kw"
    name = "Cap demand at 11 kW"
    action = { kind = "cap_power", power_kw = 11 }
    scope = { site = "depot-1" }

As JSON each rule is the same object, e.g. ``{"id": "cap-11kw", "name": "Cap demand at 11 kW",
"action": {"kind": "cap_power", "power_kw": 11}}``; ``null`` stands for an absent optional value.
Other actions: ``{kind = "allow"}`` (charge, stop looking). Start equal to end is a whole day.
:func:`rules_to_mapping` writes every key but the absent ones, lists sorted, weekdays as a
preset name where one fits, and an end at midnight as ``"24:00"``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime, time
from typing import Any, Final, TypeVar

from control.contract import ChargingMode
from control.rules import Action, ActionKind, Condition, Rule, RuleError, Scope
from control.schedules import EVERY_DAY, WEEKEND, WORKDAYS, Schedule, ScheduleError, Weekday, WeeklyWindow, zone_of


class RulesConfigError(RuleError):
    """A rules configuration that is not valid; the message starts with the path of the bad value."""


WEEKDAY_PRESETS: Final[Mapping[str, frozenset[Weekday]]] = {
    "every_day": EVERY_DAY,
    "workdays": WORKDAYS,
    "weekend": WEEKEND,
}
_ACTION_ARGUMENT: Final[Mapping[ActionKind, str]] = {
    ActionKind.CAP_CURRENT: "current_a",
    ActionKind.CAP_POWER: "power_kw",
    ActionKind.FORCE_MODE: "mode",
}
_TIME: Final = re.compile(r"(?P<h>[01]\d|2[0-3]):(?P<m>[0-5]\d)(?::(?P<s>[0-5]\d))?")
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_MIDNIGHT: Final = time(0)
_KINDS: Final = frozenset(kind.value for kind in ActionKind)
_MODES: Final = frozenset(mode.value for mode in ChargingMode)
_T = TypeVar("_T")


def rules_from_mapping(items: Sequence[Mapping[str, Any]]) -> tuple[Rule, ...]:
    """The rules, in order, from a JSON array or TOML ``[[rules]]`` tables (shape in the module docstring).

    Raises :class:`RulesConfigError` naming the path of the bad value; duplicate rule ids are refused.
    """
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(_list("rules", items)):
        where = f"rules[{index}]"
        rule = _rule(where, raw)
        if rule.rule_id in seen:
            raise RulesConfigError(f"{where}.id: duplicate rule id {rule.rule_id!r} (also rules[{seen[rule.rule_id]}])")
        seen[rule.rule_id] = index
        rules.append(rule)
    return tuple(rules)


def rules_to_mapping(rules: Sequence[Rule]) -> list[dict[str, Any]]:
    """The inverse of :func:`rules_from_mapping`: JSON-ready dicts, absent optional values left out."""
    return [_rule_out(f"rules[{index}]", rule) for index, rule in enumerate(rules)]


# --------------------------------------------------------------------------- parsing


def _rule(where: str, data: object) -> Rule:
    table = _table(where, data, {"id", "name", "enabled", "action", "scope", "condition"})
    rule_id = _id(f"{where}.id", _required(where, table, "id"))
    name = _str(f"{where}.name", _required(where, table, "name"))
    if not name.strip():
        raise RulesConfigError(f"{where}.name: must not be blank")
    action = _action(f"{where}.action", _required(where, table, "action"))
    scope = _scope(f"{where}.scope", table.get("scope"))
    condition = _condition(f"{where}.condition", table.get("condition"), default_schedule_id=rule_id)
    with _located(where):
        return Rule(rule_id, name, action, scope, condition, _bool(f"{where}.enabled", table.get("enabled"), True))


def _action(where: str, data: object) -> Action:
    table = _table(where, data, {"kind", *_ACTION_ARGUMENT.values()})
    valid = ", ".join(kind.value for kind in ActionKind)
    raw_kind = _required(where, table, "kind", hint=f" (one of: {valid})")
    if not isinstance(raw_kind, str) or raw_kind not in _KINDS:
        raise RulesConfigError(f"{where}.kind: unknown action kind {raw_kind!r} (valid: {valid})")
    kind = ActionKind(raw_kind)
    argument = _ACTION_ARGUMENT.get(kind)
    extra = sorted(key for key in table if key not in {"kind", argument})
    if extra:
        takes = f"takes only {argument}" if argument else "takes no arguments"
        raise RulesConfigError(f"{where}: unknown keys {extra} for kind {kind.value!r} (it {takes})")
    if argument is None:
        return Action(kind)
    value = _required(where, table, argument, hint=f" for kind {kind.value!r}")
    if kind is ActionKind.FORCE_MODE:
        return Action(kind, mode=_mode(f"{where}.mode", value))
    number = _number(f"{where}.{argument}", value)
    if number < 0:
        raise RulesConfigError(f"{where}.{argument}: must be >= 0, got {value!r}")
    return Action(kind, current_a=number) if kind is ActionKind.CAP_CURRENT else Action(kind, power_kw=number)


def _scope(where: str, data: object) -> Scope:
    if data is None:
        return Scope()
    table = _table(where, data, {"site", "chargers"})
    site = table.get("site")
    return Scope(
        site_id=None if site is None else _id(f"{where}.site", site),
        charger_ids=_set(f"{where}.chargers", table.get("chargers"), _id),
    )


def _condition(where: str, data: object, *, default_schedule_id: str) -> Condition:
    if data is None:
        return Condition()
    table = _table(where, data, {"schedule", "outside", "modes", "id_tags", "users"})
    raw_schedule = table.get("schedule")
    schedule = None if raw_schedule is None else _schedule(f"{where}.schedule", raw_schedule, default_schedule_id)
    outside = _bool(f"{where}.outside", table.get("outside"), False)
    if outside and schedule is None:
        raise RulesConfigError(f"{where}.outside: needs a schedule (outside of which window?)")
    return Condition(
        schedule=schedule,
        outside=outside,
        modes=_set(f"{where}.modes", table.get("modes"), _mode),
        id_tags=_set(f"{where}.id_tags", table.get("id_tags"), _nonempty_str),
        user_ids=_set(f"{where}.users", table.get("users"), _nonempty_str),
    )


def _schedule(where: str, data: object, default_id: str) -> Schedule:
    table = _table(
        where,
        data,
        {"id", "zone", "start", "end", "weekdays", "enabled", "valid_from", "valid_until", "skipped_dates"},
    )
    raw_id = table.get("id")
    zone = _str(f"{where}.zone", _required(where, table, "zone", hint=" (the site's IANA time zone)"))
    try:
        zone_of(zone)
    except ScheduleError:
        raise RulesConfigError(
            f"{where}.zone: unknown time zone {zone!r} (expected an IANA name such as 'Europe/Berlin')"
        ) from None
    start = _time(f"{where}.start", _required(where, table, "start"), end=False)
    end = _time(f"{where}.end", _required(where, table, "end"), end=True)
    weekdays = _weekdays(f"{where}.weekdays", table.get("weekdays"))
    valid_from = _opt_date(f"{where}.valid_from", table.get("valid_from"))
    valid_until = _opt_date(f"{where}.valid_until", table.get("valid_until"))
    if valid_from is not None and valid_until is not None and valid_until < valid_from:
        raise RulesConfigError(f"{where}.valid_until: {valid_until} is before valid_from {valid_from}")
    with _located(where):
        return Schedule(
            schedule_id=default_id if raw_id is None else _id(f"{where}.id", raw_id),
            zone=zone,
            window=WeeklyWindow(start, end, weekdays),
            enabled=_bool(f"{where}.enabled", table.get("enabled"), True),
            valid_from=valid_from,
            valid_until=valid_until,
            skipped_dates=_set(f"{where}.skipped_dates", table.get("skipped_dates"), _date),
        )


def _weekdays(where: str, value: object) -> frozenset[Weekday]:
    if value is None:
        return EVERY_DAY
    if isinstance(value, str):
        preset = WEEKDAY_PRESETS.get(value.lower())
        if preset is None:
            raise RulesConfigError(
                f"{where}: unknown preset {value!r} (presets: {', '.join(WEEKDAY_PRESETS)}; or a list of days)"
            )
        return preset
    days = _set(where, value, _weekday)
    if not days:
        raise RulesConfigError(f"{where}: needs at least one day")
    return days


def _weekday(where: str, value: object) -> Weekday:
    try:
        return Weekday(_str(where, value).lower())
    except ValueError:
        raise RulesConfigError(f"{where}: unknown day {value!r} (days: {', '.join(Weekday)})") from None


def _mode(where: str, value: object) -> ChargingMode:
    if not isinstance(value, str) or value not in _MODES:
        raise RulesConfigError(f"{where}: unknown charging mode {value!r} (valid: {', '.join(ChargingMode)})")
    return ChargingMode(value)


def _time(where: str, value: object, *, end: bool) -> time:
    if isinstance(value, time):
        if value.tzinfo is not None or value.microsecond:
            raise RulesConfigError(f"{where}: expected a local time in whole seconds, got {value.isoformat()!r}")
        return value
    if end and value == "24:00":
        return _MIDNIGHT  # an end at or before the start ends the next day
    text = _str(where, value)
    match = _TIME.fullmatch(text)
    if match is None:
        only = " ('24:00' is only valid as an end)" if text == "24:00" else ""
        raise RulesConfigError(f"{where}: expected a time as 'HH:MM', got {text!r}{only}")
    return time(int(match["h"]), int(match["m"]), int(match["s"] or 0))


def _date(where: str, value: object) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    text = _str(where, value)
    if _DATE.fullmatch(text) is None:
        raise RulesConfigError(f"{where}: expected an ISO date 'YYYY-MM-DD', got {text!r}")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise RulesConfigError(f"{where}: not a valid date {text!r} ({exc})") from None


def _opt_date(where: str, value: object) -> date | None:
    return None if value is None else _date(where, value)


# --------------------------------------------------------------------------- writing


def _rule_out(where: str, rule: Rule) -> dict[str, Any]:
    action: dict[str, Any] = {"kind": rule.action.kind.value}
    argument = _ACTION_ARGUMENT.get(rule.action.kind)
    if argument is not None:
        value = getattr(rule.action, argument)
        action[argument] = value.value if isinstance(value, ChargingMode) else value
    scope: dict[str, Any] = {"chargers": sorted(rule.scope.charger_ids)}
    if rule.scope.site_id is not None:
        scope["site"] = rule.scope.site_id
    cond = rule.condition
    condition: dict[str, Any] = {} if cond.schedule is None else {"schedule": _schedule_out(where, cond.schedule)}
    condition |= {
        "outside": cond.outside,
        "modes": sorted(mode.value for mode in cond.modes),
        "id_tags": sorted(cond.id_tags),
        "users": sorted(cond.user_ids),
    }
    return {
        "id": rule.rule_id,
        "name": rule.name,
        "enabled": rule.enabled,
        "action": action,
        "scope": scope,
        "condition": condition,
    }


def _schedule_out(rule_where: str, schedule: Schedule) -> dict[str, Any]:
    where = f"{rule_where}.condition.schedule"
    window = schedule.window
    preset = next((name for name, days in WEEKDAY_PRESETS.items() if days == window.weekdays), None)
    out: dict[str, Any] = {
        "id": schedule.schedule_id,
        "zone": schedule.zone,
        "start": _time_out(f"{where}.start", window.start_local),
        "end": "24:00" if window.end_local == _MIDNIGHT else _time_out(f"{where}.end", window.end_local),
        "weekdays": preset or [day.value for day in Weekday if day in window.weekdays],
        "enabled": schedule.enabled,
    }
    if schedule.valid_from is not None:
        out["valid_from"] = schedule.valid_from.isoformat()
    if schedule.valid_until is not None:
        out["valid_until"] = schedule.valid_until.isoformat()
    out["skipped_dates"] = sorted(day.isoformat() for day in schedule.skipped_dates)
    return out


def _time_out(where: str, value: time) -> str:
    if value.microsecond:
        raise RulesConfigError(f"{where}: {value.isoformat()} has fractions of a second, which the format cannot hold")
    return value.strftime("%H:%M:%S" if value.second else "%H:%M")


# --------------------------------------------------------------------------- small parsers


@contextmanager
def _located(where: str) -> Iterator[None]:
    """Prefix a model error raised while building one element with that element's path."""
    try:
        yield
    except RulesConfigError:
        raise
    except (RuleError, ScheduleError) as exc:
        raise RulesConfigError(f"{where}: {exc}") from None


def _table(where: str, data: object, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise RulesConfigError(f"{where}: expected a table/object, got {type(data).__name__}")
    unknown = sorted(str(key) for key in data if key not in allowed)
    if unknown:
        raise RulesConfigError(f"{where}: unknown keys {unknown} (allowed: {sorted(allowed)})")
    return data


def _required(where: str, table: Mapping[str, Any], key: str, *, hint: str = "") -> Any:
    value = table.get(key)
    if value is None:
        raise RulesConfigError(f"{where}.{key}: required{hint}")
    return value


def _list(where: str, value: object) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise RulesConfigError(f"{where}: expected a list, got {type(value).__name__}")
    return list(value)


def _set(where: str, value: object, parse: Callable[[str, object], _T]) -> frozenset[_T]:
    if value is None:
        return frozenset()
    items: list[_T] = []
    for index, raw in enumerate(_list(where, value)):
        item = parse(f"{where}[{index}]", raw)
        if item in items:
            raise RulesConfigError(f"{where}[{index}]: {raw!r} is listed twice")
        items.append(item)
    return frozenset(items)


def _str(where: str, value: object) -> str:
    if not isinstance(value, str):
        raise RulesConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _nonempty_str(where: str, value: object) -> str:
    text = _str(where, value)
    if not text:
        raise RulesConfigError(f"{where}: must not be empty")
    return text


def _id(where: str, value: object) -> str:
    if not isinstance(value, str) or not value or value != value.strip() or len(value) > 64:
        raise RulesConfigError(f"{where}: expected a non-empty id of at most 64 characters, got {value!r}")
    return value


def _bool(where: str, value: object, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RulesConfigError(f"{where}: expected true or false, got {value!r}")
    return value


def _number(where: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RulesConfigError(f"{where}: expected a finite number, got {value!r}")
    return value
