"""Token and pool facts the standardiser needs, read from the contracts once and cached.

The standardiser may not do I/O, yet a swap's amounts mean nothing without the
tokens' decimals and a pool's tokens.  So the connector reads them
(``symbol()``, ``decimals()``, a pool's ``token0()``/``token1()``/
``factory()``, a Curve pool's ``coins(i)``) with batched ``eth_call`` for the
contracts a block's logs name, and archives them in that block's raw frame
under ``metadata``.  Replaying a raw topic thus gives the same records without
a node.  A call that reverts (not a token, not a pool) gives ``null``, cached
too; a call the node could not answer raises, so the block is fetched again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from eth_abi import decode
from eth_abi.exceptions import DecodingError

from l3_atom.on_chain import abi
from l3_atom.on_chain.rpc import JsonRpc, NodeError

# Contracts remembered (per kind); the least recently used are forgotten beyond this.
CACHE_ENTRIES = 100_000
WORD_BYTES = 32
# eth_call errors that mean "the contract does not have this" rather than "the node failed".
REVERTED_CODES = frozenset({3})
REVERT_TEXT = "revert"
NATIVE_TOKEN = {"symbol": "ETH", "decimals": 18}
LATEST = "latest"

PoolInfo = dict[str, Any]
Decoder = Callable[[str], Any]
# (fact name, contract, call data, decoder of the answer)
Call = tuple[str, str, str, Decoder]


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
    return value if value <= abi.MAX_DECIMALS else None


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


def reverted(outcome: Any) -> bool:
    """An eth_call error that means "the contract does not answer this", not "the node failed"."""
    return isinstance(outcome, NodeError) and (outcome.code in REVERTED_CODES or REVERT_TEXT in str(outcome).lower())


def node_failed(outcome: Any) -> bool:
    return isinstance(outcome, NodeError) and not reverted(outcome)


def decoded(outcome: Any, decoder: Decoder) -> Any:
    """The decoded eth_call result, or None when the contract does not answer it."""
    if not isinstance(outcome, str) or not outcome.startswith(abi.HEX_PREFIX):
        return None
    try:
        return decoder(outcome)
    except ValueError:
        return None


class MetadataCache:
    """What a block's logs need to be read, from the node at most once per contract.

    Calls are made at the block being read (its state has the pool that
    emitted the event, even a pool created in that very block).  Where the node
    cannot answer there (pruned state in a long backfill) the call is repeated
    at ``latest``; a "no such function" answered there is not cached, since a
    lagging node may not know the contract yet.
    """

    def __init__(self, rpc: JsonRpc, limit: int = CACHE_ENTRIES):
        self.rpc = rpc
        self.tokens: _Lru = _Lru(limit)
        self.pairs: _Lru = _Lru(limit)
        # (pool, coin index) -> the answers of coins(uint256) and coins(int128).
        self.coins: _Lru = _Lru(limit)
        self.calls = 0

    async def for_logs(self, logs: Iterable[dict[str, Any]], block: str) -> dict[str, Any]:
        """``{"tokens": {address: info}, "pools": {address: info}}`` for the events in ``logs`` of ``block``."""
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
        curve_pools: dict[str, PoolInfo] = {}
        for (pool, index), answers in (await self._resolve(self.coins, sorted(coins), _coin_calls, block)).items():
            coin = answers["uint256"] or answers["int128"]
            curve_pools.setdefault(pool, {"coins": {}})["coins"][str(index)] = coin
        pools = {**curve_pools, **await self._resolve(self.pairs, sorted(pairs), _pair_calls, block)}
        for info in pools.values():
            listed = info["coins"].values() if "coins" in info else (info["token0"], info["token1"])
            tokens.update(address for address in listed if address is not None)
        known = {abi.NATIVE_TOKEN_PLACEHOLDER: dict(NATIVE_TOKEN)} if abi.NATIVE_TOKEN_PLACEHOLDER in tokens else {}
        others = sorted(tokens - known.keys())
        known.update(await self._resolve(self.tokens, others, _token_calls, block))
        return {"tokens": dict(sorted(known.items())), "pools": pools}

    async def _resolve(
        self, cache: _Lru, keys: list[Any], calls_of: Callable[[Any], list[Call]], block: str
    ) -> dict[Any, dict[str, Any]]:
        """The facts of ``keys``: cached ones, the others asked in one batch and kept when the answer is final."""
        found = {key: cache.get_fresh(key) for key in keys if key in cache}
        missing = [key for key in keys if key not in found]
        plans = [calls_of(key) for key in missing]
        answers = iter(await self._calls([(to, data) for plan in plans for _, to, data, _ in plan], block))
        for key, plan in zip(missing, plans, strict=True):
            facts: dict[str, Any] = {}
            final = True
            for name, _, _, decoder in plan:
                outcome, at_block = next(answers)
                facts[name] = decoded(outcome, decoder)
                final = final and (at_block or facts[name] is not None)
            found[key] = facts
            if final:
                cache.put(key, facts)
        return found

    async def _calls(self, calls: list[tuple[str, str]], block: str) -> list[tuple[Any, bool]]:
        """(outcome, answered at ``block``) per call; raises when the node answers neither there nor at latest."""
        outcomes = [(outcome, True) for outcome in await self._batch(calls, block)]
        unanswered = [index for index, (outcome, _) in enumerate(outcomes) if node_failed(outcome)]
        retried = await self._batch([calls[index] for index in unanswered], LATEST)
        for index, outcome in zip(unanswered, retried, strict=True):
            if node_failed(outcome):
                raise outcome
            outcomes[index] = (outcome, False)
        return outcomes

    async def _batch(self, calls: list[tuple[str, str]], block: str) -> list[Any]:
        if not calls:
            return []
        self.calls += len(calls)
        _, outcomes = await self.rpc.batch([("eth_call", [{"to": to, "data": data}, block]) for to, data in calls])
        return outcomes


def _pair_calls(pair: str) -> list[Call]:
    return [("token0", pair, abi.TOKEN0, decode_address), ("token1", pair, abi.TOKEN1, decode_address),
            ("factory", pair, abi.FACTORY, decode_address)]  # fmt: skip


def _token_calls(token: str) -> list[Call]:
    return [("symbol", token, abi.SYMBOL, decode_symbol), ("decimals", token, abi.DECIMALS, decode_decimals)]


def _coin_calls(key: tuple[str, int]) -> list[Call]:
    pool, index = key
    return [("uint256", pool, abi.COINS_UINT256 + abi.encode_uint(index), decode_address),
            ("int128", pool, abi.COINS_INT128 + abi.encode_uint(index), decode_address)]  # fmt: skip


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
