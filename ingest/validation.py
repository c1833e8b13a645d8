"""OCPP-J framing and schema validation for the bridge's hot path.

The ``ocpp`` library validates with ``jsonschema`` (~1 ms per MeterValues frame) and converts
every key between camelCase and snake_case with regexes. Here a frame is parsed once with orjson,
checked against the JSON schemas that ship inside the ``ocpp`` package, compiled by
fastjsonschema (~30 µs per frame), and handed on as the raw camelCase payload.

Every way a frame can be unusable maps to the CALLERROR the OCPP-J spec asks for, per version:

==========================================  ===========================  ================================
problem                                     OCPP 1.6                     OCPP 2.0.1
==========================================  ===========================  ================================
not JSON                                    no reply (id unreadable)     ``"-1"`` FormatViolation
JSON, but the message id cannot be read     no reply                     ``"-1"`` RpcFrameworkError
unknown message type number                 no reply (spec: ignore)      MessageTypeNotSupported
CALL of the wrong arity / action not text   FormationViolation           RpcFrameworkError
payload not an object                       FormationViolation           FormatViolation
frame over our size limit                   FormationViolation           FormatViolation (``"-1"`` if no id)
action unknown to the version               NotImplemented               NotImplemented
action known but not handled by a CSMS      NotSupported                 NotSupported
schema: missing required property           ProtocolError                OccurrenceConstraintViolation
schema: too few / too many items            OccurenceConstraintViolation OccurrenceConstraintViolation
schema: wrong JSON type                     TypeConstraintViolation      TypeConstraintViolation
schema: enum, length, range, format         PropertyConstraintViolation  PropertyConstraintViolation
schema: unexpected property                 FormationViolation           FormatViolation
==========================================  ===========================  ================================

("Known but not handled" and "unknown" follow the spec's wording: NotImplemented = "not known by
receiver", NotSupported = "recognized but not supported"; the ``ocpp`` library has them swapped.)

Hot path: most of a 1.6 MeterValues frame is its sampled values, and fastjsonschema checks each
one's enums as chains of comparisons (~4 µs a value). Their validity depends only on their keys,
their enum values and the type of ``value``, so it is remembered per such shape: see
:class:`_ItemMemo`. Whatever the shortcut cannot vouch for goes through the full validator, which
therefore still decides every error.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from importlib import resources
from typing import Any, Final

import fastjsonschema
import orjson

from control.contract import OcppVersion

MAX_FRAME_BYTES: Final = 64 * 1024
MAX_MESSAGE_ID_LENGTH: Final = 255  # the spec says 36; we answer longer ids rather than go silent
UNREADABLE_ID: Final = "-1"  # OCPP 2.0.1 Part 4: CALLERROR id when the message id cannot be read

# Chargers in the field send timestamps without an offset or with a space separator; the
# ``ocpp`` library does not check formats at all. Accept the ISO 8601 family here and let
# normalize decide what a timestamp means (and record a quirk), instead of refusing the frame.
_LENIENT_DATE_TIME: Final = (
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}(:?\d{2})?)?$"
)
_ID_HEAD: Final = re.compile(rb'^\s*\[\s*([234])\s*,\s*"([^"\\]{1,255})"')


class Problem(Enum):
    """What is wrong with a frame; the wire code depends on the OCPP version."""

    FORMAT = "format"
    MISSING = "missing"
    TYPE = "type"
    PROPERTY = "property"
    OCCURRENCE = "occurrence"
    NOT_IMPLEMENTED = "not_implemented"
    NOT_SUPPORTED = "not_supported"
    INTERNAL = "internal"
    RPC_FRAMEWORK = "rpc_framework"
    MESSAGE_TYPE = "message_type"


_CODES: Final[dict[OcppVersion, dict[Problem, str | None]]] = {
    OcppVersion.V16: {
        Problem.FORMAT: "FormationViolation",  # sic: the 1.6 spelling (errata 5.2)
        Problem.MISSING: "ProtocolError",  # "Payload for Action is incomplete"
        Problem.TYPE: "TypeConstraintViolation",
        Problem.PROPERTY: "PropertyConstraintViolation",
        Problem.OCCURRENCE: "OccurenceConstraintViolation",  # sic (errata 5.1)
        Problem.NOT_IMPLEMENTED: "NotImplemented",
        Problem.NOT_SUPPORTED: "NotSupported",
        Problem.INTERNAL: "InternalError",
        Problem.RPC_FRAMEWORK: "FormationViolation",
        Problem.MESSAGE_TYPE: None,  # 1.6 §4.1.3: a server ignores unknown message types
    },
    OcppVersion.V201: {
        Problem.FORMAT: "FormatViolation",
        Problem.MISSING: "OccurrenceConstraintViolation",
        Problem.TYPE: "TypeConstraintViolation",
        Problem.PROPERTY: "PropertyConstraintViolation",
        Problem.OCCURRENCE: "OccurrenceConstraintViolation",
        Problem.NOT_IMPLEMENTED: "NotImplemented",
        Problem.NOT_SUPPORTED: "NotSupported",
        Problem.INTERNAL: "InternalError",
        Problem.RPC_FRAMEWORK: "RpcFrameworkError",
        Problem.MESSAGE_TYPE: "MessageTypeNotSupported",
    },
}

_SCHEMA_RULE_PROBLEMS: Final = {
    "required": Problem.MISSING,
    "minItems": Problem.OCCURRENCE,
    "maxItems": Problem.OCCURRENCE,
    "type": Problem.TYPE,
    "additionalProperties": Problem.FORMAT,
}


def error_code(version: OcppVersion, problem: Problem) -> str | None:
    return _CODES[version][problem]


class FrameError(Exception):
    """An unusable frame. ``reply`` is the encoded CALLERROR to send, or None when the spec
    allows no answer; ``reason`` is fit for a dead-letter record."""

    def __init__(self, reason: str, reply: bytes | None, *, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply
        self.code = code


@dataclass(frozen=True, slots=True)
class CallFrame:
    message_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallResultFrame:
    message_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallErrorFrame:
    message_id: str
    code: str
    description: str
    details: Any = field(default=None)


Frame = CallFrame | CallResultFrame | CallErrorFrame


# --------------------------------------------------------------------------- encoding


def encode_call(message_id: str, action: str, payload: Mapping[str, Any]) -> bytes:
    return orjson.dumps([2, message_id, action, payload])


def encode_result(message_id: str, payload: Mapping[str, Any]) -> bytes:
    return orjson.dumps([3, message_id, payload])


def encode_error(message_id: str, code: str, description: str,
                 details: Mapping[str, Any] | None = None) -> bytes:
    # 2.0.1 caps errorDescription at 255 characters.
    return orjson.dumps([4, message_id, code, description[:255], details or {}])


def call_error(version: OcppVersion, message_id: str | None, problem: Problem, reason: str) -> FrameError:
    """Build the FrameError for ``problem``, answering only where the spec allows it."""
    code = error_code(version, problem)
    if code is None:
        return FrameError(reason, None)
    if message_id is None:
        if version is OcppVersion.V16:
            return FrameError(reason, None)  # 1.6 has no way to answer an unreadable message
        message_id = UNREADABLE_ID
    return FrameError(reason, encode_error(message_id, code, reason), code=code)


# --------------------------------------------------------------------------- parsing


def _readable_id(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= MAX_MESSAGE_ID_LENGTH:
        return value
    return None


def parse_frame(raw: bytes | str, version: OcppVersion, *, max_bytes: int = MAX_FRAME_BYTES) -> Frame:
    """Parse one OCPP-J frame or raise :class:`FrameError` carrying the spec's answer."""
    size = len(raw)
    if size > max_bytes:
        head = raw[:300] if isinstance(raw, bytes) else raw[:300].encode("utf-8", "replace")
        match = _ID_HEAD.match(head)
        message_id = match.group(2).decode("utf-8", "replace") if match and match.group(1) == b"2" else None
        raise call_error(version, message_id, Problem.FORMAT,
                         f"frame of {size} bytes exceeds the {max_bytes}-byte limit")
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise call_error(version, None, Problem.FORMAT, f"not JSON: {exc}") from None
    if not isinstance(msg, list) or len(msg) < 2:
        raise call_error(version, None, Problem.RPC_FRAMEWORK,
                         "not an OCPP-J frame: expected [MessageTypeId, MessageId, ...]")
    message_id = _readable_id(msg[1])
    if message_id is None:
        raise call_error(version, None, Problem.RPC_FRAMEWORK, "the message id is not a non-empty string")
    kind = msg[0] if type(msg[0]) is int else None
    if kind == 2:
        if len(msg) != 4 or not isinstance(msg[2], str) or not msg[2]:
            raise call_error(version, message_id, Problem.RPC_FRAMEWORK,
                             "a CALL must be [2, MessageId, Action, {payload}]")
        if not isinstance(msg[3], dict):
            raise call_error(version, message_id, Problem.FORMAT, "the CALL payload must be a JSON object")
        return CallFrame(message_id, msg[2], msg[3])
    if kind == 3:
        if len(msg) != 3 or not isinstance(msg[2], dict):
            raise FrameError("a CALLRESULT must be [3, MessageId, {payload}]", None)
        return CallResultFrame(message_id, msg[2])
    if kind == 4:
        if len(msg) not in (4, 5) or not isinstance(msg[2], str):
            raise FrameError("a CALLERROR must be [4, MessageId, errorCode, errorDescription, {details}]",
                             None)
        description = msg[3] if isinstance(msg[3], str) else json.dumps(msg[3])
        return CallErrorFrame(message_id, msg[2], description, msg[4] if len(msg) == 5 else None)
    raise call_error(version, message_id, Problem.MESSAGE_TYPE, f"unsupported message type {msg[0]!r}")


