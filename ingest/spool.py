"""A bounded, append-only, on-disk FIFO of byte records: the publisher's overflow past memory.

Layout: ``spool_dir/<index>.seg`` segment files read in index order, each a run of records
``<u32 length><u32 crc32(payload)><payload>`` (little endian, length > 0), plus ``cursor.json``
holding how far each partially read segment has been consumed. Appends go to the last segment
(rolled over at ``segment_bytes``); :meth:`Spool.prepend` writes a new segment *before* the first,
which is how a stopping publisher puts its unacknowledged messages back ahead of the newer ones.

Durability (what a crash can cost):

* appends are written with one ``write`` per batch and fsynced at most every ``fsync_interval``
  seconds, on segment roll-over and on :meth:`sync`/:meth:`close`; so a power loss can lose at
  most the last interval's appends, never earlier records;
* opening a spool walks every record and checks the CRCs of the last segment (the only one a
  crash can tear: a segment is fsynced before the next begins); a torn or garbled tail is cut
  off with a warning and everything before it is kept. pop() checks every CRC;
* the read cursor is written only by :meth:`close`; a fully read segment is deleted at once.
  After a crash, what was read since the last close from a segment still on disk is read again:
  duplicates, not losses, which is the right way round for an at-least-once publisher. (What had
  been read into memory from an already deleted segment is gone, like any in-memory queue.)
* segment indexes are never reused while a cursor entry may still name them, so a stale cursor
  can never skip records of a newer segment.

Not thread-safe: one owner thread at a time (the publisher's pump, then ``stop()``).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

_HEADER: Final = struct.Struct("<II")
HEADER_BYTES: Final = _HEADER.size
MAX_RECORD_BYTES: Final = 256 << 20  # MQTT's own payload ceiling is just under this
_SUFFIX: Final = ".seg"
_CURSOR: Final = "cursor.json"
_FIRST_INDEX: Final = 1_000_000_000  # room below for prepended segments
_READ_BUFFER: Final = 1 << 20


class SpoolError(OSError):
    """The spool directory cannot be used (not writable, unreadable cursor, ...)."""


def record_size(payload: bytes) -> int:
    """Bytes a record takes on disk (header included)."""
    return HEADER_BYTES + len(payload)


def _frame(records: Iterable[bytes]) -> bytes:
    parts: list[bytes] = []
    for payload in records:
        parts.append(_HEADER.pack(len(payload), zlib.crc32(payload)))
        parts.append(payload)
    return b"".join(parts)


def _scan(data: bytes, start: int, *, verify: bool) -> tuple[int, int, bool]:
    """Walk the records of a segment: (valid end, records from ``start`` on, start is a boundary).

    Checksums are verified only with ``verify`` (the last segment, the one a crash can tear);
    older segments were fsynced before the next one began, and pop() checks every record anyway.
    """
    pos, count, size, aligned = 0, 0, len(data), start == 0
    while pos + HEADER_BYTES <= size:
        length, crc = _HEADER.unpack_from(data, pos)
        end = pos + HEADER_BYTES + length
        if length == 0 or length > MAX_RECORD_BYTES or end > size:
            break
        if pos >= start:
            if verify and zlib.crc32(data[pos + HEADER_BYTES:end]) != crc:
                break
            count += 1
        pos = end
        aligned = aligned or pos == start
    return pos, count, aligned


def _write_all(fd: int, data: bytes, *, rollback_to: int) -> None:
    """Write everything or nothing: after a failed write (disk full) the file is cut back, so no
    half record is left for later appends to follow (a reopen would cut those off with it)."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        try:
            os.ftruncate(fd, rollback_to)
        except OSError:
            log.exception("could not cut a spool segment back to %d bytes after a failed write", rollback_to)
        raise


class _Segment:
    __slots__ = ("end", "index", "path", "read_offset", "records")

    def __init__(self, index: int, path: Path, end: int, read_offset: int, records: int) -> None:
        self.index = index
        self.path = path
        self.end = end  # valid length in bytes
        self.read_offset = read_offset
        self.records = records  # unread records


