"""OffsetTracker: per partition, the next offset it is safe to commit (a contiguous watermark)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

TopicPartitionKey = tuple[str, int]


class _PartitionOffsets:
    __slots__ = ("committable", "done", "pending")

    def __init__(self) -> None:
        self.pending: deque[int] = deque()  # offsets received and not yet passed by the watermark
        self.done: set[int] = set()  # finished offsets above the watermark
        self.committable: int | None = None  # next offset to commit (last contiguous done + 1)


class OffsetTracker:
    """Tracks which records of each partition are finished; commits only advance over a
    contiguous run of finished records, so a crash at any instant loses nothing.

    Kafka commits the *next* offset to read, hence ``offset + 1``. Offsets of one partition
    must be tracked in increasing order (they are: a partition is read in order); gaps between
    them (compaction, transaction markers) are fine. Not thread-safe: the consume loop owns it.
    """

    def __init__(self) -> None:
        self._partitions: dict[TopicPartitionKey, _PartitionOffsets] = {}

    def track(self, topic: str, partition: int, offset: int) -> None:
        """Register a record that was read and is not finished yet."""
        state = self._partitions.setdefault((topic, partition), _PartitionOffsets())
        if state.pending and offset <= state.pending[-1]:
            raise ValueError(f"offset went backwards on {topic}[{partition}]: {offset}")
        if state.committable is not None and offset < state.committable:
            raise ValueError(f"offset {offset} on {topic}[{partition}] is already committable")
        state.pending.append(offset)

    def mark_done(self, topic: str, partition: int, offset: int) -> None:
        """The record finished for good (delivered, skipped, or its dead-letter copy acked)."""
        state = self._partitions.get((topic, partition))
        if state is None:
            return  # the partition was revoked meanwhile: never commit it again
        state.done.add(offset)
        while state.pending and state.pending[0] in state.done:
            head = state.pending.popleft()
            state.done.discard(head)
            state.committable = head + 1

    def committable(self, topic: str, partition: int) -> int | None:
        """The next offset safe to commit for the partition, or None if nothing finished yet."""
        state = self._partitions.get((topic, partition))
        return None if state is None else state.committable

    def all_committable(self) -> dict[TopicPartitionKey, int]:
        return {
            key: state.committable
            for key, state in self._partitions.items()
            if state.committable is not None
        }

    def outstanding(self, topic: str, partition: int) -> int:
        """Records tracked and not yet passed by the watermark (finished or not)."""
        state = self._partitions.get((topic, partition))
        return 0 if state is None else len(state.pending)

    def forget(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """On revoke or loss: drop all state, so nothing is ever committed for them again."""
        for key in partitions:
            self._partitions.pop(key, None)
