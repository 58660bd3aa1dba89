"""Waiting for a topic to be usable: CreateTopics and CreatePartitions return once the controller
accepted the change, before every partition has a leader that producers and consumers can see."""

from __future__ import annotations

import time
from typing import Any


def wait_for_topic(client: Any, topic: str, partitions: int, timeout_s: float = 30.0) -> None:
    """Block until ``topic`` has ``partitions`` partitions, each with a leader in the metadata.
    ``client``: anything with ``list_topics`` (AdminClient, Producer). Raises TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        meta = client.list_topics(topic=topic, timeout=5).topics.get(topic)
        if (
            meta is not None
            and meta.error is None
            and len(meta.partitions) == partitions
            and all(p.leader >= 0 for p in meta.partitions.values())
        ):
            return
        time.sleep(0.1)
    raise TimeoutError(f"topic {topic} has no leader for all {partitions} partitions")
