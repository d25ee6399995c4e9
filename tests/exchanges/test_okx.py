"""OKX v5 on frames quoted from OKX's current API documentation (there is no OKX recording).

``tests/fixtures/okx/ws.jsonl`` holds the documentation's examples exactly,
each compacted to one line as OKX sends it: the subscribe acks, the ``books``
snapshot and update, ``trades`` (current shape, with ``count``, ``source`` and
``seqId``), ``tickers``, ``funding-rate`` (BTC-USD-SWAP), ``open-interest``
(BTC-USDT-SWAP, its ack names LTC-USD-SWAP as in the docs), the ``notice``
event and the ``pong`` text on the public connection; the ``candle1D`` ack and
the two candle pushes the English and Chinese pages print on the business
connection.  ``http.jsonl`` answers ``/api/v5/public/instruments``: the SPOT
body is the documentation's example; the docs print none for SWAP or FUTURES,
so those bodies follow the documented fields (linear BTC-USDT-SWAP, inverse
BTC-USD-SWAP, inverse BTC-USD-250926 delivered 2025-09-26 08:00 UTC).

The documentation's ``books`` examples carry ``"checksum": 0``, a placeholder that
is not the CRC32 of their levels: the standardiser finds the mismatch and asks
for a resync, as it must.  Checksums that match are shown on hand-written books
whose checksums this file computes itself from OKX's description.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import Counter
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from l3_atom.avro.codecs import AvroEncoder, decode_wire, parsed_schema
from l3_atom.config import ConnectorSettings
from l3_atom.off_chain.okx import BUSINESS_PATH, PUBLIC_PATH, EndpointGroup, Okx
from l3_atom.stream_processing.standardiser import Output, StandardiseError
from l3_atom.stream_processing.standardisers.okx import OkxStandardiser
from l3_atom.topics import split_raw_key
from tests.exchanges.doc_fixtures import http_bodies, ws_entries, ws_frames
from tests.sinks import NullSink

SOURCE = "okx"
FIXTURE = Path(__file__).parent.parent / "fixtures" / "okx"
SYMBOLS = ["BTC.USDT", "BTC.USD-PERP", "BTC.USDT-PERP"]
ATOM = 1_753_000_000_123_456
SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1 << 20)

TOPIC_OF_CHANNEL = {
    "trades": "trades",
    "tickers": "ticker",
    "funding-rate": "funding_rate",
    "open-interest": "open_interest",
}


# OKX's checksum: the top 25 levels per side, "bidPx:bidSz:askPx:askSz:..." alternating, CRC32 as a signed int.
CHECKSUM_DEPTH = 25
SIGNED_LIMIT = 1 << 31


def okx_crc(bids: dict[str, str], asks: dict[str, str]) -> int:
    """OKX's book checksum, computed here from the price and size strings as sent (independent of project code)."""
    best_bids = sorted(bids.items(), key=lambda level: -Decimal(level[0]))[:CHECKSUM_DEPTH]
    best_asks = sorted(asks.items(), key=lambda level: Decimal(level[0]))[:CHECKSUM_DEPTH]
    parts: list[str] = []
    for index in range(max(len(best_bids), len(best_asks))):
        for levels in (best_bids, best_asks):
            if index < len(levels):
                parts += levels[index]
    crc = zlib.crc32(":".join(parts).encode())
    return crc - 2 * SIGNED_LIMIT if crc >= SIGNED_LIMIT else crc


def checksum_mismatches(folder: Path) -> int:
    """Book messages whose checksum is not the CRC32 of the book after them, from the frames alone."""
    books: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    mismatches = 0
    for raw in ws_frames(folder):
        message = {} if raw == b"pong" else orjson.loads(raw)
        if message.get("arg", {}).get("channel") != "books" or "event" in message:
            continue
        for book in message["data"]:
            if message["action"] == "snapshot":
                books[message["arg"]["instId"]] = ({}, {})
            bids, asks = books[message["arg"]["instId"]]
            for side, levels in ((bids, book["bids"]), (asks, book["asks"])):
                for price, size, *_ in levels:
                    side[price] = size
                    if Decimal(size) == 0:
                        del side[price]
            mismatches += okx_crc(bids, asks) != book["checksum"]
    return mismatches


