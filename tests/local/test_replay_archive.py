"""``runner.py replay-archive``: the simulator recorded by ``runner.py local --avro --parquet``, streamed back.

The reference is what the same ``local`` run wrote as JSON lines while it
ran (the live stream's order).  Replayed from the Avro and from the Parquet
files, every record must come back, each feed and symbol's records in the
same order, across feeds in receive-time order; over the websocket protocol
too, at ten times the recorded pace (checked only by a loose lower bound).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest
import websockets

from l3_atom.infra.processes import LOOPBACK, free_port, runner_command
from tests.local.helpers import ENV, LocalRun, published

RECORD_AT_LEAST = 600
RATE = "100"
TIMEOUT_S = 120.0
# At --speed 10 a replay cannot take less than a tenth of the recorded span; half of that is the (loose) bound.
LOOSE = 0.5


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines()


def per_stream(lines: list[str]) -> dict[tuple[str, str], list[str]]:
    streams: dict[tuple[str, str], list[str]] = defaultdict(list)
    for line in lines:
        record = json.loads(line)
        streams[(record["topic"], record["key"])].append(line)
    return streams


def merge_times(lines: list[str]) -> list[int]:
    """Each record's receive time, or its stream's latest before it if later (a record re-sent after a snapshot)."""
    latest: dict[tuple[str, str], int] = defaultdict(int)
    times = []
    for line in lines:
        record = json.loads(line)
        stream = (record["topic"], record["key"])
        latest[stream] = max(latest[stream], record["atom_timestamp"])
        times.append(latest[stream])
    return times


def replay(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(runner_command("replay-archive", *args), env={**os.environ, **ENV},
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``runner.py local`` on the simulator, writing Avro, Parquet and (the reference) JSON lines."""
    workdir = tmp_path_factory.mktemp("archive")
    with LocalRun(workdir) as run:
        run.start_simulator("--seed", "21", "--rate", RATE, "--products", "BTC-USD,ETH-USD")
        run.start_local(
            "--source", "coinbase", "--symbol", "BTC.USD", "--symbol", "ETH.USD", *run.endpoint_args(),
            "--avro", str(workdir / "avro"), "--parquet", str(workdir / "parquet"), "--jsonl", str(workdir / "live.jsonl"),
        )
        run.wait_for(lambda stats: published(stats) >= RECORD_AT_LEAST, TIMEOUT_S, "records")
        assert run.stop("local") == 0
    return workdir


@pytest.mark.parametrize("form", ["avro", "parquet"])
def test_replay_at_max_gives_every_record_in_the_same_per_symbol_order(recorded: Path, form: str) -> None:
    out = recorded / f"replayed_{form}.jsonl"
    out.unlink(missing_ok=True)
    done = replay(str(recorded / form), "--speed", "max", "--jsonl", str(out))
    assert done.returncode == 0, done.stderr
    live, replayed = lines_of(recorded / "live.jsonl"), lines_of(out)
    assert len(replayed) == len(live) >= RECORD_AT_LEAST
    assert per_stream(replayed) == per_stream(live)
    assert merge_times(replayed) == sorted(merge_times(replayed)), "across streams: receive-time order"
    print(f"\n{form}: {len(replayed)} records in {len(per_stream(replayed))} streams; {done.stderr.strip()}")


def test_seeking_skips_earlier_files_unread_and_bad_files_are_reported_and_skipped(
    recorded: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "avro"
    shutil.copytree(recorded / "avro", archive)
    real = min(archive.rglob("*.avro"))
    feed, exchange, symbol, day, _name = real.relative_to(archive).parts
    # An hour long before the recording: with --from it must not be opened (it is not Avro: reading it would say so).
    early = archive / feed / exchange / symbol / "2020-01-01" / "00.avro"
    early.parent.mkdir(parents=True)
    early.write_bytes(b"not avro")
    # A later restart's file of the same hour, cut short, and a file that is not Avro at all.
    truncated = real.with_name(real.stem + "-1.avro")
    truncated.write_bytes(real.read_bytes()[: real.stat().st_size // 2])
    garbage = archive / feed / exchange / "XRP.USD" / day / real.name
    garbage.parent.mkdir(parents=True)
    garbage.write_bytes(b"\x00" * 100)
    start_ms = min(json.loads(line)["atom_timestamp"] for line in lines_of(recorded / "live.jsonl")) // 1000

    seek = replay(str(archive), "--speed", "max", "--from", str(start_ms), "--jsonl", str(tmp_path / "seek.jsonl"))
    assert seek.returncode == 0, seek.stderr
    assert str(early) not in seek.stderr and "1 files outside the range not opened" in seek.stderr, seek.stderr
    assert f"{garbage}: cannot be read as avro" in seek.stderr and f"{truncated}: cannot be read as avro" in seek.stderr
    live = per_stream(lines_of(recorded / "live.jsonl"))
    replayed = per_stream(lines_of(tmp_path / "seek.jsonl"))
    key = (feed, f"{exchange}_{symbol}")
    # The truncated copy adds what it held before the cut, after the original's records; nothing else changes.
    assert replayed[key][: len(live[key])] == live[key]
    assert {k: v for k, v in replayed.items() if k != key} == {k: v for k, v in live.items() if k != key}

    everything = replay(str(archive), "--speed", "max", "--jsonl", str(tmp_path / "all.jsonl"))
    assert everything.returncode == 0 and f"{early}: cannot be read as avro" in everything.stderr


def test_bad_options_are_one_line(tmp_path: Path, recorded: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([str(empty)], f"error: no Avro or Parquet files under {empty}"),
        ([str(recorded / "avro"), "--from", "soon"], "error: --from 'soon' is not a time: use ISO-8601"),
        ([str(recorded / "avro"), "--from", "2024-01-02", "--to", "1000"], "error: --from 2024-01-02 is not before"),
    ]
    for args, message in cases:
        done = replay(*args)
        assert done.returncode == 2 and done.stderr.startswith(message), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


async def _client(url: str) -> tuple[list[str], float]:
    """Subscribe to everything, read until the server closes; the records and the time they took to arrive."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            ws = await websockets.connect(url, max_size=None)
            break
        except OSError:
            assert time.monotonic() < deadline, "replay-archive never served"
            await asyncio.sleep(0.1)
    records, first, last = [], None, None
    async with ws:
        assert json.loads(await ws.recv())["type"] == "info"
        await ws.send(json.dumps({"op": "subscribe"}))
        assert json.loads(await ws.recv())["type"] == "subscribed"
        async for message in ws:
            if "topic" in json.loads(message):
                last = time.monotonic()
                first = first or last
                records.append(message)
    return records, (last - first) if records else 0.0


def test_websocket_replay_at_ten_times_speed(recorded: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(runner_command("replay-archive", str(recorded / "parquet"), "--speed", "10",
                                           "--serve", str(port)), env={**os.environ, **ENV},
                            stderr=subprocess.PIPE, text=True)
    try:
        records, took = asyncio.run(asyncio.wait_for(_client(f"ws://{LOOPBACK}:{port}/ws"), TIMEOUT_S))
        assert proc.wait(TIMEOUT_S) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    live = lines_of(recorded / "live.jsonl")
    assert per_stream(records) == per_stream(live)
    stamps = [json.loads(line)["atom_timestamp"] for line in live]
    recorded_s = (max(stamps) - min(stamps)) / 1e6
    assert took >= LOOSE * recorded_s / 10, (took, recorded_s)
    print(f"\nwebsocket at --speed 10: {len(records)} records over {took:.2f} s; recorded span {recorded_s:.2f} s")
