"""OffsetTracker: per partition, the next offset it is safe to commit (a contiguous watermark)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

TopicPartitionKey = tuple[str, int]


Range = tuple[int, int]  # inclusive offsets, low <= high


class _PartitionOffsets:
    """What one partition's tracker keeps: only the records not finished yet (memory grows with
    those, not with everything finished above a stuck record: issue #13, defect 5)."""

    __slots__ = ("next_offset", "read_at", "unfinished")

    def __init__(self) -> None:
        self.unfinished: deque[int] = deque()  # offsets read and not finished, increasing
        self.read_at: dict[int, int] = {}  # when each unfinished offset was read (epoch ms)
        self.next_offset: int | None = None  # the offset after the last one read


class OffsetTracker:
    """Tracks which records of each partition are finished; commits only advance up to the first
    unfinished record, so a crash at any instant loses nothing.

    Kafka commits the *next* offset to read, hence ``offset + 1``. Offsets of one partition
    must be tracked in increasing order (they are: a partition is read in order). Offsets the
    consumer never returned between two it did (compaction, transaction markers) do not exist
    for us: they count as finished. So everything between the watermark and the last record
    read that is not unfinished is finished, and the finished offsets above the watermark are
    the gaps between unfinished ones: at most one range per unfinished record. Not
    thread-safe: the consume loop owns it.
    """

    def __init__(self) -> None:
        self._partitions: dict[TopicPartitionKey, _PartitionOffsets] = {}

    def track(self, topic: str, partition: int, offset: int, read_at_ms: int = 0) -> None:
        """Register a record that was read (at ``read_at_ms``, wall clock) and is not finished."""
        state = self._partitions.setdefault((topic, partition), _PartitionOffsets())
        if state.next_offset is not None and offset < state.next_offset:
            raise ValueError(f"offset went backwards on {topic}[{partition}]: {offset}")
        state.unfinished.append(offset)
        state.read_at[offset] = read_at_ms
        state.next_offset = offset + 1

    def mark_done(self, topic: str, partition: int, offset: int) -> None:
        """The record finished for good (delivered, skipped, or its dead-letter copy acked)."""
        state = self._partitions.get((topic, partition))
        if state is None or state.read_at.pop(offset, None) is None:
            return  # revoked meanwhile (never commit it again), or not unfinished
        if state.unfinished[0] == offset:
            state.unfinished.popleft()
        else:
            # Linear in the records ahead of it, which are unfinished: bounded by the buffer.
            state.unfinished.remove(offset)

    def committable(self, topic: str, partition: int) -> int | None:
        """The next offset safe to commit for the partition, or None if nothing was read."""
        state = self._partitions.get((topic, partition))
        return None if state is None else _committable(state)

    def all_committable(self) -> dict[TopicPartitionKey, int]:
        out: dict[TopicPartitionKey, int] = {}
        for key, state in self._partitions.items():
            committable = _committable(state)
            if committable is not None:
                out[key] = committable
        return out

    def done_ranges(self, topic: str, partition: int) -> list[Range]:
        """Finished offsets above the watermark (they wait for an earlier record), as ranges."""
        state = self._partitions.get((topic, partition))
        if state is None or not state.unfinished or state.next_offset is None:
            return []
        ranges: list[Range] = []
        previous = state.unfinished[0]
        for offset in state.unfinished:
            if offset > previous + 1:
                ranges.append((previous + 1, offset - 1))
            previous = offset
        if state.next_offset > previous + 1:
            ranges.append((previous + 1, state.next_offset - 1))
        return ranges

    def oldest_read_ms(self, topic: str, partition: int) -> int | None:
        """When the oldest unfinished record was read; None if none is."""
        state = self._partitions.get((topic, partition))
        if state is None or not state.unfinished:
            return None
        return state.read_at[state.unfinished[0]]

    def is_unfinished(self, topic: str, partition: int, offset: int) -> bool:
        """``offset`` was read and is not finished yet."""
        state = self._partitions.get((topic, partition))
        return state is not None and offset in state.read_at

    def outstanding(self, topic: str, partition: int) -> int:
        """Records tracked and not finished."""
        state = self._partitions.get((topic, partition))
        return 0 if state is None else len(state.unfinished)

    def forget(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """On revoke or loss: drop all state, so nothing is ever committed for them again."""
        for key in partitions:
            self._partitions.pop(key, None)


def _committable(state: _PartitionOffsets) -> int | None:
    if state.unfinished:
        return state.unfinished[0]
    return state.next_offset


def to_ranges(offsets: Iterable[int]) -> list[Range]:
    """Sorted, merged ranges of a set of offsets."""
    ranges: list[Range] = []
    for offset in sorted(set(offsets)):
        if ranges and ranges[-1][1] + 1 == offset:
            ranges[-1] = (ranges[-1][0], offset)
        else:
            ranges.append((offset, offset))
    return ranges


def merge_ranges(*groups: Iterable[Range]) -> list[Range]:
    """The union of several lists of ranges, sorted and merged."""
    merged: list[Range] = []
    for low, high in sorted(r for group in groups for r in group):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


# Commit metadata: which records above the committed offset are already finished, and since when
# dead-letter copies it does not cover may exist (scan_window.py). A partition's next owner (or
# this process after a crash) skips the finished ones instead of sending them again, so a record
# that finished while an earlier one was still in flight is not a duplicate; and it looks for
# dead-letter copies written since that instant (see dlq_recovery.py), so a crash between a
# dead-letter ack and the next commit does not write the copy twice. The broker keeps at most
# offset.metadata.max.bytes (4096 by default) per partition. An owner that starts draining a
# partition it is giving up says so ("drain:<until ms>"): a next owner assigned the partition
# before that drain ends waits for the final commit instead of re-sending what the drain
# delivers; it names itself ("by:<member id>"), so that a next owner stops waiting once that
# member has left the group (no clock needed). Format: "since:<ms>;drain:<ms>;by:<id>;done:0-3,7".
METADATA_PREFIX = "done:"
SINCE_PREFIX = "since:"
DRAIN_PREFIX = "drain:"
BY_PREFIX = "by:"
SEPARATOR = ";"
MAX_METADATA_CHARS = 3500


@dataclass(frozen=True)
class CommitMetadata:
    done: frozenset[int] = frozenset()  # absolute offsets above the committed one, finished
    since_ms: int | None = None  # no copy the commit does not cover is older (scan_window.py)
    draining_until_ms: int | None = None  # the owner drains and commits again before this
    draining_by: str | None = None  # the group member id of that owner


def encode_metadata(
    committed: int,
    done: list[Range],
    since_ms: int | None,
    draining_until_ms: int | None = None,
    max_chars: int = MAX_METADATA_CHARS,
    draining_by: str | None = None,
) -> tuple[str, int]:
    """The commit metadata of ``committed``: ``since_ms`` and ``draining_until_ms`` (if any) and
    ``done`` as ranges, within ``max_chars``; and the highest offset it covers (what finished
    above it and did not fit is not covered: it still counts as uncommitted)."""
    parts = [] if since_ms is None else [f"{SINCE_PREFIX}{since_ms}"]
    if draining_until_ms is not None:
        parts.append(f"{DRAIN_PREFIX}{draining_until_ms}")
        by = f"{BY_PREFIX}{draining_by}"
        # Only where it fits (a broker with a small offset.metadata.max.bytes: instants only).
        if (
            draining_by
            and SEPARATOR not in draining_by
            and len(SEPARATOR.join([*parts, by])) <= max_chars
        ):
            parts.append(by)
    room = max_chars - sum(len(p) + 1 for p in parts)
    ranges, covered = encode_done(committed, done, room)
    if ranges:
        parts.append(ranges)
    return SEPARATOR.join(parts), covered


def decode_metadata(committed: int, metadata: str | None) -> CommitMetadata:
    """What ``encode_metadata`` wrote; empty for anything unexpected (an older or foreign
    metadata text only costs re-sends, never a skipped record)."""
    if not metadata or committed < 0:
        return CommitMetadata()
    instants: dict[str, int | None] = {SINCE_PREFIX: None, DRAIN_PREFIX: None}
    done: set[int] = set()
    by: str | None = None
    for part in metadata.split(SEPARATOR):
        if part.startswith(METADATA_PREFIX):
            done = decode_done(committed, part)
            continue
        if part.startswith(BY_PREFIX):
            by = part[len(BY_PREFIX) :] or None
            continue
        for prefix in instants:
            if part.startswith(prefix):
                try:
                    instants[prefix] = int(part[len(prefix) :])
                except ValueError:
                    instants[prefix] = None
    return CommitMetadata(
        frozenset(done),
        instants[SINCE_PREFIX],
        instants[DRAIN_PREFIX],
        by if instants[DRAIN_PREFIX] else None,
    )


def encode_done(
    committed: int, done: list[Range], max_chars: int = MAX_METADATA_CHARS
) -> tuple[str, int]:
    """``done`` (sorted ranges) as ranges relative to ``committed``: "done:0-3,7", at most
    ``max_chars`` long; and the highest offset covered (``committed - 1`` when none is). Ranges
    below ``committed`` are dropped: a relative offset is never negative (a negative one made
    the decoder discard the whole set)."""
    parts: list[str] = []
    length = len(METADATA_PREFIX)
    covered = committed - 1
    for low, high in done:
        if high < committed:
            continue
        low = max(low, committed)
        rel_low, rel_high = low - committed, high - committed
        part = str(rel_low) if rel_low == rel_high else f"{rel_low}-{rel_high}"
        if length + len(part) + 1 > max_chars:
            break  # what does not fit is not covered: re-sent after a crash, and counted
        parts.append(part)
        length += len(part) + 1
        covered = high
    return (METADATA_PREFIX + ",".join(parts) if parts else ""), covered


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
