"""``ChainFeed``: an EVM chain's connector.  One raw frame per block; reorgs retracted; gaps backfilled.

The websocket subscription (``eth_subscribe`` ``newHeads``) only wakes the
follower.  The follower asks the node for its head over HTTP and publishes
every block up to ``head - confirmations``, in order, each as one frame::

    {"removed":false,"block":<eth_getBlockByNumber(n, true) response>,
     "receipts":[<receipts response>, ...],"metadata":{"tokens":{...},"pools":{...}}}

The node's responses are embedded byte for byte.  ``receipts`` holds one
``eth_getBlockReceipts`` response, or, for nodes without that method, the
batched ``eth_getTransactionReceipt`` responses; the receipts carry the logs.
``metadata`` is what the connector read from the contracts the logs name
(:mod:`l3_atom.on_chain.metadata`), so the standardiser needs no node.

Reorgs are detected here, where the chain is visible, so that the standardiser
stays pure.  The connector keeps the last ``max_reorg_depth`` blocks it
published (number, hash, frame).  Before publishing it checks that the newest
of them is still the canonical block at its height, and that each new block's
parent is that block.  When either fails it retracts its blocks newest first
until it reaches one that is still canonical, then publishes the canonical
chain from there.  A retraction archives the block's frame again with
``"removed":true``; the standardiser turns it into the same records with
``removed = true``, as Ethereum's own log subscriptions do.  After a reconnect
(or any failure) it resumes at the block after the last one it published, so
missed blocks are backfilled in order.  This state lives in memory: a
restarted connector starts again at the current confirmed head.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import orjson

from l3_atom.config import ConnectorSettings
from l3_atom.data_source import SINK_POLL_INTERVAL_S, STATS_INTERVAL_S
from l3_atom.errors import UserError
from l3_atom.feed import WebsocketConnection, backoff_delay, now_us
from l3_atom.on_chain.abi import quantity
from l3_atom.on_chain.metadata import MetadataCache
from l3_atom.on_chain.rpc import JsonRpc, NodeEndpoints, NodeError, NodeUnavailable, redacted_logs
from l3_atom.on_chain.topics import BLOCK_FEED
from l3_atom.raw_sink import FrameSink
from l3_atom.topics import raw_key

LOG = logging.getLogger(__name__)
DEFAULT_CONFIRMATIONS = 0
# Published blocks kept (with their frames) so that a reorg up to this deep can be retracted.
DEFAULT_MAX_REORG_DEPTH = 64
# Receipts asked for in one batch where the node lacks eth_getBlockReceipts (providers cap batch sizes).
RECEIPTS_PER_BATCH = 100
SUBSCRIBE_REQUEST = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]})
FRAME_PREFIX = b'{"removed":false,'
RETRACTION_PREFIX = b'{"removed":true,'
# Answers that are not what a node should send: logged and retried like a failed request.
UNEXPECTED_ANSWER = (KeyError, TypeError, ValueError, AttributeError)


class ChainMoved(NodeError):
    """The chain changed while a block was being fetched (receipts of another block); fetch it again."""


@dataclass(frozen=True)
class PublishedBlock:
    number: int
    hash: str
    parent_hash: str
    # None when the frame was too large to archive (dead-lettered): there is nothing to retract.
    frame: bytes | None
    atom_timestamp: int


@dataclass
class ChainStats:
    blocks: int = 0
    retracted: int = 0
    reorgs: int = 0
    dead_letters: int = 0
    failures: int = 0


def source_options(source: str) -> dict[str, str]:
    """The source's ``config.ini`` section (``Settings().source``)."""
    from l3_atom.config import Settings

    return Settings().source(source)


