"""Each output on its own: hourly files (Avro, Parquet) with exact decimals, text lines, the websocket protocol."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from decimal import Context, Decimal
from fractions import Fraction
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import websockets
from aiohttp import web
from hypothesis import example, given, settings
from hypothesis import strategies as st

from l3_atom.consume import format_human, format_json, json_line, plain
from l3_atom.local.outputs import LocalRecord
from l3_atom.local.outputs.avro import AvroFiles
from l3_atom.local.outputs.parquet import ParquetFiles
from l3_atom.local.outputs.queries import HTTP_OK, QueryOutput
from l3_atom.local.outputs.text import DEAD_LETTERS_SHOWN, HumanOutput, JsonLinesOutput
from l3_atom.local.outputs.websocket import STREAM_PATH, WebsocketOutput, _Client
from tests.local.helpers import read_avro_tree

HOUR_US = 3_600_000_000
# 2023-11-14 22:xx UTC, and the next hour.
T0 = 1_699_999_200_000_000
SMALLEST = Decimal("0.000000000000000001")
LARGEST = Decimal("99999999999999999999.999999999999999999")  # 38 digits, scale 18


def trade(n: int, atom: int, price: Decimal, symbol: str = "BTC.USD") -> LocalRecord:
    return LocalRecord("trades_l3", f"coinbase_{symbol}", {
        "exchange": "coinbase", "symbol": symbol, "trade_id": str(n), "price": price, "size": SMALLEST,
        "taker_side": "buy", "maker_order_id": None, "taker_order_id": "t", "sequence": n,
        "origin": None, "event_timestamp": atom // 1000, "atom_timestamp": atom,
    })


def dead_letter(atom: int) -> LocalRecord:
    return LocalRecord("dead_letter", "coinbase_all_unparsed", {
        "source": "coinbase", "stage": "processor", "error": "malformed JSON: x", "raw_topic": "coinbase_raw",
        "partition": None, "offset": 3, "key": "coinbase_all_unparsed", "original": b"\xff{", "original_size": 2,
        "atom_timestamp": atom,
    })


BOOK_KEY = "coinbase_BTC.USD"


def book_open(order_id: str, price: str, sequence: int) -> dict:
    """A resting ``lob_l3`` order, as the validator hands it on."""
    return {"exchange": "coinbase", "symbol": "BTC.USD", "event_type": "open", "order_id": order_id, "side": "bid",
            "price": Decimal(price), "size": Decimal("1.5"), "reason": None, "is_snapshot": True,
            "sequence": sequence, "prev_sequence": None, "event_timestamp": T0, "atom_timestamp": T0 * 1000}


BATCH = [trade(1, T0, LARGEST), trade(2, T0 + 1, Decimal("30000.5"), "ETH.USD"),
         dead_letter(T0 + 2), trade(3, T0 + HOUR_US, SMALLEST)]
EXPECTED_FILES = [
    "dead_letter/coinbase/2023-11-14/22",
    "trades_l3/coinbase/BTC.USD/2023-11-14/22",
    "trades_l3/coinbase/BTC.USD/2023-11-14/23",
    "trades_l3/coinbase/ETH.USD/2023-11-14/22",
]


async def write_twice(make_output: Callable[[], AvroFiles | ParquetFiles]) -> None:
    """Two runs in the same hours: the second must not overwrite the first's files."""
    for _ in range(2):
        output = make_output()
        await output.start()
        await output.write(BATCH)
        await output.close()


def test_avro_files_are_partitioned_by_hour_and_keep_decimals_exact(tmp_path: Path) -> None:
    asyncio.run(write_twice(lambda: AvroFiles(tmp_path)))
    files = read_avro_tree(tmp_path)
    assert sorted(files) == sorted([f"{p}.avro" for p in EXPECTED_FILES] + [f"{p}-1.avro" for p in EXPECTED_FILES])
    assert files["trades_l3/coinbase/BTC.USD/2023-11-14/22.avro"] == [BATCH[0].value]
    assert files["trades_l3/coinbase/BTC.USD/2023-11-14/23-1.avro"][0]["price"] == SMALLEST
    assert files["dead_letter/coinbase/2023-11-14/22.avro"] == [BATCH[2].value], "original bytes exact"


