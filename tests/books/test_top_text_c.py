"""``_top_text_c.top_text`` makes the text ``KrakenLevelTexts._text(side.top(depth))`` makes, and keeps the same texts.

The Python method is the reference.  These tests run where the extension is built (``pip install -r
requirements.txt`` compiles it) and are skipped, with the reason shown, where it is not.
"""

from __future__ import annotations

import os
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l3_atom.books import checksums
from l3_atom.books.checksums import KRAKEN_DEPTH, KrakenLevelTexts
from l3_atom.books.engine import BookSide
from tests.compiled import compiled

_top_text_c, needs_c = compiled("l3_atom.books._top_text_c", "the C text of Kraken's checksum")

# Prices and sizes written in the forms Kraken sends (trailing zeros kept), and a few others.
NUMBERS = st.builds(
    lambda digits, exponent: Decimal(digits).scaleb(-exponent), st.integers(0, 10**12), st.integers(0, 10)
)
CHANGES = st.lists(st.tuples(st.booleans(), NUMBERS, NUMBERS | st.just(Decimal(0))), max_size=60)


def both(texts: KrakenLevelTexts, side: BookSide, depth: int = KRAKEN_DEPTH) -> tuple[str, str]:
    """(the C text, the reference text) of ``side``, each from its own copy of the kept texts."""
    reference = KrakenLevelTexts(*texts.places)
    reference.texts = dict(texts.texts)
    made = _top_text_c.top_text(side, depth, texts.texts, texts._level_text)
    return made, reference._text(side.top(depth))


@needs_c
@settings(max_examples=200, deadline=None)
@given(changes=CHANGES, descending=st.booleans(), depth=st.integers(-1, KRAKEN_DEPTH), places=st.sampled_from([(None, None),
                                                                                                      (5, 8)]))
def test_the_same_text_as_the_reference_after_every_change(
    changes: list[tuple[bool, Decimal, Decimal]], descending: bool, depth: int, places: tuple
) -> None:
    side, texts = BookSide(descending), KrakenLevelTexts(*places)
    for _, price, size in changes:
        side.set(price, size)
        made, reference = both(texts, side, depth)
        assert made == reference


@needs_c
def test_a_kept_text_is_used_only_for_the_very_same_price_and_size() -> None:
    side, texts = BookSide(True), KrakenLevelTexts()
    side.set(Decimal("0.1"), Decimal(2))
    assert _top_text_c.top_text(side, KRAKEN_DEPTH, texts.texts, texts._level_text) == "12"
    side.set(Decimal("0.1"), Decimal("2.0"))  # equal to the size before, written differently
    assert _top_text_c.top_text(side, KRAKEN_DEPTH, texts.texts, texts._level_text) == "120"
    held = texts.texts[Decimal("0.1")]
    assert held[1] is side.levels[Decimal("0.1")], "the new size's text is the one kept"
    calls = []
    assert _top_text_c.top_text(side, KRAKEN_DEPTH, texts.texts, lambda *level: calls.append(level)) == "120"
    assert calls == [], "nothing changed: the kept text is used"


@needs_c
def test_failures_are_the_callers_own() -> None:
    side, texts = BookSide(False), KrakenLevelTexts()
    side.set(Decimal(1), Decimal(1))
    with pytest.raises(ZeroDivisionError):
        _top_text_c.top_text(side, KRAKEN_DEPTH, {}, lambda price, size: 1 / 0)
    side.prices.append(Decimal(2))  # a price without a level: the reference's KeyError
    with pytest.raises(KeyError):
        _top_text_c.top_text(side, KRAKEN_DEPTH, texts.texts, texts._level_text)
    with pytest.raises(TypeError, match="texts must be a dict"):
        _top_text_c.top_text(side, KRAKEN_DEPTH, [], texts._level_text)


def test_checksums_of_a_side_other_than_a_book_side_take_the_reference() -> None:
    class Levels:
        changes = 0

        def top(self, depth: int) -> list[tuple[Decimal, Decimal]]:
            return [(Decimal("1.5"), Decimal("0.20"))][:depth]

    texts = KrakenLevelTexts()
    assert texts.checksum_of(Levels(), Levels()) == texts.checksum(Levels().top(10), Levels().top(10))


def test_ci_builds_the_top_text() -> None:
    """On CI (``CI`` set) ``pip install -r requirements.txt`` must have compiled the extension."""
    if not os.environ.get("CI"):
        pytest.skip("CI is not set: a machine without a C compiler may run the Python reference alone")
    assert _top_text_c is not None, "pip install -r requirements.txt did not build _top_text_c"


def test_checksums_are_the_same_with_or_without_c(monkeypatch: pytest.MonkeyPatch) -> None:
    """KrakenLevelTexts.checksum_of over the same book, with the C text (where built) and the reference alone."""
    asks, bids = BookSide(False), BookSide(True)
    for step in range(1, 16):
        asks.set(Decimal(100 + step), Decimal(step).scaleb(-step % 3))
        bids.set(Decimal(100 - step), Decimal(step))
    built = KrakenLevelTexts().checksum_of(asks, bids)
    monkeypatch.setattr(checksums, "_top_text_c", None)
    assert KrakenLevelTexts().checksum_of(asks, bids) == built
