"""The MQTT event contract: round trips for every event type, and every way a value or payload is refused."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control import contract as c
from control.contract import (
    CONTRACT_VERSION,
    EVENT_TYPES,
    MAX_ID_LENGTH,
    ContractError,
    decode,
    encode,
    from_dict,
    to_dict,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
WIRE_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")

# --------------------------------------------------------------------------- strategies

ids = st.text(
    alphabet=st.characters(categories=("L", "M", "N", "P", "S"), exclude_characters="/+#", include_characters=" "),
    min_size=1, max_size=MAX_ID_LENGTH,
).filter(lambda s: s == s.strip())
texts = st.text(max_size=200)  # hypothesis never generates lone surrogates here
utc_datetimes = st.datetimes(timezones=st.just(UTC))
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
json_scalars = st.none() | st.booleans() | st.integers() | finite_floats | texts
scalar_maps = st.dictionaries(texts, json_scalars, max_size=5)

# Fields whose str is an id (checked by _check_id) rather than free text.
ID_FIELDS = {"charger_id", "transaction_id", "bridge_id", "command_id", "decision_id", "site_id", "circuit_id",
             "alert_id"}
FIELD_OVERRIDES: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("meter_sample", "soc_pct"): st.floats(min_value=0, max_value=100),
    ("setpoint", "limit"): st.floats(min_value=0, allow_infinity=False),
    ("setpoint", "previous_limit"): st.floats(min_value=0, allow_infinity=False),
    ("setpoint", "phases"): st.sampled_from([1, 2, 3]),
    ("alert", "kind"): ids,
    ("alert", "count"): st.integers(min_value=1, max_value=2**31),
    ("dead_letter", "source"): ids,
    ("dead_letter", "reason"): texts.filter(bool),
    ("dead_letter", "raw"): st.text(max_size=3_000),
    ("charging_limit", "period_starts_s"): st.lists(st.integers(min_value=0, max_value=10**7), max_size=4).map(tuple),
    ("charging_limit", "period_limits"): st.lists(st.floats(min_value=0, allow_infinity=False), max_size=4).map(tuple),
    ("charging_limit", "period_phases"): st.lists(st.none() | st.sampled_from([1, 2, 3]), max_size=4).map(tuple),
}


def _base_strategy(type_name: str, name: str, hint: Any) -> st.SearchStrategy[Any]:
    if (type_name, name) in FIELD_OVERRIDES:
        return FIELD_OVERRIDES[(type_name, name)]
    origin = typing.get_origin(hint)
    if hint is datetime:
        return utc_datetimes
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return st.sampled_from(list(hint))
    if origin is tuple:
        return st.lists(texts, max_size=4).map(tuple)
    if origin in (Mapping, dict):
        return scalar_maps
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(min_value=0, max_value=2**31)
    if hint is float:
        return finite_floats
    if hint is str:
        return ids if name in ID_FIELDS else texts
    raise AssertionError(f"no strategy for {type_name}.{name}: {hint!r}")


def _field_strategy(type_name: str, name: str, hint: Any) -> st.SearchStrategy[Any]:
    args = typing.get_args(hint)
    if type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return st.none() | _base_strategy(type_name, name, inner)
    return _base_strategy(type_name, name, hint)


def event_strategy(cls: type[Any]) -> st.SearchStrategy[Any]:
    """Any valid instance of ``cls``, built from its fields; defaulted fields are sometimes omitted."""
    hints = typing.get_type_hints(cls)
    required, optional = {}, {}
    for f in dataclasses.fields(cls):
        strategy = _field_strategy(cls.TYPE, f.name, hints[f.name])
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        (optional if has_default else required)[f.name] = strategy
    kwargs = st.fixed_dictionaries(required, optional=optional)
    if cls is c.Command:
        kwargs = kwargs.map(_ordered_command_times)
    if cls is c.ChargingLimit:
        kwargs = kwargs.map(_consistent_schedule)
    return kwargs.map(lambda kw: cls(**kw))


def _ordered_command_times(kw: dict[str, Any]) -> dict[str, Any]:
    kw["issued_at"], kw["expires_at"] = sorted((kw["issued_at"], kw["expires_at"]))
    return kw


def _consistent_schedule(kw: dict[str, Any]) -> dict[str, Any]:
    """Periods of equal length, increasing starts, a unit when there are any, none when cleared."""
    starts = tuple(sorted(set(kw.get("period_starts_s", ()))))
    limits, phases = kw.get("period_limits", ()), kw.get("period_phases", ())
    n = 0 if kw.get("cleared") else min(len(starts), len(limits), len(phases))
    kw["period_starts_s"], kw["period_limits"], kw["period_phases"] = starts[:n], limits[:n], phases[:n]
    if n and kw.get("unit") is None:
        kw["unit"] = c.RateUnit.AMPS
    return kw


EVENT_STRATEGIES = {name: event_strategy(cls) for name, cls in EVENT_TYPES.items()}
any_event = st.one_of(*EVENT_STRATEGIES.values())


def _datetime_fields(cls: type[Any]) -> list[str]:
    hints = typing.get_type_hints(cls)
    return [name for name, hint in hints.items() if hint is datetime or datetime in typing.get_args(hint)]


# --------------------------------------------------------------------------- registry


def test_event_types_registry_is_complete_and_consistent() -> None:
    assert set(EVENT_TYPES.values()) == set(typing.get_args(c.Event))
    for name, cls in EVENT_TYPES.items():
        assert cls.TYPE == name
        assert dataclasses.is_dataclass(cls)
        assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
        assert hasattr(cls, "__slots__")


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("type_name", sorted(EVENT_TYPES))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip_every_event_type(type_name: str, data: st.DataObject) -> None:
    event = data.draw(EVENT_STRATEGIES[type_name], label="event")
    wire = encode(event)

    assert isinstance(wire, bytes)
    envelope = json.loads(wire.decode("utf-8"))  # strict UTF-8, strict JSON
    assert set(envelope) == {"v", "type", "data"}
    assert envelope["v"] == CONTRACT_VERSION
    assert envelope["type"] == type_name
    assert envelope["data"] == to_dict(event)
    for name in _datetime_fields(type(event)):
        if envelope["data"][name] is not None:
            assert WIRE_TS.match(envelope["data"][name]), envelope["data"][name]

    decoded = decode(wire)
    assert type(decoded) is type(event)
    assert decoded == event
    assert decode(wire.decode("utf-8")) == event  # str payloads too
    assert encode(decoded) == wire  # the encoding is canonical
    assert from_dict(type(event), to_dict(event)) == event
    for name in _datetime_fields(type(event)):
        value = getattr(decoded, name)
        assert value is None or value.tzinfo is UTC


@settings(max_examples=100, deadline=None)
@given(event=any_event, extra=st.dictionaries(st.text(min_size=1).filter(lambda k: not k.isidentifier())
                                              | st.from_regex(r"\Anew_[a-z_]{1,20}\Z"), json_scalars, max_size=3))
def test_decode_ignores_unknown_fields_for_minor_version_compatibility(event: Any, extra: dict[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(event)}
    extra = {k: v for k, v in extra.items() if k not in known}
    envelope = {"v": CONTRACT_VERSION, "type": event.TYPE, "data": {**to_dict(event), **extra}}
    assert decode(json.dumps(envelope)) == event


def test_unknown_fields_are_ignored_but_missing_required_fields_are_not() -> None:
    newer = {"v": 1, "type": "status_changed", "data": {
        "charger_id": "CP-1", "connector_id": 1, "ts": "2024-05-01T12:00:00Z", "status": "Charging",
        "grid_frequency_hz": 50.01, "extras": {"nested": [1, 2]},
    }}
    assert decode(json.dumps(newer)) == c.StatusChanged("CP-1", 1, datetime(2024, 5, 1, 12, tzinfo=UTC),
                                                        c.ConnectorState.CHARGING)
    del newer["data"]["status"]  # type: ignore[attr-defined]
    with pytest.raises(ContractError, match=r"^status_changed: missing required field 'status'$"):
        decode(json.dumps(newer))


def test_unknown_envelope_keys_are_ignored() -> None:
    event = c.ConnectionEvent("CP-1", T0, c.ConnectionKind.BOOTED)
    envelope = json.loads(encode(event))
    envelope["trace_id"] = "abc"
    assert decode(json.dumps(envelope)) == event


def test_timestamps_are_utc_z_with_microseconds() -> None:
    whole_second = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    event = c.Command("cmd-1", "CP-1", c.CommandKind.RESET, issued_at=whole_second, expires_at=T0)
    data = json.loads(encode(event))["data"]
    assert data["issued_at"] == "2024-05-01T12:00:00.000000Z"
    assert data["expires_at"] == "2024-05-01T12:00:00.123456Z"
    early = c.ConnectionEvent("CP-1", datetime(5, 1, 2, 3, 4, 5, 6, tzinfo=UTC), c.ConnectionKind.HEARTBEAT)
    assert to_dict(early)["ts"] == "0005-01-02T03:04:05.000006Z"
    assert decode(encode(early)) == early


@pytest.mark.parametrize(("wire_ts", "expected"), [
    ("2024-05-01T14:00:00+02:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ("2024-05-01T06:30:00.5-05:30", datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)),
    ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ("2024-05-01T12:00:00+00:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ("2024-05-01T00:30:00+01:00", datetime(2024, 4, 30, 23, 30, tzinfo=UTC)),
])
def test_decode_converts_offset_timestamps_to_utc(wire_ts: str, expected: datetime) -> None:
    payload = {"v": 1, "type": "connection", "data": {"charger_id": "CP-1", "ts": wire_ts, "kind": "heartbeat"}}
    event = decode(json.dumps(payload))
    assert event.ts == expected
    assert event.ts.tzinfo is UTC
    assert to_dict(event)["ts"] == expected.isoformat(timespec="microseconds").replace("+00:00", "Z")


def test_int_values_in_float_fields_are_accepted_and_read_back_as_floats() -> None:
    sample = c.MeterSample("CP-1", 1, T0, energy_wh=1200, power_w=0)
    decoded = decode(encode(sample))
    assert decoded == sample
    assert isinstance(decoded, c.MeterSample)
    assert isinstance(decoded.energy_wh, float)


def test_enum_members_may_be_given_as_their_values() -> None:
    event = c.StatusChanged("CP-1", 1, T0, "Charging")  # type: ignore[arg-type]
    assert decode(encode(event)) == event


def test_utc_helper_normalises_aware_and_refuses_naive() -> None:
    local = datetime(2024, 5, 1, 14, tzinfo=timezone(timedelta(hours=2)))
    assert c.utc(local) == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert c.utc(local).utcoffset() == timedelta(0)
    with pytest.raises(ContractError, match="naive"):
        c.utc(datetime(2024, 5, 1))  # noqa: DTZ001 - the point of the test


# --------------------------------------------------------------------------- construction rejections

PLUS_TWO = timezone(timedelta(hours=2))


def _meter(**kw: Any) -> c.MeterSample:
    return c.MeterSample(**{"charger_id": "CP-1", "connector_id": 1, "ts": T0, **kw})


def _command(**kw: Any) -> c.Command:
    return c.Command(**{"command_id": "cmd-1", "charger_id": "CP-1", "kind": c.CommandKind.SET_LIMIT,
                        "issued_at": T0, "expires_at": T0 + timedelta(seconds=30), **kw})


def _setpoint(**kw: Any) -> c.Setpoint:
    return c.Setpoint(**{"decision_id": "d-1", "site_id": "site-1", "charger_id": "CP-1", "connector_id": 0,
                         "ts": T0, "limit": 16.0, "unit": c.RateUnit.AMPS, "reason": "fair share", **kw})


def _alert(**kw: Any) -> c.Alert:
    return c.Alert(**{"alert_id": "a-1", "kind": "offline", "severity": c.Severity.WARNING, "ts": T0,
                      "message": "charger offline", **kw})


CONSTRUCTION_REJECTS: list[tuple[str, Callable[[], object], str]] = [
    ("naive datetime", lambda: _meter(ts=datetime(2024, 5, 1)), "ts must be timezone-aware UTC"),  # noqa: DTZ001
    ("non-UTC offset", lambda: _meter(ts=datetime(2024, 5, 1, tzinfo=PLUS_TWO)), "ts must be UTC, got offset 2:00"),
    ("ts not a datetime", lambda: _meter(ts="2024-05-01T12:00:00Z"), "ts must be a datetime"),
    ("empty id", lambda: _meter(charger_id=""), "charger_id must be a non-empty string"),
    ("too long id", lambda: _meter(charger_id="x" * (MAX_ID_LENGTH + 1)), "longer than 64 characters"),
    ("slash in id", lambda: _meter(charger_id="a/b"), "contains characters not allowed in an id"),
    ("plus in id", lambda: _meter(charger_id="a+b"), "not allowed in an id"),
    ("hash in id", lambda: _meter(charger_id="a#"), "not allowed in an id"),
    ("control char in id", lambda: _meter(charger_id="a\x00b"), "not allowed in an id"),
    ("padded id", lambda: _meter(charger_id=" CP-1"), "not allowed in an id"),
    ("id not a string", lambda: _meter(charger_id=17), "charger_id must be a non-empty string"),
    ("optional id empty", lambda: _meter(transaction_id=""), "transaction_id must be a non-empty string"),
    ("NaN", lambda: _meter(power_w=float("nan")), "power_w must be finite"),
    ("inf", lambda: _meter(energy_wh=float("inf")), "energy_wh must be finite"),
    ("-inf", lambda: _meter(current_a=float("-inf")), "current_a must be finite"),
    ("int too large for a float", lambda: _meter(energy_wh=10**400), "energy_wh must be finite"),
    ("number as string", lambda: _meter(power_w="7"), "power_w must be a number"),
    ("bool as number", lambda: _meter(power_w=True), "power_w must be a number"),
    ("soc > 100", lambda: _meter(soc_pct=100.5), "soc_pct must be <= 100, got 100.5"),
    ("soc < 0", lambda: _meter(soc_pct=-1), "soc_pct must be >= 0"),
    ("bool connector", lambda: _meter(connector_id=True), "connector_id must be an integer >= 0"),
    ("negative connector", lambda: _meter(connector_id=-1), "connector_id must be an integer >= 0"),
    ("invalid enum", lambda: _meter(context="Sample.Sometimes"), "context: 'Sample.Sometimes' is not one of"),
    ("quirks as list", lambda: _meter(quirks=["a"]), "quirks must be a tuple of strings"),
    ("quirk not a string", lambda: _meter(quirks=(1,)), "quirks[] must be a string"),
    ("bool seq_no", lambda: c.TransactionEvent("CP-1", 1, T0, c.TransactionKind.UPDATED, "tx-1", seq_no=True),
     "seq_no must be an integer >= 0"),
    ("offline not a bool", lambda: c.TransactionEvent("CP-1", 1, T0, c.TransactionKind.ENDED, "tx-1", offline=1),
     "offline must be true or false"),
    ("bool heartbeat", lambda: c.ConnectionEvent("CP-1", T0, c.ConnectionKind.BOOTED, heartbeat_interval_s=False),
     "heartbeat_interval_s must be an integer >= 0"),
    ("bad ocpp version", lambda: c.ConnectionEvent("CP-1", T0, c.ConnectionKind.BOOTED, ocpp_version="1.5"),
     "ocpp_version: '1.5' is not one of"),
    ("required text null", lambda: c.ChargerNotice("CP-1", T0, c.NoticeKind.AUTHORIZE, None),
     "code is required"),
    ("required vendor null", lambda: c.ChargerInfo("CP-1", T0, None, "m"), "vendor is required"),
    ("text too long", lambda: c.StatusChanged("CP-1", 1, T0, c.ConnectorState.FAULTED, info="x" * 2001),
     "info must be a string of at most 2000 characters"),
    ("lone surrogate", lambda: c.StatusChanged("CP-1", 1, T0, c.ConnectorState.FAULTED, info="bad \ud800"),
     "info is not valid Unicode text"),
    ("expires before issued", lambda: _command(expires_at=T0 - timedelta(microseconds=1)),
     "expires_at (2024-05-01T12:00:00.123455Z) is before issued_at (2024-05-01T12:00:00.123456Z)"),
    ("params nested object", lambda: _command(params={"profile": {"limit": 16}}),
     "params['profile'] must be a JSON scalar (string, number, boolean or null), got dict"),
    ("params list value", lambda: _command(params={"ids": [1, 2]}), "params['ids'] must be a JSON scalar"),
    ("params NaN", lambda: _command(params={"limit": float("nan")}), "params['limit'] must be finite"),
    ("params non-string key", lambda: _command(params={1: "a"}), "params keys must be strings"),
    ("params not a mapping", lambda: _command(params=[("a", 1)]), "params must be a mapping"),
    ("payload nested object", lambda: c.CommandResult("cmd-1", "CP-1", T0, c.CommandOutcome.ACCEPTED,
                                                      payload={"a": {"b": 1}}), "payload['a'] must be a JSON scalar"),
    ("negative limit", lambda: _setpoint(limit=-1.0), "limit must be >= 0"),
    ("bool phases", lambda: _setpoint(phases=True), "phases must be 1, 2 or 3"),
    ("four phases", lambda: _setpoint(phases=4), "phases must be 1, 2 or 3"),
    ("bad rate unit", lambda: _setpoint(unit="kW"), "unit: 'kW' is not one of ['A', 'W']"),
    ("required reason null", lambda: _setpoint(reason=None), "reason is required"),
    ("zero count", lambda: _alert(count=0), "count must be a positive integer"),
    ("bool count", lambda: _alert(count=True), "count must be a positive integer"),
    ("bad alert state", lambda: _alert(state="closed"), "state: 'closed' is not one of"),
    ("dead letter empty reason", lambda: c.DeadLetter(T0, "bridge", "", "raw"), "reason must be a non-empty string"),
    ("dead letter raw bytes", lambda: c.DeadLetter(T0, "bridge", "bad", b"raw"), "raw must be a string"),
]


@pytest.mark.parametrize(("case", "build", "message"), CONSTRUCTION_REJECTS, ids=[c[0] for c in CONSTRUCTION_REJECTS])
def test_construction_rejects(case: str, build: Callable[[], object], message: str) -> None:
    with pytest.raises(ContractError) as info:
        build()
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_dead_letter_keeps_long_and_odd_input_whole() -> None:
    raw = "x" * 100_000
    letter = c.DeadLetter(T0, "bridge", "not JSON: " + "y" * 5_000, raw, charger_id="a/b+" * 100, topic="t/#")
    assert decode(encode(letter)) == letter


# --------------------------------------------------------------------------- decode rejections


def _wire(type_name: str = "meter_sample", v: Any = 1, **data: Any) -> str:
    base: dict[str, Any] = {"charger_id": "CP-1", "connector_id": 1, "ts": "2024-05-01T12:00:00Z"}
    if type_name == "status_changed":
        base["status"] = "Charging"
    if type_name == "command":
        base = {"command_id": "cmd-1", "charger_id": "CP-1", "kind": "reset",
                "issued_at": "2024-05-01T12:00:00Z", "expires_at": "2024-05-01T12:01:00Z"}
    if type_name == "command_result":
        base = {"command_id": "cmd-1", "charger_id": "CP-1", "ts": "2024-05-01T12:00:00Z", "outcome": "accepted"}
    base.update(data)
    data = {k: value for k, value in base.items() if value is not _DROP}
    return json.dumps({"v": v, "type": type_name, "data": data})


_DROP = object()

DECODE_REJECTS: list[tuple[str, str | bytes, str]] = [
    ("not JSON", b"{not json", "not JSON: "),
    ("empty payload", b"", "not JSON: "),
    ("absurdly deep nesting", b"[" * 100_000, "not JSON: "),
    ("non-UTF-8 bytes", b'{"v":1,"type":"meter_sample","data":{"charger_id":"\xff"}}', "payload is not UTF-8"),
    ("UTF-16 bytes", _wire().encode("utf-16"), "payload is not UTF-8"),
    ("envelope is a list", b"[1, 2]", "envelope must be a JSON object"),
    ("envelope is a string", b'"meter_sample"', "envelope must be a JSON object"),
    ("wrong version", _wire(v=2), "unsupported contract version 2 (expected 1)"),
    ("version as string", _wire(v="1"), "unsupported contract version '1'"),
    ("version as bool", _wire(v=True), "unsupported contract version True"),
    ("version as float", _wire(v=1.0), "unsupported contract version 1.0"),
    ("missing version", b'{"type":"meter_sample","data":{}}', "unsupported contract version None"),
    ("unknown event type", json.dumps({"v": 1, "type": "meter_reading", "data": {}}),
     "unknown event type 'meter_reading'"),
    ("type not a string", json.dumps({"v": 1, "type": ["meter_sample"], "data": {}}), "unknown event type"),
    ("data is a list", json.dumps({"v": 1, "type": "meter_sample", "data": []}),
     "envelope 'data' must be a JSON object"),
    ("data is null", json.dumps({"v": 1, "type": "meter_sample", "data": None}),
     "envelope 'data' must be a JSON object"),
    ("data missing", json.dumps({"v": 1, "type": "meter_sample"}), "envelope 'data' must be a JSON object"),
    ("missing required field", _wire(charger_id=_DROP), "meter_sample: missing required field 'charger_id'"),
    ("missing required enum", _wire("status_changed", status=_DROP), "missing required field 'status'"),
    ("int as string", _wire(connector_id="1"), "meter_sample: connector_id: expected an integer"),
    ("bool where int expected", _wire(connector_id=True), "meter_sample: connector_id: expected an integer"),
    ("float where int expected", _wire(connector_id=1.5), "connector_id: expected an integer"),
    ("bool where number expected", _wire(power_w=False), "meter_sample: power_w: expected a number"),
    ("number as string", _wire(power_w="7.2"), "power_w: expected a number"),
    ("id as number", _wire(charger_id=17), "meter_sample: charger_id: expected a string"),
    ("required null", _wire(charger_id=None), "charger_id: expected a string"),
    ("non-optional enum null", _wire("status_changed", status=None), "status: 'None' is not one of"),
    ("invalid enum value", _wire("status_changed", status="Sleeping"),
     "status_changed: status: 'Sleeping' is not one of ['Available'"),
    ("enum as list", _wire("status_changed", status=["Charging"]), "status: \"['Charging']\" is not one of"),
    ("ts not a string", _wire(ts=1714564800), "ts: expected an ISO 8601 timestamp string"),
    ("ts garbage", _wire(ts="yesterday"), "ts: not an ISO 8601 timestamp: 'yesterday'"),
    ("ts naive", _wire(ts="2024-05-01T12:00:00"), "ts: timestamp has no timezone"),
    ("ts date only", _wire(ts="2024-05-01"), "ts: timestamp has no timezone"),
    ("ts out of range in UTC", _wire(ts="0001-01-01T00:00:00+01:00"), "is out of range in UTC"),
    ("ts out of range (late)", _wire(ts="9999-12-31T23:59:59-01:00"), "is out of range in UTC"),
    ("NaN literal", _wire(power_w=float("nan")), "meter_sample: power_w must be finite"),
    ("Infinity literal", _wire(power_w=float("inf")), "power_w must be finite"),
    ("huge integer", _wire(energy_wh=10**400), "energy_wh: number out of range"),
    ("soc above 100", _wire(soc_pct=101), "meter_sample: soc_pct must be <= 100, got 101.0"),
    ("empty id", _wire(charger_id=""), "charger_id must be a non-empty string"),
    ("too long id", _wire(charger_id="x" * 65), "charger_id is longer than 64 characters"),
    ("slash in id", _wire(charger_id="site/CP-1"), "charger_id 'site/CP-1' contains characters not allowed"),
    ("lone surrogate escape", b'{"v":1,"type":"status_changed","data":{"charger_id":"CP-1","connector_id":1,'
     b'"ts":"2024-05-01T12:00:00Z","status":"Faulted","info":"\\ud800"}}', "info is not valid Unicode text"),
    ("quirks not a list", _wire(quirks="a"), "quirks: expected a list"),
    ("quirk not a string", _wire(quirks=[1]), "quirks[]: expected a string"),
    ("params not an object", _wire("command", params=[1]), "command: params: expected an object"),
    ("params with a nested object", _wire("command", params={"profile": {"limit": 16}}),
     "command: params['profile'] must be a JSON scalar"),
    ("params with a list", _wire("command", params={"ids": [1]}), "params['ids'] must be a JSON scalar"),
    ("payload with a nested object", _wire("command_result", payload={"cfg": {"a": 1}}),
     "command_result: payload['cfg'] must be a JSON scalar"),
    ("payload NaN", _wire("command_result", payload={"x": float("nan")}), "payload['x'] must be finite"),
    ("expires_at before issued_at", _wire("command", expires_at="2024-05-01T11:59:59Z"),
     "command: expires_at (2024-05-01T11:59:59.000000Z) is before issued_at"),
]


@pytest.mark.parametrize(("case", "payload", "message"), DECODE_REJECTS, ids=[c[0] for c in DECODE_REJECTS])
def test_decode_rejects(case: str, payload: str | bytes, message: str) -> None:
    with pytest.raises(ContractError) as info:
        decode(payload)
    assert message in str(info.value)
    assert "\n" not in str(info.value), "a dead-letter reason is one line"


def test_from_dict_prefixes_errors_with_the_event_type() -> None:
    with pytest.raises(ContractError, match=r"^setpoint: missing required field 'decision_id'$"):
        from_dict(c.Setpoint, {})


json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=5)


@settings(max_examples=150, deadline=None)
@given(event=any_event, data=st.data())
def test_decode_of_a_corrupted_field_raises_only_contract_error(event: Any, data: st.DataObject) -> None:
    fields = to_dict(event)
    name = data.draw(st.sampled_from(sorted(fields)), label="field")
    fields[name] = data.draw(json_values, label="value")
    try:
        decoded = decode(json.dumps({"v": 1, "type": event.TYPE, "data": fields}))
    except ContractError as exc:
        assert str(exc).startswith(f"{event.TYPE}: ")
    else:
        assert decode(encode(decoded)) == decoded  # whatever is accepted also round-trips


@settings(max_examples=100, deadline=None)
@given(payload=st.binary(max_size=64) | st.text(max_size=64))
def test_decode_of_arbitrary_input_raises_only_contract_error(payload: bytes | str) -> None:
    with pytest.raises(ContractError):
        decode(payload)
