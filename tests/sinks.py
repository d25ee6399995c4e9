"""FrameSinks for tests of connectors without Kafka: one that discards, one that keeps what it is given."""

from __future__ import annotations


class NullSink:
    """Discards every frame (for tests of a connector's pure parts)."""

    def write(self, *args: object) -> None:
        """Nothing is kept."""

    def dead_letter(self, *args: object) -> None:
        """Nothing is kept."""

    def write_marked(self, *args: object) -> None:
        """Nothing is kept."""

    def coverage(self, *args: object) -> None:
        """Nothing is kept."""

    def room(self) -> None:
        """Always room."""

    def poll(self) -> None:
        """Nothing is delivered in the background."""

    def close(self) -> None:
        """Nothing to flush."""


class ListSink(NullSink):
    """Keeps what a connector archives; a dead letter fails the test unless ``strict`` is off."""

    def __init__(self, strict: bool = True) -> None:
        self.strict = strict
        # (key, frame, atom_timestamp, connection_id, symbol header)
        self.rows: list[tuple[str, bytes, int, str, str | None]] = []
        self.dead: list[tuple] = []
        # (key, frame, origin) of the frames archived with an origin header (backfilled REST pages).
        self.marked: list[tuple[str, bytes, str]] = []
        self.coverage_records: list[dict] = []

    @property
    def frames(self) -> list[tuple[str, bytes, str | None]]:
        """(key, frame, symbol header) of every archived frame."""
        return [(key, frame, symbol) for key, frame, _, _, symbol in self.rows]

    def write(self, key: str, frame: bytes, atom_timestamp: int, connection_id: str, symbol: str | None) -> None:
        self.rows.append((key, frame, atom_timestamp, connection_id, symbol))

    def write_marked(
        self, key: str, frame: bytes, atom_timestamp: int, connection_id: str, symbol: str | None, origin: str
    ) -> None:
        self.write(key, frame, atom_timestamp, connection_id, symbol)
        self.marked.append((key, frame, origin))

    def coverage(self, key: str, record: dict) -> None:
        self.coverage_records.append(record)

    def dead_letter(self, *args: object) -> None:
        if self.strict:
            raise AssertionError(f"unexpected dead letter: {args}")
        self.dead.append(args)
