"""``runner.py gateway`` against the real local pipeline, read with an independent websocket client.

Broker, registry, Coinbase simulator, connector, processor and two gateways
(the second with a small per-client queue: several gateways run side by
side).  What a websocket client receives is compared with what an
independent confluent-kafka consumer (``tests/kafka_reader.py``: plain
``AvroDeserializer``) reads for the same key: exactly the same records, in
order, over the window the client was subscribed.  A client that reads
nothing loses only its own records (counted, reported to it) while another
client of the same gateway misses none.  Bad requests get errors on their
own socket and leave its subscriptions alone.  The second gateway starts
once the book topics hold records: its books come from catching up on them,
and a subscriber's snapshot plus what follows is the processor's book.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from l3_atom.consume import format_json
from l3_atom.infra.local_pipeline import LocalPipeline, gateway_args
from l3_atom.infra.processes import LOOPBACK, free_port
from l3_atom.ws_stream import HEARTBEAT_S, MAX_MESSAGE_BYTES, MAX_REQUEST_BYTES, REQUEST_BURST
from tests.book_rebuild import Rebuild
from tests.kafka_reader import TopicReader
from tests.test_metrics import GATEWAY_NAMES, vocabulary_errors

KEY = "coinbase_BTC.USD"
FEEDS = ["lob_l3", "trades_l3"]
RATE = 200.0
SMALL_QUEUE = 50
WINDOW_RECORDS = 300
TIMEOUT_S = 60.0
QUIET_S = 2.0
DEPTH = 10
DRAIN_S = 0.05
# The reader of nothing's kernel receive buffer (Linux doubles it): its TCP window, whatever tcp_rmem says.
SLOW_RECEIVE_BUFFER = 4096


class Gateways:
    """The pipeline with its gateway, and a second gateway whose clients have a small queue."""

    def __init__(self, pipeline: LocalPipeline, small_port: int):
        self.pipeline = pipeline
        self.small_port = small_port

    def url(self, port: int) -> str:
        return f"ws://{LOOPBACK}:{port}/ws"

    @property
    def main(self) -> str:
        return self.url(self.pipeline.gateway_port)

    @property
    def small(self) -> str:
        return self.url(self.small_port)

    def stats(self, port: int) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/stats", timeout=10) as response:
            return json.loads(response.read())

    def metrics(self, port: int) -> tuple[str, str]:
        """The content type and text of ``/metrics``."""
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=10) as response:
            return response.headers["Content-Type"], response.read().decode()


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/ready", timeout=5) as response:
            return json.loads(response.read())["ready"]
    except OSError:
        return False


def _wait(check: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {TIMEOUT_S:.0f} s"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateways]:
    workdir = tmp_path_factory.mktemp("gateway")
    with LocalPipeline(rate=RATE, gateway=True, workdir=workdir) as pipeline:
        gateways = Gateways(pipeline, 0)
        # The second gateway starts once the book topics hold records: it must catch up on them.
        _wait(lambda: gateways.stats(pipeline.gateway_port)["records"] > WINDOW_RECORDS, "records in the topics")
        small_port = free_port()
        pipeline.start_runner("gateway_small", *gateway_args(small_port), "--client-queue", str(SMALL_QUEUE))
        pipeline.wait_port("gateway_small", small_port)
        for port in (pipeline.gateway_port, small_port):
            _wait(lambda port=port: _ready(port), f"gateway on {port} ready")
        gateways.small_port = small_port
        yield gateways


async def _connect(url: str, **kwargs: Any) -> websockets.ClientConnection:
    """A client that has seen ``KEY`` listed (symbols are learnt from the topics)."""
    ws = await websockets.connect(url, max_size=None, **kwargs)
    info = orjson.loads(await ws.recv())
    while KEY not in info["symbols"]:
        await ws.send('{"op": "info"}')
        info = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
        if info.get("type") != "info":
            continue
        await asyncio.sleep(0.2)
    return ws


async def _reply(ws: websockets.ClientConnection, request: Any) -> dict[str, Any]:
    """Send a request; its reply (records before it are skipped, a snapshot after it is not read)."""
    await ws.send(request if isinstance(request, str) else orjson.dumps(request).decode())
    while True:
        message = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
        if message.get("type") in ("subscribed", "error", "info"):
            return message


def _as_json(records: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(format_json(r.topic, r.key, r.value)) for r in records]


@pytest.mark.timeout(300)
def test_a_subscriber_gets_exactly_what_kafka_holds_for_its_key_then_nothing_after_unsubscribing(
    gateways: Gateways,
) -> None:
    async def scenario() -> tuple[list[dict], dict, list[dict], int]:
        ws = await _connect(gateways.main)
        try:
            subscribed = await _reply(ws, {"op": "subscribe", "feeds": FEEDS, "symbols": [KEY]})
            snapshot = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
            received = []
            while len(received) < WINDOW_RECORDS:
                message = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
                assert "topic" in message, f"only records between subscribing and unsubscribing: {message}"
                received.append(message)
            unsubscribed = await _reply(ws, {"op": "unsubscribe", "feeds": FEEDS, "symbols": [KEY]})
            assert unsubscribed == {"type": "subscribed", "subscriptions": []}
            # Records queued before the reply came before it; after it, none.
            after = 0
            with pytest.raises(TimeoutError):
                while True:
                    await asyncio.wait_for(ws.recv(), QUIET_S)
                    after += 1
            return received, snapshot, subscribed["subscriptions"], after
        finally:
            await ws.close()

    received, snapshot, subscriptions, after = asyncio.run(scenario())
    assert subscriptions == [{"feed": feed, "symbol": KEY} for feed in FEEDS]
    assert snapshot["type"] == "snapshot" and snapshot["feed"] == "lob_l3" and snapshot["key"] == KEY
    assert snapshot["in_sync"] and snapshot["records"], "a new book subscriber starts from the book"
    assert after == 0
    assert {r["key"] for r in received} == {KEY} and {r["topic"] for r in received} == set(FEEDS)

    reader = TopicReader(gateways.pipeline.broker.bootstrap_servers, gateways.pipeline.registry_url, FEEDS)
    try:
        for topic in FEEDS:
            mine = [r for r in received if r["topic"] == topic]
            last = mine[-1]
            records = reader.read_until(
                lambda rs, topic=topic, last=last: any(
                    r.topic == topic and r.key == KEY and r.value.get("sequence") == last["sequence"] for r in rs
                ),
                TIMEOUT_S,
            )
            kafka = _as_json([r for r in records if r.topic == topic and r.key == KEY])
            assert mine[0] in kafka, f"{topic}: the first record the client got is not in Kafka"
            start = kafka.index(mine[0])
            assert kafka[start:start + len(mine)] == mine, f"{topic}: the client's window differs from Kafka's"
            print(f"\n{topic}: {len(mine)} records over the window, equal to the Kafka consumer's "
                  f"(offsets {start}..{start + len(mine) - 1} of the key)")
    finally:
        reader.close()


def _small_window_socket(port: int) -> socket.socket:
    """A connected TCP socket whose receive buffer, set before the handshake, stays small (no autotuning)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RECEIVE_BUFFER)
    sock.connect((LOOPBACK, port))
    sock.setblocking(False)
    return sock


