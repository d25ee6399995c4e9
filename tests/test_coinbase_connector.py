"""Pure parts of the Coinbase connector: symbol map, keys, frames to the sink, subscribe, signing."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
import pytest

from l3_atom.config import ConnectorSettings
from l3_atom.data_source import REST_CONNECTION_ID, UnknownSymbol
from l3_atom.off_chain.coinbase import Coinbase, signed_fields
from tests.recorded import http_bodies
from tests.sinks import ListSink, NullSink

SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1024)
PRODUCTS = orjson.dumps([
    {"id": "BTC-USD", "base_currency": "BTC", "quote_currency": "USD"},
    {"id": "BTC-USDC", "base_currency": "BTC", "quote_currency": "USDC"},
    {"id": "ETH-USD", "base_currency": "ETH", "quote_currency": "USD"},
]).decode()


def feed(*symbols: str) -> Coinbase:
    return Coinbase(symbols, NullSink(), SETTINGS)


def test_symbol_map_from_the_recorded_products_endpoint(recordings) -> None:
    bodies = http_bodies(recordings / "coinbase")
    body = next(body for url, body in bodies.items() if url.endswith("/products"))
    symbol_map = Coinbase.parse_symbols(body)
    assert symbol_map["BTC.GBP"] == "BTC-GBP"
    assert symbol_map["SKL.USD"] == "SKL-USD"
    assert len(symbol_map) == len(orjson.loads(body))


def test_unknown_symbol_names_near_matches() -> None:
    with pytest.raises(UnknownSymbol, match=r"coinbase does not list BTC.USDT \(did you mean: BTC.USD"):
        feed("BTC.USDT").resolve(Coinbase.parse_symbols(PRODUCTS))


def test_resolve_maps_to_exchange_symbols() -> None:
    assert feed("ETH.USD", "BTC.USD").resolve(Coinbase.parse_symbols(PRODUCTS)) == ["ETH-USD", "BTC-USD"]


@pytest.mark.parametrize(
    ("frame", "key"),
    [
        (b'{"type":"open","product_id":"BTC-USD","sequence":1}', "coinbase_BTC-USD_full"),
        (b'{"type":"match","product_id":"ETH-USD"}', "coinbase_ETH-USD_full"),
        (b'{"type":"ticker","product_id":"BTC-USD"}', "coinbase_BTC-USD_ticker"),
        (b'{"type":"l2update","product_id":"BTC-USD"}', "coinbase_BTC-USD_level2"),
        (b'{"type":"subscriptions","channels":[]}', "coinbase_all_control"),
        (b'{"type":"open", "product_id":', "coinbase_all_unparsed"),
        (b"[1,2,3]", "coinbase_all_unparsed"),
        (b'{"type":["open"],"product_id":"BTC-USD"}', "coinbase_all_unparsed"),
    ],
)
def test_frame_key(frame: bytes, key: str) -> None:
    assert feed("BTC.USD").frame_key(frame) == key


def test_frames_reach_the_sink_with_key_symbol_and_holds_and_oversize_frames_are_dead_lettered() -> None:
    sink = ListSink(strict=False)
    coinbase = Coinbase(["BTC.USD"], sink, SETTINGS)
    coinbase.normalised_of = {"BTC-USD": "BTC.USD"}
    btc, ticker, control = (b'{"type":"open","product_id":"BTC-USD"}', b'{"type":"ticker","product_id":"BTC-USD"}',
                            b'{"type":"subscriptions"}')
    for frame in (btc, ticker, control, btc):
        coinbase._on_frame(frame, 1, "coinbase.0.1")
    # While a REST book is on its way, its key's frames wait and follow it; other keys go on.
    coinbase._held["coinbase_BTC-USD_full"] = []
    coinbase._on_frame(btc, 2, "coinbase.0.1")
    coinbase._on_frame(ticker, 2, "coinbase.0.1")
    coinbase._on_frame(b'{"book":1}', 3, REST_CONNECTION_ID, "coinbase_BTC-USD_full")
    assert coinbase._held.pop("coinbase_BTC-USD_full") == [(btc, 2, "coinbase.0.1")]
    # A new symbol map applies at once (the symbol header is remembered per key, not for ever).
    coinbase.normalised_of = {"BTC-USD": "XBT.USD"}
    coinbase._on_frame(btc, 4, "coinbase.0.2")
    coinbase._on_frame(b'{"type":"open","product_id":"BTC-USD","pad":"' + b" " * SETTINGS.max_frame_bytes + b'"}',
                       5, "coinbase.0.2")
    assert sink.rows == [
        ("coinbase_BTC-USD_full", btc, 1, "coinbase.0.1", "BTC.USD"),
        ("coinbase_BTC-USD_ticker", ticker, 1, "coinbase.0.1", "BTC.USD"),
        ("coinbase_all_control", control, 1, "coinbase.0.1", None),
        ("coinbase_BTC-USD_full", btc, 1, "coinbase.0.1", "BTC.USD"),
        ("coinbase_BTC-USD_ticker", ticker, 2, "coinbase.0.1", "BTC.USD"),
        ("coinbase_BTC-USD_full", b'{"book":1}', 3, REST_CONNECTION_ID, "BTC.USD"),
        ("coinbase_BTC-USD_full", btc, 4, "coinbase.0.2", "XBT.USD"),
    ]
    [(key, _, error, atom_timestamp)] = sink.dead
    assert (key, atom_timestamp) == ("coinbase_all_unparsed", 5) and "exceeds max_frame_bytes" in error


def test_subscribe_is_unsigned_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COINBASE_API_KEY", "COINBASE_API_SECRET", "COINBASE_API_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    [message] = feed("BTC.USD").subscribe_messages(["BTC-USD"])
    assert orjson.loads(message) == {"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["full", "ticker"]}


def test_signature_follows_coinbase_documentation() -> None:
    secret = base64.b64encode(b"secret-bytes").decode()
    env = {"COINBASE_API_KEY": "k", "COINBASE_API_SECRET": secret, "COINBASE_API_PASSPHRASE": "p"}
    fields = signed_fields(env, timestamp=1700000000.5)
    expected = hmac.new(b"secret-bytes", b"1700000000.5GET/users/self/verify", hashlib.sha256).digest()
    assert fields == {
        "signature": base64.b64encode(expected).decode(), "key": "k", "passphrase": "p", "timestamp": "1700000000.5",
    }
