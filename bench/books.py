"""Book engine throughput on one core: normalised records applied to L2 and L3 books (``l3_atom.books``)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

from l3_atom.books.engine import ASK, BID, L2Feed, L3Feed
from l3_atom.sim.orderflow import OrderFlow
from l3_atom.sources import standardiser_class
from l3_atom.topics import LOB_L3

SECTION = "book engine, one core"
ATOM = 1_700_000_000_000_000
SEED = 4
L2_UPDATES = 200_000
L3_MESSAGES = 200_000
# A synthetic L2 stream: levels within this many ticks of the mid, most updates resize a level.
L2_TICKS = 1000
TICK = Decimal("0.01")
MID = Decimal("30000.00")
REMOVE_SHARE = 0.2
QUERY_DEPTH = 10
QUERIES = 50_000


def l2_records(count: int) -> list[dict[str, Any]]:
    """Seeded level updates (one per message, sequence + 1) on a book of up to ~2x``L2_TICKS`` levels."""
    rng = random.Random(SEED)
    records = []
    for sequence in range(count):
        side = BID if rng.random() < 0.5 else ASK
        ticks = int(rng.expovariate(1 / (L2_TICKS / 4))) % L2_TICKS + 1
        price = MID - ticks * TICK if side == BID else MID + ticks * TICK
        size = Decimal(0) if rng.random() < REMOVE_SHARE else Decimal(rng.randint(1, 10**8)).scaleb(-8)
        records.append({"side": side, "price": price, "size": size, "is_snapshot": False, "sequence": sequence,
                        "prev_sequence": sequence - 1, "atom_timestamp": ATOM + sequence})
    return records


def l3_records(messages: int) -> list[dict[str, Any]]:
    """lob_l3 records the Coinbase standardiser makes of the simulator's seeded full-channel flow."""
    std = standardiser_class("coinbase")()
    return [
        out.record
        for message in OrderFlow(seed=1).take(messages, ATOM)
        for out in std.standardise(orjson.dumps(message), ATOM)
        if out.topic == LOB_L3
    ]


def rate(count: int, work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return count / (time.perf_counter() - started)


def measure(add: Callable, repeat: Callable, repeats: int) -> None:
    l2 = l2_records(L2_UPDATES)
    l3 = l3_records(L3_MESSAGES)

    def apply_l2() -> L2Feed:
        feed = L2Feed()
        for record in l2:
            feed.apply(record)
        return feed

    def apply_l3() -> L3Feed:
        feed = L3Feed()
        for record in l3:
            feed.apply(record)
        return feed

    l2_book = apply_l2().book
    l3_book = apply_l3().book

    def query() -> None:
        for _ in range(QUERIES):
            l2_book.top(QUERY_DEPTH)

    l2_rates = repeat(repeats, lambda: rate(len(l2), apply_l2))
    add(SECTION, "L2 updates (lob records, sequence checked)", "updates/s", l2_rates,
        f"synthetic, {len(l2_book.bids) + len(l2_book.asks)} levels at the end")
    add(SECTION, "L3 events (Coinbase lob_l3 records)", "updates/s", repeat(repeats, lambda: rate(len(l3), apply_l3)),
        f"simulator flow, {len(l3_book.orders)} resting orders at the end")
    add(SECTION, f"L2 top-{QUERY_DEPTH} query", "queries/s", repeat(repeats, lambda: rate(QUERIES, query)))
