"""The DuckDB file analysts and dashboards open: VIEWS only, over the Parquet lake.

Nobody ever holds a read-write connection on it. The pipeline builds a new file under a
temporary name and ``os.replace``-s it in, only when the view definitions change: a new release,
the writer's first start, and each compaction and purge (the views name the files a compaction
replaced, so that new queries skip them). Views list the Parquet files when a query runs, so new
files show up without a rebuild; readers attach the file read-only and any number of processes
can do so while the pipeline keeps appending Parquet files.

Every table view keeps one row per key (see ``TableSpec.key``): replays after a pipeline
restart and the overlap during a compaction never count twice, and the current-state tables
show their newest revision. A table with no file yet is a view over an empty typed relation, so
every query works on day one.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from pathlib import Path
from typing import Any, Final

import duckdb

from control.records import EXCLUDING_FLAGS, FLAG_DESCRIPTIONS
from warehouse.analytics_schema import DAY, LAKE_SEQ, TABLES, AnalyticsError, TableSpec

SCHEMA_VERSION: Final = 1
CATALOG_VIEW: Final = "_lake_catalog"
PENDING_DIR: Final = "_pending_delete"  # tombstones of files replaced by a compaction
# Readers never load an extension by themselves: there is no network here, and a locked-down
# connection must not fetch code.
_READONLY_CONFIG: Final[dict[str, str | bool | int | float | list[str]]] = {
    "autoinstall_known_extensions": False, "autoload_known_extensions": False}
_DUCKDB_TYPES: Final = {"string": "VARCHAR", "int32": "INTEGER", "int64": "BIGINT", "double": "DOUBLE",
                        "bool": "BOOLEAN", "timestamp[us]": "TIMESTAMP", "date32[day]": "DATE",
                        "list<item: string>": "VARCHAR[]"}


class ViewsDatabaseError(AnalyticsError):
    """The views database is missing or unusable; the message says what to do."""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def table_glob(lake_root: Path, table: str) -> str:
    # day=*/ and the .parquet suffix leave out temporary files (.part-*.partial) and anything else.
    return str(lake_root.resolve() / table / "day=*" / "*.parquet")


def has_files(lake_root: Path, table: str) -> bool:
    return next((lake_root / table).glob("day=*/*.parquet"), None) is not None


def pending_deletions(lake_root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The compactions' tombstones: ``{"delete_after": iso, "files": [paths relative to the lake]}``."""
    return [(path, json.loads(path.read_text("utf-8")))
            for path in sorted((lake_root / PENDING_DIR).glob("*.json"))]


