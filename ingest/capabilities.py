"""What a charger can take in a charging profile: the question and its answer. Pure: no IO, no clock.

Asked once per boot (see :mod:`ingest.capability_session` for when), in one CALL:

* OCPP 1.6 ``GetConfiguration`` for the keys of :data:`V16_KEYS`;
* OCPP 2.0.1 ``GetVariables`` for the variables of :data:`V201_VARIABLES` (``SmartChargingCtrlr``
  and ``ChargingStation.SupplyPhases``).

:func:`learned` turns the answer (or its absence: no answer, a CALLERROR, a broken payload) into
a :class:`warehouse.capability_store.ChargerCapabilities`. A value the charger does not give stays
``None`` with a note saying which default the bridge uses instead (:mod:`ingest.profile_shaping`):

===================  ==========================================  ================================
learned              1.6 key / 2.0.1 variable                    when unknown
===================  ==========================================  ================================
rate_units           ChargingScheduleAllowedChargingRateUnit /   the command's unit (A) as is
                     SmartChargingCtrlr.RateUnit
max_stack_level      ChargeProfileMaxStackLevel /                our stack level, uncapped
                     SmartChargingCtrlr.ProfileStackLevel
max_periods          ChargingScheduleMaxPeriods /                one period (all we send today)
                     SmartChargingCtrlr.PeriodsPerSchedule
max_profiles         MaxChargingProfilesInstalled (1.6)          not used to shape a profile
phases               ConnectorPhaseRotation (NotApplicable: 1) / 3 on AC (no numberPhases sent)
                     ChargingStation.SupplyPhases (0 = DC)
connectors           NumberOfConnectors (1.6)                    not used to shape a profile
smart_charging       SupportedFeatureProfiles has SmartCharging  not used to shape a profile
                     / SmartChargingCtrlr.Available and Enabled
===================  ==========================================  ================================

2.0.1 ``SmartChargingCtrlr.Entries`` (instance ChargingProfiles) is the number of profiles
installed *now*, not the maximum (that is the variable's ``maxLimit``, which only GetReport
gives): it is kept in ``raw`` for the record and not learned as ``max_profiles``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

from control.contract import OcppVersion
from warehouse.capability_store import ChargerCapabilities

V16_KEYS: Final = (
    "ChargingScheduleAllowedChargingRateUnit",
    "ChargeProfileMaxStackLevel",
    "ChargingScheduleMaxPeriods",
    "MaxChargingProfilesInstalled",
    "ConnectorPhaseRotation",
    "NumberOfConnectors",
    "SupportedFeatureProfiles",
)

# (component, variable, variable instance)
V201_VARIABLES: Final = (
    ("SmartChargingCtrlr", "RateUnit", None),
    ("SmartChargingCtrlr", "ProfileStackLevel", None),
    ("SmartChargingCtrlr", "PeriodsPerSchedule", None),
    ("SmartChargingCtrlr", "Entries", "ChargingProfiles"),
    ("SmartChargingCtrlr", "Available", None),
    ("SmartChargingCtrlr", "Enabled", None),
    ("ChargingStation", "SupplyPhases", None),
)

_UNITS: Final = {"current": "A", "a": "A", "power": "W", "w": "W"}
_ROTATIONS: Final = frozenset({"RST", "RTS", "SRT", "STR", "TRS", "TSR"})
_MAX_NOTES: Final = 20


def capability_request(version: OcppVersion) -> tuple[str, dict[str, Any]]:
    """The one CALL (action, camelCase payload) that asks for everything."""
    if version is OcppVersion.V16:
        return "GetConfiguration", {"key": list(V16_KEYS)}
    items = []
    for component, variable, instance in V201_VARIABLES:
        var: dict[str, Any] = {"name": variable}
        if instance is not None:
            var["instance"] = instance
        items.append({"component": {"name": component}, "variable": var})
    return "GetVariables", {"getVariableData": items}


def variable_name(component: str, variable: str, instance: str | None = None) -> str:
    """``Component.Variable`` (``[Instance]`` appended when there is one): the key in ``raw``."""
    return f"{component}.{variable}" + (f"[{instance}]" if instance else "")


# --------------------------------------------------------------------------- answers


def unanswered(charger_id: str, version: OcppVersion, learned_at: datetime, problem: str, *,
               firmware_version: str | None = None, raw: Mapping[str, Any] | None = None) -> ChargerCapabilities:
    """No answer, a CALLERROR or a payload that breaks the schema: every default, and why."""
    return ChargerCapabilities(
        charger_id=charger_id, ocpp_version=version.value, learned_at=learned_at, answered=False,
        firmware_version=firmware_version, notes=(f"{problem[:300]}; safe defaults used for everything",),
        raw={"error": problem[:2000], **(raw or {})},
    )


def learned(charger_id: str, version: OcppVersion, answer: Mapping[str, Any], learned_at: datetime, *,
            firmware_version: str | None = None) -> ChargerCapabilities:
    """The capabilities in a schema-valid GetConfiguration / GetVariables answer."""
    values, raw, notes = (_v16_values(answer) if version is OcppVersion.V16 else _v201_values(answer))
    parsed = _V16_PARSE if version is OcppVersion.V16 else _V201_PARSE
    found: dict[str, Any] = {}
    for name, (field_name, parse, default_note) in parsed.items():
        text = values.get(name)
        if text is None:
            notes.append(f"{name}: not given; {default_note}")
            continue
        value, problem = parse(text)
        if problem is not None:
            notes.append(f"{name} = {text[:60]!r}: {problem}; {default_note}")
        if value is not None:
            found[field_name] = value
    smart = found.pop("_smart_available", None), found.pop("_smart_enabled", None)
    if version is OcppVersion.V201 and smart != (None, None):
        found["smart_charging"] = all(flag for flag in smart if flag is not None)
    return ChargerCapabilities(
        charger_id=charger_id, ocpp_version=version.value, learned_at=learned_at, answered=True,
        firmware_version=firmware_version, notes=tuple(notes[:_MAX_NOTES]), raw=raw, **found,
    )


def _v16_values(answer: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, Any], list[str]]:
    values: dict[str, str] = {}
    for item in answer.get("configurationKey") or []:
        if item.get("value") is not None:
            values[str(item["key"])] = str(item["value"])
    unknown = [str(k) for k in answer.get("unknownKey") or []]
    return values, {"configurationKey": values, "unknownKey": unknown}, []


def _v201_values(answer: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, Any], list[str]]:
    values: dict[str, str] = {}
    raw: dict[str, Any] = {}
    notes: list[str] = []
    for result in answer.get("getVariableResult") or []:
        name = variable_name(result["component"]["name"], result["variable"]["name"],
                             result["variable"].get("instance"))
        status = result["attributeStatus"]
        raw[name] = {"status": status, "value": result.get("attributeValue")}
        if status == "Accepted" and result.get("attributeValue") is not None:
            values[_canonical(name)] = str(result["attributeValue"])
        elif name.lower() == "smartchargingctrlr.entries[chargingprofiles]":
            notes.append(f"{name}: {status}")  # informational only: nothing depends on it
    return values, raw, notes


def _canonical(name: str) -> str:
    """Names are case-insensitive in 2.0.1: map an answer's spelling onto ours."""
    for component, variable, instance in V201_VARIABLES:
        ours = variable_name(component, variable, instance)
        if ours.lower() == name.lower():
            return ours
    return name


