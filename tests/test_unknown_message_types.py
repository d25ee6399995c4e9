"""A message type never seen before: a dead letter, counted by type and logged once per type (issue 15)."""

from __future__ import annotations

import logging

import orjson
import pytest

from l3_atom.avro.codecs import AvroEncoder
from l3_atom.stream_processing.raw_messages import RawMessageProcessor
from l3_atom.stream_processing.standardiser import UNKNOWN_TYPES_LIMIT, StandardiseError
from l3_atom.stream_processing.standardisers.okx import OkxStandardiser
from l3_atom.topics import ATOM_TIMESTAMP_HEADER, DEAD_LETTER

ATOM = 1_753_000_000_123_456


def push(channel: str) -> bytes:
    return orjson.dumps({"arg": {"channel": channel, "instId": "BTC-USDT"}, "data": [{}]})


def test_unknown_types_are_dead_letters_counted_by_type_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    processor = RawMessageProcessor("okx", OkxStandardiser(), {DEAD_LETTER: AvroEncoder(DEAD_LETTER, 1)}, 1 << 20)
    headers = [(ATOM_TIMESTAMP_HEADER, str(ATOM).encode())]
    with caplog.at_level(logging.WARNING, logger="l3_atom.stream_processing.standardiser"):
        outputs = [out for channel in ("books-elp", "books-elp", "opt-summary")
                   for out in processor.process(push(channel), headers, "okx_raw", 0, 0, "okx_BTC-USDT_x")]
    assert [out.topic for out in outputs] == [DEAD_LETTER] * 3
    assert dict(processor.standardiser.unknown_types) == {"books-elp": 2, "opt-summary": 1}
    assert processor.dead_letters == {"unknown message type 'books-elp'": 2, "unknown message type 'opt-summary'": 1}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert all("logged once per type" in w for w in warnings)


def test_a_source_inventing_types_keeps_the_count_bounded() -> None:
    std = OkxStandardiser()
    for index in range(UNKNOWN_TYPES_LIMIT + 10):
        with pytest.raises(StandardiseError, match="unknown message type"):
            std.standardise(push(f"new-{index}"), ATOM)
    assert len(std.unknown_types) == UNKNOWN_TYPES_LIMIT + 1
    assert std.unknown_types["(other)"] == 10
    assert sum(std.unknown_types.values()) == UNKNOWN_TYPES_LIMIT + 10
