"""What the fields of an OCPP sampled value mean: measurands, units, phases, locations, contexts.

The lenient readers here turn one field into a clean value or None, writing what they bent into a
:class:`~ingest.normalize_base.Quirks` collector; :mod:`ingest.normalize_meter` combines them.

Hot path: what a sampled value's *shape* (measurand, unit, multiplier, phase, location, context,
format) means is cached once the readers have read it without a quirk (:func:`clean_reading`),
so a clean value costs a dict lookup plus its number; anything that would need a quirk takes the
full path of :mod:`ingest.normalize_meter`, unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

from control.contract import OcppVersion, SampleContext
from ingest.normalize_base import NUMBER, Quirks, enum_table, lookup, to_int

DEFAULT_MEASURAND: Final = "Energy.Active.Import.Register"

MEASURANDS: Final = {
    "Energy.Active.Import.Register": "energy",
    "Power.Active.Import": "power",
    "Current.Import": "current",
    "Current.Offered": "current_offered",
    "Voltage": "voltage",
    "SoC": "soc",
    "Temperature": "temperature",
}

_MEASURAND_NAMES: Final = {name: name for name in MEASURANDS}

# Standard OCPP measurands we do not map: their own quirk code, so they are easy to filter out.
_STANDARD_IGNORED: Final = {
    name: name
    for name in (
        "Energy.Active.Export.Register", "Energy.Reactive.Export.Register", "Energy.Reactive.Import.Register",
        "Energy.Active.Export.Interval", "Energy.Active.Import.Interval", "Energy.Reactive.Export.Interval",
        "Energy.Reactive.Import.Interval", "Energy.Active.Net", "Energy.Reactive.Net", "Energy.Apparent.Net",
        "Energy.Apparent.Import", "Energy.Apparent.Export", "Power.Active.Export", "Power.Offered",
        "Power.Reactive.Export", "Power.Reactive.Import", "Power.Factor", "Current.Export", "Frequency",
        "RPM",
    )
}


def _same(value: float) -> float:
    return value


def _kilo(value: float) -> float:
    return value * 1000.0


def _fahrenheit(value: float) -> float:
    return (value - 32.0) * 5.0 / 9.0


def _kelvin(value: float) -> float:
    return value - 273.15


_UNITS: Final[dict[str, dict[str, Callable[[float], float]]]] = {
    "energy": {"Wh": _same, "kWh": _kilo},
    "power": {"W": _same, "kW": _kilo},
    "current": {"A": _same},
    "current_offered": {"A": _same},
    "voltage": {"V": _same},
    "soc": {"Percent": _same},
    # "Celcius" is the 1.6 schema's own spelling, so it is no quirk.
    "temperature": {"Celsius": _same, "Celcius": _same, "Fahrenheit": _fahrenheit, "K": _kelvin},
}
# Readings in a unit that is wrong but unambiguous: (canonical unit, quirk code).
_UNIT_ALIASES: Final[dict[str, dict[str, tuple[str, str]]]] = {
    "power": {"Wh": ("W", "unit_energy_for_power"), "kWh": ("kW", "unit_energy_for_power")},
    "soc": {"%": ("Percent", "unit_alias")},
    "temperature": {"°C": ("Celsius", "unit_alias"), "C": ("Celsius", "unit_alias")},
}
_DEFAULT_UNIT: Final = {
    "energy": ("Wh", "unit_missing_assumed_wh"),
    "power": ("W", "unit_missing_assumed_w"),
    "current": ("A", "unit_missing_assumed_a"),
    "current_offered": ("A", "unit_missing_assumed_a"),
    "voltage": ("V", "unit_missing_assumed_v"),
    "soc": ("Percent", "unit_missing_assumed_percent"),
    "temperature": ("Celsius", "unit_missing_assumed_celsius"),
}
MAY_BE_NEGATIVE: Final = frozenset({"temperature"})
DECIMALS: Final = 6  # so that "1.1" kWh is 1100 Wh, not 1100.0000000000002

_CONTEXTS: Final = enum_table(SampleContext)
_LOCATION_RANK: Final = {"Outlet": 0, "EV": 0, "Body": 0, "Inlet": 1, "Cable": 1}
_LOCATIONS: Final = {name: name for name in _LOCATION_RANK}
_UNKNOWN_LOCATION_RANK: Final = 2
_PHASES: Final = {
    "L1": "L1", "L2": "L2", "L3": "L3", "L1-N": "L1", "L2-N": "L2", "L3-N": "L3",
    "N": "N", "L1-L2": "L1-L2", "L2-L3": "L2-L3", "L3-L1": "L3-L1",
}
LINE_PHASES: Final = ("L1", "L2", "L3")
CURRENT_FIELDS: Final = {"L1": "current_l1_a", "L2": "current_l2_a", "L3": "current_l3_a"}
_SINGLE_FIELD: Final = {
    "current_offered": "current_offered_a", "soc": "soc_pct", "temperature": "temperature_c",
}


def context(raw: Any, quirks: Quirks) -> SampleContext:
    if raw is None:
        return SampleContext.PERIODIC
    found = lookup(raw, _CONTEXTS, quirks, "context")
    if found is None:
        quirks.add("context_unknown", raw)
        return SampleContext.OTHER
    return found


def measurand(raw: Any, quirks: Quirks) -> str | None:
    if raw is None:
        return DEFAULT_MEASURAND
    known = lookup(raw, _MEASURAND_NAMES, quirks, "measurand")
    if known is not None:
        return known
    ignored = lookup(raw, _STANDARD_IGNORED, Quirks(), "measurand")
    if ignored is not None:
        quirks.add("measurand_ignored", ignored)
    else:
        quirks.add("unknown_measurand", raw)
    return None


def converter(kind: str, raw: Any, quirks: Quirks) -> Callable[[float], float] | None:
    units = _UNITS[kind]
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        default, code = _DEFAULT_UNIT[kind]
        quirks.add(code)
        return units[default]
    if not isinstance(raw, str):
        quirks.add("unit_unexpected", raw)
        return None
    unit = raw.strip()
    if unit != raw:
        quirks.add("unit_whitespace")
    aliases = _UNIT_ALIASES.get(kind, {})
    if unit in units:
        return units[unit]
    if unit in aliases:
        return _alias(units, aliases, unit, quirks)
    folded = unit.lower()
    case_code = "unit_lowercase" if unit == folded else "unit_case_mismatch"
    for name in units:
        if name.lower() == folded:
            quirks.add(case_code)
            return units[name]
    for name in aliases:
        if name.lower() == folded:
            quirks.add(case_code)
            return _alias(units, aliases, name, quirks)
    quirks.add("unit_unexpected", unit)
    return None


def _alias(
    units: Mapping[str, Callable[[float], float]],
    aliases: Mapping[str, tuple[str, str]],
    name: str,
    quirks: Quirks,
) -> Callable[[float], float]:
    canonical, code = aliases[name]
    quirks.add(code, name)
    return units[canonical]


def target(kind: str, raw_phase: Any, quirks: Quirks) -> tuple[str, int] | None:
    """The value key and the phase part of its rank, or None if this phase is not used."""
    if kind in _SINGLE_FIELD:
        return _SINGLE_FIELD[kind], 0
    phase = None
    if raw_phase is not None:
        phase = lookup(raw_phase, _PHASES, quirks, "phase")
        if phase is None:
            quirks.add("phase_unknown", raw_phase)
            return None
    if kind == "voltage":
        if phase is None:
            return "voltage_v", 0
        if phase in LINE_PHASES:
            return "voltage_v", 1 + LINE_PHASES.index(phase)
    elif kind == "current":
        if phase is None:
            return "current_a", 0
        if phase in CURRENT_FIELDS:
            return CURRENT_FIELDS[phase], 0
    else:  # energy, power: a per-phase value is kept apart and summed only if no total comes
        name = "energy_wh" if kind == "energy" else "power_w"
        if phase is None:
            return name, 0
        if phase in LINE_PHASES:
            return f"{name}:{phase}", 0
    quirks.add("phase_ignored", phase)
    return None


def location_rank(raw: Any, quirks: Quirks) -> int:
    if raw is None:
        return 0
    location = lookup(raw, _LOCATIONS, quirks, "location")
    if location is None:
        quirks.add("location_unknown", raw)
        return _UNKNOWN_LOCATION_RANK
    return _LOCATION_RANK[location]


# --------------------------------------------------------------------------- hot path


class Shape(NamedTuple):
    """What a clean sampled value's shape means (everything but its number)."""

    context: SampleContext
    measurand: str
    kind: str
    scale: float | None  # 10 ** multiplier (2.0.1), None without a multiplier
    convert: Callable[[float], float]
    key: str
    rank: int


