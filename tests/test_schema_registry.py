"""Tests of the local Schema Registry.

First the pure parts (Avro compatibility rules, registry state) without a
broker; then the real registry on a real Tansu broker, driven by Confluent's
own client, serializer and deserializer, including a restart.
"""

from __future__ import annotations

import asyncio
import json
import sys
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from l3_atom.infra.broker import LocalBroker
from l3_atom.infra.processes import LOOPBACK, free_port, start_process, stop_process, wait_until
from l3_atom.infra.schema_registry import (
    CONTENT_TYPE,
    AvroSchema,
    LogRecord,
    RegistryError,
    RegistryState,
    SchemaRegistryServer,
    compatibility_problems,
    parse_version,
    resolution_problems,
)

pytestmark = pytest.mark.timeout(120)

READY_TIMEOUT_S = 30.0
WIRE_HEADER_BYTES = 5
CONCURRENT_REGISTRATIONS = 8
DECIMAL = {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 18}
PRICE = {"name": "price", "type": DECIMAL}
SIZE = {"name": "size", "type": DECIMAL}
SIZE_WITH_DEFAULT = {"name": "size", "type": ["null", DECIMAL], "default": None}
SIDE = {"type": "enum", "name": "Side", "symbols": ["buy", "sell"]}


def record(*fields: dict, name: str = "Trade", **extra: object) -> dict:
    return {"type": "record", "name": name, "namespace": "l3_atom", "fields": list(fields), **extra}


def field(name: str, type_: object, **extra: object) -> dict:
    return {"name": name, "type": type_, **extra}


def avro(schema: object) -> AvroSchema:
    return AvroSchema.parse(json.dumps(schema))


def nested(*inner_fields: dict) -> dict:
    return record(field("venue", record(*inner_fields, name="Venue")))


LINKED = record(field("value", "int"), field("next", ["null", "Node"]), name="Node")
LINKED_WITH_LABEL = record(field("value", "int"), field("label", "string"), field("next", ["null", "Node"]), name="Node")

# (writer, reader, can the reader read what the writer wrote?)
RESOLUTION_CASES = [
    pytest.param(record(PRICE), record(PRICE, SIZE_WITH_DEFAULT), True, id="field added with default"),
    pytest.param(record(PRICE), record(PRICE, SIZE), False, id="field added without default"),
    pytest.param(record(PRICE, SIZE), record(PRICE), True, id="field removed"),
    pytest.param(record(field("n", "int")), record(field("n", "long")), True, id="int to long"),
    pytest.param(record(field("n", "int")), record(field("n", "double")), True, id="int to double"),
    pytest.param(record(field("n", "long")), record(field("n", "float")), True, id="long to float"),
    pytest.param(record(field("n", "float")), record(field("n", "double")), True, id="float to double"),
    pytest.param(record(field("n", "string")), record(field("n", "bytes")), True, id="string to bytes"),
    pytest.param(record(field("n", "bytes")), record(field("n", "string")), True, id="bytes to string"),
    pytest.param(record(field("n", "long")), record(field("n", "int")), False, id="long to int"),
    pytest.param(record(field("n", "double")), record(field("n", "float")), False, id="double to float"),
    pytest.param(record(field("n", "int")), record(field("n", "string")), False, id="int to string"),
    pytest.param(record(field("n", "int")), record(field("n", ["null", "int"])), True, id="union widened"),
    pytest.param(record(field("n", ["null", "int"])), record(field("n", ["null", "int", "string"])), True,
                 id="union branch added"),
    pytest.param(record(field("n", ["null", "int"])), record(field("n", ["null", "long"])), True,
                 id="union branch promoted"),
    pytest.param(record(field("n", ["null", "int"])), record(field("n", "int")), False, id="union narrowed"),
    pytest.param(record(field("s", SIDE)), record(field("s", {**SIDE, "symbols": ["buy", "sell", "unknown"]})),
                 True, id="enum symbol added"),
    pytest.param(record(field("s", SIDE)), record(field("s", {**SIDE, "symbols": ["buy"]})), False,
                 id="enum symbol removed"),
    pytest.param(record(field("s", SIDE)), record(field("s", {**SIDE, "symbols": ["buy"], "default": "buy"})),
                 True, id="enum symbol removed with default"),
    pytest.param(nested(PRICE), nested(PRICE, SIZE_WITH_DEFAULT), True, id="nested field added with default"),
    pytest.param(nested(PRICE), nested(PRICE, SIZE), False, id="nested field added without default"),
    pytest.param(record(PRICE), record(PRICE, name="Fill"), False, id="record renamed"),
    pytest.param(record(PRICE), record(PRICE, name="Fill", aliases=["Trade"]), True, id="record renamed with alias"),
    pytest.param(record(PRICE), record(field("px", DECIMAL, aliases=["price"])), True, id="field renamed with alias"),
    pytest.param(record(PRICE), record(field("price", {**DECIMAL, "scale": 8})), False, id="decimal scale changed"),
    pytest.param(record(field("price", {**DECIMAL, "precision": 20})), record(PRICE), True,
                 id="decimal precision widened"),
    pytest.param(record(field("f", {"type": "fixed", "name": "F", "size": 4})),
                 record(field("f", {"type": "fixed", "name": "F", "size": 8})), False, id="fixed size changed"),
    pytest.param(record(field("a", {"type": "array", "items": "int"})),
                 record(field("a", {"type": "array", "items": "long"})), True, id="array items promoted"),
    pytest.param(record(field("m", {"type": "map", "values": "long"})),
                 record(field("m", {"type": "map", "values": "int"})), False, id="map values narrowed"),
    pytest.param(LINKED, LINKED, True, id="recursive record unchanged"),
    pytest.param(LINKED, LINKED_WITH_LABEL, False, id="recursive record field added without default"),
]


