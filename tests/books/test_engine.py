"""The book engine against a brute-force replay, plus sequence rules and record feeds."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from l3_atom.books.engine import (
    ASK,
    BID,
    EQ,
    GTE,
    LTE,
    SIDES,
    VOLUME_OPS,
    L2Book,
    L2Feed,
    L3Book,
    L3Feed,
)

ZERO = Decimal(0)
DEPTHS = (0, 1, 3, 10, 100)
MAX_EXAMPLES = 300

# Few prices, so that updates hit existing levels; written with varying trailing zeros (1.1 == 1.10).
prices = st.builds(lambda units, zeros: Decimal(units).scaleb(-1).quantize(Decimal(1).scaleb(-1 - zeros)),
                   st.integers(1, 40), st.integers(0, 3))
sizes = st.one_of(st.just(Decimal(0)), st.just(Decimal("0E-8")),
                  st.builds(lambda units: Decimal(units).scaleb(-8), st.integers(1, 10**12)))
sides = st.sampled_from(SIDES)
levels = st.tuples(sides, prices, sizes)
l2_ops = st.lists(st.one_of(levels.map(lambda op: ("update", op)),
                            st.lists(levels, max_size=8).map(lambda op: ("snapshot", op))), max_size=80)
order_ids = st.sampled_from([f"o{i}" for i in range(12)])
l3_ops = st.lists(
    st.one_of(
        st.tuples(st.just("open"), order_ids, sides, prices, sizes),
        st.tuples(st.just("change"), order_ids, sizes, st.one_of(st.none(), prices)),
        st.tuples(st.just("done"), order_ids),
    ),
    max_size=80,
)
queries = st.tuples(sides, prices, st.sampled_from(VOLUME_OPS))


def model_top(levels: dict[Decimal, Decimal], side: str, depth: int) -> list[tuple[Decimal, Decimal]]:
    ranked = sorted(levels.items(), reverse=side == BID)
    return ranked[:depth]


def model_volume(levels: dict[Decimal, Decimal], price: Decimal, op: str) -> Decimal:
    keep = {EQ: price.__eq__, LTE: price.__ge__, GTE: price.__le__}[op]
    return sum((size for p, size in levels.items() if keep(p)), ZERO)


def model_l2(ops: list, max_depth: int | None) -> dict[str, dict[Decimal, Decimal]]:
    """The book from scratch: plain dicts, sorted whenever the depth limit needs it."""
    book: dict[str, dict[Decimal, Decimal]] = {BID: {}, ASK: {}}

    def set_level(side: str, price: Decimal, size: Decimal) -> None:
        levels = book[side]
        if not size:
            levels.pop(price, None)
            return
        levels[price] = size
        if max_depth is not None and len(levels) > max_depth:
            worst = min(levels) if side == BID else max(levels)
            del levels[worst]

    for kind, op in ops:
        if kind == "snapshot":
            book = {BID: {}, ASK: {}}
            for level in op:
                set_level(*level)
        else:
            set_level(*op)
    return book


def replay_l2(ops: list, max_depth: int | None) -> L2Book:
    book = L2Book(max_depth)
    for kind, op in ops:
        if kind == "snapshot":
            book.snapshot(op)
        else:
            book.update(*op)
    return book


def assert_same_book(book: Any, model: dict[str, dict[Decimal, Decimal]], query: tuple) -> None:
    for depth in DEPTHS:
        assert book.top(depth) == {side: model_top(model[side], side, depth) for side in SIDES}
    side, price, op = query
    assert book.volume(side, price, op) == model_volume(model[side], price, op)
    for op in VOLUME_OPS:
        for side in SIDES:
            assert book.volume(side, price, op) == model_volume(model[side], price, op)


@settings(max_examples=MAX_EXAMPLES)
@given(l2_ops, queries, st.one_of(st.none(), st.integers(1, 5)))
@example([("update", (BID, Decimal("1.10"), Decimal(2))), ("update", (BID, Decimal("1.1"), Decimal("0.00")))],
         (BID, Decimal("1.1"), EQ), None)
def test_l2_book_equals_brute_force_replay(ops: list, query: tuple, max_depth: int | None) -> None:
    book = replay_l2(ops, max_depth)
    model = model_l2(ops, max_depth)
    assert_same_book(book, model, query)
    assert book.bids.prices == sorted(book.bids.levels) and book.asks.prices == sorted(book.asks.levels)


def model_l3(ops: list) -> tuple[dict[str, tuple[str, Decimal, Decimal]], int]:
    """Orders from scratch (same rules as ``L3Book``: size 0 leaves the book; unknown ids are counted)."""
    orders: dict[str, tuple[str, Decimal, Decimal]] = {}
    unknown = 0
    for op in ops:
        kind, order_id = op[0], op[1]
        if kind == "open":
            _, _, side, price, size = op
            orders.pop(order_id, None)
            if size:
                orders[order_id] = (side, price, size)
        elif order_id not in orders:
            unknown += 1
        elif kind == "done":
            del orders[order_id]
        else:
            _, _, size, price = op
            side, old_price, _ = orders.pop(order_id)
            if size:
                orders[order_id] = (side, old_price if price is None else price, size)
    return orders, unknown


def replay_l3(ops: list) -> L3Book:
    book = L3Book()
    for op in ops:
        getattr(book, op[0])(*op[1:])
    return book


@settings(max_examples=MAX_EXAMPLES)
@given(l3_ops, queries)
def test_l3_book_equals_brute_force_replay(ops: list, query: tuple) -> None:
    book = replay_l3(ops)
    orders, unknown = model_l3(ops)
    levels: dict[str, dict[Decimal, Decimal]] = {BID: {}, ASK: {}}
    for side, price, size in orders.values():
        levels[side][price] = levels[side].get(price, ZERO) + size
    assert_same_book(book, levels, query)
    assert {i: (o.side, o.price, o.size) for i, o in book.orders.items()} == orders
    assert book.unknown_orders == unknown
    counts = Counter((side, price) for side, price, _ in orders.values())
    assert all(book.order_count(side, price) == n for (side, price), n in counts.items())


# -- unit behaviour ------------------------------------------------------------------------


def test_l2_top_volume_and_sequence() -> None:
    book = L2Book()
    book.snapshot([(BID, Decimal("99.5"), Decimal(1)), (BID, Decimal(100), Decimal(2)),
                   (ASK, Decimal(101), Decimal(3)), (ASK, Decimal("100.5"), Decimal(4))], sequence=7)
    book.update(BID, Decimal("99.5"), Decimal(0), sequence=8)
    assert book.top(5) == {BID: [(Decimal(100), Decimal(2))], ASK: [(Decimal("100.5"), 4), (Decimal(101), 3)]}
    assert book.sequence == 8
    assert book.volume(ASK, Decimal(101), LTE) == 7
    assert book.volume(ASK, Decimal("100.7"), GTE) == 3
    assert book.volume(BID, Decimal("99.5"), EQ) == 0
    assert book.bids.best() == (Decimal(100), Decimal(2)) and L2Book().asks.best() is None
    with pytest.raises(ValueError, match="side must be"):
        book.volume("buy", Decimal(1), EQ)
    with pytest.raises(ValueError, match="op must be"):
        book.volume(BID, Decimal(1), "lt")


def test_l2_depth_limit_drops_the_worst_level() -> None:
    """Kraken sends no removal for a level pushed beyond the subscribed depth: the book drops it."""
    book = L2Book(max_depth=2)
    for price in ("10", "11", "9"):
        book.update(BID, Decimal(price), Decimal(1))
    book.update(ASK, Decimal(20), Decimal(1))
    book.update(ASK, Decimal(21), Decimal(1))
    book.update(ASK, Decimal(22), Decimal(1))
    assert book.top(5) == {BID: [(Decimal(11), 1), (Decimal(10), 1)], ASK: [(Decimal(20), 1), (Decimal(21), 1)]}


def test_l3_sums_stay_exact_beyond_28_digits() -> None:
    """Avro decimals have 38 digits; the default Decimal context (28) would round their sums."""
    book = L3Book()
    big = Decimal("12345678901234567890.123456789012345678")
    book.open("a", BID, Decimal(1), big)
    book.open("b", BID, Decimal(1), Decimal("0.000000000000000001"))
    assert book.volume(BID, Decimal(1), EQ) == Decimal("12345678901234567890.123456789012345679")
    book.change("b", Decimal("0.000000000000000002"))
    assert book.top(1)[BID] == [(Decimal(1), Decimal("12345678901234567890.123456789012345680"))]


def test_l3_order_lookup_and_moves() -> None:
    book = L3Book()
    book.open("a", ASK, Decimal(10), Decimal(1))
    book.change("a", Decimal(3), Decimal(11))
    order = book.order("a")
    assert (order.side, order.price, order.size) == (ASK, Decimal(11), Decimal(3))
    assert book.top(2)[ASK] == [(Decimal(11), Decimal(3))]
    book.done("a")
    book.done("a")
    assert book.order("a") is None and book.unknown_orders == 1


def lob(
    side: str, price: str, size: str, sequence: int | None, atom: int, snapshot: bool = False, prev: int | None = None
) -> dict:
    return {"side": side, "price": Decimal(price), "size": Decimal(size), "is_snapshot": snapshot,
            "sequence": sequence, "prev_sequence": prev, "atom_timestamp": atom}


def test_l2_feed_snapshot_then_stale_diffs_like_binance() -> None:
    """A REST snapshot (lastUpdateId 100) after diffs: it replaces them; diffs with u <= 100 are stale."""
    feed = L2Feed()
    feed.apply(lob(BID, "1", "5", 90, atom=1))
    for record in (lob(BID, "2", "1", 100, atom=2, snapshot=True), lob(ASK, "3", "1", 100, atom=2, snapshot=True)):
        feed.apply(record)
    assert not feed.apply(lob(BID, "2", "9", 100, atom=3))
    assert not feed.apply(lob(BID, "2", "9", 99, atom=4))
    assert feed.apply(lob(BID, "2", "4", 101, atom=5))
    assert feed.apply(lob(ASK, "3", "0", 101, atom=5))
    assert feed.book.top(5) == {BID: [(Decimal(2), Decimal(4))], ASK: []}
    assert (feed.snapshots, feed.dropped, feed.book.sequence, feed.in_sync) == (1, 2, 101, True)


def test_l2_feed_gap_by_prev_sequence_leaves_the_book_out_of_sync_until_a_snapshot() -> None:
    feed = L2Feed()
    feed.apply(lob(BID, "2", "1", 100, atom=1, snapshot=True))
    assert feed.apply(lob(BID, "2", "2", 105, atom=2, prev=100))
    assert feed.in_sync
    # Applied (a consumer of the topic does the same), but the book is no longer trusted.
    assert feed.apply(lob(BID, "2", "3", 110, atom=3, prev=107))
    assert not feed.in_sync and feed.continuity.counts["gaps"] == 1
    feed.apply(lob(ASK, "4", "1", 200, atom=4, snapshot=True))
    assert feed.in_sync and feed.book.top(5) == {BID: [], ASK: [(Decimal(4), Decimal(1))]}


def test_l2_feed_records_of_one_message_are_checked_once() -> None:
    feed = L2Feed()
    feed.apply(lob(BID, "2", "1", 100, atom=1, snapshot=True))
    assert feed.apply(lob(BID, "2", "2", 101, atom=2, prev=100))
    assert feed.apply(lob(ASK, "3", "2", 101, atom=2, prev=100))
    # The same message again (another frame): a repeat, dropped whole.
    assert not feed.apply(lob(BID, "2", "2", 101, atom=3, prev=100))
    assert not feed.apply(lob(ASK, "3", "2", 101, atom=3, prev=100))
    assert (feed.applied, feed.dropped, feed.continuity.counts["duplicates"]) == (3, 2, 1)


def test_l2_feed_back_to_back_snapshots_replace_each_other() -> None:
    """HTX depth.step0: every message is a whole book; a new frame is a new snapshot."""
    feed = L2Feed()
    feed.apply(lob(BID, "1", "1", 10, atom=1, snapshot=True))
    feed.apply(lob(BID, "2", "1", 10, atom=1, snapshot=True))
    feed.apply(lob(BID, "3", "1", 11, atom=2, snapshot=True))
    assert feed.book.top(5)[BID] == [(Decimal(3), Decimal(1))]
    assert feed.snapshots == 2


def test_l3_feed_applies_events_and_drops_stale() -> None:
    feed = L3Feed()
    base = {"side": BID, "price": Decimal(5), "size": Decimal(2), "atom_timestamp": 1}
    assert feed.apply({**base, "event_type": "open", "order_id": "x", "sequence": 3})
    assert not feed.apply({**base, "event_type": "done", "order_id": "x", "sequence": 2})
    assert feed.apply({**base, "event_type": "change", "order_id": "x", "size": Decimal(1), "price": None,
                       "sequence": 9})
    assert feed.book.top(1)[BID] == [(Decimal(5), Decimal(1))]
    assert (feed.book.sequence, feed.dropped, feed.continuity.counts["out_of_order"]) == (9, 1, 1)
    with pytest.raises(ValueError, match="event_type"):
        feed.apply({**base, "event_type": "match", "order_id": "x", "sequence": 10})


def test_l3_feed_snapshot_replaces_the_book() -> None:
    feed = L3Feed()
    order = {"side": BID, "price": Decimal(5), "size": Decimal(2), "event_type": "open", "prev_sequence": None}
    feed.apply({**order, "order_id": "old", "sequence": 1, "atom_timestamp": 1})
    for order_id in ("a", "b"):
        feed.apply({**order, "order_id": order_id, "sequence": 50, "atom_timestamp": 2, "is_snapshot": True})
    assert sorted(feed.book.orders) == ["a", "b"] and feed.in_sync
    assert not feed.apply({**order, "order_id": "c", "sequence": 50, "atom_timestamp": 3})
    assert feed.apply({**order, "order_id": "c", "sequence": 52, "atom_timestamp": 4, "prev_sequence": 50})
    assert feed.book.volume(BID, Decimal(5), EQ) == Decimal(6)
