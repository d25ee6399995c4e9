"""Fault scenario ``full_disk``: a local-mode file output's disk fills while the stream runs.

``runner.py local`` reads the Coinbase simulator and writes two file outputs,
one on a small tmpfs this scenario mounts (so it fills) and one on the
ordinary disk, while a websocket client reads the stream.  What must hold:
the full output says so in one error line naming its file and stops (it does
not retry when space is freed: see ``l3_atom/local/outputs/__init__.py``);
the other output gets every record the simulator's journal asks for; the
websocket client goes on receiving after the stop; and what the full output
left is readable to its last byte (JSON lines end at a line boundary, Avro
files end at a whole block).  Each arrangement (JSON lines on the small disk,
Avro on the small disk) is one fault.

Mounting a tmpfs needs root (CI runs as root).  Without it the scenario
cannot make a full disk: its invariant "a small filesystem was mounted" is
then false and says why, never a pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import websockets

from tests.kafka_reader import Received

if TYPE_CHECKING:  # bench.faults imports this module to register it
    from bench.faults import Outcome, Scale

FEEDS = "lob_l3,trades_l3,ticker"
SYMBOLS = ("BTC.USD", "ETH.USD")
# The flow per arrangement and how small the disk is: the disk fills in the first part of the flow.
FLOW_MESSAGES = {"smoke": 3000, "quick": 10_000, "full": 40_000}
SMALL_DISK_KB = {"smoke": 256, "quick": 512, "full": 1024}
RATE = 500
FINISH_TIMEOUT_S = 240.0
IDLE_S = 1.0
POLL_S = 0.5
US_PER_S = 1_000_000
# The line the runtime logs when an output stops (l3_atom/local/runtime.py).
STOPPED = "output stopped:"
ERROR = " ERROR "


def scale_name(scale: Scale) -> str:
    """The name of ``scale`` in ``bench.faults.SCALES`` (the scenarios size their own figures by it)."""
    from bench.faults import SCALES

    # By value: run as ``python -m bench.faults``, the scale is an instance of ``__main__.Scale``.
    return next(name for name, known in SCALES.items() if asdict(known) == asdict(scale))


@dataclass(frozen=True)
class Arrangement:
    """Which output goes on the small disk, which on the ordinary one."""

    small: str  # "jsonl" or "avro"
    other: str
    # Deflated Avro takes about a tenth of the room of JSON lines: its small disk is smaller.
    disk_divisor: int = 1

    def args(self, small_dir: Path, big_dir: Path) -> list[str]:
        where = {self.small: small_dir, self.other: big_dir}
        return ["--jsonl", str(where["jsonl"] / "records.jsonl"), "--avro", str(where["avro"] / "avro")]


ARRANGEMENTS = (Arrangement("jsonl", "avro"), Arrangement("avro", "jsonl", disk_divisor=8))


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[str | None]:
    """A tmpfs of ``size`` at ``path`` (unmounted at the end); yields None, or why it could not be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if made.returncode != 0:
        yield f"mount -t tmpfs failed (needs root): {made.stderr.strip() or made.returncode}"
        return
    try:
        yield None
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def read_jsonl_file(path: Path) -> tuple[list[Received], bool]:
    """Every line as a record; and whether the file ends at a line boundary (every line parses)."""
    from tests.local.helpers import from_json_line

    data = path.read_bytes() if path.exists() else b""
    whole = not data or data.endswith(b"\n")
    return [from_json_line(orjson.loads(line)) for line in data.splitlines()], whole


def read_avro_files(directory: Path) -> list[Received]:
    """Every Avro file under ``directory`` read to its end with fastavro (an unreadable one raises)."""
    from tests.local.helpers import read_avro_tree

    records = []
    for name, values in read_avro_tree(directory).items():
        topic = Path(name).parts[0]
        records += [Received(topic, 0, 0, f"{v['exchange']}_{v['symbol']}", v) for v in values]
    return records


def read_output(kind: str, directory: Path) -> tuple[list[Received], bool]:
    """(records, readable to its end) of one output's files."""
    if kind == "jsonl":
        return read_jsonl_file(directory / "records.jsonl")
    try:
        return read_avro_files(directory / "avro"), True
    except (ValueError, EOFError):
        return [], False


