"""The dead-letter topic read back, in the simulation (simulation.py holds the rest of the
world): scans answer when the driver says so, in order, as the real scanner's single thread
does (kafka/dlq_recovery.py)."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from connector.errors import DeadLetterScanError
from tests.unit.delivery.simulation import TOPIC, SimCluster


class SimScanner:
    """The dead-letter topic read back for a newly assigned partition
    (dlq_recovery.DeadLetterScanner's contract): ``submit`` answers later, from ``resolve``
    (the real one answers from its own thread), with the copies written at or after
    ``since_ms`` of offsets at or above the committed one, or fails while ``down`` (a
    dead-letter topic that cannot be read). A scan reads the topic as it is when it runs."""

    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster
        self.pending: list[tuple[Future[dict[tuple[str, int], set[int]]], int, dict[Any, int]]]
        self.pending = []

    def submit(self, since_ms: int, committed: Any) -> Future[dict[tuple[str, int], set[int]]]:
        future: Future[dict[tuple[str, int], set[int]]] = Future()
        self.pending.append((future, since_ms, dict(committed)))
        return future

    def resolve(self, count: int) -> None:
        """Answer up to ``count`` scans, oldest first (one thread: in order)."""
        for _ in range(min(count, len(self.pending))):
            future, since_ms, committed = self.pending.pop(0)
            if not future.set_running_or_notify_cancel():
                continue
            if self.cluster.dead_letters_unreadable:
                future.set_exception(DeadLetterScanError("dead-letter topic unreadable"))
                continue
            future.set_result(self.read(since_ms, committed))

    def read(self, since_ms: int, committed: dict[Any, int]) -> dict[tuple[str, int], set[int]]:
        found: dict[tuple[str, int], set[int]] = {}
        for (partition, offset), written in self.cluster.dead_letters.items():
            start = committed.get((TOPIC, partition))
            if start is not None and offset >= start and max(written) >= since_ms:
                found.setdefault((TOPIC, partition), set()).add(offset)
        return found
