"""The processor's metrics, ``/health`` and ``/ready`` inside a Faust worker.

Faust's own Prometheus sensor (``faust.sensors.prometheus``) measures what Faust does (events,
commits, rebalances, end and committed offsets per partition) into the same registry, under
``l3_atom_faust_``; L3 Atom's own counts (raw messages, records per topic, skips, dead letters, book
checks, books in sync) are read at scrape time by :class:`ProcessorCollector`.  The agents add, per
batch, one latency observation and the batch's last offset (for the consumer lag per raw partition).

Ready means: the worker holds raw partitions (not in a rebalance) and its producer delivers (no
delivery failure in the last ``DELIVERY_FAILURE_WINDOW_S``).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from l3_atom.observability.metrics import (
    CANDLES_CLOSED,
    CONSUMER_LAG,
    LATE_TRADES,
    CallbackCollector,
    ProcessorCollector,
    counter,
    gauge,
    latency_histogram,
    observe_latency,
    producer_families,
    ready_family,
)
from l3_atom.observability.server import MetricsServer
from l3_atom.topics import ATOM_TIMESTAMP_HEADER, raw_topic

ROLE = "processor"
FAUST_PREFIX = "l3_atom_faust"
# A delivery failure this recent makes the worker not ready.
DELIVERY_FAILURE_WINDOW_S = 60.0
ALL = "all"


def atom_timestamp_of(headers: Iterable[tuple[str, bytes]] | None) -> int | None:
    """A raw record's ``atom_timestamp`` header (µs), None when absent or not a number."""
    for name, value in headers or ():
        if name == ATOM_TIMESTAMP_HEADER:
            return int(value) if value and value.isdigit() else None
    return None


class ProcessorMetrics:
    """Registry, collectors and readiness of one worker; the agents call :meth:`batch_done` per batch."""

    def __init__(self, app: Any, sock: socket.socket, processors: Sequence[Any], publisher: Any):
        self.app = app
        self.publisher = publisher
        self.registry = CollectorRegistry()
        app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(self.registry, FAUST_PREFIX))
        self.registry.register(ProcessorCollector(processors))
        self.latency = latency_histogram(self.registry)
        # (raw topic, partition) -> the last offset processed, set once per batch.
        self.positions: dict[tuple[str, int], int] = {}
        self.raw_topics = {processor.source: raw_topic(processor.source) for processor in processors}
        self.held: set[TP] = set()
        self.candles: Any = None
        self.registry.register(CallbackCollector(self._families))
        self.server = MetricsServer(sock, self.registry, self.not_ready, ROLE)
        app.on_partitions_assigned.connect(self._assigned)
        app.on_partitions_revoked.connect(self._revoked)

    async def _assigned(self, _app: Any, assigned: set[TP], **_kwargs: Any) -> None:
        self.held = set(assigned)

    async def _revoked(self, _app: Any, revoked: set[TP], **_kwargs: Any) -> None:
        self.held -= set(revoked)

    def latency_of(self, source: str) -> Any:
        """The source's latency histogram child, looked up once per agent (not per batch)."""
        return self.latency.labels(source)

    def batch_done(self, latency: Any, topic: str, batch: Sequence[Any]) -> None:
        """After a batch: its last offset (lag) and one latency sample from its last record."""
        last = batch[-1]
        self.positions[topic, last.partition] = last.offset
        stamp = atom_timestamp_of(last.headers)
        if stamp is not None:
            observe_latency(latency, stamp)

    def _raw_held(self) -> list[TP]:
        raw = set(self.raw_topics.values())
        return [tp for tp in self.held if tp.topic in raw]

    def _families(self) -> Iterator[Metric]:
        lag = gauge(CONSUMER_LAG, "Raw records not yet processed, per held raw partition",
                    ["source", "topic", "partition"])
        consumer = self.app.consumer
        source_of = {topic: source for source, topic in self.raw_topics.items()}
        for tp in self._raw_held():
            highwater = consumer.highwater(tp)
            position = self.positions.get((tp.topic, tp.partition))
            if highwater is None:
                continue
            done = 0 if position is None else position + 1
            lag.add_metric([source_of[tp.topic], tp.topic, str(tp.partition)], max(0, highwater - done))
        yield lag
        failures = self.publisher.failures
        yield from producer_families(ALL, ROLE, failures, self.publisher.queue_depth())
        if self.candles is not None:
            closed = counter(CANDLES_CLOSED, "Candles closed and published", [])
            closed.add_metric([], self.candles.published)
            yield closed
            late = counter(LATE_TRADES, "Trades too late for their window, by interval", ["interval"])
            by_interval: dict[str, int] = {}
            for key, count in list(self.candles.builder.late.items()):
                interval = key.rsplit("_", 1)[-1]
                by_interval[interval] = by_interval.get(interval, 0) + count
            for interval, count in by_interval.items():
                late.add_metric([interval], count)
            yield late
        yield ready_family(ROLE, self.not_ready())

    def not_ready(self) -> list[str]:
        reasons = []
        if self.app.rebalancing:
            reasons.append("rebalancing: partitions are being reassigned")
        elif not self._raw_held():
            reasons.append(f"no partition of {', '.join(sorted(self.raw_topics.values()))} assigned")
        failed_at = self.publisher.last_failure_at
        if failed_at is not None and time.monotonic() - failed_at < DELIVERY_FAILURE_WINDOW_S:
            reasons.append(f"producer failed to deliver {time.monotonic() - failed_at:.0f} s ago: "
                           f"{dict(self.publisher.failures)}")
        return reasons
