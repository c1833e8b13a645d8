"""The MQTT topic scheme: one topic per event, charger ids recoverable, filters that match."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from control import contract as c
from control import topics as t
from control.contract import EVENT_TYPES, MAX_ID_LENGTH, ContractError

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)

SAMPLES: dict[str, Any] = {
    "meter_sample": c.MeterSample("CP-1", 1, T0, power_w=7200.0),
    "status_changed": c.StatusChanged("CP-1", 2, T0, c.ConnectorState.CHARGING),
    "transaction": c.TransactionEvent("CP-1", 1, T0, c.TransactionKind.STARTED, "tx-1"),
    "connection": c.ConnectionEvent("CP-1", T0, c.ConnectionKind.CONNECTED, c.OcppVersion.V201),
    "charger_info": c.ChargerInfo("CP-1", T0, "ACME", "Wallbox 11"),
    "notice": c.ChargerNotice("CP-1", T0, c.NoticeKind.FIRMWARE_STATUS, "Installed"),
    "charging_limit": c.ChargingLimit("CP-1", T0, c.ChargingLimitSource.SO, connector_id=1),
    "command": c.Command("cmd-1", "CP-1", c.CommandKind.SET_LIMIT, T0, T0 + timedelta(minutes=1)),
    "command_result": c.CommandResult("cmd-1", "CP-1", T0, c.CommandOutcome.ACCEPTED),
    "setpoint": c.Setpoint("d-1", "site-1", "CP-1", 0, T0, 16.0, c.RateUnit.AMPS, "fair share"),
    "building_load": c.BuildingLoad("site-1", T0, 4200.0),
    "alert": c.Alert("a-1", "offline", c.Severity.WARNING, T0, "CP-1 offline", site_id="site-1", charger_id="CP-1"),
    "dead_letter": c.DeadLetter(T0, "bridge", "not JSON", "{", charger_id="CP-1"),
}

# (expected topic, the filter it belongs to, the charger id charger_from_topic must give back)
EXPECTED: dict[str, tuple[str, str, str | None]] = {
    "meter_sample": ("flowbank/v1/ev/CP-1/meter_sample", t.EVENTS_ALL, "CP-1"),
    "status_changed": ("flowbank/v1/ev/CP-1/status_changed", t.EVENTS_ALL, "CP-1"),
    "transaction": ("flowbank/v1/ev/CP-1/transaction", t.EVENTS_ALL, "CP-1"),
    "connection": ("flowbank/v1/ev/CP-1/connection", t.EVENTS_ALL, "CP-1"),
    "charger_info": ("flowbank/v1/ev/CP-1/charger_info", t.EVENTS_ALL, "CP-1"),
    "notice": ("flowbank/v1/ev/CP-1/notice", t.EVENTS_ALL, "CP-1"),
    "charging_limit": ("flowbank/v1/ev/CP-1/charging_limit", t.EVENTS_ALL, "CP-1"),
    "command": ("flowbank/v1/cmd/CP-1", t.COMMANDS_ALL, "CP-1"),
    "command_result": ("flowbank/v1/cmdres/CP-1", t.COMMAND_RESULTS_ALL, "CP-1"),
    "setpoint": ("flowbank/v1/setpoint/site-1/CP-1", t.SETPOINTS_ALL, "CP-1"),
    "building_load": ("flowbank/v1/load/site-1", t.LOAD_ALL, None),
    "alert": ("flowbank/v1/alert/site-1/CP-1", t.ALERTS_ALL, "CP-1"),
    # The dead-letter topic is keyed by source; the charger id travels in the payload only.
    "dead_letter": ("flowbank/v1/deadletter/bridge", t.DEAD_LETTERS_ALL, None),
}

ALL_FILTERS = {
    "EVENTS_ALL": t.EVENTS_ALL, "COMMANDS_ALL": t.COMMANDS_ALL, "COMMAND_RESULTS_ALL": t.COMMAND_RESULTS_ALL,
    "SETPOINTS_ALL": t.SETPOINTS_ALL, "LOAD_ALL": t.LOAD_ALL, "ALERTS_ALL": t.ALERTS_ALL,
    "LIVE_ALL": t.LIVE_ALL, "DEAD_LETTERS_ALL": t.DEAD_LETTERS_ALL,
}

topic_ids = st.text(
    alphabet=st.characters(categories=("L", "M", "N", "P", "S"), exclude_characters="/+#"),
    min_size=1, max_size=MAX_ID_LENGTH,
).filter(lambda s: s != t.NONE)


def test_every_event_type_has_a_sample() -> None:
    assert set(SAMPLES) == set(EVENT_TYPES) == set(EXPECTED)
    for name, event in SAMPLES.items():
        assert event.TYPE == name


@pytest.mark.parametrize("type_name", sorted(EVENT_TYPES))
def test_every_event_type_maps_to_its_topic(type_name: str) -> None:
    event = SAMPLES[type_name]
    topic, topic_filter, charger_id = EXPECTED[type_name]
    assert t.topic_for(event) == topic
    assert topic.startswith("flowbank/v1/")
    assert t.PREFIX == f"flowbank/v{c.CONTRACT_VERSION}"
    if charger_id is not None:
        assert charger_id in topic.split("/")
    assert t.charger_from_topic(topic) == charger_id
    assert topic_matches_sub(topic_filter, topic)
    matching = [name for name, f in ALL_FILTERS.items() if topic_matches_sub(f, topic)]
    assert len(matching) == 1, f"{topic} is matched by {matching}"


def test_alert_without_site_or_charger_uses_the_none_marker() -> None:
    alert = c.Alert("a-1", "disk_full", c.Severity.CRITICAL, T0, "disk full")
    assert t.topic_for(alert) == "flowbank/v1/alert/-/-"
    assert t.charger_from_topic("flowbank/v1/alert/-/-") is None
    assert t.alert_topic("site-1", None) == "flowbank/v1/alert/site-1/-"
    assert topic_matches_sub(t.ALERTS_ALL, t.alert_topic(None, "CP-1"))


def test_live_topic() -> None:
    topic = t.live_topic("CP-1", 2)
    assert topic == "flowbank/v1/live/CP-1/2"
    assert t.charger_from_topic(topic) == "CP-1"
    assert topic_matches_sub(t.LIVE_ALL, topic)


CHARGER_SCOPED: list[tuple[str, Callable[[str], str]]] = [
    ("event", lambda cid: t.event_topic(cid, "meter_sample")),
    ("command", t.command_topic),
    ("command_result", t.command_result_topic),
    ("setpoint", lambda cid: t.setpoint_topic("site-1", cid)),
    ("alert", lambda cid: t.alert_topic("site-1", cid)),
    ("live", lambda cid: t.live_topic(cid, 1)),
]


@pytest.mark.parametrize(("kind", "build"), CHARGER_SCOPED, ids=[k for k, _ in CHARGER_SCOPED])
@settings(max_examples=50, deadline=None)
@given(charger_id=topic_ids)
def test_charger_from_topic_inverts_every_charger_scoped_topic(
        kind: str, build: Callable[[str], str], charger_id: str) -> None:
    topic = build(charger_id)
    assert topic.split("/")[:2] == ["flowbank", "v1"]
    assert t.charger_from_topic(topic) == charger_id
    assert sum(topic_matches_sub(f, topic) for f in ALL_FILTERS.values()) == 1


@pytest.mark.parametrize("topic", [
    "",
    "flowbank",
    "flowbank/v1",
    "flowbank/v1/",
    "flowbank/v1/cmd",
    "flowbank/v1/cmd/",  # empty charger segment
    "flowbank/v1/cmd/CP-1/extra",
    "flowbank/v1/ev/CP-1",  # ev needs the event type too
    "flowbank/v1/ev/CP-1/meter_sample/extra",
    "flowbank/v1/setpoint/site-1",
    "flowbank/v1/alert/site-1/-",
    "flowbank/v1/load/site-1",
    "flowbank/v1/deadletter/bridge",
    "flowbank/v1/unknown/CP-1",
    "flowbank/v2/cmd/CP-1",  # another major version has its own scheme
    "other/v1/cmd/CP-1",
    "other/v1/alert/site-1/CP-1",
    "prefix/flowbank/v1/cmd/CP-1",
    "flowbank/v1/ev/+/+",  # a filter, not a topic
    "flowbank/v1/cmd/#",
])
def test_charger_from_topic_returns_none_for_other_topics(topic: str) -> None:
    assert t.charger_from_topic(topic) is None


BAD_SEGMENTS = ["", "a/b", "a+b", "+", "#", "CP#1", "-", "a\x00b", "a\nb"]
BUILDERS: list[tuple[str, Callable[[str], str]]] = [
    ("event charger", lambda v: t.event_topic(v, "meter_sample")),
    ("event type", lambda v: t.event_topic("CP-1", v)),
    ("command", t.command_topic),
    ("command_result", t.command_result_topic),
    ("setpoint site", lambda v: t.setpoint_topic(v, "CP-1")),
    ("setpoint charger", lambda v: t.setpoint_topic("site-1", v)),
    ("load", t.load_topic),
    ("alert site", lambda v: t.alert_topic(v, "CP-1")),
    ("alert charger", lambda v: t.alert_topic("site-1", v)),
    ("live", lambda v: t.live_topic(v, 1)),
    ("dead letter", t.dead_letter_topic),
]


@pytest.mark.parametrize("segment", BAD_SEGMENTS)
@pytest.mark.parametrize(("builder_name", "build"), BUILDERS, ids=[n for n, _ in BUILDERS])
def test_bad_segments_are_rejected(builder_name: str, build: Callable[[str], str], segment: str) -> None:
    with pytest.raises(ContractError, match="cannot be used as a topic segment"):
        build(segment)


@pytest.mark.parametrize("connector_id", [-1, True, "1", 1.0])
def test_live_topic_rejects_bad_connector_ids(connector_id: Any) -> None:
    with pytest.raises(ContractError, match="connector_id"):
        t.live_topic("CP-1", connector_id)


def test_topic_for_refuses_an_event_whose_id_is_the_none_marker() -> None:
    # "-" is a valid contract id, but on the wire it would read as "no charger".
    with pytest.raises(ContractError, match="cannot be used as a topic segment"):
        t.topic_for(c.CommandResult("cmd-1", "-", T0, c.CommandOutcome.FAILED))


def _is_valid_filter(topic_filter: str) -> bool:
    """MQTT 3.1.1/5 §4.7: '+' fills a whole level, '#' only the whole last level; no NUL; 1..65535 bytes."""
    if not 0 < len(topic_filter.encode()) <= 65535 or "\x00" in topic_filter:
        return False
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


@pytest.mark.parametrize(("name", "topic_filter"), sorted(ALL_FILTERS.items()))
def test_wildcard_constants_are_valid_filters_under_the_prefix(name: str, topic_filter: str) -> None:
    assert _is_valid_filter(topic_filter)
    assert topic_filter.startswith(t.PREFIX + "/")
    assert "#" not in topic_filter  # each filter selects exactly one kind of topic
    assert not topic_matches_sub(topic_filter, "flowbank/v2" + topic_filter.removeprefix(t.PREFIX).replace("+", "x"))


def test_filter_check_itself() -> None:
    assert _is_valid_filter("a/+/#")
    assert not _is_valid_filter("a/b+/c")
    assert not _is_valid_filter("a/#/c")
    assert not _is_valid_filter("")
