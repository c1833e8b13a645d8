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

Field by field, what a value means is in :mod:`ingest.normalize_fields`, which also holds the
hot path for values that need no quirk.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from control.contract import MeterSample, OcppVersion, SampleContext
from ingest import normalize_fields as fields
from ingest.normalize_base import Ctx, Quirks, as_list, as_mapping, parse_number, timestamp, to_int

_PHASE_SUMS: Final = tuple(
    (name, code, tuple(f"{name}:{p}" for p in fields.LINE_PHASES))
    for name, code in (("energy_wh", "energy_summed_from_phases"), ("power_w", "power_summed_from_phases"))
)


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
        ts_tuple = ts_quirks.as_tuple()
        last: tuple[SampleContext, _Group] | None = None  # the group of the previous clean value
        for raw in sampled:
            sv = as_mapping(raw)
            if sv is None:
                ctx.quirks.add("sampled_value_malformed")
                continue
            clean = fields.clean_reading(ctx.version, sv)
            if clean is not None:  # exactly what the full path below would do for this value
                shape, value = clean
                if last is None or last[0] is not shape.context:
                    last = (shape.context, _group_for(groups, ts, shape.context))
                if ts_tuple:
                    last[1].quirks.extend(ts_tuple)
                last[1].put(shape.key, shape.rank, value, shape.measurand)
                continue
            sv_quirks = Quirks()
            context = fields.context(sv.get("context"), sv_quirks)
            group = _group_for(groups, ts, context)
            group.quirks.extend(ts_tuple)
            _read_into(ctx.version, sv, group, sv_quirks)
            group.quirks.extend(sv_quirks.as_tuple())
    samples = []
    for group in groups.values():
        sample = _finish(ctx, group, connector_id, transaction_id)
        ctx.quirks.extend(group.quirks.as_tuple())
        if sample is not None:
            samples.append(sample)
    return samples


def _group_for(groups: dict[tuple[datetime, SampleContext], _Group], ts: datetime,
               context: SampleContext) -> _Group:
    group = groups.get((ts, context))
    if group is None:
        group = groups[(ts, context)] = _Group(ts, context, Quirks())
    return group


def register_wh(samples: Iterable[MeterSample], context: SampleContext, *, last: bool) -> float | None:
    """The energy register of the sample with ``context``, else of the first (or last) sample."""
    with_energy = [s for s in samples if s.energy_wh is not None]
    for sample in with_energy:
        if sample.context is context:
            return sample.energy_wh
    if not with_energy:
        return None
    return (max if last else min)(with_energy, key=lambda s: s.ts).energy_wh


def _read_into(version: OcppVersion, sv: Mapping[str, Any], group: _Group, quirks: Quirks) -> None:
    measurand = fields.measurand(sv.get("measurand"), quirks)
    if measurand is None:
        return
    kind = fields.MEASURANDS[measurand]
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
    convert = fields.converter(kind, unit, quirks)
    if convert is None:
        return
    value = round(convert(value), fields.DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0
    if not math.isfinite(value):  # e.g. "1e308" kWh
        quirks.add("value_not_finite", measurand)
        return
    if value < 0 and kind not in fields.MAY_BE_NEGATIVE:
        quirks.add("value_negative", measurand)
        return
    if kind == "soc" and value > 100:
        quirks.add("value_out_of_range", measurand)
        return
    target = fields.target(kind, sv.get("phase"), quirks)
    if target is None:
        return
    key, phase_rank = target
    location_rank = fields.location_rank(sv.get("location"), quirks)
    group.put(key, location_rank * 10 + phase_rank, value, measurand)


def _finish(ctx: Ctx, group: _Group, connector_id: int, transaction_id: str | None) -> MeterSample | None:
    values = {key: value for key, (_rank, value) in group.values.items()}
    for name, code, phase_keys in _PHASE_SUMS:
        phased = [values[key] for key in phase_keys if key in values]
        if name not in values and phased:
            values[name] = sum(phased)
            group.quirks.add(code)
    phase_currents = [values[f] for f in fields.CURRENT_FIELDS.values() if f in values]
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
        received_at=ctx.received_at,
    )


