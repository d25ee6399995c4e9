"""Phemex on frames quoted from its API documentation (there is no Phemex recording).

``tests/fixtures/phemex/ws.jsonl`` holds the examples of github.com/phemex/phemex-api-docs,
one-line samples verbatim and multi-line ones compacted: spot ``sBTCUSDT``
(Public-Spot-API: book snapshot and two updates, trade snapshot and update,
1-day kline snapshot and update), the USDT-margined ``BTCUSDT``
(Public-Hedged-Perpetual-API: two ``orderbook_p`` updates, ``trades_p`` snapshot
and update, 1-minute ``kline_p`` snapshot and update) and the inverse ``BTCUSD``
(Public-Contract-API: book snapshot, which has no timestamp, and two updates,
trades and klines), the documented subscribe acks and a ``server.ping`` pong.
The docs' samples come from different days, so sequences do not continue
across symbols.  The connector subscribes 1-minute klines; the spot and
inverse kline samples are 1-day ones (the interval is read from each kline).

``http.jsonl`` answers ``/public/products``: the docs print no body for it, so
it is the response ccxt documents in phemex.ts ``fetchMarkets`` (recorded from
the live API), with that comment's JSON slips fixed.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from l3_atom.avro.codecs import AvroEncoder, decode_wire, parsed_schema
from l3_atom.config import ConnectorSettings
from l3_atom.off_chain.phemex import CONTRACT_SCALES, PING, SPOT_SCALES, Phemex, ScaleMismatch, Scales, parse_products
from l3_atom.stream_processing.standardiser import Output, StandardiseError
from l3_atom.stream_processing.standardisers.phemex import (
    PhemexStandardiser,
    interval_name,
    ms_from_ns,
    unscale,
)
from l3_atom.topics import split_raw_key
from tests.exchanges.book_order import NO_SNAPSHOT, order_events
from tests.exchanges.doc_fixtures import http_bodies, ws_entries, ws_frames

SOURCE = "phemex"
FIXTURE = Path(__file__).parent.parent / "fixtures" / "phemex"
SYMBOLS = ["BTC.USDT", "BTC.USDT-PERP", "BTC.USD-PERP"]
ATOM = 1_700_000_000_123_456
SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1 << 20)
PRODUCTS_URL = "https://api.phemex.com/public/products"

BOOK_KEYS = ("book", "orderbook_p")
TRADE_KEYS = ("trades", "trades_p")
KLINE_KEYS = ("kline", "kline_p")


def expected_counts(folder: Path) -> dict[str, int]:
    """Records per topic from the frames themselves: one per book level, live trade and kline.

    Trade snapshots (history replayed on subscribe) give none.
    """
    counts: Counter[str] = Counter()
    for raw in ws_frames(folder):
        message = orjson.loads(raw)
        for key in BOOK_KEYS:
            if key in message:
                counts["lob"] += len(message[key]["bids"]) + len(message[key]["asks"])
        for key in TRADE_KEYS:
            if key in message and message["type"] == "incremental":
                counts["trades"] += len(message[key])
        for key in KLINE_KEYS:
            if key in message:
                counts["candle"] += len(message[key])
    return dict(counts)


def book_messages(folder: Path) -> list[tuple[str, int, bool]]:
    """(symbol, sequence, is snapshot) of every book frame."""
    return [
        (message["symbol"], message["sequence"], message["type"] == "snapshot")
        for message in map(orjson.loads, ws_frames(folder)) if any(key in message for key in BOOK_KEYS)
    ]


def products_body() -> str:
    return http_bodies(FIXTURE)[PRODUCTS_URL]


def feed(*symbols: str) -> Phemex:
    connector = Phemex(symbols, None, SETTINGS)
    connector.learn_products(products_body())
    return connector


def streaming_feed() -> Phemex:
    """The connector as ``run`` leaves it: the fixture's symbols resolved to exchange symbols."""
    connector = feed(*SYMBOLS)
    exchange_symbols = connector.resolve(Phemex.parse_symbols(products_body()))
    connector.normalised_of = dict(zip(exchange_symbols, SYMBOLS, strict=True))
    return connector


def frame(**fields: object) -> bytes:
    return orjson.dumps(fields)


