"""Primitives shared by the OCPP normalizers: the error, the quirk collector, lenient readers.

Every reader here takes raw JSON values (``Any``) and returns a clean value or ``None``, and
writes what it had to bend into a :class:`Quirks` collector. Quirk codes are stable snake_case
strings, optionally followed by ``:<detail>`` (match on the part before the colon).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Final, TypeVar

from control.contract import MAX_ID_LENGTH, MAX_TEXT_LENGTH, Event, OcppVersion

E = TypeVar("E", bound=Enum)
T = TypeVar("T")

# A charger without a real-time clock reports 1970 (or 2000) until it syncs; no real reading of
# this platform can be older than this, nor more than a day ahead of the bridge's clock.
PLAUSIBLE_SINCE: Final = datetime(2010, 1, 1, tzinfo=UTC)
PLAUSIBLE_AHEAD: Final = timedelta(days=1)
_QUIRK_DETAIL_MAX: Final = 40
# Samples whose connector the message does not say (1.6 StopTransaction, 2.0.1 TransactionEvent
# without ``evse``) are put on connector 0 and carry this quirk: they are not whole-charger readings.
CONNECTOR_UNKNOWN: Final = "connector_unknown_used_0"
_ELLIPSIS: Final = "…"


class NormalizeError(ValueError):
    """The payload cannot be turned into events at all; the message is the dead-letter reason."""


class Quirks:
    """An ordered set of quirk codes."""

    __slots__ = ("_codes",)

    def __init__(self, codes: Iterable[str] = ()) -> None:
        self._codes: dict[str, None] = dict.fromkeys(codes)

    def add(self, code: str, detail: object = None) -> None:
        if detail is not None:
            code = f"{code}:{_quirk_detail(detail)}"
        self._codes.setdefault(code, None)

    def extend(self, codes: Iterable[str]) -> None:
        for code in codes:
            self._codes.setdefault(code, None)

    def as_tuple(self) -> tuple[str, ...]:
        return tuple(self._codes)

    def __bool__(self) -> bool:
        return bool(self._codes)


def _quirk_detail(detail: object) -> str:
    text = "".join(c if c.isprintable() else "?" for c in str(detail))
    return text[:_QUIRK_DETAIL_MAX]


@dataclass(frozen=True, slots=True)
class Ctx:
    """What every handler needs besides the payload. ``quirks`` collects the whole call's quirks."""

    version: OcppVersion
    charger_id: str
    received_at: datetime
    assigned_transaction_id: str | None
    quirks: Quirks


Handler = Callable[[Ctx, Mapping[str, Any]], list[Event]]


# --------------------------------------------------------------------------- shapes


def as_mapping(value: Any) -> Mapping[str, Any] | None:
    return value if type(value) is dict or isinstance(value, Mapping) else None


def as_list(value: Any) -> list[Any] | None:
    return list(value) if isinstance(value, list | tuple) else None


# --------------------------------------------------------------------------- scalars


def to_int(value: Any, field: str, quirks: Quirks) -> int | None:
    """An integer, leniently: ``"3"`` and ``3.0`` are read as 3 (with a quirk)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        quirks.add("int_as_float", field)
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,18}\s*", value):
        quirks.add("int_as_string", field)
        return int(value)
    quirks.add("int_invalid", field)
    return None


def to_bool(value: Any, field: str, quirks: Quirks) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        quirks.add("bool_as_string", field)
        return value.strip().lower() == "true"
    quirks.add("bool_invalid", field)
    return None


def connector(value: Any, field: str, quirks: Quirks) -> int | None:
    number = to_int(value, field, quirks)
    if number is not None and number < 0:
        quirks.add("connector_invalid", field)
        return None
    return number


def text(value: Any, field: str, quirks: Quirks, *, limit: int = MAX_TEXT_LENGTH) -> str | None:
    """A string of at most ``limit`` characters; scalars are stringified, JSON containers dumped."""
    if value is None:
        return None
    if isinstance(value, str):
        result = value
    elif isinstance(value, Mapping | list | tuple):
        result = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)
    else:
        quirks.add("text_not_string", field)
        result = str(value)
    if len(result) > limit:
        quirks.add("string_truncated", field)
        result = result[: limit - len(_ELLIPSIS)] + _ELLIPSIS
    return result


def safe_id(value: Any, field: str, quirks: Quirks) -> str | None:
    """An id the contract accepts (MQTT-topic safe, <= MAX_ID_LENGTH), or None if empty.

    The mapping is deterministic, so the same raw id always gives the same contract id: ``/+#``
    and control characters become ``_``, and an over-long id keeps a prefix plus a hash suffix
    (a plain cut could make two transactions collide).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        quirks.add("id_invalid", field)
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    raw = value if isinstance(value, str) else str(value)
    result = raw.strip()
    if result != raw:
        quirks.add("id_whitespace", field)
    if result.isprintable() and "/" not in result and "+" not in result and "#" not in result:
        cleaned = result  # the common case: nothing to replace
    else:
        cleaned = "".join("_" if (c in "/+#" or not c.isprintable()) else c for c in result)
    if cleaned != result:
        quirks.add("id_sanitized", field)
    if len(cleaned) > MAX_ID_LENGTH:
        quirks.add("id_shortened", field)
        digest = hashlib.sha256(cleaned.encode()).hexdigest()[:8]
        cleaned = cleaned[: MAX_ID_LENGTH - 9].rstrip() + "~" + digest
    return cleaned or None


