"""``runner.py consume``: print a normalised topic's records, decoded, one per line.

It is a plain confluent-kafka consumer with the Schema Registry's
``AvroDeserializer`` — exactly what any user's consumer would be — and it
reads all partitions by assignment, without joining a consumer group, so it
starts at once and commits nothing.
"""

from __future__ import annotations

import sys
import time
from decimal import Context, Decimal
from typing import Any, TextIO

import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from l3_atom.bounded_memo import BoundedMemo
from l3_atom.config import Settings
from l3_atom.coverage import describe
from l3_atom.topics import COVERAGE

POLL_S = 0.5
METADATA_TIMEOUT_S = 10.0
# The schemas' decimal precision: normalising in the default context (28 digits) would round.
_EXACT = Context(prec=38)
# Prices and sizes repeat: the plain text of this many decimals is kept, then the cache starts over.
PLAIN_CACHE_LIMIT = 4096


def plain(value: Decimal) -> str:
    """An exact decimal as a plain number without trailing zeros: ``30000.500...0`` -> ``30000.5``.

    ``str`` already writes most decimals (a decoded record's, at scale 18) in plain notation, at a
    third of the cost of ``format``; then only its trailing zeros go.  Others (an exponent, or more
    digits than the precision, which normalising rounds) are normalised and formatted.
    """
    text = str(value)
    if "E" in text or (len(text) > _EXACT.prec and len(text) - ("." in text) - (text[0] == "-") > _EXACT.prec):
        return format(value.normalize(_EXACT), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


class _JsonTexts(dict[Decimal, str]):
    """``texts[value]``: the JSON text of a value orjson cannot write itself (decimals, bytes).

    Its bound ``__getitem__`` is orjson's ``default``, called for every decimal of every record: a
    decimal seen before is answered by the dict in C, without a Python frame (formatting is ~10x a
    lookup); ``__missing__`` formats the others and remembers the decimals.
    """

    def __missing__(self, value: Any) -> str:
        if isinstance(value, Decimal):
            text = plain(value)
            # Zero is not kept: -0 equals 0 but prints "-0".  NaN never equals itself.
            if value and value.is_finite():
                if len(self) >= PLAIN_CACHE_LIMIT:
                    self.clear()
                self[value] = text
            return text
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        raise TypeError(type(value).__name__)


_json_default = _JsonTexts().__getitem__


def _cached_plain(value: Decimal) -> str:
    """``plain(value)``, remembered: equal decimals have the same plain text."""
    return _json_default(value)


def format_human(topic: str, key: str | None, record: dict[str, Any]) -> str:
    """``topic key field=value ...`` with decimals as plain numbers (no trailing zeros); coverage as a sentence."""
    if topic == COVERAGE:
        return f"{topic} {describe(record)}"
    parts = []
    for name, value in record.items():
        if isinstance(value, Decimal):
            value = _cached_plain(value)
        elif isinstance(value, bytes):
            value = f"<{len(value)} bytes>"
        parts.append(f"{name}={value}")
    return f"{topic} {key} " + " ".join(parts)


def _json_head(topic_key: tuple[str, str | None]) -> bytes:
    """``{"topic":...,"key":...,``: the start of every line of one topic and key."""
    topic, key = topic_key
    return orjson.dumps({"topic": topic, "key": key})[:-1] + b","


# The heads of the lines of this many (topic, key) pairs are kept (a stream has one per feed and symbol).
JSON_HEADS = 4096
_json_heads = BoundedMemo(_json_head, JSON_HEADS)


def json_bytes(topic: str, key: str | None, record: dict[str, Any], option: int = 0) -> bytes:
    """``{"topic", "key", ...fields}`` as UTF-8 bytes, decimals as exact plain strings (orjson ``option``).

    The record is written as it is, after its topic and key's remembered head, rather than copied
    into a new dict first (a record of its own ``topic`` or ``key`` field, or none, is merged as
    ``{"topic": topic, "key": key, **record}`` is).  ``option`` must not change the layout (indent).
    """
    if record and "topic" not in record and "key" not in record:
        return _json_heads[topic, key] + orjson.dumps(record, default=_json_default, option=option)[1:]
    return orjson.dumps({"topic": topic, "key": key, **record}, default=_json_default, option=option)


def format_json(topic: str, key: str | None, record: dict[str, Any]) -> str:
    return json_bytes(topic, key, record).decode()


def json_line(topic: str, key: str | None, record: dict[str, Any]) -> bytes:
    """``format_json``'s line as UTF-8 bytes with its newline: what a JSON-lines file appends."""
    return json_bytes(topic, key, record, orjson.OPT_APPEND_NEWLINE)


def consume(
    settings: Settings,
    topics: list[str],
    from_beginning: bool = False,
    limit: int | None = None,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    idle_timeout_s: float | None = None,
) -> int:
    """Print records until ``limit`` (or ``idle_timeout_s`` without one, or Ctrl-C); return the count."""
    consumer = Consumer(
        {**settings.kafka.client_config(), "group.id": "l3_atom_consume", "enable.auto.commit": False}
    )
    deserializer = AvroDeserializer(SchemaRegistryClient(settings.schema_registry.client_config()))
    formatter = format_json if as_json else format_human
    metadata = consumer.list_topics(timeout=METADATA_TIMEOUT_S)
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    partitions = []
    for topic in topics:
        if topic not in metadata.topics:
            raise SystemExit(f"error: topic {topic!r} does not exist on {settings.kafka.bootstrap_servers}")
        partitions += [TopicPartition(topic, p, start) for p in metadata.topics[topic].partitions]
    consumer.assign(partitions)
    count = 0
    last = time.monotonic()
    try:
        while limit is None or count < limit:
            message = consumer.poll(POLL_S)
            if message is None:
                if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                    break
                continue
            if message.error():
                print(f"consumer error: {message.error()}", file=sys.stderr)
                continue
            last = time.monotonic()
            context = SerializationContext(message.topic(), MessageField.VALUE)
            record = deserializer(message.value(), context)
            key = message.key().decode() if message.key() else None
            print(formatter(message.topic(), key, record), file=out, flush=True)
            count += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return count
