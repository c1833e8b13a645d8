"""The OCPP 2.0.1 charging station: answers the CSMS and speaks for the station.

2.0.1 specifics: the station names its transactions (a uuid), every TransactionEvent of a
transaction carries an increasing ``seqNo``, and events queued while offline say
``offline: true``. Each connector of the simulator is an EVSE with one connector.
"""

from __future__ import annotations

from functools import partial
from itertools import count
from typing import Any

from ocpp.v201 import call_result
from ocpp.v201.enums import Action
from websockets.asyncio.client import ClientConnection

from control.contract import ConnectorState, SampleContext
from ingest.sim import commands, connector, msg201
from ingest.sim._ocpp import ChargePoint201Base, after, on
from ingest.sim.clock import parse_ts
from ingest.sim.dialect import Dialect, Host, SimChargePointMixin
from ingest.sim.events import (
    AuthorizeEvent,
    ChargingStateEvent,
    ExternalLimitEvent,
    NoticeEvent,
    ProblemEvent,
    SimEvent,
    StatusEvent,
    StopReason,
    TriggerEvent,
    TxSampleEvent,
    TxStartEvent,
    TxStopEvent,
)
from ingest.sim.model import Session
from ingest.sim.outbox import Outgoing, Result
from ingest.sim.uploader import diagnostics_report, start_upload
from ingest.sim.variables import SetResult, key_for, known_component


class ChargePoint201(SimChargePointMixin, ChargePoint201Base):
    def __init__(self, charger_id: str, ws: ClientConnection, host: Host) -> None:
        super().__init__(charger_id, ws)
        self._setup(host)

    async def route_message(self, raw_msg: str | bytes) -> None:
        await self.sim_route(raw_msg, super().route_message)

    def _now(self) -> Any:
        return self.host.clock.now()

    @on(Action.request_start_transaction)
    def on_request_start(self, id_token: dict[str, Any], remote_start_id: int, call_unique_id: str,
                         evse_id: int | None = None, charging_profile: dict[str, Any] | None = None,
                         **_: Any) -> Any:
        with self.effects(call_unique_id):
            ok = commands.remote_start(self.station, self._now(), id_tag=str(id_token["id_token"]),
                                       connector_id=evse_id, remote_start_id=remote_start_id,
                                       profile=charging_profile)
        return call_result.RequestStartTransaction(status="Accepted" if ok else "Rejected")

    @after(Action.request_start_transaction)
    def after_request_start(self, call_unique_id: str, **_: Any) -> None:
        self.release(call_unique_id)

    @on(Action.request_stop_transaction)
    def on_request_stop(self, transaction_id: str, call_unique_id: str, **_: Any) -> Any:
        with self.effects(call_unique_id):
            ok = commands.remote_stop(self.station, self._now(), transaction_id)
        return call_result.RequestStopTransaction(status="Accepted" if ok else "Rejected")

    @after(Action.request_stop_transaction)
    def after_request_stop(self, call_unique_id: str, **_: Any) -> None:
        self.release(call_unique_id)

    @on(Action.unlock_connector)
    def on_unlock(self, evse_id: int, connector_id: int, call_unique_id: str, **_: Any) -> Any:
        with self.effects(call_unique_id):
            status = commands.unlock(self.station, self._now(), evse_id, refuse_in_tx=True)
        return call_result.UnlockConnector(status=status if connector_id == 1 else "UnknownConnector")

    @after(Action.unlock_connector)
    def after_unlock(self, call_unique_id: str, **_: Any) -> None:
        self.release(call_unique_id)

    @on(Action.reset)
    def on_reset(self, type: str, call_unique_id: str, evse_id: int | None = None, **_: Any) -> Any:
        if evse_id is not None:
            return call_result.Reset(status="Rejected")  # EVSE-level reset not supported
        with self.effects(call_unique_id):
            status = commands.reset(self.station, self._now(), type)
        return call_result.Reset(status=status)

    @after(Action.reset)
    def after_reset(self, call_unique_id: str, **_: Any) -> None:
        self.release(call_unique_id)

    @on(Action.trigger_message)
    def on_trigger(self, requested_message: str, call_unique_id: str, evse: dict[str, Any] | None = None,
                   **_: Any) -> Any:
        with self.effects(call_unique_id):
            status = commands.trigger(self.station, self._now(), requested_message,
                                      int(evse["id"]) if evse else None)
        return call_result.TriggerMessage(status=status)

    @after(Action.trigger_message)
    def after_trigger(self, call_unique_id: str, **_: Any) -> None:
        self.release(call_unique_id)

    @on(Action.set_variables)
    def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = []
        for item in set_variable_data:
            key = key_for(item["component"]["name"], item["variable"]["name"])
            if key is None:
                status = "UnknownVariable" if known_component(item["component"]["name"]) else "UnknownComponent"
            else:
                outcome = self.station.variables.set(key, str(item["attribute_value"]))
                status = "Accepted" if outcome == SetResult.ACCEPTED else "Rejected"
            results.append({"attribute_status": status, "component": item["component"],
                            "variable": item["variable"]})
        return call_result.SetVariables(set_variable_result=results)

    @on(Action.get_variables)
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = []
        for item in get_variable_data:
            key = key_for(item["component"]["name"], item["variable"]["name"])
            value = self.station.variables.get(key) if key else None
            result: dict[str, Any] = {"component": item["component"], "variable": item["variable"]}
            if value is not None:
                result.update(attribute_status="Accepted", attribute_value=value)
            else:
                known = known_component(item["component"]["name"])
                result["attribute_status"] = "UnknownVariable" if known else "UnknownComponent"
            results.append(result)
        return call_result.GetVariables(get_variable_result=results)

    @on(Action.change_availability)
    def on_change_availability(self, operational_status: str, evse: dict[str, Any] | None = None,
                               **_: Any) -> Any:
        status = commands.change_availability(self.station, self._now(), int(evse["id"]) if evse else 0,
                                              operational_status == "Operative")
        return call_result.ChangeAvailability(status=status)

    @on(Action.get_log)
    def on_get_log(self, log: dict[str, Any], log_type: str, request_id: int, **_: Any) -> Any:
        filename = commands.upload(self.station, self._now(), kind="log", request_id=request_id)
        start_upload(str(log.get("remoteLocation", log.get("remote_location", ""))), filename,
                     diagnostics_report(self.station, self._now(), log_type))
        return call_result.GetLog(status="Accepted", filename=filename)

    @on(Action.update_firmware)
    def on_update_firmware(self, request_id: int, firmware: dict[str, Any], **_: Any) -> Any:
        commands.update_firmware(self.station, self._now(), retrieve_at=parse_ts(firmware["retrieve_date_time"]),
                                 request_id=request_id)
        return call_result.UpdateFirmware(status="Accepted")

    @on(Action.reserve_now)
    def on_reserve_now(self, id: int, expiry_date_time: str, id_token: dict[str, Any], evse_id: int | None = None,
                       **_: Any) -> Any:
        status = commands.reserve(self.station, self._now(), reservation_id=id, connector_id=evse_id,
                                  id_tag=str(id_token["id_token"]), expiry=parse_ts(expiry_date_time))
        return call_result.ReserveNow(status=status)

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int, **_: Any) -> Any:
        ok = commands.cancel_reservation(self.station, self._now(), reservation_id)
        return call_result.CancelReservation(status="Accepted" if ok else "Rejected")

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict[str, Any], **_: Any) -> Any:
        ok = commands.set_profile(self.station, self._now(), charging_profile, evse_id)
        return call_result.SetChargingProfile(status="Accepted" if ok else "Rejected")

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, charging_profile_id: int | None = None,
                                  charging_profile_criteria: dict[str, Any] | None = None, **_: Any) -> Any:
        criteria = charging_profile_criteria or {}
        ok = commands.clear_profiles(self.station, self._now(), profile_id=charging_profile_id,
                                     connector_id=criteria.get("evse_id"),
                                     purpose=criteria.get("charging_profile_purpose"),
                                     stack_level=criteria.get("stack_level"))
        return call_result.ClearChargingProfile(status="Accepted" if ok else "Unknown")

    @on(Action.clear_cache)
    def on_clear_cache(self, **_: Any) -> Any:
        return call_result.ClearCache(status="Accepted")

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **_: Any) -> Any:
        return call_result.DataTransfer(status="UnknownVendorId")


