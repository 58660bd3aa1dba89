"""Reading the sent-ledger topic from the beginning to the end offsets found at start-up: the
rebuild every member does before it consumes (a million records in seconds, see bench/)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from connector.errors import StartupError
from connector.kafka.ledger_index import INTENT_BYTE

BATCH = 20_000  # records per consume() call: fewer trips through the binding
POLL_S = 0.5
_ELECTING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TIMED_OUT,
    }
)


def read_ledger(
    consumer: Any, topic: str, deadline: float, clock: Callable[[], float] = time.monotonic
) -> tuple[dict[int, int], dict[int, int]]:
    """Every identity hash in ``topic`` with its newest send time (seconds), and the intents
    still open (hash -> seconds). Raises StartupError when the topic cannot be read in time.

    The loop runs once per record of a million: it calls as few methods per record as it can,
    keeps the last send time read per key (a key's records share a partition, read in order),
    and looks at the end offsets once per batch, not once per record."""
    metadata = consumer.list_topics(topic, timeout=10)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        raise StartupError(
            f"sent-ledger topic {topic!r} cannot be read: "
            "create it (cleanup.policy=compact) or set LEDGER_ENABLED=false"
        )
    ends: dict[int, int] = {}
    for partition in found.partitions:
        low, high = _watermarks(consumer, TopicPartition(topic, partition), deadline, clock)
        if high > low:
            ends[partition] = high
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in found.partitions])
    sent: dict[int, int] = {}
    intents: dict[int, int] = {}
    pending = set(ends)
    while pending:
        if clock() > deadline:
            raise StartupError(f"sent-ledger topic {topic!r} was not read to its end in time")
        batch = consumer.consume(BATCH, POLL_S)
        for msg in batch:
            key = msg.key()
            if key is None:
                error = msg.error()
                if error is None:
                    continue
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())  # the rest was compacted away
                    continue
                raise StartupError(f"reading the sent-ledger failed: {error.str()}")
            value = msg.value()
            h = hash(key)
            if not value:  # a tombstone: an intent resolved without a send
                intents.pop(h, None)
            elif value[0] == INTENT_BYTE:
                intents[h] = msg.timestamp()[1] // 1000
            else:
                sent[h] = msg.timestamp()[1] // 1000
                if intents:
                    intents.pop(h, None)
        _reached(batch, ends, pending)
    return sent, intents


def _reached(batch: list[Any], ends: dict[int, int], pending: set[int]) -> None:
    """Drop from ``pending`` the partition whose end offset the batch's last record reached.
    The consumer reports the end of every other partition itself (enable.partition.eof, set by
    kafka/consumer.py scanner_config: librdkafka emits _PARTITION_EOF once a partition's fetch
    reaches its high watermark, which is at or past the end found at start-up)."""
    if batch:
        last = batch[-1]
        if last.error() is None and last.offset() + 1 >= ends.get(last.partition(), 0):
            pending.discard(last.partition())


def _watermarks(
    consumer: Any, tp: TopicPartition, deadline: float, clock: Callable[[], float]
) -> tuple[int, int]:
    """The partition's offsets, waiting out a leader election (a topic just created)."""
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            return int(low), int(high)
        except KafkaException as exc:
            # NOT_LEADER_FOR_PARTITION and LEADER_NOT_AVAILABLE are not flagged retriable by
            # librdkafka, yet they are what a topic created a moment ago answers.
            if exc.args[0].code() not in _ELECTING or clock() > deadline:
                raise
            time.sleep(0.2)