@pytest.mark.timeout(300)
def test_a_client_that_reads_nothing_loses_only_its_own_records(gateways: Gateways) -> None:
    """Drops are counted at the gateway, reported to the slow client, and cost the other client nothing.

    What lies between the gateway's queue and a client that stops reading decides when drops
    start: the client's receive window, the gateway's unsent kernel bytes and aiohttp's write
    buffer.  Left to Linux, the gateway's send buffer autotunes to tcp_wmem's maximum (4 MiB)
    and the client's window to tcp_rmem's; on a loaded machine that took longer to fill than
    the heartbeat gives a client that answers no ping (``HEARTBEAT_S`` and half as long again for
    the pong), so it was closed having lost nothing.  The gateway now keeps at most ``UNSENT_BYTES`` unsent per client
    (``TCP_NOTSENT_LOWAT``), and this client's receive buffer is set small before it connects:
    a few hundred kB fill the path and the queue overflows within seconds at any rate the
    pipeline produces.  The slow client must still be connected when the drops are seen, so
    they are the queue's doing, not a disconnect's.
    """
    port = gateways.small_port

    async def scenario() -> tuple[list[dict], dict[str, Any], dict[str, Any]]:
        # max_queue=1: the client library stops reading the socket as soon as one message waits.
        slow = await _connect(gateways.small, max_queue=1, sock=_small_window_socket(port))
        fast = await _connect(gateways.small)
        try:
            await fast.send(orjson.dumps({"op": "subscribe", "feeds": ["trades_l3"], "symbols": [KEY]}).decode())
            await slow.send(orjson.dumps({"op": "subscribe"}).decode())
            received: list[dict] = []
            deadline = time.monotonic() + TIMEOUT_S * 2
            stats = gateways.stats(port)
            while stats["dropped"] == 0 or len([r for r in received if "topic" in r]) < 20:
                assert stats["clients"] == 2, (
                    f"the reader of nothing was closed (no pong within the {HEARTBEAT_S:g} s heartbeat) "
                    f"before its queue filled: {stats}"
                )
                assert time.monotonic() < deadline, f"no drops for the reader of nothing: {stats}"
                try:
                    received.append(orjson.loads(await asyncio.wait_for(fast.recv(), 1.0)))
                except TimeoutError:
                    pass
                stats = gateways.stats(port)
            # The slow client now reads: somewhere in its stream is the exact count of what it lost.
            lost = 0
            slow_deadline = time.monotonic() + TIMEOUT_S
            while lost == 0 and time.monotonic() < slow_deadline:
                message = orjson.loads(await asyncio.wait_for(slow.recv(), TIMEOUT_S))
                if message.get("type") == "dropped":
                    lost = message["count"]
            return received, stats, {"lost_reported": lost}
        finally:
            await slow.close()
            await fast.close()

    received, stats, slow = asyncio.run(scenario())
    assert stats["dropped"] > 0 and slow["lost_reported"] > 0
    assert stats["clients"] == 2, "both clients were connected when the drops were counted"
    assert stats["largest_client_queue"] <= SMALL_QUEUE + 1, "a queue never grows past its bound"
    assert not [m for m in received if m.get("type") == "dropped"], "the client that reads lost nothing"
    trades = [m for m in received if "topic" in m]
    reader = TopicReader(gateways.pipeline.broker.bootstrap_servers, gateways.pipeline.registry_url, ["trades_l3"])
    try:
        last = trades[-1]["sequence"]
        records = reader.read_until(
            lambda rs: any(r.key == KEY and r.value["sequence"] == last for r in rs), TIMEOUT_S
        )
        kafka = _as_json([r for r in records if r.key == KEY])
    finally:
        reader.close()
    start = kafka.index(trades[0])
    assert kafka[start:start + len(trades)] == trades, "the reading client got every record, in order"
    print(f"\nslow client: {stats['dropped']} records dropped (it was told of {slow['lost_reported']} at once); "
          f"the other client got all {len(trades)} trades of its window")


