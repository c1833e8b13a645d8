"""Batch data quality: Great Expectations suites over the warehouse tables, results stored in PG.

:func:`run_dq` validates one *batch* per asset (the rows whose time column falls in
``[since, until)``: ``ts`` for meter_samples and status_events, ``started_at`` for sessions and
session_day_energy, ``received_at`` for dead_letters), stores one row per expectation in
``data_quality_results`` and one row per asset and run in ``data_quality_runs`` (the window), and
returns a :class:`DqRun` summary. By default a batch starts where the asset's last incremental
run ended (else 24 h back) and ends :data:`SETTLE_LAG` before ``now``, so rows the pipeline is
still writing fall into the next batch, not between two. A run is "successful" here when it
completed and was stored, whatever its expectations said: the failures are kept in the results,
and re-validating a failed window forever would only repeat them. A run that raised stored
nothing, so the next run covers its window again. Rows stored later than ``SETTLE_LAG`` behind
their time (an offline charger's backlog) land in a window already validated: re-check it with an
explicit ``since``/``until``.

How the data gets to GX: every asset is a GX SQL *query asset* on the ``postgresql+psycopg``
SQLAlchemy dialect, so the metrics (counts, unexpected values) are computed by PostgreSQL and a
large table is never pulled into memory. What a plain column expectation cannot say is computed
by the asset's query as a derived column: the day-sum difference per session, whether the flags
imply ``excluded``, flag names outside :class:`~control.records.QualityFlag`, how far ``ts`` is
ahead of the storage time. So nothing needs the pandas fallback. GX takes a query as text, not
parameters: the window bounds and value lists are rendered by ``psycopg.sql.Literal`` (never by
string formatting).

Great Expectations is imported only inside :class:`Validator` (about 4.5 s and 240 MB): importing
this module costs psycopg only, so the streaming path and the dashboards may import it freely.

A failure is never "all good". Errors::

    DqError                     the run was not completed; nothing of it was stored
    ├── DqUnavailableError      the database could not be reached (retry later)
    └── DqRunError              a suite could not be evaluated (an expectation raised, GX failed)
"""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from control.contract import ConnectorState, SampleContext
from control.records import EXCLUDING_FLAGS, QualityFlag, SessionState

SETTLE_LAG: Final = timedelta(minutes=2)  # the default batch ends this long before now
DEFAULT_LOOKBACK: Final = timedelta(hours=24)  # the first run of an asset looks this far back
FUTURE_TOLERANCE_S: Final = 300.0  # ts may be ahead of the storage time by this much
MAX_POWER_W: Final = 400_000.0
VOLTAGE_RANGE_V: Final = (0.0, 1500.0)  # up to MCS truck charging; catches mV/kV unit mix-ups
ENERGY_TOLERANCE_WH: Final = 0.001  # 1 mWh
PARTIAL_UNEXPECTED: Final = 5  # unexpected values kept per result


class DqError(RuntimeError):
    """A data-quality run did not complete; nothing of it was stored."""


class DqUnavailableError(DqError):
    """The database could not be reached or did not answer."""


class DqRunError(DqError):
    """A suite could not be evaluated."""


@dataclass(frozen=True, slots=True)
class Check:
    """One expectation: a stable id (unique within the asset), the GX class name and its kwargs."""

    id: str
    gx_class: str
    kwargs: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class AssetSpec:
    name: str  # the table (asset) name stored in data_quality_results.asset
    time_column: str
    query: sql.SQL  # {since} and {until} are the window bounds, the other names are in params
    checks: tuple[Check, ...]
    params: Mapping[str, sql.Composable] = dataclasses.field(default_factory=dict)

    @property
    def suite(self) -> str:
        return f"warehouse.{self.name}"


def _not_null(*columns: str) -> tuple[Check, ...]:
    return tuple(Check(f"{c}_not_null", "ExpectColumnValuesToNotBeNull", {"column": c}) for c in columns)


def _between(check_id: str, column: str, low: float | None = None, high: float | None = None) -> Check:
    return Check(check_id, "ExpectColumnValuesToBeBetween", {"column": column, "min_value": low, "max_value": high})


def _in_set(check_id: str, column: str, values: Sequence[str]) -> Check:
    return Check(check_id, "ExpectColumnValuesToBeInSet", {"column": column, "value_set": sorted(values)})