_SHAPES: Final[dict[OcppVersion, dict[tuple[Any, ...], Shape | None]]] = {v: {} for v in OcppVersion}
_MAX_SHAPES: Final = 4096  # per version; past it new shapes take the full path


def clean_reading(version: OcppVersion, sv: Mapping[str, Any]) -> tuple[Shape, float] | None:
    """(shape, value) if reading ``sv`` needs no quirk at all, else None (use the full path)."""
    get = sv.get
    if version is OcppVersion.V16:
        number = get("value")
        if type(number) is not str or not NUMBER.fullmatch(number):
            return None
        shape_key: tuple[Any, ...] = (get("context"), get("measurand"), get("format"), get("unit"), get("phase"),
                                      get("location"))
    else:
        number = get("value")
        if type(number) is not float and type(number) is not int:
            return None
        unit_of_measure = get("unitOfMeasure")
        if unit_of_measure is None:
            unit = multiplier = None
        elif type(unit_of_measure) is dict:
            unit, multiplier = unit_of_measure.get("unit"), unit_of_measure.get("multiplier")
            if multiplier is not None and type(multiplier) is not int:
                return None  # 1.0 and True equal 1 as keys but read differently
        else:
            return None
        shape_key = (get("context"), get("measurand"), unit, multiplier, get("phase"), get("location"))
    shapes = _SHAPES[version]
    try:
        shape = shapes[shape_key]
    except KeyError:
        shape = read_shape(version, shape_key)
        if len(shapes) < _MAX_SHAPES and all(v is None or type(v) in (str, int) for v in shape_key):
            shapes[shape_key] = shape
    except TypeError:  # an unhashable value (a list or an object where a string belongs)
        return None
    if shape is None:
        return None
    value = float(number)
    if not math.isfinite(value):
        return None
    if shape.scale is not None:
        value *= shape.scale
    value = round(shape.convert(value), DECIMALS) + 0.0
    if not math.isfinite(value) or (value < 0 and shape.kind not in MAY_BE_NEGATIVE) or (
            shape.kind == "soc" and value > 100):
        return None
    return shape, value


def read_shape(version: OcppVersion, shape_key: tuple[Any, ...]) -> Shape | None:
    """The meaning of a shape if the full path reads it without a quirk, else None."""
    q = Quirks()
    if version is OcppVersion.V16:
        raw_context, raw_measurand, raw_format, unit, raw_phase, raw_location = shape_key
        multiplier = None
    else:
        raw_context, raw_measurand, unit, multiplier, raw_phase, raw_location = shape_key
        raw_format = None
    sample_context = context(raw_context, q)
    name = measurand(raw_measurand, q)
    if name is None or (version is OcppVersion.V16 and raw_format == "SignedData"):
        return None
    kind = MEASURANDS[name]
    scale = None
    if multiplier is not None:
        exponent = to_int(multiplier, "multiplier", q)
        if exponent is None or abs(exponent) > 9:
            return None
        scale = 10.0**exponent
    convert = converter(kind, unit, q)
    value_target = target(kind, raw_phase, q)
    rank = location_rank(raw_location, q)
    if q or convert is None or value_target is None:
        return None
    return Shape(sample_context, name, kind, scale, convert, value_target[0], rank * 10 + value_target[1])
