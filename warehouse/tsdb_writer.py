"""Stores batches of contract events and dataflow records in TimescaleDB (the dataflow's sink).

:meth:`TimescaleWriter.write` takes a mixed batch, groups it by type and, in ONE transaction,
binary-COPYs each group into a session-lifetime temp table (``on commit delete rows``) and merges
it into the real table set-based. Every merge is keyed on a natural key, so replaying a batch
(after a crash, or a commit whose acknowledgement was lost) changes nothing:

* time series (meter_samples, status_events, connection_events, setpoints, command_results,
  dead_letters by SHA-256 fingerprint): ``on conflict do nothing``, the first write wins;
* sessions: the higher ``revision`` wins; session_day_energy: a higher revision replaces all of
  the session's day rows; live_state: the later ``updated_at`` wins; alerts: the later
  ``(ts, count, state)`` wins; a tie never rewrites a row;
* chargers (ChargerInfo) and meter-sample quality flags (SampleVerdict): ``update ... from``,
  only where something differs; chargers missing from the registry and verdicts whose sample is
  not stored are counted in :attr:`WriteStats.unmatched`, never invented.

Errors::

    WriteError                  the batch was not stored (the message says which table failed)
    ├── RetryableWriteError     connection lost, server down, deadlock, timeout: retry the same
    │                           batch (the connection is re-opened on the next write)
    └── PermanentWriteError     the data or schema is wrong; retrying the same batch fails again
        └── UnsupportedRecordError  an object of a type this writer does not store (TypeError too)
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import psycopg
from psycopg import sql

from control import contract, records

log = logging.getLogger(__name__)


class WriteError(RuntimeError):
    """A batch could not be stored; nothing of it was committed."""


class RetryableWriteError(WriteError):
    """A transient failure; writing the same batch again is safe (the writes are idempotent)."""


class PermanentWriteError(WriteError):
    """The batch cannot be stored as it is."""


class UnsupportedRecordError(PermanentWriteError, TypeError):
    """The batch holds an object this writer has no table for."""


@runtime_checkable
class SampleVerdict(Protocol):
    """The quality gate's judgement of one meter sample (matched on the sample's natural key)."""

    @property
    def charger_id(self) -> str: ...
    @property
    def connector_id(self) -> int: ...
    @property
    def ts(self) -> datetime: ...
    @property
    def context(self) -> str: ...
    @property
    def session_id(self) -> str | None: ...
    @property
    def flags(self) -> Iterable[str]: ...


@dataclass(frozen=True, slots=True)
class WriteStats:
    received: Mapping[str, int]  # objects per target table in the batch
    changed: Mapping[str, int]  # rows inserted or updated (0 everywhere for a replay); a verdict
    # whose sample is inserted by the same batch rides on that insert and counts under meter_samples
    unmatched: Mapping[str, int]  # verdicts without their sample, charger infos without a registry row

    @property
    def total_changed(self) -> int:
        return sum(self.changed.values())


def _t(value: str | None) -> str | None:
    # Text from chargers may hold U+0000 (a JSON "\u0000"), which PostgreSQL text refuses.
    return value.replace("\x00", "\ufffd") if value is not None and "\x00" in value else value


def _fingerprint(d: contract.DeadLetter) -> bytes:
    h = hashlib.sha256()
    for part in (d.ts.isoformat(), d.source, d.reason, d.raw, d.charger_id or "\x00", d.topic or "\x00"):
        data = part.encode()
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.digest()


def _json(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {_t(k) or "": _t(v) if isinstance(v, str) else v for k, v in mapping.items()}


# Each group: target table, staging columns "name:type", row builder, and the merge statements
# run after the COPY; a ("unmatched", ...) statement counts instead of changing. Integers are
# staged as int8 even for int4 columns: psycopg's binary int4 dumper silently wraps values past
# 2**31 (2**32 + 7 arrives as 7), while the int8 -> int4 cast in the merge refuses them.
_Q = sql.SQL


@dataclass(frozen=True, slots=True)
class _Group:
    table: str
    kind: type[Any] | None  # the class stored here (None: SampleVerdict, a protocol)
    columns: tuple[tuple[str, str], ...]
    row: Callable[[Any], tuple[Any, ...]]
    merges: tuple[tuple[str, sql.SQL | sql.Composed], ...]
    ordered: bool = False  # staging gets a "seq" column: the later object in the batch wins ties

    @property
    def staging(self) -> str:
        return f"stg_{self.table}"

    @property
    def staged(self) -> list[tuple[str, str]]:
        return [*self.columns, ("seq", "int8")] if self.ordered else list(self.columns)


def _cols(spec: str) -> tuple[tuple[str, str], ...]:
    return tuple((name, typ) for name, typ in (item.split(":") for item in spec.split()))


def _ids(names: Iterable[str], table: str | None = None) -> sql.Composable:
    return _Q(", ").join(sql.Identifier(*([table, n] if table else [n])) for n in names)


def _updates(names: Iterable[str]) -> sql.Composable:
    return _Q(", ").join(_Q("{0} = excluded.{0}").format(sql.Identifier(n)) for n in names)


def _insert(table: str, columns: str, conflict: str) -> tuple[str, sql.Composed]:
    names = [name for name, _ in _cols(columns)]
    return ("changed", _Q("insert into {t} ({c}) select {c} from {s} on conflict ({k}) do nothing").format(
        t=sql.Identifier(table), c=_ids(names), s=sql.Identifier(f"stg_{table}"), k=_ids(conflict.split())))


_SAMPLES = ("ts:timestamptz charger_id:text connector_id:int8 context:text transaction_id:text energy_wh:float8"
            " power_w:float8 current_a:float8 current_l1_a:float8 current_l2_a:float8 current_l3_a:float8"
            " current_offered_a:float8 voltage_v:float8 soc_pct:float8 temperature_c:float8 quirks:text[]"
            " bridge_received_at:timestamptz")
_STATUS = ("ts:timestamptz charger_id:text connector_id:int8 status:text error_code:text vendor_error_code:text"
           " info:text bridge_received_at:timestamptz")
_CONNECTION = ("ts:timestamptz charger_id:text kind:text ocpp_version:text reason:text bridge_id:text"
               " heartbeat_interval_s:int8")
_SETPOINTS = ("ts:timestamptz decision_id:text site_id:text charger_id:text connector_id:int8 limit_a:float8"
              " limit_w:float8 previous_limit_a:float8 previous_limit_w:float8 phases:int8 reason:text")
_RESULTS = "ts:timestamptz command_id:text charger_id:text outcome:text status:text detail:text payload:jsonb"
_DEAD = ("ts:timestamptz source:text reason:text raw:text raw_bytes:bytea charger_id:text topic:text"
         " fingerprint:bytea")
_SESSIONS = ("session_id:text charger_id:text connector_id:int8 transaction_id:text site_id:text state:text"
             " revision:int8 started_at:timestamptz ended_at:timestamptz energy_wh:float8 id_tag:text"
             " meter_start_wh:float8 meter_stop_wh:float8 peak_power_w:float8 avg_power_w:float8"
             " duration_s:float8 charging_s:float8 idle_s:float8 stop_reason:text mode:text flags:text[]"
             " sample_count:int8 last_sample_at:timestamptz")
_LIVE = ("charger_id:text connector_id:int8 status:text updated_at:timestamptz last_seen_at:timestamptz"
         " connector_status:text power_w:float8 current_a:float8 session_id:text session_started_at:timestamptz"
         " session_energy_wh:float8 soc_pct:float8 error_code:text online:bool")
_ALERTS = ("alert_id:text kind:text severity:text ts:timestamptz message:text state:text charger_id:text"
           " site_id:text count:int8")

_LOADS = ("ts:timestamptz site_id:text circuit_id:text power_w:float8 current_l1_a:float8 current_l2_a:float8"
          " current_l3_a:float8 source:text")
_DECISIONS = ("ts:timestamptz decision_id:text site_id:text charger_id:text connector_id:int8 old_limit_a:float8"
              " new_limit_a:float8 paused:bool reason:text binding:text site_state:text inputs:jsonb command_id:text")
_COMPLIANCE = ("ts:timestamptz decision_id:text site_id:text charger_id:text connector_id:int8 limit_a:float8"
               " measured_a:float8 verdict:text reaction_s:float8 command_id:text")
# building_loads' natural key is an expression index (circuit and source may be NULL).
_LOADS_INSERT = _Q("insert into building_loads ({c}) select {c} from stg_building_loads on conflict do nothing").format(
    c=_ids(n for n, _ in _cols(_LOADS)))

_CHARGERS_UPDATE = _Q("""
update chargers c set vendor = i.vendor, model = i.model, serial_number = i.serial_number,
    firmware_version = i.firmware_version, ocpp_version = coalesce(i.ocpp_version, c.ocpp_version),
    last_boot_at = i.ts, updated_at = now()
