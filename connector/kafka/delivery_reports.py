"""DeliveryReports: a producer whose delivery reports wake the consume loop as they arrive.

librdkafka runs a producer's delivery callbacks inside ``poll()`` or ``flush()``, in whichever
thread calls them. The consume thread used to call ``poll(0)`` once per step, so an ack (of a
dead-letter copy or a sent-ledger record: both gate commits) waited for its next step, and while
acks were pending the loop had to step every millisecond to see them soon. With the sent-ledger
on, acks are nearly always pending: that spin cost about 0.3 ms of CPU per event at 0 ms Inkit
latency (`make bench-profile`, issue #20), the ledger's largest cost (issue #15).

Here a background thread blocks in the producer's ``poll()`` (librdkafka wakes it as soon as a
report is ready), queues each report with its callback and sets ``wake`` (the sender's wakeup
event, which the consume loop already waits on between steps). The callbacks still run on the
consume thread, from ``poll()``: nothing they touch needs a lock, as before.

It stands in for the producer wherever the dead-letter queue and the sent-ledger use one
(``produce``, ``poll``, ``flush``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

POLL_S = 0.1  # the background thread's poll(): woken by librdkafka when a report is ready

Report = Callable[[Any, Any], None]


class DeliveryReports:
    """Wraps a confluent_kafka Producer; see the module docstring.

    Contract: ``produce`` takes the producer's arguments; its ``on_delivery`` runs later, on
    the thread that calls ``poll`` or ``flush`` (the consume thread). Until ``start`` (and after
    ``close``), ``poll`` serves the producer itself."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self._ready: deque[tuple[Report, Any, Any]] = deque()
        self._wake: threading.Event | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, wake: threading.Event) -> None:
        """Serve reports on a background thread from now on; set ``wake`` when one arrives."""
        self._wake = wake
        self._thread = threading.Thread(target=self._serve, name="delivery-reports", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the background thread (what it queued is still run by the next ``poll``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def produce(self, topic: str, *, on_delivery: Report, **kwargs: Any) -> None:
        self._producer.produce(topic, on_delivery=self._deferred(on_delivery), **kwargs)

    def poll(self, timeout_s: float = 0.0) -> int:
        """Run the callbacks of the reports that arrived; how many ran."""
        if self._thread is None:
            self._producer.poll(timeout_s)
        ran = 0
        while self._ready:
            callback, err, msg = self._ready.popleft()
            ran += 1
            callback(err, msg)  # raises into the consume loop, as it did from the producer's poll
        return ran

    def flush(self, timeout_s: float) -> int:
        """Wait for outstanding messages and run their callbacks (which may produce again, as
        the dead-letter queue's fallback does); returns how many are still unacknowledged."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = int(self._producer.flush(max(0.0, deadline - time.monotonic())))
            ran = self.poll()
            if (not left and not ran) or time.monotonic() >= deadline:
                return left

    def _deferred(self, callback: Report) -> Report:
        def report(err: Any, msg: Any) -> None:
            self._ready.append((callback, err, msg))
            wake = self._wake
            if wake is not None and not wake.is_set():
                wake.set()

        return report

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                self._producer.poll(POLL_S)
            except Exception:  # poll() raises only for a closed producer: nothing to serve
                logger.exception("serving Kafka delivery reports failed")
                self._stop.wait(1.0)
