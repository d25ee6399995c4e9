"""Reading a traffic folder in the recordings format, gzipped (shared recordings) or plain (``tests/fixtures``).

Fixtures written from an exchange's API documentation are plain JSON lines so
that a reader can compare them with the docs; ``tests/recorded.py`` reads only
the gzipped recordings.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from pathlib import Path


def _entries(folder: Path, stem: str) -> Iterator[dict]:
    for path, opener in ((folder / f"{stem}.jsonl.gz", gzip.open), (folder / f"{stem}.jsonl", open)):
        if path.exists():
            with opener(path, "rt") as lines:
                yield from (json.loads(line) for line in lines if line.strip())
            return
    raise FileNotFoundError(f"no {stem}.jsonl(.gz) in {folder}")


def ws_entries(folder: Path) -> list[dict]:
    """Every line of the websocket log (open, send, recv), in order."""
    return list(_entries(folder, "ws"))


def ws_frames(folder: Path) -> Iterator[bytes]:
    """Every frame the exchange sent, in recorded order, as the exact bytes received."""
    for entry in _entries(folder, "ws"):
        if entry["t"] == "recv":
            yield base64.b64decode(entry["b64"]) if "b64" in entry else entry["data"].encode()


def http_bodies(folder: Path) -> dict[str, str]:
    """REST response bodies by URL (with its query)."""
    return {entry["url"]: entry["body"] for entry in _entries(folder, "http")}
