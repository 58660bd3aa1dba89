"""In-memory stand-ins for unit tests of our own logic (delivery is proven on the real broker)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from connector.errors import DecodeError, MappingError
from connector.models import InkitRequest, SegmentMessage, Skip


@dataclass
class FakeMessage:
    _topic: str
    _partition: int
    _offset: int
    _key: bytes | None
    _value: bytes | None
    _timestamp_ms: int = 1_700_000_000_000
    _headers: list[tuple[str, bytes]] | None = None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp_ms)

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def error(self) -> None:
        return None


@dataclass
class FakeConsumer:
    """A single-member group: partitions are assigned at the first consume, revoked on demand."""

    topic: str
    partitions: int
    log: dict[int, list[FakeMessage]] = field(default_factory=dict)
    commits: list[list[TopicPartition]] = field(default_factory=list)
    committed_offsets: dict[int, int] = field(default_factory=dict)
    committed_metadata: dict[int, str] = field(default_factory=dict)
    # Kept across revoke and a later assign, as librdkafka keeps the application's pause flag
    # (issue #13, defect 2: reproduced on Kafka 4.1 / confluent-kafka 2.16, both protocols;
    # tests/integration/test_stalls.py repeats it on the project's broker).
    paused: set[int] = field(default_factory=set)
    position: dict[int, int] = field(default_factory=dict)
    assigned: set[int] = field(default_factory=set)
    on_commit: Callable[[list[TopicPartition]], None] | None = None
    commits_fail: bool = False  # Kafka cannot take commits (a broker away, say)
    # The broker's offset.metadata.max.bytes (4096 by default): a commit whose metadata is
    # longer fails for that partition with OFFSET_METADATA_TOO_LARGE and changes nothing
    # (Kafka's OffsetCommit handler; librdkafka reports it per partition in on_commit).
    max_metadata_bytes: int = 4096
    member_id: str = "member-1"  # memberid(): this member's id in the group
    lock: threading.Lock = field(default_factory=threading.Lock)
    _callbacks: dict[str, Any] = field(default_factory=dict)
    _pending_revoke: list[int] = field(default_factory=list)

    def append(self, partition: int, key: bytes | None, value: bytes | None) -> FakeMessage:
        with self.lock:
            records = self.log.setdefault(partition, [])
            msg = FakeMessage(self.topic, partition, len(records), key, value)
            records.append(msg)
            return msg

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self._callbacks = callbacks

    def revoke(self, partitions: list[int]) -> None:
        with self.lock:
            self._pending_revoke.extend(partitions)

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        results, self._commit_results = self._commit_results, []
        for error, offsets in results:
            if self.commit_cb is not None:
                self.commit_cb(error, offsets)
        if not self.assigned and not self._pending_revoke and self._callbacks:
            self.assigned = set(range(self.partitions))
            for p in self.assigned:
                self.position[p] = self.committed_offsets.get(p, 0)
            self._callbacks["on_assign"](
                self, [TopicPartition(self.topic, p) for p in self.assigned]
            )
        if self._pending_revoke:
            with self.lock:
                revoked, self._pending_revoke = self._pending_revoke, []
            self._callbacks["on_revoke"](self, [TopicPartition(self.topic, p) for p in revoked])
            self.assigned -= set(revoked)
        out: list[FakeMessage] = []
        with self.lock:
            for p in sorted(self.assigned - self.paused):
                records = self.log.get(p, [])
                while self.position[p] < len(records) and len(out) < num_messages:
                    out.append(records[self.position[p]])
                    self.position[p] += 1
        if not out:
            threading.Event().wait(timeout)
        return out

    def memberid(self) -> str:
        return self.member_id

    def seek(self, tp: TopicPartition) -> None:
        with self.lock:
            self.position[tp.partition] = max(0, tp.offset)

    def pause(self, tps: list[TopicPartition]) -> None:
        self.paused |= {tp.partition for tp in tps}

    def resume(self, tps: list[TopicPartition]) -> None:
        self.paused -= {tp.partition for tp in tps}

    commit_cb: Callable[[Any, list[TopicPartition]], None] | None = None
    _commit_results: list[tuple[Any, list[TopicPartition]]] = field(default_factory=list)

    def commit(
        self, offsets: list[TopicPartition], asynchronous: bool
    ) -> list[TopicPartition] | None:
        for tp in offsets:
            assert tp.partition in self.assigned, "commit for a partition not owned"
        if self.commits_fail:
            if asynchronous:
                self._commit_results.append((_FakeKafkaError(), offsets))
                return None
            raise KafkaException(_FakeKafkaError())
        too_large = [
            tp for tp in offsets if len((tp.metadata or "").encode()) > self.max_metadata_bytes
        ]
        if too_large:
            answered: list[Any] = [
                CommitAnswer(tp.topic, tp.partition, tp.offset, tp.metadata, _too_large_error())
                if tp in too_large
                else tp
                for tp in offsets
            ]
            offsets = [tp for tp in offsets if tp not in too_large]
        else:
            answered = offsets
        if self.on_commit is not None and offsets:
            self.on_commit(offsets)
        if offsets:
            self.commits.append(offsets)
        for tp in offsets:
            self.committed_offsets[tp.partition] = tp.offset
            self.committed_metadata[tp.partition] = tp.metadata or ""
        if asynchronous:  # like librdkafka: the result comes through on_commit, from consume()
            self._commit_results.append((None, answered))
            return None
        return answered

    def committed(self, tps: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [
            TopicPartition(
                tp.topic,
                tp.partition,
                self.committed_offsets.get(tp.partition, -1001),
                metadata=self.committed_metadata.get(tp.partition, ""),
            )
            for tp in tps
        ]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool) -> tuple[int, int]:
        return 0, len(self.log.get(tp.partition, []))

    def close(self) -> None:
        pass


@dataclass
class CommitAnswer:
    """A per-partition commit result carrying an error (confluent_kafka's TopicPartition.error
    cannot be set from Python)."""

    topic: str
    partition: int
    offset: int
    metadata: str | None
    error: Any


def _too_large_error() -> KafkaError:
    return KafkaError(KafkaError.OFFSET_METADATA_TOO_LARGE)


class FakeProducer:
    """Acks (or refuses) dead-letter copies on poll, like librdkafka's delivery callbacks.

    ``max_message_bytes`` is the producer's message.max.bytes: like librdkafka, a larger message
    is refused inside ``produce()`` with MSG_SIZE_TOO_LARGE (rd_kafka_producev checks the size
    before queueing; confluent-kafka raises it as KafkaException), never in the delivery report.
    tests/integration/test_stalls.py checks that on the real broker."""

    def __init__(self, max_message_bytes: int = 1_000_000) -> None:
        self.produced: list[dict[str, Any]] = []
        self._callbacks: list[Callable[[], None]] = []
        self.fail_next = 0
        self.max_message_bytes = max_message_bytes
        self.raise_next = 0  # produce() raises a local error (queue full) this many times

    def produce(
        self, topic: str, key: Any, value: Any, on_delivery: Any, headers: Any = None
    ) -> None:
        headers = headers or []
        size = len(value or b"") + len(key or b"") + sum(len(k) + len(v) for k, v in headers)
        if size > self.max_message_bytes:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        if self.raise_next > 0:
            self.raise_next -= 1
            raise BufferError("Local: Queue full")
        fail = self.fail_next > 0
        self.fail_next -= 1 if fail else 0
        err = _FakeKafkaError() if fail else None
        msg = None
        if not fail:
            self.produced.append({"topic": topic, "key": key, "value": value, "headers": headers})
            msg = FakeMessage(topic, 0, len(self.produced) - 1, key, value)
        self._callbacks.append(lambda: on_delivery(err, msg))

    def poll(self, timeout: float) -> int:
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            cb()
        return len(callbacks)

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return 0


class _FakeKafkaError:
    def code(self) -> int:
        return -1

    def __str__(self) -> str:
        return "broker down"


class JsonDecoder:
    def decode(self, value: bytes | None) -> SegmentMessage:
        if not value:
            raise DecodeError("empty", reason="empty_value")
        data = json.loads(value)
        return SegmentMessage(
            type=data["type"],
            user_id=data.get("userId"),
            message_id=data.get("messageId"),
            traits=data.get("traits", {}),
        )


class SimpleMapper:
    def __init__(self, url: str = "https://inkit.test/hook") -> None:
        self.url = url

    def map(self, event: SegmentMessage) -> InkitRequest | Skip:
        if event.type != "identify":
            return Skip("not_identify")
        if "template_id" not in event.traits:
            raise MappingError("no template", reason="missing_template_id")
        body = {"api_token": "k", "user": event.user_id, **event.traits}
        return InkitRequest(self.url, {"Content-Type": "application/json"}, body, None)


class FakeLedgerTopic:
    """The sent-ledger topic as a consumer sees it at start-up, from what a FakeProducer wrote
    to it (one partition, in order): enough for ``SentLedger.load`` (kafka/ledger_rebuild.py)
    to rebuild a crashed member's ledger for its next owner."""

    def __init__(self, producer: FakeProducer, topic: str) -> None:
        self.topic = topic
        now_ms = int(time.time() * 1000)  # the broker stamps records when they are written
        self.records = [
            FakeMessage(topic, 0, i, r["key"], r["value"], now_ms)
            for i, r in enumerate(r for r in producer.produced if r["topic"] == topic)
        ]
        self._read = False

    def list_topics(self, topic: str, timeout: float) -> Any:
        found = SimpleNamespace(partitions={0: None}, error=None)
        return SimpleNamespace(topics={topic: found} if topic == self.topic else {})

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        return 0, len(self.records)

    def assign(self, tps: list[TopicPartition]) -> None:
        self._read = False

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        if self._read:
            threading.Event().wait(min(timeout, 0.05))
            return []
        self._read = True
        return list(self.records)

    def close(self) -> None:
        self._read = True