_L = sql.Literal
_KNOWN_FLAGS = sql.SQL("{}::text[]").format(_L(sorted(f.value for f in QualityFlag)))
_EXCLUDING = sql.SQL("{}::text[]").format(_L(sorted(f.value for f in EXCLUDING_FLAGS)))


def _unknown_flags(column: str) -> sql.Composable:
    return sql.SQL("(select string_agg(f, ',') from unnest({c}) f where f <> all({known}))").format(
        c=sql.Identifier(column), known=_KNOWN_FLAGS)


ASSETS: Final[tuple[AssetSpec, ...]] = (
    AssetSpec("meter_samples", "ts", sql.SQL("""
select ts, charger_id, connector_id, context, energy_wh, power_w, soc_pct, voltage_v,
       case when not ({skew} = any(quality_flags)) then extract(epoch from ts - received_at)::float8 end
           as ts_ahead_of_storage_s,
       {unknown} as unknown_quality_flags
from meter_samples where ts >= {since} and ts < {until}"""), (
        *_not_null("ts", "charger_id", "connector_id", "context"),
        _in_set("context_known", "context", [c.value for c in SampleContext]),
        _between("energy_wh_non_negative", "energy_wh", 0),
        _between("power_w_range", "power_w", 0, MAX_POWER_W),
        _between("soc_pct_range", "soc_pct", 0, 100),
        _between("voltage_v_plausible", "voltage_v", *VOLTAGE_RANGE_V),
        # Rows the stream already flagged clock_skew are known and left out (the column is null).
        _between("ts_not_in_future", "ts_ahead_of_storage_s", None, FUTURE_TOLERANCE_S),
        Check("quality_flags_known", "ExpectColumnValuesToBeNull", {"column": "unknown_quality_flags"}),
    ), {"skew": _L(QualityFlag.CLOCK_SKEW.value), "unknown": _unknown_flags("quality_flags")}),
    AssetSpec("sessions", "started_at", sql.SQL("""
select session_id, charger_id, connector_id, state, started_at, ended_at, energy_wh, duration_s, excluded,
       flags && {excluding} as flags_imply_excluded,
       {unknown} as unknown_flags,
       case when state = {open} then (select count(*) from sessions o where o.state = {open}
            and o.charger_id = s.charger_id and o.connector_id = s.connector_id) end as open_sessions_on_connector
from sessions s where started_at >= {since} and started_at < {until}"""), (
        *_not_null("session_id", "charger_id", "started_at"),
        Check("session_id_unique", "ExpectColumnValuesToBeUnique", {"column": "session_id"}),
        _in_set("state_known", "state", [s.value for s in SessionState]),
        Check("ended_at_not_before_started_at", "ExpectColumnPairValuesAToBeGreaterThanB",
              {"column_A": "ended_at", "column_B": "started_at", "or_equal": True,
               "ignore_row_if": "either_value_is_missing"}),
        _between("energy_wh_non_negative", "energy_wh", 0),
        _between("duration_s_non_negative", "duration_s", 0),
        Check("excluded_matches_flags", "ExpectColumnPairValuesToBeEqual",
              {"column_A": "excluded", "column_B": "flags_imply_excluded"}),
        Check("flags_known", "ExpectColumnValuesToBeNull", {"column": "unknown_flags"}),
        _between("one_open_session_per_connector", "open_sessions_on_connector", None, 1),
    ), {"excluding": _EXCLUDING, "unknown": _unknown_flags("flags"), "open": _L(SessionState.OPEN.value)}),
    # Day rows carry no time of their own: the batch is the day rows of the sessions in the window.
    AssetSpec("session_day_energy", "started_at", sql.SQL("""
select s.session_id, s.energy_wh as session_energy_wh, d.day_energy_wh,
       coalesce(d.day_energy_wh, 0) - s.energy_wh as difference_wh, d.revisions, d.min_day_energy_wh
from sessions s left join lateral (
    select sum(energy_wh) as day_energy_wh, count(distinct revision) as revisions, min(energy_wh) as min_day_energy_wh
    from session_day_energy d where d.session_id = s.session_id) d on true
where s.started_at >= {since} and s.started_at < {until}"""), (
        _between("day_sum_matches_session", "difference_wh", -ENERGY_TOLERANCE_WH, ENERGY_TOLERANCE_WH),
        _between("one_revision_per_session", "revisions", 0, 1),
        _between("day_energy_non_negative", "min_day_energy_wh", 0),
    )),
    AssetSpec("status_events", "ts", sql.SQL("""
select ts, charger_id, connector_id, status, extract(epoch from ts - received_at)::float8 as ts_ahead_of_storage_s
from status_events where ts >= {since} and ts < {until}"""), (
        *_not_null("ts", "charger_id", "connector_id", "status"),
        _in_set("status_known", "status", [s.value for s in ConnectorState]),
        _between("ts_not_in_future", "ts_ahead_of_storage_s", None, FUTURE_TOLERANCE_S),
    )),
    AssetSpec("dead_letters", "received_at", sql.SQL("""
select id, ts, source, reason, raw, length(reason) as reason_length
from dead_letters where received_at >= {since} and received_at < {until}"""), (
        *_not_null("raw", "reason", "source", "ts"),
        _between("reason_not_empty", "reason_length", 1),
    )),
)


