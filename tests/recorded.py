"""Reading ``../shared/recordings`` (format in its README) for tests."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from pathlib import Path


def ws_frames(folder: Path) -> Iterator[bytes]:
    """Every frame the exchange sent, in recorded order, as the exact bytes received."""
    with gzip.open(folder / "ws.jsonl.gz", "rt") as lines:
        for line in lines:
            entry = json.loads(line)
            if entry["t"] != "recv":
                continue
            yield base64.b64decode(entry["b64"]) if "b64" in entry else entry["data"].encode()


def http_bodies(folder: Path) -> dict[str, str]:
    """REST response bodies by URL."""
    with gzip.open(folder / "http.jsonl.gz", "rt") as lines:
        return {entry["url"]: entry["body"] for entry in map(json.loads, lines)}
