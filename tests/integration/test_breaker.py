"""The circuit breaker through the real CLI and the real broker: a systemic failure (a wrong
KAFKA_VALUE_FORMAT, Inkit rejecting every request) pauses delivery instead of emptying the topic
into the dead-letter topic; a delivered probe resumes it; an operator can dead-letter anyway."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from connector.testing.inkit_simulator import Faults, InkitSimulator
from tests.integration.harness import (
    ConnectorProcess,
    Deliveries,
    committed,
    connector_env,
    identify,
    produce,
    read_all,
    wait_until,
)

pytestmark = pytest.mark.integration

EVENTS = 60
TRIP_AT = 20  # BREAKER_MIN_FAILURES' default: the 20th failure of one reason is held


def test_a_wrong_value_format_pauses_instead_of_dead_lettering_the_topic(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
) -> None:
    topic, dlq = topic_factory(), topic_factory()
    group = f"g-{uuid.uuid4().hex[:8]}"
    produce(kafka_bootstrap, topic, [identify(f"u{i}", i) for i in range(EVENTS)], fmt="avro")
    # The mistake: an Avro topic read as JSON.
    env = connector_env(
        kafka_bootstrap, topic, dlq, inkit_simulator, group, KAFKA_VALUE_FORMAT="json"
    )
    connector = ConnectorProcess(env, tmp_path, name="paused").start()
    wait_until(lambda: "circuit breaker open" in connector.log_text(), 60, connector.log_tail())
    wait_until(lambda: connector.metric("inkit_connector_breaker_open") == 1, 10)
    wait_until(lambda: committed(kafka_bootstrap, group, topic, 1)[0] == TRIP_AT - 1, 30)
    readyz = connector.get("/readyz")
    assert readyz is not None
    assert readyz.status_code == 503
    assert "circuit breaker" in readyz.text
    line = next(x for x in connector.log_text().splitlines() if "circuit breaker open" in x)
    assert "invalid_json" in line
    assert "look like bare Avro" in line  # the likely cause, named
    assert f"{topic}[0]@{TRIP_AT - 1}" in line  # the first held record
    assert connector.metric("inkit_connector_breaker_trips_total", {"reason": "invalid_json"}) == 1
    assert len(read_all(kafka_bootstrap, dlq, timeout_s=3)) == TRIP_AT - 1  # not the whole topic

    # Stopping while held: the drain would wait for the held records; a second SIGTERM stops at
    # once (exit 130) and commits nothing past the first held record.
    connector.signal(signal.SIGTERM)
    wait_until(lambda: "send it again to stop at once" in connector.log_text(), 10)
    connector.signal(signal.SIGTERM)
    assert connector.wait(30) == 130
    assert "stopping at once" in connector.log_text()
    assert committed(kafka_bootstrap, group, topic, 1)[0] == TRIP_AT - 1

    # The operator decides the records are garbage: dead-letter them anyway.
    env["BREAKER_ACTION"] = "dead-letter"
    anyway = ConnectorProcess(env, tmp_path, name="anyway").start()
    wait_until(lambda: committed(kafka_bootstrap, group, topic, 1)[0] == EVENTS, 60)
    assert "does not pause (BREAKER_ACTION=dead-letter" in anyway.log_text()
    assert anyway.stop(30) == 0
    assert len(read_all(kafka_bootstrap, dlq, timeout_s=3)) == EVENTS


def test_a_delivered_probe_resumes_after_inkit_rejected_every_request(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
) -> None:
    topic, dlq = topic_factory(), topic_factory()
    group = f"g-{uuid.uuid4().hex[:8]}"
    # An Inkit-side change makes every request fail with 422 ...
    inkit_simulator.set_faults(Faults(outage_status=422))
    produce(kafka_bootstrap, topic, [identify(f"u{i}", i) for i in range(EVENTS)])
    env = connector_env(kafka_bootstrap, topic, dlq, inkit_simulator, group)
    connector = ConnectorProcess(env, tmp_path, name="probe").start()
    wait_until(lambda: "circuit breaker open" in connector.log_text(), 60, connector.log_tail())
    assert "Inkit rejects every request (http_422)" in connector.log_text()
    # ... and is fixed: the next probe (5 s after the trip) is delivered and releases the rest.
    inkit_simulator.set_faults(Faults())
    wait_until(lambda: committed(kafka_bootstrap, group, topic, 1)[0] == EVENTS, 60)
    assert "circuit breaker closed" in connector.log_text()
    assert connector.metric("inkit_connector_breaker_open") == 0
    connector.wait_ready(10)
    assert connector.stop(30) == 0
    dead = len(read_all(kafka_bootstrap, dlq, timeout_s=3))
    assert dead == TRIP_AT - 1  # those before the trip; none after it
    assert len(Deliveries.of(inkit_simulator.requests()).unique()) == EVENTS - dead
