"""``runner.py connector``: one source's connector writing to its raw topic.

Sets up the topics and the dead-letter schema, then runs the source's
``DataFeed`` into a ``KafkaRawSink`` until SIGINT/SIGTERM, and delivers what
is still queued before it exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

from l3_atom.config import Settings
from l3_atom.errors import UserError
from l3_atom.raw_sink import KafkaRawSink
from l3_atom.sources import connector_class
from l3_atom.stream_processing.codecs import register_encoders
from l3_atom.tokens import Symbol
from l3_atom.topic_admin import ensure_topics
from l3_atom.topics import DEAD_LETTER, raw_topic

LOG = logging.getLogger(__name__)


def _channels(value: str | None) -> list[str] | None:
    return [c.strip() for c in value.split(",") if c.strip()] if value else None


async def run_connector(
    settings: Settings,
    source: str,
    symbols: Sequence[str],
    ws_url: str | None = None,
    rest_url: str | None = None,
    channels: Sequence[str] | None = None,
) -> None:
    # Check what the user typed before touching Kafka.
    feed_class = connector_class(source)
    symbols = [str(Symbol.parse(symbol)) for symbol in symbols]
    if getattr(feed_class, "needs_symbols", True) and not symbols:
        raise UserError(f"{source} needs at least one --symbol (see: runner.py symbols --source {source})")
    overrides = settings.source(source)
    kafka = settings.kafka
    ensure_topics(kafka, [raw_topic(source), DEAD_LETTER])
    encoders = register_encoders(settings.schema_registry.client_config(), [DEAD_LETTER])
    sink = KafkaRawSink(source, kafka, encoders[DEAD_LETTER])
    feed = feed_class(
        symbols,
        sink,
        settings.connector,
        ws_url=ws_url or overrides.get("ws_url"),
        rest_url=rest_url or overrides.get("rest_url"),
        channels=channels or _channels(overrides.get("channels")),
    )
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await feed.run()
    except asyncio.CancelledError:
        LOG.info("%s: stopping", source)
    finally:
        sink.close()
        LOG.info("%s: %d frames written to %s, %d dead letters", source, sink.produced, sink.topic, sink.dead_letters)
