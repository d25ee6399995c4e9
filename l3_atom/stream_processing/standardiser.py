"""The pure core of processing: raw frame in, normalised records out.

A ``Standardiser`` knows one source's message vocabulary.  It has no Kafka,
no Faust and no I/O, so the distributed processor and the one-process runtime
wrap the same code, and every source is testable without a broker
(ARCHITECTURE.md, principle 2).

Each source declares, as data, which message types it turns into records
(``handlers``: type -> method name, one method per type) and which it skips
on purpose (``skips``: type -> reason, counted).  Anything else, and any
message a handler cannot read, raises ``StandardiseError``; the runtime sends
it to ``dead_letter`` with the original bytes.  A message a handler read and
found nothing in (an update whose change list is empty) is a counted skip too,
``<type>: nothing in it``, unless the handler counted its own reason: every
frame is records, a dead letter or a counted skip.  A message type never seen before
is also counted by type (``unknown_types``) and logged once per type.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, NamedTuple

import orjson
from yapic import json as yapic_json

from l3_atom.bounded_memo import BoundedMemo
from l3_atom.topics import NO_SYMBOL, split_raw_key

LOG = logging.getLogger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Distinct unknown message types counted by name; past this (a source inventing types) they share one count.
UNKNOWN_TYPES_LIMIT = 64
OTHER_UNKNOWN_TYPES = "(other)"
ONE_MS = timedelta(milliseconds=1)
US_PER_MS = 1000
# "2021-04-17T16:43:30": an ISO time's characters up to its whole second.
ISO_SECOND_CHARS = 19
# Seconds seen lately (their epoch milliseconds); the cache starts over when it holds this many.
SECOND_CACHE_LIMIT = 4096
_SECOND_MS: dict[str, int] = {}
# The skip of a message whose handler found nothing to publish in it and counted no reason of its own.
NOTHING_IN_IT = "{}: nothing in it"
# Raw keys a standardiser keeps split (a source has one per symbol and feed).
RAW_KEY_CACHE = 4096


class Output(NamedTuple):
    """One normalised record and where it goes."""

    topic: str
    key: str
    record: dict[str, Any]


class StandardiseError(ValueError):
    """A message that cannot be standardised; the text says exactly why."""


def exact(value: Any) -> Decimal:
    """An exact decimal from the exchange's string (or a Decimal/int from :func:`decode_exact`).

    A Python float is refused: it has already lost the exchange's digits.
    """
    kind = type(value)
    if kind is str or kind is int or kind is NumberText:
        number = Decimal(value)
    elif kind is Decimal:
        number = value
    else:
        raise TypeError(f"expected a decimal string, got {kind.__name__} {value!r}")
    if not number.is_finite():
        raise ValueError(f"expected a finite decimal, got {value!r}")
    return number


def decode_exact(frame: bytes | str) -> Any:
    """JSON with every non-integer number as an exact ``Decimal``, for exchanges that send prices as numbers.

    yapic.json (cryptofeed's choice) hands each number's own digits to ``Decimal`` as the standard
    library does, at several times its speed (which built a new decoder per call for
    ``parse_float``).  Its dates stay strings (``parse_date=False``: it would make ISO-8601
    strings datetimes); integers beyond 64 bits come back as ``Decimal`` (no Avro long holds them).  Slower than orjson (which only offers floats); use it only for such sources.
    """
    try:
        return yapic_json.loads(frame, parse_float=Decimal, parse_date=False)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StandardiseError(f"malformed JSON: {exc}") from None


class NumberText(str):
    """A JSON number's own text, as :func:`decode_number_texts` leaves it: :func:`exact` reads it.

    A ``str`` subclass so that a number never passes for a JSON string (``type(value) is str``
    checks still refuse it), and a number too big for an integer is text, not a float.
    """

    __slots__ = ()


def decode_number_texts(frame: bytes | str) -> Any:
    """:func:`decode_exact`, but each non-integer number stays its text (:class:`NumberText`) until a
    handler reads it with :func:`exact`.

    For sources whose frames carry many numbers no record uses: a Deribit ticker holds ~25 (greeks,
    stats), its records read 8, and a ``Decimal`` for each of the others cost a third of the frame.
    The digits are the exchange's either way.
    """
    try:
        return yapic_json.loads(frame, parse_float=NumberText, parse_date=False)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StandardiseError(f"malformed JSON: {exc}") from None


def optional_exact(value: Any) -> Decimal | None:
    return None if value is None else exact(value)


def ms_from_iso(value: Any) -> int:
    """Milliseconds since the epoch from an ISO-8601 time such as ``2021-04-17T16:43:30.244075Z``.

    Most of the cost was the datetime arithmetic, and a stream's times share their second: so a UTC
    time's whole seconds come from a cache keyed on its first ``ISO_SECOND_CHARS`` characters (which
    hold the date and time up to the second in every form ``fromisoformat`` reads), and only the
    milliseconds are added.  A time without a zone is UTC.
    """
    if type(value) is not str:
        raise TypeError(f"expected an ISO-8601 time string, got {type(value).__name__} {value!r}")
    moment = datetime.fromisoformat(value)
    zone = moment.tzinfo
    if zone is not UTC and zone is not None:
        return (moment - EPOCH) // ONE_MS
    head = value[:ISO_SECOND_CHARS]
    second_ms = _SECOND_MS.get(head)
    if second_ms is None:
        if len(_SECOND_MS) >= SECOND_CACHE_LIMIT:
            _SECOND_MS.clear()
        second_ms = _SECOND_MS[head] = (moment.replace(microsecond=0, tzinfo=UTC) - EPOCH) // ONE_MS
    return second_ms + moment.microsecond // US_PER_MS


def integer(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {type(value).__name__} {value!r}")
    return value


class SkipCounts(Counter):
    """Skips by reason, and ``counted``: frames skipped or deferred so far, read per frame to tell whether a
    handler accounted for a frame that gave no records.

    The total is kept where counts are set (``skipped[reason] += 1``, rare), so reading it costs one
    attribute load; ``Counter.total()`` would add up every reason per frame.
    """

    counted = 0
    # Frames whose records a handler held back, to publish with a later frame's (not skips).
    deferred = 0

    def __setitem__(self, reason: str, count: int) -> None:
        self.counted += count - self[reason]
        super().__setitem__(reason, count)

    def defer(self) -> None:
        """This frame's records are held back (published with a later frame's): accounted for, not skipped."""
        self.counted += 1
        self.deferred += 1


class Standardiser(ABC):
    """Turns one source's raw frames into normalised records."""

    source: ClassVar[str]
    # Normalised topics this source publishes.
    topics: ClassVar[tuple[str, ...]]
    # Message type -> name of the method that turns it into records.
    handlers: ClassVar[dict[str, str]]
    # Message type -> why it yields no record (counted, never an error).
    skips: ClassVar[dict[str, str]] = {}
    # The ``lob`` Avro writer, given by a runtime that only encodes records (the processor): book
    # messages built with ``records_build.book_levels(..., writer=self.lob_writer)`` then come out
    # with each level's record already encoded (bytes).  None (tests, runner.py local): dicts.
    lob_writer: Any = None

    def __init__(self) -> None:
        self.skipped: SkipCounts = SkipCounts()
        # Message types never seen before (each a dead letter), by type: for metrics; each is logged once.
        self.unknown_types: Counter[str] = Counter()
        self.raw_key: str | None = None
        # Raw keys repeat (one per symbol and feed): each is split once (handlers ask per message).
        self._key_parts: BoundedMemo[str, tuple[str, str, str]] = BoundedMemo(split_raw_key, RAW_KEY_CACHE)
        self.header_symbol: str | None = None
        self._dispatch: dict[str, Callable[[dict[str, Any], int], list[Output]]] = {
            kind: getattr(self, method) for kind, method in self.handlers.items()
        }

    @abstractmethod
    def message_type(self, message: Any) -> str:
        """The type a decoded message dispatches on."""

    def decode(self, frame: bytes) -> Any:
        try:
            return orjson.loads(frame)
        except orjson.JSONDecodeError as exc:
            raise StandardiseError(f"malformed JSON: {exc}") from None

    def standardise(
        self, frame: bytes, atom_timestamp: int, key: str | None = None, symbol: str | None = None
    ) -> list[Output]:
        """Records for one raw frame; ``[]`` for a counted skip; ``StandardiseError`` otherwise.

        ``key`` is the raw-topic key (``<source>_<exchange symbol>_<feed>``): protocols
        whose data frames do not name their symbol (channel ids) read it from
        :attr:`raw_key`.  ``symbol`` is the normalised symbol the connector put in
        the frame's header, where it knew it; handlers get names through
        :meth:`symbol_of`.
        """
        self.raw_key = key
        self.header_symbol = symbol
        message = self.decode(frame)
        try:
            kind = self.message_type(message)
        except (KeyError, TypeError, AttributeError):
            raise StandardiseError(f"message has no type: {frame[:200]!r}") from None
        handler = self._dispatch.get(kind)
        if handler is None:
            reason = self.skips.get(kind)
            if reason is None:
                self._count_unknown(kind)
                raise StandardiseError(f"unknown message type {kind!r}")
            self.skipped[reason] += 1
            return []
        skipped = self.skipped
        counted = skipped.counted
        try:
            outputs = handler(message, atom_timestamp)
        except KeyError as exc:
            raise StandardiseError(f"{kind} message lacks field {exc}") from None
        except (TypeError, ValueError, IndexError, InvalidOperation, AttributeError) as exc:
            raise StandardiseError(f"{kind} message has a mistyped field: {exc}") from None
        if not outputs and skipped.counted == counted:
            skipped[NOTHING_IN_IT.format(kind)] += 1
        return outputs

    def _count_unknown(self, kind: str) -> None:
        """Count a message type no handler or skip names, logging the first of each type (venues add types)."""
        name = kind if kind in self.unknown_types or len(self.unknown_types) < UNKNOWN_TYPES_LIMIT else None
        if name is None:
            name = OTHER_UNKNOWN_TYPES
        elif name not in self.unknown_types:
            LOG.warning("%s: unknown message type %r: dead-lettered (logged once per type)", self.source, kind)
        self.unknown_types[name] += 1

    def raw_key_parts(self) -> tuple[str, str, str]:
        """``split_raw_key`` of this frame's raw key (``""`` when it has none): source, exchange symbol, feed."""
        return self._key_parts[self.raw_key or ""]

    def symbol_of(self, exchange_symbol: str) -> str:
        """The normalised name of ``exchange_symbol``.

        The connector's header is used when this frame's key names the same
        exchange symbol (the connector's map comes from the exchange's REST
        symbol list); otherwise the source's own pure :meth:`convert_symbol`.
        """
        if self.header_symbol is not None and self._key_parts[self.raw_key or ""][1] == exchange_symbol:
            return self.header_symbol
        return self.convert_symbol(exchange_symbol)

    def keyed_symbol(self, what: str) -> str:
        """The normalised symbol of a REST body that names none (a book snapshot): the connector archived it
        under the symbol's raw key.  ``what`` names the body in the error when the key gives no symbol."""
        exchange_symbol = self.raw_key_parts()[1]
        if not exchange_symbol or exchange_symbol == NO_SYMBOL:
            raise ValueError(f"a {what} names no symbol and its raw key {self.raw_key!r} gives none")
        return self.symbol_of(exchange_symbol)

    def convert_symbol(self, exchange_symbol: str) -> str:
        """Exchange name -> normalised name without a symbol list; sources whose names allow it override this."""
        raise ValueError(f"no normalised symbol known for {exchange_symbol!r} (no symbol header on the frame)")

    def skip(self, reason: str) -> list[Output]:
        """Skip a message for a reason found inside it (not by type); counted."""
        self.skipped[reason] += 1
        return []
