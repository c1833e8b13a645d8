"""The analyst schema of the Parquet lake: one explicit Arrow schema per table, and
:func:`to_arrow`, which turns contract events and records (or plain mappings) into rows.

The tables mean the same as the TimescaleDB tables of the same name: one row per event, or per
revision for the "current state" tables (``sessions``, ``session_day_energy``, ``alerts``), whose
views keep the newest. Units are in the column names (``energy_wh``, ``power_w``, ``limit_a``).
Every timestamp column is a plain ``TIMESTAMP`` (no time zone) holding **UTC**: DuckDB's
time-zone aware functions cost several times more, so the zone lives in the convention, not the
type. Aware datetimes are converted to UTC here; naive ones are refused.

Each table is stored under ``<lake>/<table>/day=YYYY-MM-DD/`` where the day is the UTC date of
``partition_by``; the ``day`` column of the views comes from that directory name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

import pyarrow as pa  # type: ignore[import-untyped]

from control.contract import (
    Alert,
    ConnectionEvent,
    DeadLetter,
    MeterSample,
    RateUnit,
    Setpoint,
    StatusChanged,
)
from control.records import SessionDayEnergy, SessionRecord

LAKE_SEQ: Final = "_lake_seq"  # file-level write sequence (µs since the epoch at write time), set by the lake
DAY: Final = "day"


class AnalyticsError(Exception):
    """Base of the analytics errors.

    - :class:`SchemaMismatchError` (permanent): rows that do not fit the table's schema.
    - :class:`UnknownTableError` (permanent): a table name that is not in :data:`TABLES`.
    - ``LakeLockedError`` (retryable once the other writer stops), ``ViewsDatabaseError``:
      see :mod:`warehouse.analytics` and :mod:`warehouse.analytics_views`.
    """


class SchemaMismatchError(AnalyticsError, ValueError):
    """Rows that do not fit the table's schema; the message names the table and column."""


class UnknownTableError(AnalyticsError, KeyError):
    def __str__(self) -> str:
        return f"unknown lake table {self.args[0]!r} (known: {', '.join(TABLES)})"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: Any  # a pyarrow DataType
    description: str
    nullable: bool = True


@dataclass(frozen=True, slots=True)
class TableSpec:
    name: str
    description: str
    columns: tuple[Column, ...]
    partition_by: str  # the column whose UTC date names the day=... directory
    key: tuple[str, ...]  # the view keeps one row per key
    winner: str  # SQL ORDER BY choosing the row kept per key (first written for events)
    newest_set_of: str | None = None  # only the newest revision's rows of each such id count
    history_key: tuple[str, ...] | None = None  # kept apart by compaction: every revision stays readable
    set_revision: str = "revision"  # the column newest_set_of compares

    @property
    def schema(self) -> Any:
        """The logical schema: what :func:`to_arrow` returns and ``ParquetLake.append`` takes."""
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns])

    @property
    def file_schema(self) -> Any:
        """What a Parquet file holds: no ``day`` (it is the directory), plus the write sequence."""
        fields = [pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns if c.name != DAY]
        return pa.schema([*fields, pa.field(LAKE_SEQ, pa.int64(), nullable=False)])

    def dedupe(self, *, within_day: bool = False) -> str:
        """The QUALIFY clause keeping one row per key, as the TimescaleDB merge would.

        ``within_day``: for compacting one day directory, where ``day`` is constant (and absent).
        """
        if within_day:
            key = tuple(k for k in self.history_key or self.key if k != DAY)
        elif self.partition_by in self.key and DAY not in self.key:
            # day is a function of a key column: adding it changes nothing, but lets a filter on
            # day prune files through the window.
            key = (DAY, *self.key)
        else:
            key = self.key
        clause = f"row_number() OVER (PARTITION BY {', '.join(key)} ORDER BY {self.winner}) = 1"
        if self.newest_set_of:
            rev = self.set_revision
            clause = f"{rev} = max({rev}) OVER (PARTITION BY {self.newest_set_of}) AND {clause}"
        return f"QUALIFY {clause}"


_S, _I, _L, _F, _B = pa.string(), pa.int32(), pa.int64(), pa.float64(), pa.bool_()
_TS, _DATE, _LIST = pa.timestamp("us"), pa.date32(), pa.list_(pa.string())
_FIRST_WRITTEN: Final = f"{LAKE_SEQ}"  # a replayed event: the first copy stays, like ON CONFLICT DO NOTHING
_NEWEST_REVISION: Final = f"revision desc, {LAKE_SEQ}"  # on a tie the stored row stays
_ALERT_ORDER: Final = (f"ts desc, count desc, list_position(['open', 'acknowledged', 'resolved'], state) desc, "
                       f"{LAKE_SEQ}")


