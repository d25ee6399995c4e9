"""The runtime's pure parts: frames -> the records a Kafka consumer would decode, dead letters, the CLI's checks."""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from decimal import Decimal

import orjson
import pytest

from l3_atom.avro import validator
from l3_atom.avro.codecs import AvroEncoder, decode_wire, parsed_schema
from l3_atom.config import Settings
from l3_atom.connector import feed_factory
from l3_atom.errors import ServiceUnavailable, UserError
from l3_atom.infra.processes import free_port
from l3_atom.local import cli
from l3_atom.local.bus import ConnectorDeadLetter, RawFrame
from l3_atom.local.runtime import Runtime, SourceRuntime
from l3_atom.raw_sink import raw_headers
from l3_atom.sources import standardiser_class
from l3_atom.stream_processing.raw_messages import RawMessageProcessor

ATOM = 1_700_000_000_123_456
MAX_MESSAGE_BYTES = 1_000_000
KEY = "coinbase_BTC-USD_full"
MATCH = {
    "type": "match", "trade_id": 10, "maker_order_id": "m", "taker_order_id": "t", "side": "sell",
    "size": "0.00000001", "price": "30000.5", "product_id": "BTC-USD", "sequence": 5,
    "time": "2023-11-14T22:13:20.123456Z",
}
OPEN = {
    "type": "open", "side": "buy", "price": "1.10", "order_id": "o", "remaining_size": "2",
    "product_id": "BTC-USD", "sequence": 6, "time": "2023-11-14T22:13:20.5Z",
}


def source(feeds: list[str]) -> SourceRuntime:
    make_feed = feed_factory(Settings(), "coinbase", ["BTC.USD"])
    return SourceRuntime("coinbase", make_feed, feeds, MAX_MESSAGE_BYTES, cli.DEFAULT_BUS_FRAMES)


def raw(message: dict | bytes) -> RawFrame:
    data = message if isinstance(message, bytes) else orjson.dumps(message)
    return RawFrame(KEY, data, raw_headers(ATOM, "coinbase.0.1", "BTC.USD"))


def test_records_are_the_decoded_avro_records_of_the_wanted_feeds() -> None:
    runtime = source(["trades_l3"])
    received = {"type": "received", "product_id": "BTC-USD", "sequence": 7, "order_id": "r", "order_type": "limit",
                "side": "buy", "price": "1", "size": "1", "time": "2023-11-14T22:13:20.6Z"}
    records = runtime.standardise([raw(MATCH), raw(OPEN), raw(received)])
    assert [(r.topic, r.key) for r in records] == [("trades_l3", "coinbase_BTC.USD")], "lob_l3 is not wanted"
    assert records[0].value == {
        "exchange": "coinbase", "symbol": "BTC.USD", "trade_id": "10",
        # Scale 18, as decoded from Kafka; equal to the exchange's string, exactly.
        "price": Decimal("30000.500000000000000000"), "size": Decimal("1E-8"),
        "taker_side": "buy", "maker_order_id": "m", "taker_order_id": "t", "sequence": 5,
        "origin": None, "event_timestamp": 1_700_000_000_123, "atom_timestamp": ATOM,
    }
    assert str(records[0].value["price"]) == "30000.500000000000000000"
    assert runtime.processor.records == {"trades_l3": 1, "lob_l3": 1}
    assert runtime.stats()["skipped"] == {"received: order not on the book yet": 1}


def test_a_bad_frame_is_a_dead_letter_with_its_bytes_and_place_and_the_stream_goes_on() -> None:
    runtime = source(["trades_l3"])
    broken = orjson.dumps({**MATCH, "price": [1]})
    records = runtime.standardise([raw(OPEN), raw(broken), raw({**MATCH, "sequence": 7})])
    assert [r.topic for r in records] == ["dead_letter", "trades_l3"]
    dead = records[0].value
    assert dead["stage"] == "processor" and dead["error"].startswith("match message has a mistyped field")
    assert (dead["raw_topic"], dead["partition"], dead["offset"], dead["key"]) == ("coinbase_raw", None, 1, KEY)
    assert dead["original"] == broken and dead["original_size"] == len(broken)
    assert dead["atom_timestamp"] == ATOM
    assert runtime.stats()["dead_letters"] == {"match message has a mistyped field": 1}


