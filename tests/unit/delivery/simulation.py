"""A deterministic world for the Processor: one seeded random source drives the consumer, the
sender, the dead-letter producer and the clock, so a seed replays the same interleaving.

The Processor under test is the real one (every part of connector/delivery). Around it:
- ``SimCluster``: the partitions' logs, the committed offsets and metadata, the dead-letter
  topic, and what happened to every record (the ground truth the invariants read).
- ``SimConsumer``: librdkafka's consumer where it matters, each fact with where it was checked:
  * rebalance and commit callbacks run inside ``consume()`` (confluent-kafka docs: "callbacks
    are served by poll/consume"); revoke and lost callbacks run while the partitions are still
    assigned, the unassign follows the callback (librdkafka rdkafka_cgrp.c
    rd_kafka_rebalance_op / the cooperative incremental_unassign after the callback);
  * the application's pause flag survives unassign and a later assign (issue #13 defect 2,
    reproduced on the project's Kafka 4.1 broker: tests/integration/test_stalls.py);
  * a newly assigned partition is fetched from its committed offset;
  * a commit whose metadata exceeds the broker's offset.metadata.max.bytes fails for that
    partition with OFFSET_METADATA_TOO_LARGE and changes nothing (Kafka OffsetCommit handler);
  * an asynchronous commit's result arrives through on_commit from a later consume().
- ``SimSender``: the Sender's contract (sender.py) without HTTP: a job ends as DELIVERED,
  FAILED (rejected, retries exhausted, an unforeseen exception) or CANCELLED; transient
  failures (429, 5xx, timeouts, transport and decoding errors) keep a job in flight while time
  passes (the real retry loop is proven by tests/unit/inkit and test_stalls.py); a 401 window
  blocks it: one job probes, the others wait, and when the prober is cancelled and nobody
  waits, ``needs_probe`` asks the loop for a probe.
- ``SimProducer``: the dead-letter producer: ``produce()`` raises BufferError (queue full) or
  MSG_SIZE_TOO_LARGE for a message over message.max.bytes (librdkafka checks the size in
  rd_kafka_producev, before queueing: tests/integration/test_stalls.py checks it on the
  broker); a queued copy is acked or refused from ``poll()``, and written to the topic only
  when acked. The sent-ledger (the real SentLedger, on odd seeds) writes through it too: its
  records are acked or refused the same way, so a delivery waits for its ledger ack before it
  finishes, and counts against MAX_UNCOMMITTED_RECORDS meanwhile.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from connector.errors import RegistryUnavailable, RejectedError
from connector.inkit.sender import DeliveryCrashed, Job, Result, ResultKind, RetryExhausted
from connector.models import SegmentMessage
from tests.fakes import CommitAnswer, FakeMessage, JsonDecoder

TOPIC = "sim"
WALL_EPOCH_S = 1_700_000_000.0


class Violation(AssertionError):
    """An invariant broke: the message says which, the seed and step say where."""


@dataclass
class SimCluster:
    """Ground truth shared by every owner the simulation starts (a crash keeps it)."""

    rng: random.Random
    partitions: int
    now: float = 0.0  # monotonic seconds; wall clock = WALL_EPOCH_S + now
    log: dict[int, list[FakeMessage]] = field(default_factory=dict)
    committed: dict[int, tuple[int, str]] = field(default_factory=dict)
    delivered: dict[tuple[int, int], int] = field(default_factory=lambda: defaultdict(int))
    dead_letters: dict[tuple[int, int], list[int]] = field(default_factory=dict)  # -> written ms
    max_metadata_bytes: int = 4096
    registry_down: bool = False
    dead_letters_unreadable: bool = False  # the dead-letter scan fails
    copies_before_any_commit: set[tuple[int, int]] = field(default_factory=set)
    verified: dict[int, int] = field(default_factory=dict)  # offsets below are finished

    def wall(self) -> float:
        return WALL_EPOCH_S + self.now

    def append(self, partition: int, key: bytes | None, value: bytes | None) -> None:
        records = self.log.setdefault(partition, [])
        stamp = int(self.wall() * 1000)
        records.append(FakeMessage(TOPIC, partition, len(records), key, value, stamp))

    def finished(self, partition: int, offset: int) -> bool:
        """Delivered, dead-lettered, or skipped by rule (not an identify)."""
        if self.delivered[(partition, offset)] or (partition, offset) in self.dead_letters:
            return True
        value = self.log[partition][offset].value()
        return bool(value) and value.startswith(b'{"type": "track"')  # type: ignore[union-attr]

    def check_commit(self, partition: int, offset: int, done: frozenset[int]) -> None:
        # A finished record stays finished: check from the prefix verified last time.
        for o in range(self.verified.get(partition, 0), offset):
            if not self.finished(partition, o):
                raise Violation(f"commit of p{partition}@{offset} passes unfinished offset {o}")
        self.verified[partition] = max(offset, self.verified.get(partition, 0))
        for o in done:
            if o >= len(self.log.get(partition, [])) or not self.finished(partition, o):
                raise Violation(f"commit metadata of p{partition} lists unfinished offset {o}")


class SimDecoder(JsonDecoder):
    """The test decoder, behind a schema registry the simulation can take away."""

    def __init__(self, cluster: SimCluster) -> None:
        self._cluster = cluster

    def decode(self, value: bytes | None) -> SegmentMessage:
        if self._cluster.registry_down:
            raise RegistryUnavailable("registry away")
        return super().decode(value)


class SimConsumer:
    """One member's consumer over ``SimCluster`` (see the module docstring for its rules)."""

    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster
        self.assigned: set[int] = set()
        self.paused: set[int] = set()
        self.position: dict[int, int] = {}
        self.events: list[tuple[str, list[int]]] = []
        self.commit_fail = False
        self.commit_cb: Any = None
        self.on_unassign: Any = None  # the driver's hook: partitions leaving this member
        self._results: list[tuple[Any, list[Any]]] = []
        self._callbacks: dict[str, Any] = {}

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self._callbacks = callbacks
        self.events.append(("assign", list(range(self.cluster.partitions))))

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        results, self._results = self._results, []
        for error, offsets in results:
            self.commit_cb(error, offsets)
        if self.events:
            kind, parts = self.events.pop(0)
            tps = [TopicPartition(TOPIC, p) for p in parts]
            if kind == "assign":
                parts = [p for p in parts if p not in self.assigned]
                for p in parts:
                    self.position[p] = self.cluster.committed.get(p, (0, ""))[0]
                self.assigned |= set(parts)
                self._callbacks["on_assign"](self, [TopicPartition(TOPIC, p) for p in parts])
            else:
                tps = [tp for tp in tps if tp.partition in self.assigned]
                self._callbacks["on_revoke" if kind == "revoke" else "on_lost"](self, tps)
                self.assigned -= {tp.partition for tp in tps}
                if self.on_unassign is not None:
                    self.on_unassign({tp.partition for tp in tps})
        out: list[FakeMessage] = []
        budget = min(num_messages, self.cluster.rng.randint(1, 40))
        for p in sorted(self.assigned - self.paused):
            records = self.cluster.log.get(p, [])
            while self.position[p] < len(records) and len(out) < budget:
                out.append(records[self.position[p]])
                self.position[p] += 1
        return out

    def pause(self, tps: list[TopicPartition]) -> None:
        self.paused |= {tp.partition for tp in tps}

    def resume(self, tps: list[TopicPartition]) -> None:
        self.paused -= {tp.partition for tp in tps}

    def seek(self, tp: TopicPartition) -> None:
        self.position[tp.partition] = max(0, tp.offset)

    def committed(self, tps: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        out = []
        for tp in tps:
            offset, metadata = self.cluster.committed.get(tp.partition, (-1001, ""))
            out.append(TopicPartition(TOPIC, tp.partition, offset, metadata=metadata))
        return out

    def read_committed(self, tps: list[TopicPartition]) -> Future[list[TopicPartition]]:
        future: Future[list[TopicPartition]] = Future()
        future.set_result(self.committed(tps, 0))
        return future

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool) -> tuple[int, int]:
        return 0, len(self.cluster.log.get(tp.partition, []))

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> Any:
        from connector.delivery.offsets import decode_metadata

        for tp in offsets:
            if tp.partition not in self.assigned:
                raise Violation(f"commit for p{tp.partition}, not assigned to this member")
        if self.commit_fail:
            error = KafkaError(KafkaError.REQUEST_TIMED_OUT)
            if asynchronous:
                self._results.append((error, offsets))
                return None
            raise KafkaException(error)
        answered: list[Any] = []
        for tp in offsets:
            metadata = tp.metadata or ""
            if len(metadata.encode()) > self.cluster.max_metadata_bytes:
                error = KafkaError(KafkaError.OFFSET_METADATA_TOO_LARGE)
                answered.append(CommitAnswer(TOPIC, tp.partition, tp.offset, metadata, error))
                continue
            done = decode_metadata(tp.offset, metadata).done
            self.cluster.check_commit(tp.partition, tp.offset, done)
            self.cluster.committed[tp.partition] = (tp.offset, metadata)
            answered.append(tp)
        if asynchronous:
            self._results.append((None, answered))
            return None
        return answered