@pytest.mark.parametrize(("writer", "reader", "compatible"), RESOLUTION_CASES)
def test_resolution_rules(writer: dict, reader: dict, compatible: bool) -> None:
    assert (resolution_problems(reader=avro(reader), writer=avro(writer)) == []) is compatible


def test_problems_name_the_nested_path() -> None:
    problems = resolution_problems(reader=avro(nested(PRICE, SIZE)), writer=avro(nested(PRICE)))
    assert problems == ["/venue/size: reader field has no default and is missing from the writer"]


def test_compatibility_levels_choose_direction_and_history() -> None:
    only_price = avro(record(PRICE))
    size_optional = avro(record(PRICE, SIZE_WITH_DEFAULT))
    size_required = avro(record(PRICE, SIZE))
    assert compatibility_problems("NONE", size_required, [only_price]) == []
    assert compatibility_problems("BACKWARD", size_required, [only_price])
    assert compatibility_problems("FORWARD", size_required, [only_price]) == []
    assert compatibility_problems("FORWARD", only_price, [size_required])
    assert compatibility_problems("FULL", size_required, [only_price])
    assert compatibility_problems("FULL", size_optional, [only_price]) == []
    # The latest version has "count", so a required "count" reads it; the first version lacks it.
    history = [only_price, avro(record(PRICE, field("count", "int", default=0)))]
    count_required = avro(record(PRICE, field("count", "int")))
    assert compatibility_problems("BACKWARD", count_required, history) == []
    assert compatibility_problems("BACKWARD_TRANSITIVE", count_required, history)
    assert compatibility_problems("FULL_TRANSITIVE", count_required, history)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("{not json", id="not JSON"),
        pytest.param('{"type": "record"}', id="record without name"),
        pytest.param('"no_such_type"', id="unknown type"),
        pytest.param(json.dumps(record(PRICE, PRICE)), id="duplicate field"),
        pytest.param('["int", "int"]', id="duplicate union branch"),
        pytest.param(json.dumps({"type": "array"}), id="array without items"),
    ],
)
def test_invalid_schemas_are_422(text: str) -> None:
    with pytest.raises(RegistryError) as caught:
        AvroSchema.parse(text)
    assert (caught.value.status, caught.value.error_code) == (422, 42201)


@pytest.mark.parametrize(("code", "status"), [(409, 409), (40401, 404), (42201, 422), (50002, 500)])
def test_error_codes_map_to_http_status(code: int, status: int) -> None:
    assert RegistryError(code, "x").status == status


def test_version_specs() -> None:
    assert parse_version("latest") is None
    assert parse_version("-1") is None
    assert parse_version("7") == 7
    for invalid in ("0", "x", str(2**31)):
        with pytest.raises(RegistryError) as caught:
            parse_version(invalid)
        assert caught.value.error_code == 42202


