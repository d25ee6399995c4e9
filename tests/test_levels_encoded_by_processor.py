"""The processor's book levels encoded without their records (``Standardiser.lob_writer``) are the bytes the
record path gives, on every venue's fixture and recording as our connector captures it.

Each venue's frames go through two ``RawMessageProcessor``s: one as the processor runs (its
``lob`` writer handed to the standardiser), one with the writer taken back (every level a record
dict, then encoded).  Their encoded streams must be equal, dead letters included.
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path

import pytest

from bench.pure import capture, encoders, prepared, traffic
from l3_atom.sources import standardiser_class
from l3_atom.stream_processing.raw_messages import Encoded, RawMessageProcessor
from tests.compiled import compiled

_avro_writer_c, needs_c = compiled("l3_atom.avro._avro_writer_c", "the C Avro writer")
EXCHANGE_TESTS = Path(__file__).parent / "exchanges"

def _captures_traffic(path: Path) -> bool:
    """A venue test names its source and a fixture or recording folder the connector can be run against."""
    lines = path.read_text().splitlines()
    return any(line.startswith("SOURCE =") for line in lines) and any(
        line.startswith(("FIXTURE =", "RECORDING =")) for line in lines)


VENUES = sorted(path.stem for path in EXCHANGE_TESTS.glob("test_*.py") if _captures_traffic(path))


def encoded_stream(source: str, frames: list, with_writer: bool) -> list[Encoded]:
    processor = RawMessageProcessor(source, standardiser_class(source)(), encoders(), 1_000_000)
    if not with_writer:
        processor.standardiser.lob_writer = None
    return [out for frame, headers, key in prepared(frames) for out in processor.process(frame, headers, "raw", 0, 0, key)]


@needs_c
@pytest.mark.parametrize("venue", VENUES)
def test_encoded_levels_are_the_record_paths_bytes(venue: str) -> None:
    module = importlib.import_module(f"tests.exchanges.{venue}")
    folder = traffic(module)
    if folder is None or not folder.exists():
        pytest.skip(f"{venue}: its recording is not here (set L3_ATOM_RECORDINGS or put ../shared/recordings beside)")
    frames = asyncio.run(capture(module.SOURCE, module.SYMBOLS, folder))
    assert frames, f"{venue}: the connector captured nothing from {folder}"
    fast = encoded_stream(module.SOURCE, frames, with_writer=True)
    assert fast == encoded_stream(module.SOURCE, frames, with_writer=False)
    assert fast, f"{venue}: no records"
