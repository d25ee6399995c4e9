"""One settings object from ``config.ini``, ``keys/.env`` and the environment.

Precedence: environment variables, then ``keys/.env`` (python-dotenv never
overrides a variable that is already set), then ``config.ini``.  Every value
is checked when it is read, so a wrong one stops the program with a message
naming the file, section and key instead of failing later inside Kafka.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

from l3_atom.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config.ini"
DEFAULT_ENV_PATH = PROJECT_ROOT / "keys" / ".env"
PROFILE_PREFIX = "profile:"
LIMITS_PREFIX = "limits."
SASL_PROTOCOLS = ("SASL_SSL", "SASL_PLAINTEXT")
MS_PER_S = 1000
METRICS_PORT_ENV = "L3_ATOM_METRICS_PORT"
METRICS_HOST_ENV = "L3_ATOM_METRICS_HOST"
# Each role its own default port, so a connector, a processor and a local run on one host never clash.
DEFAULT_METRICS_PORTS = {"connector": 9401, "processor": 9402, "local": 9403}
METRICS_ROLES = tuple(DEFAULT_METRICS_PORTS)
# Seconds between symbol-list refreshes when config.ini does not say.
DEFAULT_SYMBOL_REFRESH_S = 600.0


class ConfigError(UserError):
    """A missing or invalid setting, with a message that says how to fix it."""


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str
    profile: str
    num_partitions: int
    num_replications: int
    session_timeout_ms: int
    heartbeat_interval_ms: int
    changelog_max_batch_size: int
    fetch_max_wait_ms: int
    security_protocol: str
    sasl_mechanism: str | None
    sasl_username: str | None
    sasl_password: str | None = field(repr=False)
    linger_ms: int
    max_message_bytes: int
    # The broker keeps nothing across a restart (Tansu in memory mode): roles exit when it dies.
    broker_memory_only: bool = False

    def client_config(self) -> dict[str, Any]:
        """Connection settings for confluent-kafka clients (producer, consumer, admin)."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.security_protocol in SASL_PROTOCOLS:
            conf.update(
                {
                    "sasl.mechanisms": self.sasl_mechanism or "PLAIN",
                    "sasl.username": self.sasl_username,
                    "sasl.password": self.sasl_password,
                }
            )
        return conf

    def producer_config(self) -> dict[str, Any]:
        """A producer that never loses or duplicates a send (ARCHITECTURE.md, 6)."""
        return {
            **self.client_config(),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": self.linger_ms,
            # Delivery callbacks only for failures (those are surfaced): a Python call per delivered
            # record would cost the hot path for nothing.
            "delivery.report.only.error": True,
            # Java-compatible key hashing, as Faust's (aiokafka's) producer uses for table changelogs.
            "partitioner": "murmur2_random",
            "message.max.bytes": self.max_message_bytes + 64 * 1024,
            # Topics are made by ensure_topics with their partitions; a producer that made one (on a broker
            # restarted empty, before its role noticed: l3_atom/topic_watch.py) would make it the broker's way.
            "allow.auto.create.topics": False,
        }


@dataclass(frozen=True)
class ConnectorSettings:
    reconnect_initial_delay_s: float
    reconnect_max_delay_s: float
    silence_timeout_s: float
    max_frame_bytes: int
    # Seconds between reloads of a venue's symbol list (new listings, delistings, expiries); 0 (only in code,
    # e.g. unit tests): never.  config.ini's [connector] symbol_refresh_s must be above 0.
    symbol_refresh_s: float = 0.0


@dataclass(frozen=True)
class ProcessorSettings:
    app_id: str
    web_port: int
    web_host: str


@dataclass(frozen=True)
class MetricsSettings:
    """Where each role serves ``/metrics``, ``/health`` and ``/ready``."""

    host: str
    # Role (connector, processor, local) -> port; 0 picks a free one.
    ports: dict[str, int]

    def port(self, role: str, override: int | None = None) -> int:
        """``--metrics-port`` if given, else ``L3_ATOM_METRICS_PORT``, else the role's ``config.ini`` port."""
        if override is not None:
            return override
        from_env = os.environ.get(METRICS_PORT_ENV)
        if from_env:
            if not from_env.isdigit():
                raise ConfigError(f"{METRICS_PORT_ENV} must be a port number, got {from_env!r}")
            return int(from_env)
        return self.ports[role]


@dataclass(frozen=True)
class CandleSettings:
    intervals: list[str]
    grace_ms: int
    idle_close_ms: int