def expected_counts(folder: Path) -> dict[str, int]:
    """Records per topic, counted from the frames themselves: one per book level, trade, ticker, candle, ..."""
    counts: Counter[str] = Counter()
    for raw in ws_frames(folder):
        if raw == b"pong":
            continue
        message = orjson.loads(raw)
        if "event" in message:
            continue
        channel = message["arg"]["channel"]
        if channel == "books":
            counts["lob"] += sum(len(book["asks"]) + len(book["bids"]) for book in message["data"])
        elif channel.startswith("candle"):
            counts["candle"] += len(message["data"])
        else:
            counts[TOPIC_OF_CHANNEL[channel]] += len(message["data"])
    return dict(counts)


def feed(*symbols: str, **kwargs: object) -> Okx:
    return Okx(symbols, NullSink(), SETTINGS, **kwargs)


def fixture_symbol_map() -> dict[str, str]:
    symbol_map: dict[str, str] = {}
    for body in http_bodies(FIXTURE).values():
        symbol_map.update(Okx.parse_symbols(body))
    return symbol_map


def standardise_as_processor(std: OkxStandardiser, connector: Okx, raw: bytes) -> list[Output]:
    """As the processor sees a frame: with the connector's raw key and symbol header."""
    key = connector.frame_key(raw)
    return std.standardise(raw, ATOM, key, connector.normalised_of.get(split_raw_key(key)[1]))


def assert_fits_schema(out: Output) -> None:
    """Exactly the schema's fields, and an Avro round trip gives the record back unchanged."""
    schema = parsed_schema(out.topic)
    assert set(out.record) == {field["name"] for field in schema["fields"]}
    assert decode_wire(AvroEncoder(out.topic, 1).encode(out.record), {1: schema}) == out.record


# -- the documented traffic ----------------------------------------------------------------------


def test_fixture_is_fully_understood() -> None:
    """Every frame gives records or a named skip; the documented placeholder checksum asks for one resync.

    The snapshot's checksum (0) does not match its levels: the book is out of sync and asks at once; the
    update after it (checksum 0 too) is not checked again while the request is pending (rate-limited).
    """
    connector = feed(*SYMBOLS)
    connector.normalised_of = dict(zip(connector.resolve(fixture_symbol_map()), SYMBOLS, strict=True))
    with_headers, without_headers = OkxStandardiser(), OkxStandardiser()
    produced: Counter[str] = Counter()
    frames = understood = 0
    for raw in ws_frames(FIXTURE):
        frames += 1
        outputs = standardise_as_processor(with_headers, connector, raw)
        assert outputs == without_headers.standardise(raw, ATOM)
        understood += any(out.topic != "book_resync" for out in outputs)
        for out in outputs:
            assert_fits_schema(out)
            produced[out.topic] += 1
    assert frames == 16 == understood + sum(with_headers.skipped.values())
    assert checksum_mismatches(FIXTURE) == 2
    assert dict(produced) == {**expected_counts(FIXTURE), "book_resync": 1}
    assert produced == {"lob": 32, "trades": 1, "ticker": 1, "candle": 2, "funding_rate": 1, "open_interest": 1,
                        "book_resync": 1}
    assert dict(with_headers.skipped) == {
        "subscription ack": 6,
        "notice: connection to close for a service upgrade": 1,
        "pong": 1,
    }
    assert with_headers.book_checks.stats() == {"snapshots": 1, "checksum_mismatches": 1, "resyncs_requested": 1}


def fixture_outputs() -> list[Output]:
    std = OkxStandardiser()
    return [out for raw in ws_frames(FIXTURE) for out in std.standardise(raw, ATOM)]


