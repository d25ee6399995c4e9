"""Peers on the same traffic: cryptofeed's message handlers against our processor, per recording.

    .venv/bin/python -m bench.peers                     # 5 rounds over every recording
    .venv/bin/python -m bench.peers --rounds 1 --only kraken

cryptofeed is installed on first use into its own git-ignored venv (``bench/.peers/``):
2.4.1, and 2.4.0 for Coinbase (2.4.1's Coinbase speaks the Advanced Trade API, not the
Coinbase Pro ``ws-feed`` of the recording).  ``bench/cryptofeed_driver.py`` runs in that venv
and times cryptofeed's own handlers over the recording's frames with no-op counting
callbacks; we time ``RawMessageProcessor`` (standardise, verify books, encode Avro) over the
frames our connector captured from the same recording.  One process works at a time; each
round alternates which goes first; both sides count CPU seconds of their process, so the
ratio is cores per feed and a loaded machine's waiting is left out.  Ours runs with the garbage
collector set as the processor sets it (``l3_atom/gc_tuning.py``), cryptofeed as it ships.  Each recording prints
cryptofeed's msg/s, ours, and ours / cryptofeed per round (median, min–max); Kraken also
against cryptofeed's ``checksum_validation=True``, the same book proof we always make.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import pure
from l3_atom.gc_tuning import tune_for_streaming

PEERS_DIR = Path(__file__).resolve().parent / ".peers"
DRIVER = Path(__file__).resolve().parent / "cryptofeed_driver.py"
SECTION = "peers: cryptofeed, same frames, one core"
RATIO = "×"  # the unit of ours / cryptofeed
LATEST = "2.4.1"
# Recording folder -> (cryptofeed version, its exchange id).
PEERS = {
    "binance": (LATEST, "BINANCE"),
    "binance_futures": (LATEST, "BINANCE_FUTURES"),
    "bitfinex": (LATEST, "BITFINEX"),
    "coinbase": ("2.4.0", "COINBASE"),
    "deribit": (LATEST, "DERIBIT"),
    "gemini": (LATEST, "GEMINI"),
    "huobi": (LATEST, "HUOBI"),
    "kraken": (LATEST, "KRAKEN"),
}
# Recordings whose checksums cryptofeed can verify too (its ``checksum_validation``).
CHECKSUMMED = {"kraken"}
INSTALL_TIMEOUT_S = 900.0
DRIVER_TIMEOUT_S = 300.0
# The whole section in its own process (measure_apart): every recording, installs included.
PEERS_TIMEOUT_S = 3600.0
DEFAULT_ROUNDS = 5
# Each timed side handles the recording's frames as many times over (fresh state each pass) as
# makes our warm-up take this long at least: Deribit's 136 frames take about a millisecond, too
# short to time on a shared machine, HTX's 362 full-depth snapshots most of a second.
MIN_TIMED_S = 0.25


def venv_python(version: str) -> tuple[Path | None, str]:
    """cryptofeed ``version``'s venv Python, installed on first use; None and why when it cannot be."""
    venv = PEERS_DIR / f"cryptofeed-{version}"
    python = venv / "bin" / "python"
    ready = venv / ".installed"
    if ready.exists():
        return python, ""
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True,
                       timeout=INSTALL_TIMEOUT_S)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"cryptofeed=={version}"], check=True,
                       capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        lines = [line for line in str(detail).splitlines() if "WARNING" not in line]
        return None, f"cryptofeed {version} could not be installed: {(lines or [str(exc)])[-1]}"
    ready.touch()
    return python, ""


def cpu_rate(count: int, work: Callable[[], object]) -> float:
    """``count`` per CPU second of this process: on a shared machine, time spent waiting for a core
    is not counted (both sides are one thread; cryptofeed's driver times itself the same way)."""
    started = time.process_time()
    work()
    return count / (time.process_time() - started)


