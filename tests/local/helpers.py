"""Running ``runner.py local`` and what it reads from (simulator, replay server) as real processes.

Every process gets free loopback ports, logs to a file in the test's folder,
and is stopped when the ``with`` block ends, whatever happened inside it.
"""

from __future__ import annotations

import glob
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Self

import fastavro
import orjson

from l3_atom.avro.codecs import schema_text
from l3_atom.infra.processes import (
    LOOPBACK,
    PROJECT_ROOT,
    free_port,
    port_open,
    runner_command,
    start_process,
    stop_process,
    wait_until,
)
from l3_atom.topics import DEAD_LETTER
from tests.kafka_reader import Received

LOCAL_COMMAND = runner_command("local")
READY_TIMEOUT_S = 30.0
POLL_S = 0.1
HTTP_TIMEOUT_S = 5.0
ENV = {"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(PROJECT_ROOT)}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms_of_iso(text: str) -> int:
    """Milliseconds since the epoch of an exchange's ISO time (computed here, not by the standardiser)."""
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(milliseconds=1)


def http_json(url: str, body: dict | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
        return json.loads(response.read())


def http_get(url: str) -> tuple[int, str]:
    """Status and body of a GET; an error status is an answer too, and nothing listening is status 0."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:  # not listening (yet): URLError is an OSError
        return 0, str(exc)


class ProcessDied(AssertionError):
    """A process of the test exited while it should be running."""


class Processes:
    """Named processes of one test, stopped newest first on exit."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: Sequence[str]) -> subprocess.Popen:
        proc = start_process(args, env=ENV, log_path=self.log_path(name))
        self.running[name] = proc
        return proc

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def log(self, name: str) -> str:
        return self.log_path(name).read_text(errors="replace")

    def check_alive(self, name: str) -> None:
        proc = self.running[name]
        if proc.poll() is not None:
            raise ProcessDied(f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}")

    def wait_port(self, name: str, port: int) -> None:
        def ready() -> bool:
            self.check_alive(name)
            return port_open(LOOPBACK, port)

        wait_until(ready, READY_TIMEOUT_S, name)

    def stop(self, name: str) -> int | None:
        """SIGTERM (a graceful stop: outputs are drained and closed), SIGKILL if it does not exit."""
        return stop_process(self.running.pop(name))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        for name in reversed(list(self.running)):
            self.stop(name)


class LocalRun(Processes):
    """A source server (simulator or replay) and ``runner.py local`` reading from it, serving /stats."""

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.source_port = free_port()
        self.serve_port = free_port()

    @property
    def simulator_rest_url(self) -> str:
        """The source server's REST address (named as ``LocalPipeline`` names it, for the e2e helpers)."""
        return f"http://{LOOPBACK}:{self.source_port}"

    @property
    def stream_url(self) -> str:
        return f"ws://{LOOPBACK}:{self.serve_port}/ws"

    def start_simulator(self, *args: str) -> None:
        self.start("simulator", runner_command("simulate", "coinbase", "--port", str(self.source_port), *args))
        self.wait_port("simulator", self.source_port)

    def start_replay(self, recording: Path) -> None:
        self.start("replay", runner_command("replay", "--recording", str(recording), "--port", str(self.source_port)))
        self.wait_port("replay", self.source_port)

    def endpoint_args(self) -> list[str]:
        """``--ws-url``/``--rest-url`` of the source server (they follow a ``--source``)."""
        return ["--ws-url", f"ws://{LOOPBACK}:{self.source_port}/", "--rest-url", self.simulator_rest_url]

    def start_local(self, *args: str) -> None:
        self.start("local", [*LOCAL_COMMAND, *args, "--serve", str(self.serve_port)])
        self.wait_port("local", self.serve_port)

    def stats(self) -> dict[str, Any]:
        self.check_alive("local")
        return http_json(f"http://{LOOPBACK}:{self.serve_port}/stats")

    def wait_for(self, done: Callable[[dict[str, Any]], bool], timeout_s: float, what: str) -> dict[str, Any]:
        """Poll /stats until ``done(stats)``; the assertion shows the last stats."""
        deadline = time.monotonic() + timeout_s
        stats = self.stats()
        while not done(stats) and time.monotonic() < deadline:
            time.sleep(POLL_S)
            stats = self.stats()
        assert done(stats), f"{what}: not within {timeout_s:.0f} s; stats: {stats}"
        return stats


def written(stats: dict[str, Any], output: str) -> int:
    return stats["outputs"][output]["records"]


def published(stats: dict[str, Any]) -> int:
    """Records and dead letters the runtime has produced for its outputs."""
    return sum(stats["records"].values()) + stats["dead_letters"]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_text().splitlines()]


def read_avro_tree(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Every Avro file under ``directory``, by path relative to it, with fastavro."""
    records = {}
    for path in sorted(glob.glob(f"{directory}/**/*.avro", recursive=True)):
        with open(path, "rb") as file:
            records[str(Path(path).relative_to(directory))] = list(fastavro.reader(file))
    return records


@cache
def decimal_fields(topic: str) -> frozenset[str]:
    """The fields of ``topic`` that are Avro decimals (optional or not), from its schema."""

    def is_decimal(avro_type: Any) -> bool:
        if isinstance(avro_type, list):
            return any(map(is_decimal, avro_type))
        return isinstance(avro_type, dict) and avro_type.get("logicalType") == "decimal"

    return frozenset(f["name"] for f in json.loads(schema_text(topic))["fields"] if is_decimal(f["type"]))


def from_json_line(line: dict[str, Any]) -> Received:
    """A JSON-lines record as a consumer's record again: decimals from their exact strings.

    A dead letter's original frame is text in JSON; it is exact for frames that are UTF-8 (JSON ones).
    """
    value = dict(line)
    topic = value.pop("topic")
    if topic == DEAD_LETTER:
        # A dead letter's own "key" field (the raw key) stands where the message key would be.
        value["original"] = value["original"].encode()
        key = value["key"] or value["source"]
    else:
        key = value.pop("key")
    for name in decimal_fields(topic) & value.keys():
        if value[name] is not None:
            value[name] = Decimal(value[name])
    return Received(topic, 0, 0, key, value)
