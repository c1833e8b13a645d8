"""The analytics lake: immutable Parquet partitions written by ONE pipeline worker, read by
anyone through a DuckDB file of views (:mod:`warehouse.analytics_views`).

Why: DuckDB lets no other process open a database file, not even read-only, while one process
holds it read-write. So the pipeline never writes into DuckDB. It writes Parquet files, each
complete before it is visible (written under a temporary name, fsynced, then ``os.replace``-d),
into ``<root>/<table>/day=YYYY-MM-DD/part-<id>.parquet``. ``id`` is the write time in
microseconds, forced to grow; it is also stored in every row (``_lake_seq``), which orders
revisions and replays.

Files are append-only, even for current-state tables: a new session revision is a new row, and
the views keep the newest. Every file of a table has the same schema, and each table has an empty
anchor file (``day=0001-01-01``) that sorts first, from which DuckDB reads the schema.

:meth:`ParquetLake.compact` merges a day's small files into one, then rebuilds the views so that
they skip the replaced files by name (DuckDB prunes them without opening them). The replaced
files stay on disk for a grace period, for connections opened before that rebuild (the views'
dedupe hides the overlap), and :meth:`ParquetLake.purge` deletes them afterwards.

Freshness: :class:`LakeBuffer` holds rows in memory and writes a table's rows once it has
``max_rows`` of them or its oldest is ``max_age`` (30 s) old. The caller calls
:meth:`LakeBuffer.maybe_flush` at least every 10-20 s (in Bytewax: a ``collect`` with a timeout
upstream of the sink), so a row is queryable within 60 s of arriving.

Errors: :class:`~warehouse.analytics_schema.AnalyticsError` and below; :class:`LakeLockedError`
when another writer holds the lake (retry once it has stopped).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final

import duckdb
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from control.settings import Settings
from warehouse.analytics_schema import (
    DAY,
    LAKE_SEQ,
    TABLES,
    AnalyticsError,
    SchemaMismatchError,
    TableSpec,
    conform,
    spec_of,
    to_arrow,
)
from warehouse.analytics_views import (
    PENDING_DIR,
    AnalyticsReader,
    ViewsDatabaseError,
    build_views_db,
    ensure_views_db,
    open_readonly,
    pending_deletions,
)

__all__ = [
    "AnalyticsError", "AnalyticsReader", "Compaction", "LakeBuffer", "LakeLockedError", "ParquetLake",
    "SchemaMismatchError", "ViewsDatabaseError", "build_views_db", "ensure_views_db", "lake_paths", "open_readonly",
    "to_arrow",
]

DEFAULT_GRACE: Final = timedelta(minutes=15)
_NEVER: Final = datetime.max.replace(tzinfo=UTC)
ANCHOR_DAY: Final = date(1, 1, 1)
ANCHOR_NAME: Final = f"part-{0:020d}.parquet"
_PART_PREFIX: Final = "part-"


class LakeLockedError(AnalyticsError):
    """Another process is writing this lake (there must be one writer only)."""


def lake_paths(settings: Settings) -> tuple[Path, Path]:
    """Where the lake and its views database live: ``data_dir/lake`` and ``data_dir/analytics.duckdb``."""
    return settings.data_dir / "lake", settings.data_dir / "analytics.duckdb"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Compaction:
    table: str
    day: date
    merged: Path
    replaced: tuple[Path, ...]
    delete_after: datetime
    rows_in: int
    rows_out: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _part_id(path: Path) -> int | None:
    stem = path.name.removesuffix(".parquet")
    digits = stem.removeprefix(_PART_PREFIX)
    return int(digits) if stem.startswith(_PART_PREFIX) and digits.isdigit() else None


class ParquetLake:
    """The single writer of a lake. Use as a context manager, or call :meth:`close`.

    ``views_db``: the views database to keep current (built at start, rebuilt when a compaction
    or a purge changes which files count). Without it, whoever queries must call
    ``ensure_views_db`` after each compaction, well within the grace period.
    """

    def __init__(self, root: Path, *, views_db: Path | None = None, clock: Callable[[], datetime] = _utc_now,
                 grace: timedelta = DEFAULT_GRACE) -> None:
        self.root = root
        self._views_db = views_db
        self._clock = clock
        self._grace = grace
        root.mkdir(parents=True, exist_ok=True)
        self._lock_file: IO[bytes] | None = (root / ".writer.lock").open("ab")
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise LakeLockedError(f"{root} is being written by another process (one writer only)") from None
        try:
            self._recover()
        except BaseException:
            self.close()
            raise

    def _recover(self) -> None:
        """Start-up: clear a crashed write, find the last id, make the anchors, fix the views."""
        for partial in self.root.glob("*/day=*/.*.partial"):  # a crash mid-write; never visible
            partial.unlink(missing_ok=True)
        ids = [i for p in self.root.glob(f"*/day=*/{_PART_PREFIX}*.parquet") if (i := _part_id(p)) is not None]
        self._last_id = max(ids, default=0)
        for spec in TABLES.values():
            self._ensure_anchor(spec)
        self._refresh_views()
        for path, entry in pending_deletions(self.root):  # a crash between a compaction and its rebuild
            if datetime.fromisoformat(entry["delete_after"]) == _NEVER:
                self._write_tombstone(path.stem, [self.root / f for f in entry["files"]], self._clock() + self._grace)

    # ------------------------------------------------------------------ writing

    def _next_id(self) -> int:
        now_us = int(self._clock().timestamp() * 1_000_000)
        self._last_id = max(self._last_id + 1, now_us)
        return self._last_id

    def _day_dir(self, table: str, day: date) -> Path:
        return self.root / table / f"{DAY}={day.isoformat()}"

    def _publish(self, rows: Any, final: Path) -> Path:
        """Write under a temporary name, sync, then rename: a reader never sees half a file."""
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.partial")
        with tmp.open("wb") as sink:
            pq.write_table(rows, sink, compression="zstd")
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        return final

    def _write_file(self, spec: TableSpec, day: date, rows: Any) -> Path:
        """Write one immutable file; rows that already carry ``_lake_seq`` (compaction) keep it."""
        part_id = self._next_id()
        if LAKE_SEQ not in rows.column_names:
            rows = rows.append_column(LAKE_SEQ, pa.repeat(pa.scalar(part_id, pa.int64()), rows.num_rows))
        for fld in spec.file_schema:  # rows from files written before a column was added
            if fld.name not in rows.column_names:
                rows = rows.append_column(fld.name, pa.nulls(rows.num_rows, fld.type))
        rows = rows.select(spec.file_schema.names).cast(spec.file_schema)
        return self._publish(rows, self._day_dir(spec.name, day) / f"{_PART_PREFIX}{part_id:020d}.parquet")

    def _ensure_anchor(self, spec: TableSpec) -> None:
        """The table's empty first file: DuckDB takes a glob's schema from its first file."""
        anchor = self._day_dir(spec.name, ANCHOR_DAY) / ANCHOR_NAME
        if anchor.exists() and pq.read_schema(anchor).remove_metadata().equals(spec.file_schema):
            return
        migrated = []
        if anchor.exists():  # a release changed the columns: rewrite every day in the new schema first
            migrated = [c for day in self.days(spec.name) if (c := self._compact(spec, day, force=True))]
        self._publish(spec.file_schema.empty_table(), anchor)
        if migrated:
            self._refresh_views()
            for compaction in migrated:
                self._write_tombstone(compaction.merged.stem, compaction.replaced, self._clock() + self._grace)

    def append(self, table: str, rows: Any) -> list[Path]:
        """Write ``rows`` (a ``pyarrow.Table`` or ``polars.DataFrame`` with the table's columns)
        as new immutable file(s), one per UTC day touched. Returns the files written."""
        self._check_open()
        spec = spec_of(table)
        data = conform(table, rows)
        if data.num_rows == 0:
            return []
        days = data.column(spec.partition_by)
        if not pa.types.is_date32(days.type):
            days = pc.cast(days, pa.date32())
        written = []
        for day in sorted(pc.unique(days).to_pylist()):
            if day == ANCHOR_DAY:
                raise SchemaMismatchError(f"{table}: {spec.partition_by} on {day} is reserved for the anchor file")
            written.append(self._write_file(spec, day, data.filter(pc.equal(days, pa.scalar(day, pa.date32())))))
        return written

    # ------------------------------------------------------------------ compaction

    def _refresh_views(self) -> None:
        if self._views_db is not None:
            ensure_views_db(self.root, self._views_db)

    def compact(self, table: str, day: date) -> Compaction | None:
        """Merge the day's files into one (deduplicated like the views); None if nothing to do.

        The views are rebuilt at once to leave the replaced files out; the files themselves stay
        for the grace period (a query that listed them still reads them), then :meth:`purge`
        deletes them.
        """
        self._check_open()
        result = self._compact(spec_of(table), day)
        if result is None:
            return None
        self._refresh_views()
        # The grace period starts once the views leave the replaced files out: only connections
        # opened before that instant can still list them.
        delete_after = self._clock() + self._grace
        self._write_tombstone(result.merged.stem, result.replaced, delete_after)
        return dataclasses.replace(result, delete_after=delete_after)

    def _compact(self, spec: TableSpec, day: date, *, force: bool = False) -> Compaction | None:
        if day == ANCHOR_DAY:
            return None
        scheduled = {self.root / f for _, entry in pending_deletions(self.root) for f in entry["files"]}
        files = sorted(p for p in self._day_dir(spec.name, day).glob(f"{_PART_PREFIX}*.parquet")
                       if p not in scheduled)
        if len(files) < (1 if force else 2):
            return None
        order = spec.partition_by if spec.partition_by != DAY else LAKE_SEQ  # sorted: tighter row-group stats
        query = f"SELECT * FROM src {spec.dedupe(within_day=True)} ORDER BY {order}"  # noqa: S608 - names from TABLES
        rows_in = sum(pq.read_metadata(f).num_rows for f in files)
        with duckdb.connect() as con:
            relation = con.read_parquet([str(f) for f in files], union_by_name=True).query("src", query)
            if relation is None:  # pragma: no cover - a SELECT always yields a relation
                raise AnalyticsError(f"compacting {spec.name} {day}: the merge query returned nothing")
            merged = relation.to_arrow_table()
        path = self._write_file(spec, day, merged)
        # Not deletable until compact() has rebuilt the views and set the real deadline.
        self._write_tombstone(path.stem, files, _NEVER)
        return Compaction(spec.name, day, path, tuple(files), _NEVER, rows_in, merged.num_rows)

    def _write_tombstone(self, stem: str, replaced: Iterable[Path], delete_after: datetime) -> None:
        """``_pending_delete/<merged file's stem>.json``: the files it replaced, and when they may go."""
        entry = {"delete_after": delete_after.isoformat(), "files": [str(f.relative_to(self.root)) for f in replaced]}
        tombstone = self.root / PENDING_DIR / f"{stem}.json"
        tombstone.parent.mkdir(exist_ok=True)
        tmp = tombstone.with_name(f".{tombstone.name}.partial")
        tmp.write_text(json.dumps(entry), "utf-8")
        os.replace(tmp, tombstone)

    def purge(self, now: datetime | None = None) -> list[Path]:
        """Delete replaced files whose grace period has passed; returns the deleted files."""
        self._check_open()
        now = now or self._clock()
        deleted = []
        for path, entry in pending_deletions(self.root):
            if datetime.fromisoformat(entry["delete_after"]) > now:
                continue
            for name in entry["files"]:
                target = self.root / name
                if target.exists():
                    target.unlink()
                    deleted.append(target)
            path.unlink()
        if deleted:
            self._refresh_views()  # the names of deleted files need no excluding any more
        return deleted

    def days(self, table: str) -> list[date]:
        """The UTC days that have data files, oldest first."""
        spec_of(table)
        found = (date.fromisoformat(p.name.removeprefix(f"{DAY}=")) for p in (self.root / table).glob(f"{DAY}=*")
                 if any(p.glob(f"{_PART_PREFIX}*.parquet")))
        return sorted(day for day in found if day != ANCHOR_DAY)

    # ------------------------------------------------------------------ lifecycle

    def _check_open(self) -> None:
        if self._lock_file is None:
            raise AnalyticsError(f"the lake writer for {self.root} is closed")

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None

    def __enter__(self) -> ParquetLake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_journal(path: Path) -> list[Any]:
    """The complete record batches of a journal file (a torn last write is left out: the input
    it came from was never acknowledged, so the broker delivers it again)."""
    batches: list[Any] = []
    try:
        with pa.OSFile(str(path), "rb") as source, pa.ipc.open_stream(source) as reader:
            while True:
                batches.append(reader.read_next_batch())
    except StopIteration:
        pass
    except (pa.ArrowInvalid, OSError):
        pass
    return batches


@dataclass
class _Pending:
    parts: list[Any] = field(default_factory=list)
    rows: int = 0
    since: datetime | None = None


class LakeBuffer:
    """Rows waiting for the lake, per table. A table is written when it holds ``max_rows`` rows
    or its oldest row waited ``max_age``; the caller drives time through ``now``.

    With ``journal_dir`` every buffered row is also appended to a write-ahead journal there (one
    Arrow IPC stream per table, deleted once the table's rows are in the lake), and a new buffer
    starts with what a crashed predecessor's journal holds. The pipeline acknowledges messages
    to the broker long before the buffer is written (up to ``max_age``), so without the journal
    a SIGKILL would lose those rows for good. Replayed input may write a row twice; the views
    keep one row per key. :meth:`sync` makes the journal survive a power loss too (the pipeline
    calls it at each Bytewax snapshot, before the broker gets the acks)."""

    def __init__(self, lake: ParquetLake, *, max_rows: int = 50_000,
                 max_age: timedelta = timedelta(seconds=30), journal_dir: Path | None = None,
                 now: datetime | None = None) -> None:
        if max_rows < 1 or max_age <= timedelta(0):
            raise ValueError("max_rows must be >= 1 and max_age positive")
        self._lake = lake
        self._max_rows = max_rows
        self._max_age = max_age
        self._pending: dict[str, _Pending] = {}
        self._journal_dir = journal_dir
        self._journals: dict[str, tuple[Path, IO[bytes], Any]] = {}  # table -> file, handle, stream writer
        if journal_dir is not None:
            journal_dir.mkdir(parents=True, exist_ok=True)
            self._replay_journals(now or _utc_now())

    # ------------------------------------------------------------------ the journal

    def _replay_journals(self, now: datetime) -> None:
        """Take over what a predecessor's journal holds: its rows go into this buffer (and so into
        a new journal), and the old files are deleted only once that is on disk. A crash in
        between leaves both: the rows come twice, which the views' keys absorb."""
        assert self._journal_dir is not None  # noqa: S101 - only called with a journal
        old = sorted(self._journal_dir.glob("*.arrows"))
        for path in old:
            table = path.name.split(".", 1)[0]
            batches = _read_journal(path)
            if batches and table in TABLES:
                self.add(table, pa.Table.from_batches(batches), now)
        self.sync()
        for path in old:
            path.unlink()

    def _journal(self, table: str, rows: Any) -> None:
        if self._journal_dir is None:
            return
        if table not in self._journals:
            path = self._journal_dir / f"{table}.{time.time_ns()}.arrows"
            handle = open(path, "wb", buffering=0)  # unbuffered: each batch reaches the OS at once
            self._journals[table] = (path, handle, pa.ipc.new_stream(handle, rows.schema))
        self._journals[table][2].write_table(rows)

    def _close_journal(self, table: str, *, delete: bool) -> None:
        journal = self._journals.pop(table, None)
        if journal is not None:
            path, handle, writer = journal
            writer.close()
            handle.close()
            if delete:
                path.unlink(missing_ok=True)

    def sync(self) -> None:
        """Make the journal durable (fsync); a no-op without one."""
        for _path, handle, _writer in self._journals.values():
            os.fsync(handle.fileno())

    def close(self) -> None:
        """Close the journal files and keep them: what they hold is not in the lake yet."""
        for table in list(self._journals):
            self._close_journal(table, delete=False)

    # ------------------------------------------------------------------ buffering

    def add(self, table: str, items: Iterable[Any] | Any, now: datetime) -> None:
        """Buffer events/records/mappings, or a ``pyarrow.Table`` / ``polars.DataFrame``.
        Bad rows raise :class:`SchemaMismatchError` here, before anything is buffered."""
        if isinstance(items, pa.Table) or hasattr(items, "to_arrow"):
            rows = conform(table, items)
        else:
            rows = to_arrow(table, items)
        if rows.num_rows == 0:
            return
        self._journal(table, rows)
        pending = self._pending.setdefault(table, _Pending())
        pending.parts.append(rows)
        pending.rows += rows.num_rows
        pending.since = pending.since or now

    def pending_rows(self, table: str) -> int:
        pending = self._pending.get(table)
        return pending.rows if pending else 0

    def due(self, now: datetime) -> list[str]:
        return [table for table, p in self._pending.items()
                if p.rows >= self._max_rows or (p.since is not None and now - p.since >= self._max_age)]

    def _flush_table(self, table: str) -> list[Path]:
        pending = self._pending[table]
        written = self._lake.append(table, pa.concat_tables(pending.parts))
        del self._pending[table]  # only once written: a failed write is retried on the next call
        self._close_journal(table, delete=True)
        return written

    def maybe_flush(self, now: datetime) -> list[Path]:
        """Write the tables that are due; returns the files written."""
        return [path for table in self.due(now) for path in self._flush_table(table)]

    def flush(self) -> list[Path]:
        """Write everything now (shutdown, end of an epoch)."""
        return [path for table in list(self._pending) for path in self._flush_table(table)]
