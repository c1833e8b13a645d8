"""OCPP 1.6J payloads (camelCase, as on the wire) built from simulator state. Pure."""

from __future__ import annotations

from typing import Any

from control.contract import SampleContext
from ingest.sim.clock import iso_z
from ingest.sim.events import StatusEvent, StopReason
from ingest.sim.model import Reading, Session
from ingest.sim.plan import ChargerSpec

STOP_REASONS: dict[StopReason, str] = {
    StopReason.LOCAL: "Local",
    StopReason.EV_DISCONNECTED: "EVDisconnected",
    StopReason.REMOTE: "Remote",
    StopReason.SOFT_RESET: "SoftReset",
    StopReason.HARD_RESET: "HardReset",
    StopReason.UNLOCK: "UnlockCommand",
    StopReason.DEAUTHORIZED: "DeAuthorized",
    StopReason.GROUND_FAULT: "Other",
    StopReason.OVERCURRENT: "Other",
    StopReason.OTHER_FAULT: "Other",
    StopReason.SHUTDOWN: "Local",  # on exit every driver ends their session
}
PHASES = ("L1", "L2", "L3")


def sampled_values(reading: Reading, context: SampleContext) -> list[dict[str, str]]:
    ctx = context.value

    def sv(measurand: str, value: str, unit: str, phase: str | None = None,
           location: str = "Outlet") -> dict[str, str]:
        out = {"value": value, "context": ctx, "measurand": measurand, "location": location, "unit": unit}
        if phase is not None:
            out["phase"] = phase
        return out

    flow = reading.flow
    values = [sv("Energy.Active.Import.Register", f"{reading.register_wh:.0f}", "Wh"),
              sv("Power.Active.Import", f"{flow.power_w:.1f}", "W")]
    if reading.dc:
        values.append(sv("Current.Import", f"{flow.currents_a[0] if flow.currents_a else 0.0:.2f}", "A"))
        values.append(sv("Voltage", f"{flow.voltage_v:.1f}", "V"))
    else:
        values += [sv("Current.Import", f"{amps:.2f}", "A", PHASES[i]) for i, amps in enumerate(flow.currents_a)]
        values += [sv("Voltage", f"{flow.voltage_v:.1f}", "V", f"{PHASES[i]}-N")
                   for i in range(len(flow.currents_a))]
    values.append(sv("Current.Offered", f"{flow.offered_a:.2f}", "A"))
    if reading.soc is not None:
        values.append(sv("SoC", f"{reading.soc:.1f}", "Percent", location="EV"))
    return values


def meter_value(reading: Reading, context: SampleContext) -> dict[str, Any]:
    return {"timestamp": iso_z(reading.ts), "sampledValue": sampled_values(reading, context)}


def boot_notification(spec: ChargerSpec) -> dict[str, Any]:
    return {"chargePointVendor": spec.vendor[:20], "chargePointModel": spec.model[:20],
            "chargePointSerialNumber": spec.serial[:25], "firmwareVersion": spec.firmware,
            "meterType": "SIM-METER"}


def status_notification(event: StatusEvent) -> dict[str, Any]:
    payload: dict[str, Any] = {"connectorId": event.connector_id, "errorCode": event.error_code,
                               "status": event.status.value, "timestamp": iso_z(event.ts)}
    if event.info:
        payload["info"] = event.info[:50]
    return payload


def start_transaction(session: Session) -> dict[str, Any]:
    payload: dict[str, Any] = {"connectorId": session.connector_id, "idTag": session.id_tag[:20],
                               "meterStart": int(session.meter_start_wh), "timestamp": iso_z(session.start_ts)}
    if session.reservation_id is not None:
        payload["reservationId"] = session.reservation_id
    return payload


def stop_transaction(session: Session, reading: Reading, reason: StopReason) -> dict[str, Any]:
    """Without ``transactionId``: the dialect adds it when sending (it may not be known yet)."""
    payload: dict[str, Any] = {
        "meterStop": int(session.meter_stop_wh if session.meter_stop_wh is not None else reading.register_wh),
        "timestamp": iso_z(session.stop_ts or reading.ts),
        "reason": STOP_REASONS[reason],
        "transactionData": [meter_value(reading, SampleContext.TRANSACTION_END)],
    }
    if reason == StopReason.LOCAL:
        payload["idTag"] = session.id_tag[:20]
    return payload


def meter_values(connector_id: int, reading: Reading, context: SampleContext) -> dict[str, Any]:
    return {"connectorId": connector_id, "meterValue": [meter_value(reading, context)]}
