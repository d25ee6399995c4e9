"""Ethereum block frames -> ``ethereum_blocks``, ``ethereum_transactions``, ``ethereum_logs``,
``ethereum_token_transfers``, ``dex_trades`` and ``dex_liquidity``.

One raw frame is one block (``l3_atom/on_chain/chain_feed.py``): the node's
block with full transactions, its receipts (which hold the logs), and the
token and pool metadata the connector read for the contracts those logs name.
So this stays pure: amounts are scaled with the archived ``decimals``, pools
are named by their archived ``token0``/``token1``/``factory`` or ``coins``.
A frame with ``"removed": true`` (a reorg replaced the block) gives the very
same records with ``removed = true``.

Decoded events: ERC-20 ``Transfer``; Uniswap v2 and SushiSwap ``Swap``,
``Mint``, ``Burn`` (the pair's factory tells them apart); Uniswap v3 ``Swap``,
``Mint``, ``Burn``; Curve ``TokenExchange``.  Trades are named ``BASE.QUOTE``
like exchange trades, with the more quote-like token as the quote.  A log that
carries such a signature but cannot be such an event (topic count, data
length, an emitter without tokens, unknown decimals) is skipped with a counted
reason; it is in ``ethereum_logs`` all the same.

Numbers: counts and heights are ``long``; raw uint256 quantities (wei, token
base units, v3 liquidity) are strings of base-10 digits, since they exceed
both ``long`` and ``decimal(38,18)``; token amounts scaled by their decimals
are exact ``decimal(38,18)``; a price is ``quote / base`` rounded half-even to
18 places.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Any, ClassVar

from l3_atom.on_chain import abi
from l3_atom.on_chain.abi import address_word, quantity, signed
from l3_atom.on_chain.topics import (
    DEX_LIQUIDITY,
    DEX_TRADES,
    ETHEREUM_BLOCKS,
    ETHEREUM_LOGS,
    ETHEREUM_TOKEN_TRANSFERS,
    ETHEREUM_TRANSACTIONS,
    ONCHAIN_TOPICS,
)
from l3_atom.stream_processing.standardiser import Output, Standardiser
from l3_atom.topics import normalised_key

SOURCE = "ethereum"
NATIVE_SYMBOL = "ETH"
BLOCK_MESSAGE = "block"
WEI_DECIMALS = 18
MS_PER_S = 1000
# Avro decimal(38,18): 18 places after the point, 20 before.
SCALE = 18
INTEGER_DIGITS = 20
QUANTUM = Decimal(1).scaleb(-SCALE)
# Enough digits that a quotient of two decimal(38,18) amounts is exact to 18 places before rounding.
PRICE_CONTEXT = Context(prec=80, rounding=ROUND_HALF_EVEN)
LOG_TOPICS = 4
METHOD_ID_HEX = len("0x12345678")
ASSET_CODE_MAX = 32
NOT_ASSET_CODE = re.compile(r"[^A-Z0-9]")

UNISWAP_V2_FACTORY = "0x5c69bee701ef814a2b6a3edd4b1652cb9cc5aa6f"
SUSHISWAP_FACTORY = "0xc0aee478e3658e2610c5f7a4a2e1777ce9e4f2ac"
UNISWAP_V3_FACTORY = "0x1f98431c8ad98523631ae4a59f267346ea31f984"
V2_EXCHANGES = {UNISWAP_V2_FACTORY: "uniswap-v2", SUSHISWAP_FACTORY: "sushiswap"}
V3_EXCHANGES = {UNISWAP_V3_FACTORY: "uniswap-v3"}
# Pools with these events whose factory is another one (forks, or pools deployed by hand).
V2_FORK = "uniswap-v2-fork"
V3_FORK = "uniswap-v3-fork"
CURVE = "curve"
# Assets that quote others, most quote-like first: a pair's quote is the one ranked first here
# (stablecoins, then BTC, then ETH, as exchanges list ETH/BTC and ETH/USDT).
QUOTE_PREFERENCE = (
    "USDC", "USDT", "DAI", "USDS", "PYUSD", "FRAX", "LUSD", "GUSD", "USDP", "TUSD", "BUSD", "USDE", "CRVUSD",
    "GHO", "EURC", "WBTC", "WETH", "ETH",
)  # fmt: skip
QUOTE_RANK = {code: rank for rank, code in enumerate(QUOTE_PREFERENCE)}

BUY, SELL = "buy", "sell"
MINT, BURN = "mint", "burn"
# Data words of the events decoded here.
V2_SWAP_WORDS, V2_LIQUIDITY_WORDS = 4, 2
V3_SWAP_WORDS, V3_MINT_WORDS, V3_BURN_WORDS = 5, 4, 3
TRANSFER_WORDS = 1
# Uniswap v3 ticks are int24.
TICK_LIMIT = 1 << 23

NOT_A_POOL = "pool event from a contract with no token0/token1 (or coins): not a DEX pool"
UNKNOWN_AMOUNT = "DEX event with unknown token decimals or an amount beyond decimal(38,18)"
NOT_A_SWAP = "swap whose tokens did not move in opposite directions"
PRICE_OUT_OF_RANGE = "swap price beyond decimal(38,18)"
NOT_ERC20 = "Transfer with other than 3 topics (ERC-721 or non-standard): not an ERC-20 transfer"


class MalformedEvent(ValueError):
    """A log with a known signature whose topics or data do not have that event's layout."""


