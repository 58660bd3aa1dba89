"""The sent-ledger: every event Inkit accepted, remembered in a compacted Kafka topic.

A duplicate here is a second paper letter. Offsets alone cannot prevent one: a group reset to
earliest, a new group id, a producer that wrote the same event twice, or a crash after a send
and before its commit all re-read records that were already delivered. So after each 2xx the
connector produces one ledger record keyed by the event's identity (Segment's ``messageId``, or
a hash of the event when it has none, see ``identity_of``), and before each send it looks the
identity up. A source offset is committed only after the ledger records of every delivered
record below it are acknowledged (the delivery finishes at the ledger ack).

Every member reads the whole ledger (all its partitions, from the beginning, up to the end
offsets it saw at start-up) before it consumes, then follows it in a background thread, so an
event sent by any member, under any group id and any partition count of the source topic, is
found. The index keeps 12 bytes per remembered event in sorted arrays (a 64-bit hash of the
identity, a 32-bit send time) plus a small dict of the newest entries.

Ledger records are written with the producer the dead-letter queue uses (idempotent,
``acks=all``); their delivery callbacks are served by the same ``poll()``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from connector.errors import StartupError
from connector.models import RecordRef, SegmentMessage
from connector.observability.metrics import Metrics

logger = logging.getLogger(__name__)

LOAD_TIMEOUT_S = 120.0
RETRY_S = 1.0
MERGE_AT = 50_000  # newest entries kept in a dict until merged into the sorted arrays
FOLLOW_POLL_S = 0.2
_ELECTING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TIMED_OUT,
    }
)


def identity_of(event: SegmentMessage) -> str:
    """The event's identity: Segment's ``messageId``; without one, ``sha256:`` and the hash of
    the event's canonical JSON (type, ids, timestamps, traits, context, integrations), so the
    same event produced twice is recognised and two different events never are."""
    if event.message_id:
        return event.message_id
    canonical = json.dumps(
        {
            "type": event.type,
            "userId": event.user_id,
            "anonymousId": event.anonymous_id,
            "timestamp": event.timestamp,
            "originalTimestamp": event.original_timestamp,
            "sentAt": event.sent_at,
            "traits": event.traits,
            "context": event.context,
            "integrations": event.integrations,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def hash64(identity: str | bytes) -> int:
    """A 64-bit hash of the identity's UTF-8 bytes. Python's own (SipHash): the index lives in
    one process's memory and is rebuilt at every start, so a per-process seed is fine, and it
    is about ten times cheaper than blake2b (the rebuild hashes every ledger record)."""
    return hash(identity.encode() if isinstance(identity, str) else identity)


class LedgerIndex:
    """Identities (as 64-bit hashes) with the time they were sent, in seconds.

    Lookups run on the consume thread, additions on the follower thread and on ledger acks;
    every mutation is a single dict operation or an atomic swap of the array pair, so no lock is
    needed under the GIL. A 64-bit hash collision (about 1 in 10^13 per lookup with a million
    entries) would skip one event; the figure is in the README."""

    def __init__(self) -> None:
        self._sorted: tuple[array[int], array[int]] = (array("q"), array("I"))
        self._recent: dict[int, int] = {}
        self._lock = threading.Lock()  # only merges take it: two merges must not interleave

    def __len__(self) -> int:
        return len(self._sorted[0]) + len(self._recent)

    def add(self, key: int, sent_s: int) -> None:
        if self._recent.get(key, -1) < sent_s:
            self._recent[key] = sent_s
        if len(self._recent) >= MERGE_AT:
            self.merge()

    def sent_at(self, key: int) -> int | None:
        """When ``key`` was last sent (seconds), or None."""
        recent = self._recent.get(key)
        keys, times = self._sorted
        i = bisect_left(keys, key)
        bulk = times[i] if i < len(keys) and keys[i] == key else None
        if recent is None:
            return bulk
        return recent if bulk is None else max(recent, bulk)

    def load(self, entries: dict[int, int]) -> None:
        """Replace the whole index with ``entries`` (hash -> sent seconds), at start-up."""
        ordered = sorted(entries)
        self._sorted = (array("q", ordered), array("I", (entries[k] for k in ordered)))
        self._recent = {}

    def merge(self) -> None:
        """Fold the newest entries into the sorted arrays (O(n), off the hot path)."""
        with self._lock:
            recent = dict(self._recent)
            if not recent:
                return
            keys, times = self._sorted
            merged: dict[int, int] = dict(zip(keys, times, strict=True))
            for key, sent_s in recent.items():
                if merged.get(key, -1) < sent_s:
                    merged[key] = sent_s
            ordered = sorted(merged)
            self._sorted = (array("q", ordered), array("I", (merged[k] for k in ordered)))
            for key in recent:
                if self._recent.get(key) == recent[key]:
                    del self._recent[key]


class SentLedger:
    """Looks events up before a send and records them after a 2xx.

    Contract: ``load`` blocks until the ledger is read to the end offsets it found (raises
    StartupError when it cannot be), then starts the follower thread. ``already_sent`` is a
    pure lookup. ``record`` produces asynchronously and calls ``done`` on the consume thread
    (from the producer's ``poll``) once the ledger record is acknowledged; a failed write is
    retried every second by ``tick`` until it lands, so a delivery is never finished (nor its
    offset committed) before its ledger record is durable."""

    def __init__(
        self,
        *,
        producer: Any,
        consumer_factory: Callable[[], Any],
        topic: str,
        window_s: float,
        metrics: Metrics,
        group_id: str,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._producer = producer
        self._factory = consumer_factory
        self._topic = topic
        self._window_s = window_s
        self._metrics = metrics
        self._group = group_id
        self._clock = clock
        self._wall_clock = wall_clock
        self._index = LedgerIndex()
        self._retry: deque[tuple[float, str, RecordRef, Callable[[], None]]] = deque()
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None
        self._consumer: Any = None
        self.failing = False

    # -- start-up ------------------------------------------------------------------------------
    def load(self, timeout_s: float = LOAD_TIMEOUT_S) -> float:
        """Read the ledger from the beginning to its current end; return the seconds it took."""
        started = self._clock()
        consumer = self._factory()
        try:
            metadata = consumer.list_topics(self._topic, timeout=10)
            topic = metadata.topics.get(self._topic)
            if topic is None or topic.error is not None:
                raise StartupError(
                    f"sent-ledger topic {self._topic!r} cannot be read: "
                    "create it (cleanup.policy=compact) or set LEDGER_ENABLED=false"
                )
            partitions = [TopicPartition(self._topic, p) for p in topic.partitions]
            ends: dict[int, int] = {}
            pending: set[int] = set()
            for tp in partitions:
                low, high = self._watermarks(consumer, tp, started + timeout_s)
                ends[tp.partition] = high
                if high > low:
                    pending.add(tp.partition)
            consumer.assign(
                [TopicPartition(self._topic, tp.partition, OFFSET_BEGINNING) for tp in partitions]
            )
            bulk: dict[int, int] = {}
            deadline = started + timeout_s
            while pending:
                if self._clock() > deadline:
                    raise StartupError(
                        f"sent-ledger topic {self._topic!r} was not read within {timeout_s:.0f}s"
                    )
                last: dict[int, int] = {}
                for msg in consumer.consume(10_000, 0.5):
                    # The hot loop of a rebuild (a million records): as few calls as possible.
                    key = msg.key()
                    if key is None:
                        error = msg.error()
                        if error is None:
                            continue
                        if error.code() == KafkaError._PARTITION_EOF:
                            pending.discard(msg.partition())  # the rest was compacted away
                            continue
                        raise StartupError(f"reading the sent-ledger failed: {error.str()}")
                    if not len(msg):  # a tombstone (len() is the value's length)
                        continue
                    h = hash(key)
                    sent_s = msg.timestamp()[1] // 1000
                    if bulk.get(h, -1) < sent_s:
                        bulk[h] = sent_s
                    last[msg.partition()] = msg.offset()
                for partition, offset in last.items():
                    if offset + 1 >= ends[partition]:
                        pending.discard(partition)
            self._index.load(bulk)
        except KafkaException as exc:
            consumer.close()
            raise StartupError(f"reading the sent-ledger failed: {exc.args[0]}") from exc
        except BaseException:
            consumer.close()
            raise
        self._consumer = consumer
        seconds = self._clock() - started
        self._metrics.ledger_rebuild_seconds.set(seconds)
        self._metrics.ledger_entries.set(len(self._index))
        self._follower = threading.Thread(target=self._follow, name="ledger-follower", daemon=True)
        self._follower.start()
        return seconds

    def _watermarks(self, consumer: Any, tp: TopicPartition, deadline: float) -> tuple[int, int]:
        """The partition's offsets, waiting out a leader election (a topic just created)."""
        while True:
            try:
                low, high = consumer.get_watermark_offsets(tp, timeout=10)
                return int(low), int(high)
            except KafkaException as exc:
                # NOT_LEADER_FOR_PARTITION and LEADER_NOT_AVAILABLE are not flagged retriable by
                # librdkafka, yet they are what a topic created a moment ago answers.
                if exc.args[0].code() not in _ELECTING or self._clock() > deadline:
                    raise
                time.sleep(0.2)

    def _follow(self) -> None:
        """Keep reading what any member writes, so a lookup sees it within a poll interval."""
        while not self._stop.is_set():
            try:
                for msg in self._consumer.consume(1000, FOLLOW_POLL_S):
                    if msg.error() is None and msg.key() is not None and msg.value() is not None:
                        _ts_type, ts_ms = msg.timestamp()
                        self._index.add(hash64(msg.key()), max(0, ts_ms // 1000))
            except (KafkaException, RuntimeError) as exc:
                if self._stop.is_set():
                    return
                logger.warning("sent-ledger follower: %s", exc)
                self._stop.wait(1.0)
            self._metrics.ledger_entries.set(len(self._index))

    @property
    def size(self) -> int:
        return len(self._index)

    def close(self) -> None:
        self._stop.set()
        if self._follower is not None:
            self._follower.join(5.0)
        if self._consumer is not None:
            with contextlib.suppress(RuntimeError):  # closed already
                self._consumer.close()
            self._consumer = None

    # -- the hot path --------------------------------------------------------------------------
    def already_sent(self, identity: str) -> bool:
        sent_s = self._index.sent_at(hash64(identity))
        hit = sent_s is not None and self._wall_clock() - sent_s <= self._window_s
        self._metrics.ledger_lookups.labels("hit" if hit else "miss").inc()
        return hit

    def record(self, identity: str, ref: RecordRef, done: Callable[[], None]) -> None:
        """Produce the ledger record of a delivered event; ``done()`` once it is durable."""
        # Remembered at once (Inkit accepted it): a second copy of the event, dispatched before
        # this record is acknowledged, is skipped too. The ack gates only the offset commit.
        self._index.add(hash64(identity), int(self._wall_clock()))
        value = json.dumps(
            {
                "sent_at_ms": int(self._wall_clock() * 1000),
                "group": self._group,
                "topic": ref.topic,
                "partition": ref.partition,
                "offset": ref.offset,
            },
            separators=(",", ":"),
        ).encode()

        def delivered(err: Any, _msg: Any) -> None:
            if err is None:
                self._metrics.ledger_writes.labels("ok").inc()
                if self.failing:
                    self.failing = False
                    logger.info("sent-ledger writes succeed again")
                done()
            else:
                self._failed(identity, ref, done, str(err))

        try:
            self._producer.produce(
                self._topic, key=identity.encode(), value=value, on_delivery=delivered
            )
        except (BufferError, KafkaException) as exc:
            self._failed(identity, ref, done, str(exc))

    def _failed(self, identity: str, ref: RecordRef, done: Callable[[], None], why: str) -> None:
        self._metrics.ledger_writes.labels("failed").inc()
        if not self.failing:
            self.failing = True
            logger.warning(
                "could not write to the sent-ledger topic %s (%s); deliveries are not finished "
                "(nor committed) until it can be written: retrying every %.0fs",
                self._topic,
                why,
                RETRY_S,
            )
        self._retry.append((self._clock() + RETRY_S, identity, ref, done))

    def tick(self) -> None:
        """Re-produce the ledger records whose write failed (consume thread, every loop turn)."""
        now = self._clock()
        for _ in range(len(self._retry)):
            due, identity, ref, done = self._retry[0]
            if due > now:
                break
            self._retry.popleft()
            self.record(identity, ref, done)

    def forget(self, keep: Callable[[RecordRef], bool]) -> int:
        """Drop pending retries of partitions this member no longer owns; how many."""
        before = len(self._retry)
        self._retry = deque(item for item in self._retry if keep(item[2]))
        return before - len(self._retry)
