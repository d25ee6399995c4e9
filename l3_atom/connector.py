"""``runner.py connector``: one source's connector writing to its raw topic.

Sets up the topics and the dead-letter schema, then runs the source's
``DataFeed`` into a ``KafkaRawSink`` until SIGINT/SIGTERM, and delivers what
is still queued before it exits.  Beside it, a :class:`ResyncListener` acts on
the processor's requests for fresh book snapshots.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence

from l3_atom.avro.codecs import register_encoders
from l3_atom.config import Settings
from l3_atom.data_source import DataFeed
from l3_atom.errors import UserError
from l3_atom.raw_sink import FrameSink, KafkaRawSink
from l3_atom.resync_listener import ResyncListener
from l3_atom.sources import connector_class
from l3_atom.symbol_selection import AllSymbols
from l3_atom.tokens import Symbol
from l3_atom.topic_admin import ensure_topics
from l3_atom.topics import BOOK_RESYNC, DEAD_LETTER, raw_topic

LOG = logging.getLogger(__name__)


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
    extra = {"every": every} if every is not None else {}

    def build(sink: FrameSink) -> DataFeed:
        return feed_class(
            symbols,
            sink,
            settings.connector,
            ws_url=ws_url or overrides.get("ws_url"),
            rest_url=rest_url or overrides.get("rest_url"),
            channels=channels or _channels(overrides.get("channels")),
            **extra,
        )

    return build


async def run_connector(
    settings: Settings,
    source: str,
    symbols: Sequence[str],
    ws_url: str | None = None,
    rest_url: str | None = None,
    channels: Sequence[str] | None = None,
    every: AllSymbols | None = None,
) -> None:
    # Check what the user typed before touching Kafka.
    make_feed = feed_factory(settings, source, symbols, ws_url, rest_url, channels, every)
    kafka = settings.kafka
    ensure_topics(kafka, [raw_topic(source), DEAD_LETTER, BOOK_RESYNC])
    encoders = register_encoders(settings.schema_registry.client_config(), [DEAD_LETTER, BOOK_RESYNC])
    sink = KafkaRawSink(source, kafka, encoders[DEAD_LETTER])
    feed = make_feed(sink)
    listener = ResyncListener(kafka, source, encoders[BOOK_RESYNC].schema_id)
    listening = asyncio.create_task(listener.run(feed))
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
        if feed.resyncs:
            LOG.info("%s: book resyncs by reason %s; requests %s", source, feed.resyncs, dict(listener.counts))
        sink.close()
        LOG.info("%s: %d frames written to %s, %d dead letters", source, sink.produced, sink.topic, sink.dead_letters)
