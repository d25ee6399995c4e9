"""Token and pool facts the standardiser needs, read from the contracts once and cached.

The standardiser may not do I/O, yet a swap's amounts mean nothing without the
tokens' decimals and a pool's tokens.  So the connector reads them
(``symbol()``, ``decimals()``, a pool's ``token0()``/``token1()``/
``factory()``, a Curve pool's ``coins(i)``) with batched ``eth_call`` for the
contracts a block's logs name, and archives them in that block's raw frame
under ``metadata``.  Replaying a raw topic thus gives the same records without
a node.  A call that reverts (not a token, not a pool) is cached as ``null``;
a call the node could not answer raises, so the block is fetched again later.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from eth_abi import decode
from eth_abi.exceptions import DecodingError

from l3_atom.on_chain import abi
from l3_atom.on_chain.rpc import JsonRpc, NodeError

# Contracts remembered (per kind); the least recently used are forgotten beyond this.
CACHE_ENTRIES = 100_000
WORD_BYTES = 32
MAX_DECIMALS = 255
# eth_call errors that mean "the contract does not have this" rather than "the node failed".
REVERTED_CODES = frozenset({3})
REVERT_TEXT = "revert"
NATIVE_TOKEN = {"symbol": "ETH", "decimals": 18}
PAIR_FIELDS = (("token0", abi.TOKEN0), ("token1", abi.TOKEN1), ("factory", abi.FACTORY))
TOKEN_FIELDS = (("symbol", abi.SYMBOL), ("decimals", abi.DECIMALS))

TokenInfo = dict[str, Any]
PoolInfo = dict[str, Any]


class _Lru(OrderedDict):
    """A dict that forgets its least recently used keys beyond ``limit``."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def get_fresh(self, key: Any) -> Any:
        value = self[key]
        self.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


def decode_bytes(result: str) -> bytes:
    return bytes.fromhex(result[len(abi.HEX_PREFIX) :])


def decode_address(result: str) -> str | None:
    data = decode_bytes(result)
    if len(data) != WORD_BYTES:
        return None
    try:
        return abi.address_word(int.from_bytes(data, "big"))
    except ValueError:
        return None


def decode_decimals(result: str) -> int | None:
    data = decode_bytes(result)
    if len(data) != WORD_BYTES:
        return None
    value = int.from_bytes(data, "big")
    return value if value <= MAX_DECIMALS else None


def decode_symbol(result: str) -> str | None:
    """An ABI ``string``, or the ``bytes32`` early tokens (MKR, SAI) return, NULs stripped."""
    data = decode_bytes(result)
    if len(data) == WORD_BYTES:
        text = data.rstrip(b"\x00")
    else:
        try:
            return decode(["string"], data)[0] or None
        except (DecodingError, UnicodeDecodeError, OverflowError):
            return None
    try:
        return text.decode() or None
    except UnicodeDecodeError:
        return None


DECODERS = {"symbol": decode_symbol, "decimals": decode_decimals}


def call_outcome(outcome: Any, decoder: Any) -> Any:
    """A decoded eth_call result, None when the contract does not answer it, or raise when the node failed."""
    if isinstance(outcome, NodeError):
        if outcome.code in REVERTED_CODES or REVERT_TEXT in str(outcome).lower():
            return None
        raise outcome
    if not isinstance(outcome, str) or not outcome.startswith(abi.HEX_PREFIX):
        return None
    try:
        return decoder(outcome)
    except ValueError:
        return None


