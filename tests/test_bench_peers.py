"""The peers section runs: cryptofeed's handlers and our processor over one recording, figures well-formed.

Its speed is never asserted (the machine is shared); only that every figure the
section promises is there, positive, and its ratio is ours over cryptofeed's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from l3_atom.infra.processes import PROJECT_ROOT

# First use installs cryptofeed (a Cython build) into bench/.peers/.
PEERS_TIMEOUT_S = 1500
DEFAULT, CHECKING = "cryptofeed 2.4.1", "cryptofeed 2.4.1 checksum_validation=True"
# Each cryptofeed configuration: its figure, ours in the same rounds, and the ratio.
TRIPLES = {
    DEFAULT: ("kraken: ours", "kraken: ours / cryptofeed 2.4.1"),
    CHECKING: ("kraken: ours (rounds beside checksum_validation)", f"kraken: ours / {CHECKING}"),
}


@pytest.mark.timeout(PEERS_TIMEOUT_S + 60)
def test_peers_section_runs_on_one_recording(tmp_path: Path, recordings: Path) -> None:
    out = tmp_path / "peers.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.peers", "--rounds", "2", "--only", "kraken", "--out", str(out)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=PEERS_TIMEOUT_S, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = {f["name"]: f for f in json.loads(out.read_text())["figures"]}
    skipped = [f["note"] for f in figures.values() if f["note"].startswith("skipped")]
    if skipped:
        pytest.skip(skipped[0])
    assert set(figures) == {name for peer, pair in TRIPLES.items() for name in (f"kraken: {peer}", *pair)}
    for figure in figures.values():
        assert len(figure["samples"]) == 2 and all(s > 0 for s in figure["samples"]), figure
        assert figure["low"] <= figure["median"] <= figure["high"]
    for peer, (ours, ratio) in TRIPLES.items():
        theirs = figures[f"kraken: {peer}"]
        expected = [m / t for m, t in zip(figures[ours]["samples"], theirs["samples"], strict=True)]
        assert figures[ratio]["samples"] == pytest.approx(expected)
        assert "l2_book 4279" in theirs["note"], "cryptofeed handled every book message"
    assert result.stdout.startswith("| section | measurement |")
