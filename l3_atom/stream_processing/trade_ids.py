"""Trade ids already published, per symbol: each trade once, whether streamed or backfilled (pure).

After an outage the connector archives the venue's trade history of the gap, which
overlaps what was streamed on both sides of it; and the stream may still bring, after
the backfill, a trade the history already held.  A standardiser asks :meth:`PublishedIds.add`
before publishing a trade.  Ids are kept as merged ranges: a venue's ids mostly count up
one by one, so a symbol needs a handful of ranges, not one entry per trade.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from typing import TypeVar

# Ranges kept per symbol; past this the oldest are forgotten (a trade that old is not re-sent).
MAX_RANGES = 4096
T = TypeVar("T")


class PublishedIds:
    """Per symbol, the integer trade ids published so far, as sorted, disjoint ``[low, high]`` ranges."""

    def __init__(self, max_ranges: int = MAX_RANGES):
        self.max_ranges = max_ranges
        self._lows: dict[str, list[int]] = {}
        self._highs: dict[str, list[int]] = {}

    def add(self, symbol: str, trade_id: int) -> bool:
        """Record ``trade_id``; False when it was published already."""
        lows = self._lows.get(symbol)
        if lows is None:
            self._lows[symbol], self._highs[symbol] = [trade_id], [trade_id]
            return True
        highs = self._highs[symbol]
        last = highs[-1]
        if trade_id == last + 1:  # the stream's usual next trade
            highs[-1] = trade_id
            return True
        if trade_id > last:
            lows.append(trade_id)
            highs.append(trade_id)
            self._bound(lows, highs)
            return True
        index = bisect.bisect_right(lows, trade_id) - 1
        if index >= 0 and trade_id <= highs[index]:
            return False
        joins_left = index >= 0 and highs[index] == trade_id - 1
        joins_right = index + 1 < len(lows) and lows[index + 1] == trade_id + 1
        if joins_left and joins_right:
            highs[index] = highs.pop(index + 1)
            del lows[index + 1]
        elif joins_left:
            highs[index] = trade_id
        elif joins_right:
            lows[index + 1] = trade_id
        else:
            lows.insert(index + 1, trade_id)
            highs.insert(index + 1, trade_id)
            self._bound(lows, highs)
        return True

    def ranges(self, symbol: str) -> list[tuple[int, int]]:
        return list(zip(self._lows.get(symbol, ()), self._highs.get(symbol, ()), strict=True))

    def _bound(self, lows: list[int], highs: list[int]) -> None:
        if len(lows) > self.max_ranges:
            del lows[0], highs[0]


def unpublished(published: PublishedIds, symbol: str, trades: Iterable[tuple[int, T]], skipped: Counter[str],
                reason: str) -> list[T]:
    """Of ``(trade id, item)`` pairs (a backfilled page), the items not yet published, in id order.

    Each returned id is recorded as published; what the page repeats of the stream (or of an
    earlier page) is left out, never published twice, and counted in ``skipped`` under ``reason``.
    """
    fresh: list[T] = []
    for trade_id, item in sorted(trades, key=lambda pair: pair[0]):
        if published.add(symbol, trade_id):
            fresh.append(item)
        else:
            skipped[reason] += 1
    return fresh