def _c(name: str, type_: Any, description: str, *, required: bool = False) -> Column:
    return Column(name, type_, description, nullable=not required)


_CHARGER = _c("charger_id", _S, "Charger (charge point) id.", required=True)
_CONNECTOR = _c("connector_id", _I, "Connector number; 0 means the whole charger.", required=True)

TABLES: Final[dict[str, TableSpec]] = {spec.name: spec for spec in (
    TableSpec("meter_samples", "One sampled instant of one connector (OCPP MeterValues).", (
        _c("ts", _TS, "Sample time, UTC.", required=True), _CHARGER, _CONNECTOR,
        _c("context", _S, "OCPP reading context, e.g. Sample.Periodic, Transaction.Begin.", required=True),
        _c("transaction_id", _S, "Transaction the sample belongs to, if any."),
        _c("energy_wh", _F, "Cumulative import register (Energy.Active.Import.Register), Wh."),
        _c("power_w", _F, "Active import power, W."),
        _c("current_a", _F, "Import current (total or single phase), A."),
        _c("current_l1_a", _F, "Phase L1 current, A."), _c("current_l2_a", _F, "Phase L2 current, A."),
        _c("current_l3_a", _F, "Phase L3 current, A."),
        _c("current_offered_a", _F, "Current offered to the vehicle, A."),
        _c("voltage_v", _F, "Voltage, V."), _c("soc_pct", _F, "Vehicle state of charge, %."),
        _c("temperature_c", _F, "Temperature, °C."),
        _c("quirks", _LIST, "Lenient readings the bridge applied to this sample.", required=True),
        _c("bridge_received_at", _TS, "When the bridge received the frame (bridge clock), UTC."),
    ), "ts", ("charger_id", "connector_id", "ts", "context"), _FIRST_WRITTEN),
    TableSpec("status_events", "A connector status change (OCPP StatusNotification).", (
        _c("ts", _TS, "Time of the change, UTC.", required=True), _CHARGER, _CONNECTOR,
        _c("status", _S, "Connector state: Available, Charging, Faulted, ...", required=True),
        _c("error_code", _S, "OCPP error code; NULL or NoError means no error."),
        _c("vendor_error_code", _S, "Vendor-specific error code."), _c("info", _S, "Free text from the charger."),
        _c("bridge_received_at", _TS, "When the bridge received the frame (bridge clock), UTC."),
    ), "ts", ("charger_id", "connector_id", "ts", "status"), _FIRST_WRITTEN),
    TableSpec("connection_events", "A charger connected, disconnected, booted or sent a heartbeat.", (
        _c("ts", _TS, "Time seen by the bridge, UTC.", required=True), _CHARGER,
        _c("kind", _S, "connected, disconnected, booted or heartbeat.", required=True),
        _c("ocpp_version", _S, "1.6 or 2.0.1."), _c("reason", _S, "Why it disconnected, if known."),
        _c("heartbeat_interval_s", _I, "Heartbeat interval given to the charger, s."),
        _c("bridge_id", _S, "Bridge instance that saw it."),
    ), "ts", ("charger_id", "ts", "kind"), _FIRST_WRITTEN),
    TableSpec("dead_letters", "Input that could not be used, kept whole with the reason.", (
        _c("ts", _TS, "When it was rejected, UTC.", required=True),
        _c("source", _S, "Who rejected it: bridge, pipeline, ...", required=True),
        _c("reason", _S, "Why it was rejected.", required=True),
        _c("raw", _S, "The raw payload (UTF-8, invalid bytes replaced).", required=True),
        _c("charger_id", _S, "Charger it came from, if known."), _c("topic", _S, "MQTT topic, if any."),
    ), "ts", ("ts", "source", "reason", "raw", "charger_id", "topic"), _FIRST_WRITTEN),
    TableSpec("setpoints", "A load-management decision for one connector.", (
        _c("ts", _TS, "Decision time, UTC.", required=True),
        _c("decision_id", _S, "Id of the allocation decision.", required=True),
        _c("site_id", _S, "Site the charger belongs to.", required=True), _CHARGER, _CONNECTOR,
        _c("limit_a", _F, "Limit in amperes (NULL when the limit is in watts)."),
        _c("limit_w", _F, "Limit in watts (NULL when the limit is in amperes)."),
        _c("previous_limit_a", _F, "Previous limit, A."), _c("previous_limit_w", _F, "Previous limit, W."),
        _c("phases", _I, "Number of phases allowed (1-3)."),
        _c("reason", _S, "Why: the allocation rule that decided.", required=True),
    ), "ts", ("decision_id", "charger_id", "connector_id", "ts"), _FIRST_WRITTEN),
    TableSpec("alerts", "An alert; every change of state is a new row, the view keeps the newest.", (
        _c("ts", _TS, "Time of the underlying event (or the deadline, for timers), UTC.", required=True),
        _c("alert_id", _S, "Alert id, stable across its changes.", required=True),
        _c("kind", _S, "Alert kind, e.g. charger_offline.", required=True),
        _c("severity", _S, "info, warning, error or critical.", required=True),
        _c("state", _S, "open, acknowledged or resolved.", required=True),
        _c("message", _S, "Human-readable text.", required=True),
        _c("charger_id", _S, "Charger concerned, if any."), _c("site_id", _S, "Site concerned, if any."),
        _c("count", _I, "How many times it fired.", required=True),
    ), "ts", ("alert_id",), _ALERT_ORDER),
    TableSpec("sessions", "A charging session; every update is a new revision, the view keeps the newest.", (
        _c("session_id", _S, "Stable session id (charger, connector, transaction).", required=True),
        _CHARGER, _CONNECTOR, _c("transaction_id", _S, "OCPP transaction id.", required=True),
        _c("site_id", _S, "Site of the charger."),
        _c("started_at", _TS, "Start, UTC.", required=True), _c("ended_at", _TS, "End, UTC; NULL while open."),
        _c("state", _S, "open, closed or abandoned.", required=True),
        _c("revision", _L, "Revision number; higher is newer.", required=True),
        _c("energy_wh", _F, "Energy delivered, Wh.", required=True),
        _c("id_tag", _S, "Authorization token."),
        _c("meter_start_wh", _F, "Register at start, Wh."), _c("meter_stop_wh", _F, "Register at stop, Wh."),
        _c("peak_power_w", _F, "Highest power, W."), _c("avg_power_w", _F, "Average power, W."),
        _c("duration_s", _F, "Plugged-in time, s.", required=True),
        _c("charging_s", _F, "Time drawing power, s.", required=True),
        _c("idle_s", _F, "Time plugged in but not drawing, s.", required=True),
        _c("stop_reason", _S, "Why it stopped."), _c("mode", _S, "Charging mode: standard, eco or boost."),
        _c("flags", _LIST, "Data-quality flags (see quality_flags).", required=True),
        _c("excluded", _B, "True when a flag makes it corrupted: left out of aggregates.", required=True),
        _c("sample_count", _L, "Meter samples used.", required=True),
        _c("last_sample_at", _TS, "Newest meter sample used, UTC."),
    ), "started_at", ("session_id",), _NEWEST_REVISION, history_key=("session_id", "revision")),
    TableSpec("session_day_energy", "A session's energy on one UTC day (split at midnight).", (
        _c("session_id", _S, "Session id.", required=True), _CHARGER,
        _c("day", _DATE, "UTC day.", required=True), _c("energy_wh", _F, "Energy on that day, Wh.", required=True),
        _c("revision", _L, "Session revision this split belongs to.", required=True),
    ), "day", ("session_id", "day"), _NEWEST_REVISION, newest_set_of="session_id"),
    TableSpec("data_quality", "The quality gate's verdict on a meter sample; the newest per sample counts.", (
        _c("ts", _TS, "Time of the sample, UTC.", required=True), _CHARGER, _CONNECTOR,
        _c("context", _S, "Reading context of the sample.", required=True),
        _c("session_id", _S, "Session the sample was assigned to."),
        _c("quality_flags", _LIST, "Reason codes (see quality_flags); empty means clean.", required=True),
    ), "ts", ("charger_id", "connector_id", "ts", "context"), f"{LAKE_SEQ} desc"),
    TableSpec("session_costs", "A session's cost on one UTC day; the newest costing run's set counts.", (
        _c("session_id", _S, "Session id.", required=True), _CHARGER,
        _c("day", _DATE, "UTC day.", required=True), _c("site_id", _S, "Site of the charger."),
        _c("user_id", _S, "User whose token started the session (at costing time)."),
        _c("cost_centre", _S, "Cost centre: the vehicle's, else the charger's (at costing time)."),
        _c("session_revision", _L, "Session revision that was costed.", required=True),
        _c("cost_revision", _L, "Costing run (microseconds since the epoch); the newest set counts.", required=True),
        _c("tariff_id", _S, "Tariff that priced it; NULL: no tariff (add one to compute cost)."),
        _c("currency", _S, "ISO 4217 currency of the amounts."),
        _c("status", _S, "costed, partial (some energy before the tariff's first version) or no_tariff.",
           required=True),
        _c("energy_wh", _F, "Energy on that day from the meter curve, Wh.", required=True),
        _c("costed_energy_wh", _F, "Of which priced, Wh.", required=True),
        _c("net_nano", _L, "Net amount (VAT excluded), 1e-9 currency units; sum, then round once."),
        _c("vat_nano", _L, "VAT on it, 1e-9 currency units."),
        _c("computed_at", _TS, "When the cost was computed, UTC.", required=True),
    ), "day", ("session_id", "day"), f"cost_revision desc, {LAKE_SEQ}", newest_set_of="session_id",
        set_revision="cost_revision"),
    TableSpec("data_quality_results", "One expectation of one validation run (Great Expectations).", (
        _c("ran_at", _TS, "When the run ran, UTC.", required=True),
        _c("run_id", _S, "Validation run id.", required=True),
        _c("asset", _S, "Table or data asset validated.", required=True),
        _c("expectation_id", _S, "Expectation id, stable within a suite.", required=True),
        _c("expectation_type", _S, "e.g. expect_column_values_to_not_be_null.", required=True),
        _c("suite", _S, "Expectation suite."), _c("column_name", _S, "Column checked, if any."),
        _c("kwargs", _S, "The expectation's arguments, JSON.", required=True),
        _c("success", _B, "Whether the expectation held.", required=True),
        _c("observed", _S, "Observed value, unexpected count ..., JSON."),
    ), "ran_at", ("run_id", "asset", "expectation_id"), LAKE_SEQ),
)}