def test_records_are_validated_without_avro_bytes_and_a_misfit_is_the_processors_dead_letter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No output asks for Avro: valid records are never encoded nor decoded; one the writer refuses is refused."""
    calls = Counter()

    class CountingEncoder(AvroEncoder):
        def __init__(self, topic: str, schema_id: int):
            super().__init__(topic, schema_id)
            encode = self.encode

            def counted(record: dict) -> bytes:
                calls["encode"] += 1
                return encode(record)

            self.encode = counted

    def counted_decode(value: bytes, schemas: dict) -> dict:
        calls["decode"] += 1
        return decode_wire(value, schemas)

    monkeypatch.setattr(validator, "AvroEncoder", CountingEncoder)
    monkeypatch.setattr(validator, "decode_wire", counted_decode)
    runtime = source(["trades_l3", "lob_l3"])
    records = runtime.standardise([raw(MATCH), raw(OPEN)])
    assert [r.topic for r in records] == ["trades_l3", "lob_l3"]
    assert calls == {}, "no Avro bytes for records that fit their schemas"
    # 19 decimal places: the schema's scale is 18, so the Avro writer refuses it (and only it can tell).
    # (another trade id: a repeat of MATCH's would be skipped as already published, before any Avro)
    misfit = orjson.dumps({**MATCH, "sequence": 7, "trade_id": 99, "price": "1.0000000000000000001"})
    [dead] = runtime.standardise([raw(misfit)])
    assert dead.topic == "dead_letter"
    assert calls["encode"] >= 1, "the writer itself refused it"
    # The distributed processor, with Avro encoders, dead-letters it with the same error.
    standardiser = standardiser_class("coinbase")()
    topics = [*standardiser.topics, "dead_letter"]
    encoders = {topic: AvroEncoder(topic, number) for number, topic in enumerate(topics, 1)}
    [kafka] = RawMessageProcessor("coinbase", standardiser, encoders, MAX_MESSAGE_BYTES).process(
        misfit, raw(misfit).headers, "coinbase_raw", None, 2, KEY
    )
    schemas = {encoder.schema_id: parsed_schema(topic) for topic, encoder in encoders.items()}
    assert dead.value == decode_wire(kafka.value, schemas)
    assert dead.value["error"].startswith("record does not fit its schema: ValueError('1.0000000000000000001 has more")


def test_a_connectors_dead_letter_passes_through_decoded() -> None:
    runtime = source(["lob_l3"])
    runtime.sink.dead_letter("coinbase_all_unparsed", b"x" * 10, "frame of 10 bytes exceeds max_frame_bytes=5", ATOM)
    [item] = asyncio.run(runtime.bus.take(10))
    assert isinstance(item, ConnectorDeadLetter)
    [record] = runtime.standardise([item])
    assert record.topic == "dead_letter" and record.key == "coinbase_all_unparsed"
    assert record.value["stage"] == "connector" and record.value["original"] == b"x" * 10
    assert runtime.stats()["dead_letters"] == {"connector: frame too large": 1}


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_source_options_belong_to_the_source_before_them() -> None:
    args = parse(
        "--source", "coinbase", "--symbol", "BTC.USD", "--ws-url", "ws://a/", "--symbol", "ETH.USD",
        "--source", "binance", "--symbol", "ETH.USDT", "--rest-url", "http://b", "--channels", "trade,depth",
        "--serve", "9000", "--feeds", "trades_l3",
    )
    assert args.sources == [
        cli.SourceOptions("coinbase", ["BTC.USD", "ETH.USD"], "ws://a/", None, None),
        cli.SourceOptions("binance", ["ETH.USDT"], None, "http://b", "trade,depth"),
    ]
    assert args.serve == ("127.0.0.1", 9000) and args.feeds == "trades_l3"
    assert parse("--source", "coinbase", "--serve", "0.0.0.0:0").serve == ("0.0.0.0", 0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--symbol", "BTC.USD", "--source", "coinbase"], "--symbol must follow the --source it belongs to"),
        (["--source", "coinbase", "--source", "coinbase"], "--source coinbase is given twice"),
        (["--source", "coinbase", "--ws-url", "a", "--ws-url", "b"], "--ws-url is given twice for --source coinbase"),
        (["--source", "coinbase", "--serve", "host:port"], "expected [HOST:]PORT"),
    ],
)
def test_misplaced_options_are_refused_with_a_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)
    assert message in capsys.readouterr().err


def test_feeds_are_checked_against_what_the_sources_publish() -> None:
    published = ["lob_l3", "trades_l3", "ticker", "lob"]
    assert cli.choose_feeds(None, published) == ["lob_l3", "lob", "trades_l3", "ticker"]
    assert cli.choose_feeds("ticker, lob_l3", published) == ["lob_l3", "ticker"]
    with pytest.raises(UserError, match=r"no chosen source publishes trade_l3 \(did you mean trades_l3\?\)"):
        cli.choose_feeds("trade_l3", published)


def test_unknown_sources_and_symbols_are_user_errors() -> None:
    with pytest.raises(UserError, match="unknown source 'coinbas'"):
        cli.build_runtime(parse("--source", "coinbas", "--symbol", "BTC.USD"), Settings())
    with pytest.raises(UserError, match="coinbase needs at least one --symbol"):
        cli.build_runtime(parse("--source", "coinbase"), Settings())


def test_a_source_that_cannot_be_reached_stops_the_run_with_its_name() -> None:
    dead_end = f"http://127.0.0.1:{free_port()}"
    make_feed = feed_factory(Settings(), "coinbase", ["BTC.USD"], rest_url=dead_end)
    source = SourceRuntime("coinbase", make_feed, ["trades_l3"], MAX_MESSAGE_BYTES, cli.DEFAULT_BUS_FRAMES)
    runtime = Runtime([source], ["trades_l3"])
    with pytest.raises(ServiceUnavailable, match="coinbase could not be reached"):
        asyncio.run(runtime.run())