@dataclass(frozen=True)
class SchemaRegistrySettings:
    url: str
    username: str | None
    password: str | None = field(repr=False)

    def client_config(self) -> dict[str, Any]:
        """Settings for confluent-kafka's ``SchemaRegistryClient``."""
        conf: dict[str, Any] = {"url": self.url}
        if self.username:
            conf["basic.auth.user.info"] = f"{self.username}:{self.password or ''}"
        return conf


class _Reader:
    """Typed, checked access to one ``config.ini``."""

    def __init__(self, parser: configparser.ConfigParser, path: Path):
        self.parser = parser
        self.path = path

    def _raw(self, section: str, key: str) -> str:
        if not self.parser.has_section(section):
            raise ConfigError(f"{self.path}: section [{section}] is missing")
        if not self.parser.has_option(section, key):
            raise ConfigError(f"{self.path}: [{section}] has no '{key}'")
        return self.parser.get(section, key).strip()

    def text(self, section: str, key: str, default: str | None = None) -> str | None:
        if default is not None and not self.parser.has_option(section, key):
            return default
        if not self.parser.has_option(section, key):
            return None
        return self._raw(section, key)

    def choice(self, section: str, key: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.text(section, key, default).lower()
        if value not in allowed:
            raise ConfigError(f"{self.path}: [{section}] {key} must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def integer(self, section: str, key: str, minimum: int = 0) -> int:
        raw = self._raw(section, key)
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{self.path}: [{section}] {key} must be a whole number, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{self.path}: [{section}] {key} must be at least {minimum}, got {value}")
        return value

    def number(self, section: str, key: str) -> float:
        raw = self._raw(section, key)
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{self.path}: [{section}] {key} must be a number, got {raw!r}") from None
        if value <= 0:
            raise ConfigError(f"{self.path}: [{section}] {key} must be greater than 0, got {raw}")
        return value


class Settings:
    """Everything L3 Atom reads from its configuration, checked once, up front."""

    def __init__(self, config_path: Path | None = None, env_path: Path | None = None):
        self.config_path = Path(config_path or os.environ.get("L3_ATOM_CONFIG") or DEFAULT_CONFIG_PATH)
        self.env_path = Path(env_path or DEFAULT_ENV_PATH)
        if not self.config_path.exists():
            raise ConfigError(f"configuration file {self.config_path} does not exist")
        load_dotenv(self.env_path, override=False)
        parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
        try:
            parser.read(self.config_path)
        except configparser.Error as exc:
            raise ConfigError(f"{self.config_path}: cannot be parsed: {exc}") from None
        self._reader = _Reader(parser, self.config_path)
        self.profile = os.environ.get("L3_ATOM_PROFILE") or self._reader.text("kafka", "profile", "local")
        profiles = [s[len(PROFILE_PREFIX):] for s in parser.sections() if s.startswith(PROFILE_PREFIX)]
        if self.profile not in profiles:
            raise ConfigError(
                f"{self.config_path}: broker profile {self.profile!r} is not defined; "
                f"known profiles: {', '.join(sorted(profiles))}"
            )
        self.connector = self._connector_settings()
        self.processor = self._processor_settings()
        self.candles = self._candle_settings()
        self.metrics = self._metrics_settings()

    def _connector_settings(self) -> ConnectorSettings:
        r = self._reader
        return ConnectorSettings(
            reconnect_initial_delay_s=r.number("connector", "reconnect_initial_delay_s"),
            reconnect_max_delay_s=r.number("connector", "reconnect_max_delay_s"),
            silence_timeout_s=r.number("connector", "silence_timeout_s"),
            max_frame_bytes=r.integer("connector", "max_frame_bytes", minimum=1),
            symbol_refresh_s=r.number("connector", "symbol_refresh_s")
            if r.text("connector", "symbol_refresh_s") is not None else DEFAULT_SYMBOL_REFRESH_S,
        )

    def _processor_settings(self) -> ProcessorSettings:
        r = self._reader
        return ProcessorSettings(
            app_id=r.text("processor", "app_id", "l3_atom"),
            web_port=r.integer("processor", "web_port", minimum=1),
            web_host=os.environ.get("L3_ATOM_WEB_HOST") or r.text("processor", "web_host", "127.0.0.1"),
        )

    def _metrics_settings(self) -> MetricsSettings:
        r = self._reader
        return MetricsSettings(
            host=os.environ.get(METRICS_HOST_ENV) or r.text("metrics", "host", "127.0.0.1"),
            ports={
                role: r.integer("metrics", f"{role}_port") if r.parser.has_option("metrics", f"{role}_port")
                else default
                for role, default in DEFAULT_METRICS_PORTS.items()
            },
        )

    def _candle_settings(self) -> CandleSettings:
        r = self._reader
        intervals = [name.strip() for name in (r.text("candles", "intervals", "") or "").split(",") if name.strip()]
        return CandleSettings(
            intervals=intervals,
            grace_ms=int(r.number("candles", "grace_s") * MS_PER_S),
            idle_close_ms=int(r.number("candles", "idle_close_s") * MS_PER_S),
        )

    @property
    def kafka(self) -> KafkaSettings:
        """Broker settings; needs ``KAFKA_BOOTSTRAP_SERVERS`` (and SASL credentials where the profile asks)."""
        return self.kafka_at(require_env("KAFKA_BOOTSTRAP_SERVERS", "L3 Atom needs a Kafka broker"))

    def kafka_at(self, bootstrap_servers: str) -> KafkaSettings:
        """The profile's broker settings for a broker the caller names (``l3_atom.kafka_records``)."""
        r = self._reader
        section = PROFILE_PREFIX + self.profile
        protocol = r.text(section, "security_protocol", "PLAINTEXT")
        username = password = None
        if protocol in SASL_PROTOCOLS:
            username = require_env("KAFKA_SASL_KEY", f"the {self.profile!r} profile uses {protocol}")
            password = require_env("KAFKA_SASL_SECRET", f"the {self.profile!r} profile uses {protocol}")

        def own_or(default_section: str, key: str) -> str:
            """The profile's section where it sets ``key`` itself (e.g. 3 replicas on a 3-broker cluster)."""
            return section if r.parser.has_option(section, key) else default_section

        return KafkaSettings(
            bootstrap_servers=bootstrap_servers,
            profile=self.profile,
            num_partitions=r.integer("kafka", "num_partitions", minimum=1),
            num_replications=r.integer(own_or("kafka", "num_replications"), "num_replications", minimum=1),
            session_timeout_ms=r.integer(section, "session_timeout_ms", minimum=1),
            heartbeat_interval_ms=r.integer(section, "heartbeat_interval_ms", minimum=1),
            changelog_max_batch_size=r.integer(section, "changelog_max_batch_size", minimum=1),
            fetch_max_wait_ms=r.integer(section, "fetch_max_wait_ms", minimum=0),
            security_protocol=protocol,
            sasl_mechanism=r.text(section, "sasl_mechanism"),
            sasl_username=username,
            sasl_password=password,
            linger_ms=r.integer(own_or("producer", "linger_ms"), "linger_ms"),
            max_message_bytes=self.max_message_bytes,
            broker_memory_only=r.choice(section, "broker_memory_only", ("false", "true"), "false") == "true",
        )

    @property
    def max_message_bytes(self) -> int:
        """The largest message a broker takes; dead letters cut their original to fit (needs no broker)."""
        return self._reader.integer("producer", "max_message_bytes", minimum=1)

    @property
    def schema_registry(self) -> SchemaRegistrySettings:
        return SchemaRegistrySettings(
            url=os.environ.get("SCHEMA_REGISTRY_URL") or self._reader.text("schema_registry", "url"),
            username=os.environ.get("SCHEMA_REGISTRY_KEY") or None,
            password=os.environ.get("SCHEMA_REGISTRY_SECRET") or None,
        )

    def source(self, name: str) -> dict[str, str]:
        """The ``[name]`` section of a source (endpoints, channels); empty when absent."""
        parser = self._reader.parser
        section = name.replace("-", "_")
        return dict(parser.items(section)) if parser.has_section(section) else {}

    def limit_overrides(self, name: str, known: tuple[str, ...]) -> dict[str, float]:
        """The ``[limits.<name>]`` section: overrides of a source's declared limits, each checked.

        A budget of 0 or less, or an option not in ``known``, is refused with the option's name.
        """
        parser = self._reader.parser
        section = LIMITS_PREFIX + name.replace("-", "_")
        if not parser.has_section(section):
            return {}
        unknown = sorted(set(parser.options(section)) - set(known) - set(parser.defaults()))
        if unknown:
            raise ConfigError(
                f"{self.config_path}: [{section}] has unknown option(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
        return {key: self._reader.number(section, key) for key in known if parser.has_option(section, key)}


def require_env(name: str, why: str) -> str:
    """The value of environment variable ``name``, or a ConfigError that says where to set it."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigError(
            f"{name} is not set ({why}): add it to keys/.env (documented in keys/.env.example) "
            f"or export it in the environment"
        )
    return value
