"""``runner.py local --metrics-port``: the connector's and processor's metric names, the bus, ``/ready``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from l3_atom.infra.processes import LOOPBACK, free_port
from tests.local.helpers import LocalRun
from tests.local.helpers import http_get as get

WAIT_S = 60.0
POLL_S = 0.5


def samples(url: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, parsed by prometheus-client's own parser."""
    status, body = get(f"{url}/metrics")
    assert status == 200, body
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


@pytest.mark.timeout(180)
def test_local_mode_serves_metrics_and_readiness(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    with LocalRun(tmp_path) as run:
        run.start_simulator("--rate", "200", "--products", "BTC-USD", "--fault", "malformed_json", "--fault-every", "50")
        run.start_local("--source", "coinbase", "--symbol", "BTC.USD", *run.endpoint_args(), "--jsonl", "/dev/null",
                        "--metrics-port", str(port))
        deadline = time.monotonic() + WAIT_S
        while True:
            found = samples(url)
            frames = found.get(("l3_atom_connector_frames_total", (("connection", "coinbase.0"), ("source", "coinbase"))))
            records = found.get(("l3_atom_processor_records_total", (("source", "coinbase"), ("topic", "lob_l3"))))
            dead = sum(value for (name, _), value in found.items() if name == "l3_atom_processor_dead_letters_total")
            if frames and records and dead:
                break
            assert time.monotonic() < deadline, f"no frames, records and dead letters yet: {found}"
            time.sleep(POLL_S)
        assert found[("l3_atom_local_bus_capacity_frames", (("source", "coinbase"),))] > 0
        assert ("l3_atom_local_bus_frames", (("source", "coinbase"),)) in found
        assert found[("l3_atom_connector_connection_up", (("connection", "coinbase.0"), ("source", "coinbase")))] == 1
        assert get(f"{url}/ready")[0] == 200
        assert get(f"{url}/health")[0] == 200

        run.stop("simulator")
        deadline = time.monotonic() + WAIT_S
        while (answer := get(f"{url}/ready"))[0] != 503:
            assert time.monotonic() < deadline, f"/ready still {answer}"
            time.sleep(POLL_S)
        assert "coinbase.0: not connected and subscribed" in answer[1]
        assert samples(url)[("l3_atom_ready", (("role", "local"),))] == 0