class MetadataCache:
    """What a block's logs need to be read, from the node at most once per contract."""

    def __init__(self, rpc: JsonRpc, limit: int = CACHE_ENTRIES):
        self.rpc = rpc
        self.tokens: _Lru = _Lru(limit)
        self.pairs: _Lru = _Lru(limit)
        # (pool, coin index) -> coin address.
        self.coins: _Lru = _Lru(limit)
        self.calls = 0

    async def for_logs(self, logs: Iterable[dict[str, Any]]) -> dict[str, Any]:
        """``{"tokens": {address: info}, "pools": {address: info}}`` for the events in ``logs``."""
        tokens: set[str] = set()
        pairs: set[str] = set()
        coins: set[tuple[str, int]] = set()
        for log in logs:
            topics = log.get("topics") or []
            if not topics:
                continue
            topic0, address = topics[0], log["address"].lower()
            if topic0 == abi.ERC20_TRANSFER and len(topics) == abi.ERC20_TRANSFER_TOPICS:
                tokens.add(address)
            elif topic0 in abi.PAIR_EVENTS:
                pairs.add(address)
            elif topic0 in abi.CURVE_EVENTS:
                coins.update((address, index) for index in curve_indexes(log["data"]))
        await self._load_pairs(pairs - self.pairs.keys())
        await self._load_coins(coins - self.coins.keys())
        curve_pools: dict[str, PoolInfo] = {}
        for pool, index in sorted(coins):
            curve_pools.setdefault(pool, {"coins": {}})["coins"][str(index)] = self.coins.get_fresh((pool, index))
        pools = {**curve_pools, **{address: self.pairs.get_fresh(address) for address in sorted(pairs)}}
        for info in pools.values():
            listed = info["coins"].values() if "coins" in info else (info["token0"], info["token1"])
            tokens.update(address for address in listed if address is not None)
        await self._load_tokens(tokens - self.tokens.keys())
        return {"tokens": {address: self.tokens.get_fresh(address) for address in sorted(tokens)}, "pools": pools}

    async def _eth_calls(self, calls: list[tuple[str, str]]) -> list[Any]:
        """Outcomes of ``(contract, call data)`` pairs at the latest block, one batch."""
        if not calls:
            return []
        self.calls += len(calls)
        _, outcomes = await self.rpc.batch([("eth_call", [{"to": to, "data": data}, "latest"]) for to, data in calls])
        return outcomes

    async def _load_pairs(self, pairs: set[str]) -> None:
        ordered = sorted(pairs)
        calls = [(pair, data) for pair in ordered for _, data in PAIR_FIELDS]
        outcomes = iter(await self._eth_calls(calls))
        for pair in ordered:
            self.pairs.put(pair, {name: call_outcome(next(outcomes), decode_address) for name, _ in PAIR_FIELDS})

    async def _load_coins(self, coins: set[tuple[str, int]]) -> None:
        ordered = sorted(coins)
        outcomes = await self._eth_calls([(pool, abi.COINS_UINT256 + abi.encode_uint(i)) for pool, i in ordered])
        found = [call_outcome(outcome, decode_address) for outcome in outcomes]
        missing = [key for key, coin in zip(ordered, found, strict=True) if coin is None]
        fallback = await self._eth_calls([(pool, abi.COINS_INT128 + abi.encode_uint(i)) for pool, i in missing])
        retried = dict(zip(missing, (call_outcome(o, decode_address) for o in fallback), strict=True))
        for key, coin in zip(ordered, found, strict=True):
            self.coins.put(key, coin if coin is not None else retried[key])

    async def _load_tokens(self, tokens: set[str]) -> None:
        ordered = sorted(tokens - {abi.NATIVE_TOKEN_PLACEHOLDER})
        if abi.NATIVE_TOKEN_PLACEHOLDER in tokens:
            self.tokens.put(abi.NATIVE_TOKEN_PLACEHOLDER, dict(NATIVE_TOKEN))
        outcomes = iter(await self._eth_calls([(token, data) for token in ordered for _, data in TOKEN_FIELDS]))
        for token in ordered:
            self.tokens.put(token, {name: call_outcome(next(outcomes), DECODERS[name]) for name, _ in TOKEN_FIELDS})


def curve_indexes(data: str) -> tuple[int, ...]:
    """The coin indexes a TokenExchange names (none when its data is not a Curve exchange's)."""
    try:
        values = abi.words(data)
    except ValueError:
        return ()
    if len(values) != abi.CURVE_WORDS:
        return ()
    indexes = values[abi.CURVE_SOLD_ID], values[abi.CURVE_BOUGHT_ID]
    return indexes if all(index < abi.CURVE_MAX_COINS for index in indexes) else ()