@dataclass(frozen=True, slots=True)
class ExpectationOutcome:
    asset: str
    suite: str
    expectation_id: str
    expectation_type: str  # e.g. expect_column_values_to_be_between
    column: str | None
    kwargs: Mapping[str, Any]
    success: bool
    observed: Mapping[str, Any]  # unexpected_count, unexpected_percent, partial_unexpected_list, ...

    @property
    def unexpected_count(self) -> int | None:
        value = self.observed.get("unexpected_count")
        return int(value) if isinstance(value, int | float) else None

    @property
    def severity(self) -> tuple[float, int]:
        """Sort key of a failure: the share of bad rows first, then their count."""
        percent = self.observed.get("unexpected_percent")
        return (float(percent) if isinstance(percent, int | float) else 100.0, self.unexpected_count or 0)


@dataclass(frozen=True, slots=True)
class AssetResult:
    asset: str
    since: datetime
    until: datetime
    rows: int  # rows in the batch (GX's element_count)
    outcomes: tuple[ExpectationOutcome, ...]

    @property
    def passed(self) -> int:
        return sum(o.success for o in self.outcomes)

    @property
    def failed(self) -> int:
        return len(self.outcomes) - self.passed

    @property
    def worst(self) -> ExpectationOutcome | None:
        failures = [o for o in self.outcomes if not o.success]
        return max(failures, key=lambda o: o.severity) if failures else None


@dataclass(frozen=True, slots=True)
class DqRun:
    run_id: str
    ran_at: datetime
    assets: tuple[AssetResult, ...]

    @property
    def failed(self) -> int:
        return sum(a.failed for a in self.assets)

    @property
    def success(self) -> bool:
        return self.failed == 0

    @property
    def outcomes(self) -> tuple[ExpectationOutcome, ...]:
        return tuple(o for a in self.assets for o in a.outcomes)


@dataclass(frozen=True, slots=True)
class StoredResult:
    run_id: str
    ran_at: datetime
    outcome: ExpectationOutcome


