"""The whole distributed pipeline on one machine, offline, as real processes.

``LocalStack``: broker (Tansu), schema registry and processor worker(s).
``LocalPipeline`` adds the Coinbase simulator and a connector.  ``runner.py
up`` runs the pipeline with a consumer printing records; the end-to-end tests
and the benchmark drive the same classes, so what users run is what is tested.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Self

from l3_atom.config import METRICS_PORT_ENV
from l3_atom.gateway import DEFAULT_PORT
from l3_atom.infra.broker import LocalBroker
from l3_atom.infra.processes import (
    LOOPBACK,
    free_port,
    port_open,
    runner_command,
    start_process,
    stop_process,
    wait_until,
)
from l3_atom.tokens import Symbol

LOG = logging.getLogger(__name__)
READY_TIMEOUT_S = 60.0
WORKER_READY_MARK = b"[^Worker]: Ready"
DEFAULT_SYMBOLS = ("BTC.USD", "ETH.USD")
SOURCE = "coinbase"


def connector_args(symbols: Sequence[str]) -> list[str]:
    """``runner.py`` arguments of the Coinbase connector (docker-compose.yml uses the same)."""
    args = ["connector", "--source", SOURCE]
    for symbol in symbols:
        args += ["--symbol", symbol]
    return args


def processor_args(sources: Sequence[str] = (SOURCE,)) -> list[str]:
    """``runner.py`` arguments of a processor worker (docker-compose.yml uses the same)."""
    args = ["processor"]
    for source in sources:
        args += ["--source", source]
    return args


def gateway_args(port: int = DEFAULT_PORT) -> list[str]:
    """``runner.py`` arguments of the websocket gateway (docker-compose.yml uses the same)."""
    return ["gateway", "--port", str(port)]


class ProcessDied(RuntimeError):
    """A pipeline process exited while it should be running."""


class LocalStack:
    """Broker, registry and processor workers as real processes; a context manager that always cleans up."""

    def __init__(
        self,
        sources: Sequence[str] = (SOURCE,),
        workers: int = 1,
        workdir: Path | None = None,
        config_path: Path | None = None,
    ):
        self.sources = list(sources)
        self.config_path = config_path
        self.workers = workers
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="l3_atom_"))
        self.broker = LocalBroker(log_path=self.workdir / "broker.log")
        self.registry_port = free_port()
        # Each worker serves Faust's web views (the candle API) on its own port.
        self.web_ports = [free_port() for _ in range(workers)]
        # Process name -> the port it serves /metrics, /health and /ready on (connectors and workers);
        # ``metrics = False`` starts them with --no-metrics (the bench measures what metrics cost).
        self.metrics_ports: dict[str, int] = {}
        self.metrics = True
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def registry_url(self) -> str:
        return f"http://{LOOPBACK}:{self.registry_port}"

    def env(self) -> dict[str, str]:
        """The environment every pipeline process (and a test's own client) needs."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
            "SCHEMA_REGISTRY_URL": self.registry_url,
            "L3_ATOM_PROFILE": "local",
            "PYTHONUNBUFFERED": "1",
            # Processes started without --metrics-port take a free one: several stacks share a host.
            METRICS_PORT_ENV: "0",
        }
        if self.config_path is not None:
            env["L3_ATOM_CONFIG"] = str(self.config_path)
        return env

    def start_runner(self, name: str, *args: str) -> subprocess.Popen:
        """Start ``runner.py ARGS`` as process ``name``, logging to ``<workdir>/<name>.log``."""
        proc = start_process(runner_command(*args), env=self.env(), log_path=self.log_path(name))
        self.processes[name] = proc
        return proc

    def metrics_args(self, name: str) -> list[str]:
        """``--metrics-port P`` for process ``name``, with a free port remembered in ``metrics_ports``."""
        if not self.metrics:
            return ["--no-metrics"]
        port = self.metrics_ports.setdefault(name, free_port())
        return ["--metrics-port", str(port)]

    def metrics_url(self, name: str) -> str:
        return f"http://{LOOPBACK}:{self.metrics_ports[name]}"

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def wait_port(self, name: str, port: int) -> None:
        def ready() -> bool:
            self.check_alive(name)
            return port_open(LOOPBACK, port)

        wait_until(ready, READY_TIMEOUT_S, name)

    def start_worker(self, index: int, wait: bool = True, timeout_s: float = READY_TIMEOUT_S,
                     ) -> subprocess.Popen:
        """Start processor worker ``index`` (a new index adds a worker, e.g. to replace a killed one)."""
        while len(self.web_ports) <= index:
            self.web_ports.append(free_port())
        name = f"processor{index}"
        proc = self.start_runner(
            name, *processor_args(self.sources), "--web-port", str(self.web_ports[index]), *self.metrics_args(name)
        )
        if wait:
            self.wait_worker(name, timeout_s)
        return proc

    def wait_worker(self, name: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        def ready() -> bool:
            self.check_alive(name)
            return WORKER_READY_MARK in self.log_path(name).read_bytes()

        wait_until(ready, timeout_s, name, interval=0.1)

    def check_alive(self, name: str) -> None:
        proc = self.processes[name]
        if proc.poll() is not None:
            tail = self.log_path(name).read_text(errors="replace")[-2000:]
            raise ProcessDied(f"{name} exited with code {proc.returncode}; last log lines:\n{tail}")

    def start(self) -> Self:
        """Start everything in dependency order, each waited for; on failure stop what started."""
        try:
            self.broker.start()
            self.start_runner("registry", "registry", "--port", str(self.registry_port))
            self.wait_port("registry", self.registry_port)
            self.start_sources()
            for index in range(self.workers):
                self.start_worker(index, wait=False)
            for index in range(self.workers):
                self.wait_worker(f"processor{index}")
            self.start_connectors()
        except BaseException:
            self.stop()
            raise
        return self

    def start_sources(self) -> None:
        """Start what stands in for the exchanges (nothing here; see ``LocalPipeline``)."""

    def start_connectors(self) -> None:
        """Start the connectors (nothing here; see ``LocalPipeline``)."""

    def stop(self) -> None:
        """Stop every process, newest first; never raises."""
        for name in reversed(list(self.processes)):
            try:
                stop_process(self.processes.pop(name))
            except Exception:  # keep stopping the others
                LOG.exception("could not stop %s", name)
        self.broker.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalPipeline(LocalStack):
    """``LocalStack`` plus the Coinbase simulator, a Coinbase connector pointed at it and, asked for, a gateway."""

    def __init__(
        self,
        symbols: Sequence[str] = DEFAULT_SYMBOLS,
        rate: float = 50.0,
        seed: int = 1,
        workers: int = 1,
        max_messages: int = 0,
        workdir: Path | None = None,
        gateway: bool = False,
    ):
        super().__init__((SOURCE,), workers, workdir)
        self.gateway_port = free_port() if gateway else None
        self.symbols = [str(Symbol.parse(s)) for s in symbols]
        self.rate = rate
        self.seed = seed
        self.max_messages = max_messages
        self.journal = self.workdir / "simulator_journal.jsonl"
        self.simulator_port = free_port()

    @property
    def simulator_ws_url(self) -> str:
        return f"ws://{LOOPBACK}:{self.simulator_port}/"

    @property
    def simulator_rest_url(self) -> str:
        return f"http://{LOOPBACK}:{self.simulator_port}"

    @property
    def gateway_url(self) -> str:
        """The gateway's viewer page (its stream is ``/ws`` there)."""
        return f"http://{LOOPBACK}:{self.gateway_port}/"

    def start_sources(self) -> None:
        products = ",".join(s.replace(".", "-") for s in self.symbols)
        self.start_runner(
            "simulator", "simulate", "coinbase", "--port", str(self.simulator_port), "--seed", str(self.seed),
            "--rate", str(self.rate), "--products", products, "--max-messages", str(self.max_messages),
            "--journal", str(self.journal),
        )
        self.wait_port("simulator", self.simulator_port)

    def start_connectors(self) -> None:
        endpoints = ["--ws-url", self.simulator_ws_url, "--rest-url", self.simulator_rest_url]
        self.start_runner("connector", *connector_args(self.symbols), *endpoints, *self.metrics_args("connector"))
        if self.gateway_port is not None:
            self.start_runner("gateway", *gateway_args(self.gateway_port))
            self.wait_port("gateway", self.gateway_port)


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_local_pipeline(
    symbols: Sequence[str] | None, rate: float, seed: int, topics: Sequence[str] | None, workers: int
) -> None:
    """``runner.py up``: bring everything up, print records until Ctrl-C, stop everything."""
    from l3_atom.config import Settings
    from l3_atom.consume import consume

    # Ctrl-C stops everything even when started from a shell that ignores SIGINT in background jobs
    # (Python keeps an inherited "ignore"); SIGTERM does the same.
    signal.signal(signal.SIGINT, _terminate)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    pipeline = LocalPipeline(symbols or DEFAULT_SYMBOLS, rate=rate, seed=seed, workers=workers, gateway=True)
    print(f"starting L3 Atom locally; logs in {pipeline.workdir}", file=sys.stderr, flush=True)
    try:
        pipeline.start()
        os.environ.update(pipeline.env())
        print(
            f"pipeline up in {time.monotonic() - started:.1f} s: broker {pipeline.broker.bootstrap_servers}, "
            f"registry {pipeline.registry_url}, simulator {pipeline.simulator_ws_url}; "
            f"live view {pipeline.gateway_url} (gateway, stream ws://{LOOPBACK}:{pipeline.gateway_port}/ws); "
            "Ctrl-C stops everything",
            file=sys.stderr,
            flush=True,
        )
        for name in pipeline.metrics_ports:
            print(f"{name}: {pipeline.metrics_url(name)}/metrics, /health, /ready", file=sys.stderr, flush=True)
        consume(Settings(), list(topics or ["trades_l3"]), from_beginning=True)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping...", file=sys.stderr, flush=True)
        pipeline.stop()
