"""Names of the normalised on-chain topics, defined once (to join ``l3_atom/topics.py``)."""

from __future__ import annotations

ETHEREUM_BLOCKS = "ethereum_blocks"
ETHEREUM_TRANSACTIONS = "ethereum_transactions"
ETHEREUM_LOGS = "ethereum_logs"
ETHEREUM_TOKEN_TRANSFERS = "ethereum_token_transfers"
DEX_TRADES = "dex_trades"
DEX_LIQUIDITY = "dex_liquidity"

ONCHAIN_TOPICS = (
    ETHEREUM_BLOCKS,
    ETHEREUM_TRANSACTIONS,
    ETHEREUM_LOGS,
    ETHEREUM_TOKEN_TRANSFERS,
    DEX_TRADES,
    DEX_LIQUIDITY,
)
# The raw feed name of block frames: every frame of a chain has key ``<source>_all_block`` (one partition, in order).
BLOCK_FEED = "block"
