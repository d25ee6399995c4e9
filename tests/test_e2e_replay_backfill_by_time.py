"""End to end, a venue whose history pages by time: Deribit's trades, dropped twice mid-stream, backfilled from
``public/get_last_trades_by_instrument_and_time`` through the replay server's clock.

The recorded Deribit traffic holds no trade, so the test writes a recording (the recordings' format) of
one instrument's ``trades`` channel: 300 trades, one notification each, ten per second, several sharing a
millisecond (the page boundary case), in the shape of Deribit's documented trade.  It is replayed at its
recorded pace, so the connector's "since my last frame" (today's time) maps onto the recording's time as
the replay's clock runs.  Real processes as in ``tests/test_e2e_replay_backfill.py``; the consumer reads
``trades`` and ``coverage``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from unittest import mock

import pytest

from l3_atom.config import Settings
from l3_atom.infra.local_pipeline import LocalStack
from l3_atom.topic_admin import ensure_topics
from l3_atom.topics import COVERAGE, NORMALISED_TOPICS, TRADES
from tests.kafka_reader import TopicReader
from tests.test_e2e_replay_backfill import DROPS, replay_stats, replay_with_drops

SOURCE = "deribit"
INSTRUMENT, SYMBOL = "ETH-PERPETUAL", "ETH.USD-PERP"
URL = "wss://www.deribit.com/ws/api/v2"
TRADES_MADE = 300
FIRST_SEQ = 1966031
START_S = 1590480363.0
# Every fifth trade shares the millisecond of the one before it.
SAME_MS_EVERY = 5
MATCH = '"method":"subscription"'
EVERY = 80  # the trade notification at which a connection is dropped
MISSED = 60
READ_TIMEOUT_S = 150.0
SETTLE_S = 5.0


def trade(seq: int) -> dict:
    """A trade as Deribit documents it; times rise 100 ms a trade, except that every fifth repeats the last."""
    step = seq - FIRST_SEQ
    moment = int(START_S * 1000) + 100 * (step - step // SAME_MS_EVERY)
    return {"trade_seq": seq, "trade_id": f"ETH-{seq + 730029}", "timestamp": moment, "tick_direction": 2,
            "price": 204.47 + step / 100, "mark_price": 204.46, "instrument_name": INSTRUMENT, "index_price": 204.42,
            "direction": "buy" if seq % 2 else "sell", "amount": 1 + step % 7}


def compact(value: object) -> str:
    """JSON as Deribit sends it, without spaces."""
    return json.dumps(value, separators=(",", ":"))


def write_recording(folder: Path) -> None:
    """ws.jsonl (subscribe, ack, one notification a trade) and http.jsonl (the instrument list the connector asks)."""
    folder.mkdir()
    channel = f"trades.{INSTRUMENT}.100ms"
    lines = [{"t": "open", "conn": "c0", "url": URL, "ts": START_S - 1},
             {"t": "send", "conn": "c0", "url": URL, "ts": START_S - 0.9, "data": compact(
                 {"jsonrpc": "2.0", "id": 4, "method": "public/subscribe", "params": {"channels": [channel]}})},
             {"t": "recv", "conn": "c0", "url": URL, "ts": START_S - 0.8, "data": compact(
                 {"jsonrpc": "2.0", "id": 4, "result": [channel]})}]
    for seq in range(FIRST_SEQ, FIRST_SEQ + TRADES_MADE):
        made = trade(seq)
        lines.append({"t": "recv", "conn": "c0", "url": URL, "ts": made["timestamp"] / 1000, "data": compact(
            {"jsonrpc": "2.0", "method": "subscription", "params": {"channel": channel, "data": [made]}})})
    (folder / "ws.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    instruments = {"jsonrpc": "2.0", "result": [{"instrument_name": INSTRUMENT, "kind": "future"}]}
    http = {"url": "https://www.deribit.com/api/v2/public/get_instruments?currency=ETH&expired=false",
            "ts": START_S - 2, "body": json.dumps(instruments)}
    (folder / "http.jsonl").write_text(json.dumps(http) + "\n")


@pytest.mark.timeout(360)
def test_trades_missed_in_drops_are_backfilled_by_time_once(tmp_path: Path) -> None:
    folder = tmp_path / "deribit_trades"
    write_recording(folder)
    made = {str(seq): trade(seq) for seq in range(FIRST_SEQ, FIRST_SEQ + TRADES_MADE)}
    (tmp_path / "stack").mkdir()
    with LocalStack([SOURCE], workdir=tmp_path / "stack") as stack:
        with mock.patch.dict(os.environ, stack.env()):
            ensure_topics(Settings().kafka, [*NORMALISED_TOPICS, COVERAGE])
        reader = TopicReader(stack.broker.bootstrap_servers, stack.registry_url, [TRADES, COVERAGE])
        try:
            port = replay_with_drops(stack, folder, EVERY, MATCH, MISSED)
            stack.start_runner("connector", "connector", "--source", SOURCE, "--symbol", SYMBOL, "--channels",
                               "trades", "--ws-url", f"ws://127.0.0.1:{port}/", "--rest-url", f"http://127.0.0.1:{port}")

            def complete(records: list) -> bool:
                stack.check_alive("connector")
                seqs = {str(r.value["sequence"]) for r in records if r.topic == TRADES}
                filled = sum(r.value["kind"] == "trades_backfilled" for r in records if r.topic == COVERAGE)
                return seqs >= set(made) and filled >= 1

            reader.read_until(complete, READ_TIMEOUT_S)
            reader.read_until(lambda _: False, SETTLE_S)
            stats = replay_stats(port)
            stack.check_alive("connector")
        finally:
            reader.close()

    trades = [r.value for r in reader.by_topic(TRADES)]
    seqs = Counter(str(t["sequence"]) for t in trades)
    duplicates = sum(n - 1 for n in seqs.values())
    backfilled = {str(t["sequence"]) for t in trades if t["origin"] == "backfill"}
    drops = stats["disconnects"]
    # Frame 0 is the subscribe ack; trade k (from 0) is frame k + 1.
    missed = {str(FIRST_SEQ + index - 1) for d in drops for index in range(d["dropped_at"], d["resumes_at"])}
    coverage = Counter(r.value["kind"] for r in reader.by_topic(COVERAGE))
    print(f"\ntrades made {len(made)}, published {len(trades)}: backfilled {len(backfilled)}, duplicates "
          f"{duplicates}; missed in the drops {len(missed)}; drops {drops}; history pages {stats['history_pages']}; "
          f"coverage {dict(coverage)}")

    assert len(drops) == DROPS
    assert duplicates == 0, "a trade was published twice"
    assert set(seqs) == set(made)
    assert missed and missed <= backfilled, "the trades made while the connector was away came by backfill"
    for record in trades:
        documented = made[str(record["sequence"])]
        assert (record["trade_id"], record["event_timestamp"], record["taker_side"], record["symbol"]) == (
            documented["trade_id"], documented["timestamp"], documented["direction"], SYMBOL)
    # A drop that cuts a backfill short has the next backfill start from the first outage: at least one each.
    assert coverage["stream_down"] >= DROPS and 1 <= coverage["trades_backfilled"] <= coverage["stream_up"]
    assert coverage["trades_unrecoverable"] == 0
