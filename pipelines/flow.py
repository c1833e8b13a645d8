"""The FlowBankOS dataflow: MQTT events in; sessions, live state and clean history out.

    python -m bytewax.run "pipelines.flow:build_flow()"                   # 1 worker
    python -m bytewax.run "pipelines.flow:build_flow()" -w 2              # 2 worker threads
    python -m bytewax.run "pipelines.flow:build_flow()" -i 0 -a "h1:2101;h2:2101"   # a cluster
    flowbank pipeline                                                     # the same, with recovery

Shape::

    mqtt ─ decode ─┬─ ok ─┬─ charger events ─ key by charger ─ sessions (state, timers) ─┐
                   │      ├─ everything storable ──────────────────────────────────────────┼─ TimescaleDB (all workers)
                   │      │                                                                ├─ Parquet lake (one writer)
                   │      │                                                                └─ live state (retained MQTT)
                   │      └─ charger events ─ route to site ─┐
                   │         building loads ─────────────────┼─ key by site ─ control (decide, compliance, timers)
    PostgreSQL config (sites, modes, limits) ─ placements ───┘        ├─ setpoints, audit, compliance, alerts ─ stores
                   │                                                  └─ commands (MQTT) ─ bridge ─ SetChargingProfile
                   │      └─ charger events, session records, placements, departures ─ key by charger ─ alerts
                   │         (rules, timers) ─ faults by site/model ─ error spikes ─┬─ PostgreSQL (alert + transitions)
                   │         load management's alerts ──────────────────────────────┴─ MQTT flowbank/v1/alert/...
                   └─ errors (dead letters) ─ stores

The step logic lives in plain functions (:mod:`pipelines.decode`, :mod:`pipelines.sessions`);
this module only wires them. Time comes from ``clock`` so tests can drive it.
"""

from __future__ import annotations

import copy
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import FixedPartitionedSource, Source
from bytewax.operators import StatefulLogic
from bytewax.outputs import Sink

from control import contract as c
from control import records as r
from control.alerts import AlertChange, AlertConfig, external_change
from control.records import ComplianceCheck, ControlDecision
from control.settings import Settings
from control.topics import COMMAND_RESULTS_ALL, DEAD_LETTERS_ALL, EVENTS_ALL, LOAD_ALL, PREFIX
from pipelines.alerts import AlertLogic, SpikeLogic, fault_groups, watch_inputs
from pipelines.decode import Decoded, decode_message
from pipelines.inputs import MergedSource, is_primary, untag
from pipelines.load_control import (
    ROUTED_EVENTS,
    ControlConfig,
    Placement,
    Routed,
    RouteState,
    SiteConfigUpdate,
    SiteControl,
    control_step,
    next_wakeup,
    route,
)
from pipelines.load_control import on_timer as control_timer
from pipelines.mqtt_source import MqttMessage, MqttSource
from pipelines.sessions import ChargerState, SessionConfig, next_deadline, on_timer, placed, step

Clock = Callable[[], datetime]

# Events that belong to one charger's story and go through the session logic.
CHARGER_EVENTS = (c.MeterSample, c.StatusChanged, c.TransactionEvent, c.ConnectionEvent, c.ChargerInfo,
                  c.ChargerNotice)
# Messages that load management reacts to within its latency budget: the source hands them over
# at once instead of holding them for a fuller batch (building loads, command results).
URGENT_TOPICS = (f"{PREFIX}/load/", f"{PREFIX}/cmdres/")
# Contract events stored as they are (raw history).
# (Meter samples are stored from the session step's output, next to their quality verdict.)
STORED_EVENTS = (c.StatusChanged, c.ConnectionEvent, c.ChargerInfo, c.DeadLetter,
                 c.CommandResult, c.Setpoint, c.Alert, c.BuildingLoad)