from (select distinct on (charger_id) * from stg_chargers order by charger_id, ts desc, seq desc) i
where c.charger_id = i.charger_id and (c.last_boot_at is null or c.last_boot_at <= i.ts)
  and (c.vendor, c.model, c.serial_number, c.firmware_version, c.ocpp_version, c.last_boot_at)
      is distinct from (i.vendor, i.model, i.serial_number, i.firmware_version,
                        coalesce(i.ocpp_version, c.ocpp_version), i.ts)""")
_CHARGERS_UNMATCHED = _Q("""
select count(distinct charger_id) from stg_chargers i
where not exists (select 1 from chargers c where c.charger_id = i.charger_id)""")

# Verdicts: the later one per sample in the batch counts; one staged in the same batch as its
# sample is applied by that insert (no second tuple). The ts bounds (parameters, so the plan
# excludes chunks) keep the joins off every chunk's index.
_VERDICTS_DEDUPE = _Q("""
delete from stg_sample_verdicts a using stg_sample_verdicts b
where (a.charger_id, a.connector_id, a.ts, a.context) = (b.charger_id, b.connector_id, b.ts, b.context)
  and a.seq < b.seq""")
_SAMPLES_INSERT = _Q("""
insert into meter_samples ({c}, quality_flags, session_id)
select {s}, coalesce(v.flags, '{{}}'), v.session_id from stg_meter_samples s left join stg_sample_verdicts v
    on v.charger_id = s.charger_id and v.connector_id = s.connector_id and v.ts = s.ts and v.context = s.context
