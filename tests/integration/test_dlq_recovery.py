"""DeadLetterScanner against the real broker: it finds exactly this group's copies of this
topic's uncommitted offsets written since a given instant, on every dead-letter partition."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer

from connector.errors import DeadLetterScanError
from connector.kafka.dlq_recovery import MARGIN_MS, DeadLetterScanner

pytestmark = [pytest.mark.integration, pytest.mark.kafka3]


def _copy(
    producer: Producer,
    dlq: str,
    partition: int,
    origin: tuple[str, int, int],
    *,
    group: str | None,
    timestamp_ms: int,
) -> None:
    topic, source_partition, offset = origin
    headers = [
        ("inkit.original.topic", topic.encode()),
        ("inkit.original.partition", str(source_partition).encode()),
        ("inkit.original.offset", str(offset).encode()),
        ("inkit.error.reason", b"empty_value"),
    ]
    if group is not None:
        headers.append(("inkit.consumer.group", group.encode()))
    producer.produce(dlq, value=b"x", partition=partition, headers=headers, timestamp=timestamp_ms)


def _scanner(bootstrap: str, dlq: str, group: str, **kw: float) -> DeadLetterScanner:
    def factory() -> Consumer:
        return Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"{group}.dlq-scan",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )

    return DeadLetterScanner(factory, dlq, group, **kw)


def test_the_scan_finds_this_groups_copies_of_uncommitted_offsets_since_the_instant(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    dlq = topic_factory(partitions=3)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    since = int(time.time() * 1000)
    old = since - MARGIN_MS - 60_000  # before the instant, margin included
    _copy(producer, dlq, 0, ("src", 0, 5), group="g", timestamp_ms=old)  # too old
    _copy(producer, dlq, 0, ("src", 0, 7), group="g", timestamp_ms=since + 10)
    _copy(producer, dlq, 1, ("src", 0, 9), group="g", timestamp_ms=since + 20)
    _copy(producer, dlq, 2, ("src", 1, 3), group=None, timestamp_ms=since + 30)  # older version
    _copy(producer, dlq, 2, ("src", 0, 2), group="g", timestamp_ms=since + 40)  # committed
    _copy(producer, dlq, 1, ("src", 0, 11), group="other", timestamp_ms=since + 50)
    _copy(producer, dlq, 1, ("other-topic", 0, 12), group="g", timestamp_ms=since + 60)
    _copy(producer, dlq, 0, ("src", 2, 4), group="g", timestamp_ms=since + 70)  # not ours now
    producer.produce(dlq, value=b"no headers", partition=0, timestamp=since + 80)
    assert producer.flush(10) == 0

    scanner = _scanner(kafka_bootstrap, dlq, "g")
    try:
        found = scanner.written_since(since, {("src", 0): 6, ("src", 1): 0})
        assert found == {("src", 0): {7, 9}, ("src", 1): {3}}
        # The consumer is kept for the next assignment and reads the topic again.
        assert scanner.written_since(since + 35, {("src", 0): 8}) == {("src", 0): {9}}
    finally:
        scanner.close()


def test_a_dead_letter_topic_with_nothing_recent_costs_no_read(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    dlq = topic_factory(partitions=2)
    scanner = _scanner(kafka_bootstrap, dlq, "g")
    try:
        assert scanner.written_since(int(time.time() * 1000), {("src", 0): 0}) == {}
    finally:
        scanner.close()


def test_a_missing_dead_letter_topic_is_a_typed_error(kafka_bootstrap: str) -> None:
    scanner = _scanner(kafka_bootstrap, f"missing-{time.monotonic_ns()}", "g", timeout_s=5)
    try:
        with pytest.raises(DeadLetterScanError):
            scanner.written_since(int(time.time() * 1000), {("src", 0): 0})
    finally:
        scanner.close()
