"""Faults on demand in the replay server, seen by a real websocket client on loopback.

A small hand-made recording (two connections: a Kraken-like book, with v1 and v2
checksums, and trades) is served on a free 127.0.0.1 port; each test reads what the
client receives up to the connection's last frame, ``end``.  The Kraken recording
then shows what the faults are for: corrupted checksums make the standardiser ask
for a resync, the connector reconnects, and the clean replay brings the books back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from l3_atom.config import ConnectorSettings
from l3_atom.errors import UserError
from l3_atom.off_chain.kraken import Kraken
from l3_atom.sim.replay import (
    Fault,
    FaultInjector,
    FaultSpec,
    RecordedFrame,
    ReplayServer,
    add_arguments,
    fault_spec,
)
from l3_atom.stream_processing.standardisers.kraken import KrakenStandardiser
from l3_atom.topics import BOOK_RESYNC
from tests.exchanges.test_kraken import SYMBOLS
from tests.sinks import ListSink

END = "end"
BOOK_SUBSCRIBE = '{"event":"subscribe","pair":["XBT/USD"],"subscription":{"name":"book","depth":10}}'
TRADE_SUBSCRIBE = '{"event":"subscribe","pair":["XBT/USD"],"subscription":{"name":"trade"}}'
HEARTBEAT = '{"event":"heartbeat"}'
# The book connection's frames: v1 updates with "c":"<digits>", a v2 update with "checksum":<int>.
BOOK_FRAMES = [
    HEARTBEAT,
    '[7,{"a":[["0.5","1.0","1.1"]],"c":"11"},"book-10","XBT/USD"]',
    '[7,{"b":[["0.4","2.0","1.2"]],"c":"22"},"book-10","XBT/USD"]',
    HEARTBEAT,
    '[7,{"a":[["0.6","3.0","1.3"]],"c":"33"},"book-10","XBT/USD"]',
    '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[],"checksum":4294967295}]}',
    END,
]
TRADE_FRAMES = ['[8,[["0.5","1.0","1.4","b","l",""]],"trade","XBT/USD"]', END]
V1_BOOK = '"c":"'
ALL_BOOK = '"book'
RECEIVE_TIMEOUT_S = 10.0
# The Kraken recording: one checksum in this many corrupted, on the first three connections (the initial ones).
KRAKEN_EVERY = 500
KRAKEN_CONNECTIONS = 3
# A connection younger than this does not reconnect for a resync (l3_atom.feed.RESYNC_GRACE_S).
RESYNC_GRACE_S = 2.0
# Fast reconnects; frames as large as the recording's book snapshots.
KRAKEN_SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1 << 24)


def write_recording(folder: Path) -> Path:
    lines = []
    for conn, subscribe, frames in (("book", BOOK_SUBSCRIBE, BOOK_FRAMES), ("trade", TRADE_SUBSCRIBE, TRADE_FRAMES)):
        lines.append({"t": "open", "conn": conn, "url": "wss://x/", "ts": 1.0})
        lines.append({"t": "send", "conn": conn, "url": "wss://x/", "ts": 1.1, "data": subscribe})
        lines += [{"t": "recv", "conn": conn, "url": "wss://x/", "ts": 2.0 + i / 10, "data": f}
                  for i, f in enumerate(frames)]
    (folder / "ws.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return folder


async def receive_until_end(ws: ClientConnection) -> list[str]:
    frames: list[str] = []
    async with asyncio.timeout(RECEIVE_TIMEOUT_S):
        while not frames or frames[-1] != END:
            frames.append(str(await ws.recv()))
    return frames


def serve(folder: Path, fault: FaultSpec | None, subscribes: list[str], replay_reconnects: bool = False
          ) -> tuple[list[list[str]], dict]:
    """What each connection received (one after the other, each sending its subscribe), and the server's stats."""

    async def main() -> tuple[list[list[str]], dict]:
        server = await ReplayServer(folder, fault=fault, replay_reconnects=replay_reconnects).start()
        try:
            received = []
            for subscribe in subscribes:
                async with connect(server.ws_url) as ws:
                    await ws.send(subscribe)
                    received.append(await receive_until_end(ws))
            loop = asyncio.get_running_loop()
            body = await loop.run_in_executor(
                None, lambda: urllib.request.urlopen(f"{server.rest_url}/_replay/stats").read())
            return received, json.loads(body)
        finally:
            await server.stop()

    return asyncio.run(main())


def book(folder: Path, fault: FaultSpec) -> tuple[list[str], int]:
    [received], stats = serve(folder, fault, [BOOK_SUBSCRIBE])
    return received, stats["faults_injected"]


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    return write_recording(tmp_path)