on conflict (charger_id, connector_id, ts, context) do nothing""")
_VERDICTS_UPDATE = _Q("""
update meter_samples m set quality_flags = v.flags, session_id = v.session_id from stg_sample_verdicts v
where m.charger_id = v.charger_id and m.connector_id = v.connector_id and m.ts = v.ts and m.context = v.context
  and m.ts between %(lo)s and %(hi)s and (m.quality_flags, m.session_id) is distinct from (v.flags, v.session_id)""")
_VERDICTS_UNMATCHED = _Q("""
select count(*) from stg_sample_verdicts v where not exists (select 1 from meter_samples m
    where m.charger_id = v.charger_id and m.connector_id = v.connector_id and m.ts = v.ts and m.context = v.context
      and m.ts between %(lo)s and %(hi)s)""")

_ALERTS_UPSERT = _Q("""
insert into alerts ({c}) select {c} from (select distinct on (alert_id) * from stg_alerts
    order by alert_id, ts desc, count desc,
             array_position(array['open','acknowledged','resolved'], state) desc, seq desc) s
on conflict (alert_id) do update set {u}, updated_at = now()
where (excluded.ts, excluded.count, array_position(array['open','acknowledged','resolved'], excluded.state))
      >= (alerts.ts, alerts.count, array_position(array['open','acknowledged','resolved'], alerts.state))
  and ({old}) is distinct from ({new})""")

_SESSIONS_UPSERT = _Q("""
insert into sessions ({c}) select {c} from (select distinct on (session_id) * from stg_sessions
    order by session_id, revision desc, seq) s
