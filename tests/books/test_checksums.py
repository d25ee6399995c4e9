"""Exchange checksums against real traffic: a book rebuilt from our ``lob`` records hashes as the exchange's.

Kraken's 2021 recording (API v1, depth 1000) is replayed through ``KrakenStandardiser``; each
symbol's book is rebuilt from the ``lob`` records alone, and after every frame that carried a
checksum (read from ``book_checksums``, cleared before each frame) the rebuilt top 10 must hash
to it.  The standardiser proves the same checksums on its own books (``book_checks``): both
proofs must count the same checksums, with no mismatch and no resync request.  From the standardiser's Decimals, which keep the exchange's strings (trailing zeros
included), every checksum matches.  After an Avro round trip (18 decimal places) the strings
must be formatted back with the pair's precision *on the websocket*: the recording shows that v1
sends more decimals than REST AssetPairs' ``pair_decimals`` (XMR/USD: 8 on the wire, 2 in
AssetPairs; only OMG/USD agrees), so AssetPairs is not the source for v1 (for v2 it is the
``instrument`` channel's precision).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from l3_atom.avro.codecs import AvroEncoder, decode_wire, parsed_schema
from l3_atom.books.checksums import (
    KrakenLevelTexts,
    kraken_checksum,
    kraken_checksum_text,
    okx_checksum,
    okx_checksum_text,
)
from l3_atom.books.engine import SUBSCRIBED_DEPTHS, L2Book, L2Feed
from l3_atom.off_chain.kraken import Kraken
from l3_atom.stream_processing.standardisers.kraken import KrakenStandardiser
from l3_atom.topics import BOOK_RESYNC, LOB
from tests.exchanges.doc_fixtures import ws_frames as doc_frames
from tests.exchanges.test_kraken import SETTINGS, NullSink
from tests.recorded import http_bodies, ws_frames

KRAKEN_DEPTH = SUBSCRIBED_DEPTHS["kraken"]
# Receive times one µs apart: records of one frame share theirs, as in the pipeline.
FIRST_ATOM = 1_618_678_000_000_000
V2_FIXTURE = Path(__file__).parent.parent / "fixtures" / "kraken"
# MATIC/USD on Kraken: prices with 4 decimals, sizes with 8 (AssetPairs pair_decimals / lot_decimals).
MATIC_PLACES = (4, 8)
SCHEMA_ID = 1
# At least this many checksummed frames in the 30 s recording.
MIN_KRAKEN_CHECKSUMS = 4000

Places = dict[str, tuple[int, int]]
Transform = Callable[[dict[str, Any]], dict[str, Any]]


def replay_kraken(
    frames: Iterator[bytes], depth: int, transform: Transform, places: Places, std: KrakenStandardiser | None = None
) -> tuple[int, list]:
    """(checksums verified, mismatches as (frame index, symbol, expected, computed))."""
    std = std or KrakenStandardiser()
    keys = Kraken([], NullSink(), SETTINGS)
    feeds: dict[str, L2Feed] = {}
    verified, mismatches = 0, []
    for index, raw in enumerate(frames):
        std.book_checksums.clear()
        for out in std.standardise(raw, FIRST_ATOM + index, keys.frame_key(raw)):
            assert out.topic != BOOK_RESYNC, out.record
            if out.topic == LOB:
                record = transform(out.record)
                feed = feeds.setdefault(record["symbol"], L2Feed(depth))
                feed.apply(record)
        for symbol, expected in std.book_checksums.items():
            book = feeds[symbol].book
            price_places, size_places = places.get(symbol, (None, None))
            computed = kraken_checksum(book.asks.top(10), book.bids.top(10), price_places, size_places)
            if computed == expected:
                verified += 1
            else:
                mismatches.append((index, symbol, expected, computed))
    return verified, mismatches


def avro_round_trip() -> Transform:
    encoder = AvroEncoder(LOB, SCHEMA_ID)
    schemas = {SCHEMA_ID: parsed_schema(LOB)}
    return lambda record: decode_wire(encoder.encode(record), schemas)


def kraken_places(recordings: Path) -> Places:
    """Normalised symbol -> (price decimals, size decimals), from the recorded AssetPairs body."""
    body = next(b for url, b in http_bodies(recordings / "kraken").items() if url.endswith("/AssetPairs"))
    std = KrakenStandardiser()
    return {
        std.convert_symbol(pair["wsname"]): (pair["pair_decimals"], pair["lot_decimals"])
        for pair in orjson.loads(body)["result"].values()
        if "wsname" in pair and "." not in pair["wsname"]
    }


def test_kraken_recording_checksums_from_standardised_decimals(recordings: Path) -> None:
    std = KrakenStandardiser()
    verified, mismatches = replay_kraken(ws_frames(recordings / "kraken"), KRAKEN_DEPTH, dict, {}, std)
    inside = std.book_checks.stats()
    print(f"\nkraken recording, standardiser Decimals: {verified} checksums verified, {len(mismatches)} mismatches;"
          f" inside the standardiser: {inside}")
    assert mismatches == []
    assert verified >= MIN_KRAKEN_CHECKSUMS
    # The standardiser's own proof: the same checksums, every one verified, none asked to resync.
    assert inside == {"snapshots": 10, "checksums_verified": verified}


def wire_places(recordings: Path) -> Places:
    """Normalised symbol -> (price decimals, size decimals) as the websocket writes them: one pair each."""
    std = KrakenStandardiser()
    keys = Kraken([], NullSink(), SETTINGS)
    seen: dict[str, set[tuple[int, int]]] = {}
    for raw in ws_frames(recordings / "kraken"):
        for out in std.standardise(raw, FIRST_ATOM, keys.frame_key(raw)):
            if out.topic == LOB:
                price, size = out.record["price"], out.record["size"]
                seen.setdefault(out.record["symbol"], set()).add(
                    (-price.as_tuple().exponent, -size.as_tuple().exponent))
    assert all(len(places) == 1 for places in seen.values()), seen
    return {symbol: places.pop() for symbol, places in seen.items()}


def test_kraken_recording_checksums_after_avro(recordings: Path) -> None:
    """Avro keeps 18 decimals: the exchange's digits come back from the pair's websocket precision."""
    wire = wire_places(recordings)
    rest = kraken_places(recordings)
    assert wire["XMR.USD"] == (8, 8) and rest["XMR.USD"] == (2, 8)
    assert [s for s in wire if wire[s] == rest[s]] == ["OMG.USD"]
    verified, mismatches = replay_kraken(ws_frames(recordings / "kraken"), KRAKEN_DEPTH, avro_round_trip(), wire)
    with_rest, wrong_rest = replay_kraken(ws_frames(recordings / "kraken"), KRAKEN_DEPTH, avro_round_trip(), rest)
    print(f"\nkraken recording, after Avro: websocket precision {verified} verified, {len(mismatches)} mismatches;"
          f" AssetPairs precision {with_rest} verified, {len(wrong_rest)} mismatches")
    assert mismatches == []
    assert verified >= MIN_KRAKEN_CHECKSUMS
    assert wrong_rest
    # Without any precision the 18-decimal strings hash differently.
    unformatted, wrong = replay_kraken(ws_frames(recordings / "kraken"), KRAKEN_DEPTH, avro_round_trip(), {})
    assert unformatted == 0 and len(wrong) == verified


def test_kraken_v2_documented_frames() -> None:
    """API v2 numbers lose trailing zeros (0.566 for 0.5660): the instrument's precision restores them."""
    frames = doc_frames(V2_FIXTURE)
    std = KrakenStandardiser()
    verified, mismatches = replay_kraken(frames, 10, dict, {"MATIC.USD": MATIC_PLACES}, std)
    assert (verified, mismatches) == (2, [])
    # Inside the standardiser the precision is found from the snapshot's checksum: AssetPairs' own.
    assert std.book_checks.stats() == {"snapshots": 1, "checksums_verified": 2}
    assert std.books["MATIC.USD"].places == MATIC_PLACES
    unformatted, wrong = replay_kraken(doc_frames(V2_FIXTURE), 10, dict, {})
    assert unformatted == 0 and len(wrong) == 2


