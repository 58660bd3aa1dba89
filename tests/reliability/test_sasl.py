"""SASL against the real broker: the `KAFKA_CONFIG_*` passthrough authenticates the consumer and
the dead-letter producer (SASL_PLAINTEXT / PLAIN here; SASL_SSL takes the same keys plus
`ssl.*`), and a wrong password fails fast with one clear line that never shows the password."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from connector.events.encoding import build_encoder
from connector.kafka.consumer import consumer_config, producer_config
from connector.settings import Settings
from connector.testing.inkit_simulator import InkitSimulator
from connector.testing.kafka_broker import KafkaBroker
from tests.fixtures.kafka import create_topic, running_broker
from tests.integration.harness import (
    ConnectorProcess,
    Deliveries,
    connector_env,
    identify,
    wait_until,
)
from tests.reliability import Stopwatch, covered_offsets, write_figures

pytestmark = pytest.mark.integration

PASSWORD = "alice-secret"
WRONG_PASSWORD = "not-alices-password-7731"
FAIL_FAST_BOUND_S = 20.0
EVENTS = 200
PARTITIONS = 2


@pytest.fixture(scope="module")
def sasl_broker() -> Iterator[KafkaBroker]:
    with running_broker(
        KafkaBroker(sasl_plain_users={"alice": PASSWORD}), "the SASL Kafka broker"
    ) as broker:
        yield broker


@pytest.fixture
def sasl_topics(sasl_broker: KafkaBroker) -> tuple[str, str]:
    admin = AdminClient(sasl_broker.client_config())
    topic = f"sasl-{uuid.uuid4().hex[:8]}"
    create_topic(admin, topic, PARTITIONS)
    create_topic(admin, f"{topic}.dlq", 1)
    return topic, f"{topic}.dlq"


def sasl_env(password: str) -> dict[str, str]:
    return {
        "KAFKA_CONFIG_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_CONFIG_SASL_MECHANISM": "PLAIN",
        "KAFKA_CONFIG_SASL_USERNAME": "alice",
        "KAFKA_CONFIG_SASL_PASSWORD": password,
    }


def produce_as_alice(broker: KafkaBroker, topic: str, events: int) -> set[tuple[str, int]]:
    encoder = build_encoder("avro")
    producer = Producer({**broker.client_config("alice"), "linger.ms": 5, "acks": "all"})
    sent = set()
    for n in range(events):
        event = identify(f"user-{n % 20}", n)
        producer.produce(topic, key=event["userId"].encode(), value=encoder.encode(event))
        sent.add((event["userId"], n))
    assert producer.flush(30) == 0
    return sent


def test_sasl_plain_delivers_end_to_end(
    sasl_broker: KafkaBroker,
    sasl_topics: tuple[str, str],
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
) -> None:
    topic, dlq = sasl_topics
    sent = produce_as_alice(sasl_broker, topic, EVENTS)
    group = f"g-{uuid.uuid4().hex[:8]}"
    env = connector_env(
        sasl_broker.bootstrap_servers, topic, dlq, inkit_simulator, group, **sasl_env(PASSWORD)
    )
    connector = ConnectorProcess(env, tmp_path, name="sasl").start()
    try:
        wait_until(
            lambda: sent <= Deliveries.of(inkit_simulator.requests()).unique(),
            60,
            connector.log_tail,  # the log at the timeout (a CI run failed here with none)
        )

        def committed_to_the_end() -> bool:
            coverage = covered_offsets(
                sasl_broker.bootstrap_servers,
                group,
                topic,
                PARTITIONS,
                **sasl_broker.client_config("alice"),
            )
            return sum(offset for offset, _ in coverage.values()) == EVENTS

        wait_until(committed_to_the_end, 30, connector.log_tail())
        assert connector.stop() == 0
    finally:
        if connector.proc is not None and connector.proc.poll() is None:
            connector.kill()
    assert PASSWORD not in connector.log_text()
    assert "[REDACTED]" in connector.log_text()  # the effective config was logged, masked


@pytest.mark.parametrize("command", ["run", "check"])
def test_a_wrong_password_fails_fast_with_one_clear_line(
    sasl_broker: KafkaBroker,
    sasl_topics: tuple[str, str],
    inkit_simulator: InkitSimulator,
    command: str,
    request: pytest.FixtureRequest,
) -> None:
    topic, dlq = sasl_topics
    env = {
        **os.environ,
        **connector_env(
            sasl_broker.bootstrap_servers,
            topic,
            dlq,
            inkit_simulator,
            "g-wrong",
            **sasl_env(WRONG_PASSWORD),
        ),
        "METRICS_HOST": "127.0.0.1",
        "METRICS_PORT": "0",
    }
    clock = Stopwatch()
    result = subprocess.run(
        [sys.executable, "-m", "connector", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    seconds = clock()
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert seconds < FAIL_FAST_BOUND_S
    assert WRONG_PASSWORD not in output
    assert PASSWORD not in output
    if command == "run":
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("inkit-connector:"), last
    else:
        last = next(line for line in result.stdout.splitlines() if line.startswith("FAIL kafka"))
    assert "authentication" in last.lower(), output[-2000:]
    write_figures(
        request,
        f"sasl-wrong-password-{command}",
        {"command": command, "exit_code": result.returncode, "seconds": seconds, "line": last},
    )


def test_sasl_ssl_settings_pass_through_to_both_clients_and_are_masked() -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "broker.example:9093",
        "KAFKA_TOPIC": "identify",
        "INKIT_API_KEY": "k",
        "KAFKA_VALUE_FORMAT": "avro",
        "KAFKA_CONFIG_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_CONFIG_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_CONFIG_SASL_USERNAME": "svc-inkit",
        "KAFKA_CONFIG_SASL_PASSWORD": "scram-pass-5521",
        "KAFKA_CONFIG_SSL_CA_LOCATION": "/etc/ssl/kafka-ca.pem",
    }
    settings = Settings.from_env(env)
    expected = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc-inkit",
        "sasl.password": "scram-pass-5521",
        "ssl.ca.location": "/etc/ssl/kafka-ca.pem",
    }
    for conf in (consumer_config(settings, print), producer_config(settings, print)):
        assert expected.items() <= conf.items()
    assert "scram-pass-5521" not in str(settings.redacted())
    assert "scram-pass-5521" not in repr(settings)
