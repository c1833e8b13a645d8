"""The simulated station: connectors, EVs, sessions and faults, without any IO.

``tick(now)`` moves the physics and the drivers forward to ``now`` and queues protocol-agnostic
events (:mod:`ingest.sim.events`) that the OCPP dialect turns into calls. Commands from the CSMS
live in :mod:`ingest.sim.commands`. Nothing here reads a clock, a socket or a global random
generator, so a station driven by a manual clock is deterministic for a given seed.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from control.contract import ConnectorState, OcppVersion, SampleContext
from ingest.sim import connector
from ingest.sim.connector import Connector, Phase, RemoteStart
from ingest.sim.events import (
    AuthorizeEvent,
    ChargingStateEvent,
    GoOfflineEvent,
    MalformedEvent,
    ProblemEvent,
    RebootEvent,
    SimEvent,
    StatusEvent,
    StopReason,
    TxSampleEvent,
    TxStartEvent,
    TxStopEvent,
)
from ingest.sim.faults import MALFORMED_KINDS, FaultCode, FaultConfig, PoissonSchedule, stop_reason_for
from ingest.sim.model import Flow, Reading, Session
from ingest.sim.plan import Behaviour, ChargerSpec, draw_session, rng_for
from ingest.sim.profiles import Actuator, ProfileStore
from ingest.sim.truth import TruthSink, fault_record, session_record
from ingest.sim.variables import Variables

AUTHORIZE_TIMEOUT_S = 120.0
MAX_CATCH_UP_SAMPLES = 8


@dataclass(frozen=True, slots=True)
class StationOptions:
    sample_interval_s: float = 10.0  # simulated
    heartbeat_interval_s: int = 300
    reaction_delay_s: float = 1.5  # simulated
    ramp_a_per_s: float = 10.0  # AC; DC ramps at ramp * 2 kW/s
    ac_soc: bool = False  # AC EVs do not tell the charger their SoC; set to report it anyway
    periodic_samples: bool = True  # off in benchmark mode, where the runtime paces samples itself


class Station:
    def __init__(self, spec: ChargerSpec, *, seed: int, start: datetime, truth: TruthSink,
                 behaviour: Behaviour | None = None, faults: FaultConfig | None = None,
                 options: StationOptions | None = None) -> None:
        behaviour = behaviour or Behaviour()
        faults = faults or FaultConfig()
        options = options or StationOptions()
        self.spec = spec
        self.id = spec.charger_id
        self.version = spec.ocpp_version
        self.behaviour = behaviour
        self.faults = faults
        self.options = options
        self.truth = truth
        self.online = False
        self.closing = False  # shutting down: no new sessions
        self.events: list[SimEvent] = []
        self._sink: Callable[[SimEvent], None] = self.events.append
        self.profiles = ProfileStore()
        self.variables = Variables.defaults(connectors=spec.connectors, heartbeat_s=options.heartbeat_interval_s,
                                            sample_interval_s=options.sample_interval_s,
                                            phases=spec.hardware.phases, dc=spec.hardware.dc, version=spec.ocpp_version)
        self.unwritten: list[Session] = []  # sessions whose ground-truth line is not written yet
        self.session_count = 0
        self.reboot_when_idle: str | None = None
        self._ids = rng_for(seed, self.id, "ids")
        self._offline = PoissonSchedule(rng_for(seed, self.id, "offline"), faults.offline_per_hour, start)
        self._malformed = PoissonSchedule(rng_for(seed, self.id, "malformed"), faults.malformed_per_hour, start)
        self._timeline: list[tuple[datetime, int, Callable[[datetime], None]]] = []
        self._seq = itertools.count()
        self.connectors: dict[int, Connector] = {}
        self._plan_rngs: dict[int, random.Random] = {}
        hw = spec.hardware
        ramp = options.ramp_a_per_s * (2000.0 if hw.dc else 1.0)
        for number in range(1, spec.connectors + 1):
            self._plan_rngs[number] = rng_for(seed, self.id, number, "plan")
            conn = Connector(
                id=number, hw=hw, register_wh=spec.initial_register_wh[number - 1], last_t=start,
                actuator=Actuator(hw.max_native, start, options.reaction_delay_s, ramp),
                error_schedule=PoissonSchedule(rng_for(seed, self.id, number, "errors"), faults.error_per_hour,
                                               start))
            self.connectors[number] = conn
            self._next_visit(conn, start, first=True)

    # ------------------------------------------------------------------ plumbing

    def emit(self, event: SimEvent) -> None:
        self._sink(event)

    def drain(self) -> list[SimEvent]:
        out, self.events[:] = list(self.events), []
        return out

    @contextmanager
    def capture(self) -> Iterator[list[SimEvent]]:
        """Hold back the events emitted inside the block (released after the reply is sent)."""
        held: list[SimEvent] = []
        previous, self._sink = self._sink, held.append
        try:
            yield held
        finally:
            self._sink = previous

    def schedule(self, at: datetime, action: Callable[[datetime], None]) -> None:
        heapq.heappush(self._timeline, (at, next(self._seq), action))

    def new_uuid(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    @property
    def meter_resolution_wh(self) -> float:
        return 1.0 if self.version == OcppVersion.V16 else 0.1

    def quantize(self, register_wh: float) -> float:
        """The register as the meter reports it (1.6: whole Wh; 2.0.1: 0.1 Wh), never rounded up."""
        res = self.meter_resolution_wh
        return round(math.floor(register_wh / res + 1e-9) * res, 3)

    # ------------------------------------------------------------------ the tick

    def tick(self, now: datetime) -> None:
        while self._timeline and self._timeline[0][0] <= now:
            at, _, action = heapq.heappop(self._timeline)
            action(max(at, now))
        if self._offline.due(now) and self.online:
            seconds = self._offline.duration(self.faults.offline_mean_s)
            self.record_fault(FaultCode.OFFLINE, now, detail=f"{seconds:.0f}s")
            self.emit(GoOfflineEvent(seconds, now))
        if self._malformed.due(now) and self.online:
            kind = self._malformed.choice(MALFORMED_KINDS)
            self.record_fault(FaultCode.MALFORMED, now, detail=kind)
            self.emit(MalformedEvent(kind, now))
        for c in self.connectors.values():
            self._sample(c, now)
            self.advance(c, now)
            self._errors(c, now)
            self._drive(c, now)
            self.update_status(c, now)
        self.write_settled()

    def advance(self, c: Connector, now: datetime) -> None:
        connector.advance(c, self.profiles, now)

    def command_limit(self, c: Connector, now: datetime) -> None:
        """Profiles changed: bring the connector up to date, then hand the new limit to the hardware."""
        self.advance(c, now)
        c.actuator.command(connector.desired_limit(c, self.profiles, now)[0], now)

    def plan_rng(self, connector_id: int) -> random.Random:
        return self._plan_rngs[connector_id]

    def reading(self, c: Connector, now: datetime) -> Reading:
        soc = c.soc if c.ev is not None and (c.hw.dc or self.options.ac_soc) else None
        return Reading(now, self.quantize(c.register_wh), c.flow, soc, c.hw.dc)

    # ------------------------------------------------------------------ drivers and sessions

    def _next_visit(self, c: Connector, now: datetime, *, first: bool = False) -> None:
        limit = self.behaviour.sessions_per_connector
        if limit is not None and c.visits >= limit:
            c.plan, c.arrive_at = None, None
            return
        c.plan = draw_session(self._plan_rngs[c.id], c.hw, self.behaviour, first=first)
        c.arrive_at = now + timedelta(seconds=c.plan.arrive_after_s)

    def plug_in(self, c: Connector, now: datetime, *, id_tag: str, remote: RemoteStart | None = None) -> None:
        if c.plan is None:
            c.plan = draw_session(self._plan_rngs[c.id], c.hw, self.behaviour, first=False)
        c.phase, c.ev, c.soc, c.id_tag, c.remote = Phase.PLUGGED, c.plan.ev, c.plan.soc_start, id_tag, remote
        c.phase_until = now + timedelta(seconds=1.0 if remote else c.plan.auth_delay_s)
        c.arrive_at = None
        c.visits += 1
        self.update_status(c, now)  # Preparing is reported before anything else happens

    def unplug(self, c: Connector, now: datetime) -> None:
        c.phase, c.ev, c.id_tag, c.remote, c.phase_until = Phase.IDLE, None, None, None, None
        self._next_visit(c, now)

    def _drive(self, c: Connector, now: datetime) -> None:
        if c.reservation is not None and now >= c.reservation.expiry:
            c.reservation = None
        if self.closing:
            return
        if c.phase == Phase.IDLE:
            if c.arrive_at is not None and now >= c.arrive_at and c.plan is not None:
                if c.error_code is not None or not c.operative:
                    self._next_visit(c, now)  # the driver finds the charger out of order and leaves
                else:
                    tag = c.reservation.id_tag if c.reservation is not None else c.plan.id_tag
                    self.plug_in(c, now, id_tag=tag)
        elif c.phase == Phase.PLUGGED and c.phase_until is not None and now >= c.phase_until:
            if c.error_code is not None:
                self._leave(c, now)
            elif c.remote is not None and not self.variables.flag("AuthorizeRemoteTxRequests"):
                self.start_transaction(c, now)
            elif not self.online:
                self.start_transaction(c, now)  # LocalAuthorizeOffline
            else:
                c.phase, c.phase_until = Phase.AUTHORIZING, now + timedelta(seconds=AUTHORIZE_TIMEOUT_S)
                self.emit(AuthorizeEvent(c.id, now, c.id_tag or ""))
        elif c.phase in (Phase.AUTHORIZING, Phase.REJECTED, Phase.FINISHING):
            if c.phase_until is not None and now >= c.phase_until:
                if c.phase == Phase.AUTHORIZING:
                    self._leave(c, now)  # no answer: treated as not authorised
                else:
                    self.unplug(c, now)
        elif c.phase == Phase.IN_TX and c.session is not None and c.plan is not None:
            elapsed = (now - c.session.start_ts).total_seconds()
            reset_at = c.plan.register_reset_at_s
            if reset_at is not None and not c.register_reset_done and elapsed >= reset_at:
                c.register_reset_done = True
                self.record_fault(FaultCode.REGISTER_RESET, now, connector_id=c.id,
                                  detail=f"register {c.register_wh:.1f} Wh -> 0")
                c.register_wh = 0.0
            if elapsed >= c.plan.dwell_s:
                self.stop_transaction(c, now, c.plan.stop_mode)

    def _leave(self, c: Connector, now: datetime) -> None:
        c.phase = Phase.REJECTED
        c.phase_until = now + timedelta(seconds=c.plan.unplug_delay_s if c.plan else 60.0)

    def authorize_result(self, connector_id: int, accepted: bool, now: datetime) -> None:
        c = self.connectors[connector_id]
        if c.phase != Phase.AUTHORIZING:
            return
        self.advance(c, now)
        if accepted:
            self.start_transaction(c, now)
        else:
            self._leave(c, now)

    def start_transaction(self, c: Connector, now: datetime) -> Session:
        self.advance(c, now)
        c.serial += 1
        serial = c.serial
        remote = c.remote
        session = Session(
            ref=f"{self.id}-{c.id}-{serial:04d}", connector_id=c.id, id_tag=c.id_tag or "", start_ts=now,
            meter_start_wh=self.quantize(c.register_wh), register_start_wh=c.register_wh, soc_start=c.soc,
            ev_name=c.ev.name if c.ev else "", remote_start_id=remote.remote_start_id if remote else None)
        if self.version == OcppVersion.V201:
            session.tx_id = self.new_uuid()
        if c.reservation is not None and c.reservation.id_tag == session.id_tag:
            session.reservation_id, c.reservation = c.reservation.reservation_id, None
        c.session, c.phase, c.register_reset_done = session, Phase.IN_TX, False
        c.next_sample_at = now + timedelta(seconds=self.sample_interval_s)
        self.unwritten.append(session)
        self.session_count += 1
        limit, phase_limit = connector.desired_limit(c, self.profiles, now)
        c.actuator.command(limit, now)
        c.flow = connector.flow_at(c, now, phase_limit)
        c.charging_state = connector.derived_status(c)
        self.emit(TxStartEvent(session, now, self.reading(c, now), c.charging_state, remote=remote is not None))
        return session

    def stop_transaction(self, c: Connector, now: datetime, reason: StopReason) -> None:
        session = c.session
        if session is None:
            return
        self.advance(c, now)
        session.stop_ts, session.stop_reason = now, reason.value
        session.meter_stop_wh, session.soc_end = self.quantize(c.register_wh), c.soc
        c.session, c.next_sample_at, c.charging_state, c.flow = None, None, None, Flow()
        self.emit(TxStopEvent(session, now, self.reading(c, now), reason))
        self.profiles.end_transaction(c.id)
        if c.pending_inoperative:
            c.operative, c.pending_inoperative = False, False
        if reason in (StopReason.EV_DISCONNECTED, StopReason.UNLOCK):
            self.unplug(c, now)
        else:
            c.phase = Phase.FINISHING
            c.phase_until = now + timedelta(seconds=c.plan.unplug_delay_s if c.plan else 60.0)
        if self.reboot_when_idle is not None and not self.active_sessions():
            self.request_reboot(self.reboot_when_idle, now)

    def request_reboot(self, reason: str, now: datetime) -> None:
        self.reboot_when_idle = None
        self.emit(RebootEvent(reason, now))

    def deauthorize(self, session: Session, now: datetime) -> None:
        """The CSMS refused the id tag in its answer to the start: stop (StopTransactionOnInvalidId)."""
        for c in self.connectors.values():
            if c.session is session:
                self.stop_transaction(c, now, StopReason.DEAUTHORIZED)

    def stop_all(self, now: datetime, reason: StopReason) -> None:
        for c in self.connectors.values():
            self.stop_transaction(c, now, reason)

    def active_sessions(self) -> list[Session]:
        return [c.session for c in self.connectors.values() if c.session is not None]

    @property
    def sample_interval_s(self) -> float:
        return max(0.001, self.variables.number("MeterValueSampleInterval", self.options.sample_interval_s))

    def sample_now(self, c: Connector, now: datetime) -> bool:
        """A periodic sample on demand (benchmark flood); False outside a transaction."""
        if c.session is None:
            return False
        self.advance(c, now)
        self.emit(TxSampleEvent(c.id, self.reading(c, now), c.session, SampleContext.PERIODIC))
        return True

    def _sample(self, c: Connector, now: datetime) -> None:
        """Periodic samples, each taken at its due time (a late tick catches up a few)."""
        if not self.options.periodic_samples:
            return
        interval = timedelta(seconds=self.sample_interval_s)
        for _ in range(MAX_CATCH_UP_SAMPLES):
            due = c.next_sample_at
            if c.session is None or due is None or now < due:
                return
            c.next_sample_at = due + interval
            self.advance(c, due)
            self.emit(TxSampleEvent(c.id, self.reading(c, due), c.session, SampleContext.PERIODIC))
        if c.next_sample_at is not None and c.next_sample_at <= now:  # far behind: skip, do not burst
            c.next_sample_at = now + interval

    # ------------------------------------------------------------------ status and faults

    def update_status(self, c: Connector, now: datetime, *, force: bool = False) -> None:
        status = connector.derived_status(c)
        if status != c.reported or force:
            c.reported = status
            self.emit(StatusEvent(c.id, now, status, c.error_code or "NoError"))
        if c.session is not None and status != c.charging_state:
            c.charging_state = status
            self.emit(ChargingStateEvent(c.session, now, status, self.reading(c, now)))

    @property
    def station_status(self) -> ConnectorState:
        operative = any(c.operative for c in self.connectors.values())
        return ConnectorState.AVAILABLE if operative else ConnectorState.UNAVAILABLE

    def all_statuses(self, now: datetime) -> None:
        """After a boot or reconnect: report the station and every connector."""
        self.emit(StatusEvent(0, now, self.station_status))
        for c in self.connectors.values():
            self.update_status(c, now, force=True)

    def _errors(self, c: Connector, now: datetime) -> None:
        due = c.error_schedule.due(now)
        if c.error_code is not None:
            if c.fault_until is not None and now >= c.fault_until:
                code, c.error_code, c.fault_until = c.error_code, None, None
                self.emit(ProblemEvent(c.id, now, code, cleared=True))
            return
        if not due:
            return
        code = c.error_schedule.choice(self.faults.error_codes)
        c.fault_until = now + timedelta(seconds=c.error_schedule.duration(self.faults.error_mean_s))
        self.record_fault(code, now, connector_id=c.id)
        tx_id = c.session.tx_id if c.session else None
        if c.phase == Phase.IN_TX:
            self.stop_transaction(c, now, stop_reason_for(code))
        elif c.phase in (Phase.PLUGGED, Phase.AUTHORIZING):
            self._leave(c, now)
        c.error_code = code
        self.emit(ProblemEvent(c.id, now, code, cleared=False, tx_id=tx_id))

    def record_fault(self, code: str, now: datetime, *, connector_id: int | None = None,
                     sessions: list[Session] | None = None, detail: str | None = None) -> None:
        """Log a fault to the ground truth and tag the sessions it touched.

        By default a connector fault touches that connector's session and a station fault every
        running session; message-level faults pass ``sessions`` explicitly.
        """
        if sessions is not None:
            touched = sessions
        elif connector_id is not None:
            current = self.connectors[connector_id].session
            touched = [current] if current is not None else []
        else:
            touched = self.active_sessions()
        for s in touched:
            s.faults.append(str(code))
        self.truth(fault_record(self.id, now, str(code), connector_id=connector_id,
                                session_refs=[s.ref for s in touched], detail=detail))

    # ------------------------------------------------------------------ ground truth

    def write_settled(self, *, force: bool = False) -> None:
        """Write sessions whose stop the CSMS has answered (or, with ``force``, every ended one)."""
        for s in list(self.unwritten):
            if s.ended and (force or s.stop_acked or s.stop_failed):
                s.written = True
                self.unwritten.remove(s)
                self.truth(session_record(self.id, self.version.value, s))

    @property
    def done(self) -> bool:
        """Every planned visit is over and recorded (only with a session limit)."""
        return not self.unwritten and all(c.phase == Phase.IDLE and c.plan is None for c in self.connectors.values())
