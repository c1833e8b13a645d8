"""The CSMS's answer to each inbound CALL, per OCPP version, read from the camelCase payload.

Each handler gets the session, the schema-valid payload and the receive time, and returns the
CALLRESULT payload plus the transaction id the bridge assigned (1.6 StartTransaction only; it
goes to normalize). Handlers also keep the session's picture of running transactions, which
SET_LIMIT / STOP commands need. Anything slow (the registry write of a boot) runs in the
background: the charger is answered at once.

The set of handled actions equals what :mod:`ingest.normalize` translates (a unit test holds
them together); other actions get NotSupported / NotImplemented from :mod:`ingest.validation`.

DataTransfer is answered ``UnknownVendorId``: it is published as a notice, but nothing here
interprets vendor data, and "Accepted" would claim we did.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

from control.contract import OcppVersion

if TYPE_CHECKING:
    from ingest.csms import ChargerSession

Reply = tuple[Mapping[str, Any], str | None]
Handler = Callable[["ChargerSession", dict[str, Any], datetime], Awaitable[Reply]]

_EMPTY: Final[Mapping[str, Any]] = {}
_NO_AUTHORIZATION: Final = "NoAuthorization"  # 2.0.1 IdTokenEnumType


class AuthorizationPolicy(Protocol):
    """The seam for an authorization list: the status (Accepted, Invalid, Blocked, ...) of a
    token. Synchronous on purpose: a real list is kept in memory and refreshed from PG."""

    def status(self, charger_id: str, id_token: str, token_type: str | None) -> str: ...


class AcceptAnyToken:
    """For now: any non-empty id token is Accepted (and 2.0.1 ``NoAuthorization``)."""

    def status(self, charger_id: str, id_token: str, token_type: str | None) -> str:
        if token_type == _NO_AUTHORIZATION or id_token:
            return "Accepted"
        return "Invalid"


def ocpp_now(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _forget_transaction(session: ChargerSession, transaction_id: str) -> None:
    for key in [k for k, v in session.transactions.items() if v == transaction_id]:
        del session.transactions[key]


def _record_boot(session: ChargerSession, at: datetime, vendor: str, model: str, serial: str | None,
                 firmware: str | None) -> None:
    ctx = session.ctx
    session.transactions.clear()  # a reboot ends what was running; the charger reports it anew
    ctx.spawn(ctx.registry.record_boot(
        session.charger_id, vendor=vendor, model=model, serial_number=serial, firmware_version=firmware,
        ocpp_version=session.version, heartbeat_interval_s=ctx.heartbeat_interval_s, boot_at=at,
    ), f"record the boot of {session.charger_id}")


def _id_status(session: ChargerSession, token: str, token_type: str | None = None) -> str:
    return session.ctx.authorization.status(session.charger_id, token, token_type)


# --------------------------------------------------------------------------- shared


async def _heartbeat(s: ChargerSession, p: dict[str, Any], at: datetime) -> Reply:
    return {"currentTime": ocpp_now(at)}, None


async def _empty(s: ChargerSession, p: dict[str, Any], at: datetime) -> Reply:
    return _EMPTY, None


async def _data_transfer(s: ChargerSession, p: dict[str, Any], at: datetime) -> Reply:
    return {"status": "UnknownVendorId"}, None


# --------------------------------------------------------------------------- OCPP 1.6


async def _boot_16(s: ChargerSession, p: dict[str, Any], at: datetime) -> Reply:
    _record_boot(s, at, p["chargePointVendor"], p["chargePointModel"],
                 p.get("chargePointSerialNumber") or p.get("chargeBoxSerialNumber"), p.get("firmwareVersion"))
    return {"status": "Accepted", "currentTime": ocpp_now(at), "interval": s.ctx.heartbeat_interval_s}, None


async def _status_16(s: ChargerSession, p: dict[str, Any], at: datetime) -> Reply:
    if p["status"] == "Available":
        s.transactions.pop(p["connectorId"], None)
    return _EMPTY, None


async def _authorize_16(s: ChargerSession, p: dict[str, Any], at: datetime) -> Reply:
    return {"idTagInfo": {"status": _id_status(s, p["idTag"])}}, None


async def _start_16(s: ChargerSession, p: dict[str, Any], at: datetime) -> Reply:
    # The same start again (a duplicate or a retransmission) keeps its transaction id.
    start = (s.charger_id, p["connectorId"], p["idTag"], p["meterStart"], p["timestamp"])
    transaction_id = await s.ctx.tx_ids.for_start(start)
    s.transactions[p["connectorId"]] = str(transaction_id)
    return {"transactionId": transaction_id, "idTagInfo": {"status": _id_status(s, p["idTag"])}}, str(transaction_id)


async def _stop_16(s: ChargerSession, p: dict[str, Any], at: datetime) -> Reply:
    _forget_transaction(s, str(p["transactionId"]))
    if p.get("idTag"):
        return {"idTagInfo": {"status": _id_status(s, p["idTag"])}}, None
    return _EMPTY, None


async def _meter_values_16(s: ChargerSession, p: dict[str, Any], at: datetime) -> Reply:
    transaction_id = p.get("transactionId")
    if transaction_id is not None and p["connectorId"] > 0:
        s.transactions[p["connectorId"]] = str(transaction_id)
    return _EMPTY, None


# --------------------------------------------------------------------------- OCPP 2.0.1


async def _boot_201(s: ChargerSession, p: dict[str, Any], at: datetime) -> Reply:
    station = p["chargingStation"]
    _record_boot(s, at, station["vendorName"], station["model"], station.get("serialNumber"),
                 station.get("firmwareVersion"))
    return {"currentTime": ocpp_now(at), "interval": s.ctx.heartbeat_interval_s, "status": "Accepted"}, None


async def _status_201(s: ChargerSession, p: dict[str, Any], at: datetime) -> Reply:
    if p["connectorStatus"] == "Available":
        s.transactions.pop(p["evseId"], None)
    return _EMPTY, None


async def _authorize_201(s: ChargerSession, p: dict[str, Any], at: datetime) -> Reply:
    token = p["idToken"]
    return {"idTokenInfo": {"status": _id_status(s, token["idToken"], token["type"])}}, None


async def _transaction_event_201(s: ChargerSession, p: dict[str, Any], at: datetime) -> Reply:
    transaction_id = p["transactionInfo"]["transactionId"]
    if p["eventType"] == "Ended":
        _forget_transaction(s, transaction_id)
    elif isinstance(p.get("evse"), dict):
        s.transactions[p["evse"]["id"]] = transaction_id
    token = p.get("idToken")
    if token is not None:
        return {"idTokenInfo": {"status": _id_status(s, token["idToken"], token["type"])}}, None
    return _EMPTY, None


_V16: Final[dict[str, Handler]] = {
    "BootNotification": _boot_16,
    "Heartbeat": _heartbeat,
    "StatusNotification": _status_16,
    "Authorize": _authorize_16,
    "StartTransaction": _start_16,
    "StopTransaction": _stop_16,
    "MeterValues": _meter_values_16,
    "DataTransfer": _data_transfer,
    "FirmwareStatusNotification": _empty,
    "DiagnosticsStatusNotification": _empty,
    "SecurityEventNotification": _empty,  # 1.6 security whitepaper
    "LogStatusNotification": _empty,
    "SignedFirmwareStatusNotification": _empty,
}

_V201: Final[dict[str, Handler]] = {
    "BootNotification": _boot_201,
    "Heartbeat": _heartbeat,
    "StatusNotification": _status_201,
    "Authorize": _authorize_201,
    "TransactionEvent": _transaction_event_201,
    "MeterValues": _empty,
    "DataTransfer": _data_transfer,
    "FirmwareStatusNotification": _empty,
    "LogStatusNotification": _empty,
    "SecurityEventNotification": _empty,
    "NotifyEvent": _empty,
    "NotifyChargingLimit": _empty,  # published as a ChargingLimit; load management applies it
    "ClearedChargingLimit": _empty,
}


def handlers(version: OcppVersion) -> Mapping[str, Handler]:
    return _V16 if version is OcppVersion.V16 else _V201
