"""OffsetTracker: per partition, the next offset it is safe to commit (a contiguous watermark)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

TopicPartitionKey = tuple[str, int]


class _PartitionOffsets:
    __slots__ = ("committable", "done", "pending", "read_at")

    def __init__(self) -> None:
        self.pending: deque[int] = deque()  # offsets received and not yet passed by the watermark
        self.read_at: deque[int] = deque()  # when each pending offset was read (epoch ms)
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

    def track(self, topic: str, partition: int, offset: int, read_at_ms: int = 0) -> None:
        """Register a record that was read (at ``read_at_ms``, wall clock) and is not finished."""
        state = self._partitions.setdefault((topic, partition), _PartitionOffsets())
        if state.pending and offset <= state.pending[-1]:
            raise ValueError(f"offset went backwards on {topic}[{partition}]: {offset}")
        if state.committable is not None and offset < state.committable:
            raise ValueError(f"offset {offset} on {topic}[{partition}] is already committable")
        if state.committable is None:
            # The first record read: committing its own offset means "resume here", which is
            # always safe, and lets progress above it be recorded (see encode_done).
            state.committable = offset
        state.pending.append(offset)
        state.read_at.append(read_at_ms)

    def mark_done(self, topic: str, partition: int, offset: int) -> None:
        """The record finished for good (delivered, skipped, or its dead-letter copy acked)."""
        state = self._partitions.get((topic, partition))
        if state is None:
            return  # the partition was revoked meanwhile: never commit it again
        state.done.add(offset)
        while state.pending and state.pending[0] in state.done:
            head = state.pending.popleft()
            state.read_at.popleft()
            state.done.discard(head)
            state.committable = head + 1

    def committable(self, topic: str, partition: int) -> int | None:
        """The next offset safe to commit for the partition, or None if nothing was read."""
        state = self._partitions.get((topic, partition))
        return None if state is None else state.committable

    def all_committable(self) -> dict[TopicPartitionKey, int]:
        return {
            key: state.committable
            for key, state in self._partitions.items()
            if state.committable is not None
        }

    def done_above(self, topic: str, partition: int) -> list[int]:
        """Finished offsets above the watermark (they wait for an earlier record), sorted."""
        state = self._partitions.get((topic, partition))
        return sorted(state.done) if state is not None else []

    def oldest_read_ms(self, topic: str, partition: int) -> int | None:
        """When the oldest record not yet passed by the watermark was read; None if none is.
        Anything this process did for the partition's uncommitted records (a dead-letter copy,
        say) happened at or after that instant."""
        state = self._partitions.get((topic, partition))
        return state.read_at[0] if state is not None and state.read_at else None

    def outstanding(self, topic: str, partition: int) -> int:
        """Records tracked and not yet passed by the watermark (finished or not)."""
        state = self._partitions.get((topic, partition))
        return 0 if state is None else len(state.pending)

    def forget(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """On revoke or loss: drop all state, so nothing is ever committed for them again."""
        for key in partitions:
            self._partitions.pop(key, None)


# Commit metadata: which records above the committed offset are already finished, and since when
# the records from the committed offset on were being worked on. A partition's next owner (or
# this process after a crash) skips the finished ones instead of sending them again, so a record
# that finished while an earlier one was still in flight is not a duplicate; and it looks for
# dead-letter copies written since that instant (see dlq_recovery.py), so a crash between a
# dead-letter ack and the next commit does not write the copy twice. The broker keeps at most
# offset.metadata.max.bytes (4096 by default) per partition. An owner that starts draining a
# partition it is giving up says so ("drain:<until ms>"): a next owner assigned the partition
# before that drain ends waits for the final commit instead of re-sending what the drain
# delivers. Format: "since:<ms>;drain:<ms>;done:0-3,7".
METADATA_PREFIX = "done:"
SINCE_PREFIX = "since:"
DRAIN_PREFIX = "drain:"
SEPARATOR = ";"
MAX_METADATA_CHARS = 3500


@dataclass(frozen=True)
class CommitMetadata:
    done: frozenset[int] = frozenset()  # absolute offsets above the committed one, finished
    since_ms: int | None = None  # the uncommitted records were read at or after this instant
    draining_until_ms: int | None = None  # the owner drains and commits again before this


def encode_metadata(
    committed: int, done: list[int], since_ms: int | None, draining_until_ms: int | None = None
) -> str:
    """The commit metadata of ``committed``: ``since_ms`` and ``draining_until_ms`` (if any) and
    ``done`` as ranges."""
    parts = [] if since_ms is None else [f"{SINCE_PREFIX}{since_ms}"]
    if draining_until_ms is not None:
        parts.append(f"{DRAIN_PREFIX}{draining_until_ms}")
    ranges = encode_done(committed, done)
    if ranges:
        parts.append(ranges)
    return SEPARATOR.join(parts)


def decode_metadata(committed: int, metadata: str | None) -> CommitMetadata:
    """What ``encode_metadata`` wrote; empty for anything unexpected (an older or foreign
    metadata text only costs re-sends, never a skipped record)."""
    if not metadata or committed < 0:
        return CommitMetadata()
    instants: dict[str, int | None] = {SINCE_PREFIX: None, DRAIN_PREFIX: None}
    done: set[int] = set()
    for part in metadata.split(SEPARATOR):
        if part.startswith(METADATA_PREFIX):
            done = decode_done(committed, part)
            continue
        for prefix in instants:
            if part.startswith(prefix):
                try:
                    instants[prefix] = int(part[len(prefix) :])
                except ValueError:
                    instants[prefix] = None
    return CommitMetadata(frozenset(done), instants[SINCE_PREFIX], instants[DRAIN_PREFIX])


def encode_done(committed: int, done: list[int]) -> str:
    """``done`` (sorted, all >= committed) as ranges relative to ``committed``: "done:0-3,7"."""
    parts: list[str] = []
    length = len(METADATA_PREFIX)
    i = 0
    while i < len(done):
        j = i
        while j + 1 < len(done) and done[j + 1] == done[j] + 1:
            j += 1
        low, high = done[i] - committed, done[j] - committed
        part = str(low) if low == high else f"{low}-{high}"
        if length + len(part) + 1 > MAX_METADATA_CHARS:
            break  # only an optimisation: what does not fit is simply re-sent
        parts.append(part)
        length += len(part) + 1
        i = j + 1
    return METADATA_PREFIX + ",".join(parts) if parts else ""


def decode_done(committed: int, metadata: str | None) -> set[int]:
    """The absolute offsets ``encode_done`` described; an empty set for anything unexpected.
    (A whole commit metadata text is read with ``decode_metadata``.)"""
    if not metadata or not metadata.startswith(METADATA_PREFIX) or committed < 0:
        return set()
    offsets: set[int] = set()
    try:
        for part in metadata[len(METADATA_PREFIX) :].split(","):
            low, _, high = part.partition("-")
            offsets.update(range(committed + int(low), committed + int(high or low) + 1))
    except ValueError:
        return set()
    return offsets
