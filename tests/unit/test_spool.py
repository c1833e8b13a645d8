"""The publisher's disk spool: FIFO, bounded, survives reopening and crashes mid-write."""

from __future__ import annotations

import json
import tempfile
from collections import deque
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.spool import HEADER_BYTES, Spool, record_size


def _records(n: int, start: int = 0) -> list[bytes]:
    return [f"record-{i:06d}".encode() for i in range(start, start + n)]


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def _drain(spool: Spool) -> list[bytes]:
    out: list[bytes] = []
    while batch := spool.pop(7):
        out.extend(batch)
    return out


def test_fifo_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=200)
    assert spool.append(_records(30)) == 30
    assert len(_segments(tmp_path)) >= 3, "small segments must roll over"
    assert spool.pop(10) == _records(10)
    assert spool.append(_records(5, start=30)) == 5
    assert _drain(spool) == _records(25, start=10)
    assert spool.records == 0 and spool.size_bytes == 0
    assert _segments(tmp_path) == [], "fully read segments are deleted"


def test_reopen_continues_where_it_left_off(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=150)
    spool.append(_records(20))
    assert spool.pop(8) == _records(8)
    spool.close()

    again = Spool(tmp_path, segment_bytes=150)
    assert again.records == 12
    assert again.size_bytes == sum(record_size(r) for r in _records(12, start=8))
    again.append(_records(3, start=20))
    assert _drain(again) == _records(15, start=8)


def test_crash_without_close_rereads_rather_than_loses(tmp_path: Path) -> None:
    spool = Spool(tmp_path)  # one segment: nothing read is deleted yet
    spool.append(_records(10))
    spool.sync()
    assert spool.pop(4) == _records(4)
    # no close(): the process died here
    again = Spool(tmp_path)
    assert _drain(again) == _records(10), "unacknowledged reads come back (duplicates, never losses)"


def test_bounded_by_unread_bytes(tmp_path: Path) -> None:
    one = record_size(_records(1)[0])
    spool = Spool(tmp_path, max_bytes=one * 5 + 3, segment_bytes=one * 2)
    assert spool.append(_records(8)) == 5, "only the prefix that fits is taken"
    assert spool.size_bytes <= spool.max_bytes
    assert spool.append(_records(1, start=99)) == 0
    assert spool.pop(2) == _records(2)
    assert spool.append(_records(3, start=5)) == 2
    assert _drain(spool) == _records(5, start=2)


@pytest.mark.parametrize("garbage", [
    b"\x05\x00",  # half a header
    b"\x40\x00\x00\x00\x01\x02\x03\x04abc",  # header promising 64 bytes, 3 written
    b"\x00" * 64,  # a filesystem that extended the file with zeros
    b"\xff\xff\xff\xff\x00\x00\x00\x00",  # absurd length
])
def test_torn_tail_is_cut_and_earlier_records_kept(tmp_path: Path, garbage: bytes) -> None:
    spool = Spool(tmp_path, segment_bytes=120)
    spool.append(_records(12))
    spool.close()
    tail = _segments(tmp_path)[-1]
    clean_size = tail.stat().st_size
    with tail.open("ab") as f:
        f.write(garbage)

    again = Spool(tmp_path, segment_bytes=120)
    assert tail.stat().st_size == clean_size, "the torn tail is truncated away"
    again.append(_records(2, start=12))  # appends after the cut are readable
    again.close()
    assert _drain(Spool(tmp_path, segment_bytes=120)) == _records(14)


