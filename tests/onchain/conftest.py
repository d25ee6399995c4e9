"""Fixtures of the on-chain tests: the npm harness (installed on first use) and a local node with contracts.

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
from tests.onchain.scenario import World

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


@pytest.fixture(scope="module")
def deployed(npm_harness: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalNode, World]]:
    """One node per test module, with the contracts deployed once."""
    with running_node(tmp_path_factory.mktemp("node") / "ganache.log") as started:
        yield started, World(started.http_url)


@pytest.fixture
def node(deployed: tuple[LocalNode, World]) -> Iterator[LocalNode]:
    """The module's node, put back to its just-deployed state after the test (evm_snapshot/evm_revert)."""
    started, _ = deployed
    snapshot = started.snapshot()
    yield started
    started.revert(snapshot)


@pytest.fixture
def world(deployed: tuple[LocalNode, World], node: LocalNode) -> World:
    return deployed[1]
