"""What the publisher queues: messages, their spool records, and its counters."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, NamedTuple

_RECORD: Final = struct.Struct("<BBqH")  # spool record: version, flags, enqueued_ns, topic length


class PublisherStopped(RuntimeError):
    """publish() after stop(): a programming error, not broker trouble."""


@dataclass(frozen=True, slots=True)
class PublisherStats:
    queued_memory: int  # waiting in memory
    spooled: int  # on disk or on the way there
    inflight: int  # sent, awaiting PUBACK
    published_acked: int  # PUBACKs since start()
    connected: bool
    spool_bytes: int
    dropped: int = 0  # refused: spool full or unwritable
    rejected: int = 0  # refused for good by the broker (PUBACK reason code) or unpublishable

    @property
    def pending(self) -> int:
        """Accepted, not yet acknowledged."""
        return self.queued_memory + self.spooled + self.inflight


class Message(NamedTuple):
    topic: str
    payload: bytes
    retain: bool
    enqueued_ns: int


def to_record(m: Message) -> bytes:
    topic = m.topic.encode()
    return _RECORD.pack(1, int(m.retain), m.enqueued_ns, len(topic)) + topic + m.payload


def from_record(record: bytes, now_ns: int) -> Message:
    version, flags, enqueued_ns, topic_len = _RECORD.unpack_from(record)
    if version != 1 or len(record) < _RECORD.size + topic_len:
        raise ValueError(f"unknown spool record (version {version}, {len(record)} bytes)")
    end = _RECORD.size + topic_len
    topic = record[_RECORD.size:end].decode()
    if not publishable(topic):
        raise ValueError(f"spool record with an unpublishable topic {topic[:80]!r}")
    # Monotonic time survives a process restart, not a reboot: never report a future enqueue.
    return Message(topic, record[end:], bool(flags & 1), min(enqueued_ns, now_ns))


def publishable(topic: str) -> bool:
    """A topic MQTT can carry in a PUBLISH: not empty, no wildcards or NUL, at most 65,535 bytes."""
    return bool(topic) and not any(c in topic for c in "+#\0") and len(topic.encode()) <= 65_535
