"""Helpers of the security tests: the CLI as a subprocess, the connector's environment for one
listener of the secured broker, and fresh topics on it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from confluent_kafka.admin import AdminClient

from connector.testing.inkit_simulator import InkitSimulator
from connector.testing.kafka_broker import KafkaBroker
from connector.testing.kafka_security import SecurityMode, client_settings_env
from tests.fixtures.kafka import create_topic
from tests.integration.harness import connector_env

# "Fast": librdkafka reports a refused handshake within a second; this leaves room for a
# loaded CI machine and the interpreter start.
FAIL_FAST_BOUND_S = 20.0


def cli(
    command: list[str], env: dict[str, str], stdin: str = "", timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", *command],
        env={**os.environ, "METRICS_HOST": "127.0.0.1", "METRICS_PORT": "0", **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def secure_env(
    broker: KafkaBroker,
    mode: SecurityMode,
    simulator: InkitSimulator,
    topic: str,
    group: str,
    **client: str,
) -> dict[str, str]:
    """The connector's environment for the ``mode`` listener, ``client`` overriding settings."""
    config = {
        str(k): str(v)
        for k, v in broker.secure_client_config(mode).items()
        if k != "bootstrap.servers"
    }
    config.update(client)
    config = {k: v for k, v in config.items() if v}  # "" removes a setting
    env = connector_env(broker.address(mode), topic, f"{topic}.dlq", simulator, group)
    return {**env, **client_settings_env(config)}


def new_topics(broker: KafkaBroker) -> str:
    admin = AdminClient(broker.client_config())  # the PLAINTEXT listener: test setup only
    topic = f"sec-{uuid.uuid4().hex[:8]}"
    create_topic(admin, topic, 2)
    create_topic(admin, f"{topic}.dlq", 1)
    return topic
