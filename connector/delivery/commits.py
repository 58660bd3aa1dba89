"""Committer: offset commits of the contiguous watermark, and the count of finished records that no
commit Kafka accepted covers yet (what a crash now would send again).

Commits are throttled to COMMIT_INTERVAL_SECONDS and asynchronous; one goes out early when the
uncommitted records reach half of MAX_UNCOMMITTED_RECORDS, and at the cap the consume loop sends
nothing new (``send_room``). On revoke and shutdown they are forced and synchronous. Each carries
its metadata (offsets.py): what finished above the watermark, since when the rest was worked on,
and, while a partition is being drained for a handover, that a final commit follows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from connector.delivery.handoff import member_id
from connector.delivery.offsets import (
    MAX_METADATA_CHARS,
    OffsetTracker,
    Range,
    encode_metadata,
    merge_ranges,
    to_ranges,
)
from connector.delivery.partition import PartitionState, TPKey
from connector.delivery.scan_window import commit_since_ms
from connector.observability.metrics import Metrics

logger = logging.getLogger(__name__)

# An early commit goes out no more often than this, and only while commits land (no commit
# storm while Kafka is away).
EARLY_COMMIT_MIN_S = 0.02
# The cap holding sends back this long means commits are not landing: say so (every 30 s).
GATE_WARN_AFTER_S = 5.0
GATE_LOG_EVERY_S = 30.0
# A draining owner promises its final commit within its drain deadline plus this.
HANDOFF_MARGIN_S = 10.0
# The final commit of revoked partitions is sent again while refused (a generation that
# librdkafka is replacing under the revoke callback), this long at most, this often.
REVOKE_COMMIT_RETRY_S = 5.0
REVOKE_COMMIT_BACKOFF_S = 0.2
# Below this the finished ranges are dropped from the metadata altogether.
MIN_METADATA_CHARS = 64


class Committer:
    """Owns the consumer's offset commits for the partitions of ``partitions`` (shared with the
    consume loop, which adds and removes them). Not thread-safe, except that the final commit
    may run on a helper thread while the loop only polls."""

    def __init__(
        self,
        *,
        consumer: Any,
        tracker: OffsetTracker,
        partitions: dict[TPKey, PartitionState],
        metrics: Metrics,
        interval_s: float,
        max_uncommitted: int,
        drain_timeout_s: float,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._consumer = consumer
        self._tracker = tracker
        self._partitions = partitions
        self._metrics = metrics
        self._interval_s = interval_s
        self.max_uncommitted = max_uncommitted
        self._drain_timeout_s = drain_timeout_s
        self._enabled = enabled
        self._clock = clock
        self._wall_clock = wall_clock
        self._committed: dict[TPKey, tuple[int, str]] = {}  # last sent or landed, per partition
        self._last_commit = 0.0
        self._last_failed = False
        self.uncommitted = 0  # finished records no landed commit covers (see _land)
        self._gate_closed_since: float | None = None
        self._metadata_chars = MAX_METADATA_CHARS  # lowered when the broker refuses it
        self._metadata_off = False
        self._gate_logged = 0.0
        self._announcer: str | None = None  # this member's id, while announcing a drain

    # -- the cap on uncommitted records --------------------------------------------------------
    def finished(self, state: PartitionState) -> None:
        """A record of ``state`` finished: it counts until a landed commit covers it."""
        state.finished += 1
        if self._enabled:  # a dry run commits nothing, so it has nothing to cap either
            self.uncommitted += 1

    def send_room(self, in_flight: int, waiting: bool) -> int:
        """How many more requests may go out under MAX_UNCOMMITTED_RECORDS (``waiting``: some
        are ready to); warns when the cap has held sends back for a while."""
        room = self.max_uncommitted - self.uncommitted - in_flight
        if room > 0:
            self._gate_closed_since = None
        elif waiting:
            now = self._clock()
            if self._gate_closed_since is None:
                self._gate_closed_since = now
            held_s = now - self._gate_closed_since
            if held_s >= GATE_WARN_AFTER_S and now - self._gate_logged >= GATE_LOG_EVERY_S:
                self._gate_logged = now
                logger.warning(
                    "no offset commit has landed for %.0fs and %d records are finished and not "
                    "covered (MAX_UNCOMMITTED_RECORDS): nothing new is sent until a commit lands",
                    held_s,
                    self.uncommitted,
                )
        return room

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def landing(self) -> bool:
        """The last commit answered did not fail."""
        return not self._last_failed

    def due_now(self) -> None:
        """Make the next throttled commit go out at once."""
        self._last_commit = 0.0

    def early_due(self, in_flight: int) -> bool:
        return 2 * (self.uncommitted + in_flight) >= self.max_uncommitted

    # -- commits -------------------------------------------------------------------------------
    def commit(
        self,
        force: bool = False,
        only: Iterable[TPKey] | None = None,
        *,
        early: bool = False,
        draining_until_ms: int | None = None,
    ) -> bool:
        """Commit the watermark: throttled and asynchronous (``early``: before the interval,
        the uncommitted records near their cap), or forced (revoke: synchronous).
        Returns False only when a forced commit failed."""
        if not self._enabled:
            return True
        now = self._clock()
        since_last = now - self._last_commit
        early_ok = early and not self._last_failed and since_last >= EARLY_COMMIT_MIN_S
        if not force and since_last < self._interval_s and not early_ok:
            return True
        self._last_commit = now
        offsets = self._collect(force, only, draining_until_ms)
        if not offsets:
            return True
        if not force or draining_until_ms is not None:
            # Throttled commits are asynchronous: a synchronous one issued while the group
            # rebalances waits behind the JoinGroup (up to a minute), and the loop with it.
            # on_commit reports the result; a failed commit is simply sent again next time.
            for tp in offsets:
                self._committed[(tp.topic, tp.partition)] = (tp.offset, tp.metadata or "")
            try:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            except KafkaException as exc:
                self.on_commit(exc.args[0], offsets)
            return True
        try:
            result = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            self.on_commit(exc.args[0], offsets)
            return False
        self.on_commit(None, result or offsets)
        return all(tp.error is None for tp in result or offsets)

    def final_offsets(self) -> list[Any]:
        """The offsets of the final commit, prepared on the consume thread: the helper thread
        that sends it (Processor._final_commit) touches nothing else of the committer, and its
        answer comes back through ``final_result`` on the consume thread too."""
        if not self._enabled:
            return []
        self._last_commit = self._clock()
        return self._collect(True, None, None)

    def final_result(self, offsets: list[Any], result: Any, error: Any) -> bool:
        """The final commit's answer (on the consume thread); True when every partition landed."""
        if error is not None:
            self.on_commit(error, offsets)
            return False
        self.on_commit(None, result or offsets)
        return all(tp.error is None for tp in result or offsets)

    def _collect(
        self, force: bool, only: Iterable[TPKey] | None, draining_until_ms: int | None
    ) -> list[Any]:
        """The offsets (with their metadata) a commit now would send, recorded as sent."""
        keys = set(only) if only is not None else None
        offsets: list[Any] = []
        committable = self._tracker.all_committable()
        for key, assigned in self._partitions.items():
            # Nothing read since the assignment (idle): its commit is the previous owner's,
            # made again now and then so that its "since" follows (see _since_ms).
            idle = key not in committable and not assigned.held
            if idle and assigned.initial_committed is not None:
                committable[key] = assigned.initial_committed
        for (topic, partition), next_offset in committable.items():
            if keys is not None and (topic, partition) not in keys:
                continue
            state = self._partitions.get((topic, partition))
            done = self._tracker.done_ranges(topic, partition)
            ranges = done
            if state is not None and (state.already_done or state.already_dead_lettered):
                # Known finished and not read again yet: the next owner must skip them too.
                known = to_ranges(state.already_done | state.already_dead_lettered)
                ranges = merge_ranges(done, known)
            # Encoded twice: what the text covers decides its "since". The second text is not
            # longer than the first (since_ms is at most now, the same number of digits), so it
            # covers at least as much.
            now_ms = int(self._wall_clock() * 1000)
            metadata, covered = encode_metadata(
                next_offset,
                ranges,
                now_ms,
                draining_until_ms,
                self._metadata_chars,
                self._announcer,
            )
            since = (
                now_ms
                if state is None
                else commit_since_ms(state, self._tracker, next_offset, covered, now_ms)
            )
            metadata, covered = encode_metadata(
                next_offset, ranges, since, draining_until_ms, self._metadata_chars, self._announcer
            )
            if self._metadata_off:
                metadata, covered = "", next_offset - 1
            # What this commit covers, counted in records finished here: all of them but those
            # above what the metadata could hold (issue #13, defect 6: they stay uncommitted).
            landing = 0 if state is None else state.finished - _uncovered(state, done, covered)
            baseline = self._committed.get((topic, partition)) or (
                (state.initial_committed, "") if state is not None else None
            )
            # A forced commit (revoke, shutdown) is sent even when it repeats the last one:
            # that one may be an asynchronous commit still in flight, or about to fail because
            # the group is rebalancing, and the partition's next owner starts from what landed.
            if force or baseline != (next_offset, metadata):
                tp = TopicPartition(topic, partition, next_offset)
                if metadata:
                    tp = TopicPartition(topic, partition, next_offset, metadata=metadata)
                offsets.append(tp)
                if state is not None:
                    state.sent_commits.append((next_offset, metadata, landing))
            elif state is not None and not state.sent_commits:
                # Nothing new to record and no commit pending: the landed commit (same text)
                # covers what it can; records above a full metadata text stay uncovered.
                self._land(state, landing)
        return offsets

    def announce_drain(self, keys: list[TPKey]) -> None:
        """Tell a next owner, through the commit metadata, that these partitions are being
        drained and that a final commit follows: librdkafka can hand a partition over while its
        revoke callback still runs (a rejoin on a topic metadata change), and without this the
        new owner would re-send what the drain delivers. Asynchronous: it goes out before the
        member's next JoinGroup on the coordinator connection, and never blocks."""
        until_s = self._wall_clock() + self._drain_timeout_s + HANDOFF_MARGIN_S
        self._announcer = member_id(self._consumer)
        try:
            self.commit(force=True, only=keys, draining_until_ms=int(until_s * 1000))
        finally:
            self._announcer = None

    def commit_revoked(self, keys: list[TPKey]) -> None:
        """The final commit of revoked partitions. When librdkafka rejoined the group under the
        revoke callback (it does on a topic metadata change), the commit carries a generation the
        broker no longer accepts; sent again it carries the new one. Committing a partition that
        may already be assigned elsewhere is safe here: its next owner waits for this commit
        (the "drain:" announcement) before it reads."""
        deadline = self._clock() + REVOKE_COMMIT_RETRY_S
        while not self.commit(force=True, only=keys) and self._clock() < deadline:
            time.sleep(REVOKE_COMMIT_BACKOFF_S)

    def on_commit(self, error: Any, partitions: list[Any]) -> None:
        """Result of a commit (librdkafka's on_commit callback, served by consume())."""
        if error is not None:
            self._metrics.offset_commits.labels("failure").inc()
            self._last_failed = True
            if _too_large(error) or any(_too_large(tp.error) for tp in partitions):
                self._shrink_metadata()
            logger.warning("offset commit failed (will retry): %s", error)
            for tp in partitions:
                self._committed.pop((tp.topic, tp.partition), None)
                state = self._partitions.get((tp.topic, tp.partition))
                if state is not None:
                    _answered(state, tp)
            return
        failed = False
        for tp in partitions:
            key = (tp.topic, tp.partition)
            state = self._partitions.get(key)
            sent = None if state is None else _answered(state, tp)
            if tp.error is not None:
                failed = True
                self._committed.pop(key, None)
                if _too_large(tp.error):
                    self._shrink_metadata()
                logger.warning(
                    "offset commit failed for %s[%s]: %s", tp.topic, tp.partition, tp.error
                )
                continue
            if state is not None and sent is not None:
                self._land(state, sent)
            if state is not None:
                state.has_commit = True
                state.landed_offset = max(tp.offset, state.landed_offset or tp.offset)
            self._committed[key] = (tp.offset, tp.metadata or "")
            if key in self._partitions:  # a late result for a revoked partition sets no gauge
                self._metrics.committed_offset.labels(tp.topic, str(tp.partition)).set(tp.offset)
        self._metrics.offset_commits.labels("failure" if failed else "success").inc()
        self._last_failed = failed

    def committed_offset(self, key: TPKey) -> int | None:
        """The last offset committed (or being committed) for ``key`` by this process."""
        last = self._committed.get(key)
        return None if last is None else last[0]

    def forget(self, key: TPKey, state: PartitionState | None) -> None:
        """``key`` was revoked or lost: never commit it again, and stop counting its records."""
        self._committed.pop(key, None)
        if state is not None:
            self.uncommitted -= state.finished - state.landed

    def _land(self, state: PartitionState, covered: int) -> None:
        """The last commit Kafka accepted covers ``covered`` of the records finished in it."""
        self.uncommitted -= covered - state.landed
        state.landed = covered

    def _shrink_metadata(self) -> None:
        """The broker refused a commit's metadata (OFFSET_METADATA_TOO_LARGE: its
        offset.metadata.max.bytes is below ours): halve what we write, then write only the
        instants, then nothing. Without the finished ranges, what finished above a slow record
        counts as uncommitted; without the instants, the handoff fence and the dead-letter scan
        are off and a next owner may send or dead-letter such records again."""
        if self._metadata_chars > MIN_METADATA_CHARS:
            self._metadata_chars //= 2
        elif self._metadata_chars > 0:
            self._metadata_chars = 0
        else:
            self._metadata_off = True
        logger.warning(
            "the broker refused the commit metadata as too large (offset.metadata.max.bytes); "
            "writing at most %d characters of it from now on",
            0 if self._metadata_off else self._metadata_chars,
        )


def _too_large(error: Any) -> bool:
    code = getattr(error, "code", None)
    return callable(code) and code() == KafkaError.OFFSET_METADATA_TOO_LARGE


def _uncovered(state: PartitionState, done: list[Range], covered: int) -> int:
    """Records finished here above ``covered`` (an over-count when the ranges span offsets that
    do not exist, never more than the records finished)."""
    above = sum(high - max(low, covered + 1) + 1 for low, high in done if high > covered)
    return min(above, state.finished)


def _answered(state: PartitionState, tp: Any) -> int | None:
    """Match a commit result to the commit sent (same offset and metadata, else the oldest with
    the same offset) and forget it and the older ones it overtook; return how many records had
    finished when it was sent."""
    metadata = tp.metadata or ""
    sent = state.sent_commits
    index = next((i for i, c in enumerate(sent) if c[0] == tp.offset and c[1] == metadata), None)
    if index is None:
        index = next((i for i, c in enumerate(sent) if c[0] == tp.offset), None)
    if index is None:
        return None
    finished = sent[index][2]
    del sent[: index + 1]
    return finished