def test_parquet_files_have_decimal128_columns_and_exact_values(tmp_path: Path) -> None:
    asyncio.run(write_twice(lambda: ParquetFiles(tmp_path, ["trades_l3", "dead_letter"])))
    found = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.parquet"))
    assert found == sorted([f"{p}.parquet" for p in EXPECTED_FILES] + [f"{p}-1.parquet" for p in EXPECTED_FILES])
    table = pq.read_table(tmp_path / "trades_l3/coinbase/BTC.USD/2023-11-14/22.parquet")
    assert table.schema.field("price").type == pa.decimal128(38, 18)
    assert not table.schema.field("price").nullable and table.schema.field("maker_order_id").nullable
    assert table.to_pylist() == [BATCH[0].value]
    assert pq.read_table(tmp_path / "dead_letter/coinbase/2023-11-14/22.parquet").to_pylist() == [BATCH[2].value]


@pytest.mark.parametrize("repeat", [1, 2])
def test_remembered_decimal_texts_are_the_exact_plain_texts(repeat: int) -> None:
    """Equal decimals share a remembered text; zeros (-0 equals 0 but prints "-0") and NaN are never remembered."""
    values = [Decimal("1.50"), Decimal("1.5"), Decimal("1.500000000000000000"), Decimal("-0"), Decimal("0E-18"),
              Decimal(0), Decimal("-0E-18"), Decimal("-1.5"), Decimal("1E+3"), Decimal("NaN")]
    for _ in range(repeat):
        for value in values:
            assert orjson.loads(format_json("t", "k", {"v": value}))["v"] == plain(value), value
            assert json_line("t", "k", {"v": value}) == (format_json("t", "k", {"v": value}) + "\n").encode()


# Decimal texts of every shape: digits around the schemas' scale (18) and precision (38), signs, exponents, zeros.
DECIMAL_TEXTS = st.from_regex(r"[-+]?[0-9]{1,45}(\.[0-9]{0,25})?([eE][-+]?[0-9]{1,2})?", fullmatch=True)


@settings(max_examples=500, deadline=None)
@given(DECIMAL_TEXTS)
@example("1" * 39)  # one digit more than the precision: normalising rounds it
@example("1000000000000000000000.00000000000000001")
@example("-" + "9" * 38)
def test_plain_is_the_normalised_decimal_formatted(text: str) -> None:
    """Whatever path ``plain`` takes, its text is the decimal normalised at 38 digits and formatted plainly."""
    value = Decimal(text)
    for decimal in (value, value.scaleb(-18), value.quantize(Decimal("1E-18"), context=Context(prec=200))):
        assert plain(decimal) == format(decimal.normalize(Context(prec=38)), "f"), decimal


@pytest.mark.parametrize("record", [
    {"price": Decimal("1.50"), "side": "buy", "n": 3},
    {},
    {"key": "own", "price": Decimal(2)},
    {"topic": "own", "raw_topic": "coinbase_raw"},
])
@pytest.mark.parametrize("key", ["coinbase_BTC.USD", None, 'odd "key" \u00e9'])
def test_json_lines_are_the_record_merged_after_topic_and_key(record: dict, key: str | None) -> None:
    """A line is ``{"topic": t, "key": k, **record}`` written by orjson, whichever way it is put together."""
    merged = orjson.dumps({"topic": "trades_l3", "key": key, **record}, default=plain)
    assert json_line("trades_l3", key, record) == merged + b"\n"
    assert format_json("trades_l3", key, record) == merged.decode()


