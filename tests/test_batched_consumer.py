"""The batched consumer's commit offsets: what it commits once batches are acked (pure bookkeeping, no broker).

Faust acks a batch's event by its last offset; ``BatchingConsumer._new_offset`` counts the
batch's other offsets as acked when a commit is computed.  The full-scale worker-kill fault
scenario found batches that overlap (delivered again after a seek) making the commit creep
one offset per commit interval, so that a taken-over partition's backlog never got committed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from faust.types import TP

from l3_atom.stream_processing.batched_consumer import BatchingApp, BatchingConsumer

RAW = TP("coinbase_raw", 1)


@pytest.fixture
def consumer() -> Iterator[BatchingConsumer]:
    app = BatchingApp("test-batched-offsets", broker="kafka://127.0.0.1:9", store="memory://")
    consumer = app.consumer
    assert isinstance(consumer, BatchingConsumer)
    yield consumer


def ack_batch(consumer: BatchingConsumer, first: int, last: int) -> None:
    """What delivering a batch of offsets ``first``..``last`` and Faust acking its event leave behind."""
    consumer._batch_spans.setdefault(RAW, {})[last] = first
    consumer._acked[RAW].append(last)
    consumer._acked_index[RAW].add(last)


@pytest.mark.parametrize(("committed", "batches", "gaps", "commit"), [
    # Two batches in a row.
    (100, [(100, 149), (150, 199)], [], 200),
    # After a seek back to the committed 150, part of a delivered batch came again as a batch of its own.
    (150, [(100, 199), (150, 179)], [], 200),
    # The record at the last delivered offset delivered again as the first of the next batch.
    (10, [(10, 20), (20, 30)], [], 31),
    # A gap noted over offsets that were delivered after all (a fetch from before a seek delivered after it).
    (100, [(100, 149)], [(120, 159)], 160),
])
def test_acked_batches_commit_past_their_last_offset_at_once(
    consumer: BatchingConsumer, committed: int, batches: list[tuple[int, int]], gaps: list[tuple[int, int]],
    commit: int,
) -> None:
    consumer._committed_offset[RAW] = committed
    for first, last in batches:
        ack_batch(consumer, first, last)
    for first, last in gaps:
        consumer._gap[RAW].addi(first, last + 1)
    assert consumer._new_offset(RAW) == commit
    assert not consumer._acked[RAW], "every acked offset went into the commit"


def test_a_batch_not_yet_acked_holds_the_commit_back(consumer: BatchingConsumer) -> None:
    consumer._committed_offset[RAW] = 0
    ack_batch(consumer, 0, 9)
    consumer._batch_spans[RAW][29] = 20  # delivered, still being processed
    ack_batch(consumer, 30, 39)
    assert consumer._new_offset(RAW) == 10