def spec_of(table: str) -> TableSpec:
    try:
        return TABLES[table]
    except KeyError:
        raise UnknownTableError(table) from None


# --------------------------------------------------------------------------- converters

Row = dict[str, Any]


def _fields(obj: Any, *names: str) -> Row:
    return {name: getattr(obj, name) for name in names}


def _meter_sample(s: MeterSample) -> Iterator[Row]:
    names = [c.name for c in TABLES["meter_samples"].columns if c.name != "bridge_received_at"]
    yield {**_fields(s, *names), "bridge_received_at": s.received_at}


def _status(s: StatusChanged) -> Iterator[Row]:
    names = [c.name for c in TABLES["status_events"].columns if c.name != "bridge_received_at"]
    yield {**_fields(s, *names), "bridge_received_at": s.received_at}


def _connection(e: ConnectionEvent) -> Iterator[Row]:
    yield _fields(e, *(c.name for c in TABLES["connection_events"].columns))


def _dead_letter(d: DeadLetter) -> Iterator[Row]:
    yield _fields(d, *(c.name for c in TABLES["dead_letters"].columns))


def _alert(a: Alert) -> Iterator[Row]:
    yield _fields(a, *(c.name for c in TABLES["alerts"].columns))


def _setpoint(s: Setpoint) -> Iterator[Row]:
    amps = s.unit == RateUnit.AMPS
    yield {**_fields(s, "ts", "decision_id", "site_id", "charger_id", "connector_id", "phases", "reason"),
           "limit_a": s.limit if amps else None, "limit_w": None if amps else s.limit,
           "previous_limit_a": s.previous_limit if amps else None,
           "previous_limit_w": None if amps else s.previous_limit}