def exact_words(data: str, count: int) -> list[int]:
    values = abi.words(data)
    if len(values) != count:
        raise MalformedEvent(f"expected {count} data words, got {len(values)}")
    return values


def exact_topics(topics: list[str], count: int) -> list[str]:
    if len(topics) != count:
        raise MalformedEvent(f"expected {count} topics, got {len(topics)}")
    return topics


def tick(topic: str) -> int:
    value = signed(int(topic, 16))
    if not -TICK_LIMIT <= value < TICK_LIMIT:
        raise MalformedEvent(f"tick {value} is not an int24")
    return value


def asset_code(address: str, symbol: Any) -> str:
    """A token's symbol as an asset code of the symbol grammar (``[A-Z0-9]+``), else its address's hex digits."""
    code = NOT_ASSET_CODE.sub("", symbol.upper()) if isinstance(symbol, str) else ""
    return code if code and len(code) <= ASSET_CODE_MAX else address[len(abi.HEX_PREFIX) :].upper()


def fits(amount: Decimal) -> bool:
    """True when ``amount`` is exactly representable in decimal(38,18)."""
    return amount.as_tuple().exponent >= -SCALE and amount.adjusted() < INTEGER_DIGITS


def scaled(raw: int, decimals: int | None) -> Decimal | None:
    """``raw / 10**decimals`` exactly (from a string: no context rounding), or None if it does not fit."""
    if decimals is None:
        return None
    amount = Decimal(f"{raw}E-{decimals}")
    return amount if fits(amount) else None


def price_of(quote_size: Decimal, size: Decimal) -> Decimal | None:
    with localcontext(PRICE_CONTEXT):
        price = (quote_size / size).quantize(QUANTUM)
    return price if fits(price) else None


def optional_quantity(value: Any) -> int | None:
    return None if value is None else quantity(value)


def optional_wei(value: Any) -> str | None:
    return None if value is None else str(quantity(value))


