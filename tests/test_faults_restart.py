"""``bench.faults``' connector-restart and slow-reader scenarios at the smoke scale: their invariants, never timings.

Real processes throughout: Tansu, the schema registry, the Coinbase simulator, connector(s),
a processor worker and an independent confluent-kafka reader; for the slow websocket client,
the simulator and ``runner.py local --serve`` with two real websocket clients.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import faults
from bench.fault_connector_kill import connector_kills
from bench.fault_slow_readers import CLIENT_QUEUE, MEMORY_BOUND_MB, lagging_processor, slow_client

SMOKE = faults.SCALES["smoke"]


def report(outcome: faults.Outcome) -> None:
    print(f"\n{faults.table([outcome])}\n{outcome.details}")


@pytest.mark.timeout(400)
def test_a_killed_connector_misses_only_its_reported_downtime(tmp_path: Path) -> None:
    outcome = connector_kills(SMOKE, tmp_path)
    report(outcome)
    assert outcome.faults_injected == SMOKE.worker_kills == outcome.recoveries
    # Each restart published its outage for every symbol, starting at or before the kill, ending after the restart.
    assert outcome.faults_detected == outcome.faults_injected, outcome.details["outages_reported"]
    assert outcome.details["restart_logs_resuming"] == outcome.faults_injected
    assert outcome.expected > 0 and outcome.details["trades_made"] > 0
    assert outcome.details["lost_by_kind"]["trades"] == 0, outcome.details["lost_examples"]
    assert outcome.lost == outcome.lost_inside_gaps, outcome.details["lost_examples"]
    assert outcome.duplicated == 0, outcome.details["duplicated_by_kind"]
    assert outcome.held, outcome.invariants


@pytest.mark.timeout(300)
def test_a_websocket_client_that_reads_nothing_costs_the_other_client_nothing(tmp_path: Path) -> None:
    outcome = slow_client(SMOKE, tmp_path)
    report(outcome)
    normal, slow = outcome.details["normal_client"], outcome.details["slow_client"]
    assert normal["records"] > 0 and normal["lost"] == 0 and normal["told_dropped"] == 0
    assert outcome.duplicated == 0
    assert outcome.details["file_records_lost_against_the_journal"] == 0
    assert outcome.details["server_dropped"] > 0, "the slow client's queue overflowed"
    assert slow["told_dropped"] == outcome.details["server_dropped"] or slow["closed"], slow
    assert outcome.details["largest_client_queue"] <= CLIENT_QUEUE + 1
    assert outcome.details["rss_mb"]["start"] > 0 and outcome.details["rss_mb"]["growth"] < MEMORY_BOUND_MB
    assert outcome.held, outcome.invariants


@pytest.mark.timeout(400)
def test_a_processor_that_falls_behind_catches_up_without_loss(tmp_path: Path) -> None:
    outcome = lagging_processor(SMOKE, tmp_path)
    report(outcome)
    assert outcome.faults_injected == 1 == outcome.recoveries
    assert outcome.details["backlog_messages_at_resume"] > 0, "the worker fell behind"
    assert all(lag <= 0 for lag in outcome.details["final_lag"].values())
    assert outcome.details["final_lag_reported_by_the_worker"] == 0
    assert outcome.expected > 0 and outcome.lost == 0, outcome.details["lost_examples"]
    assert outcome.duplicated == 0
    assert all(v > 0 for v in outcome.details["rss_before_mb"].values()), "RSS was read from /proc"
    assert outcome.held, outcome.invariants
