"""The OCPP 1.6J charger: answers the CSMS and speaks for the station.

1.6 specifics: transaction ids come from the CSMS (StartTransaction.conf), so messages of a
transaction started offline carry a local reference until the queued StartTransaction has been
answered; the id is filled in when each queued MeterValues/StopTransaction is finally sent.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ocpp.v16 import call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import ClientConnection

from control.contract import SampleContext
from ingest.sim import commands, connector, msg16
from ingest.sim._ocpp import ChargePoint16Base, after, on
from ingest.sim.clock import parse_ts
from ingest.sim.dialect import Dialect, Host, SimChargePointMixin
from ingest.sim.events import (
    AuthorizeEvent,
    NoticeEvent,
    SimEvent,
    StatusEvent,
    TriggerEvent,
    TxSampleEvent,
    TxStartEvent,
    TxStopEvent,
)
from ingest.sim.model import Session
from ingest.sim.outbox import Outgoing, Result
from ingest.sim.uploader import diagnostics_report, start_upload

_RESERVE = {"Accepted": "Accepted", "Faulted": "Faulted", "Occupied": "Occupied", "Unavailable": "Unavailable"}


class ChargePoint16(SimChargePointMixin, ChargePoint16Base):
    def __init__(self, charger_id: str, ws: ClientConnection, host: Host) -> None:
        super().__init__(charger_id, ws)
        self._setup(host)

    async def route_message(self, raw_msg: str | bytes) -> None:
        await self.sim_route(raw_msg, super().route_message)

    def _now(self) -> Any:
        return self.host.clock.now()

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag: str, call_unique_id: str, connector_id: int | None = None,
                        charging_profile: dict[str, Any] | None = None, **_: Any) -> Any:
        with self.effects(call_unique_id):
            ok = commands.remote_start(self.station, self._now(), id_tag=id_tag, connector_id=connector_id,
                                       profile=charging_profile)
        return call_result.RemoteStartTransaction(status="Accepted" if ok else "Rejected")

    @after(Action.remote_start_transaction)
    def after_remote_start(self, call_unique_id: str, **_: Any) -> None:
        self.release(call_unique_id)

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id: int, call_unique_id: str, **_: Any) -> Any:
        with self.effects(call_unique_id):
            ok = commands.remote_stop(self.station, self._now(), str(transaction_id))
        return call_result.RemoteStopTransaction(status="Accepted" if ok else "Rejected")

    @after(Action.remote_stop_transaction)
    def after_remote_stop(self, call_unique_id: str, **_: Any) -> None:
        self.release(call_unique_id)

    @on(Action.unlock_connector)
    def on_unlock(self, connector_id: int, call_unique_id: str, **_: Any) -> Any:
        with self.effects(call_unique_id):
            status = commands.unlock(self.station, self._now(), connector_id, refuse_in_tx=False)
        return call_result.UnlockConnector(status="Unlocked" if status == "Unlocked" else "UnlockFailed")

    @after(Action.unlock_connector)
    def after_unlock(self, call_unique_id: str, **_: Any) -> None:
        self.release(call_unique_id)

    @on(Action.reset)
    def on_reset(self, type: str, call_unique_id: str, **_: Any) -> Any:
        with self.effects(call_unique_id):
            status = commands.reset(self.station, self._now(), type)
        return call_result.Reset(status=status)

    @after(Action.reset)
    def after_reset(self, call_unique_id: str, **_: Any) -> None:
        self.release(call_unique_id)

    @on(Action.trigger_message)
    def on_trigger(self, requested_message: str, call_unique_id: str, connector_id: int | None = None,
                   **_: Any) -> Any:
        with self.effects(call_unique_id):
            status = commands.trigger(self.station, self._now(), requested_message, connector_id)
        return call_result.TriggerMessage(status=status)

    @after(Action.trigger_message)
    def after_trigger(self, call_unique_id: str, **_: Any) -> None:
        self.release(call_unique_id)

    @on(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str, **_: Any) -> Any:
        result = self.station.variables.set(key, value)
        return call_result.ChangeConfiguration(status=result.value)

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None, **_: Any) -> Any:
        variables = self.station.variables
        wanted = key if key else sorted(variables.values)
        known = [k for k in wanted if variables.get(k) is not None]
        return call_result.GetConfiguration(
            configuration_key=[{"key": k, "readonly": variables.readonly(k), "value": variables.get(k)}
                               for k in known] or None,
            unknown_key=[k for k in wanted if variables.get(k) is None] or None)

    @on(Action.change_availability)
    def on_change_availability(self, connector_id: int, type: str, **_: Any) -> Any:
        status = commands.change_availability(self.station, self._now(), connector_id, type == "Operative")
        return call_result.ChangeAvailability(status=status)

    @on(Action.get_diagnostics)
    def on_get_diagnostics(self, location: str, **_: Any) -> Any:
        file_name = commands.upload(self.station, self._now(), kind="diagnostics")
        start_upload(location, file_name, diagnostics_report(self.station, self._now(), "diagnostics"))
        return call_result.GetDiagnostics(file_name=file_name)

    @on(Action.update_firmware)
    def on_update_firmware(self, location: str, retrieve_date: str, **_: Any) -> Any:
        commands.update_firmware(self.station, self._now(), retrieve_at=parse_ts(retrieve_date))
        return call_result.UpdateFirmware()

    @on(Action.reserve_now)
    def on_reserve_now(self, connector_id: int, expiry_date: str, id_tag: str, reservation_id: int,
                       **_: Any) -> Any:
        status = "Rejected" if connector_id == 0 else commands.reserve(
            self.station, self._now(), reservation_id=reservation_id, connector_id=connector_id, id_tag=id_tag,
            expiry=parse_ts(expiry_date))
        return call_result.ReserveNow(status=_RESERVE.get(status, "Rejected"))

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int, **_: Any) -> Any:
        ok = commands.cancel_reservation(self.station, self._now(), reservation_id)
        return call_result.CancelReservation(status="Accepted" if ok else "Rejected")

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any], **_: Any) -> Any:
        ok = commands.set_profile(self.station, self._now(), cs_charging_profiles, connector_id)
        return call_result.SetChargingProfile(status="Accepted" if ok else "Rejected")

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, id: int | None = None, connector_id: int | None = None,
                                  charging_profile_purpose: str | None = None, stack_level: int | None = None,
                                  **_: Any) -> Any:
        ok = commands.clear_profiles(self.station, self._now(), profile_id=id, connector_id=connector_id,
                                     purpose=charging_profile_purpose, stack_level=stack_level)
        return call_result.ClearChargingProfile(status="Accepted" if ok else "Unknown")

    @on(Action.clear_cache)
    def on_clear_cache(self, **_: Any) -> Any:
        return call_result.ClearCache(status="Accepted")

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **_: Any) -> Any:
        return call_result.DataTransfer(status="UnknownVendorId")


class Dialect16(Dialect):
    subprotocol = "ocpp1.6"

    def make_charge_point(self, ws: ClientConnection, host: Host) -> ChargePoint16:
        return ChargePoint16(self.station.id, ws, host)

    def boot(self, reason: str) -> Outgoing:
        return Outgoing("BootNotification", msg16.boot_notification(self.station.spec))

    def heartbeat(self) -> Outgoing:
        return Outgoing("Heartbeat", {})

    def translate(self, event: SimEvent) -> list[Outgoing]:
        if isinstance(event, StatusEvent):
            return [Outgoing("StatusNotification", msg16.status_notification(event))]
        if isinstance(event, AuthorizeEvent):
            return [Outgoing("Authorize", {"idTag": event.id_tag[:20]},
                             on_result=partial(self._authorized, event.connector_id))]
        if isinstance(event, TxStartEvent):
            s = event.session
            return [Outgoing("StartTransaction", msg16.start_transaction(s), durable=True, session=s,
                             on_result=partial(self._started, s))]
        if isinstance(event, TxSampleEvent):
            return [Outgoing("MeterValues", msg16.meter_values(event.connector_id, event.reading, event.context),
                             durable=event.session is not None, session=event.session,
                             sample=event.context == SampleContext.PERIODIC)]
        if isinstance(event, TxStopEvent):
            item = Outgoing("StopTransaction", msg16.stop_transaction(event.session, event.reading, event.reason),
                            durable=True, session=event.session)
            item.on_result = partial(self.stop_result, item)
            return [item]
        if isinstance(event, NoticeEvent) and event.kind in ("firmware", "diagnostics"):
            action = "FirmwareStatusNotification" if event.kind == "firmware" else "DiagnosticsStatusNotification"
            return [Outgoing(action, {"status": event.status})]
        if isinstance(event, TriggerEvent):
            return self._triggered(event)
        return []  # ChargingStateEvent, ProblemEvent: 1.6 says it all in StatusNotification

    def prepare(self, item: Outgoing) -> dict[str, Any] | None:
        session = item.session
        if session is not None and item.action in ("MeterValues", "StopTransaction"):
            if session.tx_id is None:
                return None  # its StartTransaction failed: the CSMS has no id for it
            return {**item.payload, "transactionId": int(session.tx_id)}
        return item.payload

    def _authorized(self, connector_id: int, result: Result) -> None:
        if result is None:
            accepted = not self.station.online  # dropped while offline: LocalAuthorizeOffline
        else:
            accepted = result.get("idTagInfo", {}).get("status") == "Accepted"
        self.station.authorize_result(connector_id, accepted, self.clock.now())

    def _started(self, session: Session, result: Result) -> None:
        if result is None or "transactionId" not in result:
            session.start_failed = True
            return
        session.tx_id, session.start_acked = str(result["transactionId"]), True
        if result.get("idTagInfo", {}).get("status") != "Accepted":
            self.station.deauthorize(session, self.clock.now())

    def _triggered(self, event: TriggerEvent) -> list[Outgoing]:
        st, now = self.station, event.ts
        targets = [c for c in st.connectors.values() if event.connector_id in (None, 0, c.id)]
        if event.message == "BootNotification":
            return [self.boot("Triggered")]
        if event.message == "Heartbeat":
            return [self.heartbeat()]
        if event.message == "StatusNotification":
            out = [] if event.connector_id not in (None, 0) else [
                Outgoing("StatusNotification", msg16.status_notification(StatusEvent(0, now, st.station_status)))]
            return out + [Outgoing("StatusNotification", msg16.status_notification(
                StatusEvent(c.id, now, connector.derived_status(c), c.error_code or "NoError"))) for c in targets]
        if event.message == "MeterValues":
            return [Outgoing("MeterValues", msg16.meter_values(c.id, st.reading(c, now), SampleContext.TRIGGER),
                             durable=c.session is not None, session=c.session) for c in targets]
        if event.message in ("DiagnosticsStatusNotification", "FirmwareStatusNotification"):
            return [Outgoing(event.message, {"status": "Idle"})]
        return []
