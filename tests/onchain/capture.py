"""Capture the raw frames of ``World.trade()`` for the pure standardiser tests (``frames/trade.jsonl``).

    .venv/bin/python -m tests.onchain.capture

Runs ganache (``npm ci --prefix tests/onchain --ignore-scripts`` first), the
unchanged connector, and writes each frame it archived as one JSON line
``{"key", "atom_timestamp", "frame"}`` (the frame as text, byte for byte).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from l3_atom.on_chain.ethereum import Ethereum
from tests.onchain.node import CONNECTOR_SETTINGS, ConnectorThread, ListSink, running_node, wait_for
from tests.onchain.scenario import World

FRAMES = Path(__file__).parent / "frames" / "trade.jsonl"


def capture(path: Path = FRAMES) -> int:
    with running_node(Path(tempfile.mkdtemp()) / "ganache.log") as node:
        world = World(node.http_url)
        os.environ.update(node.env())
        sink = ListSink()
        with ConnectorThread(Ethereum([], sink, CONNECTOR_SETTINGS, confirmations=0, max_reorg_depth=64)):
            wait_for(lambda: sink.published_up_to(node.head()), "the connector's first block")
            world.trade()
            wait_for(lambda: sink.published_up_to(node.head()), "every traded block")
    path.parent.mkdir(exist_ok=True)
    lines = [
        json.dumps({"key": key, "atom_timestamp": atom_timestamp, "frame": frame.decode()})
        for key, frame, atom_timestamp, _, _ in sink.frames[1:]
    ]
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


if __name__ == "__main__":
    print(f"{capture()} frames written to {FRAMES}")
