"""The AdminClient-based committed-offset reader of handoff.py against the real broker: it
returns the group's offsets with their metadata, which the handoff fence reads."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from connector.delivery.handoff import admin_committed_reader

pytestmark = pytest.mark.integration


def test_the_reader_returns_offsets_with_their_metadata(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, 1, 7, metadata="drain:1700000000000")],
            asynchronous=False,
        )
    finally:
        consumer.close()
    read = admin_committed_reader(AdminClient({"bootstrap.servers": kafka_bootstrap}), group)
    result = read([TopicPartition(topic, 0), TopicPartition(topic, 1)]).result(timeout=10)
    got = {tp.partition: (tp.offset, tp.metadata or "") for tp in result}
    assert got[1] == (7, "drain:1700000000000")
    assert got[0][0] < 0  # nothing committed there