def standardise_like_the_pipeline(std: PhemexStandardiser, connector: Phemex, raw: bytes) -> list[Output]:
    """The raw key and symbol header the connector gives a frame, as the processor receives them."""
    key = connector.frame_key(raw)
    return std.standardise(raw, ATOM, key, connector.normalised_of.get(split_raw_key(key)[1]))


def fits_schema(out: Output) -> None:
    schema = parsed_schema(out.topic)
    assert set(out.record) == {field["name"] for field in schema["fields"]}
    assert decode_wire(AvroEncoder(out.topic, 1).encode(out.record), {1: schema}) == out.record


@pytest.fixture(scope="module")
def outputs() -> tuple[list[Output], PhemexStandardiser]:
    connector = streaming_feed()
    std = PhemexStandardiser()
    produced = [out for raw in ws_frames(FIXTURE) for out in standardise_like_the_pipeline(std, connector, raw)]
    return produced, std


# -- the documented traffic ----------------------------------------------------------------------


def test_every_documented_frame_becomes_records_or_a_named_skip(outputs) -> None:
    produced, std = outputs
    assert dict(Counter(out.topic for out in produced)) == expected_counts(FIXTURE)
    assert expected_counts(FIXTURE) == {"lob": 260, "trades": 3, "candle": 11}
    # The spot and inverse books start with their snapshot and their sequences rise: nothing is skipped.  The
    # documented BTCUSDT updates have no snapshot before them, but every frame is standardised at one time
    # (ATOM): the 10 s the connector's own snapshot is given to come never pass, so no book_resync either.
    assert order_events(book_messages(FIXTURE)) == {NO_SNAPSHOT: 2}
    assert std.book_checks.stats() == {"snapshots": 2}
    assert dict(std.skipped) == {
        "subscription ack": 9,
        "trade snapshot: history replayed on subscribe (no trade ids to deduplicate)": 3,
        "pong (heartbeat reply)": 1,
    }
    for out in produced:
        fits_schema(out)


def test_the_standardiser_needs_no_symbol_header() -> None:
    with_headers = PhemexStandardiser()
    without = PhemexStandardiser()
    connector = streaming_feed()
    assert connector.normalised_of == {"sBTCUSDT": "BTC.USDT", "BTCUSDT": "BTC.USDT-PERP", "BTCUSD": "BTC.USD-PERP"}
    for raw in ws_frames(FIXTURE):
        assert standardise_like_the_pipeline(with_headers, connector, raw) == without.standardise(raw, ATOM)


def first(produced: list[Output], topic: str, symbol: str, **match: object) -> dict:
    return next(
        out.record
        for out in produced
        if out.topic == topic and out.record["symbol"] == symbol and match.items() <= out.record.items()
    )


def test_spot_book_levels_are_unscaled_exactly(outputs) -> None:
    produced, _ = outputs
    # Snapshot, first bid: [892376000000, 6866500] with price scale 8, BTC value scale 8.
    assert first(produced, "lob", "BTC.USDT") == {
        "exchange": "phemex", "symbol": "BTC.USDT", "side": "bid", "price": Decimal("8923.76"),
        "size": Decimal("0.068665"), "is_snapshot": True, "sequence": 677996311, "prev_sequence": None,
        "checksum": None, "event_timestamp": 1590570810187, "atom_timestamp": ATOM,
    }
    # Second update: the level [892226000000, 0] is removed.
    removed = first(produced, "lob", "BTC.USDT", sequence=677996941, price=Decimal("8922.26"))
    assert (removed["size"], removed["is_snapshot"], removed["side"]) == (0, False, "bid")


def test_usdt_perpetual_book_is_real_valued(outputs) -> None:
    produced, _ = outputs
    assert first(produced, "lob", "BTC.USDT-PERP", side="ask") == {
        "exchange": "phemex", "symbol": "BTC.USDT-PERP", "side": "ask", "price": Decimal("20702.9"),
        "size": Decimal("0.718"), "is_snapshot": False, "sequence": 77668172, "prev_sequence": None,
        "checksum": None, "event_timestamp": 1666854171201, "atom_timestamp": ATOM,
    }