# What the control step derives and the warehouse stores.
CONTROL_RECORDS = (c.Setpoint, c.Alert, ControlDecision, ComplianceCheck)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SessionLogic(StatefulLogic[c.Event, Any, ChargerState]):
    """Bytewax adapter around :func:`pipelines.sessions.step` / ``on_timer`` (one per charger)."""

    def __init__(self, resume: ChargerState | None, config: SessionConfig, clock: Clock) -> None:
        self._state = resume
        self._config = config
        self._clock = clock

    def on_item(self, value: c.Event) -> tuple[Iterable[Any], bool]:
        self._state, out = step(self._state, value, now=self._clock(), config=self._config)
        if isinstance(value, c.MeterSample):
            # The raw sample travels with its verdict, ahead of it, so the store sees the row
            # before (usually in the same batch as) the quality flags that update it.
            return [placed(value, out), *out], self._state is None
        return out, self._state is None

    def on_notify(self) -> tuple[Iterable[Any], bool]:
        if self._state is None:
            return [], StatefulLogic.DISCARD
        self._state, out = on_timer(self._state, now=self._clock(), config=self._config)
        return out, self._state is None

    def on_eof(self) -> tuple[Iterable[Any], bool]:
        return [], self._state is None

    def notify_at(self) -> datetime | None:
        return None if self._state is None else next_deadline(self._state, self._config)

    def snapshot(self) -> ChargerState:
        assert self._state is not None  # noqa: S101 - Bytewax never snapshots a discarded key
        # step()/on_timer() update the state in place; Bytewax pickles the snapshot later.
        return copy.deepcopy(self._state)


class RouteLogic(StatefulLogic[Any, Routed, RouteState]):
    """Bytewax adapter around :func:`pipelines.load_control.route` (one per charger)."""

    def __init__(self, resume: RouteState | None) -> None:
        self._state = resume

    def on_item(self, value: Any) -> tuple[Iterable[Routed], bool]:
        self._state, out = route(self._state, value)
        # A charger on no site with nothing held keeps no state (nothing to snapshot every epoch).
        idle = self._state.site_id is None and not self._state.held
        return out, StatefulLogic.DISCARD if idle else StatefulLogic.RETAIN

    def snapshot(self) -> RouteState:
        assert self._state is not None  # noqa: S101 - set by the first item
        # The held events are immutable: a copy of the dict is a consistent snapshot.
        return RouteState(self._state.site_id, dict(self._state.held))


class ControlLogic(StatefulLogic[Any, Any, SiteControl]):
    """Bytewax adapter around :func:`pipelines.load_control.control_step` (one per site)."""

    def __init__(self, resume: SiteControl | None, config: ControlConfig, clock: Clock) -> None:
        self._state = resume
        self._config = config
        self._clock = clock

    def on_item(self, value: Any) -> tuple[Iterable[Any], bool]:
        self._state, out = control_step(self._state, value, self._clock(), self._config)
        return out, StatefulLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[Any], bool]:
        if self._state is None:
            return [], StatefulLogic.DISCARD
        self._state, out = control_timer(self._state, self._clock(), self._config)
        return out, StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Any], bool]:
        return [], StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return None if self._state is None else next_wakeup(self._state, self._config)

    def snapshot(self) -> SiteControl:
        assert self._state is not None  # noqa: S101 - set by the first item
        return self._state.snapshot()