def _session(s: SessionRecord) -> Iterator[Row]:
    names = [c.name for c in TABLES["sessions"].columns if c.name != "excluded"]
    yield {**_fields(s, *names), "excluded": s.excluded}


def _session_day(e: SessionDayEnergy) -> Iterator[Row]:
    yield _fields(e, "session_id", "charger_id", "day", "energy_wh", "revision")


def _verdict(v: Any) -> Iterator[Row]:
    yield {**_fields(v, "ts", "charger_id", "connector_id", "context", "session_id"),
           "quality_flags": [str(flag) for flag in v.flags]}


# The quality gate's SampleVerdict has no class in control yet: accept anything shaped like one.
_VERDICT_ATTRIBUTES: Final = ("charger_id", "connector_id", "ts", "context", "session_id", "flags")


_CONVERTERS: Final[dict[str, dict[type[Any], Callable[[Any], Iterator[Row]]]]] = {
    "meter_samples": {MeterSample: _meter_sample},
    "status_events": {StatusChanged: _status},
    "connection_events": {ConnectionEvent: _connection},
    "dead_letters": {DeadLetter: _dead_letter},
    "setpoints": {Setpoint: _setpoint},
    "alerts": {Alert: _alert},
    "sessions": {SessionRecord: _session},
    "session_day_energy": {SessionDayEnergy: _session_day},
    "data_quality": {},
    "data_quality_results": {},
    "session_costs": {},
}


