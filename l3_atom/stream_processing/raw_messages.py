"""One raw Kafka message in, encoded normalised records (or a dead letter) out.

This joins the pure standardiser to the Avro encoders and the dead-letter
rule, still without any I/O, so the Faust agent only moves bytes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

from l3_atom.dead_letter import PROCESSOR, dead_letter_record
from l3_atom.stream_processing.codecs import AvroEncoder
from l3_atom.stream_processing.standardiser import StandardiseError, Standardiser
from l3_atom.topics import ATOM_TIMESTAMP_HEADER, DEAD_LETTER, SYMBOL_HEADER


class Encoded(NamedTuple):
    topic: str
    key: str
    value: bytes


def header_value(headers: Iterable[tuple[str, bytes]] | dict | None, name: str) -> bytes | None:
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    for key, value in items:
        if key == name:
            return value
    return None


class RawMessageProcessor:
    """Standardises and encodes one source's raw messages, counting what happens."""

    def __init__(
        self,
        source: str,
        standardiser: Standardiser,
        encoders: dict[str, AvroEncoder],
        max_message_bytes: int,
    ):
        self.source = source
        self.standardiser = standardiser
        self.encoders = encoders
        self.max_message_bytes = max_message_bytes
        self.messages = 0
        self.records: Counter[str] = Counter()
        self.dead_letters: Counter[str] = Counter()

    def process(
        self,
        value: bytes,
        headers: Iterable[tuple[str, bytes]] | dict | None,
        raw_topic: str,
        partition: int,
        offset: int,
        key: str | None,
    ) -> list[Encoded]:
        """Encoded records for one raw message, or one dead letter explaining why there are none."""
        self.messages += 1
        stamp = header_value(headers, ATOM_TIMESTAMP_HEADER)
        symbol = header_value(headers, SYMBOL_HEADER)
        atom_timestamp = int(stamp) if stamp and stamp.isdigit() else 0
        try:
            if not stamp or not stamp.isdigit():
                raise StandardiseError(f"raw message has no valid {ATOM_TIMESTAMP_HEADER} header: {stamp!r}")
            encoders = self.encoders
            encoded = [
                Encoded(out.topic, out.key, encoders[out.topic].encode(out.record))
                for out in self.standardiser.standardise(value, atom_timestamp, key, symbol and symbol.decode())
            ]
        except (StandardiseError, ValueError, TypeError, KeyError) as exc:
            error = str(exc) if isinstance(exc, StandardiseError) else f"record does not fit its schema: {exc!r}"
            self.dead_letters[error.split(":")[0]] += 1
            record = dead_letter_record(
                source=self.source,
                stage=PROCESSOR,
                error=error,
                original=value,
                atom_timestamp=atom_timestamp,
                max_bytes=self.max_message_bytes,
                raw_topic=raw_topic,
                partition=partition,
                offset=offset,
                key=key,
            )
            return [Encoded(DEAD_LETTER, key or self.source, self.encoders[DEAD_LETTER].encode(record))]
        for item in encoded:
            self.records[item.topic] += 1
        return encoded
