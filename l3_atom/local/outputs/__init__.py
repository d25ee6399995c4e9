"""Where the local runtime's normalised records go.

Every output gets every record of the chosen feeds, and every dead letter,
in batches.  Outputs whose writes block (files, stdout) run them on their own
daemon thread: a slow disk or a slow reader of a pipe never stalls the event
loop, it only fills the output's bounded queue, and the runtime waits for it
(backpressure); a write that never returns cannot keep the process from
exiting.  The websocket output never blocks: each client has its own bounded
queue.

A file output whose storage fails (disk full, quota, I/O error) stops with
one error line naming the file; the other outputs and the stream go on, and
the records it can no longer take are counted (``dropped`` in ``/stats``).
It does not retry when space is freed: a file with a hole in the middle
would look complete.  Before it stops it leaves its files readable: a JSON
lines file ends at a line boundary, an Avro file at its last whole block, a
Parquet file is closed with its footer or, when no footer fits, removed (its
records counted in the error line).  Only when every output has stopped does
the runtime stop.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path

# By name: the package's submodule ``queue`` (the embedding API's output) would shadow the module ``queue`` here.
from queue import SimpleQueue
from typing import Any, ClassVar, NamedTuple, Protocol

from l3_atom.errors import UserError


class LocalRecord(NamedTuple):
    """A normalised record (or dead letter) exactly as a Kafka consumer would decode it from its topic."""

    topic: str
    key: str
    value: dict[str, Any]


class Output(Protocol):
    """What the runtime needs from an output."""

    name: str

    async def start(self) -> None: ...

    async def write(self, records: list[LocalRecord]) -> None:
        """Take one batch; returning means the output has room for the next."""

    async def close(self) -> None:
        """Write what is pending and release files and connections."""

    def stats(self) -> dict[str, Any]: ...


class OutputStopped(UserError):
    """A file output can write no more (its disk is full): it stops, the other outputs go on."""


def stop_line(name: str, exc: OSError, where: str | Path) -> str:
    """One line naming the output, the file and the reason; pyarrow's errors carry no errno, only text."""
    reason = f"{exc.strerror} (errno {exc.errno})" if exc.strerror else str(exc).splitlines()[0]
    return f"{name} output stopped: {reason} writing {exc.filename or where}"


class _SerialDaemonExecutor(Executor):
    """Runs submitted calls one after another on one daemon thread (order kept, exit never blocked)."""

    _STOP = None

    def __init__(self, name: str):
        self._jobs: SimpleQueue[tuple[Future, Callable, tuple] | None] = SimpleQueue()
        self._shut_down = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        if self._shut_down:
            raise RuntimeError(f"{self._thread.name} is shut down: it runs nothing more")
        future: Future = Future()
        self._jobs.put((future, fn, args))
        return future

    def _work(self) -> None:
        while (job := self._jobs.get()) is not self._STOP:
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except Exception as exc:  # noqa: BLE001 - handed to the awaiting coroutine, which raises it
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shut_down = True
        self._jobs.put(self._STOP)


class BlockingOutput(ABC):
    """An output whose writes block: :meth:`open`, :meth:`write_records`, :meth:`close_all` run on its thread."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self.records = 0
        self._executor = _SerialDaemonExecutor(f"l3_atom-{self.name}")
        # The file (or folder) being written, named when its storage fails; None for stdout, whose
        # failures (a reader that left) end the run as before.
        self.where: str | Path | None = None

    async def _run(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def start(self) -> None:
        await self._run(self.open)

    async def write(self, records: list[LocalRecord]) -> None:
        await self._write(self.write_records, records, len(records))

    async def _write(self, fn: Callable[[Any], None], batch: Any, records: int) -> None:
        """``fn(batch)`` on the output's thread, ``records`` counted; a storage failure stops the output."""
        try:
            await self._run(fn, batch)
        except OSError as exc:
            if self.where is None:
                raise
            line = stop_line(self.name, exc, self.where)
            try:
                note = await self._run(self.abandon)
            except OSError as again:
                note = f"closing its files failed too: {again}"
            raise OutputStopped(f"{line}{'; ' + note if note else ''}") from exc
        self.records += records

    async def close(self) -> None:
        try:
            await self._run(self.close_all)
        finally:
            self._executor.shutdown()

    def stats(self) -> dict[str, Any]:
        return {"records": self.records}

    def open(self) -> None:
        """Prepare (create folders, open files); runs on the output's thread."""

    @abstractmethod
    def write_records(self, records: list[LocalRecord]) -> None:
        """Write one batch; runs on the output's thread."""

    def close_all(self) -> None:
        """Flush and close; runs on the output's thread."""

    def abandon(self) -> str:
        """After a failed write: leave every file readable and closed; what was given up, if anything."""
        self.close_all()
        return ""