# --------------------------------------------------------------------------- schemas

Validator = Callable[[Any], Any]

_SCHEMA_DIRS: Final = {OcppVersion.V16: "v16", OcppVersion.V201: "v201"}


def _schema_name(version: OcppVersion, action: str, *, response: bool) -> str:
    if response:
        return f"{action}Response"
    return action if version is OcppVersion.V16 else f"{action}Request"


@cache
def known_actions(version: OcppVersion) -> frozenset[str]:
    """Every action the version defines (both directions), from the shipped schema files."""
    folder = resources.files("ocpp").joinpath(_SCHEMA_DIRS[version], "schemas")
    names = [entry.name.removesuffix(".json") for entry in folder.iterdir() if entry.name.endswith(".json")]
    if version is OcppVersion.V16:
        return frozenset(n for n in names if not n.endswith("Response"))
    return frozenset(n.removesuffix("Request") for n in names if n.endswith("Request"))


@cache
def validator(version: OcppVersion, action: str, *, response: bool = False) -> Validator:
    """The compiled validator of a request (or response) schema; KeyError when there is none."""
    name = _schema_name(version, action, response=response)
    path = resources.files("ocpp").joinpath(_SCHEMA_DIRS[version], "schemas", f"{name}.json")
    if not path.is_file():
        raise KeyError(name)
    schema = json.loads(path.read_text(encoding="utf-8-sig"))  # the 2.0.1 files start with a BOM
    full = _compile(schema)
    nested = None if response else _NESTED_ARRAYS.get((version, action))
    return (_with_item_memo(schema, nested, full) if nested else None) or full