def test_book_levels_match_the_documented_frames() -> None:
    lob = [out for out in fixture_outputs() if out.topic == "lob"]
    snapshot, update = lob[:16], lob[16:]
    assert snapshot[0] == Output("lob", "okx_BTC.USDT", {
        "exchange": "okx", "symbol": "BTC.USDT", "side": "bid", "price": Decimal("8476.97"), "size": Decimal(256),
        "is_snapshot": True, "sequence": 123456, "prev_sequence": None, "checksum": None,
        "event_timestamp": 1597026383085, "atom_timestamp": ATOM,
    })
    assert [o.record["checksum"] for o in snapshot].count(None) == len(snapshot) - 1
    assert snapshot[-1].record["checksum"] == 0 == update[-1].record["checksum"]
    assert [(o.record["side"], o.record["price"], o.record["size"]) for o in snapshot[7:9]] == [
        ("bid", Decimal(8446), Decimal(95)),
        ("ask", Decimal("8476.98"), Decimal(415)),
    ]
    assert all(o.record["is_snapshot"] is False and o.record["sequence"] == 123457 for o in update)
    assert {o.record["prev_sequence"] for o in update} == {123456}


def test_other_records_match_the_documented_frames() -> None:
    by_topic = {out.topic: out for out in fixture_outputs() if out.topic != "lob"}
    assert by_topic["trades"] == Output("trades", "okx_BTC.USDT", {
        "exchange": "okx", "symbol": "BTC.USDT", "trade_id": "130639474", "price": Decimal("42219.9"),
        "size": Decimal("0.12060306"), "taker_side": "buy", "sequence": 1234, "origin": None, "event_timestamp": 1630048897897,
        "atom_timestamp": ATOM,
    })
    assert by_topic["ticker"].record == {
        "exchange": "okx", "symbol": "BTC.USDT", "bid_price": Decimal("8888.88"), "bid_size": Decimal(5),
        "ask_price": Decimal("9999.99"), "ask_size": Decimal(11), "last_price": Decimal("9999.99"),
        "last_size": Decimal("0.1"), "sequence": None, "event_timestamp": 1597026383085, "atom_timestamp": ATOM,
    }
    assert by_topic["funding_rate"] == Output("funding_rate", "okx_BTC.USD-PERP", {
        "exchange": "okx", "symbol": "BTC.USD-PERP", "rate": Decimal("0.0001875391284828"), "predicted_rate": None,
        "mark_price": None, "index_price": None, "next_funding_timestamp": 1700726400000,
        "event_timestamp": 1700724675402, "atom_timestamp": ATOM,
    })
    assert by_topic["open_interest"] == Output("open_interest", "okx_BTC.USDT-PERP", {
        "exchange": "okx", "symbol": "BTC.USDT-PERP", "open_interest": Decimal("22161.1301000000309"),
        "event_timestamp": 1743041250440, "atom_timestamp": ATOM,
    })


def test_candles_match_the_documented_frames() -> None:
    first, second = [out for out in fixture_outputs() if out.topic == "candle"]
    assert first.record == {
        "exchange": "okx", "symbol": "BTC.USDT", "origin": "exchange", "interval": "1d", "start": 1597026383085,
        "end": 1597026383085 + 86_400_000, "open": Decimal("8533.02"), "high": Decimal("8553.74"),
        "low": Decimal("8527.17"), "close": Decimal("8548.26"), "volume": Decimal(45247),
        "quote_volume": Decimal("5529.5858061"), "trade_count": None, "vwap": None, "first_trade_timestamp": None,
        "last_trade_timestamp": None, "closed": False, "event_timestamp": 1597026383085, "atom_timestamp": ATOM,
    }
    # Spot volume is vol (base currency); volCcy is the quote currency there.
    assert second.record["volume"] == Decimal("3587.41204591")
    assert second.record["quote_volume"] == Decimal("166741046.22583129")


# -- symbols ---------------------------------------------------------------------------------------


