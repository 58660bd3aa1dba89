"""The first hour of a new user, through the real CLI (and the real broker where Kafka is
involved): every start-up mistake is one line with exit 2 (configuration) or 1 (environment),
misspelled variables are named, `check` catches a wrong URL and a wrong KAFKA_VALUE_FORMAT,
`produce` says why, a dry run words its log as a dry run, outages show in the logs, and the
runbook's grep commands find what they promise in real log output."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from connector.testing.inkit_simulator import Faults, InkitSimulator
from connector.testing.schema_registry import SchemaRegistry
from tests.integration.harness import (
    ConnectorProcess,
    connector_env,
    identify,
    produce,
    wait_until,
)
from tests.integration.test_cli import ENV, assert_one_clear_line, cli

pytestmark = pytest.mark.integration

RUN_ENV = {**ENV, "INKIT_API_KEY": "k"}


KAFKA_REFUSED = [
    # A typo in a passthrough property (the issue's `..._PROTOCAL`).
    ({"KAFKA_CONFIG_SECURITY_PROTOCAL": "SSL"}, ["security.protocal", "KAFKA_CONFIG_"]),
    # An unreadable CA file for Kafka's TLS.
    (
        {"KAFKA_CONFIG_SECURITY_PROTOCOL": "SSL", "KAFKA_CONFIG_SSL_CA_LOCATION": "/nope.pem"},
        ["ssl.ca.location", "KAFKA_CONFIG_"],
    ),
]
# An unreadable CA bundle for Inkit: before, the sender thread died and the process stayed up,
# /readyz 503 for ever. Only `run` talks to Inkit.
INKIT_REFUSED = ({"INKIT_CA_BUNDLE": "/nope.pem"}, ["INKIT_CA_BUNDLE=/nope.pem", "No such file"])


@pytest.mark.parametrize(
    ("command", "extra", "words"),
    [
        *[("run", extra, words) for extra, words in KAFKA_REFUSED],
        *[("produce", extra, words) for extra, words in KAFKA_REFUSED],
        ("run", *INKIT_REFUSED),
    ],
)
def test_a_refused_setting_is_one_configuration_line(
    command: str, extra: dict[str, str], words: list[str]
) -> None:
    assert_one_clear_line(cli(command, env={**RUN_ENV, **extra}), 2, "configuration", *words)


def test_check_reports_an_unreadable_ca_bundle_without_a_traceback(kafka_bootstrap: str) -> None:
    env = {**RUN_ENV, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "INKIT_CA_BUNDLE": "/nope.pem"}
    result = cli("check", env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "FAIL inkit: INKIT_CA_BUNDLE=/nope.pem: No such file or directory" in result.stdout


def test_a_busy_metrics_port_is_one_line(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory()
    topic_factory(name=f"{topic}.dlq")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            **RUN_ENV,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "KAFKA_TOPIC": topic,
            "METRICS_HOST": "127.0.0.1",
            "METRICS_PORT": str(port),
        }
        assert_one_clear_line(cli("run", env=env), 1, f"127.0.0.1:{port}", "METRICS_PORT")


def test_a_misspelled_variable_is_named_with_the_closest_setting() -> None:
    result = cli(
        "preview",
        env={"INKIT_MAX_INFLIGHT": "8", "KAFKA_TOPICS": "x", "INKIT_COLOUR": "blue"},
        stdin="",
    )
    assert result.returncode == 0
    lines = result.stderr.splitlines()
    assert (
        "inkit-connector: warning: INKIT_MAX_INFLIGHT is not a setting and is ignored; "
        "did you mean INKIT_MAX_IN_FLIGHT?"
    ) in lines
    assert any("KAFKA_TOPICS" in line and "did you mean KAFKA_TOPIC?" in line for line in lines)
    assert any(line.endswith("INKIT_COLOUR is not a setting and is ignored") for line in lines)
    assert "blue" not in result.stderr  # names only, never values


def test_produce_to_a_missing_topic_says_so_before_registering_anything(
    kafka_bootstrap: str, schema_registry: SchemaRegistry
) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC": f"missing-{uuid.uuid4().hex[:8]}",
        "SCHEMA_REGISTRY_URL": schema_registry.url,
    }
    event = json.dumps(identify("u1", 1))
    assert_one_clear_line(
        cli("produce", env=env, stdin=event + "\n"), 1, "does not exist", "KAFKA_TOPIC"
    )
    assert httpx.get(schema_registry.url + "/subjects").json() == []


def test_produce_says_why_a_record_failed(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory()
    big = identify("u1", 1, blob="x" * 2_000_000)  # over the broker's message.max.bytes
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC": topic,
        "KAFKA_VALUE_FORMAT": "json",
        "KAFKA_CONFIG_MESSAGE_MAX_BYTES": "3000000",  # let the client send it: the broker refuses
    }
    result = cli("produce", env=env, stdin=json.dumps(identify("u0", 0)) + "\n" + json.dumps(big))
    assert result.returncode == 1, result.stderr
    assert "produced 1 record(s)" in result.stdout
    assert "1 failed (1 × " in result.stdout
    assert "too large" in result.stdout.lower()


def test_check_fails_on_an_inkit_url_that_answers_404(
    kafka_bootstrap: str, topic_factory: Callable[..., str], inkit_simulator: InkitSimulator
) -> None:
    topic = topic_factory()
    topic_factory(name=f"{topic}.dlq")
    env = {
        **RUN_ENV,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC": topic,
        "INKIT_API_URL": inkit_simulator.base_url + "/integrations/webhok",
    }
    result = cli("check", env=env)
    assert result.returncode == 1
    assert "FAIL inkit:" in result.stdout
    assert "answers 404 Not Found: check INKIT_API_URL" in result.stdout
    env["INKIT_API_URL"] = inkit_simulator.webhook_url
    assert "ok   inkit" in cli("check", env=env).stdout


def test_check_names_the_format_the_topic_records_look_like(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    avro_topic, json_topic = topic_factory(partitions=2), topic_factory()
    for topic in (avro_topic, json_topic):
        topic_factory(name=f"{topic}.dlq")
    produce(kafka_bootstrap, avro_topic, [identify(f"u{i}", i) for i in range(30)], fmt="avro")
    produce(kafka_bootstrap, json_topic, [identify(f"u{i}", i) for i in range(5)], fmt="json")
    base = {**RUN_ENV, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}

    # The disaster: an Avro topic read as json.
    result = cli("check", env={**base, "KAFKA_TOPIC": avro_topic, "KAFKA_VALUE_FORMAT": "json"})
    assert result.returncode == 1
    assert (
        "FAIL records: 20 of the latest 20 do not decode as json (invalid_json); they look like "
        "bare Avro (no header): set KAFKA_VALUE_FORMAT=avro"
    ) in result.stdout
    # The reverse, which used to say only "magic byte is 123".
    result = cli(
        "check",
        env={
            **base,
            "KAFKA_TOPIC": json_topic,
            "KAFKA_VALUE_FORMAT": "confluent-avro",
            "SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{_closed_port()}",
        },
    )
    assert "they look like JSON: set KAFKA_VALUE_FORMAT=json" in result.stdout
    # (The right format passing: test_local_up.py.)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_dry_run_words_its_log_as_a_dry_run(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
) -> None:
    topic, dlq = topic_factory(), topic_factory()
    produce(
        kafka_bootstrap,
        topic,
        [identify(f"u{i}", i) for i in range(300)],
        raw=[(b"bad", b"\x01not avro")],
    )
    env = connector_env(
        kafka_bootstrap,
        topic,
        dlq,
        inkit_simulator,
        f"g-{uuid.uuid4().hex[:8]}",
        MAX_UNCOMMITTED_RECORDS="50",  # a dry run commits nothing: this cap must not stop it
    )
    del env["INKIT_API_KEY"]
    connector = ConnectorProcess(env, tmp_path, name="dry").start("--dry-run")
    wait_until(lambda: "dry run: would dead-letter" in connector.log_text(), 60)
    wait_until(lambda: connector.log_text().count("dry run: would POST") == 300, 60)
    assert connector.stop(30) == 0
    log = connector.log_text()
    assert "ERROR" not in log
    assert "dead-lettering" not in log
    assert "until a commit lands" not in log
    assert inkit_simulator.requests() == []


def test_an_outage_is_logged_and_the_runbook_greps_find_it(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
) -> None:
    topic, dlq = topic_factory(), topic_factory()
    env = connector_env(
        kafka_bootstrap, topic, dlq, inkit_simulator, f"g-{uuid.uuid4().hex[:8]}", LOG_FORMAT="json"
    )
    connector = ConnectorProcess(env, tmp_path, name="outage").start()
    connector.wait_ready(60)
    inkit_simulator.set_faults(Faults(outage_status=503, outage_until=time.time() + 1.5))
    produce(kafka_bootstrap, topic, [identify("u1", 1)], raw=[(b"bad", b"\x01not avro")])
    wait_until(lambda: "Inkit answers again" in connector.log_text(), 60, connector.log_tail())
    connector.signal(signal.SIGTERM)
    assert connector.wait(30) == 0
    entries = [json.loads(line) for line in connector.log_text().splitlines() if line.strip()]
    start = next(e for e in entries if e["msg"].startswith("Inkit unavailable ("))
    assert start["level"] == "warning"
    assert (start["topic"], start["partition"], start["reason"]) == (topic, 0, "server_error")
    assert sum(e["msg"].startswith("Inkit unavailable (") for e in entries) == 1  # not per retry
    dead = next(e for e in entries if e["msg"].startswith("dead-lettering"))
    assert (dead["topic"], dead["partition"], dead["offset"]) == (topic, 0, 1)
    assert dead["reason"] in ("invalid_avro", "truncated")

    # The runbook's own commands, on this log.
    def grep(pattern: str) -> list[str]:
        found = subprocess.run(
            ["grep", pattern, str(connector.log_path)], capture_output=True, text=True, check=False
        )
        return found.stdout.splitlines()

    assert any("Inkit unavailable (" in line for line in grep('"partition": 0'))
    assert any("dead-lettering" in line for line in grep('"partition": 0'))
    assert grep("Inkit unavailable (")
