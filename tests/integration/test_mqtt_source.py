"""The pipeline's MQTT source against a real Mosquitto (a private one: these tests restart it).

At least once, as :mod:`pipelines.mqtt_source` promises: a message handed to the dataflow is
acknowledged only at the second snapshot after, so one the pipeline never got to acknowledge
comes again to the next process with the same client id; what is published while no pipeline
runs waits in the persistent session; partitions share a subscription without duplicates; the
session survives a broker restart.
"""

from __future__ import annotations

import secrets
import time
from datetime import timedelta

import paho.mqtt.client as paho
import pytest
from e2e_harness import PrivateBroker, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from control.settings import MqttEndpoint
from pipelines.mqtt_source import MqttMessage, MqttSource, _MqttPartition

pytestmark = pytest.mark.integration

TOPIC = "flowbank/v1/ev/{charger}/meter_sample"


def _source(endpoint: MqttEndpoint, prefix: str, partitions: int = 1) -> MqttSource:
    return MqttSource(endpoint, ["flowbank/v1/ev/#"], client_prefix=prefix, partitions=partitions,
                      share_group=prefix, batch_window=timedelta(0), session_expiry_s=300)


def _part(source: MqttSource, name: str = "0") -> _MqttPartition:
    part = source.build_part("mqtt", name, None)
    wait_until(part._session.connected.is_set, timeout=10, what="the source to connect")
    time.sleep(0.3)  # the SUBACK
    return part


def _publish(endpoint: MqttEndpoint, payloads: list[bytes], *, qos: int = 1) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{secrets.token_hex(3)}", protocol=paho.MQTTv5)
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()
    try:
        infos = [client.publish(TOPIC.format(charger=f"CP-{i % 7}"), p, qos=qos) for i, p in enumerate(payloads)]
        for info in infos:
            info.wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


def _take(parts: list[_MqttPartition], n: int, timeout: float = 15.0) -> list[list[MqttMessage]]:
    """Call next_batch on every partition until n messages came in all (or the timeout)."""
    got: list[list[MqttMessage]] = [[] for _ in parts]
    deadline = time.monotonic() + timeout
    while sum(map(len, got)) < n and time.monotonic() < deadline:
        for i, part in enumerate(parts):
            got[i].extend(part.next_batch())
        time.sleep(0.01)
    return got


def _drain(part: _MqttPartition, quiet_s: float = 1.0) -> list[MqttMessage]:
    got: list[MqttMessage] = []
    until = time.monotonic() + quiet_s
    while time.monotonic() < until:
        batch = part.next_batch()
        if batch:
            got.extend(batch)
            until = time.monotonic() + quiet_s
        time.sleep(0.01)
    return got


def test_unacknowledged_messages_come_again_and_acknowledged_ones_do_not(broker: PrivateBroker) -> None:
    endpoint, prefix = broker.endpoint, f"src-{secrets.token_hex(3)}"
    _part(_source(endpoint, prefix)).close()  # the persistent session and its subscription exist
    payloads = [f"m{i}".encode() for i in range(300)]
    _publish(endpoint, payloads)

    first = _part(_source(endpoint, prefix))
    [got] = _take([first], 300)
    assert [m.payload for m in got] == payloads  # in order, nothing lost
    assert {m.topic for m in got} == {TOPIC.format(charger=f"CP-{i}") for i in range(7)}
    first.snapshot()  # the handed messages are acknowledged at the *next* snapshot...
    first.close()  # ...which never comes: a crash, as far as the broker is concerned

    second = _part(_source(endpoint, prefix))
    again = _drain(second)
    assert [m.payload for m in again] == payloads  # delivered again, all of them
    second.snapshot()
    second.snapshot()  # now they are acknowledged
    second.close()

    _publish(endpoint, [b"while-down"])  # no pipeline runs: the session keeps it
    third = _part(_source(endpoint, prefix))
    assert [m.payload for m in _drain(third)] == [b"while-down"]
    third.close()


def test_qos0_messages_are_handed_over_without_acknowledgement(broker: PrivateBroker) -> None:
    endpoint, prefix = broker.endpoint, f"src-{secrets.token_hex(3)}"
    part = _part(_source(endpoint, prefix))
    _publish(endpoint, [b"a", b"b", b"c"], qos=0)
    [got] = _take([part], 3)
    assert [m.payload for m in got] == [b"a", b"b", b"c"]
    part.snapshot()
    part.snapshot()
    part.close()


def test_partitions_share_the_subscription(broker: PrivateBroker) -> None:
    endpoint, prefix = broker.endpoint, f"src-{secrets.token_hex(3)}"
    source = _source(endpoint, prefix, partitions=2)
    parts = [_part(source, "0"), _part(source, "1")]
    payloads = [f"s{i}".encode() for i in range(400)]
    _publish(endpoint, payloads)
    got = _take(parts, 400)
    assert all(got), "each partition gets a share"
    assert sorted(m.payload for batch in got for m in batch) == sorted(payloads)  # each message once
    for part in parts:
        part.close()


def test_the_session_survives_a_broker_restart(broker: PrivateBroker) -> None:
    endpoint, prefix = broker.endpoint, f"src-{secrets.token_hex(3)}"
    part = _part(_source(endpoint, prefix))
    _publish(endpoint, [b"before"])
    assert [m.payload for m in _take([part], 1)[0]] == [b"before"]
    part.snapshot()
    part.snapshot()

    broker.stop()
    wait_until(lambda: not part._session.connected.is_set(), timeout=10, what="the source to notice")
    broker.start()
    wait_until(part._session.connected.is_set, timeout=20, what="the source to reconnect")
    time.sleep(0.3)
    _publish(endpoint, [b"after"])
    assert [m.payload for m in _take([part], 1)[0]] == [b"after"]
    part.close()
