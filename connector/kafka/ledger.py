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

Under AMBIGUOUS_SEND_POLICY=dead-letter each send is preceded by an *intent* (same key, a value
starting with ``i``), acknowledged before the request goes; the sent record or a tombstone
(nothing was sent) closes it. An intent still open when a member died tells the next owner that
the request may have reached Inkit: it dead-letters the record as ``ambiguous_send`` instead of
sending it (ledger_index.py describes the values). Under ``resend`` no intent is written.

Ledger records are written with the producer the dead-letter queue uses (idempotent,
``acks=all``); their delivery callbacks are served by the same ``poll()``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from confluent_kafka import KafkaException

from connector.errors import StartupError
from connector.kafka.ledger_index import (
    INTENT_BYTE,
    INTENT_PREFIX,
    LedgerIndex,
    hash64,
    identity_of,
)
from connector.kafka.ledger_rebuild import read_ledger
from connector.models import RecordRef
from connector.observability.metrics import Metrics

__all__ = ["LedgerIndex", "SentLedger", "hash64", "identity_of"]

logger = logging.getLogger(__name__)

LOAD_TIMEOUT_S = 120.0
RETRY_S = 1.0
FOLLOW_POLL_S = 0.2


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
        self._retry: deque[_Pending] = deque()
        # Identities whose intent this member resolved: hash -> its tombstone's offset (-1 until
        # acknowledged). The follower ignores older intent records of these (see _apply).
        self._released: dict[int, int] = {}
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
            sent, intents = read_ledger(consumer, self._topic, started + timeout_s, self._clock)
            self._index.load(sent, intents)
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

    def _follow(self) -> None:
        """Keep reading what any member writes, so a lookup sees it within a poll interval."""
        self._index.merge()  # the rebuild's dict into the compact arrays (see LedgerIndex.load)
        while not self._stop.is_set():
            try:
                for msg in self._consumer.consume(1000, FOLLOW_POLL_S):
                    if msg.error() is None and msg.key() is not None:
                        self._apply(msg)
            except (KafkaException, RuntimeError) as exc:
                if self._stop.is_set():
                    return
                logger.warning("sent-ledger follower: %s", exc)
                self._stop.wait(1.0)
            self._metrics.ledger_entries.set(len(self._index))

    def _apply(self, msg: Any) -> None:
        """One ledger record read by the follower: a send, an intent or a resolution."""
        key = hash64(msg.key())
        value = msg.value()
        at_s = max(0, msg.timestamp()[1] // 1000)
        if value and value[0] != INTENT_BYTE:
            self._index.add(key, at_s)
            return
        released = self._released.get(key)
        if released is not None:
            # This member resolved the intent itself (``resolve``): an intent record older than
            # its tombstone must not reopen it; the tombstone read back ends the watch.
            if not value and released >= 0 and msg.offset() >= released:
                del self._released[key]
            return
        if value:
            self._index.intend(key, at_s)
        else:
            self._index.resolve(key)

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

    def open_intent(self, identity: str) -> bool:
        """A send of ``identity`` started (by any member, before any crash) and its outcome is
        unknown: no sent record and no resolution followed its intent, within the window."""
        at_s = self._index.intent_at(hash64(identity))
        return at_s is not None and self._wall_clock() - at_s <= self._window_s

    def record(self, identity: str, ref: RecordRef, done: Callable[[], None]) -> None:
        """Produce the ledger record of a delivered event; ``done()`` once it is durable."""
        # Remembered at once (Inkit accepted it): a second copy of the event, dispatched before
        # this record is acknowledged, is skipped too. The ack gates only the offset commit.
        self._index.add(hash64(identity), int(self._wall_clock()))
        self._produce(identity, ref, _value(self._wall_clock(), self._group, ref), done, False)

    def intend(self, identity: str, ref: RecordRef, ready: Callable[[], None]) -> None:
        """AMBIGUOUS_SEND_POLICY=dead-letter: produce an intent for a send about to start;
        ``ready()`` (consume thread) once it is durable: only then may the request go, or a
        crash mid-send would leave no trace for the next owner. A failed write is retried by
        ``tick`` like a sent record; ``forget`` calls ``ready`` of a partition lost meanwhile
        (its job is cancelled by then and comes back as CANCELLED, never sent)."""
        value = INTENT_PREFIX + _value(self._wall_clock(), self._group, ref)
        self._produce(identity, ref, value, ready, True)

    def resolve(self, identity: str, done: Callable[[bool], None] | None = None) -> None:
        """Close an intent without a send: nothing reached Inkit (a refused request, a connect
        error, a job cancelled before its request). Produces a tombstone (compaction then
        drops the key); from now on this member's lookups ignore the older intent record.
        ``done(ok)`` once Kafka answered. A tombstone that never lands only costs a false
        ``ambiguous_send`` at the next owner: never a second letter.

        The redrive command (issue #16) overrides an open intent with this: it calls
        ``resolve`` for an ``ambiguous_send`` dead letter a person chose to send again, waits
        for ``done(True)``, then sends it the usual way (already_sent first, then its own
        intent under AMBIGUOUS_SEND_POLICY=dead-letter)."""
        key = hash64(identity)
        self._index.resolve(key)
        self._released[key] = -1  # until the tombstone's offset is known

        def delivered(err: Any, msg: Any) -> None:
            if err is None and msg is not None and self._released.get(key) == -1:
                self._released[key] = msg.offset()
            if err is not None:
                logger.warning("could not resolve a sent-ledger intent: %s", err)
            if done is not None:
                done(err is None)

        try:
            self._producer.produce(
                self._topic, key=identity.encode(), value=None, on_delivery=delivered
            )
        except (BufferError, KafkaException) as exc:
            delivered(exc, None)

    def _produce(
        self,
        identity: str,
        ref: RecordRef,
        value: bytes,
        done: Callable[[], None],
        intent: bool,
    ) -> None:
        def delivered(err: Any, _msg: Any) -> None:
            if err is None:
                self._metrics.ledger_writes.labels("ok").inc()
                if self.failing:
                    self.failing = False
                    logger.info("sent-ledger writes succeed again")
                done()
            else:
                self._failed(identity, ref, value, done, intent, str(err))

        try:
            self._producer.produce(
                self._topic, key=identity.encode(), value=value, on_delivery=delivered
            )
        except (BufferError, KafkaException) as exc:
            self._failed(identity, ref, value, done, intent, str(exc))

    def _failed(
        self,
        identity: str,
        ref: RecordRef,
        value: bytes,
        done: Callable[[], None],
        intent: bool,
        why: str,
    ) -> None:
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
        self._retry.append(_Pending(self._clock() + RETRY_S, identity, ref, value, done, intent))

    def tick(self) -> None:
        """Re-produce the ledger records whose write failed (consume thread, every loop turn)."""
        now = self._clock()
        for _ in range(len(self._retry)):
            item = self._retry[0]
            if item.due > now:
                break
            self._retry.popleft()
            self._produce(item.identity, item.ref, item.value, item.done, item.intent)

    def forget(self, keep: Callable[[RecordRef], bool]) -> int:
        """Drop pending retries of partitions this member no longer owns; how many sent records
        (intents: their ``ready`` is called, see ``intend``)."""
        dropped = [item for item in self._retry if not keep(item.ref)]
        self._retry = deque(item for item in self._retry if keep(item.ref))
        for item in dropped:
            if item.intent:
                item.done()
        return sum(1 for item in dropped if not item.intent)


class _Pending(NamedTuple):
    """A ledger write to try again."""

    due: float
    identity: str
    ref: RecordRef
    value: bytes
    done: Callable[[], None]
    intent: bool


def _value(now_s: float, group: str, ref: RecordRef) -> bytes:
    """A ledger record's value: when, which group, which source record (JSON)."""
    return json.dumps(
        {
            "sent_at_ms": int(now_s * 1000),
            "group": group,
            "topic": ref.topic,
            "partition": ref.partition,
            "offset": ref.offset,
        },
        separators=(",", ":"),
    ).encode()