def test_inverse_book_is_in_contracts_and_its_snapshot_has_no_time(outputs) -> None:
    produced, _ = outputs
    assert first(produced, "lob", "BTC.USD-PERP") == {
        "exchange": "phemex", "symbol": "BTC.USD-PERP", "side": "bid", "price": Decimal(8676),
        "size": Decimal(18995), "is_snapshot": True, "sequence": 1191904, "prev_sequence": None,
        "checksum": None, "event_timestamp": None, "atom_timestamp": ATOM,
    }


def test_trades(outputs) -> None:
    produced, _ = outputs
    trades = {out.record["symbol"]: out.record for out in produced if out.topic == "trades"}
    # Spot [1573717116484024300, "Buy", 86730000000, 210000]: the side is the taker's.
    assert trades["BTC.USDT"] == {
        "exchange": "phemex", "symbol": "BTC.USDT", "trade_id": None, "price": Decimal("867.3"),
        "size": Decimal("0.0021"), "taker_side": "buy", "sequence": 1188273,
        "origin": None, "event_timestamp": 1573717116484, "atom_timestamp": ATOM,
    }
    perp = trades["BTC.USDT-PERP"]
    assert (perp["price"], perp["size"], perp["taker_side"], perp["event_timestamp"]) == (
        Decimal("20700.3"), Decimal("0.649"), "sell", 1666856076819,
    )
    inverse = trades["BTC.USD-PERP"]
    assert (inverse["price"], inverse["size"], inverse["sequence"]) == (Decimal(8673), Decimal(21), 1188273)


def test_candles(outputs) -> None:
    produced, _ = outputs
    # Spot snapshot, newest window first:
    # [1590019200, 86400, 952057000000, 952000000000, 955587000000, 947835000000, 954446000000, 1162621600, ...]
    assert first(produced, "candle", "BTC.USDT") == {
        "exchange": "phemex", "symbol": "BTC.USDT", "origin": "exchange", "interval": "1d",
        "start": 1590019200000, "end": 1590105600000, "open": Decimal(9520), "high": Decimal("9555.87"),
        "low": Decimal("9478.35"), "close": Decimal("9544.46"), "volume": Decimal("11.626216"),
        "quote_volume": Decimal("110954.52729869"), "trade_count": None, "vwap": None,
        "first_trade_timestamp": None, "last_trade_timestamp": None, "closed": False,
        "event_timestamp": 1590019200000, "atom_timestamp": ATOM,
    }
    # An older window of the history is over.
    assert first(produced, "candle", "BTC.USDT", start=1589932800000)["closed"] is True
    perp = first(produced, "candle", "BTC.USDT-PERP")
    assert (perp["interval"], perp["close"], perp["volume"], perp["quote_volume"], perp["closed"]) == (
        "1m", Decimal("20691.6"), Decimal("2.742"), Decimal("56731.5609"), False,
    )
    assert first(produced, "candle", "BTC.USDT-PERP", start=1666856280000)["closed"] is True
    # Inverse: volume in contracts; its turnover is in BTC, not the quote asset.
    inverse = first(produced, "candle", "BTC.USD-PERP")
    assert (inverse["open"], inverse["volume"], inverse["quote_volume"]) == (Decimal(9516), Decimal(164), None)


# -- connector -----------------------------------------------------------------------------------


def test_symbol_map_from_the_products_endpoint() -> None:
    connector = feed()
    assert Phemex.parse_symbols(products_body()) == {
        "BTC.USDT": "sBTCUSDT", "BTC.USDT-PERP": "BTCUSDT", "BTC.USD-PERP": "BTCUSD",
    }
    assert connector.real_valued == {"BTCUSDT"}


def test_documented_scales_match_the_products_endpoint() -> None:
    scales = {p.symbol: p.scales for p in parse_products(products_body())}
    assert scales == {"BTCUSDT": None, "sBTCUSDT": SPOT_SCALES, "BTCUSD": CONTRACT_SCALES}


def edited_products(edit) -> str:
    body = orjson.loads(products_body())
    edit(body["data"])
    return orjson.dumps(body).decode()