def _rows(spec: TableSpec, obj: Any) -> Iterator[Row]:
    if isinstance(obj, Mapping):
        unknown = set(obj) - {c.name for c in spec.columns}
        if unknown:
            raise SchemaMismatchError(f"{spec.name}: unknown columns {sorted(unknown)}")
        yield dict(obj)
        return
    converter = _CONVERTERS[spec.name].get(type(obj))
    if converter is None and spec.name == "data_quality" and all(hasattr(obj, a) for a in _VERDICT_ATTRIBUTES):
        converter = _verdict
    if converter is None:
        accepted = [t.__name__ for t in _CONVERTERS[spec.name]] + (["a SampleVerdict"] if spec.name == "data_quality"
                                                                   else [])
        raise SchemaMismatchError(f"{spec.name}: cannot store a {type(obj).__name__} "
                                  f"(accepts {', '.join([*accepted, 'a mapping'])})")
    yield from converter(obj)


_AS_IS: Final = frozenset({type(None), str, float, int, bool})


def _plain(column: Column, value: Any) -> Any:
    if isinstance(value, datetime) and pa.types.is_timestamp(column.type):
        if value.utcoffset() is None:
            raise SchemaMismatchError(f"{column.name}: naive datetime {value.isoformat()} "
                                      "(a UTC-aware one is required)")
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, Mapping | list) and pa.types.is_string(column.type):
        return json.dumps(value, sort_keys=True, default=str)  # JSON columns (kwargs, observed)
    if isinstance(value, tuple) and value and isinstance(value[0], StrEnum):
        return [v.value for v in value]
    return value


def to_arrow(table: str, objects: Iterable[Any]) -> Any:
    """Rows for ``table`` as a ``pyarrow.Table`` with exactly :attr:`TableSpec.schema`.

    ``objects`` are the contract events / records the table is made of (see ``_CONVERTERS``), or
    mappings of column name to value (missing optional columns are NULL). Raises
    :class:`SchemaMismatchError` naming the column at fault.
    """
    spec = spec_of(table)
    rows = [row for obj in objects for row in _rows(spec, obj)]
    arrays = []
    for column in spec.columns:
        name = column.name
        # JSON scalars need no conversion: only the other values go through _plain.
        values = [value if type(value) in _AS_IS else _plain(column, value)
                  for value in (row.get(name) for row in rows)]
        try:
            array = pa.array(values, type=column.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            raise SchemaMismatchError(f"{table}.{column.name}: {exc}") from None
        if not column.nullable and array.null_count:
            raise SchemaMismatchError(f"{table}.{column.name}: required, but {array.null_count} row(s) have NULL")
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=spec.schema)


def conform(table: str, data: Any) -> Any:
    """A ``pyarrow.Table`` or ``polars.DataFrame`` cast to the table's schema (columns by name).

    Timestamps with a time zone are converted to UTC; naive ones are taken as UTC already.
    Missing or extra columns, lossy casts and NULLs in required columns raise
    :class:`SchemaMismatchError`.
    """
    spec = spec_of(table)
    if not isinstance(data, pa.Table):
        to_arrow_method = getattr(data, "to_arrow", None)
        if to_arrow_method is None:
            raise SchemaMismatchError(f"{table}: expected a pyarrow.Table or polars.DataFrame, "
                                      f"got {type(data).__name__}")
        data = to_arrow_method()
    names = set(data.column_names)
    missing = [c.name for c in spec.columns if c.name not in names]
    extra = sorted(names - {c.name for c in spec.columns})
    if missing or extra:
        raise SchemaMismatchError(f"{table}: columns do not match the schema (missing {missing}, extra {extra})")
    try:
        result = data.select([c.name for c in spec.columns]).cast(spec.schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError) as exc:
        raise SchemaMismatchError(f"{table}: {exc}") from None
    for column in spec.columns:
        nulls = result.column(column.name).null_count
        if not column.nullable and nulls:
            raise SchemaMismatchError(f"{table}.{column.name}: required, but {nulls} row(s) have NULL")
    return result
