"""The Ethereum connector against a real local node (ganache), its frames through the standardiser.

Each test starts a fresh node, deploys the contracts (``scenario.World``),
runs the unchanged connector in a thread with an in-memory sink, drives the
chain (swaps, transfers, a reorg, a dropped websocket) and checks the frames
and the records they give, exactly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from decimal import Decimal

import pytest

from l3_atom.infra.processes import free_port
from l3_atom.on_chain.chain_feed import ChainFeed
from l3_atom.on_chain.ethereum import Ethereum
from l3_atom.on_chain.rpc import NodeUnavailable
from l3_atom.stream_processing.standardiser import Output
from l3_atom.stream_processing.standardisers.ethereum import NOT_A_POOL, NOT_ERC20
from l3_atom.tokens import Symbol
from tests.onchain.node import (
    CONNECTOR_SETTINGS,
    SECRET,
    ConnectorThread,
    CuttableProxy,
    ListSink,
    LocalNode,
    assert_encodable,
    standardise_frames,
    wait_for,
    without_atom_timestamp,
)
from tests.onchain.scenario import World, all_logs, erc20_transfer_logs, units

# Long enough for a connector to have published a block it was going to publish.
QUIET_S = 0.5
WRONG_SECRET = "wrong-secret-d41d8c"


def connector(
    node: LocalNode, sink: ListSink, monkeypatch: pytest.MonkeyPatch, confirmations: int = 0, **urls: str
) -> ChainFeed:
    for name, value in node.env().items():
        monkeypatch.setenv(name, value)
    return Ethereum([], sink, CONNECTOR_SETTINGS, confirmations=confirmations, max_reorg_depth=64, **urls)


def block_of(out: Output) -> str:
    return out.record["hash"] if out.topic == "ethereum_blocks" else out.record["block_hash"]


def published_numbers(sink: ListSink) -> list[int]:
    return [number for removed, number, _ in sink.blocks() if not removed]


def test_dex_events_transfers_and_transactions_decode_exactly(
    node: LocalNode, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = ListSink()
    with ConnectorThread(connector(node, sink, monkeypatch)):
        wait_for(lambda: sink.published_up_to(node.head()), "the connector's first block")
        first = published_numbers(sink)[0]
        expected, receipts = world.trade()
        wait_for(lambda: sink.published_up_to(node.head()), "every traded block")
    assert published_numbers(sink) == list(range(first, node.head() + 1)), "each block once, in order"
    assert not sink.dead_letters
    for key, frame, atom_timestamp, connection_id, symbol in sink.frames:
        assert (key, connection_id, symbol) == ("ethereum_all_block", "ethereum.http", None)
        assert atom_timestamp > 1_600_000_000_000_000
        block = json.loads(frame)["block"]["result"]
        assert block == node.rpc("eth_getBlockByNumber", block["number"], True), "the node's block, as sent"

    outputs, skipped = standardise_frames(sink.frames)
    assert_encodable(outputs)
    traded = [out for out in outputs if out.record.get("block_number", out.record.get("number")) > first]
    for want in expected:
        found = [
            out for out in traded
            if out.topic == want.topic and out.record["transaction_hash"] == want.record["transaction_hash"]
        ]  # fmt: skip
        assert len(found) == 1, want
        assert found[0].key == want.key
        assert without_atom_timestamp(found[0].record) == want.record
    dex = [out for out in traded if out.topic.startswith("dex_")]
    assert len(dex) == len(expected) == 10
    assert all(str(Symbol.parse(out.record["symbol"])) == out.record["symbol"] for out in dex)
    assert skipped == {NOT_A_POOL: 1, NOT_ERC20: 1}, "the impostor's Mint and ERC-721 Transfer are skipped, counted"

    by_topic = {topic: [out for out in traded if out.topic == topic] for topic in {out.topic for out in traded}}
    assert len(by_topic["ethereum_blocks"]) == len(receipts)
    assert len(by_topic["ethereum_transactions"]) == len(receipts)
    assert len(by_topic["ethereum_logs"]) == all_logs(receipts)
    assert len(by_topic["ethereum_token_transfers"]) == erc20_transfer_logs(receipts)
    mkr = by_topic["ethereum_token_transfers"][0]
    assert mkr.key == "ethereum_MKR"
    assert (mkr.record["symbol"], mkr.record["amount"], mkr.record["amount_raw"], mkr.record["decimals"]) == (
        "MKR", Decimal("1.5"), "1500000000000000000", 18,
    ), "a bytes32 symbol() and a uint256 decimals() (MKR's kind) are read"  # fmt: skip
    ether = by_topic["ethereum_transactions"][-1].record
    assert ether["hash"] == receipts[-1]["transactionHash"].to_0x_hex()
    assert (ether["value"], ether["value_wei"], ether["to_address"]) == (
        Decimal("1.234"), str(units("1.234", 18)), world.receiver.lower(),
    )  # fmt: skip
    assert (ether["success"], ether["gas_used"], ether["method_id"], ether["contract_address"]) == (
        True, 21000, None, None,
    )  # fmt: skip
    block = by_topic["ethereum_blocks"][-1].record
    node_block = node.block(node.head())
    assert (block["number"], block["hash"], block["parent_hash"], block["transaction_count"]) == (
        node.head(), node_block["hash"], node_block["parentHash"], 1,
    )  # fmt: skip
    assert block["event_timestamp"] == int(node_block["timestamp"], 16) * 1000
    print(f"\nrecords from {len(sink.frames)} blocks: { {t: len(v) for t, v in sorted(by_topic.items())} }")


def test_reorg_retracts_replaced_blocks_newest_first_then_publishes_the_canonical_chain(
    node: LocalNode, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = ListSink()
    with ConnectorThread(connector(node, sink, monkeypatch)):
        wait_for(lambda: sink.published_up_to(node.head()), "the connector's first block")
        fork = node.head()
        snapshot = node.snapshot()
        replaced = [world.transfer_mkr(amount) for amount in ("1", "2", "3")]
        wait_for(lambda: sink.published_up_to(fork + 3), "the blocks to be replaced")
        node.revert(snapshot)
        canonical = [world.transfer_mkr(amount) for amount in ("4", "5", "6", "7")]
        wait_for(lambda: sink.published_up_to(fork + 4), "the canonical chain")
    hashes = [r["blockHash"].to_0x_hex() for r in replaced]
    new_hashes = [r["blockHash"].to_0x_hex() for r in canonical]
    assert sink.blocks()[1:] == [
        *((False, fork + i + 1, hashes[i]) for i in range(3)),
        *((True, fork + i + 1, hashes[i]) for i in reversed(range(3))),
        *((False, fork + i + 1, new_hashes[i]) for i in range(4)),
    ]

    outputs, _ = standardise_frames(sink.frames)
    assert_encodable(outputs)
    of_replaced = [without_atom_timestamp(out.record) for out in outputs if block_of(out) in hashes]
    published = [record for record in of_replaced if not record["removed"]]
    retracted = [record for record in of_replaced if record["removed"]]
    assert len(retracted) == len(published) > 0
    assert sorted(map(repr, retracted)) == sorted(repr({**record, "removed": True}) for record in published), (
        "every record of a replaced block is retracted once, with the same fields"
    )
    transfers = [
        (out.record["amount"], out.record["removed"])
        for out in outputs
        if out.topic == "ethereum_token_transfers" and out.record["block_number"] > fork
    ]
    assert transfers == [
        *((Decimal(a), False) for a in "123"),
        *((Decimal(a), True) for a in "321"),
        *((Decimal(a), False) for a in "4567"),
    ]


def test_missed_blocks_are_backfilled_in_order_after_a_reconnect(
    node: LocalNode, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    proxy = CuttableProxy(node.port)
    sink = ListSink()
    feed = connector(node, sink, monkeypatch, ws_url=proxy.ws_url("/v3"))
    try:
        with ConnectorThread(feed):
            wait_for(lambda: sink.published_up_to(node.head()), "the connector's first block")
            first = node.head()
            proxy.cut()
            node.mine(3)
            time.sleep(QUIET_S)
            assert published_numbers(sink) == [first], "nothing is heard while the websocket is down"
            proxy.restore()
            wait_for(lambda: sink.published_up_to(first + 3), "the backfill")
            connects = feed.connection.stats.connects
    finally:
        proxy.close()
    assert published_numbers(sink) == [first, first + 1, first + 2, first + 3]
    assert connects >= 2
    assert f"backfilling blocks {first + 1}..{first + 3}" in caplog.text


def test_confirmations_hold_back_the_newest_blocks(node: LocalNode, monkeypatch: pytest.MonkeyPatch) -> None:
    node.mine(3)
    sink = ListSink()
    with ConnectorThread(connector(node, sink, monkeypatch, confirmations=2)):
        wait_for(lambda: sink.published_up_to(node.head() - 2), "the first confirmed block")
        node.mine(5)
        wait_for(lambda: sink.published_up_to(node.head() - 2), "the newly confirmed blocks")
        time.sleep(QUIET_S)
    numbers = published_numbers(sink)
    assert numbers == list(range(numbers[0], node.head() - 1)), "up to head - 2, in order"


def test_the_secret_never_appears_in_logs_or_errors(
    node: LocalNode, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = CuttableProxy(node.port)
    sink = ListSink()
    feed = connector(node, sink, monkeypatch, ws_url=proxy.ws_url("/v3"))
    assert SECRET not in repr(feed.endpoints)
    try:
        with ConnectorThread(feed):
            wait_for(lambda: sink.published_up_to(node.head()), "the connector's first block")
            proxy.cut()
            time.sleep(QUIET_S)
            proxy.restore()
            node.mine()
            wait_for(lambda: sink.published_up_to(node.head()), "a block after the reconnect")
    finally:
        proxy.close()
    assert "/v3/***" in caplog.text, "the URLs are logged, redacted"
    assert SECRET not in caplog.text

    for name, value in node.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ETHEREUM_NODE_SECRET", WRONG_SECRET)
    with pytest.raises(NodeUnavailable) as wrong:
        asyncio.run(Ethereum([], ListSink(), CONNECTOR_SETTINGS, confirmations=0).run())
    monkeypatch.setenv("ETHEREUM_NODE_SECRET", SECRET)
    nobody = f"http://127.0.0.1:{free_port()}/v3"
    with pytest.raises(NodeUnavailable) as gone:
        asyncio.run(Ethereum([], ListSink(), CONNECTOR_SETTINGS, rest_url=nobody, confirmations=0).run())
    for failure, secret in ((wrong, WRONG_SECRET), (gone, SECRET)):
        assert "/v3/***" in str(failure.value) and secret not in str(failure.value), failure.value
    assert SECRET not in caplog.text and WRONG_SECRET not in caplog.text
