"""OKX ``books`` in the shapes of other API versions (issue 15, "messages drift; the data still counts").

Before 2023 a v5 ``books`` message had no ``seqId``/``prevSeqId``: the book is verified by its CRC32
checksum alone and its records carry null sequences; trades came without ``seqId`` and candles with 7
fields (``tests/fixtures/okx/v5-first-shape``, quoted from OKX's documentation of that time, see its
README).  From August 2026 OKX delists ``checksum``
(docs-v5 changelog): the book is checked by its sequence numbers alone, records carry a null checksum.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from l3_atom.infra.processes import runner_command
from l3_atom.off_chain.okx import Okx
from l3_atom.stream_processing.standardiser import StandardiseError
from l3_atom.stream_processing.standardisers.okx import OkxStandardiser
from tests.exchanges.doc_fixtures import http_bodies, ws_frames
from tests.exchanges.test_okx import (
    ATOM,
    SETTINGS,
    OkxBook,
    assert_fits_schema,
    okx_crc,
    resync_requests,
    topics,
)
from tests.local.helpers import LocalRun
from tests.sinks import NullSink

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


# -- no initial snapshot (from August 2026): the REST book, fetched when the processor asks ------------------

NO_SNAPSHOT = Path(__file__).parent.parent / "fixtures" / "okx" / "v5-2026-no-snapshot"
BOOKS_KEY = "okx_BTC-USDT_books"
REST_BOOK_URL = "https://www.okx.com/api/v5/market/books?instId=BTC-USDT&sz=400"


def rest_book(seq_id: int, **extra: object) -> bytes:
    return orjson.dumps({"code": "0", "msg": "", "data": [{"asks": [["101", "2", "0", "1"]],
                                                           "bids": [["100", "1", "0", "1"]], "ts": "2",
                                                           "seqId": seq_id}], **extra})


def update(seq_id: int, price: str = "101") -> bytes:
    return orjson.dumps({"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "update",
                         "data": [{"asks": [[price, "3", "0", "1"]], "bids": [], "ts": "3",
                                   "prevSeqId": seq_id - 1, "seqId": seq_id}]})


def test_updates_without_a_snapshot_ask_at_once_and_the_rest_book_joins_them() -> None:
    std = OkxStandardiser()
    first = std.standardise(update(101), ATOM, BOOKS_KEY)
    detail = "book updates and no snapshot (OKX sends none on subscribe since August 2026)"
    assert resync_requests(first) == [("no_snapshot", detail)]
    assert resync_requests(std.standardise(update(102), ATOM + 1, BOOKS_KEY)) == []  # asked already: no storm
    snapshot = std.standardise(rest_book(102), ATOM + 2, BOOKS_KEY)
    assert {(o.record["sequence"], o.record["is_snapshot"], o.record["checksum"]) for o in snapshot} == {
        (102, True, None)
    }
    assert std.standardise(update(102), ATOM + 3, BOOKS_KEY) == []  # held back during the fetch: in the snapshot
    after = std.standardise(update(103), ATOM + 4, BOOKS_KEY)
    assert [(o.record["sequence"], o.record["prev_sequence"]) for o in after] == [(103, 102)]
    assert std.book_checks.continuity.in_sync("BTC.USDT")
    assert dict(std.skipped) == {"stale: already in the book snapshot": 1}


@pytest.mark.parametrize(
    ("raw", "key", "error"),
    [
        (rest_book(1, code="51001", msg="Instrument ID does not exist"), BOOKS_KEY,
         "okx book snapshot answered code '51001'"),
        (rest_book(1), "okx_all_books", "a REST book snapshot names no symbol"),
    ],
)
def test_a_bad_rest_book_is_a_precise_error(raw: bytes, key: str, error: str) -> None:
    with pytest.raises(StandardiseError, match=error):
        OkxStandardiser().standardise(raw, ATOM, key)


def test_the_connector_fetches_the_rest_book_on_resync_not_on_connect() -> None:
    feed = Okx(["BTC.USDT"], NullSink(), SETTINGS)
    assert feed.snapshot_on_connect is False
    [poll] = feed.snapshot_polls(["BTC-USDT"])
    assert (poll.path, poll.params, poll.key) == ("/api/v5/market/books", {"instId": "BTC-USDT", "sz": "400"},
                                                  BOOKS_KEY)
    assert Okx(["BTC.USDT"], NullSink(), SETTINGS, channels=["trades"]).snapshot_polls(["BTC-USDT"]) == []
    assert http_bodies(NO_SNAPSHOT)[REST_BOOK_URL]


@pytest.mark.timeout(180)
def test_no_snapshot_shape_through_the_replay_server_and_runner_local(tmp_path: Path) -> None:
    """Replay server (recorded speed) -> ``runner.py local``: updates 101, 102 with no snapshot, the REST book at
    102 fetched on the processor's request, then 103 and 104 continue it; nothing is dead-lettered."""
    out = tmp_path / "lob.jsonl"
    with LocalRun(tmp_path) as local:
        local.start("replay", runner_command("replay", "--recording", str(NO_SNAPSHOT), "--port",
                                             str(local.source_port), "--speed", "recorded"))
        local.wait_port("replay", local.source_port)
        local.start_local("--source", "okx", "--symbol", "BTC.USDT", "--channels", "books", *local.endpoint_args(),
                          "--feeds", "lob", "--jsonl", str(out), "--no-progress")
        stats = local.wait_for(lambda _: out.exists() and '"sequence":104' in out.read_text(), 90.0,
                               "update 104 after the REST snapshot")
        local.stop("local")
    lob = [json.loads(line) for line in out.read_text().splitlines()]
    sequences = [(r["sequence"], r["prev_sequence"], r["is_snapshot"]) for r in lob]
    snapshot_at = sequences.index((102, None, True))
    assert sequences[snapshot_at:] == [(102, None, True)] * 4 + [(103, 102, False), (104, 103, False)]
    assert {s for s in sequences[:snapshot_at]} <= {(101, 100, False), (102, 101, False)}
    assert {r["checksum"] for r in lob} == {None}
    assert stats["dead_letters"] == 0
