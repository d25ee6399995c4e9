"""A Coinbase book taken over mid-stream (a processor worker's partition moved): every record still comes.

The successor has no snapshot, so the partial fill of an order that opened before it has no
size to subtract from.  It holds the symbol's ``lob_l3`` records back from that fill, asks for
a snapshot at once, and sizes the fill from the order's next ``change`` (``old_size``), its
``done`` (``remaining_size``) or the snapshot: its records are then those of a worker that saw
the whole stream, in the same order.  Pure: the seeded order-flow simulator, no broker.
"""

from __future__ import annotations

import itertools

import orjson

from l3_atom.sim.orderflow import OrderFlow
from l3_atom.stream_processing.standardiser import Output
from l3_atom.stream_processing.standardisers.coinbase import UNSIZED_FILL, CoinbaseStandardiser
from l3_atom.topics import BOOK_RESYNC, LOB_L3

ATOM = 1_618_678_000_000_000
PRODUCT = "BTC-USD"
SNAPSHOT_KEY = f"coinbase_{PRODUCT}_full"
BEFORE, UNTIL_SNAPSHOT, AFTER = 1500, 800, 1500
MATCH = "match"


def frames(flow: OrderFlow, count: int) -> list[tuple[bytes, str | None]]:
    return [(orjson.dumps(m), f"coinbase_{m['product_id']}_full") for m in flow.take(count, ATOM)]


def snapshot(flow: OrderFlow) -> tuple[bytes, str]:
    return orjson.dumps(flow.snapshot(PRODUCT)), SNAPSHOT_KEY


def run(std: CoinbaseStandardiser, stream: list[tuple[bytes, str | None]]) -> list[Output]:
    return [out for frame, key in stream for out in std.standardise(frame, ATOM, key)]


def book_events(outputs: list[Output]) -> list[tuple]:
    return [(o.record["event_type"], o.record["order_id"], o.record["size"], o.record["reason"], o.record["sequence"])
            for o in outputs if o.topic == LOB_L3 and not o.record["is_snapshot"]]


def test_a_taken_over_book_publishes_every_fill_in_order() -> None:
    flow = OrderFlow(seed=5, product_ids=[PRODUCT])
    first = snapshot(flow)
    before = frames(flow, BEFORE)
    until_snapshot = frames(flow, UNTIL_SNAPSHOT)
    resync = snapshot(flow)
    after = frames(flow, AFTER)

    whole = CoinbaseStandardiser()
    run(whole, [first, *before])
    expected = run(whole, [*until_snapshot, resync, *after])

    successor = CoinbaseStandardiser()
    got = run(successor, [*until_snapshot, resync, *after])

    assert book_events(got) == book_events(expected)
    opened_here = {event[1] for event in book_events(got) if event[0] == "open"}
    older_fills = [e for e in book_events(got) if e[3] == MATCH and e[1] not in opened_here]
    assert older_fills, "the flow filled orders older than the successor partly: the case under test"
    assert not successor.skipped[UNSIZED_FILL]
    assert not [reason for reason in successor.skipped if reason.endswith("nothing in it")], successor.skipped
    # The first such fill asked for a snapshot at once (the first request of a book with none).
    assert next(o for o in got if o.topic == BOOK_RESYNC).record["reason"] == "no_snapshot"
    # Each record's prev_sequence is the one published before it (the first has none to point at).
    events = [o.record for o in got if o.topic == LOB_L3 and not o.record["is_snapshot"]]
    snapshot_sequence = orjson.loads(resync[0])["sequence"]
    for previous, record in itertools.pairwise(events):
        if previous["sequence"] <= snapshot_sequence < record["sequence"]:
            continue  # the snapshot came in between
        assert record["prev_sequence"] == previous["sequence"], record


def test_fills_never_sized_before_the_snapshot_are_counted_skips() -> None:
    flow = OrderFlow(seed=5, product_ids=[PRODUCT])
    frames(flow, BEFORE)
    successor = CoinbaseStandardiser()
    held = []
    while not successor._held:  # up to the first fill of an order older than the successor
        held += run(successor, frames(flow, 1))
    assert successor.skipped.deferred > 0, "the fill's frame was accounted for as held back"
    # A snapshot that does not hold the order and no later message of it: the fill cannot be sized.
    empty = orjson.dumps({"bids": [], "asks": [], "sequence": flow.sequence(PRODUCT)})
    released = successor.standardise(empty, ATOM, SNAPSHOT_KEY)
    unsized = successor.skipped[UNSIZED_FILL]
    assert unsized > 0
    events = book_events(held + released)
    assert len([o for o in held + released if o.topic == LOB_L3]) == len(events)
    assert all(size > 0 for kind, _, size, reason, _ in events if kind == "change" and reason == MATCH)


def test_a_gap_while_holding_publishes_no_size_counted_across_it() -> None:
    """A message missed while fills wait for their size: sizes counted back across it would be wrong."""
    flow = OrderFlow(seed=5, product_ids=[PRODUCT])
    first = snapshot(flow)
    before = frames(flow, BEFORE)
    stream = frames(flow, UNTIL_SNAPSHOT)
    whole = CoinbaseStandardiser()
    run(whole, [first, *before])
    sent = set(book_events(run(whole, stream)))

    successor = CoinbaseStandardiser()
    got, index = [], 0
    while not successor._held:
        got += run(successor, [stream[index]])
        index += 1
    waiting = set(next(iter(successor._held.values())).fills)
    # The next fill of a waiting order goes missing (a gap in the sequence numbers).
    missed = next(i for i in range(index, len(stream))
                  if orjson.loads(stream[i][0]).get("maker_order_id") in waiting)
    got += run(successor, stream[index:missed] + stream[missed + 1:])
    assert not set(book_events(got)) - sent, "a size no message gave"
    assert successor.skipped[UNSIZED_FILL] > 0


def test_a_snapshot_ahead_of_the_stream_sizes_no_fill_held_before_it() -> None:
    """A snapshot taken after another fill of a waiting order, archived before that fill's frame: its size
    already has the later fill taken off, so it cannot give the size after the held one."""
    flow = OrderFlow(seed=5, product_ids=[PRODUCT])
    first = snapshot(flow)
    whole = CoinbaseStandardiser()
    run(whole, [first, *frames(flow, BEFORE)])
    successor = CoinbaseStandardiser()
    stream: list[tuple[bytes, str | None]] = []
    while not successor._held:  # up to the first fill of an order older than the successor
        stream += frames(flow, 1)
        run(successor, stream[-1:])
    waiting = set(next(iter(successor._held.values())).fills)
    pending = []
    for _ in range(UNTIL_SNAPSHOT):  # the waiting order's next partial fill, not yet read by the successor
        pending += frames(flow, 1)
        message = orjson.loads(pending[-1][0])
        ahead = snapshot(flow)
        resting = {order[2] for side in ("bids", "asks") for order in orjson.loads(ahead[0])[side]}
        if message["type"] == MATCH and message["maker_order_id"] in waiting & resting:
            break
    else:
        raise AssertionError("the flow never filled a waiting order partly again: the case under test")
    after = frames(flow, AFTER)
    sent = set(book_events(run(whole, [*stream, *pending, *after])))
    got = run(successor, [ahead, *pending, *after])
    assert not set(book_events(got)) - sent, "a size no message gave"
    assert successor.skipped[UNSIZED_FILL] > 0
