"""warehouse.command_api against the real broker: one reply per charger, within the timeout.

A small responder stands in for the bridge here (the bridge's own round trip, with real chargers,
is tests/integration/test_bridge_command_roundtrip.py): it answers some chargers at once,
rejects others and never answers the rest.
"""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from control.contract import Command, CommandKind, CommandOutcome, CommandResult, decode, encode
from control.settings import MqttEndpoint, Secret
from control.topics import command_result_topic, command_topic
from warehouse.command_api import Action, CommandService, ReplyState, Target, command_for

pytestmark = pytest.mark.integration


class Responder:
    """Answers commands: chargers ending in "ok" accept, "no" reject, others stay silent."""

    def __init__(self, endpoint: MqttEndpoint, chargers: list[str]) -> None:
        self.received: list[Command] = []
        self._ready = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"responder-{secrets.token_hex(4)}",
                             protocol=mqtt.MQTTv5)
        if endpoint.username:
            client.username_pw_set(endpoint.username, endpoint.password.reveal() or None)
        client.on_connect = lambda c, u, f, rc, p: c.subscribe([(command_topic(x), 1) for x in chargers])
        client.on_subscribe = lambda c, u, mid, rcs, p: self._ready.set()
        client.on_message = self._on_message
        client.connect(endpoint.host, endpoint.port)
        client.loop_start()
        self._client = client
        assert self._ready.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        command = decode(bytes(msg.payload))
        assert isinstance(command, Command)
        self.received.append(command)
        if command.charger_id.endswith("ok"):
            outcome, status = CommandOutcome.ACCEPTED, "Accepted"
        elif command.charger_id.endswith("no"):
            outcome, status = CommandOutcome.REJECTED, "Rejected"
        else:
            return
        result = CommandResult(command.command_id, command.charger_id, datetime.now(UTC), outcome, status)
        client.publish(command_result_topic(command.charger_id), encode(result), qos=1)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture()
def chargers() -> list[str]:
    tag = secrets.token_hex(3)
    return [f"CA-{tag}-ok", f"CA-{tag}-no", f"CA-{tag}-mute"]


@pytest.fixture()
def responder(mqtt_endpoint: MqttEndpoint, chargers: list[str]) -> Iterator[Responder]:
    r = Responder(mqtt_endpoint, chargers)
    yield r
    r.close()


def test_bulk_command_gives_one_reply_per_charger_in_order(mqtt_endpoint: MqttEndpoint, chargers: list[str],
                                                            responder: Responder) -> None:
    with CommandService(mqtt_endpoint) as service:
        replies = service.send_many(Action.PAUSE, [Target(c, 1) for c in chargers], requested_by="fleet@example",
                                    timeout_s=1.5)
    assert [r.charger_id for r in replies] == chargers
    accepted, rejected, silent = replies
    assert (accepted.state, accepted.outcome, accepted.ok) == (ReplyState.DONE, CommandOutcome.ACCEPTED, True)
    assert accepted.elapsed_s < 1.5
    assert rejected.outcome is CommandOutcome.REJECTED
    assert rejected.message == "pause: rejected by the charger (Rejected)"
    assert silent.state is ReplyState.NO_RESULT_YET and silent.outcome is None
    assert 1.4 <= silent.elapsed_s < 3.0, "the shared deadline, not one timeout per charger"
    assert "no answer from the charger" in silent.message
    # What went out: a 0 A limit on each connector, with who asked for it.
    assert {(c.kind, c.params["limit"], c.connector_id, c.requested_by) for c in responder.received} == {
        (CommandKind.SET_LIMIT, 0.0, 1, "fleet@example")}


def test_unreachable_broker_says_not_sent() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = MqttEndpoint(host="127.0.0.1", port=port, username=None, password=Secret(""), tls=False)
    service = CommandService(endpoint)
    try:
        reply = service.send(Action.STOP, Target("CA-x", 1), requested_by=None, timeout_s=0.5)
    finally:
        service.close()
    assert reply.state is ReplyState.NOT_SENT
    assert reply.message.startswith("stop: not sent, the message broker is unreachable")


@pytest.mark.parametrize(("action", "kind", "params"), [
    (Action.START, CommandKind.START, {}),
    (Action.STOP, CommandKind.STOP, {}),
    (Action.PAUSE, CommandKind.SET_LIMIT, {"limit": 0.0, "unit": "A"}),
    (Action.RESUME, CommandKind.CLEAR_LIMIT, {}),
    (Action.LOCK, CommandKind.CHANGE_AVAILABILITY, {"type": "Inoperative"}),
    (Action.UNLOCK, CommandKind.CHANGE_AVAILABILITY, {"type": "Operative"}),
    (Action.RELEASE_CABLE, CommandKind.UNLOCK, {}),
])
def test_actions_map_to_commands(action: Action, kind: CommandKind, params: dict[str, object]) -> None:
    now = datetime(2026, 11, 26, 8, tzinfo=UTC)
    command = command_for(action, Target("CA-1", 2), command_id="c1", now=now, requested_by="u")
    assert (command.kind, dict(command.params), command.connector_id, command.expires_at > now) == (
        kind, params, 2, True)


def test_set_limit_needs_a_limit() -> None:
    now = datetime(2026, 11, 26, 8, tzinfo=UTC)
    with pytest.raises(ValueError, match="needs params"):
        command_for(Action.SET_LIMIT, Target("CA-1"), command_id="c", now=now, requested_by=None)
    assert command_for(Action.SET_LIMIT, Target("CA-1"), command_id="c", now=now, requested_by=None,
                       params={"limit": 10}).params == {"unit": "A", "limit": 10}
