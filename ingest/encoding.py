"""The bridge's fast path to the wire: contract envelopes with orjson, topics from a cache.

:func:`encode_event` returns exactly the bytes of :func:`control.contract.encode` (which must
stay standard-library only, so it uses ``json``), about five times faster. orjson writes strings,
integers and booleans as ``json.dumps(..., ensure_ascii=False, separators=(",", ":"))`` does, and
floats too except outside [1e-4, 1e16) (``1e-05`` vs ``0.00001``); an event with such a float, or
anything else orjson refuses (an integer past 64 bits, a lone surrogate, NaN), is encoded by the
contract itself, errors included.

:func:`event_topic` caches :func:`control.topics.topic_for` for charger events, whose topic
depends only on the event type and the charger id.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from control.contract import (
    CONTRACT_VERSION,
    ChargerInfo,
    ChargerNotice,
    ConnectionEvent,
    Event,
    MeterSample,
    StatusChanged,
    TransactionEvent,
    encode,
    to_dict,
)
from control.topics import topic_for

_CHARGER_EVENTS: Final = (MeterSample, StatusChanged, TransactionEvent, ConnectionEvent, ChargerInfo, ChargerNotice)
_MAX_TOPICS: Final = 100_000
_topics: dict[tuple[type[Any], Any], str] = {}


def _float_ok(value: float) -> bool:
    return value == 0.0 or 1e-4 <= abs(value) < 1e16  # NaN and infinities fail too


def _orjson_safe(data: dict[str, Any]) -> bool:
    for value in data.values():
        kind = type(value)
        if kind is float:
            if not _float_ok(value):
                return False
        elif kind is dict:  # params / payload: flat JSON scalars
            for item in value.values():
                if type(item) is float and not _float_ok(item):
                    return False
        elif kind is list:  # tuples of scalars (quirks, a charging limit's periods)
            for item in value:
                if type(item) is float and not _float_ok(item):
                    return False
    return True


def encode_event(event: Event) -> bytes:
    """Byte for byte :func:`control.contract.encode`, faster."""
    data = to_dict(event)
    if _orjson_safe(data):
        try:
            return orjson.dumps({"v": CONTRACT_VERSION, "type": event.TYPE, "data": data})
        except orjson.JSONEncodeError:
            pass
    return encode(event)


def event_topic(event: Event) -> str:
    """:func:`control.topics.topic_for`, cached for charger events."""
    if not isinstance(event, _CHARGER_EVENTS):
        return topic_for(event)
    key: tuple[type[Any], Any] = (type(event), event.charger_id)
    topic = _topics.get(key)
    if topic is None:
        topic = topic_for(event)  # raises for an id that cannot be a topic segment, as before
        if len(_topics) >= _MAX_TOPICS:
            _topics.clear()
        _topics[key] = topic
    return topic
