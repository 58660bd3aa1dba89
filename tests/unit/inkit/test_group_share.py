"""A member's share of the group's rate limit follows its assignment."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import CollectorRegistry

from connector.inkit.group_share import ShareWatcher, assigned_partitions, member_share
from connector.observability.metrics import Metrics


def test_share_is_assigned_over_total_partitions() -> None:
    assert member_share(2, 6) == pytest.approx(1 / 3)
    assert member_share(6, 6) == 1.0
    assert member_share(0, 6) == 0.0  # an idle member gives its share away


def test_shares_of_a_group_add_up_to_one() -> None:
    for members in range(1, 9):
        counts = [len(range(m, 7, members)) for m in range(members)]  # 7 partitions dealt out
        assert sum(member_share(c, 7) for c in counts) == pytest.approx(1.0)


class Harness:
    def __init__(self, total: int = 6) -> None:
        self.assigned = 0
        self.total = total
        self.now = 0.0
        self.shares: list[float] = []
        self.watcher = ShareWatcher(
            "t",
            lambda: self.assigned,
            lambda: self.total,
            self.shares.append,
            initial_total=total,
            refresh_s=30,
            clock=lambda: self.now,
        )


def test_watcher_reports_changes_only() -> None:
    h = Harness()
    h.watcher.poll_once()
    h.assigned = 2
    h.watcher.poll_once()
    h.watcher.poll_once()
    h.assigned = 6
    h.watcher.poll_once()
    assert h.shares == [0.0, pytest.approx(1 / 3), 1.0]


def test_watcher_follows_added_partitions() -> None:
    h = Harness(total=3)
    h.assigned = 3
    h.watcher.poll_once()
    h.total = 6  # partitions added; this member still holds 3 of them
    h.now += 30
    h.watcher.poll_once()
    assert h.shares == [1.0, 0.5]


def test_watcher_keeps_the_count_when_metadata_cannot_be_read() -> None:
    h = Harness(total=6)
    h.assigned = 3

    def broken() -> int:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT))

    h.watcher._partition_count = broken
    h.now += 30
    h.watcher.poll_once()
    assert h.shares == [0.5]


def test_assigned_partitions_reads_what_the_consume_loop_reports() -> None:
    metrics = Metrics(CollectorRegistry())
    assert assigned_partitions(metrics.registry) == 0
    metrics.assigned_partitions.set(4)
    assert assigned_partitions(metrics.registry) == 4
