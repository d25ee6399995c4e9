"""The benchmark runs end to end and writes well-formed figures (its speed is never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from l3_atom.infra.processes import PROJECT_ROOT

SECTIONS = ("standardise, one core", "peers", "book engine", "distributed path", "distributed path, recordings",
            "latency at 1,000", "latency at 10,000", "connector", "runner.py local", "runner.py local latency at 1,000",
            "runner.py local latency at 10,000", "memory", "what metrics cost")
# Each runner.py local latency section: to each output, these figures (ms, and the runtime's CPU in %).
LOCAL_LATENCY_OUTPUTS = ("JSON line written", "websocket client receives")
LOCAL_LATENCY_FIGURES = {"p50": "ms", "p99": "ms", "max": "ms", "CPU of runner.py local": "%"}
# Section prefix -> {measurement: unit} of the figures measured for 1 and for 50 symbols.
PER_SYMBOLS = {
    "connector": {"{} symbol(s)": "frames/s", "simulator ceiling, {} symbol(s)": "frames/s"},
    "runner.py local": {"{} symbol(s)": "frames/s", "{} symbol(s), records written": "records/s",
                        "{} symbol(s), per CPU-second": "frames/CPU-s", "{} symbol(s), CPU per frame": "CPU-µs"},
    "memory": {"connector, {} symbol(s)": "MB", "processor, {} symbol(s)": "MB", "runner.py local, {} symbol(s)": "MB"},
}
SYMBOL_COUNTS = (1, 50)
# The frames/s figure that each of these sections compares with the simulator's ceiling in its note.
BESIDE_CEILING = ("connector", "runner.py local")
THROUGHPUT = "{} symbol(s)"
# On a fresh clone the peers section first installs cryptofeed (a Cython build: minutes).
SMOKE_TIMEOUT_S = 1200


@pytest.mark.timeout(SMOKE_TIMEOUT_S + 60)
def test_smoke_run_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--scale", "smoke", "--out", str(out)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("| section | measurement | median | min–max | unit | note |")
    report = json.loads(out.read_text())
    assert report["scale"] == "smoke"
    figures = report["figures"]
    for section in SECTIONS:
        assert any(f["section"].startswith(section) for f in figures), section
    for figure in figures:
        assert figure["samples"] and all(isinstance(s, float | int) for s in figure["samples"])
        assert figure["low"] <= figure["median"] <= figure["high"]
        # A CPU share may round to 0 in the smoke scale's one-second runs (CPU time counts in 10 ms ticks).
        assert figure["median"] > 0 or "skipped" in figure["note"] or (figure["unit"] == "%" and figure["median"] == 0), figure
    for rate in ("1,000", "10,000"):
        section = [f for f in figures if f["section"].startswith(f"runner.py local latency at {rate}")]
        assert {(f["name"], f["unit"]) for f in section} == {
            (f"{output}: {name}", unit) for output in LOCAL_LATENCY_OUTPUTS for name, unit in LOCAL_LATENCY_FIGURES.items()
        }
    for symbols in SYMBOL_COUNTS:
        for section, units in PER_SYMBOLS.items():
            for name, unit in units.items():
                found = [f for f in figures if f["section"].startswith(section) and f["name"] == name.format(symbols)]
                assert len(found) == 1 and found[0]["unit"] == unit, (section, name.format(symbols), found)
                if section in BESIDE_CEILING and name == THROUGHPUT:
                    assert "of the simulator's ceiling" in found[0]["note"], found[0]
