"""Topic names, message keys and header names: defined here once.

These are the contracts consumers rely on (ARCHITECTURE.md): raw topics are
``<source>_raw`` keyed ``<source>_<exchange symbol>_<feed>``; normalised
topics are keyed ``<source>_<normalised symbol>``.
"""

from __future__ import annotations

import re

RAW_SUFFIX = "_raw"
DEAD_LETTER = "dead_letter"

LOB_L3 = "lob_l3"
LOB = "lob"
TRADES_L3 = "trades_l3"
TRADES = "trades"
TICKER = "ticker"
CANDLE = "candle"
FUNDING_RATE = "funding_rate"
OPEN_INTEREST = "open_interest"

# When data is complete and when not, per source, symbol and feed (schema coverage.avsc; see coverage.py).
COVERAGE = "coverage"

# Control topic: the processor asks a source's connector for a fresh book snapshot (schema book_resync.avsc).
BOOK_RESYNC = "book_resync"

# Normalised topics of exchanges (each has a schema in static/schemas/).
NORMALISED_TOPICS = (LOB_L3, LOB, TRADES_L3, TRADES, TICKER, CANDLE, FUNDING_RATE, OPEN_INTEREST)

# On-chain topics (ethereum; DEX trades and liquidity sit beside the exchanges' topics).
ETHEREUM_BLOCKS = "ethereum_blocks"
ETHEREUM_TRANSACTIONS = "ethereum_transactions"
ETHEREUM_LOGS = "ethereum_logs"
ETHEREUM_TOKEN_TRANSFERS = "ethereum_token_transfers"
DEX_TRADES = "dex_trades"
DEX_LIQUIDITY = "dex_liquidity"
ONCHAIN_TOPICS = (ETHEREUM_BLOCKS, ETHEREUM_TRANSACTIONS, ETHEREUM_LOGS, ETHEREUM_TOKEN_TRANSFERS, DEX_TRADES, DEX_LIQUIDITY)

# Kafka headers on raw messages.
ATOM_TIMESTAMP_HEADER = "atom_timestamp"
CONNECTION_HEADER = "connection_id"
# The normalised symbol of a raw frame, where the connector knows it (its symbol map comes from REST).
SYMBOL_HEADER = "symbol"
# Marks a raw frame the connector fetched to fill a gap (value ORIGIN_BACKFILL), not one the stream sent.
ORIGIN_HEADER = "origin"
ORIGIN_BACKFILL = "backfill"

# Key of raw frames that belong to no symbol (acks, errors, heartbeats of a whole connection).
NO_SYMBOL = "all"

_SOURCE_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def check_source_name(source: str) -> str:
    """Source names are lowercase with hyphens, never underscores (they separate key parts)."""
    if not _SOURCE_NAME.match(source):
        raise ValueError(f"source name {source!r} must be lowercase letters and digits joined by hyphens")
    return source


def raw_topic(source: str) -> str:
    return f"{source}{RAW_SUFFIX}"


def source_of_raw_topic(topic: str) -> str:
    if not topic.endswith(RAW_SUFFIX):
        raise ValueError(f"{topic!r} is not a raw topic")
    return topic[: -len(RAW_SUFFIX)]


def raw_key(source: str, exchange_symbol: str | None, feed: str) -> str:
    """Feeds never contain underscores, so the key splits back unambiguously (``split_raw_key``)."""
    return f"{source}_{exchange_symbol or NO_SYMBOL}_{feed}"


def split_raw_key(key: str) -> tuple[str, str, str]:
    """``(source, exchange symbol, feed)`` of a raw key; the symbol may itself contain underscores."""
    source, _, rest = key.partition("_")
    symbol, _, feed = rest.rpartition("_")
    return source, symbol, feed


def normalised_key(source: str, symbol: str) -> str:
    return f"{source}_{symbol}"
