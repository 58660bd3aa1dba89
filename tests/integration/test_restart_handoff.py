"""A restart after a stop during an Inkit outage does not wait for an owner that has exited.

The stopping owner announces its drain in the commit metadata ("drain:<deadline>", see
handoff.py) so that a next owner waits for its final commit. When that owner is gone before the
final commit lands (killed, or out of its shutdown budget), the announcement stays until its
deadline and the issue saw a restart wait 17 s for "previous owner is still draining". A member
alone in its group knows nobody drains, and starts at once."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from connector.delivery.offsets import decode_metadata
from connector.testing.inkit_simulator import Faults, InkitSimulator
from tests.integration.harness import (
    ConnectorProcess,
    Deliveries,
    committed,
    connector_env,
    identify,
    produce,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.kafka3]

DRAIN_S = 60  # the announcement lasts DRAIN_S + 10 s: a restart that waited for it times out


def _draining(bootstrap: str, group: str, topic: str) -> bool:
    # committed() of a consumer that never subscribes reads the group's commit without joining.
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        (tp,) = reader.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        reader.close()
    if tp.offset < 0:
        return False
    return decode_metadata(tp.offset, tp.metadata or "").draining_until_ms is not None


def test_a_restart_does_not_wait_for_the_drain_of_an_owner_that_exited(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
) -> None:
    topic, dlq = topic_factory(), topic_factory()
    group = f"g-{uuid.uuid4().hex[:8]}"
    env = connector_env(
        kafka_bootstrap, topic, dlq, inkit_simulator, group, DRAIN_TIMEOUT_SECONDS=str(DRAIN_S)
    )
    produce(kafka_bootstrap, topic, [identify(f"u{i}", i) for i in range(10)])
    first = ConnectorProcess(env, tmp_path, name="first").start()
    wait_until(lambda: committed(kafka_bootstrap, group, topic, 1)[0] == 10, 60, first.log_tail())
    inkit_simulator.set_faults(Faults(outage_status=503))
    produce(kafka_bootstrap, topic, [identify(f"u{i}", 100 + i) for i in range(10)])
    wait_until(lambda: "Inkit unavailable" in first.log_text(), 30, first.log_tail())
    first.signal(signal.SIGTERM)  # the drain waits for the outage: announced, not finished
    wait_until(lambda: _draining(kafka_bootstrap, group, topic), 30, first.log_tail())
    first.kill()  # gone before its final commit: the announcement stays
    inkit_simulator.set_faults(Faults())

    second = ConnectorProcess(env, tmp_path, name="second").start()
    # Well within the announcement's 70 s: the second does not wait it out.
    wait_until(lambda: committed(kafka_bootstrap, group, topic, 1)[0] == 20, 40, second.log_tail())
    assert "its previous owner has left the group; not waiting" in second.log_text()
    assert second.stop(30) == 0
    assert len(Deliveries.of(inkit_simulator.requests()).unique()) == 20
