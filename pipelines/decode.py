"""Decoding MQTT messages into contract events: an ok stream and an error stream.

Nothing is dropped: a payload that is not a valid contract envelope, or whose charger id
disagrees with its topic, becomes a :class:`DeadLetter` holding the raw payload and the reason.
Dead letters published by the bridge arrive here as ordinary events and are stored as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from control.contract import ContractError, DeadLetter, Event, decode
from control.topics import charger_from_topic

SOURCE = "pipeline"


@dataclass(frozen=True, slots=True)
class Decoded:
    event: Event | None
    error: DeadLetter | None


def decode_message(topic: str, payload: bytes, received_at: datetime) -> Decoded:
    try:
        event = decode(payload)
    except ContractError as exc:
        return Decoded(None, _dead(topic, payload, received_at, str(exc)))
    topic_charger = charger_from_topic(topic)
    event_charger = getattr(event, "charger_id", None)
    if topic_charger is not None and event_charger is not None and topic_charger != event_charger:
        reason = f"charger id {event_charger!r} in the payload does not match {topic_charger!r} in the topic"
        return Decoded(None, _dead(topic, payload, received_at, reason))
    # received_at stays the bridge's stamp (or None): the pipeline's own arrival time would
    # include MQTT queueing while the pipeline was down and would fake late deliveries.
    return Decoded(event, None)


def _dead(topic: str, payload: bytes, received_at: datetime, reason: str) -> DeadLetter:
    return DeadLetter(
        ts=received_at,
        source=SOURCE,
        reason=reason[:2000],
        raw=payload.decode("utf-8", errors="replace"),
        charger_id=charger_from_topic(topic),
        topic=topic,
    )