def option_int(options: dict[str, str], source: str, key: str, default: int, minimum: int) -> int:
    raw = options.get(key)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UserError(f"config.ini [{source}] {key} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise UserError(f"config.ini [{source}] {key} must be at least {minimum}, got {value}")
    return value


class ChainFeed:
    """The connector of one EVM chain; subclasses name the source and its environment variables."""

    name: ClassVar[str]
    # ``<PREFIX>_HTTP_URL``, ``<PREFIX>_WS_URL`` and ``<PREFIX>_SECRET`` locate the node.
    env_prefix: ClassVar[str]
    needs_symbols: ClassVar[bool] = False

    def __init__(
        self,
        symbols: Sequence[str],
        sink: FrameSink,
        settings: ConnectorSettings,
        ws_url: str | None = None,
        rest_url: str | None = None,
        channels: Sequence[str] | None = None,
        *,
        confirmations: int | None = None,
        max_reorg_depth: int | None = None,
    ):
        """``confirmations`` and ``max_reorg_depth`` default to ``config.ini`` ``[<source>]`` (0 and 64)."""
        if symbols:
            raise UserError(f"{self.name} is a chain: it takes no --symbol (it publishes every block)")
        if channels:
            raise UserError(f"{self.name} is a chain: it has no channels")
        self.sink = sink
        self.settings = settings
        # Normalised symbols streamed (the runtimes read it): none, a chain streams every block.
        self.requested: list[str] = []
        self.endpoints = NodeEndpoints.from_env(self.env_prefix, self.name, rest_url, ws_url)
        options = source_options(self.name) if confirmations is None or max_reorg_depth is None else {}
        if confirmations is None:
            confirmations = option_int(options, self.name, "confirmations", DEFAULT_CONFIRMATIONS, 0)
        if max_reorg_depth is None:
            max_reorg_depth = option_int(options, self.name, "max_reorg_depth", DEFAULT_MAX_REORG_DEPTH, 1)
        self.confirmations = confirmations
        self.key = raw_key(self.name, None, BLOCK_FEED)
        self.connection_id = f"{self.name}.http"
        self.published: deque[PublishedBlock] = deque(maxlen=max_reorg_depth)
        self.next_number: int | None = None
        self.stats = ChainStats()
        self.rpc = JsonRpc(self.endpoints.http_url, self.endpoints.redact)
        self.metadata = MetadataCache(self.rpc)
        self.block_receipts = True
        self.connection: WebsocketConnection | None = None
        self._wake = asyncio.Event()

    @classmethod
    async def fetch_symbol_map(cls, rest_url: str | None = None) -> dict[str, str]:
        raise UserError(f"{cls.name} is a chain: it has no symbol list")

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the chain until cancelled."""
        with redacted_logs(self.endpoints.redact):
            try:
                await self._start()
                self.connection = WebsocketConnection(
                    self.endpoints.ws_url, f"{self.name}.0", self.settings, self._subscribe, self._on_head
                )
                tasks = [
                    asyncio.create_task(self.connection.run()),
                    asyncio.create_task(self._follow()),
                    asyncio.create_task(self._housekeeping()),
                ]
                try:
                    await asyncio.gather(*tasks)
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
            finally:
                await self.rpc.close()

    async def _start(self) -> None:
        """Check the node answers (a one-line error if not) and whether it has ``eth_getBlockReceipts``."""
        try:
            chain_id = quantity((await self.rpc.call("eth_chainId")).result)
        except (NodeError, TypeError) as exc:
            where = self.endpoints.redact(self.endpoints.http_url)
            raise NodeUnavailable(f"cannot use the {self.name} node at {where}: {exc}") from None
        try:
            await self.rpc.call("eth_getBlockReceipts", "latest")
        except NodeError:
            self.block_receipts = False
        LOG.info(
            "%s: node on chain id %d, receipts by %s, %d confirmation(s)",
            self.name,
            chain_id,
            "eth_getBlockReceipts" if self.block_receipts else "eth_getTransactionReceipt",
            self.confirmations,
        )

    async def _subscribe(self, connection: WebsocketConnection) -> None:
        """Subscribe to new heads and catch up at once: blocks missed while disconnected are backfilled."""
        await connection.send(SUBSCRIBE_REQUEST.decode())
        self._wake.set()

    def _on_head(self, frame: bytes, atom_timestamp: int, connection_id: str) -> None:
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            LOG.warning("%s: unreadable websocket frame from the node: %r", self.name, frame[:200])
            return
        if not isinstance(message, dict):
            return
        if message.get("method") == "eth_subscription":
            self._wake.set()
        elif message.get("error") is not None:
            LOG.warning("%s: the node refused the newHeads subscription: %s", self.name, message["error"])

    async def _follow(self) -> None:
        """Sync whenever woken; on failure log, back off and try again (the next sync resumes where this stopped)."""
        attempt = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.sync()
                attempt = 0
            except (NodeError, *UNEXPECTED_ANSWER) as exc:
                self.stats.failures += 1
                LOG.warning("%s: following the chain failed (will retry): %s", self.name, exc)
                await asyncio.sleep(
                    backoff_delay(attempt, self.settings.reconnect_initial_delay_s, self.settings.reconnect_max_delay_s)
                )
                attempt += 1
                self._wake.set()

    # -- the chain -------------------------------------------------------------------------

    async def sync(self) -> None:
        """Publish every block up to the node's head minus the confirmations, retracting replaced ones first."""
        head = quantity((await self.rpc.call("eth_blockNumber")).result)
        target = head - self.confirmations
        await self._roll_back_replaced()
        if self.next_number is None:
            if target < 0:
                return
            # The first block is the current confirmed head: history before it is not backfilled.
            self.next_number = target
        if target > self.next_number:
            LOG.info("%s: backfilling blocks %d..%d", self.name, self.next_number, target)
        while self.next_number <= target:
            block = await self._fetch(self.next_number)
            if block is None:
                return  # the chain got shorter meanwhile; the next head tells more
            tip = self.published[-1] if self.published else None
            if tip is not None and block.parent_hash != tip.hash:
                if not await self._roll_back_replaced():
                    # The node contradicts itself (e.g. servers behind a load balancer): retry after a backoff.
                    raise ChainMoved(f"block {block.number} does not follow block {tip.number}, still canonical")
                continue
            self._publish(block)

    async def _roll_back_replaced(self) -> int:
        """Retract published blocks, newest first, until the newest one left is canonical; return how many."""
        retracted = 0
        while self.published:
            tip = self.published[-1]
            canonical = (await self.rpc.call("eth_getBlockByNumber", hex(tip.number), False)).result
            if canonical is not None and canonical["hash"] == tip.hash:
                break
            self.published.pop()
            self._retract(tip)
            self.next_number = tip.number
            retracted += 1
        else:
            if retracted:
                LOG.error(
                    "%s: reorg deeper than the %d blocks kept: blocks before %d may have been replaced "
                    "without retraction (raise max_reorg_depth)",
                    self.name,
                    self.published.maxlen,
                    self.next_number,
                )
        if retracted:
            self.stats.reorgs += 1
            LOG.warning("%s: reorg: retracted %d block(s) from %d on", self.name, retracted, self.next_number)
        return retracted

    async def _fetch(self, number: int) -> PublishedBlock | None:
        """Block ``number`` with its transactions, receipts and metadata as one frame; None if there is none."""
        reply = await self.rpc.call("eth_getBlockByNumber", hex(number), True)
        received = now_us()
        block = reply.result
        if block is None:
            return None
        bodies, receipts = await self._receipts(block)
        logs = [log for receipt in receipts for log in receipt.get("logs") or ()]
        metadata = await self.metadata.for_logs(logs, block["number"])
        frame = b"".join(
            (
                FRAME_PREFIX,
                b'"block":',
                reply.body,
                b',"receipts":[',
                b",".join(bodies),
                b'],"metadata":',
                orjson.dumps(metadata),
                b"}",
            )
        )
        return PublishedBlock(number, block["hash"], block["parentHash"], frame, received)

    async def _receipts(self, block: dict[str, Any]) -> tuple[list[bytes], list[dict[str, Any]]]:
        """The receipt responses' bodies and the receipts, checked to belong to ``block``."""
        hashes = [transaction["hash"] for transaction in block["transactions"]]
        if not hashes:
            return [], []
        if self.block_receipts:
            reply = await self.rpc.call("eth_getBlockReceipts", block["hash"])
            bodies, receipts = [reply.body], list(reply.result or ())
        else:
            bodies, receipts = [], []
            for start in range(0, len(hashes), RECEIPTS_PER_BATCH):
                chunk = hashes[start : start + RECEIPTS_PER_BATCH]
                body, outcomes = await self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in chunk])
                for outcome in outcomes:
                    if isinstance(outcome, NodeError):
                        raise outcome
                bodies.append(body)
                receipts += outcomes
        if len(receipts) != len(hashes) or any(r is None or r["blockHash"] != block["hash"] for r in receipts):
            raise ChainMoved(f"receipts of block {int(block['number'], 16)} changed while it was fetched")
        return bodies, receipts

    def _publish(self, block: PublishedBlock) -> None:
        limit = self.settings.max_frame_bytes
        if block.frame is not None and len(block.frame) > limit:
            error = f"block {block.number} frame of {len(block.frame)} bytes exceeds max_frame_bytes={limit}"
            self.sink.dead_letter(self.key, block.frame, error, block.atom_timestamp)
            self.stats.dead_letters += 1
            block = replace(block, frame=None)
        elif block.frame is not None:
            self.sink.write(self.key, block.frame, block.atom_timestamp, self.connection_id, None)
        self.published.append(block)
        self.next_number = block.number + 1
        self.stats.blocks += 1

    def _retract(self, block: PublishedBlock) -> None:
        if block.frame is not None:
            retraction = RETRACTION_PREFIX + block.frame[len(FRAME_PREFIX) :]
            self.sink.write(self.key, retraction, now_us(), self.connection_id, None)
        self.stats.retracted += 1

    async def _housekeeping(self) -> None:
        """Serve the sink's delivery reports and log a summary now and then (never per block)."""
        ticks_per_stats = int(STATS_INTERVAL_S / SINK_POLL_INTERVAL_S)
        tick = 0
        while True:
            await asyncio.sleep(SINK_POLL_INTERVAL_S)
            self.sink.poll()
            tick += 1
            if tick % ticks_per_stats == 0:
                LOG.info(
                    "%s: next block %s, %s, %d metadata calls",
                    self.name,
                    self.next_number,
                    self.stats,
                    self.metadata.calls,
                )