class StateLog:
    """A registry state plus every record it was built from, as the server would persist them."""

    def __init__(self) -> None:
        self.state = RegistryState()
        self.records: list[LogRecord] = []

    def write(self, *records: LogRecord | None) -> None:
        for item in records:
            if item is not None:
                self.records.append(item)
                self.state.apply(item)

    def register(self, subject: str, schema: object) -> int:
        text = schema if isinstance(schema, str) else json.dumps(schema)
        schema_id, item = self.state.plan_register(subject, AvroSchema.parse(text))
        self.write(item)
        return schema_id

    def replayed(self) -> RegistryState:
        """A fresh state rebuilt from the records' bytes, as at a restart."""
        state = RegistryState()
        for item in self.records:
            state.apply(LogRecord.decode(*item.encode()))
        return state


def test_state_assigns_and_reuses_ids() -> None:
    log = StateLog()
    assert log.register("trades-value", record(PRICE)) == 1
    records_before = len(log.records)
    assert log.register("trades-value", json.dumps(record(PRICE), indent=4)) == 1  # whitespace is not a new schema
    assert len(log.records) == records_before
    assert log.register("fills-value", record(PRICE)) == 1
    assert log.register("trades-value", record(PRICE, SIZE_WITH_DEFAULT)) == 2
    state = log.state
    assert state.subjects() == ["fills-value", "trades-value"]
    assert state.versions("trades-value") == [1, 2]
    assert state.version("trades-value", "latest").schema_id == 2
    assert state.lookup("fills-value", avro(record(PRICE))).version == 1
    assert [(item.subject, item.version) for item in state.versions_of_schema(1)] == [
        ("fills-value", 1),
        ("trades-value", 1),
    ]


def test_state_enforces_the_subject_level() -> None:
    log = StateLog()
    log.register("trades-value", record(PRICE))
    with pytest.raises(RegistryError) as caught:
        log.register("trades-value", record(PRICE, SIZE))
    assert (caught.value.status, caught.value.error_code) == (409, 409)
    assert log.state.check_compatibility("trades-value", avro(record(PRICE, SIZE)), "1")
    log.write(log.state.plan_set_level("trades-value", "none")[1])
    assert log.state.compatibility_level("trades-value") == "NONE"
    assert log.state.compatibility_level("other-value") == "BACKWARD"
    assert log.register("trades-value", record(PRICE, SIZE)) == 2


def test_state_soft_delete_keeps_ids_and_version_numbers() -> None:
    log = StateLog()
    log.register("trades-value", record(PRICE))
    log.register("trades-value", record(PRICE, SIZE_WITH_DEFAULT))
    versions, records = log.state.plan_delete_subject("trades-value")
    log.write(*records)
    assert versions == [1, 2]
    assert log.state.subjects() == []
    assert log.state.subjects(include_deleted=True) == ["trades-value"]
    with pytest.raises(RegistryError) as caught:
        log.state.versions("trades-value")
    assert caught.value.error_code == 40404
    assert log.state.schema_text(1) == json.dumps(record(PRICE))
    assert log.register("trades-value", record(PRICE)) == 1
    assert log.state.versions("trades-value") == [3]


def test_state_rebuilt_from_records_is_identical() -> None:
    log = StateLog()
    log.register("trades-value", record(PRICE))
    log.register("trades-value", record(PRICE, SIZE_WITH_DEFAULT))
    log.register("candle-value", record(field("open", DECIMAL), name="Candle"))
    log.write(log.state.plan_set_level(None, "FULL")[1], log.state.plan_set_level("candle-value", "NONE")[1])
    log.write(log.state.plan_delete_level("candle-value")[1])
    rebuilt = log.replayed()
    assert rebuilt.subjects() == log.state.subjects()
    for subject in rebuilt.subjects():
        assert [item.as_json() for item in rebuilt._versions_of(subject, True)] == [
            item.as_json() for item in log.state._versions_of(subject, True)
        ]
    assert (rebuilt.global_level, rebuilt.subject_levels) == ("FULL", {})
    assert log.register("book-value", record(PRICE, name="Book")) == 4
    with pytest.raises(RegistryError) as caught:
        rebuilt.subject_level("candle-value")
    assert caught.value.error_code == 40408


# ---------------------------------------------------------------- against a real broker

TRADE = record(
    field("exchange", "string"),
    field("symbol", "string"),
    PRICE,
    field("side", SIDE),
    field("event_timestamp", "long"),
)
TRADE_VALUE = {
    "exchange": "coinbase",
    "symbol": "BTC.USD",
    "price": Decimal("12345678901234567890.123456789012345678"),
    "side": "sell",
    "event_timestamp": 1_700_000_000_123,
}


