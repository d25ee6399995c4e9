"""Sequence faults a simulator injects into a product's numbered messages, on demand (pure).

Real feeds lose, repeat and reorder messages (a dropped packet before a
reconnect, a retransmission, two paths): the pipeline must notice each and
repair the book.  A fault is armed for one product and hits that product's
next numbered message:

- ``gap``: it is never sent;
- ``duplicate``: it is sent twice in a row;
- ``reorder``: it is held back and sent right after the product's following message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

GAP = "gap"
DUPLICATE = "duplicate"
REORDER = "reorder"
BOOK_FAULT_KINDS = (GAP, DUPLICATE, REORDER)


class SequenceFaults:
    """Faults armed per product, applied to the flow's messages as they go out."""

    def __init__(self, numbered: Callable[[dict], bool]):
        """``numbered`` says whether a message takes part in its product's sequence (and so can be hit)."""
        self._numbered = numbered
        self._armed: dict[str, list[str]] = {}
        self._held: dict[str, dict] = {}
        self.applied: Counter[str] = Counter()

    def arm(self, kind: str, product_id: str) -> None:
        if kind not in BOOK_FAULT_KINDS:
            raise ValueError(f"unknown book fault {kind!r}; known: {', '.join(BOOK_FAULT_KINDS)}")
        self._armed.setdefault(product_id, []).append(kind)

    def apply(self, messages: list[dict]) -> list[dict]:
        """The messages to send instead of ``messages`` (the same list when nothing is armed or held)."""
        if not self._armed and not self._held:
            return messages
        out: list[dict] = []
        for message in messages:
            product_id = message.get("product_id")
            if not self._numbered(message) or product_id is None:
                out.append(message)
                continue
            held = self._held.pop(product_id, None)
            kinds = self._armed.get(product_id)
            kind = kinds.pop(0) if kinds else None
            if kinds == []:
                del self._armed[product_id]
            if kind == GAP:
                self.applied[GAP] += 1
            elif kind == DUPLICATE:
                out += (message, message)
                self.applied[DUPLICATE] += 1
            elif kind == REORDER:
                self._held[product_id] = message
                self.applied[REORDER] += 1
            else:
                out.append(message)
            if held is not None:
                out.append(held)
        return out