def _compile(schema: Any) -> Validator:
    compiled: Validator = fastjsonschema.compile(schema, formats={"date-time": _LENIENT_DATE_TIME}, use_default=False)
    return compiled


# Arrays of arrays of small objects, where the item check dominates: (outer property, inner property).
_NESTED_ARRAYS: Final = {
    (OcppVersion.V16, "MeterValues"): ("meterValue", "sampledValue"),
    (OcppVersion.V16, "StopTransaction"): ("transactionData", "sampledValue"),
}
_MEMO_KEYWORDS: Final = frozenset({"type", "properties", "additionalProperties", "required"})
_MAX_SHAPES: Final = 4096


_ABSENT: Final = object()


class _Miss(Exception):
    """The memo cannot vouch for an item: ask the full validator."""


class _ItemMemo:
    """Which item shapes are valid. A shape is the item's keys, with their values except for the
    properties whose schema is exactly ``{"type": "string"}`` (any string will do: only the type is
    kept). Only an item schema made of ``type``/``properties``/``additionalProperties``/``required``
    qualifies, so nothing else can make a string's content matter."""

    def __init__(self, item_schema: dict[str, Any]) -> None:
        properties = item_schema.get("properties", {})
        self._free = tuple(k for k, s in properties.items() if s == {"type": "string"})
        self._validate = _compile(item_schema)
        self._valid: set[tuple[Any, ...]] = set()

    def check(self, item: Any) -> None:
        if type(item) is not dict:
            raise _Miss
        rest, present = item.copy(), []
        for key in self._free:
            value = rest.pop(key, _ABSENT)
            if value is not _ABSENT:
                if type(value) is not str:
                    raise _Miss
                present.append(key)
        shape = (tuple(rest.items()), tuple(present))
        try:
            if shape in self._valid:  # remembered shapes hold strings only: 1, 1.0 and True never match
                return
        except TypeError:  # an unhashable value (a list or an object)
            raise _Miss from None
        try:
            self._validate(item)
        except fastjsonschema.JsonSchemaValueException:
            raise _Miss from None
        if len(self._valid) < _MAX_SHAPES and all(type(v) is str for v in rest.values()):
            self._valid.add(shape)


