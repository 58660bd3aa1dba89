"""Issue #13 on the project's real broker: the two librdkafka facts the fixes and the fakes rely
on, and the fixes themselves where a real client is what matters.

- A partition paused by the application stays paused across unassign and a later assign
  (defect 2): a member that gets it back fetches nothing until ``resume``; resuming it inside
  the revoke callback (what Processor._forget does) lets it be fetched again.
- A message over the producer's ``message.max.bytes`` is refused inside ``produce()`` with
  MSG_SIZE_TOO_LARGE, not in the delivery report (defect 4); DeadLetterQueue then writes the
  copy without its value, and Kafka acks it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from prometheus_client import CollectorRegistry

from connector.errors import DecodeError
from connector.kafka.dlq import DeadLetterQueue
from connector.observability.metrics import Metrics

pytestmark = pytest.mark.integration

# Long enough for a fetch to come back many times over on loopback (fetch.wait.max.ms is
# 500 ms by default), so "nothing arrived" means the partition is not being fetched.
ABSENCE_WINDOW_S = 4.0
ARRIVAL_TIMEOUT_S = 30.0


def _consumer(bootstrap: str, group: str, protocol: str) -> Consumer:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "group.protocol": protocol,
    }
    if protocol == "classic":
        config["partition.assignment.strategy"] = "cooperative-sticky"
    return Consumer(config)


def _first_record(consumer: Consumer, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for msg in consumer.consume(10, 0.2):
            if msg.error() is None:
                return msg
    return None


@pytest.mark.parametrize("protocol", ["consumer", "classic"])
@pytest.mark.parametrize("resume_on_revoke", [False, True])
def test_a_pause_survives_reassignment_unless_resumed_on_revoke(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    protocol: str,
    resume_on_revoke: bool,
) -> None:
    topic = topic_factory(partitions=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(20):
        producer.produce(topic, value=str(i).encode())
    assert producer.flush(10) == 0
    revoked: list[int] = []
    consumer = _consumer(kafka_bootstrap, f"g-{uuid.uuid4().hex}", protocol)

    def on_revoke(c: Consumer, partitions: list[TopicPartition]) -> None:
        revoked.extend(tp.partition for tp in partitions)
        if resume_on_revoke:
            c.resume(partitions)  # what Processor._forget does for a partition it paused

    try:
        consumer.subscribe([topic], on_revoke=on_revoke)
        assert _first_record(consumer, ARRIVAL_TIMEOUT_S) is not None
        consumer.pause([TopicPartition(topic, 0)])
        consumer.unsubscribe()  # the revoke callback runs from here or the next consume
        deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
        while not revoked and time.monotonic() < deadline:
            consumer.consume(10, 0.2)
        assert revoked == [0]
        consumer.subscribe([topic], on_revoke=on_revoke)  # the same member gets it back
        got = _first_record(consumer, ABSENCE_WINDOW_S if not resume_on_revoke else 30.0)
        if resume_on_revoke:
            assert got is not None, "resumed on revoke, yet not fetched after reassignment"
        else:
            # librdkafka kept the application's pause flag across unassign and assign.
            assert got is None
            consumer.resume([TopicPartition(topic, 0)])
            assert _first_record(consumer, ARRIVAL_TIMEOUT_S) is not None
    finally:
        consumer.close()


def test_a_dead_letter_copy_over_the_producers_limit_goes_without_its_value(
    kafka_bootstrap: str, topic_factory: Callable[..., str], admin: AdminClient
) -> None:
    source = topic_factory(partitions=1)
    dlq = topic_factory(partitions=1)
    big = 1_200_000  # over the default message.max.bytes (1,000,000) of the DLQ producer
    entry = ConfigEntry("max.message.bytes", "2000000", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource("topic", source, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=15)
    writer = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 2_000_000})
    writer.produce(source, key=b"u1", value=b"x" * big)
    assert writer.flush(15) == 0
    reader = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"g-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    reader.subscribe([source])
    record = _first_record(reader, ARRIVAL_TIMEOUT_S)
    reader.close()
    assert record is not None
    assert len(record.value()) == big

    dlq_producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    # The librdkafka fact: produce() itself refuses it, with MSG_SIZE_TOO_LARGE.
    with pytest.raises(KafkaException) as refused:
        dlq_producer.produce(dlq, value=record.value())
    assert refused.value.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE

    outcome: list[bool] = []
    queue = DeadLetterQueue(dlq_producer, dlq, Metrics(CollectorRegistry()), group_id="g")
    queue.send(record, DecodeError("too large", reason="too_large"), outcome.append)
    deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
    while not outcome and time.monotonic() < deadline:
        queue.poll(0.2)
    assert outcome == [True]  # acked once, not retried every second forever

    check = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"g-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    check.subscribe([dlq])
    copy = _first_record(check, ARRIVAL_TIMEOUT_S)
    check.close()
    assert copy is not None
    assert copy.value() is None
    headers = dict(copy.headers())
    assert headers["inkit.value.omitted"] == b"too_large"
    assert headers["inkit.original.offset"] == b"0"
