"""The consumer group's lag as the broker sees it: end offsets minus the group's committed offsets.

The consumer's own lag gauge (``consumer_lag_records``) is what this member knows about the
partitions it owns; it freezes when the loop stalls and vanishes with the pod. This module reads
the group's committed offsets and the partitions' end offsets from the broker (AdminClient, its
own connections, off the consume loop) every ``GROUP_LAG_INTERVAL_S``, for every partition of the
topic, whoever owns it. Every replica exports the same numbers (alerts take ``max`` over pods), so
a stalled but alive member is visible from any other one, and from itself: its committed offsets
stop moving while the lag stays up.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaException,
    TopicPartition,
    admin as kafka_admin,
)

from connector.observability.metrics import Metrics

# Re-exported by confluent_kafka.admin without __all__, and untyped: one Any handle, one ignore.
_OffsetSpec: Any = kafka_admin.OffsetSpec  # type: ignore[attr-defined]

logger = logging.getLogger(__name__)

GROUP_LAG_INTERVAL_S = 30.0
GROUP_LAG_TIMEOUT_S = 10.0
# stop() waits this long at most: the thread is a daemon holding nothing to flush, and a read in
# flight must not eat into the shutdown budget (the drain and the final commit come first).
STOP_WAIT_S = 1.0


@dataclass(frozen=True)
class PartitionLag:
    """One partition seen from the broker. ``committed`` is None when the group never committed
    there; the lag then counts from the log start, as the consumer (auto.offset.reset=earliest)
    would read it."""

    partition: int
    committed: int | None
    end: int
    lag: int


def read_group_lag(
    admin: Any, group_id: str, topic: str, timeout_s: float = GROUP_LAG_TIMEOUT_S
) -> list[PartitionLag]:
    """Read the group's lag on every partition of ``topic``. Blocks up to about 3 × timeout_s;
    raises KafkaException when the broker cannot answer."""
    metadata = admin.list_topics(topic, timeout=timeout_s)
    described = metadata.topics.get(topic)
    if described is None or described.error is not None:
        raise KafkaException(described.error if described is not None else "unknown topic")
    tps = [TopicPartition(topic, p) for p in sorted(described.partitions)]
    request = [ConsumerGroupTopicPartitions(group_id, tps)]
    group = admin.list_consumer_group_offsets(request, request_timeout=timeout_s)[group_id]
    committed = {tp.partition: tp.offset for tp in group.result(timeout=timeout_s).topic_partitions}
    # The end a read_committed consumer (librdkafka's default) can reach is the last stable
    # offset; a transaction marker sits below it, so an idle partition can show a lag of 1
    # (librdkafka CONFIGURATION.md, isolation.level; KIP-98 control records).
    ends = _offsets(admin, tps, _OffsetSpec.latest(), timeout_s)
    starts = _offsets(admin, tps, _OffsetSpec.earliest(), timeout_s)
    lags = []
    for tp in tps:
        p = tp.partition
        # librdkafka reports "no committed offset" as OFFSET_INVALID (-1001): any negative value.
        done = committed.get(p, -1)
        position = done if done >= 0 else starts[p]
        lags.append(
            PartitionLag(p, done if done >= 0 else None, ends[p], max(0, ends[p] - position))
        )
    return lags


def _offsets(admin: Any, tps: list[TopicPartition], spec: Any, timeout_s: float) -> dict[int, int]:
    futures = admin.list_offsets(
        {tp: spec for tp in tps},
        isolation_level=IsolationLevel.READ_COMMITTED,
        request_timeout=timeout_s,
    )
    return {tp.partition: int(f.result(timeout=timeout_s).offset) for tp, f in futures.items()}


class GroupLagMonitor:
    """Exports ``group_lag_records`` and ``group_committed_offset`` from a daemon thread.

    ``start()`` returns at once; ``stop()`` wakes the thread and waits at most ``STOP_WAIT_S``.
    A failed read is counted (``group_lag_reads_total{result="failed"}``), logged without payload,
    and clears the gauges rather than leave stale numbers that look like a stall.
    """

    def __init__(
        self,
        admin: Any,
        group_id: str,
        topic: str,
        metrics: Metrics,
        interval_s: float = GROUP_LAG_INTERVAL_S,
    ) -> None:
        self._admin = admin
        self._group_id = group_id
        self._topic = topic
        self._metrics = metrics
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="group-lag", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_WAIT_S)

    def read_once(self) -> bool:
        """One read and export; True when it succeeded."""
        try:
            lags = read_group_lag(self._admin, self._group_id, self._topic)
        except (KafkaException, TimeoutError) as exc:
            logger.warning("reading the group's lag from the broker failed: %s", exc)
            self._metrics.group_lag.clear()
            self._metrics.group_committed_offset.clear()
            self._metrics.group_lag_reads.labels("failed").inc()
            return False
        for lag in lags:
            labels = (self._topic, str(lag.partition))
            self._metrics.group_lag.labels(*labels).set(lag.lag)
            if lag.committed is not None:
                self._metrics.group_committed_offset.labels(*labels).set(lag.committed)
        self._metrics.group_lag_reads.labels("ok").inc()
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self.read_once()
            self._stop.wait(self._interval_s)
