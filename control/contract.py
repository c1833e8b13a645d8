"""The FlowBankOS event contract: everything that crosses MQTT.

Standard library only. Every type is a frozen, slotted dataclass; units are in the field names
(``power_w``, ``energy_wh``, ``current_a``) and every timestamp is a timezone-aware UTC
``datetime`` (checked on construction, so a naive or non-UTC time never gets in).

The wire form is a UTF-8 JSON envelope ``{"v": 1, "type": "<type name>", "data": {...}}``
produced by :func:`encode` and read back by :func:`decode`, which raises :class:`ContractError`
(and nothing else) with a reason that is fit for a dead-letter record. OCPP never appears here:
the bridge translates at the edge.

Timestamps: constructors are strict (a naive or non-zero-offset ``datetime`` is a programming
error; normalise with :func:`utc`). The wire is lenient on input: :func:`encode` always writes
UTC as ``2024-05-01T12:00:00.123456Z``, and :func:`decode` accepts any ISO 8601 timestamp that
carries an offset and converts it to UTC (``+02:00`` is read, not rejected); one without an
offset is rejected.

Versioning: ``CONTRACT_VERSION`` is the major version carried in every envelope and in every
topic (``flowbank/v1/...``). Adding an optional field (with a default) is compatible: within
the same major version :func:`decode` ignores fields it does not know, so an older consumer
reads a newer producer's events (without the new fields). A missing required field is still
rejected. Removing or renaming a field, or changing a unit, needs a new major version. A new
event type (``charging_limit`` was one) is added within the major version too: a consumer that
does not know it yet files it as a dead letter ("unknown event type"), it does not misread it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Final

CONTRACT_VERSION: Final = 1
MAX_ID_LENGTH: Final = 64
MAX_TEXT_LENGTH: Final = 2_000

JsonScalar = str | int | float | bool | None


class ContractError(ValueError):
    """A value or payload that does not satisfy the contract; the message is the reason."""


# --------------------------------------------------------------------------- enumerations


class OcppVersion(StrEnum):
    V16 = "1.6"
    V201 = "2.0.1"


class ConnectorState(StrEnum):
    """Connector status as reported by the charger (1.6 and 2.0.1 merged)."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"
    OCCUPIED = "Occupied"  # 2.0.1: connected, no finer detail


class SampleContext(StrEnum):
    PERIODIC = "Sample.Periodic"
    CLOCK = "Sample.Clock"
    TRANSACTION_BEGIN = "Transaction.Begin"
    TRANSACTION_END = "Transaction.End"
    TRIGGER = "Trigger"
    INTERRUPTION_BEGIN = "Interruption.Begin"
    INTERRUPTION_END = "Interruption.End"
    OTHER = "Other"


class TransactionKind(StrEnum):
    STARTED = "started"
    UPDATED = "updated"
    ENDED = "ended"


