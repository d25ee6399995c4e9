"""The command line as a user meets it: `runner.py up`, clear errors, `consume --json`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from l3_atom.infra.local_pipeline import LocalPipeline
from l3_atom.infra.processes import runner_command, stop_process

UP_TIMEOUT_S = 90.0


def children_of(pid: int) -> set[int]:
    """Live processes whose parent is ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 of /proc/PID/stat is the parent pid; the command name before it may contain spaces.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(  # the tests read the return code themselves
        runner_command(*args), env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout,
        check=False,
    )


@pytest.mark.timeout(180)
def test_up_prints_records_and_ctrl_c_leaves_no_process_behind() -> None:
    up = subprocess.Popen(
        runner_command("up", "--rate", "200"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        started = time.monotonic()
        first = up.stdout.readline()
        assert first.startswith("trades_l3 coinbase_"), first
        assert "price=" in first and "taker_side=" in first
        print(f"\nrunner.py up: first record after {time.monotonic() - started:.1f} s")
        started_processes = children_of(up.pid)
        # broker, registry, simulator, processor, connector, gateway
        assert len(started_processes) == 6, started_processes
        os.killpg(up.pid, signal.SIGINT)
        # Read its output to the end while it stops, as a terminal would: records it still prints into
        # a full pipe would block it (and its exit) for good.
        _, stderr = up.communicate(timeout=60)
        assert up.returncode == 0
        assert "pipeline up in" in stderr and "stopping..." in stderr
        assert "live view http://127.0.0.1:" in stderr, "up prints the gateway's address"
        # Each process's metrics address, printed (free ports: two "up"s on one host never clash).
        assert re.search(r"connector: http://127\.0\.0\.1:\d+/metrics", stderr), stderr
        assert re.search(r"processor0: http://127\.0\.0\.1:\d+/metrics", stderr), stderr
    finally:
        stop_process(up)
    assert [pid for pid in started_processes if alive(pid)] == [], "runner.py up left processes behind"


def test_missing_bootstrap_variable_is_a_clear_error(tmp_path: Path) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "", "L3_ATOM_CONFIG": ""}
    result = run("consume", "--topic", "trades_l3", env=env)
    assert result.returncode == 2
    assert "error: KAFKA_BOOTSTRAP_SERVERS is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_symbol_is_a_clear_error() -> None:
    result = run("connector", "--source", "coinbase", "--symbol", "BTC-USD", env={"KAFKA_BOOTSTRAP_SERVERS": "x:1"})
    assert result.returncode == 2
    assert "'BTC-USD' is not a normalised symbol" in result.stderr


def test_unknown_source_names_near_matches() -> None:
    result = run("connector", "--source", "coinbas", "--symbol", "BTC.USD", env={"KAFKA_BOOTSTRAP_SERVERS": "x:1"})
    assert result.returncode == 2
    assert "unknown source 'coinbas' (did you mean: coinbase" in result.stderr


@pytest.mark.timeout(180)
def test_unknown_symbol_and_consume_json_against_the_local_pipeline(tmp_path: Path) -> None:
    with LocalPipeline(("BTC.USD",), rate=200, workdir=tmp_path) as pipeline:
        env = pipeline.env()
        result = run(
            "connector", "--source", "coinbase", "--symbol", "BTC.USDX", "--ws-url", pipeline.simulator_ws_url,
            "--rest-url", pipeline.simulator_rest_url, env=env,
        )
        assert result.returncode == 2
        assert "coinbase does not list BTC.USDX (did you mean: BTC.USD" in result.stderr

        result = run("consume", "--topic", "lob_l3", "--from-beginning", "--limit", "5", "--json", env=env)
        assert result.returncode == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(lines) == 5
        for line in lines:
            assert line["topic"] == "lob_l3" and line["key"] == "coinbase_BTC.USD"
            assert line["event_type"] in ("open", "change", "done")
            # Decimals print as exact strings, never floats.
            assert isinstance(line["size"], str)
