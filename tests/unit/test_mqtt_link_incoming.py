"""What :class:`ingest.mqtt_link.MqttLink` reads as a subscriber: PUBLISH at QoS 0 and 1 (with and
without properties), SUBACK, packets split across reads; and the PUBACKs and SUBSCRIBE it writes.
Bytes in, bytes out over a socket pair: no broker."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from ingest.mqtt_link import LinkError, MqttLink, _varint


def _publish(topic: str, payload: bytes, *, qos: int, packet_id: int = 0, props: bytes = b"",
             dup: bool = False, retain: bool = False) -> bytes:
    raw = topic.encode()
    body = struct.pack("!H", len(raw)) + raw
    if qos:
        body += struct.pack("!H", packet_id)
    body += _varint(len(props)) + props + payload
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    return bytes((first,)) + _varint(len(body)) + body


@pytest.fixture()
def pair() -> Iterator[tuple[MqttLink, socket.socket]]:
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    link = MqttLink(ours, receive_maximum=65_535, keepalive_s=30)
    yield link, broker
    ours.close()
    broker.close()


def test_publishes_at_qos0_and_qos1_with_and_without_properties(pair: tuple[MqttLink, socket.socket]) -> None:
    link, broker = pair
    big = bytes(range(256)) * 40  # a remaining length of several varint bytes
    user_property = b"\x26" + struct.pack("!H", 1) + b"k" + struct.pack("!H", 1) + b"v"
    broker.sendall(_publish("a/b", b"zero", qos=0)
                   + _publish("a/c", b"one", qos=1, packet_id=7, dup=True, retain=True)
                   + _publish("a/ü", big, qos=1, packet_id=65_535, props=b"\x01\x01" + user_property))
    assert link.read_acks() == []
    assert link.messages == [("a/b", b"zero", None), ("a/c", b"one", 7), ("a/ü", big, 65_535)]


def test_a_packet_split_across_reads_waits_for_its_end(pair: tuple[MqttLink, socket.socket]) -> None:
    link, broker = pair
    packet = _publish("t", b"x" * 500, qos=1, packet_id=3)
    broker.sendall(packet[:2])
    link.read_acks()
    assert link.messages == []
    broker.sendall(packet[2:300])
    link.read_acks()
    assert link.messages == []
    broker.sendall(packet[300:] + b"\x40\x02\x00\x09")  # and a PUBACK behind it
    assert link.read_acks() == [(9, 0)]
    assert link.messages == [("t", b"x" * 500, 3)]


def test_suback_reason_codes(pair: tuple[MqttLink, socket.socket]) -> None:
    link, broker = pair
    broker.sendall(b"\x90\x05\x00\x01\x00\x01\x87")  # packet 1: granted QoS 1, then "not authorized"
    link.read_acks()
    assert link.subacks == {1: b"\x01\x87"}


def test_qos2_is_a_protocol_error(pair: tuple[MqttLink, socket.socket]) -> None:
    link, broker = pair
    broker.sendall(_publish("t", b"x", qos=2, packet_id=1))
    with pytest.raises(LinkError, match="QoS 2"):
        link.read_acks()


def test_subscribe_and_acks_on_the_wire(pair: tuple[MqttLink, socket.socket]) -> None:
    link, broker = pair
    link.subscribe(["$share/g/flowbank/v1/ev/#", "x/+"], packet_id=1)
    link.ack([1, 258, 65_535])
    wire = broker.recv(4096)
    subscribe_body = (b"\x00\x01\x00" + struct.pack("!H", 25) + b"$share/g/flowbank/v1/ev/#\x01"
                      + struct.pack("!H", 3) + b"x/+\x01")
    assert wire == (b"\x82" + _varint(len(subscribe_body)) + subscribe_body
                    + b"\x40\x02\x00\x01" + b"\x40\x02\x01\x02" + b"\x40\x02\xff\xff")