def test_a_product_with_other_scales_is_refused_only_when_requested() -> None:
    def spot_price_scale_6(data: dict) -> None:
        data["products"][1]["priceScale"] = 6

    body = edited_products(spot_price_scale_6)
    assert Phemex(["BTC.USD-PERP"], None, SETTINGS).learn_products(body)["BTC.USDT"] == "sBTCUSDT"
    with pytest.raises(ScaleMismatch, match=r"misread BTC.USDT \(sBTCUSDT: Scales\(price=6"):
        Phemex(["BTC.USDT"], None, SETTINGS).learn_products(body)


def test_unlisted_ungrammatical_and_clashing_products_are_left_out() -> None:
    def edit(data: dict) -> None:
        data["products"][0]["status"] = "Delisted"
        odd = dict(data["perpProductsV2"][0], symbol="u1000PEPEUSDT", baseCurrency="u1000PEPE")
        clash = dict(data["products"][0], symbol="BTCUSDT2", quoteCurrency="USDT", status="Listed")
        data["perpProductsV2"].append(odd)
        data["products"].append(clash)

    assert Phemex.parse_symbols(edited_products(edit)) == {"BTC.USDT": "sBTCUSDT", "BTC.USDT-PERP": "BTCUSDT"}


def test_subscribe_is_what_the_fixture_sent() -> None:
    connector = feed(*SYMBOLS)
    exchange_symbols = connector.resolve(connector.parse_symbols(products_body()))
    [group] = connector.connection_groups(exchange_symbols)
    sent = [e["data"] for e in ws_entries(FIXTURE) if e["t"] == "send" and e["data"] != PING]
    assert connector.subscribe_messages(group) == sent
    assert orjson.loads(sent[5]) == {"id": 6, "method": "kline_p.subscribe", "params": ["BTCUSDT", 60]}


def test_twenty_subscriptions_per_connection() -> None:
    symbols = [f"S{i}" for i in range(13)]
    assert [len(g) for g in feed().connection_groups(symbols)] == [6, 6, 1]
    only_books = Phemex([], None, SETTINGS, channels=["orderbook"])
    assert [len(g) for g in only_books.connection_groups(symbols)] == [13]


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b'{"book":{"asks":[],"bids":[]},"symbol":"sBTCUSDT","type":"incremental"}', "phemex_sBTCUSDT_orderbook"),
        (b'{"orderbook_p":{"asks":[],"bids":[]},"symbol":"BTCUSDT"}', "phemex_BTCUSDT_orderbook"),
        (b'{"trades_p":[],"symbol":"BTCUSDT","type":"snapshot"}', "phemex_BTCUSDT_trade"),
        (b'{"kline":[],"symbol":"BTCUSD","type":"snapshot"}', "phemex_BTCUSD_kline"),
        (b'{"error":null,"id":1,"result":{"status":"success"}}', "phemex_all_control"),
        (b'{"error":null,"id":0,"result":"pong"}', "phemex_all_control"),
        (b'{"book":', "phemex_all_unparsed"),
        (b"[1,2]", "phemex_all_unparsed"),
        (b"42", "phemex_all_unparsed"),
    ],
)
def test_frame_key(raw: bytes, key: str) -> None:
    assert feed().frame_key(raw) == key


def test_every_connection_pings_well_within_phemex_30_seconds() -> None:
    assert orjson.loads(feed().ping()) == {"id": 0, "method": "server.ping", "params": []}
    assert Phemex.ping_interval_s <= 30 / 3


# -- standardiser units --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "normalised"),
    [("sBTCUSDT", "BTC.USDT"), ("sETHBTC", "ETH.BTC"), ("BTCUSDT", "BTC.USDT-PERP"), ("BTCUSD", "BTC.USD-PERP"),
     ("SOLUSD", "SOL.USD-PERP"), ("ETHUSDC", "ETH.USDC-PERP")],
)
def test_convert_symbol(name: str, normalised: str) -> None:
    assert PhemexStandardiser().convert_symbol(name) == normalised


@pytest.mark.parametrize("name", ["USDT", "sUSDT", "u1000PEPEUSDT", "BTCXYZ", "BTC-USDT", 42])
def test_convert_symbol_refuses_what_it_cannot_split(name: object) -> None:
    with pytest.raises(ValueError, match="cannot tell base and quote|must be a string"):
        PhemexStandardiser().convert_symbol(name)


