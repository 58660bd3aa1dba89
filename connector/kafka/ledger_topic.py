"""The sent-ledger topic itself: is it there, is it compacted, create it when it is missing."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException

# NewTopic and ConfigResource: the documented import path, although the stubs declare them in cimpl.
from confluent_kafka.admin import ConfigResource, NewTopic  # type: ignore[attr-defined]

from connector.errors import StartupError


def ledger_topic_state(admin: Any, topic: str, timeout_s: float = 10.0) -> str | None:
    """The topic's ``cleanup.policy``, or None when the topic does not exist."""
    metadata = admin.list_topics(topic, timeout=timeout_s)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        return None
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=timeout_s)
    entry = configs.get("cleanup.policy")
    return str(entry.value) if entry is not None else "delete"


def ensure_ledger_topic(admin: Any, topic: str, partitions: int, timeout_s: float = 15.0) -> str:
    """Create the ledger topic (compacted) when it is missing; raise StartupError with what to
    do when it cannot be created or is not compacted. Returns what was done, for the log."""
    try:
        policy = ledger_topic_state(admin, topic, timeout_s)
        if policy is None:
            futures = admin.create_topics(
                [
                    NewTopic(
                        topic,
                        num_partitions=partitions,
                        replication_factor=-1,
                        config={"cleanup.policy": "compact"},
                    )
                ]
            )
            futures[topic].result(timeout=timeout_s)
            return f"created {topic} ({partitions} partitions, cleanup.policy=compact)"
    except KafkaException as exc:
        error = exc.args[0]
        if getattr(error, "code", lambda: None)() == KafkaError.TOPIC_ALREADY_EXISTS:
            return f"{topic} exists"
        raise StartupError(
            f"sent-ledger topic {topic!r} is missing and could not be created "
            f"({getattr(error, 'str', lambda: str(error))()}): create it with "
            "cleanup.policy=compact, or set LEDGER_ENABLED=false"
        ) from exc
    if "compact" not in policy.split(","):
        raise StartupError(
            f"sent-ledger topic {topic!r} has cleanup.policy={policy}: it must be compact "
            "(or compact,delete with retention.ms above DEDUPE_WINDOW_HOURS)"
        )
    return f"{topic} exists (cleanup.policy={policy})"