class Spool:
    """FIFO of non-empty byte records on disk, bounded by ``max_bytes`` of unread data.

    Disk use is at most ``max_bytes`` plus one partly read segment. :meth:`append` refuses what
    does not fit (and says how many it took); :meth:`prepend` ignores the bound, because what it
    is given (unacknowledged messages at shutdown) must not be lost and is itself bounded.
    """

    def __init__(self, directory: Path, *, max_bytes: int = 1 << 30, segment_bytes: int = 8 << 20,
                 fsync_interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        if max_bytes <= 0 or segment_bytes <= 0:
            raise ValueError("max_bytes and segment_bytes must be positive")
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync_interval = fsync_interval
        self._clock = clock
        self._segments: list[_Segment] = []  # ascending index: the head is [0]
        self._next_index = _FIRST_INDEX
        self._lowest_index = _FIRST_INDEX  # prepends go below every index seen, files or cursor
        self._records = 0
        self._bytes = 0
        self._tail_fd: int | None = None  # writer of self._segments[-1], if open
        self._dirty_since: float | None = None
        self._closed = False
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._load()
        except OSError as exc:
            raise SpoolError(f"cannot open the spool in {directory}: {exc}") from exc

    # ------------------------------------------------------------------ state

    @property
    def records(self) -> int:
        """Unread records."""
        return self._records

    @property
    def size_bytes(self) -> int:
        """Unread bytes, headers included (what ``max_bytes`` bounds)."""
        return self._bytes

    def __len__(self) -> int:
        return self._records

    def _load(self) -> None:
        cursor = self._read_cursor()
        indexes = sorted(int(p.stem) for p in self.directory.glob(f"*{_SUFFIX}") if p.stem.isdigit())
        for index in indexes:
            path = self._path(index)
            data = path.read_bytes()
            start, verify = cursor.get(index, 0), index == indexes[-1]
            end, count, aligned = _scan(data, start, verify=verify)
            if not aligned or start > end:
                # Not where a record starts: read the segment again (duplicates, never losses).
                log.warning("spool segment %s: cursor %d is not a record boundary; re-reading it whole",
                            path.name, start)
                start = 0
                end, count, _ = _scan(data, 0, verify=verify)
            if end < len(data):
                log.warning("spool segment %s: dropping a corrupt or torn tail of %d bytes after %d records",
                            path.name, len(data) - end, count)
                with path.open("r+b") as f:
                    f.truncate(end)
                    os.fsync(f.fileno())
            if count == 0:
                path.unlink()
                continue
            self._segments.append(_Segment(index, path, end, start, count))
            self._records += count
            self._bytes += end - start
        known = set(indexes) | set(cursor)
        self._next_index = max(known, default=_FIRST_INDEX - 1) + 1
        self._lowest_index = min(known, default=self._next_index)
        if self._records:
            log.info("spool %s: %d records (%d bytes) left from a previous run",
                     self.directory, self._records, self._bytes)

    def _read_cursor(self) -> dict[int, int]:
        path = self.directory / _CURSOR
        try:
            raw = json.loads(path.read_text())
            return {int(k): int(v) for k, v in raw.items() if int(v) >= 0}
        except FileNotFoundError:
            return {}
        except (ValueError, AttributeError, TypeError):
            # Re-reading from the start of each segment only duplicates; never refuse to start.
            log.warning("spool %s: unreadable cursor, re-reading segments from the start", self.directory)
            return {}

    def _path(self, index: int) -> Path:
        return self.directory / f"{index:020d}{_SUFFIX}"

    # ------------------------------------------------------------------ writing

    def append(self, records: Sequence[bytes]) -> int:
        """Append records at the tail; returns how many fitted under ``max_bytes`` (a prefix)."""
        self._check_open()
        accepted, size = 0, self._bytes
        for payload in records:
            if not payload or len(payload) > MAX_RECORD_BYTES:
                raise ValueError("spool records must be non-empty and at most 256 MiB")
            if size + record_size(payload) > self.max_bytes:
                break
            size += record_size(payload)
            accepted += 1
        pos = 0
        while pos < accepted:
            fd, seg = self._writable_tail()
            # Fill the tail up to segment_bytes (at least one record per segment), then roll over.
            stop, end = pos + 1, seg.end + record_size(records[pos])
            while stop < accepted and end + record_size(records[stop]) <= self.segment_bytes:
                end += record_size(records[stop])
                stop += 1
            data = _frame(records[pos:stop])
            _write_all(fd, data, rollback_to=seg.end)
            seg.end += len(data)
            seg.records += stop - pos
            self._records += stop - pos
            self._bytes += len(data)
            pos = stop
            if seg.end >= self.segment_bytes:
                self._close_tail(fsync=True)
        if accepted and self._dirty_since is None:
            self._dirty_since = self._clock()
        self.sync_if_due()
        return accepted

    def prepend(self, records: Sequence[bytes]) -> None:
        """Write records as a new first segment, ahead of everything already spooled; fsynced."""
        self._check_open()
        records = [r for r in records if r]
        if not records:
            return
        self._lowest_index -= 1
        index = self._lowest_index
        path = self._path(index)
        data = _frame(records)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, data, rollback_to=0)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        self._fsync_dir()
        self._segments.insert(0, _Segment(index, path, len(data), 0, len(records)))
        self._records += len(records)
        self._bytes += len(data)

    def _take_index(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index

    def _writable_tail(self) -> tuple[int, _Segment]:
        if self._tail_fd is not None:
            return self._tail_fd, self._segments[-1]
        if self._segments and self._segments[-1].end < self.segment_bytes:
            seg = self._segments[-1]
            self._tail_fd = os.open(seg.path, os.O_WRONLY | os.O_APPEND)
            return self._tail_fd, seg
        index = self._take_index()
        seg = _Segment(index, self._path(index), 0, 0, 0)
        self._tail_fd = os.open(seg.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        self._fsync_dir()
        self._segments.append(seg)
        return self._tail_fd, seg

    def _close_tail(self, *, fsync: bool) -> None:
        if self._tail_fd is None:
            return
        try:
            if fsync:
                os.fsync(self._tail_fd)
        finally:
            os.close(self._tail_fd)
            self._tail_fd = None

    def sync_due_in(self) -> float | None:
        """Seconds until unsynced appends are due for an fsync (<= 0: now), or None if all synced."""
        if self._dirty_since is None:
            return None
        return self._dirty_since + self.fsync_interval - self._clock()

    def sync_if_due(self) -> None:
        due = self.sync_due_in()
        if due is not None and due <= 0:
            self.sync()

    def sync(self) -> None:
        """Make every appended record durable."""
        if self._tail_fd is not None:
            os.fsync(self._tail_fd)
        self._dirty_since = None

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ reading

    def pop(self, max_records: int) -> list[bytes]:
        """Remove and return up to ``max_records`` records from the head, oldest first."""
        self._check_open()
        out: list[bytes] = []
        while len(out) < max_records and self._segments:
            seg = self._segments[0]
            with seg.path.open("rb", buffering=_READ_BUFFER) as f:
                f.seek(seg.read_offset)
                while len(out) < max_records and seg.records:
                    header = f.read(HEADER_BYTES)
                    length, crc = _HEADER.unpack(header) if len(header) == HEADER_BYTES else (0, 0)
                    payload = f.read(length)
                    if length == 0 or len(payload) != length or zlib.crc32(payload) != crc:
                        # Bit rot, or a prepend torn by a crash: nothing after this in the segment
                        # can be trusted (lengths may be garbage), the later segments still can.
                        log.error("spool segment %s is damaged at offset %d: its %d remaining records are skipped",
                                  seg.path.name, seg.read_offset, seg.records)
                        self._records -= seg.records
                        self._bytes -= seg.end - seg.read_offset
                        seg.records, seg.read_offset = 0, seg.end
                        break
                    out.append(payload)
                    size = HEADER_BYTES + length
                    seg.read_offset += size
                    seg.records -= 1
                    self._records -= 1
                    self._bytes -= size
            if seg.records == 0:
                self._drop_head()
        return out

    def _drop_head(self) -> None:
        seg = self._segments.pop(0)
        if not self._segments and self._tail_fd is not None:
            self._close_tail(fsync=False)
        try:
            seg.path.unlink()
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """fsync, then record the read position so a reopen continues where this left off."""
        if self._closed:
            return
        self._close_tail(fsync=True)
        cursor = {str(s.index): s.read_offset for s in self._segments if s.read_offset}
        tmp = self.directory / (_CURSOR + ".tmp")
        with tmp.open("w") as f:
            json.dump(cursor, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.directory / _CURSOR)
        self._fsync_dir()
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise SpoolError("the spool is closed")