def test_unscale_is_exact_beyond_float_and_context_precision() -> None:
    assert unscale(12345678901234567890123456789012345, 8) == Decimal("123456789012345678901234567.89012345")
    assert unscale(-5, 4) == Decimal("-0.0005")
    assert unscale(7, 0) == Decimal(7)


def test_timestamps_and_intervals() -> None:
    # ccxt's live orderbook_p sample carries the timestamp as a string.
    assert ms_from_ns("1677093457306978852") == ms_from_ns(1677093457306978852) == 1677093457306
    assert [interval_name(s) for s in (60, 300, 3600, 14400, 86400, 604800, 2592000)] == [
        "1m", "5m", "1h", "4h", "1d", "1w", "30d",
    ]


def test_string_timestamp_of_a_live_perpetual_snapshot() -> None:
    raw = (b'{"depth":30,"orderbook_p":{"asks":[["23788.5","0.13"]],"bids":[["23787.8","1.836"]]},'
           b'"sequence":1230347368,"symbol":"BTCUSDT","timestamp":"1677093457306978852","type":"snapshot"}')
    bid, ask = PhemexStandardiser().standardise(raw, ATOM)
    assert (bid.record["side"], bid.record["is_snapshot"]) == ("bid", True)
    assert bid.record["event_timestamp"] == 1677093457306
    assert ask.record["size"] == Decimal("0.13")


def test_scales_given_at_construction_win_over_the_class_default() -> None:
    raw = frame(book={"asks": [[12345, 7]], "bids": []}, sequence=1, symbol="sXYZUSDT", type="incremental")
    [out] = PhemexStandardiser({"sXYZUSDT": Scales(price=2, size=1, turnover=8)}).standardise(raw, ATOM)
    assert (out.record["price"], out.record["size"]) == (Decimal("123.45"), Decimal("0.7"))


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"book":{"asks":', "malformed JSON"),
        (b"[1, 2]", "message has no type"),
        (b'{"symbol":"BTCUSD","type":"snapshot"}', "message has no type"),
        (frame(market24h={"symbol": "BTCUSD"}, timestamp=1), "unknown message type 'market24h'"),
        (frame(error={"code": 6001, "message": "invalid argument"}, id=3, result=None),
         "Phemex replied with an error: {'code': 6001"),
        (frame(error=None, id=3, result={"status": "pending"}), "unknown message type 'reply'"),
        (frame(book={"asks": [], "bids": [[1, 2]]}, symbol="sBTCUSDT", type="incremental"),
         "book message lacks field 'sequence'"),
        (frame(book={"asks": [], "bids": [["892376000000", 1]]}, sequence=1, symbol="sBTCUSDT", type="snapshot"),
         "expected an integer, got str"),
        (frame(book={"asks": [], "bids": [[1, 2]]}, sequence=1, symbol="sBTCUSDT", type="delta"),
         "type must be 'snapshot' or 'incremental'"),
        (b'{"orderbook_p":{"asks":[[20702.9,"1"]],"bids":[]},"sequence":1,"symbol":"BTCUSDT","type":"snapshot"}',
         "expected a decimal string, got float"),
        (frame(trades_p=[[1, "Up", "1", "1"]], sequence=1, symbol="BTCUSDT", type="incremental"),
         "trade side must be 'Buy' or 'Sell'"),
        (frame(trades=[[1, "Buy", 1]], sequence=1, symbol="BTCUSD", type="incremental"),
         "trades message has a mistyped field: list index out of range"),
        (frame(kline=[[1590019200, 0, 1, 1, 1, 1, 1, 1, 1]], sequence=1, symbol="BTCUSD", type="snapshot"),
         "kline interval must be a positive number of seconds"),
        (frame(kline_p=[[1666856340, 60, "1", "1", "1", "1", "1", "1", "1"]], sequence=1, symbol="btc",
               type="snapshot"),
         "cannot tell base and quote of Phemex symbol 'btc'"),
    ],
)
def test_bad_input_raises_a_precise_error(raw: bytes, error: str) -> None:
    with pytest.raises(StandardiseError, match=error.replace("(", r"\(").replace("[", r"\[").replace("{", r"\{")):
        PhemexStandardiser().standardise(raw, ATOM)
