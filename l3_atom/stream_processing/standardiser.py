"""The pure core of processing: raw frame in, normalised records out.

A ``Standardiser`` knows one source's message vocabulary.  It has no Kafka,
no Faust and no I/O, so the distributed processor and the one-process runtime
wrap the same code, and every source is testable without a broker
(ARCHITECTURE.md, principle 2).

Each source declares, as data, which message types it turns into records
(``handlers``: type -> method name, one method per type) and which it skips
on purpose (``skips``: type -> reason, counted).  Anything else, and any
message a handler cannot read, raises ``StandardiseError``; the runtime sends
it to ``dead_letter`` with the original bytes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, NamedTuple

import orjson

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)


class Output(NamedTuple):
    """One normalised record and where it goes."""

    topic: str
    key: str
    record: dict[str, Any]


class StandardiseError(ValueError):
    """A message that cannot be standardised; the text says exactly why."""


def exact(value: Any) -> Decimal:
    """An exact decimal from the exchange's string; numbers sent as JSON floats are refused."""
    if type(value) is not str:
        raise TypeError(f"expected a decimal string, got {type(value).__name__} {value!r}")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"expected a finite decimal, got {value!r}")
    return number


def optional_exact(value: Any) -> Decimal | None:
    return None if value is None else exact(value)


def ms_from_iso(value: Any) -> int:
    """Milliseconds since the epoch from an ISO-8601 time such as ``2021-04-17T16:43:30.244075Z``."""
    if type(value) is not str:
        raise TypeError(f"expected an ISO-8601 time string, got {type(value).__name__} {value!r}")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // ONE_MS


def integer(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {type(value).__name__} {value!r}")
    return value


class Standardiser(ABC):
    """Turns one source's raw frames into normalised records."""

    source: ClassVar[str]
    # Normalised topics this source publishes.
    topics: ClassVar[tuple[str, ...]]
    # Message type -> name of the method that turns it into records.
    handlers: ClassVar[dict[str, str]]
    # Message type -> why it yields no record (counted, never an error).
    skips: ClassVar[dict[str, str]] = {}

    def __init__(self) -> None:
        self.skipped: Counter[str] = Counter()
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

    def standardise(self, frame: bytes, atom_timestamp: int) -> list[Output]:
        """Records for one raw frame; ``[]`` for a counted skip; ``StandardiseError`` otherwise."""
        message = self.decode(frame)
        try:
            kind = self.message_type(message)
        except (KeyError, TypeError, AttributeError):
            raise StandardiseError(f"message has no type: {frame[:200]!r}") from None
        handler = self._dispatch.get(kind)
        if handler is None:
            reason = self.skips.get(kind)
            if reason is None:
                raise StandardiseError(f"unknown message type {kind!r}")
            self.skipped[reason] += 1
            return []
        try:
            return handler(message, atom_timestamp)
        except KeyError as exc:
            raise StandardiseError(f"{kind} message lacks field {exc}") from None
        except (TypeError, ValueError, IndexError, InvalidOperation, AttributeError) as exc:
            raise StandardiseError(f"{kind} message has a mistyped field: {exc}") from None

    def skip(self, reason: str) -> list[Output]:
        """Skip a message for a reason found inside it (not by type); counted."""
        self.skipped[reason] += 1
        return []
