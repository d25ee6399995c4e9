"""A dict that works out a missing value once and keeps it, up to a bound.

Why: the connector's per-frame path looks up values that depend only on a few
keys (a raw key's symbol, a connection's encoded headers).  A hit is a plain
dict lookup; a source that keeps inventing keys cannot grow it past ``limit``
(past that, values are worked out each time).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedMemo(dict[K, V], Generic[K, V]):
    """``memo[key]`` is ``compute(key)``, computed on first use and kept while fewer than ``limit`` are."""

    def __init__(self, compute: Callable[[K], V], limit: int):
        super().__init__()
        self._compute = compute
        self._limit = limit

    def __missing__(self, key: K) -> V:
        value = self._compute(key)
        if len(self) < self._limit:
            self[key] = value
        return value
