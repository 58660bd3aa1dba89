"""Kafka client construction: the consumer with the settings correctness depends on forced, and
the dead-letter producer. librdkafka's own logs go through Python logging."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer

from connector.settings import Settings

logger = logging.getLogger(__name__)
rdkafka_logger = logging.getLogger("connector.librdkafka")

# Bounded prefetch: librdkafka's defaults (64 MiB, 100k messages per partition) would dwarf the
# connector's own buffer. Measured at 256 in flight (bench/): peak RSS 173 -> 127 MB.
DEFAULT_QUEUED_MAX_KBYTES = "8192"
# KIP-848 (KAFKA_CONFIG_GROUP_PROTOCOL=consumer, brokers 4.0+): the broker assigns partitions and
# sets the session timeout and heartbeat interval (its group.consumer.* settings); librdkafka
# refuses these client-side settings with that protocol.
CLASSIC_ONLY_KEYS = (
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "group.protocol.type",
)


# What the loop may go without polling: a revoke's drain (DRAIN_TIMEOUT_SECONDS) plus this margin.
POLL_MARGIN_S = 30.0
MIN_MAX_POLL_INTERVAL_MS = 60_000


def max_poll_interval_ms(settings: Settings) -> int:
    """librdkafka's default max.poll.interval.ms is 300 s, and on the classic protocol it is also
    the rebalance timeout sent in JoinGroup (rd_kafka_JoinGroupRequest, src/rdkafka_request.c):
    the coordinator waits that long for a member that stopped rejoining (RELIABILITY.md, open
    issue 1; over three minutes seen on Kafka 3.9.2). The loop never goes longer without polling
    than a drain, so the drain bound plus a margin (at least 60 s) bounds that stall instead.
    KAFKA_CONFIG_MAX_POLL_INTERVAL_MS still overrides it."""
    return max(MIN_MAX_POLL_INTERVAL_MS, int((settings.drain_timeout_s + POLL_MARGIN_S) * 1000))


def consumer_config(
    settings: Settings,
    error_cb: Callable[[Any], None],
    on_commit: Callable[[Any, list[Any]], None] | None = None,
    group_protocol: str | None = None,
) -> dict[str, Any]:
    """The consumer configuration. User passthrough comes first, then the settings that the
    delivery guarantee depends on, which nothing can override."""
    conf: dict[str, Any] = {
        "partition.assignment.strategy": "cooperative-sticky",
        "auto.offset.reset": "earliest",
        "queued.max.messages.kbytes": DEFAULT_QUEUED_MAX_KBYTES,
        "queued.min.messages": "1000",
        "session.timeout.ms": "45000",
        "statistics.interval.ms": "0",
        # librdkafka's default (5 min) leaves partitions added to the topic unread that long.
        "topic.metadata.refresh.interval.ms": "30000",
        "max.poll.interval.ms": str(max_poll_interval_ms(settings)),
    }
    conf.update(settings.librdkafka_common())
    if group_protocol is not None:
        conf["group.protocol"] = group_protocol
    if conf.get("group.protocol") == "consumer":
        dropped = [key for key in CLASSIC_ONLY_KEYS if conf.pop(key, None) is not None]
        if set(dropped) & set(settings.kafka_extra):
            logger.info(
                "group.protocol=consumer: ignoring %s (set broker side)",
                ", ".join(k for k in dropped if k in settings.kafka_extra),
            )
    conf.update(
        {
            "group.id": settings.group_id,
            # Offsets are committed explicitly, only over finished records (see offsets.py).
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            "error_cb": error_cb,
            "logger": rdkafka_logger,
        }
    )
    if on_commit is not None:
        conf["on_commit"] = on_commit
    return conf


# Consumer-only settings, which a producer or an admin client would warn about.
_CONSUMER_KEYS = (
    "partition.assignment",
    "auto.offset",
    "session.",
    "queued.",
    "fetch.",
    "max.poll",
    "isolation.",
    "group.",
    "heartbeat.",
)


def _non_consumer_common(settings: Settings) -> dict[str, Any]:
    return {
        key: value
        for key, value in settings.librdkafka_common().items()
        if not key.startswith(_CONSUMER_KEYS)
    }


def producer_config(settings: Settings, error_cb: Callable[[Any], None]) -> dict[str, Any]:
    """The dead-letter producer: idempotent and acks=all, so an ack means the copy is durable."""
    conf: dict[str, Any] = {"linger.ms": "5", **_non_consumer_common(settings)}
    conf.update(
        {
            "enable.idempotence": True,
            "acks": "all",
            "error_cb": error_cb,
            "logger": rdkafka_logger,
        }
    )
    return conf


# Group settings mean nothing to a consumer that only assigns.
_GROUP_KEYS = ("partition.assignment", "session.", "group.", "heartbeat.", "max.poll")


def scanner_config(settings: Settings, error_cb: Callable[[Any], None]) -> dict[str, Any]:
    """The consumer that reads the dead-letter topic back at assignment (dlq_recovery.py): it
    assigns partitions and never joins a group or commits; librdkafka still wants a group.id."""
    conf: dict[str, Any] = {
        key: value
        for key, value in settings.librdkafka_common().items()
        if not key.startswith(_GROUP_KEYS)
    }
    conf.update(
        {
            "group.id": f"{settings.group_id}.dlq-scan",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "queued.max.messages.kbytes": DEFAULT_QUEUED_MAX_KBYTES,
            "error_cb": error_cb,
            "logger": rdkafka_logger,
        }
    )
    return conf


def admin_config(settings: Settings, error_cb: Callable[[Any], None]) -> dict[str, Any]:
    """The admin client that reads the group's committed offsets during a handoff: its own
    connections, so a read is never queued behind this member's JoinGroup."""
    return {**_non_consumer_common(settings), "error_cb": error_cb, "logger": rdkafka_logger}


def build_consumer(
    settings: Settings,
    error_cb: Callable[[Any], None],
    on_commit: Callable[[Any, list[Any]], None] | None = None,
    group_protocol: str | None = None,
) -> Any:
    return Consumer(consumer_config(settings, error_cb, on_commit, group_protocol))


def build_producer(settings: Settings, error_cb: Callable[[Any], None]) -> Any:
    return Producer(producer_config(settings, error_cb))


def describe(error: Any) -> str:
    """A short text for a KafkaError, without the payload."""
    code = error.code()
    if code == KafkaError._AUTHENTICATION:
        return "Kafka authentication failed: check KAFKA_CONFIG_SASL_* settings"
    if code == KafkaError._ALL_BROKERS_DOWN:
        return "all Kafka brokers are down or unreachable: check KAFKA_BOOTSTRAP_SERVERS"
    return f"{error.name()}: {error.str()}"