def test_bad_checksum_in_last_record(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(_records(5))
    spool.close()
    seg = _segments(tmp_path)[0]
    data = bytearray(seg.read_bytes())
    data[-1] ^= 0xFF  # flip a bit in the last payload
    seg.write_bytes(bytes(data))
    assert _drain(Spool(tmp_path)) == _records(4)


def test_bit_rot_in_an_older_segment_is_caught_when_read(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=5 * record_size(_records(1)[0]))
    spool.append(_records(15))  # three segments of five
    spool.close()
    first = _segments(tmp_path)[0]
    data = bytearray(first.read_bytes())
    data[3 * record_size(_records(1)[0]) - 1] ^= 0xFF  # the third record's last byte
    first.write_bytes(bytes(data))
    # only the damaged segment's rest is lost; the other segments are intact
    assert _drain(Spool(tmp_path)) == [*_records(2), *_records(10, start=5)]


def test_prepend_goes_before_a_partly_read_head_and_survives_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=10_000)
    spool.append(_records(10))
    assert spool.pop(3) == _records(3)
    spool.prepend([b"unacked-1", b"unacked-2"])
    spool.close()

    again = Spool(tmp_path)
    assert _drain(again) == [b"unacked-1", b"unacked-2", *_records(7, start=3)]


def test_prepend_to_an_empty_spool_then_append(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.prepend([b"a"])
    spool.append([b"b", b"c"])
    spool.prepend([b"z"])
    assert _drain(spool) == [b"z", b"a", b"b", b"c"]


def test_a_stale_cursor_never_skips_a_newer_segment(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(_records(10))
    spool.pop(5)
    spool.close()  # cursor: 5 records into the first segment
    cursor = json.loads((tmp_path / "cursor.json").read_text())
    assert list(cursor.values()) == [5 * record_size(_records(1)[0])]

    run2 = Spool(tmp_path)
    assert _drain(run2) == _records(5, start=5)  # segment deleted; the process then "crashes"
    run2.append(_records(10, start=100))
    run2.sync()

    run3 = Spool(tmp_path)  # the stale cursor.json still names the old offset
    assert _drain(run3) == _records(10, start=100)


def test_unreadable_cursor_means_rereading_not_losing(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(_records(4))
    spool.pop(2)
    spool.close()
    (tmp_path / "cursor.json").write_text("{not json")
    assert _drain(Spool(tmp_path)) == _records(4)


def test_cursor_off_a_record_boundary_rereads_the_segment(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(_records(4))
    spool.close()
    index = _segments(tmp_path)[0].stem
    (tmp_path / "cursor.json").write_text(json.dumps({str(int(index)): HEADER_BYTES + 1}))
    assert _drain(Spool(tmp_path)) == _records(4)


def test_empty_records_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        Spool(tmp_path).append([b"ok", b""])


def test_fsync_is_batched_by_time(tmp_path: Path) -> None:
    now = [100.0]
    spool = Spool(tmp_path, fsync_interval=1.0, clock=lambda: now[0])
    assert spool.sync_due_in() is None
    spool.append([b"x"])
    assert spool.sync_due_in() == pytest.approx(1.0)
    now[0] += 0.4
    spool.append([b"y"])  # not yet due: no fsync, the deadline stays
    assert spool.sync_due_in() == pytest.approx(0.6)
    now[0] += 0.7
    spool.append([b"z"])  # due: synced
    assert spool.sync_due_in() is None


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.lists(st.binary(min_size=1, max_size=40), max_size=12)),
        st.tuples(st.just("pop"), st.integers(min_value=0, max_value=15)),
        st.tuples(st.just("prepend"), st.lists(st.binary(min_size=1, max_size=40), max_size=4)),
        st.tuples(st.just("reopen"), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(ops=_OPS)
def test_behaves_like_a_deque(ops: list[tuple[str, object]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        directory = Path(d)
        spool = Spool(directory, segment_bytes=100)
        model: deque[bytes] = deque()
        for op, arg in ops:
            if op == "append":
                assert isinstance(arg, list)
                assert spool.append(arg) == len(arg)
                model.extend(arg)
            elif op == "prepend":
                assert isinstance(arg, list)
                spool.prepend(arg)
                model.extendleft(reversed(arg))
            elif op == "pop":
                assert isinstance(arg, int)
                assert spool.pop(arg) == [model.popleft() for _ in range(min(arg, len(model)))]
            else:
                spool.close()
                spool = Spool(directory, segment_bytes=100)
            assert spool.records == len(model)
            assert spool.size_bytes == sum(record_size(r) for r in model)
        assert _drain(spool) == list(model)
        spool.close()
