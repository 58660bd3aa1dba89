"""PartitionState: what the consume loop knows of one assigned partition."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TopicPartition

from connector.inkit.sender import Job

TPKey = tuple[str, int]


@dataclass
class PendingScan:
    """A partition's records wait for this dead-letter scan (scan_gate.py)."""

    since_ms: int  # the commit metadata's "since": no copy it does not cover is older
    committed: int  # the committed offset: the scan looks at or above it, reading restarts there
    done: frozenset[int]  # finished according to the commit metadata (skipped anyway)
    started_s: float  # monotonic: the first attempt
    future: Future[dict[TPKey, set[int]]] | None = None  # None: the next attempt is due
    retry_at_s: float = 0.0
    found: set[int] | None = None  # the answer, kept while the seek back is not possible yet


@dataclass
class PartitionState:
    """One assigned partition, from its assignment until it is revoked or lost."""

    topic: str
    partition: int
    generation: int
    unfinished: int = 0  # records read and not finished (in memory, in flight, or in the DLQ)
    flying: set[Job] = field(default_factory=set)  # dispatched, no result yet
    stalled: deque[Any] = field(default_factory=deque)  # records waiting for the registry
    stalled_until: float = 0.0
    stall_attempts: int = 0
    initial_committed: int | None = None
    already_done: set[int] = field(default_factory=set)  # finished by a previous owner
    already_dead_lettered: set[int] = field(default_factory=set)  # its copy is in the DLQ
    last_offset: int | None = None  # highest offset read (a partition is read in order)
    refetch_logged: bool = False
    finished: int = 0  # records finished since the assignment
    landed: int = 0  # how many of those a commit Kafka accepted covers
    # A commit of ours landed for it (or it had one at assignment): a next owner then has a
    # "since" to look for our dead-letter copies from (see Results._dead_letter).
    has_commit: bool = False
    landed_offset: int | None = None  # the offset of the last commit Kafka accepted
    # The record last sent past MAX_UNCOMMITTED_RECORDS as its partition's head (processor.py):
    # the next such send waits for a commit past it, so each partition adds at most one.
    cap_head: int | None = None
    # Commits sent and not yet answered, in order: (offset, metadata, records finished then).
    sent_commits: list[tuple[int, str, int]] = field(default_factory=list)
    # The previous owner is still draining the partition (commit metadata "drain:"): its
    # records are not read until its final commit lands or this wall-clock instant passes.
    handoff_until_ms: int | None = None
    # When we stop waiting, on this process's monotonic clock: taken once at assignment, never
    # later than our own drain deadline plus margin, and never earlier than the drain can end
    # for a clock skew up to that bound either way (handoff.handoff_wait_s).
    handoff_deadline: float = 0.0
    assigned_at_s: float = 0.0  # wall clock: a handoff holds the partition since then
    holder: str | None = None  # the holder label last set on the oldest-unfinished gauge
    handoff_read: Future[list[TopicPartition]] | None = None
    handoff_next_read: float = 0.0
    # Its records wait for a dead-letter scan (held like a handoff: dropped, paused, re-read).
    scan: PendingScan | None = None
    # When each dead-letter copy of ours was produced (wall ms), by source offset, for those
    # not below the watermark: a commit's "since" is never later than one it does not cover.
    dead_letters_at: dict[int, int] = field(default_factory=dict)
    since_sent_ms: int | None = None  # the "since" of the last commit built (kept a while)

    @property
    def key(self) -> TPKey:
        return (self.topic, self.partition)

    @property
    def held(self) -> bool:
        """Nothing of it is read yet: a previous owner drains it, or a scan is pending."""
        return self.handoff_until_ms is not None or self.scan is not None
