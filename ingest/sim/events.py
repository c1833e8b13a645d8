"""What a simulated station tells its OCPP dialect to send. Protocol-agnostic.

The station core emits these; ``charger16`` and ``charger201`` turn them into OCPP 1.6 or 2.0.1
calls. Statuses use the contract's :class:`ConnectorState` (the 1.6 vocabulary).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from control.contract import ConnectorState, SampleContext
from ingest.sim.model import Reading, Session


class StopReason(StrEnum):
    LOCAL = "Local"  # the driver badged again / pressed stop
    EV_DISCONNECTED = "EVDisconnected"  # cable pulled without stopping first
    REMOTE = "Remote"
    SOFT_RESET = "SoftReset"
    HARD_RESET = "HardReset"
    UNLOCK = "UnlockCommand"
    DEAUTHORIZED = "DeAuthorized"
    GROUND_FAULT = "GroundFault"
    OVERCURRENT = "OvercurrentFault"
    OTHER_FAULT = "OtherFault"
    SHUTDOWN = "Shutdown"  # the simulator itself was stopped


@dataclass(frozen=True, slots=True)
class StatusEvent:
    connector_id: int  # 0 = the station itself
    ts: datetime
    status: ConnectorState
    error_code: str = "NoError"
    info: str | None = None


@dataclass(frozen=True, slots=True)
class AuthorizeEvent:
    connector_id: int
    ts: datetime
    id_tag: str


@dataclass(frozen=True, slots=True)
class TxStartEvent:
    session: Session
    ts: datetime
    reading: Reading
    charging_state: ConnectorState
    remote: bool = False


@dataclass(frozen=True, slots=True)
class TxSampleEvent:
    """A meter sample. ``session`` is None outside a transaction (e.g. a triggered sample)."""

    connector_id: int
    reading: Reading
    session: Session | None
    context: SampleContext = SampleContext.PERIODIC


@dataclass(frozen=True, slots=True)
class ChargingStateEvent:
    """Charging / SuspendedEV / SuspendedEVSE changed inside a transaction (2.0.1 TransactionEvent)."""

    session: Session
    ts: datetime
    status: ConnectorState
    reading: Reading


@dataclass(frozen=True, slots=True)
class TxStopEvent:
    session: Session
    ts: datetime
    reading: Reading
    reason: StopReason


@dataclass(frozen=True, slots=True)
class ProblemEvent:
    """A hardware problem appeared or cleared (2.0.1 NotifyEvent; 1.6 says it in StatusNotification)."""

    connector_id: int
    ts: datetime
    code: str
    cleared: bool
    tx_id: str | None = None


@dataclass(frozen=True, slots=True)
class NoticeEvent:
    """Firmware / diagnostics / log upload progress."""

    kind: str  # "firmware" | "diagnostics" | "log"
    status: str  # 1.6 spelling; the 2.0.1 dialect translates
    ts: datetime
    request_id: int | None = None


@dataclass(frozen=True, slots=True)
class TriggerEvent:
    """The CSMS asked for a message (TriggerMessage); the dialect builds it."""

    message: str
    connector_id: int | None
    ts: datetime


@dataclass(frozen=True, slots=True)
class ExternalLimitEvent:
    """An external system set (or cleared) a limit on the station (2.0.1 NotifyChargingLimit /
    ClearedChargingLimit; 1.6 has no such message)."""

    ts: datetime
    source: str  # EMS | Other | SO | CSO
    connector_id: int  # the EVSE; 0 = the whole station
    cleared: bool = False
    limit: float | None = None
    unit: str = "A"
    duration_s: int | None = None
    phases: int | None = None
    grid_critical: bool = False


@dataclass(frozen=True, slots=True)
class GoOfflineEvent:
    seconds: float  # simulated
    ts: datetime


@dataclass(frozen=True, slots=True)
class MalformedEvent:
    kind: str
    ts: datetime


@dataclass(frozen=True, slots=True)
class RebootEvent:
    reason: str  # PowerUp | RemoteReset | FirmwareUpdate ... (2.0.1 BootReason spelling)
    ts: datetime


SimEvent = (StatusEvent | AuthorizeEvent | TxStartEvent | TxSampleEvent | ChargingStateEvent | TxStopEvent
            | ProblemEvent | NoticeEvent | TriggerEvent | ExternalLimitEvent | GoOfflineEvent | MalformedEvent
            | RebootEvent)