# --------------------------------------------------------------------------- values

Parsed = tuple[Any, str | None]  # (value or None, problem or None)


def _rate_units(text: str) -> Parsed:
    units, odd = set(), []
    for token in text.replace(";", ",").split(","):
        token = token.strip()
        if not token:
            continue
        unit = _UNITS.get(token.lower())
        if unit is None:
            odd.append(token)
        else:
            units.add(unit)
    ordered = tuple(u for u in ("A", "W") if u in units)
    if odd:
        return ordered or None, f"unknown unit(s) {', '.join(odd)[:60]}"
    return (ordered, None) if ordered else (None, "no unit")


def _count(minimum: int) -> Callable[[str], Parsed]:
    def parse(text: str) -> Parsed:
        try:
            number = float(text.strip())
        except ValueError:
            return None, "not a number"
        if not number.is_integer() or number < minimum:
            return None, f"not a whole number >= {minimum}"
        return int(number), None

    return parse


def _phase_rotation(text: str) -> Parsed:
    """1.6 ConnectorPhaseRotation: ``1.RST,2.NotApplicable`` (or without the connector prefix).
    NotApplicable means single-phase (or DC); a rotation means three phases."""
    per_connector: dict[str, str] = {}
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        connector, _, rotation = entry.rpartition(".")
        per_connector[connector or "*"] = rotation
    if len(per_connector) > 1:
        per_connector.pop("0", None)  # connector 0 is the grid connection: the connectors decide
    kinds = {1 if r.lower() == "notapplicable" else 3 if r.upper() in _ROTATIONS else None
             for r in per_connector.values()}
    if not kinds or None in kinds:
        return None, "phase rotation unknown"
    if len(kinds) > 1:
        return 1, "single-phase and three-phase connectors: taken as single-phase"
    return kinds.pop(), None


def _supply_phases(text: str) -> Parsed:
    value, problem = _count(0)(text)
    if value is not None and value > 3:
        return None, "more than 3 phases"
    return value, problem


def _flag(text: str) -> Parsed:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true", None
    return None, "not true/false"


def _feature_profiles(text: str) -> Parsed:
    return "smartcharging" in {p.strip().lower() for p in text.split(",")}, None


_FieldParse = tuple[str, Callable[[str], Parsed], str]  # (field, parser, what the bridge does without it)

_V16_PARSE: Final[dict[str, _FieldParse]] = {
    "ChargingScheduleAllowedChargingRateUnit": ("rate_units", _rate_units, "limits go in the unit commanded (A)"),
    "ChargeProfileMaxStackLevel": ("max_stack_level", _count(0), "our stack level goes uncapped"),
    "ChargingScheduleMaxPeriods": ("max_periods", _count(1), "one period per schedule"),
    "MaxChargingProfilesInstalled": ("max_profiles", _count(0), "no limit assumed"),
    "ConnectorPhaseRotation": ("phases", _phase_rotation, "three phases assumed (no numberPhases sent)"),
    "NumberOfConnectors": ("connectors", _count(0), "unknown"),
    "SupportedFeatureProfiles": ("smart_charging", _feature_profiles, "unknown"),
}

_V201_PARSE: Final[dict[str, _FieldParse]] = {
    "SmartChargingCtrlr.RateUnit": ("rate_units", _rate_units, "limits go in the unit commanded (A)"),
    "SmartChargingCtrlr.ProfileStackLevel": ("max_stack_level", _count(0), "our stack level goes uncapped"),
    "SmartChargingCtrlr.PeriodsPerSchedule": ("max_periods", _count(1), "one period per schedule"),
    "SmartChargingCtrlr.Available": ("_smart_available", _flag, "unknown"),
    "SmartChargingCtrlr.Enabled": ("_smart_enabled", _flag, "unknown"),
    "ChargingStation.SupplyPhases": ("phases", _supply_phases, "three phases assumed (no numberPhases sent)"),
}
