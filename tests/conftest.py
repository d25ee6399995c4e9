"""Shared test fixtures: where the recorded exchange traffic is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from l3_atom.config import METRICS_PORT_ENV, PROJECT_ROOT

RECORDINGS_ENV = "L3_ATOM_RECORDINGS"


def recordings_dir() -> Path | None:
    """``$L3_ATOM_RECORDINGS``, else ``../shared/recordings`` beside the project; None when absent."""
    candidate = Path(os.environ.get(RECORDINGS_ENV) or PROJECT_ROOT.parent / "shared" / "recordings")
    return candidate if candidate.is_dir() else None


@pytest.fixture
def recordings() -> Path:
    found = recordings_dir()
    if found is None:
        pytest.skip(f"no recorded traffic: set {RECORDINGS_ENV} or put it in ../shared/recordings")
    return found


# Every role a test starts takes a free metrics port unless the test names one: tests (and other
# stacks on this host) never clash on config.ini's fixed per-role defaults.
os.environ.setdefault(METRICS_PORT_ENV, "0")
