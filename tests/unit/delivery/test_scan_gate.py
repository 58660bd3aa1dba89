"""The dead-letter scan of a newly assigned partition (issue #13): it runs off the consume loop,
the loop keeps polling and beating /healthz meanwhile, and the partition's records wait for its
answer. Interleavings: a revoke during the scan, a second assignment, a shutdown mid-scan, a
dead-letter topic that cannot be read."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from connector.delivery import scan_gate
from connector.errors import DeadLetterScanError
from connector.kafka.dlq_recovery import DeadLetterScanner
from tests.fakes import FakeConsumer
from tests.unit.delivery.test_processor import Harness, event, recording_handler, wait_for

Found = dict[tuple[str, int], set[int]]


class SlowScanner:
    """A dead-letter topic that takes its time: every scan waits for ``answer``. It offers both
    the asynchronous ``submit`` and the blocking ``written_since`` the assign callback used to
    call, so the same test shows what each does to the loop."""

    def __init__(self) -> None:
        self.requests: list[tuple[Future[Found], int, dict[tuple[str, int], int]]] = []
        self._released = threading.Event()
        self._result: Found | DeadLetterScanError = {}

    def submit(self, since_ms: int, committed: Mapping[tuple[str, int], int]) -> Future[Found]:
        future: Future[Found] = Future()
        self.requests.append((future, since_ms, dict(committed)))
        return future

    def written_since(self, since_ms: int, committed: Mapping[tuple[str, int], int]) -> Found:
        self._released.wait(30)  # as a read of a long window would
        if isinstance(self._result, DeadLetterScanError):
            raise self._result
        return self._result

    def answer(self, result: Found | DeadLetterScanError, index: int = -1) -> None:
        self._result = result
        self._released.set()
        future = self.requests[index][0]
        if not future.set_running_or_notify_cancel():
            return
        if isinstance(result, DeadLetterScanError):
            future.set_exception(result)
        else:
            future.set_result(result)


def _previous_owner_left_a_dead_letter(consumer: FakeConsumer) -> None:
    consumer.append(0, b"u0", event("u0", 0))  # committed by the previous owner
    consumer.append(0, b"u1", b"")  # undecodable: its copy was written, then the owner died
    for seq in range(2, 6):
        consumer.append(0, f"u{seq}".encode(), event(f"u{seq}", seq))
    consumer.committed_offsets[0] = 1
    consumer.committed_metadata[0] = "since:1700000000000"


def _holder(h: Harness) -> str | None:
    for metric in h.metrics.oldest_unfinished_age.collect():
        for sample in metric.samples:
            if sample.labels["partition"] == "0":
                return sample.labels["holder"]
    return None


def test_the_loop_keeps_turning_while_the_dead_letter_topic_is_read() -> None:
    """Before, the scan ran inside the assign callback: the loop (and /healthz's heartbeat)
    stood still for as long as the read took (30 s timeouts)."""
    consumer = FakeConsumer("t", partitions=1)
    _previous_owner_left_a_dead_letter(consumer)
    scanner = SlowScanner()
    delivered: list[dict[str, object]] = []
    h = Harness(consumer, recording_handler(delivered), scanner=scanner)
    with h.running():
        wait_for(lambda: bool(scanner.requests) or scanner._released.is_set())
        beat = h.processor.heartbeat
        wait_for(lambda: h.processor.heartbeat > beat + 0.3, timeout_s=5)  # the loop turns
        wait_for(lambda: _holder(h) == "dlq_scan")  # the wait is visible
        assert consumer.paused == {0}
        assert delivered == []  # nothing of the partition before the answer
        assert scanner.requests[0][1:] == (1700000000000, {("t", 0): 1})
        scanner.answer({("t", 0): {1}})
        wait_for(lambda: consumer.committed_offsets.get(0) == 6)
    assert sorted(int(b["seq"]) for b in delivered) == [2, 3, 4, 5]  # type: ignore[call-overload]
    assert h.producer.produced == []  # the copy the previous owner wrote is not written again
    assert h.metrics.records.labels("skipped", "already_dead_lettered")._value.get() == 1


def test_a_revoke_during_the_scan_drops_it_and_a_new_assignment_scans_again() -> None:
    consumer = FakeConsumer("t", partitions=1)
    _previous_owner_left_a_dead_letter(consumer)
    scanner = SlowScanner()
    delivered: list[dict[str, object]] = []
    h = Harness(consumer, recording_handler(delivered), scanner=scanner, drain_timeout_s=0.2)
    with h.running():
        wait_for(lambda: len(scanner.requests) == 1)
        consumer.revoke([0])
        wait_for(lambda: len(scanner.requests) == 2)  # given back: a scan of its own
        first = scanner.requests[0][0]
        assert first.cancelled()  # nobody waits for it any more
        assert consumer.paused == {0}
        scanner.answer({("t", 0): {1}})
        wait_for(lambda: consumer.committed_offsets.get(0) == 6)
    assert sorted(int(b["seq"]) for b in delivered) == [2, 3, 4, 5]  # type: ignore[call-overload]
    assert h.producer.produced == []


def test_an_unreadable_dead_letter_topic_is_retried_then_the_partition_is_read_anyway(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scan_gate, "DLQ_SCAN_RETRY_S", 0.05)
    monkeypatch.setattr(scan_gate, "DLQ_SCAN_PATIENCE_S", 0.5)
    consumer = FakeConsumer("t", partitions=1)
    _previous_owner_left_a_dead_letter(consumer)
    scanner = SlowScanner()
    h = Harness(consumer, recording_handler([]), scanner=scanner)
    failures = h.metrics.dead_letter_scans.labels("failed")
    with h.running():
        wait_for(lambda: len(scanner.requests) == 1)
        scanner.answer(DeadLetterScanError("unreadable"))
        wait_for(lambda: len(scanner.requests) == 2)  # tried again
        assert _holder(h) == "dlq_scan"
        assert consumer.paused == {0}

        def every_attempt_fails_until_read_anyway() -> bool:
            if not scanner.requests[-1][0].done():
                scanner.answer(DeadLetterScanError("unreadable"))
            return consumer.committed_offsets.get(0) == 6

        wait_for(every_attempt_fails_until_read_anyway)
    # At least once: the previous owner's copy is written again, never lost.
    written = [dict(p["headers"])["inkit.original.offset"] for p in h.producer.produced]
    assert written == [b"1"]
    assert failures._value.get() >= 2


def test_a_shutdown_during_the_scan_ends_promptly_and_commits_nothing_of_the_partition() -> None:
    consumer = FakeConsumer("t", partitions=1)
    _previous_owner_left_a_dead_letter(consumer)
    scanner = SlowScanner()
    h = Harness(consumer, recording_handler([]), scanner=scanner)
    started = time.monotonic()
    with h.running():
        wait_for(lambda: len(scanner.requests) == 1)
    assert time.monotonic() - started < 5  # the drain had nothing of it to wait for
    assert consumer.commits == []
    assert consumer.committed_offsets[0] == 1


class _EndlessTopic:
    """A consumer of a dead-letter topic whose end never comes (a read of a long window)."""

    def __init__(self) -> None:
        self.closed_on: str | None = None
        self.consumed = threading.Event()

    def list_topics(self, topic: str, timeout: float) -> Any:
        partitions = {0: object()}
        return type(
            "M", (), {"topics": {topic: type("T", (), {"error": None, "partitions": partitions})()}}
        )()

    def offsets_for_times(self, wanted: list[Any], timeout: float) -> list[Any]:
        for tp in wanted:
            tp.offset = 0
        return wanted

    def get_watermark_offsets(self, tp: Any, timeout: float) -> tuple[int, int]:
        return 0, 10**9

    def assign(self, assignment: list[Any]) -> None:
        pass

    def unassign(self) -> None:
        pass

    def consume(self, num: int, timeout: float) -> list[Any]:
        self.consumed.set()
        time.sleep(0.01)
        return []

    def close(self) -> None:
        self.closed_on = threading.current_thread().name


def test_closing_the_scanner_stops_a_scan_in_progress_and_closes_its_consumer_there() -> None:
    topic = _EndlessTopic()
    scanner = DeadLetterScanner(lambda: topic, "t.dlq", "g", timeout_s=60)
    future = scanner.submit(0, {("t", 0): 0})
    assert topic.consumed.wait(5)  # reading, on its own thread
    queued = scanner.submit(0, {("t", 1): 0})
    started = time.monotonic()
    scanner.close()
    assert time.monotonic() - started < 2
    with pytest.raises(DeadLetterScanError, match="stopped"):
        future.result(timeout=1)
    assert queued.cancelled()
    assert topic.closed_on == "dlq-scan"  # the consumer is only ever used by that thread


class _LeaderNotYetKnown(_EndlessTopic):
    """A dead-letter topic just created: librdkafka's first offsets lookup answers
    NOT_LEADER_FOR_PARTITION (seen on a Kafka 3.9.2 broker in CI), or a lasting error."""

    def __init__(self, error: int, failures: int) -> None:
        super().__init__()
        self.error = error
        self.failures = failures

    def offsets_for_times(self, wanted: list[Any], timeout: float) -> list[Any]:
        if self.failures > 0:
            self.failures -= 1
            raise KafkaException(KafkaError(self.error))
        for tp in wanted:
            tp.offset = -1  # nothing written since then
        return wanted


def test_a_retriable_kafka_error_is_retried_within_the_scan_and_a_lasting_one_is_not() -> None:
    passing = _LeaderNotYetKnown(KafkaError.NOT_LEADER_FOR_PARTITION, failures=2)
    scanner = DeadLetterScanner(lambda: passing, "t.dlq", "g", timeout_s=10)
    try:
        assert scanner.written_since(0, {("t", 0): 0}) == {}
        assert passing.failures == 0
    finally:
        scanner.close()
    lasting = _LeaderNotYetKnown(KafkaError.TOPIC_AUTHORIZATION_FAILED, failures=99)
    scanner = DeadLetterScanner(lambda: lasting, "t.dlq", "g", timeout_s=10)
    try:
        with pytest.raises(DeadLetterScanError, match="TOPIC_AUTHORIZATION_FAILED"):
            scanner.written_since(0, {("t", 0): 0})
        assert lasting.failures == 98  # asked once: not retriable
    finally:
        scanner.close()


class _PartitionLeaderNotYetKnown(_EndlessTopic):
    """offsets_for_times() answering with a per-partition error rather than raising it."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def offsets_for_times(self, wanted: list[Any], timeout: float) -> list[Any]:
        self.failures -= 1
        # librdkafka sets a TopicPartition's error itself; Python cannot (a read-only attribute).
        error = KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION) if self.failures >= 0 else None
        return [SimpleNamespace(partition=tp.partition, offset=-1, error=error) for tp in wanted]


def test_a_retriable_per_partition_error_is_retried_like_a_raised_one() -> None:
    topic = _PartitionLeaderNotYetKnown(failures=2)
    scanner = DeadLetterScanner(lambda: topic, "t.dlq", "g", timeout_s=10)
    try:
        assert scanner.written_since(0, {("t", 0): 0}) == {}
        assert topic.failures < 0
    finally:
        scanner.close()
