"""Playing by the venue's rules, with real processes: the Coinbase simulator says no, ``runner.py local`` obeys.

The simulator counts what it answered (``/_sim/stats`` ``limits``): requests
served, 429s, 418s, requests that came before a ``Retry-After`` had passed
(``early``) or during a ban, connections closed for sending too fast; and the
level-3 books it served per product.  The connector's limits are set through a
``[limits.coinbase]`` section in the configuration file, as a user would.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from l3_atom.sim.gate import BANNED
from tests.local.helpers import LocalRun, http_json

PROJECT_CONFIG = Path(__file__).resolve().parents[1] / "config.ini"
FLOW_RATE = "100"
SNAPSHOTS_TIMEOUT_S = 120.0


def products(count: int) -> list[str]:
    return [f"P{n:03d}-USD" for n in range(1, count + 1)]


def use_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, limits: dict[str, float]) -> None:
    """The project's config.ini plus ``[limits.coinbase]``, for every process the test starts."""
    path = tmp_path / "config.ini"
    section = "".join(f"{key} = {value}\n" for key, value in limits.items())
    path.write_text(PROJECT_CONFIG.read_text() + "\n[limits.coinbase]\n" + section)
    monkeypatch.setenv("L3_ATOM_CONFIG", str(path))


def start(run: LocalRun, ids: list[str], jsonl: Path, *sim_args: str) -> None:
    run.start_simulator("--rate", FLOW_RATE, "--products", ",".join(ids), *sim_args)
    symbols = [arg for pid in ids for arg in ("--symbol", pid.replace("-", "."))]
    run.start_local(
        "--source", "coinbase", *symbols, *run.endpoint_args(), "--channels", "full",
        "--feeds", "lob_l3", "--jsonl", str(jsonl),
    )


def sim(run: LocalRun) -> dict:
    run.check_alive("local")
    return http_json(f"{run.simulator_rest_url}/_sim/stats")


def wait_books(run: LocalRun, ids: list[str], times: int) -> dict:
    """Wait until every product's level-3 book was served ``times`` times; the simulator's stats then."""
    def done(stats: dict) -> bool:
        return all(stats["books_served"].get(pid, 0) >= times for pid in ids)

    deadline = time.monotonic() + SNAPSHOTS_TIMEOUT_S
    stats = sim(run)
    while not done(stats) and time.monotonic() < deadline:
        time.sleep(0.5)
        stats = sim(run)
    missing = [pid for pid in ids if stats["books_served"].get(pid, 0) < times]
    assert not missing, f"books not served {times}x within {SNAPSHOTS_TIMEOUT_S:.0f} s: {missing[:10]}; {stats['limits']}"
    return stats


def snapshotted_symbols(jsonl: Path) -> set[str]:
    """Symbols with level-3 snapshot records in the runtime's output (read after it stopped)."""
    found = set()
    with jsonl.open("rb") as lines:
        for line in lines:
            if b'"is_snapshot":true' in line:
                found.add(orjson.loads(line)["symbol"])
    return found


