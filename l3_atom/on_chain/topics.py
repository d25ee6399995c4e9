"""On-chain topic names (defined in ``l3_atom/topics.py``) and the raw feed name of chain frames."""

from __future__ import annotations

from l3_atom.topics import (  # noqa: F401 - re-exported for the on-chain modules
    DEX_LIQUIDITY,
    DEX_TRADES,
    ETHEREUM_BLOCKS,
    ETHEREUM_LOGS,
    ETHEREUM_TOKEN_TRANSFERS,
    ETHEREUM_TRANSACTIONS,
    ONCHAIN_TOPICS,
)

# The raw feed name of block frames: every frame of a chain has key ``<source>_all_block`` (one partition, in order).
BLOCK_FEED = "block"