@pytest.mark.timeout(20)
def test_no_fault_sends_the_recording(recording: Path) -> None:
    received, stats = serve(recording, None, [BOOK_SUBSCRIBE, TRADE_SUBSCRIBE])
    assert received == [BOOK_FRAMES, TRADE_FRAMES]
    assert (stats["fault"], stats["faults_injected"]) == (None, 0)


@pytest.mark.timeout(20)
def test_drop_every_second_matching_frame(recording: Path) -> None:
    received, injected = book(recording, FaultSpec(Fault.DROP, every=2, match=V1_BOOK))
    assert received == [BOOK_FRAMES[i] for i in (0, 1, 3, 4, 5, 6)]
    assert injected == 1


@pytest.mark.timeout(20)
def test_duplicate_each_matching_frame(recording: Path) -> None:
    received, injected = book(recording, FaultSpec(Fault.DUPLICATE, match=V1_BOOK))
    assert received == [BOOK_FRAMES[i] for i in (0, 1, 1, 2, 2, 3, 4, 4, 5, 6)]
    assert injected == 3


@pytest.mark.timeout(20)
def test_reorder_swaps_with_the_next_frame(recording: Path) -> None:
    """Frame 1 swaps with frame 2 (its partner, so not faulted itself); frame 4 swaps with frame 5."""
    received, injected = book(recording, FaultSpec(Fault.REORDER, every=1, match=V1_BOOK))
    assert received == [BOOK_FRAMES[i] for i in (0, 2, 1, 3, 5, 4, 6)]
    assert injected == 2


@pytest.mark.timeout(20)
def test_corrupt_checksum_v1_and_v2(recording: Path) -> None:
    """Only frames with a checksum count: the heartbeats and ``end`` are never chosen; 2**32 - 1 wraps to 0."""
    received, injected = book(recording, FaultSpec(Fault.CORRUPT_CHECKSUM, every=2))
    expected = list(BOOK_FRAMES)
    expected[2] = expected[2].replace('"c":"22"', '"c":"23"')
    expected[5] = expected[5].replace('"checksum":4294967295', '"checksum":0')
    assert received == expected
    assert injected == 2


@pytest.mark.timeout(20)
def test_faults_only_on_the_first_connection_and_a_reconnect_replays_clean(recording: Path) -> None:
    """The first connection is faulted; the trade connection and the reconnect that asks for the book are not."""
    fault = FaultSpec(Fault.CORRUPT_CHECKSUM, match=ALL_BOOK, connections=1)
    v2_subscribe = '{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":10}}'
    received, stats = serve(recording, fault, [BOOK_SUBSCRIBE, TRADE_SUBSCRIBE, v2_subscribe],
                            replay_reconnects=True)
    assert received[0] != BOOK_FRAMES and len(received[0]) == len(BOOK_FRAMES)
    assert received[1:] == [TRADE_FRAMES, BOOK_FRAMES]
    assert stats["faults_injected"] == 4
    assert stats["reconnects_replayed"] == 1
    assert stats["connections_served"] == 3
    assert stats["fault"] == {"kind": "corrupt_checksum", "every": 1, "match": ALL_BOOK, "connections": 1, "skip": 0}


@pytest.mark.timeout(20)
def test_reconnect_beyond_the_recording_is_refused_by_default(recording: Path) -> None:
    async def main() -> int | None:
        server = await ReplayServer(recording).start()
        try:
            for subscribe in (BOOK_SUBSCRIBE, TRADE_SUBSCRIBE):
                async with connect(server.ws_url) as ws:
                    await ws.send(subscribe)
                    await receive_until_end(ws)
            async with connect(server.ws_url) as ws:
                await ws.wait_closed()
                return ws.close_code
        finally:
            await server.stop()

    assert asyncio.run(main()) == 1013


def test_reorder_of_the_last_frame_sends_it_unchanged() -> None:
    frames = [RecordedFrame(1.0, "a"), RecordedFrame(2.0, "book")]
    injector = FaultInjector(FaultSpec(Fault.REORDER, match="book"))
    assert [f.text for f in injector.apply(frames)] == ["a", "book"]
    assert injector.injected == 0


def test_binary_frames_are_chosen_only_without_a_match() -> None:
    frames = [RecordedFrame(1.0, binary=b"\x01"), RecordedFrame(2.0, "x")]
    assert len(list(FaultInjector(FaultSpec(Fault.DROP, match="x")).apply(frames))) == 1
    assert list(FaultInjector(FaultSpec(Fault.DROP)).apply(frames)) == []