@pytest.mark.timeout(300)
def test_300_symbols_through_a_small_budget_a_reconnect_storm_and_paced_subscribes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulator's budget is the limiter's: every book arrives, twice (a storm of reconnects), with no 429."""
    ids = products(300)
    use_config(monkeypatch, tmp_path, {
        "rest_weight": 60, "rest_window_s": 1,
        "subscribes_per_window": 8, "subscribes_window_s": 1, "topics_per_message": 5,
        "streams_per_connection": 100, "connections_per_window": 2, "connections_window_s": 1,
    })
    jsonl = tmp_path / "records.jsonl"
    with LocalRun(tmp_path) as run:
        start(run, ids, jsonl, "--rest-limit", "60", "--rest-window", "1",
              "--subscribe-limit", "10", "--subscribe-window", "1")
        first = wait_books(run, ids, 1)
        assert first["connections_total"] == 3  # 300 symbols, 100 per connection
        assert http_json(f"{run.simulator_rest_url}/_sim/disconnect", {"missed": 0})["disconnected"] == 3
        stats = wait_books(run, ids, 2)
        run.stop("local")
    limits = stats["limits"]
    assert limits["throttled"] == 0 and limits["banned"] == 0 and limits["early"] == 0, limits
    assert limits["subscribe_closes"] == 0, limits
    assert stats["connections_total"] >= 6
    assert limits["served"] >= 2 * len(ids) + 1  # the product list and every book, twice
    assert snapshotted_symbols(jsonl) == {pid.replace("-", ".") for pid in ids}


@pytest.mark.timeout(300)
def test_429_and_418_from_a_budget_below_the_limiters_are_obeyed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limiter allows 100/s, the simulator 10/s: its 429s and its ban are waited out, every book still arrives."""
    ids = products(60)
    use_config(monkeypatch, tmp_path, {"rest_weight": 100, "rest_window_s": 1})
    jsonl = tmp_path / "records.jsonl"
    with LocalRun(tmp_path) as run:
        start(run, ids, jsonl, "--rest-limit", "10", "--rest-window", "1",
              "--ban-after", "3", "--ban-s", "2", "--ban-window", "30")
        stats = wait_books(run, ids, 1)
        run.stop("local")
        log = run.log("local")
    limits = stats["limits"]
    assert limits["throttled"] >= 1 and limits["bans"] >= 1, limits
    assert limits["early"] == 0, f"a request came before Retry-After had passed: {limits}"
    assert limits["during_ban"] == 0, f"a request came during a ban: {limits}"
    bans = [answer for answer in limits["answers"] if answer[1] == BANNED]
    assert log.count("REST banned (HTTP 418)") == len(bans)
    assert snapshotted_symbols(jsonl) == {pid.replace("-", ".") for pid in ids}


def test_the_connection_gate_refuses_handshakes_past_its_limit_with_retry_after() -> None:
    from l3_atom.sim.gate import ConnectionGate

    gate = ConnectionGate(limit=2, window_s=1.0)
    assert [gate.answer(now) for now in (0.0, 0.1, 0.5, 1.05, 1.08)] == [None, None, 1, None, 1]
    assert (gate.counts.connections, gate.counts.connections_refused) == (3, 2)
    assert ConnectionGate().answer(0.0) is None  # no limit


STORM_PRODUCTS = 12


def storm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limits: dict[str, float]) -> dict:
    """12 connections (one product each) against a simulator taking 2 handshakes a second: every book served
    once, every connection dropped at once, every book served again; the simulator's stats then."""
    ids = products(STORM_PRODUCTS)
    use_config(monkeypatch, tmp_path, {"streams_per_connection": 1, **limits})
    with LocalRun(tmp_path) as run:
        start(run, ids, tmp_path / "records.jsonl", "--connection-limit", "2", "--connection-window", "1")
        first = wait_books(run, ids, 1)
        assert first["connections_total"] == len(ids), first
        assert http_json(f"{run.simulator_rest_url}/_sim/disconnect", {"missed": 0})["disconnected"] == len(ids)
        stats = wait_books(run, ids, 2)
        run.stop("local")
    assert stats["limits"]["connections"] == stats["connections_total"] >= 2 * len(ids), stats
    return stats["limits"]


@pytest.mark.timeout(300)
def test_a_reconnect_storm_stays_within_the_venues_connection_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulator's connection limit equal to the declared one (2/s): starting and reconnecting all at once,
    no handshake is refused."""
    limits = storm(tmp_path, monkeypatch, {"connections_per_window": 2, "connections_window_s": 1})
    assert limits["connections_refused"] == 0, limits


@pytest.mark.timeout(300)
def test_a_connection_limit_below_the_declared_one_is_answered_and_obeyed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connector may open 8/s (Coinbase's declared rate), the simulator takes 2/s: refused handshakes (429)
    are retried with backoff and every connection still comes up, twice."""
    limits = storm(tmp_path, monkeypatch, {})
    assert limits["connections_refused"] >= 1, limits
