"""The broker SIGKILLed and started again (Tansu in memory mode keeps nothing): what each role does.

The scenario runs the real stack (``bench.fault_broker_restart``); the
broker link that notices the death is tested on plain sockets.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from unittest import mock

import pytest

from bench import faults
from l3_atom.config import Settings
from l3_atom.infra.processes import LOOPBACK
from l3_atom.topic_watch import EXIT_BROKER_LOST, BrokerLink

QUIET_S = 0.3
CLOSE_WAIT_S = 10.0


@pytest.fixture
def listener() -> socket.socket:
    server = socket.create_server((LOOPBACK, 0))
    yield server
    server.close()


def address(server: socket.socket) -> str:
    host, port = server.getsockname()[:2]
    return f"{host}:{port}"


def test_a_quiet_or_stalled_broker_is_not_taken_for_dead(listener: socket.socket) -> None:
    link = BrokerLink(address(listener))
    accepted, _ = listener.accept()
    try:
        assert link.died(QUIET_S) is False
    finally:
        accepted.close()


def test_a_closed_connection_with_the_broker_still_listening_is_not_a_death(listener: socket.socket) -> None:
    link = BrokerLink(address(listener))
    listener.accept()[0].close()
    assert link.died(CLOSE_WAIT_S) is False, "the broker answered a new connection"


def test_a_closed_connection_and_a_refused_one_is_a_death(listener: socket.socket) -> None:
    link = BrokerLink(address(listener))
    accepted, _ = listener.accept()
    listener.close()
    accepted.close()
    assert link.died(CLOSE_WAIT_S) is True


def test_only_the_local_profile_says_its_broker_keeps_data_in_memory_only() -> None:
    broker = {"KAFKA_BOOTSTRAP_SERVERS": f"{LOOPBACK}:9092"}
    with mock.patch.dict(os.environ, {**broker, "L3_ATOM_PROFILE": "local"}):
        assert Settings().kafka.broker_memory_only is True
    with mock.patch.dict(os.environ, {**broker, "L3_ATOM_PROFILE": "kafka"}):
        assert Settings().kafka.broker_memory_only is False


@pytest.mark.timeout(400)
def test_broker_restart_roles_exit_with_a_reason_and_a_restart_delivers_everything_after(tmp_path: Path) -> None:
    outcome = faults.broker_restarts(faults.SCALES["smoke"], tmp_path)
    print(f"\n{faults.table([outcome])}")
    (cycle,) = outcome.details["cycles"]
    assert cycle["exit_codes"] == {"connector": EXIT_BROKER_LOST, "processor": EXIT_BROKER_LOST}
    assert all(cycle["lines"].values()), cycle["lines"]
    assert cycle["registry_alive"]
    assert outcome.recoveries == outcome.faults_injected == 1
    assert outcome.expected > 0 and outcome.delivered == outcome.expected and outcome.duplicated == 0
    assert outcome.lost == outcome.lost_inside_gaps, "what nobody heard lies inside a resynced gap"
    assert outcome.held, outcome.invariants