on conflict (session_id) do update set {u}, written_at = now()
where sessions.revision < excluded.revision""")

_DAYS_DELETE_OLDER = _Q("""
delete from session_day_energy d
using (select session_id, max(revision) as revision from stg_session_day_energy group by session_id) i
where d.session_id = i.session_id and d.revision < i.revision""")
_DAYS_INSERT_NEWEST = _Q("""
insert into session_day_energy (session_id, charger_id, day, energy_wh, revision)
select distinct on (s.session_id, s.day) s.session_id, s.charger_id, s.day, s.energy_wh, s.revision
from stg_session_day_energy s
where s.revision = (select max(x.revision) from stg_session_day_energy x where x.session_id = s.session_id)
  and not exists (select 1 from session_day_energy d where d.session_id = s.session_id and d.revision >= s.revision)
order by s.session_id, s.day, s.seq desc
on conflict (session_id, day) do nothing""")

_LIVE_UPSERT = _Q("""
insert into live_state ({c}) select {c} from (select distinct on (charger_id, connector_id) * from stg_live_state
    order by charger_id, connector_id, updated_at desc, seq desc) s
on conflict (charger_id, connector_id) do update set {u}
where live_state.updated_at < excluded.updated_at""")


def _groups() -> dict[str, _Group]:
    def keyed(spec: str, key: set[str]) -> tuple[sql.Composable, sql.Composable]:
        names = [n for n, _ in _cols(spec)]
        return _ids(names), _updates(n for n in names if n not in key)

    s_cols, s_set = keyed(_SESSIONS, {"session_id"})
    l_cols, l_set = keyed(_LIVE, {"charger_id", "connector_id"})
    a_cols, a_set = keyed(_ALERTS, {"alert_id"})
    a_rest = [n for n, _ in _cols(_ALERTS) if n != "alert_id"]
    groups = [
        _Group("chargers", contract.ChargerInfo,
               _cols("charger_id:text ts:timestamptz vendor:text model:text serial_number:text firmware_version:text"
                     " ocpp_version:text"),
               lambda e: (e.charger_id, e.ts, _t(e.vendor), _t(e.model), _t(e.serial_number),
                          _t(e.firmware_version), e.ocpp_version),
               (("changed", _CHARGERS_UPDATE), ("unmatched", _CHARGERS_UNMATCHED)), ordered=True),
        _Group("meter_samples", contract.MeterSample, _cols(_SAMPLES),
               lambda e: (e.ts, e.charger_id, e.connector_id, e.context, e.transaction_id, e.energy_wh, e.power_w,
                          e.current_a, e.current_l1_a, e.current_l2_a, e.current_l3_a, e.current_offered_a,
                          e.voltage_v, e.soc_pct, e.temperature_c, [_t(q) for q in e.quirks] if e.quirks else [],
                          e.received_at),
               (("changed", _SAMPLES_INSERT.format(c=_ids(n for n, _ in _cols(_SAMPLES)),
                                                   s=_ids((n for n, _ in _cols(_SAMPLES)), "s"))),)),
        _Group("sample_verdicts", None, _cols("charger_id:text connector_id:int8 ts:timestamptz context:text"
                                        " session_id:text flags:text[]"),
               lambda e: (e.charger_id, e.connector_id, e.ts, str(e.context), e.session_id, [str(f) for f in e.flags]),
               (("changed", _VERDICTS_UPDATE), ("unmatched", _VERDICTS_UNMATCHED)), ordered=True),
        _Group("status_events", contract.StatusChanged, _cols(_STATUS),
               lambda e: (e.ts, e.charger_id, e.connector_id, e.status, _t(e.error_code), _t(e.vendor_error_code),
                          _t(e.info), e.received_at),
               (_insert("status_events", _STATUS, "charger_id connector_id ts status"),)),
        _Group("connection_events", contract.ConnectionEvent, _cols(_CONNECTION),
               lambda e: (e.ts, e.charger_id, e.kind, e.ocpp_version, _t(e.reason), e.bridge_id,
                          e.heartbeat_interval_s),
               (_insert("connection_events", _CONNECTION, "charger_id ts kind"),)),
        _Group("setpoints", contract.Setpoint, _cols(_SETPOINTS),
               lambda e: (e.ts, e.decision_id, e.site_id, e.charger_id, e.connector_id,
                          *((e.limit, None, e.previous_limit, None) if e.unit == contract.RateUnit.AMPS
                            else (None, e.limit, None, e.previous_limit)), e.phases, _t(e.reason)),
               (_insert("setpoints", _SETPOINTS, "charger_id connector_id decision_id ts"),)),
        _Group("building_loads", contract.BuildingLoad, _cols(_LOADS),
               lambda e: (e.ts, e.site_id, e.circuit_id, e.power_w, e.current_l1_a, e.current_l2_a, e.current_l3_a,
                          _t(e.source)),
               (("changed", _LOADS_INSERT),)),
        _Group("control_decisions", records.ControlDecision, _cols(_DECISIONS),
               lambda e: (e.ts, e.decision_id, e.site_id, e.charger_id, e.connector_id, e.old_limit_a, e.new_limit_a,
                          e.paused, _t(e.reason), _t(e.binding), e.site_state,
                          {k: _json(v) for k, v in e.inputs.items()}, e.command_id),
               (_insert("control_decisions", _DECISIONS, "decision_id charger_id connector_id ts"),)),
        _Group("setpoint_compliance", records.ComplianceCheck, _cols(_COMPLIANCE),
               lambda e: (e.ts, e.decision_id, e.site_id, e.charger_id, e.connector_id, e.limit_a, e.measured_a,
                          e.verdict, e.reaction_s, e.command_id),
               (_insert("setpoint_compliance", _COMPLIANCE, "decision_id charger_id connector_id ts"),)),
        _Group("command_results", contract.CommandResult, _cols(_RESULTS),
               lambda e: (e.ts, e.command_id, e.charger_id, e.outcome, _t(e.status), _t(e.detail), _json(e.payload)),
               (_insert("command_results", _RESULTS, "command_id ts"),)),
        _Group("alerts", contract.Alert, _cols(_ALERTS),
               lambda e: (e.alert_id, e.kind, e.severity, e.ts, _t(e.message), e.state, e.charger_id, e.site_id,
                          e.count),
               (("changed", _ALERTS_UPSERT.format(c=a_cols, u=a_set, old=_ids(a_rest, "alerts"),
                                                  new=_ids(a_rest, "excluded"))),), ordered=True),
        _Group("dead_letters", contract.DeadLetter, _cols(_DEAD),
               lambda e: (e.ts, e.source, _t(e.reason), _t(e.raw), e.raw.encode() if "\x00" in e.raw else None,
                          _t(e.charger_id), _t(e.topic), _fingerprint(e)),
               (_insert("dead_letters", _DEAD, "fingerprint"),)),
        _Group("sessions", records.SessionRecord, _cols(_SESSIONS),
               lambda e: (e.session_id, e.charger_id, e.connector_id, e.transaction_id, e.site_id, e.state,
                          e.revision, e.started_at, e.ended_at, e.energy_wh, _t(e.id_tag), e.meter_start_wh,
                          e.meter_stop_wh, e.peak_power_w, e.avg_power_w, e.duration_s, e.charging_s, e.idle_s,
                          _t(e.stop_reason), e.mode, [str(f) for f in e.flags], e.sample_count, e.last_sample_at),
               (("changed", _SESSIONS_UPSERT.format(c=s_cols, u=s_set)),), ordered=True),
        _Group("session_day_energy", records.SessionDayEnergy,
               _cols("session_id:text charger_id:text day:date energy_wh:float8 revision:int8"),
               lambda e: (e.session_id, e.charger_id, e.day, e.energy_wh, e.revision),
               (("changed", _DAYS_DELETE_OLDER), ("changed", _DAYS_INSERT_NEWEST)), ordered=True),
        _Group("live_state", records.LiveState, _cols(_LIVE),
               lambda e: (e.charger_id, e.connector_id, e.status, e.updated_at, e.last_seen_at,
                          _t(e.connector_status), e.power_w, e.current_a, e.session_id, e.session_started_at,
                          e.session_energy_wh, e.soc_pct, _t(e.error_code), e.online),
               (("changed", _LIVE_UPSERT.format(c=l_cols, u=l_set)),), ordered=True),
    ]
    return {g.table: g for g in groups}


_GROUPS = _groups()  # plain data: builds strings, touches nothing
_TABLE_OF = {g.kind: g.table for g in _GROUPS.values() if g.kind is not None}


def _staging_ddl(group: _Group) -> sql.Composed:
    return _Q("create temp table if not exists {} ({}) on commit delete rows").format(
        sql.Identifier(group.staging), _Q(", ").join(_Q(f"{n} {t}") for n, t in group.staged))


def _table_for(obj: object) -> str:
    table = _TABLE_OF.get(type(obj))
    if table is not None:
        return table
    if isinstance(obj, SampleVerdict):  # a structural check: slow, so remembered per class
        _TABLE_OF[type(obj)] = "sample_verdicts"
        return "sample_verdicts"
    raise UnsupportedRecordError(f"the warehouse writer does not store {type(obj).__name__} objects")


class TimescaleWriter:
    """One connection, opened on the first write and re-opened after a failure. Not thread-safe:
    give each sink worker its own writer."""

    def __init__(self, dsn: str, *, connect_timeout_s: int = 10) -> None:
        self._dsn = dsn
        self._connect_timeout_s = connect_timeout_s
        self._conn: psycopg.Connection[Any] | None = None

    def __enter__(self) -> TimescaleWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self.close()
        if self._conn is None:
            conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=self._connect_timeout_s)
            try:
                for group in _GROUPS.values():
                    conn.execute(_staging_ddl(group))
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def write(self, batch: Sequence[object]) -> WriteStats:
        """Store ``batch`` in one transaction; safe to call again with the same batch."""
        grouped: dict[str, list[Any]] = {}
        for obj in batch:  # classify everything before touching the database
            grouped.setdefault(_table_for(obj), []).append(obj)
        received = {table: len(grouped[table]) for table in _GROUPS if table in grouped}
        changed: dict[str, int] = {}
        unmatched: dict[str, int] = {}
        if not grouped:
            return WriteStats(received, changed, unmatched)
        step = "connecting"
        try:
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                for table, items in grouped.items():
                    step = f"staging {table}"
                    self._copy(cur, _GROUPS[table], items)
                if "sample_verdicts" in grouped:
                    step = "deduplicating sample_verdicts"
                    cur.execute(_VERDICTS_DEDUPE)
                for table, group in _GROUPS.items():  # registry, samples, verdicts, ... sessions
                    if table not in grouped:
                        continue
                    step = f"writing {table}"
                    params = _bounds(grouped[table]) if table == "sample_verdicts" else None
                    for label, statement in group.merges:
                        # Never a generic plan: the verdicts' ts bounds must prune chunks per batch.
                        cur.execute(statement, params, prepare=False)
                        if label == "unmatched":
                            row = cur.fetchone()
                            unmatched[table] = int(row[0]) if row else 0
                        else:
                            changed[table] = changed.get(table, 0) + max(cur.rowcount, 0)
                step = "committing"
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if self._conn is not None and (self._conn.closed or self._conn.broken):
                self.close()
            raise RetryableWriteError(f"warehouse write failed while {step} (retry the batch): {exc}") from exc
        except (psycopg.Error, ValueError, TypeError, OverflowError) as exc:  # a value the schema refuses
            raise PermanentWriteError(f"warehouse write failed while {step}: {exc}") from exc
        for table, count in unmatched.items():
            if count:
                log.warning("%d %s in a batch matched nothing stored (see WriteStats.unmatched)", count, table)
        return WriteStats(received, changed, unmatched)

    @staticmethod
    def _copy(cur: psycopg.Cursor[Any], group: _Group, items: Sequence[Any]) -> None:
        statement = _Q("copy {} ({}) from stdin (format binary)").format(
            sql.Identifier(group.staging), _ids(n for n, _ in group.staged))
        build = group.row
        with cur.copy(statement) as copy:
            copy.set_types([t for _, t in group.staged])
            if group.ordered:
                for seq, item in enumerate(items):
                    copy.write_row((*build(item), seq))
            else:
                for item in items:
                    copy.write_row(build(item))


def _bounds(verdicts: Sequence[SampleVerdict]) -> dict[str, datetime]:
    stamps = [v.ts for v in verdicts]
    return {"lo": min(stamps), "hi": max(stamps)}
