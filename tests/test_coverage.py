"""Coverage interval arithmetic: merging, subtracting, and the holes of a feed in a range."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l3_atom.consume import format_human
from l3_atom.coverage import (
    HTTP_BAD_REQUEST,
    HTTP_OK,
    CoverageLog,
    clip,
    coverage_record,
    describe,
    merge,
    missing,
    subtract,
    total_ms,
)


def record(kind: str, start: int | None, end: int | None = None, feed: str | None = None, **extra: Any) -> dict:
    return coverage_record(exchange="coinbase", symbol="BTC.USD", kind=kind, feed=feed, start=start, end=end,
                    event_timestamp=end or start or 0, atom_timestamp=0, **extra)


def test_merge_sorts_joins_overlapping_and_touching_and_drops_empty() -> None:
    assert merge([(5, 8), (1, 3), (3, 4), (7, 10), (20, 20)]) == [(1, 4), (5, 10)]


def test_subtract_cuts_holes_and_edges() -> None:
    assert subtract([(0, 100)], [(10, 20), (50, 60), (90, 200)]) == [(0, 10), (20, 50), (60, 90)]
    assert subtract([(0, 10)], [(0, 10)]) == []
    assert subtract([(0, 10), (20, 30)], []) == [(0, 10), (20, 30)]


def test_clip_and_total() -> None:
    assert clip([(0, 10), (15, 30)], 5, 20) == [(5, 10), (15, 20)]
    assert total_ms([(0, 10), (5, 15)]) == 15


intervals = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 200)).map(lambda t: (min(t), max(t))), max_size=8)


@given(intervals, intervals)
def test_subtract_agrees_with_sets_of_milliseconds(kept: list, removed: list) -> None:
    def points(spans: list) -> set[int]:
        return {ms for start, end in spans for ms in range(start, end)}

    result = subtract(kept, removed)
    assert points(result) == points(kept) - points(removed)
    assert result == merge(result)


def test_an_outage_is_missing_for_every_feed_until_trades_are_backfilled() -> None:
    records = [record("stream_down", 1000), record("stream_up", 1000, 3000)]
    assert missing(records, "trades", 0, 10_000) == [(1000, 3000)]
    assert missing(records, "book", 0, 10_000) == [(1000, 3000)]
    records.append(record("trades_backfilled", 1000, 3000, feed="trades", count=12))
    assert missing(records, "trades", 0, 10_000) == []
    assert missing(records, "book", 0, 10_000) == [(1000, 3000)]


def test_unrecoverable_trades_stay_missing_after_a_backfill() -> None:
    records = [
        record("stream_up", 1000, 3000),
        record("trades_backfilled", 1000, 3000, feed="trades"),
        record("trades_unrecoverable", 2000, 2500, feed="trades", sequence_before=7, sequence_after=11, count=3),
    ]
    assert missing(records, "trades", 0, 10_000) == [(2000, 2500)]


def test_open_outages_run_to_the_end_of_the_range() -> None:
    records = [record("stream_down", 4000), record("book_lost", 6000, feed="book")]
    assert missing(records, "trades", 0, 5000) == [(4000, 5000)]
    assert missing(records, "book", 0, 8000) == [(4000, 8000)]
    records.append(record("stream_up", 4000, 4500))
    assert missing(records, "trades", 0, 8000) == [(4000, 4500)]
    records.append(record("book_resynced", 6000, 7000, feed="book"))
    assert missing(records, "book", 0, 8000) == [(4000, 4500), (6000, 7000)]
    assert missing(records, "book", 4200, 6500) == [(4200, 4500), (6000, 6500)]


def test_the_log_answers_per_symbol_and_checks_the_query() -> None:
    log = CoverageLog()
    log.add(record("stream_up", 1000, 3500))
    answer = log.answer("coinbase", "BTC.USD", {"feed": "trades_l3", "start": "0", "end": "5000"}, now_ms=9999)
    assert answer.status == HTTP_OK
    assert answer.body["missing"] == [[1000, 3500]]
    assert answer.body["missing_seconds"] == 2.5
    assert answer.body["feed"] == "trades"
    assert log.answer("coinbase", "ETH.USD", {}, now_ms=9999).body["missing"] == []
    for bad in ({"feed": "ticker"}, {"start": "x"}, {"start": "5", "end": "4"}):
        assert log.answer("coinbase", "BTC.USD", bad, now_ms=9999).status == HTTP_BAD_REQUEST


@pytest.mark.parametrize(("kind", "expected"), [
    ("stream_up", "coinbase BTC.USD all feeds: stream_up 1970-01-01T00:00:01.000Z -> 1970-01-01T00:00:03.500Z (2.500 s)"),
    ("stream_down", "coinbase BTC.USD all feeds: stream_down 1970-01-01T00:00:01.000Z -> …"),
])
def test_describe_is_one_readable_line(kind: str, expected: str) -> None:
    end = 3500 if kind == "stream_up" else None
    assert describe(record(kind, 1000, end)) == expected
    line = describe(record("trades_backfilled", 1000, 2000, feed="trades", count=4, sequence_before=1, sequence_after=6,
                           reason="GET /products/BTC-USD/trades"))
    assert line.endswith("sequences 1 .. 6 count 4 (GET /products/BTC-USD/trades)")


def test_consume_prints_coverage_as_a_sentence_and_other_topics_as_fields() -> None:
    line = format_human("coverage", "coinbase_BTC.USD", record("stream_up", 1000, 3500, reason="websocket closed"))
    assert line == ("coverage coinbase BTC.USD all feeds: stream_up 1970-01-01T00:00:01.000Z -> "
                    "1970-01-01T00:00:03.500Z (2.500 s) (websocket closed)")
    assert format_human("ticker", "k", {"sequence": 3}) == "ticker k sequence=3"
