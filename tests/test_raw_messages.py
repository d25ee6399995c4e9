"""One raw message in, encoded records or one dead letter out: headers, counts and the dead-letter rule."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from l3_atom.avro.codecs import AvroEncoder, available_topics, decode_wire, parsed_schema
from l3_atom.avro.writer import encode_outputs_in_python
from l3_atom.stream_processing import raw_messages
from l3_atom.stream_processing.raw_messages import Encoded, RawMessageProcessor
from l3_atom.stream_processing.standardisers.coinbase import CoinbaseStandardiser
from l3_atom.topics import ATOM_TIMESTAMP_HEADER, DEAD_LETTER, SYMBOL_HEADER

ATOM = 1_700_000_000_123_456
KEY = "coinbase_BTC-USD_full"
MATCH = json.dumps({
    "type": "match", "trade_id": 7, "maker_order_id": "m", "taker_order_id": "t", "side": "sell", "size": "0.5",
    "price": "30000.01", "product_id": "BTC-USD", "sequence": 10, "time": "2023-11-14T22:13:20.123456Z",
}).encode()
SCHEMA_IDS = {topic: index for index, topic in enumerate(available_topics())}


@pytest.fixture(params=["compiled", "python"])
def encode_outputs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs with the loop the processor uses (C where built) and with its Python reference."""
    if request.param == "python":
        monkeypatch.setattr(raw_messages, "encode_outputs", encode_outputs_in_python)


def encoders() -> dict[str, AvroEncoder]:
    return {topic: AvroEncoder(topic, schema_id) for topic, schema_id in SCHEMA_IDS.items()}


@pytest.fixture
def processor(encode_outputs: None) -> RawMessageProcessor:
    return RawMessageProcessor("coinbase", CoinbaseStandardiser(), encoders(), 1_000_000)


def decoded(item: Encoded) -> dict:
    return decode_wire(item.value, {SCHEMA_IDS[item.topic]: parsed_schema(item.topic)})


def test_records_are_encoded_and_counted(processor: RawMessageProcessor) -> None:
    [trade] = processor.process(MATCH, [(ATOM_TIMESTAMP_HEADER, str(ATOM).encode())], "coinbase_raw", 0, 5, KEY)
    assert (trade.topic, trade.key) == ("trades_l3", "coinbase_BTC.USD")
    assert decoded(trade)["price"] == Decimal("30000.01")
    assert decoded(trade)["atom_timestamp"] == ATOM
    assert (processor.messages, dict(processor.records), dict(processor.dead_letters)) == (1, {"trades_l3": 1}, {})


def test_headers_as_a_dict_and_the_first_of_repeated_headers(processor: RawMessageProcessor) -> None:
    [trade] = processor.process(MATCH, {ATOM_TIMESTAMP_HEADER: str(ATOM).encode()}, "coinbase_raw", 0, 5, KEY)
    assert decoded(trade)["atom_timestamp"] == ATOM
    headers = [(SYMBOL_HEADER, b"XBT.USD"), (ATOM_TIMESTAMP_HEADER, b"1"), (ATOM_TIMESTAMP_HEADER, b"2"),
               (SYMBOL_HEADER, b"other")]
    next_trade = MATCH.replace(b'"sequence": 10', b'"sequence": 11').replace(b'"trade_id": 7', b'"trade_id": 8')
    [trade] = processor.process(next_trade, headers, "raw", 0, 6, KEY)
    assert decoded(trade)["atom_timestamp"] == 1
    assert processor.standardiser.header_symbol == "XBT.USD"


@pytest.mark.parametrize("headers", [None, [], [(ATOM_TIMESTAMP_HEADER, b"")], [(ATOM_TIMESTAMP_HEADER, b"12a")]])
def test_a_message_without_a_valid_stamp_is_a_dead_letter(processor: RawMessageProcessor, headers: list) -> None:
    [letter] = processor.process(MATCH, headers, "coinbase_raw", 3, 9, KEY)
    assert letter.topic == DEAD_LETTER
    record = decoded(letter)
    assert record["error"].startswith(f"raw message has no valid {ATOM_TIMESTAMP_HEADER} header")
    assert (record["atom_timestamp"], record["partition"], record["offset"], record["original"]) == (0, 3, 9, MATCH)
    assert dict(processor.records) == {}


def test_a_record_that_does_not_fit_its_schema_is_a_dead_letter(processor: RawMessageProcessor) -> None:
    bad = MATCH.replace(b'"size": "0.5"', b'"size": "0.0000000000000000001"')
    [letter] = processor.process(bad, [(ATOM_TIMESTAMP_HEADER, str(ATOM).encode())], "coinbase_raw", 0, 5, KEY)
    assert letter.topic == DEAD_LETTER
    assert decoded(letter)["error"].startswith("record does not fit its schema: ValueError(")
    assert decoded(letter)["atom_timestamp"] == ATOM
    assert dict(processor.dead_letters) == {"record does not fit its schema": 1}
    assert dict(processor.records) == {}


class FixedOutputs:
    """A standardiser stand-in whose every frame standardises to the same outputs."""

    def __init__(self, outputs: list[tuple[str, str, dict]]):
        self.outputs = outputs

    def standardise(self, frame: bytes, atom_timestamp: int, key: str | None, symbol: str | None) -> list:
        return self.outputs


LEVEL = {"exchange": "huobi", "symbol": "BTC.USDT", "side": "bid", "price": Decimal("30004.27"),
         "size": Decimal("0.5"), "is_snapshot": True, "sequence": 7, "prev_sequence": None, "checksum": None,
         "event_timestamp": None, "atom_timestamp": ATOM}


def test_a_message_with_one_refused_record_among_many_is_one_dead_letter_and_counts_nothing(
    encode_outputs: None,
) -> None:
    fine = [("lob", "huobi_BTC.USDT", {**LEVEL, "price": Decimal(price)}) for price in (1, 2, 3)]
    processor = RawMessageProcessor("huobi", FixedOutputs(fine), encoders(), 1_000_000)
    stamp = [(ATOM_TIMESTAMP_HEADER, str(ATOM).encode())]
    assert [decoded(item)["price"] for item in processor.process(b"{}", stamp, "huobi_raw", 0, 1, "k")] == [1, 2, 3]
    assert dict(processor.records) == {"lob": 3}
    fine.insert(2, ("lob", "huobi_BTC.USDT", {**LEVEL, "side": "middle"}))
    [letter] = processor.process(b"{}", stamp, "huobi_raw", 0, 2, "k")
    assert decoded(letter)["error"] == "record does not fit its schema: ValueError(\"'middle' is not one of ['bid', 'ask']\")"
    assert (dict(processor.records), dict(processor.dead_letters)) == ({"lob": 3}, {"record does not fit its schema": 1})