def lookup(raw: Any, table: Mapping[str, T], quirks: Quirks, name: str) -> T | None:
    """Map ``raw`` onto a table value by exact key, else by a relaxed spelling (case, ``_``, spaces).

    Relaxed matches add ``<name>_normalized:<raw>``. Unknown values return None; the caller
    decides what that means.
    """
    if not isinstance(raw, str):
        return None
    if raw in table:
        return table[raw]
    relaxed = {_relax(key): member for key, member in table.items()}
    member = relaxed.get(_relax(raw))
    if member is not None:
        quirks.add(f"{name}_normalized", raw)
    return member


def _relax(value: str) -> str:
    return re.sub(r"[^0-9a-z]", "", value.lower())


def enum_table(enum: type[E], aliases: Mapping[str, E] | None = None) -> dict[str, E]:
    table = {str(member.value): member for member in enum}
    table.update(aliases or {})
    return table


# --------------------------------------------------------------------------- time


def timestamp(ctx: Ctx, value: Any, quirks: Quirks, *, required: bool = True) -> datetime:
    """A UTC timestamp from ISO 8601; falls back to ``ctx.received_at`` with a quirk.

    ``required=False`` is for fields the spec lets the charger omit: then a missing value is no
    quirk.
    """
    if value is None or value == "":
        if required:
            quirks.add("timestamp_missing_used_received_at")
        return ctx.received_at
    parsed = parse_iso(value)
    if parsed is None:
        quirks.add("timestamp_unparseable_used_received_at")
        return ctx.received_at
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        quirks.add("timestamp_naive_assumed_utc")
        parsed = parsed.replace(tzinfo=UTC)
    parsed = parsed.astimezone(UTC)
    if parsed < PLAUSIBLE_SINCE or parsed > ctx.received_at + PLAUSIBLE_AHEAD:
        quirks.add("timestamp_implausible_used_received_at")
        return ctx.received_at
    return parsed


def parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    candidate = value.strip()
    if candidate[-1:] in ("z", "Z"):
        candidate = candidate[:-1] + "+00:00"
    candidate = candidate[:10] + candidate[10:11].upper() + candidate[11:]  # "t" separator
    try:
        return datetime.fromisoformat(candidate)
    except ValueError:
        return None


# --------------------------------------------------------------------------- numbers


def parse_number(value: Any, label: str, quirks: Quirks, *, expect_string: bool) -> float | None:
    """A finite float from a JSON number or a numeric string, or None (with a quirk).

    1.6 sends strings, 2.0.1 numbers; the other form is accepted with a quirk. Strings may carry
    surrounding or grouping spaces, a decimal comma (``"12,5"``) or thousands commas
    (``"1,234.5"`` / ``"1,234,567"``).
    """
    if isinstance(value, bool) or value is None:
        quirks.add("value_not_numeric", label)
        return None
    if isinstance(value, int | float):
        if expect_string:
            quirks.add("value_as_json_number", label)
        number = float(value)
    elif isinstance(value, str):
        if not expect_string:
            quirks.add("value_as_string", label)
        number_or_none = _parse_numeric_string(value, label, quirks)
        if number_or_none is None:
            quirks.add("value_not_numeric", label)
            return None
        number = number_or_none
    else:
        quirks.add("value_not_numeric", label)
        return None
    if not math.isfinite(number):
        quirks.add("value_not_finite", label)
        return None
    return number


NUMBER: Final = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")  # a plain JSON-ish decimal
_SPACE = re.compile(r"\s")


def _parse_numeric_string(raw: str, label: str, quirks: Quirks) -> float | None:
    if NUMBER.fullmatch(raw):  # the common case, checked first: this is the hot path
        return float(raw)
    candidate = raw
    if _SPACE.search(candidate):
        quirks.add("value_whitespace", label)
        candidate = _SPACE.sub("", candidate)
    if "," in candidate:
        if "." in candidate or candidate.count(",") > 1:
            quirks.add("value_thousands_separator", label)
            candidate = candidate.replace(",", "")
        else:
            quirks.add("value_decimal_comma", label)
            candidate = candidate.replace(",", ".")
    if candidate.lower() in ("nan", "inf", "+inf", "-inf", "infinity", "-infinity"):
        return float(candidate)
    if len(candidate) > 40 or not NUMBER.fullmatch(candidate):
        return None
    return float(candidate)