def test_symbol_map_from_the_instruments_bodies() -> None:
    symbol_map = fixture_symbol_map()
    assert symbol_map == {
        "BTC.USDT": "BTC-USDT",
        "BTC.USDT-PERP": "BTC-USDT-SWAP",
        "BTC.USD-PERP": "BTC-USD-SWAP",
        "BTC.USD-20250926": "BTC-USD-250926",
    }
    std = OkxStandardiser()
    assert {std.convert_symbol(inst_id): name for name, inst_id in symbol_map.items()} == {
        name: name for name in symbol_map
    }


def test_load_symbol_map_asks_for_each_instrument_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same paths and queries as the fixture's URLs, so the replay server answers them."""
    bodies = http_bodies(FIXTURE)
    asked = []

    class FakeRest:
        async def get_text(self, path: str, params: dict[str, str] | None = None) -> str:
            url = f"{Okx.rest_url}{path}?instType={params['instType']}"
            asked.append(url)
            return bodies[url]

        async def close(self) -> None: ...

    connector = feed(*SYMBOLS)
    monkeypatch.setattr(connector, "rest_client", FakeRest)
    assert asyncio.run(connector.load_symbol_map()) == fixture_symbol_map()
    assert asked == list(bodies)


def test_parse_symbols_leaves_out_what_it_cannot_name() -> None:
    body = orjson.dumps({"code": "0", "msg": "", "data": [
        {"instType": "OPTION", "instId": "BTC-USD-250926-100000-C", "instFamily": "BTC-USD"},
        {"instType": "FUTURES", "instId": "BTC-USD-XPERP", "instFamily": "BTC-USD", "expTime": ""},
        {"instType": "SPOT", "instId": "b-t", "baseCcy": "b", "quoteCcy": "t"},
        {"instType": "SWAP", "instId": "ETH-USDC-SWAP", "instFamily": "ETH-USDC"},
    ]}).decode()
    assert Okx.parse_symbols(body) == {"ETH.USDC-PERP": "ETH-USDC-SWAP"}


def test_parse_symbols_refuses_an_error_answer() -> None:
    with pytest.raises(ValueError, match="okx instruments answered code '51000'"):
        Okx.parse_symbols('{"code":"51000","msg":"Parameter instType error","data":[]}')


@pytest.mark.parametrize(
    ("inst_id", "name"),
    [
        ("BTC-USDT", "BTC.USDT"),
        ("BTC-USDT-SWAP", "BTC.USDT-PERP"),
        ("BTC-USD-SWAP", "BTC.USD-PERP"),
        ("BTC-USD-250926", "BTC.USD-20250926"),
        ("BTC-USD-250926-100000-C", "BTC.USD-20250926-100000-C"),
    ],
)
def test_convert_symbol(inst_id: str, name: str) -> None:
    assert OkxStandardiser().convert_symbol(inst_id) == name


@pytest.mark.parametrize("inst_id", ["BTCUSDT", "BTC-USD-XPERP", "btc-usdt", "BTC-USD-2509", ""])
def test_convert_symbol_refuses_other_shapes(inst_id: str) -> None:
    with pytest.raises(ValueError, match="is not spot, swap, future or option"):
        OkxStandardiser().convert_symbol(inst_id)


# -- connections and subscriptions -------------------------------------------------------------------


def test_candles_get_their_own_connection_on_the_business_endpoint() -> None:
    connector = feed(*SYMBOLS)
    public, business = connector.connection_groups(["BTC-USDT", "BTC-USD-SWAP", "BTC-USDT-SWAP"])
    assert (public.path, public.channels) == (PUBLIC_PATH, ("books", "trades", "tickers", "funding-rate",
                                                            "open-interest"))
    assert (business.path, business.channels) == (BUSINESS_PATH, ("candle1m",))
    assert asyncio.run(connector.connection_url(public)) == "wss://ws.okx.com:8443/ws/v5/public"
    assert asyncio.run(connector.connection_url(business)) == "wss://ws.okx.com:8443/ws/v5/business"


