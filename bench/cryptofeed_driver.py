"""cryptofeed's own message handlers over one recording, timed; run by ``bench/peers.py`` in cryptofeed's venv.

    <venv>/bin/python bench/cryptofeed_driver.py RECORDING_FOLDER EXCHANGE PASSES [--checksums]

Imports only the standard library and cryptofeed (its venv has nothing of ours).  As
cryptofeed's own playback (``cryptofeed/raw_data_collection.py``) does, its HTTP reads are
answered from the recording (``http.jsonl.gz``: symbol lists, book snapshots), its feed
subscribes on a fake connection, and every received frame goes to the feed's
``message_handler`` with the recorded time; callbacks only count.  One untimed pass warms
up (symbol maps, imports), then PASSES fresh feeds each handle every frame again, timed
(the feeds' making and subscribing left out), in CPU seconds of this process (a shared
machine's waiting is not counted).  Prints one JSON line: messages handled in the timed
passes, their CPU seconds, one pass's callbacks per type.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from cryptofeed.connection import HTTPAsyncConn, HTTPSync
from cryptofeed.exchanges import EXCHANGE_MAP
from cryptofeed.symbols import Symbols

decode_json = json.loads
# Feeds that call public channels authenticated (Deribit 2.4.1 subscribes book, trades and ticker
# as private raw channels) get placeholder keys: the fake connection's writes go nowhere.
PLACEHOLDER_KEYS = {"DERIBIT": {"key_id": "bench", "key_secret": "bench"}}


def recorded(folder: Path) -> tuple[list[tuple[float, str | bytes]], dict[str, list[str]]]:
    frames = []
    bodies: dict[str, list[str]] = defaultdict(list)
    with gzip.open(folder / "ws.jsonl.gz", "rt") as lines:
        for entry in map(json.loads, lines):
            if entry["t"] == "recv":
                frames.append((entry["ts"], base64.b64decode(entry["b64"]) if "b64" in entry else entry["data"]))
    with gzip.open(folder / "http.jsonl.gz", "rt") as lines:
        for entry in map(json.loads, lines):
            bodies[entry["url"]].append(entry["body"])
    return frames, bodies


def shared_prefix(one: str, other: str) -> int:
    return next((i for i, (a, b) in enumerate(zip(one, other)) if a != b), min(len(one), len(other)))


def answer_http_from(bodies: dict[str, list[str]]) -> None:
    """cryptofeed's HTTP reads get the recorded body of the same URL (the last one when asked again).

    The recording was made by an older cryptofeed: 2.4.1 asks a few lists at URLs renamed since
    (Bitfinex ``pub:list:pair:futures``, Deribit instruments without ``expired``); those get
    the recorded URL sharing the longest prefix with the one asked.
    """

    def body(address: str) -> str:
        url = address if address in bodies else max(bodies, key=lambda recorded: shared_prefix(recorded, address))
        found = bodies[url]
        return found.pop(0) if len(found) > 1 else found[0]

    def read_sync(self, address, *args, json=False, **kwargs):
        """``HTTPSync.read``: its ``json`` flag asks for the parsed body."""
        return decode_json(body(address)) if json else body(address)

    async def read_async(self, address, header=None, params=None, return_headers=False, retry_count=0,
                         retry_delay=60):
        return (body(address), {}) if return_headers else body(address)

    HTTPSync.read = read_sync
    HTTPAsyncConn.read = read_async


class FakeConnection:
    """What a feed's subscribe and handlers touch of a websocket connection."""

    conn_type = "wss"
    uuid = "1"

    def __init__(self, subscription: dict):
        self.subscription = subscription

    async def write(self, *args, **kwargs) -> None:
        """Subscriptions go nowhere."""

    async def read(self, *args, **kwargs):
        raise LookupError("the recording has no more frames")


async def one_pass(exchange: str, subscription: dict, frames: list, checksums: bool) -> tuple[float, Counter]:
    counts: Counter = Counter()

    def counter(kind: str):
        async def count(*args, **kwargs) -> None:
            counts[kind] += 1
        return count

    options: dict = {"checksum_validation": True} if checksums else {}
    if exchange in PLACEHOLDER_KEYS:
        options["config"] = {exchange.lower(): PLACEHOLDER_KEYS[exchange]}
    feed = EXCHANGE_MAP[exchange](
        candle_closed_only=False, subscription=subscription,
        callbacks={kind: counter(kind) for kind in subscription}, **options,
    )
    exchange_subscription = {
        feed.std_channel_to_exchange(channel): [feed.std_symbol_to_exchange_symbol(s) for s in symbols]
        for channel, symbols in subscription.items()
    }
    handlers = []
    conn = FakeConnection(exchange_subscription)
    for _, subscribe, handler, _ in feed.connect():
        await subscribe(conn)
        handlers.append(handler)
    handler = handlers[0]
    started = time.process_time()
    for timestamp, frame in frames:
        await handler(frame, conn, timestamp)
    seconds = time.process_time() - started
    await feed.shutdown()
    return seconds, counts


def main(argv: list[str]) -> int:
    folder, exchange, passes = Path(argv[0]), argv[1], int(argv[2])
    checksums = "--checksums" in argv[3:]
    frames, bodies = recorded(folder)
    subscription = json.loads((folder / "subscription.json").read_text())
    answer_http_from(bodies)
    Symbols.clear()
    asyncio.run(one_pass(exchange, subscription, frames, checksums))
    seconds = 0.0
    for _ in range(passes):
        taken, counts = asyncio.run(one_pass(exchange, subscription, frames, checksums))
        seconds += taken
    print(json.dumps({"messages": len(frames) * passes, "seconds": seconds, "callbacks": dict(counts)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
