"""``runner.py connector``: one source's connector writing to its raw topic.

Sets up the topics and the dead-letter schema, then runs the source's
``DataFeed`` into a ``KafkaRawSink`` until SIGINT/SIGTERM, and delivers what
is still queued before it exits.  Beside it, a :class:`ResyncListener` acts on
the processor's requests for fresh book snapshots.  On start, where the source
has a trade history, the tail of its raw topic says when each symbol's trades
were last archived, and the feed backfills the time it was not running.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry

from l3_atom.avro.codecs import register_encoders
from l3_atom.config import Settings
from l3_atom.data_source import DataFeed
from l3_atom.errors import UserError
from l3_atom.limits import OVERRIDES
from l3_atom.observability.metrics import CallbackCollector, ConnectorCollector, ready_family
from l3_atom.observability.server import MetricsServer, bind_metrics_socket
from l3_atom.raw_sink import FrameSink, KafkaRawSink
from l3_atom.raw_tail import read_tail
from l3_atom.resync_listener import ResyncListener
from l3_atom.sources import connector_class
from l3_atom.symbol_selection import AllSymbols
from l3_atom.tokens import Symbol
from l3_atom.topic_admin import ensure_topics
from l3_atom.topic_watch import watch_topics
from l3_atom.topics import BOOK_RESYNC, COVERAGE, DEAD_LETTER, raw_topic

LOG = logging.getLogger(__name__)
US_PER_MS = 1000
ROLE = "connector"


def _channels(value: str | None) -> list[str] | None:
    return [c.strip() for c in value.split(",") if c.strip()] if value else None


def feed_factory(
    settings: Settings,
    source: str,
    symbols: Sequence[str],
    ws_url: str | None = None,
    rest_url: str | None = None,
    channels: Sequence[str] | None = None,
    every: AllSymbols | None = None,
) -> Callable[[FrameSink], DataFeed]:
    """Check what the user typed now (source, symbols); build the feed later, on whatever sink the runtime has.

    Endpoints and channels given here win over the source's ``config.ini`` section, which wins over the
    exchange's defaults.  Both runtimes (``runner.py connector`` and ``runner.py local``) build feeds here.
    ``every`` (``--all-symbols``) has the feed choose its symbols from the venue's list.
    """
    feed_class = connector_class(source)
    symbols = [str(Symbol.parse(symbol)) for symbol in symbols]
    needs_symbols = getattr(feed_class, "needs_symbols", True)
    if every is not None and not needs_symbols:
        raise UserError(f"{source} has no symbol list: --all-symbols does not apply")
    if needs_symbols and not symbols and every is None:
        raise UserError(
            f"{source} needs at least one --symbol, a --symbols-file or --all-symbols "
            f"(see: runner.py symbols --source {source})"
        )
    overrides = settings.source(source)
    # Venues declare limits (config.ini [limits.<source>] overrides them); chain nodes have none.
    declared = getattr(feed_class, "limits", None)
    limits = {"limits": declared.overridden(settings.limit_overrides(source, OVERRIDES))} if declared else {}
    extra = {"every": every} if every is not None else {}

    def build(sink: FrameSink) -> DataFeed:
        return feed_class(
            symbols,
            sink,
            settings.connector,
            ws_url=ws_url or overrides.get("ws_url"),
            rest_url=rest_url or overrides.get("rest_url"),
            channels=channels or _channels(overrides.get("channels")),
            **limits,
            **extra,
        )

    return build


def connector_metrics_server(
    sock: socket.socket, feed: DataFeed, sink: FrameSink, listener: ResyncListener | None
) -> MetricsServer:
    """``/metrics`` from the feed's, sink's and listener's own counts; ``/ready`` from its connections."""
    registry = CollectorRegistry()
    collector = ConnectorCollector(feed, sink, listener)
    registry.register(collector)
    registry.register(CallbackCollector(lambda: [ready_family(ROLE, collector.not_ready())]))
    return MetricsServer(sock, registry, collector.not_ready, f"{feed.name} {ROLE}")


async def run_connector(
    settings: Settings,
    source: str,
    symbols: Sequence[str],
    ws_url: str | None = None,
    rest_url: str | None = None,
    channels: Sequence[str] | None = None,
    metrics_port: int | None = None,
    every: AllSymbols | None = None,
) -> None:
    # Check what the user typed, and take the metrics port, before touching Kafka.
    make_feed = feed_factory(settings, source, symbols, ws_url, rest_url, channels, every)
    metrics_socket = bind_metrics_socket(settings.metrics.host, settings.metrics.port(ROLE, metrics_port), ROLE)
    kafka = settings.kafka
    topics = [raw_topic(source), DEAD_LETTER, BOOK_RESYNC, COVERAGE]
    ensure_topics(kafka, topics)
    encoders = register_encoders(settings.schema_registry.client_config(), [DEAD_LETTER, BOOK_RESYNC, COVERAGE])
    sink = KafkaRawSink(source, kafka, encoders[DEAD_LETTER], encoders[COVERAGE])
    feed = make_feed(sink)
    history = getattr(feed, "trade_history", None)  # on-chain feeds have none
    if history is not None:
        archived = read_tail(kafka, source, history.feed)
        feed.resume_from = {key: stamp // US_PER_MS for key, stamp in archived.items()}
        if archived:
            LOG.info("%s: resuming %d symbols' trades from the raw topic's tail", source, len(archived))
    listener = ResyncListener(kafka, source, encoders[BOOK_RESYNC].schema_id)
    listening = asyncio.create_task(listener.run(feed))
    watch_topics(kafka, topics, f"{source} connector")
    server = None if metrics_socket is None else connector_metrics_server(metrics_socket, feed, sink, listener)
    if server is not None:
        await server.start()
        print(f"{source} connector: metrics on {server.address}/metrics", flush=True)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await feed.run()
    except asyncio.CancelledError:
        LOG.info("%s: stopping", source)
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        if server is not None:
            await server.stop()
        if feed.resyncs:
            LOG.info("%s: book resyncs by reason %s; requests %s", source, feed.resyncs, dict(listener.counts))
        sink.close()
        LOG.info("%s: %d frames written to %s, %d dead letters, %d coverage records, %d trades backfilled", source,
                 sink.produced, sink.topic, sink.dead_letters, sink.coverage_records, getattr(feed, "backfilled", 0))