def test_subscribe_messages_are_the_fixture_sends() -> None:
    """One subscribe per connection, funding rate for swaps only, open interest for derivatives only."""
    connector = feed(*SYMBOLS)
    groups = connector.connection_groups(["BTC-USDT", "BTC-USD-SWAP", "BTC-USDT-SWAP"])
    sends = [[e["data"] for e in ws_entries(FIXTURE) if e["t"] == "send" and e["conn"] == conn]
             for conn in ("ws.okx.0", "ws.okx.1")]
    assert [connector.subscribe_messages(group) for group in groups] == sends
    [public] = sends[0]
    args = orjson.loads(public)["args"]
    assert {"channel": "funding-rate", "instId": "BTC-USDT"} not in args
    assert {"channel": "open-interest", "instId": "BTC-USDT"} not in args
    assert {"channel": "funding-rate", "instId": "BTC-USDT-SWAP"} in args


def test_a_replay_url_serves_every_endpoint() -> None:
    """With ``--ws-url`` pointing at the replay server, both connections go there, public one first."""
    connector = feed(*SYMBOLS, ws_url="ws://127.0.0.1:9999/")
    groups = connector.connection_groups(["BTC-USDT", "BTC-USD-SWAP", "BTC-USDT-SWAP"])
    assert [asyncio.run(connector.connection_url(g)) for g in groups] == ["ws://127.0.0.1:9999/"] * 2
    assert len(groups) == len({e["conn"] for e in ws_entries(FIXTURE)})


def test_groups_respect_the_per_connection_limits() -> None:
    swaps = [f"C{i}-USDT-SWAP" for i in range(30)]
    connector = feed()
    groups = connector.connection_groups(swaps)
    assert [(g.path, len(g)) for g in groups] == [(PUBLIC_PATH, 25), (PUBLIC_PATH, 5), (BUSINESS_PATH, 25),
                                                   (BUSINESS_PATH, 5)]
    messages = connector.subscribe_messages(groups[0])
    assert [len(orjson.loads(m)["args"]) for m in messages] == [100, 25]


def test_a_channel_that_applies_to_no_symbol_opens_no_connection() -> None:
    connector = feed(channels=["funding-rate"])
    assert connector.connection_groups(["BTC-USDT"]) == []
    [group] = connector.connection_groups(["BTC-USDT", "ETH-USDT-SWAP"])
    assert isinstance(group, EndpointGroup)
    assert (group, group.path, group.channels) == (["ETH-USDT-SWAP"], PUBLIC_PATH, ("funding-rate",))


@pytest.mark.parametrize(
    ("frame", "key"),
    [
        (b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[]}', "okx_BTC-USDT_books"),
        (b'{"arg":{"channel":"funding-rate","instId":"BTC-USD-SWAP"},"data":[]}', "okx_BTC-USD-SWAP_funding-rate"),
        (b'{"arg":{"channel":"candle1m","instId":"BTC-USDT"},"data":[]}', "okx_BTC-USDT_candle1m"),
        (b'{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"a"}', "okx_BTC-USDT_control"),
        (b'{"event":"notice","code":"64008","msg":"","connId":"a"}', "okx_all_control"),
        (b"pong", "okx_all_pong"),
        (b'{"arg":{"channel":"bad_name","instId":"BTC-USDT"}}', "okx_BTC-USDT_unparsed"),
        (b'{"arg":5}', "okx_all_unparsed"),
        (b'{"arg":{"channel":', "okx_all_unparsed"),
        (b"[1,2]", "okx_all_unparsed"),
        (b"", "okx_all_unparsed"),
    ],
)
def test_frame_key(frame: bytes, key: str) -> None:
    assert feed(*SYMBOLS).frame_key(frame) == key


# -- messages beyond the fixture and bad input -------------------------------------------------------


def push(channel: str, inst_id: str, data: object, **extra: object) -> bytes:
    return orjson.dumps({"arg": {"channel": channel, "instId": inst_id}, **extra, "data": data})


