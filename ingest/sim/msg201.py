"""OCPP 2.0.1 payloads (camelCase, as on the wire) built from simulator state. Pure."""

from __future__ import annotations

from typing import Any

from control.contract import ConnectorState, SampleContext
from ingest.sim.clock import iso_z
from ingest.sim.events import ExternalLimitEvent, ProblemEvent, StopReason
from ingest.sim.model import Reading, Session
from ingest.sim.plan import ChargerSpec

# stoppedReason and triggerReason of the TransactionEvent(Ended)
STOP_REASONS: dict[StopReason, tuple[str, str]] = {
    StopReason.LOCAL: ("Local", "StopAuthorized"),
    StopReason.EV_DISCONNECTED: ("EVDisconnected", "EVCommunicationLost"),
    StopReason.REMOTE: ("Remote", "RemoteStop"),
    StopReason.SOFT_RESET: ("ImmediateReset", "ResetCommand"),
    StopReason.HARD_RESET: ("ImmediateReset", "ResetCommand"),
    StopReason.UNLOCK: ("Other", "UnlockCommand"),
    StopReason.DEAUTHORIZED: ("DeAuthorized", "Deauthorized"),
    StopReason.GROUND_FAULT: ("GroundFault", "AbnormalCondition"),
    StopReason.OVERCURRENT: ("OvercurrentFault", "AbnormalCondition"),
    StopReason.OTHER_FAULT: ("Other", "AbnormalCondition"),
    StopReason.SHUTDOWN: ("Local", "StopAuthorized"),  # on exit every driver ends their session
}
CONNECTOR_STATUS: dict[ConnectorState, str] = {
    ConnectorState.AVAILABLE: "Available", ConnectorState.RESERVED: "Reserved",
    ConnectorState.UNAVAILABLE: "Unavailable", ConnectorState.FAULTED: "Faulted",
}
CHARGING_STATE: dict[ConnectorState, str] = {
    ConnectorState.CHARGING: "Charging", ConnectorState.SUSPENDED_EV: "SuspendedEV",
    ConnectorState.SUSPENDED_EVSE: "SuspendedEVSE",
}
PHASES = ("L1", "L2", "L3")


def connector_status(status: ConnectorState) -> str:
    return CONNECTOR_STATUS.get(status, "Occupied")


def charging_state(status: ConnectorState) -> str:
    return CHARGING_STATE.get(status, "EVConnected")


def sampled_values(reading: Reading, context: SampleContext) -> list[dict[str, Any]]:
    ctx = context.value

    def sv(measurand: str, value: float, unit: str, phase: str | None = None,
           location: str = "Outlet") -> dict[str, Any]:
        out: dict[str, Any] = {"value": value, "context": ctx, "measurand": measurand, "location": location,
                               "unitOfMeasure": {"unit": unit}}
        if phase is not None:
            out["phase"] = phase
        return out

    flow = reading.flow
    values = [sv("Energy.Active.Import.Register", round(reading.register_wh, 1), "Wh"),
              sv("Power.Active.Import", round(flow.power_w, 1), "W")]
    if reading.dc:
        values.append(sv("Current.Import", round(flow.currents_a[0] if flow.currents_a else 0.0, 2), "A"))
        values.append(sv("Voltage", round(flow.voltage_v, 1), "V"))
    else:
        values += [sv("Current.Import", round(amps, 2), "A", PHASES[i]) for i, amps in enumerate(flow.currents_a)]
        values += [sv("Voltage", round(flow.voltage_v, 1), "V", f"{PHASES[i]}-N")
                   for i in range(len(flow.currents_a))]
    values.append(sv("Current.Offered", round(flow.offered_a, 2), "A"))
    if reading.soc is not None:
        values.append(sv("SoC", round(reading.soc, 1), "Percent", location="EV"))
    return values


def meter_value(reading: Reading, context: SampleContext) -> dict[str, Any]:
    return {"timestamp": iso_z(reading.ts), "sampledValue": sampled_values(reading, context)}


def boot_notification(spec: ChargerSpec, reason: str) -> dict[str, Any]:
    return {"chargingStation": {"model": spec.model[:20], "vendorName": spec.vendor[:50],
                                "serialNumber": spec.serial[:25], "firmwareVersion": spec.firmware},
            "reason": reason}


def id_token(tag: str) -> dict[str, Any]:
    return {"idToken": tag[:36], "type": "ISO14443"}


def status_notification(evse_id: int, status: ConnectorState, ts: Any) -> dict[str, Any]:
    return {"timestamp": iso_z(ts), "connectorStatus": connector_status(status), "evseId": evse_id,
            "connectorId": 1}


def transaction_event(event_type: str, session: Session, *, ts: Any, trigger: str, seq_no: int, offline: bool,
                      reading: Reading | None = None, context: SampleContext = SampleContext.PERIODIC,
                      state: str | None = None, stopped_reason: str | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {"transactionId": session.tx_id}
    if state is not None:
        info["chargingState"] = state
    if event_type == "Started" and session.remote_start_id is not None:
        info["remoteStartId"] = session.remote_start_id
    if event_type == "Ended":
        info["stoppedReason"] = stopped_reason or "Local"
        info["timeSpentCharging"] = int(session.charging_s)
    payload: dict[str, Any] = {"eventType": event_type, "timestamp": iso_z(ts), "triggerReason": trigger,
                               "seqNo": seq_no, "transactionInfo": info}
    if reading is not None:
        payload["meterValue"] = [meter_value(reading, context)]
    if offline:
        payload["offline"] = True
    if event_type == "Started":
        payload["idToken"] = id_token(session.id_tag)
        payload["evse"] = {"id": session.connector_id, "connectorId": 1}
        if session.reservation_id is not None:
            payload["reservationId"] = session.reservation_id
    return payload


def notify_charging_limit(event: ExternalLimitEvent, *, schedule_id: int) -> dict[str, Any]:
    """NotifyChargingLimitRequest: the source, whether it is grid critical and its one-period schedule."""
    payload: dict[str, Any] = {"chargingLimit": {"chargingLimitSource": event.source,
                                                 "isGridCritical": event.grid_critical}}
    if event.connector_id:
        payload["evseId"] = event.connector_id
    if event.limit is not None:
        period: dict[str, Any] = {"startPeriod": 0, "limit": round(event.limit, 1)}
        if event.phases is not None:
            period["numberPhases"] = event.phases
        schedule: dict[str, Any] = {"id": schedule_id, "startSchedule": iso_z(event.ts),
                                    "chargingRateUnit": event.unit, "chargingSchedulePeriod": [period]}
        if event.duration_s is not None:
            schedule["duration"] = event.duration_s
        payload["chargingSchedule"] = [schedule]
    return payload


def cleared_charging_limit(event: ExternalLimitEvent) -> dict[str, Any]:
    payload: dict[str, Any] = {"chargingLimitSource": event.source}
    if event.connector_id:
        payload["evseId"] = event.connector_id
    return payload


def notify_event(problem: ProblemEvent, *, seq_no: int, event_id: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        "eventId": event_id, "timestamp": iso_z(problem.ts), "trigger": "Delta",
        "actualValue": "false" if problem.cleared else "true", "techCode": problem.code[:50],
        "cleared": problem.cleared, "eventNotificationType": "HardWiredNotification",
        "component": {"name": "EVSE", "evse": {"id": problem.connector_id}}, "variable": {"name": "Problem"}}
    if problem.tx_id is not None:
        data["transactionId"] = problem.tx_id
    return {"generatedAt": iso_z(problem.ts), "seqNo": seq_no, "eventData": [data]}
