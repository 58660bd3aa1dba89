"""The consume loop with requests in flight: it never blocks inside a fetch (librdkafka's
consume() cannot be woken from another thread, so a result would wait out the fetch's timeout),
it waits on the sender's wakeup instead, and what arrives meanwhile is still handled (issue #20).
"""

from __future__ import annotations

import asyncio
import threading

import httpx

from connector.delivery.processor import IN_FLIGHT_WAIT_S
from tests.fakes import FakeConsumer, FakeMessage
from tests.unit.delivery.test_processor import Harness, event, wait_for


class RecordingConsumer(FakeConsumer):
    """A FakeConsumer that notes, for every consume(), its timeout and whether requests were in
    flight at that moment (read from the processor under test)."""

    def __init__(self, topic: str, partitions: int) -> None:
        super().__init__(topic, partitions)
        self.calls: list[tuple[float, bool]] = []
        self.in_flight = lambda: False

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        self.calls.append((timeout, self.in_flight()))
        return super().consume(num_messages, timeout)


def test_a_loop_with_requests_in_flight_never_blocks_in_consume_and_handles_late_records() -> None:
    consumer = RecordingConsumer("t", partitions=2)
    for seq in range(10):
        consumer.append(seq % 2, f"u{seq}".encode(), event(f"u{seq}", seq))
    release = threading.Event()
    seen: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        while not release.is_set():  # Inkit holds every request until the test lets go
            await asyncio.sleep(0.005)
        seen.append(1)
        return httpx.Response(202)

    h = Harness(consumer, handler, max_in_flight=16)
    consumer.in_flight = lambda: h.processor._in_flight > 0
    wakeups: list[float] = []
    original_wait = h.sender.wakeup.wait

    def wait(timeout: float | None = None) -> bool:
        wakeups.append(timeout or 0.0)
        return original_wait(timeout)

    h.sender.wakeup.wait = wait  # type: ignore[method-assign]
    with h.running():
        wait_for(lambda: h.processor._in_flight == 10)
        wait_for(lambda: len(wakeups) >= 3)  # it waits for results, not inside consume()
        # A record that arrives while the loop waits on results is still read and sent.
        consumer.append(0, b"late", event("late", 99))
        wait_for(lambda: h.processor._in_flight == 11)
        release.set()
        wait_for(lambda: sum(consumer.committed_offsets.values()) == 11)
    assert len(seen) == 11
    blocking = [timeout for timeout, in_flight in consumer.calls if in_flight and timeout > 0]
    assert blocking == []
    assert IN_FLIGHT_WAIT_S in wakeups
