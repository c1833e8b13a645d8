"""Charging sessions, their per-day energy, live connector state and sample verdicts, from the
event stream of ONE charger. The pure heart of the streaming dataflow: no Bytewax, no IO, and
time comes in as ``now`` (processing time); sessions themselves follow event time.

The flow keys events by charger id and calls, per key::

    state, outputs = step(state, event, now=now, config=config)
    state, outputs = on_timer(state, now=now, config=config)   # when next_deadline(state) is due

``step`` and ``on_timer`` update ``state`` in place and return it, so whoever keeps an older
state (a Bytewax ``snapshot()``) must copy it (``copy.deepcopy`` or a pickle round trip). The
same events with the same ``now`` always give the same outputs. ``next_deadline`` is the
earliest processing time at which ``on_timer`` has work (``step`` does that work first, too).

Sessions (per connector, by event time):

* opened and closed by TransactionEvent (1.6 Start/Stop and 2.0.1 TransactionEvent alike);
  ``session_id = f"{charger_id}:{connector_id}:{transaction_id}"``. A Stop that names no
  connector (1.6) is placed by its transaction id;
* chargers that send no transactions: status Charging with no session opens a STATUS_FALLBACK
  session (transaction id ``status-<start>``), status Available closes it. It is held back for
  ``status_fallback_grace`` in case the real transaction follows, which then takes its data;
  if one arrives after the fallback was published, the fallback is re-published with zero
  energy and ``stop_reason="Superseded by <session_id>"``;
* at most one open session per connector, the newest: a newer transaction closes an open one
  whose Stop never came (it is re-opened, or its end corrected, if its events turn up later);
* a zombie (no data for ``zombie_timeout`` while the connector is Available, or nothing at all
  from the charger for that long) is closed as ABANDONED; data of that transaction arriving
  later re-opens or completes it;
* late data (an offline backlog, replays) lands in its session by transaction id, or by
  timestamp inside a session's window, while the connector keeps that session (the last
  ``keep_closed_sessions`` closed ones, each for ``keep_closed_for``); data of an evicted
  session is judged (SampleVerdict) but no longer changes it.

Every change of a session's content emits its SessionRecord with ``revision`` + 1 and all its
SessionDayEnergy rows (days it no longer touches are re-sent as zero); re-delivered input
changes nothing, so it emits nothing. See energy_split.py for the energy, quality.py for the
timing flags and sample coverage, live.py for the status chip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Final

from control.contract import (
    ChargerInfo,
    ChargerNotice,
    ConnectionEvent,
    ConnectionKind,
    ConnectorState,
    Event,
    MeterSample,
    StatusChanged,
    TransactionEvent,
    TransactionKind,
)
from control.records import LiveState, QualityFlag, SessionDayEnergy, SessionRecord, SessionState
from pipelines import live
from pipelines.energy_split import CurveLimits, Point, day_rows
from pipelines.quality import ClockEstimate, ReadingRules, Readings, timing_flags

MAX_TOMBSTONES: Final = 8
_CONTENT_FIELDS: Final = tuple(f.name for f in fields(SessionRecord) if f.name != "revision")
_FLAG_RANK: Final = {flag: rank for rank, flag in enumerate(QualityFlag)}


@dataclass(frozen=True, slots=True)
class SessionConfig:
    zombie_timeout: timedelta = timedelta(minutes=30)  # no data while connector Available -> abandoned
    gap_threshold: timedelta = timedelta(minutes=15)  # no samples this long inside a session -> GAP
    clock_skew_tolerance: timedelta = timedelta(minutes=5)  # |ts - received_at| on a live frame -> CLOCK_SKEW
    replay_threshold: timedelta = timedelta(minutes=2)  # delivery delay beyond this -> REPLAYED_OFFLINE
    default_max_power_w: float = 350_000.0  # rating for IMPLAUSIBLE_POWER when the charger's is unknown
    max_power_w: Mapping[str, float] = field(default_factory=dict)  # per charger rating
    lifetime_register_min_wh: float = 100_000.0  # energy == register and above this -> LIFETIME_REGISTER_AS_SESSION
    keep_closed_sessions: int = 3  # closed sessions kept per connector to absorb late/replayed data
    keep_closed_for: timedelta = timedelta(hours=48)
    waiting_power_threshold_w: float = 50.0  # below this while connected = waiting/idle
    register_reset_max_wh: float = 1_000.0  # a drop to at most this, by at least this, is a meter reset
    register_slack_wh: float = 50.0  # register resolution tolerated by the IMPLAUSIBLE_POWER check
    status_fallback_grace: timedelta = timedelta(minutes=2)  # a status-only session waits this for its transaction
    live_refresh: timedelta = timedelta(minutes=1)  # re-send an unchanged LiveState this often (last seen)
    clock_window: timedelta = timedelta(minutes=10)  # frames over this long give the charger's clock offset
    min_rate_interval: timedelta = timedelta(seconds=60)  # shortest register step used for peak power
    # An open session's new figures are published at most this often (processing time); its state
    # and its quality flags at once, and the live state always shows the newest energy. A charger
    # sampling every second would otherwise rewrite its session row (and its day rows, and the
    # history rollups' marks) every second.
    open_revision_interval: timedelta = timedelta(seconds=5)

    def rules(self, charger_id: str) -> ReadingRules:
        limits = CurveLimits(self.max_power_w.get(charger_id, self.default_max_power_w), self.register_reset_max_wh,
                             self.register_slack_wh)
        return ReadingRules(limits, self.gap_threshold, self.waiting_power_threshold_w, self.min_rate_interval,
                            self.lifetime_register_min_wh)


@dataclass(frozen=True, slots=True)
class SampleVerdict:
    """The quality verdict of one MeterSample, stored with the raw row."""

    charger_id: str
    connector_id: int
    ts: datetime
    context: str
    session_id: str | None
    flags: tuple[QualityFlag, ...]


Output = SessionRecord | SessionDayEnergy | LiveState | SampleVerdict


class _End(StrEnum):
    EVENT = "event"  # Transaction ended: authoritative
    STATUS = "status"  # a status-fallback session, closed by Available
    IMPLICIT = "implicit"  # a newer transaction started; the end grows with late evidence
    ABANDONED = "abandoned"  # zombie timeout; the end grows with late evidence


@dataclass(slots=True)
class Session:
    """One session: its lifecycle here, what its readings say in ``readings`` (no list of samples)."""

    transaction_id: str
    connector_id: int
    started_at: datetime
    last_evidence_ts: datetime  # latest event time of any of its data
    opened_now: datetime
    last_data_now: datetime  # processing time of its latest data (zombie timer)
    last_update_now: datetime  # processing time of its latest revision (eviction timer)
    state: SessionState = SessionState.OPEN
    has_start: bool = False
    fallback: bool = False
    tentative: bool = False
    ended_at: datetime | None = None
    ended_by: _End | None = None
    id_tag: str | None = None
    stop_reason: str | None = None
    meter_start_wh: float | None = None
    stop_ts: datetime | None = None  # when the Transaction.End register was read
    readings: Readings = field(default_factory=Readings)
    flags: set[QualityFlag] = field(default_factory=set)  # timing flags of its frames (sticky)
    energy_wh: float = 0.0  # as last published (current_energy_wh: the newest)
    revision: int = 0
    digest: bytes = b""
    days: tuple[date, date] | None = None  # range of days published so far
    dirty: bool = True
    published_flags: tuple[QualityFlag, ...] = ()  # of the latest revision
    current_energy_wh: float = 0.0  # the newest figure, published or held back (the live state's)

    def __setstate__(self, state: tuple[object, dict[str, object]]) -> None:
        # Pickled as (None, {slot: value}). A recovery snapshot taken before a field existed
        # resumes with that field's default.
        values = state[1]
        for name, value in values.items():
            object.__setattr__(self, name, value)
        if "published_flags" not in values:
            self.published_flags = ()  # the next revision goes out at once
        if "current_energy_wh" not in values:
            self.current_energy_wh = self.energy_wh


@dataclass(slots=True)
class Connector:
    connector_id: int
    status: ConnectorState | None = None
    status_ts: datetime | None = None
    status_now: datetime | None = None
    error_code: str | None = None
    sessions: list[Session] = field(default_factory=list)  # by started_at; an open one is the newest
    tombstones: list[tuple[str, datetime, datetime]] = field(default_factory=list)  # evicted: tx, start, end
    sample_ts: datetime | None = None
    power_w: float | None = None
    current_a: float | None = None
    soc_pct: float | None = None
    live_digest: bytes = b""
    live_seen: datetime | None = None


@dataclass(slots=True)
class ChargerState:
    """All connectors of one charger. Picklable and small (about 1 kB per session kept)."""

    charger_id: str
    connectors: dict[int, Connector] = field(default_factory=dict)
    online: bool = True
    last_seen_at: datetime | None = None
    last_frame_now: datetime | None = None
    clock: ClockEstimate = field(default_factory=ClockEstimate)

    def connector(self, connector_id: int) -> Connector:
        return self.connectors.setdefault(connector_id, Connector(connector_id))


# --------------------------------------------------------------------------- entry points


def step(state: ChargerState | None, event: Event, *, now: datetime,
         config: SessionConfig) -> tuple[ChargerState | None, list[Output]]:
    if not isinstance(event, MeterSample | StatusChanged | TransactionEvent | ConnectionEvent
                      | ChargerInfo | ChargerNotice):
        return state, []
    st = state if state is not None else ChargerState(event.charger_id)
    out: list[Output] = []
    _expire(st, now, config)
    if isinstance(event, ConnectionEvent) and event.kind is ConnectionKind.DISCONNECTED:
        st.online = False
    else:
        st.online = True
        st.last_frame_now = now
        received = getattr(event, "received_at", None) or event.ts
        st.last_seen_at = received if st.last_seen_at is None else max(st.last_seen_at, received)
        if isinstance(event, MeterSample):
            _on_sample(st, event, now, config, out)
        elif isinstance(event, TransactionEvent):
            _on_transaction(st, event, now, config, out)
        elif isinstance(event, StatusChanged):
            _on_status(st, event, now, config)
    _flush(st, now, config, out)
    return st, out


def on_timer(state: ChargerState, *, now: datetime, config: SessionConfig) -> tuple[ChargerState | None, list[Output]]:
    out: list[Output] = []
    _expire(state, now, config)
    _flush(state, now, config, out)
    return state, out


def placed(sample: MeterSample, outputs: list[Output]) -> MeterSample:
    """The raw sample as it is stored: on the connector ``step`` placed it on.

    A 1.6 StopTransaction's ``transactionData`` and the 2.0.1 TransactionEvents after the first
    name no connector (connector 0); ``step`` finds the connector by the transaction id, and the
    stored row must say the same as its verdict and its session's other samples (samples are
    keyed and read by connector)."""
    for out in outputs:
        if type(out) is SampleVerdict and out.connector_id != sample.connector_id and out.ts == sample.ts:
            return replace(sample, connector_id=out.connector_id)
    return sample


def next_deadline(state: ChargerState, config: SessionConfig) -> datetime | None:
    deadlines: list[datetime] = []
    for conn in state.connectors.values():
        for s in conn.sessions:
            if s.tentative:
                deadlines.append(s.opened_now + config.status_fallback_grace)
            if s.state is SessionState.OPEN:
                zombie = _zombie_deadline(state, conn, s, config)
                if zombie is not None:
                    deadlines.append(zombie)
                if s.dirty and s.revision > 0 and not s.tentative:  # figures held back
                    deadlines.append(s.last_update_now + config.open_revision_interval)
            else:
                deadlines.append(s.last_update_now + config.keep_closed_for)
    return min(deadlines, default=None)


# --------------------------------------------------------------------------- events


def _timing(st: ChargerState, ts: datetime, received_at: datetime | None, offline: bool, now: datetime,
            cfg: SessionConfig) -> frozenset[QualityFlag]:
    flags = timing_flags(ts, received_at, offline=offline, offset=st.clock.offset,
                         replay_threshold=cfg.replay_threshold, skew_tolerance=cfg.clock_skew_tolerance)
    if received_at is not None:
        st.clock.observe(received_at - ts, now, cfg.clock_window)
    return flags


def _on_sample(st: ChargerState, ev: MeterSample, now: datetime, cfg: SessionConfig, out: list[Output]) -> None:
    timing = _timing(st, ev.ts, ev.received_at, False, now, cfg)
    conn = _connector_for(st, ev.connector_id, ev.transaction_id, out)
    s, evicted_id = _route(st, conn, ev.ts, ev.transaction_id, now, cfg, out, start=False)
    flags = set(timing)
    if s is not None:
        s.flags |= timing
        s.last_data_now, s.dirty = now, True
        own, new = s.readings.add_sample(ev, cfg.rules(st.charger_id), started_at=s.started_at)
        flags |= own
        if new:
            _evidence(s, ev.ts)
    if conn.sample_ts is None or ev.ts >= conn.sample_ts:  # the live figures follow the newest sample only
        conn.sample_ts, conn.power_w, conn.current_a, conn.soc_pct = ev.ts, ev.power_w, ev.current_a, ev.soc_pct
    session_id = evicted_id if s is None else None if s.tentative else _sid(st.charger_id, s)
    out.append(SampleVerdict(st.charger_id, conn.connector_id, ev.ts, str(ev.context), session_id, _ordered(flags)))


def _on_transaction(st: ChargerState, ev: TransactionEvent, now: datetime, cfg: SessionConfig,
                    out: list[Output]) -> None:
    timing = _timing(st, ev.ts, ev.received_at, ev.offline, now, cfg)
    conn = _connector_for(st, ev.connector_id, ev.transaction_id, out)
    s, _ = _route(st, conn, ev.ts, ev.transaction_id, now, cfg, out, start=ev.kind is TransactionKind.STARTED)
    if s is None:
        return  # its session was evicted long ago
    s.flags |= timing
    s.last_data_now, s.dirty = now, True
    if ev.id_tag is not None and (s.id_tag is None or ev.kind is TransactionKind.STARTED):
        s.id_tag = ev.id_tag
    if ev.kind is TransactionKind.STARTED:
        s.has_start, s.started_at, s.meter_start_wh = True, ev.ts, ev.meter_wh
    elif ev.kind is TransactionKind.ENDED:
        s.state, s.ended_at, s.ended_by = SessionState.CLOSED, ev.ts, _End.EVENT
        s.stop_reason = ev.stop_reason or s.stop_reason
        if ev.meter_wh:
            s.stop_ts = ev.ts
    _evidence(s, ev.ts)
    if ev.meter_wh:  # a zero register at a start is judged with the readings; at a stop it is no reading
        s.readings.add_register(Point(ev.ts, ev.meter_wh), cfg.rules(st.charger_id))


def _on_status(st: ChargerState, ev: StatusChanged, now: datetime, cfg: SessionConfig) -> None:
    _timing(st, ev.ts, ev.received_at, False, now, cfg)  # statuses are live: they inform the clock estimate
    conn = st.connector(ev.connector_id)
    if conn.status_ts is not None and ev.ts < conn.status_ts:
        return  # an old status says nothing about now
    conn.status, conn.status_ts, conn.status_now = ev.status, ev.ts, now
    conn.error_code = ev.error_code if ev.error_code not in (None, "", "NoError") else None
    current = _open(conn)
    if ev.status is ConnectorState.CHARGING and ev.connector_id != 0 and current is None \
            and _by_time(conn, ev.ts) is None and _evicted_at(st, conn, ev.ts) is None:
        s = _new_session(f"status-{ev.ts:%Y%m%dT%H%M%SZ}", conn.connector_id, ev.ts, now)
        s.fallback = s.tentative = True
        _place(conn, s)
    elif ev.status is ConnectorState.AVAILABLE and current is not None and current.fallback:
        current.state, current.ended_by, current.tentative = SessionState.CLOSED, _End.STATUS, False
        current.ended_at, current.stop_reason, current.dirty = max(ev.ts, current.started_at), "Available", True


# --------------------------------------------------------------------------- routing


def _connector_for(st: ChargerState, connector_id: int, tx: str | None, out: list[Output]) -> Connector:
    """The connector of an event. A 1.6 Stop names connector 0: it is placed by its transaction,
    and a session only known from such events waits on connector 0 (unpublished, for the
    fallback grace) until an event naming the connector moves it there."""
    if tx is None:
        return st.connector(connector_id)
    if connector_id == 0:
        for conn in st.connectors.values():
            if any(s.transaction_id == tx for s in conn.sessions) or any(t[0] == tx for t in conn.tombstones):
                return conn
        return st.connector(0)
    conn = st.connector(connector_id)
    unplaced = st.connectors.get(0)
    moving = next((s for s in unplaced.sessions if s.transaction_id == tx), None) if unplaced else None
    if unplaced is not None and moving is not None:
        unplaced.sessions.remove(moving)
        if moving.revision:
            out.extend(_retraction(st.charger_id, moving, f"{st.charger_id}:{connector_id}:{tx}"))
        moving.connector_id, moving.tentative, moving.dirty = connector_id, False, True
        moving.revision, moving.digest, moving.days = 0, b"", None
        _place(conn, moving)
    return conn


def _route(st: ChargerState, conn: Connector, ts: datetime, tx: str | None, now: datetime, cfg: SessionConfig,
           out: list[Output], *, start: bool) -> tuple[Session | None, str | None]:
    """The session an event belongs to (created if need be), or the id of an evicted one."""
    if tx is not None:
        for s in conn.sessions:
            if s.transaction_id == tx:
                if s.state is SessionState.ABANDONED and s is conn.sessions[-1] and s.ended_at is not None \
                        and ts > s.ended_at:
                    s.state, s.ended_at, s.ended_by = SessionState.OPEN, None, None  # it was alive after all
                return s, None
        for tomb in conn.tombstones:
            if tomb[0] == tx:
                return None, f"{st.charger_id}:{conn.connector_id}:{tx}"
        return _open_transaction(st, conn, tx, ts, now, cfg, out, start=start), None
    found = _by_time(conn, ts)
    return (found, None) if found is not None else (None, _evicted_at(st, conn, ts))


def _by_time(conn: Connector, ts: datetime) -> Session | None:
    for s in reversed(conn.sessions):
        if s.started_at <= ts and (s.ended_at is None or ts <= s.ended_at):
            return s
    return None


def _evicted_at(st: ChargerState, conn: Connector, ts: datetime) -> str | None:
    for tx, start, end in conn.tombstones:
        if start <= ts <= end:
            return f"{st.charger_id}:{conn.connector_id}:{tx}"
    return None


def _open(conn: Connector) -> Session | None:
    return next((s for s in conn.sessions if s.state is SessionState.OPEN), None)


def _open_transaction(st: ChargerState, conn: Connector, tx: str, ts: datetime, now: datetime, cfg: SessionConfig,
                      out: list[Output], *, start: bool) -> Session:
    for fb in reversed(conn.sessions):  # a status-fallback session that was this transaction all along
        grace = cfg.status_fallback_grace
        upper = fb.started_at + grace if start else fb.ended_at + grace if fb.ended_at is not None else None
        if fb.fallback and fb.started_at - cfg.gap_threshold <= ts and (upper is None or ts <= upper):
            if fb.revision:
                out.extend(_retraction(st.charger_id, fb, f"{st.charger_id}:{conn.connector_id}:{tx}"))
            fb.transaction_id, fb.fallback, fb.tentative, fb.dirty = tx, False, False, True
            fb.revision, fb.digest, fb.days = 0, b"", None
            if fb.ended_by is _End.STATUS:
                fb.ended_by = _End.IMPLICIT
            return fb
    s = _new_session(tx, conn.connector_id, ts, now)
    s.tentative = conn.connector_id == 0
    _place(conn, s)
    return s


def _place(conn: Connector, s: Session) -> None:
    """Add a session to its connector, keeping one transaction at a time: an open session older
    than another one has ended (its Stop was lost, or is still in a replayed backlog)."""
    current = _open(conn)
    if current is not None and current.started_at <= s.started_at:
        _close_implicitly(current)
    elif current is not None and s.state is SessionState.OPEN:
        _close_implicitly(s)
    conn.sessions.append(s)
    conn.sessions.sort(key=lambda x: x.started_at)


def _new_session(tx: str, connector_id: int, ts: datetime, now: datetime) -> Session:
    return Session(tx, connector_id, started_at=ts, last_evidence_ts=ts, opened_now=now, last_data_now=now,
                   last_update_now=now)


def _close_implicitly(s: Session) -> None:
    s.state, s.ended_by, s.tentative, s.dirty = SessionState.CLOSED, _End.IMPLICIT, False, True
    s.ended_at = max(s.last_evidence_ts, s.started_at)


def _evidence(s: Session, ts: datetime) -> None:
    s.last_evidence_ts = max(s.last_evidence_ts, ts)
    if not s.has_start and not s.fallback:
        s.started_at = min(s.started_at, ts)
    if s.ended_by in (_End.IMPLICIT, _End.ABANDONED) and s.ended_at is not None and ts > s.ended_at:
        s.ended_at = ts


# --------------------------------------------------------------------------- timers


def _zombie_deadline(st: ChargerState, conn: Connector, s: Session, cfg: SessionConfig) -> datetime | None:
    deadlines = [] if st.last_frame_now is None else [st.last_frame_now + cfg.zombie_timeout]
    if conn.status is ConnectorState.AVAILABLE and conn.status_ts is not None and conn.status_now is not None \
            and conn.status_ts >= s.started_at:
        deadlines.append(max(s.last_data_now, conn.status_now) + cfg.zombie_timeout)
    return min(deadlines, default=None)


def _expire(st: ChargerState, now: datetime, cfg: SessionConfig) -> None:
    for conn in st.connectors.values():
        for s in conn.sessions:
            if s.tentative and now >= s.opened_now + cfg.status_fallback_grace:
                s.tentative, s.dirty = False, True
            deadline = _zombie_deadline(st, conn, s, cfg) if s.state is SessionState.OPEN else None
            if deadline is not None and now >= deadline:
                end = s.last_evidence_ts
                if conn.status is ConnectorState.AVAILABLE and conn.status_ts is not None \
                        and conn.status_ts >= s.started_at:
                    end = max(end, conn.status_ts)
                s.state, s.ended_by, s.ended_at = SessionState.ABANDONED, _End.ABANDONED, max(end, s.started_at)
                s.tentative, s.dirty = False, True


def _evict(st: ChargerState, conn: Connector, now: datetime, cfg: SessionConfig) -> None:
    closed = [s for s in conn.sessions if s.state is not SessionState.OPEN and not s.dirty]
    surplus = len(closed) - cfg.keep_closed_sessions
    for s in closed:  # oldest first
        if surplus > 0 or now - s.last_update_now >= cfg.keep_closed_for:
            surplus -= 1
            conn.sessions.remove(s)
            conn.tombstones.append((s.transaction_id, s.started_at, s.ended_at or s.last_evidence_ts))
    del conn.tombstones[:-MAX_TOMBSTONES]


# --------------------------------------------------------------------------- outputs


def _flush(st: ChargerState, now: datetime, cfg: SessionConfig, out: list[Output]) -> None:
    for connector_id in sorted(st.connectors):
        conn = st.connectors[connector_id]
        conn.sessions.sort(key=lambda x: x.started_at)
        for s in conn.sessions:
            if s.dirty and not s.tentative:
                _publish(st.charger_id, s, now, cfg, out)
        _evict(st, conn, now, cfg)
    for connector_id in sorted(st.connectors):
        _publish_live(st, st.connectors[connector_id], now, cfg, out)


def _publish(charger_id: str, s: Session, now: datetime, cfg: SessionConfig, out: list[Output]) -> None:
    record, days = summarize(charger_id, s, cfg, revision=s.revision + 1)
    s.current_energy_wh = record.energy_wh
    if _held_back(s, record, now, cfg):
        return  # still dirty: published at the deadline (next_deadline) or with a later change
    s.dirty = False
    content = (tuple(getattr(record, name) for name in _CONTENT_FIELDS), sorted(days.items()))
    digest = hashlib.blake2b(repr(content).encode(), digest_size=8).digest()
    if digest == s.digest:
        return  # nothing new (a re-delivery): no revision
    s.revision, s.digest, s.last_update_now, s.energy_wh = record.revision, digest, now, record.energy_wh
    s.published_flags = record.flags
    out.append(record)
    rows, s.days = day_rows(record.session_id, charger_id, days, s.days, s.revision)
    out.extend(rows)


def _held_back(s: Session, record: SessionRecord, now: datetime, cfg: SessionConfig) -> bool:
    """An open session's new figures wait until ``open_revision_interval`` after its last revision;
    its first revision, a new state and new quality flags do not wait."""
    return (s.revision > 0 and record.state is SessionState.OPEN and record.flags == s.published_flags
            and now < s.last_update_now + cfg.open_revision_interval)


def summarize(charger_id: str, s: Session, cfg: SessionConfig, *,
              revision: int = 0) -> tuple[SessionRecord, dict[date, float]]:
    """The record of a session and its energy per UTC day, derived from its state."""
    ended_at = s.ended_at if s.state is not SessionState.OPEN else None
    flags = set(s.flags)
    if ended_at is not None and ended_at < s.started_at:  # the charger's clock jumped back
        ended_at = s.started_at
        flags.add(QualityFlag.CLOCK_SKEW)
    end = ended_at or max(s.last_evidence_ts, s.started_at)
    duration = (end - s.started_at).total_seconds()
    figures = s.readings.figures(cfg.rules(charger_id), started_at=s.started_at, ended_at=ended_at, end=end,
                                 meter_start_wh=s.meter_start_wh, stop_ts=s.stop_ts)
    flags |= figures.flags
    flags |= {flag for flag, holds in ((QualityFlag.STATUS_FALLBACK, s.fallback),
                                       (QualityFlag.ABANDONED, s.state is SessionState.ABANDONED)) if holds}
    energy = figures.energy
    record = SessionRecord(
        session_id=_sid(charger_id, s),
        charger_id=charger_id,
        connector_id=s.connector_id,
        transaction_id=s.transaction_id,
        started_at=s.started_at,
        state=s.state,
        revision=revision,
        energy_wh=energy.energy_wh,
        ended_at=ended_at,
        id_tag=s.id_tag,
        meter_start_wh=energy.first_wh,
        meter_stop_wh=energy.last_wh if ended_at is not None else None,
        peak_power_w=figures.peak_power_w,
        avg_power_w=energy.energy_wh * 3600.0 / duration if duration > 0 else None,
        duration_s=duration,
        charging_s=figures.charging_s,
        idle_s=duration - figures.charging_s,
        stop_reason=s.stop_reason,
        flags=_ordered(flags),
        sample_count=s.readings.sample_count,
        last_sample_at=s.readings.last_sample_ts,
    )
    return record, energy.days or {s.started_at.date(): 0.0}


def _retraction(charger_id: str, fb: Session, successor_id: str) -> list[Output]:
    """A published session continues under another id (a status-fallback session that was a real
    transaction, a connector-less one that found its connector): publish the old id as empty."""
    revision = fb.revision + 1
    record = SessionRecord(
        session_id=_sid(charger_id, fb), charger_id=charger_id, connector_id=fb.connector_id,
        transaction_id=fb.transaction_id, started_at=fb.started_at, state=SessionState.CLOSED, revision=revision,
        energy_wh=0.0, ended_at=max(fb.ended_at or fb.last_evidence_ts, fb.started_at),
        stop_reason=f"Superseded by {successor_id}", flags=(QualityFlag.STATUS_FALLBACK,) if fb.fallback else (),
    )
    rows, _ = day_rows(record.session_id, charger_id, {}, fb.days, revision)
    return [record, *rows]


def _publish_live(st: ChargerState, conn: Connector, now: datetime, cfg: SessionConfig, out: list[Output]) -> None:
    s = next((x for x in conn.sessions if x.state is SessionState.OPEN and not x.tentative), None)
    current = conn.sample_ts is not None and (conn.status_ts is None or conn.sample_ts >= conn.status_ts)
    whole = st.connectors.get(0)
    view = live.ConnectorView(
        charger_id=st.charger_id, connector_id=conn.connector_id, online=st.online, status=conn.status,
        error_code=conn.error_code,
        charger_error=conn.connector_id != 0 and whole is not None
        and (whole.status is ConnectorState.FAULTED or whole.error_code is not None),
        power_w=conn.power_w if current else None, current_a=conn.current_a if current else None,
        soc_pct=conn.soc_pct if current else None,
        session_id=_sid(st.charger_id, s) if s is not None else None,
        session_started_at=s.started_at if s is not None else None,
        session_energy_wh=s.current_energy_wh if s is not None else None,
        session_drew_energy=s is not None and (s.current_energy_wh > 0 or s.readings.charging_s > 0),
    )
    fingerprint = live.fingerprint(view)
    seen = st.last_seen_at
    stale = seen is not None and (conn.live_seen is None or seen - conn.live_seen >= cfg.live_refresh)
    if fingerprint != conn.live_digest or stale:  # changed, or "last seen" is a minute behind
        conn.live_digest, conn.live_seen = fingerprint, seen
        out.append(live.live_state(view, now=now, last_seen_at=seen,
                                   waiting_power_threshold_w=cfg.waiting_power_threshold_w))


# --------------------------------------------------------------------------- small helpers


def _sid(charger_id: str, s: Session) -> str:
    return f"{charger_id}:{s.connector_id}:{s.transaction_id}"


def _ordered(flags: set[QualityFlag] | frozenset[QualityFlag]) -> tuple[QualityFlag, ...]:
    return tuple(sorted(flags, key=_FLAG_RANK.__getitem__))