BOOK = {"asks": [["1.5", "2", "0", "1"]], "bids": [], "ts": "1597026383085", "checksum": 0, "prevSeqId": 9,
        "seqId": 10}
TRADE = {"instId": "BTC-USDT", "tradeId": "1", "px": "1.5", "sz": "2", "side": "sell", "ts": "1630048897897"}
CANDLE = ["1597026360000", "1", "2", "0.5", "1.5", "10", "0.1", "15", "1"]


def test_keepalive_book_update_is_a_named_skip() -> None:
    """OKX's documented keepalive: no changes for ~60 s gives an update with empty sides and seqId == prevSeqId."""
    std = OkxStandardiser()
    keepalive = {**BOOK, "asks": [], "bids": [], "prevSeqId": 10}
    assert std.standardise(push("books", "BTC-USDT", [keepalive], action="update"), ATOM) == []
    assert dict(std.skipped) == {"books: update without changes (keepalive)": 1}


def test_derivative_candle_volume_is_in_base_currency_and_closed_from_confirm() -> None:
    [out] = OkxStandardiser().standardise(push("candle4H", "BTC-USDT-SWAP", [CANDLE]), ATOM)
    assert out.record["symbol"] == "BTC.USDT-PERP"
    assert out.record["volume"] == Decimal("0.1")
    assert (out.record["interval"], out.record["end"] - out.record["start"]) == ("4h", 4 * 3_600_000)
    assert out.record["closed"] is True


def test_ticker_without_a_side_of_the_book_has_nulls() -> None:
    tick = {"instId": "BTC-USDT", "last": "1", "lastSz": "0.1", "askPx": "", "askSz": "", "bidPx": "0.9",
            "bidSz": "3", "ts": "1597026383085"}
    [out] = OkxStandardiser().standardise(push("tickers", "BTC-USDT", [tick]), ATOM)
    assert (out.record["ask_price"], out.record["ask_size"]) == (None, None)
    assert out.record["bid_price"] == Decimal("0.9")


def test_trades_without_seq_id_have_no_sequence() -> None:
    """Trades pushed before OKX added ``seqId`` to the channel still read."""
    [out] = OkxStandardiser().standardise(push("trades", "BTC-USDT", [TRADE]), ATOM)
    assert (out.record["sequence"], out.record["taker_side"]) == (None, "sell")


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"arg":{"channel":', "malformed JSON"),
        (b"[1, 2]", "message has no type"),
        (b'"pong"', "message has no type"),
        (push("mark-price", "BTC-USDT-SWAP", [{}]), "unknown message type 'mark-price'"),
        (push("candle1M", "BTC-USDT", [CANDLE]), "unknown message type 'candle1M'"),
        (b'{"event":"login","code":"0"}', "unknown message type 'event:login'"),
        (b'{"id":"1512","event":"error","code":"60012","msg":"Invalid request","connId":"a4d3ae55"}',
         "okx error event, code '60012': 'Invalid request'"),
        (push("books", "BTC-USDT", [BOOK]), "books message lacks field 'action'"),
        (push("books", "BTC-USDT", [BOOK], action="partial"), "books action must be 'snapshot' or 'update'"),
        (push("books", "BTC-USDT", [{**BOOK, "seqId": "10"}], action="update"), "expected an integer, got str"),
        (push("books", "BTC-USDT", [{k: v for k, v in BOOK.items() if k != "ts"}], action="update"),
         "books message lacks field 'ts'"),
        (push("books", "BTC-USDT", [{**BOOK, "asks": [[1.5, "2", "0", "1"]]}], action="update"),
         "expected a decimal string, got float"),
        (push("books", "BTC-USDT", [{**BOOK, "asks": [["1.5"]]}], action="update"),
         "books message has a mistyped field: list index out of range"),
        (push("books", "BTC-USDT", [], action="snapshot"), "data must be a non-empty list"),
        (push("trades", "BTC-USDT", [{**TRADE, "side": "up"}]), "side must be 'buy' or 'sell'"),
        (push("trades", "BTC-USDT", [{**TRADE, "tradeId": 1}]), "tradeId must be a string"),
        (push("trades", "BTC-USDT", [{**TRADE, "ts": 1630048897897}]), "expected a millisecond timestamp string"),
        (push("trades", "BTCUSDT", [TRADE]), "instId 'BTCUSDT' is not spot, swap, future or option"),
        (push("tickers", "BTC-USDT", [{"bidPx": "1"}]), "tickers message lacks field 'bidSz'"),
        (push("candle1m", "BTC-USDT", [CANDLE[:8]]), "a candle has 9 fields, or 7 in the first v5 shape, got 8"),
        (push("candle1m", "BTC-USDT", [[*CANDLE[:8], "2"]]), "candle confirm must be '0' or '1', got '2'"),
        (push("funding-rate", "BTC-USD-SWAP", [{"fundingRate": "abc", "fundingTime": "1", "ts": "1"}]),
         "funding-rate message has a mistyped field"),
        (push("open-interest", "BTC-USD-SWAP", [{"oi": "1", "ts": "1"}]),
         "open-interest message lacks field 'oiCcy'"),
    ],
)
def test_bad_input_raises_a_precise_error(raw: bytes, error: str) -> None:
    with pytest.raises(StandardiseError, match=error.replace("(", r"\(").replace("[", r"\[")):
        OkxStandardiser().standardise(raw, ATOM)


