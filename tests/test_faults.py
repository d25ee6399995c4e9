"""The fault scenarios of ``bench.faults`` at the smoke scale: their invariants, never their timings.

Each runs against the real stack (Tansu, registry, simulator, connector, two
processor workers, an independent confluent-kafka reader) or, for malformed
input, the real connector keying and processor over the recordings.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from bench import faults
from bench.mutations import mutate
from tests.conftest import recordings_dir

# Fewer mutated frames than the smoke run: the invariants are the same, the suite is shared.
MALFORMED_FRAMES = 1000


def report(outcome: faults.Outcome) -> None:
    print(f"\n{faults.table([outcome])}")


@pytest.mark.timeout(400)
def test_worker_sigkill_loses_nothing_and_duplicates_within_a_commit_interval(tmp_path: Path) -> None:
    outcome = faults.worker_kills(faults.SCALES["smoke"], tmp_path)
    report(outcome)
    assert outcome.faults_injected == faults.SCALES["smoke"].worker_kills
    assert outcome.recoveries == outcome.faults_injected
    assert outcome.expected > 0
    # Even a match's change of a maker order older than the worker that took its book over.
    assert outcome.lost == 0, outcome.details["lost_examples"]
    assert not outcome.details["unexpected"], outcome.details["unexpected_examples"]
    assert outcome.details["closed_candles"] > 0
    assert not outcome.details["candles_differing_count"], outcome.details["candles_differing"]
    assert not outcome.details["candles_missing_count"], outcome.details["candles_missing"]
    assert outcome.details["duplicated_frames"] <= outcome.details["duplicate_frames_bound"]
    assert outcome.held, outcome.invariants


@pytest.mark.timeout(300)
def test_broker_stall_loses_nothing_and_memory_stays_bounded(tmp_path: Path) -> None:
    outcome = faults.broker_stalls(faults.SCALES["smoke"], tmp_path)
    report(outcome)
    assert outcome.faults_injected == faults.SCALES["smoke"].stalls == outcome.recoveries
    assert outcome.expected > 0 and outcome.lost == 0, outcome.details["lost_examples"]
    assert all(g < faults.RSS_GROWTH_BOUND_MB for g in outcome.details["rss_growth_mb"].values())
    assert all(v > 0 for v in outcome.details["rss_before_mb"].values()), "RSS was read from /proc"
    assert outcome.held, outcome.invariants


@pytest.mark.timeout(300)
def test_exchange_disconnects_reconnect_resync_and_lose_only_inside_gaps(tmp_path: Path) -> None:
    outcome = faults.disconnects(faults.SCALES["smoke"], tmp_path)
    report(outcome)
    assert outcome.faults_injected == faults.SCALES["smoke"].disconnects == outcome.recoveries
    assert outcome.details["messages_sent_to_nobody"] > 0, "the drops left gaps to check"
    assert outcome.lost_inside_gaps == outcome.lost == outcome.details["messages_sent_to_nobody"]
    assert outcome.faults_detected >= outcome.faults_injected, "a book resync after every drop"
    assert outcome.duplicated == 0
    assert outcome.held, outcome.invariants


@pytest.mark.timeout(600)
def test_malformed_frames_never_crash_and_leave_the_records_around_them_intact(tmp_path: Path) -> None:
    if recordings_dir() is None:
        pytest.skip("no recordings here (../shared/recordings)")
    scale = dataclasses.replace(faults.SCALES["smoke"], malformed_frames=MALFORMED_FRAMES)
    outcome = faults.malformed_input(scale, tmp_path)
    report(outcome)
    assert outcome.details["crash_count"] == 0, outcome.details["crashes"] + outcome.details["key_crashes"]
    per_source = outcome.details["per_source"]
    assert len(per_source) >= 8, sorted(per_source)
    for source, figures in per_source.items():
        classified = sum(figures["mutated_outcomes"].values())
        assert classified <= MALFORMED_FRAMES, source
        assert figures["mutated_outcomes"].get("dead letter", 0) > 0, source
    assert outcome.lost == 0
    # Emptied change lists (Coinbase l2update, Kraken book) publish nothing: counted skips, none uncounted.
    assert outcome.details["uncounted"] == 0
    assert outcome.details["skips_nothing_in_it"] > 0
    assert outcome.held, outcome.invariants


def test_mutations_are_seeded_and_change_the_frame() -> None:
    frame = b'{"type":"match","price":"10.5","size":"1","sequence":7,"list":[1,2,3]}'
    first = [mutate(frame, random.Random(3)) for _ in range(50)]
    assert first == [mutate(frame, random.Random(3)) for _ in range(50)]
    rng = random.Random(5)
    mutated = [mutate(frame, rng) for _ in range(200)]
    assert sum(bad != frame for bad, _ in mutated) > 190
    kinds = {what.split(" ")[0] for _, what in mutated}
    assert {"deleted", "retyped", "list", "bytes", "cut"} <= kinds, kinds