@pytest.mark.timeout(180)
def test_bad_requests_get_errors_on_their_socket_and_change_nothing(gateways: Gateways) -> None:
    async def scenario() -> dict[str, Any]:
        ws = await _connect(gateways.main)
        replies: dict[str, Any] = {}
        try:
            await _reply(ws, {"op": "subscribe", "feeds": ["trades_l3"], "symbols": [KEY]})
            for name, request in {
                "exchange": {"op": "subscribe", "feeds": ["trades_l3"], "symbols": ["nosuch_BTC.USD"]},
                "symbol": {"op": "subscribe", "feeds": ["trades_l3"], "symbols": ["coinbase_DOGE.XYZ"]},
                "feed": {"op": "subscribe", "feeds": ["nope"], "symbols": [KEY]},
                "not_json": "subscribe me",
                "no_op": {"feeds": ["trades_l3"]},
                "not_object": "[1, 2]",
                "bad_list": {"op": "subscribe", "feeds": "trades_l3"},
                "bad_op": {"op": "sub"},
                "large": {"op": "subscribe", "feeds": ["trades_l3"], "pad": "x" * MAX_REQUEST_BYTES},
                "info": {"op": "info"},
            }.items():
                replies[name] = await _reply(ws, request)
            # The first subscription still streams.
            while True:
                message = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
                if "topic" in message:
                    replies["record"] = message
                    break
        finally:
            await ws.close()

        flood = await _connect(gateways.main)
        try:
            for _ in range(REQUEST_BURST * 2):
                await flood.send('{"op": "info"}')
            answers = [orjson.loads(await asyncio.wait_for(flood.recv(), TIMEOUT_S)) for _ in range(REQUEST_BURST * 2)]
            replies["flood"] = answers
        finally:
            await flood.close()

        huge = await _connect(gateways.main)
        try:
            await huge.send("x" * (MAX_MESSAGE_BYTES + 1))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(huge.recv(), TIMEOUT_S)
            replies["huge"] = closed.value.rcvd
        finally:
            await huge.close()
        return replies

    replies = asyncio.run(scenario())
    errors = {name: reply.get("error", "") for name, reply in replies.items() if isinstance(reply, dict)}
    assert errors["exchange"].startswith("unknown exchange: nosuch; streaming: ") and "coinbase" in errors["exchange"]
    assert errors["symbol"].startswith("unknown symbols: coinbase_DOGE.XYZ; streaming: ") and KEY in errors["symbol"]
    assert errors["feed"].startswith("unknown feeds: nope; streaming: ")
    assert errors["not_json"].startswith("not JSON: expected one JSON object")
    assert errors["no_op"].startswith('a request needs "op"') and "expected one JSON object" in errors["no_op"]
    assert errors["not_object"].startswith('a request needs "op"')
    assert errors["bad_list"] == '"feeds" must be a list of strings, e.g. ["*"]'
    assert errors["bad_op"].startswith("unknown op 'sub'; expected one of")
    assert errors["large"].startswith("request refused: ") and f"at most {MAX_REQUEST_BYTES}" in errors["large"]
    assert replies["info"]["type"] == "info"
    assert replies["record"]["topic"] == "trades_l3" and replies["record"]["key"] == KEY
    flood = replies["flood"]
    refused = [a for a in flood if a["type"] == "error"]
    assert refused and all(a["error"].startswith("request refused: too many requests") for a in refused)
    assert sum(a["type"] == "info" for a in flood) >= REQUEST_BURST
    assert replies["huge"] is not None and replies["huge"].code == 1009
    print(f"\nflood of {len(flood)} requests: {len(refused)} refused; oversized message: closed "
          f"{replies['huge'].code} {replies['huge'].reason!r}")


