"""A small Confluent-compatible Schema Registry for local runs and tests.

Confluent's registry and Karapace cannot be installed here, yet producers and
consumers must talk to the same REST API in every environment, so the project
carries this one.  It implements the subset of the API that Confluent's clients
(``SchemaRegistryClient``, ``AvroSerializer``, ``AvroDeserializer``) and
operators use, for Avro schemas only.  In production ``SCHEMA_REGISTRY_URL``
points at a real registry instead.

Three layers, so that the rules are testable without a broker:

* :class:`AvroSchema` and :func:`compatibility_problems`: validate schemas and
  apply Avro's schema-resolution rules for the compatibility levels.
* :class:`RegistryState`: subjects, versions, ids and compatibility config in
  memory, rebuilt by applying :class:`LogRecord` s; planning a change returns
  the record to persist and never mutates, so state only ever reflects what
  was written to the log.
* :class:`KafkaSchemaLog` (the ``_schemas`` topic: one compacted partition,
  records in Confluent's key/value JSON layout) and
  :class:`SchemaRegistryServer` (aiohttp).  Writes are serialised by one
  asyncio lock and run ``produce`` + ``flush`` in a worker thread
  (``asyncio.to_thread``), so the event loop keeps serving reads while the
  broker acknowledges; the HTTP response is sent only after the flush.

The registry assumes it is the only writer of its topic (Confluent elects a
leader among several instances; the local registry runs one).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import fastavro
from aiohttp import web
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from fastavro.schema import SchemaParseException

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
ACCEPTED_CONTENT_TYPES = frozenset(
    {
        CONTENT_TYPE,
        "application/vnd.schemaregistry+json",
        "application/json",
        # What aiohttp reports when a client sends no Content-Type; Confluent accepts it too.
        "application/octet-stream",
    }
)

DEFAULT_TOPIC = "_schemas"
AVRO = "AVRO"
LATEST = "latest"
LATEST_ALIAS = "-1"
MAX_VERSION = 2**31 - 1

# Confluent's error codes: the HTTP status is the code itself, or its first three digits.
HTTP_STATUS_DIGITS = 3
INCOMPATIBLE_SCHEMA = 409
SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
SUBJECT_SOFT_DELETED = 40404
SUBJECT_LEVEL_NOT_CONFIGURED = 40408
INVALID_SCHEMA = 42201
INVALID_VERSION = 42202
INVALID_COMPATIBILITY_LEVEL = 42203
OPERATION_NOT_PERMITTED = 42205
STORE_ERROR = 50001
STORE_TIMEOUT = 50002

# Kafka settings of the schema log.
TOPIC_PARTITIONS = 1
BROKER_DEFAULT_REPLICATION = -1
ADMIN_TIMEOUT_S = 10.0
FLUSH_TIMEOUT_S = 10.0
REPLAY_TIMEOUT_S = 30.0
REPLAY_POLL_S = 0.2
REPLAY_FETCH_WAIT_MS = 50
REPLAY_GROUP_ID = "l3-atom-schema-registry"
KEYTYPE_SCHEMA = "SCHEMA"
KEYTYPE_CONFIG = "CONFIG"
KEYTYPE_NOOP = "NOOP"
SCHEMA_KEY_MAGIC = 1
OTHER_KEY_MAGIC = 0
# Delivery guarantees the log needs; they override anything in ``kafka_config``.
# One record per flush with no lingering: Tansu misreports the end offset after multi-record batches.
PRODUCER_SETTINGS = {"acks": "all", "enable.idempotence": True, "linger.ms": 0}

PRIMITIVE_TYPES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
RECORD_TYPES = frozenset({"record", "error"})
NAMED_TYPES = RECORD_TYPES | {"enum", "fixed"}
FIXED_LOGICAL_PROPERTIES = ("logicalType", "precision", "scale")
DECIMAL = "decimal"
# Avro schema resolution: writer type -> reader types that can read it.
PROMOTIONS: Mapping[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}


class RegistryError(Exception):
    """An error the REST API reports as ``{"error_code": ..., "message": ...}``, with Confluent's codes."""

    def __init__(self, error_code: int, message: str):
        super().__init__(message)
        self.error_code = int(error_code)
        self.message = message

    @property
    def status(self) -> int:
        """HTTP status: 40401 -> 404, 409 -> 409."""
        return int(str(self.error_code)[:HTTP_STATUS_DIGITS])


def _invalid_schema(message: str) -> RegistryError:
    return RegistryError(INVALID_SCHEMA, f"Invalid schema: {message}")


# ---------------------------------------------------------------- Avro schemas


