"""End to end with real processes: ganache -> ``runner.py connector --source ethereum`` -> ``ethereum_raw``
-> ``runner.py processor --source ethereum`` (Faust, Avro, schema registry, Tansu broker) -> the six
on-chain topics, read by an independent confluent-kafka consumer.

The node takes its secret in the path; the connector gets it from
``ETHEREUM_NODE_SECRET`` and must never write it to its log.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from l3_atom.infra.local_pipeline import LocalStack
from l3_atom.on_chain.topics import ONCHAIN_TOPICS
from l3_atom.topics import DEAD_LETTER, raw_topic
from tests.kafka_reader import TopicReader, read_raw
from tests.onchain.node import SECRET, LocalNode, without_atom_timestamp
from tests.onchain.scenario import World

SOURCE = "ethereum"
READ_TIMEOUT_S = 60.0
SETTLE_S = 2.0
REPLACED = ("1", "2")
CANONICAL = ("3", "4", "5")


class EthereumStack(LocalStack):
    """Broker, registry and an ethereum processor, plus the ethereum connector pointed at ``node``."""

    def __init__(self, node: LocalNode, workdir: Path):
        super().__init__([SOURCE], workdir=workdir)
        self.node = node

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.node.env()}

    def start_connectors(self) -> None:
        self.start_runner("connector", "connector", "--source", SOURCE)


def blocks_seen(reader: TopicReader) -> list[tuple[bool, int, str]]:
    return [(r.value["removed"], r.value["number"], r.value["hash"]) for r in reader.by_topic("ethereum_blocks")]


def has_block(reader: TopicReader, number: int, block_hash: str) -> bool:
    return (False, number, block_hash) in blocks_seen(reader)


def comparable(key: str, record: dict[str, Any]) -> tuple:
    """A hashable form of a keyed record, without its receive time (decimals compare by value)."""
    return key, tuple(sorted(without_atom_timestamp(record).items()))


@pytest.mark.timeout(240)
def test_blocks_dex_trades_and_a_reorg_flow_through_the_pipeline(node: LocalNode, world: World, tmp_path: Path) -> None:
    with EthereumStack(node, tmp_path) as stack:
        reader = TopicReader(stack.broker.bootstrap_servers, stack.registry_url, [*ONCHAIN_TOPICS, DEAD_LETTER])
        try:
            start = node.head()
            reader.read_until(lambda _: has_block(reader, start, node.block(start)["hash"]), READ_TIMEOUT_S)
            expected, _ = world.trade()
            fork = node.head()
            snapshot = node.snapshot()
            replaced = [world.transfer_mkr(amount) for amount in REPLACED]
            last = replaced[-1]
            reader.read_until(
                lambda _: has_block(reader, last["blockNumber"], last["blockHash"].to_0x_hex()), READ_TIMEOUT_S
            )
            node.revert(snapshot)
            canonical = [world.transfer_mkr(amount) for amount in CANONICAL]
            last = canonical[-1]
            reader.read_until(
                lambda _: has_block(reader, last["blockNumber"], last["blockHash"].to_0x_hex()), READ_TIMEOUT_S
            )
            reader.read_until(lambda _: False, SETTLE_S)
            raw = read_raw(stack.broker.bootstrap_servers, raw_topic(SOURCE), len(blocks_seen(reader)), READ_TIMEOUT_S)
        finally:
            reader.close()
        for name in stack.processes:
            stack.check_alive(name)
        connector_log = stack.log_path("connector").read_text()

    assert [r.value["error"] for r in reader.by_topic(DEAD_LETTER)] == []
    dex = [r for r in reader.records if r.topic.startswith("dex_")]
    assert Counter(comparable(r.key, r.value) for r in dex) == Counter(comparable(e.key, e.record) for e in expected), (
        "every DEX record exactly once, exact"
    )

    old = [r["blockHash"].to_0x_hex() for r in replaced]
    new = [r["blockHash"].to_0x_hex() for r in canonical]
    after_fork = [seen for seen in blocks_seen(reader) if seen[1] > fork]
    assert after_fork == [
        (False, fork + 1, old[0]), (False, fork + 2, old[1]),
        (True, fork + 2, old[1]), (True, fork + 1, old[0]),
        (False, fork + 1, new[0]), (False, fork + 2, new[1]), (False, fork + 3, new[2]),
    ], "replaced blocks retracted newest first, then the canonical chain"  # fmt: skip
    transfers = [
        (r.value["amount"], r.value["removed"])
        for r in reader.by_topic("ethereum_token_transfers")
        if r.value["block_number"] > fork
    ]
    assert transfers == [
        *((Decimal(a), False) for a in REPLACED),
        *((Decimal(a), True) for a in reversed(REPLACED)),
        *((Decimal(a), False) for a in CANONICAL),
    ]
    published = [seen for seen in blocks_seen(reader) if not seen[0]]
    assert [number for _, number, _ in published] == list(range(start, fork + 3)) + list(range(fork + 1, fork + 4))

    assert len(raw) == len(blocks_seen(reader)), "one raw frame per block published or retracted"
    for message in raw:
        headers = dict(message.headers())
        assert message.key() == b"ethereum_all_block" and headers["connection_id"] == b"ethereum.http"
        assert json.loads(message.value())["removed"] in (True, False)
    assert SECRET not in connector_log and "/v3/***" in connector_log, "the node URL is logged redacted"

    counts = Counter(r.topic for r in reader.records)
    assert counts["dex_trades"] == counts["dex_liquidity"] == 5
    print(f"\ne2e ethereum: {len(raw)} raw frames, records {dict(sorted(counts.items()))}")
