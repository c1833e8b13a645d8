"""Translation at the edge: OCPP 1.6J and 2.0.1 CALL payloads to contract events.

Pure: no IO, no clock (``received_at`` is injected), no ``ocpp`` import. Payloads are the raw
camelCase JSON objects of the CALL frame, already schema-checked by the caller; we still read
them defensively and bend rather than break.

- :func:`normalize_call` returns the events of one CALL. It raises :class:`NormalizeError`
  (a ``ValueError``; the message is the dead-letter reason) only when the payload cannot give
  any event: an action we do not translate (see :data:`SUPPORTED_ACTIONS`), an unsupported OCPP
  version, or a payload missing what the event cannot exist without (a connector, a transaction
  id, a status). Programming errors of the caller (naive ``received_at``, StartTransaction
  without ``transaction_id``) raise plain ``ValueError``/``TypeError``, so they are not filed as
  the charger's fault.
- Everything bent on the way is a *quirk*: a stable snake_case code, optionally with
  ``:<detail>`` (match on the part before the colon). Quirks of a reading land in
  ``MeterSample.quirks``; :func:`normalize_call_detailed` also returns every quirk of the call,
  including those of events that have no quirks field (StatusChanged, TransactionEvent, notices).

Quirk codes (``:<x>`` = with a detail, mostly the raw value or the measurand/field name):

- time: ``timestamp_naive_assumed_utc``, ``timestamp_missing_used_received_at``,
  ``timestamp_unparseable_used_received_at``, ``timestamp_implausible_used_received_at``
  (before 2010 or over a day ahead of ``received_at``: a charger without a synced clock);
- values: ``value_not_numeric:<m>``, ``value_not_finite:<m>``, ``value_negative:<m>``,
  ``value_out_of_range:<m>``, ``value_whitespace:<m>``, ``value_decimal_comma:<m>``,
  ``value_thousands_separator:<m>``, ``value_as_string:<m>`` (2.0.1), ``value_as_json_number:<m>``
  (1.6), ``multiplier_invalid:<m>``, ``signed_data_ignored:<m>``, ``duplicate_measurand:<m>``;
- units: ``unit_missing_assumed_{wh,w,a,v,percent,celsius}``, ``unit_lowercase``,
  ``unit_case_mismatch``, ``unit_whitespace``, ``unit_alias:<u>``, ``unit_energy_for_power:<u>``,
  ``unit_unexpected:<u>``;
- measurands and phases: ``unknown_measurand:<m>`` (not OCPP), ``measurand_ignored:<m>`` (OCPP
  but not mapped), ``phase_on_single_phase``, ``phase_ignored:<p>``, ``phase_unknown:<p>``,
  ``power_summed_from_phases``, ``energy_summed_from_phases``, ``location_unknown:<l>``,
  ``context_unknown:<c>``;
- spellings read leniently: ``<what>_normalized:<raw>`` for status, error_code, context,
  measurand, phase, location, event_type, charging_state;
- enums: ``status_unknown:<s>``, ``status_from_other_version:<s>``, ``error_code_unknown:<c>``,
  ``event_type_unknown:<t>``, ``charging_state_unknown:<s>``, ``security_event_unknown:<t>``;
- ids and text: ``string_truncated:<field>``, ``text_not_string:<field>``, ``id_whitespace:<f>``,
  ``id_sanitized:<f>``, ``id_shortened:<f>``, ``id_invalid:<f>``, ``int_as_string:<f>``,
  ``int_as_float:<f>``, ``int_invalid:<f>``, ``bool_as_string:<f>``, ``bool_invalid:<f>``,
  ``connector_invalid:<f>``;
- structure: ``connector_unknown_used_0``, ``evse_zero_in_transaction``, ``meter_value_malformed``,
  ``sampled_value_malformed``, ``notify_event_malformed``, ``notify_event_incomplete``,
  ``boot_vendor_or_model_missing``, ``data_transfer_vendor_missing``.

Version specifics: :mod:`ingest.normalize_v16`, :mod:`ingest.normalize_v201`; sampled values:
:mod:`ingest.normalize_meter`; lenient readers: :mod:`ingest.normalize_base`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from control.contract import ContractError, Event, MeterSample, OcppVersion, StatusChanged, TransactionEvent, utc
from ingest import normalize_v16, normalize_v201
from ingest.normalize_base import Ctx, Handler, NormalizeError, Quirks

__all__ = ["SUPPORTED_ACTIONS", "NormalizeError", "Normalized", "normalize_call", "normalize_call_detailed"]

_HANDLERS: Final[Mapping[OcppVersion, Mapping[str, Handler]]] = {
    OcppVersion.V16: normalize_v16.HANDLERS,
    OcppVersion.V201: normalize_v201.HANDLERS,
}
SUPPORTED_ACTIONS: Final[Mapping[OcppVersion, frozenset[str]]] = {
    version: frozenset(handlers) for version, handlers in _HANDLERS.items()
}


@dataclass(frozen=True, slots=True)
class Normalized:
    events: tuple[Event, ...]
    quirks: tuple[str, ...]  # every quirk of the call, in order of first appearance


def normalize_call(
    version: OcppVersion,
    charger_id: str,
    action: str,
    payload: Mapping[str, Any],
    *,
    received_at: datetime,
    transaction_id: str | None = None,
) -> list[Event]:
    """The contract events of one charger-to-CSMS CALL (see the module docstring).

    ``transaction_id`` is read for 1.6 StartTransaction only: pass the id you answer in
    StartTransaction.conf, as a string (``str(1707)``), so it matches the ``transactionId`` the
    charger echoes in MeterValues and StopTransaction.
    """
    result = normalize_call_detailed(
        version, charger_id, action, payload, received_at=received_at, transaction_id=transaction_id
    )
    return list(result.events)


def normalize_call_detailed(
    version: OcppVersion,
    charger_id: str,
    action: str,
    payload: Mapping[str, Any],
    *,
    received_at: datetime,
    transaction_id: str | None = None,
) -> Normalized:
    """Like :func:`normalize_call`, plus the quirks of the whole call (for logs and metrics)."""
    if not isinstance(received_at, datetime):
        raise TypeError(f"received_at must be a datetime, got {type(received_at).__name__}")
    received = utc(received_at)  # ContractError (a ValueError) if naive
    try:
        ocpp_version = version if type(version) is OcppVersion else OcppVersion(version)
    except ValueError:
        raise NormalizeError(f"unsupported OCPP version {str(version)[:20]!r}") from None
    handler = _HANDLERS[ocpp_version].get(action) if isinstance(action, str) else None
    if handler is None:
        raise NormalizeError(f"OCPP {ocpp_version.value}: action {str(action)[:60]!r} is not translated")
    if not isinstance(payload, Mapping):
        raise NormalizeError(f"{action}: payload is not a JSON object")
    ctx = Ctx(ocpp_version, charger_id, received, transaction_id, Quirks())
    try:
        events = handler(ctx, payload)
    except NormalizeError as exc:
        raise NormalizeError(f"OCPP {ocpp_version.value} {action}: {exc}") from exc
    except ContractError as exc:  # e.g. a charger id the contract refuses
        raise NormalizeError(f"OCPP {ocpp_version.value} {action}: {exc}") from exc
    # The bridge's arrival time goes on what the dataflow checks for clock skew and late delivery.
    # The handlers build those events with it already; this only catches one that did not.
    stamped = tuple(
        dataclasses.replace(e, received_at=received)
        if isinstance(e, MeterSample | StatusChanged | TransactionEvent) and e.received_at is None else e
        for e in events
    )
    return Normalized(stamped, ctx.quirks.as_tuple())
