"""One product of a venue's symbol list that lacks a field, or has a shape the parser does not know, is
skipped and counted; the rest of the list still counts (issue 15, "messages drift").

Each case is a minimal body in the venue's documented shape holding one good product and one odd one
(a field missing, or not an object at all).
"""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from l3_atom.data_source import SKIPPED_PRODUCTS, UnknownSymbol
from l3_atom.off_chain.binance import Binance
from l3_atom.off_chain.binance_futures import BinanceFutures
from l3_atom.off_chain.bitfinex import Bitfinex
from l3_atom.off_chain.bitstamp import Bitstamp
from l3_atom.off_chain.bybit import Bybit
from l3_atom.off_chain.coinbase import Coinbase
from l3_atom.off_chain.deribit import Deribit
from l3_atom.off_chain.dydx import Dydx
from l3_atom.off_chain.gemini import Gemini
from l3_atom.off_chain.htx import Htx
from l3_atom.off_chain.kraken import Kraken
from l3_atom.off_chain.kraken_futures import KrakenFutures
from l3_atom.off_chain.kucoin import Kucoin
from l3_atom.off_chain.okx import Okx
from l3_atom.off_chain.phemex import Phemex
from tests.exchanges.doc_fixtures import http_bodies

BINANCE_GOOD = {"symbol": "BTCUSDT", "baseAsset": "BTC", "quoteAsset": "USDT"}
FUTURES_GOOD = {**BINANCE_GOOD, "contractType": "PERPETUAL"}
OKX_GOOD = {"instType": "SPOT", "instId": "BTC-USDT", "baseCcy": "BTC", "quoteCcy": "USDT"}
PHEMEX_SPOT = {"symbol": "sBTCUSDT", "type": "Spot", "baseCurrency": "BTC", "quoteCurrency": "USDT",
               "priceScale": 8, "status": "Listed"}
PHEMEX_CURRENCIES = [{"currency": c, "valueScale": 8} for c in ("BTC", "ETH", "USDT")]

# (feed class, body with one readable product and one odd one, the readable product's name -> symbol)
CASES = {
    "binance": (Binance, {"symbols": [BINANCE_GOOD, {"symbol": "ETHUSDT", "baseAsset": "ETH"}]},
                {"BTC.USDT": "BTCUSDT"}),
    "binance-futures": (BinanceFutures, {"symbols": [FUTURES_GOOD, {"symbol": "X", "contractType": "CURRENT_QUARTER"}]},
                        {"BTC.USDT-PERP": "BTCUSDT"}),
    "bitfinex": (Bitfinex, [["BTCUSD", 42]], {"BTC.USD": "tBTCUSD"}),
    "bitstamp": (Bitstamp, [{"name": "BTC/USD", "url_symbol": "btcusd"}, {"url_symbol": "ethusd"}],
                 {"BTC.USD": "btcusd"}),
    "bybit": (Bybit, {"retCode": 0, "result": {"category": "spot", "list": [
        {"symbol": "BTCUSDT", "baseCoin": "BTC", "quoteCoin": "USDT"}, {"symbol": "ETHUSDT", "baseCoin": "ETH"}]}},
              {"BTC.USDT": "spot/BTCUSDT"}),
    "coinbase": (Coinbase, [{"id": "BTC-USD", "base_currency": "BTC", "quote_currency": "USD"},
                            {"base_currency": "ETH", "quote_currency": "USD"}], {"BTC.USD": "BTC-USD"}),
    "deribit": (Deribit, {"result": [{"instrument_name": "BTC-PERPETUAL"}, {"kind": "future"}]},
                {"BTC.USD-PERP": "BTC-PERPETUAL"}),
    "dydx": (Dydx, {"markets": ["BTC-USD", 7]}, {"BTC.USD-PERP": "BTC-USD"}),
    "gemini": (Gemini, [{"symbol": "btcusd", "base_currency": "BTC", "quote_currency": "USD"},
                        {"symbol": "ethusd", "base_currency": "ETH"}], {"BTC.USD": "BTCUSD"}),
    "htx": (Htx, {"status": "ok", "data": [{"base-currency": "btc", "quote-currency": "usdt", "symbol": "btcusdt"},
                                           {"base-currency": "eth", "symbol": "ethusdt"}]}, {"BTC.USDT": "btcusdt"}),
    "kraken": (Kraken, {"error": [], "result": {
        "XXBTZUSD": {"wsname": "XBT/USD", "base": "XXBT", "quote": "ZUSD"},
        "XETHZUSD": {"wsname": "ETH/USD", "quote": "ZUSD"}}}, {"BTC.USD": "BTC/USD"}),
    "kraken-futures": (KrakenFutures, {"result": "success", "instruments": [
        {"symbol": "PF_XBTUSD", "tradeable": True}, {"tradeable": True}]}, {"BTC.USD-PERP": "PF_XBTUSD"}),
    "kucoin": (Kucoin, {"code": "200000", "data": [
        {"symbol": "BTC-USDT", "baseCurrency": "BTC", "quoteCurrency": "USDT"}, {"symbol": "ETH-USDT"}]},
               {"BTC.USDT": "BTC-USDT"}),
    "okx": (Okx, {"code": "0", "data": [OKX_GOOD, {"instType": "SPOT", "baseCcy": "ETH", "quoteCcy": "USDT"}]},
            {"BTC.USDT": "BTC-USDT"}),
    "phemex": (Phemex, {"data": {"currencies": PHEMEX_CURRENCIES, "products": [
        PHEMEX_SPOT, {key: value for key, value in PHEMEX_SPOT.items() if key != "priceScale"} | {
            "symbol": "sETHUSDT", "baseCurrency": "ETH"}]}}, {"BTC.USDT": "sBTCUSDT"}),
}


