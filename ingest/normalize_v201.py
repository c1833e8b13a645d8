"""OCPP 2.0.1 CALL payloads (charging station to CSMS) to contract events.

The contract has one connector level, so the EVSE id is the ``connector_id`` (0 = the station).
Decisions worth knowing:

- StatusNotification: a connector other than 1 of a multi-connector EVSE is named in ``info``
  ("evse connector 2"), since its status lands on the same ``connector_id``.
- TransactionEvent: ``evse`` is only required in the first event of a transaction; without it
  the event and its samples use connector 0 and the samples get ``connector_unknown_used_0``.
  ``meter_wh`` is the Transaction.Begin (Started) or Transaction.End (Ended) energy register,
  else the first/last one in ``meterValue``. Ended without ``stoppedReason`` means "Local".
  An unknown ``eventType`` is read as Updated (it neither opens nor closes a session).
  ``chargingState`` also gives a StatusChanged (when the EVSE is known): Charging, SuspendedEV,
  SuspendedEVSE as such; EVConnected is PREPARING in Started, FINISHING in Ended and OCCUPIED in
  Updated (the 1.6 meanings); Idle gives none (the StatusNotification that follows says whether
  the connector is Available or Reserved). Samples come before an Ended event.
- NotifyEvent: one ChargerNotice per ``eventData`` item, code ``Component[instance].Variable
  [instance]``, severity by :func:`_event_severity`.
- NotifyChargingLimit / ClearedChargingLimit: one ChargingLimit (``cleared`` for the second); no
  ``evseId`` means the whole station (connector 0). Of ``chargingSchedule`` the first schedule is
  used (the spec allows several, without saying how they combine; the rest are named in
  ``charging_schedule_ignored:<n>``). Its start is ``startSchedule``, else the arrival; periods
  that cannot be read (``charging_period_malformed``) or have a negative limit
  (``charging_period_negative``) are left out, and of two periods starting at the same second
  the lower limit is kept (``charging_period_duplicate``); a ``numberPhases`` outside 1..3 is
  dropped (``number_phases_invalid``), a negative ``duration`` too (``duration_invalid``). A
  schedule with an unknown unit or no usable period makes the call unusable (NormalizeError): a
  limit whose value cannot be read must not look like one that has none. So does a Cleared with
  an unreadable ``evseId`` (read as the whole station it would clear more than was meant).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from control.contract import (
    ChargerNotice,
    ChargingLimit,
    ChargingLimitSource,
    ConnectorState,
    Event,
    NoticeKind,
    RateUnit,
    SampleContext,
    Severity,
    StatusChanged,
    TransactionEvent,
    TransactionKind,
)
from ingest import normalize_common as common
from ingest.normalize_base import (
    CONNECTOR_UNKNOWN,
    Ctx,
    Handler,
    NormalizeError,
    Quirks,
    as_list,
    as_mapping,
    connector,
    enum_table,
    lookup,
    parse_number,
    safe_id,
    text,
    timestamp,
    to_bool,
    to_int,
)
from ingest.normalize_meter import meter_samples, register_wh

_STATUSES: Final = {
    state.value: state
    for state in (ConnectorState.AVAILABLE, ConnectorState.OCCUPIED, ConnectorState.RESERVED,
                  ConnectorState.UNAVAILABLE, ConnectorState.FAULTED)
}
_EVENT_TYPES: Final = {"Started": TransactionKind.STARTED, "Updated": TransactionKind.UPDATED,
                       "Ended": TransactionKind.ENDED}
_CHARGING_STATES: Final = {
    name: name for name in ("Charging", "EVConnected", "SuspendedEV", "SuspendedEVSE", "Idle")
}
_DIRECT_STATES: Final = enum_table(ConnectorState)
_EV_CONNECTED: Final = {
    TransactionKind.STARTED: ConnectorState.PREPARING, TransactionKind.ENDED: ConnectorState.FINISHING,
}

# NotifyEvent: boolean variables for which "true" means something is wrong, and actual values
# that are a fault whatever the variable (AvailabilityState = Faulted, vendor "Error" states).
_PROBLEM_VARIABLES: Final = frozenset({
    "problem", "tripped", "fault", "error", "overload", "overheat", "overcurrent", "overvoltage", "undervoltage",
})
_TRUE_VALUES: Final = frozenset({"true", "1"})
_FAULT_VALUES: Final = frozenset({"faulted", "fault", "error"})
_DEGRADED_VALUES: Final = frozenset({"unavailable"})


def _boot(ctx: Ctx, p: Mapping[str, Any]) -> list[Event]:
    station = as_mapping(p.get("chargingStation")) or {}
    return common.boot(
        ctx, vendor=station.get("vendorName"), model=station.get("model"),
        serial_number=station.get("serialNumber"), firmware_version=station.get("firmwareVersion"),
        reason=p.get("reason"),
    )


def _status_notification(ctx: Ctx, p: Mapping[str, Any]) -> list[Event]:
    q = ctx.quirks
    evse_id = connector(p.get("evseId"), "evse_id", q)
    if evse_id is None:
        raise NormalizeError("StatusNotification: evseId is missing or not a non-negative integer")
    connector_in_evse = to_int(p.get("connectorId"), "connector_id", q)
    info = f"evse connector {connector_in_evse}" if connector_in_evse not in (None, 1) else None
    return [
        common.status_changed(
            ctx, p.get("connectorStatus"), _STATUSES, connector_id=evse_id,
            ts=timestamp(ctx, p.get("timestamp"), q), info=info,
        )
    ]


def _authorize(ctx: Ctx, p: Mapping[str, Any]) -> list[Event]:
    id_token = as_mapping(p.get("idToken")) or {}
    token_type = text(id_token.get("type"), "id_token_type", ctx.quirks, limit=100)
    return common.authorize(ctx, id_token.get("idToken"), f"type={token_type}" if token_type else None)


def _transaction_event(ctx: Ctx, p: Mapping[str, Any]) -> list[Event]:
    q = ctx.quirks
    info = as_mapping(p.get("transactionInfo")) or {}
    id_quirks = Quirks()
    transaction_id = safe_id(info.get("transactionId"), "transaction_id", id_quirks)
    q.extend(id_quirks.as_tuple())
    if transaction_id is None:
        raise NormalizeError("TransactionEvent: transactionInfo.transactionId is missing")
    kind = lookup(p.get("eventType"), _EVENT_TYPES, q, "event_type")
    if kind is None:
        q.add("event_type_unknown", p.get("eventType"))
        kind = TransactionKind.UPDATED
    ts = timestamp(ctx, p.get("timestamp"), q)
    evse = as_mapping(p.get("evse")) or {}
    evse_id = connector(evse.get("id"), "evse_id", q)
    if evse_id == 0:  # a transaction is always on an EVSE; 0 would read as "the whole station"
        q.add("evse_zero_in_transaction")
        evse_id = None
    base = id_quirks.as_tuple() + (() if evse_id is not None else (CONNECTOR_UNKNOWN,))
    samples = meter_samples(
        ctx, as_list(p.get("meterValue")) or [], connector_id=evse_id or 0, transaction_id=transaction_id,
        base_quirks=base,
    )
    if kind is TransactionKind.STARTED:
        meter_wh = register_wh(samples, SampleContext.TRANSACTION_BEGIN, last=False)
    elif kind is TransactionKind.ENDED:
        meter_wh = register_wh(samples, SampleContext.TRANSACTION_END, last=True)
    else:
        meter_wh = None
    stop_reason = text(info.get("stoppedReason"), "stop_reason", q)
    id_token = as_mapping(p.get("idToken")) or {}
    event = TransactionEvent(
        charger_id=ctx.charger_id,
        connector_id=evse_id or 0,
        ts=ts,
        kind=kind,
        transaction_id=transaction_id,
        id_tag=text(id_token.get("idToken"), "id_tag", q) or None,
        meter_wh=meter_wh,
        stop_reason=stop_reason or ("Local" if kind is TransactionKind.ENDED else None),
        offline=bool(to_bool(p.get("offline"), "offline", q)),
        seq_no=to_int(p.get("seqNo"), "seq_no", q),
        received_at=ctx.received_at,
    )
    status: list[Event] = []
    derived = _state_from_charging(info.get("chargingState"), kind, q)
    if derived is not None and evse_id is not None:
        state, charging_state = derived
        status.append(StatusChanged(ctx.charger_id, evse_id, ts, state, info=f"chargingState={charging_state}",
                                    received_at=ctx.received_at))
    if kind is TransactionKind.ENDED:
        return [*samples, *status, event]
    return [event, *status, *samples]


def _state_from_charging(raw: Any, kind: TransactionKind, q: Quirks) -> tuple[ConnectorState, str] | None:
    """The connector state a chargingState implies, with the chargingState name; Idle gives None."""
    if raw is None:
        return None
    name = lookup(raw, _CHARGING_STATES, q, "charging_state")
    if name is None:
        q.add("charging_state_unknown", raw)
        return None
    if name == "EVConnected":
        return _EV_CONNECTED.get(kind, ConnectorState.OCCUPIED), name
    state = _DIRECT_STATES.get(name)
    return (state, name) if state is not None else None


def _meter_values(ctx: Ctx, p: Mapping[str, Any]) -> list[Event]:
    evse_id = connector(p.get("evseId"), "evse_id", ctx.quirks)
    if evse_id is None:
        raise NormalizeError("MeterValues: evseId is missing or not a non-negative integer")
    meter_value = as_list(p.get("meterValue"))
    if meter_value is None:
        raise NormalizeError("MeterValues: meterValue is missing or not a list")
    return [*meter_samples(ctx, meter_value, connector_id=evse_id, transaction_id=None)]


def _notify_event(ctx: Ctx, p: Mapping[str, Any]) -> list[Event]:
    q = ctx.quirks
    items = as_list(p.get("eventData"))
    if items is None:
        raise NormalizeError("NotifyEvent: eventData is missing or not a list")
    generated_at = timestamp(ctx, p.get("generatedAt"), q)
    notices: list[Event] = []
    for raw in items:
        item = as_mapping(raw)
        if item is None:
            q.add("notify_event_malformed")
            continue
        component = as_mapping(item.get("component")) or {}
        variable = as_mapping(item.get("variable")) or {}
        evse = as_mapping(component.get("evse")) or {}
        raw_ts = item.get("timestamp")
        notices.append(
            ChargerNotice(
                charger_id=ctx.charger_id,
                ts=timestamp(ctx, raw_ts, q) if raw_ts is not None else generated_at,
                kind=NoticeKind.NOTIFY_EVENT,
                code=text(f"{_name(component, q)}.{_name(variable, q)}", "code", q) or "",
                severity=_event_severity(item, variable),
                detail=text(_event_detail(item, evse), "detail", q),
                connector_id=connector(evse.get("id"), "evse_id", q),
            )
        )
    return notices


def _name(part: Mapping[str, Any], q: Quirks) -> str:
    name = part.get("name")
    if not isinstance(name, str) or not name:
        q.add("notify_event_incomplete")
        name = "?"
    instance = part.get("instance")
    return f"{name}[{instance}]" if instance not in (None, "") else name


def _event_severity(item: Mapping[str, Any], variable: Mapping[str, Any]) -> Severity:
    """The order is the policy: cleared, problem flag, fault value, alerting monitor, tech code."""
    actual = str(item.get("actualValue", "")).strip().lower()
    variable_name = str(variable.get("name", "")).replace("_", "").lower()
    if item.get("cleared") is True:
        return Severity.INFO
    if variable_name in _PROBLEM_VARIABLES and actual in _TRUE_VALUES:
        return Severity.ERROR
    if actual in _FAULT_VALUES:
        return Severity.ERROR
    if item.get("trigger") == "Alerting" or actual in _DEGRADED_VALUES or item.get("techCode"):
        return Severity.WARNING
    return Severity.INFO


def _event_detail(item: Mapping[str, Any], evse: Mapping[str, Any]) -> str:
    pairs = [(key, item.get(key)) for key in (
        "actualValue", "trigger", "eventNotificationType", "cleared", "techCode", "techInfo", "cause",
        "eventId", "transactionId", "variableMonitoringId",
    )]
    pairs.append(("evseConnectorId", evse.get("connectorId")))
    return "; ".join(f"{key}={value}" for key, value in pairs if value is not None)


_LIMIT_SOURCES: Final = enum_table(ChargingLimitSource)
_RATE_UNITS: Final = enum_table(RateUnit)


def _limit_source(raw: Any, action: str, q: Quirks) -> ChargingLimitSource:
    source = lookup(raw, _LIMIT_SOURCES, q, "charging_limit_source")
    if source is None:
        raise NormalizeError(f"{action}: chargingLimitSource is missing or not one of "
                             f"{[s.value for s in ChargingLimitSource]}")
    return source


def _notify_charging_limit(ctx: Ctx, p: Mapping[str, Any]) -> list[Event]:
    q = ctx.quirks
    limit = as_mapping(p.get("chargingLimit"))
    if limit is None:
        raise NormalizeError("NotifyChargingLimit: chargingLimit is missing or not an object")
    source = _limit_source(limit.get("chargingLimitSource"), "NotifyChargingLimit", q)
    schedules = as_list(p.get("chargingSchedule")) or []
    if len(schedules) > 1:
        q.add("charging_schedule_ignored", len(schedules) - 1)
    fields: dict[str, Any] = {}
    if schedules:
        fields = _schedule(ctx, schedules[0])
    return [ChargingLimit(
        charger_id=ctx.charger_id, ts=ctx.received_at, source=source,
        connector_id=connector(p.get("evseId"), "evse_id", q) or 0,
        grid_critical=bool(to_bool(limit.get("isGridCritical"), "is_grid_critical", q)), **fields,
    )]


def _schedule(ctx: Ctx, raw: Any) -> dict[str, Any]:
    """The ChargingLimit fields of one ChargingScheduleType."""
    q = ctx.quirks
    schedule = as_mapping(raw)
    if schedule is None:
        raise NormalizeError("NotifyChargingLimit: chargingSchedule[0] is not an object")
    unit = lookup(schedule.get("chargingRateUnit"), _RATE_UNITS, q, "charging_rate_unit")
    if unit is None:
        raise NormalizeError("NotifyChargingLimit: chargingRateUnit is missing or not A or W")
    periods: dict[int, tuple[float, int | None]] = {}
    for item in as_list(schedule.get("chargingSchedulePeriod")) or []:
        period = as_mapping(item)
        start = to_int(period.get("startPeriod"), "start_period", q) if period is not None else None
        value = parse_number(period.get("limit"), "limit", q, expect_string=False) if period is not None else None
        if period is None or start is None or start < 0 or value is None:
            q.add("charging_period_malformed")
            continue
        if value < 0:
            q.add("charging_period_negative")
            continue
        phases = to_int(period.get("numberPhases"), "number_phases", q)
        if phases is not None and phases not in (1, 2, 3):
            q.add("number_phases_invalid", phases)
            phases = None
        if start in periods:
            q.add("charging_period_duplicate", start)
            if periods[start][0] <= value:
                continue
        periods[start] = (value, phases)
    if not periods:
        raise NormalizeError("NotifyChargingLimit: chargingSchedule[0] has no usable period")
    duration = to_int(schedule.get("duration"), "duration", q)
    if duration is not None and duration < 0:
        q.add("duration_invalid", duration)
        duration = None
    starts = sorted(periods)
    return {
        "unit": unit,
        "starts_at": timestamp(ctx, schedule.get("startSchedule"), q, required=False),
        "duration_s": duration,
        "period_starts_s": tuple(starts),
        "period_limits": tuple(periods[s][0] for s in starts),
        "period_phases": tuple(periods[s][1] for s in starts),
    }


def _cleared_charging_limit(ctx: Ctx, p: Mapping[str, Any]) -> list[Event]:
    q = ctx.quirks
    source = _limit_source(p.get("chargingLimitSource"), "ClearedChargingLimit", q)
    evse_id = connector(p.get("evseId"), "evse_id", q)
    if evse_id is None and p.get("evseId") is not None:
        # Read as "the whole station", it would clear more than the charger meant.
        raise NormalizeError("ClearedChargingLimit: evseId is not a non-negative integer")
    return [ChargingLimit(charger_id=ctx.charger_id, ts=ctx.received_at, source=source, cleared=True,
                          connector_id=evse_id or 0)]


HANDLERS: Final[Mapping[str, Handler]] = {
    "BootNotification": _boot,
    "Heartbeat": common.heartbeat,
    "StatusNotification": _status_notification,
    "Authorize": _authorize,
    "TransactionEvent": _transaction_event,
    "MeterValues": _meter_values,
    "DataTransfer": common.data_transfer,
    "FirmwareStatusNotification": common.firmware_status,
    "LogStatusNotification": common.log_status,
    "SecurityEventNotification": common.security_event,
    "NotifyEvent": _notify_event,
    "NotifyChargingLimit": _notify_charging_limit,
    "ClearedChargingLimit": _cleared_charging_limit,
}
