"""All of the dataflow's inputs as one Bytewax input, so their epochs stay in step.

Bytewax 0.21 gives every input partition its own epoch clock: a partition starts a new epoch at
the first activation after its interval has elapsed, and then emits nothing more until the whole
dataflow has finished the previous epoch (the probe's backpressure). With several inputs, each
activated on its own schedule (the MQTT source every few ms, the configuration source and the
lake tick at their naps), the late ones start their epochs a little later every time, so the
others wait longer and longer at every epoch boundary: the delay grew from ~0 to a whole epoch
over about a minute and then started again (the control benchmark's "publish -> decision" was
spread evenly over 0-1 s with 1 s epochs, and its maximum followed the epoch), and the blocked
partition was re-activated in a busy loop meanwhile.

Partitions of one input are looked at in the same activation, with one clock reading, so their
epochs end together and stay together. :class:`MergedSource` puts the partitions of several
:class:`~bytewax.inputs.FixedPartitionedSource` into one: the first source's items pass as they
are, the others' are wrapped in :class:`Tagged` with their source's name, and
:func:`split_merged` takes them apart again in the flow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

SEP = ":"


@dataclass(frozen=True, slots=True)
class Tagged:
    """An item of a secondary source: ``source`` is its name in the :class:`MergedSource`."""

    source: str
    item: Any


class _Partition(StatefulSourcePartition[Any, Any]):
    def __init__(self, inner: StatefulSourcePartition[Any, Any], tag: str | None) -> None:
        self._inner, self._tag = inner, tag

    def next_batch(self) -> list[Any]:
        batch = self._inner.next_batch()
        if self._tag is None:
            return list(batch)
        tag = self._tag
        return [Tagged(tag, item) for item in batch]

    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()

    def snapshot(self) -> Any:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class MergedSource(FixedPartitionedSource[Any, Any]):
    """The partitions of ``sources`` (name -> source, the first one primary) as one source.

    Partition keys are ``"<name>:<key>"``; resume states are each inner partition's own."""

    def __init__(self, sources: Mapping[str, FixedPartitionedSource[Any, Any]]) -> None:
        if not sources:
            raise ValueError("MergedSource needs at least one source")
        for name in sources:
            if not name or SEP in name:
                raise ValueError(f"source name {name!r} must be non-empty and without {SEP!r}")
        self._sources = dict(sources)
        self._primary = next(iter(self._sources))

    def list_parts(self) -> list[str]:
        return [f"{name}{SEP}{key}" for name, source in self._sources.items() for key in source.list_parts()]

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _Partition:
        name, sep, key = for_part.partition(SEP)
        if not sep or name not in self._sources:
            raise ValueError(f"unknown partition {for_part!r}")
        inner = self._sources[name].build_part(f"{step_id}.{name}", key, resume_state)
        return _Partition(inner, None if name == self._primary else name)


def is_primary(item: Any) -> bool:
    return type(item) is not Tagged


def untag(item: Tagged) -> Any:
    return item.item
