"""OKX ``books`` in the shapes of other API versions (issue 15, "messages drift; the data still counts").

Before 2023 a v5 ``books`` message had no ``seqId``/``prevSeqId``: the book is verified by its CRC32
checksum alone and its records carry null sequences; trades came without ``seqId`` and candles with 7
fields (``tests/fixtures/okx/v5-first-shape``, quoted from OKX's documentation of that time, see its
README).  From August 2026 OKX delists ``checksum``
(docs-v5 changelog): the book is checked by its sequence numbers alone, records carry a null checksum.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

import orjson

from l3_atom.stream_processing.standardisers.okx import OkxStandardiser
from tests.exchanges.doc_fixtures import ws_frames
from tests.exchanges.test_okx import ATOM, OkxBook, assert_fits_schema, okx_crc, resync_requests, topics

FIRST_SHAPE = Path(__file__).parent.parent / "fixtures" / "okx" / "v5-first-shape"


def without(frame: bytes, *fields: str) -> bytes:
    """``frame`` with ``fields`` removed from each of its book messages (an older or newer shape)."""
    message = orjson.loads(frame)
    message["data"] = [{k: v for k, v in book.items() if k not in fields} for book in message["data"]]
    return orjson.dumps(message)


def test_the_documented_first_shapes_are_understood() -> None:
    std = OkxStandardiser()
    outputs = [out for raw in ws_frames(FIRST_SHAPE) for out in std.standardise(raw, ATOM)]
    for out in outputs:
        assert_fits_schema(out)
    assert Counter(out.topic for out in outputs) == {"lob": 16, "book_resync": 1, "trades": 1, "candle": 1}
    lob = [out for out in outputs if out.topic == "lob"]
    assert {(o.record["sequence"], o.record["prev_sequence"], o.record["is_snapshot"]) for o in lob} == {
        (None, None, True)
    }
    assert lob[-1].record["checksum"] == -855196043
    # The printed checksum is not the CRC32 of the 16 levels printed: found, and a resync asked for.
    assert std.book_checks.stats() == {"snapshots": 1, "checksum_mismatches": 1, "resyncs_requested": 1}
    assert dict(std.skipped) == {"subscription ack": 1}
    by_topic = {out.topic: out.record for out in outputs}
    assert (by_topic["trades"]["trade_id"], by_topic["trades"]["sequence"]) == ("130639474", None)
    candle = by_topic["candle"]
    assert (candle["symbol"], candle["volume"], candle["quote_volume"], candle["closed"]) == (
        "BTC.USD-20191227", Decimal("529.5858061"), None, False
    )


def test_books_without_seq_ids_are_verified_by_checksum_alone() -> None:
    okx, std = OkxBook(), OkxStandardiser()
    outputs = std.standardise(without(okx.snapshot(), "seqId", "prevSeqId"), ATOM)
    for bids, asks in (([["100.00", "0"]], []), ([["100.25", "4.5"]], [["101.00", "0"]]), ([], [["102.00", "7"]])):
        outputs += std.standardise(without(okx.push(bids, asks), "seqId", "prevSeqId"), ATOM)
    lob = [out.record for out in outputs if out.topic == "lob"]
    assert resync_requests(outputs) == []
    assert {(r["sequence"], r["prev_sequence"]) for r in lob} == {(None, None)}
    assert std.book_checks.stats() == {"snapshots": 1, "checksums_verified": 4}
    assert lob[-1]["checksum"] == okx_crc(okx.bids, okx.asks)


def test_a_wrong_checksum_without_seq_ids_still_asks_for_a_resync() -> None:
    okx, std = OkxBook(), OkxStandardiser()
    std.standardise(without(okx.snapshot(), "seqId", "prevSeqId"), ATOM)
    outputs = std.standardise(without(okx.push([["100.00", "2"]], [], checksum=12345), "seqId", "prevSeqId"), ATOM)
    assert topics(outputs) == ["book_resync", "lob"]
    assert resync_requests(outputs)[0][0] == "checksum"


def test_books_without_checksum_are_checked_by_sequence_alone() -> None:
    """The 2026 shape: records carry a null checksum, and a gap in seqIds still asks for a resync."""
    okx, std = OkxBook(), OkxStandardiser()
    outputs = std.standardise(without(okx.snapshot(), "checksum"), ATOM)
    outputs += std.standardise(without(okx.push([["100.00", "2"]], []), "checksum"), ATOM)
    assert resync_requests(outputs) == []
    assert {out.record["checksum"] for out in outputs} == {None}
    assert [out.record["sequence"] for out in outputs][-1] == okx.seq_id
    okx.push([["99.50", "3"]], [])  # never delivered
    gap = std.standardise(without(okx.push([["99.00", "1"]], []), "checksum"), ATOM)
    detail = f"expected an update after {okx.seq_id - 2}, got {okx.seq_id - 1}->{okx.seq_id}"
    assert resync_requests(gap) == [("gap", detail)]