def _superseded(lake_root: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for _path, entry in pending_deletions(lake_root):
        for name in entry["files"]:
            out.setdefault(Path(name).parts[0], []).append(str(lake_root.resolve() / name))
    return {table: sorted(files) for table, files in out.items()}


def _raw_view(spec: TableSpec, lake_root: Path, with_files: bool, superseded: list[str]) -> str:
    typed = [f"NULL::{_DUCKDB_TYPES[str(c.type)]} AS {_ident(c.name)}" for c in spec.columns]
    if DAY not in {c.name for c in spec.columns}:
        typed.append(f"NULL::DATE AS {DAY}")
    typed.append(f"NULL::BIGINT AS {LAKE_SEQ}")
    empty = f"SELECT {', '.join(typed)} WHERE false"
    if not with_files:
        return f"CREATE VIEW _lake_{spec.name} AS {empty};"
    names = [c.name for c in spec.columns] + ([] if DAY in {c.name for c in spec.columns} else [DAY])
    columns = ", ".join([_ident(name) for name in names] + [LAKE_SEQ])
    # No union_by_name: it opens every listed file while binding, and a replaced file could be
    # deleted in between. All files of a table share one schema (the lake casts every write) and
    # the table's anchor file (day=0001-01-01, no rows) sorts first, so DuckDB takes the schema
    # from a file that is never deleted, and the replaced files named below are pruned by name
    # before they are opened.
    scan = (f"read_parquet({_lit(table_glob(lake_root, spec.name))}, hive_partitioning = true, "
            f"filename = true, hive_types = {{'{DAY}': DATE}})")
    where = f" WHERE filename NOT IN ({', '.join(_lit(f) for f in superseded)})" if superseded else ""
    return (f"CREATE VIEW _lake_{spec.name} AS SELECT {columns} "  # noqa: S608 - names from TABLES, paths quoted
            f"FROM ({empty} UNION ALL BY NAME SELECT * EXCLUDE (filename) FROM {scan}{where});")


# Columns a view adds to its table, with the same names and meaning as in TimescaleDB.
_EXTRA_COLUMNS: Final = {
    "sessions": f", energy_wh / 1000.0 AS energy_kwh, make_timestamp({LAKE_SEQ}) AS written_at",
    "alerts": f", make_timestamp({LAKE_SEQ}) AS updated_at",
}


def _table_view(spec: TableSpec) -> str:
    extra = _EXTRA_COLUMNS.get(spec.name, "")
    select = f"SELECT * EXCLUDE ({LAKE_SEQ}){extra} FROM _lake_{spec.name} {spec.dedupe()}"  # noqa: S608
    if spec.name != "meter_samples":
        return f"CREATE VIEW {spec.name} AS {select};"
    # TimescaleDB updates a sample's quality_flags/session_id when the gate's verdict arrives; a
    # Parquet file cannot change, so the verdicts are rows of data_quality, joined back here.
    return (f"CREATE VIEW meter_samples AS SELECT m.*, coalesce(v.quality_flags, []::VARCHAR[]) AS quality_flags, "  # noqa: S608
            f"v.session_id FROM ({select}) m LEFT JOIN data_quality v ON v.day = m.day "
            f"AND v.charger_id = m.charger_id AND v.connector_id = m.connector_id AND v.ts = m.ts "
            f"AND v.context = m.context;")


def _quality_flags_view() -> str:
    rows = ", ".join(f"({_lit(flag.value)}, {_lit(text)}, {'true' if flag in EXCLUDING_FLAGS else 'false'})"
                     for flag, text in FLAG_DESCRIPTIONS.items())
    return f"CREATE VIEW quality_flags AS SELECT * FROM (VALUES {rows}) AS t(flag, description, excluding);"  # noqa: S608


def _freshness_view() -> str:
    parts = [f"SELECT {_lit(name)} AS table_name, make_timestamp(max({LAKE_SEQ})) AS last_written_at, "  # noqa: S608
             f"count(*) AS stored_rows FROM _lake_{name}" for name in TABLES]
    return "CREATE VIEW lake_freshness AS " + " UNION ALL ".join(parts) + ";"


ANALYST_VIEWS: Final = """
CREATE VIEW session_revisions AS
SELECT * EXCLUDE (_lake_seq), energy_wh / 1000.0 AS energy_kwh, make_timestamp(_lake_seq) AS written_at
FROM _lake_sessions QUALIFY row_number() OVER (PARTITION BY session_id, revision ORDER BY _lake_seq) = 1;
CREATE VIEW sessions_clean AS SELECT * FROM sessions WHERE NOT excluded;
CREATE VIEW excluded_sessions AS
SELECT s.session_id, s.charger_id, s.connector_id, s.site_id, s.started_at, s.ended_at, s.state,
       s.energy_wh, s.flags,
       (SELECT list(q.description ORDER BY q.flag) FROM quality_flags q
         WHERE q.excluding AND list_contains(s.flags, q.flag)) AS exclusion_reasons
FROM sessions s WHERE s.excluded;
CREATE VIEW daily_energy AS
SELECT e.day, e.charger_id, s.site_id, sum(e.energy_wh) AS energy_wh, sum(e.energy_wh) / 1000.0 AS energy_kwh,
       count(*) AS sessions
FROM session_day_energy e JOIN sessions_clean s ON s.session_id = e.session_id
GROUP BY e.day, e.charger_id, s.site_id;
CREATE VIEW monthly_energy AS
SELECT CAST(date_trunc('month', e.day) AS DATE) AS month, e.charger_id, s.site_id,
       sum(e.energy_wh) AS energy_wh, sum(e.energy_wh) / 1000.0 AS energy_kwh,
       count(DISTINCT e.session_id) AS sessions
FROM session_day_energy e JOIN sessions_clean s ON s.session_id = e.session_id
GROUP BY ALL;
CREATE VIEW session_allocation AS
SELECT k.session_id, any_value(k.charger_id) AS charger_id, any_value(k.site_id) AS site_id,
       any_value(k.user_id) AS user_id, any_value(k.cost_centre) AS cost_centre, any_value(k.tariff_id) AS tariff_id,
       any_value(k.currency) AS currency, any_value(k.status) AS status
FROM session_costs k JOIN sessions_clean s ON s.session_id = k.session_id GROUP BY k.session_id;
CREATE VIEW monthly_cost AS
SELECT CAST(date_trunc('month', k.day) AS DATE) AS month, k.charger_id, k.site_id, k.currency,
       count(DISTINCT k.session_id) AS sessions, sum(k.costed_energy_wh) / 1000.0 AS costed_energy_kwh,
       CAST(sum(k.net_nano) AS BIGINT) AS net_nano, CAST(sum(k.vat_nano) AS BIGINT) AS vat_nano,
       CAST((sum(k.net_nano) + 5000000) // 10000000 AS DECIMAL(18, 0)) * 0.01 AS net,
       CAST((sum(k.vat_nano) + 5000000) // 10000000 AS DECIMAL(18, 0)) * 0.01 AS vat,
       (CAST((sum(k.net_nano) + 5000000) // 10000000 AS DECIMAL(18, 0))
        + CAST((sum(k.vat_nano) + 5000000) // 10000000 AS DECIMAL(18, 0))) * 0.01 AS gross,
       count(DISTINCT k.session_id) FILTER (WHERE k.status = 'no_tariff') AS no_tariff_sessions
FROM session_costs k JOIN sessions_clean s ON s.session_id = k.session_id
GROUP BY ALL;
CREATE VIEW cost_centre_monthly AS
WITH e AS (
    SELECT CAST(date_trunc('month', d.day) AS DATE) AS month, a.cost_centre, sum(d.energy_wh) AS energy_wh,
           count(DISTINCT d.session_id) AS sessions
    FROM session_day_energy d JOIN session_allocation a ON a.session_id = d.session_id GROUP BY ALL
), m AS (
    SELECT CAST(date_trunc('month', k.day) AS DATE) AS month, k.cost_centre, k.currency,
           sum(k.net_nano) AS net_nano, sum(k.vat_nano) AS vat_nano
    FROM session_costs k JOIN sessions_clean s ON s.session_id = k.session_id
    WHERE k.currency IS NOT NULL GROUP BY ALL
)
SELECT e.month, e.cost_centre, m.currency, e.energy_wh, e.energy_wh / 1000.0 AS energy_kwh, e.sessions,
       CAST(m.net_nano AS BIGINT) AS net_nano, CAST(m.vat_nano AS BIGINT) AS vat_nano,
       CAST((m.net_nano + 5000000) // 10000000 AS DECIMAL(18, 0)) * 0.01 AS net,
       CAST((m.vat_nano + 5000000) // 10000000 AS DECIMAL(18, 0)) * 0.01 AS vat,
       (CAST((m.net_nano + 5000000) // 10000000 AS DECIMAL(18, 0))
        + CAST((m.vat_nano + 5000000) // 10000000 AS DECIMAL(18, 0))) * 0.01 AS gross
FROM e LEFT JOIN m ON m.month = e.month AND m.cost_centre IS NOT DISTINCT FROM e.cost_centre;
CREATE VIEW sessions_per_site AS
SELECT site_id, CAST(started_at AS DATE) AS day, count(*) AS sessions,
       count(*) FILTER (WHERE NOT excluded) AS clean_sessions, count(*) FILTER (WHERE excluded) AS excluded_sessions
FROM sessions GROUP BY ALL;
CREATE VIEW charger_sites AS
SELECT charger_id, arg_max(site_id, seen_at) AS site_id, max(seen_at) AS seen_at FROM (
    SELECT charger_id, site_id, coalesce(last_sample_at, ended_at, started_at) AS seen_at
    FROM sessions WHERE site_id IS NOT NULL
    UNION ALL SELECT charger_id, site_id, ts FROM setpoints
) GROUP BY charger_id;
CREATE VIEW charger_power_1min AS
SELECT minute, charger_id, sum(power_w) AS power_w, CAST(sum(samples) AS BIGINT) AS samples FROM (
    SELECT date_trunc('minute', ts) AS minute, charger_id, connector_id, avg(power_w) AS power_w, count(*) AS samples
    FROM meter_samples WHERE power_w IS NOT NULL AND connector_id > 0 GROUP BY ALL
) GROUP BY ALL;
CREATE VIEW peak_demand_daily AS
SELECT CAST(m.minute AS DATE) AS day, m.charger_id, c.site_id, max(m.power_w) AS peak_power_w,
       max(m.power_w) / 1000.0 AS peak_power_kw, arg_max(m.minute, m.power_w) AS peak_minute
FROM charger_power_1min m LEFT JOIN charger_sites c ON c.charger_id = m.charger_id
GROUP BY ALL;
CREATE VIEW site_peak_demand_daily AS
SELECT CAST(minute AS DATE) AS day, site_id, max(power_w) AS peak_power_w, max(power_w) / 1000.0 AS peak_power_kw,
       arg_max(minute, power_w) AS peak_minute, arg_max(chargers, power_w) AS chargers_at_peak
FROM (SELECT c.site_id, m.minute, sum(m.power_w) AS power_w, count(*) AS chargers
      FROM charger_power_1min m JOIN charger_sites c ON c.charger_id = m.charger_id GROUP BY ALL)
GROUP BY ALL;
"""

VIEW_DESCRIPTIONS: Final = {
    "session_revisions": "Every revision of every session, once each (sessions keeps the newest).",
    "sessions_clean": "Sessions that are not excluded: the input of every energy aggregate.",
    "excluded_sessions": "Corrupted sessions, kept and listed with the reasons they are left out.",
    "daily_energy": "Energy of clean sessions per charger per UTC day (split at midnight).",
    "monthly_energy": "Energy of clean sessions per charger per UTC month.",
    "session_allocation": "Per costed clean session: its user, cost centre and tariff at costing time.",
    "monthly_cost": "Cost of clean sessions per charger per UTC month and currency (split by day like energy).",
    "cost_centre_monthly": "Energy and cost of costed clean sessions per cost centre per UTC month.",
    "sessions_per_site": "Session counts per site per UTC day of the session start.",
    "charger_sites": "The site each charger belongs to, from its newest session or setpoint.",
    "charger_power_1min": "Power per charger per UTC minute: connector averages summed (connector 0 left out).",
    "peak_demand_daily": "Highest 1-minute power per charger per UTC day.",
    "site_peak_demand_daily": "Highest 1-minute summed power of a site's chargers per UTC day.",
    "quality_flags": "Every data-quality flag: its meaning and whether it excludes a session.",
    "lake_freshness": "Per table: when the newest file was written and how many rows are stored.",
}


_C = {"day": "UTC day.", "charger_id": "Charger id.", "site_id": "Site id (NULL when unknown).",
      "energy_wh": "Energy, Wh.", "energy_kwh": "Energy, kWh.", "peak_power_w": "Highest 1-minute power, W.",
      "peak_power_kw": "Highest 1-minute power, kW.", "peak_minute": "Start of that minute, UTC."}
COLUMN_DESCRIPTIONS: Final[dict[str, dict[str, str]]] = {
    "excluded_sessions": {"exclusion_reasons": "Why it is excluded: the meaning of each excluding flag."},
    "daily_energy": {**_C, "sessions": "Clean sessions with energy that day."},
    "monthly_energy": {**_C, "month": "First day of the UTC month.",
                       "sessions": "Clean sessions with energy that month."},
    "session_allocation": {**_C, "session_id": "Session id.",
                           "user_id": "User whose token started it (at costing time).",
                           "cost_centre": "The vehicle's cost centre, else the charger's (at costing time).",
                           "tariff_id": "Tariff that priced it; NULL: none.", "currency": "Currency of its cost.",
                           "status": "costed, partial or no_tariff."},
    "monthly_cost": {**_C, "month": "First day of the UTC month.", "currency": "ISO 4217 currency.",
                     "sessions": "Clean sessions with cost rows that month.",
                     "costed_energy_kwh": "Energy priced that month (meter curve), kWh.",
                     "net_nano": "Net amount, 1e-9 currency units (sum these, then round once).",
                     "vat_nano": "VAT, 1e-9 currency units.",
                     "net": "Net amount rounded half up to cents.", "vat": "VAT rounded half up to cents.",
                     "gross": "net + vat.", "no_tariff_sessions": "Sessions with no tariff (no amount)."},
    "cost_centre_monthly": {**_C, "month": "First day of the UTC month.",
                            "cost_centre": "Cost centre (NULL: none).", "currency": "ISO 4217 currency.",
                            "sessions": "Costed clean sessions with energy that month.",
                            "net_nano": "Net amount, 1e-9 currency units.", "vat_nano": "VAT, 1e-9 currency units.",
                            "net": "Net amount rounded half up to cents.", "vat": "VAT rounded half up to cents.",
                            "gross": "net + vat."},
    "sessions_per_site": {**_C, "day": "UTC day the sessions started.", "sessions": "Sessions started.",
                          "clean_sessions": "Of those, not excluded.", "excluded_sessions": "Of those, excluded."},
    "charger_sites": {**_C, "seen_at": "Newest time the charger was seen at that site, UTC."},
    "charger_power_1min": {**_C, "minute": "Start of the minute, UTC.", "power_w": "Summed connector power, W.",
                           "samples": "Meter samples averaged."},
    "peak_demand_daily": _C,
    "site_peak_demand_daily": {**_C, "chargers_at_peak": "Chargers with readings in the peak minute."},
    "quality_flags": {"flag": "Reason code, as in sessions.flags and meter_samples.quality_flags.",
                      "description": "What it means.", "excluding": "True when it excludes a session."},
    "lake_freshness": {"table_name": "Lake table.", "last_written_at": "When its newest rows were written, UTC.",
                       "stored_rows": "Rows stored, revisions and replays included."},
}


def _known_descriptions(view: str) -> dict[str, str]:
    base = "sessions" if view in ("session_revisions", "sessions_clean", "excluded_sessions") else view
    if view == "session_allocation":
        base = "session_costs"
    known: dict[str, str] = {}
    if base in TABLES:
        day_text = f"UTC day of {TABLES[base].partition_by}: the partition; filtering on it reads fewer files."
        known = {DAY: day_text, "energy_kwh": "Energy delivered, kWh.",
                 "written_at": "When this revision was stored, UTC.", "updated_at": "When this state was stored, UTC.",
                 "quality_flags": "The quality gate's reason codes (see quality_flags); empty means clean.",
                 "session_id": "Session the sample was assigned to by the quality gate."}
        known |= {c.name: c.description for c in TABLES[base].columns}
    return known | COLUMN_DESCRIPTIONS.get(view, {})


def _comment_columns(con: duckdb.DuckDBPyConnection) -> None:
    """Column descriptions (units, meaning) into the catalog, for ``.schema`` and any SQL client."""
    statements: list[str] = []
    for view, columns in view_columns(con).items():
        known = _known_descriptions(view)
        statements.extend(f"COMMENT ON COLUMN {view}.{_ident(name)} IS {_lit(known[name])};"
                          for name, _type, _comment in columns if name in known)
    con.execute("\n".join(statements))


def views_script(lake_root: Path) -> str:
    """The whole DDL for ``lake_root`` as it is now (which tables have files decides the SQL)."""
    statements = []
    superseded = _superseded(lake_root)
    for spec in sorted(TABLES.values(), key=lambda t: t.name != "data_quality"):  # meter_samples joins it
        statements.append(_raw_view(spec, lake_root, has_files(lake_root, spec.name), superseded.get(spec.name, [])))
        statements.append(_table_view(spec))
        statements.append(f"COMMENT ON VIEW {spec.name} IS {_lit(spec.description)};")
    statements += [_quality_flags_view(), _freshness_view(), ANALYST_VIEWS.strip()]
    statements.extend(f"COMMENT ON VIEW {name} IS {_lit(text)};" for name, text in VIEW_DESCRIPTIONS.items())
    return "\n".join(statements)


def _fingerprint(script: str) -> str:
    descriptions = json.dumps({v: _known_descriptions(v) for v in [*TABLES, *VIEW_DESCRIPTIONS]}, sort_keys=True)
    return hashlib.sha256(f"{SCHEMA_VERSION}\n{script}\n{descriptions}".encode()).hexdigest()


def build_views_db(lake_root: Path, db_path: Path) -> Path:
    """(Re)create ``db_path`` with the views over ``lake_root``; atomic for readers."""
    script = views_script(lake_root)
    fingerprint = _fingerprint(script)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = db_path.with_name(f".{db_path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with duckdb.connect(str(tmp)) as con:
            con.execute("SET parquet_metadata_cache = true")  # binding the views reads every file footer
            con.execute("BEGIN")  # one transaction: ten times faster than a commit per view
            con.execute(script)
            _comment_columns(con)
            con.execute(f"CREATE VIEW {CATALOG_VIEW} AS SELECT {SCHEMA_VERSION} AS schema_version, "
                        f"{_lit(str(lake_root.resolve()))} AS lake_root, {_lit(fingerprint)} AS fingerprint")
            con.execute("COMMIT")
            con.execute("CHECKPOINT")  # nothing may stay in a WAL next to the temporary name
        os.replace(tmp, db_path)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)
    return db_path


def _attach_readonly(db_path: Path) -> duckdb.DuckDBPyConnection:
    # ATTACH into a private in-memory instance rather than duckdb.connect(path, read_only=True):
    # the Python client shares one instance per path within a process, which would keep serving
    # a replaced file's old views to every later connection, and refuses a second configuration.
    con = duckdb.connect(":memory:", config=_READONLY_CONFIG)
    try:
        con.execute(f"ATTACH {_lit(str(db_path))} AS analytics (READ_ONLY)")
        con.execute("USE analytics")
    except BaseException:
        con.close()
        raise
    return con


def _catalog(db_path: Path) -> tuple[str, str] | None:
    if not db_path.exists():
        return None
    try:
        with _attach_readonly(db_path) as con:
            row = con.execute("SELECT lake_root, fingerprint FROM _lake_catalog").fetchone()
    except duckdb.Error:
        return None  # not ours or from an older layout: the caller rebuilds it
    return (str(row[0]), str(row[1])) if row else None


def ensure_views_db(lake_root: Path, db_path: Path) -> bool:
    """Rebuild ``db_path`` only when its views differ from what ``lake_root`` needs; True if rebuilt."""
    current = _catalog(db_path)
    if current is not None and current[1] == _fingerprint(views_script(lake_root)):
        return False
    build_views_db(lake_root, db_path)
    return True


def open_readonly(db_path: Path, *, restrict: bool = True) -> duckdb.DuckDBPyConnection:
    """A connection to the views database, attached READ_ONLY (only a private in-memory scratch
    schema, for temporary tables, is writable).

    With ``restrict`` (the default) the connection may read only the lake: no other file, no
    extension, and the configuration is locked so a query cannot undo that. The time zone is
    UTC. Cheap to open (milliseconds); open one per job or use :class:`AnalyticsReader` in
    long-lived processes.
    """
    if not db_path.exists():
        raise ViewsDatabaseError(f"{db_path} does not exist: start the pipeline or run `flowbank sql` once")
    try:
        con = _attach_readonly(db_path)
    except duckdb.Error as exc:
        raise ViewsDatabaseError(f"cannot open {db_path}: {str(exc).splitlines()[0]}") from exc
    try:
        # GLOBAL: cursors of this connection inherit them (and cannot set them once locked).
        con.execute("SET GLOBAL parquet_metadata_cache = true")  # safe: lake files never change once written
        # The columns hold UTC: now()::TIMESTAMP and casts to/from TIMESTAMPTZ must mean UTC too.
        con.execute("SET GLOBAL TimeZone = 'UTC'")
        if restrict:
            row = con.execute("SELECT lake_root FROM _lake_catalog").fetchone()
            lake_root = str(row[0]) if row else ""
            con.execute(f"SET allowed_directories = [{_lit(lake_root.rstrip('/') + '/')}]")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
    except duckdb.Error as exc:
        con.close()
        raise ViewsDatabaseError(f"{db_path} is not a FlowBankOS views database: {str(exc).splitlines()[0]}") from exc
    return con


class AnalyticsReader:
    """A read-only connection for long-lived processes (dashboards).

    :meth:`cursor` reopens the file when the pipeline has replaced it (new views), and hands out
    a cursor per caller: one DuckDB connection must not be used by two threads at once.
    """

    def __init__(self, db_path: Path) -> None:
        self._db_path = db_path
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._identity: tuple[int, int] | None = None

    def cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            stat = self._db_path.stat() if self._db_path.exists() else None
            identity = (stat.st_ino, stat.st_mtime_ns) if stat else None
            if self._con is None or identity != self._identity:
                if self._con is not None:
                    self._con.close()
                    self._con = None
                self._con = open_readonly(self._db_path)
                self._identity = identity
            cursor = self._con.cursor()
        cursor.execute("USE analytics")  # a cursor starts in the in-memory database
        return cursor

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None


def view_columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str, str | None]]]:
    """Every public view with its (column, type, description), in column order."""
    rows: list[Any] = con.execute(
        "SELECT table_name, column_name, data_type, comment FROM duckdb_columns() "
        "WHERE database_name = current_database() AND NOT starts_with(table_name, '_') "
        "ORDER BY table_name, column_index").fetchall()
    out: dict[str, list[tuple[str, str, str | None]]] = {}
    for table, column, type_, comment in rows:
        out.setdefault(str(table), []).append((str(column), str(type_), comment))
    return out
