"""End to end on real traffic: the replay server drops the connector twice mid-stream, the connector backfills
from the replay's trade history, and every trade of the recording is in ``trades_l3`` exactly once.

The Coinbase recording (97 ``match`` and 10 ``last_match`` frames over ~30 s) is replayed at its recorded
pace with a
``disconnect`` fault: the 25th match frame of a connection is not sent, the connection is closed, and the
1500 frames after it are missed; the reconnect gets the connection's opening frames again (acks, book
snapshots, ``last_match``) and the rest.  The second connection is dropped the same way.  The trades of
the missed frames reach the pipeline only through ``GET /products/{id}/trades``, which the replay answers
from the recorded trades made so far.

Real processes: Tansu, the schema registry, ``runner.py replay``, ``runner.py connector`` and
``runner.py processor``; the consumer is confluent-kafka with the registry's deserializer.  What the
recording holds is read from its file here, not through the pipeline or the replay server.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections import Counter
from pathlib import Path
from unittest import mock

import orjson
import pytest

from l3_atom.config import Settings
from l3_atom.infra.local_pipeline import LocalStack
from l3_atom.infra.processes import free_port
from l3_atom.topic_admin import ensure_topics
from l3_atom.topics import COVERAGE, NORMALISED_TOPICS, TRADES_L3
from tests.conftest import recordings_dir
from tests.exchanges.test_coinbase import SYMBOLS
from tests.kafka_reader import TopicReader
from tests.recorded import ws_frames

SOURCE = "coinbase"
MATCH = '"type":"match"'
EVERY = 25  # the match frame at which a connection is dropped
MISSED = 1500  # frames made while the connector is away
DROPS = 2
READ_TIMEOUT_S = 150.0
SETTLE_S = 5.0


def recorded_trades(folder: Path) -> dict[tuple[str, str], int]:
    """(normalised symbol, trade id) -> the index of the recorded frame that carried it (match, last_match)."""
    trades = {}
    for index, raw in enumerate(ws_frames(folder)):
        message = orjson.loads(raw)
        if message.get("type") in ("match", "last_match"):
            trades[(message["product_id"].replace("-", "."), str(message["trade_id"]))] = index
    return trades


def replay_stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_replay/stats", timeout=5) as response:
        return json.loads(response.read())


def replay_with_drops(stack: LocalStack, folder: Path, every: int, match: str, missed: int) -> int:
    """Start ``runner.py replay`` of ``folder`` at its recorded pace, serving trade histories and dropping ``DROPS``
    connections; its port."""
    port = free_port()
    stack.start_runner("replay", "replay", "--recording", str(folder), "--port", str(port), "--speed", "recorded",
                       "--trade-history", "--fault", "disconnect", "--fault-every", str(every), "--fault-match", match,
                       "--fault-connections", str(DROPS), "--fault-skip", str(missed))
    stack.wait_port("replay", port)
    return port


@pytest.mark.timeout(360)
def test_trades_missed_in_drops_of_a_replayed_recording_are_backfilled_once(tmp_path: Path) -> None:
    found = recordings_dir()
    if found is None:
        pytest.skip("no recordings in ../shared/recordings")
    folder = found / SOURCE
    made = recorded_trades(folder)
    with LocalStack([SOURCE], workdir=tmp_path) as stack:
        with mock.patch.dict(os.environ, stack.env()):
            ensure_topics(Settings().kafka, [*NORMALISED_TOPICS, COVERAGE])
        reader = TopicReader(stack.broker.bootstrap_servers, stack.registry_url, [TRADES_L3, COVERAGE])
        try:
            port = replay_with_drops(stack, folder, EVERY, MATCH, MISSED)
            args = ["connector", "--source", SOURCE, "--ws-url", f"ws://127.0.0.1:{port}/",
                    "--rest-url", f"http://127.0.0.1:{port}"]
            for symbol in SYMBOLS:
                args += ["--symbol", symbol]
            stack.start_runner("connector", *args)

            def complete(records: list) -> bool:
                stack.check_alive("connector")
                trades = {(r.value["symbol"], r.value["trade_id"]) for r in records if r.topic == TRADES_L3}
                filled = sum(r.value["kind"] == "trades_backfilled" for r in records if r.topic == COVERAGE)
                return trades >= set(made) and filled >= len(SYMBOLS)

            reader.read_until(complete, READ_TIMEOUT_S)
            reader.read_until(lambda _: False, SETTLE_S)  # anything published twice arrives now
            stats = replay_stats(port)
            stack.check_alive("connector")
        finally:
            reader.close()

    trades = [r.value for r in reader.by_topic(TRADES_L3)]
    ids = Counter((t["symbol"], t["trade_id"]) for t in trades)
    duplicates = sum(n - 1 for n in ids.values())
    backfilled = {(t["symbol"], t["trade_id"]) for t in trades if t["origin"] == "backfill"}
    streamed = {(t["symbol"], t["trade_id"]) for t in trades if t["origin"] is None}
    drops = stats["disconnects"]
    missed = {trade for trade, index in made.items()
              if any(d["dropped_at"] <= index < d["resumes_at"] for d in drops)}
    before_first_drop = {trade for trade, index in made.items() if index < drops[0]["dropped_at"]}
    coverage = Counter(r.value["kind"] for r in reader.by_topic(COVERAGE))
    print(f"\nrecorded trades {len(made)}, published {len(trades)}: streamed {len(streamed)}, backfilled "
          f"{len(backfilled)}, duplicates {duplicates}; missed in the drops {len(missed)}")
    print(f"drops {drops}; history pages served {stats['history_pages']}; coverage {dict(coverage)}")

    assert len(drops) == DROPS and stats["connections_served"] == DROPS + 1
    assert duplicates == 0, "a trade was published twice"
    assert set(ids) == set(made), "every recorded trade, and nothing else"
    assert missed and missed <= backfilled, "the trades made while the connector was away came by backfill"
    assert not before_first_drop & backfilled, "trades streamed before the first drop are not marked backfill"
    # One down and up per product and drop; a drop that cuts a backfill short has the next one start from the
    # first outage, so at least one backfill per product.
    assert coverage["stream_down"] >= DROPS * len(SYMBOLS) and coverage["stream_up"] >= DROPS * len(SYMBOLS)
    assert len(SYMBOLS) <= coverage["trades_backfilled"] <= coverage["stream_up"]