def cryptofeed_rate(python: Path, folder: Path, exchange: str, passes: int, checksums: bool) -> tuple[float, dict]:
    """cryptofeed's msg/s over the recording's frames (its timed passes) and its callback counts."""
    command = [str(python), str(DRIVER), str(folder), exchange, str(passes), *(["--checksums"] if checksums else [])]
    result = subprocess.run(command, capture_output=True, text=True, timeout=DRIVER_TIMEOUT_S, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"cryptofeed on {folder.name} failed: {result.stderr.strip().splitlines()[-1:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["messages"] / report["seconds"], report["callbacks"]


def measure(add: Callable, rounds: int, only: set[str] | None = None) -> None:
    """Per recording: cryptofeed msg/s, ours, and their ratio per round, rounds alternating who goes first."""
    enc = pure.encoders()
    tune_for_streaming()  # as ``runner.py processor`` runs (cryptofeed's driver is another process)
    measured = False
    for recorded in pure.recorded_traffic(only):
        version, exchange = PEERS[recorded.recording]
        python, why = venv_python(version)
        if python is None:
            add(SECTION, f"{recorded.recording}: ours / cryptofeed", RATIO, [0.0], f"skipped: {why}")
            continue
        measured = True
        frames = recorded.frames
        # As Kafka hands them to the processor (value, headers, key): made before the clock starts, as
        # cryptofeed's driver reads its frames before it times its handler.
        ready = pure.prepared(frames)

        def ours(passes: int, ready: pure.Prepared = ready, source: str = recorded.source) -> float:
            """msg/s of ``passes`` fresh processors, each over every captured frame."""
            def work() -> None:
                for _ in range(passes):
                    pure.process_prepared(source, ready, enc)
            return cpu_rate(len(ready) * passes, work)

        # One pass warms up (as the driver's untimed pass does) and sizes the timed ones.
        passes = max(1, math.ceil(MIN_TIMED_S * ours(1) / len(frames)))
        for checksums in (False, True) if recorded.recording in CHECKSUMMED else (False,):
            peer_name = f"cryptofeed {version}" + (" checksum_validation=True" if checksums else "")
            theirs, mine, callbacks = [], [], {}
            for round_ in range(rounds):
                for first in ((True, False) if round_ % 2 == 0 else (False, True)):
                    if first:
                        rate, callbacks = cryptofeed_rate(python, recorded.folder, exchange, passes, checksums)
                        theirs.append(rate)
                    else:
                        mine.append(ours(passes))
            ratios = [m / t for m, t in zip(mine, theirs, strict=True)]
            counted = ", ".join(f"{kind} {n}" for kind, n in sorted(callbacks.items()))
            add(SECTION, f"{recorded.recording}: {peer_name}", "msg/s", theirs,
                f"{len(frames)} frames ours, its callbacks: {counted}")
            add(SECTION, f"{recorded.recording}: ours" + (" (rounds beside checksum_validation)" if checksums else ""),
                "msg/s", mine, "standardise + verify every checksum + Avro encode")
            add(SECTION, f"{recorded.recording}: ours / {peer_name}", RATIO, ratios,
                f"{rounds} rounds, alternating who goes first; {passes} pass(es) over the frames each")
    if not measured and only is None:
        add(SECTION, "every recording", RATIO, [0.0], "skipped: no recordings")


def measure_apart(add: Callable, rounds: int, only: set[str] | frozenset[str] | None = None) -> None:
    """:func:`measure` in a fresh process of its own, as cryptofeed's side runs, its figures handed to ``add``.

    Inside ``bench.run``, after the sections before it, our side ran in a process holding their
    frames and records (hundreds of MB): Kraken measured ~0.7x of what the same code measures alone.
    """
    with tempfile.TemporaryDirectory() as workdir:
        out = Path(workdir) / "peers.json"
        command = [sys.executable, "-m", "bench.peers", "--rounds", str(rounds), "--out", str(out)]
        command += [f"--only={recording}" for recording in sorted(only or ())]
        result = subprocess.run(command, capture_output=True, text=True, timeout=PEERS_TIMEOUT_S, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"bench.peers failed: {result.stderr.strip().splitlines()[-1:]}")
        for figure in json.loads(out.read_text())["figures"]:
            add(figure["section"], figure["name"], figure["unit"], figure["samples"], figure["note"])


def main(argv: list[str] | None = None) -> int:
    from bench.run import Figure, render

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="rounds per recording (default: 5)")
    parser.add_argument("--only", action="append", help="a recording folder (repeatable; default: all)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    figures: list[Figure] = []

    def add(section: str, name: str, unit: str, samples: list[float], note: str = "") -> None:
        figures.append(Figure(section, name, unit, samples, note))
        print(f"  {name}: {figures[-1].median:,.2f} {unit}", file=sys.stderr, flush=True)

    started = time.monotonic()
    measure(add, args.rounds, set(args.only) if args.only else None)
    print(render(figures))
    if args.out:
        args.out.write_text(json.dumps({"figures": [vars(f) for f in figures]}, indent=2))
    print(f"\n{time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
