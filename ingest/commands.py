"""Our commands to OCPP calls and back, for 1.6 and 2.0.1. Pure functions: no IO, no clock.

:func:`build_call` turns a :class:`control.contract.Command` into the (action, camelCase
payload) of one OCPP CALL; :func:`interpret` turns the charger's CALLRESULT payload into an
outcome. A command that cannot be expressed raises :class:`CommandBuildError`, whose message
becomes the detail of a FAILED result.

Parameters (``Command.params``), by kind:

======================  =====================================================================
kind                    params
======================  =====================================================================
set_limit               ``limit`` (>= 0, floored to 0.1), ``unit`` A|W (default A),
                        ``phases``, ``stack_level``, ``purpose`` (override)
clear_limit             ``purpose`` (override), ``stack_level``
start                   ``id_tag`` (default ``FLOWBANK``), ``id_token_type`` (2.0.1, Central)
stop                    ``transaction_id`` (default: the one running on the connector)
unlock                  connector_id required; ``evse_connector_id`` (2.0.1, default 1)
reset                   ``type`` soft|hard (default soft)
trigger                 ``message`` (an OCPP message name, e.g. StatusNotification)
set_config              ``key`` + ``value``; 2.0.1 also ``component`` + ``variable``
                        (``key`` may be ``Component.Variable``)
get_config              ``key`` (1.6: none = all keys); 2.0.1 as set_config
change_availability     ``available`` (bool) or ``type`` Operative|Inoperative
get_diagnostics         ``location`` (URL), ``start_time``, ``stop_time``, ``retries``,
                        ``retry_interval``, ``log_type`` (2.0.1)
update_firmware         ``location``, ``retrieve_at`` (default now), ``retries``,
                        ``retry_interval``; 2.0.1: ``signing_certificate``, ``signature``
reserve                 ``id_tag``, ``expiry`` (ISO time), ``reservation_id`` (default derived)
cancel_reservation      ``reservation_id``
======================  =====================================================================

Charging profiles: SET_LIMIT uses TxProfile when a transaction runs on the connector (then the
limit ends with the transaction) and TxDefaultProfile otherwise, at our stack level, with a
profile id derived from (connector, purpose) so a new limit replaces ours and nobody else's.
CLEAR_LIMIT clears exactly that profile id; "Unknown" (nothing installed) counts as accepted,
since the charger is then unlimited by us, which is what was asked.

The profile is shaped to the charger's learned capabilities (``ChargerState.capabilities``, see
:mod:`ingest.profile_shaping`): rate unit, stack level, phases, period count. Unknown ones leave
the command's values as they are.

``purpose`` ChargePointMaxProfile / ChargingStationMaxProfile (either name, sent in the version's
own) limits the whole charger: connector 0 only, and written at most once per
``ChargerState.station_max_interval`` per charger (a lower limit goes at once): a refused write
FAILS with the time the next may go. The session records each accepted one
(``OutboundCall.station_max``).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from control.contract import Command, CommandKind, CommandOutcome, JsonScalar, OcppVersion
from ingest.profile_shaping import DEFAULT_STATION_MAX_INTERVAL, fit_periods, shape_limit, station_max_refusal
from warehouse.capability_store import ChargerCapabilities, MaxProfileWrite

V16: Final = OcppVersion.V16
DEFAULT_STACK_LEVEL: Final = 1
PROFILE_ID_BASE: Final = 71_000
DEFAULT_ID_TAG: Final = "FLOWBANK"
_ACCEPTING: Final = frozenset({"Accepted", "Scheduled", "RebootRequired", "Unlocked", "AcceptedCanceled"})
_TX_DEFAULT, _TX = "TxDefaultProfile", "TxProfile"
_STATION_MAX: Final = {OcppVersion.V16: "ChargePointMaxProfile", OcppVersion.V201: "ChargingStationMaxProfile"}
_STATION_MAX_NAMES: Final = frozenset(_STATION_MAX.values())


class CommandBuildError(ValueError):
    """The command cannot be expressed as an OCPP call; the message says why."""


@dataclass(frozen=True, slots=True)
class ChargerState:
    """What the live session knows that shapes a call: running transactions by connector/EVSE,
    the charger's learned capabilities (None: not known) and its last charge-point-wide profile."""

    transactions: Mapping[int, str] = field(default_factory=dict)
    capabilities: ChargerCapabilities | None = None
    station_max: MaxProfileWrite | None = None
    station_max_interval: timedelta = DEFAULT_STATION_MAX_INTERVAL


