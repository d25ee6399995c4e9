"""One raw Kafka message in, encoded normalised records (or a dead letter) out.

This joins the pure standardiser to the Avro encoders and the dead-letter
rule, still without any I/O, so the Faust agent only moves bytes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

from l3_atom.avro.codecs import AvroEncoder
from l3_atom.avro.writer import encode_outputs
from l3_atom.dead_letter import PROCESSOR, dead_letter_record
from l3_atom.stream_processing.book_checks import BookChecks
from l3_atom.stream_processing.standardiser import StandardiseError, Standardiser
from l3_atom.topics import ATOM_TIMESTAMP_HEADER, DEAD_LETTER, LOB, SYMBOL_HEADER


class Encoded(NamedTuple):
    topic: str
    key: str
    value: bytes


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
        # Each topic's encode function, looked up once rather than per record.
        self._encode = {topic: encoder.encode for topic, encoder in encoders.items()}
        # A compiled lob writer encodes book levels without making their records (records_build.book_levels).
        lob = self._encode.get(LOB)
        if hasattr(lob, "lob_levels"):
            standardiser.lob_writer = lob
        self.max_message_bytes = max_message_bytes
        self.messages = 0
        self.records: Counter[str] = Counter()
        self.dead_letters: Counter[str] = Counter()
        # The coverage notices of the standardiser's book checks (books lost, resynced), published after each message.
        self._notices = [value.notices for value in vars(standardiser).values() if isinstance(value, BookChecks)]

    def process(
        self,
        value: bytes,
        headers: Iterable[tuple[str, bytes]] | dict | None,
        raw_topic: str,
        partition: int,
        offset: int,
        key: str | None,
    ) -> list[Encoded]:
        """Encoded records for one raw message, or one dead letter explaining why there are none.

        It runs once per raw message (the processor's hot path), so it reads the headers in
        one pass and builds each ``Encoded`` directly.
        """
        self.messages += 1
        stamp = symbol = None
        for name, header in headers.items() if type(headers) is dict else headers or ():
            if name == ATOM_TIMESTAMP_HEADER:
                if stamp is None:
                    stamp = header
            elif name == SYMBOL_HEADER and symbol is None:
                symbol = header
        if not stamp or not stamp.isdigit():
            error = StandardiseError(f"raw message has no valid {ATOM_TIMESTAMP_HEADER} header: {stamp!r}")
            return [self._dead_letter(error, value, 0, raw_topic, partition, offset, key)]
        atom_timestamp = int(stamp)
        try:
            outputs = self.standardiser.standardise(value, atom_timestamp, key, symbol and symbol.decode())
            # Encoded and counted in one pass (in C when built); a refused record counts nothing.
            encoded = encode_outputs(outputs, self._encode, Encoded, self.records)
        except (StandardiseError, ValueError, TypeError, KeyError) as exc:
            return [self._dead_letter(exc, value, atom_timestamp, raw_topic, partition, offset, key)]
        for notices in self._notices:
            if notices:
                encoded += self._encode_notices(notices)
        return encoded

    def _encode_notices(self, notices: list) -> list[Encoded]:
        """The standardiser's coverage notices, encoded and counted; the list is emptied."""
        encoded = encode_outputs(notices, self._encode, Encoded, self.records)
        notices.clear()
        return encoded

    def _dead_letter(
        self, exc: Exception, value: bytes, atom_timestamp: int, raw_topic: str, partition: int, offset: int,
        key: str | None,
    ) -> Encoded:
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
        return Encoded(DEAD_LETTER, key or self.source, self.encoders[DEAD_LETTER].encode(record))
