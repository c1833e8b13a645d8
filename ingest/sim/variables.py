"""The charger's configuration: 1.6 configuration keys and their 2.0.1 component/variable names.

One store serves GetConfiguration/ChangeConfiguration (1.6) and GetVariables/SetVariables (2.0.1).
The smart-charging capabilities the bridge asks for once per boot are answered from the charger's
hardware (phases, DC); a test may change them in ``values`` before the charger connects (the
simulator does not enforce them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from control.contract import OcppVersion


class SetResult(StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    NOT_SUPPORTED = "NotSupported"  # 2.0.1: UnknownVariable


@dataclass(frozen=True, slots=True)
class KeyDef:
    key: str
    readonly: bool = False
    kind: str = "str"  # "int" | "bool" | "str" | "csl"
    component: str = ""  # 2.0.1 component name
    variable: str = ""  # 2.0.1 variable name (defaults to the key)
    only: OcppVersion | None = None  # a key of one version only (None: both)


KEYS: tuple[KeyDef, ...] = (
    KeyDef("HeartbeatInterval", kind="int", component="OCPPCommCtrlr"),
    KeyDef("MeterValueSampleInterval", kind="int", component="SampledDataCtrlr", variable="TxUpdatedInterval"),
    KeyDef("MeterValuesSampledData", kind="csl", component="SampledDataCtrlr", variable="TxUpdatedMeasurands"),
    KeyDef("ClockAlignedDataInterval", kind="int", component="AlignedDataCtrlr", variable="Interval"),
    KeyDef("AuthorizeRemoteTxRequests", kind="bool", component="AuthCtrlr", variable="AuthorizeRemoteStart"),
    KeyDef("LocalAuthorizeOffline", kind="bool", component="AuthCtrlr", variable="LocalAuthorizeOffline"),
    KeyDef("ConnectionTimeOut", kind="int", component="TxCtrlr", variable="EVConnectionTimeOut"),
    KeyDef("StopTransactionOnEVSideDisconnect", kind="bool", component="TxCtrlr",
           variable="StopTxOnEVSideDisconnect"),
    KeyDef("TransactionMessageAttempts", kind="int", component="OCPPCommCtrlr", variable="MessageAttempts"),
    KeyDef("NumberOfConnectors", readonly=True, kind="int", component="ChargingStation",
           variable="EVSECount"),
    KeyDef("ChargeProfileMaxStackLevel", readonly=True, kind="int", component="SmartChargingCtrlr",
           variable="ProfileStackLevel"),
    KeyDef("ChargingScheduleAllowedChargingRateUnit", readonly=True, kind="csl",
           component="SmartChargingCtrlr", variable="RateUnit"),
    KeyDef("SupportedFeatureProfiles", readonly=True, kind="csl", component="ChargingStation",
           variable="SupportedFeatureProfiles"),
    # Smart-charging capabilities (the bridge's ingest/capabilities.py asks for them once per boot)
    KeyDef("ChargingScheduleMaxPeriods", readonly=True, kind="int", component="SmartChargingCtrlr",
           variable="PeriodsPerSchedule"),
    KeyDef("MaxChargingProfilesInstalled", readonly=True, kind="int", only=OcppVersion.V16),
    KeyDef("ConnectorPhaseRotation", readonly=True, kind="csl", only=OcppVersion.V16),
    KeyDef("SupplyPhases", readonly=True, kind="int", component="ChargingStation", variable="SupplyPhases",
           only=OcppVersion.V201),
    KeyDef("SmartChargingAvailable", readonly=True, kind="bool", component="SmartChargingCtrlr",
           variable="Available", only=OcppVersion.V201),
    KeyDef("SmartChargingEnabled", readonly=True, kind="bool", component="SmartChargingCtrlr",
           variable="Enabled", only=OcppVersion.V201),
)
_BY_KEY = {k.key: k for k in KEYS}
_BY_COMPONENT = {(k.component, k.variable or k.key): k for k in KEYS if k.component}


@dataclass
class Variables:
    values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def defaults(cls, *, connectors: int, heartbeat_s: int, sample_interval_s: float, phases: int = 3,
                 dc: bool = False, version: OcppVersion | None = None) -> Variables:
        values = {
            "HeartbeatInterval": str(heartbeat_s),
            "MeterValueSampleInterval": f"{sample_interval_s:g}",
            "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import,Current.Import,"
                                      "Current.Offered,Voltage,SoC",
            "ClockAlignedDataInterval": "0",
            "AuthorizeRemoteTxRequests": "false",
            "LocalAuthorizeOffline": "true",
            "ConnectionTimeOut": "120",
            "StopTransactionOnEVSideDisconnect": "true",
            "TransactionMessageAttempts": "3",
            "NumberOfConnectors": str(connectors),
            "ChargeProfileMaxStackLevel": "8",
            "ChargingScheduleAllowedChargingRateUnit": "Current,Power",
            "SupportedFeatureProfiles": "Core,FirmwareManagement,LocalAuthListManagement,Reservation,"
                                        "SmartCharging,RemoteTrigger",
            **capabilities(connectors=connectors, phases=phases, dc=dc),
        }
        return cls({k: v for k, v in values.items() if version is None or _BY_KEY[k].only in (None, version)})

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def readonly(self, key: str) -> bool:
        return _BY_KEY[key].readonly if key in _BY_KEY else False

    def set(self, key: str, value: str) -> SetResult:
        definition = _BY_KEY.get(key)
        if definition is None:
            return SetResult.NOT_SUPPORTED
        if definition.readonly or not _valid(definition.kind, value):
            return SetResult.REJECTED
        self.values[key] = value.lower() if definition.kind == "bool" else value
        return SetResult.ACCEPTED

    def flag(self, key: str) -> bool:
        return self.values.get(key, "false").lower() == "true"

    def number(self, key: str, default: float) -> float:
        try:
            return float(self.values[key])
        except (KeyError, ValueError):
            return default


def capabilities(*, connectors: int, phases: int, dc: bool) -> dict[str, str]:
    """The smart-charging keys of a charger with this hardware (DC: NotApplicable, 0 supply phases)."""
    rotation = "RST" if phases == 3 and not dc else "NotApplicable"
    return {
        "ChargingScheduleMaxPeriods": "24",
        "MaxChargingProfilesInstalled": "16",
        "ConnectorPhaseRotation": ",".join(f"{n}.{rotation}" for n in range(1, connectors + 1)),
        "SupplyPhases": "0" if dc else str(phases),
        "SmartChargingAvailable": "true",
        "SmartChargingEnabled": "true",
    }


def key_for(component: str, variable: str) -> str | None:
    """The 1.6 key behind a 2.0.1 component/variable pair."""
    definition = _BY_COMPONENT.get((component, variable))
    return definition.key if definition else None


def known_component(component: str) -> bool:
    return any(k.component == component for k in KEYS)


def _valid(kind: str, value: str) -> bool:
    if kind == "int":
        try:
            return float(value) >= 0
        except ValueError:
            return False
    if kind == "bool":
        return value.lower() in ("true", "false")
    return len(value) <= 500
