"""Alerts in the stream: the Bytewax adapters around :mod:`control.alert_rules` and
:mod:`control.alerts`, and the sink that stores and publishes them.

* :class:`AlertLogic` (keyed by charger): the charger's events, its session records, its site
  and its departures in; :class:`~control.alerts.AlertChange` and
  :class:`~control.alerts.FaultSeen` out. Its timer (``notify_at``) fires while the charger is
  silent: that is how an offline charger is noticed.
* :class:`SpikeLogic` (keyed by ``site:<id>`` / ``model:<vendor model>``): the faults of many
  chargers in, error-spike alerts out.
* :class:`AlertSink`: each batch stored (``warehouse.alert_store.AlertWriter``: the alert row and
  its transitions, one transaction), then published on ``flowbank/v1/alert/<site>/<charger>``
  (QoS1), so a notifier never hears of an alert the store does not have. At least once: the
  ids are derived, a replay stores nothing new (a notifier may see a message twice).

After a restart from a recovery snapshot the silence timers start again (``resumed``): the
downtime is not taken for every charger going offline.

Latency: an alert's ``ts`` is the time of its event (or timer deadline) and the store stamps
``alert_transitions.recorded_at``; their difference is the detection-to-stored latency.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from bytewax.operators import StatefulLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from control import contract as c
from control.alert_rules import (
    ChargerWatch,
    DepartureUpdate,
    SiteAssignment,
    alert_deadline,
    alert_step,
    alert_timer,
    resumed,
)
from control.alerts import (
    AlertChange,
    AlertConfig,
    FaultSeen,
    SpikeState,
    spike_deadline,
    spike_idle,
    spike_step,
    spike_timer,
)
from control.settings import MqttEndpoint
from control.topics import alert_topic
from pipelines.load_control import Placement, SiteConfigUpdate
from warehouse.tsdb_writer import PermanentWriteError, RetryableWriteError

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class AlertLogic(StatefulLogic[Any, Any, ChargerWatch]):
    """Bytewax adapter around :func:`control.alert_rules.alert_step` / ``alert_timer`` (one per charger)."""

    def __init__(self, resume: ChargerWatch | None, config: AlertConfig, clock: Clock) -> None:
        self._state = None if resume is None else resumed(resume, clock())
        self._config = config
        self._clock = clock

    def on_item(self, value: Any) -> tuple[Iterable[Any], bool]:
        self._state, out = alert_step(self._state, value, self._clock(), self._config)
        return out, StatefulLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[Any], bool]:
        if self._state is None:
            return [], StatefulLogic.DISCARD
        self._state, out = alert_timer(self._state, self._clock(), self._config)
        return out, StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Any], bool]:
        return [], StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return None if self._state is None else alert_deadline(self._state, self._config)

    def snapshot(self) -> ChargerWatch:
        assert self._state is not None  # noqa: S101 - set by the first item
        return copy.deepcopy(self._state)  # small: a few connectors and the open alerts


class SpikeLogic(StatefulLogic[tuple[str, FaultSeen], AlertChange, SpikeState]):
    """Bytewax adapter around :func:`control.alerts.spike_step` (one per site or charger model)."""

    def __init__(self, resume: SpikeState | None, config: AlertConfig, clock: Clock) -> None:
        self._state = resume
        self._config = config
        self._clock = clock

    def on_item(self, value: tuple[str, FaultSeen]) -> tuple[Iterable[AlertChange], bool]:
        group, fault = value
        self._state, out = spike_step(self._state, group, fault, self._clock(), self._config)
        return out, StatefulLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[AlertChange], bool]:
        if self._state is None:
            return [], StatefulLogic.DISCARD
        self._state, out = spike_timer(self._state, self._clock(), self._config)
        return out, spike_idle(self._state)

    def on_eof(self) -> tuple[Iterable[AlertChange], bool]:
        return [], StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return None if self._state is None else spike_deadline(self._state, self._config)

    def snapshot(self) -> SpikeState:
        assert self._state is not None  # noqa: S101 - set by the first item
        return copy.deepcopy(self._state)


def watch_inputs(item: Any) -> list[SiteAssignment | DepartureUpdate]:
    """The configuration items the alert watch needs, per charger: its site, its departures."""
    if isinstance(item, Placement):
        return [SiteAssignment(item.charger_id, item.site_id)]
    if isinstance(item, SiteConfigUpdate) and item.config is not None:
        by_charger: dict[str, list[tuple[int, Any]]] = {ch.charger_id: [] for ch in item.config.site.chargers}
        for (charger_id, connector_id), departure in sorted(item.config.departures.items()):
            by_charger.setdefault(charger_id, []).append((connector_id, departure))
        return [DepartureUpdate(cid, tuple(deps)) for cid, deps in sorted(by_charger.items())]
    return []


def fault_groups(item: Any) -> list[tuple[str, FaultSeen]]:
    """A FaultSeen once for each group it counts in (its site, its charger model)."""
    return [(group, item) for group in item.groups()] if isinstance(item, FaultSeen) else []


# --------------------------------------------------------------------------- the sink


Publish = Callable[[str, bytes], None]


class _AlertPartition(StatelessSinkPartition[AlertChange]):
    def __init__(self, store: Callable[[Sequence[AlertChange]], int] | None, publish: Publish | None,
                 close: Callable[[], None], max_backoff_s: float) -> None:
        self._store, self._publish, self._close = store, publish, close
        self._max_backoff_s = max_backoff_s

    def write_batch(self, items: list[AlertChange]) -> None:
        if self._store is not None:
            self._write(items)
        if self._publish is not None:
            for change in items:
                self._publish(alert_topic(change.alert.site_id, change.alert.charger_id), c.encode(change.alert))

    def _write(self, items: list[AlertChange]) -> None:
        assert self._store is not None  # noqa: S101 - checked by the caller
        backoff = 0.5
        while True:
            try:
                self._store(items)
                return
            except RetryableWriteError as exc:
                log.warning("alert store unavailable (%s); retrying in %.1f s", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
            except PermanentWriteError:
                if len(items) == 1:
                    raise
                for item in items:  # find the culprit without losing the rest
                    self._write([item])
                return

    def close(self) -> None:
        self._close()


class AlertSink(DynamicSink[AlertChange]):
    """Stores (PostgreSQL, when ``dsn``) then publishes (MQTT, when ``mqtt``) every alert change."""

    def __init__(self, dsn: str | None, mqtt: MqttEndpoint | None, client_prefix: str, *,
                 max_backoff_s: float = 10.0) -> None:
        self._dsn, self._mqtt, self._prefix, self._max_backoff_s = dsn, mqtt, client_prefix, max_backoff_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _AlertPartition:
        from pipelines.sinks import _publishing_client
        from warehouse.alert_store import AlertWriter

        writer = AlertWriter(self._dsn) if self._dsn else None
        client = _publishing_client(self._mqtt, f"{self._prefix}-alerts-{worker_index}") if self._mqtt else None

        def publish(topic: str, payload: bytes) -> None:
            assert client is not None  # noqa: S101 - only built with a client
            client.publish(topic, payload, qos=1)  # paho queues while disconnected: none dropped

        def close() -> None:
            if writer is not None:
                writer.close()
            if client is not None:
                client.disconnect()
                client.loop_stop()

        return _AlertPartition(writer.write if writer else None, publish if client else None, close,
                               self._max_backoff_s)
