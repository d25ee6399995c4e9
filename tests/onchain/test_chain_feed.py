"""The connector's chain logic against an in-memory node: reorg edge cases, receipts, metadata, settings, secrets.

The real-node tests (``test_node.py``) cover the common paths on ganache;
these cover what ganache cannot show: ``eth_getBlockReceipts``, reorgs deeper
than the kept history, oversize blocks, a node answering inconsistently or
failing, and Curve's ``coins(int128)``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Sequence
from itertools import count
from pathlib import Path
from typing import Any

import orjson
import pytest
from eth_abi import encode

from l3_atom.config import PROJECT_ROOT, ConnectorSettings
from l3_atom.errors import UserError
from l3_atom.on_chain import abi
from l3_atom.on_chain.chain_feed import FRAME_PREFIX, RECEIPTS_PER_BATCH, RETRACTION_PREFIX, ChainMoved
from l3_atom.on_chain.ethereum import Ethereum
from l3_atom.on_chain.rpc import NodeEndpoints, NodeError, Reply, redacted_logs, with_secret
from tests.onchain.node import ListSink

SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 524288)
TOKEN = "0x" + "70" * 20
POOL = "0x" + "c0" * 20
COIN0, COIN1 = "0x" + "a0" * 20, "0x" + "a1" * 20
ZERO_HASH = "0x" + "00" * 32
METHOD_NOT_FOUND = -32601
LIMIT_EXCEEDED = -32005
REVERTED = 3
STATE_UNAVAILABLE = -32000


def word(value: int) -> str:
    return "0x" + abi.encode_uint(value)


def address_topic(address: str) -> str:
    return "0x" + address[2:].rjust(64, "0")


def transfer_log(token: str = TOKEN, value: int = 5) -> dict[str, Any]:
    return {"address": token, "topics": [abi.ERC20_TRANSFER, address_topic(COIN0), address_topic(COIN1)],
            "data": word(value)}  # fmt: skip


class FakeNode:
    """An in-memory chain behind ``JsonRpc``'s interface (``call``, ``batch``, ``close``)."""

    def __init__(self, block_receipts: bool = True):
        self.block_receipts = block_receipts
        self.chain: list[dict[str, Any]] = []
        self.receipts: dict[str, dict[str, Any]] = {}
        self.answers: dict[tuple[str, str], Any] = {}
        self.calls: Counter[str] = Counter()
        self.wrong_receipts = False
        self.pruned = False
        # Full blocks that name another parent than the canonical one (servers disagreeing behind a balancer).
        self.contradicting = False
        self._ids = count(1)
        self.mine()

    def _hash(self) -> str:
        return f"0x{next(self._ids):064x}"

    def mine(self, logs: Sequence[dict[str, Any]] = (), transactions: int | None = None) -> dict[str, Any]:
        """A block on top of the chain, with one transaction carrying ``logs`` (or ``transactions`` empty ones)."""
        block = {"number": hex(len(self.chain)), "hash": self._hash(),
                 "parentHash": self.chain[-1]["hash"] if self.chain else ZERO_HASH, "transactions": []}  # fmt: skip
        for index in range(transactions if transactions is not None else (1 if logs else 0)):
            tx_hash = self._hash()
            block["transactions"].append({"hash": tx_hash})
            self.receipts[tx_hash] = {
                "transactionHash": tx_hash,
                "blockHash": block["hash"],
                "logs": [dict(log) for log in logs] if index == 0 else [],
            }
        self.chain.append(block)
        return block

    def reorg(self, depth: int) -> None:
        del self.chain[-depth:]

    def _block(self, tag: str) -> dict[str, Any] | None:
        if tag == "latest":
            return self.chain[-1]
        if len(tag) == len(ZERO_HASH):
            return next((b for b in self.chain if b["hash"] == tag), None)
        number = int(tag, 16)
        return self.chain[number] if number < len(self.chain) else None

    def _receipts_of(self, block: dict[str, Any]) -> list[dict[str, Any]]:
        receipts = [dict(self.receipts[tx["hash"]]) for tx in block["transactions"]]
        if self.wrong_receipts:
            for receipt in receipts:
                receipt["blockHash"] = ZERO_HASH
        return receipts

    def _answer(self, method: str, params: Sequence[Any]) -> Any:
        self.calls[method] += 1
        if method == "eth_chainId":
            return "0x1"
        if method == "eth_blockNumber":
            return hex(len(self.chain) - 1)
        if method == "eth_getBlockByNumber":
            block = self._block(params[0])
            if self.contradicting and block is not None and params[1]:
                block = {**block, "parentHash": ZERO_HASH}
            return block
        if method == "eth_getBlockReceipts":
            if not self.block_receipts:
                raise NodeError("the method eth_getBlockReceipts does not exist", METHOD_NOT_FOUND)
            return self._receipts_of(self._block(params[0]))
        if method == "eth_getTransactionReceipt":
            block = next(b for b in self.chain if any(tx["hash"] == params[0] for tx in b["transactions"]))
            return next(r for r in self._receipts_of(block) if r["transactionHash"] == params[0])
        if method == "eth_call":
            if self.pruned and params[1] != "latest":
                raise NodeError("missing trie node", STATE_UNAVAILABLE)
            answer = self.answers.get((params[0]["to"], params[0]["data"]), NodeError("execution reverted", REVERTED))
            if isinstance(answer, NodeError):
                raise answer
            return answer
        raise AssertionError(method)

    async def call(self, method: str, *params: Any) -> Reply:
        result = self._answer(method, params)
        return Reply(orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": result}), result)

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> tuple[bytes, list[Any]]:
        outcomes: list[Any] = []
        for method, params in calls:
            try:
                outcomes.append(self._answer(method, params))
            except NodeError as exc:
                outcomes.append(exc)
        body = [
            {"jsonrpc": "2.0", "id": i, "result": o} for i, o in enumerate(outcomes) if not isinstance(o, Exception)
        ]
        return orjson.dumps(body), outcomes

    async def close(self) -> None: ...


@pytest.fixture
def node_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETHEREUM_NODE_HTTP_URL", "http://127.0.0.1:1/v3")
    monkeypatch.setenv("ETHEREUM_NODE_WS_URL", "ws://127.0.0.1:1/v3")
    monkeypatch.delenv("ETHEREUM_NODE_SECRET", raising=False)


def feed_on(node: FakeNode, settings: ConnectorSettings = SETTINGS, depth: int = 64) -> tuple[Ethereum, ListSink]:
    sink = ListSink()
    feed = Ethereum([], sink, settings, confirmations=0, max_reorg_depth=depth)
    feed.rpc = feed.metadata.rpc = node
    asyncio.run(feed._start())
    return feed, sink


def sync(feed: Ethereum) -> None:
    asyncio.run(feed.sync())


def hashes(sink: ListSink) -> list[tuple[bool, int, str]]:
    return sink.blocks()


@pytest.mark.usefixtures("node_env")
def test_it_starts_at_the_head_then_publishes_every_block_in_order() -> None:
    node = FakeNode()
    node.mine()
    feed, sink = feed_on(node)
    sync(feed)
    node.mine(), node.mine([transfer_log()])
    sync(feed)
    assert hashes(sink) == [(False, n, node.chain[n]["hash"]) for n in (1, 2, 3)]
    assert node.calls["eth_getTransactionReceipt"] == 0, "eth_getBlockReceipts is used where the node has it"


@pytest.mark.usefixtures("node_env")
def test_a_reorg_to_a_shorter_chain_retracts_down_to_the_common_ancestor() -> None:
    node = FakeNode()
    feed, sink = feed_on(node)
    sync(feed)
    for _ in range(3):
        node.mine([transfer_log()])
        sync(feed)
    replaced = [node.chain[2], node.chain[3]]
    node.reorg(2)
    node.mine()
    sync(feed)
    assert hashes(sink) == [
        (False, 0, node.chain[0]["hash"]),
        (False, 1, node.chain[1]["hash"]),
        (False, 2, replaced[0]["hash"]),
        (False, 3, replaced[1]["hash"]),
        (True, 3, replaced[1]["hash"]),
        (True, 2, replaced[0]["hash"]),
        (False, 2, node.chain[2]["hash"]),
    ]
    frames = [frame for _, frame, *_ in sink.frames]
    assert frames[4] == RETRACTION_PREFIX + frames[3][len(FRAME_PREFIX) :], "a retraction is the same frame, removed"
    assert feed.stats.reorgs == 1 and feed.stats.retracted == 2


@pytest.mark.usefixtures("node_env")
def test_a_reorg_deeper_than_the_kept_blocks_retracts_what_it_can_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = FakeNode()
    feed, sink = feed_on(node, depth=2)
    sync(feed)
    for _ in range(4):
        node.mine()
        sync(feed)
    node.reorg(3)
    for _ in range(4):
        node.mine([transfer_log()])
    sync(feed)
    removed = [(number, removed) for removed, number, _ in hashes(sink)[5:]]
    assert removed == [(4, True), (3, True), (3, False), (4, False), (5, False)]
    assert "reorg deeper than the 2 blocks kept: blocks before 3 may have been replaced" in caplog.text


@pytest.mark.usefixtures("node_env")
def test_an_oversize_block_is_dead_lettered_and_has_nothing_to_retract() -> None:
    node = FakeNode()
    feed, sink = feed_on(node, ConnectorSettings(0.01, 0.1, 30.0, 1200))
    sync(feed)
    node.mine([transfer_log(value=v) for v in range(8)])
    sync(feed)
    assert len(sink.dead_letters) == 1 and "exceeds max_frame_bytes=1200" in sink.dead_letters[0][2]
    node.reorg(1)
    node.mine()
    sync(feed)
    assert [(removed, number) for removed, number, _ in hashes(sink)] == [(False, 0), (False, 1)]
    assert feed.stats.retracted == 1


@pytest.mark.usefixtures("node_env")
def test_receipts_of_another_block_mean_the_chain_moved() -> None:
    node = FakeNode()
    feed, sink = feed_on(node)
    sync(feed)
    node.mine([transfer_log()])
    node.wrong_receipts = True
    with pytest.raises(ChainMoved):
        sync(feed)
    node.wrong_receipts = False
    sync(feed)
    assert [number for _, number, _ in hashes(sink)] == [0, 1]


@pytest.mark.usefixtures("node_env")
def test_a_node_contradicting_itself_is_retried_not_followed() -> None:
    node = FakeNode()
    feed, sink = feed_on(node)
    sync(feed)
    node.mine()
    node.contradicting = True
    with pytest.raises(ChainMoved, match="does not follow block 0, still canonical"):
        sync(feed)
    node.contradicting = False
    sync(feed)
    assert hashes(sink) == [(False, 0, node.chain[0]["hash"]), (False, 1, node.chain[1]["hash"])]


@pytest.mark.usefixtures("node_env")
def test_nodes_without_block_receipts_get_batched_transaction_receipts() -> None:
    node = FakeNode(block_receipts=False)
    feed, sink = feed_on(node)
    sync(feed)
    node.mine([transfer_log()], transactions=RECEIPTS_PER_BATCH + 1)
    sync(feed)
    frame = orjson.loads(sink.frames[-1][1])
    assert [len(body) for body in frame["receipts"]] == [RECEIPTS_PER_BATCH, 1]
    assert node.calls["eth_getTransactionReceipt"] == RECEIPTS_PER_BATCH + 1


def token_answers(node: FakeNode, token: str, symbol: str, decimals: int) -> None:
    node.answers[(token, abi.SYMBOL)] = "0x" + encode(["string"], [symbol]).hex()
    node.answers[(token, abi.DECIMALS)] = word(decimals)


@pytest.mark.usefixtures("node_env")
def test_token_metadata_is_read_once_and_a_failing_node_is_not_cached() -> None:
    node = FakeNode()
    token_answers(node, TOKEN, "TKN", 8)
    node.answers[(TOKEN, abi.DECIMALS)] = NodeError("limit exceeded", LIMIT_EXCEEDED)
    feed, sink = feed_on(node)
    sync(feed)
    node.mine([transfer_log()])
    with pytest.raises(NodeError, match="limit exceeded"):
        sync(feed)
    node.answers[(TOKEN, abi.DECIMALS)] = word(8)
    sync(feed)
    node.mine([transfer_log()])
    sync(feed)
    metadata = [orjson.loads(frame)["metadata"] for _, frame, *_ in sink.frames[1:]]
    assert metadata == [{"tokens": {TOKEN: {"symbol": "TKN", "decimals": 8}}, "pools": {}}] * 2
    assert node.calls["eth_call"] == 5, "symbol, decimals and decimals at latest; both again; then cached"


@pytest.mark.usefixtures("node_env")
def test_without_state_at_the_block_calls_go_to_latest_and_only_answers_found_are_kept() -> None:
    node = FakeNode()
    node.pruned = True
    token_answers(node, TOKEN, "TKN", 8)
    swap = {"address": POOL, "topics": [abi.UNISWAP_V2_SWAP, address_topic(COIN0), address_topic(COIN1)],
            "data": "0x" + "".join(abi.encode_uint(v) for v in (1, 0, 0, 2))}  # fmt: skip
    feed, sink = feed_on(node)
    sync(feed)
    node.mine([transfer_log(), swap])
    sync(feed)
    assert orjson.loads(sink.frames[-1][1])["metadata"] == {
        "tokens": {TOKEN: {"symbol": "TKN", "decimals": 8}},
        "pools": {POOL: {"token0": None, "token1": None, "factory": None}},
    }
    assert set(feed.metadata.tokens) == {TOKEN} and not feed.metadata.pairs, "a pool unknown at latest is asked again"


@pytest.mark.usefixtures("node_env")
def test_curve_coins_fall_back_to_int128_and_native_ether_needs_no_call() -> None:
    node = FakeNode()
    exchange = {"address": POOL, "topics": [abi.CURVE_TOKEN_EXCHANGE, address_topic(COIN0)],
                "data": "0x" + "".join(abi.encode_uint(v) for v in (0, 10, 1, 9))}  # fmt: skip
    node.answers[(POOL, abi.COINS_INT128 + abi.encode_uint(0))] = word(int(COIN0, 16))
    node.answers[(POOL, abi.COINS_UINT256 + abi.encode_uint(1))] = word(int(abi.NATIVE_TOKEN_PLACEHOLDER, 16))
    token_answers(node, COIN0, "DAI", 18)
    feed, sink = feed_on(node)
    sync(feed)
    node.mine([exchange])
    sync(feed)
    assert orjson.loads(sink.frames[-1][1])["metadata"] == {
        "tokens": {COIN0: {"symbol": "DAI", "decimals": 18}, abi.NATIVE_TOKEN_PLACEHOLDER: {"symbol": "ETH",
                   "decimals": 18}},
        "pools": {POOL: {"coins": {"0": COIN0, "1": abi.NATIVE_TOKEN_PLACEHOLDER}}},
    }  # fmt: skip


@pytest.mark.usefixtures("node_env")
def test_confirmations_and_reorg_depth_come_from_config_ini(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.ini"
    shipped = (PROJECT_ROOT / "config.ini").read_text()
    # The shipped file has an [ethereum] section: take it out, then add the ones under test.
    base = re.sub(r"^\[ethereum\]\n.*?(?=^\[)", "", shipped, count=1, flags=re.DOTALL | re.MULTILINE)
    assert "[ethereum]" not in base
    config.write_text(base + "\n[ethereum]\nconfirmations = 3\nmax_reorg_depth = 5\n")
    monkeypatch.setenv("L3_ATOM_CONFIG", str(config))
    feed = Ethereum([], ListSink(), SETTINGS)
    assert (feed.confirmations, feed.published.maxlen) == (3, 5)
    config.write_text(base)
    assert Ethereum([], ListSink(), SETTINGS).confirmations == 0, "0 when config.ini has no [ethereum]"
    config.write_text(base + "\n[ethereum]\nconfirmations = -1\n")
    with pytest.raises(UserError, match=r"\[ethereum\] confirmations must be at least 0"):
        Ethereum([], ListSink(), SETTINGS)


@pytest.mark.usefixtures("node_env")
def test_a_chain_takes_no_symbols_channels_or_symbol_list(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="takes no --symbol"):
        Ethereum(["ETH.USD"], ListSink(), SETTINGS, confirmations=0)
    with pytest.raises(UserError, match="has no channels"):
        Ethereum([], ListSink(), SETTINGS, channels=["full"], confirmations=0)
    with pytest.raises(UserError, match="has no symbol list"):
        asyncio.run(Ethereum.fetch_symbol_map())
    monkeypatch.delenv("ETHEREUM_NODE_WS_URL")
    with pytest.raises(UserError, match="set ETHEREUM_NODE_HTTP_URL and ETHEREUM_NODE_WS_URL in keys/.env"):
        Ethereum([], ListSink(), SETTINGS, confirmations=0)


@pytest.mark.parametrize(
    ("url", "secret", "expected"),
    [
        ("https://mainnet.infura.io/v3", "k3y", "https://mainnet.infura.io/v3/k3y"),
        ("https://eth-mainnet.g.alchemy.com/v2/", "k3y", "https://eth-mainnet.g.alchemy.com/v2/k3y"),
        ("wss://node.example/ws?x=1", "k3y", "wss://node.example/ws/k3y?x=1"),
        ("https://node.example/{secret}/rpc", "a/b", "https://node.example/a%2Fb/rpc"),
        ("https://node.example/?apikey={secret}", "k3y", "https://node.example/?apikey=k3y"),
        ("http://127.0.0.1:8545", None, "http://127.0.0.1:8545"),
    ],
)
def test_the_secret_goes_where_the_url_says_or_last_in_the_path(url: str, secret: str | None, expected: str) -> None:
    assert with_secret(url, secret) == expected


def test_a_placeholder_without_a_secret_is_a_user_error() -> None:
    with pytest.raises(UserError, match="placeholder"):
        with_secret("https://node.example/{secret}", None)


def test_redaction_covers_the_plain_and_quoted_secret_in_messages_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoints = NodeEndpoints("https://node.example/a%2Fb", "wss://node.example/a%2Fb", "a/b")
    assert endpoints.redact("GET /a%2Fb and a/b") == "GET /*** and ***"
    assert "a%2Fb" not in repr(endpoints) and "a/b" not in repr(endpoints)
    log = logging.getLogger("l3_atom.test")
    with redacted_logs(endpoints.redact):
        log.warning("connected to %s", endpoints.ws_url)
        try:
            raise ConnectionError(f"refused by {endpoints.http_url}")
        except ConnectionError:
            log.exception("failed")
    assert "a%2Fb" not in caplog.text and "a/b" not in caplog.text
    assert "connected to wss://node.example/***" in caplog.text and "refused by https://node.example/***" in caplog.text
