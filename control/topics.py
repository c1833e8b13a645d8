"""The MQTT topic scheme, versioned with the contract.

Charger events carry the charger id in the topic, so a broker ACL can confine each bridge (or
charger) to its own subtree and consumers can filter by charger without decoding payloads::

    flowbank/v1/ev/{charger_id}/{event_type}      bridge -> pipeline (QoS1)
    flowbank/v1/cmd/{charger_id}                  pipeline/front ends -> bridge (QoS1)
    flowbank/v1/cmdres/{charger_id}               bridge -> everyone (QoS1)
    flowbank/v1/setpoint/{site_id}/{charger_id}   pipeline decisions (QoS1)
    flowbank/v1/load/{site_id}                    building meters / HEMS -> pipeline (QoS1)
    flowbank/v1/alert/{site_id}/{charger_id}      pipeline -> notifiers (QoS1)
    flowbank/v1/live/{charger_id}/{connector_id}  live state, retained
    flowbank/v1/deadletter/{source}               unusable input with its reason (QoS1)

``-`` stands for "none" in a position that has no value (an alert that concerns no charger), so
it is not accepted as an id in a topic; nor are ``/``, ``+``, ``#`` or non-printable characters.
"""

from __future__ import annotations

from typing import Final

from control.contract import CONTRACT_VERSION, ContractError, Event

PREFIX: Final = f"flowbank/v{CONTRACT_VERSION}"
NONE: Final = "-"

EVENTS_ALL: Final = f"{PREFIX}/ev/+/+"
COMMANDS_ALL: Final = f"{PREFIX}/cmd/+"
COMMAND_RESULTS_ALL: Final = f"{PREFIX}/cmdres/+"
SETPOINTS_ALL: Final = f"{PREFIX}/setpoint/+/+"
LOAD_ALL: Final = f"{PREFIX}/load/+"
ALERTS_ALL: Final = f"{PREFIX}/alert/+/+"
LIVE_ALL: Final = f"{PREFIX}/live/+/+"
DEAD_LETTERS_ALL: Final = f"{PREFIX}/deadletter/+"


def _segment(value: str | None) -> str:
    if value is None:
        return NONE
    if (not isinstance(value, str) or not value or value == NONE or any(c in value for c in "/+#")
            or not value.isprintable()):
        raise ContractError(f"{value!r} cannot be used as a topic segment")
    return value


def event_topic(charger_id: str, event_type: str) -> str:
    return f"{PREFIX}/ev/{_segment(charger_id)}/{_segment(event_type)}"


def command_topic(charger_id: str) -> str:
    return f"{PREFIX}/cmd/{_segment(charger_id)}"


def command_result_topic(charger_id: str) -> str:
    return f"{PREFIX}/cmdres/{_segment(charger_id)}"


def setpoint_topic(site_id: str, charger_id: str) -> str:
    return f"{PREFIX}/setpoint/{_segment(site_id)}/{_segment(charger_id)}"


def load_topic(site_id: str) -> str:
    return f"{PREFIX}/load/{_segment(site_id)}"


def alert_topic(site_id: str | None, charger_id: str | None) -> str:
    return f"{PREFIX}/alert/{_segment(site_id)}/{_segment(charger_id)}"


def live_topic(charger_id: str, connector_id: int) -> str:
    if isinstance(connector_id, bool) or not isinstance(connector_id, int) or connector_id < 0:
        raise ContractError(f"connector_id {connector_id!r} must be an integer >= 0")
    return f"{PREFIX}/live/{_segment(charger_id)}/{connector_id}"


def dead_letter_topic(source: str) -> str:
    return f"{PREFIX}/deadletter/{_segment(source)}"


def topic_for(event: Event) -> str:
    """The topic an event is published on."""
    from control import contract as c

    match event:
        case c.Command():
            return command_topic(event.charger_id)
        case c.CommandResult():
            return command_result_topic(event.charger_id)
        case c.Setpoint():
            return setpoint_topic(event.site_id, event.charger_id)
        case c.BuildingLoad():
            return load_topic(event.site_id)
        case c.Alert():
            return alert_topic(event.site_id, event.charger_id)
        case c.DeadLetter():
            return dead_letter_topic(event.source)
        case _:
            return event_topic(event.charger_id, event.TYPE)


# kind -> (number of segments after the prefix, index of the charger id among them)
_CHARGER_POSITION: Final = {
    "ev": (3, 1), "cmd": (2, 1), "cmdres": (2, 1), "live": (3, 1), "setpoint": (3, 2), "alert": (3, 2),
}


def charger_from_topic(topic: str) -> str | None:
    """The charger id of a charger-scoped topic of this version, or None."""
    prefix, _, rest = topic.partition(f"{PREFIX}/")
    if prefix:
        return None
    parts = rest.split("/")
    shape = _CHARGER_POSITION.get(parts[0])
    if shape is None or len(parts) != shape[0]:
        return None
    charger_id = parts[shape[1]]
    if not charger_id or charger_id == NONE or any(c in charger_id for c in "+#"):
        return None
    return charger_id