def test_kraken_text_is_digits_without_point_or_leading_zeros() -> None:
    """Kraken's own example: ask 45285.2 x 0.00100000 -> ``452852100000``."""
    asks = [(Decimal("45285.2"), Decimal("0.00100000"))]
    assert kraken_checksum_text(asks, []) == "452852100000"
    bids = [(Decimal("0.05005"), Decimal("0.00000500")), (Decimal("0.05004"), Decimal("0E-8"))]
    assert kraken_checksum_text([], bids, 5, 8) == "5005500" + "5004"
    assert kraken_checksum(asks, []) == zlib.crc32(b"452852100000")


def test_kraken_uses_top_ten_levels_only() -> None:
    levels = [(Decimal(p), Decimal(1)) for p in range(1, 15)]
    assert kraken_checksum_text(levels, []) == kraken_checksum_text(levels[:10], [])


def test_kraken_kept_texts_hash_as_the_levels_do_now() -> None:
    """A kept text is used again only for the same price and size objects: an equal value written
    differently (``0.10`` after ``0.1``), a new size at the same price, or other places hash anew."""
    texts, places = KrakenLevelTexts(), KrakenLevelTexts(5, 8)
    asks = [(Decimal("45285.2"), Decimal("0.00100000")), (Decimal(45290), Decimal("1.5"))]
    bids = [(Decimal("0.1"), Decimal(2))]
    steps = [
        (asks, bids),
        (asks, bids),
        (asks, [(bids[0][0], Decimal("2.0"))]),
        (asks, [(Decimal("0.10"), Decimal("2.0"))]),
        ([(asks[0][0], Decimal("0.001"))], []),
    ]
    for step_asks, step_bids in steps:
        assert texts.checksum(step_asks, step_bids) == kraken_checksum(step_asks, step_bids)
        assert places.checksum(step_asks, step_bids) == kraken_checksum(step_asks, step_bids, 5, 8)
    levels = [(Decimal(p), Decimal(1)) for p in range(1, 15)]
    assert texts.checksum(levels, levels) == kraken_checksum(levels[:10], levels[:10])