@dataclass(frozen=True)
class FlowParts:
    """What a flow is built from; tests swap sources and sinks for bytewax.testing ones."""

    source: Source[MqttMessage]
    timescale: Sink[Any]
    lake: Sink[tuple[str, Any]] | None
    live: Sink[r.LiveState] | None
    lake_tick: Source[Any] | None = None  # wakes the lake writer while no data flows
    control_config: Source[Any] | None = None  # sites, modes, operator limits: load management on
    commands: Sink[c.Command] | None = None  # where the control step's commands go (the bridge)
    alerts: Sink[AlertChange] | None = None  # alerts on: detected here, stored and published by this sink
    alert_config: AlertConfig = field(default_factory=AlertConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    config: SessionConfig = field(default_factory=SessionConfig)
    clock: Clock = _utc_now


def build_dataflow(parts: FlowParts, name: str = "flowbank") -> Dataflow:
    flow = Dataflow(name)
    messages, secondary = _inputs(flow, parts)
    decoded = op.map("decode", messages, lambda m: decode_message(m.topic, m.payload, m.received_at))
    split = op.branch("valid", decoded, lambda d: d.event is not None)
    events = op.map("event", split.trues, _event_of)
    errors = op.map("dead_letter", split.falses, _error_of)

    charger_events = op.filter("charger_events", events, lambda e: isinstance(e, CHARGER_EVENTS))
    keyed = op.key_on("by_charger", charger_events, _charger_key)
    derived = op.stateful("sessions", keyed, lambda resume: SessionLogic(resume, parts.config, parts.clock))
    derived_values = op.map("unkey", derived, lambda kv: kv[1])
    if parts.live is not None:  # first: Timely runs operators in the order they were made, and the
        # live state is what people watch (it need not wait for the batch's TimescaleDB transaction)
        live = op.filter_map("live", derived_values, lambda v: v if isinstance(v, r.LiveState) else None)
        op.output("live_state", live, parts.live)

    stored = op.filter("stored", events, lambda e: isinstance(e, STORED_EVENTS))
    to_store = op.merge("to_store", stored, errors, derived_values)
    config_items = secondary.get("control_config")
    control_out = None
    if config_items is not None:
        control_out = _control(flow, parts, events, config_items)
        # With alerts on, load management's alerts are stored (with their transitions) by the alert sink.
        alerting = parts.alerts is not None
        records = op.filter("control_records", control_out, lambda v: isinstance(v, CONTROL_RECORDS)
                            and not (alerting and isinstance(v, c.Alert)))
        to_store = op.merge("to_store_with_control", to_store, records)
        if parts.commands is not None:
            commands = op.filter_map("commands", control_out, lambda v: v if isinstance(v, c.Command) else None)
            op.output("command_out", commands, parts.commands)
    op.output("timescale", to_store, parts.timescale)
    lake_items = to_store
    if parts.alerts is not None:
        alert_changes = _alerts(flow, parts, charger_events, derived_values, config_items, control_out)
        op.output("alerts", alert_changes, parts.alerts)
        lake_items = op.merge("lake_with_alerts", to_store, op.map("alert_records", alert_changes, lambda a: a.alert))
    if parts.lake is not None:
        if "lake_tick" in secondary:
            lake_items = op.merge("lake_items", lake_items, secondary["lake_tick"])
        op.output("lake", op.key_on("lake_key", lake_items, lambda _: "lake"), parts.lake)
    return flow


def _inputs(flow: Dataflow, parts: FlowParts) -> tuple[Stream[Any], dict[str, Stream[Any]]]:
    """The MQTT messages and the other inputs by name (``control_config``, ``lake_tick``).

    One Bytewax input for all of them (all are fixed-partitioned, in production and in tests):
    separate inputs drift apart at every epoch and the MQTT messages wait for the others (see
    :mod:`pipelines.inputs`)."""
    others: dict[str, Source[Any]] = {}
    if parts.control_config is not None:
        others["control_config"] = parts.control_config
    if parts.lake is not None and parts.lake_tick is not None:
        others["lake_tick"] = parts.lake_tick
    if not others:
        return op.input("mqtt", flow, parts.source), {}
    fixed = {n: s for n, s in {"mqtt": parts.source, **others}.items() if isinstance(s, FixedPartitionedSource)}
    if len(fixed) != len(others) + 1:
        raise TypeError("the flow's sources must be fixed-partitioned: they share one input")
    split = op.branch("inputs_split", op.input("inputs", flow, MergedSource(fixed)), is_primary)
    streams: dict[str, Stream[Any]] = {}
    for name in others:
        mine = op.filter(f"{name}_tagged", split.falses, _from_source(name))
        streams[name] = op.map(f"{name}_items", mine, untag)
    return split.trues, streams


def _from_source(name: str) -> Callable[[Any], bool]:
    return lambda tagged: bool(tagged.source == name)


def _control(flow: Dataflow, parts: FlowParts, events: Stream[c.Event], config_items: Stream[Any]) -> Stream[Any]:
    placements = op.key_on("placement_key", op.filter("placements", config_items,
                                                       lambda i: isinstance(i, Placement)), lambda p: p.charger_id)
    site_configs = op.key_on("site_config_key", op.filter("site_configs", config_items,
                                                          lambda i: isinstance(i, SiteConfigUpdate)),
                             lambda u: u.site_id)
    routable = op.key_on("routable_key", op.filter("routable", events, lambda e: isinstance(e, ROUTED_EVENTS)),
                         _charger_key)
    routed = op.stateful("route", op.merge("route_in", placements, routable), lambda resume: RouteLogic(resume))
    routed_events = op.key_on("routed_key", op.map("routed", routed, lambda kv: kv[1]), lambda r: r.site_id)
    loads = op.key_on("load_key", op.filter("loads", events, lambda e: isinstance(e, c.BuildingLoad)),
                      lambda e: str(getattr(e, "site_id")))  # noqa: B009
    control_in = op.merge("control_in", site_configs, routed_events, loads)
    decided = op.stateful("control", control_in,
                          lambda resume: ControlLogic(resume, parts.control, parts.clock))
    return op.map("control_out", decided, lambda kv: kv[1])


def _alerts(flow: Dataflow, parts: FlowParts, charger_events: Stream[c.Event], derived: Stream[Any],
            config_items: Stream[Any] | None, control_out: Stream[Any] | None) -> Stream[AlertChange]:
    """Per charger: events, session records, site and departures -> alert changes and faults; the
    faults per site and charger model -> error spikes; load management's alerts joined in."""
    inputs = [charger_events, op.filter("alert_sessions", derived, lambda v: isinstance(v, r.SessionRecord))]
    if config_items is not None:
        inputs.append(op.flat_map("alert_config", config_items, watch_inputs))
    watched = op.key_on("alert_key", op.merge("alert_in", *inputs), _charger_key)
    out = op.map("alert_out", op.stateful("alert_watch", watched,
                                          lambda resume: AlertLogic(resume, parts.alert_config, parts.clock)),
                 lambda kv: kv[1])
    changes = op.filter("alert_changes", out, lambda v: isinstance(v, AlertChange))
    faults = op.key_on("spike_key", op.flat_map("fault_groups", out, fault_groups), lambda g: g[0])
    spikes = op.map("spike_out", op.stateful("error_spikes", faults,
                                             lambda resume: SpikeLogic(resume, parts.alert_config, parts.clock)),
                    lambda kv: kv[1])
    merged = [changes, spikes]
    if control_out is not None:
        merged.append(op.filter_map("control_alerts", control_out,
                                    lambda v: external_change(v) if isinstance(v, c.Alert) else None))
    return op.merge("all_alerts", *merged)


def _charger_key(event: c.Event) -> str:
    return str(getattr(event, "charger_id"))  # noqa: B009 - every CHARGER_EVENTS type has one


def _event_of(decoded: Decoded) -> c.Event:
    assert decoded.event is not None  # noqa: S101 - guaranteed by the branch
    return decoded.event


def _error_of(decoded: Decoded) -> c.DeadLetter:
    assert decoded.error is not None  # noqa: S101 - guaranteed by the branch
    return decoded.error


def production_parts(settings: Settings, *, partitions: int = 1) -> FlowParts:
    from pipelines.alerts import AlertSink
    from pipelines.control_source import ControlConfigSource
    from pipelines.sinks import CommandSink, LakeSink, LiveStateSink, TickSource, TimescaleSink

    lake_root = settings.data_dir / "lake"
    return FlowParts(
        source=MqttSource(settings.mqtt, [EVENTS_ALL, DEAD_LETTERS_ALL, COMMAND_RESULTS_ALL, LOAD_ALL],
                          client_prefix=f"flowbank-{settings.pipeline_id}", partitions=partitions,
                          session_expiry_s=settings.mqtt_session_expiry_s,
                          batch_window=timedelta(milliseconds=settings.pipeline_batch_ms),
                          urgent_prefixes=URGENT_TOPICS),
        timescale=TimescaleSink(settings.pg_dsn.reveal()),
        lake=LakeSink(lake_root, settings.data_dir / "analytics.duckdb",
                      journal_dir=settings.data_dir / "lake-journal"),
        live=LiveStateSink(settings.mqtt, f"flowbank-{settings.pipeline_id}", settings.data_dir / "live-spool"),
        lake_tick=TickSource(timedelta(seconds=10)),
        control_config=ControlConfigSource(settings.pg_dsn.reveal()),
        commands=CommandSink(settings.mqtt, f"flowbank-{settings.pipeline_id}"),
        alerts=AlertSink(settings.pg_dsn.reveal(), settings.mqtt, f"flowbank-{settings.pipeline_id}"),
        # The interval the bridge gives chargers at boot: right for those that booted before this start.
        alert_config=AlertConfig(default_heartbeat_interval=timedelta(seconds=settings.heartbeat_interval_s)),
    )


def build_flow(settings: Settings | None = None, *, partitions: int = 1) -> Dataflow:
    """Entry point for ``python -m bytewax.run "pipelines.flow:build_flow()"``."""
    if settings is None:
        from warehouse.config import read_settings

        settings = read_settings()
    # Bytewax dies at once on SIGTERM; as SIGINT it stops cleanly, closing sources and sinks.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return build_dataflow(production_parts(settings, partitions=partitions))

