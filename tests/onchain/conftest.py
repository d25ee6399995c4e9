"""Fixtures of the on-chain tests: the npm harness (installed on first use), compiled contracts, a local node.

``npm ci --ignore-scripts`` installs the pinned ganache and solc from
``package-lock.json`` into ``tests/onchain/node_modules`` when it is missing
(the npm registry is the only network these tests use).  Every node a test
starts is stopped when the test ends, whatever happens.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.onchain.node import GANACHE, ONCHAIN, LocalNode, running_node
from tests.onchain.scenario import World, compiled_contracts

collect_ignore = ["node_modules"]
NPM_TIMEOUT_S = 300
INSTALLED_MARK = ONCHAIN / "node_modules" / ".package-lock.json"


@pytest.fixture(scope="session")
def npm_harness() -> Path:
    """ganache and solc from npm, installed exactly as locked."""
    if not INSTALLED_MARK.exists() or not GANACHE.exists():
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            pytest.skip("the on-chain tests need Node.js and npm")
        subprocess.run(
            [npm, "ci", "--prefix", str(ONCHAIN), "--ignore-scripts", "--no-audit", "--no-fund"],
            check=True,
            timeout=NPM_TIMEOUT_S,
            capture_output=True,
        )
    return ONCHAIN / "node_modules"


@pytest.fixture(scope="session")
def contracts(npm_harness: Path) -> dict:
    return compiled_contracts()


@pytest.fixture
def node(npm_harness: Path, tmp_path: Path) -> Iterator[LocalNode]:
    with running_node(tmp_path / "ganache.log") as started:
        yield started


@pytest.fixture
def world(node: LocalNode, contracts: dict) -> World:
    return World(node.http_url)
