"""The Processor as `redrive` runs it: over the dead-letter topic, bounded by the end offsets it
found at start, taking only the dead letters its Selection admits, and counting what became of
each (re-sent, already sent, failed again and why).

Everything else is the Processor's: per-user order, retries, the 429 throttle, the auth gate,
rate limits, the sent-ledger, dead-lettering and commits only over finished records, so a
redrive killed halfway resumes from its group's commits.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TopicPartition

from connector.delivery.intake import Admission
from connector.delivery.processor import Processor
from connector.delivery.selection import NOT_SELECTED, Selection
from connector.inkit.sender import Job
from connector.kafka.dead_letter import DeadLetterRecord, read_dead_letter
from connector.models import Outcome

logger = logging.getLogger(__name__)

ALREADY_SENT = "already_sent"
AMBIGUOUS_SEND = "ambiguous_send"


def release_chosen_intent(ledger: Any, identity: str) -> bool:
    """An ``ambiguous_send`` dead letter a person chose to redrive: close its open intent
    (ledger.py ``resolve``) so that it is sent instead of dead-lettered again. Never when the
    event is known as sent: the tombstone would make compaction drop that record. True when an
    intent was released."""
    if ledger.already_sent(identity) or not ledger.open_intent(identity):
        return False
    ledger.resolve(identity)
    return True


@dataclass(frozen=True)
class RedrivePlan:
    """Per partition of the dead-letter topic: where this group starts (its committed offset,
    else the earliest) and the end offset (high watermark) found at start. Copies written after
    that, its own included, are for a later run."""

    topic: str
    starts: dict[int, int]
    ends: dict[int, int]

    @property
    def work(self) -> dict[int, int]:
        """Partitions with records to read: partition -> end offset."""
        return {p: end for p, end in self.ends.items() if self.starts[p] < end}

    @property
    def total(self) -> int:
        return sum(end - self.starts[p] for p, end in self.work.items())

    @classmethod
    def capture(cls, consumer: Any, topic: str, timeout_s: float = 10.0) -> RedrivePlan:
        """Read the topic's watermarks and the group's commits (``consumer`` carries the group
        id; committed() needs no subscription: it asks the group coordinator)."""
        metadata = consumer.list_topics(topic, timeout=timeout_s)
        partitions = sorted(metadata.topics[topic].partitions)
        committed = {
            tp.partition: tp.offset
            for tp in consumer.committed(
                [TopicPartition(topic, p) for p in partitions], timeout=timeout_s
            )
        }
        starts: dict[int, int] = {}
        ends: dict[int, int] = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=timeout_s, cached=False
            )
            ends[p] = int(high)
            # No commit (-1001): the group starts at the earliest record still kept. A commit
            # below it (retention deleted records) starts at the earliest too.
            starts[p] = max(int(low), committed.get(p, -1))
        return cls(topic, starts, ends)


@dataclass
class RedriveTally:
    """What became of the dead letters a redrive read. ``resent`` is by the reason the copy
    was dead-lettered for; ``failed`` by the reason it failed again."""

    resent: Counter[str] = field(default_factory=Counter)
    already_sent: int = 0
    not_selected: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # by rule: not an Identify, ...
    failed: Counter[str] = field(default_factory=Counter)
    selected: int = 0  # admitted by the filters (and within --limit)

    @property
    def finished(self) -> int:
        return (
            sum(self.resent.values())
            + self.already_sent
            + self.not_selected
            + sum(self.skipped.values())
            + sum(self.failed.values())
        )


class RedriveProcessor(Processor):
    """A Processor that reads the dead-letter topic from its group's commits up to ``plan``'s
    end offsets, and stops by itself there (or after ``limit`` selected records).

    Contract: as ``Processor.run``; ``completed`` is True when it stopped because everything
    it was to read finished (False: stopped by a signal or an error first). ``progress`` is
    called on the consume thread after every loop turn."""

    def __init__(
        self,
        *,
        plan: RedrivePlan,
        selection: Selection,
        limit: int | None = None,
        progress: Callable[[RedriveTally], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._plan = plan
        self._ends = plan.work
        self._selection = selection
        self._limit = limit
        self._progress = progress
        self._reasons: dict[tuple[int, int], str] = {}  # selected, unfinished -> first reason
        self._past_end: set[int] = set()
        self.tally = RedriveTally()
        self.completed = not self._ends or limit == 0

    def run(self) -> None:
        if self.completed:
            return  # nothing to read: do not even join the group
        super().run()

    def _admit(self, record: Any) -> Admission:
        partition, offset = record.partition(), record.offset()
        end = self._ends.get(partition)
        if end is None or offset >= end:
            self._past_end.add(partition)
            return Admission(None)  # written after the start (our own copies included)
        if self._limit is not None and self.tally.selected >= self._limit:
            return Admission(None)  # left for a later run: not committed past
        letter = read_dead_letter(record.headers())
        wrapped = DeadLetterRecord(record, letter)
        if not self._selection.admits(letter):
            return Admission(wrapped, NOT_SELECTED)
        self.tally.selected += 1
        self._reasons[(partition, offset)] = letter.reason
        return Admission(wrapped)

    def _finish(
        self, topic: str, partition: int, offset: int, outcome: Outcome, reason: str
    ) -> None:
        counted = (topic, partition) in self._partitions
        super()._finish(topic, partition, offset, outcome, reason)
        if not counted:
            return
        first_reason = self._reasons.pop((partition, offset), None)
        tally = self.tally
        if outcome is Outcome.DELIVERED:
            tally.resent[first_reason or "unknown"] += 1
        elif outcome is Outcome.DEAD_LETTERED:
            tally.failed[reason] += 1
        elif reason == NOT_SELECTED:
            tally.not_selected += 1
        elif reason == ALREADY_SENT:
            tally.already_sent += 1
        else:
            tally.skipped[reason] += 1

    def _drop_already_sent(self, jobs: list[Job]) -> list[Job]:
        if self._ledger is not None:
            for job in jobs:
                ref = job.ref
                if (
                    job.identity is not None
                    and self._reasons.get((ref.partition, ref.offset)) == AMBIGUOUS_SEND
                    and release_chosen_intent(self._ledger, job.identity)
                ):
                    logger.info("%s: open intent of an ambiguous send released by redrive", ref)
        return super()._drop_already_sent(jobs)

    def _step(self) -> None:
        super()._step()
        if self._progress is not None:
            self._progress(self.tally)
        if not self._stopping and self._end_reached():
            self.completed = True
            self.request_stop()

    def _end_reached(self) -> bool:
        if self._unfinished or self._in_flight or self._awaiting_ledger or self._dlq_retry:
            return False
        if self._limit is not None and self.tally.selected >= self._limit:
            return True
        for partition, end in self._ends.items():
            if (self._plan.topic, partition) not in self._partitions:
                return False  # not assigned (yet): the group has not given it to us
            committable = self._tracker.committable(self._plan.topic, partition)
            if (committable is None or committable < end) and partition not in self._past_end:
                return False
        return True
