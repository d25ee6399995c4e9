"""A consumer's level-3 book rebuilt from ``lob_l3`` records alone, the slow obvious way (no project code)."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

Orders = dict[str, tuple[str, Decimal, Decimal]]


class Rebuild:
    """A consumer's book from lob_l3 alone, by the schema's rules, with no project code.

    A snapshot begins with an ``is_snapshot`` record from a new message (sequence and receive
    time) and replaces the book; an event numbered at or below the book's last is dropped.
    """

    def __init__(self) -> None:
        self.orders: Orders = {}
        self.last: int | None = None
        self.message: tuple | None = None
        self.seen = 0

    def apply(self, r: dict) -> None:
        self.seen += 1
        message = (r["sequence"], r["atom_timestamp"], r["is_snapshot"])
        new_message = message != self.message
        self.message = message
        if r["is_snapshot"]:
            if new_message:
                self.orders.clear()
            self.last = r["sequence"]
        elif new_message and self.last is not None and r["sequence"] <= self.last:
            self.message = (*message, "dropped")
            return
        elif self.message[-1:] == ("dropped",):
            return
        else:
            self.last = r["sequence"]
        if r["event_type"] == "done" or r["size"] == 0:
            self.orders.pop(r["order_id"], None)
        elif r["event_type"] == "open":
            self.orders[r["order_id"]] = (r["side"], r["price"], r["size"])
        elif r["order_id"] in self.orders:
            side, price, _ = self.orders[r["order_id"]]
            self.orders[r["order_id"]] = (side, r["price"] if r["price"] is not None else price, r["size"])

    def levels(self, side: str, depth: int) -> list[list[Decimal]]:
        sizes: Counter = Counter()
        for order_side, price, size in self.orders.values():
            if order_side == side:
                sizes[price] += size
        best_first = sorted(sizes, reverse=side == "bid")[:depth]
        return [[price, sizes[price]] for price in best_first]


def rebuild(records: list[dict], count: int) -> Rebuild:
    book = Rebuild()
    for record in records[:count]:
        book.apply(record)
    return book
