"""Exchange book checksums (pure): proof that a rebuilt book equals the exchange's.

Both checksums hash the exchange's price and size *strings*, so the digits
matter, not only the values: ``0.10`` and ``0.1`` hash differently.  The
standardisers keep the exchange's strings as ``Decimal`` values, which keep
their trailing zeros (``Decimal("0.10")``), so a book built from a
standardiser's records hashes correctly as it is.  After an Avro round trip
every number has 18 decimal places; pass the pair's precision (Kraken's
``pair_decimals`` / ``lot_decimals`` from REST AssetPairs) to format it back.
Kraken's API v2 sends JSON numbers, which drop trailing zeros: it also needs
the precision (from its ``instrument`` channel).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Protocol
from zlib import crc32

from l3_atom.books.engine import BookSide

try:  # the C text of a side's best levels (setup.py builds it); KrakenLevelTexts._text is its reference
    from l3_atom.books import _top_text_c
except ImportError:
    _top_text_c = None

Level = tuple[Decimal, Decimal]


class SideLevels(Protocol):
    """One side of a book as :meth:`KrakenLevelTexts.checksum_of` reads it (``engine.BookSide``)."""

    changes: int

    def top(self, depth: int) -> list[Level]: ...

KRAKEN_DEPTH = 10
OKX_DEPTH = 25
OKX_SEPARATOR = ":"
SIGN_BIT = 1 << 31
UINT32 = 1 << 32


def _plain(value: Decimal, places: int | None) -> str:
    """The exchange's string: as the Decimal was written, or with ``places`` decimals (never exponents)."""
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places))
    return format(value, "f")


def _digits(value: Decimal, places: int | None) -> str:
    """Kraken's form: the decimal string without its point and leading zeros (``0.0500`` -> ``500``)."""
    return _plain(value, places).replace(".", "").lstrip("0")


def kraken_checksum_text(
    asks: Sequence[Level], bids: Sequence[Level], price_places: int | None = None, size_places: int | None = None
) -> str:
    """The string Kraken hashes: top 10 asks (best first), then top 10 bids (best first).

    Each level is its price then its size, each without the decimal point and leading zeros
    (docs.kraken.com, "Book checksum", websockets v1 and v2).
    """
    return "".join(
        _digits(price, price_places) + _digits(size, size_places)
        for levels in (asks, bids)
        for price, size in levels[:KRAKEN_DEPTH]
    )


def kraken_checksum(
    asks: Sequence[Level], bids: Sequence[Level], price_places: int | None = None, size_places: int | None = None
) -> int:
    """Kraken spot's book CRC32, unsigned, as its ``checksum`` / ``c`` field."""
    return crc32(kraken_checksum_text(asks, bids, price_places, size_places).encode())


class KrakenLevelTexts:
    """Kraken's checksum over a book, with each level's text kept from one check to the next.

    A book check hashes its top 10 levels per side, but a message changes only a few: a level's
    text is made again only when its price or size *object* changed (a new record's Decimal),
    never from an equal value that may be written differently (``0.10`` vs ``0.1``).  Given the
    book's sides (:meth:`checksum_of`), a side's whole text is kept until the side changes at all:
    most updates touch one side.
    """

    __slots__ = ("places", "sides", "texts")

    # Texts kept before they are all dropped (the levels ever hashed, not only the current top).
    LIMIT = 4096

    def __init__(self, price_places: int | None = None, size_places: int | None = None):
        self.places = price_places, size_places
        self.texts: dict[Decimal, tuple[Decimal, Decimal, str]] = {}
        # Per side (asks, bids): the side object, its change count and its text when last hashed.
        self.sides: list[tuple[SideLevels, int, str] | None] = [None, None]

    def checksum(self, asks: Sequence[Level], bids: Sequence[Level]) -> int:
        """:func:`kraken_checksum` of the same levels with this object's places."""
        return crc32((self._text(asks) + self._text(bids)).encode())

    def checksum_of(self, asks: SideLevels, bids: SideLevels) -> int:
        """:meth:`checksum` of two book sides' top levels, a side's text made again only when it changed."""
        sides = self.sides
        parts = []
        for index, side in enumerate((asks, bids)):
            held = sides[index]
            if held is None or held[0] is not side or held[1] != side.changes:
                held = sides[index] = (side, side.changes, self._top_text(side))
            parts.append(held[2])
        return crc32("".join(parts).encode())

    def _top_text(self, side: SideLevels) -> str:
        """``_text(side.top(KRAKEN_DEPTH))``: in C where built (``_top_text_c``), for a side laid out as
        ``engine.BookSide`` is."""
        if _top_text_c is None or type(side) is not BookSide:
            return self._text(side.top(KRAKEN_DEPTH))
        return _top_text_c.top_text(side, KRAKEN_DEPTH, self._kept_texts(), self._level_text)

    def _kept_texts(self) -> dict[Decimal, tuple[Decimal, Decimal, str]]:
        """The level texts kept so far, dropped first when there are more than ``LIMIT``."""
        if len(self.texts) > self.LIMIT:
            self.texts.clear()
        return self.texts

    def _text(self, levels: Sequence[Level]) -> str:
        """One side's part of the hashed string: its top 10 levels' digits, best first."""
        texts = self._kept_texts()
        parts = []
        for price, size in levels[:KRAKEN_DEPTH]:
            held = texts.get(price)
            if held is None or held[0] is not price or held[1] is not size:
                held = texts[price] = (price, size, self._level_text(price, size))
            parts.append(held[2])
        return "".join(parts)

    def _level_text(self, price: Decimal, size: Decimal) -> str:
        """One level's part: its price's digits, then its size's."""
        price_places, size_places = self.places
        return _digits(price, price_places) + _digits(size, size_places)


def okx_checksum_text(
    bids: Sequence[Level], asks: Sequence[Level], price_places: int | None = None, size_places: int | None = None
) -> str:
    """``bidPx:bidSz:askPx:askSz:...`` over the top 25 levels per side, best first, alternating.

    When one side has fewer levels, the other's remaining levels follow alone (OKX API v5,
    "Checksum" of the order book channels).
    """
    bids, asks = bids[:OKX_DEPTH], asks[:OKX_DEPTH]
    parts = []
    for index in range(max(len(bids), len(asks))):
        for levels in (bids, asks):
            if index < len(levels):
                price, size = levels[index]
                parts += (_plain(price, price_places), _plain(size, size_places))
    return OKX_SEPARATOR.join(parts)


def okx_checksum(
    bids: Sequence[Level], asks: Sequence[Level], price_places: int | None = None, size_places: int | None = None
) -> int:
    """OKX's book CRC32 as OKX sends it: a signed 32-bit integer."""
    value = crc32(okx_checksum_text(bids, asks, price_places, size_places).encode())
    return value - UINT32 if value & SIGN_BIT else value
