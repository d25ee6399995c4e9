"""Faust Records of the on-chain topics, mirroring ``static/schemas`` field by field.

Kept apart from ``records.py`` until they are merged into its ``RECORDS``;
``tests/onchain/test_schemas.py`` proves they agree with the schemas.  Raw
uint256 quantities (wei, token base units, liquidity) are ``str`` of base-10
digits: they exceed Avro ``long`` and ``decimal(38,18)``.
"""

from __future__ import annotations

from decimal import Decimal

import faust

from l3_atom.on_chain.topics import (
    DEX_LIQUIDITY,
    DEX_TRADES,
    ETHEREUM_BLOCKS,
    ETHEREUM_LOGS,
    ETHEREUM_TOKEN_TRANSFERS,
    ETHEREUM_TRANSACTIONS,
)


class EthereumBlock(faust.Record, serializer="json"):
    exchange: str
    symbol: str
    number: int
    hash: str
    parent_hash: str
    miner: str
    gas_used: int
    gas_limit: int
    base_fee_per_gas: str | None
    transaction_count: int
    size: int | None
    blob_gas_used: int | None
    removed: bool
    event_timestamp: int
    atom_timestamp: int


class EthereumTransaction(faust.Record, serializer="json"):
    exchange: str
    symbol: str
    hash: str
    block_number: int
    block_hash: str
    transaction_index: int
    from_address: str
    to_address: str | None
    value: Decimal | None
    value_wei: str
    gas: int
    gas_price: str | None
    max_fee_per_gas: str | None
    max_priority_fee_per_gas: str | None
    effective_gas_price: str | None
    gas_used: int | None
    success: bool | None
    contract_address: str | None
    nonce: int
    transaction_type: int
    method_id: str | None
    removed: bool
    event_timestamp: int
    atom_timestamp: int


class EthereumLog(faust.Record, serializer="json"):
    exchange: str
    symbol: str
    address: str
    topic0: str | None
    topic1: str | None
    topic2: str | None
    topic3: str | None
    data: str
    block_number: int
    block_hash: str
    transaction_hash: str
    transaction_index: int
    log_index: int
    removed: bool
    event_timestamp: int
    atom_timestamp: int


class TokenTransfer(faust.Record, serializer="json"):
    exchange: str
    symbol: str
    token: str
    from_address: str
    to_address: str
    amount: Decimal | None
    amount_raw: str
    decimals: int | None
    block_number: int
    block_hash: str
    transaction_hash: str
    log_index: int
    removed: bool
    event_timestamp: int
    atom_timestamp: int


class DexTrade(faust.Record, serializer="json"):
    exchange: str
    symbol: str
    trade_id: str
    price: Decimal
    size: Decimal
    quote_size: Decimal
    taker_side: str
    chain: str
    pool: str
    base_token: str
    quote_token: str
    sender: str | None
    recipient: str | None
    block_number: int
    block_hash: str
    transaction_hash: str
    log_index: int
    removed: bool
    event_timestamp: int
    atom_timestamp: int


class DexLiquidity(faust.Record, serializer="json"):
    exchange: str
    symbol: str
    event_type: str
    chain: str
    pool: str
    base_token: str
    quote_token: str
    base_amount: Decimal
    quote_amount: Decimal
    liquidity: str | None
    tick_lower: int | None
    tick_upper: int | None
    sender: str | None
    owner: str | None
    recipient: str | None
    block_number: int
    block_hash: str
    transaction_hash: str
    log_index: int
    removed: bool
    event_timestamp: int
    atom_timestamp: int


# Topic -> Record class, to be merged into ``records.RECORDS``.
ONCHAIN_RECORDS: dict[str, type[faust.Record]] = {
    ETHEREUM_BLOCKS: EthereumBlock,
    ETHEREUM_TRANSACTIONS: EthereumTransaction,
    ETHEREUM_LOGS: EthereumLog,
    ETHEREUM_TOKEN_TRANSFERS: TokenTransfer,
    DEX_TRADES: DexTrade,
    DEX_LIQUIDITY: DexLiquidity,
}
