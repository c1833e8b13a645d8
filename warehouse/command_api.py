"""Commands from front ends (dashboards, CLI, an operator API) to chargers, with their results.

``CommandService`` publishes :class:`control.contract.Command` events on the command topic of
each charger (QoS1; every bridge process receives them, the one holding the charger sends the
OCPP call) and waits for the matching :class:`control.contract.CommandResult` on the result
topics. Each request gets exactly one :class:`CommandReply` per charger within its timeout
(default 5 s): the charger's outcome, or ``NO_RESULT_YET`` saying plainly that the command was
sent but no answer came in time (the bridge still delivers the final result to the history).

Front-end actions map to commands here, so every page and the CLI say the same thing:

=================  ==========================================================================
action             command
=================  ==========================================================================
start              ``start`` (RemoteStartTransaction / RequestStartTransaction) with an id tag
stop               ``stop`` (RemoteStopTransaction / RequestStopTransaction)
pause              ``set_limit`` 0 A: the charger keeps the session and stops drawing
resume             ``clear_limit``: our limit goes, load management sets the next one
lock / unlock      ``change_availability`` Inoperative / Operative (nobody can start)
release cable      ``unlock`` (UnlockConnector)
set limit          ``set_limit`` in A
soft / hard reset  ``reset`` with type soft / hard (Reset)
trigger            ``trigger`` with params ``message`` (TriggerMessage)
availability       ``change_availability`` with params ``type`` Operative|Inoperative
get config         ``get_config`` (GetConfiguration / GetVariables); the values come back in
                   :attr:`CommandReply.payload`
get diagnostics    ``get_diagnostics`` with params ``location`` (upload URL) (GetDiagnostics /
                   GetLog); the file name comes back in :attr:`CommandReply.payload`
=================  ==========================================================================

The service is thread-safe (Streamlit runs a thread per browser session) and keeps one MQTT
connection per process. The clock and the id factory are injected.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from control.contract import (
    Command,
    CommandKind,
    CommandOutcome,
    CommandResult,
    ContractError,
    JsonScalar,
    decode,
    encode,
)
from control.settings import MqttEndpoint
from control.topics import COMMAND_RESULTS_ALL, command_topic

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S: Final = 5.0
# How long a command may wait at the bridge for an offline charger before it expires.
DEFAULT_EXPIRY: Final = timedelta(minutes=2)


class Action(StrEnum):
    START = "start"
    STOP = "stop"
    PAUSE = "pause"
    RESUME = "resume"
    LOCK = "lock"
    UNLOCK = "unlock"
    RELEASE_CABLE = "release_cable"
    SET_LIMIT = "set_limit"
    SOFT_RESET = "soft_reset"
    HARD_RESET = "hard_reset"
    TRIGGER = "trigger"
    CHANGE_AVAILABILITY = "change_availability"
    GET_CONFIG = "get_config"
    GET_DIAGNOSTICS = "get_diagnostics"


# Troubleshooting actions that pass their params through unchanged (checked by the bridge).
_PASS_THROUGH: Final[Mapping[Action, CommandKind]] = {
    Action.TRIGGER: CommandKind.TRIGGER,
    Action.CHANGE_AVAILABILITY: CommandKind.CHANGE_AVAILABILITY,
    Action.GET_CONFIG: CommandKind.GET_CONFIG,
    Action.GET_DIAGNOSTICS: CommandKind.GET_DIAGNOSTICS,
}


class ReplyState(StrEnum):
    DONE = "done"  # the charger (or the bridge, for an offline one) answered
    NO_RESULT_YET = "no_result_yet"  # sent; no answer within the timeout
    NOT_SENT = "not_sent"  # the broker could not be reached


@dataclass(frozen=True, slots=True)
class Target:
    charger_id: str
    connector_id: int | None = None


@dataclass(frozen=True, slots=True)
class CommandReply:
    charger_id: str
    connector_id: int | None
    command_id: str
    action: Action
    state: ReplyState
    outcome: CommandOutcome | None = None
    status: str | None = None
    detail: str | None = None
    elapsed_s: float = 0.0
    payload: Mapping[str, JsonScalar] = field(default_factory=dict)  # e.g. configuration read back

    @property
    def ok(self) -> bool:
        return self.outcome is CommandOutcome.ACCEPTED

    @property
    def message(self) -> str:
        """One sentence for a toast or a table cell."""
        what = self.action.value.replace("_", " ")
        if self.state is ReplyState.NOT_SENT:
            return f"{what}: not sent, the message broker is unreachable ({self.detail or 'no connection'})"
        if self.state is ReplyState.NO_RESULT_YET:
            return f"{what}: sent, no answer from the charger within {self.elapsed_s:.0f} s"
        text = {
            CommandOutcome.ACCEPTED: "accepted by the charger",
            CommandOutcome.REJECTED: f"rejected by the charger ({self.status or 'no status'})",
            CommandOutcome.FAILED: f"failed ({self.detail or self.status or 'error'})",
            CommandOutcome.TIMED_OUT: "the charger did not answer in time",
            CommandOutcome.OFFLINE: "the charger is offline",
            CommandOutcome.EXPIRED: "expired before it could be sent",
        }[self.outcome or CommandOutcome.FAILED]
        return f"{what}: {text}"


def command_for(action: Action, target: Target, *, command_id: str, now: datetime, requested_by: str | None,
                params: Mapping[str, JsonScalar] | None = None, expiry: timedelta = DEFAULT_EXPIRY) -> Command:
    """The contract command for a front-end action (see the module table)."""
    extra = dict(params or {})
    kind: CommandKind
    if action is Action.START:
        kind = CommandKind.START
    elif action is Action.STOP:
        kind = CommandKind.STOP
    elif action is Action.PAUSE:
        kind, extra = CommandKind.SET_LIMIT, {"limit": 0.0, "unit": "A", **extra}
    elif action is Action.RESUME:
        kind = CommandKind.CLEAR_LIMIT
    elif action is Action.LOCK:
        kind, extra = CommandKind.CHANGE_AVAILABILITY, {"type": "Inoperative"}
    elif action is Action.UNLOCK:
        kind, extra = CommandKind.CHANGE_AVAILABILITY, {"type": "Operative"}
    elif action is Action.RELEASE_CABLE:
        kind = CommandKind.UNLOCK
    elif action in (Action.SOFT_RESET, Action.HARD_RESET):
        kind, extra = CommandKind.RESET, {**extra, "type": "soft" if action is Action.SOFT_RESET else "hard"}
    elif action in _PASS_THROUGH:
        kind = _PASS_THROUGH[action]
    else:
        if "limit" not in extra:
            raise ValueError("set_limit needs params['limit'] (A)")
        kind, extra = CommandKind.SET_LIMIT, {"unit": "A", **extra}
    return Command(command_id=command_id, charger_id=target.charger_id, kind=kind, issued_at=now,
                   expires_at=now + expiry, connector_id=target.connector_id, params=extra,
                   requested_by=requested_by)


class _Waiter:
    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: CommandResult | None = None


class CommandService:
    """One MQTT connection; ``send`` / ``send_many`` block until every reply is in or the timeout."""

    def __init__(self, endpoint: MqttEndpoint, *, client_id: str | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
                 monotonic: Callable[[], float] | None = None) -> None:
        self._clock, self._new_id = clock, new_id
        self._monotonic = monotonic or time.monotonic
        self._waiters: dict[str, _Waiter] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2,
                             client_id=client_id or f"flowbank-cmd-{uuid.uuid4().hex[:12]}", protocol=mqtt.MQTTv5)
        if endpoint.username:
            client.username_pw_set(endpoint.username, endpoint.password.reveal() or None)
        if endpoint.tls:
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.reconnect_delay_set(1, 10)
        self._client = client
        self._endpoint = endpoint
        self._started = False

    # lifecycle -----------------------------------------------------------------------------

    def start(self, wait_s: float = 5.0) -> bool:
        """Connect and subscribe; True when ready within ``wait_s`` (it keeps trying after)."""
        if not self._started:
            self._client.connect_async(self._endpoint.host, self._endpoint.port, keepalive=30)
            self._client.loop_start()
            self._started = True
        return self._ready.wait(wait_s)

    def close(self) -> None:
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = False

    def __enter__(self) -> CommandService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # paho's thread ----------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.error("command service: MQTT connect refused: %s", reason_code)
            return
        client.subscribe(COMMAND_RESULTS_ALL, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        self._ready.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        self._ready.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            event = decode(bytes(msg.payload))
        except ContractError:
            return  # not ours to judge: the pipeline dead-letters it
        if not isinstance(event, CommandResult):
            return
        with self._lock:
            waiter = self._waiters.get(event.command_id)
        if waiter is not None and waiter.result is None:
            waiter.result = event
            waiter.done.set()

    # requests ---------------------------------------------------------------------------------

    def send(self, action: Action, target: Target, *, requested_by: str | None,
             params: Mapping[str, JsonScalar] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> CommandReply:
        return self.send_many(action, [target], requested_by=requested_by, params=params, timeout_s=timeout_s)[0]

    def send_many(self, action: Action, targets: Sequence[Target], *, requested_by: str | None,
                  params: Mapping[str, JsonScalar] | None = None,
                  timeout_s: float = DEFAULT_TIMEOUT_S) -> list[CommandReply]:
        """Send one command per target at once; one reply per target, in the targets' order,
        all within ``timeout_s`` of the call."""
        started = self._monotonic()
        deadline = started + timeout_s
        if not self._ready.is_set():
            self.start(wait_s=max(0.0, min(timeout_s, 3.0)))
        now = self._clock()
        sent: list[tuple[Target, Command, _Waiter | None, str | None]] = []
        waiter: _Waiter | None
        for target in targets:
            command = command_for(action, target, command_id=self._new_id(), now=now, requested_by=requested_by,
                                  params=params)
            if not self._ready.is_set():
                sent.append((target, command, None, "not connected"))
                continue
            waiter = _Waiter()
            with self._lock:
                self._waiters[command.command_id] = waiter
            info = self._client.publish(command_topic(target.charger_id), encode(command), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                with self._lock:
                    self._waiters.pop(command.command_id, None)
                sent.append((target, command, None, mqtt.error_string(info.rc)))
                continue
            sent.append((target, command, waiter, None))
        replies = []
        for target, command, waiter, error in sent:
            if waiter is None:
                replies.append(CommandReply(target.charger_id, target.connector_id, command.command_id, action,
                                            ReplyState.NOT_SENT, detail=error))
                continue
            waiter.done.wait(max(0.0, deadline - self._monotonic()))
            with self._lock:
                self._waiters.pop(command.command_id, None)
            elapsed = self._monotonic() - started
            result = waiter.result
            if result is None:
                replies.append(CommandReply(target.charger_id, target.connector_id, command.command_id, action,
                                            ReplyState.NO_RESULT_YET, elapsed_s=elapsed))
            else:
                replies.append(CommandReply(target.charger_id, target.connector_id, command.command_id, action,
                                            ReplyState.DONE, outcome=result.outcome, status=result.status,
                                            detail=result.detail, elapsed_s=elapsed,
                                            payload=dict(result.payload)))
        return replies