class RegistryProcess:
    """The registry as ``runner.py registry`` runs it: :func:`serve` in its own process, on a fixed port."""

    def __init__(self, bootstrap_servers: str, log_dir: Path):
        self.bootstrap_servers = bootstrap_servers
        self.log_dir = log_dir
        self.port = free_port()
        self.starts = 0
        self.process = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log_path = self.log_dir / f"registry-{self.starts}.log"
        code = (
            "from l3_atom.infra.schema_registry import serve; "
            f"serve({self.bootstrap_servers!r}, {LOOPBACK!r}, {self.port})"
        )
        self.process = start_process([sys.executable, "-c", code], log_path=log_path)

        def ready() -> bool:
            text = log_path.read_text() if log_path.exists() else ""
            if self.process.poll() is not None:
                raise RuntimeError(f"the schema registry exited with {self.process.returncode}:\n{text}")
            return f"schema registry listening on {self.url}" in text

        wait_until(ready, READY_TIMEOUT_S, "the schema registry")

    def stop(self) -> int | None:
        if self.process is None:
            return None
        code, self.process = stop_process(self.process), None
        return code


@pytest.fixture(scope="module")
def broker():
    with LocalBroker() as running:
        yield running


@pytest.fixture(scope="module")
def registry(broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory):
    process = RegistryProcess(broker.bootstrap_servers, tmp_path_factory.mktemp("registry"))
    try:
        process.start()
        yield process
    finally:
        process.stop()


def client(registry: RegistryProcess) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": registry.url})


def registry_error(call, *args: object) -> tuple[int, int]:
    with pytest.raises(SchemaRegistryError) as caught:
        call(*args)
    return caught.value.http_status_code, caught.value.error_code


def test_avro_round_trip_keeps_decimals_exact(registry: RegistryProcess) -> None:
    registry_client = client(registry)
    context = SerializationContext("trades", MessageField.VALUE)
    data = AvroSerializer(registry_client, json.dumps(TRADE))(TRADE_VALUE, context)
    assert AvroDeserializer(client(registry))(data, context) == TRADE_VALUE

    registered = registry_client.lookup_schema("trades-value", Schema(json.dumps(TRADE)))
    assert registered.schema_id == int.from_bytes(data[1:WIRE_HEADER_BYTES], "big")
    assert registered.version == 1
    assert "trades-value" in registry_client.get_subjects()
    assert registry_client.get_versions("trades-value") == [1]
    assert registry_client.get_latest_version("trades-value").schema_id == registered.schema_id


def test_compatibility_is_enforced(registry: RegistryProcess) -> None:
    registry_client = client(registry)
    subject = "fills-value"
    first = registry_client.register_schema(subject, Schema(json.dumps(record(PRICE))))
    registry_client.set_compatibility(subject, "BACKWARD")
    assert registry_client.get_compatibility(subject) == "BACKWARD"

    incompatible = Schema(json.dumps(record(PRICE, SIZE)))
    assert registry_client.test_compatibility(subject, incompatible) is False
    assert registry_error(registry_client.register_schema, subject, incompatible) == (409, 409)

    compatible = Schema(json.dumps(record(PRICE, SIZE_WITH_DEFAULT)))
    assert registry_client.test_compatibility(subject, compatible) is True
    second = registry_client.register_schema(subject, compatible)
    assert second != first
    assert registry_client.get_versions(subject) == [1, 2]
    assert registry_client.get_version(subject, 2).schema_id == second

    registry_client.set_compatibility(subject, "NONE")
    assert registry_client.register_schema(subject, incompatible) not in (first, second)


def test_identical_schema_shares_its_id_across_subjects(registry: RegistryProcess) -> None:
    registry_client = client(registry)
    text = json.dumps(record(PRICE, name="Shared"))
    first = registry_client.register_schema("shared-a-value", Schema(text))
    assert registry_client.register_schema("shared/b-value", Schema(json.dumps(json.loads(text), indent=2))) == first
    versions = registry_client.get_schema_versions(first)
    assert [(item.subject, item.version) for item in versions] == [("shared-a-value", 1), ("shared/b-value", 1)]


