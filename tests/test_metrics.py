"""The metric vocabulary (names, bounded labels), readiness reasons and the metrics server's bad input."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Iterable
from types import SimpleNamespace

import aiohttp
import pytest
from faust.sensors.prometheus import FaustMetrics
from prometheus_client import CollectorRegistry, Counter

from l3_atom.avro.codecs import AvroEncoder
from l3_atom.config import DEFAULT_METRICS_PORTS, METRICS_PORT_ENV, Settings
from l3_atom.feed import WebsocketConnection
from l3_atom.infra.processes import LOOPBACK, runner_command
from l3_atom.observability.metrics import (
    BOUNDED_LABELS,
    MAX_LABEL_VALUES,
    OTHER,
    PREFIX,
    ConnectorCollector,
    GatewayCollector,
    ProcessorCollector,
    SafeCollector,
    bounded,
)
from l3_atom.observability.server import MetricsPortInUse, MetricsServer, bind_metrics_socket
from l3_atom.sources import connector_class, standardiser_class
from l3_atom.stream_processing.processor_metrics import FAUST_PREFIX
from l3_atom.stream_processing.raw_messages import RawMessageProcessor
from l3_atom.topics import ATOM_TIMESTAMP_HEADER, DEAD_LETTER, NORMALISED_TOPICS
from l3_atom.ws_stream import StreamServer

GATEWAY_NAMES = {
    "l3_atom_gateway_clients", "l3_atom_gateway_connections", "l3_atom_gateway_messages_sent",
    "l3_atom_gateway_dropped_records", "l3_atom_gateway_refused_requests",
    "l3_atom_gateway_largest_client_queue_messages", "l3_atom_gateway_consumed_records",
    "l3_atom_gateway_undecodable_records",
}
# Labels Faust's own sensor uses (stream, table and metric names are the app's own: bounded).
FAUST_LABELS = frozenset({"stream", "table", "operation", "metric", "status_code", "topic", "partition"})
DISTINCT = 500
CLI_TIMEOUT_S = 60


def vocabulary_errors(registry: CollectorRegistry, allowed: Iterable[str] = BOUNDED_LABELS) -> list[str]:
    """Every break of the naming rules: prefix, ``_total`` counters, unknown labels, too many values of one."""
    allowed = frozenset(allowed)
    errors = []
    for family in registry.collect():
        if not family.name.startswith(f"{PREFIX}_"):
            errors.append(f"{family.name}: no {PREFIX}_ prefix")
        values: dict[str, set[str]] = defaultdict(set)
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith(("_total", "_created")):
                errors.append(f"{sample.name}: a counter sample without _total")
            for label, value in sample.labels.items():
                values[label].add(value)
        for label, seen in values.items():
            if label not in allowed:
                errors.append(f"{family.name}: label {label!r} is not one of the bounded labels")
            elif label != "le" and len(seen) > MAX_LABEL_VALUES + 1:
                errors.append(f"{family.name}: {len(seen)} values of {label!r}")
    return errors


def connector_feed():
    settings = Settings()
    feed = connector_class("coinbase")(["BTC.USD"], None, settings.connector)

    async def nothing(_connection: WebsocketConnection) -> None:
        return None

    connection = WebsocketConnection("ws://unused", "coinbase.0", settings.connector, nothing, lambda *_: None)
    connection.stats.frames, connection.stats.bytes, connection.stats.connects = 10, 1000, 1
    # Reasons an attacker or a flaky network could vary: exception class names.
    for index in range(DISTINCT):
        connection.stats.disconnected(f"Error{index}")
    feed.connections.append(connection)
    feed.rest_requests["snapshot", "200"] += 2
    return feed, connection


def processor_with_dead_letters() -> RawMessageProcessor:
    standardiser = standardiser_class("coinbase")()
    topics = [*standardiser.topics, DEAD_LETTER]
    encoders = {topic: AvroEncoder(topic, schema_id) for schema_id, topic in enumerate(topics, 1)}
    processor = RawMessageProcessor("coinbase", standardiser, encoders, 1_000_000)
    headers = [(ATOM_TIMESTAMP_HEADER, b"1700000000000000")]
    for index in range(DISTINCT):
        # Each an unknown message type of its own: the dead-letter reason text varies with the input.
        frame = b'{"type": "made_up_%d", "product_id": "BTC-USD"}' % index
        processor.process(frame, headers, "coinbase_raw", 0, index, "coinbase_BTC-USD_full")
    return processor


def gateway_collector() -> GatewayCollector:
    """The gateway's collector on a real ``StreamServer``; the Kafka reader's two counts stand in for its reader."""
    stream = StreamServer(NORMALISED_TOPICS, ["coinbase_BTC.USD"], 10)
    stream.connections, stream.dropped, stream.refused = 3, 7, 2
    reader = SimpleNamespace(consumed=Tally({topic: 5 for topic in (*NORMALISED_TOPICS, DEAD_LETTER)}),
                             undecodable=1)
    return GatewayCollector(stream, reader)


def test_every_metric_has_the_prefix_total_counters_and_bounded_labels() -> None:
    registry = CollectorRegistry()
    feed, _ = connector_feed()
    registry.register(ConnectorCollector(feed))
    processor = processor_with_dead_letters()
    assert len(processor.dead_letters) > MAX_LABEL_VALUES, "the input must try to grow the label set"
    registry.register(ProcessorCollector([processor]))
    registry.register(gateway_collector())
    FaustMetrics.create(registry, FAUST_PREFIX)
    assert vocabulary_errors(registry, BOUNDED_LABELS | FAUST_LABELS) == []
    names = {family.name for family in registry.collect()}
    assert {"l3_atom_connector_frames", "l3_atom_processor_dead_letters", "l3_atom_faust_messages_received"} <= names
    assert GATEWAY_NAMES <= names


def test_the_gateway_collector_reads_the_gateways_counts() -> None:
    registry = CollectorRegistry()
    registry.register(gateway_collector())
    value = registry.get_sample_value
    assert value("l3_atom_gateway_connections_total") == 3
    assert value("l3_atom_gateway_dropped_records_total") == 7
    assert value("l3_atom_gateway_refused_requests_total") == 2
    assert value("l3_atom_gateway_clients") == 0
    assert value("l3_atom_gateway_consumed_records_total", {"topic": "lob_l3"}) == 5
    assert value("l3_atom_gateway_consumed_records_total", {"topic": DEAD_LETTER}) == 5
    assert value("l3_atom_gateway_undecodable_records_total") == 1


def test_an_unbounded_label_is_caught() -> None:
    registry = CollectorRegistry()
    per_order = Counter("l3_atom_orders", "one series per order", ["order_id"], registry=registry)
    per_order.labels("abc").inc()
    per_price = Counter("l3_atom_levels", "too many sources", ["source"], registry=registry)
    for index in range(MAX_LABEL_VALUES + 5):
        per_price.labels(f"source{index}").inc()
    errors = vocabulary_errors(registry)
    assert any("'order_id' is not one of the bounded labels" in error for error in errors)
    assert any("values of 'source'" in error for error in errors)


def test_bounded_keeps_the_first_values_and_sums_the_rest_as_other() -> None:
    counts = {f"reason {index}": 1 for index in range(MAX_LABEL_VALUES + 10)}
    kept = bounded(counts)
    assert len(kept) == MAX_LABEL_VALUES + 1
    assert kept[OTHER] == 10
    assert sum(kept.values()) == sum(counts.values())


def test_connector_readiness_names_the_connection_and_the_reason() -> None:
    feed, connection = connector_feed()
    collector = ConnectorCollector(feed)
    assert collector.not_ready() == ["coinbase.0: not connected and subscribed"]
    connection.subscribed = True
    assert collector.not_ready() == []
    connection._last_frame = time.monotonic() - feed.settings.silence_timeout_s - 5
    (reason,) = collector.not_ready()
    assert reason.startswith("coinbase.0: no frame for") and "silence timeout" in reason


def test_each_role_has_its_own_default_port_and_the_environment_overrides_it(monkeypatch) -> None:
    monkeypatch.delenv(METRICS_PORT_ENV, raising=False)
    metrics = Settings().metrics
    ports = [metrics.port(role) for role in DEFAULT_METRICS_PORTS]
    assert len(set(ports)) == len(ports)
    assert metrics.port("connector", 0) == 0
    monkeypatch.setenv(METRICS_PORT_ENV, "0")
    assert metrics.port("processor") == 0


def test_a_port_in_use_is_one_line_naming_the_port_and_the_option() -> None:
    taken = bind_metrics_socket(LOOPBACK, 0, "connector")
    port = taken.getsockname()[1]
    try:
        with pytest.raises(MetricsPortInUse, match=f"{port}.*--metrics-port"):
            bind_metrics_socket(LOOPBACK, port, "connector")
        done = subprocess.run(
            runner_command("connector", "--source", "coinbase", "--symbol", "BTC.USD", "--metrics-port", str(port)),
            capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False,
        )
    finally:
        taken.close()
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(port) in lines[0] and "--metrics-port" in lines[0]


class Broken(SafeCollector):
    def families(self):
        raise RuntimeError("state changed under the scrape")


def test_scrapes_and_readiness_never_raise() -> None:
    registry = CollectorRegistry()
    registry.register(Broken())
    Counter("l3_atom_alive", "still served", registry=registry).inc()

    def failing_check() -> list[str]:
        raise RuntimeError("stopping")

    async def scenario() -> dict[str, tuple[int, str]]:
        server = MetricsServer(bind_metrics_socket(LOOPBACK, 0, "connector"), registry, failing_check, "test")
        await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                answers = {}
                for path in ("/metrics", "/health", "/ready"):
                    async with session.get(server.address + path) as response:
                        answers[path] = (response.status, await response.text())
                return answers
        finally:
            await server.stop()

    answers = asyncio.run(scenario())
    assert answers["/metrics"][0] == 200 and "l3_atom_alive_total 1.0" in answers["/metrics"][1]
    assert answers["/health"][0] == 200
    status, body = answers["/ready"]
    assert status == 503 and "readiness check failed" in body and "stopping" in body


def test_a_free_port_is_taken_when_asked_for_zero() -> None:
    sock = bind_metrics_socket(LOOPBACK, 0, "local")
    try:
        assert sock.getsockname()[1] > 0
        assert sock.type == socket.SOCK_STREAM
    finally:
        sock.close()
