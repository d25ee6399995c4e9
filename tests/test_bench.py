"""The benchmark runs end to end and writes well-formed figures (its speed is never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from l3_atom.infra.processes import PROJECT_ROOT

SECTIONS = ("standardise, one core", "book engine", "distributed path", "latency at 1,000", "latency at 10,000",
            "connector", "memory")


@pytest.mark.timeout(600)
def test_smoke_run_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--scale", "smoke", "--out", str(out)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=540, check=False,
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
        assert figure["median"] > 0 or "skipped" in figure["note"], figure
