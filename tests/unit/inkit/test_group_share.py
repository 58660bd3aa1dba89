"""A member's share of the group's rate limit follows its assignment."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from confluent_kafka import KafkaError, KafkaException

from connector.inkit.group_share import ShareWatcher, member_share


@dataclass
class TP:
    topic: str
    partition: int


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
        self.assigned: list[TP] = []
        self.total = total
        self.now = 0.0
        self.shares: list[float] = []
        self.fail_assignment = False
        self.watcher = ShareWatcher(
            "t",
            self.assignment,
            lambda: self.total,
            self.shares.append,
            initial_total=total,
            refresh_s=30,
            clock=lambda: self.now,
        )

    def assignment(self) -> list[TP]:
        if self.fail_assignment:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        return list(self.assigned)


def test_watcher_reports_changes_only() -> None:
    h = Harness()
    h.watcher.poll_once()
    h.assigned = [TP("t", 0), TP("t", 1), TP("other", 0)]  # other topics do not count
    h.watcher.poll_once()
    h.watcher.poll_once()
    h.assigned = [TP("t", p) for p in range(6)]
    h.watcher.poll_once()
    assert h.shares == [0.0, pytest.approx(1 / 3), 1.0]


def test_watcher_keeps_the_share_when_the_assignment_cannot_be_read() -> None:
    h = Harness()
    h.assigned = [TP("t", 0), TP("t", 1), TP("t", 2)]
    h.watcher.poll_once()
    h.fail_assignment = True
    assert h.watcher.poll_once() is None
    assert h.shares == [0.5]


def test_watcher_follows_added_partitions() -> None:
    h = Harness(total=3)
    h.assigned = [TP("t", 0), TP("t", 1), TP("t", 2)]
    h.watcher.poll_once()
    h.total = 6  # partitions added; this member still holds 3 of them
    h.now += 30
    h.watcher.poll_once()
    assert h.shares == [1.0, 0.5]
