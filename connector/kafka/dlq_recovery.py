"""DeadLetterScanner: finds the dead-letter copies a partition's previous owner wrote after its
last commit, so that the next owner does not write them again.

Why: a copy is acked by Kafka, then its source offset is committed. A process killed between
the two leaves a copy whose offset the next owner reads again; without this scan it would write
a second copy. The last commit's metadata says since when the uncommitted records were being
worked on (``since_ms``, see offsets.py); every copy of one of them was produced after that
instant, so the scan reads the dead-letter topic from there (by timestamp, less a margin for
clock steps) to its end, and returns the source offsets whose copy it found.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from connector.errors import DeadLetterScanError

logger = logging.getLogger(__name__)

TPKey = tuple[str, int]
# Record timestamps are the producing process's clock, like since_ms: the margin only absorbs a
# clock step (NTP) between the two, or a dead-letter topic with LogAppendTime.
MARGIN_MS = 60_000
SCAN_TIMEOUT_S = 30.0
GROUP_HEADER = "inkit.consumer.group"


class DeadLetterScanner:
    """Reads the dead-letter topic with its own group-less consumer (assign, never commit).

    Only copies written by this consumer group count (header ``inkit.consumer.group``; copies
    without it, from older versions, count too): another group reading the same source topic
    into the same dead-letter topic keeps its own copies.
    """

    def __init__(
        self,
        consumer_factory: Callable[[], Any],
        topic: str,
        group_id: str,
        *,
        timeout_s: float = SCAN_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = consumer_factory
        self._topic = topic
        self._group_id = group_id.encode()
        self._timeout_s = timeout_s
        self._clock = clock
        self._consumer: Any = None

    def written_since(self, since_ms: int, committed: Mapping[TPKey, int]) -> dict[TPKey, set[int]]:
        """For each source partition of ``committed``: the offsets at or above its committed
        offset whose dead-letter copy this group wrote at or after ``since_ms`` (less the
        margin). Raises DeadLetterScanError when the topic cannot be read to its end in time."""
        try:
            return self._scan(since_ms, committed)
        except KafkaException as exc:
            raise DeadLetterScanError(f"reading {self._topic}: {exc.args[0]}") from None

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _scan(self, since_ms: int, committed: Mapping[TPKey, int]) -> dict[TPKey, set[int]]:
        if self._consumer is None:
            self._consumer = self._factory()
        consumer = self._consumer
        deadline = self._clock() + self._timeout_s
        metadata = consumer.list_topics(self._topic, timeout=self._timeout_s)
        topic = metadata.topics.get(self._topic)
        if topic is None or topic.error is not None:
            raise DeadLetterScanError(f"topic {self._topic} not readable: {topic and topic.error}")
        wanted = [TopicPartition(self._topic, p, since_ms - MARGIN_MS) for p in topic.partitions]
        starts = consumer.offsets_for_times(wanted, timeout=self._timeout_s)
        ends: dict[int, int] = {}
        assignment = []
        for tp in starts:
            if tp.error is not None:
                raise DeadLetterScanError(f"{self._topic}[{tp.partition}]: {tp.error}")
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(self._topic, tp.partition), timeout=self._timeout_s
            )
            if tp.offset < 0 or tp.offset >= high:
                continue  # nothing written since then
            ends[tp.partition] = high
            assignment.append(TopicPartition(self._topic, tp.partition, tp.offset))
        found: dict[TPKey, set[int]] = {}
        if not assignment:
            return found
        consumer.assign(assignment)
        try:
            while ends:
                if self._clock() > deadline:
                    raise DeadLetterScanError(
                        f"{self._topic} not read to its end within {self._timeout_s:.0f}s"
                    )
                for record in consumer.consume(500, 0.2):
                    error = record.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            ends.pop(record.partition(), None)
                            continue
                        raise DeadLetterScanError(f"{self._topic}: {error.str()}")
                    if record.offset() + 1 >= ends.get(record.partition(), 0):
                        ends.pop(record.partition(), None)
                    origin = self._origin(record.headers() or [])
                    if origin is not None and origin[0] in committed:
                        key, offset = origin
                        if offset >= committed[key]:
                            found.setdefault(key, set()).add(offset)
        finally:
            consumer.unassign()
        return found

    def _origin(self, headers: list[tuple[str, bytes | None]]) -> tuple[TPKey, int] | None:
        values = {k: v for k, v in headers if k.startswith("inkit.") and v is not None}
        group = values.get(GROUP_HEADER)
        if group is not None and group != self._group_id:
            return None
        try:
            topic = values["inkit.original.topic"].decode()
            partition = int(values["inkit.original.partition"])
            offset = int(values["inkit.original.offset"])
        except (KeyError, ValueError, UnicodeDecodeError):
            return None  # not one of ours
        return (topic, partition), offset
