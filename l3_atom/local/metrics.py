"""``runner.py local``'s metrics, ``/health`` and ``/ready``: the connector's and processor's names, plus the bus.

The same collectors as the distributed roles read each source's feed and ``RawMessageProcessor``;
local mode adds how full each source's bus is and the records slow websocket clients lost.  Ready
means every source's connections are subscribed and have had a frame within the silence timeout.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from l3_atom.observability.metrics import (
    BUS_CAPACITY,
    BUS_FRAMES,
    WS_DROPPED,
    CallbackCollector,
    ConnectorCollector,
    ProcessorCollector,
    counter,
    gauge,
    ready_family,
)
from l3_atom.observability.server import MetricsServer

ROLE = "local"
WEBSOCKET_OUTPUT = "websocket"


def local_metrics_server(sock: socket.socket, runtime: Any) -> MetricsServer:
    """The metrics server of a :class:`~l3_atom.local.runtime.Runtime` (its sources and outputs)."""
    registry = CollectorRegistry()
    connectors = [ConnectorCollector(source.feed) for source in runtime.sources]
    for collector in connectors:
        registry.register(collector)
    registry.register(ProcessorCollector(source.processor for source in runtime.sources))

    def not_ready() -> list[str]:
        return [reason for collector in connectors for reason in collector.not_ready()]

    def families() -> Iterator[Metric]:
        fill = gauge(BUS_FRAMES, "Frames waiting on the source's bus", ["source"])
        capacity = gauge(BUS_CAPACITY, "Frames the source's bus holds before its connections stop reading",
                         ["source"])
        for source in runtime.sources:
            fill.add_metric([source.source], len(source.bus))
            capacity.add_metric([source.source], source.bus.capacity)
        yield from (fill, capacity)
        dropped = counter(WS_DROPPED, "Records slow websocket clients did not get", [])
        for worker in runtime.workers:
            if worker.output.name == WEBSOCKET_OUTPUT:
                dropped.add_metric([], worker.output.dropped)
                yield dropped
        yield ready_family(ROLE, not_ready())

    registry.register(CallbackCollector(families))
    return MetricsServer(sock, registry, not_ready, ROLE)
