"""Boot, status, meter values and transactions, OCPP 1.6 and 2.0.1: the bridge answers the
charger and the right contract events reach MQTT (and the registry learns the boot)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from test_bridge_harness import (
    Observer,
    bridge_settings,
    charger,
    observing,
    register,
    running_bridge,
    unique,
)

from control.contract import (
    ChargerInfo,
    ChargerNotice,
    ConnectionEvent,
    ConnectionKind,
    MeterSample,
    NoticeKind,
    StatusChanged,
    TransactionEvent,
    TransactionKind,
)
from control.settings import MqttEndpoint, Settings

pytestmark = pytest.mark.integration


@pytest.fixture()
def observer(mqtt_endpoint: MqttEndpoint) -> Iterator[Observer]:
    yield from observing(mqtt_endpoint)
TS = "2026-11-20T10:00:00Z"


def _sampled(energy_wh: float, power_w: float) -> list[dict[str, Any]]:
    return [
        {"value": str(energy_wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": str(power_w), "measurand": "Power.Active.Import", "unit": "W"},
    ]


def test_ocpp16_session_produces_events(test_settings: Settings, pg_dsn: str, observer: Observer) -> None:
    cid = unique("F16")
    register(pg_dsn, cid)
    settings = bridge_settings(test_settings, heartbeat_interval_s=120)

    async def scenario() -> None:
        async with running_bridge(settings) as bridge, charger(bridge, cid) as cp:
            boot = await cp.call("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "Wallbox 2",
                                                      "chargePointSerialNumber": "SN-1", "firmwareVersion": "1.2.3"})
            assert boot[2]["status"] == "Accepted" and boot[2]["interval"] == 120
            assert boot[2]["currentTime"].endswith("Z")
            await cp.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Preparing",
                                                 "timestamp": TS})
            start = await cp.call("StartTransaction", {"connectorId": 1, "idTag": "TAG-1", "meterStart": 1000,
                                                       "timestamp": TS})
            transaction_id = start[2]["transactionId"]
            assert isinstance(transaction_id, int) and start[2]["idTagInfo"] == {"status": "Accepted"}
            start_again = await cp.call("StartTransaction", {"connectorId": 2, "idTag": "TAG-2", "meterStart": 0,
                                                             "timestamp": TS})
            assert start_again[2]["transactionId"] != transaction_id  # ids are never reused
            meter = await cp.call("MeterValues", {"connectorId": 1, "transactionId": transaction_id, "meterValue": [
                {"timestamp": "2026-11-20T10:05:00Z", "sampledValue": _sampled(1500, 7200)}]})
            assert meter[2] == {}
            stop = await cp.call("StopTransaction", {"transactionId": transaction_id, "meterStop": 2500,
                                                     "timestamp": "2026-11-20T10:30:00Z", "idTag": "TAG-1"})
            assert stop[2] == {"idTagInfo": {"status": "Accepted"}}
            assert (await cp.call("Heartbeat", {}))[2]["currentTime"].endswith("Z")
            dt = await cp.call("DataTransfer", {"vendorId": "acme", "messageId": "x", "data": "hello"})
            assert dt[2] == {"status": "UnknownVendorId"}
            await cp.call("FirmwareStatusNotification", {"status": "Installed"})

            info = await observer.expect(ChargerInfo, charger_id=cid)
            assert (info[0].vendor, info[0].model, info[0].firmware_version) == ("Acme", "Wallbox 2", "1.2.3")
            booted = await observer.expect(ConnectionEvent, charger_id=cid, kind=ConnectionKind.BOOTED)
            assert booted[0].heartbeat_interval_s == 120 and booted[0].bridge_id == settings.bridge_id
            status = await observer.expect(StatusChanged, charger_id=cid)
            assert status[0].status.value == "Preparing" and status[0].connector_id == 1
            started = await observer.expect(TransactionEvent, charger_id=cid, kind=TransactionKind.STARTED,
                                            transaction_id=str(transaction_id))
            assert started[0].meter_wh == 1000 and started[0].id_tag == "TAG-1"
            sample = await observer.expect(MeterSample, charger_id=cid)
            assert (sample[0].energy_wh, sample[0].power_w) == (1500, 7200)
            assert sample[0].transaction_id == str(transaction_id)
            await observer.expect(TransactionEvent, charger_id=cid, kind=TransactionKind.ENDED,
                                  transaction_id=str(transaction_id))
            await observer.expect(ConnectionEvent, charger_id=cid, kind=ConnectionKind.HEARTBEAT)
            await observer.expect(ChargerNotice, charger_id=cid, kind=NoticeKind.DATA_TRANSFER)
            await observer.expect(ChargerNotice, charger_id=cid, kind=NoticeKind.FIRMWARE_STATUS)
        gone = await observer.expect(ConnectionEvent, charger_id=cid, kind=ConnectionKind.DISCONNECTED)
        assert gone[0].reason is not None and "1000" in gone[0].reason
        for _ in range(100):  # the registry write runs in the background
            with psycopg.connect(pg_dsn) as conn:
                row = conn.execute("select vendor, model, serial_number, firmware_version, ocpp_version,"
                                   " last_boot_at is not null from chargers where charger_id = %s", (cid,)).fetchone()
            if row is not None and row[5]:
                break
            await asyncio.sleep(0.05)
        assert row == ("Acme", "Wallbox 2", "SN-1", "1.2.3", "1.6", True)

    asyncio.run(scenario())


def test_ocpp201_session_produces_events(test_settings: Settings, pg_dsn: str, observer: Observer) -> None:
    cid = unique("F201")
    register(pg_dsn, cid)

    async def scenario() -> None:
        async with running_bridge(bridge_settings(test_settings)) as bridge, \
                charger(bridge, cid, version="ocpp2.0.1") as cp:
            boot = await cp.call("BootNotification", {"reason": "PowerUp", "chargingStation": {
                "model": "DC-50", "vendorName": "Volt", "firmwareVersion": "9.9"}})
            assert boot[2]["status"] == "Accepted" and boot[2]["interval"] == test_settings.heartbeat_interval_s
            await cp.call("StatusNotification", {"timestamp": TS, "connectorStatus": "Occupied", "evseId": 1,
                                                 "connectorId": 1})
            auth = await cp.call("Authorize", {"idToken": {"idToken": "ABC", "type": "ISO14443"}})
            assert auth[2] == {"idTokenInfo": {"status": "Accepted"}}
            started = await cp.call("TransactionEvent", {
                "eventType": "Started", "timestamp": TS, "triggerReason": "Authorized", "seqNo": 0,
                "transactionInfo": {"transactionId": "tx-201"}, "idToken": {"idToken": "ABC", "type": "ISO14443"},
                "evse": {"id": 1, "connectorId": 1},
                "meterValue": [{"timestamp": TS, "sampledValue": [
                    {"value": 5000, "measurand": "Energy.Active.Import.Register", "context": "Transaction.Begin"}]}],
            })
            assert started[2] == {"idTokenInfo": {"status": "Accepted"}}
            power_sample = {"value": 11000, "measurand": "Power.Active.Import"}
            await cp.call("MeterValues", {"evseId": 1, "meterValue": [
                {"timestamp": "2026-11-20T10:01:00Z", "sampledValue": [power_sample]}]})
            ended = await cp.call("TransactionEvent", {
                "eventType": "Ended", "timestamp": "2026-11-20T11:00:00Z", "triggerReason": "EVDeparted",
                "seqNo": 1, "transactionInfo": {"transactionId": "tx-201", "stoppedReason": "EVDisconnected"},
            })
            assert ended[2] == {}
            notify = await cp.call("NotifyEvent", {"generatedAt": TS, "seqNo": 0, "eventData": [{
                "eventId": 1, "timestamp": TS, "trigger": "Alerting", "actualValue": "true",
                "eventNotificationType": "HardWiredNotification", "component": {"name": "EVSE"},
                "variable": {"name": "Problem"}}]})
            assert notify[2] == {}

            info = await observer.expect(ChargerInfo, charger_id=cid)
            assert (info[0].vendor, info[0].model) == ("Volt", "DC-50")
            await observer.expect(StatusChanged, charger_id=cid)
            tx = await observer.expect(TransactionEvent, charger_id=cid, kind=TransactionKind.STARTED,
                                       transaction_id="tx-201")
            assert tx[0].meter_wh == 5000
            await observer.expect(TransactionEvent, charger_id=cid, kind=TransactionKind.ENDED)
            power = await observer.expect(MeterSample, charger_id=cid, power_w=11000.0)
            assert power[0].connector_id == 1
            await observer.expect(ChargerNotice, charger_id=cid, kind=NoticeKind.NOTIFY_EVENT)

    asyncio.run(scenario())
