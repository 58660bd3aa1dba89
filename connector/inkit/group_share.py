"""This member's share of a group-wide rate limit (INKIT_RATE_LIMIT_SCOPE=group): the partitions
of the topic assigned to it, over the topic's partition count.

Why the assignment: every member knows it already, with no new infrastructure and no extra call
to the group coordinator; it changes exactly at rebalances; the shares of all
members add up to 1 because the group assigns each partition to one member; and a member without
partitions (more replicas than partitions) gets 0 and so gives its share away by itself. Records
are keyed by user, so partitions carry similar load and a partition-weighted share follows the
work. (The group's member list from ``describe_consumer_groups`` would give an idle member a
share it cannot use, and needs a coordinator round trip from every member every few seconds.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException
from prometheus_client import CollectorRegistry

logger = logging.getLogger(__name__)

# How often the assignment is read. A partition that moves is counted by both its old and its
# new owner for at most this long: the stated transition above the group limit.
SHARE_POLL_INTERVAL_S = 0.5
# How often the topic's partition count is read again (partitions can be added at run time).
PARTITION_COUNT_REFRESH_S = 30.0


def member_share(assigned: int, total: int) -> float:
    """The fraction of the group's rate a member with ``assigned`` of ``total`` partitions takes."""
    if total <= 0 or assigned <= 0:
        return 0.0
    return min(1.0, assigned / total)


def topic_partition_count(admin: Any, topic: str) -> int:
    """The partition count of ``topic`` from a metadata request (an AdminClient's list_topics)."""
    return len(admin.list_topics(topic, timeout=5).topics[topic].partitions)


def assigned_partitions(registry: CollectorRegistry) -> int:
    """Partitions the consume loop holds now, as it reports them (the public
    ``inkit_connector_assigned_partitions`` gauge): counted from the end of the assign callback,
    and until a revoked partition's drain has finished, so its in-flight records keep the share
    they need to finish.

    Not the consumer's ``assignment()`` from this thread: librdkafka answers it from the group's
    op queue (``rd_kafka_assignment``, src/rdkafka_subscription.c), and in the three-process tests
    here the answer reflected assignments and revocations 10 to 35 s late while rebalances ran,
    long enough for a member to drain its revoked partitions at a share of 0. (The versions of
    confluent-kafka-python's ``Consumer_assignment`` read also keep the GIL during that call.)
    """
    return int(registry.get_sample_value("inkit_connector_assigned_partitions") or 0)


class ShareWatcher:
    """Reads this member's assigned partition count every SHARE_POLL_INTERVAL_S and calls
    ``on_share`` with its share whenever the share changes (and once at the first read).

    ``assigned`` returns the count (``assigned_partitions`` above); ``partition_count`` the
    topic's partition count (re-read every PARTITION_COUNT_REFRESH_S). ``start`` spawns a daemon
    thread, ``stop`` ends it; ``on_share`` runs on the watcher's thread.
    """

    def __init__(
        self,
        topic: str,
        assigned: Callable[[], int],
        partition_count: Callable[[], int],
        on_share: Callable[[float], None],
        *,
        initial_total: int,
        interval_s: float = SHARE_POLL_INTERVAL_S,
        refresh_s: float = PARTITION_COUNT_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._topic = topic
        self._assigned_count = assigned
        self._partition_count = partition_count
        self._on_share = on_share
        self._total = initial_total
        self._interval_s = interval_s
        self._refresh_s = refresh_s
        self._clock = clock
        self._refreshed_at = clock()
        self._assigned: int | None = None
        self._share: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rate-share", daemon=True)

    def poll_once(self) -> float | None:
        """Read the assignment; return the new share if it changed, else None."""
        if self._clock() - self._refreshed_at >= self._refresh_s:
            self._refreshed_at = self._clock()
            try:
                self._total = max(1, self._partition_count())
            except KafkaException as exc:
                logger.warning("could not read the partition count of %s: %s", self._topic, exc)
        assigned = self._assigned_count()
        # A partition added since the last count can be assigned before we re-read the count.
        self._total = max(self._total, assigned)
        share = member_share(assigned, self._total)
        if share == self._share:
            return None
        self._share, self._assigned = share, assigned
        logger.info(
            "rate limit share: %d of %d partitions (%.3f of the group's rate)",
            assigned,
            self._total,
            share,
        )
        self._on_share(share)
        return share

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self._interval_s)