class Dialect201(Dialect):
    subprotocol = "ocpp2.0.1"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sent_status: dict[int, str] = {}
        self._notify_seq = count()
        self._event_ids = count(1)
        self._schedule_ids = count(1)

    def make_charge_point(self, ws: ClientConnection, host: Host) -> ChargePoint201:
        return ChargePoint201(self.station.id, ws, host)

    def on_connected(self) -> None:
        self._sent_status.clear()

    def boot(self, reason: str) -> Outgoing:
        return Outgoing("BootNotification", msg201.boot_notification(self.station.spec, reason))

    def heartbeat(self) -> Outgoing:
        return Outgoing("Heartbeat", {})

    def _tx(self, event_type: str, session: Session, **kw: Any) -> dict[str, Any]:
        return msg201.transaction_event(event_type, session, seq_no=session.next_seq(),
                                        offline=not self.station.online, **kw)

    def translate(self, event: SimEvent) -> list[Outgoing]:
        if isinstance(event, StatusEvent):
            return self._status(event.connector_id, event.status, event.ts, force=False)
        if isinstance(event, AuthorizeEvent):
            return [Outgoing("Authorize", {"idToken": msg201.id_token(event.id_tag)},
                             on_result=partial(self._authorized, event.connector_id))]
        if isinstance(event, TxStartEvent):
            s = event.session
            payload = self._tx("Started", s, ts=event.ts, trigger="RemoteStart" if event.remote else "Authorized",
                               reading=event.reading, context=SampleContext.TRANSACTION_BEGIN,
                               state=msg201.charging_state(event.charging_state))
            return [Outgoing("TransactionEvent", payload, durable=True, session=s,
                             on_result=partial(self._started, s))]
        if isinstance(event, ChargingStateEvent):
            payload = self._tx("Updated", event.session, ts=event.ts, trigger="ChargingStateChanged",
                               state=msg201.charging_state(event.status))
            return [Outgoing("TransactionEvent", payload, durable=True, session=event.session)]
        if isinstance(event, TxSampleEvent):
            return self._sample(event)
        if isinstance(event, TxStopEvent):
            stopped, trigger = msg201.STOP_REASONS[event.reason]
            unplugged = event.reason in (StopReason.EV_DISCONNECTED, StopReason.UNLOCK)
            payload = self._tx("Ended", event.session, ts=event.ts, trigger=trigger, reading=event.reading,
                               context=SampleContext.TRANSACTION_END, state="Idle" if unplugged else "EVConnected",
                               stopped_reason=stopped)
            item = Outgoing("TransactionEvent", payload, durable=True, session=event.session)
            item.on_result = partial(self.stop_result, item)
            return [item]
        if isinstance(event, ProblemEvent):
            payload = msg201.notify_event(event, seq_no=next(self._notify_seq), event_id=next(self._event_ids))
            return [Outgoing("NotifyEvent", payload)]
        if isinstance(event, NoticeEvent) and event.kind in ("firmware", "log"):
            action = "FirmwareStatusNotification" if event.kind == "firmware" else "LogStatusNotification"
            payload = {"status": event.status}
            if event.request_id is not None:
                payload["requestId"] = event.request_id
            return [Outgoing(action, payload)]
        if isinstance(event, TriggerEvent):
            return self._triggered(event)
        if isinstance(event, ExternalLimitEvent):
            if event.cleared:
                return [Outgoing("ClearedChargingLimit", msg201.cleared_charging_limit(event))]
            return [Outgoing("NotifyChargingLimit",
                             msg201.notify_charging_limit(event, schedule_id=next(self._schedule_ids)))]
        return []

    def _status(self, evse_id: int, status: ConnectorState, ts: Any, *, force: bool) -> list[Outgoing]:
        """2.0.1 has no station-level status and fewer connector states: send only real changes."""
        mapped = msg201.connector_status(status)
        if evse_id == 0 or (not force and self._sent_status.get(evse_id) == mapped):
            return []
        self._sent_status[evse_id] = mapped
        return [Outgoing("StatusNotification", msg201.status_notification(evse_id, status, ts))]

    def _sample(self, event: TxSampleEvent) -> list[Outgoing]:
        if event.session is None:
            payload = {"evseId": event.connector_id,
                       "meterValue": [msg201.meter_value(event.reading, event.context)]}
            return [Outgoing("MeterValues", payload)]
        periodic = event.context == SampleContext.PERIODIC
        payload = self._tx("Updated", event.session, ts=event.reading.ts,
                           trigger="MeterValuePeriodic" if periodic else "Trigger", reading=event.reading,
                           context=event.context)
        return [Outgoing("TransactionEvent", payload, durable=True, session=event.session, sample=periodic)]

    def _authorized(self, connector_id: int, result: Result) -> None:
        if result is None:
            accepted = not self.station.online
        else:
            accepted = result.get("idTokenInfo", {}).get("status") == "Accepted"
        self.station.authorize_result(connector_id, accepted, self.clock.now())

    def _started(self, session: Session, result: Result) -> None:
        if result is None:
            session.start_failed = True
            return
        session.start_acked = True
        status = (result.get("idTokenInfo") or {}).get("status", "Accepted")
        if status != "Accepted":
            self.station.deauthorize(session, self.clock.now())

    def _triggered(self, event: TriggerEvent) -> list[Outgoing]:
        st, now = self.station, event.ts
        targets = [c for c in st.connectors.values() if event.connector_id in (None, 0, c.id)]
        if event.message == "BootNotification":
            return [self.boot("Triggered")]
        if event.message == "Heartbeat":
            return [self.heartbeat()]
        if event.message == "StatusNotification":
            return [item for c in targets for item in self._status(c.id, connector.derived_status(c), now, force=True)]
        if event.message == "MeterValues":
            return [item for c in targets
                    for item in self._sample(TxSampleEvent(c.id, st.reading(c, now), None, SampleContext.TRIGGER))]
        if event.message == "TransactionEvent":
            return [item for c in targets if c.session is not None
                    for item in self._sample(TxSampleEvent(c.id, st.reading(c, now), c.session,
                                                           SampleContext.TRIGGER))]
        if event.message in ("LogStatusNotification", "FirmwareStatusNotification"):
            return [Outgoing(event.message, {"status": "Idle"})]
        return []
