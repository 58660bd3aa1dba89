"""`inkit-connector produce`: encode Segment events (JSON lines) in KAFKA_VALUE_FORMAT and
produce them to KAFKA_TOPIC, so users can test their own setup end to end."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from confluent_kafka import KafkaException, Producer

from connector.errors import ConfigError, ConsumerError, RegistryUnavailable
from connector.events import avro
from connector.events.encoding import EncodeError, build_encoder
from connector.kafka.consumer import describe, rdkafka_logger
from connector.kafka.security_errors import explain as explain_security_error
from connector.settings import Settings

logger = logging.getLogger(__name__)
FLUSH_TIMEOUT_S = 30.0
_FLUSH_SLICE_S = 0.5


@dataclass
class ProduceReport:
    """What happened to each input line."""

    produced: int = 0
    failed: int = 0
    invalid: list[str] = field(default_factory=list)  # "line N: why" (never the line's content)
    reasons: Counter[str] = field(default_factory=Counter)  # why records failed, by count


def run_produce(settings: Settings, lines: Iterable[str], out: TextIO) -> int:
    """Produce every JSON line; print a summary; exit 0 when every valid line was acked.

    Lines that are not a JSON object or cannot be encoded are reported by number and skipped.
    The record key is the event's userId, else anonymousId (Segment's partitioning), so one
    user's events stay in one partition and in order.
    """
    errors: list[str] = []
    # A wrong password or certificate never heals by waiting: stop at the first such error.
    fatal: list[str] = []
    conf: dict[str, Any] = dict(settings.librdkafka_common())

    def on_error(err: Any) -> None:
        errors.append(describe(err))
        reason = explain_security_error(err, conf)
        if reason is not None:
            fatal.append(reason)

    conf.update(
        {
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 10,
            "error_cb": on_error,
            "logger": rdkafka_logger,  # librdkafka's lines go through logging, not raw stderr
        }
    )
    try:
        producer = Producer(conf)
    except KafkaException as exc:  # e.g. an ssl.* file that does not exist or does not parse
        # librdkafka refuses its configuration (_INVALID_ARG): a setting to fix, exit 2.
        raise ConfigError(
            f"Kafka client settings rejected: {exc.args[0].str()} (check KAFKA_CONFIG_* variables)"
        ) from exc
    # Before registering a schema or encoding anything: a missing topic is one line at once,
    # not a 30 s wait for acknowledgements that cannot come.
    _require_topic(producer, settings, fatal)
    registry = None
    if settings.value_format.startswith("confluent-") and settings.schema_registry_url:
        registry = avro.SchemaRegistry(
            settings.schema_registry_url, settings.schema_registry_user_info
        )
    encoder = build_encoder(settings.value_format, registry=registry, topic=settings.topic)
    report = ProduceReport()

    def delivered(err: Any, _msg: Any) -> None:
        if err is None:
            report.produced += 1
        else:
            report.failed += 1
            errors.append(err.str())
            report.reasons[err.str()] += 1

    try:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
                if not isinstance(event, dict):
                    raise EncodeError("not a JSON object")
                value = encoder.encode(event)
            except (ValueError, EncodeError) as exc:
                report.invalid.append(f"line {number}: {type(exc).__name__}: {_short(exc)}")
                continue
            user = event.get("userId") or event.get("anonymousId")
            key = str(user).encode() if user is not None else None
            _produce(producer, settings.topic, key, value, delivered)
        left = _flush(producer, fatal)
    except RegistryUnavailable as exc:
        raise ConsumerError(
            f"schema registry unavailable at {settings.schema_registry_url}: {exc.detail}; "
            "check SCHEMA_REGISTRY_URL"
        ) from exc
    finally:
        encoder.close()
    if left:
        detail = errors[-1] if errors else "no acknowledgement"
        raise ConsumerError(
            f"{left} record(s) not acknowledged by Kafka at {settings.bootstrap_servers} "
            f"({detail}): check KAFKA_BOOTSTRAP_SERVERS and that topic {settings.topic!r} exists"
        )
    for problem in report.invalid:
        out.write(f"skipped {problem}\n")
    why = ", ".join(f"{n} × {reason}" for reason, n in report.reasons.most_common())
    out.write(
        f"produced {report.produced} record(s) to {settings.topic} as {settings.value_format}"
        f"; {len(report.invalid)} invalid line(s) skipped; {report.failed} failed"
        + (f" ({why})" if why else "")
        + "\n"
    )
    return 0 if report.failed == 0 and not report.invalid else 1


def _require_topic(producer: Any, settings: Settings, fatal: list[str]) -> None:
    # All topics, not list_topics(topic): asking for one topic by name lets a broker with
    # auto.create.topics.enable create it (librdkafka's allow.auto.create.topics is true for
    # producers since librdkafka 1.9.3, confluentinc/librdkafka#3952), which would hide the
    # mistake.
    # In slices, serving the error callback: a security failure is named at once (as _flush does).
    deadline = time.monotonic() + 10.0
    while True:
        try:
            metadata = producer.list_topics(timeout=_FLUSH_SLICE_S)
            break
        except KafkaException as exc:
            producer.poll(0)
            if fatal:
                raise ConsumerError(fatal[0]) from exc
            if time.monotonic() >= deadline:
                raise ConsumerError(
                    f"cannot reach Kafka at {settings.bootstrap_servers} ({exc.args[0].str()}): "
                    "check KAFKA_BOOTSTRAP_SERVERS"
                ) from exc
    topic = metadata.topics.get(settings.topic)
    if topic is None or topic.error is not None:
        raise ConsumerError(
            f"topic {settings.topic!r} does not exist: create it (`make local-up` creates the "
            "local one) or fix KAFKA_TOPIC"
        )


def _flush(producer: Any, fatal: list[str]) -> int:
    """Flush in short slices so that a security failure ends the wait at once."""
    deadline = time.monotonic() + FLUSH_TIMEOUT_S
    left = int(producer.flush(_FLUSH_SLICE_S))
    while left and time.monotonic() < deadline:
        if fatal:
            raise ConsumerError(fatal[0])
        left = int(producer.flush(_FLUSH_SLICE_S))
    return left


def _produce(producer: Any, topic: str, key: bytes | None, value: bytes, cb: Any) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value, on_delivery=cb)
            break
        except BufferError:
            producer.poll(0.1)  # the local queue is full: let deliveries drain it
        except KafkaException as exc:
            raise ConsumerError(f"cannot produce to {topic!r}: {exc.args[0].str()}") from exc
    producer.poll(0)


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else ""
