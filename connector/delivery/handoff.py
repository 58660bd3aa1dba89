"""Handoffs: partitions assigned while their previous owner still drains them.

An owner that starts draining a partition it gives up announces it in its commit metadata
("drain:<deadline>", see commits.py). librdkafka's classic protocol can assign the partition
elsewhere before that drain ends (a rejoin on a topic metadata change, under the revoke
callback); a new owner that read the committed offset then would re-send everything the drain
delivers. So the new owner reads nothing from such a partition (it stays paused), reads the
group's commit again every HANDOFF_POLL_S without blocking the loop, and once the announcement is
gone (the final commit landed), its announcer has left the group, or its deadline passed, seeks
to that commit and starts.

Clocks: the announcement's deadline is the old owner's wall clock. It is compared with ours once,
at assignment (``handoff_wait_s``), and turned into a wait on our monotonic clock that is never
longer than our own drain bound (an old owner's clock far ahead cannot hold a partition for
hours) and, for a skew up to that bound either way, never shorter than the drain really has left
(an old owner's clock behind ours does not skip the wait); an owner that names itself in the
announcement is waited for the bound whatever the clocks say. What ends a wait early needs no
clock: the final commit, or the announcing member gone from the group.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicPartition,
)

from connector.delivery.offsets import CommitMetadata, decode_metadata
from connector.delivery.partition import PartitionState, TPKey

logger = logging.getLogger(__name__)

HANDOFF_POLL_S = 0.2


def handoff_wait_s(
    until_ms: int, now_ms: int, bound_s: float, *, announcer: str | None = None
) -> float:
    """How long a new owner waits, on its own monotonic clock, for a drain announced until
    ``until_ms`` (the old owner's wall clock) when its own wall clock reads ``now_ms``.

    A real drain never has more than ``bound_s`` left (the announcer's deadline is its drain
    timeout plus a margin; ours is the same configuration), so the wait is never longer. An
    announcer that named itself is waited for the whole bound whatever the clocks say: the
    wait ends early, without any clock, when its final commit lands or it leaves the group.
    An unnamed one (an older version, or metadata too small for the name): with the two clocks
    ``skew`` apart the drain has ``remaining - skew`` left, so waiting ``remaining + bound_s``
    covers any ``|skew| <= bound_s``; nothing once the deadline passed more than ``bound_s``
    ago (a drain that ended long ago, its final commit lost)."""
    if announcer:
        return bound_s
    remaining_s = (until_ms - now_ms) / 1000
    return min(bound_s, max(0.0, remaining_s + bound_s))


# Reads the group's committed offsets (with metadata) for some partitions, without blocking.
CommittedReader = Callable[[list[TopicPartition]], "Future[list[TopicPartition]]"]
# The member ids of the group (this one included), without blocking.
GroupMembers = Callable[[], "Future[list[str]]"]


def member_id(consumer: Any) -> str | None:
    """This member's group member id, or None (not known yet, or a consumer without one):
    named in a drain announcement (commits.py) so that a next owner can tell when it left."""
    memberid = getattr(consumer, "memberid", None)
    if memberid is None:
        return None
    try:
        member = memberid()
    except (KafkaException, RuntimeError):
        return None
    return member if isinstance(member, str) and member else None


def admin_group_members(admin: Any, group_id: str) -> GroupMembers:
    """A GroupMembers over an AdminClient (DescribeConsumerGroups; works for the classic and the
    consumer group protocols)."""

    def count() -> Future[list[str]]:
        result: Future[list[str]] = Future()

        def done(future: Future[Any]) -> None:
            try:
                result.set_result([m.member_id for m in future.result().members])
            except KafkaException as exc:
                result.set_exception(exc)
            except Exception as exc:  # noqa: BLE001 - the loop only knows KafkaException
                result.set_exception(KafkaException(f"{type(exc).__name__}: {exc}"))

        admin.describe_consumer_groups([group_id], request_timeout=5)[group_id].add_done_callback(
            done
        )
        return result

    return count


def admin_committed_reader(admin: Any, group_id: str) -> CommittedReader:
    """A CommittedReader over an AdminClient: its own connections, so a read is never queued
    behind this member's JoinGroup on the consumer's coordinator connection."""

    def read(partitions: list[TopicPartition]) -> Future[list[TopicPartition]]:
        request = ConsumerGroupTopicPartitions(group_id, partitions)
        futures = admin.list_consumer_group_offsets([request], request_timeout=5)
        result: Future[list[TopicPartition]] = Future()

        def done(future: Future[Any]) -> None:
            try:
                result.set_result(list(future.result().topic_partitions))
            except KafkaException as exc:
                result.set_exception(exc)
            except Exception as exc:  # noqa: BLE001 - the loop only knows KafkaException
                result.set_exception(KafkaException(f"{type(exc).__name__}: {exc}"))

        futures[group_id].add_done_callback(done)
        return result

    return read


class Handoffs:
    """Watches the partitions of ``partitions`` whose ``handoff_until_ms`` is set (by the
    assignment) and ends each handoff; ``rescan(state, metadata)`` then holds the partition until
    the dead letters the previous owner wrote since its final commit are known (scan_gate.py)."""

    def __init__(
        self,
        *,
        consumer: Any,
        partitions: dict[TPKey, PartitionState],
        reader: CommittedReader | None,
        rescan: Callable[[PartitionState, CommitMetadata], None],
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        members: GroupMembers | None = None,
    ) -> None:
        self._consumer = consumer
        self._partitions = partitions
        self._reader = reader or self._read_committed
        # A drain announced by an owner that has left the group will never end with a commit
        # (it stopped before its final commit landed, or was killed): when this member is the
        # group's only one, nobody drains, so waiting out the deadline would only delay it.
        self._members = members
        self._members_read: Future[list[str]] | None = None
        self._rescan = rescan
        self._clock = clock
        self._wall_clock = wall_clock

    def check(self) -> None:
        """Read the commit of each waiting partition again, and start it from that commit once
        the announcement is gone (its final commit) or has expired."""
        now = self._clock()
        for key, state in list(self._partitions.items()):
            if state.handoff_until_ms is None:
                continue
            read = state.handoff_read
            if read is None:
                if now >= state.handoff_next_read:
                    state.handoff_read = self._reader([TopicPartition(*key)])
                continue
            if not read.done():
                continue
            state.handoff_read = None
            state.handoff_next_read = now + HANDOFF_POLL_S
            expired = now >= state.handoff_deadline
            try:
                tp = next(t for t in read.result() if (t.topic, t.partition) == key)
                if tp.error is not None:
                    raise KafkaException(tp.error)
            except (KafkaException, StopIteration) as exc:
                if not expired:
                    continue
                logger.warning("%s[%s]: committed offset unreadable: %s", *key, exc)
                tp = TopicPartition(key[0], key[1], state.initial_committed or OFFSET_BEGINNING)
            offset = tp.offset if tp.offset >= 0 else None
            metadata = CommitMetadata() if offset is None else decode_metadata(offset, tp.metadata)
            if metadata.draining_until_ms is not None and not expired:
                if not self._announcer_gone(metadata.draining_by):
                    continue
                logger.info(
                    "%s[%s]: its previous owner has left the group; not waiting for its drain",
                    key[0],
                    key[1],
                )
            self._end(state, offset, metadata, expired=expired)

    def _announcer_gone(self, announcer: str | None) -> bool:
        """True once a members read (issued here, never blocking) lists this member and either
        nobody else or not ``announcer`` (the draining owner that named itself): a member that
        left will never make its final commit. A description without this member (a group of
        another protocol, a read during a rebalance) never counts."""
        if self._members is None:
            return False
        read = self._members_read
        if read is None:
            self._members_read = self._members()
            return False
        if not read.done():
            return False
        self._members_read = None  # read again next time: membership changes
        try:
            members = read.result()
            me = self._consumer.memberid()
        except (KafkaException, RuntimeError):
            return False
        if not me or me not in members:
            return False
        if announcer == me:
            return True  # our own drain, before this partition came back: it is over
        return members == [me] or (announcer is not None and announcer not in members)

    def _end(
        self,
        state: PartitionState,
        offset: int | None,
        metadata: CommitMetadata,
        *,
        expired: bool,
    ) -> None:
        key = state.key
        start = offset if offset is not None else OFFSET_BEGINNING
        try:
            self._consumer.seek(TopicPartition(key[0], key[1], start))
        except KafkaException as exc:
            # The fetcher may not have started yet: try again with the next read.
            logger.debug("%s[%s]: seek to %s not possible yet: %s", *key, start, exc)
            return
        state.handoff_until_ms = None
        state.initial_committed = offset
        state.already_done = set(metadata.done)
        if offset is not None:
            self._rescan(state, metadata)  # holds it until the dead-letter scan answers
        state.last_offset = None
        if expired:
            logger.warning(
                "%s[%s]: the previous owner's drain did not end with a commit in time; "
                "starting from offset %s (what it delivered since may be sent again)",
                key[0],
                key[1],
                offset,
            )
        else:
            logger.info("%s[%s]: handed over at offset %s", key[0], key[1], offset)

    def _read_committed(self, partitions: list[TopicPartition]) -> Future[list[TopicPartition]]:
        """Fallback reader (the app passes a non-blocking AdminClient one): the consumer's own
        committed(), which can wait behind this member's JoinGroup for its timeout."""
        future: Future[list[TopicPartition]] = Future()
        try:
            future.set_result(self._consumer.committed(partitions, timeout=1))
        except KafkaException as exc:
            future.set_exception(exc)
        return future