# -- book integrity (hand-written books, checksums computed here) --------------------------------------


class OkxBook:
    """One instrument's book as OKX keeps it, pushing ``books`` messages with their seqIds and checksums."""

    def __init__(self, inst_id: str = "BTC-USDT") -> None:
        self.inst_id = inst_id
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.seq_id = 1000

    def push(self, bids: list[list[str]], asks: list[list[str]], snapshot: bool = False,
             next_seq_id: int | None = None, checksum: int | None = None) -> bytes:
        """The next message: ``bids``/``asks`` are [price, size] changes (size "0" removes a level)."""
        if snapshot:
            self.bids, self.asks = {}, {}
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, size in levels:
                side[price] = size
                if Decimal(size) == 0:
                    del side[price]
        prev_seq_id = -1 if snapshot else self.seq_id
        self.seq_id = self.seq_id + 1 if next_seq_id is None else next_seq_id
        book = {
            "asks": [[p, s, "0", "1"] for p, s in asks], "bids": [[p, s, "0", "1"] for p, s in bids],
            "ts": "1597026383085", "checksum": okx_crc(self.bids, self.asks) if checksum is None else checksum,
            "prevSeqId": prev_seq_id, "seqId": self.seq_id,
        }
        return push("books", self.inst_id, [book], action="snapshot" if snapshot else "update")

    def snapshot(self, levels: int = 30) -> bytes:
        """A book deeper than the checksum's 25 levels, with prices written with trailing zeros."""
        bids = [[f"{100 - i * 0.5:.2f}", f"{1 + i}.000"] for i in range(levels)]
        asks = [[f"{101 + i * 0.5:.2f}", f"{2 + i}.10"] for i in range(levels)]
        return self.push(bids, asks, snapshot=True)


def topics(outputs: list[Output]) -> list[str]:
    return sorted({out.topic for out in outputs})


def resync_requests(outputs: list[Output]) -> list[tuple[str, str]]:
    return [(out.record["reason"], out.record["detail"]) for out in outputs if out.topic == "book_resync"]