def _with_item_memo(schema: dict[str, Any], nested: tuple[str, str], full: Validator) -> Validator | None:
    """Validate ``schema`` as: the schema with the inner items left open, then each inner item by
    the memo. Equivalent by the meaning of ``items``; None when the schema does not have that shape."""
    outer_key, inner_key = nested
    try:
        entry_schema = schema["properties"][outer_key]["items"]
        item_schema = entry_schema["properties"][inner_key]["items"]
    except (KeyError, TypeError):
        return None
    if not isinstance(item_schema, dict) or item_schema.get("type") != "object" or set(item_schema) - _MEMO_KEYWORDS:
        return None
    open_schema = copy.deepcopy(schema)
    open_schema["properties"][outer_key]["items"]["properties"][inner_key]["items"] = {}
    outer, memo = _compile(open_schema), _ItemMemo(item_schema)

    def validate(payload: Any) -> Any:
        try:
            outer(payload)
            for entry in payload.get(outer_key, ()):  # the open schema passed: a list of objects
                for item in entry.get(inner_key, ()):
                    memo.check(item)
        except (fastjsonschema.JsonSchemaValueException, _Miss):
            return full(payload)  # the authoritative answer, and the same error as ever
        return payload

    return validate


def schema_problem(exc: fastjsonschema.JsonSchemaValueException) -> Problem:
    return _SCHEMA_RULE_PROBLEMS.get(exc.rule or "", Problem.PROPERTY)


def check_payload(version: OcppVersion, action: str, payload: Any, *, response: bool = False) -> str | None:
    """Validate a payload; return None when it is valid, else a one-line reason."""
    try:
        validator(version, action, response=response)(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        return exc.message
    return None


def validate_call(version: OcppVersion, frame: CallFrame, handled: frozenset[str]) -> None:
    """Check the action and the payload of an inbound CALL; raise FrameError with the answer."""
    if frame.action not in handled:
        if frame.action in known_actions(version):
            raise call_error(version, frame.message_id, Problem.NOT_SUPPORTED,
                             f"{frame.action} is not supported by this CSMS")
        raise call_error(version, frame.message_id, Problem.NOT_IMPLEMENTED,
                         f"{frame.action} is not an OCPP {version} action")
    try:
        validator(version, frame.action)(frame.payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise call_error(version, frame.message_id, schema_problem(exc),
                         f"{frame.action}: {exc.message}") from None