@contextmanager
def _connect(dsn: str, what: str) -> Iterator[psycopg.Connection[Any]]:
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            yield conn
    except psycopg.OperationalError as exc:
        raise DqUnavailableError(f"{what}: the database is unavailable: {_first_line(exc)}") from exc
    except psycopg.errors.UndefinedTable as exc:
        raise DqError(f"{what} failed: {_first_line(exc)} (apply the migrations: flowbank services)") from exc
    except psycopg.Error as exc:
        raise DqError(f"{what} failed: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


_OBSERVED_KEYS: Final = ("observed_value", "element_count", "unexpected_count", "unexpected_percent",
                         "missing_count", "partial_unexpected_list")


def _raised(exception_info: Any) -> str | None:
    """The message of an exception GX caught while computing a metric (it nests them per metric)."""
    if not isinstance(exception_info, Mapping):
        return None
    if exception_info.get("raised_exception"):
        return str(exception_info.get("exception_message") or "unknown error")
    return next((m for m in map(_raised, exception_info.values()) if m), None)


class Validator:
    """A GX ephemeral context bound to one database. Build it once per process (importing GX and
    building the context take seconds) and reuse it for every run; :meth:`close` releases the
    database connections."""

    def __init__(self, dsn: str) -> None:
        import great_expectations as gx
        import great_expectations.expectations as gxe
        from great_expectations.data_context.types.base import ProgressBarsConfig
        from sqlalchemy.engine import URL

        self._context: Any = gx.get_context(mode="ephemeral")
        self._context.variables.progress_bars = ProgressBarsConfig(globally=False)
        params = {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
        # The password goes to psycopg as a connect argument, not into the URL: no escaping, and GX
        # never runs its ${VAR} substitution over it or shows it with the connection string.
        password = params.pop("password", None)
        port = params.pop("port", None)
        url = URL.create("postgresql+psycopg", username=params.pop("user", None), host=params.pop("host", None),
                         port=int(port) if port and port.isdigit() else None, database=params.pop("dbname", None),
                         query=params | ({"port": port} if port and not port.isdigit() else {}))
        connect_args = {"password": password} if password is not None else {}
        try:
            # No temp tables: validating only reads (it could run on a replica), and a window's
            # query is cheap to re-run per metric (GX bundles the metrics into a few queries).
            sources: Any = self._context.data_sources
            self._source: Any = sources.add_postgres(
                "warehouse", connection_string=url.render_as_string(hide_password=False), create_temp_table=False,
                kwargs={"connect_args": connect_args, "pool_pre_ping": True})
        except Exception as exc:  # GX wraps the driver's error (TestConnectionError)
            raise DqUnavailableError(f"connecting Great Expectations: {_first_line(exc)}") from exc
        self._suites = {spec.name: gx.ExpectationSuite(name=spec.suite, expectations=[
            getattr(gxe, check.gx_class)(**check.kwargs, meta={"check": check.id}) for check in spec.checks])
            for spec in ASSETS}

    def validate(self, spec: AssetSpec, since: datetime, until: datetime) -> AssetResult:
        query = spec.query.format(since=_L(since), until=_L(until), **spec.params).as_string()
        if spec.name in {asset.name for asset in self._source.assets}:
            self._source.delete_asset(spec.name)
        try:
            batch = self._source.add_query_asset(spec.name, query=query).add_batch_definition_whole_table(
                "window").get_batch()
            result = batch.validate(self._suites[spec.name], result_format={
                "result_format": "SUMMARY", "partial_unexpected_count": PARTIAL_UNEXPECTED})
        except Exception as exc:
            raise DqRunError(f"validating {spec.name}: {_first_line(exc)}") from exc
        outcomes = []
        for r in result.results:
            error = _raised(r.exception_info)
            if error is not None:
                raise DqRunError(f"validating {spec.name}: an expectation could not be evaluated: {error}")
            config = r.expectation_config
            kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
            columns = [kwargs[k] for k in ("column", "column_A", "column_B") if kwargs.get(k)]
            observed = {k: r.result[k] for k in _OBSERVED_KEYS if k in r.result}
            if "partial_unexpected_list" in observed:
                observed["partial_unexpected_list"] = list(observed["partial_unexpected_list"])[:PARTIAL_UNEXPECTED]
            outcomes.append(ExpectationOutcome(
                asset=spec.name, suite=spec.suite, expectation_id=str(config.meta["check"]),
                expectation_type=config.type, column=",".join(columns) or None, kwargs=_jsonable(kwargs),
                success=bool(r.success), observed=_jsonable(observed)))
        if sorted(o.expectation_id for o in outcomes) != sorted(c.id for c in spec.checks):
            raise DqRunError(f"validating {spec.name}: GX returned {len(outcomes)} results"
                             f" for {len(spec.checks)} expectations")
        order = {c.id: i for i, c in enumerate(spec.checks)}
        outcomes.sort(key=lambda o: order[o.expectation_id])
        rows = max((int(o.observed.get("element_count") or 0) for o in outcomes), default=0)
        return AssetResult(spec.name, since, until, rows, tuple(outcomes))

    def close(self) -> None:
        for engine in (self._source.get_engine(), self._source.get_execution_engine().engine):
            engine.dispose()

    def __enter__(self) -> Validator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_LAST_UNTIL = "select asset, max(until) from data_quality_runs where incremental and until <= %(now)s group by asset"

_INSERT_RESULT = """
insert into data_quality_results (run_id, asset, expectation_id, expectation_type, suite, column_name, kwargs,
                                  success, observed, ran_at)
values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
on conflict (run_id, asset, expectation_id) do nothing"""

_INSERT_RUN = """
insert into data_quality_runs (run_id, asset, since, until, row_count, expectations, failed, incremental, ran_at)
values (%s, %s, %s, %s, %s, %s, %s, %s, %s)
on conflict (run_id, asset) do nothing"""


def batch_windows(dsn: str, *, since: datetime | None, until: datetime | None,
                  now: datetime) -> dict[str, tuple[datetime, datetime]]:
    """The ``[since, until)`` window of each asset: the given bounds, else from the end of the asset's
    last incremental run (one whose ``until`` was left to default; else :data:`DEFAULT_LOOKBACK`
    back) to :data:`SETTLE_LAG` before ``now``."""
    end = until if until is not None else now - SETTLE_LAG
    if since is not None and since >= end:
        raise ValueError(f"the window is empty: since {since.isoformat()} is not before until {end.isoformat()}")
    # Read even when since is given: an unreachable database is reported here, in one line, before
    # the seconds GX takes to import.
    with _connect(dsn, "reading the last data-quality runs") as conn:
        last: dict[str, datetime] = dict(conn.execute(_LAST_UNTIL, {"now": now}).fetchall())
    return {spec.name: (since if since is not None else min(last.get(spec.name, end - DEFAULT_LOOKBACK), end), end)
            for spec in ASSETS}


def run_dq(dsn: str, *, since: datetime | None, until: datetime | None, now: datetime,
           run_id: str | None = None, validator: Validator | None = None) -> DqRun:
    """Validate one batch of every asset, store the results, return the summary.

    ``now`` (UTC) is the run's time: it stamps the results and ends the default window. A run without
    ``until`` is incremental: the next run without ``since`` continues where it ended. Storing is
    idempotent per ``run_id`` (a new UUID by default). Pass a long-lived ``validator`` to avoid
    building a GX context per run.
    """
    run_id = run_id or str(uuid.uuid4())
    windows = batch_windows(dsn, since=since, until=until, now=now)
    own = validator is None
    validator = validator or Validator(dsn)
    try:
        results = tuple(validator.validate(spec, *windows[spec.name]) for spec in ASSETS)
    finally:
        if own:
            validator.close()
    run = DqRun(run_id, now, results)
    with _connect(dsn, "storing the data-quality results") as conn, conn.transaction(), conn.cursor() as cur:
        cur.executemany(_INSERT_RESULT, [
            (run_id, o.asset, o.expectation_id, o.expectation_type, o.suite, o.column, Jsonb(o.kwargs),
             o.success, Jsonb(o.observed), now) for o in run.outcomes])
        cur.executemany(_INSERT_RUN, [(run_id, a.asset, a.since, a.until, a.rows, len(a.outcomes), a.failed,
                                       until is None, now) for a in results])
    return run


_STORED = """
with runs as (
    select run_id, max(ran_at) as ran_at from data_quality_results
    where %(asset)s::text is null or asset = %(asset)s
    group by run_id order by max(ran_at) desc, run_id limit %(last)s)
select r.run_id, r.ran_at, r.asset, r.suite, r.expectation_id, r.expectation_type, r.column_name, r.kwargs,
       r.success, r.observed
from data_quality_results r join runs using (run_id)
where (%(asset)s::text is null or r.asset = %(asset)s) and (not %(failed)s or not r.success)
order by r.ran_at desc, r.run_id, r.asset, r.success, r.expectation_id"""


def stored_results(dsn: str, *, last: int = 1, asset: str | None = None,
                   failed_only: bool = False) -> list[StoredResult]:
    """The stored results of the ``last`` runs (of ``asset`` when given), newest run first."""
    with _connect(dsn, "reading the data-quality results") as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_STORED, {"last": last, "asset": asset, "failed": failed_only}).fetchall()
    return [StoredResult(row["run_id"], row["ran_at"], ExpectationOutcome(
        asset=row["asset"], suite=row["suite"], expectation_id=row["expectation_id"],
        expectation_type=row["expectation_type"], column=row["column_name"], kwargs=row["kwargs"],
        success=row["success"], observed=row["observed"] or {})) for row in rows]


def describe_observed(outcome: ExpectationOutcome) -> str:
    """The observed value in a few words: ``2 of 40 rows (5.0%), e.g. -3.0, 120.0``."""
    observed = outcome.observed
    if outcome.unexpected_count is None:
        return json.dumps(observed.get("observed_value"), ensure_ascii=False)
    checked = int(observed.get("element_count") or 0) - int(observed.get("missing_count") or 0)
    text = f"{outcome.unexpected_count} of {checked} rows"
    percent = observed.get("unexpected_percent")
    if isinstance(percent, int | float):
        text += f" ({percent:.1f}%)"
    examples = observed.get("partial_unexpected_list") or []
    if examples:
        text += ", e.g. " + ", ".join(json.dumps(v, ensure_ascii=False) for v in examples[:3])
    return text
