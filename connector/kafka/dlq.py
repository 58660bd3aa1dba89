"""DeadLetterQueue: produces a record that can never succeed to the dead-letter topic, with
headers that say where it came from and why; the caller commits only after Kafka acked it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from connector import __version__
from connector.errors import RecordError
from connector.kafka.dlq_recovery import GROUP_HEADER
from connector.observability.metrics import Metrics

logger = logging.getLogger(__name__)

HEADER_PREFIX = "inkit."

HeaderBuilder = Callable[[Any, RecordError, str], list[tuple[str, bytes]]]


def dead_letter_headers(
    record: Any, error: RecordError, group_id: str = ""
) -> list[tuple[str, bytes]]:
    """Headers of a dead-letter copy: origin (and the consumer group that wrote it), error class
    and reason, HTTP status and a redacted response excerpt. Never a trait value: reasons and
    details are built without them."""
    _ts_type, timestamp_ms = record.timestamp()
    headers = [
        ("inkit.original.topic", record.topic()),
        ("inkit.original.partition", str(record.partition())),
        ("inkit.original.offset", str(record.offset())),
        ("inkit.original.timestamp", str(timestamp_ms)),
        ("inkit.error.class", getattr(error, "error_class", "record")),
        ("inkit.error.reason", error.reason),
        ("inkit.error.detail", error.detail[:500]),
        ("inkit.failed.at", str(int(time.time() * 1000))),
        ("inkit.connector.version", __version__),
    ]
    if group_id:
        # Read back at assignment (dlq_recovery.py): this group's copies are not written twice.
        headers.append((GROUP_HEADER, group_id))
    status = getattr(error, "status", None)
    if status is not None:
        headers.append(("inkit.http.status", str(status)))
    excerpt = getattr(error, "excerpt", "")
    if excerpt:
        headers.append(("inkit.http.response_excerpt", excerpt))
    original = record.headers() or []
    # Keep the record's own headers too (tracing ids and the like), after ours.
    return [(k, v.encode()) for k, v in headers] + [(k, v) for k, v in original if v is not None]


class DeadLetterQueue:
    """Wraps a confluent_kafka Producer (idempotent, acks=all).

    ``send`` never blocks; ``on_done(ok)`` runs from ``poll``/``flush`` on the consume-loop
    thread once Kafka acked (ok=True) or refused (ok=False) the copy.
    """

    def __init__(
        self,
        producer: Any,
        topic: str,
        metrics: Metrics,
        group_id: str = "",
        *,
        headers_of: HeaderBuilder | None = None,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._group_id = group_id
        self._metrics = metrics
        # `redrive` writes a failed-again copy with the first copy's origin (dead_letter.py).
        self._headers_of = headers_of or dead_letter_headers

    def send(
        self,
        record: Any,
        error: RecordError,
        on_done: Callable[[bool], None],
        *,
        omit_value: bool = False,
    ) -> None:
        def delivered(err: Any, _msg: Any) -> None:
            if err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE and not omit_value:
                # The copy with our headers no longer fits: keep the headers (they point at
                # the original, which stays in the source topic) and drop the value.
                self.send(record, error, on_done, omit_value=True)
                return
            if err is not None:
                self._metrics.dead_letter_failures.inc()
                logger.error(
                    "dead-letter produce failed for %s[%s]@%s: %s",
                    record.topic(),
                    record.partition(),
                    record.offset(),
                    err,
                )
            on_done(err is None)

        headers = self._headers_of(record, error, self._group_id)
        if omit_value:
            # Without the value, and without the record's own headers (they can be what is too
            # large): ours still point at the original, which stays in the source topic.
            headers = self._headers_of(_Bare(record), error, self._group_id)
            headers.append(("inkit.value.omitted", b"too_large"))
        try:
            self._producer.produce(
                self._topic,
                key=record.key(),
                value=None if omit_value else record.value(),
                headers=headers,
                on_delivery=delivered,
            )
        except BufferError:
            # The local queue is full: report a failure now, the caller retries later; the
            # offset stays uncommitted meanwhile.
            self._metrics.dead_letter_failures.inc()
            logger.error("dead-letter produce refused locally: queue full")
            on_done(False)
            return
        except KafkaException as exc:
            kafka_error = exc.args[0]
            code = kafka_error.code() if hasattr(kafka_error, "code") else None
            # librdkafka refuses a message over the producer's message.max.bytes inside
            # produce() (rd_kafka_producev returns MSG_SIZE_TOO_LARGE; confluent-kafka raises it
            # as KafkaException), not in the delivery report: the same fallback as there, or the
            # copy is retried every second forever (issue #13, defect 4; the real-broker test
            # tests/integration/test_stalls.py checks it).
            if code == KafkaError.MSG_SIZE_TOO_LARGE and not omit_value:
                self.send(record, error, on_done, omit_value=True)
                return
            self._metrics.dead_letter_failures.inc()
            logger.error(
                "dead-letter produce refused locally for %s[%s]@%s: %s",
                record.topic(),
                record.partition(),
                record.offset(),
                kafka_error.name() if hasattr(kafka_error, "name") else type(exc).__name__,
            )
            on_done(False)
            return
        self._producer.poll(0)

    def poll(self, timeout_s: float = 0.0) -> None:
        self._producer.poll(timeout_s)

    def flush(self, timeout_s: float) -> int:
        """Wait for outstanding copies; returns how many are still unacknowledged."""
        return int(self._producer.flush(timeout_s))


class _Bare:
    """A record seen without its own headers (the fallback copy of a record too large)."""

    def __init__(self, record: Any) -> None:
        self._record = record

    def __getattr__(self, name: str) -> Any:
        return getattr(self._record, name)

    def headers(self) -> None:
        return None