def lower(value: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a hex string, got {value!r}")
    return value.lower()


def optional_lower(value: Any) -> str | None:
    return None if value is None else lower(value)


def rpc_result(response: Any, what: str) -> Any:
    """The ``result`` of an archived JSON-RPC response."""
    if response.get("error") is not None:
        raise ValueError(f"{what} is a node error: {response['error']}")
    result = response["result"]
    if result is None:
        raise ValueError(f"{what} has no result")
    return result


def receipts_by_transaction(bodies: list[Any]) -> dict[str, dict[str, Any]]:
    """Receipts from ``eth_getBlockReceipts`` responses or batches of ``eth_getTransactionReceipt`` ones."""
    receipts: list[dict[str, Any]] = []
    for body in bodies:
        if isinstance(body, list):
            receipts += [rpc_result(response, "a receipt response") for response in body]
        else:
            receipts += rpc_result(body, "a block receipts response")
    return {receipt["transactionHash"]: receipt for receipt in receipts}


@dataclass(frozen=True)
class Token:
    address: str
    code: str
    decimals: int | None


@dataclass(frozen=True)
class Pool:
    """A pool and two of its tokens in a fixed order (token0/token1, or Curve coins by index)."""

    address: str
    exchange: str
    token_a: Token
    token_b: Token

    def oriented(self, amount_a: int, amount_b: int) -> tuple[Token, Token, int, int]:
        """(base, quote, base amount, quote amount): the quote is the more quote-like token, else ``token_b``."""
        rank_a = QUOTE_RANK.get(self.token_a.code, len(QUOTE_RANK))
        rank_b = QUOTE_RANK.get(self.token_b.code, len(QUOTE_RANK))
        if rank_a < rank_b:
            return self.token_b, self.token_a, amount_b, amount_a
        return self.token_a, self.token_b, amount_a, amount_b


@dataclass(frozen=True)
class Block:
    """What every record of one block shares."""

    number: int
    hash: str
    event_timestamp: int
    removed: bool
    atom_timestamp: int
    tokens: dict[str, Any]
    pools: dict[str, Any]

    def tail(self) -> dict[str, Any]:
        return {"removed": self.removed, "event_timestamp": self.event_timestamp, "atom_timestamp": self.atom_timestamp}

    def log_fields(self, log: dict[str, Any]) -> dict[str, Any]:
        return {
            "block_number": self.number,
            "block_hash": self.hash,
            "transaction_hash": log["transactionHash"],
            "log_index": quantity(log["logIndex"]),
            **self.tail(),
        }

    def token(self, address: str) -> Token:
        info = self.tokens.get(address) or {}
        decimals = info.get("decimals")
        known = type(decimals) is int and 0 <= decimals <= abi.MAX_DECIMALS
        return Token(address, asset_code(address, info.get("symbol")), decimals if known else None)


EventHandler = Callable[[dict[str, Any], list[str], Block], list[Output]]


class EthereumStandardiser(Standardiser):
    source = SOURCE
    topics = ONCHAIN_TOPICS
    handlers: ClassVar[dict[str, str]] = {BLOCK_MESSAGE: "_block"}
    # topic0 -> method decoding that event.
    events: ClassVar[dict[str, str]] = {
        abi.ERC20_TRANSFER: "_transfer",
        abi.UNISWAP_V2_SWAP: "_v2_swap",
        abi.UNISWAP_V2_MINT: "_v2_mint",
        abi.UNISWAP_V2_BURN: "_v2_burn",
        abi.UNISWAP_V3_SWAP: "_v3_swap",
        abi.UNISWAP_V3_MINT: "_v3_mint",
        abi.UNISWAP_V3_BURN: "_v3_burn",
        abi.CURVE_TOKEN_EXCHANGE: "_curve_exchange",
        abi.CURVE_TOKEN_EXCHANGE_V2: "_curve_exchange",
    }

    def __init__(self) -> None:
        super().__init__()
        self.chain_key = normalised_key(SOURCE, NATIVE_SYMBOL)
        self._events: dict[str, EventHandler] = {topic: getattr(self, name) for topic, name in self.events.items()}

    def message_type(self, message: Any) -> str:
        if BLOCK_MESSAGE not in message:
            raise KeyError(BLOCK_MESSAGE)
        return BLOCK_MESSAGE

    # -- chain records ---------------------------------------------------------------------

    def _block(self, message: dict[str, Any], atom_timestamp: int) -> list[Output]:
        removed = message["removed"]
        if type(removed) is not bool:
            raise TypeError(f"removed must be true or false, got {removed!r}")
        block = rpc_result(message["block"], "the block response")
        receipts = receipts_by_transaction(message["receipts"])
        metadata = message["metadata"]
        context = Block(
            quantity(block["number"]),
            block["hash"],
            quantity(block["timestamp"]) * MS_PER_S,
            removed,
            atom_timestamp,
            metadata["tokens"],
            metadata["pools"],
        )
        outputs = [self._block_record(block, context)]
        outputs += [self._transaction(tx, receipts.get(tx["hash"]), context) for tx in block["transactions"]]
        logs = [log for receipt in receipts.values() for log in receipt["logs"]]
        logs.sort(key=lambda log: quantity(log["logIndex"]))
        for log in logs:
            outputs.append(self._log(log, context))
            outputs += self._event(log, context)
        return outputs

    def _block_record(self, block: dict[str, Any], context: Block) -> Output:
        size = block.get("size")
        record = {
            "exchange": SOURCE,
            "symbol": NATIVE_SYMBOL,
            "number": context.number,
            "hash": context.hash,
            "parent_hash": block["parentHash"],
            "miner": lower(block["miner"]),
            "gas_used": quantity(block["gasUsed"]),
            "gas_limit": quantity(block["gasLimit"]),
            "base_fee_per_gas": optional_wei(block.get("baseFeePerGas")),
            "transaction_count": len(block["transactions"]),
            "size": optional_quantity(size),
            "blob_gas_used": optional_quantity(block.get("blobGasUsed")),
            **context.tail(),
        }
        return Output(ETHEREUM_BLOCKS, self.chain_key, record)

    def _transaction(self, tx: dict[str, Any], receipt: dict[str, Any] | None, context: Block) -> Output:
        value = quantity(tx["value"])
        call_data = tx.get("input") or ""
        receipt = receipt or {}
        status = receipt.get("status")
        record = {
            "exchange": SOURCE,
            "symbol": NATIVE_SYMBOL,
            "hash": tx["hash"],
            "block_number": context.number,
            "block_hash": context.hash,
            "transaction_index": quantity(tx["transactionIndex"]),
            "from_address": lower(tx["from"]),
            "to_address": optional_lower(tx.get("to")),
            "value": scaled(value, WEI_DECIMALS),
            "value_wei": str(value),
            "gas": quantity(tx["gas"]),
            "gas_price": optional_wei(tx.get("gasPrice")),
            "max_fee_per_gas": optional_wei(tx.get("maxFeePerGas")),
            "max_priority_fee_per_gas": optional_wei(tx.get("maxPriorityFeePerGas")),
            "effective_gas_price": optional_wei(receipt.get("effectiveGasPrice")),
            "gas_used": optional_quantity(receipt.get("gasUsed")),
            "success": None if status is None else quantity(status) == 1,
            "contract_address": optional_lower(receipt.get("contractAddress")),
            "nonce": quantity(tx["nonce"]),
            "transaction_type": quantity(tx.get("type", "0x0")),
            "method_id": call_data[:METHOD_ID_HEX] if len(call_data) >= METHOD_ID_HEX else None,
            **context.tail(),
        }
        return Output(ETHEREUM_TRANSACTIONS, self.chain_key, record)

    def _log(self, log: dict[str, Any], context: Block) -> Output:
        topics = log["topics"]
        if len(topics) > LOG_TOPICS:
            raise ValueError(f"a log has at most {LOG_TOPICS} topics, got {len(topics)}")
        padded = [*topics, *([None] * (LOG_TOPICS - len(topics)))]
        record = {
            "exchange": SOURCE,
            "symbol": NATIVE_SYMBOL,
            "address": lower(log["address"]),
            "topic0": padded[0],
            "topic1": padded[1],
            "topic2": padded[2],
            "topic3": padded[3],
            "data": log["data"],
            "transaction_index": quantity(log["transactionIndex"]),
            **context.log_fields(log),
        }
        return Output(ETHEREUM_LOGS, self.chain_key, record)

    # -- decoded events --------------------------------------------------------------------

    def _event(self, log: dict[str, Any], context: Block) -> list[Output]:
        topics = log["topics"]
        handler = self._events.get(topics[0]) if topics else None
        if handler is None:
            return []
        try:
            return handler(log, topics, context)
        except (ValueError, IndexError) as exc:
            return self.skip(f"{self.events[topics[0]].strip('_')}: undecodable log ({type(exc).__name__})")

    def _transfer(self, log: dict[str, Any], topics: list[str], context: Block) -> list[Output]:
        if len(topics) != abi.ERC20_TRANSFER_TOPICS:
            return self.skip(NOT_ERC20)
        [raw] = exact_words(log["data"], TRANSFER_WORDS)
        token = context.token(lower(log["address"]))
        record = {
            "exchange": SOURCE,
            "symbol": token.code,
            "token": token.address,
            "from_address": address_word(topics[1]),
            "to_address": address_word(topics[2]),
            "amount": scaled(raw, token.decimals),
            "amount_raw": str(raw),
            "decimals": token.decimals,
            **context.log_fields(log),
        }
        return [Output(ETHEREUM_TOKEN_TRANSFERS, normalised_key(SOURCE, token.code), record)]

    def _pair(self, log: dict[str, Any], context: Block, exchanges: dict[str, str], fork: str) -> Pool | None:
        """The Uniswap-style pool that emitted ``log``, named by its factory; None if it is not one."""
        address = lower(log["address"])
        info = context.pools.get(address) or {}
        token0, token1 = info.get("token0"), info.get("token1")
        if not token0 or not token1:
            return None
        exchange = exchanges.get(info.get("factory") or "", fork)
        return Pool(address, exchange, context.token(token0), context.token(token1))

    def _v2_swap(self, log: dict[str, Any], topics: list[str], context: Block) -> list[Output]:
        _, sender, to = exact_topics(topics, 3)
        amount0_in, amount1_in, amount0_out, amount1_out = exact_words(log["data"], V2_SWAP_WORDS)
        pool = self._pair(log, context, V2_EXCHANGES, V2_FORK)
        if pool is None:
            return self.skip(NOT_A_POOL)
        return self._trade(log, context, pool, amount0_in - amount0_out, amount1_in - amount1_out, sender, to)

    def _v3_swap(self, log: dict[str, Any], topics: list[str], context: Block) -> list[Output]:
        _, sender, recipient = exact_topics(topics, 3)
        amount0, amount1, _, _, _ = exact_words(log["data"], V3_SWAP_WORDS)
        pool = self._pair(log, context, V3_EXCHANGES, V3_FORK)
        if pool is None:
            return self.skip(NOT_A_POOL)
        return self._trade(log, context, pool, signed(amount0), signed(amount1), sender, recipient)

    def _curve_exchange(self, log: dict[str, Any], topics: list[str], context: Block) -> list[Output]:
        _, buyer = exact_topics(topics, 2)
        sold_id, tokens_sold, bought_id, tokens_bought = exact_words(log["data"], abi.CURVE_WORDS)
        address = lower(log["address"])
        coins = (context.pools.get(address) or {}).get("coins") or {}
        sold, bought = coins.get(str(sold_id)), coins.get(str(bought_id))
        if not sold or not bought:
            return self.skip(NOT_A_POOL)
        # Coins in index order, so that a pool's symbol does not depend on the trade's direction.
        first, second = sorted(((sold_id, sold, tokens_sold), (bought_id, bought, -tokens_bought)))
        pool = Pool(address, CURVE, context.token(first[1]), context.token(second[1]))
        return self._trade(log, context, pool, first[2], second[2], buyer, None)

    def _trade(
        self,
        log: dict[str, Any],
        context: Block,
        pool: Pool,
        into_pool_a: int,
        into_pool_b: int,
        sender: str | None,
        recipient: str | None,
    ) -> list[Output]:
        """A dex_trades record from what each token's balance in the pool changed by."""
        base, quote, base_in, quote_in = pool.oriented(into_pool_a, into_pool_b)
        if base_in == 0 or quote_in == 0 or (base_in > 0) == (quote_in > 0):
            return self.skip(NOT_A_SWAP)
        size, quote_size = scaled(abs(base_in), base.decimals), scaled(abs(quote_in), quote.decimals)
        if size is None or quote_size is None:
            return self.skip(UNKNOWN_AMOUNT)
        price = price_of(quote_size, size)
        if price is None:
            return self.skip(PRICE_OUT_OF_RANGE)
        symbol = f"{base.code}.{quote.code}"
        fields = context.log_fields(log)
        record = {
            "exchange": pool.exchange,
            "symbol": symbol,
            "trade_id": f"{fields['transaction_hash']}-{fields['log_index']}",
            "price": price,
            "size": size,
            "quote_size": quote_size,
            # The taker paid the base into the pool: a sell; took it out: a buy.
            "taker_side": SELL if base_in > 0 else BUY,
            "chain": SOURCE,
            "pool": pool.address,
            "base_token": base.address,
            "quote_token": quote.address,
            "sender": None if sender is None else address_word(sender),
            "recipient": None if recipient is None else address_word(recipient),
            **fields,
        }
        return [Output(DEX_TRADES, normalised_key(pool.exchange, symbol), record)]

    def _v2_mint(self, log: dict[str, Any], topics: list[str], context: Block) -> list[Output]:
        _, sender = exact_topics(topics, 2)
        amount0, amount1 = exact_words(log["data"], V2_LIQUIDITY_WORDS)
        return self._liquidity(log, context, V2_EXCHANGES, V2_FORK, MINT, amount0, amount1, sender=sender)

    def _v2_burn(self, log: dict[str, Any], topics: list[str], context: Block) -> list[Output]:
        _, sender, to = exact_topics(topics, 3)
        amount0, amount1 = exact_words(log["data"], V2_LIQUIDITY_WORDS)
        return self._liquidity(log, context, V2_EXCHANGES, V2_FORK, BURN, amount0, amount1, sender=sender, recipient=to)

    def _v3_mint(self, log: dict[str, Any], topics: list[str], context: Block) -> list[Output]:
        _, owner, tick_lower, tick_upper = exact_topics(topics, 4)
        sender, liquidity, amount0, amount1 = exact_words(log["data"], V3_MINT_WORDS)
        position = {"owner": owner, "tick_lower": tick_lower, "tick_upper": tick_upper, "liquidity": liquidity}
        return self._liquidity(log, context, V3_EXCHANGES, V3_FORK, MINT, amount0, amount1, sender=sender, **position)

    def _v3_burn(self, log: dict[str, Any], topics: list[str], context: Block) -> list[Output]:
        _, owner, tick_lower, tick_upper = exact_topics(topics, 4)
        liquidity, amount0, amount1 = exact_words(log["data"], V3_BURN_WORDS)
        position = {"owner": owner, "tick_lower": tick_lower, "tick_upper": tick_upper, "liquidity": liquidity}
        # A v3 Burn is called by the position's owner itself.
        return self._liquidity(log, context, V3_EXCHANGES, V3_FORK, BURN, amount0, amount1, sender=owner, **position)

    def _liquidity(
        self,
        log: dict[str, Any],
        context: Block,
        exchanges: dict[str, str],
        fork: str,
        event_type: str,
        amount0: int,
        amount1: int,
        *,
        sender: str | int,
        owner: str | None = None,
        recipient: str | None = None,
        tick_lower: str | None = None,
        tick_upper: str | None = None,
        liquidity: int | None = None,
    ) -> list[Output]:
        """A dex_liquidity record; addresses and ticks come as topics or words, as the event has them."""
        pool = self._pair(log, context, exchanges, fork)
        if pool is None:
            return self.skip(NOT_A_POOL)
        base, quote, base_raw, quote_raw = pool.oriented(amount0, amount1)
        base_amount, quote_amount = scaled(base_raw, base.decimals), scaled(quote_raw, quote.decimals)
        if base_amount is None or quote_amount is None:
            return self.skip(UNKNOWN_AMOUNT)
        symbol = f"{base.code}.{quote.code}"
        record = {
            "exchange": pool.exchange,
            "symbol": symbol,
            "event_type": event_type,
            "chain": SOURCE,
            "pool": pool.address,
            "base_token": base.address,
            "quote_token": quote.address,
            "base_amount": base_amount,
            "quote_amount": quote_amount,
            "liquidity": None if liquidity is None else str(liquidity),
            "tick_lower": None if tick_lower is None else tick(tick_lower),
            "tick_upper": None if tick_upper is None else tick(tick_upper),
            "sender": address_word(sender),
            "owner": None if owner is None else address_word(owner),
            "recipient": None if recipient is None else address_word(recipient),
            **context.log_fields(log),
        }
        return [Output(DEX_LIQUIDITY, normalised_key(pool.exchange, symbol), record)]
