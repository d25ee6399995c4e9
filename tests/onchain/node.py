"""A real local Ethereum node for the tests: ganache from npm, run as a process and always stopped.

It listens on ``/v3/<secret>`` like a provider that takes the API key in the
path (ganache's ``--server.rpcEndpoint``), so the connector's secret handling
is exercised for real.  Also here: the test-side JSON-RPC calls (mining,
snapshots), a TCP proxy that can cut the connector's websocket, a sink that
keeps frames in memory, and a thread that runs a connector.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from l3_atom.avro.codecs import AvroEncoder
from l3_atom.config import ConnectorSettings
from l3_atom.infra.processes import LOOPBACK, free_port, port_open, start_process, stop_process, wait_until
from l3_atom.on_chain.chain_feed import ChainFeed
from l3_atom.stream_processing.standardiser import Output
from l3_atom.stream_processing.standardisers.ethereum import EthereumStandardiser

ONCHAIN = Path(__file__).parent
GANACHE = ONCHAIN / "node_modules" / ".bin" / "ganache"
CHAIN_ID = 1337
# The tests use a trader and a receiver; fewer accounts start ganache faster.
ACCOUNTS = 2
START_TIMEOUT_S = 30.0
WAIT_TIMEOUT_S = 30.0
RPC_TIMEOUT_S = 10.0
PROVIDER_PATH = "/v3"
SECRET = "l3atom-test-secret-7f3a9c"
# Reconnect fast in tests; the silence watchdog is longer than any test (ganache mines only on demand).
CONNECTOR_SETTINGS = ConnectorSettings(
    reconnect_initial_delay_s=0.05, reconnect_max_delay_s=0.5, silence_timeout_s=120.0, max_frame_bytes=524288
)


class LocalNode:
    """ganache on a free loopback port, deterministic accounts, instant mining."""

    def __init__(self, log_path: Path, secret: str = SECRET):
        self.port = free_port()
        self.secret = secret
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self._ids = 0

    @property
    def base_http_url(self) -> str:
        """The URL without the secret, as a user writes it in ``ETHEREUM_NODE_HTTP_URL``."""
        return f"http://{LOOPBACK}:{self.port}{PROVIDER_PATH}"

    @property
    def base_ws_url(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}{PROVIDER_PATH}"

    @property
    def http_url(self) -> str:
        return f"{self.base_http_url}/{self.secret}"

    def env(self) -> dict[str, str]:
        """What a connector's environment holds for this node."""
        return {
            "ETHEREUM_NODE_HTTP_URL": self.base_http_url,
            "ETHEREUM_NODE_WS_URL": self.base_ws_url,
            "ETHEREUM_NODE_SECRET": self.secret,
        }

    def start(self) -> LocalNode:
        command = [
            str(GANACHE),
            "--server.host", LOOPBACK,
            "--server.port", str(self.port),
            "--server.rpcEndpoint", f"{PROVIDER_PATH}/{self.secret}",
            "--chain.chainId", str(CHAIN_ID),
            "--wallet.deterministic",
            "--wallet.totalAccounts", str(ACCOUNTS),
            "--logging.quiet",
        ]  # fmt: skip
        self.process = start_process(command, log_path=self.log_path, cwd=ONCHAIN)

        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"ganache exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            return port_open(LOOPBACK, self.port)

        wait_until(ready, START_TIMEOUT_S, "ganache")
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def rpc(self, method: str, *params: Any) -> Any:
        self._ids += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self._ids, "method": method, "params": list(params)}).encode()
        request = urllib.request.Request(self.http_url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=RPC_TIMEOUT_S) as response:
            answer = json.loads(response.read())
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def head(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def block(self, number: int) -> dict[str, Any]:
        return self.rpc("eth_getBlockByNumber", hex(number), False)

    def mine(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            self.rpc("evm_mine")

    def snapshot(self) -> str:
        return self.rpc("evm_snapshot")

    def revert(self, snapshot: str) -> None:
        assert self.rpc("evm_revert", snapshot) is True


@dataclass
class ListSink:
    """A ``FrameSink`` that keeps what the connector writes (thread-safe appends)."""

    frames: list[tuple[str, bytes, int, str, str | None]] = field(default_factory=list)
    dead_letters: list[tuple[str | None, bytes, str, int]] = field(default_factory=list)

    def write(self, key: str, frame: bytes, atom_timestamp: int, connection_id: str, symbol: str | None) -> None:
        self.frames.append((key, frame, atom_timestamp, connection_id, symbol))

    def dead_letter(self, key: str | None, frame: bytes, error: str, atom_timestamp: int) -> None:
        self.dead_letters.append((key, frame, error, atom_timestamp))

    def poll(self) -> None: ...

    def close(self) -> None: ...

    def blocks(self) -> list[tuple[bool, int, str]]:
        """(removed, number, hash) of every frame written, in order."""
        out = []
        for _, frame, *_ in list(self.frames):
            message = json.loads(frame)
            block = message["block"]["result"]
            out.append((message["removed"], int(block["number"], 16), block["hash"]))
        return out

    def published_up_to(self, number: int) -> bool:
        blocks = self.blocks()
        return bool(blocks) and not blocks[-1][0] and blocks[-1][1] >= number


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_TIMEOUT_S) -> None:
    wait_until(condition, timeout, what, interval=0.02)


class ConnectorThread:
    """Runs a connector's ``run()`` on its own event loop in a thread, so a test can drive the node meanwhile."""

    def __init__(self, feed: ChainFeed):
        self.feed = feed
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task | None = None
        self._thread = threading.Thread(target=self._run, name=f"connector-{feed.name}", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(self.feed.run())
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc
        finally:
            self._loop.close()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        while self._thread.is_alive() and self._task is None:
            time.sleep(0.01)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._task.cancel)
            self._thread.join(timeout=10)
        if self.error is not None:
            raise self.error


class CuttableProxy:
    """A TCP proxy in front of the node's websocket: ``cut()`` drops every connection and refuses new ones."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self._open = threading.Event()
        self._open.set()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server((LOOPBACK, self.port))
        self._stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            upstream = socket.create_connection((LOOPBACK, self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def ws_url(self, path: str) -> str:
        return f"ws://{LOOPBACK}:{self.port}{path}"

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._stopping = True
        self.cut()
        self._server.close()


@contextmanager
def running_node(log_path: Path) -> Iterator[LocalNode]:
    node = LocalNode(log_path).start()
    try:
        yield node
    finally:
        node.stop()


def standardise_frames(frames: list[tuple[str, bytes, int, str, str | None]]) -> tuple[list[Output], Counter[str]]:
    """Every record the standardiser makes of these raw frames, and what it skipped."""
    standardiser = EthereumStandardiser()
    outputs = [
        out for key, frame, atom_timestamp, _, symbol in frames
        for out in standardiser.standardise(frame, atom_timestamp, key, symbol)
    ]  # fmt: skip
    return outputs, standardiser.skipped


def assert_encodable(outputs: list[Output]) -> None:
    """Every record fits its topic's Avro schema, as the processor will encode it."""
    encoders = {topic: AvroEncoder(topic, 1) for topic in {out.topic for out in outputs}}
    for out in outputs:
        encoders[out.topic].encode(out.record)


def without_atom_timestamp(record: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in record.items() if name != "atom_timestamp"}