def test_errors_carry_confluent_codes(registry: RegistryProcess) -> None:
    registry_client = client(registry)
    registry_client.register_schema("errors-value", Schema(json.dumps(record(PRICE))))
    assert registry_error(registry_client.get_versions, "no-such-subject") == (404, 40401)
    assert registry_error(registry_client.get_version, "errors-value", 99) == (404, 40402)
    assert registry_error(registry_client.get_schema, 999_999) == (404, 40403)
    assert registry_error(registry_client.lookup_schema, "errors-value", Schema(json.dumps(record(SIZE)))) == (
        404,
        40403,
    )
    assert registry_error(registry_client.register_schema, "errors-value", Schema('{"type": "nope"}')) == (422, 42201)
    protobuf = Schema('syntax = "proto3";', schema_type="PROTOBUF")
    assert registry_error(registry_client.register_schema, "errors-value", protobuf) == (422, 42201)
    assert registry_error(registry_client.set_compatibility, "errors-value", "SIDEWAYS") == (422, 42203)


def test_restart_keeps_ids_versions_and_config(registry: RegistryProcess) -> None:
    before = client(registry)
    subject = "restart-value"
    ids = [
        before.register_schema(subject, Schema(json.dumps(record(PRICE, name="Restart")))),
        before.register_schema(subject, Schema(json.dumps(record(PRICE, SIZE_WITH_DEFAULT, name="Restart")))),
    ]
    before.set_compatibility(subject, "FULL")
    gone = Schema(json.dumps(record(SIZE, name="Gone")))
    gone_id = before.register_schema("restart-deleted-value", gone)  # the highest id so far
    assert before.delete_subject("restart-deleted-value") == [1]
    subjects = before.get_subjects()

    assert registry.stop() == 0
    registry.start()

    after = client(registry)
    assert after.get_subjects() == subjects
    assert after.get_versions(subject) == [1, 2]
    assert [after.get_version(subject, version).schema_id for version in (1, 2)] == ids
    assert json.loads(after.get_schema(ids[1]).schema_str) == record(PRICE, SIZE_WITH_DEFAULT, name="Restart")
    assert after.get_compatibility(subject) == "FULL"
    # A soft-deleted schema still decodes old messages, and its id is never handed out again.
    assert json.loads(after.get_schema(gone_id).schema_str) == record(SIZE, name="Gone")
    assert after.register_schema("restart-new-value", Schema(json.dumps(record(PRICE, name="Fresh")))) == gone_id + 1


def test_in_process_server_speaks_json_and_owns_a_compacted_topic(broker: LocalBroker) -> None:
    topic = "_schemas_in_process"

    async def exercise() -> None:
        server = SchemaRegistryServer(broker.bootstrap_servers, port=0, topic=topic)
        try:
            await server.start()
            assert server.port != 0 and server.url == f"http://{LOOPBACK}:{server.port}"
            async with aiohttp.ClientSession(server.url) as http:
                async with http.get("/subjects") as response:
                    assert response.status == 200
                    assert response.headers["Content-Type"].startswith(CONTENT_TYPE)
                    assert await response.json(content_type=None) == []
                async with http.get("/no/such/route") as response:
                    assert response.status == 404
                    assert (await response.json(content_type=None))["error_code"] == 404
                body = json.dumps({"schema": json.dumps(record(PRICE))})
                async with http.post("/subjects/x-value/versions", data=body,
                                     headers={"Content-Type": "text/plain"}) as response:
                    assert (await response.json(content_type=None))["error_code"] == 415
                async with http.post("/subjects/x-value/versions", data=body,
                                     headers={"Content-Type": "application/json"}) as response:
                    assert await response.json(content_type=None) == {"id": 1}
                async with http.get("/subjects/x-value/versions/latest/schema") as response:
                    assert json.loads(await response.text()) == record(PRICE)
                async with http.get("/subjects/x-value/versions/zero") as response:
                    assert (await response.json(content_type=None))["error_code"] == 42202

                async def register(number: int) -> int:
                    schema = json.dumps(record(field(f"n{number}", "int"), name=f"Concurrent{number}"))
                    async with http.post(f"/subjects/concurrent-{number}-value/versions",
                                         json={"schema": schema}) as response:
                        return (await response.json(content_type=None))["id"]

                ids = await asyncio.gather(*(register(number) for number in range(CONCURRENT_REGISTRATIONS)))
                assert sorted(ids) == list(range(2, CONCURRENT_REGISTRATIONS + 2))
        finally:
            await server.stop()

    asyncio.run(exercise())
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    assert len(admin.list_topics(topic, timeout=5).topics[topic].partitions) == 1
    described = admin.describe_configs([ConfigResource("topic", topic)])
    configs = next(iter(described.values())).result()
    assert configs["cleanup.policy"].value == "compact"
