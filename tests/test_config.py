"""Settings: precise errors for missing variables and wrong values."""

from __future__ import annotations

from pathlib import Path

import pytest

from l3_atom.config import DEFAULT_CONFIG_PATH, ConfigError, Settings


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "L3_ATOM_PROFILE", "KAFKA_SASL_KEY", "KAFKA_SASL_SECRET",
                 "SCHEMA_REGISTRY_URL", "L3_ATOM_CONFIG", "L3_ATOM_WEB_HOST"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def config_with(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULT_CONFIG_PATH.read_text()
    assert old in text
    path = tmp_path / "config.ini"
    path.write_text(text.replace(old, new))
    return path


def test_defaults_load(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    settings = Settings(env_path=tmp_path / "none.env")
    assert settings.profile == "local"
    assert settings.kafka.producer_config()["enable.idempotence"] is True
    assert settings.kafka.producer_config()["acks"] == "all"
    assert settings.connector.max_frame_bytes > 0


def test_missing_bootstrap_names_the_variable_and_the_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = Settings(env_path=tmp_path / "none.env")
    with pytest.raises(ConfigError, match=r"KAFKA_BOOTSTRAP_SERVERS is not set .*keys/.env"):
        settings.kafka  # noqa: B018 - reading the property is the test


def test_env_file_is_read(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("KAFKA_BOOTSTRAP_SERVERS=10.0.0.1:9092\n")
    env.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    assert Settings(env_path=env_file).kafka.bootstrap_servers == "10.0.0.1:9092"


def test_sasl_profile_needs_credentials_and_never_prints_them(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    env.setenv("L3_ATOM_PROFILE", "confluent_cloud")
    with pytest.raises(ConfigError, match="KAFKA_SASL_KEY is not set"):
        Settings(env_path=tmp_path / "none.env").kafka  # noqa: B018
    env.setenv("KAFKA_SASL_KEY", "key")
    env.setenv("KAFKA_SASL_SECRET", "s3cret-value")
    kafka = Settings(env_path=tmp_path / "none.env").kafka
    assert kafka.client_config()["sasl.password"] == "s3cret-value"
    assert "s3cret-value" not in repr(kafka)


def test_wrong_value_names_section_and_key(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    path = config_with(tmp_path, "num_partitions = 4", "num_partitions = four")
    with pytest.raises(ConfigError, match=r"\[kafka\] num_partitions must be a whole number, got 'four'"):
        Settings(config_path=path, env_path=tmp_path / "none.env").kafka  # noqa: B018


def test_unknown_profile(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("L3_ATOM_PROFILE", "kafak")
    with pytest.raises(ConfigError, match="broker profile 'kafak' is not defined; known profiles: "):
        Settings(env_path=tmp_path / "none.env")


def test_web_host_defaults_to_loopback_and_follows_the_environment(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Settings(env_path=tmp_path / "none.env").processor.web_host == "127.0.0.1"
    env.setenv("L3_ATOM_WEB_HOST", "0.0.0.0")
    assert Settings(env_path=tmp_path / "none.env").processor.web_host == "0.0.0.0"


def test_a_profile_may_set_its_own_linger(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tansu's store slows as batches pile up, so the local profile batches longer; other brokers keep [producer]'s."""
    env.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    local = Settings(env_path=tmp_path / "none.env").kafka
    env.setenv("L3_ATOM_PROFILE", "kafka")
    kafka = Settings(env_path=tmp_path / "none.env").kafka
    assert local.producer_config()["linger.ms"] == 10
    assert kafka.producer_config()["linger.ms"] == 5
    env.setenv("L3_ATOM_CONFIG", str(config_with(tmp_path, "linger_ms = 5", "linger_ms = 7")))
    assert Settings(env_path=tmp_path / "none.env").kafka.linger_ms == 7
