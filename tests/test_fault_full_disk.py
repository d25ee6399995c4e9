"""A full disk under ``runner.py local``'s file outputs: the fault scenario at smoke scale, and each output alone.

The disk is a small tmpfs the test mounts (root needed, as in CI); without
root those tests are skipped, saying so.  The output worker's stop rule
needs no disk and always runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from bench import faults
from bench.fault_full_disk import read_avro_files, small_disk
from l3_atom.local.outputs import LocalRecord, OutputStopped
from l3_atom.local.outputs.avro import AvroFiles
from l3_atom.local.outputs.files import WholeWrites
from l3_atom.local.outputs.parquet import ParquetFiles
from l3_atom.local.outputs.text import JsonLinesOutput
from l3_atom.local.runtime import OutputWorker
from tests.local.test_outputs import trade

DISK = "128k"
BATCH = 50
# More records than a 128 KB disk holds in any of the formats.
MOST_BATCHES = 2000
ATOM = 1_700_000_000_000_000


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "small", DISK) as refused:
        if refused:
            pytest.skip(f"no small filesystem here: {refused}")
        yield tmp_path / "small"


async def fill(output: JsonLinesOutput | AvroFiles | ParquetFiles) -> tuple[int, str]:
    """Write batches until the output stops; (records it took, its error line)."""
    await output.start()
    sent = 0
    try:
        with pytest.raises(OutputStopped) as stopped:
            for n in range(MOST_BATCHES):
                await output.write([trade(n * BATCH + i, ATOM + n, Decimal("1.5"))
                                    for i in range(BATCH)])
                sent += BATCH
    finally:
        await output.close()
    assert output.records == sent
    return sent, str(stopped.value)


def test_a_json_lines_file_on_a_full_disk_ends_at_its_last_whole_batch(disk: Path) -> None:
    path = disk / "out.jsonl"
    taken, line = asyncio.run(fill(JsonLinesOutput(path)))
    assert line.startswith(f"jsonl output stopped: No space left on device (errno 28) writing {path}"), line
    data = path.read_bytes()
    assert data.endswith(b"\n")
    assert [orjson.loads(row)["trade_id"] for row in data.splitlines()] == [str(n) for n in range(taken)]


def test_avro_files_on_a_full_disk_end_at_a_whole_block_and_read_to_their_end(disk: Path) -> None:
    output = AvroFiles(disk / "avro")
    taken, line = asyncio.run(fill(output))
    assert line.startswith("avro output stopped: No space left on device (errno 28) writing "), line
    assert str(disk / "avro") in line and "records not in them" in line
    records = read_avro_files(disk / "avro")  # raises on a file cut inside a block or without a header
    assert 0 < len(records) <= taken
    assert all(path.stat().st_size > 0 for path in (disk / "avro").rglob("*.avro"))


def test_parquet_files_on_a_full_disk_are_closed_or_removed(disk: Path) -> None:
    taken, line = asyncio.run(fill(ParquetFiles(disk / "parquet", ["trades_l3"])))
    assert line.startswith("parquet output stopped:") and str(disk / "parquet") in line, line
    rows = sum(pq.read_table(path).num_rows for path in (disk / "parquet").rglob("*.parquet"))
    assert 0 < rows <= taken


def test_a_failed_flush_leaves_the_file_as_the_last_whole_flush_left_it(disk: Path) -> None:
    file = WholeWrites(disk / "raw")
    file.write(b"kept\n")
    file.flush()
    file.write(b"x" * 1024 * 1024)
    with pytest.raises(OSError, match="No space left on device"):
        file.flush()
    with pytest.raises(OSError, match="an earlier write to this file failed"):
        file.close()
    assert (disk / "raw").read_bytes() == b"kept\n"


class Stopping:
    """An output that stops at its ``at``-th batch (the rule is the runtime's, the disk is not needed)."""

    def __init__(self, name: str, at: int):
        self.name, self.at, self.batches = name, at, []

    async def start(self) -> None: ...

    async def write(self, records: list[LocalRecord]) -> None:
        if len(self.batches) + 1 == self.at:
            raise OutputStopped(f"{self.name} output stopped: disk full")
        self.batches.append(records)

    async def close(self) -> None: ...

    def stats(self) -> dict:
        return {"records": sum(map(len, self.batches))}


def batch(n: int) -> list[LocalRecord]:
    return [trade(n, ATOM, Decimal(1))]


async def stream(outputs: list[Stopping], batches: int) -> list[OutputWorker]:
    workers: list[OutputWorker] = []
    workers += [OutputWorker(output, workers) for output in outputs]
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    with contextlib.suppress(OutputStopped):
        for n in range(batches):
            for worker in workers:
                await worker.put(batch(n))
        for worker in workers:
            await worker.put(None)
        await asyncio.gather(*tasks)
    for task in tasks:
        task.cancel()
    return workers


def test_a_stopped_output_drops_counted_while_the_others_get_everything() -> None:
    full, other = Stopping("jsonl", at=3), Stopping("avro", at=0)
    workers = asyncio.run(stream([full, other], batches=10))
    assert len(other.batches) == 10
    assert len(full.batches) == 2
    assert workers[0].stats()["stopped"] == "jsonl output stopped: disk full"
    assert workers[0].stats()["dropped"] == 8 - 1  # the failed batch is the output's to count
    assert "stopped" not in workers[1].stats()


def test_when_every_output_has_stopped_the_run_ends_with_the_reason() -> None:
    async def run() -> None:
        workers: list[OutputWorker] = []
        workers += [OutputWorker(Stopping("jsonl", at=1), workers), OutputWorker(Stopping("avro", at=2), workers)]
        tasks = [asyncio.create_task(worker.run()) for worker in workers]
        for n in range(3):
            for worker in workers:
                await worker.put(batch(n))
        await asyncio.wait([tasks[1]], timeout=30)
        assert not tasks[0].done(), "the first to stop waits for the end of the stream"
        with pytest.raises(OutputStopped, match="every output has stopped, the last: avro output stopped"):
            tasks[1].result()
        tasks[0].cancel()

    asyncio.run(run())


@pytest.mark.timeout(400)
def test_full_disk_scenario_stops_the_full_output_cleanly_and_loses_nothing_elsewhere(tmp_path: Path) -> None:
    outcome = faults.full_disk(faults.SCALES["smoke"], tmp_path)
    print(f"\n{faults.table([outcome])}")
    if outcome.details.get("error", "").startswith("mount"):
        pytest.skip(f"no small filesystem here: {outcome.details['error']}")
    assert outcome.faults_injected == 2 == outcome.faults_detected
    assert outcome.expected > 0 and outcome.lost == 0 and outcome.duplicated == 0
    for name, run in outcome.details["runs"].items():
        assert run["full_output"]["dropped"] > 0, name
        assert run["client_records_after_stop"] > 0, name
        assert run["full_output"]["read_to_the_end"] and run["full_output"]["readable"] > 0, name
    assert outcome.held, outcome.invariants
