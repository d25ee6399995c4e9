"""The registry of sources: one entry per source, naming its two classes.

Adding a source is a connector file (``off_chain/<source>.py``), a
standardiser file (``stream_processing/standardisers/<source>.py``) and one
line here; no generic code changes (ARCHITECTURE.md, principle 3).  Classes
are named by import path so that a connector never imports every source's
standardiser and vice versa.
"""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING, NamedTuple

from l3_atom.errors import UserError
from l3_atom.topics import check_source_name

if TYPE_CHECKING:
    from l3_atom.data_source import DataFeed
    from l3_atom.stream_processing.standardiser import Standardiser


class SourceEntry(NamedTuple):
    connector: str
    standardiser: str


def _entry_for(module: str, cls: str) -> SourceEntry:
    """The conventional places: ``off_chain/<module>.py:<cls>`` and its ``<cls>Standardiser``."""
    return SourceEntry(
        f"l3_atom.off_chain.{module}:{cls}",
        f"l3_atom.stream_processing.standardisers.{module}:{cls}Standardiser",
    )


SOURCES: dict[str, SourceEntry] = {
    "coinbase": _entry_for("coinbase", "Coinbase"),
    "binance": _entry_for("binance", "Binance"),
    "binance-futures": _entry_for("binance_futures", "BinanceFutures"),
    "bybit": _entry_for("bybit", "Bybit"),
    "kraken": _entry_for("kraken", "Kraken"),
    "kraken-futures": _entry_for("kraken_futures", "KrakenFutures"),
    "bitfinex": _entry_for("bitfinex", "Bitfinex"),
    "deribit": _entry_for("deribit", "Deribit"),
    "gemini": _entry_for("gemini", "Gemini"),
    "phemex": _entry_for("phemex", "Phemex"),
    "dydx": _entry_for("dydx", "Dydx"),
    "okx": _entry_for("okx", "Okx"),
    "kucoin": _entry_for("kucoin", "Kucoin"),
    "bitstamp": _entry_for("bitstamp", "Bitstamp"),
    "htx": _entry_for("htx", "Htx"),
    "ethereum": SourceEntry(
        "l3_atom.on_chain.ethereum:Ethereum",
        "l3_atom.stream_processing.standardisers.ethereum:EthereumStandardiser",
    ),
}

for _name in SOURCES:
    check_source_name(_name)


class UnknownSource(UserError):
    """A source id that is not in the registry."""


def _entry(source: str) -> SourceEntry:
    try:
        return SOURCES[source]
    except KeyError:
        near = difflib.get_close_matches(source, SOURCES, n=3)
        hint = f" (did you mean: {', '.join(near)}?)" if near else ""
        raise UnknownSource(f"unknown source {source!r}{hint}; known: {', '.join(sorted(SOURCES))}") from None


def _load(path: str) -> type:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def connector_class(source: str) -> type[DataFeed]:
    return _load(_entry(source).connector)


def standardiser_class(source: str) -> type[Standardiser]:
    return _load(_entry(source).standardiser)
