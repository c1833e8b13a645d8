"""Typed face of the untyped ``ocpp`` library (the parts the simulator uses).

``ocpp`` ships no type hints, so for mypy its ChargePoint classes and decorators would be ``Any``
(subclassing ``Any`` and untyped decorators are errors under strict mode). The stubs below
describe what we rely on; at run time the real classes are used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

if TYPE_CHECKING:

    class OcppChargePoint:
        id: str

        def __init__(self, id: str, connection: Any, response_timeout: int = 30) -> None: ...

        async def start(self) -> None: ...

        async def route_message(self, raw_msg: str | bytes) -> None: ...

    class ChargePoint16Base(OcppChargePoint): ...

    class ChargePoint201Base(OcppChargePoint): ...

    def on(action: str, *, skip_schema_validation: bool = False) -> Callable[[F], F]: ...

    def after(action: str) -> Callable[[F], F]: ...

    def validate_outgoing(action: str, payload: dict[str, Any], version: str) -> None: ...

else:
    from ocpp.charge_point import ChargePoint as OcppChargePoint
    from ocpp.messages import MessageType, get_validator
    from ocpp.routing import after, on
    from ocpp.v16 import ChargePoint as ChargePoint16Base
    from ocpp.v201 import ChargePoint as ChargePoint201Base

    def validate_outgoing(action, payload, version):
        """Raise ``jsonschema.ValidationError`` when our own CALL breaks the OCPP JSON schema.

        In the calling thread on purpose: the library's own ``validate_payload`` hops to a thread
        executor, which costs milliseconds of GIL hand-over per message.
        """
        get_validator(MessageType.Call, action, version).validate(payload)


__all__ = ["ChargePoint16Base", "ChargePoint201Base", "OcppChargePoint", "after", "on", "validate_outgoing"]
