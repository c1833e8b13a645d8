"""The charger timeline's items, from records to one time axis (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dashboards.support_records import Lane, Tone, timeline_items
from warehouse.support_store import CommandEntry, ConnectionChange, Frame, StatusChange

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
END = T0 + timedelta(hours=2)


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_status_changes_last_until_the_next_one_of_the_same_connector() -> None:
    items = timeline_items(end=END, status=[
        StatusChange(_at(0), 1, "Available", "NoError", None, None),
        StatusChange(_at(5), 2, "Charging", None, None, None),
        StatusChange(_at(10), 1, "Faulted", "GroundFailure", "E42", "RCD tripped"),
    ])
    spans = [(i.label, i.start, i.end) for i in items if i.lane is Lane.STATUS]
    assert spans == [("Available", _at(0), _at(10)), ("Charging", _at(5), END), ("Faulted", _at(10), END)]
    errors = [i for i in items if i.lane is Lane.ERRORS]
    assert [(e.label, e.end, e.tone) for e in errors] == [("GroundFailure", None, Tone.ERROR)]
    assert "vendor E42" in errors[0].detail
    assert next(i for i in items if i.label == "Faulted").detail == "connector 1 · RCD tripped"


def test_commands_connections_and_frames_sorted_on_one_axis() -> None:
    items = timeline_items(
        end=END,
        commands=[CommandEntry("c1", "reset", _at(30), "u-1", {"type": "hard"}, _at(31), "rejected", "Rejected", None),
                  CommandEntry("c2", "trigger", _at(20), None, {}, None, None, None, None)],
        connections=[ConnectionChange(_at(25), "disconnected", "timeout")],
        frames=[Frame(_at(1), "in", "[2,\"1\",\"Heartbeat\",{}]")])
    assert [i.lane for i in items] == [Lane.FRAMES, Lane.COMMANDS, Lane.CONNECTION, Lane.COMMANDS]
    pending, reset = items[1], items[3]
    assert (pending.detail, pending.tone) == ("no result yet", Tone.INFO)
    assert (reset.end, reset.tone) == (_at(31), Tone.WARN)
    assert reset.detail == "rejected (Rejected) · by u-1"
    assert items[2].tone is Tone.WARN
