"""Handlers whose payloads are the same (or nearly) in OCPP 1.6 and 2.0.1.

Notice severities (the order of the checks is the policy):

- firmware status: a status naming a failure or an invalid signature/certificate is ERROR;
- diagnostics / log upload status: a failure, a bad request or a refusal is WARNING;
- security events: by type, see :data:`SECURITY_SEVERITY`; an unknown type is WARNING (a
  security event we cannot classify deserves a look);
- everything else is INFO.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from control.contract import (
    ChargerInfo,
    ChargerNotice,
    ConnectionEvent,
    ConnectionKind,
    ConnectorState,
    Event,
    NoticeKind,
    Severity,
    StatusChanged,
)
from ingest.normalize_base import Ctx, NormalizeError, Quirks, enum_table, lookup, text, timestamp, to_int

# OCPP 2.0.1 Appendix "Security events" (the same names in the 1.6 security white paper).
SECURITY_SEVERITY: Final[Mapping[str, Severity]] = {
    "TamperDetectionActivated": Severity.CRITICAL,
    "AttemptedReplayAttacks": Severity.CRITICAL,
    "FailedToAuthenticateAtCsms": Severity.ERROR,
    "CsmsFailedToAuthenticate": Severity.ERROR,
    "InvalidFirmwareSignature": Severity.ERROR,
    "InvalidFirmwareSigningCertificate": Severity.ERROR,
    "InvalidCsmsCertificate": Severity.ERROR,
    "InvalidCentralSystemCertificate": Severity.ERROR,  # 1.6 white paper spelling
    "InvalidChargingStationCertificate": Severity.ERROR,
    "InvalidChargePointCertificate": Severity.ERROR,  # 1.6 white paper spelling
    "InvalidTLSVersion": Severity.ERROR,
    "InvalidTLSCipherSuite": Severity.ERROR,
    "MemoryExhaustion": Severity.ERROR,
    "MaintenanceLoginFailed": Severity.ERROR,
    "InvalidMessages": Severity.WARNING,
    "SecurityLogWasCleared": Severity.WARNING,
    "ReconfigurationOfSecurityParameters": Severity.WARNING,
    "SettingSystemTime": Severity.WARNING,
    "MaintenanceLoginAccepted": Severity.WARNING,
    "FirmwareUpdated": Severity.INFO,
    "StartupOfTheDevice": Severity.INFO,
    "ResetOrReboot": Severity.INFO,
}
_FIRMWARE_ERROR_WORDS: Final = ("fail", "invalid")
_UPLOAD_WARNING_WORDS: Final = ("fail", "bad", "denied", "notsupported")


def heartbeat(ctx: Ctx, payload: Mapping[str, Any]) -> list[Event]:
    kind = ConnectionKind.HEARTBEAT
    return [ConnectionEvent(ctx.charger_id, ctx.received_at, kind, ocpp_version=ctx.version)]


def boot(
    ctx: Ctx, *, vendor: Any, model: Any, serial_number: Any, firmware_version: Any, reason: Any = None
) -> list[Event]:
    """ChargerInfo + ConnectionEvent(BOOTED); a missing vendor or model becomes ``""``."""
    q = ctx.quirks
    if vendor is None or model is None:
        q.add("boot_vendor_or_model_missing")
    info = ChargerInfo(
        charger_id=ctx.charger_id,
        ts=ctx.received_at,
        vendor=text(vendor, "vendor", q) or "",
        model=text(model, "model", q) or "",
        serial_number=text(serial_number, "serial_number", q),
        firmware_version=text(firmware_version, "firmware_version", q),
        ocpp_version=ctx.version,
    )
    booted = ConnectionEvent(
        ctx.charger_id, ctx.received_at, ConnectionKind.BOOTED, ocpp_version=ctx.version,
        reason=text(reason, "reason", q),
    )
    return [info, booted]


def authorize(ctx: Ctx, id_token: Any, detail: str | None = None) -> list[Event]:
    code = text(id_token, "id_tag", ctx.quirks)
    if code is None:
        raise NormalizeError("Authorize carries no id token")
    return [ChargerNotice(ctx.charger_id, ctx.received_at, NoticeKind.AUTHORIZE, code, detail=detail)]


def data_transfer(ctx: Ctx, payload: Mapping[str, Any]) -> list[Event]:
    """code = vendorId; detail = ``{"messageId": ..., "data": ...}`` as compact JSON (present keys)."""
    q = ctx.quirks
    vendor = text(payload.get("vendorId"), "vendor_id", q)
    if vendor is None:
        q.add("data_transfer_vendor_missing")
        vendor = ""
    parts = {key: payload[key] for key in ("messageId", "data") if payload.get(key) is not None}
    detail = text(parts, "detail", q) if parts else None
    return [ChargerNotice(ctx.charger_id, ctx.received_at, NoticeKind.DATA_TRANSFER, vendor, detail=detail)]


def firmware_status(ctx: Ctx, payload: Mapping[str, Any]) -> list[Event]:
    return _status_notice(ctx, payload, NoticeKind.FIRMWARE_STATUS, _FIRMWARE_ERROR_WORDS, Severity.ERROR)


def diagnostics_status(ctx: Ctx, payload: Mapping[str, Any]) -> list[Event]:
    kind = NoticeKind.DIAGNOSTICS_STATUS
    return _status_notice(ctx, payload, kind, _UPLOAD_WARNING_WORDS, Severity.WARNING)


def log_status(ctx: Ctx, payload: Mapping[str, Any]) -> list[Event]:
    return _status_notice(ctx, payload, NoticeKind.LOG_STATUS, _UPLOAD_WARNING_WORDS, Severity.WARNING)


def _status_notice(
    ctx: Ctx, payload: Mapping[str, Any], kind: NoticeKind, bad_words: tuple[str, ...], bad: Severity
) -> list[Event]:
    q = ctx.quirks
    status = text(payload.get("status"), "status", q)
    if status is None:
        raise NormalizeError(f"{kind.value}: status is missing")
    severity = bad if any(word in status.lower() for word in bad_words) else Severity.INFO
    request_id = to_int(payload.get("requestId"), "request_id", q)
    detail = f"requestId={request_id}" if request_id is not None else None
    return [ChargerNotice(ctx.charger_id, ctx.received_at, kind, status, severity=severity, detail=detail)]


def security_event(ctx: Ctx, payload: Mapping[str, Any]) -> list[Event]:
    q = ctx.quirks
    event_type = text(payload.get("type"), "type", q)
    if event_type is None:
        raise NormalizeError("SecurityEventNotification: type is missing")
    severity = SECURITY_SEVERITY.get(event_type)
    if severity is None:
        q.add("security_event_unknown", event_type)
        severity = Severity.WARNING
    return [
        ChargerNotice(
            ctx.charger_id,
            timestamp(ctx, payload.get("timestamp"), q),
            NoticeKind.SECURITY_EVENT,
            event_type,
            severity=severity,
            detail=text(payload.get("techInfo"), "tech_info", q),
        )
    ]


def connector_state(raw: Any, native: Mapping[str, ConnectorState], q: Quirks) -> ConnectorState | None:
    """A status from the version's own enum, else from the other version's (with a quirk), else None."""
    state = lookup(raw, native, q, "status")
    if state is None:
        state = lookup(raw, _ALL_STATES, q, "status")
        if state is not None:
            q.add("status_from_other_version", raw)
    return state


_ALL_STATES: Final = enum_table(ConnectorState)


def status_changed(
    ctx: Ctx,
    raw_status: Any,
    native: Mapping[str, ConnectorState],
    *,
    connector_id: int,
    ts: datetime,
    info: str | None = None,
    error_code: str | None = None,
    vendor_error_code: str | None = None,
) -> StatusChanged:
    """StatusChanged; an unknown status is read as UNAVAILABLE (nothing gets allocated to a
    connector in a state we do not understand) and the raw status is kept in ``info``."""
    q = ctx.quirks
    if raw_status is None:
        raise NormalizeError("status is missing")
    status = connector_state(raw_status, native, q)
    if status is None:
        q.add("status_unknown", raw_status)
        status = ConnectorState.UNAVAILABLE
        raw = text(raw_status, "status", q, limit=100)
        info = text(f"unknown status {raw!r}" + (f"; {info}" if info else ""), "info", q)
    return StatusChanged(
        charger_id=ctx.charger_id, connector_id=connector_id, ts=ts, status=status,
        error_code=error_code, vendor_error_code=vendor_error_code, info=info, received_at=ctx.received_at,
    )
