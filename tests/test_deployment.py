"""docker-compose.yml stays valid and runs what the tests run (no Docker engine here)."""

from __future__ import annotations

import re

import yaml

from l3_atom.config import PROJECT_ROOT
from l3_atom.infra.local_pipeline import DEFAULT_SYMBOLS, connector_args, gateway_args, processor_args
from runner import build_parser

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
ENV_EXAMPLE = PROJECT_ROOT / "keys" / ".env.example"


def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_kafka_is_three_kraft_brokers_with_a_schema_registry() -> None:
    found = services()
    brokers = {name: s for name, s in found.items() if s.get("image", "").startswith("apache/kafka")}
    assert len(brokers) == 3
    node_ids = sorted(s["environment"]["KAFKA_NODE_ID"] for s in brokers.values())
    assert node_ids == [1, 2, 3]
    for service in brokers.values():
        assert service["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert "KAFKA_ZOOKEEPER_CONNECT" not in service["environment"]
    assert found["schema-registry"]["image"].startswith("confluentinc/cp-schema-registry")


def test_every_l3_atom_command_parses_with_the_cli() -> None:
    parser = build_parser()
    commands = {name: s["command"] for name, s in services().items() if s.get("build")}
    assert commands, "compose runs at least one L3 Atom service"
    for name, command in commands.items():
        assert isinstance(command, list), f"{name}: command must be an exec-form list"
        parser.parse_args(command)


def test_commands_are_the_ones_the_tests_run() -> None:
    found = services()
    assert found["connector-coinbase"]["command"] == connector_args(DEFAULT_SYMBOLS)
    assert found["processor"]["command"] == processor_args()
    assert found["gateway"]["command"] == gateway_args()


def test_environment_variables_are_documented() -> None:
    documented = set(re.findall(r"^([A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))
    for name, service in services().items():
        if service.get("build"):
            assert set(service["environment"]) <= documented, name


def test_dockerfile_runs_the_cli() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "runner.py"]' in dockerfile
    assert "pip install -r requirements.txt" in dockerfile