class SimWakeup:
    """The sender's wakeup event; waiting on it lets simulated time pass and results come."""

    def __init__(self, sender: SimSender) -> None:
        self._sender = sender

    def is_set(self) -> bool:
        return bool(self._sender.results)

    def clear(self) -> None:
        pass

    def wait(self, timeout: float) -> bool:
        self._sender.cluster.now += timeout
        self._sender.resolve(self._sender.cluster.rng.randint(0, 3))
        return self.is_set()


class SimSender:
    """The Sender's contract, driven by the seed (see the module docstring)."""

    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster
        self.wakeup = SimWakeup(self)
        self.flying: list[Job] = []
        self.results: list[Result] = []
        self.auth_window = False  # Inkit refuses the key now
        self.auth_blocked = False
        self.alive = True  # the sender thread runs (a dead one ends the loop: test_processor)
        self.prober: Job | None = None
        self.faults = True  # outcomes other than success
        self._last_sent: dict[Any, int] = {}
        self.delivered_here: set[tuple[int, int]] = set()  # by this member, while assigned

    @property
    def needs_probe(self) -> bool:
        return self.auth_blocked and self.prober is None and not self.flying

    def submit(self, jobs: list[Job]) -> None:
        for job in jobs:
            out = [j for j in self.flying if j.order_key == job.order_key]
            if out:
                raise Violation(f"two jobs of one user in flight: {out[0].ref} and {job.ref}")
            last = self._last_sent.get(job.order_key)
            if last is not None and job.ref.offset <= last:
                raise Violation(f"user order: {job.ref} sent after offset {last}")
            self._last_sent[job.order_key] = job.ref.offset
            self.flying.append(job)

    def cancel(self, jobs: list[Job]) -> None:
        # The processor passes a set's order (jobs hash by identity): sort, for replayable seeds.
        for job in sorted(jobs, key=lambda j: (j.ref.partition, j.ref.offset)):
            if job in self.flying:
                self.flying.remove(job)
                self.results.append(Result(job, ResultKind.CANCELLED))
            if self.prober is job:
                self.prober = None

    def drain_results(self) -> list[Result]:
        results, self.results = self.results, []
        return results

    def forget_order(self, partitions: set[int]) -> None:
        """The partitions left this member: their records may come again from the commit."""
        self._last_sent = {k: v for k, v in self._last_sent.items() if k[1] not in partitions}
        self.delivered_here = {k for k in self.delivered_here if k[0] not in partitions}

    def resolve(self, count: int) -> None:
        """Let up to ``count`` requests in flight get an answer."""
        rng = self.cluster.rng
        for _ in range(count):
            if not self.flying:
                return
            if self.auth_window:
                self.auth_blocked = True
                self.prober = self.prober or self.flying[0]
                return
            job = rng.choice(self.flying)
            if self.auth_blocked and self.prober is not None and job is not self.prober:
                job = self.prober  # the others wait at the gate for the prober's verdict
            self.auth_blocked, self.prober = False, None
            roll = rng.random() if self.faults else 1.0
            if roll < 0.15:
                continue  # a 429, 5xx, timeout or transport error: retried, still in flight
            self.flying.remove(job)
            if roll < 0.19:
                error: Any = RejectedError(422)
            elif roll < 0.2:
                error = RetryExhausted("server_error", 503, 9)
            elif roll < 0.21:
                error = DeliveryCrashed(RuntimeError("bug"))
            else:
                self.cluster.delivered[(job.ref.partition, job.ref.offset)] += 1
                self.delivered_here.add((job.ref.partition, job.ref.offset))
                self.results.append(Result(job, ResultKind.DELIVERED, finished_at=0.0))
                continue
            self.results.append(Result(job, ResultKind.FAILED, error=error))