@dataclass(frozen=True, slots=True)
class OutboundCall:
    action: str
    payload: dict[str, Any]
    # A charge-point-wide profile this call installs (limit, unit) or clears (None, None): the
    # session records it once the charger accepted, for the write rate limit.
    station_max: tuple[float | None, str | None] | None = None


@dataclass(frozen=True, slots=True)
class Interpretation:
    outcome: CommandOutcome
    status: str | None = None
    detail: str | None = None
    payload: dict[str, JsonScalar] = field(default_factory=dict)


# --------------------------------------------------------------------------- parameters


def _param(cmd: Command, name: str, kinds: tuple[type, ...], *, required: bool) -> Any:
    value = cmd.params.get(name)
    if value is None:
        if required:
            raise CommandBuildError(f"{cmd.kind.value} needs params.{name}")
        return None
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise CommandBuildError(f"params.{name} must be {' or '.join(k.__name__ for k in kinds)}")
    return value


def _text(cmd: Command, name: str, *, required: bool = False) -> str | None:
    value = _param(cmd, name, (str,), required=required)
    if value is not None and not value:
        raise CommandBuildError(f"params.{name} must not be empty")
    return None if value is None else str(value)


def _int(cmd: Command, name: str, *, required: bool = False) -> int | None:
    value = _param(cmd, name, (int, str), required=required)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise CommandBuildError(f"params.{name} must be an integer") from None
    return value  # type: ignore[no-any-return]


