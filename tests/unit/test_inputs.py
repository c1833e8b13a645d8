"""One Bytewax input for all of the dataflow's sources (pipelines.inputs)."""

from __future__ import annotations

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from pipelines.inputs import MergedSource, Tagged, is_primary, untag


def test_partitions_are_named_by_source_and_items_of_secondaries_are_tagged() -> None:
    source = MergedSource({"mqtt": TestingSource([1, 2], batch_size=2), "tick": TestingSource(["t"])})
    assert source.list_parts() == ["mqtt:iterable", "tick:iterable"]
    primary = source.build_part("inputs", "mqtt:iterable", None)
    secondary = source.build_part("inputs", "tick:iterable", None)
    assert primary.next_batch() == [1, 2]
    assert secondary.next_batch() == [Tagged("tick", "t")]


def test_resume_state_goes_to_the_inner_partition() -> None:
    source = MergedSource({"mqtt": TestingSource([1, 2, 3], batch_size=1)})
    part = source.build_part("inputs", "mqtt:iterable", 2)  # TestingSource resumes at the index it snapshotted
    assert part.next_batch() == [3]
    assert part.snapshot() == 3


@pytest.mark.parametrize("bad", ["", "a:b"])
def test_source_names_must_be_usable_as_key_prefixes(bad: str) -> None:
    with pytest.raises(ValueError, match="source name"):
        MergedSource({bad: TestingSource([])})


def test_unknown_partition_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown partition"):
        MergedSource({"mqtt": TestingSource([])}).build_part("inputs", "other:iterable", None)


def test_a_flow_gets_every_item_of_every_source_back_apart() -> None:
    flow = Dataflow("merged")
    items = op.input("inputs", flow, MergedSource({
        "mqtt": TestingSource(list(range(50)), batch_size=7),
        "config": TestingSource(["a", "b"]),
        "tick": TestingSource(["t1", "t2", "t3"], batch_size=1),
    }))
    split = op.branch("split", items, is_primary)
    primary: list[object] = []
    config: list[object] = []
    ticks: list[object] = []
    op.output("primary", split.trues, TestingSink(primary))
    op.output("config", op.map("c", op.filter("cf", split.falses, lambda t: t.source == "config"), untag),
              TestingSink(config))
    op.output("tick", op.map("t", op.filter("tf", split.falses, lambda t: t.source == "tick"), untag),
              TestingSink(ticks))
    run_main(flow)
    assert primary == list(range(50))
    assert config == ["a", "b"]
    assert ticks == ["t1", "t2", "t3"]
