"""The Schema Registry over TLS with basic auth, as Confluent Cloud serves it: `confluent-avro`
end to end through it (produce registers the schema, run decodes by id) on a SASL_SSL/SCRAM
broker, and one clear line for a wrong registry password and for an untrusted certificate."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.testing.inkit_simulator import InkitSimulator
from connector.testing.kafka_broker import KafkaBroker
from connector.testing.kafka_security import SecurityMode
from connector.testing.schema_registry import SchemaRegistry
from connector.testing.tls_material import TlsFiles
from tests.integration.harness import ConnectorProcess, Deliveries, identify, wait_until
from tests.reliability import Stopwatch, write_figures
from tests.reliability.secure_clients import FAIL_FAST_BOUND_S, cli, new_topics, secure_env

pytestmark = pytest.mark.integration

REGISTRY_USER_INFO = "sr-key:sr-secret-5120"
WRONG_USER_INFO = "sr-key:not-the-secret-0042"
EVENTS = 20


@pytest.fixture
def tls_registry(tls_files: TlsFiles) -> Iterator[SchemaRegistry]:
    """A registry on https://127.0.0.1 with a certificate from the session's throwaway CA."""
    tls = (tls_files.server_cert, tls_files.server_key)
    with SchemaRegistry(basic_auth=REGISTRY_USER_INFO, tls=tls) as registry:
        yield registry


def registry_env(
    broker: KafkaBroker,
    simulator: InkitSimulator,
    registry: SchemaRegistry,
    topic: str,
    *,
    user_info: str = REGISTRY_USER_INFO,
    ca: Path,
) -> dict[str, str]:
    env = secure_env(broker, SecurityMode.SASL_SSL_SCRAM, simulator, topic, f"g-{topic}")
    return {
        **env,
        "KAFKA_VALUE_FORMAT": "confluent-avro",
        "SCHEMA_REGISTRY_URL": registry.url,
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": user_info,
        # httpx, which talks to the registry, trusts the CA file SSL_CERT_FILE names.
        "SSL_CERT_FILE": str(ca),
    }


def test_confluent_avro_end_to_end_through_a_tls_registry_with_basic_auth(
    secure_broker: KafkaBroker,
    tls_files: TlsFiles,
    tls_registry: SchemaRegistry,
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
) -> None:
    assert tls_registry.url.startswith("https://")
    topic = new_topics(secure_broker)
    env = registry_env(secure_broker, inkit_simulator, tls_registry, topic, ca=tls_files.ca)
    events = [identify(f"sr-u{n % 4}", n) for n in range(EVENTS)]
    produced = cli(["produce"], env, stdin="".join(json.dumps(e) + "\n" for e in events))
    assert produced.returncode == 0, produced.stdout + produced.stderr
    checked = cli(["check"], env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"ok   schema registry: reachable at {tls_registry.url}" in checked.stdout

    connector = ConnectorProcess(env, tmp_path, name="tls-registry").start()
    try:
        expected = {(e["traits"]["test_user"], e["traits"]["test_seq"]) for e in events}
        wait_until(
            lambda: expected <= Deliveries.of(inkit_simulator.requests()).unique(),
            60,
            connector.log_tail(),
        )
        assert connector.stop() == 0
    finally:
        if connector.proc is not None and connector.proc.poll() is None:
            connector.kill()
    secret = REGISTRY_USER_INFO.split(":")[1]
    assert secret not in produced.stdout + checked.stdout + connector.log_text()


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("failure", ["wrong-password", "untrusted-certificate"])
def test_registry_failures_give_one_clear_line(
    secure_broker: KafkaBroker,
    tls_files: TlsFiles,
    tls_registry: SchemaRegistry,
    inkit_simulator: InkitSimulator,
    failure: str,
    command: str,
    request: pytest.FixtureRequest,
) -> None:
    topic = new_topics(secure_broker)
    if failure == "wrong-password":
        env = registry_env(
            secure_broker,
            inkit_simulator,
            tls_registry,
            topic,
            user_info=WRONG_USER_INFO,
            ca=tls_files.ca,
        )
        words = "credentials refused"
    else:
        env = registry_env(
            secure_broker, inkit_simulator, tls_registry, topic, ca=tls_files.other_ca
        )
        words = "certificate"
    env["KAFKA_GROUP_ID"] = f"g-{uuid.uuid4().hex[:8]}"
    clock = Stopwatch()
    result = cli([command], env)
    seconds = clock()
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert seconds < FAIL_FAST_BOUND_S
    if command == "check":
        prefix = "FAIL schema registry"
        line = next(line for line in result.stdout.splitlines() if line.startswith(prefix))
    else:
        line = result.stderr.strip().splitlines()[-1]
        assert line.startswith("inkit-connector: schema registry"), output[-2000:]
    assert words in line, output[-2000:]
    assert "sr-secret" not in output
    assert "not-the-secret" not in output
    write_figures(
        request,
        f"registry-failure-{failure}-{command}",
        {"failure": failure, "command": command, "seconds": round(seconds, 2), "line": line},
    )