def _time(cmd: Command, name: str, *, required: bool = False) -> str | None:
    value = _text(cmd, name, required=required)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CommandBuildError(f"params.{name} must be an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise CommandBuildError(f"params.{name} needs a time zone")
    return ocpp_time(parsed)


def ocpp_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def derived_int_id(command_id: str) -> int:
    """A stable positive 31-bit integer for requestId / remoteStartId / reservationId."""
    return (zlib.crc32(command_id.encode()) & 0x7FFF_FFFF) or 1


def profile_id(connector: int, purpose: str) -> int:
    kind = 2 if purpose == _TX else 3 if purpose in _STATION_MAX_NAMES else 1
    return PROFILE_ID_BASE + connector * 10 + kind


def _connector(cmd: Command) -> int:
    return cmd.connector_id or 0


def _require_connector(cmd: Command) -> int:
    if not cmd.connector_id:
        raise CommandBuildError(f"{cmd.kind.value} needs a connector_id > 0")
    return cmd.connector_id


def _running_tx(cmd: Command, state: ChargerState) -> str | None:
    if cmd.connector_id:
        return state.transactions.get(cmd.connector_id)
    return None


def _config_target(cmd: Command) -> tuple[str, str] | None:
    component, variable = _text(cmd, "component"), _text(cmd, "variable")
    if component and variable:
        return component, variable
    key = _text(cmd, "key")
    if key is None:
        return None
    parts = key.split(".")
    if len(parts) != 2 or not all(parts):
        raise CommandBuildError("on OCPP 2.0.1 give params.component and params.variable, or key 'Component.Variable'")
    return parts[0], parts[1]


def _config_value(cmd: Command) -> str:
    value = cmd.params.get("value")
    if value is None:
        raise CommandBuildError("set_config needs params.value")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _optional(**items: Any) -> dict[str, Any]:
    return {k: v for k, v in items.items() if v is not None}


# --------------------------------------------------------------------------- builders


def _purpose(cmd: Command, v: OcppVersion, tx: str | None) -> str:
    given = _text(cmd, "purpose")
    if given in _STATION_MAX_NAMES:
        if cmd.connector_id:
            raise CommandBuildError(f"a {given} limits the whole charger: send it without a connector_id (or 0)")
        return _STATION_MAX[v]
    return given or (_TX if tx else _TX_DEFAULT)


def _check_station_max(state: ChargerState, now: datetime, limit: float | None, unit: str | None) -> None:
    refusal = station_max_refusal(state.station_max, state.station_max_interval, now, limit, unit)
    if refusal is not None:
        raise CommandBuildError(refusal)


def _set_limit(cmd: Command, v: OcppVersion, state: ChargerState, now: datetime) -> OutboundCall:
    raw_limit = _param(cmd, "limit", (int, float), required=True)
    if not math.isfinite(raw_limit) or raw_limit < 0:
        raise CommandBuildError("params.limit must be a finite number >= 0")
    unit = _text(cmd, "unit") or "A"
    if unit not in ("A", "W"):
        raise CommandBuildError("params.unit must be 'A' or 'W'")
    connector = _connector(cmd)
    tx = _running_tx(cmd, state)
    purpose = _purpose(cmd, v, tx)
    if purpose == _TX and not tx:
        raise CommandBuildError(f"no transaction is running on connector {connector} for a TxProfile")
    caps = state.capabilities
    shaped = shape_limit(float(raw_limit), unit, stack_level=_int(cmd, "stack_level") or DEFAULT_STACK_LEVEL,
                         phases=_int(cmd, "phases"), caps=caps)
    station_max = None
    if purpose in _STATION_MAX_NAMES:
        _check_station_max(state, now, shaped.limit, shaped.unit)
        station_max = (shaped.limit, shaped.unit)
    periods = fit_periods([_optional(startPeriod=0, limit=shaped.limit, numberPhases=shaped.number_phases)],
                          caps.max_periods if caps is not None else None)
    pid = profile_id(connector, purpose)
    schedule: dict[str, Any]
    profile: dict[str, Any]
    if v is V16:
        schedule = {"chargingRateUnit": shaped.unit, "startSchedule": ocpp_time(now),
                    "chargingSchedulePeriod": periods}
        profile = {"chargingProfileId": pid, "stackLevel": shaped.stack_level, "chargingProfilePurpose": purpose,
                   "chargingProfileKind": "Absolute", "chargingSchedule": schedule}
        if purpose == _TX:
            profile["transactionId"] = _int_tx(tx)
        return OutboundCall("SetChargingProfile", {"connectorId": connector, "csChargingProfiles": profile},
                            station_max)
    schedule = {"id": pid, "startSchedule": ocpp_time(now), "chargingRateUnit": shaped.unit,
                "chargingSchedulePeriod": periods}
    profile = {"id": pid, "stackLevel": shaped.stack_level, "chargingProfilePurpose": purpose,
               "chargingProfileKind": "Absolute", "chargingSchedule": [schedule]}
    if purpose == _TX:
        profile["transactionId"] = tx
    return OutboundCall("SetChargingProfile", {"evseId": connector, "chargingProfile": profile}, station_max)


def _int_tx(tx: str | None) -> int:
    try:
        return int(tx or "")
    except ValueError:
        raise CommandBuildError(f"transaction id {tx!r} is not an OCPP 1.6 integer id") from None


def _clear_limit(cmd: Command, v: OcppVersion, state: ChargerState, now: datetime) -> OutboundCall:
    purpose = _purpose(cmd, v, _running_tx(cmd, state))
    pid = profile_id(_connector(cmd), purpose)
    station_max: tuple[float | None, str | None] | None = None
    if purpose in _STATION_MAX_NAMES:
        _check_station_max(state, now, None, None)
        station_max = (None, None)
    if v is V16:
        return OutboundCall("ClearChargingProfile", {"id": pid}, station_max)
    return OutboundCall("ClearChargingProfile", {"chargingProfileId": pid}, station_max)


def _start(cmd: Command, v: OcppVersion, state: ChargerState, now: datetime) -> OutboundCall:
    tag = _text(cmd, "id_tag") or DEFAULT_ID_TAG
    if v is V16:
        return OutboundCall("RemoteStartTransaction", _optional(idTag=tag, connectorId=cmd.connector_id or None))
    token = {"idToken": tag, "type": _text(cmd, "id_token_type") or "Central"}
    return OutboundCall("RequestStartTransaction", _optional(
        idToken=token, remoteStartId=derived_int_id(cmd.command_id), evseId=cmd.connector_id or None))


def _stop(cmd: Command, v: OcppVersion, state: ChargerState, now: datetime) -> OutboundCall:
    given = _param(cmd, "transaction_id", (str, int), required=False)
    tx = None if given is None or given == "" else str(given)
    if tx is None:
        tx = _running_tx(cmd, state)
    if tx is None and cmd.connector_id is None and len(state.transactions) == 1:
        tx = next(iter(state.transactions.values()))
    if tx is None:
        raise CommandBuildError("stop: no transaction_id given and none known to be running")
    if v is V16:
        return OutboundCall("RemoteStopTransaction", {"transactionId": _int_tx(tx)})
    return OutboundCall("RequestStopTransaction", {"transactionId": tx})


def _unlock(cmd: Command, v: OcppVersion, state: ChargerState, now: datetime) -> OutboundCall:
    connector = _require_connector(cmd)
    if v is V16:
        return OutboundCall("UnlockConnector", {"connectorId": connector})
    return OutboundCall("UnlockConnector", {"evseId": connector,
                                            "connectorId": _int(cmd, "evse_connector_id") or 1})


def _reset(cmd: Command, v: OcppVersion, state: ChargerState, now: datetime) -> OutboundCall:
    kind = (_text(cmd, "type") or "soft").lower()
    if kind not in ("soft", "hard"):
        raise CommandBuildError("params.type must be 'soft' or 'hard'")
    if v is V16:
        return OutboundCall("Reset", {"type": kind.capitalize()})
    return OutboundCall("Reset", _optional(type="OnIdle" if kind == "soft" else "Immediate",
                                           evseId=cmd.connector_id or None))


def _trigger(cmd: Command, v: OcppVersion, state: ChargerState, now: datetime) -> OutboundCall:
    message = _text(cmd, "message", required=True)
    if v is V16:
        return OutboundCall("TriggerMessage", _optional(requestedMessage=message,
                                                            connectorId=cmd.connector_id or None))
    evse = {"id": cmd.connector_id} if cmd.connector_id else None
    return OutboundCall("TriggerMessage", _optional(requestedMessage=message, evse=evse))


def _set_config(cmd: Command, v: OcppVersion, state: ChargerState, now: datetime) -> OutboundCall:
    value = _config_value(cmd)
    if v is V16:
        return OutboundCall("ChangeConfiguration", {"key": _text(cmd, "key", required=True), "value": value})
    target = _config_target(cmd)
    if target is None:
        raise CommandBuildError("set_config needs params.component and params.variable (or key)")
    item = {"attributeValue": value, "component": {"name": target[0]}, "variable": {"name": target[1]}}
    return OutboundCall("SetVariables", {"setVariableData": [item]})


def _get_config(cmd: Command, v: OcppVersion, state: ChargerState, now: datetime) -> OutboundCall:
    if v is V16:
        key = _text(cmd, "key")
        return OutboundCall("GetConfiguration", {"key": [key]} if key else {})
    target = _config_target(cmd)
    if target is None:
        raise CommandBuildError("get_config on OCPP 2.0.1 needs params.component and params.variable (or key)")
    item = {"component": {"name": target[0]}, "variable": {"name": target[1]}}
    return OutboundCall("GetVariables", {"getVariableData": [item]})


def _change_availability(cmd: Command, v: OcppVersion, state: ChargerState, now: datetime) -> OutboundCall:
    available = _param(cmd, "available", (bool,), required=False)
    kind = _text(cmd, "type") or (None if available is None else ("Operative" if available else "Inoperative"))
    if kind not in ("Operative", "Inoperative"):
        raise CommandBuildError("change_availability needs params.available (bool) or type Operative|Inoperative")
    if v is V16:
        return OutboundCall("ChangeAvailability", {"connectorId": _connector(cmd), "type": kind})
    evse = {"id": cmd.connector_id} if cmd.connector_id else None
    return OutboundCall("ChangeAvailability", _optional(operationalStatus=kind, evse=evse))


def _get_diagnostics(cmd: Command, v: OcppVersion, state: ChargerState, now: datetime) -> OutboundCall:
    location = _text(cmd, "location", required=True)
    retries, interval = _int(cmd, "retries"), _int(cmd, "retry_interval")
    start, stop = _time(cmd, "start_time"), _time(cmd, "stop_time")
    if v is V16:
        return OutboundCall("GetDiagnostics", _optional(location=location, startTime=start, stopTime=stop,
                                                        retries=retries, retryInterval=interval))
    log = _optional(remoteLocation=location, oldestTimestamp=start, latestTimestamp=stop)
    return OutboundCall("GetLog", _optional(log=log, logType=_text(cmd, "log_type") or "DiagnosticsLog",
                                            requestId=derived_int_id(cmd.command_id), retries=retries,
                                            retryInterval=interval))


def _update_firmware(cmd: Command, v: OcppVersion, state: ChargerState, now: datetime) -> OutboundCall:
    location = _text(cmd, "location", required=True)
    retrieve = _time(cmd, "retrieve_at") or ocpp_time(now)
    retries, interval = _int(cmd, "retries"), _int(cmd, "retry_interval")
    if v is V16:
        return OutboundCall("UpdateFirmware", _optional(location=location, retrieveDate=retrieve,
                                                        retries=retries, retryInterval=interval))
    firmware = _optional(location=location, retrieveDateTime=retrieve, installDateTime=_time(cmd, "install_at"),
                         signingCertificate=_text(cmd, "signing_certificate"), signature=_text(cmd, "signature"))
    return OutboundCall("UpdateFirmware", _optional(requestId=derived_int_id(cmd.command_id), firmware=firmware,
                                                    retries=retries, retryInterval=interval))


def _reserve(cmd: Command, v: OcppVersion, state: ChargerState, now: datetime) -> OutboundCall:
    tag = _text(cmd, "id_tag", required=True)
    expiry = _time(cmd, "expiry", required=True)
    reservation = _int(cmd, "reservation_id") or derived_int_id(cmd.command_id)
    if v is V16:
        return OutboundCall("ReserveNow", {"connectorId": _connector(cmd), "expiryDate": expiry, "idTag": tag,
                                           "reservationId": reservation})
    token = {"idToken": tag, "type": _text(cmd, "id_token_type") or "Central"}
    return OutboundCall("ReserveNow", _optional(id=reservation, expiryDateTime=expiry, idToken=token,
                                                evseId=cmd.connector_id or None))


def _cancel_reservation(cmd: Command, v: OcppVersion, state: ChargerState, now: datetime) -> OutboundCall:
    return OutboundCall("CancelReservation", {"reservationId": _int(cmd, "reservation_id", required=True)})


Builder = Callable[[Command, OcppVersion, ChargerState, datetime], OutboundCall]

_BUILDERS: Final[dict[CommandKind, Builder]] = {
    CommandKind.SET_LIMIT: _set_limit,
    CommandKind.CLEAR_LIMIT: _clear_limit,
    CommandKind.START: _start,
    CommandKind.STOP: _stop,
    CommandKind.UNLOCK: _unlock,
    CommandKind.RESET: _reset,
    CommandKind.TRIGGER: _trigger,
    CommandKind.SET_CONFIG: _set_config,
    CommandKind.GET_CONFIG: _get_config,
    CommandKind.CHANGE_AVAILABILITY: _change_availability,
    CommandKind.GET_DIAGNOSTICS: _get_diagnostics,
    CommandKind.UPDATE_FIRMWARE: _update_firmware,
    CommandKind.RESERVE: _reserve,
    CommandKind.CANCEL_RESERVATION: _cancel_reservation,
}


def build_call(cmd: Command, version: OcppVersion, state: ChargerState, now: datetime) -> OutboundCall:
    builder = _BUILDERS.get(cmd.kind)
    if builder is None:  # pragma: no cover - every CommandKind has a builder (unit-tested)
        raise CommandBuildError(f"no OCPP mapping for {cmd.kind.value}")
    return builder(cmd, version, state, now)


# --------------------------------------------------------------------------- results

_RESULT_FIELDS: Final = {"transactionId": "transaction_id", "fileName": "file_name", "filename": "file_name"}


def _status_info(response: Mapping[str, Any]) -> str | None:
    info = response.get("statusInfo")
    if not isinstance(info, Mapping):
        return None
    parts = [str(info.get("reasonCode", "")), str(info.get("additionalInfo", ""))]
    return ": ".join(p for p in parts if p) or None


def _by_status(status: Any, detail: str | None = None, payload: dict[str, JsonScalar] | None = None,
               *, also_accepting: frozenset[str] = frozenset()) -> Interpretation:
    text = str(status) if status is not None else None
    ok = text in _ACCEPTING or text in also_accepting
    return Interpretation(CommandOutcome.ACCEPTED if ok else CommandOutcome.REJECTED, text, detail, payload or {})


def interpret(cmd: Command, version: OcppVersion, call: OutboundCall, response: Mapping[str, Any]) -> Interpretation:
    """The outcome of a CALLRESULT (already schema-checked)."""
    payload: dict[str, JsonScalar] = {
        name: response[key] for key, name in _RESULT_FIELDS.items() if isinstance(response.get(key), str | int)
    }
    if call.action == "ClearChargingProfile":
        detail = "no matching profile was installed" if response.get("status") == "Unknown" else None
        return _by_status(response.get("status"), detail, also_accepting=frozenset({"Unknown"}))
    if call.action == "ReserveNow":
        payload["reservation_id"] = call.payload.get("reservationId", call.payload.get("id"))
    if call.action == "UpdateFirmware" and version is V16:
        return Interpretation(CommandOutcome.ACCEPTED)  # 1.6 answers with an empty object
    if call.action == "GetDiagnostics":
        if "file_name" in payload:
            return Interpretation(CommandOutcome.ACCEPTED, payload=payload)
        return Interpretation(CommandOutcome.REJECTED, detail="no diagnostic information available")
    if call.action == "GetConfiguration":
        return _configuration(call, response)
    if call.action in ("SetVariables", "GetVariables"):
        results = response.get("setVariableResult") or response.get("getVariableResult") or [{}]
        first = results[0]
        status = first.get("attributeStatus")
        if call.action == "GetVariables" and status == "Accepted":
            item = call.payload["getVariableData"][0]
            payload[f"{item['component']['name']}.{item['variable']['name']}"] = first.get("attributeValue")
        return _by_status(status, _status_info(first), payload)
    return _by_status(response.get("status"), _status_info(response), payload)


def _configuration(call: OutboundCall, response: Mapping[str, Any]) -> Interpretation:
    values: dict[str, JsonScalar] = {}
    for item in response.get("configurationKey") or []:
        values[str(item.get("key"))] = item.get("value")
    unknown = [str(k) for k in response.get("unknownKey") or []]
    requested = call.payload.get("key") or []
    if requested and all(key in unknown for key in requested):
        return Interpretation(CommandOutcome.REJECTED, "UnknownKey", f"unknown key(s): {', '.join(unknown)}"[:2000])
    detail = f"unknown key(s): {', '.join(unknown)}"[:2000] if unknown else None
    return Interpretation(CommandOutcome.ACCEPTED, None, detail, values)
