"""The command line as a user meets it: complete --help, one clear line and a non-zero exit for
every mistake a user can make, `check`, `preview` and `produce` against the real services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping

import pytest

from connector.settings import SETTINGS
from connector.testing.inkit_simulator import InkitSimulator
from connector.testing.schema_registry import SchemaRegistry
from tests.integration.harness import free_port, read_all

pytestmark = pytest.mark.integration


def cli(
    *args: str, env: Mapping[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "INKIT_", "SCHEMA_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        env={**base, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize("command", ["run", "check", "preview", "produce"])
def test_every_command_has_a_complete_help(command: str) -> None:
    result = cli(command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: inkit-connector " + command)
    if command != "preview":
        for setting in SETTINGS:
            assert setting.name in result.stdout  # the configuration is documented where used


def test_version_and_top_level_help() -> None:
    assert cli("--version").stdout.startswith("inkit-connector ")
    top = cli("--help").stdout
    for command in ("run", "check", "preview", "produce"):
        assert command in top


ENV = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "KAFKA_TOPIC": "t", "KAFKA_VALUE_FORMAT": "avro"}


def test_a_missing_key_is_a_configuration_error() -> None:
    assert_one_clear_line(cli("run", env=ENV), 2, "INKIT_API_KEY is required")


def test_a_wrong_value_format_is_a_configuration_error() -> None:
    env = {**ENV, "INKIT_API_KEY": "k", "KAFKA_VALUE_FORMAT": "protobuf"}
    assert_one_clear_line(cli("run", env=env), 2, "KAFKA_VALUE_FORMAT must be one of")


def test_an_unreachable_broker_says_what_to_check() -> None:
    env = {**ENV, "INKIT_API_KEY": "k", "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    assert_one_clear_line(cli("run", env=env), 1, "cannot reach Kafka", "KAFKA_BOOTSTRAP_SERVERS")


def test_a_missing_topic_says_what_to_create(kafka_bootstrap: str) -> None:
    env = {
        **ENV,
        "INKIT_API_KEY": "k",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC": "no-such-topic",
    }
    assert_one_clear_line(cli("run", env=env), 1, "'no-such-topic' does not exist", "KAFKA_TOPIC")


def test_an_unreachable_registry_says_what_to_check(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory()
    topic_factory(name=f"{topic}.dlq")
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC": topic,
        "INKIT_API_KEY": "k",
        "SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{free_port()}",
    }
    assert_one_clear_line(cli("run", env=env), 1, "schema registry", "SCHEMA_REGISTRY_URL")


def test_check_reports_every_dependency_and_redacts_secrets(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    inkit_simulator: InkitSimulator,
    schema_registry: SchemaRegistry,
) -> None:
    topic = topic_factory(partitions=3)
    topic_factory(name=f"{topic}.dlq")
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC": topic,
        "SCHEMA_REGISTRY_URL": schema_registry.url,
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "user:registry-secret",
        "INKIT_API_KEY": "very-secret-key",
        "INKIT_API_URL": inkit_simulator.webhook_url,
        "KAFKA_CONFIG_SASL_PASSWORD": "kafka-secret",
        "KAFKA_CONFIG_SECURITY_PROTOCOL": "PLAINTEXT",
    }
    result = cli("check", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    for line in (
        "ok   kafka",
        "ok   topic",
        "(3 partitions)",
        "ok   dead-letter topic",
        "ok   group protocol",
        "consumer: the brokers enable it",  # Kafka 4.1: KIP-848
        "ok   schema registry",
        "ok   inkit",
        f"ok   sent-ledger: {topic}.sent does not exist yet: `run` creates it",
        "ok   ambiguous sends: resend: a request that may have reached Inkit",
    ):
        assert line in result.stdout
    for secret in ("very-secret-key", "registry-secret", "kafka-secret"):
        assert secret not in result.stdout + result.stderr
    assert json.loads(result.stdout[: result.stdout.index("\n}") + 2])["KAFKA_TOPIC"] == topic


def test_preview_shows_the_request_with_the_key_redacted() -> None:
    event = {
        "type": "identify",
        "userId": "u1",
        "traits": {"template_id": "tmpl_1", "first_name": "Nick"},
    }
    page = {"type": "page", "userId": "u1"}
    result = cli(
        "preview",
        env={"INKIT_API_KEY": "very-secret-key"},
        stdin=json.dumps(event) + "\n" + json.dumps(page) + "\n",
    )
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["method"] == "POST"
    assert first["body"]["template_id"] == "tmpl_1"
    assert first["body"]["api_token"] == "[REDACTED]"
    assert "very-secret-key" not in result.stdout
    assert second["skip"] == "not_identify"


def test_produce_encodes_with_the_registry_and_reports(
    kafka_bootstrap: str, topic_factory: Callable[..., str], schema_registry: SchemaRegistry
) -> None:
    topic = topic_factory(partitions=2)
    lines = "\n".join(
        json.dumps({"type": "identify", "userId": f"u{i}", "traits": {"template_id": "t"}})
        for i in range(5)
    )
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC": topic,
        "SCHEMA_REGISTRY_URL": schema_registry.url,
    }
    result = cli("produce", env=env, stdin=lines + "\nnot json\n")
    assert result.returncode == 1  # one line was invalid: said, by number, never by content
    assert "produced 5 record(s)" in result.stdout
    assert "skipped line 6" in result.stdout
    records = read_all(kafka_bootstrap, topic)
    assert len(records) == 5
    assert all(r.value()[0] == 0 for r in records)  # Confluent wire format: magic byte 0
    assert {r.key() for r in records} == {f"u{i}".encode() for i in range(5)}


def test_check_refuses_a_sent_ledger_topic_that_is_not_compacted(
    kafka_bootstrap: str, topic_factory: Callable[..., str], inkit_simulator: InkitSimulator
) -> None:
    topic = topic_factory(partitions=1)
    topic_factory(name=f"{topic}.dlq")
    topic_factory(name=f"{topic}.sent")  # the broker's default cleanup.policy: delete
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC": topic,
        "KAFKA_VALUE_FORMAT": "json",
        "INKIT_API_KEY": "k",
        "INKIT_API_URL": inkit_simulator.webhook_url,
    }
    result = cli("check", env=env)
    assert result.returncode != 0
    assert "cleanup.policy=delete: it must be compact" in result.stdout
    assert_one_clear_line(cli("run", env=env), 1, "sent-ledger", "cleanup.policy=delete")
