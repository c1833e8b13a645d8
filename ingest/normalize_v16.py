"""OCPP 1.6J CALL payloads (charger to CSMS) to contract events.

Decisions worth knowing:

- StatusNotification: ``errorCode`` "NoError" becomes ``error_code=None``; a code outside the
  1.6 enum is kept as sent (``error_code_unknown``). ``vendorId`` is not carried.
- StartTransaction: the transaction id is the one the bridge assigned (the CSMS assigns it in
  1.6); calling without it is a programming error (plain ``ValueError``, not dead-lettered).
- StopTransaction carries no connector id: the ENDED event and the samples from
  ``transactionData`` use connector 0, and the samples get the quirk ``connector_unknown_used_0``
  so they are never mistaken for whole-charger readings. Join them by ``transaction_id``. A
  missing ``reason`` means "Local" (the spec allows omitting it only then). The samples come
  before the ENDED event, so a consumer closing the session has seen the final readings.
- The security white-paper messages (SecurityEventNotification, LogStatusNotification,
  SignedFirmwareStatusNotification) are read like their 2.0.1 twins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from control.contract import (
    ConnectorState,
    Event,
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
    connector,
    lookup,
    parse_number,
    safe_id,
    text,
    timestamp,
)
from ingest.normalize_meter import meter_samples

_STATUSES: Final = {
    state.value: state for state in ConnectorState if state is not ConnectorState.OCCUPIED  # 2.0.1 (and 1.5)
}
_ERROR_CODES: Final = {
    code: code
    for code in (
        "ConnectorLockFailure", "EVCommunicationError", "GroundFailure", "HighTemperature", "InternalError",
        "LocalListConflict", "NoError", "OtherError", "OverCurrentFailure", "PowerMeterFailure",
        "PowerSwitchFailure", "ReaderFailure", "ResetFailure", "UnderVoltage", "OverVoltage", "WeakSignal",
    )
}


def _boot(ctx: Ctx, p: Mapping[str, Any]) -> list[Event]:
    serial = p.get("chargePointSerialNumber") or p.get("chargeBoxSerialNumber")
    return common.boot(
        ctx, vendor=p.get("chargePointVendor"), model=p.get("chargePointModel"), serial_number=serial,
        firmware_version=p.get("firmwareVersion"),
    )


def _status_notification(ctx: Ctx, p: Mapping[str, Any]) -> list[Event]:
    q = ctx.quirks
    connector_id = _required_connector(p, "StatusNotification", q)
    return [
        common.status_changed(
            ctx,
            p.get("status"),
            _STATUSES,
            connector_id=connector_id,
            ts=timestamp(ctx, p.get("timestamp"), q, required=False),
            info=text(p.get("info"), "info", q),
            error_code=_error_code(p.get("errorCode"), q),
            vendor_error_code=text(p.get("vendorErrorCode"), "vendor_error_code", q),
        )
    ]


def _error_code(raw: Any, q: Quirks) -> str | None:
    if raw is None or raw == "":
        return None
    code = lookup(raw, _ERROR_CODES, q, "error_code")
    if code is None:
        q.add("error_code_unknown", raw)
        return text(raw, "error_code", q)
    return None if code == "NoError" else code


def _authorize(ctx: Ctx, p: Mapping[str, Any]) -> list[Event]:
    return common.authorize(ctx, p.get("idTag"))


def _start_transaction(ctx: Ctx, p: Mapping[str, Any]) -> list[Event]:
    q = ctx.quirks
    if ctx.assigned_transaction_id is None:
        raise ValueError("StartTransaction needs the transaction_id the bridge assigned")
    transaction_id = safe_id(ctx.assigned_transaction_id, "transaction_id", q)
    if transaction_id is None:
        raise ValueError("the assigned transaction_id is empty")
    return [
        TransactionEvent(
            charger_id=ctx.charger_id,
            connector_id=_required_connector(p, "StartTransaction", q),
            ts=timestamp(ctx, p.get("timestamp"), q),
            kind=TransactionKind.STARTED,
            transaction_id=transaction_id,
            id_tag=text(p.get("idTag"), "id_tag", q) or None,
            meter_wh=_register(p.get("meterStart"), "meterStart", q),
            received_at=ctx.received_at,
        )
    ]


def _stop_transaction(ctx: Ctx, p: Mapping[str, Any]) -> list[Event]:
    q = ctx.quirks
    id_quirks = Quirks()
    transaction_id = safe_id(p.get("transactionId"), "transaction_id", id_quirks)
    q.extend(id_quirks.as_tuple())
    if transaction_id is None:
        raise NormalizeError("StopTransaction: transactionId is missing")
    samples = meter_samples(
        ctx, as_list(p.get("transactionData")) or [], connector_id=0, transaction_id=transaction_id,
        base_quirks=(CONNECTOR_UNKNOWN, *id_quirks.as_tuple()),
    )
    ended = TransactionEvent(
        charger_id=ctx.charger_id,
        connector_id=0,
        ts=timestamp(ctx, p.get("timestamp"), q),
        kind=TransactionKind.ENDED,
        transaction_id=transaction_id,
        id_tag=text(p.get("idTag"), "id_tag", q) or None,
        meter_wh=_register(p.get("meterStop"), "meterStop", q),
        stop_reason=text(p.get("reason"), "stop_reason", q) or "Local",
        received_at=ctx.received_at,
    )
    return [*samples, ended]


def _meter_values(ctx: Ctx, p: Mapping[str, Any]) -> list[Event]:
    q = ctx.quirks
    connector_id = _required_connector(p, "MeterValues", q)
    meter_value = as_list(p.get("meterValue"))
    if meter_value is None:
        raise NormalizeError("MeterValues: meterValue is missing or not a list")
    id_quirks = Quirks()
    transaction_id = safe_id(p.get("transactionId"), "transaction_id", id_quirks)
    q.extend(id_quirks.as_tuple())
    return list(
        meter_samples(
            ctx, meter_value, connector_id=connector_id, transaction_id=transaction_id,
            base_quirks=id_quirks.as_tuple(),
        )
    )


def _required_connector(p: Mapping[str, Any], action: str, q: Quirks) -> int:
    connector_id = connector(p.get("connectorId"), "connector_id", q)
    if connector_id is None:
        raise NormalizeError(f"{action}: connectorId is missing or not a non-negative integer")
    return connector_id


def _register(raw: Any, field: str, q: Quirks) -> float | None:
    """A Wh register (meterStart/meterStop, integers in 1.6); negative or unreadable is dropped."""
    if raw is None:
        return None
    value = parse_number(raw, field, q, expect_string=False)
    if value is not None and value < 0:
        q.add("value_negative", field)
        return None
    return value


HANDLERS: Final[Mapping[str, Handler]] = {
    "BootNotification": _boot,
    "Heartbeat": common.heartbeat,
    "StatusNotification": _status_notification,
    "Authorize": _authorize,
    "StartTransaction": _start_transaction,
    "StopTransaction": _stop_transaction,
    "MeterValues": _meter_values,
    "DataTransfer": common.data_transfer,
    "FirmwareStatusNotification": common.firmware_status,
    "DiagnosticsStatusNotification": common.diagnostics_status,
    "SecurityEventNotification": common.security_event,
    "LogStatusNotification": common.log_status,
    "SignedFirmwareStatusNotification": common.firmware_status,
}