def _exact(record: dict[str, Any]) -> dict[str, Any]:
    """A streamed lob_l3 record with its decimals back as Decimals (the snapshot's have no receive time)."""
    size = Decimal(record["size"])
    return {**record, "price": None if record["price"] is None else Decimal(record["price"]), "size": size,
            "atom_timestamp": record.get("atom_timestamp", 0)}


@pytest.mark.timeout(300)
def test_a_gateway_started_late_starts_subscribers_from_the_processors_book(gateways: Gateways) -> None:
    """Its snapshot message plus the records after it rebuild the book the processor's /book answers."""
    log = gateways.pipeline.log_path("gateway_small").read_text()
    behind = int(re.search(r"(\d+) book partitions to catch up on", log).group(1))
    assert behind > 0, "the late gateway had book records to catch up on"
    book_url = f"http://{LOOPBACK}:{gateways.pipeline.web_ports[0]}/book/coinbase/BTC.USD?depth={DEPTH}"

    def answer() -> tuple[list, list, int]:
        with urllib.request.urlopen(book_url, timeout=10) as response:
            body = json.loads(response.read())
        return [[Decimal(p), Decimal(q)] for p, q in body["bids"]], [[Decimal(p), Decimal(q)] for p, q in body["asks"]], body["sequence"]

    async def scenario() -> tuple[int, int, int]:
        ws = await _connect(gateways.small)
        book = Rebuild()
        try:
            await _reply(ws, {"op": "subscribe", "feeds": ["lob_l3"], "symbols": [KEY]})
            snapshot = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
            assert snapshot["type"] == "snapshot" and snapshot["in_sync"]
            for record in snapshot["records"]:
                book.apply(_exact(record))
            deadline = time.monotonic() + TIMEOUT_S
            tries = 0
            while time.monotonic() < deadline:
                tries += 1
                before = await asyncio.to_thread(answer)
                try:
                    while True:
                        message = orjson.loads(await asyncio.wait_for(ws.recv(), DRAIN_S))
                        assert message.get("type") != "dropped"
                        book.apply(_exact(message))
                except TimeoutError:
                    pass
                after = await asyncio.to_thread(answer)
                mine = (book.levels("bid", DEPTH), book.levels("ask", DEPTH))
                for bids, asks, sequence in (before, after):
                    if mine == (bids, asks) and bids and asks:
                        return tries, sequence, len(snapshot["records"])
            raise AssertionError(f"the rebuilt book never equalled /book in {tries} tries: {mine} vs {before}")
        finally:
            await ws.close()

    tries, sequence, orders = asyncio.run(scenario())
    print(f"\nlate gateway ({behind} book partitions caught up): snapshot of {orders} orders + the stream "
          f"equal to the processor's /book at sequence {sequence} (after {tries} reads)")


