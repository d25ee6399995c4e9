"""Sequence continuity and resync requests (pure): every verdict, and requests that neither storm nor stop."""

from __future__ import annotations

from l3_atom.books.integrity import Continuity, Reason, Verdict
from l3_atom.stream_processing.book_checks import BookChecks
from l3_atom.topics import BOOK_RESYNC

RETRY = 1_000_000
T0 = 1_700_000_000_000_000


def synced(sequence: int = 100) -> Continuity:
    continuity = Continuity(RETRY)
    continuity.snapshot("BTC.USD", sequence, T0)
    return continuity


def test_updates_after_a_snapshot_continue_it() -> None:
    c = synced()
    assert c.update("BTC.USD", 101, 100, T0) is Verdict.NEXT
    assert c.update("BTC.USD", 105, 101, T0) is Verdict.NEXT
    assert c.in_sync("BTC.USD")
    assert c.resync_due("BTC.USD", T0 + 10 * RETRY) is None


def test_an_update_overlapping_the_snapshot_continues_it() -> None:
    # Binance: the first diff after a snapshot has U <= lastUpdateId + 1 <= u.
    c = synced()
    assert c.update("BTC.USD", 110, 95, T0) is Verdict.NEXT
    assert c.in_sync("BTC.USD")


def test_updates_inside_the_snapshot_are_stale_but_not_a_fault() -> None:
    c = synced()
    assert c.update("BTC.USD", 99, 98, T0) is Verdict.STALE
    assert c.in_sync("BTC.USD")
    assert c.counts["out_of_order"] == 0


def test_a_repeat_is_a_duplicate() -> None:
    c = synced()
    c.update("BTC.USD", 101, 100, T0)
    assert c.update("BTC.USD", 101, 100, T0) is Verdict.DUPLICATE
    assert c.counts["duplicates"] == 1
    assert c.in_sync("BTC.USD")


def test_a_gap_loses_the_book_and_asks_at_once_then_every_retry() -> None:
    c = synced()
    assert c.update("BTC.USD", 105, 103, T0 + 5) is Verdict.GAP
    assert not c.in_sync("BTC.USD")
    assert c.resync_due("BTC.USD", T0 + 5) == (Reason.GAP, "expected an update after 100, got 103->105")
    assert c.resync_due("BTC.USD", T0 + 6) is None
    # No snapshot came: ask again, saying so.
    assert c.resync_due("BTC.USD", T0 + 5 + RETRY) == (Reason.TIMEOUT, "expected an update after 100, got 103->105")
    c.snapshot("BTC.USD", 200, T0 + 2 * RETRY)
    assert c.in_sync("BTC.USD")
    assert c.resync_due("BTC.USD", T0 + 10 * RETRY) is None
    assert c.counts["gaps"] == 1 and c.counts["resyncs_requested"] == 2 and c.counts["snapshots"] == 2


def test_an_older_update_after_the_snapshot_is_out_of_order() -> None:
    c = synced()
    c.update("BTC.USD", 103, None, T0)
    assert c.update("BTC.USD", 102, None, T0) is Verdict.STALE
    assert c.counts["out_of_order"] == 1
    assert c.resync_due("BTC.USD", T0)[0] is Reason.OUT_OF_ORDER


def test_without_prev_sequence_only_order_is_checked() -> None:
    c = synced()
    assert c.update("BTC.USD", 500, None, T0) is Verdict.NEXT
    assert c.in_sync("BTC.USD")


def test_updates_with_no_snapshot_ask_after_one_wait() -> None:
    c = Continuity(RETRY)
    assert c.update("ETH.USD", 7, 6, T0) is Verdict.NEXT
    assert not c.in_sync("ETH.USD")
    # The connector's own snapshot gets one retry interval to arrive first.
    assert c.resync_due("ETH.USD", T0 + RETRY - 1) is None
    assert c.resync_due("ETH.USD", T0 + RETRY) == (Reason.NO_SNAPSHOT, "updates before any snapshot")


def test_a_checksum_mismatch_asks_at_once() -> None:
    c = synced()
    c.mismatch("BTC.USD", "expected 1, computed 2", T0)
    assert c.resync_due("BTC.USD", T0) == (Reason.CHECKSUM, "expected 1, computed 2")
    assert c.counts["checksum_mismatches"] == 1


def test_book_checks_turn_a_due_request_into_a_book_resync_output() -> None:
    checks = BookChecks("coinbase", Continuity(RETRY))
    checks.snapshot("BTC.USD", 10, T0)
    assert checks.requests("BTC.USD", T0) == []
    assert checks.update("BTC.USD", 12, 11, T0 + 1) is Verdict.GAP
    [output] = checks.requests("BTC.USD", T0 + 1)
    assert output.topic == BOOK_RESYNC
    assert output.key == "coinbase_BTC.USD"
    assert output.record == {
        "exchange": "coinbase", "symbol": "BTC.USD", "reason": "gap",
        "detail": "expected an update after 10, got 11->12", "atom_timestamp": T0 + 1,
    }
    assert checks.requests("BTC.USD", T0 + 2) == []


def test_a_restarted_count_goes_on_from_the_new_number() -> None:
    c = synced(500)
    c.renumber("BTC.USD", 3, T0)
    assert c.update("BTC.USD", 4, 3, T0) is Verdict.NEXT
    assert c.in_sync("BTC.USD")
