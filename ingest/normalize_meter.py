"""OCPP sampled values (1.6 ``MeterValue``, 2.0.1 ``MeterValueType``) to :class:`MeterSample`.

Sampled values are grouped by (timestamp, context) into one sample per group; the connector and
transaction are fixed per call. What is read:

| measurand (default: Energy.Active.Import.Register) | field | units |
|---|---|---|
| Energy.Active.Import.Register | energy_wh (per-phase only: summed) | Wh, kWh |
| Power.Active.Import | power_w (per-phase only: summed) | W, kW |
| Current.Import | current_a (no phase), current_l1..l3_a | A |
| Current.Offered | current_offered_a | A |
| Voltage | voltage_v: unphased, else L1-N, L2-N, L3-N | V |
| SoC | soc_pct (0..100) | Percent |
| Temperature | temperature_c | Celsius, Fahrenheit, K |

Where the same field is reported twice, the Outlet/EV/Body location wins over Inlet/Cable, and
otherwise the first value wins (``duplicate_measurand`` if they differ). Negative, non-finite
and out-of-range values are dropped with a quirk (temperature may be negative). A group that
yields no value at all produces no sample (its quirks still reach the call's quirk list).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from control.contract import MeterSample, OcppVersion, SampleContext
from ingest.normalize_base import (
    Ctx,
    Quirks,
    as_list,
    as_mapping,
    enum_table,
    lookup,
    parse_number,
    timestamp,
    to_int,
)

DEFAULT_MEASURAND: Final = "Energy.Active.Import.Register"

_MEASURANDS: Final = {
    "Energy.Active.Import.Register": "energy",
    "Power.Active.Import": "power",
    "Current.Import": "current",
    "Current.Offered": "current_offered",
    "Voltage": "voltage",
    "SoC": "soc",
    "Temperature": "temperature",
}

_MEASURAND_NAMES: Final = {name: name for name in _MEASURANDS}

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
_MAY_BE_NEGATIVE: Final = frozenset({"temperature"})
_DECIMALS: Final = 6  # so that "1.1" kWh is 1100 Wh, not 1100.0000000000002

_CONTEXTS: Final = enum_table(SampleContext)
_LOCATION_RANK: Final = {"Outlet": 0, "EV": 0, "Body": 0, "Inlet": 1, "Cable": 1}
_LOCATIONS: Final = {name: name for name in _LOCATION_RANK}
_UNKNOWN_LOCATION_RANK: Final = 2
_PHASES: Final = {
    "L1": "L1", "L2": "L2", "L3": "L3", "L1-N": "L1", "L2-N": "L2", "L3-N": "L3",
    "N": "N", "L1-L2": "L1-L2", "L2-L3": "L2-L3", "L3-L1": "L3-L1",
}
_LINE_PHASES: Final = ("L1", "L2", "L3")
_CURRENT_FIELDS: Final = {"L1": "current_l1_a", "L2": "current_l2_a", "L3": "current_l3_a"}
_SINGLE_FIELD: Final = {
    "current_offered": "current_offered_a", "soc": "soc_pct", "temperature": "temperature_c",
}


@dataclass(slots=True)
class _Group:
    ts: datetime
    context: SampleContext
    quirks: Quirks
    values: dict[str, tuple[int, float]] = field(default_factory=dict)

    def put(self, key: str, rank: int, value: float, measurand: str) -> None:
        current = self.values.get(key)
        if current is None or rank < current[0]:
            self.values[key] = (rank, value)
        elif rank == current[0] and value != current[1]:
            self.quirks.add("duplicate_measurand", measurand)


def meter_samples(
    ctx: Ctx,
    meter_values: Iterable[Any],
    *,
    connector_id: int,
    transaction_id: str | None,
    base_quirks: Iterable[str] = (),
) -> list[MeterSample]:
    """One :class:`MeterSample` per (timestamp, context) group, in order of first appearance."""
    base = tuple(base_quirks)
    groups: dict[tuple[datetime, SampleContext], _Group] = {}
    for meter_value in meter_values:
        entry = as_mapping(meter_value)
        sampled = as_list(entry.get("sampledValue")) if entry is not None else None
        if entry is None or sampled is None:
            ctx.quirks.add("meter_value_malformed")
            continue
        ts_quirks = Quirks(base)
        ts = timestamp(ctx, entry.get("timestamp"), ts_quirks)
        for raw in sampled:
            sv = as_mapping(raw)
            if sv is None:
                ctx.quirks.add("sampled_value_malformed")
                continue
            sv_quirks = Quirks()
            context = _context(sv.get("context"), sv_quirks)
            group = groups.get((ts, context))
            if group is None:
                group = groups[(ts, context)] = _Group(ts, context, Quirks())
            group.quirks.extend(ts_quirks.as_tuple())
            _read_into(ctx.version, sv, group, sv_quirks)
            group.quirks.extend(sv_quirks.as_tuple())
    samples = []
    for group in groups.values():
        sample = _finish(ctx, group, connector_id, transaction_id)
        ctx.quirks.extend(group.quirks.as_tuple())
        if sample is not None:
            samples.append(sample)
    return samples


def register_wh(samples: Iterable[MeterSample], context: SampleContext, *, last: bool) -> float | None:
    """The energy register of the sample with ``context``, else of the first (or last) sample."""
    with_energy = [s for s in samples if s.energy_wh is not None]
    for sample in with_energy:
        if sample.context is context:
            return sample.energy_wh
    if not with_energy:
        return None
    return (max if last else min)(with_energy, key=lambda s: s.ts).energy_wh


def _context(raw: Any, quirks: Quirks) -> SampleContext:
    if raw is None:
        return SampleContext.PERIODIC
    context = lookup(raw, _CONTEXTS, quirks, "context")
    if context is None:
        quirks.add("context_unknown", raw)
        return SampleContext.OTHER
    return context


def _read_into(version: OcppVersion, sv: Mapping[str, Any], group: _Group, quirks: Quirks) -> None:
    measurand = _measurand(sv.get("measurand"), quirks)
    if measurand is None:
        return
    kind = _MEASURANDS[measurand]
    if version is OcppVersion.V16 and sv.get("format") == "SignedData":
        quirks.add("signed_data_ignored", measurand)
        return
    value = parse_number(sv.get("value"), measurand, quirks, expect_string=version is OcppVersion.V16)
    if value is None:
        return
    if version is OcppVersion.V16:
        unit: Any = sv.get("unit")
    else:
        unit_of_measure = as_mapping(sv.get("unitOfMeasure")) or {}
        unit = unit_of_measure.get("unit")
        multiplier = unit_of_measure.get("multiplier")
        if multiplier is not None:
            exponent = to_int(multiplier, "multiplier", quirks)
            if exponent is None or abs(exponent) > 9:
                quirks.add("multiplier_invalid", measurand)
                return
            value *= 10.0**exponent
    convert = _converter(kind, unit, quirks)
    if convert is None:
        return
    value = round(convert(value), _DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0
    if not math.isfinite(value):  # e.g. "1e308" kWh
        quirks.add("value_not_finite", measurand)
        return
    if value < 0 and kind not in _MAY_BE_NEGATIVE:
        quirks.add("value_negative", measurand)
        return
    if kind == "soc" and value > 100:
        quirks.add("value_out_of_range", measurand)
        return
    target = _target(kind, sv.get("phase"), quirks)
    if target is None:
        return
    key, phase_rank = target
    location_rank = _location_rank(sv.get("location"), quirks)
    group.put(key, location_rank * 10 + phase_rank, value, measurand)


def _measurand(raw: Any, quirks: Quirks) -> str | None:
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


def _converter(kind: str, raw: Any, quirks: Quirks) -> Callable[[float], float] | None:
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


def _target(kind: str, raw_phase: Any, quirks: Quirks) -> tuple[str, int] | None:
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
        if phase in _LINE_PHASES:
            return "voltage_v", 1 + _LINE_PHASES.index(phase)
    elif kind == "current":
        if phase is None:
            return "current_a", 0
        if phase in _CURRENT_FIELDS:
            return _CURRENT_FIELDS[phase], 0
    else:  # energy, power: a per-phase value is kept apart and summed only if no total comes
        name = "energy_wh" if kind == "energy" else "power_w"
        if phase is None:
            return name, 0
        if phase in _LINE_PHASES:
            return f"{name}:{phase}", 0
    quirks.add("phase_ignored", phase)
    return None


def _location_rank(raw: Any, quirks: Quirks) -> int:
    if raw is None:
        return 0
    location = lookup(raw, _LOCATIONS, quirks, "location")
    if location is None:
        quirks.add("location_unknown", raw)
        return _UNKNOWN_LOCATION_RANK
    return _LOCATION_RANK[location]


def _finish(ctx: Ctx, group: _Group, connector_id: int, transaction_id: str | None) -> MeterSample | None:
    values = {key: value for key, (_rank, value) in group.values.items()}
    for name, code in (("energy_wh", "energy_summed_from_phases"), ("power_w", "power_summed_from_phases")):
        phased = [values[f"{name}:{p}"] for p in _LINE_PHASES if f"{name}:{p}" in values]
        if name not in values and phased:
            values[name] = sum(phased)
            group.quirks.add(code)
    phase_currents = [values[f] for f in _CURRENT_FIELDS.values() if f in values]
    if "current_a" not in values and len(phase_currents) == 1:
        values["current_a"] = phase_currents[0]
        group.quirks.add("phase_on_single_phase")
    if not any(":" not in key for key in values):
        return None
    return MeterSample(
        charger_id=ctx.charger_id,
        connector_id=connector_id,
        ts=group.ts,
        context=group.context,
        transaction_id=transaction_id,
        energy_wh=values.get("energy_wh"),
        power_w=values.get("power_w"),
        current_a=values.get("current_a"),
        current_l1_a=values.get("current_l1_a"),
        current_l2_a=values.get("current_l2_a"),
        current_l3_a=values.get("current_l3_a"),
        current_offered_a=values.get("current_offered_a"),
        voltage_v=values.get("voltage_v"),
        soc_pct=values.get("soc_pct"),
        temperature_c=values.get("temperature_c"),
        quirks=group.quirks.as_tuple(),
    )
