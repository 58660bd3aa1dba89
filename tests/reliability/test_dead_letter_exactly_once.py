"""Dead letters exactly once across a crash: the process is killed after Kafka acked the
dead-letter copies and before a commit covered them; the next run finds the copies in the
dead-letter topic and does not write them again."""

from __future__ import annotations

import uuid
from collections import Counter
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
    dlq_headers,
    end_offsets,
    identify,
    produce,
    read_all,
    wait_until,
)

pytestmark = pytest.mark.integration

BAD = 5


def _metadata(bootstrap: str, group: str, topic: str) -> tuple[int, str]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        (tp,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        consumer.close()
    return tp.offset, tp.metadata or ""


def test_dead_letters_acked_but_not_committed_before_a_kill_are_not_written_twice(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
) -> None:
    topic = topic_factory(partitions=1)
    dlq = topic_factory(partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    # Inkit is down: the first event stays unfinished, so every commit carries "since" and the
    # bad records behind it are finished above the watermark.
    inkit_simulator.set_faults(Faults(outage_status=503))
    env = connector_env(
        kafka_bootstrap, topic, dlq, inkit_simulator, group, COMMIT_INTERVAL_SECONDS="5"
    )
    first = ConnectorProcess(env, tmp_path, name="first").start()
    produce(kafka_bootstrap, topic, [identify("u0", 0)])

    def committed_with_since() -> bool:
        offset, metadata = _metadata(kafka_bootstrap, group, topic)
        return offset == 0 and decode_metadata(0, metadata).since_ms is not None

    wait_until(committed_with_since, 30, first.log_tail())
    produce(kafka_bootstrap, topic, [], raw=[(f"bad-{i}".encode(), b"") for i in range(BAD)])
    wait_until(lambda: len(read_all(kafka_bootstrap, dlq, timeout_s=3)) == BAD, 30)
    first.kill()  # before the next commit (every 5 s) records them as finished
    offset, metadata = _metadata(kafka_bootstrap, group, topic)
    assert offset == 0
    assert decode_metadata(0, metadata).done == set(), "a commit covered the copies: too slow"

    inkit_simulator.set_faults(Faults())
    second = ConnectorProcess(
        {**env, "COMMIT_INTERVAL_SECONDS": "0.2"}, tmp_path, name="second"
    ).start()
    wait_until(
        lambda: (
            committed(kafka_bootstrap, group, topic, 1) == end_offsets(kafka_bootstrap, topic, 1)
        ),
        60,
        second.log_tail(),
    )
    found = second.metric(
        "inkit_connector_records_total",
        {"outcome": "skipped", "reason": "already_dead_lettered"},
    )
    scans = second.metric("inkit_connector_dead_letter_scans_total", {"result": "ok"})
    assert second.stop() == 0

    copies = Counter(
        int(dlq_headers(record)["inkit.original.offset"])
        for record in read_all(kafka_bootstrap, dlq, timeout_s=3)
    )
    assert copies == Counter({offset: 1 for offset in range(1, BAD + 1)})
    assert found == BAD
    assert scans == 1
    assert "dead letters already written by a previous owner" in second.log_text()
    assert Deliveries.of(inkit_simulator.requests()).unique() == {("u0", 0)}
