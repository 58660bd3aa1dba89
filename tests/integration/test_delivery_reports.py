"""Delivery reports of the dead-letter/ledger producer wake the consume loop (issue #20, #15):
against the real broker, a report served by the background thread's poll() sets the wake
event, and its callback runs on the thread that calls DeliveryReports.poll(), never on the
background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer

from connector.kafka.delivery_reports import DeliveryReports

pytestmark = pytest.mark.integration


def _producer(bootstrap: str) -> Any:
    return Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5}
    )


def test_an_ack_wakes_the_waiter_and_its_callback_runs_on_the_polling_thread(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=1)
    reports = DeliveryReports(_producer(kafka_bootstrap))
    wake = threading.Event()
    reports.start(wake=wake)
    ran_on: list[tuple[str, Any]] = []
    try:
        for n in range(3):
            reports.produce(
                topic,
                key=b"k",
                value=str(n).encode(),
                on_delivery=lambda err, _msg: ran_on.append((threading.current_thread().name, err)),
            )
        deadline = time.monotonic() + 30
        while len(ran_on) < 3 and time.monotonic() < deadline:
            # What the consume loop does: wait on the event (nothing else wakes it), then poll.
            assert wake.wait(max(0.0, deadline - time.monotonic())), "no ack woke the waiter"
            wake.clear()
            reports.poll()
        assert ran_on == [(threading.current_thread().name, None)] * 3
    finally:
        reports.close()
        assert reports.flush(10) == 0


def test_flush_runs_callbacks_that_produce_again(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    """The dead-letter queue's fallback produces from inside a callback: flush waits for that
    copy too, and returns 0 only when nothing is left."""
    topic = topic_factory(partitions=1)
    reports = DeliveryReports(_producer(kafka_bootstrap))
    acked: list[int] = []

    def first(err: Any, _msg: Any) -> None:
        assert err is None
        acked.append(1)
        reports.produce(topic, value=b"again", on_delivery=lambda e, _m: acked.append(2))

    reports.start(wake=threading.Event())
    reports.produce(topic, value=b"once", on_delivery=first)
    reports.close()
    assert reports.flush(20) == 0
    assert acked == [1, 2]