def test_a_book_that_follows_okx_verifies_every_checksum() -> None:
    """Removals bring levels from beyond the top 25 into the checksum; every message verifies."""
    okx, std = OkxBook(), OkxStandardiser()
    outputs = std.standardise(okx.snapshot(), ATOM)
    changes = [
        ([["100.00", "0"], ["99.50", "0"]], []),  # two best bids removed: levels 26 and 27 enter the checksum
        ([["100.25", "4.5"]], [["101.00", "0"]]),  # a new best bid; the best ask removed
        ([], [["100.75", "0.0100"], ["102.00", "7.70"]]),  # a new best ask, a size change
        ([["85.50", "3"], ["99.00", "0"]], [["114.50", "1"]]),  # changes deep in the book and beyond the top 25
    ]
    for bids, asks in changes:
        outputs += std.standardise(okx.push(bids, asks), ATOM)
    assert resync_requests(outputs) == []
    assert std.book_checks.stats() == {"snapshots": 1, "checksums_verified": 1 + len(changes)}
    last = [out for out in outputs if out.topic == "lob"][-1].record
    assert (last["checksum"], last["sequence"], last["prev_sequence"]) == (okx_crc(okx.bids, okx.asks), 1005, 1004)


def test_a_wrong_checksum_asks_for_a_resync() -> None:
    okx, std = OkxBook(), OkxStandardiser()
    std.standardise(okx.snapshot(), ATOM)
    expected = okx_crc({**okx.bids, "100.00": "2"}, okx.asks)
    outputs = std.standardise(okx.push([["100.00", "2"]], [], checksum=12345), ATOM)
    assert topics(outputs) == ["book_resync", "lob"]
    assert resync_requests(outputs) == [("checksum", f"expected 12345, computed {expected}")]
    assert std.book_checks.stats()["checksum_mismatches"] == 1
    # The reconnect's snapshot puts the book right again.
    assert resync_requests(std.standardise(okx.snapshot(), ATOM)) == []
    assert std.book_checks.continuity.in_sync("BTC.USDT")


def test_a_gap_in_seq_ids_asks_for_a_resync() -> None:
    okx, std = OkxBook(), OkxStandardiser()
    std.standardise(okx.snapshot(), ATOM)
    okx.push([["100.00", "2"]], [])  # never delivered
    outputs = std.standardise(okx.push([["99.50", "3"]], []), ATOM)
    assert topics(outputs) == ["book_resync", "lob"]
    assert resync_requests(outputs) == [("gap", "expected an update after 1001, got 1002->1003")]


def test_repeats_are_skipped_and_keepalives_are_no_repeat() -> None:
    """OKX's keepalive repeats the last seqId with empty sides: skipped as such, neither duplicate nor gap."""
    okx, std = OkxBook(), OkxStandardiser()
    std.standardise(okx.snapshot(), ATOM)
    update = okx.push([["100.00", "2"]], [])
    assert topics(std.standardise(update, ATOM)) == ["lob"]
    assert std.standardise(update, ATOM) == []
    keepalive = push("books", "BTC-USDT", [{"asks": [], "bids": [], "ts": "1597026443085",
                                            "checksum": okx_crc(okx.bids, okx.asks), "prevSeqId": 1002,
                                            "seqId": 1002}], action="update")
    assert std.standardise(keepalive, ATOM) == []
    assert topics(std.standardise(okx.push([], [["101.00", "1"]]), ATOM)) == ["lob"]
    assert dict(std.skipped) == {"duplicate book update": 1, "books: update without changes (keepalive)": 1}
    assert std.book_checks.stats() == {"snapshots": 1, "duplicates": 1, "checksums_verified": 3}


def test_a_restarted_seq_id_continues_the_book() -> None:
    """After maintenance OKX may restart seqId (below prevSeqId): the book goes on from the new number."""
    okx, std = OkxBook(), OkxStandardiser()
    std.standardise(okx.snapshot(), ATOM)
    restarted = std.standardise(okx.push([["100.00", "2"]], [], next_seq_id=3), ATOM)
    assert [(o.record["prev_sequence"], o.record["sequence"]) for o in restarted] == [(1001, 3)]
    outputs = std.standardise(okx.push([["99.50", "3"]], []), ATOM)
    assert [(o.topic, o.record["prev_sequence"], o.record["sequence"]) for o in outputs] == [("lob", 3, 4)]
    assert std.book_checks.stats() == {"snapshots": 1, "checksums_verified": 3}
