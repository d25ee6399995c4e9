"""Same records: every recording's encoded output is byte-identical to the committed digest.

Speed work must not change a byte of what the processor publishes.  The
digests in ``tests/fixtures/record_digests.json`` change only through
``python -m tests.record_digests --reason ...``, which keeps the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.pure import encoders, recorded_traffic, records_digest
from tests.record_digests import committed


@pytest.mark.timeout(300)
def test_every_recording_encodes_to_its_committed_digest(recordings: Path) -> None:
    expected = committed()["recordings"]
    enc = encoders()
    seen = set()
    for recorded in recorded_traffic():
        seen.add(recorded.recording)
        digest, records = records_digest(recorded.source, recorded.frames, enc)
        want = expected[recorded.recording]
        assert (recorded.source, len(recorded.frames), records) == (want["source"], want["frames"], want["records"])
        assert digest == want["sha256"], f"{recorded.recording}: its encoded records changed"
    assert seen == set(expected) == {p.name for p in recordings.iterdir() if p.is_dir()}
