"""A minimal MQTT 5 client connection for QoS1 publishing: what :mod:`ingest.publisher` needs, no more.

Why not paho: at 2,000 messages/s paho 2.2 cost this machine ~280 µs of CPU per QoS1 message
(its network thread wakes once per PUBLISH via a socketpair and once per PUBACK, reads each
PUBACK with three or four ``recv`` calls and builds ``Properties``/``ReasonCode`` objects for
it), about 60 % of the bridge's whole per-frame budget. This connection is driven by the
publisher's own thread: PUBLISH packets of a pass go out in one ``send``, every PUBACK that
arrived is parsed from one ``recv``, and nothing else runs. About 80 µs per message, most of it
the kernel's.

Scope: CONNECT (clean start, keep-alive, optional user name and password, plain TCP or TLS
verified against the system CAs like paho's ``tls_set()``), PUBLISH QoS1 (DUP on re-sends),
PUBACK with reason codes, PINGREQ/PINGRESP, DISCONNECT. Receive Maximum is read from the
CONNACK. The connection is made blocking (bounded by ``connect_timeout_s``) and then used
non-blocking from one thread; it is not thread-safe.

The pipeline's MQTT source (:mod:`pipelines.mqtt_source`) uses it to subscribe, for the same
reason (paho took about half of the pipeline's CPU at 1,000 messages/s, reading each PUBLISH with
several ``recv`` calls and waking its thread for each PUBACK it sent): a resumed session
(``clean_start=False`` with a Session Expiry Interval and our Receive Maximum), SUBSCRIBE with
SUBACK reason codes, incoming PUBLISH at QoS 0 and 1 (every packet of one ``recv`` parsed in one
pass; topic aliases are never granted, so none arrive), and PUBACKs written in bulk.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from typing import Final

from control.settings import MqttEndpoint

_CONNACK_REASONS: Final = {
    0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error", 0x83: "implementation specific",
    0x84: "unsupported protocol version", 0x85: "client identifier not valid", 0x86: "bad user name or password",
    0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned",
    0x8C: "bad authentication method", 0x90: "topic name invalid", 0x95: "packet too large",
    0x97: "quota exceeded", 0x99: "payload format invalid", 0x9A: "retain not supported",
    0x9B: "QoS not supported", 0x9C: "use another server", 0x9D: "server moved", 0x9F: "connection rate exceeded",
}
_PINGREQ: Final = b"\xc0\x00"
_DISCONNECT: Final = b"\xe0\x00"
_HALF: Final = struct.Struct("!H")
_PUBACK: Final = struct.Struct("!BBH")
_RECV_BYTES: Final = 256 * 1024


class LinkError(OSError):
    """The connection is unusable (lost, refused, or the broker broke the protocol)."""


class Refused(LinkError):
    """The broker answered CONNECT with a failure reason code."""


def reason_name(code: int) -> str:
    return _CONNACK_REASONS.get(code, f"reason code 0x{code:02X}")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | 0x80 if n else digit)
        if not n:
            return bytes(out)


def _str16(text: str) -> bytes:
    raw = text.encode()
    return _HALF.pack(len(raw)) + raw


def publish_packet(topic: bytes, packet_id: int, payload: bytes, *, retain: bool, dup: bool) -> bytes:
    """PUBLISH at QoS1; ``topic`` already as its UTF-8 string (2-byte length + bytes)."""
    first = 0x32 | (0x08 if dup else 0) | (0x01 if retain else 0)
    length = len(topic) + 3 + len(payload)  # packet id (2), property length (1)
    if length < 128:
        header = bytes((first, length))
    else:
        header = bytes((first,)) + _varint(length)
    return b"".join((header, topic, _HALF.pack(packet_id), b"\x00", payload))


def topic_bytes(topic: str) -> bytes:
    return _str16(topic)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            raise LinkError("the broker closed the connection during CONNECT")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _properties(data: bytes, pos: int) -> tuple[dict[int, int], int]:
    """The integer-valued properties we care about, and the position after the property block."""
    length, pos = _read_varint(data, pos)
    end, found = pos + length, {}
    while pos < end:
        ident = data[pos]
        pos += 1
        if ident in (0x21, 0x22, 0x23):  # receive maximum, topic alias maximum / alias: two bytes
            found[ident] = _HALF.unpack_from(data, pos)[0]
            pos += 2
        elif ident in (0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A):  # one byte
            found[ident] = data[pos]
            pos += 1
        elif ident in (0x02, 0x11, 0x18, 0x27):  # four bytes
            found[ident] = struct.unpack_from("!I", data, pos)[0]
            pos += 4
        elif ident == 0x0B:  # subscription identifier: varint
            found[ident], pos = _read_varint(data, pos)
        elif ident == 0x26:  # user property: two strings
            for _ in range(2):
                pos += 2 + _HALF.unpack_from(data, pos)[0]
        elif ident in (0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F):  # string or binary data
            pos += 2 + _HALF.unpack_from(data, pos)[0]
        else:
            raise LinkError(f"unknown MQTT property 0x{ident:02X}")
    return found, end


def _packet_bounds(data: bytearray, pos: int, size: int) -> tuple[int, int] | None:
    """(start, end) of the body of the packet at ``pos``, or None while it is incomplete."""
    length, shift, i = 0, 0, pos + 1
    while True:
        if i >= size:
            return None
        byte = data[i]
        i += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 21:
            raise LinkError("malformed remaining length")
    end = i + length
    return (i, end) if end <= size else None


def _read_varint(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    for _ in range(4):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise LinkError("malformed variable byte integer")


class MqttLink:
    """One connected session. Methods raise :class:`LinkError` (an OSError) when it is lost."""

    def __init__(self, sock: socket.socket, *, receive_maximum: int, keepalive_s: int,
                 session_present: bool = False) -> None:
        self.sock = sock
        self.receive_maximum = receive_maximum
        self.session_present = session_present  # the broker resumed a session (clean_start=False)
        self.messages: list[tuple[str, bytes, int | None]] = []  # PUBLISHes read: (topic, payload, packet id)
        self.subacks: dict[int, bytes] = {}  # SUBACKs read: packet id -> one reason code per filter
        self._keepalive_s = keepalive_s
        self._out = bytearray()
        self._in = bytearray()
        self._last_sent = time.monotonic()
        self._ping_sent_at: float | None = None

    @classmethod
    def connect(cls, endpoint: MqttEndpoint, client_id: str, *, keepalive_s: int,
                connect_timeout_s: float = 5.0, clean_start: bool = True, session_expiry_s: int = 0,
                receive_maximum: int | None = None) -> MqttLink:
        """Connect and wait for the CONNACK. ``session_expiry_s`` > 0 keeps the session (and what is
        queued for its subscriptions) that long after a disconnect; ``receive_maximum`` is how many
        unacknowledged QoS1 messages the broker may send us (MQTT's default: 65,535)."""
        sock: socket.socket = socket.create_connection((endpoint.host, endpoint.port), timeout=connect_timeout_s)
        try:
            # Nagle would hold small PUBLISHes back for the broker's delayed ACK (p50 19 ms -> 0.45 ms here).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if endpoint.tls:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=endpoint.host)
            flags, payload = (0x02 if clean_start else 0x00), _str16(client_id)
            if endpoint.username is not None:
                flags |= 0x80
                payload += _str16(endpoint.username)
                password = endpoint.password.reveal()
                if password:
                    flags |= 0x40
                    payload += _str16(password)
            props = b""
            if session_expiry_s:
                props += b"\x11" + struct.pack("!I", session_expiry_s)
            if receive_maximum is not None:
                props += b"\x21" + _HALF.pack(receive_maximum)
            variable = _str16("MQTT") + bytes((5, flags)) + _HALF.pack(keepalive_s) + _varint(len(props)) + props
            body = variable + payload
            sock.sendall(b"\x10" + _varint(len(body)) + body)
            first = _read_exact(sock, 1)[0]
            length, shift, byte = 0, 0, 0x80
            while byte & 0x80:
                byte = _read_exact(sock, 1)[0]
                length |= (byte & 0x7F) << shift
                shift += 7
            data = _read_exact(sock, length)
            if first & 0xF0 != 0x20 or len(data) < 2:
                raise LinkError(f"expected CONNACK, got packet type {first >> 4}")
            if data[1] >= 0x80:
                raise Refused(reason_name(data[1]))
            granted, _ = _properties(data, 2) if len(data) > 2 else ({}, 2)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return cls(sock, receive_maximum=granted.get(0x21, 65_535), keepalive_s=keepalive_s,
                   session_present=bool(data[0] & 0x01))

    # ---------------------------------------------------------------- subscribing

    def subscribe(self, filters: list[str], packet_id: int, *, qos: int = 1) -> None:
        """Queue and send one SUBSCRIBE for ``filters`` (its SUBACK lands in :attr:`subacks`)."""
        body = bytearray(_HALF.pack(packet_id) + b"\x00")
        for topic_filter in filters:
            body += _str16(topic_filter) + bytes((qos,))
        self.queue(b"\x82" + _varint(len(body)) + bytes(body))
        self.flush()

    def ack(self, packet_ids: list[int]) -> None:
        """Queue and send a PUBACK (success) for each QoS1 PUBLISH received."""
        pack = _PUBACK.pack
        self.queue(b"".join(pack(0x40, 2, packet_id) for packet_id in packet_ids))
        self.flush()

    # ---------------------------------------------------------------- writing

    def queue(self, packet: bytes) -> None:
        self._out += packet

    def want_write(self) -> bool:
        return bool(self._out)

    def flush(self) -> None:
        """Send what the socket takes now; the rest waits for writability."""
        while self._out:
            try:
                sent = self.sock.send(self._out)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            except OSError as exc:
                raise LinkError(f"send failed: {exc}") from exc
            del self._out[:sent]
            self._last_sent = time.monotonic()

    # ---------------------------------------------------------------- reading

    def pending(self) -> bool:
        """Bytes already decrypted inside a TLS socket (select() does not see them)."""
        return isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0

    def read_acks(self) -> list[tuple[int, int]]:
        """Read what arrived; return the PUBACKs as (packet id, reason code). PUBLISHes and
        SUBACKs that arrived are added to :attr:`messages` and :attr:`subacks`."""
        while True:
            try:
                chunk = self.sock.recv(_RECV_BYTES)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except OSError as exc:
                raise LinkError(f"receive failed: {exc}") from exc
            if not chunk:
                raise LinkError("the broker closed the connection")
            self._in += chunk
            if len(chunk) < _RECV_BYTES and not self.pending():
                break
        return self._parse()

    def _parse(self) -> list[tuple[int, int]]:
        data, pos, size, acks = self._in, 0, len(self._in), []
        while True:
            bounds = _packet_bounds(data, pos, size)
            if bounds is None:
                break
            start, end = bounds
            kind = data[pos] & 0xF0
            if kind == 0x40:  # PUBACK: packet id, then an optional reason code (and properties)
                if end - start < 2:
                    raise LinkError("malformed PUBACK")
                acks.append((_HALF.unpack_from(data, start)[0], data[start + 2] if end - start > 2 else 0))
            elif kind == 0x30:  # PUBLISH: topic, packet id (QoS > 0), properties, payload
                qos = (data[pos] >> 1) & 0x03
                if qos > 1:
                    raise LinkError("a QoS 2 PUBLISH arrived (every subscription is QoS 0 or 1)")
                topic_end = start + 2 + _HALF.unpack_from(data, start)[0]
                topic = data[start + 2:topic_end].decode()
                packet_id = None
                if qos:
                    packet_id = _HALF.unpack_from(data, topic_end)[0]
                    topic_end += 2
                if data[topic_end] == 0:  # no properties (what a broker sends unless asked for more)
                    body = topic_end + 1
                else:
                    length, body = _read_varint(data, topic_end)
                    body += length
                self.messages.append((topic, bytes(data[body:end]), packet_id))
            elif kind == 0x90:  # SUBACK: packet id, properties, one reason code per filter
                length, codes = _read_varint(data, start + 2)
                self.subacks[_HALF.unpack_from(data, start)[0]] = bytes(data[codes + length:end])
            elif kind == 0xD0:  # PINGRESP
                self._ping_sent_at = None
            elif kind == 0xE0:  # DISCONNECT from the broker
                raise LinkError(f"the broker disconnected: {reason_name(data[start]) if end > start else 'normal'}")
            pos = end
        del data[:pos]
        return acks

    # ---------------------------------------------------------------- keep-alive and closing

    def keepalive(self, now: float) -> float:
        """Ping when due; LinkError if a ping goes unanswered. Returns the seconds to the next check."""
        if self._ping_sent_at is not None:
            left = self._ping_sent_at + self._keepalive_s - now
            if left < 0:
                raise LinkError(f"no PINGRESP within {self._keepalive_s} s")
            return max(0.05, left)
        due = self._last_sent + self._keepalive_s
        if now < due:
            return max(0.05, due - now)
        self._ping_sent_at = now
        self.queue(_PINGREQ)
        self.flush()
        return float(self._keepalive_s)

    def close(self, *, polite: bool = True) -> None:
        """Send DISCONNECT if the socket takes it at once, then close."""
        try:
            if polite:
                self.sock.send(_DISCONNECT)
        except OSError:
            pass
        finally:
            self.sock.close()
