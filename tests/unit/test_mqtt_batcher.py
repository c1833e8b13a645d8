"""The MQTT source's batching: full batches at once, partial ones after the window, order kept."""

from __future__ import annotations

import queue
from datetime import UTC, datetime, timedelta

from pipelines.mqtt_source import Batcher, MqttMessage

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
WINDOW = timedelta(milliseconds=100)
IDLE = timedelta(milliseconds=10)


def _queue(*offsets_ms: int) -> queue.SimpleQueue[tuple[MqttMessage, int]]:
    q: queue.SimpleQueue[tuple[MqttMessage, int]] = queue.SimpleQueue()
    for mid, offset in enumerate(offsets_ms, start=1):
        q.put((MqttMessage("t", b"{}", T0 + timedelta(milliseconds=offset)), mid))
    return q


def test_nothing_queued_asks_again_after_the_idle_wait() -> None:
    batcher = Batcher(max_batch=10, window=WINDOW, idle_wait=IDLE)
    assert batcher.take(_queue(), T0) == ([], T0 + IDLE)


def test_a_partial_batch_waits_for_the_window_of_its_oldest_message() -> None:
    batcher = Batcher(max_batch=10, window=WINDOW, idle_wait=IDLE)
    q = _queue(0, 5)
    batch, wake = batcher.take(q, T0 + timedelta(milliseconds=5))
    assert batch == [] and wake == T0 + timedelta(milliseconds=15)  # keeps draining meanwhile
    q.put((MqttMessage("t", b"{}", T0 + timedelta(milliseconds=60)), 3))
    batch, wake = batcher.take(q, T0 + timedelta(milliseconds=95))
    assert batch == [] and wake == T0 + WINDOW  # the deadline comes before the next idle wake-up
    batch, wake = batcher.take(q, T0 + WINDOW)
    assert [mid for _, mid in batch] == [1, 2, 3] and wake is None
    assert batcher.take(q, T0 + WINDOW) == ([], T0 + WINDOW + IDLE)  # handed over once


def test_a_full_batch_goes_at_once_and_the_rest_keeps_its_own_deadline() -> None:
    batcher = Batcher(max_batch=3, window=WINDOW, idle_wait=IDLE)
    q = _queue(0, 1, 2, 3, 50)
    batch, wake = batcher.take(q, T0 + timedelta(milliseconds=50))
    assert [mid for _, mid in batch] == [1, 2, 3] and wake is None
    batch, wake = batcher.take(q, T0 + timedelta(milliseconds=50))
    assert batch == [] and wake == T0 + timedelta(milliseconds=60)
    batch, _ = batcher.take(q, T0 + timedelta(milliseconds=103))
    assert [mid for _, mid in batch] == [4, 5]


def test_a_zero_window_hands_over_whatever_has_arrived() -> None:
    batcher = Batcher(max_batch=100, window=timedelta(0), idle_wait=IDLE)
    batch, wake = batcher.take(_queue(0, 1), T0 + timedelta(milliseconds=1))
    assert [mid for _, mid in batch] == [1, 2] and wake is None


def test_an_urgent_topic_hands_the_batch_over_at_once() -> None:
    batcher = Batcher(max_batch=100, window=WINDOW, idle_wait=IDLE, urgent_prefixes=("flowbank/v1/load/",))
    q = _queue(0, 1)
    assert batcher.take(q, T0 + timedelta(milliseconds=2))[0] == []
    q.put((MqttMessage("flowbank/v1/load/site-1", b"{}", T0 + timedelta(milliseconds=3)), 3))
    batch, wake = batcher.take(q, T0 + timedelta(milliseconds=3))
    assert [mid for _, mid in batch] == [1, 2, 3] and wake is None
    q.put((MqttMessage("t", b"{}", T0 + timedelta(milliseconds=4)), 4))
    assert batcher.take(q, T0 + timedelta(milliseconds=5))[0] == []  # the next batch waits again
