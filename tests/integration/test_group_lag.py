"""The broker-side group lag (connector/kafka/group_lag.py) against the real broker: every
partition of the topic, owned or not, committed or not, and a failed read clears the gauges."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry

from connector.kafka.group_lag import GroupLagMonitor, PartitionLag, read_group_lag
from connector.observability.metrics import Metrics

pytestmark = pytest.mark.integration


def _produce(bootstrap: str, topic: str, counts: dict[int, int]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition, count in counts.items():
        for i in range(count):
            producer.produce(topic, value=f"r{i}".encode(), partition=partition)
    assert producer.flush(30) == 0


def _commit(bootstrap: str, group: str, offsets: list[TopicPartition]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


def test_lag_counts_from_the_commit_or_from_the_log_start(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=3)
    group = f"g-{uuid.uuid4().hex[:8]}"
    _produce(kafka_bootstrap, topic, {0: 5, 1: 3})
    _commit(kafka_bootstrap, group, [TopicPartition(topic, 0, 2)])
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})

    assert read_group_lag(admin, group, topic) == [
        PartitionLag(partition=0, committed=2, end=5, lag=3),
        PartitionLag(partition=1, committed=None, end=3, lag=3),  # never committed: from start
        PartitionLag(partition=2, committed=None, end=0, lag=0),
    ]


def test_the_monitor_exports_the_gauges_and_clears_them_on_failure(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    _produce(kafka_bootstrap, topic, {0: 4, 1: 2})
    _commit(kafka_bootstrap, group, [TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 1)])
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})

    def sample(name: str, partition: str) -> float | None:
        labels = {"topic": topic, "partition": partition}
        return registry.get_sample_value(f"inkit_connector_{name}", labels)

    assert GroupLagMonitor(admin, group, topic, metrics).read_once()
    assert [sample("group_lag_records", p) for p in ("0", "1")] == [0.0, 1.0]
    assert [sample("group_committed_offset", p) for p in ("0", "1")] == [4.0, 1.0]

    # A topic the broker does not know: the read fails, is counted, and leaves no stale numbers.
    missing = GroupLagMonitor(admin, group, f"missing-{uuid.uuid4().hex[:8]}", metrics)
    assert not missing.read_once()
    assert sample("group_lag_records", "1") is None
    assert sample("group_committed_offset", "0") is None
    failed = registry.get_sample_value(
        "inkit_connector_group_lag_reads_total", {"result": "failed"}
    )
    assert failed == 1.0