class StreamClient(threading.Thread):
    """A websocket client subscribed to everything, on its own thread; keeps each record's atom_timestamp."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.timestamps: list[int] = []
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._read())
        except BaseException as exc:  # noqa: BLE001 - reported by the scenario
            self.error = exc

    async def _read(self) -> None:
        async with websockets.connect(self.url, max_size=None) as ws:
            await ws.recv()  # info
            await ws.send(json.dumps({"op": "subscribe", "feeds": FEEDS.split(",")}))
            while not self.done.is_set():
                try:
                    message = json.loads(await asyncio.wait_for(ws.recv(), IDLE_S))
                except TimeoutError:
                    continue
                if "atom_timestamp" in message:
                    self.timestamps.append(message["atom_timestamp"])


def run_once(arrangement: Arrangement, scale: str, workdir: Path) -> dict[str, Any]:
    """One run of ``runner.py local`` with the arrangement; the figures and checks of it."""
    from bench.faults import delivery
    from tests.local.helpers import LocalRun, published
    from tests.test_e2e_coinbase import expected_records, must_publish, sim_stats

    small_dir, big_dir = workdir / "small", workdir / "big"
    journal = workdir / "journal.jsonl"
    flow = FLOW_MESSAGES[scale]
    with small_disk(small_dir, f"{SMALL_DISK_KB[scale] // arrangement.disk_divisor}k") as refused:
        if refused:
            return {"mounted": False, "why": refused}
        with LocalRun(workdir) as run:
            run.start_simulator("--seed", "31", "--rate", str(RATE), "--products", "BTC-USD,ETH-USD",
                                "--journal", str(journal), "--max-messages", str(flow))
            run.start_local("--source", "coinbase", "--symbol", SYMBOLS[0], "--symbol", SYMBOLS[1],
                            *run.endpoint_args(), "--feeds", FEEDS, *arrangement.args(small_dir, big_dir))
            client = StreamClient(run.stream_url)
            client.start()
            stopped_at_us = None
            deadline = time.monotonic() + FINISH_TIMEOUT_S
            while time.monotonic() < deadline:
                stats = run.stats()
                if stopped_at_us is None and "stopped" in stats["outputs"][arrangement.small]:
                    stopped_at_us = int(time.time() * US_PER_S)
                if sim_stats(run)["messages_generated"] >= flow:
                    expected = must_publish(expected_records(journal), journal)
                    if published(stats) >= expected and all(
                            w.get("queued_batches", 0) == 0 for w in stats["outputs"].values()):
                        break
                time.sleep(POLL_S)
            time.sleep(IDLE_S * 2)  # the client reads what is still in flight
            client.done.set()
            client.join(FINISH_TIMEOUT_S)
            final = run.stats()
            code = run.stop("local")
            log = run.log("local")
        full_records, full_whole = read_output(arrangement.small, small_dir)
    other_records, other_whole = read_output(arrangement.other, big_dir)
    lines = [line for line in log.splitlines() if STOPPED in line and ERROR in line]
    small = final["outputs"][arrangement.small]
    return {
        "mounted": True,
        "exit_code": code,
        "error_lines": lines,
        "stop_seen": stopped_at_us is not None,
        "full_output": {"records_taken": small["records"], "dropped": small.get("dropped", 0),
                        "readable": len(full_records), "read_to_the_end": full_whole},
        "other_output": {"records": len(other_records), "read_to_the_end": other_whole},
        "found": delivery(journal, other_records),
        "client_records": len(client.timestamps),
        "client_records_after_stop": sum(t > stopped_at_us for t in client.timestamps) if stopped_at_us else 0,
        "client_error": repr(client.error) if client.error else None,
        "small_path": str(small_dir),
    }


def full_disk(scale: Scale, workdir: Path) -> Outcome:
    """Every arrangement once: the full output stops cleanly; the other and the stream lose nothing."""
    from bench.faults import Outcome

    outcome = Outcome("full disk (local-mode file output)")
    runs = {}
    for arrangement in ARRANGEMENTS:
        name = f"{arrangement.small} on the small disk"
        result = run_once(arrangement, scale_name(scale), workdir / arrangement.small)
        runs[name] = result
        if not result["mounted"]:
            outcome.invariants["a small filesystem was mounted (tmpfs: needs root)"] = False
            outcome.details["error"] = result["why"]
            break
        outcome.faults_injected += 1
        named = [line for line in result["error_lines"] if result["small_path"] in line]
        outcome.faults_detected += len(named) == len(result["error_lines"]) == 1
        found = result.pop("found")
        outcome.expected += found["expected"]
        outcome.delivered += found["delivered"]
        outcome.lost += sum(len(v) for v in found["lost"].values())
        outcome.duplicated += sum(found["duplicated"].values())
        full = result["full_output"]
        checks = {
            "one error line naming the full file": len(named) == len(result["error_lines"]) == 1,
            "the full output stopped and counted what it dropped": result["stop_seen"] and full["dropped"] > 0,
            "the other output has every record (0 lost, 0 duplicated)": (
                found["expected"] > 0 and not any(found["lost"].values()) and not sum(found["duplicated"].values())),
            "the websocket stream went on after the stop": result["client_records_after_stop"] > 0,
            "the full output's files are readable to their end": full["read_to_the_end"] and full["readable"] > 0,
            "the run ended cleanly (exit 0)": result["exit_code"] == 0,
        }
        if arrangement.small == "jsonl":
            # JSON lines are written batch by batch: exactly the records the output took are there.
            checks["the full JSON lines file holds exactly the batches written"] = (
                full["readable"] == full["records_taken"])
        for check, held in checks.items():
            outcome.invariants[f"{name}: {check}"] = bool(held)
    outcome.details["runs"] = runs
    return outcome