def cli(*argv: str) -> FaultSpec | None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return fault_spec(parser.parse_args(["--recording", "x", *argv]))


def test_cli_fault_spec() -> None:
    assert cli() is None
    assert cli("--fault", "corrupt_checksum", "--fault-every", "500", "--fault-match", '"c":"',
               "--fault-connections", "1") == FaultSpec(Fault.CORRUPT_CHECKSUM, 500, '"c":"', 1)
    with pytest.raises(UserError, match="need --fault"):
        cli("--fault-every", "3")
    with pytest.raises(UserError, match="at least 1"):
        cli("--fault", "drop", "--fault-every", "0")
    with pytest.raises(SystemExit):
        cli("--fault", "scramble")


# -- the Kraken recording: corrupted checksums, a resync, and the books back ----------------------------------


def standardise(std: KrakenStandardiser, rows: list) -> list:
    return [out for key, frame, atom, _, symbol in rows for out in std.standardise(frame, atom, key, symbol)]


@dataclass
class Recovery:
    """What the Kraken replay with faults showed: before and after the resync."""

    faults_injected: int
    reconnects_replayed: int
    resyncs: list[dict]
    before: dict[str, int]
    std: KrakenStandardiser
    after_reconnect: list


async def replay_with_faults(folder: Path) -> Recovery:
    """Connector on the faulty replay; the standardiser's resync requests go to the connector, as the runtime does."""
    fault = FaultSpec(Fault.CORRUPT_CHECKSUM, KRAKEN_EVERY, V1_BOOK, KRAKEN_CONNECTIONS)
    server = await ReplayServer(folder, fault=fault, replay_reconnects=True).start()
    sink = ListSink()
    connector = Kraken(SYMBOLS, sink, KRAKEN_SETTINGS, ws_url=server.ws_url, rest_url=server.rest_url)
    task = asyncio.create_task(connector.run())
    std = KrakenStandardiser()
    try:
        recorded = server.recording.frame_count
        async with asyncio.timeout(30):
            while len(sink.rows) < recorded:
                await asyncio.sleep(0.05)
            first = len(sink.rows)
            resyncs = [o.record for o in standardise(std, sink.rows) if o.topic == BOOK_RESYNC]
            before = std.book_checks.stats()
            await asyncio.sleep(RESYNC_GRACE_S)
            for request in resyncs:
                connector.resync(request["symbol"], request["reason"])
            book_frames = max(len(c.frames) for c in server.recording.connections)
            while len(sink.rows) < recorded + book_frames:
                await asyncio.sleep(0.05)
        again = standardise(std, sink.rows[first:])
        return Recovery(server.faults_injected, server.reconnects_replayed, resyncs, before, std, again)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop()


@pytest.mark.timeout(60)
def test_kraken_resync_recovers_from_corrupted_checksums(recordings: Path) -> None:
    """Every 500th book checksum corrupted on the first connections: each symbol hit asks for a resync, once.

    The connector reconnects its book connection (once the 2 s grace of a fresh connection is over);
    the replay server serves that reconnect the recorded book connection again, without faults: its
    snapshots put every book back in sync and all its checksums verify.
    """
    seen = asyncio.run(replay_with_faults(recordings / "kraken"))
    # 4269 checksummed frames on the book connection (tests/exchanges/test_kraken.py).
    assert seen.faults_injected == 4269 // KRAKEN_EVERY
    assert seen.resyncs and {r["reason"] for r in seen.resyncs} == {"checksum"}
    # One request per symbol hit: a lost book is not checked (nor asked for) again until its snapshot.
    assert len(seen.resyncs) == len({r["symbol"] for r in seen.resyncs}) <= seen.faults_injected
    assert seen.before["checksum_mismatches"] == len(seen.resyncs)
    assert seen.reconnects_replayed == 1
    assert [o for o in seen.after_reconnect if o.topic == BOOK_RESYNC] == []
    after = seen.std.book_checks.stats()
    assert after["snapshots"] - seen.before["snapshots"] == len(SYMBOLS)
    assert after["checksum_mismatches"] == seen.before["checksum_mismatches"]
    assert after["checksums_verified"] - seen.before["checksums_verified"] == 4269
    assert all(seen.std.book_checks.continuity.in_sync(symbol) for symbol in SYMBOLS)
    print(f"\nkraken replay with faults: {seen.faults_injected} checksums corrupted, {len(seen.resyncs)} resyncs;"
          f" after the reconnect {after['checksums_verified'] - seen.before['checksums_verified']} more verified,"
          f" 0 mismatches")