@pytest.mark.parametrize("source", sorted(CASES))
def test_an_odd_product_is_skipped_and_counted_never_failing_the_list(
    source: str, caplog: pytest.LogCaptureFixture
) -> None:
    feed, body, expected = CASES[source]
    before = SKIPPED_PRODUCTS[feed.name]
    with caplog.at_level(logging.WARNING, logger="l3_atom.data_source"):
        assert feed.parse_symbols(orjson.dumps(body).decode()) == expected
    assert SKIPPED_PRODUCTS[feed.name] == before + 1
    assert feed.name in caplog.text


def test_a_fault_is_logged_once_however_many_products_share_it(caplog: pytest.LogCaptureFixture) -> None:
    odd = [{"symbol": f"X{i}USDT", "baseAsset": f"X{i}", "quoteAssetRenamed": "USDT"} for i in range(50)]
    body = orjson.dumps({"symbols": [BINANCE_GOOD, *odd]}).decode()
    before = SKIPPED_PRODUCTS["binance"]
    with caplog.at_level(logging.WARNING, logger="l3_atom.data_source"):
        Binance.parse_symbols(body)
        Binance.parse_symbols(body)
    assert SKIPPED_PRODUCTS["binance"] == before + 100
    assert sum("'quoteAsset'" in r.getMessage() for r in caplog.records) <= 1


def test_phemex_spot_product_without_price_scale_is_skipped_and_reported_if_requested() -> None:
    """The rest of the list streams; a requested product that was skipped is an unknown symbol, named."""
    body = orjson.dumps(CASES["phemex"][1]).decode()
    symbol_map = Phemex(["BTC.USDT"], None, None).learn_products(body)
    assert symbol_map == {"BTC.USDT": "sBTCUSDT"}
    with pytest.raises(UnknownSymbol, match="ETH.USDT"):
        Phemex(["ETH.USDT"], None, None).resolve(symbol_map)


PHEMEX_2022 = Path(__file__).parent.parent / "fixtures" / "phemex" / "products-2022"


def test_phemex_2022_product_list_keeps_the_contract_and_skips_the_spot_product() -> None:
    body = http_bodies(PHEMEX_2022)["https://api.phemex.com/public/products"]
    before = SKIPPED_PRODUCTS["phemex"]
    assert Phemex([], None, None).learn_products(body) == {"BTC.USD-PERP": "BTCUSD"}
    assert SKIPPED_PRODUCTS["phemex"] == before + 1