def test_kraken_side_texts_are_kept_only_while_the_side_is_unchanged() -> None:
    """checksum_of keeps a side's text until that side changes: any change (one beyond the top 10, an
    equal value written differently, a removal, a new book) gives the checksum of the book as it is now."""
    book, texts = L2Book(), KrakenLevelTexts()

    def now() -> int:
        return kraken_checksum(book.asks.top(10), book.bids.top(10))

    for price in range(1, 16):
        book.update("ask", Decimal(100 + price), Decimal(price))
        book.update("bid", Decimal(100 - price), Decimal(price))
    steps = [
        ("bid", Decimal(99), Decimal(7)),        # one side: the asks' text is kept
        ("ask", Decimal(115), Decimal(3)),       # beyond the top 10
        ("ask", Decimal(101), Decimal("1.0")),     # equal to the size before, written differently
        ("bid", Decimal(99), Decimal(0)),          # removed
        ("ask", Decimal("100.50"), Decimal(2)),    # a new best
    ]
    assert texts.checksum_of(book.asks, book.bids) == now()
    for side, price, size in steps:
        book.update(side, price, size)
        assert texts.checksum_of(book.asks, book.bids) == now()
        assert texts.checksum_of(book.asks, book.bids) == now()
    fresh = L2Book()
    fresh.update("ask", Decimal(1), Decimal(1))
    assert texts.checksum_of(fresh.asks, fresh.bids) == kraken_checksum([(Decimal(1), Decimal(1))], [])


@pytest.mark.parametrize(
    ("bids", "asks", "text"),
    [
        # OKX's documented example: bids and asks alternate, best first.
        ([("3366.1", "7"), ("3366", "6")], [("3366.8", "9"), ("3368", "8")], "3366.1:7:3366.8:9:3366:6:3368:8"),
        # Fewer bids than asks: the remaining asks follow alone.
        ([("3366.1", "7")], [("3366.8", "9"), ("3368", "8"), ("3372", "8")], "3366.1:7:3366.8:9:3368:8:3372:8"),
        ([], [], ""),
    ],
)
def test_okx_text(bids: list, asks: list, text: str) -> None:
    def levels(pairs: list) -> list[tuple[Decimal, Decimal]]:
        return [(Decimal(p), Decimal(s)) for p, s in pairs]

    assert okx_checksum_text(levels(bids), levels(asks)) == text
    unsigned = zlib.crc32(text.encode())
    assert okx_checksum(levels(bids), levels(asks)) == (unsigned - (1 << 32) if unsigned >= 1 << 31 else unsigned)


def test_okx_is_signed_and_uses_25_levels() -> None:
    bids = [(Decimal(100 - i), Decimal(i + 1)) for i in range(30)]
    asks = [(Decimal(101 + i), Decimal(i + 1)) for i in range(30)]
    assert okx_checksum_text(bids, asks) == okx_checksum_text(bids[:25], asks[:25])
    assert okx_checksum_text(bids, asks).count(":") == 25 * 4 - 1
    checksums = {okx_checksum([(Decimal(p), Decimal(1))], []) for p in range(200)}
    assert min(checksums) < 0 <= max(checksums) < 1 << 31
    # After Avro (18 decimals) the instrument's precision (tickSz / lotSz decimals) gives OKX's strings back.
    assert okx_checksum_text([(Decimal("3366.100000000000000000"), Decimal("7.000000000000000000"))], [], 1, 0) == (
        "3366.1:7")