@pytest.mark.timeout(180)
def test_the_gateway_serves_its_counts_on_metrics(gateways: Gateways) -> None:
    """``/metrics`` on the gateway's own port: the project's names and bounded labels, the counts of ``/stats``."""
    port = gateways.small_port
    before = gateways.stats(port)
    content_type, text = gateways.metrics(port)
    after = gateways.stats(port)
    families = list(text_string_to_metric_families(text))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}
    assert content_type.startswith("text/plain") and "version=" in content_type
    assert vocabulary_errors(SimpleNamespace(collect=lambda: families)) == []
    assert GATEWAY_NAMES <= {family.name for family in families}
    assert samples[("l3_atom_ready", (("role", "gateway"),))] == 1.0
    consumed = {labels[0][1]: value for (name, labels), value in samples.items()
                if name == "l3_atom_gateway_consumed_records_total"}
    assert consumed["lob_l3"] > 0 and consumed["trades_l3"] > 0
    # Counters only grow: each lies between the /stats read before the scrape and the one after.
    for metric, key in (("l3_atom_gateway_connections_total", "connections"),
                        ("l3_atom_gateway_messages_sent_total", "sent"),
                        ("l3_atom_gateway_dropped_records_total", "dropped"),
                        ("l3_atom_gateway_refused_requests_total", "refused_requests"),
                        ("l3_atom_gateway_undecodable_records_total", "undecodable")):
        assert before[key] <= samples[(metric, ())] <= after[key], metric
    assert before["records"] <= sum(consumed.values()) <= after["records"]
    print(f"\n/metrics: {len(families)} families; consumed {sum(consumed.values()):.0f} records "
          f"({', '.join(f'{t} {v:.0f}' for t, v in sorted(consumed.items()) if v)}), "
          f"{samples[('l3_atom_gateway_dropped_records_total', ())]:.0f} dropped")