@dataclass(frozen=True)
class AvroSchema:
    """A validated Avro schema with every named type resolved to its full name.

    ``root`` and the values of ``names`` are normalised nodes: a dict for a
    primitive, array, map or named-type definition, a list for a union, and a
    full-name string for a reference to a named type.
    """

    text: str
    canonical: str
    root: Any
    names: Mapping[str, dict]

    @classmethod
    def parse(cls, text: str) -> AvroSchema:
        """Validate ``text`` (fastavro, plus the duplicate checks fastavro skips); raise 42201 if invalid."""
        if not isinstance(text, str) or not text.strip():
            raise _invalid_schema("the schema must be a non-empty string")
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _invalid_schema(f"not JSON: {exc}") from exc
        names: dict[str, dict] = {}
        try:
            fastavro.parse_schema(parsed)
            root = _Normaliser(names).node(parsed, "")
        except (SchemaParseException, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise _invalid_schema(str(exc)) from exc
        return cls(text=text, canonical=canonical_form(parsed), root=root, names=names)

    def resolve(self, node: Any) -> Any:
        """The definition behind a named-type reference; other nodes unchanged."""
        return self.names[node] if isinstance(node, str) else node


def canonical_form(parsed: Any) -> str:
    """One string per schema whatever its whitespace or key order: identical schemas share an id."""
    return json.dumps(parsed, sort_keys=True, separators=(",", ":"))


def _full_name(name: str, explicit_namespace: str | None, enclosing_namespace: str) -> str:
    if "." in name:
        return name
    namespace = enclosing_namespace if explicit_namespace is None else explicit_namespace
    return f"{namespace}.{name}" if namespace else name


def _union_branch_key(node: Any) -> str:
    return node if isinstance(node, str) else node["type"]


class _Normaliser:
    """Rewrites parsed schema JSON into :class:`AvroSchema` nodes, collecting named types."""

    def __init__(self, names: dict[str, dict]):
        self.names = names

    def node(self, schema: Any, namespace: str) -> Any:
        if isinstance(schema, list):
            return self._union(schema, namespace)
        if isinstance(schema, str):
            return {"type": schema} if schema in PRIMITIVE_TYPES else self._reference(schema, namespace)
        type_ = schema["type"]
        if not isinstance(type_, str):
            return self.node(type_, namespace)
        if type_ in PRIMITIVE_TYPES:
            return dict(schema)
        if type_ == "array":
            return {"type": "array", "items": self.node(schema["items"], namespace)}
        if type_ == "map":
            return {"type": "map", "values": self.node(schema["values"], namespace)}
        if type_ in NAMED_TYPES:
            return self._named(schema, namespace)
        return self._reference(type_, namespace)

    def _union(self, branches: list, namespace: str) -> list:
        nodes = [self.node(branch, namespace) for branch in branches]
        if any(isinstance(node, list) for node in nodes):
            raise _invalid_schema("unions may not immediately contain other unions")
        keys = [_union_branch_key(node) for node in nodes]
        if len(set(keys)) != len(keys):
            raise _invalid_schema(f"duplicate types in union {keys}")
        return nodes

    def _reference(self, name: str, namespace: str) -> str:
        candidates = [name] if "." in name else [_full_name(name, None, namespace), name]
        for candidate in candidates:
            if candidate in self.names:
                return candidate
        raise _invalid_schema(f"unknown type {name!r}")

    def _named(self, schema: dict, namespace: str) -> str:
        kind = schema["type"]
        full_name = _full_name(schema["name"], schema.get("namespace"), namespace)
        if full_name in self.names:
            raise _invalid_schema(f"type {full_name!r} is defined twice")
        inner_namespace = full_name.rpartition(".")[0]
        definition: dict = {
            "type": kind,
            "name": full_name,
            "aliases": [_full_name(alias, None, inner_namespace) for alias in schema.get("aliases", [])],
        }
        # Registered before the fields are read, so that a record may refer to itself.
        self.names[full_name] = definition
        if kind in RECORD_TYPES:
            definition["fields"] = self._fields(schema["fields"], inner_namespace)
        elif kind == "enum":
            definition["symbols"] = list(schema["symbols"])
            if "default" in schema:
                definition["default"] = schema["default"]
        else:
            definition["size"] = schema["size"]
            definition.update({key: schema[key] for key in FIXED_LOGICAL_PROPERTIES if key in schema})
        return full_name

    def _fields(self, fields: list[dict], namespace: str) -> list[dict]:
        names = [item["name"] for item in fields]
        if len(set(names)) != len(names):
            raise _invalid_schema(f"duplicate field names in {names}")
        return [
            {
                "name": item["name"],
                "type": self.node(item["type"], namespace),
                "aliases": list(item.get("aliases", [])),
                "has_default": "default" in item,
            }
            for item in fields
        ]


def _short_name(full_name: str) -> str:
    return full_name.rpartition(".")[2]


def _describe(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return "union[" + ", ".join(_describe(branch) for branch in node) + "]"
    return node.get("name") or node["type"]


class _Resolution:
    """Can data written with ``writer`` be read with ``reader``?  Avro's schema-resolution rules.

    Beyond Confluent (whose checker ignores logical types), two decimals must
    have the same scale and the reader at least the writer's precision: a
    scale change would silently rescale every number.
    """

    def __init__(self, reader: AvroSchema, writer: AvroSchema):
        self.reader = reader
        self.writer = writer
        self._in_progress: set[tuple[str, str]] = set()

    def problems(self) -> list[str]:
        return self._check(self.reader.root, self.writer.root, "")

    def _check(self, reader: Any, writer: Any, path: str) -> list[str]:
        if isinstance(writer, list):
            return [problem for branch in writer for problem in self._check(reader, branch, path)]
        if isinstance(reader, list):
            if any(not self._check(branch, writer, path) for branch in reader):
                return []
            return [f"{path or '/'}: no branch of reader {_describe(reader)} reads writer type {_describe(writer)}"]
        if not (isinstance(reader, str) and isinstance(writer, str)):
            return self._check_types(self.reader.resolve(reader), self.writer.resolve(writer), path)
        # Named types are references by now, so every recursive comparison passes through here.
        pair = (reader, writer)
        if pair in self._in_progress:
            return []  # already being compared further up: compatible unless shown otherwise there
        self._in_progress.add(pair)
        try:
            return self._check_types(self.reader.names[reader], self.writer.names[writer], path)
        finally:
            self._in_progress.discard(pair)

    def _check_types(self, reader: dict, writer: dict, path: str) -> list[str]:
        reader_type, writer_type = reader["type"], writer["type"]
        if reader_type != writer_type and not (reader_type in RECORD_TYPES and writer_type in RECORD_TYPES):
            if reader_type in PROMOTIONS.get(writer_type, frozenset()):
                return []
            return [f"{path or '/'}: reader type {_describe(reader)} cannot read writer type {_describe(writer)}"]
        if reader_type == "array":
            return self._check(reader["items"], writer["items"], f"{path}/items")
        if reader_type == "map":
            return self._check(reader["values"], writer["values"], f"{path}/values")
        problems = self._name_problems(reader, writer, path) if reader_type in NAMED_TYPES else []
        if reader_type in RECORD_TYPES:
            problems += self._record_problems(reader, writer, path)
        elif reader_type == "enum":
            problems += self._enum_problems(reader, writer, path)
        elif reader_type == "fixed" and reader["size"] != writer["size"]:
            problems.append(f"{path or '/'}: fixed size {writer['size']} changed to {reader['size']}")
        return problems + self._decimal_problems(reader, writer, path)

    @staticmethod
    def _name_problems(reader: dict, writer: dict, path: str) -> list[str]:
        writer_name = writer["name"]
        if _short_name(reader["name"]) == _short_name(writer_name) or writer_name in reader["aliases"]:
            return []
        return [f"{path or '/'}: reader type name {reader['name']} does not match writer name {writer_name}"]

    def _record_problems(self, reader: dict, writer: dict, path: str) -> list[str]:
        writer_fields = {item["name"]: item for item in writer["fields"]}
        problems = []
        for reader_field in reader["fields"]:
            field_path = f"{path}/{reader_field['name']}"
            names = [reader_field["name"], *reader_field["aliases"]]
            writer_field = next((writer_fields[name] for name in names if name in writer_fields), None)
            if writer_field is not None:
                problems += self._check(reader_field["type"], writer_field["type"], field_path)
            elif not reader_field["has_default"]:
                problems.append(f"{field_path}: reader field has no default and is missing from the writer")
        return problems

    @staticmethod
    def _enum_problems(reader: dict, writer: dict, path: str) -> list[str]:
        missing = [symbol for symbol in writer["symbols"] if symbol not in reader["symbols"]]
        if not missing or "default" in reader:
            return []
        return [f"{path or '/'}: reader enum {reader['name']} lacks writer symbols {missing} and has no default"]

    @staticmethod
    def _decimal_problems(reader: dict, writer: dict, path: str) -> list[str]:
        if reader.get("logicalType") != DECIMAL or writer.get("logicalType") != DECIMAL:
            return []
        (read_precision, read_scale), (written_precision, written_scale) = _decimal(reader), _decimal(writer)
        if read_scale == written_scale and read_precision >= written_precision:
            return []
        message = f"decimal({written_precision}, {written_scale}) cannot be read as decimal({read_precision}, {read_scale})"
        return [f"{path or '/'}: {message}"]


def _decimal(node: dict) -> tuple[int, int]:
    """(precision, scale) of a decimal; a missing scale is 0 (Avro spec)."""
    return node.get("precision", 0), node.get("scale", 0)


def resolution_problems(reader: AvroSchema, writer: AvroSchema) -> list[str]:
    """Why a reader using ``reader`` cannot read data written with ``writer``; empty when it can."""
    return _Resolution(reader, writer).problems()


@dataclass(frozen=True)
class _LevelRule:
    backward: bool
    forward: bool
    transitive: bool


COMPATIBILITY_LEVELS: Mapping[str, _LevelRule] = {
    "NONE": _LevelRule(backward=False, forward=False, transitive=False),
    "BACKWARD": _LevelRule(backward=True, forward=False, transitive=False),
    "BACKWARD_TRANSITIVE": _LevelRule(backward=True, forward=False, transitive=True),
    "FORWARD": _LevelRule(backward=False, forward=True, transitive=False),
    "FORWARD_TRANSITIVE": _LevelRule(backward=False, forward=True, transitive=True),
    "FULL": _LevelRule(backward=True, forward=True, transitive=False),
    "FULL_TRANSITIVE": _LevelRule(backward=True, forward=True, transitive=True),
}
DEFAULT_COMPATIBILITY = "BACKWARD"


def compatibility_problems(level: str, new: AvroSchema, previous: Sequence[AvroSchema]) -> list[str]:
    """Why ``new`` may not follow ``previous`` (oldest first) under ``level``; empty when it may.

    BACKWARD: the new schema reads data written with the latest one; FORWARD:
    the latest reads data written with the new one; FULL: both;
    ``_TRANSITIVE``: against every previous version, not only the latest.
    """
    rule = COMPATIBILITY_LEVELS[level]
    targets = previous if rule.transitive else previous[-1:]
    problems = []
    for old in targets:
        if rule.backward:
            problems += resolution_problems(reader=new, writer=old)
        if rule.forward:
            problems += resolution_problems(reader=old, writer=new)
    return problems


def validate_level(level: Any) -> str:
    """The compatibility level in upper case; 42203 if it is not one."""
    if isinstance(level, str) and level.upper() in COMPATIBILITY_LEVELS:
        return level.upper()
    valid = ", ".join(name.lower() for name in COMPATIBILITY_LEVELS)
    raise RegistryError(INVALID_COMPATIBILITY_LEVEL, f"Invalid compatibility level. Valid values are {valid}")


# ---------------------------------------------------------------- log records


@dataclass(frozen=True)
class LogRecord:
    """One record of the ``_schemas`` topic, in Confluent's JSON key/value layout.

    Keys are built only by the factories below, so one fact always has the same
    key bytes and compaction keeps its latest value.
    """

    key: dict
    value: dict | None

    @classmethod
    def schema(cls, version: SubjectVersion) -> LogRecord:
        key = {"keytype": KEYTYPE_SCHEMA, "subject": version.subject, "version": version.version,
               "magic": SCHEMA_KEY_MAGIC}
        value = {"subject": version.subject, "version": version.version, "id": version.schema_id,
                 "schema": version.schema, "deleted": version.deleted}
        return cls(key, value)

    @classmethod
    def config(cls, subject: str | None, level: str | None) -> LogRecord:
        """``level`` None removes the setting (a tombstone)."""
        key = {"keytype": KEYTYPE_CONFIG, "subject": subject, "magic": OTHER_KEY_MAGIC}
        return cls(key, None if level is None else {"compatibilityLevel": level})

    @classmethod
    def marker(cls) -> LogRecord:
        """A no-op record unique to this call: reading up to it means reading everything written before."""
        return cls({"keytype": KEYTYPE_NOOP, "magic": OTHER_KEY_MAGIC}, {"marker": uuid.uuid4().hex})

    def encode(self) -> tuple[bytes, bytes | None]:
        value = None if self.value is None else json.dumps(self.value, separators=(",", ":")).encode()
        return json.dumps(self.key, separators=(",", ":")).encode(), value

    @classmethod
    def decode(cls, key: bytes, value: bytes | None) -> LogRecord:
        return cls(json.loads(key), None if value is None else json.loads(value))


# ---------------------------------------------------------------- registry state


@dataclass
class SubjectVersion:
    """One version of a subject: which schema (id and text) it is, and whether it was soft-deleted."""

    subject: str
    version: int
    schema_id: int
    schema: str
    deleted: bool = False

    def as_json(self) -> dict:
        return {"subject": self.subject, "version": self.version, "id": self.schema_id, "schema": self.schema}


def parse_version(spec: str) -> int | None:
    """A version number, or None for ``latest`` (also spelt -1); 42202 otherwise."""
    if spec in (LATEST, LATEST_ALIAS):
        return None
    if spec.isdigit() and 1 <= int(spec) <= MAX_VERSION:
        return int(spec)
    raise RegistryError(
        INVALID_VERSION,
        f"The specified version '{spec}' is not a valid version id. "
        f"Allowed values are between [1, {MAX_VERSION}] and the string \"{LATEST}\"",
    )


class RegistryState:
    """Everything the registry knows, rebuilt by :meth:`apply` from the log; no I/O.

    ``plan_*`` methods validate a change and return the records that make it,
    without applying them: the server persists each record, then applies it.
    """

    def __init__(self) -> None:
        self.global_level = DEFAULT_COMPATIBILITY
        self.subject_levels: dict[str, str] = {}
        self._schemas: dict[int, str] = {}  # id -> text as first registered
        self._ids: dict[str, int] = {}  # canonical form -> id
        self._parsed: dict[int, AvroSchema] = {}
        self._subjects: dict[str, dict[int, SubjectVersion]] = {}

    # -- applying the log

    def apply(self, record: LogRecord) -> None:
        """Apply one log record; records of kinds this registry does not use are ignored."""
        keytype = record.key.get("keytype")
        if keytype == KEYTYPE_SCHEMA and record.value is None:
            # Hard deletes: this registry never writes them, a Confluent registry sharing the topic may.
            self._subjects.get(record.key["subject"], {}).pop(int(record.key["version"]), None)
        elif keytype == KEYTYPE_SCHEMA:
            self._apply_schema(SubjectVersion(
                subject=record.value["subject"],
                version=int(record.value["version"]),
                schema_id=int(record.value["id"]),
                schema=record.value["schema"],
                deleted=bool(record.value.get("deleted", False)),
            ))
        elif keytype == KEYTYPE_CONFIG:
            self._apply_config(record.key.get("subject"), record.value)

    def _apply_schema(self, version: SubjectVersion) -> None:
        self._schemas.setdefault(version.schema_id, version.schema)
        self._ids.setdefault(canonical_form(json.loads(version.schema)), version.schema_id)
        self._subjects.setdefault(version.subject, {})[version.version] = version

    def _apply_config(self, subject: str | None, value: dict | None) -> None:
        level = None if value is None else validate_level(value["compatibilityLevel"])
        if subject is None:
            self.global_level = level or DEFAULT_COMPATIBILITY
        elif level is None:
            self.subject_levels.pop(subject, None)
        else:
            self.subject_levels[subject] = level

    # -- queries

    def subjects(self, include_deleted: bool = False) -> list[str]:
        return sorted(name for name in self._subjects if self._versions_of(name, include_deleted))

    def versions(self, subject: str, include_deleted: bool = False) -> list[int]:
        return [item.version for item in self._existing_versions(subject, include_deleted)]

    def version(self, subject: str, spec: str, include_deleted: bool = False) -> SubjectVersion:
        number = parse_version(spec)
        versions = self._existing_versions(subject, include_deleted)
        if number is None:
            return versions[-1]
        for item in versions:
            if item.version == number:
                return item
        raise RegistryError(VERSION_NOT_FOUND, f"Version {number} not found.")

    def schema_text(self, schema_id: int) -> str:
        if schema_id not in self._schemas:
            raise RegistryError(SCHEMA_NOT_FOUND, f"Schema {schema_id} not found")
        return self._schemas[schema_id]

    def versions_of_schema(self, schema_id: int, include_deleted: bool = False) -> list[SubjectVersion]:
        self.schema_text(schema_id)
        return [
            item
            for name in sorted(self._subjects)
            for item in self._versions_of(name, include_deleted)
            if item.schema_id == schema_id
        ]

    def lookup(self, subject: str, schema: AvroSchema, include_deleted: bool = False) -> SubjectVersion:
        versions = self._existing_versions(subject, include_deleted)
        found = self._find(versions, schema)
        if found is None:
            raise RegistryError(SCHEMA_NOT_FOUND, "Schema not found")
        return found

    def compatibility_level(self, subject: str | None) -> str:
        """The level that applies to ``subject``: its own, else the global one."""
        return self.subject_levels.get(subject, self.global_level) if subject else self.global_level

    def check_compatibility(self, subject: str, schema: AvroSchema, spec: str | None = None) -> list[str]:
        """Why ``schema`` may not be registered under ``subject``: against version ``spec``, or per the level."""
        level = self.compatibility_level(subject)
        if spec is None:
            previous = self._versions_of(subject, include_deleted=False)
        else:
            previous = [self.version(subject, spec)]
        return compatibility_problems(level, schema, [self._parsed_schema(item.schema_id) for item in previous])

    # -- planning changes

    def plan_register(self, subject: str, schema: AvroSchema) -> tuple[int, LogRecord | None]:
        """The id ``schema`` has or will have under ``subject``, and the record to write (None if registered)."""
        live = self._versions_of(subject, include_deleted=False)
        existing = self._find(live, schema)
        if existing is not None:
            return existing.schema_id, None
        problems = self.check_compatibility(subject, schema)
        if problems:
            raise RegistryError(
                INCOMPATIBLE_SCHEMA,
                f'Schema being registered is incompatible with an earlier schema for subject "{subject}", '
                f"details: {problems}",
            )
        schema_id = self._ids.get(schema.canonical, max(self._schemas, default=0) + 1)
        version = max(self._subjects.get(subject, {}), default=0) + 1
        text = self._schemas.get(schema_id, schema.text)
        return schema_id, LogRecord.schema(SubjectVersion(subject, version, schema_id, text))

    def plan_delete_subject(self, subject: str) -> tuple[list[int], list[LogRecord]]:
        """Soft delete: every live version is rewritten with ``deleted`` set; ids stay resolvable."""
        live = self._existing_versions(subject, include_deleted=False)
        records = [
            LogRecord.schema(SubjectVersion(item.subject, item.version, item.schema_id, item.schema, deleted=True))
            for item in live
        ]
        return [item.version for item in live], records

    def plan_set_level(self, subject: str | None, level: Any) -> tuple[str, LogRecord]:
        level = validate_level(level)
        return level, LogRecord.config(subject, level)

    def plan_delete_level(self, subject: str | None) -> tuple[str, LogRecord]:
        """Remove a subject's own level (or reset the global one); returns the level it had."""
        if subject is None:
            return self.global_level, LogRecord.config(None, None)
        return self.subject_level(subject), LogRecord.config(subject, None)

    def subject_level(self, subject: str) -> str:
        """The subject's own level; 40408 when it follows the global one."""
        if subject not in self.subject_levels:
            raise RegistryError(
                SUBJECT_LEVEL_NOT_CONFIGURED, f"Subject '{subject}' does not have subject-level compatibility configured"
            )
        return self.subject_levels[subject]

    # -- helpers

    def _versions_of(self, subject: str, include_deleted: bool) -> list[SubjectVersion]:
        versions = self._subjects.get(subject, {})
        return [versions[number] for number in sorted(versions) if include_deleted or not versions[number].deleted]

    def _existing_versions(self, subject: str, include_deleted: bool) -> list[SubjectVersion]:
        """Versions of a subject that must exist: 40401 if it never did, 40404 if it was soft-deleted."""
        if not self._subjects.get(subject):
            raise RegistryError(SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        versions = self._versions_of(subject, include_deleted)
        if not versions:
            raise RegistryError(SUBJECT_SOFT_DELETED, f"Subject '{subject}' was soft deleted.")
        return versions

    def _find(self, versions: Iterable[SubjectVersion], schema: AvroSchema) -> SubjectVersion | None:
        schema_id = self._ids.get(schema.canonical)
        return next((item for item in versions if item.schema_id == schema_id), None)

    def _parsed_schema(self, schema_id: int) -> AvroSchema:
        if schema_id not in self._parsed:
            self._parsed[schema_id] = AvroSchema.parse(self._schemas[schema_id])
        return self._parsed[schema_id]


# ---------------------------------------------------------------- Kafka adapter


class KafkaSchemaLog:
    """The registry's topic: one compacted partition, written one record per flush.

    ``kafka_config`` (e.g. SASL settings) is merged into every client's
    configuration; the producer's delivery settings always win.
    """

    def __init__(self, bootstrap_servers: str, topic: str = DEFAULT_TOPIC, kafka_config: dict | None = None):
        self.topic = topic
        self._config = {"bootstrap.servers": bootstrap_servers, "log.connection.close": False, **(kafka_config or {})}
        self._producer: Producer | None = None

    def open(self) -> None:
        """Create the topic if missing, and the producer."""
        admin = AdminClient(self._config)
        topic = NewTopic(self.topic, num_partitions=TOPIC_PARTITIONS, replication_factor=BROKER_DEFAULT_REPLICATION,
                         config={"cleanup.policy": "compact"})
        try:
            admin.create_topics([topic], operation_timeout=ADMIN_TIMEOUT_S)[self.topic].result(ADMIN_TIMEOUT_S)
            log.info("created schema topic %s", self.topic)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        self._producer = Producer({**self._config, **PRODUCER_SETTINGS})

    def append(self, record: LogRecord) -> None:
        """Write ``record`` and wait until the broker has it; 50001/50002 if it does not."""
        if self._producer is None:
            raise RuntimeError("KafkaSchemaLog.open() was not called")
        failures: list[str] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        key, value = record.encode()
        try:
            self._producer.produce(self.topic, key=key, value=value, on_delivery=delivered)
        except (KafkaException, BufferError) as exc:
            raise RegistryError(STORE_ERROR, f"Error while writing to the schema topic: {exc}") from exc
        if self._producer.flush(FLUSH_TIMEOUT_S):
            raise RegistryError(STORE_TIMEOUT, f"The schema topic did not acknowledge within {FLUSH_TIMEOUT_S} s")
        if failures:
            raise RegistryError(STORE_ERROR, f"Error while writing to the schema topic: {failures[0]}")

    def replay(self, apply: Callable[[LogRecord], None]) -> int:
        """Apply every record written before this call; returns how many were applied.

        A fresh marker is written first and read back last: the end is where
        the marker is, not the high watermark (which Tansu misreports after
        multi-record batches).  Records that do not decode are logged and skipped.
        """
        marker = LogRecord.marker()
        self.append(marker)
        consumer = Consumer({
            **self._config,
            "group.id": REPLAY_GROUP_ID,
            "enable.auto.commit": False,
            "fetch.wait.max.ms": REPLAY_FETCH_WAIT_MS,
        })
        try:
            consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
            applied = 0
            deadline = time.monotonic() + REPLAY_TIMEOUT_S
            while time.monotonic() < deadline:
                message = consumer.poll(REPLAY_POLL_S)
                if message is None:
                    continue
                if message.error():
                    if message.error().retriable():
                        continue
                    raise KafkaException(message.error())
                record = self._decode(message)
                if record == marker:
                    return applied
                if record is not None and self._apply(apply, record, message.offset()):
                    applied += 1
            raise TimeoutError(f"could not read topic {self.topic} to its end within {REPLAY_TIMEOUT_S} s")
        finally:
            consumer.close()

    @staticmethod
    def _decode(message: Any) -> LogRecord | None:
        try:
            return LogRecord.decode(message.key(), message.value())
        except (TypeError, ValueError) as exc:
            log.warning("skipping undecodable record at offset %d: %s", message.offset(), exc)
            return None

    @staticmethod
    def _apply(apply: Callable[[LogRecord], None], record: LogRecord, offset: int) -> bool:
        try:
            apply(record)
            return True
        except (KeyError, TypeError, ValueError, RegistryError) as exc:
            log.warning("skipping malformed record at offset %d: %s", offset, exc)
            return False

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(FLUSH_TIMEOUT_S)
            self._producer = None


# ---------------------------------------------------------------- HTTP server

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = HTTPStatus.OK) -> web.Response:
    return web.json_response(data, status=status, content_type=CONTENT_TYPE)


def _error(status: int, error_code: int, message: str) -> web.Response:
    return _json({"error_code": error_code, "message": message}, status=status)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure answers like Confluent: a JSON body with ``error_code`` and ``message``."""
    try:
        return await handler(request)
    except RegistryError as exc:
        return _error(exc.status, exc.error_code, exc.message)
    except web.HTTPException as exc:
        return _error(exc.status, exc.status, exc.reason)
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        status = HTTPStatus.INTERNAL_SERVER_ERROR
        return _error(status, status, "Internal error in the schema registry")


async def _read_json(request: web.Request) -> dict:
    if request.content_type not in ACCEPTED_CONTENT_TYPES:
        raise RegistryError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"Unsupported content type {request.content_type}")
    try:
        body = json.loads(await request.read() or b"{}")
    except json.JSONDecodeError as exc:
        raise RegistryError(HTTPStatus.BAD_REQUEST, f"Malformed JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise RegistryError(HTTPStatus.BAD_REQUEST, "The request body must be a JSON object")
    return body


def _schema_from_body(body: dict) -> AvroSchema:
    schema_type = str(body.get("schemaType") or AVRO).upper()
    if schema_type != AVRO:
        raise _invalid_schema(f"schema type {schema_type} is not supported by the local registry, only {AVRO}")
    if body.get("references"):
        raise _invalid_schema("schema references are not supported by the local registry")
    return AvroSchema.parse(body.get("schema"))


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


def _schema_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isdigit():
        raise RegistryError(SCHEMA_NOT_FOUND, f"Schema {text} not found")
    return int(text)


class SchemaRegistryServer:
    """The registry: replays its topic on :meth:`start`, then serves the REST API.

    Usage: ``server = SchemaRegistryServer(bootstrap)``, ``await server.start()``,
    clients use ``server.url``, then ``await server.stop()``.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        host: str = "127.0.0.1",
        port: int = 0,
        topic: str = DEFAULT_TOPIC,
        kafka_config: dict | None = None,
    ):
        self.host = host
        self.port = port
        self.state = RegistryState()
        self._log = KafkaSchemaLog(bootstrap_servers, topic, kafka_config)
        self._write_lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Rebuild the state from the topic, then listen (on a free port if ``port`` is 0)."""
        await asyncio.to_thread(self._log.open)
        applied = await asyncio.to_thread(self._log.replay, self.state.apply)
        log.info("replayed %d records from %s", applied, self._log.topic)
        self._runner = web.AppRunner(self._application())
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await asyncio.to_thread(self._log.close)

    def _application(self) -> web.Application:
        app = web.Application(middlewares=[_json_errors])
        app.router.add_routes([
            web.get("/", self._root),
            web.get("/schemas/types", self._schema_types),
            web.get("/subjects", self._subjects),
            web.post("/subjects/{subject}", self._lookup),
            web.delete("/subjects/{subject}", self._delete_subject),
            web.get("/subjects/{subject}/versions", self._versions),
            web.post("/subjects/{subject}/versions", self._register),
            web.get("/subjects/{subject}/versions/{version}", self._version),
            web.get("/subjects/{subject}/versions/{version}/schema", self._version_schema),
            web.get("/schemas/ids/{id}", self._schema_by_id),
            web.get("/schemas/ids/{id}/versions", self._versions_by_id),
            web.get("/schemas/ids/{id}/subjects", self._subjects_by_id),
            web.get("/config", self._get_config),
            web.put("/config", self._set_config),
            web.delete("/config", self._delete_config),
            web.get("/config/{subject}", self._get_config),
            web.put("/config/{subject}", self._set_config),
            web.delete("/config/{subject}", self._delete_config),
            web.post("/compatibility/subjects/{subject}/versions", self._test_compatibility),
            web.post("/compatibility/subjects/{subject}/versions/{version}", self._test_compatibility),
        ])
        return app

    async def _persist(self, records: Iterable[LogRecord]) -> None:
        """Write each record to the topic, then apply it: the state never runs ahead of the log."""
        for record in records:
            await asyncio.to_thread(self._log.append, record)
            self.state.apply(record)

    async def _root(self, _request: web.Request) -> web.Response:
        return _json({})

    async def _schema_types(self, _request: web.Request) -> web.Response:
        return _json([AVRO])

    async def _subjects(self, request: web.Request) -> web.Response:
        return _json(self.state.subjects(_flag(request, "deleted")))

    async def _lookup(self, request: web.Request) -> web.Response:
        schema = _schema_from_body(await _read_json(request))
        found = self.state.lookup(request.match_info["subject"], schema, _flag(request, "deleted"))
        return _json(found.as_json())

    async def _delete_subject(self, request: web.Request) -> web.Response:
        if _flag(request, "permanent"):
            raise RegistryError(
                OPERATION_NOT_PERMITTED, "Permanent deletes are not supported by the local registry: ids must not be reused"
            )
        async with self._write_lock:
            versions, records = self.state.plan_delete_subject(request.match_info["subject"])
            await self._persist(records)
        return _json(versions)

    async def _versions(self, request: web.Request) -> web.Response:
        return _json(self.state.versions(request.match_info["subject"], _flag(request, "deleted")))

    async def _register(self, request: web.Request) -> web.Response:
        schema = _schema_from_body(await _read_json(request))
        async with self._write_lock:
            schema_id, record = self.state.plan_register(request.match_info["subject"], schema)
            if record is not None:
                await self._persist([record])
        return _json({"id": schema_id})

    def _requested_version(self, request: web.Request) -> SubjectVersion:
        info = request.match_info
        return self.state.version(info["subject"], info["version"], _flag(request, "deleted"))

    async def _version(self, request: web.Request) -> web.Response:
        return _json(self._requested_version(request).as_json())

    async def _version_schema(self, request: web.Request) -> web.Response:
        return web.Response(text=self._requested_version(request).schema, content_type=CONTENT_TYPE)

    async def _schema_by_id(self, request: web.Request) -> web.Response:
        return _json({"schema": self.state.schema_text(_schema_id(request))})

    async def _versions_by_id(self, request: web.Request) -> web.Response:
        found = self.state.versions_of_schema(_schema_id(request), _flag(request, "deleted"))
        return _json([{"subject": item.subject, "version": item.version} for item in found])

    async def _subjects_by_id(self, request: web.Request) -> web.Response:
        found = self.state.versions_of_schema(_schema_id(request), _flag(request, "deleted"))
        return _json(sorted({item.subject for item in found}))

    async def _get_config(self, request: web.Request) -> web.Response:
        subject = request.match_info.get("subject")
        if subject is None or (_flag(request, "defaultToGlobal") and subject not in self.state.subject_levels):
            return _json({"compatibilityLevel": self.state.global_level})
        return _json({"compatibilityLevel": self.state.subject_level(subject)})

    async def _set_config(self, request: web.Request) -> web.Response:
        body = await _read_json(request)
        requested = body.get("compatibility") or body.get("compatibilityLevel")
        async with self._write_lock:
            level, record = self.state.plan_set_level(request.match_info.get("subject"), requested)
            await self._persist([record])
        return _json({"compatibility": level})

    async def _delete_config(self, request: web.Request) -> web.Response:
        async with self._write_lock:
            previous, record = self.state.plan_delete_level(request.match_info.get("subject"))
            await self._persist([record])
        return _json({"compatibilityLevel": previous})

    async def _test_compatibility(self, request: web.Request) -> web.Response:
        schema = _schema_from_body(await _read_json(request))
        info = request.match_info
        problems = self.state.check_compatibility(info["subject"], schema, info.get("version"))
        body: dict[str, Any] = {"is_compatible": not problems}
        if _flag(request, "verbose"):
            body["messages"] = problems
        return _json(body)


async def _serve_until_signalled(server: SchemaRegistryServer) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await server.start()
        print(f"schema registry listening on {server.url}", flush=True)
        await stopping.wait()
    finally:
        await server.stop()


def serve(
    bootstrap_servers: str,
    host: str,
    port: int,
    topic: str = DEFAULT_TOPIC,
    kafka_config: dict | None = None,
) -> None:
    """Run the registry until SIGINT or SIGTERM (``runner.py registry``)."""
    asyncio.run(_serve_until_signalled(SchemaRegistryServer(bootstrap_servers, host, port, topic, kafka_config)))
