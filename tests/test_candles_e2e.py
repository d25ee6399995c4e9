"""Computed candles through the real processor: exact against brute force, and across a worker crash.

Trades are produced to the ``trades`` topic (Avro, through the registry) by an
independent producer; candles are read back from ``candle`` with an
independent consumer and compared with ``tests.test_candles.brute_force``.
Event times lie a day ahead of the wall clock, so windows close only by the
trades' own watermark (the idle timer, which follows the wall clock, stays out).
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from unittest import mock

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from l3_atom.avro.codecs import register_encoders
from l3_atom.config import DEFAULT_CONFIG_PATH, Settings
from l3_atom.infra.local_pipeline import LocalStack
from l3_atom.stream_processing.candles import Trade
from tests.kafka_reader import TopicReader
from tests.test_candles import brute_force

MINUTE = 60_000
GRACE_MS = 5_000
DAY = 86_400_000
READ_TIMEOUT_S = 90.0


def candle_config(tmp_path: Path) -> Path:
    text = DEFAULT_CONFIG_PATH.read_text()
    assert "intervals = 1m,1h,1d" in text
    path = tmp_path / "config.ini"
    path.write_text(text.replace("intervals = 1m,1h,1d", "intervals = 1m"))
    return path


def trade_sequence(base: int, minutes: range) -> list[Trade]:
    """Per minute: in-order trades, one out of order, one late within grace, one too late."""
    trades = []
    for m in minutes:
        start = base + m * MINUTE
        trades += [
            Trade("coinbase", "BTC.USD", Decimal(f"{100 + m}.5"), Decimal("0.1"), start + 1_000, 1),
            Trade("coinbase", "BTC.USD", Decimal(f"{103 + m}"), Decimal("0.25"), start + 40_000, 2),
            Trade("coinbase", "BTC.USD", Decimal(f"{99 + m}.75"), Decimal("1.5"), start + 20_000, 3),  # out of order
            Trade("coinbase", "BTC.USD", Decimal(f"{101 + m}"), Decimal("0.5"), start + 61_000, 4),  # next window
            Trade("coinbase", "BTC.USD", Decimal(f"{98 + m}"), Decimal("0.3"), start + 59_000, 5),  # late, in grace
            Trade("coinbase", "BTC.USD", Decimal(f"{104 + m}"), Decimal("0.2"), start + 67_000, 6),  # closes window
            Trade("coinbase", "BTC.USD", Decimal(1), Decimal(9), start + 10_000, 7),  # too late: not counted
        ]
    return trades


class TradeWriter:
    def __init__(self, stack: LocalStack):
        with mock.patch.dict(os.environ, stack.env()):
            settings = Settings()
            registry, producer = settings.schema_registry.client_config(), settings.kafka.producer_config()
        self.encoder = register_encoders(registry, ["trades"])["trades"]
        self.producer = Producer(producer)
        self.bootstrap_servers = stack.broker.bootstrap_servers
        self.group = settings.processor.app_id
        self.next_id = 0

    def send(self, trades: list[Trade]) -> None:
        for t in trades:
            self.next_id += 1
            record = {"exchange": t.exchange, "symbol": t.symbol, "trade_id": str(self.next_id), "price": t.price,
                      "size": t.size, "taker_side": "buy", "sequence": None, "origin": None, "event_timestamp": t.timestamp,
                      "atom_timestamp": t.atom_timestamp}
            self.producer.produce("trades", self.encoder.encode(record), f"{t.exchange}_{t.symbol}")
        assert self.producer.flush(30) == 0

    def wait_committed(self, timeout_s: float) -> None:
        """Wait until the processor's group has committed every trade sent (its next read is past them all).

        A worker that takes over then starts exactly at the committed offset, with no replayed
        trade before the first new one: the case where a takeover once dropped that first record.
        The topic starts empty, so the committed offsets add up to the trades sent (Tansu's
        reported end offsets are unreliable after multi-record batches: ARCHITECTURE.md).
        """
        probe = Consumer({"bootstrap.servers": self.bootstrap_servers, "group.id": self.group,
                          "enable.auto.commit": False})
        try:
            partitions = probe.list_topics("trades", timeout=10).topics["trades"].partitions
            tps = [TopicPartition("trades", p) for p in partitions]
            deadline = time.monotonic() + timeout_s
            committed = 0
            while time.monotonic() < deadline:
                committed = sum(max(tp.offset, 0) for tp in probe.committed(tps, timeout=10))
                if committed == self.next_id:
                    return
                time.sleep(0.5)
            raise AssertionError(f"{committed} of {self.next_id} trades committed")
        finally:
            probe.close()


def closed_candles(reader: TopicReader) -> list[dict]:
    return [r.value for r in reader.by_topic("candle") if r.value["closed"]]


def compare(found: list[dict], trades: list[Trade]) -> None:
    expected, _ = brute_force(trades, ["1m"], GRACE_MS)
    by_start = {c["start"]: c for c in found}
    assert len(by_start) == len(found), "one closed candle per window"
    assert sorted(by_start) == sorted(c["start"] for c in expected)
    for candle in expected:
        assert by_start[candle["start"]] == candle, candle["start"]


@pytest.mark.timeout(300)
def test_candles_match_brute_force_and_survive_a_worker_crash(tmp_path: Path) -> None:
    base = (int(time.time() * 1000) + DAY) // MINUTE * MINUTE
    first, second = trade_sequence(base, range(3)), trade_sequence(base, range(3, 6))
    with LocalStack(("coinbase",), workdir=tmp_path, config_path=candle_config(tmp_path)) as stack:
        reader = TopicReader(stack.broker.bootstrap_servers, stack.registry_url, ["candle"])
        try:
            writer = TradeWriter(stack)
            writer.send(first)
            # Windows 0..2 close (the last trades of each reach the next window); window 3 is open.
            reader.read_until(lambda _: len(closed_candles(reader)) >= 3, READ_TIMEOUT_S)
            compare(closed_candles(reader), first)

            url = f"http://127.0.0.1:{stack.web_ports[0]}/candles/coinbase/BTC.USD/1m"
            with urllib.request.urlopen(url, timeout=10) as response:
                latest = json.loads(response.read())
            assert latest["closed"] is False and latest["start"] == base + 3 * MINUTE
            with urllib.request.urlopen(f"{url}?start={base}&end={base + 2 * MINUTE}", timeout=10) as response:
                assert [c["start"] for c in json.loads(response.read())] == [base, base + MINUTE]

            # Kill the worker mid-window (window 3 holds trades) once its offsets are committed,
            # start another, finish the sequence.
            writer.wait_committed(READ_TIMEOUT_S)
            stack.processes["processor0"].send_signal(signal.SIGKILL)
            stack.processes["processor0"].wait(10)
            stack.start_worker(1)
            writer.send(second)
            reader.read_until(lambda _: len(closed_candles(reader)) >= 6, READ_TIMEOUT_S)
            reader.read_until(lambda _: False, 3.0)  # a duplicate would arrive now
            compare(closed_candles(reader), first + second)
            print(f"\ncandles: {len(closed_candles(reader))} closed, identical to brute force across a SIGKILL")
        finally:
            reader.close()
