"""The demo's Kafka plumbing: create the topics, produce the raw stream, read the dead letters."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

# NewTopic: the documented import path, although the stubs declare it only in cimpl.
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from connector.testing.topics import wait_for_topic

TOPIC_READY_TIMEOUT_S = 30.0


class DemoError(Exception):
    """The demo could not finish; the message says what went wrong and where to look."""


def create_topics(bootstrap: str, topics: Mapping[str, int]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic(name, num_partitions=n, replication_factor=1) for name, n in topics.items()]
    for future in admin.create_topics(new).values():
        future.result(timeout=TOPIC_READY_TIMEOUT_S)
    try:
        for name, n in topics.items():
            wait_for_topic(admin, name, n, TOPIC_READY_TIMEOUT_S)
    except TimeoutError as exc:
        raise DemoError(str(exc)) from None


def produce_raw(bootstrap: str, topic: str, records: list[tuple[bytes, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    failures: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=delivered)
    left = producer.flush(30)
    if left or failures:
        raise DemoError(f"could not produce the raw records: {failures or 'no acknowledgement'}")


def read_dead_letters(bootstrap: str, topic: str) -> list[dict[str, str]]:
    """The ``inkit.*`` headers of every record of the dead-letter topic."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "inkit-connector-demo-dlq-reader",
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in metadata.partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
        headers: list[dict[str, str]] = []
        deadline = time.monotonic() + 20
        while len(headers) < sum(ends.values()) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            raw: Any = msg.headers() or []  # [(name, bytes)] for a consumed record
            headers.append(
                {key: value.decode() for key, value in raw if key.startswith("inkit.") and value}
            )
        return headers
    except KafkaException as exc:
        raise DemoError(f"could not read {topic}: {exc}") from exc
    finally:
        consumer.close()