class ConnectionKind(StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    BOOTED = "booted"
    HEARTBEAT = "heartbeat"


class NoticeKind(StrEnum):
    FIRMWARE_STATUS = "firmware_status"
    DIAGNOSTICS_STATUS = "diagnostics_status"
    LOG_STATUS = "log_status"
    SECURITY_EVENT = "security_event"
    NOTIFY_EVENT = "notify_event"
    DATA_TRANSFER = "data_transfer"
    AUTHORIZE = "authorize"


class CommandKind(StrEnum):
    SET_LIMIT = "set_limit"  # SetChargingProfile
    CLEAR_LIMIT = "clear_limit"  # ClearChargingProfile
    START = "start"  # RemoteStartTransaction / RequestStartTransaction
    STOP = "stop"  # RemoteStopTransaction / RequestStopTransaction
    UNLOCK = "unlock"
    RESET = "reset"
    TRIGGER = "trigger"
    SET_CONFIG = "set_config"  # ChangeConfiguration / SetVariables
    GET_CONFIG = "get_config"  # GetConfiguration / GetVariables
    CHANGE_AVAILABILITY = "change_availability"
    GET_DIAGNOSTICS = "get_diagnostics"  # GetDiagnostics / GetLog
    UPDATE_FIRMWARE = "update_firmware"
    RESERVE = "reserve"
    CANCEL_RESERVATION = "cancel_reservation"


class CommandOutcome(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"  # the charger answered with a non-accepting status
    FAILED = "failed"  # CALLERROR, or the bridge could not build the call
    TIMED_OUT = "timed_out"  # no answer within the response timeout
    OFFLINE = "offline"  # charger not connected and the command expired while waiting
    EXPIRED = "expired"  # the command's own deadline passed before it could be sent


class RateUnit(StrEnum):
    AMPS = "A"
    WATTS = "W"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class AlertState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class ChargingMode(StrEnum):
    STANDARD = "standard"
    ECO = "eco"
    BOOST = "boost"


class ChargingLimitSource(StrEnum):
    """Who imposed an external limit (OCPP 2.0.1 ChargingLimitSourceEnumType)."""

    EMS = "EMS"  # an energy management system at the site
    OTHER = "Other"
    SO = "SO"  # a system operator: the DSO or TSO (the grid operator)
    CSO = "CSO"  # the charging station operator


# --------------------------------------------------------------------------- validation helpers


def _check_ts(name: str, value: datetime | None) -> None:
    if value is None or (type(value) is datetime and value.tzinfo is UTC):  # the common case, at once
        return
    if not isinstance(value, datetime):
        raise ContractError(f"{name} must be a datetime, got {type(value).__name__}")
    offset = value.utcoffset()
    if offset is None:
        raise ContractError(f"{name} must be timezone-aware UTC, got a naive datetime")
    if offset != timedelta(0):
        raise ContractError(f"{name} must be UTC, got offset {offset} (normalise it with contract.utc())")


def _check_id(name: str, value: str | None, *, required: bool = True) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value:
        raise ContractError(f"{name} must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise ContractError(f"{name} is longer than {MAX_ID_LENGTH} characters")
    if "/" in value or "+" in value or "#" in value or not value.isprintable() or value != value.strip():
        raise ContractError(f"{name} {value!r} contains characters not allowed in an id")


def _check_number(name: str, value: float | None, *, minimum: float | None = None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ContractError(f"{name} must be a number")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float
        finite = False
    if not finite:
        raise ContractError(f"{name} must be finite")
    if minimum is not None and value < minimum:
        raise ContractError(f"{name} must be >= {minimum}, got {value}")


def _check_int(name: str, value: int | None, *, minimum: int = 0) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ContractError(f"{name} must be an integer >= {minimum}")


def _check_connector(value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ContractError("connector_id must be an integer >= 0 (0 means the whole charger)")


def _check_unicode(name: str, value: str) -> None:
    # A lone surrogate (e.g. from a JSON "\ud800" escape) would make encode() fail later.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ContractError(f"{name} is not valid Unicode text (lone surrogate)") from None


def _check_text(name: str, value: str | None, *, required: bool = False,
                max_length: int | None = MAX_TEXT_LENGTH) -> None:
    if value is None:
        if required:
            raise ContractError(f"{name} is required (a string, not null)")
        return
    if not isinstance(value, str) or (max_length is not None and len(value) > max_length):
        raise ContractError(f"{name} must be a string of at most {max_length} characters"
                            if max_length is not None else f"{name} must be a string")
    _check_unicode(name, value)


def _check_enum(name: str, enum: type[StrEnum], value: Any, *, required: bool = True) -> None:
    if type(value) is enum or (value is None and not required):
        return
    try:
        enum(value)
    except ValueError:
        raise ContractError(f"{name}: {str(value)[:40]!r} is not one of {[m.value for m in enum]}") from None


def _check_scalars(name: str, value: Any) -> None:
    """A flat mapping of JSON scalars (``params``, ``payload``): no nested objects or lists."""
    if not isinstance(value, Mapping):
        raise ContractError(f"{name} must be a mapping")
    for key, item in value.items():
        if not isinstance(key, str):
            raise ContractError(f"{name} keys must be strings, got {key!r}")
        _check_unicode(f"{name} key", key)
        if not isinstance(item, str | int | float | bool | type(None)):
            raise ContractError(f"{name}[{key!r}] must be a JSON scalar (string, number, boolean or null), "
                                f"got {type(item).__name__}")
        if isinstance(item, float):
            _check_number(f"{name}[{key!r}]", item)
        elif isinstance(item, str):
            _check_unicode(f"{name}[{key!r}]", item)


def utc(value: datetime) -> datetime:
    """Normalise an aware datetime to UTC (``datetime.UTC``); refuse naive ones."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ContractError("naive datetime: a timezone is required")
    return value.astimezone(UTC)


# --------------------------------------------------------------------------- events


_METER_NUMBERS: Final = ("energy_wh", "power_w", "current_a", "current_l1_a", "current_l2_a", "current_l3_a",
                         "current_offered_a", "voltage_v", "temperature_c")


@dataclass(frozen=True, slots=True)
class MeterSample:
    """One sampled instant of one connector. Missing measurands are None."""

    TYPE: ClassVar[str] = "meter_sample"
    charger_id: str
    connector_id: int
    ts: datetime
    context: SampleContext = SampleContext.PERIODIC
    transaction_id: str | None = None
    energy_wh: float | None = None  # cumulative Energy.Active.Import.Register
    power_w: float | None = None
    current_a: float | None = None  # total (or the single phase) Current.Import
    current_l1_a: float | None = None
    current_l2_a: float | None = None
    current_l3_a: float | None = None
    current_offered_a: float | None = None
    voltage_v: float | None = None
    soc_pct: float | None = None
    temperature_c: float | None = None
    quirks: tuple[str, ...] = ()  # lenient readings the bridge applied, e.g. "unit_missing_assumed_wh"
    received_at: datetime | None = None  # the bridge's clock when the frame arrived

    def __post_init__(self) -> None:
        _check_id("charger_id", self.charger_id)
        _check_connector(self.connector_id)
        _check_ts("ts", self.ts)
        _check_ts("received_at", self.received_at)
        _check_enum("context", SampleContext, self.context)
        _check_id("transaction_id", self.transaction_id, required=False)
        for name in _METER_NUMBERS:
            value = getattr(self, name)
            if value is not None and (type(value) is not float or not math.isfinite(value)):  # else nothing to check
                _check_number(name, value)
        _check_number("soc_pct", self.soc_pct, minimum=0)
        if self.soc_pct is not None and self.soc_pct > 100:
            raise ContractError(f"soc_pct must be <= 100, got {self.soc_pct}")
        if not isinstance(self.quirks, tuple):
            raise ContractError("quirks must be a tuple of strings")
        for quirk in self.quirks:
            _check_text("quirks[]", quirk, required=True)


@dataclass(frozen=True, slots=True)
class StatusChanged:
    TYPE: ClassVar[str] = "status_changed"
    charger_id: str
    connector_id: int
    ts: datetime
    status: ConnectorState
    error_code: str | None = None  # None or "NoError" means no error
    vendor_error_code: str | None = None
    info: str | None = None
    received_at: datetime | None = None  # the bridge's clock when the frame arrived

    def __post_init__(self) -> None:
        _check_id("charger_id", self.charger_id)
        _check_connector(self.connector_id)
        _check_ts("ts", self.ts)
        _check_ts("received_at", self.received_at)
        _check_enum("status", ConnectorState, self.status)
        _check_text("error_code", self.error_code)
        _check_text("vendor_error_code", self.vendor_error_code)
        _check_text("info", self.info)


@dataclass(frozen=True, slots=True)
class TransactionEvent:
    """A transaction started, was updated or ended (1.6 Start/Stop, 2.0.1 TransactionEvent)."""

    TYPE: ClassVar[str] = "transaction"
    charger_id: str
    connector_id: int
    ts: datetime
    kind: TransactionKind
    transaction_id: str
    id_tag: str | None = None
    meter_wh: float | None = None  # register at start / stop
    stop_reason: str | None = None
    offline: bool = False  # the charger queued it while offline and replayed it
    seq_no: int | None = None
    received_at: datetime | None = None  # the bridge's clock when the frame arrived

    def __post_init__(self) -> None:
        _check_id("charger_id", self.charger_id)
        _check_connector(self.connector_id)
        _check_ts("ts", self.ts)
        _check_ts("received_at", self.received_at)
        _check_enum("kind", TransactionKind, self.kind)
        _check_id("transaction_id", self.transaction_id)
        _check_text("id_tag", self.id_tag)
        _check_number("meter_wh", self.meter_wh)
        _check_text("stop_reason", self.stop_reason)
        if not isinstance(self.offline, bool):
            raise ContractError("offline must be true or false")
        _check_int("seq_no", self.seq_no)


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """Online/offline and boots, published by the bridge (``ts`` is the bridge's clock)."""

    TYPE: ClassVar[str] = "connection"
    charger_id: str
    ts: datetime
    kind: ConnectionKind
    ocpp_version: OcppVersion | None = None
    reason: str | None = None
    heartbeat_interval_s: int | None = None
    bridge_id: str | None = None

    def __post_init__(self) -> None:
        _check_id("charger_id", self.charger_id)
        _check_ts("ts", self.ts)
        _check_enum("kind", ConnectionKind, self.kind)
        _check_enum("ocpp_version", OcppVersion, self.ocpp_version, required=False)
        _check_text("reason", self.reason)
        _check_int("heartbeat_interval_s", self.heartbeat_interval_s)
        _check_id("bridge_id", self.bridge_id, required=False)


@dataclass(frozen=True, slots=True)
class ChargerInfo:
    """What a BootNotification told us about the hardware."""

    TYPE: ClassVar[str] = "charger_info"
    charger_id: str
    ts: datetime
    vendor: str
    model: str
    serial_number: str | None = None
    firmware_version: str | None = None
    ocpp_version: OcppVersion | None = None

    def __post_init__(self) -> None:
        _check_id("charger_id", self.charger_id)
        _check_ts("ts", self.ts)
        _check_text("vendor", self.vendor, required=True)
        _check_text("model", self.model, required=True)
        _check_text("serial_number", self.serial_number)
        _check_text("firmware_version", self.firmware_version)
        _check_enum("ocpp_version", OcppVersion, self.ocpp_version, required=False)


@dataclass(frozen=True, slots=True)
class ChargerNotice:
    """Everything else a charger reports: firmware/diagnostics status, security and
    NotifyEvent problems, data transfers, authorizations."""

    TYPE: ClassVar[str] = "notice"
    charger_id: str
    ts: datetime
    kind: NoticeKind
    code: str  # the status, event type or vendor id
    severity: Severity = Severity.INFO
    detail: str | None = None
    connector_id: int | None = None

    def __post_init__(self) -> None:
        _check_id("charger_id", self.charger_id)
        _check_ts("ts", self.ts)
        _check_enum("kind", NoticeKind, self.kind)
        _check_text("code", self.code, required=True)
        _check_enum("severity", Severity, self.severity)
        _check_text("detail", self.detail)
        if self.connector_id is not None:
            _check_connector(self.connector_id)


MAX_LIMIT_PERIODS: Final = 1024  # OCPP 2.0.1's maximum of chargingSchedulePeriod


@dataclass(frozen=True, slots=True)
class ChargingLimit:
    """A limit an external system (grid operator, EMS, ...) imposes on a charger, as the charger
    reports it (OCPP 2.0.1 NotifyChargingLimit), or its withdrawal (``cleared``: ClearedChargingLimit).

    ``connector_id`` is the EVSE it applies to, 0 for the whole charger. The schedule, when the
    charger sent one, is ``period_limits`` (in ``unit``: A per phase, or W in total) starting
    ``period_starts_s`` seconds after ``starts_at`` (None: after ``ts``), each until the next, the
    last one for ever or until ``duration_s`` after the start; ``period_phases`` the phases a
    period may use (None: not said). No schedule: a limit is in force, its value was not reported.
    ``ts`` is the bridge's clock when the message arrived (these messages carry no time).
    """

    TYPE: ClassVar[str] = "charging_limit"
    charger_id: str
    ts: datetime
    source: ChargingLimitSource
    cleared: bool = False
    connector_id: int = 0
    grid_critical: bool = False
    unit: RateUnit | None = None
    starts_at: datetime | None = None
    duration_s: int | None = None
    period_starts_s: tuple[int, ...] = ()
    period_limits: tuple[float, ...] = ()
    period_phases: tuple[int | None, ...] = ()

    def __post_init__(self) -> None:
        _check_id("charger_id", self.charger_id)
        _check_ts("ts", self.ts)
        _check_enum("source", ChargingLimitSource, self.source)
        for name in ("cleared", "grid_critical"):
            if not isinstance(getattr(self, name), bool):
                raise ContractError(f"{name} must be true or false")
        _check_connector(self.connector_id)
        _check_enum("unit", RateUnit, self.unit, required=False)
        _check_ts("starts_at", self.starts_at)
        _check_int("duration_s", self.duration_s)
        starts, limits, phases = self.period_starts_s, self.period_limits, self.period_phases
        if not (isinstance(starts, tuple) and isinstance(limits, tuple) and isinstance(phases, tuple)):
            raise ContractError("period_starts_s, period_limits and period_phases must be tuples")
        if not len(starts) == len(limits) == len(phases):
            raise ContractError("period_starts_s, period_limits and period_phases must have the same length")
        if len(starts) > MAX_LIMIT_PERIODS:
            raise ContractError(f"at most {MAX_LIMIT_PERIODS} periods")
        previous = -1
        for start, limit, phase in zip(starts, limits, phases, strict=True):
            _check_int("period_starts_s[]", start)
            if start <= previous:
                raise ContractError("period_starts_s must be strictly increasing")
            previous = start
            _check_number("period_limits[]", limit, minimum=0)
            if phase is not None and (isinstance(phase, bool) or phase not in (1, 2, 3)):
                raise ContractError("period_phases[] must be 1, 2, 3 or null")
        if starts and self.unit is None:
            raise ContractError("a schedule needs its unit")
        if starts and self.cleared:
            raise ContractError("a cleared limit carries no schedule")


@dataclass(frozen=True, slots=True)
class Command:
    """A request for the bridge to make an OCPP call. ``params`` holds JSON scalars only."""

    TYPE: ClassVar[str] = "command"
    command_id: str
    charger_id: str
    kind: CommandKind
    issued_at: datetime
    expires_at: datetime
    connector_id: int | None = None
    params: Mapping[str, JsonScalar] = field(default_factory=dict)
    requested_by: str | None = None

    def __post_init__(self) -> None:
        _check_id("command_id", self.command_id)
        _check_id("charger_id", self.charger_id)
        _check_enum("kind", CommandKind, self.kind)
        _check_ts("issued_at", self.issued_at)
        _check_ts("expires_at", self.expires_at)
        if self.expires_at < self.issued_at:
            raise ContractError(f"expires_at ({_format_ts(self.expires_at)}) is before issued_at "
                                f"({_format_ts(self.issued_at)})")
        if self.connector_id is not None:
            _check_connector(self.connector_id)
        _check_scalars("params", self.params)
        _check_text("requested_by", self.requested_by)


@dataclass(frozen=True, slots=True)
class CommandResult:
    TYPE: ClassVar[str] = "command_result"
    command_id: str
    charger_id: str
    ts: datetime
    outcome: CommandOutcome
    status: str | None = None  # the charger's status, or the CALLERROR code
    detail: str | None = None
    payload: Mapping[str, JsonScalar] = field(default_factory=dict)  # e.g. configuration read back

    def __post_init__(self) -> None:
        _check_id("command_id", self.command_id)
        _check_id("charger_id", self.charger_id)
        _check_ts("ts", self.ts)
        _check_enum("outcome", CommandOutcome, self.outcome)
        _check_text("status", self.status)
        _check_text("detail", self.detail)
        _check_scalars("payload", self.payload)


@dataclass(frozen=True, slots=True)
class Setpoint:
    """A load-management decision for one connector (0 = the whole charger)."""

    TYPE: ClassVar[str] = "setpoint"
    decision_id: str
    site_id: str
    charger_id: str
    connector_id: int
    ts: datetime
    limit: float
    unit: RateUnit
    reason: str
    phases: int | None = None
    previous_limit: float | None = None

    def __post_init__(self) -> None:
        _check_id("decision_id", self.decision_id)
        _check_id("site_id", self.site_id)
        _check_id("charger_id", self.charger_id)
        _check_connector(self.connector_id)
        _check_ts("ts", self.ts)
        _check_number("limit", self.limit, minimum=0)
        _check_number("previous_limit", self.previous_limit, minimum=0)
        _check_enum("unit", RateUnit, self.unit)
        _check_text("reason", self.reason, required=True)
        if self.phases is not None and (isinstance(self.phases, bool) or self.phases not in (1, 2, 3)):
            raise ContractError("phases must be 1, 2 or 3")


@dataclass(frozen=True, slots=True)
class BuildingLoad:
    """Non-EV load of a site or circuit from a meter or HEMS (per phase where known)."""

    TYPE: ClassVar[str] = "building_load"
    site_id: str
    ts: datetime
    power_w: float
    circuit_id: str | None = None
    current_l1_a: float | None = None
    current_l2_a: float | None = None
    current_l3_a: float | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        _check_id("site_id", self.site_id)
        _check_id("circuit_id", self.circuit_id, required=False)
        _check_ts("ts", self.ts)
        for name in ("power_w", "current_l1_a", "current_l2_a", "current_l3_a"):
            _check_number(name, getattr(self, name))
        _check_text("source", self.source)


@dataclass(frozen=True, slots=True)
class Alert:
    TYPE: ClassVar[str] = "alert"
    alert_id: str
    kind: str
    severity: Severity
    ts: datetime  # time of the underlying event (or the deadline, for timers)
    message: str
    state: AlertState = AlertState.OPEN
    charger_id: str | None = None
    site_id: str | None = None
    count: int = 1

    def __post_init__(self) -> None:
        _check_id("alert_id", self.alert_id)
        _check_id("kind", self.kind)
        _check_enum("severity", Severity, self.severity)
        _check_ts("ts", self.ts)
        _check_text("message", self.message, required=True)
        _check_enum("state", AlertState, self.state)
        _check_id("charger_id", self.charger_id, required=False)
        _check_id("site_id", self.site_id, required=False)
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ContractError("count must be a positive integer")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Input that could not be used, kept whole with the reason."""

    TYPE: ClassVar[str] = "dead_letter"
    ts: datetime
    source: str  # "bridge", "pipeline", ...
    reason: str
    raw: str  # the raw frame or payload, decoded as UTF-8 with replacement
    charger_id: str | None = None
    topic: str | None = None

    def __post_init__(self) -> None:
        _check_ts("ts", self.ts)
        _check_id("source", self.source)
        _check_text("reason", self.reason, required=True, max_length=None)
        if not self.reason:
            raise ContractError("reason must be a non-empty string")
        # No length limit: a dead letter keeps the whole input, whatever was wrong with it.
        _check_text("raw", self.raw, required=True, max_length=None)
        _check_text("charger_id", self.charger_id, max_length=None)
        _check_text("topic", self.topic, max_length=None)


Event = (
    MeterSample | StatusChanged | TransactionEvent | ConnectionEvent | ChargerInfo | ChargerNotice
    | ChargingLimit | Command | CommandResult | Setpoint | BuildingLoad | Alert | DeadLetter
)

EVENT_TYPES: Final[dict[str, type[Any]]] = {
    cls.TYPE: cls
    for cls in (MeterSample, StatusChanged, TransactionEvent, ConnectionEvent, ChargerInfo, ChargerNotice,
                ChargingLimit, Command, CommandResult, Setpoint, BuildingLoad, Alert, DeadLetter)
}


# --------------------------------------------------------------------------- codec


def _format_ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return _format_ts(value)
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _to_json(v) for k, v in value.items()}
    return value


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def to_dict(event: Event) -> dict[str, Any]:
    """The ``data`` part of the envelope: plain JSON types."""
    cls = type(event)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(event))
    data = {}
    for name in names:
        value = getattr(event, name)
        kind = type(value)
        # Plain JSON values pass through _to_json unchanged: skip the call on the hot path.
        data[name] = value if value is None or kind is str or kind is float or kind is int or kind is bool \
            else _to_json(value)
    return data


def encode(event: Event) -> bytes:
    envelope = {"v": CONTRACT_VERSION, "type": event.TYPE, "data": to_dict(event)}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _parse_ts(name: str, raw: Any) -> datetime:
    if not isinstance(raw, str):
        raise ContractError(f"{name}: expected an ISO 8601 timestamp string")
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ContractError(f"{name}: not an ISO 8601 timestamp: {raw[:40]!r}") from exc
    if value.tzinfo is None:
        raise ContractError(f"{name}: timestamp has no timezone (expected UTC, e.g. '...T12:00:00Z')")
    try:
        return value.astimezone(UTC)  # lenient on input: any offset is read and converted to UTC
    except OverflowError:
        raise ContractError(f"{name}: timestamp {raw[:40]!r} is out of range in UTC") from None


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _from_json(name: str, hint: Any, raw: Any) -> Any:
    """Convert one JSON value to the field type ``hint`` (uncached; see :func:`_converter`)."""
    return _converter(name, hint)(raw)


_Converter = typing.Callable[[Any], Any]


def _number(name: str) -> _Converter:
    def convert(raw: Any) -> Any:
        kind = type(raw)
        if kind is float:
            return raw
        if kind is int:
            try:
                return float(raw)
            except OverflowError:
                raise ContractError(f"{name}: number out of range") from None
        if kind is bool or not isinstance(raw, int | float):
            raise ContractError(f"{name}: expected a number")
        return float(raw)

    return convert


def _converter(name: str, hint: Any) -> _Converter:
    """A function turning a JSON value into the field type ``hint``, decided once per field.

    Decoding is on the pipeline's hot path (one call per MQTT message): the type inspection
    happens here, once per class and field, not per value.
    """
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        all_args = typing.get_args(hint)
        args = [a for a in all_args if a is not type(None)]
        nullable = len(args) != len(all_args)
        inner: _Converter | None = _converter(name, args[0]) if len(args) == 1 else None

        def union(raw: Any) -> Any:
            if raw is None:
                if not nullable:
                    raise ContractError(f"{name}: must not be null")
                return None
            if inner is None:
                return raw  # a union of JSON scalars (params values): checked by __post_init__
            return inner(raw)

        return union
    if hint is datetime:
        return lambda raw: _parse_ts(name, raw)
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        enum_type: type[StrEnum] = hint
        members: dict[Any, StrEnum] = {m.value: m for m in enum_type}

        def enum(raw: Any) -> Any:
            member = members.get(raw) if type(raw) is str else None
            if member is None:
                try:
                    return enum_type(raw)
                except ValueError as exc:
                    raise ContractError(
                        f"{name}: {str(raw)[:40]!r} is not one of {[m.value for m in enum_type]}") from exc
            return member

        return enum
    if origin is tuple:
        (item_hint, _ellipsis) = typing.get_args(hint)
        item = _converter(f"{name}[]", item_hint)

        def sequence(raw: Any) -> Any:
            if not isinstance(raw, list):
                raise ContractError(f"{name}: expected a list")
            return tuple(item(v) for v in raw)

        return sequence
    if origin in (Mapping, dict) or hint is Mapping:

        def mapping(raw: Any) -> Any:
            if not isinstance(raw, dict):
                raise ContractError(f"{name}: expected an object")
            return dict(raw)

        return mapping
    if hint is float:
        return _number(name)
    if hint is int:

        def integer(raw: Any) -> Any:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise ContractError(f"{name}: expected an integer")
            return raw

        return integer
    if hint is bool:

        def boolean(raw: Any) -> Any:
            if not isinstance(raw, bool):
                raise ContractError(f"{name}: expected true or false")
            return raw

        return boolean
    if hint is str:

        def string(raw: Any) -> Any:
            if not isinstance(raw, str):
                raise ContractError(f"{name}: expected a string")
            return raw

        return string
    raise ContractError(f"{name}: unsupported field type {hint!r}")  # pragma: no cover - contract bug


_FieldPlan = tuple[tuple[str, bool, _Converter], ...]  # (name, required, converter) per field
_PLANS: dict[type[Any], _FieldPlan] = {}


def _plan(cls: type[Any]) -> _FieldPlan:
    plan = _PLANS.get(cls)
    if plan is None:
        hints = _hints(cls)
        plan = _PLANS[cls] = tuple(
            (f.name,
             f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
             _converter(f.name, hints[f.name]))
            for f in dataclasses.fields(cls))
    return plan


def from_dict(cls: type[Any], data: Mapping[str, Any]) -> Any:
    """Build ``cls`` from the ``data`` part of an envelope.

    Fields this version does not know are ignored (a newer minor version may have added them);
    a missing required field, a wrong type or an invalid value raises :class:`ContractError`
    whose message starts with the event type.
    """
    kwargs = {}
    try:
        for name, required, convert in _plan(cls):
            if name not in data:
                if required:
                    raise ContractError(f"missing required field {name!r}")
                continue
            kwargs[name] = convert(data[name])
        return cls(**kwargs)
    except ContractError as exc:
        raise ContractError(f"{cls.TYPE}: {exc}") from exc


def decode(payload: bytes | str) -> Event:
    """Parse one envelope; raise :class:`ContractError` saying why it is unusable.

    Bytes must be UTF-8 (``json.loads`` alone would also guess UTF-16/32). Unknown fields in
    ``data`` are ignored, see the module docstring.
    """
    if isinstance(payload, bytes | bytearray | memoryview):
        try:
            payload = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContractError(f"payload is not UTF-8: {exc}") from None
    try:
        envelope = json.loads(payload)
    except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise ContractError(f"not JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise ContractError("envelope must be a JSON object")
    version = envelope.get("v")
    if isinstance(version, bool) or not isinstance(version, int) or version != CONTRACT_VERSION:
        raise ContractError(f"unsupported contract version {version!r} (expected {CONTRACT_VERSION})")
    type_name = envelope.get("type")
    cls = EVENT_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise ContractError(f"unknown event type {type_name!r}")
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise ContractError("envelope 'data' must be a JSON object")
    event: Event = from_dict(cls, data)
    return event