class SimProducer:
    """The dead-letter producer, also the sent-ledger's (see the module docstring)."""

    def __init__(self, cluster: SimCluster, max_message_bytes: int) -> None:
        self.cluster = cluster
        self.max_message_bytes = max_message_bytes
        self.faults = True
        self._queued: list[tuple[Any, Any, bool]] = []

    def produce(
        self, topic: str, key: Any, value: Any, on_delivery: Any, headers: Any = None
    ) -> None:
        headers = headers or []
        size = len(value or b"") + len(key or b"") + sum(len(k) + len(v) for k, v in headers)
        if size > self.max_message_bytes:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        if self.faults and self.cluster.rng.random() < 0.05:
            raise BufferError("Local: Queue full")
        ok = not (self.faults and self.cluster.rng.random() < 0.1)
        self._queued.append((dict(headers), on_delivery, ok))

    def poll(self, timeout: float) -> int:
        queued, self._queued = self._queued, []
        for headers, on_delivery, ok in queued:
            if ok and "inkit.original.partition" not in headers:
                on_delivery(None, None)  # a sent-ledger record (the same producer in run.py)
            elif ok:
                origin = (
                    int(headers["inkit.original.partition"]),
                    int(headers["inkit.original.offset"]),
                )
                self.cluster.dead_letters.setdefault(origin, []).append(
                    int(self.cluster.wall() * 1000)
                )
                if origin[0] not in self.cluster.committed:
                    # No commit has landed for its partition: no "since" for a next owner to
                    # scan from. The loop fences this (a commit first), except in a drain,
                    # where commit results are not served (results.py): at least once there.
                    self.cluster.copies_before_any_commit.add(origin)
                on_delivery(None, None)
            else:
                on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), None)
        return len(queued)

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return 0


def event_value(kind: str, user: str, seq: int, rng: random.Random) -> bytes | None:
    """A record value of ``kind``: good, skip (a track), empty (undecodable), unmappable (no
    template id), big (unmappable and over the dead-letter producer's size limit)."""
    if kind == "empty":
        return b""
    if kind == "skip":
        return json.dumps({"type": "track", "userId": user}).encode()
    traits: dict[str, object] = {"seq": seq}
    if kind == "good":
        traits["template_id"] = "t"
    if kind == "big":
        traits["pad"] = "x" * 700
    return json.dumps({"type": "identify", "userId": user, "traits": traits}).encode()
