"""DeadLetterScanner: finds the dead-letter copies a partition's previous owner wrote after its
last commit, so that the next owner does not write them again.

Why: a copy is acked by Kafka, then its source offset is committed. A process killed between
the two leaves a copy whose offset the next owner reads again; without this scan it would write
a second copy. The last commit's metadata says since when the uncommitted records were being
worked on (``since_ms``, see offsets.py); every copy of one of them was produced after that
instant, so the scan reads the dead-letter topic from there (by timestamp, less a margin for
clock steps) to its end, and returns the source offsets whose copy it found.

The scan runs on its own daemon thread (``submit``), never inside the consume loop or its
rebalance callbacks: the loop keeps polling and beating /healthz while the topic is read, and the
partitions that wait for a scan stay held until its future resolves (delivery/scan_gate.py).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from connector.errors import DeadLetterScanError

logger = logging.getLogger(__name__)

TPKey = tuple[str, int]
# Record timestamps are the producing process's clock, like since_ms: the margin only absorbs a
# clock step (NTP) between the two, or a dead-letter topic with LogAppendTime.
MARGIN_MS = 60_000
SCAN_TIMEOUT_S = 30.0
# close() waits this long for a scan in progress to notice the stop (it checks between reads).
CLOSE_WAIT_S = 5.0
# Between tries of a scan that met a retriable Kafka error (NOT_LEADER_FOR_PARTITION, ...).
RETRY_PAUSE_S = 0.5
TRANSIENT_CODES = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
    }
)
GROUP_HEADER = "inkit.consumer.group"

ScanResult = dict[TPKey, set[int]]


class DeadLetterScans(Protocol):
    """What the consume loop needs of a scanner: a scan that runs elsewhere and answers later.
    The future fails with DeadLetterScanError when the topic cannot be read to its end."""

    def submit(self, since_ms: int, committed: Mapping[TPKey, int]) -> Future[ScanResult]: ...


class DeadLetterScanner:
    """Reads the dead-letter topic with its own group-less consumer (assign, never commit).

    Only copies written by this consumer group count (header ``inkit.consumer.group``; copies
    without it, from older versions, count too): another group reading the same source topic
    into the same dead-letter topic keeps its own copies.
    """

    def __init__(
        self,
        consumer_factory: Callable[[], Any],
        topic: str,
        group_id: str,
        *,
        timeout_s: float = SCAN_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = consumer_factory
        self._topic = topic
        self._group_id = group_id.encode()
        self._timeout_s = timeout_s
        self._clock = clock
        self._consumer: Any = None
        self._requests: queue.SimpleQueue[tuple[Future[ScanResult], int, dict[TPKey, int]] | None]
        self._requests = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()

    def submit(self, since_ms: int, committed: Mapping[TPKey, int]) -> Future[ScanResult]:
        """``written_since`` on the scanner's own thread (started on first use); scans run one
        at a time, in order. Never blocks."""
        future: Future[ScanResult] = Future()
        if self._stop.is_set():
            future.set_exception(DeadLetterScanError("the scanner is closed"))
            return future
        if self._worker is None:
            self._worker = threading.Thread(target=self._serve, name="dlq-scan", daemon=True)
            self._worker.start()
        self._requests.put((future, since_ms, dict(committed)))
        return future

    def _serve(self) -> None:
        while True:
            request = self._requests.get()
            if request is None or self._stop.is_set():
                break
            future, since_ms, committed = request
            if not future.set_running_or_notify_cancel():
                continue  # its partitions were revoked before it started
            try:
                future.set_result(self.written_since(since_ms, committed))
            except DeadLetterScanError as exc:
                future.set_exception(exc)
            except Exception as exc:  # a scan must always answer its future
                logger.exception("dead-letter scan failed unexpectedly")
                future.set_exception(DeadLetterScanError(f"unexpected {type(exc).__name__}"))
        self._close_consumer()  # on this thread: the consumer is never used by two

    def written_since(self, since_ms: int, committed: Mapping[TPKey, int]) -> dict[TPKey, set[int]]:
        """For each source partition of ``committed``: the offsets at or above its committed
        offset whose dead-letter copy this group wrote at or after ``since_ms`` (less the
        margin). Raises DeadLetterScanError when the topic cannot be read to its end in time."""
        deadline = self._clock() + self._timeout_s  # one bound for every try together
        while True:
            try:
                return self._scan(since_ms, committed, deadline)
            except KafkaException as exc:
                error = exc.args[0]
                # A leader not known yet (a topic just created, a leader moving) passes: retry
                # it within the scan's time. offsets_for_times() raises a KafkaError built from
                # the bare code (retriable() is then False), hence the codes as well.
                retriable = isinstance(error, KafkaError) and (
                    error.retriable() or error.code() in TRANSIENT_CODES
                )
                if not retriable or self._clock() > deadline or self._stop.wait(RETRY_PAUSE_S):
                    raise DeadLetterScanError(f"reading {self._topic}: {error}") from None

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Stop: a scan in progress ends at its next read (its future fails), queued ones are
        cancelled, and the worker closes the consumer. Waits at most ``wait_s`` for it."""
        self._stop.set()
        worker = self._worker
        if worker is None:
            self._close_consumer()
            return
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                break
            if request is not None:
                request[0].cancel()
        self._requests.put(None)
        worker.join(wait_s)
        if worker.is_alive():
            logger.warning("the dead-letter scan did not stop within %.0fs; leaving it", wait_s)

    def _close_consumer(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _scan(
        self, since_ms: int, committed: Mapping[TPKey, int], deadline: float
    ) -> dict[TPKey, set[int]]:
        if self._consumer is None:
            self._consumer = self._factory()
        consumer = self._consumer

        def left() -> float:
            return max(0.1, deadline - self._clock())

        metadata = consumer.list_topics(self._topic, timeout=left())
        topic = metadata.topics.get(self._topic)
        if topic is None or topic.error is not None:
            raise DeadLetterScanError(f"topic {self._topic} not readable: {topic and topic.error}")
        wanted = [TopicPartition(self._topic, p, since_ms - MARGIN_MS) for p in topic.partitions]
        starts = consumer.offsets_for_times(wanted, timeout=left())
        ends: dict[int, int] = {}
        assignment = []
        for tp in starts:
            if tp.error is not None:
                # written_since() retries it if it may pass, as a raised error
                error = tp.error
                raise KafkaException(
                    KafkaError(
                        error.code(),
                        f"partition {tp.partition}: {error.str()}",
                        retriable=error.retriable(),
                    )
                )
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(self._topic, tp.partition), timeout=left()
            )
            if tp.offset < 0 or tp.offset >= high:
                continue  # nothing written since then
            ends[tp.partition] = high
            assignment.append(TopicPartition(self._topic, tp.partition, tp.offset))
        found: dict[TPKey, set[int]] = {}
        if not assignment:
            return found
        consumer.assign(assignment)
        try:
            while ends:
                if self._stop.is_set():
                    raise DeadLetterScanError("stopped (shutting down)")
                if self._clock() > deadline:
                    raise DeadLetterScanError(
                        f"{self._topic} not read to its end within {self._timeout_s:.0f}s"
                    )
                for record in consumer.consume(500, 0.2):
                    error = record.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            ends.pop(record.partition(), None)
                            continue
                        raise DeadLetterScanError(f"{self._topic}: {error.str()}")
                    if record.offset() + 1 >= ends.get(record.partition(), 0):
                        ends.pop(record.partition(), None)
                    origin = self._origin(record.headers() or [])
                    if origin is not None and origin[0] in committed:
                        key, offset = origin
                        if offset >= committed[key]:
                            found.setdefault(key, set()).add(offset)
        finally:
            consumer.unassign()
        return found

    def _origin(self, headers: list[tuple[str, bytes | None]]) -> tuple[TPKey, int] | None:
        values = {k: v for k, v in headers if k.startswith("inkit.") and v is not None}
        group = values.get(GROUP_HEADER)
        if group is not None and group != self._group_id:
            return None
        try:
            topic = values["inkit.original.topic"].decode()
            partition = int(values["inkit.original.partition"])
            offset = int(values["inkit.original.offset"])
        except (KeyError, ValueError, UnicodeDecodeError):
            return None  # not one of ours
        return (topic, partition), offset