def test_json_lines_write_bytes_as_text_and_refuse_other_types() -> None:
    """Bytes fields are UTF-8 text (undecodable bytes replaced); a type JSON has no form for is an error."""
    assert orjson.loads(json_line("t", "k", {"v": b"ab\xff"})) == {"topic": "t", "key": "k", "v": "ab\ufffd"}
    with pytest.raises(orjson.JSONEncodeError, match="Fraction"):
        json_line("t", "k", {"v": Fraction(1, 3)})


def test_text_outputs_print_what_runner_consume_prints(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    human = HumanOutput(out, err)
    many_dead = [dead_letter(T0)] * (DEAD_LETTERS_SHOWN + 5)
    jsonl = JsonLinesOutput(tmp_path / "records.jsonl")

    async def scenario() -> None:
        for output in (human, jsonl):
            await output.start()
            await output.write(BATCH + many_dead)
            await output.close()

    asyncio.run(scenario())
    trades = [r for r in BATCH if r.topic == "trades_l3"]
    assert out.getvalue().splitlines() == [format_human(r.topic, r.key, r.value) for r in trades]
    shown = err.getvalue().splitlines()
    assert len(shown) == DEAD_LETTERS_SHOWN + 1 and shown[0].startswith("dead_letter coinbase_all_unparsed")
    assert human.stats() == {"records": len(BATCH) + len(many_dead), "dead_letters": len(many_dead) + 1}
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert lines == [format_json(r.topic, r.key, r.value) for r in BATCH + many_dead]
    assert orjson.loads(lines[0])["price"] == str(LARGEST), "decimals as exact strings"


class _Unread:
    """A websocket stand-in for the queue logic: nothing is sent."""


def test_a_slow_client_loses_records_counted_and_is_told_where() -> None:
    client = _Client(_Unread(), capacity=2)
    assert client.offer("r1") and client.offer("r2")
    assert not client.offer("r3") and not client.offer("r4")
    assert client.dropped == 2 and len(client.queue) == 2, "the queue never grows past its capacity"
    client.queue.popleft()
    assert client.offer("r5")
    assert list(client.queue) == ["r2", '{"type":"dropped","count":2}', "r5"]


@pytest.mark.timeout(20)
def test_websocket_protocol_subscribe_records_errors_unsubscribe() -> None:
    output = WebsocketOutput(["trades_l3", "lob_l3"], ["coinbase_BTC.USD", "coinbase_ETH.USD"], client_queue=100)

    async def scenario() -> list[dict]:
        app = web.Application()
        output.register(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        replies = []
        try:
            async with websockets.connect(f"ws://127.0.0.1:{port}{STREAM_PATH}") as ws:

                async def ask(request: object) -> dict:
                    await ws.send(request if isinstance(request, str) else orjson.dumps(request).decode())
                    return orjson.loads(await ws.recv())

                replies.append(orjson.loads(await ws.recv()))
                replies.append(await ask({"op": "subscribe", "feeds": ["trades_l3"], "symbols": ["coinbase_BTC.USD"]}))
                replies.append(await ask({"op": "subscribe", "feeds": ["dead_letter"]}))
                replies.append(await ask({"op": "subscribe", "feeds": ["nope"], "symbols": ["coinbase_BTC.USD"]}))
                replies.append(await ask("not json"))
                replies.append(await ask({"feeds": []}))
                await output.write(BATCH)
                replies += [orjson.loads(await ws.recv()) for _ in range(3)]
                replies.append(await ask({"op": "unsubscribe", "feeds": ["trades_l3"]}))
                await output.write(BATCH)
                replies.append(orjson.loads(await ws.recv()))
                stats = {"clients": 1, "connections": 1, "sent": 11, "dropped": 0, "refused_requests": 0,
                         "largest_client_queue": 0}
                assert output.stats() == stats
        finally:
            await output.close()
            await runner.cleanup()
        return replies

    replies = asyncio.run(scenario())
    assert replies[0] == {
        "type": "info", "feeds": ["dead_letter", "lob_l3", "trades_l3"],
        "symbols": ["coinbase_BTC.USD", "coinbase_ETH.USD"], "queue": 100,
    }
    assert replies[1] == {"type": "subscribed", "subscriptions": [{"feed": "trades_l3", "symbol": "coinbase_BTC.USD"}]}
    assert replies[2]["subscriptions"][0] == {"feed": "dead_letter", "symbol": "*"}
    assert replies[3] == {
        "type": "error", "error": "unknown feeds: nope; streaming: dead_letter, lob_l3, trades_l3",
    }
    assert replies[4]["type"] == "error" and replies[4]["error"].startswith("not JSON: expected one JSON object")
    assert replies[5]["type"] == "error"
    records = replies[6:9]
    expected = [BATCH[0], BATCH[2], BATCH[3]]
    assert records == [orjson.loads(format_json(r.topic, r.key, r.value)) for r in expected]
    assert replies[9] == {"type": "subscribed", "subscriptions": [{"feed": "dead_letter", "symbol": "*"}]}
    assert replies[10]["topic"] == "dead_letter", "after unsubscribing trades, only dead letters come"


def test_the_query_api_answers_from_the_websockets_books_applied_once() -> None:
    """With --serve each book record is applied once (the websocket's books); their snapshot requests reach
    the sources, and /book answers from them."""
    resyncs: list[dict] = []
    websocket = WebsocketOutput(["lob_l3"], [BOOK_KEY], client_queue=10, on_resync=resyncs.append)
    queries = QueryOutput([], 0, on_resync=resyncs.append, books=websocket.books)
    applied = []
    apply = websocket.books.apply

    def counted(topic: str, partition: int, record: dict) -> bool:
        applied.append(record["order_id"])
        if len(applied) == 1:  # as a book that saw a gap asks for a snapshot
            websocket.books.resync_requests.append({"exchange": "coinbase", "symbol": "BTC.USD", "reason": "gap"})
        return apply(topic, partition, record)

    websocket.books.apply = counted
    batch = [LocalRecord("lob_l3", BOOK_KEY, book_open(order, price, sequence))
             for order, price, sequence in (("a", "100.5", 10), ("b", "101", 11))]

    async def write() -> None:
        await websocket.write(batch)
        await queries.write(batch)

    asyncio.run(write())
    assert applied == ["a", "b"], "each book record applied once"
    assert resyncs == [{"exchange": "coinbase", "symbol": "BTC.USD", "reason": "gap"}], "asked for once"
    answer = queries.books.book("coinbase", "BTC.USD", {})
    assert answer.status == HTTP_OK and answer.body["sequence"] == 11
    assert answer.body == websocket.books.book("coinbase", "BTC.USD", {}).body
    assert queries.stats()["records"] == len(batch)


def test_held_json_lines_are_written_at_flush_or_close_as_written_through(tmp_path: Path) -> None:
    """``hold`` (the runtime's): nothing reaches the file until ``flush`` (or close); then the same lines."""
    held, through = JsonLinesOutput(tmp_path / "held.jsonl", hold=True), JsonLinesOutput(tmp_path / "through.jsonl")

    async def scenario() -> None:
        for output in (held, through):
            await output.start()
        for output in (held, through):
            await output.write(BATCH)
            await output.write(BATCH[:1])
        assert (tmp_path / "held.jsonl").read_bytes() == b""
        assert held.records == 0 and through.records == len(BATCH) + 1
        await held.flush()
        assert (tmp_path / "held.jsonl").read_bytes() == (tmp_path / "through.jsonl").read_bytes()
        for output in (held, through):
            await output.write(BATCH)
            await output.close()

    asyncio.run(scenario())
    assert (tmp_path / "held.jsonl").read_bytes() == (tmp_path / "through.jsonl").read_bytes()
    assert held.records == through.records == 2 * len(BATCH) + 1
